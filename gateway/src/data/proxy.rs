//! Proxying to suppliers' own HTTP APIs (the 接口 share method).
//!
//! A catalog resource can be bound to a supplier's API in the configuration (`[[upstreams]]`).
//! Callers reach it at `/api/v1/proxy/{resource}/{path…}` through the same lifecycle as every
//! other data call; this module is the execute and mask phases of such a call:
//!
//! - **Pooling and timeouts.** One keep-alive connection pool per upstream, a connect timeout
//!   and a timeout for the whole answer.
//! - **Retries** only for idempotent calls without a body, and only on failures that say
//!   nothing reached the supplier or that the supplier asks to be tried again (502, 503, 504).
//! - **A circuit breaker per upstream.** After a run of failures calls are refused at once for
//!   a while, then one trial call decides whether it closes again.
//! - **Header hygiene.** Hop-by-hop headers and the caller's credentials never reach the
//!   supplier. The gateway adds the purpose, the caller, a trace context and the supplier's own
//!   credential. Cookies never come back.
//! - **Size limits** on both bodies; request bodies are streamed through as they arrive.
//! - **Filtering.** A JSON answer keeps only granted items, masked as granted, and the
//!   supplier's declared envelope; records out of the grant's rows are dropped. Any other
//!   answer is a document the gateway cannot mask: it is passed on (streamed) only when the
//!   items the binding says it holds are all granted unmasked and unscoped.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tongban_policy::catalog::{MaskRule, Resource};
use tongban_policy::decision::{Permit, Purpose};

use super::Answer;
use crate::error::ApiError;

/// A supplier API bound to one catalog resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The catalog resource (资源代码) this API serves.
    pub resource: String,
    /// Base URL: `/api/v1/proxy/{resource}/a/b?c` goes to `{url}/a/b?c`.
    pub url: String,
    /// Header that carries the supplier's credential for the gateway, e.g. `authorization`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_header: Option<String>,
    /// The credential itself. Prefer `credential_env` outside development.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// An environment variable holding the credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_env: Option<String>,
    /// JSON members of the supplier's envelope (`code`, `message`, `data`…): kept as they are
    /// and searched for records. Every other member that is not a granted item is dropped.
    #[serde(default)]
    pub envelope: Vec<String>,
    /// Items a non-JSON answer (a certificate PDF, say) holds. Empty: documents are refused.
    #[serde(default)]
    pub document_items: Vec<String>,
    /// The methods the supplier's API takes through the gateway; any other is refused with
    /// 405 before anything reaches the supplier. `TRACE` and `CONNECT` are never allowed.
    #[serde(default = "defaults::methods")]
    pub methods: Vec<String>,
    #[serde(default = "defaults::connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Time allowed for the whole answer, headers and a buffered body.
    #[serde(default = "defaults::timeout_ms")]
    pub timeout_ms: u64,
    /// Further attempts for an idempotent call without a body.
    #[serde(default = "defaults::retries")]
    pub retries: u32,
    #[serde(default = "defaults::max_request_bytes")]
    pub max_request_bytes: usize,
    #[serde(default = "defaults::max_response_bytes")]
    pub max_response_bytes: usize,
    /// Consecutive failures that open the circuit.
    #[serde(default = "defaults::breaker_failures")]
    pub breaker_failures: u32,
    /// How long an open circuit refuses calls before one trial call.
    #[serde(default = "defaults::breaker_open_ms")]
    pub breaker_open_ms: u64,
    #[serde(default = "defaults::max_idle_connections")]
    pub max_idle_connections: usize,
}

impl UpstreamConfig {
    /// A binding of `resource` to the API at `url`, with default limits and no credential.
    pub fn new(resource: impl Into<String>, url: impl Into<String>) -> Self {
        UpstreamConfig {
            resource: resource.into(),
            url: url.into(),
            credential_header: None,
            credential: None,
            credential_env: None,
            envelope: Vec::new(),
            document_items: Vec::new(),
            methods: defaults::methods(),
            connect_timeout_ms: defaults::connect_timeout_ms(),
            timeout_ms: defaults::timeout_ms(),
            retries: defaults::retries(),
            max_request_bytes: defaults::max_request_bytes(),
            max_response_bytes: defaults::max_response_bytes(),
            breaker_failures: defaults::breaker_failures(),
            breaker_open_ms: defaults::breaker_open_ms(),
            max_idle_connections: defaults::max_idle_connections(),
        }
    }
}

mod defaults {
    pub(super) fn methods() -> Vec<String> {
        vec!["GET".into(), "HEAD".into()]
    }
    pub(super) fn connect_timeout_ms() -> u64 {
        1_000
    }
    pub(super) fn timeout_ms() -> u64 {
        5_000
    }
    pub(super) fn retries() -> u32 {
        1
    }
    pub(super) fn max_request_bytes() -> usize {
        1024 * 1024
    }
    pub(super) fn max_response_bytes() -> usize {
        8 * 1024 * 1024
    }
    pub(super) fn breaker_failures() -> u32 {
        5
    }
    pub(super) fn breaker_open_ms() -> u64 {
        10_000
    }
    pub(super) fn max_idle_connections() -> usize {
        64
    }
}

/// Why an upstream binding cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream for {resource}: {reason}")]
    Invalid { resource: String, reason: String },
}

/// Caller headers passed on to the supplier: what describes the request's body and what the
/// caller will take back. Everything else stays behind: the caller's credentials, forwarding
/// and routing hints a supplier might trust (`x-forwarded-host`, `x-original-url`,
/// `x-http-method-override`), `range` (a part of a JSON answer could not be filtered), the
/// encodings a supplier might compress the answer in (the gateway must read it), and the
/// caller's own trace state. The gateway sets the purpose, the caller and a trace context itself.
const PASSED_ON: &[&str] = &[
    "accept",
    "accept-language",
    "content-type",
    "content-length",
    "content-encoding",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
];

/// Supplier headers passed back to the caller; everything else (cookies, server banners,
/// the supplier's caching rules for its own clients) stays behind.
const PASSED_BACK: &[&str] = &["content-type", "content-disposition", "content-language", "last-modified"];

/// The bound supplier APIs, by resource.
#[derive(Debug, Default)]
pub struct Upstreams {
    by_resource: HashMap<String, Upstream>,
}

#[derive(Debug)]
struct Upstream {
    config: UpstreamConfig,
    methods: Vec<Method>,
    base: String,
    credential: Option<(HeaderName, HeaderValue)>,
    client: Client<HttpConnector, Body>,
    breaker: Breaker,
}

impl Upstreams {
    /// Builds a pool and a breaker per binding. URLs must be `http://` (the supplier network
    /// link is expected to be protected below HTTP; see docs/data-plane.md).
    pub fn new(configs: &[UpstreamConfig]) -> Result<Self, UpstreamError> {
        let mut by_resource = HashMap::new();
        for config in configs {
            let invalid =
                |reason: String| UpstreamError::Invalid { resource: config.resource.clone(), reason };
            let uri: Uri = config.url.parse().map_err(|e| invalid(format!("url {}: {e}", config.url)))?;
            if uri.scheme_str() != Some("http") || uri.host().is_none() {
                return Err(invalid(format!("url {} is not an http:// URL with a host", config.url)));
            }
            if uri.query().is_some() {
                return Err(invalid("the base url may not have a query".into()));
            }
            let credential_value = match (&config.credential, &config.credential_env) {
                (Some(value), None) => Some(value.clone()),
                (None, Some(name)) => Some(
                    std::env::var(name)
                        .map_err(|_| invalid(format!("environment variable {name} is not set")))?,
                ),
                (None, None) => None,
                (Some(_), Some(_)) => {
                    return Err(invalid("give credential or credential_env, not both".into()));
                }
            };
            let credential = match (&config.credential_header, credential_value) {
                (Some(name), Some(value)) => Some((
                    HeaderName::try_from(name.as_str())
                        .map_err(|e| invalid(format!("credential_header: {e}")))?,
                    HeaderValue::try_from(value).map_err(|e| invalid(format!("credential: {e}")))?,
                )),
                (None, None) => None,
                _ => return Err(invalid("credential_header and a credential go together".into())),
            };
            let mut methods = Vec::new();
            for name in &config.methods {
                let method = Method::from_bytes(name.to_ascii_uppercase().as_bytes())
                    .map_err(|_| invalid(format!("methods: {name:?} is not an HTTP method")))?;
                // TRACE echoes the request, credential included; CONNECT opens a tunnel.
                if method == Method::TRACE || method == Method::CONNECT {
                    return Err(invalid(format!("methods: {method} is never passed on")));
                }
                methods.push(method);
            }
            let mut connector = HttpConnector::new();
            connector.set_connect_timeout(Some(Duration::from_millis(config.connect_timeout_ms)));
            connector.set_nodelay(true);
            connector.set_keepalive(Some(Duration::from_secs(60)));
            let client = Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(90))
                .pool_max_idle_per_host(config.max_idle_connections)
                .build(connector);
            let upstream = Upstream {
                methods,
                base: config.url.trim_end_matches('/').to_owned(),
                credential,
                client,
                breaker: Breaker::new(config.breaker_failures, Duration::from_millis(config.breaker_open_ms)),
                config: config.clone(),
            };
            if by_resource.insert(config.resource.clone(), upstream).is_some() {
                return Err(invalid("the resource is bound twice".into()));
            }
        }
        Ok(Upstreams { by_resource })
    }

    pub fn is_bound(&self, resource: &str) -> bool {
        self.by_resource.contains_key(resource)
    }

    /// Refuses a method the resource's binding does not declare, with the ones it does.
    pub(crate) fn check_method(&self, resource: &str, method: &Method) -> Result<(), ApiError> {
        let Some(upstream) = self.by_resource.get(resource) else { return Err(not_bound(resource)) };
        if upstream.methods.contains(method) {
            return Ok(());
        }
        let allowed: Vec<&str> = upstream.methods.iter().map(Method::as_str).collect();
        Err(ApiError::method_not_allowed(
            format!("the supplier's API for {resource} takes {}, not {method}", allowed.join(", ")),
            &allowed,
        ))
    }
}

/// A proxied call as the handler received it.
#[derive(Debug)]
pub(crate) struct ProxyCall {
    pub resource: String,
    pub path: String,
    pub query: Option<String>,
    pub method: Method,
    /// Taken by the execute phase.
    pub body: Mutex<Option<Body>>,
}

impl ProxyCall {
    /// Whether the call may be answered from the cache: a GET without a body.
    pub(crate) fn cacheable(&self, headers: &HeaderMap) -> bool {
        self.method == Method::GET && !has_body(headers)
    }

    /// Refuses paths that could leave the supplier's base path once resolved.
    pub(crate) fn check_path(&self) -> Result<(), ApiError> {
        let decoded = percent_encoding::percent_decode_str(&self.path).decode_utf8_lossy();
        // Empty segments too (a trailing slash, an encoded slash at either end of a segment):
        // a supplier may route `a//b` or `a/` to another handler than `a/b`.
        let bad =
            decoded.split(['/', '\\']).any(|segment| segment.is_empty() || segment == ".." || segment == ".")
                || decoded.contains('\0');
        if bad {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_proxy_path",
                "Invalid proxy path",
                "the path may not contain empty, `.` or `..` segments",
            ));
        }
        Ok(())
    }
}

/// What the gateway tells the supplier about a call.
pub(crate) struct CallContext<'a> {
    pub exchange_id: &'a str,
    pub system: &'a str,
    pub department: &'a str,
    pub purpose: &'a Purpose,
}

/// What came back from the supplier, for the exchange record.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct UpstreamOutcome {
    pub status: Option<u16>,
    pub attempts: u32,
    pub latency: Duration,
}

/// Sends the call to the resource's supplier and filters its answer by the permit.
pub(crate) async fn forward(
    upstreams: &Upstreams,
    resource: &Resource,
    permit: &Permit<'_>,
    call: &ProxyCall,
    headers: &HeaderMap,
    context: &CallContext<'_>,
    outcome: &mut UpstreamOutcome,
) -> Result<Answer, ApiError> {
    let upstream = upstreams.by_resource.get(&resource.code).ok_or_else(|| not_bound(&resource.code))?;
    let config = &upstream.config;
    if content_length(headers).is_some_and(|n| n > config.max_request_bytes as u64) {
        return Err(request_too_large(config.max_request_bytes));
    }
    let mut body = call.body.lock().map_err(|_| ApiError::internal(&"proxy body lock poisoned"))?.take();
    let retryable = is_idempotent(&call.method) && !has_body(headers);
    let timeout = Duration::from_millis(config.timeout_ms);
    let started = Instant::now();
    let mut attempt = 0;
    let response = loop {
        attempt += 1;
        outcome.attempts = attempt;
        let trial = upstream.breaker.admit().map_err(circuit_open)?;
        let request_body = if retryable {
            Body::empty()
        } else {
            let body = body.take().unwrap_or_else(Body::empty);
            Body::new(Limited::new(body, config.max_request_bytes))
        };
        let request = build_request(upstream, call, headers, context, request_body)?;
        let result = tokio::time::timeout(timeout, upstream.client.request(request)).await;
        let failure = match result {
            Ok(Ok(response)) if !matches!(response.status().as_u16(), 502..=504) => {
                upstream.breaker.record(trial, !response.status().is_server_error());
                break response;
            }
            Ok(Ok(response)) => Failure::Status(response),
            Ok(Err(error)) if exceeded_limit(&error) => {
                upstream.breaker.record(trial, true);
                return Err(request_too_large(config.max_request_bytes));
            }
            Ok(Err(error)) => Failure::Transport(error),
            Err(_) => Failure::Timeout,
        };
        upstream.breaker.record(trial, false);
        if retryable && attempt <= config.retries {
            tokio::time::sleep(Duration::from_millis(25 * u64::from(attempt))).await;
            continue;
        }
        outcome.latency = started.elapsed();
        return Err(match failure {
            Failure::Status(response) => {
                outcome.status = Some(response.status().as_u16());
                upstream_failed(response.status())
            }
            Failure::Transport(error) => {
                tracing::warn!(resource = %resource.code, error = %error, "supplier API unreachable");
                unreachable_upstream("the supplier's API could not be reached")
            }
            Failure::Timeout => upstream_timeout(config.timeout_ms),
        });
    };
    let status = response.status();
    outcome.status = Some(status.as_u16());
    if status.is_server_error() {
        outcome.latency = started.elapsed();
        return Err(upstream_failed(status));
    }
    let (parts, incoming) = response.into_parts();
    let max_age = max_age(&parts.headers);
    let mut passed_back = HeaderMap::new();
    for name in PASSED_BACK {
        if let Some(value) = parts.headers.get(*name) {
            passed_back.insert(HeaderName::from_static(name), value.clone());
        }
    }
    let declared = content_length(&parts.headers);
    if declared.is_some_and(|n| n > config.max_response_bytes as u64) {
        outcome.latency = started.elapsed();
        return Err(response_too_large(config.max_response_bytes));
    }
    // Every answer is read whole, within the binding's limit, before anything of it is passed
    // on: what it is follows from its bytes, not from the label the supplier put on it, and it
    // must be searched for the gateway's own credential.
    let bytes = tokio::time::timeout(
        timeout.saturating_sub(started.elapsed()),
        Limited::new(incoming, config.max_response_bytes).collect(),
    )
    .await;
    outcome.latency = started.elapsed();
    let bytes = match bytes {
        Err(_) => return Err(upstream_timeout(config.timeout_ms)),
        Ok(Err(error)) if error.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            return Err(response_too_large(config.max_response_bytes));
        }
        Ok(Err(_)) => return Err(unreachable_upstream("the supplier's answer broke off")),
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    // A supplier that echoes the request (or a misconfigured one) would hand the caller the
    // credential the gateway presents to it.
    if let Some((_, credential)) = &upstream.credential
        && (memchr::memmem::find(&bytes, credential.as_bytes()).is_some()
            || passed_back
                .values()
                .any(|v| memchr::memmem::find(v.as_bytes(), credential.as_bytes()).is_some()))
    {
        tracing::warn!(resource = %resource.code, "the supplier's answer holds the gateway's credential; refused");
        return Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "upstream_echoed_credential",
            "Supplier answer refused",
            "the supplier's answer repeats the gateway's credential for it, so none of it is passed on",
        ));
    }
    let labelled_json =
        parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(is_json_type);
    if !labelled_json && !looks_like_json(&bytes) {
        // A document: the gateway cannot mask or scope it, so the grant must show it whole.
        permit.admits_document(&config.document_items).map_err(super::denied)?;
        if config.document_items.is_empty() {
            return Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                "upstream_content_unfilterable",
                "Supplier answer cannot be filtered",
                "the supplier answered with something other than JSON, and its binding declares no document items",
            ));
        }
        return Ok(Answer { status, headers: passed_back, body: bytes, rows: 1, max_age });
    }
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "upstream_response_unreadable",
            "Supplier answer unreadable",
            "the supplier's answer is JSON, or claims to be, but cannot be read as one JSON text",
        )
    })?;
    let filter = JsonFilter::new(resource, permit, &config.envelope);
    let mut rows = 0;
    let filtered = filter.value(value, &mut rows).ok_or_else(|| {
        // The whole answer was one record out of the grant's rows: answered as missing.
        ApiError::not_found("no record with this key").with_code("record_not_found")
    })?;
    let body = serde_json::to_vec(&filtered).map_err(|e| ApiError::internal(&e))?;
    passed_back.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(Answer { status, headers: passed_back, body: body.into(), rows, max_age })
}

enum Failure {
    Status(hyper::Response<hyper::body::Incoming>),
    Transport(hyper_util::client::legacy::Error),
    Timeout,
}

fn build_request(
    upstream: &Upstream,
    call: &ProxyCall,
    caller_headers: &HeaderMap,
    context: &CallContext<'_>,
    body: Body,
) -> Result<Request<Body>, ApiError> {
    let mut uri = format!("{}/{}", upstream.base, call.path);
    if let Some(query) = &call.query {
        uri.push('?');
        uri.push_str(query);
    }
    let mut request = Request::builder().method(call.method.clone()).uri(&uri).body(body).map_err(|_| {
        ApiError::invalid("the proxied path or query is not a valid URI").with_code("invalid_proxy_path")
    })?;
    let headers = request.headers_mut();
    // Room for the caller's headers and the nine the gateway sets, so the map grows once.
    headers.reserve(PASSED_ON.len() + 9);
    for (name, value) in caller_headers {
        if PASSED_ON.contains(&name.as_str()) {
            headers.append(name.clone(), value.clone());
        }
    }
    let mut set = |name: &'static str, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    };
    set("x-tongban-exchange-id", context.exchange_id);
    set("x-tongban-consumer-system", context.system);
    set("x-tongban-consumer-department", context.department);
    set("x-tongban-service-item", &context.purpose.service_item);
    set("x-tongban-case-number", &context.purpose.case_number);
    set("via", "1.1 tongban");
    // A W3C trace context: the caller's when it sent a well-formed one, else a new trace
    // named after the exchange record, so supplier logs can be joined to it.
    let traceparent = caller_headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .filter(|v| valid_traceparent(v))
        .map(str::to_owned)
        .unwrap_or_else(|| {
            // The span id is the record id's last 64 bits, which in a version 7 UUID are its
            // variant and 62 random bits (so never zero): random enough for a span, without a
            // system call for fresh randomness on every call.
            let id = context.exchange_id.replace('-', "");
            let span = id.get(16..32).filter(|s| s.bytes().any(|b| b != b'0')).unwrap_or("0000000000000001");
            format!("00-{id:0>32.32}-{span}-01")
        });
    set("traceparent", &traceparent);
    if let Ok(operator) = HeaderValue::from_bytes(context.purpose.operator.as_bytes()) {
        headers.insert(HeaderName::from_static("x-tongban-operator"), operator);
    }
    if let Some((name, value)) = &upstream.credential {
        headers.insert(name.clone(), value.clone());
    }
    Ok(request)
}

pub(crate) fn valid_traceparent(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    matches!(parts.as_slice(), [version, trace, span, flags]
        if version.len() == 2 && trace.len() == 32 && span.len() == 16 && flags.len() == 2
            && value.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit())
            && trace.bytes().any(|b| b != b'0') && span.bytes().any(|b| b != b'0'))
}

/// A JSON answer seen through a permit. The item lists are searched in place: a resource has
/// tens of items at most, and building hash sets of them cost more on each call than the
/// searches they would save.
struct JsonFilter<'p> {
    permit: &'p Permit<'p>,
    resource: &'p Resource,
    envelope: &'p [String],
    scope: Option<(&'p str, &'p str)>,
}

impl<'p> JsonFilter<'p> {
    fn new(resource: &'p Resource, permit: &'p Permit<'p>, envelope: &'p [String]) -> Self {
        JsonFilter {
            permit,
            resource,
            envelope,
            scope: permit.scope.as_ref().map(|s| (s.item.as_str(), s.prefix.as_str())),
        }
    }

    /// The rule of a granted item.
    fn granted(&self, name: &str) -> Option<MaskRule> {
        self.permit.items.iter().find(|i| i.name == name).map(|i| i.mask)
    }

    /// Whether `name` is an item of the resource, granted or not.
    fn is_item(&self, name: &str) -> bool {
        self.resource.items.iter().any(|i| i.name == name)
    }

    /// The value as the permit lets it be seen, or `None` when it is a record out of scope.
    /// `records` counts the objects that carried granted items.
    fn value(&self, value: Value, records: &mut u64) -> Option<Value> {
        match value {
            Value::Array(values) => {
                Some(Value::Array(values.into_iter().filter_map(|v| self.value(v, records)).collect()))
            }
            Value::Object(members) => {
                let is_record = members.keys().any(|k| self.is_item(k));
                if is_record && let Some((item, prefix)) = self.scope {
                    // A record must show it is in scope; one that does not is dropped.
                    let in_scope =
                        members.get(item).and_then(Value::as_str).is_some_and(|v| v.starts_with(prefix));
                    if !in_scope {
                        return None;
                    }
                }
                let mut kept = serde_json::Map::new();
                let mut carried = false;
                for (name, member) in members {
                    if let Some(rule) = self.granted(&name) {
                        carried = true;
                        let member = match (rule, member) {
                            // A structured value under an item granted whole is filtered like
                            // the answer itself: it may hold other items, or records out of the
                            // grant's rows, which the grant does not cover.
                            (MaskRule::None, structured @ (Value::Object(_) | Value::Array(_))) => {
                                self.value(structured, records).unwrap_or(Value::Null)
                            }
                            (rule, member) => mask_json(member, rule),
                        };
                        kept.insert(name, member);
                    } else if self.envelope.contains(&name) && !self.is_item(&name) {
                        let member = self.value(member, records).unwrap_or(Value::Null);
                        kept.insert(name, member);
                    }
                }
                if carried {
                    *records += 1;
                }
                Some(Value::Object(kept))
            }
            scalar => Some(scalar),
        }
    }
}

/// Masks one granted item's JSON value. Structured values under a masked item are redacted
/// whole: the rule is defined for text.
fn mask_json(value: Value, rule: MaskRule) -> Value {
    match (rule, value) {
        (MaskRule::None, value) => value,
        (MaskRule::Redact, _) => Value::String(tongban_policy::mask::REDACTED.to_owned()),
        (_, Value::Null) => Value::Null,
        (rule, Value::String(text)) => Value::String(rule.apply(&text).into_owned()),
        (rule, Value::Number(number)) => Value::String(rule.apply(&number.to_string()).into_owned()),
        (_, _) => Value::String(tongban_policy::mask::REDACTED.to_owned()),
    }
}

/// A breaker per upstream: closed while calls succeed; open for a while after
/// `threshold` consecutive failures; then half open, admitting one trial call whose outcome
/// closes or reopens it.
#[derive(Debug)]
struct Breaker {
    threshold: u32,
    open_for: Duration,
    state: Mutex<BreakerState>,
}

#[derive(Debug, Clone, Copy)]
enum BreakerState {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen,
}

/// Whether an admitted call is the trial of a half-open breaker.
#[derive(Debug, Clone, Copy)]
struct Trial(bool);

impl Breaker {
    fn new(threshold: u32, open_for: Duration) -> Self {
        Breaker {
            threshold: threshold.max(1),
            open_for,
            state: Mutex::new(BreakerState::Closed { failures: 0 }),
        }
    }

    /// Admits a call, or says how long the circuit stays open.
    fn admit(&self) -> Result<Trial, Duration> {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match *state {
            BreakerState::Closed { .. } => Ok(Trial(false)),
            BreakerState::Open { until } => {
                let now = Instant::now();
                if now >= until {
                    *state = BreakerState::HalfOpen;
                    Ok(Trial(true))
                } else {
                    Err(until - now)
                }
            }
            // One trial at a time; the others are refused until it decides.
            BreakerState::HalfOpen => Err(Duration::from_secs(1)),
        }
    }

    fn record(&self, trial: Trial, success: bool) {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *state = match (*state, success) {
            (_, true) => BreakerState::Closed { failures: 0 },
            (BreakerState::Closed { failures }, false) if failures + 1 < self.threshold && !trial.0 => {
                BreakerState::Closed { failures: failures + 1 }
            }
            (_, false) => {
                if !matches!(*state, BreakerState::Open { .. }) {
                    tracing::warn!(open_for_ms = self.open_for.as_millis() as u64, "supplier circuit opened");
                }
                BreakerState::Open { until: Instant::now() + self.open_for }
            }
        };
    }
}

fn is_idempotent(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE)
}

fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING) || content_length(headers).is_some_and(|n| n > 0)
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// Whether an answer reads as a JSON object or array, whatever it is labelled: a client would
/// parse it so. Byte order marks, whitespace and JSON text sequence separators before it are
/// skipped, as lenient parsers skip them.
fn looks_like_json(body: &[u8]) -> bool {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    body.iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0x1e))
        .is_some_and(|b| matches!(b, b'{' | b'['))
}

fn is_json_type(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// How long the supplier lets a shared cache keep its answer: `None` when it says nothing,
/// zero when it forbids keeping it.
fn max_age(headers: &HeaderMap) -> Option<Duration> {
    let mut age = None;
    for value in headers.get_all(header::CACHE_CONTROL).iter().filter_map(|v| v.to_str().ok()) {
        for directive in value.split(',').map(|d| d.trim().to_ascii_lowercase()) {
            if matches!(directive.as_str(), "no-store" | "no-cache" | "private") {
                return Some(Duration::ZERO);
            }
            let seconds = directive
                .strip_prefix("s-maxage=")
                .or_else(|| directive.strip_prefix("max-age="))
                .and_then(|s| s.trim_matches('"').parse::<u64>().ok());
            if let Some(seconds) = seconds {
                // s-maxage is for shared caches such as this one and wins over max-age.
                if directive.starts_with("s-maxage") || age.is_none() {
                    age = Some(Duration::from_secs(seconds));
                }
            }
        }
    }
    if age.is_none() && headers.contains_key(header::SET_COOKIE) {
        return Some(Duration::ZERO);
    }
    age
}

fn exceeded_limit(error: &hyper_util::client::legacy::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}

pub(crate) fn not_bound(resource: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "proxy_not_bound",
        "No supplier API",
        format!("resource {resource} is not bound to a supplier API"),
    )
}

fn circuit_open(remaining: Duration) -> ApiError {
    let mut error = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "upstream_circuit_open",
        "Supplier unavailable",
        "the supplier's API failed repeatedly; calls are held back for a while",
    );
    error.retry_after = Some(remaining.as_secs() + u64::from(remaining.subsec_nanos() > 0)).map(|s| s.max(1));
    error
}

fn unreachable_upstream(detail: &'static str) -> ApiError {
    ApiError::new(StatusCode::BAD_GATEWAY, "upstream_unreachable", "Supplier unreachable", detail)
}

fn upstream_timeout(timeout_ms: u64) -> ApiError {
    ApiError::new(
        StatusCode::GATEWAY_TIMEOUT,
        "upstream_timeout",
        "Supplier timed out",
        format!("the supplier's API did not answer within {timeout_ms} ms"),
    )
}

fn upstream_failed(status: StatusCode) -> ApiError {
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        "upstream_failed",
        "Supplier failed",
        format!("the supplier's API answered {}", status.as_u16()),
    )
}

fn request_too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        "Body too large",
        format!("a proxied request body may have at most {limit} bytes"),
    )
}

fn response_too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        "upstream_response_too_large",
        "Supplier answer too large",
        format!("the supplier's answer exceeds {limit} bytes"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_cache_lifetimes_follow_the_suppliers_headers() {
        let headers = |values: &[(&'static str, &'static str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in values {
                map.append(*name, HeaderValue::from_static(value));
            }
            map
        };
        assert_eq!(max_age(&headers(&[])), None);
        assert_eq!(max_age(&headers(&[("cache-control", "max-age=60")])), Some(Duration::from_secs(60)));
        assert_eq!(
            max_age(&headers(&[("cache-control", "max-age=60, s-maxage=5")])),
            Some(Duration::from_secs(5))
        );
        assert_eq!(max_age(&headers(&[("cache-control", "private, max-age=60")])), Some(Duration::ZERO));
        assert_eq!(max_age(&headers(&[("cache-control", "no-store")])), Some(Duration::ZERO));
        assert_eq!(max_age(&headers(&[("set-cookie", "a=b")])), Some(Duration::ZERO));
    }

    #[test]
    fn paths_cannot_climb_out_of_the_suppliers_base() {
        let call = |path: &str| ProxyCall {
            resource: "r".into(),
            path: path.into(),
            query: None,
            method: Method::GET,
            body: Mutex::new(None),
        };
        assert!(call("deposits/110105194912310025").check_path().is_ok());
        for bad in ["../admin", "a/../../admin", "%2e%2e/admin", "a/%2E%2E/b", "a//b", "./a", "a\\..\\b"] {
            assert!(call(bad).check_path().is_err(), "{bad}");
        }
    }

    #[test]
    fn breakers_open_after_failures_and_close_after_a_good_trial() {
        let breaker = Breaker::new(3, Duration::from_millis(30));
        for _ in 0..2 {
            let trial = breaker.admit().expect("closed");
            breaker.record(trial, false);
        }
        assert!(breaker.admit().is_ok(), "two failures of three keep it closed");
        breaker.record(Trial(false), false);
        assert!(breaker.admit().is_err(), "the third opens it");
        std::thread::sleep(Duration::from_millis(40));
        let trial = breaker.admit().expect("half open admits one trial");
        assert!(breaker.admit().is_err(), "only one trial at a time");
        breaker.record(trial, false);
        assert!(breaker.admit().is_err(), "a failed trial reopens it");
        std::thread::sleep(Duration::from_millis(40));
        let trial = breaker.admit().expect("trial");
        breaker.record(trial, true);
        assert!(breaker.admit().is_ok() && breaker.admit().is_ok(), "a good trial closes it");
    }

    #[tokio::test]
    async fn a_call_without_a_trace_starts_one_named_after_its_record() {
        let upstreams = Upstreams::new(&[UpstreamConfig::new("r", "http://127.0.0.1:9")]).expect("binding");
        let upstream = &upstreams.by_resource["r"];
        let call = ProxyCall {
            resource: "r".into(),
            path: "deposits/1".into(),
            query: None,
            method: Method::GET,
            body: Mutex::new(None),
        };
        let purpose =
            Purpose::parse(Some("KSTB-JS-002"), Some("GZ-2026-000118"), Some("0118")).expect("purpose");
        let traceparent = |exchange_id: &str| {
            let context = CallContext { exchange_id, system: "s", department: "d", purpose: &purpose };
            let request =
                build_request(upstream, &call, &HeaderMap::new(), &context, Body::empty()).expect("request");
            request.headers()["traceparent"].to_str().expect("text").to_owned()
        };
        for _ in 0..100 {
            let id = uuid::Uuid::now_v7();
            let sent = traceparent(&id.to_string());
            assert!(valid_traceparent(&sent), "{sent}");
            let simple = id.simple().to_string();
            assert_eq!(sent, format!("00-{simple}-{}-01", &simple[16..]));
        }
    }

    #[test]
    fn trace_contexts_are_checked_before_they_are_passed_on() {
        assert!(valid_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
        assert!(!valid_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01"));
        assert!(!valid_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\nx: y"));
        assert!(!valid_traceparent("garbage"));
    }
}
