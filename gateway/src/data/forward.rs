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

/// Header carrying the home gateway's signed request (`docs/evidence.md`).
pub(crate) const REQUEST_SIGNATURE_HEADER: &str = "x-tongban-request-signature";

/// What a call decides whether it goes to a peer with.
pub(crate) struct ForwardContext<'a> {
    pub(crate) snapshot: &'a tongban_platform::PolicySnapshot,
    pub(crate) peers: Option<&'a crate::peers::Peers>,
    pub(crate) department: &'a str,
    pub(crate) service_item: &'a str,
}

/// What a call naming remote resources sends to the supplier's gateway.
pub(crate) struct Forwarded {
    /// The remote ids the call reads, all of one peer's.
    pub(crate) resource_ids: Vec<String>,
    /// The items the call asks for, for the early decision against the mirror.
    pub(crate) items: Vec<String>,
    /// The record key asked for, for the record's digest (none for a query).
    pub(crate) key: Option<String>,
    pub(crate) method: Method,
    /// The route on the peer listener, with the supplier's own resource code.
    pub(crate) path_and_query: String,
    /// The body, streamed to the peer as the caller sends it.
    pub(crate) body: axum::body::Body,
    /// The body's bytes when the gateway made it whole (a verification's or a query's JSON,
    /// a look-up's empty body), which the signed request binds; `None` for a body streamed.
    pub(crate) body_bytes: Option<bytes::Bytes>,
    /// The caller's headers that go with the call (beyond the purpose and the assertions).
    pub(crate) headers: &'static [&'static str],
}

/// The caller headers a verification, look-up or query passes on: the encoding it takes.
pub(crate) const ACCEPT_ONLY: &[&str] = &["accept"];

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
    phases.record.resources.extend(call.resource_ids.iter().cloned());
    if let Some(key) = &call.key {
        phases.record.key_digest = Some(tongban_exchange::key_digest(data.log.key(), key));
    }
    let unknown = |id: &str| {
        ApiError::not_found(format!("there is no catalog resource {id}")).with_code("unknown_resource")
    };
    let first = call.resource_ids.first().map(String::as_str).unwrap_or_default();
    let peers = state.peers().ok_or_else(|| unknown(first))?;
    let mirrors = peers.mirrors();
    let today = state.platform().now().date();
    let mut peer = None;
    let mut reasons = Vec::new();
    let mut permitted = Vec::new();
    for id in &call.resource_ids {
        let (supplier, resource) = peers.supplied_by(id).ok_or_else(|| unknown(id))?;
        let record = &mut *phases.record;
        record.resource_versions.push(resource.version);
        record.suppliers.push(resource.supplier.clone());
        record.supplier_regions.push(resource.supplier.get(2..8).unwrap_or_default().to_owned());
        peer = Some(supplier);
        // Resolve grant, early, against the mirror. The policy is the same as the
        // supplier's; only its grants are a copy.
        let request = AccessRequest {
            department: system.department(),
            system: system.id(),
            resource: &resource,
            dataset_supplier: Some(resource.supplier.as_str()),
            operation,
            items: &call.items,
            purpose,
            today,
        };
        match decide(&mirrors.grants, &request) {
            Ok(permit) => permitted.push((
                permit.grant.id.clone(),
                permit.items.iter().map(|i| i.name.clone()).collect::<Vec<_>>(),
            )),
            Err(denial) => reasons.extend(denial.reasons),
        }
    }
    let peer = peer.ok_or_else(|| unknown(first))?;
    phases.record.peer = Some(peer.clone());
    if permitted.is_empty() {
        return Err(denied(tongban_policy::decision::Denial { reasons }));
    }
    for (grant, items) in permitted {
        phases.record.grants.push(grant);
        phases.record.items.extend(items);
    }
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
    let client = peers.get(&peer).ok_or_else(|| unknown(first))?;
    let mut asserted = HeaderMap::new();
    asserted.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    asserted.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    // The purpose and trace go with the call, and the caller headers the kind of call passes
    // on (the encoding a query's answer is to come in; what a supplier's API reads).
    let passed =
        [super::SERVICE_ITEM_HEADER, super::CASE_NUMBER_HEADER, super::OPERATOR_HEADER, "traceparent"];
    for name in passed.into_iter().chain(call.headers.iter().copied()) {
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
    // The call is signed as this gateway passes it on; the supplier's gateway refuses it
    // unsigned, changed, stale or replayed, and keeps the signature in its record.
    if let Some(signed) = sign_request(
        state,
        &peer,
        system.department(),
        system.id(),
        headers,
        &call.method,
        &call.path_and_query,
        call.body_bytes.as_deref(),
    ) {
        let encoded = signed.encode();
        let value = HeaderValue::from_str(&encoded).map_err(|e| ApiError::internal(&e))?;
        asserted.insert(HeaderName::from_static(REQUEST_SIGNATURE_HEADER), value);
        phases.record.request_signature = Some(encoded);
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
    for name in [header::CONTENT_TYPE, header::CONTENT_DISPOSITION] {
        if let Some(value) = answer.headers.get(&name) {
            kept.insert(name, value.clone());
        }
    }
    // The supplier's receipt is kept in this record and handed to the caller beside this
    // gateway's own: both gateways' signatures stand for the exchange.
    if let Some(receipt) = answer.headers.get(crate::evidence::RECEIPT_HEADER) {
        record.peer_receipt = receipt.to_str().ok().filter(|r| r.len() <= 64 * 1024).map(str::to_owned);
        kept.insert(HeaderName::from_static(crate::evidence::PEER_RECEIPT_HEADER), receipt.clone());
    }
    let rows = u64::from(answer.status.is_success());
    Ok((
        Answer { status: answer.status, headers: kept, body: answer.body, rows, max_age: None },
        CacheOutcome::Bypass,
    ))
}

/// Signs a call this gateway passes on to `peer`, when it signs evidence.
#[allow(clippy::too_many_arguments)]
fn sign_request(
    state: &DataState,
    peer: &str,
    department: &str,
    system: &str,
    headers: &HeaderMap,
    method: &Method,
    target: &str,
    body: Option<&[u8]>,
) -> Option<tongban_evidence::SignedRequest> {
    let log = &state.data().log;
    let signer = log.signer()?;
    let peers = state.peers()?;
    let identity = signer.identity();
    let hash = signer.hash();
    let mut nonce = [0u8; 16];
    getrandom::fill(&mut nonce).ok()?;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let raw = |name: &str| headers.get(name).map_or(&b""[..], |v| v.as_bytes());
    let body_digest = hash.digest(&[body.unwrap_or_default()]);
    let request = tongban_evidence::SignedRequest {
        from: peers.config.name.clone(),
        to: peer.to_owned(),
        department: department.to_owned(),
        system: system.to_owned(),
        service_item: header(super::SERVICE_ITEM_HEADER).to_owned(),
        case_digest: tongban_evidence::SignedRequest::purpose_digest(
            hash,
            &nonce,
            raw(super::CASE_NUMBER_HEADER),
        ),
        operator_digest: tongban_evidence::SignedRequest::purpose_digest(
            hash,
            &nonce,
            raw(super::OPERATOR_HEADER),
        ),
        request_digest: hex::encode(tongban_evidence::request_digest(
            hash,
            &nonce,
            method.as_str(),
            target,
            &body_digest,
        )),
        streamed: body.is_none(),
        at_ms: u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or_default(),
        nonce: hex::encode(nonce),
        alg: String::new(),
        key: String::new(),
        signature: String::new(),
    };
    Some(request.sign(&identity.key, &identity.fingerprint))
}

/// Where a query runs: `names` are the names it holds, `local` the views this gateway gives
/// the caller for the call's purpose, `remote` those peers' grants give it, each with its peer
/// and remote resource id. A query naming only views here runs here (`None`); one naming
/// views of one peer only runs there; one naming both, or two peers', is refused, since a
/// query runs at one gateway, where its grants are enforced.
pub(crate) fn route_query(
    names: &std::collections::BTreeSet<String>,
    local: &std::collections::BTreeSet<String>,
    remote: &std::collections::BTreeMap<String, (String, String)>,
) -> Result<Option<(String, Vec<String>)>, ApiError> {
    let remote_named: Vec<(&String, &(String, String))> =
        remote.iter().filter(|(view, _)| names.contains(*view)).collect();
    let Some((_, (peer, _))) = remote_named.first() else { return Ok(None) };
    let local_named: Vec<&String> = local.iter().filter(|view| names.contains(*view)).collect();
    let mixed = |detail: String| ApiError::unprocessable("mixed_gateways", "Query spans gateways", detail);
    if !local_named.is_empty() {
        return Err(mixed(format!(
            "the query names views of this gateway ({}) and of peer gateway {peer} ({}); a query runs at one gateway",
            local_named.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", "),
            remote_named.iter().map(|(v, _)| v.as_str()).collect::<Vec<_>>().join(", ")
        )));
    }
    if let Some((view, (other, _))) = remote_named.iter().find(|(_, (p, _))| p != peer) {
        return Err(mixed(format!(
            "the query names views of peer gateways {peer} and {other} ({view}); a query runs at one gateway"
        )));
    }
    Ok(Some((peer.clone(), remote_named.iter().map(|(_, (_, id))| id.clone()).collect())))
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::route_query;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn a_query_runs_at_the_one_gateway_whose_views_it_names() {
        let local = set(&["household"]);
        let remote: BTreeMap<String, (String, String)> = [
            ("social_insurance", "guangdong", "440000:B02-440000-0001"),
            ("housing_fund", "anhui", "340000:C03-340000-0001"),
        ]
        .into_iter()
        .map(|(view, peer, id)| (view.to_owned(), (peer.to_owned(), id.to_owned())))
        .collect();
        let route = |query: &[&str]| route_query(&set(query), &local, &remote);
        assert_eq!(route(&["select", "name", "from", "household"]).expect("local"), None);
        assert_eq!(route(&["select", "one"]).expect("nothing named"), None);
        assert_eq!(
            route(&["select", "from", "social_insurance"]).expect("remote"),
            Some(("guangdong".to_owned(), vec!["440000:B02-440000-0001".to_owned()]))
        );
        for mixed in [&["household", "social_insurance"][..], &["social_insurance", "housing_fund"][..]] {
            let refused = route(mixed).expect_err("mixed");
            assert_eq!((refused.status.as_u16(), refused.code), (422, "mixed_gateways"), "{mixed:?}");
        }
    }
}
