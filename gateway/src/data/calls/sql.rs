//! SQL: one query over the caller's per-grant views, for every resource the calling
//! department holds a grant on for the call's service item.

use axum::extract::State;
use std::collections::{BTreeMap, BTreeSet};

use axum::http::{HeaderMap, Method, header};
use axum::response::Response;
use tongban_exchange::{ExchangeRecord, Phase};
use tongban_platform::Caller;
use tongban_policy::decision::{Denial, Operation, Reason};
use tongban_policy::grant::Grant;

use super::{Answering, DataCall, Granted, Resolving};
use crate::data::forward::{ACCEPT_ONLY, ForwardContext, Forwarded, route_query};
use crate::data::sql::{self, SqlRequest};
use crate::data::{Answer, CacheOutcome, DataState, Phases, PurposeHeaders, Received, denied, serve};
use crate::error::ApiError;
use crate::listener::Peer;

/// A query as its handler received it, with the encoding the caller accepts.
pub(crate) struct Sql {
    request: Result<SqlRequest, ApiError>,
    accept: Option<String>,
}

/// Runs one query over the caller's per-grant views.
#[utoipa::path(post, path = "/data/sql", tag = "data", security(("bearer" = [])),
    params(PurposeHeaders), request_body = SqlRequest,
    responses((status = 200, description = "JSON, CSV, Arrow IPC stream or Parquet, by Accept", headers(("x-tongban-receipt" = String, description = "The signed receipt of the exchange (base64url JSON; docs/evidence.md), on every answer, refusals included"), ("x-tongban-exchange-id" = String, description = "The exchange record's id"))),
        (status = 403, body = crate::error::ProblemSchema), (status = 406, body = crate::error::ProblemSchema),
        (status = 422, body = crate::error::ProblemSchema),
        (status = 503, description = "sql_busy: every SQL slot taken, with Retry-After", body = crate::error::ProblemSchema)))]
pub(crate) async fn run_sql(
    State(state): State<DataState>,
    caller: Result<Caller, ApiError>,
    Peer(peer): Peer,
    headers: HeaderMap,
    body: Received<SqlRequest>,
) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).map(str::to_owned);
    serve(state, caller, peer, headers, body.asked, Sql { request: body.body, accept }).await
}

impl Sql {
    /// A query as a peer gateway passed it on, with the encoding its caller accepts.
    pub(crate) fn new(request: Result<SqlRequest, ApiError>, accept: Option<String>) -> Self {
        Sql { request, accept }
    }
}

impl DataCall for Sql {
    const OPERATION: Operation = Operation::Sql;

    fn refused(error: ApiError) -> Self {
        Sql { request: Err(error), accept: None }
    }

    /// Every resource the system's department holds a grant on for the call's service item;
    /// those the policy refuses are left out, and the call is refused only when none is left.
    fn resolve<'s>(
        &self,
        resolving: &Resolving<'s, '_>,
        record: &mut ExchangeRecord,
    ) -> Result<Vec<Granted<'s>>, ApiError> {
        self.request.as_ref().map_err(Clone::clone)?;
        let purpose = resolving.purpose;
        let mut codes: Vec<&str> = resolving
            .snapshot
            .grants
            .of_department(resolving.system.department())
            .filter(|g| g.service_item == purpose.service_item)
            .map(|g: &Grant| g.resource_code.as_str())
            .collect();
        codes.sort_unstable();
        codes.dedup();
        if codes.is_empty() {
            return Err(denied(Denial {
                reasons: vec![Reason::WrongPurpose { service_item: purpose.service_item.clone() }],
            }));
        }
        let mut permits = Vec::new();
        let mut reasons = Vec::new();
        for code in codes {
            record.resources.push(code.to_owned());
            match resolving.ask(code, &[]) {
                Ok(permit) => permits.push(permit),
                Err(e) => reasons.extend(e.reasons),
            }
        }
        if permits.is_empty() {
            return Err(denied(Denial { reasons }));
        }
        record.resources = permits.iter().map(|(r, _)| r.code.clone()).collect();
        Ok(permits)
    }

    /// A query naming views that peers' grants give (and none of this gateway's) runs at
    /// that peer; one naming both is refused ([`route_query`]).
    fn forwarded(&self, context: &ForwardContext<'_>) -> Result<Option<Forwarded>, ApiError> {
        let (Ok(request), Some(peers)) = (self.request.as_ref(), context.peers) else { return Ok(None) };
        let mirrors = peers.mirrors();
        let mut remote = BTreeMap::new();
        for grant in mirrors.grants.of_department(context.department) {
            let Some(id) = mirrors.resource_ids.get(&grant.id) else { continue };
            if grant.service_item != context.service_item {
                continue;
            }
            if let Some((peer, _)) = peers.supplied_by(id) {
                remote.insert(grant.dataset.to_lowercase(), (peer, id.clone()));
            }
        }
        if remote.is_empty() {
            return Ok(None);
        }
        let local: BTreeSet<String> = context
            .snapshot
            .grants
            .of_department(context.department)
            .filter(|g| g.service_item == context.service_item)
            .filter_map(|g| context.snapshot.resources.get(&g.resource_code))
            .map(|r| r.dataset.to_lowercase())
            .collect();
        let names = sql::names_in(&request.query)?;
        let Some((_, resource_ids)) = route_query(&names, &local, &remote)? else { return Ok(None) };
        let body = serde_json::to_vec(request).map_err(|e| ApiError::internal(&e))?;
        Ok(Some(Forwarded {
            resource_ids,
            items: Vec::new(),
            key: None,
            method: Method::POST,
            path_and_query: "/federation/v1/data/sql".to_owned(),
            body_bytes: Some(bytes::Bytes::from(body.clone())),
            body: body.into(),
            headers: ACCEPT_ONLY,
        }))
    }

    /// Masks are applied inside each per-grant view, below the caller's query, so execute and
    /// mask are one phase here. Queries are not cached.
    async fn answer(
        &self,
        answering: &Answering<'_, '_>,
        phases: &mut Phases<'_>,
    ) -> Result<(Answer, CacheOutcome), ApiError> {
        let request = self.request.as_ref().map_err(Clone::clone)?;
        let data = answering.data;
        let answer = Box::pin(sql::run(
            &data.sql_executor,
            answering.system.department(),
            answering.registry,
            &data.sql,
            answering.permits,
            request,
            self.accept.as_deref(),
        ))
        .await?;
        phases.end(Phase::Execute);
        Ok((answer, CacheOutcome::Bypass))
    }
}
