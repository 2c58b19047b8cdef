//! Data calls that cross gateways. A system calls its home gateway exactly as for a local
//! resource, naming a remote resource (`410000:A01-410000-0001`); the home gateway runs the
//! lifecycle's phases with what it holds and the supplier's gateway runs them with what it is
//! the authority on:
//!
//! - **resolve grant**, at home, against the mirror of the supplier's grants: a call the mirror
//!   does not allow is refused here and never reaches the peer. The supplier's gateway decides
//!   again under its own grant, so a grant revoked there refuses the call even while the
//!   mirror still shows it;
//! - **rate limit**, at home, by the calling system's own limit; the grant's rate and daily
//!   quota are counted where the grant is enforced;
//! - **execute**, at the peer: the call goes over the peers' mutual TLS, asserting the calling
//!   department, system and purpose and naming this record, within the peer's deadline and
//!   behind its circuit breaker. The supplier's gateway masks and records the answer; the home
//!   gateway neither caches it (a revocation there must take effect on the next call) nor
//!   changes it.
//!
//! Both records name each other (`peer`, `peer_exchange_id`) and both provinces.

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use tongban_policy::decision::{AccessRequest, Operation, Purpose, decide};

use super::{Answer, CacheOutcome, DataState, EXCHANGE_ID_HEADER, Phases, Refusal, System, denied};
use crate::error::ApiError;
use tongban_exchange::Phase;

/// Header asserting the calling department (credit code) to the supplier's gateway.
pub(crate) const PEER_DEPARTMENT_HEADER: &str = "x-tongban-peer-department";
/// Header asserting the calling system to the supplier's gateway.
pub(crate) const PEER_SYSTEM_HEADER: &str = "x-tongban-peer-system";
/// Header naming the home gateway's record of the call.
pub(crate) const PEER_EXCHANGE_HEADER: &str = "x-tongban-peer-exchange-id";

/// What a call naming a remote resource sends to the supplier's gateway.
pub(crate) struct Forwarded {
    /// The remote id the caller named.
    pub(crate) resource_id: String,
    /// The items the call asks for, for the early decision against the mirror.
    pub(crate) items: Vec<String>,
    /// The record key asked for, for the record's digest.
    pub(crate) key: String,
    pub(crate) method: Method,
    /// The route on the peer listener, with the supplier's own resource code.
    pub(crate) path_and_query: String,
    pub(crate) body: bytes::Bytes,
}

/// Resolves, limits and executes a call naming a remote resource, filling its record.
pub(crate) async fn forward(
    state: &DataState,
    system: &System,
    purpose: &Purpose,
    headers: &HeaderMap,
    operation: Operation,
    call: Forwarded,
    phases: &mut Phases<'_>,
) -> Result<(Answer, CacheOutcome), ApiError> {
    let data = state.data();
    phases.record.resources.push(call.resource_id.clone());
    phases.record.key_digest = Some(tongban_exchange::key_digest(data.log.key(), &call.key));
    let unknown = || {
        ApiError::not_found(format!("there is no catalog resource {}", call.resource_id))
            .with_code("unknown_resource")
    };
    let peers = state.peers().ok_or_else(unknown)?;
    let (catalog, resource) = peers.remote_resource(&call.resource_id).ok_or_else(unknown)?;
    let record = &mut *phases.record;
    record.peer = Some(catalog.peer.clone());
    record.resource_versions.push(resource.version);
    record.suppliers.push(resource.supplier.clone());
    record.supplier_regions.push(resource.supplier.get(2..8).unwrap_or_default().to_owned());

    // Resolve grant, early, against the mirror. The policy is the same as the supplier's;
    // only its grants are a copy.
    let mirrors = peers.mirrors();
    let request = AccessRequest {
        department: system.department(),
        system: system.id(),
        resource: &resource,
        dataset_supplier: Some(resource.supplier.as_str()),
        operation,
        items: &call.items,
        purpose,
        today: state.platform().now().date(),
    };
    let permit = decide(&mirrors, &request).map_err(denied)?;
    phases.record.grants.push(permit.grant.id.clone());
    phases.record.items.extend(permit.items.iter().map(|i| i.name.clone()));
    phases.end(Phase::ResolveGrant);

    // Rate limit: the calling system's own limit.
    match data.limits.check(system.id(), &[], &[], state.platform().now()).await {
        Ok(()) => {}
        Err(Refusal::Limited(limited)) => {
            phases.record.rate_limit = Some(limited.limit);
            return Err(limited.into());
        }
        Err(Refusal::QuotaUnavailable(e)) => {
            tracing::error!(error = %e, "the system's limit cannot be counted; refusing the call");
            return Err(ApiError::quota_unavailable());
        }
    }
    phases.end(Phase::RateLimit);

    // Execute at the supplier's gateway.
    let client = peers.get(&catalog.peer).ok_or_else(unknown)?;
    let mut asserted = HeaderMap::new();
    asserted.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    asserted.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    for name in [super::SERVICE_ITEM_HEADER, super::CASE_NUMBER_HEADER, super::OPERATOR_HEADER, "traceparent"]
    {
        if let Some(value) = headers.get(name) {
            asserted.insert(HeaderName::from_static(name), value.clone());
        }
    }
    for (name, value) in [
        (PEER_DEPARTMENT_HEADER, system.department()),
        (PEER_SYSTEM_HEADER, system.id()),
        (PEER_EXCHANGE_HEADER, phases.record.id.as_str()),
    ] {
        let value = HeaderValue::from_str(value).map_err(|e| ApiError::internal(&e))?;
        asserted.insert(HeaderName::from_static(name), value);
    }
    let started = std::time::Instant::now();
    let answer = client.call(call.method, &call.path_and_query, asserted, call.body).await;
    phases.record.upstream_attempts = 1;
    phases.record.upstream_us = Some(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
    let answer = answer.map_err(|e| {
        let status = match e {
            crate::peers::PeerError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::BAD_GATEWAY,
        };
        ApiError::new(status, e.code(), "Peer gateway failed", e.to_string())
    })?;
    phases.end(Phase::Execute);
    let record = &mut *phases.record;
    record.upstream_status = Some(answer.status.as_u16());
    record.peer_exchange_id = answer
        .headers
        .get(EXCHANGE_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|id| id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'))
        .map(str::to_owned);
    // The supplier's answer, refusals included, goes back as it came; its refusal is this
    // record's too.
    if !answer.status.is_success() {
        record.code = Some(if answer.status.is_server_error() { "peer_failed" } else { "peer_refused" });
    }
    let mut kept = HeaderMap::new();
    if let Some(content_type) = answer.headers.get(header::CONTENT_TYPE) {
        kept.insert(header::CONTENT_TYPE, content_type.clone());
    }
    let rows = u64::from(answer.status.is_success());
    Ok((
        Answer { status: answer.status, headers: kept, body: answer.body, rows, max_age: None },
        CacheOutcome::Bypass,
    ))
}
