//! The PostgreSQL connector against a real server: the same queries give the same answers
//! as over the Parquet files the rows came from, with filters and limits run by PostgreSQL.

mod common;

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::util::pretty::pretty_format_batches;
use datafusion::prelude::SessionContext;
use sqlx::postgres::{PgPool, PgPoolCopyExt};
use tongban_connectors::{DatasetConfig, SourceConfig, open_dataset, session_config};
use tongban_synth::{HOUSEHOLD_FILE, SOCIAL_INSURANCE_FILE};

/// The server the test script started, or `None` when running outside it.
fn server_url() -> Option<String> {
    match std::env::var("TONGBAN_TEST_PG_URL") {
        Ok(url) => Some(url),
        Err(_) if std::env::var_os("TONGBAN_REQUIRE_PG").is_some() => {
            panic!("TONGBAN_REQUIRE_PG is set but TONGBAN_TEST_PG_URL is not")
        }
        Err(_) => {
            eprintln!("skipping: TONGBAN_TEST_PG_URL is not set; run tests/run.sh to start PostgreSQL");
            None
        }
    }
}

const HOUSEHOLD_DDL: &str = "id_number text PRIMARY KEY, name text, gender text, ethnicity text, birth_date date, \
    household_number text, relation_to_head text, division_code text, address text, registration_authority text, \
    marital_status text, status text, moved_in_date date, updated_on date NOT NULL";

const SOCIAL_DDL: &str = "id_number text NOT NULL, name text, personal_number text, insured_division_code text, \
    insurance_type text, status text, first_insured_on date, contribution_base numeric(14,2), \
    employer_contribution numeric(14,2), personal_contribution numeric(14,2), last_paid_month text, \
    paid_months integer, employer_credit_code text, employer_name text, updated_on date NOT NULL";

/// Creates `table` in a fresh schema and copies `batch` into it as CSV.
async fn load(pool: &PgPool, schema: &str, table: &str, ddl: &str, batch: &RecordBatch) {
    sqlx::query(&format!("CREATE TABLE {schema}.{table} ({ddl})")).execute(pool).await.expect("create table");
    let mut csv = Vec::new();
    {
        let mut writer = arrow::csv::WriterBuilder::new().with_header(false).build(&mut csv);
        writer.write(batch).expect("csv");
    }
    let mut copy =
        pool.copy_in_raw(&format!("COPY {schema}.{table} FROM STDIN (FORMAT csv)")).await.expect("copy");
    copy.send(csv).await.expect("send");
    copy.finish().await.expect("finish copy");
}

async fn run(ctx: &SessionContext, sql: &str) -> String {
    let batches = ctx.sql(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}")).collect().await.expect("run");
    pretty_format_batches(&batches).expect("format").to_string()
}

#[tokio::test]
async fn postgres_tables_answer_like_the_parquet_they_came_from() {
    let Some(url) = server_url() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    common::generate(dir.path(), 5_000, 21, 0.01);
    let household = common::read(&dir.path().join(HOUSEHOLD_FILE));
    let social = common::read(&dir.path().join(SOCIAL_INSURANCE_FILE));

    let pool = PgPool::connect(&url).await.expect("connect");
    let schema = format!("t{}", std::process::id());
    sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&pool).await.expect("schema");
    load(&pool, &schema, "household", HOUSEHOLD_DDL, &household).await;
    load(&pool, &schema, "social_insurance", SOCIAL_DDL, &social).await;

    let pg_ctx = SessionContext::new_with_config(session_config());
    let file_ctx = SessionContext::new_with_config(session_config());
    for (name, file) in [("household", HOUSEHOLD_FILE), ("social_insurance", SOCIAL_INSURANCE_FILE)] {
        let pg = DatasetConfig {
            name: name.into(),
            key: "id_number".into(),
            supplier: None,
            source: SourceConfig::Postgres {
                url: url.clone(),
                schema: schema.clone(),
                table: name.into(),
                max_connections: 4,
            },
        };
        let dataset = open_dataset(&pg, dir.path(), &pg_ctx).await.expect("postgres dataset");
        pg_ctx.register_table(name, Arc::clone(&dataset.table)).expect("register");
        let parquet = DatasetConfig {
            name: name.into(),
            key: "id_number".into(),
            supplier: None,
            source: SourceConfig::Parquet { location: file.into() },
        };
        let dataset = open_dataset(&parquet, dir.path(), &file_ctx).await.expect("parquet dataset");
        file_ctx.register_table(name, Arc::clone(&dataset.table)).expect("register");
    }

    let ids = common::keys(&household, "id_number");
    let probe = &ids[2_500];
    let queries = [
        format!("SELECT * FROM household WHERE id_number = '{probe}'"),
        "SELECT id_number, name FROM household WHERE id_number >= '41' AND id_number < '42' ORDER BY id_number LIMIT 7".to_owned(),
        "SELECT count(*) FROM household WHERE division_code IS NULL OR name IS NULL".to_owned(),
        "SELECT status, count(*) AS n FROM household GROUP BY status ORDER BY status".to_owned(),
        "SELECT id_number FROM household WHERE birth_date < DATE '1950-01-01' AND gender = '2' ORDER BY id_number".to_owned(),
        "SELECT id_number FROM household WHERE ethnicity IN ('04', '03') AND NOT marital_status = '20' ORDER BY id_number".to_owned(),
        "SELECT insurance_type, sum(contribution_base) AS base, max(paid_months) AS m FROM social_insurance \
         WHERE contribution_base > 10000.00 GROUP BY insurance_type ORDER BY insurance_type"
            .to_owned(),
        "SELECT id_number, personal_contribution FROM social_insurance WHERE paid_months BETWEEN 12 AND 24 \
         ORDER BY id_number, insurance_type LIMIT 20"
            .to_owned(),
        "SELECT upper(name) AS n FROM household WHERE name LIKE '王%' ORDER BY n LIMIT 5".to_owned(),
    ];
    for sql in &queries {
        assert_eq!(run(&pg_ctx, sql).await, run(&file_ctx, sql).await, "{sql}");
    }

    // Translatable filters and the limit run in PostgreSQL: no filter is left in the plan.
    let plan =
        run(&pg_ctx, &format!("EXPLAIN SELECT name FROM household WHERE id_number = '{probe}' LIMIT 1"))
            .await;
    assert!(!plan.contains("FilterExec"), "{plan}");
    assert!(plan.contains("StreamingTableExec") && plan.contains("fetch=1"), "{plan}");
    assert!(!plan.contains("GlobalLimitExec") && !plan.contains("LocalLimitExec"), "{plan}");
    // A filter PostgreSQL cannot run exactly stays in DataFusion.
    let plan = run(&pg_ctx, "EXPLAIN SELECT name FROM household WHERE upper(name) = 'X'").await;
    assert!(plan.contains("FilterExec"), "{plan}");

    // Key look-ups go straight to PostgreSQL.
    let social_pg = DatasetConfig {
        name: "social_insurance".into(),
        key: "id_number".into(),
        supplier: None,
        source: SourceConfig::Postgres {
            url: url.clone(),
            schema: schema.clone(),
            table: "social_insurance".into(),
            max_connections: 2,
        },
    };
    let dataset = open_dataset(&social_pg, dir.path(), &pg_ctx).await.expect("dataset");
    let social_ids = common::keys(&social, "id_number");
    let key = &social_ids[social_ids.len() / 3];
    let outcome = dataset.lookup.lookup(key, None).await.expect("lookup");
    assert_eq!(outcome.batch.num_rows(), social_ids.iter().filter(|k| *k == key).count());
    assert_eq!(outcome.batch.schema(), dataset.schema);

    // Misconfiguration is a clear error, not a panic.
    let missing = DatasetConfig {
        name: "x".into(),
        key: "id_number".into(),
        supplier: None,
        source: SourceConfig::Postgres {
            url: url.clone(),
            schema: schema.clone(),
            table: "absent".into(),
            max_connections: 1,
        },
    };
    let err = open_dataset(&missing, dir.path(), &pg_ctx).await.expect_err("missing table");
    assert!(err.to_string().contains("absent"), "{err}");

    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE")).execute(&pool).await.expect("drop");
}
