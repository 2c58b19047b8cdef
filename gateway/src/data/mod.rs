//! The data plane: verification (核验), record look-up, SQL over shared datasets and calls
//! passed on to suppliers' own APIs, each decided by policy against the caller's grants.
//!
//! Every call runs the same lifecycle, written out in [`serve`]: **authenticate** (a system's
//! API key or client certificate) → **resolve grant** (purpose fields, then a policy decision
//! per resource) → **rate limit** → **cache** → **execute** (key look-up, SQL over per-grant
//! views, or the supplier's API) → **mask** (each item by its grant's rule) → **log** (one
//! exchange record, on every outcome, before the response is released). What differs between
//! the kinds of call (what they read, how they are answered) is in [`calls`], one module each.

use std::sync::{Arc, RwLock};
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use futures::FutureExt;
use tongban_policy::decision::{Denial, Permit, Purpose, Reason};
use tongban_policy::grant::Grant;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};
use utoipa_axum::routes;

use crate::datasets::{DatasetRegistry, Readiness};
use crate::error::ApiError;
use crate::listener::Peer;
use crate::sources::SourceLimits;
use calls::lookup::Lookup;
use calls::sql::Sql;
use calls::verify::Verify;
use calls::{Answering, DataCall, Resolving};
use tongban_exchange::{ExchangeLog, ExchangeRecord, Phase, purpose_digest};
use tongban_platform::{Caller, Platform, PolicySnapshot};

mod cache;
pub(crate) mod calls;
mod config;
pub(crate) mod forward;
mod limits;
pub(crate) mod proxy;
pub(crate) mod records;
pub(crate) mod sql;
mod sql_executor;

pub use cache::{AnswerCache, CacheConfig, CacheOutcome};
pub use config::DataConfig;
pub use limits::{Limit, Limited, Limiters, LimitsConfig, Refusal};
pub use proxy::{UpstreamConfig, UpstreamError, Upstreams};

pub use calls::document::{DocumentCheckAnswer, DocumentCheckRequest};
pub use calls::licence::{LicenceCheckAnswer, LicenceCheckRequest};
pub use records::{LookupQuery, Verdict, VerifyAnswer, VerifyRequest};
pub use sql::SqlRequest;
pub use sql_executor::{SqlExecutor, SqlExecutorError};

/// Header carrying the service item (事项编码) a call serves.
pub const SERVICE_ITEM_HEADER: &str = "x-tongban-service-item";
/// Header carrying the case number (办件编号).
pub const CASE_NUMBER_HEADER: &str = "x-tongban-case-number";
/// Header carrying the operator (经办人) handling the case.
pub const OPERATOR_HEADER: &str = "x-tongban-operator";
/// Response header naming the exchange record of the call.
pub const EXCHANGE_ID_HEADER: &str = "x-tongban-exchange-id";
/// Response header saying whether the answer came from the cache (`hit`, `miss`, `bypass`).
pub const CACHE_HEADER: &str = "x-tongban-cache";

/// The data routes, to be nested at `/api/v1`, each registered with its OpenAPI operation.
/// JSON bodies are limited to `max_body_bytes`.
pub fn routes(max_body_bytes: usize) -> OpenApiRouter<DataState> {
    // A data route asked with another method is refused through the lifecycle too, so that
    // the refusal has its record like any other.
    let refusing_other_methods = |(schemas, paths, method_router): UtoipaMethodRouter<DataState>| {
        (schemas, paths, method_router.fallback(wrong_method))
    };
    let mut router = OpenApiRouter::new()
        .routes(refusing_other_methods(routes!(calls::verify::verify)))
        .routes(refusing_other_methods(routes!(calls::lookup::lookup)))
        .routes(refusing_other_methods(routes!(calls::sql::run_sql)))
        .routes(refusing_other_methods(routes!(calls::licence::check_licence)))
        .routes(refusing_other_methods(routes!(calls::document::check_document)))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        // Proxied bodies are streamed and limited per upstream, not by the JSON body limit. The
        // route takes every method and the rest of the path, which an OpenAPI path template
        // cannot say, so its operation is documented beside the route rather than through it.
        .route("/proxy/{resource}/{*path}", any(calls::proxy::proxy_call));
    let (schemas, paths, _) = routes!(calls::proxy::proxy_call);
    let document = router.get_openapi_mut();
    document.paths.paths.extend(paths.paths);
    document.components.get_or_insert_with(Default::default).schemas.extend(schemas);
    router
}

/// The purpose every data call names, as headers.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub(crate) struct PurposeHeaders {
    /// The service item (事项编码) the call serves: letters, digits, `-`, `_` and `.`.
    #[param(rename = "X-Tongban-Service-Item", pattern = r"^[A-Za-z0-9._-]{1,64}$", max_length = 64)]
    service_item: String,
    /// The case number (办件编号): letters, digits, `-`, `_` and `.`.
    #[param(rename = "X-Tongban-Case-Number", pattern = r"^[A-Za-z0-9._-]{1,64}$", max_length = 64)]
    case_number: String,
    /// The operator (经办人) handling the case, by staff number or name: up to 64 characters,
    /// none of them a control character, and not only spaces.
    #[param(
        rename = "X-Tongban-Operator",
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$",
        max_length = 64
    )]
    operator: String,
}

/// What a call asked, as its receipt binds it: the method, the path and query as sent, and
/// the body (or its digest, for a body streamed on to a supplier). Boxed, because it travels
/// through every phase of the call and a data call's future is kept small.
pub(crate) struct Asked(Box<AskedParts>);

struct AskedParts {
    method: axum::http::Method,
    uri: axum::http::Uri,
    body: AskedBody,
}

/// A call's body as its receipt knows it.
pub(crate) enum AskedBody {
    /// Read whole: a JSON call's body, or the empty body of a look-up.
    Read(bytes::Bytes),
    /// Streamed on to a supplier: its digest, once the stream has ended.
    Streamed(Arc<std::sync::OnceLock<tongban_evidence::Digest>>),
    /// Never read: the call was refused before its body was.
    Unread,
}

impl Asked {
    pub(crate) fn new(method: axum::http::Method, uri: axum::http::Uri, body: AskedBody) -> Asked {
        Asked(Box::new(AskedParts { method, uri, body }))
    }

    /// The same request, with its body known as `body`.
    pub(crate) fn with_body(mut self, body: AskedBody) -> Asked {
        self.0.body = body;
        self
    }

    /// The salted digest of the request as a peer's signature binds it: with its body's
    /// digest, or with an empty body's for a body `streamed` on to a supplier.
    pub(crate) fn signed_digest(
        &self,
        hash: tongban_evidence::HashAlgorithm,
        nonce: &[u8],
        streamed: bool,
    ) -> Option<String> {
        let body = match (&self.0.body, streamed) {
            (_, true) => hash.digest(&[b""]),
            (AskedBody::Read(bytes), false) => hash.digest(&[bytes]),
            _ => return None,
        };
        Some(self.digest_with(hash, nonce, &body))
    }

    /// The salted digest of the request, when its body was read or streamed to its end.
    fn digest(&self, hash: tongban_evidence::HashAlgorithm, nonce: &[u8]) -> Option<String> {
        let body = match &self.0.body {
            AskedBody::Read(bytes) => hash.digest(&[bytes]),
            AskedBody::Streamed(digest) => *digest.get()?,
            AskedBody::Unread => return None,
        };
        Some(self.digest_with(hash, nonce, &body))
    }

    /// The salted digest of the method, the path and query as sent, and `body_digest`.
    fn digest_with(
        &self,
        hash: tongban_evidence::HashAlgorithm,
        nonce: &[u8],
        body_digest: &tongban_evidence::Digest,
    ) -> String {
        let parts = &self.0;
        let target = parts.uri.path_and_query().map_or_else(|| parts.uri.path(), |p| p.as_str());
        hex::encode(tongban_evidence::request_digest(hash, nonce, parts.method.as_str(), target, body_digest))
    }
}

/// The method and the path as the caller sent them, before routers nested it; the body is
/// the empty one of a look-up until a call reads its own.
impl<S: Send + Sync> FromRequestParts<S> for Asked {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let uri = parts
            .extensions
            .get::<axum::extract::OriginalUri>()
            .map_or_else(|| parts.uri.clone(), |original| original.0.clone());
        Ok(Asked::new(parts.method.clone(), uri, AskedBody::Read(bytes::Bytes::new())))
    }
}

/// A JSON call's body, parsed as [`ApiJson`] parses it, with the bytes it came as kept for
/// the receipt.
pub(crate) struct Received<T> {
    pub(crate) body: Result<T, ApiError>,
    pub(crate) asked: Asked,
}

impl<S, T> axum::extract::FromRequest<S> for Received<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = std::convert::Infallible;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let Ok(asked) = Asked::from_request_parts(&mut parts, state).await;
        let headers = parts.headers.clone();
        let bytes =
            match bytes::Bytes::from_request(axum::extract::Request::from_parts(parts, body), state).await {
                Ok(bytes) => bytes,
                Err(rejection) => {
                    let asked = asked.with_body(AskedBody::Unread);
                    let error = ApiError::unread_body(rejection);
                    return Ok(Received { body: Err(error), asked });
                }
            };
        let mut again = axum::extract::Request::new(axum::body::Body::from(bytes.clone()));
        *again.headers_mut() = headers;
        let body =
            crate::error::ApiJson::<T>::from_request(again, state).await.map(|crate::error::ApiJson(b)| b);
        Ok(Received { body, asked: asked.with_body(AskedBody::Read(bytes)) })
    }
}

/// A data route asked with a method it does not take: refused with 405 in the resolve phase,
/// after the caller and purpose are checked, and recorded.
async fn wrong_method(
    State(state): State<DataState>,
    caller: Result<Caller, ApiError>,
    Peer(peer): Peer,
    method: axum::http::Method,
    uri: axum::http::Uri,
    asked: Asked,
    headers: HeaderMap,
) -> Response {
    // The body of a call refused for its method is never read.
    let asked = asked.with_body(AskedBody::Unread);
    let path = uri.path();
    // Every data route but the look-up takes POST; each refusal is recorded as the kind of
    // call its route serves.
    let refused = |allowed: &'static str| {
        ApiError::method_not_allowed(format!("{path} takes {allowed}, not {method}"), &[allowed])
    };
    if path.ends_with("/data/verify") {
        serve(state, caller, peer, headers, asked, Verify::refused(refused("POST"))).await
    } else if path.ends_with("/data/sql") {
        serve(state, caller, peer, headers, asked, Sql::refused(refused("POST"))).await
    } else if path.ends_with("/data/licences/check") {
        serve(state, caller, peer, headers, asked, calls::licence::LicenceCheck::refused(refused("POST")))
            .await
    } else if path.ends_with("/data/licences/documents/check") {
        serve(state, caller, peer, headers, asked, calls::document::DocumentCheck::refused(refused("POST")))
            .await
    } else {
        serve(state, caller, peer, headers, asked, Lookup::refused(refused("GET"))).await
    }
}

/// A call's answer, encoded: masked values only.
pub(crate) struct Answer {
    pub status: StatusCode,
    /// Content type and any other headers of the answer.
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
    pub rows: u64,
    /// How long the source lets the answer be kept, when it says.
    pub max_age: Option<std::time::Duration>,
}

impl Answer {
    /// A 200 answer of `content_type`.
    pub(crate) fn ok(content_type: &'static str, body: bytes::Bytes, rows: u64) -> Self {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        Answer { status: StatusCode::OK, headers, body, rows, max_age: None }
    }

    fn len(&self) -> u64 {
        self.body.len() as u64
    }
}

/// The calling system, once authenticated.
pub(crate) struct System(Arc<tongban_platform::SystemIdentity>);

impl System {
    pub(crate) fn id(&self) -> &str {
        &self.0.system.id
    }

    /// The credit code of the system's department.
    pub(crate) fn department(&self) -> &str {
        &self.0.system.department_code
    }
}

/// Times the phases of one call into its exchange record.
pub(crate) struct Phases<'r> {
    pub(crate) record: &'r mut ExchangeRecord,
    at: Instant,
}

impl Phases<'_> {
    pub(crate) fn end(&mut self, phase: Phase) {
        let now = Instant::now();
        self.record.phases.push((phase, u64::try_from((now - self.at).as_micros()).unwrap_or(u64::MAX)));
        self.at = now;
    }
}

/// The lifecycle of every data call. The log phase runs whatever the outcome, and the
/// response is released only once the record is written.
pub(crate) async fn serve<C: DataCall>(
    state: DataState,
    caller: Result<Caller, ApiError>,
    peer: Option<std::net::SocketAddr>,
    headers: HeaderMap,
    asked: Asked,
    call: C,
) -> Response {
    serve_with(state, caller, peer, headers, asked, call, None).await
}

/// A call a peer gateway passed on for one of its systems: the peer, and the id of the
/// peer's own record of the call.
#[derive(Debug, Clone)]
pub(crate) struct PeerOrigin {
    pub(crate) peer: String,
    pub(crate) exchange_id: Option<String>,
    /// The peer's signed request, as it came.
    pub(crate) signature: Option<String>,
}

/// The lifecycle of a data call, for a call from a local system (`origin` is `None`) or one a
/// peer gateway passed on.
pub(crate) async fn serve_with<C: DataCall>(
    state: DataState,
    caller: Result<Caller, ApiError>,
    peer: Option<std::net::SocketAddr>,
    headers: HeaderMap,
    asked: Asked,
    call: C,
    origin: Option<PeerOrigin>,
) -> Response {
    // A source sending calls without a valid credential gets a record for each only within
    // its allowance; past it, a summary stands for them (`record_suppressed`).
    if let Err(error) = &caller
        && error.status == StatusCode::UNAUTHORIZED
        && let Err(refusal) = state.sources().unauthenticated(peer, C::OPERATION)
    {
        return refusal.into_response();
    }
    if !crate::telemetry::enabled() {
        return lifecycle(&state, caller, &headers, asked, call, None, origin).await;
    }
    // With telemetry on, the call is one span continuing the caller's trace; its record
    // carries the same trace id.
    use opentelemetry::trace::TraceContextExt;
    use tracing::Instrument;
    use tracing::field::Empty;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let operation = C::OPERATION.as_str();
    let span = tracing::info_span!(target: "tongban::exchange", "data_call",
        otel.name = operation, otel.kind = "server", tongban.operation = operation,
        exchange.id = Empty, tongban.resource = Empty, http.response.status_code = Empty,
        tongban.code = Empty, tongban.cache = Empty);
    let _ = span.set_parent(crate::telemetry::parent_context(&headers));
    let trace_id = span.context().span().span_context().trace_id().to_string();
    lifecycle(&state, caller, &headers, asked, call, Some(trace_id), origin).instrument(span).await
}

/// The record of a call until the log phase takes it. A caller that hangs up drops the call
/// wherever it is waiting (on a supplier, a query, the cache); the record is then written
/// from here, as closed by the client (499 `client_closed`), with everything the phases had
/// filled in: the caller, the purpose, the resource, the grant. A query is stopped with it,
/// and a supplier that was being asked has the exchange id to join its own log to this one.
struct Unfinished {
    state: DataState,
    record: Option<ExchangeRecord>,
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        let Some(mut record) = self.record.take() else { return };
        record.status = 499;
        record.code = Some("client_closed");
        record.finished_at = Some(chrono::Utc::now());
        let state = self.state.clone();
        // A call is dropped by the runtime serving it, so there is one to write from.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = state.data().log.write(record).await {
                    tracing::error!(error = %e, "the record of a call its caller abandoned could not be written");
                }
            });
        }
    }
}

async fn lifecycle<C: DataCall>(
    state: &DataState,
    caller: Result<Caller, ApiError>,
    headers: &HeaderMap,
    asked: Asked,
    call: C,
    trace_id: Option<String>,
    origin: Option<PeerOrigin>,
) -> Response {
    let data = state.data();
    let mut unfinished =
        Unfinished { state: state.clone(), record: Some(ExchangeRecord::begin(C::OPERATION)) };
    let record = unfinished.record.as_mut().expect("just made");
    if let Some(origin) = origin {
        record.peer = Some(origin.peer);
        record.peer_exchange_id = origin.exchange_id;
        record.request_signature = origin.signature;
    }
    if let Some(trace_id) = trace_id {
        record.trace_id = trace_id;
        tracing::Span::current().record("exchange.id", record.id.as_str());
    } else if let Some(trace) = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .filter(|v| proxy::valid_traceparent(v))
        .and_then(|v| v.get(3..35))
    {
        trace.clone_into(&mut record.trace_id);
    }
    record.bytes_in = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let snapshot = state.platform().grants.snapshot();
    let started = Instant::now();
    let from_peer = record.peer.is_some();
    let mut phases = Phases { record: &mut *record, at: started };

    // A panic while the call is decided or executed (a bug in the gateway or a connector)
    // ends the call as a failure of its own, so that the log phase below still runs for it
    // instead of the panic unwinding past its record. Nothing of the call outlives the
    // unwind but the record, which is only ever added to, and the cache, whose coalesced
    // waiters retry on their own.
    let outcome: Result<(Answer, CacheOutcome), ApiError> = std::panic::AssertUnwindSafe(async {
        // Authenticate: data calls are made by systems with their API keys.
        let system = authenticate(caller)?;
        phases.record.system = Some(system.id().to_owned());
        phases.record.department = Some(system.department().to_owned());
        phases.record.region = system.department().get(2..8).map(str::to_owned);
        phases.end(Phase::Authenticate);

        // Resolve grant: the purpose is checked before the body, so that a call without one
        // learns nothing about what it asked for.
        let purpose = purpose(headers, data.log.key(), phases.record)?;
        // A call on another province's resource is decided early here and answered there.
        // One passed on by a peer never goes further: it names the peer's own resources.
        let context = forward::ForwardContext {
            snapshot: &snapshot,
            peers: state.peers().map(|p| &**p),
            department: system.department(),
            service_item: &purpose.service_item,
        };
        if let Some(forwarded) = call.forwarded(&context)? {
            if from_peer {
                return Err(ApiError::not_found(format!(
                    "{} is not a resource of this gateway; calls are not passed on twice",
                    forwarded.resource_ids.join(", ")
                ))
                .with_code("unknown_resource"));
            }
            return forward::forward(state, &system, &purpose, headers, C::OPERATION, forwarded, &mut phases)
                .await;
        }
        let registry = ready_datasets(state)?;
        // One day for the whole call: the decision and the answer read the same clock reading.
        let today = state.platform().now().date();
        let resolving = Resolving {
            snapshot: &snapshot,
            registry: &registry,
            suppliers: &state.platform().datasets,
            system: &system,
            purpose: &purpose,
            upstreams: &data.upstreams,
            operation: C::OPERATION,
            today,
            salt: data.log.key(),
        };
        let permits = call.resolve(&resolving, phases.record)?;
        for (_, permit) in &permits {
            phases.record.grants.push(permit.grant.id.clone());
            phases.record.grant_versions.push(permit.grant.version);
            phases.record.items.extend(permit.items.iter().map(|i| i.name.clone()));
        }
        phases.end(Phase::ResolveGrant);

        // Rate limit: per system, per grant (rate and daily quota), per resource.
        let grants: Vec<&Grant> = permits.iter().map(|(_, p)| p.grant).collect();
        let resources: Vec<&str> = permits.iter().map(|(r, _)| r.code.as_str()).collect();
        match data.limits.check(system.id(), &grants, &resources, state.platform().now()).await {
            Ok(()) => {}
            Err(Refusal::Limited(limited)) => {
                phases.record.rate_limit = Some(limited.limit);
                return Err(limited.into());
            }
            Err(Refusal::QuotaUnavailable(e)) => {
                tracing::error!(error = %e, "the daily quota cannot be counted; refusing the call");
                return Err(ApiError::quota_unavailable());
            }
        }
        phases.end(Phase::RateLimit);

        // Cache, then execute and mask on a miss.
        let answering = Answering {
            data,
            snapshot: &snapshot,
            registry: &registry,
            permits: &permits,
            system: &system,
            purpose: &purpose,
            headers,
            today,
        };
        let answer = call.answer(&answering, &mut phases).await?;
        if answer.1 == CacheOutcome::Hit {
            phases.end(Phase::Cache);
        }
        phases.record.cache = Some(answer.1);
        Ok(answer)
    })
    .catch_unwind()
    .await
    .unwrap_or_else(|_| Err(ApiError::internal(&"a data call panicked")));

    // Log: every outcome, before anything is released.
    match &outcome {
        Ok((answer, _)) => {
            phases.record.rows = answer.rows;
            phases.record.bytes_out = answer.len();
            phases.record.status = answer.status.as_u16();
        }
        Err(error) => {
            phases.record.status = error.status.as_u16();
            phases.record.code = Some(error.code);
            phases.record.reasons.clone_from(&error.reasons);
        }
    }
    // The catalog versions and suppliers of what the call read, or asked for.
    for code in &phases.record.resources {
        if let Some(resource) = snapshot.resources.get(code) {
            phases.record.resource_versions.push(resource.version);
            phases.record.suppliers.push(resource.supplier.clone());
            phases.record.supplier_regions.push(resource.supplier.get(2..8).unwrap_or_default().to_owned());
        }
    }
    // The receipt binds the request and the answer body by salted digests; a refusal's body
    // is its problem document, encoded here once for both the digest and the response.
    let signing = data.log.signer().map(|signer| (signer.hash(), data.log.nonce(&phases.record.id)));
    let mut problem_body = None;
    if let Some((hash, nonce)) = &signing {
        phases.record.request_digest = asked.digest(*hash, nonce);
        let body: &[u8] = match &outcome {
            Ok((answer, _)) => &answer.body,
            Err(error) => problem_body.insert(error.problem_body()),
        };
        phases.record.response_digest =
            Some(hex::encode(tongban_evidence::response_digest(*hash, nonce, body)));
    }
    phases.end(Phase::Log);
    record.finished_at = Some(chrono::Utc::now());
    let exchange_id = record.id.clone();
    let counted = Counted::of(record);
    if crate::telemetry::enabled() {
        let span = tracing::Span::current();
        span.record("http.response.status_code", record.status);
        span.record("tongban.code", record.code);
        span.record("tongban.resource", record.resources.first().map(String::as_str));
        span.record("tongban.cache", record.cache.map(CacheOutcome::as_str));
    }
    // From here the log phase owns the record.
    let record = unfinished.record.take().expect("taken once");
    let logged = match &signing {
        Some((_, nonce)) => data.log.write_receipted(record, nonce).await,
        None => data.log.write(record).await.map(|()| None),
    };
    counted.count(&data.metrics, logged.as_ref().err().map(|_| "exchange_log_unavailable"), started);
    let mut receipt = None;
    let mut response = match logged.map(|r| receipt = r) {
        Ok(()) => match outcome {
            Ok((answer, cache)) => {
                let body = axum::body::Body::from(answer.body);
                // The answer's headers become the response's as they are, rather than being
                // copied into a new map.
                let mut response = Response::new(body);
                *response.status_mut() = answer.status;
                *response.headers_mut() = answer.headers;
                response.headers_mut().insert(CACHE_HEADER, HeaderValue::from_static(cache.as_str()));
                response
            }
            Err(error) => match problem_body {
                Some(body) => error.into_response_with(body),
                None => error.into_response(),
            },
        },
        Err(e) => {
            // Fail closed: no data leaves without its record.
            tracing::error!(error = %e, "refusing a data call whose exchange record could not be written");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "exchange_log_unavailable",
                "Exchange log unavailable",
                "the call could not be recorded, so no data is released",
            )
            .into_response()
        }
    };
    if let Ok(value) = HeaderValue::from_str(&exchange_id) {
        response.headers_mut().insert(EXCHANGE_ID_HEADER, value);
    }
    if let Some(value) = receipt.and_then(|r| HeaderValue::try_from(r).ok()) {
        response.headers_mut().insert(crate::evidence::RECEIPT_HEADER, value);
    }
    response
}

/// Writes one summary record per source address and operation for the calls refused without
/// a credential past the source's allowance since the last summary (see `sources`).
pub async fn record_suppressed(state: &DataState) {
    for ((source, operation), calls) in state.sources().take_suppressed() {
        let mut record = ExchangeRecord::begin(operation);
        record.status = StatusCode::TOO_MANY_REQUESTS.as_u16();
        record.code = Some("unauthenticated_rate_limited");
        record.rows = calls;
        record.source = Some(source.to_string());
        record.finished_at = Some(chrono::Utc::now());
        if let Err(e) = state.data().log.write(record).await {
            tracing::error!(error = %e, %source, calls, "a summary of refused calls could not be recorded");
        }
    }
}

/// What a call adds to the metrics, taken from its record before the record goes to the log.
struct Counted {
    operation: &'static str,
    status: u16,
    code: Option<&'static str>,
    cache: Option<CacheOutcome>,
    rate_limit: Option<Limit>,
    upstream: Option<(String, u64)>,
}

impl Counted {
    fn of(record: &ExchangeRecord) -> Counted {
        Counted {
            operation: record.operation.as_str(),
            status: record.status,
            code: record.code,
            cache: record.cache,
            rate_limit: record.rate_limit,
            upstream: record.upstream_us.zip(record.resources.first()).map(|(us, r)| (r.clone(), us)),
        }
    }

    /// Counts the call; `refused` overrides its outcome when its record could not be written.
    fn count(self, metrics: &crate::metrics::Metrics, refused: Option<&'static str>, started: Instant) {
        use crate::metrics::{CallLabels, OutcomeLabels, ResourceLabels};
        let (status, code) = match refused {
            Some(code) => (StatusCode::SERVICE_UNAVAILABLE.as_u16(), Some(code)),
            None => (self.status, self.code),
        };
        let seconds = started.elapsed().as_secs_f64();
        metrics.calls.record(CallLabels { operation: self.operation, status, code }, seconds);
        if let Some(cache) = self.cache {
            metrics.cache.get_or_create(&OutcomeLabels { outcome: cache.as_str() }).inc();
        }
        if let Some(limit) = self.rate_limit {
            metrics.rate_limited.get_or_create(&OutcomeLabels { outcome: limit.as_str() }).inc();
        }
        if let Some((resource, us)) = self.upstream {
            metrics.upstream_seconds.get_or_create(&ResourceLabels { resource }).observe(us as f64 / 1e6);
        }
    }
}

fn authenticate(caller: Result<Caller, ApiError>) -> Result<System, ApiError> {
    match caller? {
        Caller::System(identity) => Ok(System(identity)),
        Caller::User { .. } => Err(ApiError::forbidden("data calls are made by systems with their API keys")),
    }
}

fn purpose(headers: &HeaderMap, salt: &[u8], record: &mut ExchangeRecord) -> Result<Purpose, ApiError> {
    // Header values are read as UTF-8, so an operator may be named in Chinese; bytes that are
    // not UTF-8 make the field malformed.
    let field = |name: &str| headers.get(name).map(|v| std::str::from_utf8(v.as_bytes()).unwrap_or("\u{0}"));
    let purpose = Purpose::parse(
        field(SERVICE_ITEM_HEADER),
        field(CASE_NUMBER_HEADER),
        field(OPERATOR_HEADER),
    )
    .map_err(|reasons| {
        ApiError::denied(
            StatusCode::BAD_REQUEST,
            "purpose_required",
            "Purpose required",
            format!(
                "every data call names its purpose in the {SERVICE_ITEM_HEADER}, {CASE_NUMBER_HEADER} and \
                     {OPERATOR_HEADER} headers (ASCII code, case number, operator)"
            ),
            reasons,
        )
    })?;
    record.service_item = Some(purpose.service_item.clone());
    record.case_digest = Some(purpose_digest(salt, &purpose.case_number));
    record.operator_digest = Some(purpose_digest(salt, &purpose.operator));
    Ok(purpose)
}

pub(crate) fn denied(denial: Denial) -> ApiError {
    let detail = denial.reasons.iter().map(reason_text).collect::<Vec<_>>().join("; ");
    ApiError::denied(StatusCode::FORBIDDEN, "access_denied", "Access denied", detail, denial.reasons)
}

/// A sentence per reason, for people; the `reasons` member carries the codes.
fn reason_text(reason: &Reason) -> String {
    match reason {
        Reason::PurposeMissing { field } => format!("the purpose field {field} is missing"),
        Reason::PurposeInvalid { field } => format!("the purpose field {field} is malformed"),
        Reason::NoGrant => "the department holds no grant on this resource".into(),
        Reason::WrongSystem => "the department's grants on this resource are for other systems".into(),
        Reason::WrongPurpose { service_item } => format!("no grant covers service item {service_item}"),
        Reason::GrantSuspended { grant } => format!("grant {grant} is suspended"),
        Reason::GrantRevoked { grant } => format!("grant {grant} is revoked"),
        Reason::GrantSuperseded { grant, by } => {
            format!("grant {grant} was replaced by grant {by}, a later approval for the same purpose")
        }
        Reason::GrantExpired { grant, valid_until } => format!("grant {grant} expired after {valid_until}"),
        Reason::GrantNotYetValid { grant, valid_from } => format!("grant {grant} is valid from {valid_from}"),
        Reason::ItemsNotGranted { grant, items } => {
            format!("grant {grant} does not cover {}", items.join(", "))
        }
        Reason::ItemsWithdrawn { items } => format!("the catalog no longer shares {}", items.join(", ")),
        Reason::ItemsRedacted { items } => {
            format!("{} are granted redacted and cannot be verified", items.join(", "))
        }
        Reason::ScopeUnenforceable { grant } => {
            format!("grant {grant} limits rows the resource cannot be scoped by")
        }
        Reason::DocumentUnmaskable { items } => {
            format!("the supplier's document shows {} whole, which the grant masks", items.join(", "))
        }
        Reason::OperationNotOffered { operation } => {
            format!("the resource is not offered for {operation:?} calls")
        }
        Reason::DatasetNotOwned { dataset } => {
            format!("dataset {dataset} is not configured as the resource's supplier's own")
        }
    }
}

/// The cache key of a verification or look-up: everything that decides its answer.
pub(crate) fn cache_key(
    operation: &str,
    snapshot: &PolicySnapshot,
    registry: &crate::datasets::DatasetRegistry,
    resource: &tongban_policy::catalog::Resource,
    permit: &Permit<'_>,
    request: &[&[u8]],
) -> [u8; 32] {
    let mut key = cache::KeyBuilder::new(operation);
    key.part(&snapshot.revision.to_le_bytes())
        .part(&registry.generation.to_le_bytes())
        .part(resource.code.as_bytes())
        .part(&resource.version.to_le_bytes())
        .part(permit.grant.id.as_bytes())
        .part(&permit.grant.version.to_le_bytes());
    for part in request {
        key.part(part);
    }
    key.finish()
}

/// Runs `execute` through the cache when answers may be cached for `ttl`.
pub(crate) async fn cached(
    cache: &AnswerCache,
    ttl: Option<std::time::Duration>,
    key: [u8; 32],
    execute: impl std::future::Future<Output = Result<Answer, ApiError>>,
) -> Result<(Answer, CacheOutcome), ApiError> {
    match ttl {
        None => Ok((execute.await?, CacheOutcome::Bypass)),
        Some(ttl) => cache.get_or_compute(key, ttl, execute).await,
    }
}

fn ready_datasets(state: &DataState) -> Result<Arc<DatasetRegistry>, ApiError> {
    match state.readiness() {
        Readiness::Ready(registry) => Ok(registry),
        Readiness::Loading => Err(ApiError::not_ready("datasets are still loading")),
        Readiness::Failed(_) => Err(ApiError::not_ready("datasets failed to load; see /readyz")),
    }
}

/// The data plane's own state: its limits, rate limiters, answer cache and exchange log.
#[derive(Debug)]
pub struct DataPlane {
    pub sql: DataConfig,
    pub sql_executor: SqlExecutor,
    pub log: ExchangeLog,
    pub limits: Limiters,
    pub cache: AnswerCache,
    pub upstreams: Upstreams,
    pub metrics: crate::metrics::Metrics,
    /// The issuing departments' seals, for sealing and checking licence documents.
    pub seals: Arc<crate::seals::Seals>,
    /// The platform's store, where licence checks read revocations.
    pub store: tongban_platform::store::Store,
}

/// Why the data plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum DataPlaneError {
    #[error("binding supplier APIs: {0}")]
    Upstream(#[from] UpstreamError),
    #[error(transparent)]
    Sql(#[from] SqlExecutorError),
}

impl DataPlane {
    /// The data plane for `config`, writing to `log`, counting daily quotas in `store`.
    pub fn new(
        config: DataConfig,
        log: ExchangeLog,
        store: tongban_platform::store::Store,
    ) -> Result<Self, DataPlaneError> {
        let sql_executor = SqlExecutor::new(&config)?;
        let metrics = crate::metrics::Metrics::new(log.metrics().clone(), sql_executor.metrics());
        // The calls counted for `/metrics` are the ones exported over OTLP, when that is on.
        crate::telemetry::export_calls(&metrics.calls);
        Ok(DataPlane {
            metrics,
            sql_executor,
            limits: Limiters::new(&config.limits, store.clone()),
            store,
            cache: AnswerCache::new(&config.cache),
            upstreams: Upstreams::new(&config.upstreams)?,
            sql: config,
            log,
            seals: Arc::default(),
        })
    }
}

/// What a data call reads: the platform (grants, identities, who owns which dataset), the
/// data plane, where dataset loading stands, and each source's allowance of calls without a
/// credential. The server's state holds one and gives the data routes this alone, so the data
/// plane knows nothing of the management API or the server.
#[derive(Debug, Clone)]
pub struct DataState {
    platform: Arc<Platform>,
    data: Arc<DataPlane>,
    readiness: Arc<RwLock<Readiness>>,
    sources: Arc<SourceLimits>,
    /// The peer gateways, when this one is federated.
    peers: Option<Arc<crate::peers::Peers>>,
}

impl DataState {
    pub fn new(
        platform: Arc<Platform>,
        data: Arc<DataPlane>,
        readiness: Arc<RwLock<Readiness>>,
        sources: Arc<SourceLimits>,
    ) -> Self {
        DataState { platform, data, readiness, sources, peers: None }
    }

    /// The same state, federated with `peers`.
    pub fn with_peers(self, peers: Arc<crate::peers::Peers>) -> Self {
        DataState { peers: Some(peers), ..self }
    }

    /// The peer gateways, when this one is federated.
    pub fn peers(&self) -> Option<&Arc<crate::peers::Peers>> {
        self.peers.as_ref()
    }

    /// The same state with other limits per source address.
    pub fn with_sources(self, sources: Arc<SourceLimits>) -> Self {
        DataState { sources, ..self }
    }

    pub fn platform(&self) -> &Platform {
        &self.platform
    }

    pub fn data(&self) -> &DataPlane {
        &self.data
    }

    pub fn sources(&self) -> &SourceLimits {
        &self.sources
    }

    pub fn set_readiness(&self, readiness: Readiness) {
        *self.readiness.write().expect("readiness lock is never poisoned") = readiness;
    }

    pub fn readiness(&self) -> Readiness {
        self.readiness.read().expect("readiness lock is never poisoned").clone()
    }
}

impl FromRequestParts<DataState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &DataState) -> Result<Self, Self::Rejection> {
        crate::caller::caller(parts, state.platform()).await
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;
    use crate::state::AppState;

    async fn state(log: ExchangeLog) -> AppState {
        let platform = Platform::in_memory(Vec::new()).await.expect("platform");
        let data = DataPlane::new(DataConfig::default(), log, platform.store.clone()).expect("data plane");
        AppState::new(platform, data)
    }

    fn verify_call() -> Request<Body> {
        Request::post("/api/v1/data/verify")
            .header("content-type", "application/json")
            .body(Body::from(
                r#"{"resource": "A01", "key": "11010519491231002X", "claims": {"name": "张三"}}"#,
            ))
            .expect("request")
    }

    #[tokio::test]
    async fn refused_calls_are_recorded_before_the_answer_is_released() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let log = ExchangeLog::open_in(dir.path()).await.expect("exchange log");
        let response = crate::app(state(log).await).oneshot(verify_call()).await.expect("infallible");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let exchange_id = response.headers()[EXCHANGE_ID_HEADER].to_str().expect("ascii").to_owned();
        // The record is in the log by the time the answer is out.
        let records = tongban_exchange::read_records(dir.path()).expect("log");
        let record = &records[0];
        assert_eq!(record["id"], exchange_id);
        assert_eq!(
            (record["status"].as_u64(), record["code"].as_str()),
            (Some(401), Some("unauthenticated"))
        );
        assert_eq!(record["operation"], "verify");
        let text = serde_json::to_string(&records).expect("json");
        assert!(!text.contains("11010519491231002X") && !text.contains("张三"), "no key or claim in {text}");
    }

    #[tokio::test]
    async fn calls_fail_closed_while_the_log_cannot_be_written_and_recover_after() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let log = ExchangeLog::open_in(dir.path()).await.expect("exchange log");
        let app = crate::app(state(log.clone()).await);
        let first = app.clone().oneshot(verify_call()).await.expect("infallible");
        assert_eq!(first.status(), StatusCode::UNAUTHORIZED);

        // The disk takes half of the next write and fails: the call is refused, not answered.
        log.fail_next_writes(1);
        let refused = app.clone().oneshot(verify_call()).await.expect("infallible");
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = refused.into_body().collect().await.expect("body").to_bytes();
        let problem: serde_json::Value = serde_json::from_slice(&body).expect("problem");
        assert_eq!(problem["code"], "exchange_log_unavailable");

        // Once writes succeed again, calls are answered, and the half-written record is gone
        // from a chain that still verifies.
        let recovered = app.oneshot(verify_call()).await.expect("infallible");
        assert_eq!(recovered.status(), StatusCode::UNAUTHORIZED);
        let report = tongban_exchange::audit::verify(dir.path()).expect("audit");
        assert!(report.intact(), "{:?}", report.problem);
        assert_eq!((report.records, report.torn_tail_bytes), (2, 0));
    }

    /// A source whose look-up panics, as a bug in a connector would.
    #[derive(Debug)]
    struct PanickingLookup;

    #[async_trait::async_trait]
    impl tongban_connectors::KeyLookup for PanickingLookup {
        async fn lookup(
            &self,
            _key: &str,
            _projection: Option<&[usize]>,
        ) -> tongban_connectors::error::Result<tongban_connectors::LookupOutcome> {
            panic!("the source's look-up failed an assertion")
        }
    }

    #[tokio::test]
    async fn a_call_that_panics_is_recorded_and_answered_as_an_internal_failure() {
        use arrow::datatypes::{DataType, Field, Schema};
        let dir = tempfile::tempdir().expect("temporary directory");
        let log = ExchangeLog::open_in(dir.path()).await.expect("exchange log");
        let datasets = ["household", "social_insurance", "housing_fund"]
            .map(|name| (name.to_owned(), crate::demo::seed::dataset_supplier(name)))
            .to_vec();
        let platform = Platform::in_memory(datasets).await.expect("platform");
        let credentials = crate::demo::seed::seed(&platform).await.expect("seed");
        platform.grants.reload(&platform.store).await.expect("grants");
        let system = credentials
            .systems
            .iter()
            .find(|s| s.name == "广东省公安厅跨省户籍业务系统")
            .expect("the police system, granted the household resource for KSTB-GA-001");
        let items = ["id_number", "name", "gender", "division_code", "address", "status"];
        let schema = Arc::new(Schema::new(items.map(|name| Field::new(name, DataType::Utf8, true)).to_vec()));
        let table =
            datafusion::datasource::MemTable::try_new(Arc::clone(&schema), vec![vec![]]).expect("table");
        let household = tongban_connectors::Dataset {
            name: "household".into(),
            key_column: "id_number".into(),
            schema,
            table: Arc::new(table),
            lookup: Arc::new(PanickingLookup),
            rows: None,
        };
        let registry = crate::datasets::DatasetRegistry {
            datasets: [("household".to_owned(), household)].into(),
            ctx: datafusion::prelude::SessionContext::new(),
            generation: 0,
        };
        let data = DataPlane::new(DataConfig::default(), log, platform.store.clone()).expect("data plane");
        let state = AppState::new(platform, data);
        state.set_readiness(Readiness::Ready(Arc::new(registry)));
        let app = crate::app(state);
        let birth = chrono::NaiveDate::from_ymd_opt(1990, 1, 1).expect("date");
        let key = tongban_policy::IdNumber::compose("411502", birth, 31);
        let call = || {
            Request::post("/api/v1/data/verify")
                .header("authorization", format!("Bearer {}", system.api_key))
                .header("content-type", "application/json")
                .header(SERVICE_ITEM_HEADER, "KSTB-GA-001")
                .header(CASE_NUMBER_HEADER, "GD-2026-000731")
                .header(OPERATOR_HEADER, "0031")
                .body(Body::from(
                    serde_json::json!({"resource": "A01-410000-0001", "key": key, "claims": {"name": "张三"}})
                        .to_string(),
                ))
                .expect("request")
        };

        // Twice: the cache, whose computation panicked, does not leave the second call waiting.
        let mut exchange_ids = Vec::new();
        for _ in 0..2 {
            let response = app.clone().oneshot(call()).await.expect("infallible");
            assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
            exchange_ids.push(response.headers()[EXCHANGE_ID_HEADER].to_str().expect("ascii").to_owned());
            let body = response.into_body().collect().await.expect("body").to_bytes();
            let problem: serde_json::Value = serde_json::from_slice(&body).expect("problem document");
            assert_eq!(problem["code"], "internal");
        }

        let records = tongban_exchange::read_records(dir.path()).expect("log");
        assert_eq!(records.len(), 2, "{records:?}");
        for (record, exchange_id) in records.iter().zip(&exchange_ids) {
            assert_eq!(record["id"], *exchange_id);
            assert_eq!((record["status"].as_u64(), record["code"].as_str()), (Some(500), Some("internal")));
            assert_eq!(record["system"], system.id);
            assert_eq!(record["resources"], serde_json::json!(["A01-410000-0001"]));
            assert_eq!(record["grants"].as_array().map(Vec::len), Some(1), "{record}");
        }
        let text = serde_json::to_string(&records).expect("json");
        assert!(!text.contains(&key) && !text.contains("张三"), "no key or claim in {text}");
    }
}

#[cfg(test)]
mod future_size {
    /// A data call's future is moved, whole, several times on every call (into the handler's
    /// box, through the panic guard and the span). The execute phase of each operation, the
    /// SQL call and the cache's miss path are boxed, so that the call carries a pointer to
    /// each rather than their states: before, a verification's future was 16.7 KB (debug
    /// build) and copying it was the largest single item of a cached verification's profile.
    #[tokio::test]
    async fn a_data_calls_future_stays_small() {
        let dir = tempfile::tempdir().expect("dir");
        let log = super::ExchangeLog::open_in(dir.path()).await.expect("log");
        let platform = tongban_platform::Platform::in_memory(vec![]).await.expect("platform");
        let data = super::DataPlane::new(super::DataConfig::default(), log, platform.store.clone())
            .expect("data plane");
        let state = crate::state::AppState::new(platform, data).data_state().clone();
        let headers = axum::http::HeaderMap::new();
        let refused = || crate::error::ApiError::internal(&"not called");
        let call = super::serve(
            state,
            Err(refused()),
            None,
            headers,
            super::Asked::new(
                axum::http::Method::POST,
                axum::http::Uri::from_static("/"),
                super::AskedBody::Unread,
            ),
            <super::Verify as super::DataCall>::refused(refused()),
        );
        let size = std::mem::size_of_val(&call);
        assert!(size <= 6 * 1024, "a data call's future is {size} bytes");
    }
}
