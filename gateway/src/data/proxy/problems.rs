//! The problems a proxied call can end in, each with its stable code.

use std::time::Duration;

use axum::http::StatusCode;

use crate::error::ApiError;

pub(crate) fn not_bound(resource: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "proxy_not_bound",
        "No supplier API",
        format!("resource {resource} is not bound to a supplier API"),
    )
}

pub(super) fn circuit_open(remaining: Duration) -> ApiError {
    let mut error = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "upstream_circuit_open",
        "Supplier unavailable",
        "the supplier's API failed repeatedly; calls are held back for a while",
    );
    error.retry_after = Some(remaining.as_secs() + u64::from(remaining.subsec_nanos() > 0)).map(|s| s.max(1));
    error
}

pub(super) fn unreachable_upstream(detail: &'static str) -> ApiError {
    ApiError::new(StatusCode::BAD_GATEWAY, "upstream_unreachable", "Supplier unreachable", detail)
}

pub(super) fn upstream_timeout(timeout_ms: u64) -> ApiError {
    ApiError::new(
        StatusCode::GATEWAY_TIMEOUT,
        "upstream_timeout",
        "Supplier timed out",
        format!("the supplier's API did not answer within {timeout_ms} ms"),
    )
}

pub(super) fn upstream_failed(status: StatusCode) -> ApiError {
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        "upstream_failed",
        "Supplier failed",
        format!("the supplier's API answered {}", status.as_u16()),
    )
}

pub(super) fn request_too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        "Body too large",
        format!("a proxied request body may have at most {limit} bytes"),
    )
}

pub(super) fn response_too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        "upstream_response_too_large",
        "Supplier answer too large",
        format!("the supplier's answer exceeds {limit} bytes"),
    )
}
