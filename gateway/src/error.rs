//! The one error type every HTTP handler returns, rendered as RFC 9457 problem details.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tongban_policy::decision::Reason;
use tongban_policy::grant::GrantError;
use tongban_policy::org::OrgError;
use tongban_policy::workflow::WorkflowError;

use tongban_platform::auth::PasswordBusy;
use tongban_platform::store::StoreError;
use tongban_platform::{ErrorKind, PlatformError};

/// An API error with a stable machine-readable code. The code is the contract; titles and
/// details are for people and may change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {detail}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub title: &'static str,
    pub detail: String,
    /// Why a policy decision refused the call, as stable codes; empty for other errors.
    pub reasons: Vec<Reason>,
    /// Seconds after which a rate-limited call may be tried again (`Retry-After`).
    pub retry_after: Option<u64>,
    /// The methods a resource takes, for a 405 (`Allow`).
    pub allow: Option<Box<str>>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            code,
            title,
            detail: detail.into(),
            reasons: Vec::new(),
            retry_after: None,
            allow: None,
        }
    }

    /// A refusal with the policy's reasons.
    pub fn denied(
        status: StatusCode,
        code: &'static str,
        title: &'static str,
        detail: impl Into<String>,
        reasons: Vec<Reason>,
    ) -> Self {
        ApiError { status, code, title, detail: detail.into(), reasons, retry_after: None, allow: None }
    }

    /// A daily quota that cannot be counted because the store does not answer.
    pub fn quota_unavailable() -> Self {
        let mut error = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "quota_unavailable",
            "Quota unavailable",
            "the grant's daily quota cannot be counted now; try again shortly",
        );
        error.retry_after = Some(1);
        error
    }

    /// A 405 naming the methods that are allowed.
    pub fn method_not_allowed(detail: impl Into<String>, allowed: &[&str]) -> Self {
        let mut error =
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "Method not allowed", detail);
        error.allow = Some(allowed.join(", ").into());
        error
    }

    /// The same error under a more specific code.
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = code;
        self
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "Not found", detail)
    }

    pub fn not_ready(detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", "Not ready", detail)
    }

    pub fn unauthenticated(detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", "Authentication required", detail)
    }

    pub fn invalid_credentials() -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "Invalid credentials",
            "the credentials are unknown, expired or wrong",
        )
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail)
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::CONFLICT, "version_conflict", "Changed by someone else", detail)
    }

    /// A well-formed request whose content breaks the rule named by `code`.
    pub fn unprocessable(code: &'static str, title: &'static str, detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, title, detail)
    }

    /// A well-formed request whose content breaks a rule without a code of its own.
    pub fn invalid(detail: impl Into<String>) -> Self {
        ApiError::unprocessable("invalid_request", "Invalid request", detail)
    }

    pub fn ungrantable(items: &[&str]) -> Self {
        PlatformError::ungrantable(items).into()
    }

    /// A failure that is the platform's, not the caller's. The cause goes to the diagnostic
    /// log; the caller gets an opaque detail.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "the gateway could not complete the request; it has been logged",
        )
    }
}

impl From<PlatformError> for ApiError {
    /// The one place a platform refusal becomes an HTTP status.
    fn from(e: PlatformError) -> Self {
        let status = match e.kind {
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::Busy => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut error = ApiError::new(status, e.code, e.title, e.detail);
        if e.kind == ErrorKind::Busy {
            error.retry_after = Some(1);
        }
        error
    }
}

/// The platform's errors and the ones it converts, so handlers can use `?` on the store and
/// the policy rules directly; each goes through [`PlatformError`]'s one mapping.
macro_rules! through_platform_error {
    ($($error:ty),*) => {$(
        impl From<$error> for ApiError {
            fn from(e: $error) -> Self {
                PlatformError::from(e).into()
            }
        }
    )*};
}
through_platform_error!(StoreError, WorkflowError, GrantError, OrgError, PasswordBusy);

/// A JSON request body whose rejections are problem documents: 415 without a JSON content
/// type, 400 for malformed JSON, 422 for JSON of the wrong shape.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        use axum::extract::rejection::JsonRejection;
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(match rejection {
                JsonRejection::MissingJsonContentType(_) => ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "JSON expected",
                    "send the body as application/json",
                ),
                JsonRejection::JsonSyntaxError(e) => {
                    ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", "Malformed JSON", e.body_text())
                }
                JsonRejection::JsonDataError(e) => ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_body",
                    "Invalid body",
                    e.body_text(),
                ),
                other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    "Body too large",
                    other.body_text(),
                ),
                other => {
                    ApiError::new(StatusCode::BAD_REQUEST, "bad_request", "Bad request", other.body_text())
                }
            }),
        }
    }
}

/// A CSV request body (`text/csv`, UTF-8), with the same problem documents as `ApiJson`: 415
/// for another media type, 400 for text that is not UTF-8, 413 past the body limit.
#[derive(Debug, Clone, Default)]
pub struct ApiCsv(pub String);

impl<S: Send + Sync> axum::extract::FromRequest<S> for ApiCsv {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_csv = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/csv"));
        if !is_csv {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "CSV expected",
                "send the body as text/csv",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state).await.map_err(ApiError::unread_body)?;
        String::from_utf8(bytes.to_vec()).map(ApiCsv).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_encoding",
                "Not UTF-8",
                format!(
                    "the body is not UTF-8 text (byte {}); save the list as UTF-8",
                    e.utf8_error().valid_up_to()
                ),
            )
        })
    }
}

/// Query parameters whose rejections are problem documents (400).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| ApiQuery(value))
            .map_err(|e| {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", "Invalid query", e.body_text())
            })
    }
}

/// Path parameters whose rejections are problem documents (400 `invalid_path`), such as a
/// segment whose percent-encoding does not decode to UTF-8.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiPath<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for ApiPath<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| ApiPath(value))
            .map_err(|rejection| {
                if rejection.status().is_server_error() {
                    // A route and its handler disagree on the parameters: the gateway's bug.
                    ApiError::internal(&rejection.body_text())
                } else {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_path",
                        "Invalid path",
                        rejection.body_text(),
                    )
                }
            })
    }
}

/// The problem document (RFC 9457). `type` is a URN built from the code, so clients can match
/// on either.
#[derive(Debug, Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    type_uri: String,
    title: &'a str,
    status: u16,
    code: &'a str,
    detail: &'a str,
    #[serde(skip_serializing_if = "<[Reason]>::is_empty")]
    reasons: &'a [Reason],
}

impl ApiError {
    /// A body that could not be read: too large (413 `body_too_large`) or cut off (400).
    pub fn unread_body(rejection: axum::extract::rejection::BytesRejection) -> ApiError {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "Body too large",
                rejection.body_text(),
            )
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_request", "Bad request", rejection.body_text())
        }
    }

    /// The problem document the error is answered with, encoded: what a receipt's digest of a
    /// refusal is taken over.
    pub fn problem_body(&self) -> bytes::Bytes {
        let body = Problem {
            type_uri: format!("urn:tongban:problem:{}", self.code),
            title: self.title,
            status: self.status.as_u16(),
            code: self.code,
            detail: &self.detail,
            reasons: &self.reasons,
        };
        serde_json::to_vec(&body).map(bytes::Bytes::from).unwrap_or_default()
    }

    /// The error's response with `body`, its problem document encoded before.
    pub fn into_response_with(self, body: bytes::Bytes) -> Response {
        let mut response = (self.status, body).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(allow) = self.allow.as_deref().and_then(|a| HeaderValue::from_str(a).ok()) {
            response.headers_mut().insert(header::ALLOW, allow);
        }
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.problem_body();
        self.into_response_with(body)
    }
}

/// An RFC 9457 problem document, as every error is answered.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Problem)]
#[allow(dead_code)]
pub struct ProblemSchema {
    /// `urn:tongban:problem:{code}`.
    #[serde(rename = "type")]
    type_uri: String,
    title: String,
    status: u16,
    /// The stable machine-readable code.
    code: String,
    detail: String,
    /// Why a policy decision refused a data call, when it did.
    reasons: Option<Vec<tongban_policy::decision::Reason>>,
}
