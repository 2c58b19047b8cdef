//! Calls passed on to the supplier API bound to a resource (the 接口 share method).

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use tongban_exchange::{ExchangeRecord, Phase};
use tongban_platform::Caller;
use tongban_policy::decision::Operation;

use super::{Answering, DataCall, Granted, Resolving};
use crate::data::forward::{ForwardContext, Forwarded};
use crate::data::proxy::{self, ProxyCall};
use crate::data::{Answer, Asked, AskedBody, CacheOutcome, DataState, Phases, PurposeHeaders, cached, serve};
use crate::error::{ApiError, ApiPath};
use crate::listener::Peer;
use tongban_platform::federation::split_remote_id;

/// A proxied call as its handler received it.
pub(crate) struct Proxy(Result<ProxyCall, ApiError>);

/// Passes a call on to the supplier API bound to a resource (the 接口 share method). The
/// answer keeps only granted items, masked; documents pass only when granted whole.
#[utoipa::path(method(get, post, put, patch, delete), path = "/proxy/{resource}/{path}", tag = "data", security(("bearer" = [])),
    params(PurposeHeaders, ("resource" = String, Path), ("path" = String, Path, description = "the supplier API's path")),
    responses((status = 200, description = "the supplier's answer, filtered and masked by the grant", headers(("x-tongban-receipt" = String, description = "The signed receipt of the exchange (base64url JSON; docs/evidence.md), on every answer, refusals included"), ("x-tongban-exchange-id" = String, description = "The exchange record's id"))),
        (status = 403, body = crate::error::ProblemSchema), (status = 404, body = crate::error::ProblemSchema),
        (status = 502, description = "upstream_unreachable, upstream_failed, upstream_response_too_large", body = crate::error::ProblemSchema),
        (status = 503, description = "upstream_circuit_open, with Retry-After", body = crate::error::ProblemSchema),
        (status = 504, description = "upstream_timeout", body = crate::error::ProblemSchema)))]
pub(crate) async fn proxy_call(
    State(state): State<DataState>,
    caller: Result<Caller, ApiError>,
    Peer(peer): Peer,
    target: Result<ApiPath<(String, String)>, ApiError>,
    request: axum::extract::Request,
) -> Response {
    let hash = state.data().log.signer().map(|s| s.hash());
    let (headers, asked, call) = Proxy::from_request(target, request, hash);
    serve(state, caller, peer, headers, asked, call).await
}

impl Proxy {
    /// The call a request to `/proxy/{resource}/{path}` (or a peer's
    /// `/federation/v1/proxy/…`) makes, with the request's headers and what its receipt binds:
    /// with a `hash`, the body is digested as it streams on to the supplier.
    pub(crate) fn from_request(
        target: Result<ApiPath<(String, String)>, ApiError>,
        request: axum::extract::Request,
        hash: Option<tongban_evidence::HashAlgorithm>,
    ) -> (axum::http::HeaderMap, Asked, Proxy) {
        let (mut parts, body) = request.into_parts();
        let uri = parts
            .extensions
            .remove::<axum::extract::OriginalUri>()
            .map_or_else(|| parts.uri.clone(), |original| original.0);
        let resource = match target {
            Ok(ApiPath((resource, _))) => resource,
            Err(error) => {
                let asked = Asked::new(parts.method, uri, AskedBody::Unread);
                return (parts.headers, asked, Proxy(Err(error)));
            }
        };
        let (body, asked_body) = match hash {
            Some(hash) => {
                let digest = std::sync::Arc::new(std::sync::OnceLock::new());
                let body =
                    axum::body::Body::new(DigestingBody::new(body, hash, std::sync::Arc::clone(&digest)));
                (body, AskedBody::Streamed(digest))
            }
            None => (body, AskedBody::Unread),
        };
        let asked = Asked::new(parts.method.clone(), uri, asked_body);
        // The supplier gets the path exactly as the caller encoded it: decoding it here would
        // turn an encoded `?` or `/` into structure.
        let raw_path = parts.uri.path();
        let path = raw_path
            .find("/proxy/")
            .map(|at| &raw_path[at + "/proxy/".len()..])
            .and_then(|rest| rest.split_once('/'))
            .map(|(_, tail)| tail.to_owned())
            .unwrap_or_default();
        let call = ProxyCall {
            resource,
            path,
            query: parts.uri.query().map(str::to_owned),
            method: parts.method,
            body: std::sync::Mutex::new(Some(body)),
        };
        (parts.headers, asked, Proxy(Ok(call)))
    }
}

/// A request body passed on as it streams, digested on the way for the call's receipt.
struct DigestingBody {
    inner: axum::body::Body,
    hasher: Option<tongban_evidence::Hasher>,
    digest: std::sync::Arc<std::sync::OnceLock<tongban_evidence::Digest>>,
}

impl DigestingBody {
    fn new(
        inner: axum::body::Body,
        hash: tongban_evidence::HashAlgorithm,
        digest: std::sync::Arc<std::sync::OnceLock<tongban_evidence::Digest>>,
    ) -> Self {
        let mut body = DigestingBody { inner, hasher: Some(hash.hasher()), digest };
        // An empty body may never be polled at all.
        body.finish_if_ended();
        body
    }

    fn finish_if_ended(&mut self) {
        use hyper::body::Body as _;
        if self.inner.is_end_stream()
            && let Some(hasher) = self.hasher.take()
        {
            let _ = self.digest.set(hasher.finalize());
        }
    }
}

impl hyper::body::Body for DigestingBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(context);
        match &polled {
            std::task::Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(hasher)) = (frame.data_ref(), self.hasher.as_mut()) {
                    hasher.update(data);
                }
                self.finish_if_ended();
            }
            std::task::Poll::Ready(None) => self.finish_if_ended_at_close(),
            // A body that failed was not received whole: its digest stays unknown.
            std::task::Poll::Ready(Some(Err(_))) => self.hasher = None,
            std::task::Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl DigestingBody {
    fn finish_if_ended_at_close(&mut self) {
        if let Some(hasher) = self.hasher.take() {
            let _ = self.digest.set(hasher.finalize());
        }
    }
}

impl DataCall for Proxy {
    const OPERATION: Operation = Operation::Proxy;

    fn refused(error: ApiError) -> Self {
        Proxy(Err(error))
    }

    fn resolve<'s>(
        &self,
        resolving: &Resolving<'s, '_>,
        record: &mut ExchangeRecord,
    ) -> Result<Vec<Granted<'s>>, ApiError> {
        let call = self.0.as_ref().map_err(Clone::clone)?;
        record.resources.push(call.resource.clone());
        call.check_path()?;
        let (resource, permit) = resolving.ask(&call.resource, &[])?;
        resolving.upstreams.check_method(&resource.code, &call.method)?;
        Ok(vec![(resource, permit)])
    }

    /// A call naming another province's resource goes to the supplier's gateway, which
    /// passes it on to the supplier's API under its own grant, filters and masks the answer.
    fn forwarded(&self, _context: &ForwardContext<'_>) -> Result<Option<Forwarded>, ApiError> {
        let Ok(call) = &self.0 else { return Ok(None) };
        let Some((_, code)) = split_remote_id(&call.resource) else { return Ok(None) };
        call.check_path()?;
        let body =
            call.body.lock().ok().and_then(|mut body| body.take()).unwrap_or_else(axum::body::Body::empty);
        let mut path_and_query = format!("/federation/v1/proxy/{code}/{}", call.path);
        if let Some(query) = &call.query {
            path_and_query.push('?');
            path_and_query.push_str(query);
        }
        Ok(Some(Forwarded {
            resource_ids: vec![call.resource.clone()],
            items: Vec::new(),
            key: None,
            method: call.method.clone(),
            path_and_query,
            body,
            body_bytes: None,
            headers: crate::data::proxy::headers::PASSED_ON,
        }))
    }

    async fn answer(
        &self,
        answering: &Answering<'_, '_>,
        phases: &mut Phases<'_>,
    ) -> Result<(Answer, CacheOutcome), ApiError> {
        let call = self.0.as_ref().map_err(Clone::clone)?;
        let (resource, permit) = answering.only();
        let headers = answering.headers;
        let system = answering.system;
        let exchange_id = phases.record.id.clone();
        let context = proxy::CallContext {
            exchange_id: &exchange_id,
            system: system.id(),
            department: system.department(),
            purpose: answering.purpose,
        };
        let accept = headers.get(header::ACCEPT).map(HeaderValue::as_bytes).unwrap_or_default();
        let key = answering.cache_key(
            "proxy",
            &[call.path.as_bytes(), call.query.as_deref().unwrap_or_default().as_bytes(), accept],
        );
        let data = answering.data;
        let mut upstream = proxy::UpstreamOutcome::default();
        let execute = Box::pin(async {
            let answer =
                proxy::forward(&data.upstreams, resource, permit, call, headers, &context, &mut upstream)
                    .await;
            phases.end(Phase::Execute);
            answer
        });
        let ttl = if call.cacheable(headers) { data.cache.ttl(resource.update_cycle) } else { None };
        let answer = cached(&data.cache, ttl, key, execute).await;
        phases.record.upstream_status = upstream.status;
        phases.record.upstream_attempts = upstream.attempts;
        phases.record.upstream_us =
            (upstream.attempts > 0).then(|| u64::try_from(upstream.latency.as_micros()).unwrap_or(u64::MAX));
        answer
    }
}
