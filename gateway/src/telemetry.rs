//! OpenTelemetry: a span per data call and the data-call metrics, exported over OTLP/HTTP
//! (protobuf) when `[telemetry] otlp_endpoint` is set; nothing is collected otherwise. The
//! metrics are not counted here: each export reads the counts `/metrics` shows
//! ([`crate::metrics::CallMetrics`]), so the two can never disagree.
//!
//! Spans carry the operation, the exchange id, the resource, the status, the problem code and
//! the cache outcome, never a key, a claimed or returned value, a case number or an operator:
//! the exchange record holds the rest, under the same trace id.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use figment::Figment;
use figment::providers::Serialized;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Meter, MeterProvider as _, ObservableCounter};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use serde::{Deserialize, Serialize};

use crate::metrics::CallMetrics;

/// The target of the spans exported; only these reach the OTLP exporter.
pub const SPAN_TARGET: &str = "tongban::exchange";

/// `[telemetry]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// The OTLP/HTTP collector's base URL, such as `http://127.0.0.1:4318`; traces go to
    /// `/v1/traces` and metrics to `/v1/metrics` under it. Telemetry is off when absent.
    pub otlp_endpoint: Option<String>,
    pub service_name: String,
    /// How often spans and metrics are sent, in milliseconds.
    pub export_interval_ms: u64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig { otlp_endpoint: None, service_name: "tongban".into(), export_interval_ms: 5_000 }
    }
}

impl TelemetryConfig {
    /// The telemetry settings in `early`, the configuration file and environment variables
    /// ([`crate::config::file_and_env`]). Read before anything else, because diagnostics are
    /// set up before the rest of the configuration is loaded.
    pub fn resolve(early: &Figment) -> Result<TelemetryConfig, Box<figment::Error>> {
        Figment::from(Serialized::default("telemetry", TelemetryConfig::default()))
            .merge(early.clone())
            .extract_inner("telemetry")
            .map_err(Box::new)
    }
}

/// The meter of the OTLP exporter, once it is started.
static METER: OnceLock<Meter> = OnceLock::new();

/// The instruments reading the call metrics; kept so that their callbacks stay registered.
static CALL_INSTRUMENTS: OnceLock<(ObservableCounter<u64>, ObservableCounter<u64>, ObservableCounter<f64>)> =
    OnceLock::new();

/// Whether telemetry is being exported.
pub fn enabled() -> bool {
    METER.get().is_some()
}

/// Exports `calls` over OTLP at each export, when telemetry is on: every call by operation,
/// status and problem code, and each operation's calls and the seconds they took in all. The
/// distribution of latencies is on `/metrics`, and each call's own on its span.
pub fn export_calls(calls: &Arc<CallMetrics>) {
    let Some(meter) = METER.get() else { return };
    let counted = Arc::clone(calls);
    let calls_counter = meter
        .u64_observable_counter("tongban.data.calls")
        .with_description("Data-plane calls")
        .with_callback(move |observer| {
            for (labels, value) in counted.calls() {
                let mut attributes = vec![
                    KeyValue::new("operation", labels.operation),
                    KeyValue::new("http.response.status_code", i64::from(labels.status)),
                ];
                attributes.extend(labels.code.map(|code| KeyValue::new("code", code)));
                observer.observe(value, &attributes);
            }
        })
        .build();
    let counted = Arc::clone(calls);
    let timed_calls = meter
        .u64_observable_counter("tongban.data.call.duration.count")
        .with_description("Data-plane calls timed, by operation")
        .with_callback(move |observer| {
            for (operation, count, _) in counted.durations() {
                observer.observe(count, &[KeyValue::new("operation", operation)]);
            }
        })
        .build();
    let counted = Arc::clone(calls);
    let seconds = meter
        .f64_observable_counter("tongban.data.call.duration.sum")
        .with_unit("s")
        .with_description(
            "Data-plane call latency in all, until the exchange record is durable, by operation",
        )
        .with_callback(move |observer| {
            for (operation, _, sum) in counted.durations() {
                observer.observe(sum, &[KeyValue::new("operation", operation)]);
            }
        })
        .build();
    let _ = CALL_INSTRUMENTS.set((calls_counter, timed_calls, seconds));
}

/// The exporters, flushed and stopped when dropped.
#[derive(Debug)]
pub struct Telemetry {
    tracer_provider: SdkTracerProvider,
    meter_provider: SdkMeterProvider,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        let _ = self.tracer_provider.shutdown();
        let _ = self.meter_provider.shutdown();
    }
}

/// Why telemetry could not be started.
#[derive(Debug, thiserror::Error)]
#[error("OTLP exporter: {0}")]
pub struct TelemetryError(String);

/// Starts the exporters when an endpoint is configured, returning the tracer for the tracing
/// layer and the guard that flushes them at exit.
pub fn start(
    config: &TelemetryConfig,
) -> Result<Option<(opentelemetry_sdk::trace::Tracer, Telemetry)>, TelemetryError> {
    let Some(endpoint) = config.otlp_endpoint.as_deref().filter(|e| !e.is_empty()) else {
        return Ok(None);
    };
    let endpoint = endpoint.trim_end_matches('/');
    let interval = Duration::from_millis(config.export_interval_ms.max(100));
    let resource =
        opentelemetry_sdk::Resource::builder().with_service_name(config.service_name.clone()).build();
    let spans = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(format!("{endpoint}/v1/traces"))
        .build()
        .map_err(|e| TelemetryError(e.to_string()))?;
    let processor = BatchSpanProcessor::builder(spans)
        .with_batch_config(BatchConfigBuilder::default().with_scheduled_delay(interval).build())
        .build();
    let tracer_provider =
        SdkTracerProvider::builder().with_span_processor(processor).with_resource(resource.clone()).build();
    let metrics = opentelemetry_otlp::MetricExporter::builder()
        .with_http()
        .with_endpoint(format!("{endpoint}/v1/metrics"))
        .build()
        .map_err(|e| TelemetryError(e.to_string()))?;
    let reader = PeriodicReader::builder(metrics).with_interval(interval).build();
    let meter_provider = SdkMeterProvider::builder().with_reader(reader).with_resource(resource).build();
    let _ = METER.set(meter_provider.meter("tongban"));
    let tracer = tracer_provider.tracer("tongban");
    Ok(Some((tracer, Telemetry { tracer_provider, meter_provider })))
}

/// The W3C trace context of a call's headers, for the call's span to continue.
pub fn parent_context(headers: &axum::http::HeaderMap) -> opentelemetry::Context {
    use opentelemetry::propagation::TextMapPropagator;
    struct Extractor<'h>(&'h axum::http::HeaderMap);
    impl opentelemetry::propagation::Extractor for Extractor<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.to_str().ok())
        }
        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(|k| k.as_str()).collect()
        }
    }
    opentelemetry_sdk::propagation::TraceContextPropagator::new().extract(&Extractor(headers))
}
