//! Durable append throughput of the exchange log: callers each waiting for their own record,
//! as data calls do, with records made durable by `fdatasync` (the default) and, for
//! comparison, only handed to the operating system. The log is on the same disk as the
//! target directory, never on tmpfs, so `fdatasync` reaches the device.
//!
//! `cargo bench -p tongban-benches --bench exchange_log`

// A benchmark reports on standard output.
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tongban_exchange::{Durability, ExchangeLog, ExchangeLogConfig, ExchangeRecord, LogMetrics, Phase};
use tongban_policy::decision::Operation;

const SECONDS: u64 = 4;

/// A record shaped like a cached verification's.
fn record() -> ExchangeRecord {
    let mut record = ExchangeRecord::begin(Operation::Verify);
    record.system = Some("0196a3c2-7c1e-7d3a-9f00-1b2c3d4e5f60".into());
    record.department = Some("11440000MB2C87005X".into());
    record.region = Some("440000".into());
    record.resources = vec!["A01-410000-0001".into()];
    record.resource_versions = vec![1];
    record.suppliers = vec!["11410000MB1C45002P".into()];
    record.supplier_regions = vec!["410000".into()];
    record.grants = vec!["0196a3c2-7c1e-7d3a-9f00-1b2c3d4e5f61".into()];
    record.service_item = Some("KSTB-GA-001".into());
    record.case_digest = Some("3b1f0c9d2e8a7b6c5d4e3f2a1b0c9d8e".into());
    record.operator_digest = Some("9d8e3b1f0c9d2e8a7b6c5d4e3f2a1b0c".into());
    record.items = vec!["name".into(), "status".into()];
    record.rows = 1;
    record.bytes_in = 96;
    record.bytes_out = 88;
    record.status = 200;
    record.phases =
        vec![(Phase::Authenticate, 4), (Phase::ResolveGrant, 6), (Phase::RateLimit, 1), (Phase::Cache, 2)];
    record.finished_at = Some(chrono::Utc::now());
    record
}

/// A value from the log's metrics in the text format.
fn metric(text: &str, name: &str) -> f64 {
    text.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok())).unwrap_or(0.0)
}

async fn run(durability: Durability, writers: usize) {
    let base =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| std::path::PathBuf::from("target"), Into::into);
    std::fs::create_dir_all(&base).expect("target directory");
    let dir = tempfile::tempdir_in(&base).expect("log directory");
    let config = ExchangeLogConfig { dir: dir.path().to_owned(), durability, ..ExchangeLogConfig::default() };
    let metrics = LogMetrics::new();
    let log = ExchangeLog::open(&config, metrics.clone()).await.expect("open");
    let written = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(SECONDS);
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let log = log.clone();
            let written = Arc::clone(&written);
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    log.write(record()).await.expect("write");
                    written.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("writer");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let records = written.load(Ordering::Relaxed);
    let text =
        tongban_gateway::metrics::Metrics::new(metrics, &tongban_gateway::metrics::SqlMetrics::default())
            .encode()
            .expect("metrics");
    let groups = metric(&text, "tongban_exchange_log_group_records_count");
    let fsyncs = metric(&text, "tongban_exchange_log_fsync_duration_seconds_count");
    let fsync_seconds = metric(&text, "tongban_exchange_log_fsync_duration_seconds_sum");
    let bytes: u64 = std::fs::read_dir(dir.path())
        .expect("segments")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!(
        "exchange log append: durability={durability:?} writers={writers} records/s={:.0} records/group={:.1} fsync_mean_ms={} bytes/record={:.0}",
        records as f64 / elapsed,
        records as f64 / groups.max(1.0),
        if fsyncs > 0.0 { format!("{:.3}", fsync_seconds / fsyncs * 1e3) } else { "-".into() },
        bytes as f64 / records.max(1) as f64,
    );
    let report = tongban_exchange::audit::verify(dir.path()).expect("audit");
    assert!(report.intact() && report.records == records, "{report:?}");
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        for durability in [Durability::Fsync, Durability::Write] {
            for writers in [1, 32, 256] {
                run(durability, writers).await;
            }
        }
    });
}
