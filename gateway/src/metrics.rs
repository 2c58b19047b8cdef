//! Operators' metrics at `/metrics`, in the Prometheus / OpenMetrics text format: data calls by
//! operation and outcome, latency histograms, cache and rate-limit outcomes, supplier latency,
//! SQL queries running and waiting for a slot, and the exchange log's own lag, group sizes and
//! fsync time.
//!
//! Labels name operations, resources, problem codes and outcomes only: never a person, a key,
//! a case number, or a calling system (the exchange log answers who called).

use prometheus_client::encoding::EncodeLabelSet;
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

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub operation: &'static str,
    pub status: u16,
    /// The problem code of a refused or failed call; empty on success.
    pub code: &'static str,
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

fn latency_histogram() -> Histogram {
    // 50 µs to about 6.5 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 18))
}

/// Every metric the gateway exports, and the registry that encodes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub calls: Family<CallLabels, Counter>,
    pub call_seconds: Family<OperationLabels, Histogram, fn() -> Histogram>,
    pub cache: Family<OutcomeLabels, Counter>,
    pub rate_limited: Family<OutcomeLabels, Counter>,
    /// Requests the HTTP layer refused before any route, by reason.
    pub malformed: Family<OutcomeLabels, Counter>,
    pub upstream_seconds: Family<ResourceLabels, Histogram, fn() -> Histogram>,
    pub log: LogMetrics,
}

impl Metrics {
    pub fn new(log: LogMetrics, sql: &SqlMetrics) -> Metrics {
        let mut registry = Registry::with_prefix("tongban");
        let calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "data_calls",
            "Data-plane calls by operation, status and problem code",
            calls.clone(),
        );
        let call_seconds: Family<OperationLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "data_call_duration",
            "Data-plane call latency, from arrival to the record being durable",
            Unit::Seconds,
            call_seconds.clone(),
        );
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
        Metrics { registry, calls, call_seconds, cache, rate_limited, malformed, upstream_seconds, log }
    }

    /// The registry in the OpenMetrics text format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::with_capacity(16 * 1024);
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}
