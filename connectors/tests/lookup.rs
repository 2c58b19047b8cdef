//! Key look-ups and point queries read a small part of a sorted Parquet file.

mod common;

use std::path::Path;
use std::sync::Arc;

use arrow::array::AsArray;
use datafusion::physical_plan::metrics::MetricValue;
use datafusion::physical_plan::{ExecutionPlan, collect};
use datafusion::prelude::SessionContext;
use tongban_connectors::{Dataset, DatasetConfig, SourceConfig, open_dataset, session_config};
use tongban_synth::{HOUSEHOLD_FILE, SOCIAL_INSURANCE_FILE};

use common::keys;

const ROWS: u64 = 100_000;

async fn open(dir: &Path, name: &str, file: &str, ctx: &SessionContext) -> Dataset {
    let config = DatasetConfig {
        name: name.into(),
        key: "id_number".into(),
        supplier: None,
        source: SourceConfig::Parquet { location: file.into() },
    };
    open_dataset(&config, dir, ctx).await.expect("dataset opens")
}

#[tokio::test]
async fn parquet_key_lookup_reads_about_one_page() {
    let dir = tempfile::tempdir().expect("tempdir");
    common::generate(dir.path(), ROWS, 11, 0.0);
    let ctx = SessionContext::new_with_config(session_config());
    let household = open(dir.path(), "household", HOUSEHOLD_FILE, &ctx).await;
    let social = open(dir.path(), "social_insurance", SOCIAL_INSURANCE_FILE, &ctx).await;
    assert_eq!(household.rows, Some(ROWS));

    let all_ids = keys(&common::read(&dir.path().join(HOUSEHOLD_FILE)), "id_number");
    let social_ids = keys(&common::read(&dir.path().join(SOCIAL_INSURANCE_FILE)), "id_number");
    let mut probes: Vec<&String> = all_ids.iter().step_by(4999).collect();
    probes.push(all_ids.last().expect("rows"));
    for key in probes {
        let outcome = household.lookup.lookup(key, None).await.expect("lookup");
        assert_eq!(outcome.batch.num_rows(), 1, "{key}");
        assert_eq!(keys(&outcome.batch, "id_number"), vec![key.clone()]);
        assert_eq!(outcome.batch.schema().fields().len(), household.schema.fields().len());
        // One row group, one or two pages of 1,024 rows, out of 100,000 rows.
        assert_eq!(outcome.stats.row_groups_read, 1, "{key}");
        assert!(outcome.stats.rows_scanned <= 2048, "{key}: scanned {}", outcome.stats.rows_scanned);
        assert_eq!(outcome.stats.rows_total, Some(ROWS));

        // Several rows per person in social insurance: all of them, and only them.
        let expected = social_ids.iter().filter(|k| *k == key).count();
        let outcome = social.lookup.lookup(key, None).await.expect("lookup");
        assert_eq!(outcome.batch.num_rows(), expected, "{key}");
        assert!(keys(&outcome.batch, "id_number").iter().all(|k| k == key));
    }

    // A projection comes back in the order asked for.
    let name = household.schema.index_of("name").expect("name");
    let key = &all_ids[ROWS as usize / 2];
    let outcome = household.lookup.lookup(key, Some(&[name, household.key_field()])).await.expect("lookup");
    let schema = outcome.batch.schema();
    let fields: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(fields, ["name", "id_number"]);

    // Absent keys answer empty: one below the first key, one between keys, one above.
    for absent in ["110101190001010000", "410000000000000000", "99"] {
        let outcome = household.lookup.lookup(absent, None).await.expect("lookup");
        assert_eq!(outcome.batch.num_rows(), 0, "{absent}");
        assert!(outcome.stats.rows_scanned <= 2048);
    }
}

/// Sums a counter over every node of an executed plan.
fn count(plan: &Arc<dyn ExecutionPlan>, name: &str) -> usize {
    let own = plan
        .metrics()
        .map(|m| m.iter().filter(|v| v.value().name() == name).map(|v| v.value().as_usize()).sum())
        .unwrap_or(0);
    own + plan.children().into_iter().map(|c| count(c, name)).sum::<usize>()
}

/// Sums a pruning metric over every node of an executed plan, as (total, matched).
fn pruning(plan: &Arc<dyn ExecutionPlan>, name: &str) -> (usize, usize) {
    let mut sum = (0, 0);
    if let Some(metrics) = plan.metrics() {
        for metric in metrics.iter() {
            if let MetricValue::PruningMetrics { name: n, pruning_metrics } = metric.value()
                && n == name
            {
                sum.0 += pruning_metrics.pruned() + pruning_metrics.matched();
                sum.1 += pruning_metrics.matched();
            }
        }
    }
    for child in plan.children() {
        let (total, matched) = pruning(child, name);
        sum = (sum.0 + total, sum.1 + matched);
    }
    sum
}

#[tokio::test]
async fn sql_point_query_prunes_with_statistics_and_page_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    common::generate(dir.path(), ROWS, 12, 0.0);
    let ctx = SessionContext::new_with_config(session_config());
    let household = open(dir.path(), "household", HOUSEHOLD_FILE, &ctx).await;
    ctx.register_table("household", Arc::clone(&household.table)).expect("register");
    let ids = keys(&common::read(&dir.path().join(HOUSEHOLD_FILE)), "id_number");
    let key = &ids[61_234];

    let df = ctx
        .sql(&format!("SELECT id_number, name FROM household WHERE id_number = '{key}'"))
        .await
        .expect("plan");
    let plan = df.create_physical_plan().await.expect("physical plan");
    let batches = collect(Arc::clone(&plan), ctx.task_ctx()).await.expect("run");
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 1);
    let found: Vec<String> = batches.iter().flat_map(|b| keys(b, "id_number")).collect();
    assert_eq!(found, vec![key.clone()]);

    let metrics_text =
        datafusion::physical_plan::display::DisplayableExecutionPlan::with_metrics(plan.as_ref())
            .indent(true)
            .to_string();
    // Row-group statistics leave one row group of seven, the page index one page of it, and
    // the filter is evaluated on about 1,000 of the 100,000 rows.
    let (row_groups, row_groups_kept) = pruning(&plan, "row_groups_pruned_statistics");
    assert!(
        row_groups >= 7 && row_groups_kept == 1,
        "row groups {row_groups_kept}/{row_groups}\n{metrics_text}"
    );
    let (_, page_rows_kept) = pruning(&plan, "page_index_rows_pruned");
    assert!(page_rows_kept <= 2048, "rows kept by the page index: {page_rows_kept}\n{metrics_text}");
    let decoded = count(&plan, "pushdown_rows_pruned") + count(&plan, "pushdown_rows_matched");
    assert!(decoded > 0 && decoded <= 2048, "rows the filter ran on: {decoded}\n{metrics_text}");
    assert_eq!(count(&plan, "pushdown_rows_matched"), 1);
}

#[tokio::test]
async fn csv_datasets_load_with_text_columns_and_an_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("codes.csv"),
        "id_number,ethnicity,paid_months\n411526199001010016,01,12\n11010519491231002X,03,340\n411526199001010016,01,13\n",
    )
    .expect("write");
    let ctx = SessionContext::new_with_config(session_config());
    let config = DatasetConfig {
        name: "codes".into(),
        key: "id_number".into(),
        supplier: None,
        source: SourceConfig::Csv {
            location: "codes.csv".into(),
            delimiter: ',',
            header: true,
            types: [("paid_months".to_owned(), "Int32".to_owned())].into_iter().collect(),
        },
    };
    let dataset = open_dataset(&config, dir.path(), &ctx).await.expect("opens");
    assert_eq!(dataset.rows, Some(3));
    let outcome = dataset.lookup.lookup("411526199001010016", None).await.expect("lookup");
    assert_eq!(outcome.batch.num_rows(), 2);
    // Codes keep their leading zeros; typed columns are typed.
    assert_eq!(common::strings(&outcome.batch, "ethnicity"), vec![Some("01".into()), Some("01".into())]);
    ctx.register_table("codes", dataset.table).expect("register");
    let batches =
        ctx.sql("SELECT sum(paid_months) AS s FROM codes").await.expect("sql").collect().await.expect("run");
    assert_eq!(batches[0].column(0).as_primitive::<arrow::datatypes::Int64Type>().value(0), 365);

    let bad = DatasetConfig { key: "missing".into(), ..config };
    let err = open_dataset(&bad, dir.path(), &ctx).await.expect_err("unknown key column");
    assert!(err.to_string().contains("missing"), "{err}");
}

#[tokio::test]
async fn missing_files_and_unsupported_schemes_are_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = SessionContext::new_with_config(session_config());
    // S3 is built in (the `s3` feature) and tested against a real S3-compatible server end to
    // end; Google Cloud Storage is not built in.
    for location in ["nowhere.parquet", "gs://bucket/household.parquet"] {
        let config = DatasetConfig {
            name: "household".into(),
            key: "id_number".into(),
            supplier: None,
            source: SourceConfig::Parquet { location: location.into() },
        };
        let err = open_dataset(&config, dir.path(), &ctx).await.expect_err("refused");
        assert!(err.to_string().contains(location.trim_start_matches("gs://")), "{err}");
    }
}

#[tokio::test]
async fn directories_of_files_and_file_urls_are_datasets_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    common::generate(dir.path(), 20_000, 13, 0.0);
    let household = common::read(&dir.path().join(HOUSEHOLD_FILE));
    let ids = keys(&household, "id_number");

    // The same rows split over two files in a directory, as a supplier might deliver them.
    let parts = dir.path().join("household-parts");
    std::fs::create_dir(&parts).expect("mkdir");
    let half = household.num_rows() / 2;
    for (name, slice) in [
        ("part-0.parquet", household.slice(0, half)),
        ("part-1.parquet", household.slice(half, household.num_rows() - half)),
    ] {
        let file = std::fs::File::create(parts.join(name)).expect("create");
        let mut writer = parquet::arrow::ArrowWriter::try_new(file, slice.schema(), None).expect("writer");
        writer.write(&slice).expect("write");
        writer.close().expect("close");
    }
    std::fs::write(parts.join("README.txt"), "not parquet").expect("write");

    let ctx = SessionContext::new_with_config(session_config());
    let url = format!("file://{}", dir.path().join(HOUSEHOLD_FILE).display());
    for (name, location) in [("from_url", url.as_str()), ("from_directory", "household-parts")] {
        let config = DatasetConfig {
            name: name.into(),
            key: "id_number".into(),
            supplier: None,
            source: SourceConfig::Parquet { location: location.into() },
        };
        let dataset =
            open_dataset(&config, dir.path(), &ctx).await.unwrap_or_else(|e| panic!("{location}: {e}"));
        assert_eq!(dataset.rows, Some(20_000), "{location}");
        for key in [&ids[0], &ids[half - 1], &ids[half], &ids[ids.len() - 1]] {
            let outcome = dataset.lookup.lookup(key, None).await.expect("lookup");
            assert_eq!(keys(&outcome.batch, "id_number"), vec![key.clone()], "{location}");
        }
        ctx.register_table(name, Arc::clone(&dataset.table)).expect("register");
        let batches = ctx
            .sql(&format!("SELECT count(*) FROM {name}"))
            .await
            .expect("sql")
            .collect()
            .await
            .expect("run");
        assert_eq!(
            batches[0].column(0).as_primitive::<arrow::datatypes::Int64Type>().value(0),
            20_000,
            "{location}"
        );
    }

    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    let config = DatasetConfig {
        name: "empty".into(),
        key: "id_number".into(),
        supplier: None,
        source: SourceConfig::Parquet { location: "empty".into() },
    };
    let err = open_dataset(&config, dir.path(), &ctx).await.expect_err("no files");
    assert!(err.to_string().contains("no .parquet files"), "{err}");
}
