//! Data calls a peer gateway passes on for one of its systems, served on the peer listener.
//! The peer asserts the calling department and system (`x-tongban-peer-department`,
//! `x-tongban-peer-system`) with the purpose headers and names its own record of the call;
//! this gateway, the supplier's, then runs the whole lifecycle as for a local system (decide
//! under its own grant, limit, execute, mask, record), with the peer and its record named in
//! this gateway's record. A peer speaks for its own province's departments only: an asserted
//! department seated elsewhere is refused, and the refusal is recorded like any other.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use tongban_platform::store::SystemRecord;
use tongban_platform::{Caller, SystemIdentity};
use tongban_policy::org::{Department, DepartmentRole};

use super::PeerIdentity;
use crate::data::calls::document::{DocumentCheck, DocumentCheckRequest};
use crate::data::calls::licence::{LicenceCheck, LicenceCheckRequest};
use crate::data::calls::lookup::Lookup;
use crate::data::calls::proxy::Proxy;
use crate::data::calls::sql::Sql;
use crate::data::calls::verify::Verify;
use crate::data::forward::{PEER_DEPARTMENT_HEADER, PEER_EXCHANGE_HEADER, PEER_SYSTEM_HEADER};
use crate::data::{Asked, LookupQuery, PeerOrigin, Received, SqlRequest, VerifyRequest, serve_with};
use crate::error::{ApiError, ApiPath, ApiQuery};
use crate::listener::Peer;
use crate::state::AppState;

/// A verification for a peer's system.
pub(super) async fn verify(
    State(state): State<AppState>,
    peer: PeerIdentity,
    Peer(address): Peer,
    headers: HeaderMap,
    body: Received<VerifyRequest>,
) -> Response {
    let (caller, origin) = signed(&state, &peer, &headers, &body.asked).await;
    let call = Verify::new(body.body);
    serve_with(state.data_state().clone(), caller, address, headers, body.asked, call, Some(origin)).await
}

/// A look-up for a peer's system.
pub(super) async fn lookup(
    State(state): State<AppState>,
    peer: PeerIdentity,
    Peer(address): Peer,
    headers: HeaderMap,
    asked: Asked,
    target: Result<ApiPath<(String, String)>, ApiError>,
    query: Result<ApiQuery<LookupQuery>, ApiError>,
) -> Response {
    let (caller, origin) = signed(&state, &peer, &headers, &asked).await;
    let call = Lookup::new(target.map(|ApiPath(t)| t), query.map(|ApiQuery(q)| q));
    serve_with(state.data_state().clone(), caller, address, headers, asked, call, Some(origin)).await
}

/// A call to a supplier's API for a peer's system.
pub(super) async fn proxy(
    State(state): State<AppState>,
    peer: PeerIdentity,
    Peer(address): Peer,
    target: Result<ApiPath<(String, String)>, ApiError>,
    request: axum::extract::Request,
) -> Response {
    let hash = state.data().log.signer().map(|s| s.hash());
    let (headers, asked, call) = Proxy::from_request(target, request, hash);
    let (caller, origin) = signed(&state, &peer, &headers, &asked).await;
    serve_with(state.data_state().clone(), caller, address, headers, asked, call, Some(origin)).await
}

/// A query for a peer's system.
pub(super) async fn sql(
    State(state): State<AppState>,
    peer: PeerIdentity,
    Peer(address): Peer,
    headers: HeaderMap,
    body: Received<SqlRequest>,
) -> Response {
    let (caller, origin) = signed(&state, &peer, &headers, &body.asked).await;
    let accept = headers.get(axum::http::header::ACCEPT).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let call = Sql::new(body.body, accept);
    serve_with(state.data_state().clone(), caller, address, headers, body.asked, call, Some(origin)).await
}

/// A licence check for a peer's system, on a licence this gateway's departments issued.
pub(super) async fn licence_check(
    State(state): State<AppState>,
    peer: PeerIdentity,
    Peer(address): Peer,
    headers: HeaderMap,
    body: Received<LicenceCheckRequest>,
) -> Response {
    let (caller, origin) = signed(&state, &peer, &headers, &body.asked).await;
    let call = LicenceCheck::new(body.body);
    serve_with(state.data_state().clone(), caller, address, headers, body.asked, call, Some(origin)).await
}

/// A document check for a peer's system, on a document sealed by one of this gateway's
/// departments.
pub(super) async fn document_check(
    State(state): State<AppState>,
    peer: PeerIdentity,
    Peer(address): Peer,
    headers: HeaderMap,
    body: Received<DocumentCheckRequest>,
) -> Response {
    let (caller, origin) = signed(&state, &peer, &headers, &body.asked).await;
    let call = DocumentCheck::new(body.body);
    serve_with(state.data_state().clone(), caller, address, headers, body.asked, call, Some(origin)).await
}

/// The caller a peer asserts, once the peer's signature over the call holds; the signature
/// goes into the record whatever the outcome.
async fn signed(
    state: &AppState,
    peer: &PeerIdentity,
    headers: &HeaderMap,
    asked: &crate::data::Asked,
) -> (Result<Caller, ApiError>, PeerOrigin) {
    let (signature, checked) = super::evidence::check_signed_request(state, peer, headers, asked).await;
    let (caller, mut origin) = asserted(state, peer, headers);
    origin.signature = signature;
    (checked.and(caller), origin)
}

/// The caller a peer asserts, checked against what the peer may speak for, and the peer's
/// record of the call.
fn asserted(
    state: &AppState,
    peer: &PeerIdentity,
    headers: &HeaderMap,
) -> (Result<Caller, ApiError>, PeerOrigin) {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let exchange_id = header(PEER_EXCHANGE_HEADER)
        .filter(|id| {
            !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
        })
        .map(str::to_owned);
    let origin = PeerOrigin { peer: peer.name.clone(), exchange_id, signature: None };
    let refused = |detail: String| ApiError::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail);
    let caller = (|| {
        let code = header(PEER_DEPARTMENT_HEADER)
            .ok_or_else(|| refused("the calling department is not named".into()))?;
        let system =
            header(PEER_SYSTEM_HEADER).ok_or_else(|| refused("the calling system is not named".into()))?;
        let region = code.get(2..8).unwrap_or_default();
        let department = Department {
            code: code.to_owned(),
            name: code.to_owned(),
            region: region.to_owned(),
            roles: vec![DepartmentRole::Demander],
        };
        department.validate().map_err(|e| refused(format!("the calling department: {e}")))?;
        if department.province() != peer.region.get(..2).unwrap_or_default() {
            return Err(refused(format!(
                "gateway {} speaks for the departments of {}, not for {code}",
                peer.name, peer.region
            )));
        }
        let valid_system = !system.is_empty()
            && system.len() <= 64
            && system.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !valid_system {
            return Err(refused("the calling system is not a system id".into()));
        }
        let record = SystemRecord {
            id: system.to_owned(),
            department_code: code.to_owned(),
            name: format!("{}/{system}", peer.name),
            api_key_prefix: String::new(),
            enabled: true,
            created_at: state.platform().now(),
        };
        Ok(Caller::System(Arc::new(SystemIdentity { system: record, department })))
    })();
    (caller, origin)
}
