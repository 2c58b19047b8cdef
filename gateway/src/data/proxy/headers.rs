//! What crosses between the caller, the gateway and the supplier in headers: which of the
//! caller's headers reach the supplier and which of the supplier's come back, what the gateway
//! adds (the purpose, the caller, a trace context, its own credential), and how long the
//! supplier lets a shared cache keep its answer.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, header};

use super::upstream::Upstream;
use super::{CallContext, ProxyCall};
use crate::error::ApiError;

/// Caller headers passed on to the supplier: what describes the request's body and what the
/// caller will take back. Everything else stays behind: the caller's credentials, forwarding
/// and routing hints a supplier might trust (`x-forwarded-host`, `x-original-url`,
/// `x-http-method-override`), `range` (a part of a JSON answer could not be filtered), the
/// encodings a supplier might compress the answer in (the gateway must read it), and the
/// caller's own trace state. The gateway sets the purpose, the caller and a trace context itself.
pub(crate) const PASSED_ON: &[&str] = &[
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
pub(super) const PASSED_BACK: &[&str] =
    &["content-type", "content-disposition", "content-language", "last-modified"];

pub(super) fn build_request(
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

pub(super) fn is_idempotent(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE)
}

pub(super) fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING) || content_length(headers).is_some_and(|n| n > 0)
}

pub(super) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// How long the supplier lets a shared cache keep its answer: `None` when it says nothing,
/// zero when it forbids keeping it.
pub(super) fn max_age(headers: &HeaderMap) -> Option<Duration> {
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tongban_policy::decision::Purpose;

    use super::super::{UpstreamConfig, Upstreams};
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
