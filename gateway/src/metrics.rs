//! Operators' metrics at `/metrics`, in the Prometheus / OpenMetrics text format: data calls by
//! operation and outcome, latency histograms, cache and rate-limit outcomes, supplier latency,
//! SQL queries running and waiting for a slot, and the exchange log's own lag, group sizes and
//! fsync time.
//!
//! Labels name operations, resources, problem codes and outcomes only: never a person, a key,
//! a case number, or a calling system (the exchange log answers who called).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabel, EncodeLabelSet, EncodeMetric, LabelSetEncoder,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use tongban_exchange::LogMetrics;

/// Queries holding a slot and queries waiting for one, for `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct SqlMetrics {
    pub running: Gauge,
    pub waiting: Gauge,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct CallLabels {
    pub operation: &'static str,
    pub status: u16,
    /// The problem code of a refused or failed call; none on success.
    pub code: Option<&'static str>,
}

/// Written by hand so that a successful call carries no `code` label at all, rather than the
/// `code=""` the derived encoding gives an absent value.
impl EncodeLabelSet for CallLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        ("operation", self.operation).encode(encoder.encode_label())?;
        ("status", self.status).encode(encoder.encode_label())?;
        if let Some(code) = self.code {
            ("code", code).encode(encoder.encode_label())?;
        }
        Ok(())
    }
}

/// A management API request: its method, its route's template (never the path itself, which
/// may name a person or a key) and its status.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub operation: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabels {
    pub resource: String,
}

/// Data-plane calls and their latency, counted once and read by both exporters: Prometheus
/// reads them at each scrape of `/metrics`, and OpenTelemetry at each OTLP export
/// ([`crate::telemetry::export_calls`]).
#[derive(Debug, Default)]
pub struct CallMetrics {
    /// Each label set's count, beside its operation's latencies, so that a call is one look-up.
    calls: DashMap<CallLabels, (Counter, Arc<Timing>)>,
    durations: DashMap<&'static str, Arc<Timing>>,
}

/// One operation's latencies: their distribution for Prometheus, and their count and total,
/// which the histogram does not give out, for OTLP.
#[derive(Debug)]
struct Timing {
    histogram: Histogram,
    count: AtomicU64,
    total_micros: AtomicU64,
}

impl Timing {
    fn new() -> Timing {
        Timing { histogram: latency_histogram(), count: AtomicU64::new(0), total_micros: AtomicU64::new(0) }
    }

    fn observe(&self, seconds: f64) {
        self.histogram.observe(seconds);
        self.count.fetch_add(1, Ordering::Relaxed);
        // Whole microseconds: a call is never longer than the u64 range of them.
        self.total_micros.fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }
}

impl CallMetrics {
    /// Counts one call and its latency.
    pub fn record(&self, labels: CallLabels, seconds: f64) {
        // A read lock on the common path; the write locks only for a label set seen first.
        if let Some(entry) = self.calls.get(&labels) {
            let (counter, timing) = entry.value();
            counter.inc();
            timing.observe(seconds);
            return;
        }
        let timing =
            Arc::clone(&self.durations.entry(labels.operation).or_insert_with(|| Arc::new(Timing::new())));
        let entry = self.calls.entry(labels).or_insert_with(|| (Counter::default(), timing));
        let (counter, timing) = entry.value();
        counter.inc();
        timing.observe(seconds);
    }

    /// Calls so far, by label set.
    pub fn calls(&self) -> Vec<(CallLabels, u64)> {
        self.calls.iter().map(|entry| (entry.key().clone(), entry.value().0.get())).collect()
    }

    /// Each operation's calls and the seconds they took in all.
    pub fn durations(&self) -> Vec<(&'static str, u64, f64)> {
        self.durations
            .iter()
            .map(|entry| {
                let timing = entry.value();
                let seconds = timing.total_micros.load(Ordering::Relaxed) as f64 / 1e6;
                (*entry.key(), timing.count.load(Ordering::Relaxed), seconds)
            })
            .collect()
    }
}

impl Collector for CallMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(
            "data_calls",
            "Data-plane calls by operation, status and problem code",
            None,
            MetricType::Counter,
        )?;
        for entry in &self.calls {
            entry.value().0.encode(family.encode_family(entry.key())?)?;
        }
        let mut family = encoder.encode_descriptor(
            "data_call_duration",
            "Data-plane call latency, from arrival to the record being durable",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for entry in &self.durations {
            let labels = OperationLabels { operation: entry.key() };
            entry.value().histogram.encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

fn latency_histogram() -> Histogram {
    // 50 µs to about 6.5 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 18))
}

/// Every metric the gateway exports, and the registry that encodes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub calls: Arc<CallMetrics>,
    pub cache: Family<OutcomeLabels, Counter>,
    pub rate_limited: Family<OutcomeLabels, Counter>,
    /// Requests the HTTP layer refused before any route, by reason.
    pub malformed: Family<OutcomeLabels, Counter>,
    pub upstream_seconds: Family<ResourceLabels, Histogram, fn() -> Histogram>,
    /// Management API requests, by method, route and status.
    pub api_requests: Family<ApiLabels, Counter>,
    pub log: LogMetrics,
}

impl Metrics {
    pub fn new(log: LogMetrics, sql: &SqlMetrics) -> Metrics {
        let mut registry = Registry::with_prefix("tongban");
        let calls = Arc::new(CallMetrics::default());
        registry.register_collector(Box::new(Arc::clone(&calls)));
        let cache = Family::<OutcomeLabels, Counter>::default();
        registry.register("cache_lookups", "Answer cache outcomes (hit, miss, bypass)", cache.clone());
        let rate_limited = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "rate_limited",
            "Calls refused by a rate limit, by the limit",
            rate_limited.clone(),
        );
        let malformed = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "http_refused",
            "Requests refused by the HTTP layer before any route was known (malformed, heads too large, heads too slow)",
            malformed.clone(),
        );
        let upstream_seconds: Family<ResourceLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "upstream_duration",
            "Supplier API latency of proxied calls, by resource",
            Unit::Seconds,
            upstream_seconds.clone(),
        );
        let api_requests = Family::<ApiLabels, Counter>::default();
        registry.register(
            "api_requests",
            "Management API requests by method, route and status",
            api_requests.clone(),
        );
        let sql_registry = registry.sub_registry_with_prefix("sql");
        sql_registry.register("running_queries", "SQL queries holding a slot", sql.running.clone());
        sql_registry.register("waiting_queries", "SQL queries waiting for a slot", sql.waiting.clone());
        let log_registry = registry.sub_registry_with_prefix("exchange_log");
        log_registry.register("appended_records", "Records made durable", log.appended.clone());
        log_registry.register(
            "write_failures",
            "Group writes that failed (calls refused)",
            log.failures.clone(),
        );
        log_registry.register("sealed_segments", "Segments sealed", log.sealed.clone());
        log_registry.register(
            "pending_records",
            "Records waiting to be written (log lag)",
            log.pending.clone(),
        );
        log_registry.register("group_records", "Records per group commit", log.batch_records.clone());
        log_registry.register_with_unit(
            "fsync_duration",
            "Time in fdatasync",
            Unit::Seconds,
            log.fsync_seconds.clone(),
        );
        Metrics { registry, calls, cache, rate_limited, malformed, upstream_seconds, api_requests, log }
    }

    /// The registry in the Prometheus text format (version 0.0.4), for scrapers that do not
    /// ask for OpenMetrics: the same samples, with a counter's help and type under its
    /// `_total` name, and without OpenMetrics' unit lines and end marker.
    pub fn encode_text(&self, standing: &Standing) -> Result<String, std::fmt::Error> {
        Ok(open_metrics_to_text(&self.encode_with(standing)?))
    }

    /// Every series in the OpenMetrics text format: those counted, then those read now.
    pub fn encode_with(&self, standing: &Standing) -> Result<String, std::fmt::Error> {
        let mut text = self.encode()?;
        // One end marker, after both registries.
        if text.ends_with("# EOF\n") {
            text.truncate(text.len() - "# EOF\n".len());
        }
        prometheus_client::encoding::text::encode(&mut text, &standing_registry(standing))?;
        Ok(text)
    }

    /// The counted series in the OpenMetrics text format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::with_capacity(16 * 1024);
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// How the gateway stands at a scrape, read then rather than counted: the store's pool, the
/// answer cache and the datasets. The build and the process are read by [`Metrics`] itself.
#[derive(Debug, Clone, Default)]
pub struct Standing {
    /// The store pool's open connections, and of those the idle.
    pub store_connections: (u32, u32),
    pub cache_entries: u64,
    /// Whether every configured dataset is open and answering.
    pub datasets_ready: bool,
    /// Rows of each open dataset, where known.
    pub dataset_rows: Vec<(String, u64)>,
    /// Each peer gateway's health, on a gateway with peers.
    pub peers: Vec<PeerStanding>,
}

/// How exchanges with one peer gateway stand at a scrape.
#[derive(Debug, Clone, Default)]
pub struct PeerStanding {
    pub peer: String,
    /// Whether the last call to it was answered.
    pub reachable: bool,
    /// Seconds since it last confirmed the copy of its catalog held here.
    pub catalog_age_seconds: Option<i64>,
    /// Messages for it written and not yet delivered, and the oldest one's age.
    pub outbox_pending: i64,
    pub outbox_oldest_pending_seconds: Option<i64>,
    /// Messages it refused for good.
    pub outbox_refused: i64,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DatasetLabels {
    dataset: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabels {
    peer: String,
}

/// The series read at each scrape, in a registry of their own.
fn standing_registry(standing: &Standing) -> Registry {
    let mut registry = Registry::default();
    {
        let gateway = registry.sub_registry_with_prefix("tongban");
        let build = Family::<VersionLabels, Gauge>::default();
        build.get_or_create(&VersionLabels { version: env!("CARGO_PKG_VERSION") }).set(1);
        gateway.register("build_info", "The running build, by version (always 1)", build);
        let connections = Family::<StateLabels, Gauge>::default();
        let (open, idle) = standing.store_connections;
        connections.get_or_create(&StateLabels { state: "idle" }).set(i64::from(idle));
        connections.get_or_create(&StateLabels { state: "in_use" }).set(i64::from(open.saturating_sub(idle)));
        gateway.register("store_connections", "Connections of the store's pool, idle or in use", connections);
        let entries = Gauge::<i64>::default();
        entries.set(i64::try_from(standing.cache_entries).unwrap_or(i64::MAX));
        gateway.register("cache_entries", "Answers held by the answer cache", entries);
        let ready = Gauge::<i64>::default();
        ready.set(i64::from(standing.datasets_ready));
        gateway.register("datasets_ready", "1 when every configured dataset is open and answering", ready);
        let rows = Family::<DatasetLabels, Gauge>::default();
        for (dataset, count) in &standing.dataset_rows {
            rows.get_or_create(&DatasetLabels { dataset: dataset.clone() })
                .set(i64::try_from(*count).unwrap_or(i64::MAX));
        }
        gateway.register("dataset_rows", "Rows of each open dataset", rows);
        if !standing.peers.is_empty() {
            let family = || Family::<PeerLabels, Gauge>::default();
            let (reachable, age, pending, oldest, refused) =
                (family(), family(), family(), family(), family());
            for peer in &standing.peers {
                let labels = PeerLabels { peer: peer.peer.clone() };
                reachable.get_or_create(&labels).set(i64::from(peer.reachable));
                if let Some(seconds) = peer.catalog_age_seconds {
                    age.get_or_create(&labels).set(seconds);
                }
                pending.get_or_create(&labels).set(peer.outbox_pending);
                oldest.get_or_create(&labels).set(peer.outbox_oldest_pending_seconds.unwrap_or(0));
                refused.get_or_create(&labels).set(peer.outbox_refused);
            }
            gateway.register(
                "peer_reachable",
                "1 when the last call to the peer gateway was answered",
                reachable,
            );
            gateway.register_with_unit(
                "peer_catalog_age",
                "Time since the peer last confirmed the copy of its catalog held here",
                Unit::Seconds,
                age,
            );
            gateway.register(
                "peer_outbox_pending",
                "Hand-offs to the peer written and not yet delivered",
                pending,
            );
            gateway.register_with_unit(
                "peer_outbox_oldest_pending_age",
                "Age of the oldest hand-off to the peer not yet delivered (0 when none waits)",
                Unit::Seconds,
                oldest,
            );
            gateway.register("peer_outbox_refused", "Hand-offs the peer refused for good", refused);
        }
    }
    if let Some(process) = ProcessFigures::read() {
        let cpu = Counter::<f64, std::sync::atomic::AtomicU64>::default();
        cpu.inc_by(process.cpu_seconds);
        registry.register_with_unit("process_cpu", "User and system processor time", Unit::Seconds, cpu);
        for (name, help, value) in [
            ("process_resident_memory_bytes", "Resident memory", process.resident_bytes),
            ("process_virtual_memory_bytes", "Virtual memory", process.virtual_bytes),
            ("process_open_fds", "Open file descriptors", process.open_fds),
            ("process_max_fds", "The limit on open file descriptors", process.max_fds),
            ("process_start_time_seconds", "Start time since the Unix epoch", process.start_time_seconds),
        ] {
            let gauge = Gauge::<i64>::default();
            gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
            registry.register(name, help, gauge);
        }
    }
    registry
}

/// The process's own figures, from `/proc` (Linux).
struct ProcessFigures {
    cpu_seconds: f64,
    resident_bytes: u64,
    virtual_bytes: u64,
    open_fds: u64,
    max_fds: u64,
    start_time_seconds: u64,
}

impl ProcessFigures {
    fn read() -> Option<ProcessFigures> {
        // The kernel reports times in USER_HZ, which is 100 on Linux whatever the kernel's own
        // tick rate.
        const TICKS_PER_SECOND: u64 = 100;
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name, which is in parentheses and may hold spaces: the
        // state is field 3 of proc(5), so field n is at index n - 3.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
        let (utime, stime, start_ticks, virtual_bytes) = (field(14)?, field(15)?, field(22)?, field(23)?);
        // In kilobytes, whatever the page size.
        let resident_kib: u64 = std::fs::read_to_string("/proc/self/status")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:")?.trim().strip_suffix("kB")?.trim().parse().ok())?;
        let boot_time = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<u64>().ok())?;
        let max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()?
            .lines()
            .find(|l| l.starts_with("Max open files"))?
            .split_whitespace()
            .nth(3)?
            .parse()
            .ok()?;
        Some(ProcessFigures {
            cpu_seconds: (utime + stime) as f64 / TICKS_PER_SECOND as f64,
            resident_bytes: resident_kib * 1024,
            virtual_bytes,
            open_fds: std::fs::read_dir("/proc/self/fd").ok()?.count() as u64,
            max_fds,
            start_time_seconds: boot_time + start_ticks / TICKS_PER_SECOND,
        })
    }
}

/// OpenMetrics text as the Prometheus text format 0.0.4 reads it.
fn open_metrics_to_text(open_metrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = open_metrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut text = String::with_capacity(open_metrics.len());
    for line in open_metrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let described = ["# HELP ", "# TYPE "].into_iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            counters.contains(name).then(|| format!("{prefix}{name}_total {tail}"))
        });
        match described {
            Some(line) => text.push_str(line.trim_end()),
            None => text.push_str(line),
        }
        text.push('\n');
    }
    text
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A call is counted once; the scrape and the figures OTLP reads show the same count.
    #[test]
    fn calls_are_counted_once_and_read_alike_by_both_exporters() {
        let metrics = Metrics::new(LogMetrics::new(), &SqlMetrics::default());
        let verified = CallLabels { operation: "verify", status: 200, code: None };
        let refused = CallLabels { operation: "sql", status: 403, code: Some("forbidden_table") };
        metrics.calls.record(verified.clone(), 0.002);
        metrics.calls.record(verified.clone(), 0.004);
        metrics.calls.record(refused.clone(), 0.001);

        let mut calls = metrics.calls.calls();
        calls.sort_by_key(|(labels, _)| labels.operation);
        assert_eq!(calls, [(refused, 1), (verified, 2)]);
        let mut durations = metrics.calls.durations();
        durations.sort_by_key(|(operation, _, _)| *operation);
        assert_eq!(
            durations.iter().map(|(o, n, _)| (*o, *n)).collect::<Vec<_>>(),
            [("sql", 1), ("verify", 2)]
        );
        assert!((durations[1].2 - 0.006).abs() < 1e-6, "{durations:?}");

        let text = metrics.encode().expect("encoded");
        assert!(text.contains("tongban_data_calls_total{operation=\"verify\",status=\"200\"} 2"), "{text}");
        assert!(
            text.contains(
                "tongban_data_calls_total{operation=\"sql\",status=\"403\",code=\"forbidden_table\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("tongban_data_call_duration_seconds_count{operation=\"verify\"} 2"), "{text}");
        assert!(text.contains("# TYPE tongban_data_call_duration_seconds histogram"), "{text}");

        let plain = metrics.encode_text(&Standing::default()).expect("encoded");
        assert!(plain.contains("# TYPE tongban_data_calls_total counter\n"), "{plain}");
        assert!(plain.contains("# HELP tongban_data_calls_total Data-plane calls"), "{plain}");
        assert!(!plain.contains("# EOF") && !plain.contains("# UNIT"), "{plain}");
        assert!(plain.contains("tongban_data_calls_total{operation=\"verify\",status=\"200\"} 2"), "{plain}");
    }

    /// `promtool check metrics` on `text`: `None` when promtool is not installed and the run
    /// does not require it (`tests/run.sh` installs it).
    pub(crate) fn promtool_check(text: &str) -> Option<std::process::Output> {
        let promtool = std::env::var_os("TONGBAN_PROMTOOL").unwrap_or_else(|| "/usr/bin/promtool".into());
        if !std::path::Path::new(&promtool).exists() {
            assert!(std::env::var_os("TONGBAN_REQUIRE_PG").is_none(), "tests/run.sh installs promtool");
            eprintln!("promtool not installed: run through tests/run.sh");
            return None;
        }
        let mut check = std::process::Command::new(&promtool)
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("promtool starts");
        use std::io::Write as _;
        check.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("written");
        Some(check.wait_with_output().expect("promtool ran"))
    }

    #[test]
    fn peers_health_is_read_at_each_scrape() {
        let metrics = Metrics::new(LogMetrics::new(), &SqlMetrics::default());
        let standing = Standing {
            peers: vec![
                PeerStanding {
                    peer: "henan".into(),
                    reachable: false,
                    catalog_age_seconds: Some(42),
                    outbox_pending: 3,
                    outbox_oldest_pending_seconds: Some(17),
                    outbox_refused: 1,
                },
                PeerStanding { peer: "anhui".into(), reachable: true, ..PeerStanding::default() },
            ],
            ..Standing::default()
        };
        let text = metrics.encode_text(&standing).expect("encoded");
        for line in [
            "tongban_peer_reachable{peer=\"henan\"} 0",
            "tongban_peer_reachable{peer=\"anhui\"} 1",
            "tongban_peer_catalog_age_seconds{peer=\"henan\"} 42",
            "tongban_peer_outbox_pending{peer=\"henan\"} 3",
            "tongban_peer_outbox_oldest_pending_age_seconds{peer=\"henan\"} 17",
            "tongban_peer_outbox_refused{peer=\"henan\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
        }
        // A peer never asked has no age rather than a made-up one.
        assert!(!text.contains("tongban_peer_catalog_age_seconds{peer=\"anhui\"}"), "{text}");
        // A gateway without peers has no peer series at all.
        assert!(!metrics.encode_text(&Standing::default()).expect("encoded").contains("tongban_peer_"));
        if let Some(output) = promtool_check(&text) {
            assert!(
                output.status.success(),
                "promtool: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}
