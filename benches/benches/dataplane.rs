//! The data plane over the 10-million-person household file, on one core:
//!
//! - uncached verification through the whole gateway lifecycle (API key, purpose, decision,
//!   key look-up, exchange record) against DuckDB answering the same point query on the same
//!   Parquet file (`benches/duckdb_point.py`);
//! - SQL through a per-grant view (masked columns, row scope) against the same query run
//!   directly on DataFusion over the raw table.

#![allow(clippy::print_stdout)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray};
use axum::body::Body;
use axum::http::Request;
use datafusion::prelude::SessionContext;
use http_body_util::BodyExt;
use rand::SeedableRng;
use rand::seq::IndexedRandom;
use tongban_benches::{ensure_dataset, micros, percentiles, rows_from_env};
use tongban_connectors::view::mask_udf;
use tongban_connectors::{DatasetConfig, GrantedView, SourceConfig, ViewColumn, ViewScope, session_config};
use tongban_exchange::ExchangeLog;
use tongban_gateway::config::DataConfig;
use tongban_gateway::data::DataPlane;
use tongban_gateway::datasets::DatasetRegistry;
use tongban_gateway::datasets::Readiness;
use tongban_gateway::state::AppState;
use tongban_platform::{Caller, DemandInput, Platform};
use tongban_policy::catalog::MaskRule;
use tongban_policy::workflow::{Action, Terms};
use tongban_synth::{HOUSEHOLD_FILE, HOUSING_FUND_FILE, SOCIAL_INSURANCE_FILE};
use tower::ServiceExt;

const PROBES: usize = 2_000;
const SQL_RUNS: usize = 30;
/// The demo grant of 广东省公安厅's system on 户籍: these items, these masks, these rows.
const SCOPE: &str = "4115";
/// The service item of the benchmark's own grant.
const SERVICE_ITEM: &str = "KSTB-GA-002";

async fn person(platform: &Platform, username: &str) -> Caller {
    let (user, _) = platform.store.user_with_password(username).await.expect("store").expect("demo user");
    let department = platform.store.department(&user.department_code).await.expect("department");
    Caller::User { user, department }
}

async fn approve_benchmark_grant(platform: &Platform, system_id: &str) {
    let terms = Terms {
        items: ["id_number", "name", "division_code", "status"].map(String::from).to_vec(),
        division_prefix: SCOPE.into(),
        rate_per_second: 1_000_000,
        daily_quota: 1_000_000_000,
        valid_until: tongban_platform::Clock::system().now().date() + chrono::Duration::days(30),
    };
    let applicant = person(platform, "demander.guangdong-police").await;
    let demand = platform
        .file_demand(
            &applicant,
            DemandInput {
                resource_code: "A01-410000-0001".into(),
                system_id: Some(system_id.to_owned()),
                service_item: SERVICE_ITEM.into(),
                purpose: "基准测试".into(),
                legal_basis: "基准测试".into(),
                terms: terms.clone(),
            },
        )
        .await
        .expect("file");
    let steps = [
        ("demander.guangdong-police", Action::Submit),
        ("reviewer.henan", Action::PassConformity { terms: terms.clone() }),
        ("supplier.henan-police", Action::SupplierApprove { terms }),
    ];
    let mut record = demand;
    for (who, action) in steps {
        let actor = person(platform, who).await;
        record = platform.act_on_demand(&actor, &record.id, record.version, action).await.expect("act");
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rows = rows_from_env(10_000_000);
    let dir = ensure_dataset(rows);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(run(rows, &dir));
}

async fn run(rows: u64, dir: &Path) {
    let config = |name: &str, file: &str| DatasetConfig {
        name: name.into(),
        key: "id_number".into(),
        supplier: tongban_gateway::demo::seed::dataset_supplier(name),
        source: SourceConfig::Parquet { location: file.into() },
    };
    let configs = [
        config("household", HOUSEHOLD_FILE),
        config("social_insurance", SOCIAL_INSURANCE_FILE),
        config("housing_fund", HOUSING_FUND_FILE),
    ];
    let registry = Arc::new(DatasetRegistry::open(&configs, dir).await.expect("datasets"));
    let raw = SessionContext::new_with_config(session_config().with_target_partitions(1));
    raw.register_table("household", Arc::clone(&registry.datasets["household"].table)).expect("register");

    // Probes: people within the grant's rows, each verified by name and household status.
    let people = raw
        .sql(&format!("SELECT id_number, name, status FROM household WHERE division_code LIKE '{SCOPE}%'"))
        .await
        .expect("plan")
        .collect()
        .await
        .expect("probes");
    let mut candidates = Vec::new();
    for batch in &people {
        let text = |i: usize| {
            arrow::compute::cast(batch.column(i), &arrow::datatypes::DataType::Utf8).expect("text")
        };
        let (ids, names, statuses) = (text(0), text(1), text(2));
        let (ids, names, statuses) =
            (ids.as_string::<i32>(), names.as_string::<i32>(), statuses.as_string::<i32>());
        for row in 0..batch.num_rows() {
            if names.is_valid(row) && statuses.is_valid(row) {
                candidates.push((
                    ids.value(row).to_owned(),
                    names.value(row).to_owned(),
                    statuses.value(row).to_owned(),
                ));
            }
        }
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let probes: Vec<_> =
        (0..PROBES).map(|_| candidates.choose(&mut rng).expect("people in scope").clone()).collect();
    println!("dataset rows={rows} people_in_scope={} probes={PROBES}", candidates.len());

    // The gateway, as `tongban serve` builds it, with the demo's store and grants.
    let platform =
        Platform::in_memory(configs.iter().map(|c| (c.name.clone(), c.supplier.clone())).collect())
            .await
            .expect("platform");
    let credentials = tongban_gateway::demo::seed::seed(&platform).await.expect("seed");
    // The demo's grants allow 10 calls a second; the benchmark files and approves its own
    // demand, through the workflow, for a rate that does not limit a latency run.
    let system =
        credentials.systems.iter().find(|s| s.name == "广东省公安厅跨省户籍业务系统").expect("system");
    approve_benchmark_grant(&platform, &system.id).await;
    platform.grants.reload(&platform.store).await.expect("grants");
    let key = system.api_key.clone();
    let log_dir = tempfile::tempdir().expect("temporary directory");
    let log = ExchangeLog::open_in(log_dir.path()).await.expect("exchange log");
    // Rate limits high enough not to interfere with a latency run; the cache is off, so every
    // verification reads the dataset.
    let mut config = DataConfig::default();
    config.limits.system_per_second = 1_000_000;
    config.limits.resource_per_second = 1_000_000;
    config.cache.max_ttl_secs = 0;
    let data = DataPlane::new(config, log, platform.store.clone()).expect("data plane");
    let state = AppState::new(platform, data);
    state.set_readiness(Readiness::Ready(Arc::clone(&registry)));
    let app = tongban_gateway::app(state);
    let call = |method: &str, uri: &str, body: String| {
        Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/json")
            .header("x-tongban-service-item", SERVICE_ITEM)
            .header("x-tongban-case-number", "GD-2026-000731")
            .header("x-tongban-operator", "0031")
            .body(Body::from(body))
            .expect("request")
    };

    // `TONGBAN_BENCH_DATAPLANE=sql` runs only the SQL part.
    if std::env::var("TONGBAN_BENCH_DATAPLANE").map_or(true, |v| v != "sql") {
        verification(&app, &call, &probes, dir, log_dir.path()).await;
    }
    sql(&registry, &raw, &app, &call).await;
}

/// Verification through the whole lifecycle against DuckDB's point query on the same file.
async fn verification(
    app: &axum::Router,
    call: &impl Fn(&str, &str, String) -> Request<Body>,
    probes: &[(String, String, String)],
    dir: &Path,
    work: &Path,
) {
    // The first 200 calls warm the page cache.
    let mut latencies = Vec::with_capacity(PROBES);
    let mut matched = 0;
    for (round, (id, name, status)) in probes.iter().enumerate() {
        let body = serde_json::json!({"resource": "A01-410000-0001", "key": id,
            "claims": {"name": name, "status": if round % 2 == 0 { status.as_str() } else { "迁出" }}})
        .to_string();
        let started = Instant::now();
        let response =
            app.clone().oneshot(call("POST", "/api/v1/data/verify", body)).await.expect("infallible");
        let status_code = response.status();
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        latencies.push(started.elapsed());
        assert_eq!(status_code, 200, "{}", String::from_utf8_lossy(&bytes));
        matched += usize::from(bytes.windows(7).any(|w| w == b"\"match\""));
    }
    assert_eq!(matched, PROBES, "every probe's name matches");
    let warm = &mut latencies[200..];
    let gateway = percentiles(warm);
    println!(
        "verify gateway p50_us={:.0} p90_us={:.0} p99_us={:.0} max_us={:.0}",
        micros(gateway.p50),
        micros(gateway.p90),
        micros(gateway.p99),
        micros(gateway.max)
    );

    // DuckDB on the same file and keys, one thread.
    let probe_file = work.join("probes.txt");
    std::fs::write(&probe_file, probes.iter().map(|p| p.0.as_str()).collect::<Vec<_>>().join("\n"))
        .expect("probes");
    let python = std::env::var("TONGBAN_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("duckdb_point.py");
    let output = std::process::Command::new(&python)
        .arg(&script)
        .arg(dir.join(HOUSEHOLD_FILE))
        .arg(&probe_file)
        .output()
        .expect("run the DuckDB baseline");
    let duck = String::from_utf8_lossy(&output.stdout);
    match duck
        .lines()
        .find(|l| l.starts_with("{"))
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
    {
        Some(d) => {
            let p = |k: &str| d[k].as_f64().unwrap_or(f64::NAN);
            println!(
                "verify duckdb p50_us={:.0} p90_us={:.0} p99_us={:.0} max_us={:.0} version={}",
                p("p50_us"),
                p("p90_us"),
                p("p99_us"),
                p("max_us"),
                d["version"]
            );
            println!(
                "verify ratio duckdb/gateway p50={:.2} p99={:.2}",
                p("p50_us") / micros(gateway.p50),
                p("p99_us") / micros(gateway.p99)
            );
        }
        None => println!("verify duckdb unavailable: {} {}", duck, String::from_utf8_lossy(&output.stderr)),
    }
}

/// SQL through a per-grant view against the same rows asked of the raw table, then through
/// the gateway. `TONGBAN_BENCH_EXPLAIN=1` prints both plans, analysed, for each query.
async fn sql(
    registry: &DatasetRegistry,
    raw: &SessionContext,
    app: &axum::Router,
    call: &impl Fn(&str, &str, String) -> Request<Body>,
) {
    // SQL: the per-grant view against the raw table, same query, same settings.
    let view = GrantedView::try_new(
        Arc::clone(&registry.datasets["household"].table),
        &[
            ViewColumn { name: "id_number".into(), mask: MaskRule::IdNumber },
            ViewColumn { name: "name".into(), mask: MaskRule::Name },
            ViewColumn { name: "division_code".into(), mask: MaskRule::None },
            ViewColumn { name: "status".into(), mask: MaskRule::None },
        ],
        Some(&ViewScope { column: "division_code".into(), prefix: SCOPE.into() }),
    )
    .expect("view");
    let viewed = SessionContext::new_with_config(session_config().with_target_partitions(1));
    viewed.register_table("household", Arc::new(view)).expect("register");
    // The raw table again, with the view's masks callable as functions: what direct
    // DataFusion costs when it computes the same masks, so that the view's own overhead can be
    // told from the cost of masking.
    let masked_direct = SessionContext::new_with_config(session_config().with_target_partitions(1));
    masked_direct
        .register_table("household", Arc::clone(&registry.datasets["household"].table))
        .expect("register");
    masked_direct.register_udf(mask_udf(MaskRule::IdNumber));
    masked_direct.register_udf(mask_udf(MaskRule::Name));
    // (caller's query through the view, the same rows asked of the raw table directly, and the
    // same again with the view's masks applied as functions)
    let pairs = [
        (
            "aggregate over unmasked items",
            "SELECT status, count(*) AS n FROM household GROUP BY status".to_owned(),
            format!(
                "SELECT status, count(*) AS n FROM household WHERE division_code LIKE '{SCOPE}%' GROUP BY status"
            ),
            format!(
                "SELECT status, count(*) AS n FROM household WHERE division_code LIKE '{SCOPE}%' GROUP BY status"
            ),
        ),
        (
            "rows of one county, masked",
            "SELECT id_number, name, status FROM household WHERE division_code = '411502'".to_owned(),
            format!(
                "SELECT id_number, name, status FROM household WHERE division_code = '411502' AND division_code LIKE '{SCOPE}%'"
            ),
            format!(
                "SELECT tongban_mask_id_number(id_number) AS id_number, tongban_mask_name(name) AS name, status \
                 FROM household WHERE division_code = '411502' AND division_code LIKE '{SCOPE}%'"
            ),
        ),
        (
            "filter on a masked item",
            "SELECT count(*) FROM household WHERE name LIKE '张%'".to_owned(),
            format!("SELECT count(*) FROM household WHERE name LIKE '张%' AND division_code LIKE '{SCOPE}%'"),
            format!(
                "SELECT count(*) FROM household WHERE tongban_mask_name(name) LIKE '张%' AND division_code LIKE '{SCOPE}%'"
            ),
        ),
    ];
    if std::env::var_os("TONGBAN_BENCH_EXPLAIN").is_some() {
        for (label, through_view, direct, direct_masked) in &pairs {
            let sides = [
                ("view", &viewed, through_view),
                ("direct", raw, direct),
                ("direct with masks", &masked_direct, direct_masked),
            ];
            for (side, ctx, sql) in sides {
                let plan = ctx.sql(&format!("EXPLAIN ANALYZE {sql}")).await.expect("plan");
                let batches = plan.collect().await.expect("explain");
                let text = arrow::util::pretty::pretty_format_batches(&batches).expect("format");
                println!("explain {label}, {side}:\n{text}");
            }
        }
    }
    for (label, through_view, direct, direct_masked) in &pairs {
        let (mut v, mut d, mut m) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..SQL_RUNS + 3 {
            let tv = time_query(&viewed, through_view).await;
            let td = time_query(raw, direct).await;
            let tm = time_query(&masked_direct, direct_masked).await;
            if round >= 3 {
                v.push(tv);
                d.push(td);
                m.push(tm);
            }
        }
        let (v, d, m) = (percentiles(&mut v), percentiles(&mut d), percentiles(&mut m));
        println!(
            "sql {label}: view p50_us={:.0} direct p50_us={:.0} ratio={:.2} (p90 {:.0} vs {:.0}); \
             direct with masks p50_us={:.0}, view / it={:.2}",
            micros(v.p50),
            micros(d.p50),
            micros(v.p50) / micros(d.p50),
            micros(v.p90),
            micros(d.p90),
            micros(m.p50),
            micros(v.p50) / micros(m.p50),
        );
    }

    // The same SQL through the whole gateway (sandbox session, decision, JSON, exchange log).
    for (label, through_view, _, _) in &pairs {
        let mut samples = Vec::new();
        for round in 0..SQL_RUNS + 3 {
            let body = serde_json::json!({ "query": through_view }).to_string();
            let started = Instant::now();
            let response =
                app.clone().oneshot(call("POST", "/api/v1/data/sql", body)).await.expect("infallible");
            let status = response.status();
            let bytes = response.into_body().collect().await.expect("body").to_bytes();
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
            if round >= 3 {
                samples.push(started.elapsed());
            }
        }
        let p = percentiles(&mut samples);
        println!("sql {label}: gateway p50_us={:.0} p90_us={:.0}", micros(p.p50), micros(p.p90));
    }
}

async fn time_query(ctx: &SessionContext, sql: &str) -> Duration {
    let started = Instant::now();
    let batches = ctx.sql(sql).await.expect("plan").collect().await.expect("run");
    std::hint::black_box(batches);
    started.elapsed()
}
