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

mod filter;
pub(crate) mod headers;
mod problems;
mod upstream;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use serde_json::Value;
use tongban_policy::catalog::Resource;
use tongban_policy::decision::{Permit, Purpose};

use super::Answer;
use crate::error::ApiError;
use filter::{JsonFilter, is_json_type, looks_like_json};
pub(crate) use headers::valid_traceparent;
use headers::{PASSED_BACK, build_request, content_length, has_body, is_idempotent, max_age};
pub(crate) use problems::not_bound;
use problems::{
    circuit_open, request_too_large, response_too_large, unreachable_upstream, upstream_failed,
    upstream_timeout,
};
pub use upstream::{UpstreamConfig, UpstreamError, Upstreams};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
