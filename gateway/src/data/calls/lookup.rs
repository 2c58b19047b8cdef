//! Record look-up: the granted items of the records with a key, masked.

use axum::extract::State;
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use tongban_exchange::{ExchangeRecord, Phase};
use tongban_platform::Caller;
use tongban_platform::federation::split_remote_id;
use tongban_policy::decision::Operation;

use super::{Answering, DataCall, Granted, Resolving};
use crate::data::forward::{ACCEPT_ONLY, ForwardContext, Forwarded};
use crate::data::records::{self, LookupQuery};
use crate::data::{Answer, Asked, CacheOutcome, DataState, Phases, PurposeHeaders, cached, serve};
use crate::error::{ApiError, ApiPath, ApiQuery};
use crate::listener::Peer;

/// A look-up as its handler received it: the resource and key from the path, and the items
/// asked for.
pub(crate) struct Lookup {
    target: Result<(String, String), ApiError>,
    query: Result<LookupQuery, ApiError>,
}

/// The granted items of the records with a key, masked.
#[utoipa::path(get, path = "/data/{resource}/records/{key}", tag = "data", security(("bearer" = [])),
    params(PurposeHeaders, ("resource" = String, Path), ("key" = String, Path),
        ("items" = Option<String>, Query, description = "comma-separated items; every granted item when absent")),
    responses((status = 200, description = "{\"resource\", \"records\": [{item: value}]}", headers(("x-tongban-receipt" = String, description = "The signed receipt of the exchange (base64url JSON; docs/evidence.md), on every answer, refusals included"), ("x-tongban-exchange-id" = String, description = "The exchange record's id"))),
        (status = 403, body = crate::error::ProblemSchema), (status = 404, body = crate::error::ProblemSchema)))]
pub(crate) async fn lookup(
    State(state): State<DataState>,
    caller: Result<Caller, ApiError>,
    Peer(peer): Peer,
    headers: HeaderMap,
    asked: Asked,
    target: Result<ApiPath<(String, String)>, ApiError>,
    query: Result<ApiQuery<LookupQuery>, ApiError>,
) -> Response {
    let call = Lookup { target: target.map(|ApiPath(target)| target), query: query.map(|ApiQuery(q)| q) };
    serve(state, caller, peer, headers, asked, call).await
}

impl Lookup {
    /// A look-up as a peer gateway passed it on.
    pub(crate) fn new(
        target: Result<(String, String), ApiError>,
        query: Result<LookupQuery, ApiError>,
    ) -> Self {
        Lookup { target, query }
    }
}

impl DataCall for Lookup {
    const OPERATION: Operation = Operation::Lookup;

    fn refused(error: ApiError) -> Self {
        Lookup { target: Err(error.clone()), query: Err(error) }
    }

    fn resolve<'s>(
        &self,
        resolving: &Resolving<'s, '_>,
        record: &mut ExchangeRecord,
    ) -> Result<Vec<Granted<'s>>, ApiError> {
        let (resource, key) = self.target.as_ref().map_err(Clone::clone)?;
        record.resources.push(resource.clone());
        record.key_digest = Some(tongban_exchange::key_digest(resolving.salt, key));
        let query = self.query.as_ref().map_err(Clone::clone)?;
        Ok(vec![resolving.ask(resource, &query.items())?])
    }

    fn forwarded(&self, _context: &ForwardContext<'_>) -> Result<Option<Forwarded>, ApiError> {
        Ok(self.forward())
    }

    async fn answer(
        &self,
        answering: &Answering<'_, '_>,
        phases: &mut Phases<'_>,
    ) -> Result<(Answer, CacheOutcome), ApiError> {
        let (_, record_key) = self.target.as_ref().map_err(Clone::clone)?;
        let (resource, permit) = answering.only();
        let items: Vec<&str> = permit.items.iter().map(|i| i.name.as_str()).collect();
        let items = items.join(",");
        let key = answering.cache_key("lookup", &[record_key.as_bytes(), items.as_bytes()]);
        let registry = answering.registry;
        let execute = Box::pin(async {
            let found = records::lookup(registry, resource, permit, record_key).await?;
            phases.end(Phase::Execute);
            let answer = found.mask(permit)?;
            phases.end(Phase::Mask);
            Ok(answer)
        });
        let cache = &answering.data.cache;
        cached(cache, cache.ttl(resource.update_cycle), key, execute).await
    }
}

impl Lookup {
    /// What a call naming a remote resource asks the supplier's gateway.
    fn forward(&self) -> Option<Forwarded> {
        let (resource, key) = self.target.as_ref().ok()?;
        let query = self.query.as_ref().ok()?;
        let (_, code) = split_remote_id(resource)?;
        let segment = |text: &str| {
            percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
        };
        let mut path_and_query = format!("/federation/v1/data/{}/records/{}", segment(code), segment(key));
        if let Some(items) = &query.items {
            path_and_query.push_str("?items=");
            path_and_query.push_str(&segment(items));
        }
        Some(Forwarded {
            resource_ids: vec![resource.clone()],
            items: query.items(),
            key: Some(key.clone()),
            method: Method::GET,
            path_and_query,
            body: axum::body::Body::empty(),
            body_bytes: Some(bytes::Bytes::new()),
            headers: ACCEPT_ONLY,
        })
    }
}
