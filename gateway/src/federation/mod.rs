//! Federation: the routes peer gateways call on the peer listener, and the tasks that keep
//! what this gateway holds of its peers current. The protocol, the trust model and failure
//! behaviour are in `docs/federation.md`.
//!
//! The peer listener is its own socket with mutual TLS: the handshake needs a certificate
//! from a configured peer's CA, and every request is then matched to a peer by its
//! certificate's SHA-256 ([`PeerIdentity`]), before any route runs. Nothing else is served
//! there, and no federation route is served on the main listener, so an ordinary client can
//! neither reach these routes nor assert what only a peer may.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use crate::error::ApiError;
use crate::listener::ClientCertificate;
use crate::peers::Peers;
use crate::state::AppState;

pub mod catalog;
mod data;
pub mod evidence;
mod outbox;

/// The peer a request on the peer listener comes from, identified by its certificate.
#[derive(Debug, Clone)]
pub struct PeerIdentity {
    pub name: String,
    pub region: String,
}

impl<S: Send + Sync> FromRequestParts<S> for PeerIdentity {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<PeerIdentity>().cloned().ok_or_else(unknown_peer)
    }
}

fn unknown_peer() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "unknown_peer",
        "Unknown peer",
        "the client certificate is not one configured for a peer gateway",
    )
}

/// The routes of the peer listener, for a gateway with `peers`.
pub fn router(state: AppState, peers: Arc<Peers>) -> Router {
    Router::new()
        .route("/federation/v1/catalog", get(catalog::publish))
        .route("/federation/v1/messages/{seq}", axum::routing::post(outbox::receive))
        .route("/federation/v1/data/verify", axum::routing::post(data::verify))
        .route("/federation/v1/data/sql", axum::routing::post(data::sql))
        .route("/federation/v1/data/licences/check", axum::routing::post(data::licence_check))
        .route("/federation/v1/data/licences/documents/check", axum::routing::post(data::document_check))
        .route("/federation/v1/proxy/{resource}/{*path}", axum::routing::any(data::proxy))
        .route("/federation/v1/data/{resource}/records/{key}", get(data::lookup))
        .route("/federation/v1/evidence", get(evidence::certificates))
        .route("/federation/v1/anchors", axum::routing::post(evidence::countersign))
        .fallback(|| async { ApiError::not_found("no such federation route") })
        .layer(axum::middleware::from_fn({
            let state = state.clone();
            move |request, next| identify(state.clone(), Arc::clone(&peers), request, next)
        }))
        .with_state(state)
}

/// Matches the request's client certificate to a configured peer, or refuses it. A
/// certificate from a peer's CA that is not listed for any peer (a replaced certificate, or
/// one the CA issued to someone else) is refused here, and the refusal is counted and named
/// for the operator.
async fn identify(state: AppState, peers: Arc<Peers>, mut request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<ClientCertificate>()
        .and_then(|certificate| peers.identify(&certificate.sha256).map(|p| (certificate, p)));
    match peer {
        Some((_, client)) => {
            let identity =
                PeerIdentity { name: client.config.name.clone(), region: client.config.region.clone() };
            request.extensions_mut().insert(identity);
            next.run(request).await
        }
        None => {
            let certificate = request
                .extensions()
                .get::<ClientCertificate>()
                .map(|c| hex::encode(c.sha256))
                .unwrap_or_default();
            let source = crate::listener::peer_of(request.extensions());
            tracing::warn!(
                certificate = %certificate,
                source = ?source,
                path = request.uri().path(),
                "refused a federation request: the certificate is not configured for any peer"
            );
            // A data call from a certificate that is no peer's is an exchange refused, and is
            // recorded as one, with the address it came from.
            if let Some(operation) = data_operation(request.uri().path()) {
                let mut record = tongban_exchange::ExchangeRecord::begin(operation);
                record.status = StatusCode::FORBIDDEN.as_u16();
                record.code = Some("unknown_peer");
                record.source = source.map(|address| address.to_string());
                record.finished_at = Some(chrono::Utc::now());
                if let Err(e) = state.data().log.write(record).await {
                    tracing::error!(error = %e, "the refusal of an unknown peer's data call could not be recorded");
                }
            }
            unknown_peer().into_response()
        }
    }
}

/// Reads the mirror of peers' grants from the store into memory, where the data plane
/// decides with it: at start, after each grant a peer sends, and with each catalog refresh
/// (for grants received by other instances of this gateway).
pub(crate) async fn reload_mirrors(state: &AppState, peers: &Peers) {
    match state.platform().store.grant_mirrors(None).await {
        Ok(mirrors) => peers.set_mirrors(mirrors),
        Err(e) => tracing::warn!(error = %e, "the mirror of peers' grants cannot be read; keeping the last"),
    }
}

/// The operation a data route of the peer listener serves, if `path` is one.
fn data_operation(path: &str) -> Option<tongban_policy::decision::Operation> {
    use tongban_policy::decision::Operation;
    let data = path.strip_prefix("/federation/v1/")?;
    if data.starts_with("proxy/") {
        return Some(Operation::Proxy);
    }
    let call = data.strip_prefix("data/")?;
    Some(match call {
        "verify" => Operation::Verify,
        "sql" => Operation::Sql,
        "licences/check" | "licences/documents/check" => Operation::LicenceCheck,
        _ => Operation::Lookup,
    })
}

/// Serves the peer listener and keeps the peers' catalogs fresh, until `shutdown`.
pub async fn serve(
    state: AppState,
    peers: Arc<Peers>,
    base_dir: &std::path::Path,
    limits: crate::listener::ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
    let config = &peers.config;
    let acceptor = crate::peers::tls::acceptor(config, base_dir)?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {} (federation.listen): {e}", config.listen))?;
    let address = listener.local_addr()?;
    // Printed on standard output, as the main listener is, for scripts and tests.
    #[allow(clippy::print_stdout)]
    {
        println!("tongban peers listening on https://{address}");
    }
    tracing::info!(%address, peers = config.peers.len(), "peer listener up");
    catalog::load(&state, &peers).await;
    reload_mirrors(&state, &peers).await;
    tokio::spawn(catalog::refresh_forever(
        state.clone(),
        Arc::clone(&peers),
        Duration::from_secs(config.catalog_refresh_secs.max(1)),
    ));
    outbox::deliver_forever(&state, &peers);
    let app = router(state, peers);
    // A handshake refused here is a client without a certificate from a peer's CA: worth an
    // operator's attention, unlike a malformed request from a peer.
    let refused = |reason: &'static str| {
        if reason == "tls_handshake" {
            tracing::warn!(reason, "refused a client on the peer listener: no certificate from a peer's CA");
        } else {
            tracing::debug!(reason, "peer request refused before routing");
        }
    };
    Ok(tokio::spawn(crate::listener::serve(listener, Some(acceptor), app, limits, refused, shutdown)))
}
