//! Verification (核验): claimed values checked against the record with a key, match or no
//! match per item, never the values themselves.

use axum::extract::State;
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use tongban_exchange::{ExchangeRecord, Phase};
use tongban_platform::Caller;
use tongban_platform::federation::split_remote_id;
use tongban_policy::decision::Operation;

use super::{Answering, DataCall, Granted, Resolving};
use crate::data::forward::{ACCEPT_ONLY, ForwardContext, Forwarded};
use crate::data::records::{self, VerifyAnswer, VerifyRequest};
use crate::data::{Answer, CacheOutcome, DataState, Phases, PurposeHeaders, Received, cached, serve};
use crate::error::ApiError;
use crate::listener::Peer;

/// A verification as its handler received it.
pub(crate) struct Verify(Result<VerifyRequest, ApiError>);

/// Verifies claimed values against the record with a key (核验): match or no match per item.
#[utoipa::path(post, path = "/data/verify", tag = "data", security(("bearer" = [])),
    params(PurposeHeaders), request_body = VerifyRequest,
    responses((status = 200, body = VerifyAnswer, headers(("x-tongban-receipt" = String, description = "The signed receipt of the exchange (base64url JSON; docs/evidence.md), on every answer, refusals included"), ("x-tongban-exchange-id" = String, description = "The exchange record's id"))), (status = 400, body = crate::error::ProblemSchema),
        (status = 403, description = "access_denied, with reasons", body = crate::error::ProblemSchema),
        (status = 422, body = crate::error::ProblemSchema)))]
pub(crate) async fn verify(
    State(state): State<DataState>,
    caller: Result<Caller, ApiError>,
    Peer(peer): Peer,
    headers: HeaderMap,
    body: Received<VerifyRequest>,
) -> Response {
    serve(state, caller, peer, headers, body.asked, Verify(body.body)).await
}

impl Verify {
    /// A verification as a peer gateway passed it on.
    pub(crate) fn new(body: Result<VerifyRequest, ApiError>) -> Self {
        Verify(body)
    }
}

impl DataCall for Verify {
    const OPERATION: Operation = Operation::Verify;

    fn refused(error: ApiError) -> Self {
        Verify(Err(error))
    }

    fn resolve<'s>(
        &self,
        resolving: &Resolving<'s, '_>,
        record: &mut ExchangeRecord,
    ) -> Result<Vec<Granted<'s>>, ApiError> {
        let request = self.0.as_ref().map_err(Clone::clone)?;
        record.resources.push(request.resource.clone());
        record.key_digest = Some(tongban_exchange::key_digest(resolving.salt, &request.key));
        let resource = resolving.snapshot.resources.get(&request.resource);
        let items = records::verify_items(resolving.registry, resource, request)?;
        Ok(vec![resolving.ask(&request.resource, &items)?])
    }

    fn forwarded(&self, _context: &ForwardContext<'_>) -> Result<Option<Forwarded>, ApiError> {
        Ok(self.forward())
    }

    async fn answer(
        &self,
        answering: &Answering<'_, '_>,
        phases: &mut Phases<'_>,
    ) -> Result<(Answer, CacheOutcome), ApiError> {
        let request = self.0.as_ref().map_err(Clone::clone)?;
        let (resource, permit) = answering.only();
        let claims = serde_json::to_vec(&request.claims).map_err(|e| ApiError::internal(&e))?;
        let key = answering.cache_key("verify", &[request.key.as_bytes(), &claims]);
        let registry = answering.registry;
        let execute = Box::pin(async {
            let answer = records::verify(registry, resource, permit, request).await?;
            phases.end(Phase::Execute);
            Ok(answer)
        });
        let cache = &answering.data.cache;
        cached(cache, cache.ttl(resource.update_cycle), key, execute).await
    }
}

impl Verify {
    /// What a call naming a remote resource asks the supplier's gateway.
    fn forward(&self) -> Option<Forwarded> {
        let request = self.0.as_ref().ok()?;
        let (_, code) = split_remote_id(&request.resource)?;
        let body =
            serde_json::to_vec(&VerifyRequest { resource: code.to_owned(), ..request.clone() }).ok()?;
        Some(Forwarded {
            resource_ids: vec![request.resource.clone()],
            items: request.claims.keys().cloned().collect(),
            key: Some(request.key.clone()),
            method: Method::POST,
            path_and_query: "/federation/v1/data/verify".to_owned(),
            body_bytes: Some(bytes::Bytes::from(body.clone())),
            body: body.into(),
            headers: ACCEPT_ONLY,
        })
    }
}
