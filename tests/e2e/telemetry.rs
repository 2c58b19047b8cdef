//! OpenTelemetry over OTLP/HTTP: a receiver built on the official protobuf definitions
//! (`opentelemetry-proto`) collects what the real gateway exports, and the test checks the
//! data call's span continues the caller's trace, names its exchange record, and carries no
//! personal data; the data-call metrics arrive too.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::json;
use tongban_e2e::Demo;

const POLICE_SYSTEM: &str = "广东省公安厅跨省户籍业务系统";
const HOUSEHOLD: &str = "A01-410000-0001";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN_ID: &str = "00f067aa0ba902b7";

#[derive(Default)]
struct Received {
    spans: Vec<Span>,
    /// The newest exported value of `tongban.data.calls`, by operation and status.
    calls: std::collections::HashMap<(String, String), i64>,
}

type Shared = Arc<Mutex<Received>>;

async fn traces(State(received): State<Shared>, body: Bytes) -> Vec<u8> {
    if let Ok(request) = ExportTraceServiceRequest::decode(body) {
        let spans = request.resource_spans.into_iter().flat_map(|r| r.scope_spans).flat_map(|s| s.spans);
        received.lock().expect("not poisoned").spans.extend(spans);
    }
    ExportTraceServiceResponse::default().encode_to_vec()
}

async fn metrics(State(received): State<Shared>, body: Bytes) -> Vec<u8> {
    if let Ok(request) = ExportMetricsServiceRequest::decode(body) {
        let metrics =
            request.resource_metrics.into_iter().flat_map(|r| r.scope_metrics).flat_map(|s| s.metrics);
        let mut received = received.lock().expect("not poisoned");
        for metric in metrics.filter(|m| m.name == "tongban.data.calls") {
            let Some(metric::Data::Sum(sum)) = metric.data else { continue };
            for point in sum.data_points {
                let label = |key: &str| {
                    point.attributes.iter().find(|a| a.key == key).and_then(|a| {
                        match a.value.as_ref()?.value.as_ref()? {
                            AnyValue::StringValue(s) => Some(s.clone()),
                            AnyValue::IntValue(i) => Some(i.to_string()),
                            _ => None,
                        }
                    })
                };
                if let (Some(operation), Some(status), Some(number_data_point::Value::AsInt(value))) =
                    (label("operation"), label("http.response.status_code"), point.value)
                {
                    received.calls.insert((operation, status), value);
                }
            }
        }
    }
    ExportMetricsServiceResponse::default().encode_to_vec()
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes.iter().find(|a| a.key == key).and_then(|a| a.value.as_ref()?.value.as_ref()).map(|v| {
        match v {
            AnyValue::StringValue(s) => s.clone(),
            AnyValue::IntValue(i) => i.to_string(),
            other => format!("{other:?}"),
        }
    })
}

#[tokio::test]
async fn data_calls_export_spans_without_personal_data_and_metrics_over_otlp() -> anyhow::Result<()> {
    let received: Shared = Arc::default();
    let app = axum::Router::new()
        .route("/v1/traces", post(traces))
        .route("/v1/metrics", post(metrics))
        .with_state(Arc::clone(&received));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let collector = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let demo = Demo::start_with(
        2000,
        &[
            ("TONGBAN_TELEMETRY__OTLP_ENDPOINT", &collector),
            ("TONGBAN_TELEMETRY__EXPORT_INTERVAL_MS", "200"),
            ("TONGBAN_SERVER__METRICS_TOKEN", "scrape-token-for-tests"),
        ],
    )
    .await?;
    let (_, system) = demo.system(POLICE_SYSTEM)?;
    let traceparent = format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-01");
    let police = system.with_headers(&[
        ("x-tongban-service-item", "KSTB-GA-001"),
        ("x-tongban-case-number", "GD-2026-000731"),
        ("x-tongban-operator", "警员0031"),
        ("traceparent", &traceparent),
    ]);
    let secrets = ["11010519491231002X", "张三", "GD-2026-000731", "警员0031"];
    let body = json!({"resource": HOUSEHOLD, "key": secrets[0], "claims": {"name": secrets[1]}});
    let answer = police.send(reqwest::Method::POST, "/data/verify", Some(&body), None).await?;
    assert_eq!(answer.status, 200);
    let exchange_id = answer.header("x-tongban-exchange-id").context("exchange id")?;

    // Wait for the batch exporter.
    let started = Instant::now();
    let span = loop {
        let found = received
            .lock()
            .expect("not poisoned")
            .spans
            .iter()
            .find(|s| attribute(s, "exchange.id").as_deref() == Some(exchange_id.as_str()))
            .cloned();
        if let Some(span) = found {
            break span;
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(20), "no span for exchange {exchange_id}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The span continues the caller's trace, under the caller's span.
    assert_eq!(hex(&span.trace_id), TRACE_ID);
    assert_eq!(hex(&span.parent_span_id), PARENT_SPAN_ID);
    assert_eq!(span.name, "verify");
    assert_eq!(attribute(&span, "http.response.status_code").as_deref(), Some("200"));
    assert_eq!(attribute(&span, "tongban.resource").as_deref(), Some(HOUSEHOLD));
    // The exchange record is under the same trace.
    let record = demo
        .exchange_records()?
        .into_iter()
        .find(|r| r["id"] == exchange_id.as_str())
        .context("the call's record")?;
    assert_eq!(record["trace_id"], TRACE_ID);

    // Nothing exported names the person, the case or the operator.
    let everything = format!("{:?}", received.lock().expect("not poisoned").spans);
    for secret in secrets {
        assert!(!everything.contains(secret), "{secret} in an exported span");
    }
    // The calls exported are the calls `/metrics` shows: one count, read both ways.
    let scraped = demo.gateway.scrape_metrics("scrape-token-for-tests").await?;
    let verified: i64 = scraped
        .lines()
        .filter(|l| {
            l.starts_with("tongban_data_calls_total{")
                && l.contains("operation=\"verify\"")
                && l.contains("status=\"200\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<i64>().ok())
        .sum();
    assert_eq!(verified, 1, "{scraped}");
    let started = Instant::now();
    loop {
        let exported =
            received.lock().expect("not poisoned").calls.get(&("verify".into(), "200".into())).copied();
        if exported == Some(verified) {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(20),
            "OTLP says {exported:?} verifications, /metrics {verified}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
