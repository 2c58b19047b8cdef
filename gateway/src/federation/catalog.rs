//! Catalog exchange. Each gateway publishes the resources it shares beyond its province at
//! `GET /federation/v1/catalog`, with an entity tag; each peer asks for it every
//! `federation.catalog_refresh_secs` with the tag it holds, and is told `304 Not Modified`
//! while nothing changed. A copy is replaced only by a good document, so a peer that cannot be
//! reached, or answers with something unreadable, leaves the last good copy listed, with its
//! age and the failure.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use tongban_platform::federation::{CatalogDocument, RefreshFailure, RemoteCatalog};

use super::PeerIdentity;
use crate::peers::{PeerClient, Peers};
use crate::state::AppState;

/// The catalog this gateway publishes, for the peer asking. Answered `304` when the peer's
/// `If-None-Match` names the current document.
pub(super) async fn publish(
    State(state): State<AppState>,
    peer: PeerIdentity,
    headers: HeaderMap,
) -> Response {
    let Some(federation) = state.peers() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let snapshot = state.platform().grants.snapshot();
    let document = CatalogDocument::publish(
        &federation.config.name,
        &federation.config.region,
        snapshot.resources.values(),
    );
    let body = serde_json::to_vec(&document).expect("a catalog document serializes");
    let etag = format!("\"{}\"", hex::encode(&Sha256::digest(&body)[..16]));
    tracing::debug!(peer = %peer.name, resources = document.resources.len(), "catalog asked for");
    let etag_value = HeaderValue::from_str(&etag).expect("hex is a valid header value");
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == etag));
    if unchanged {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag_value)]).into_response();
    }
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json")), (header::ETAG, etag_value)], body)
        .into_response()
}

/// Puts the copies kept in the store in memory, for the peers configured now.
pub(super) async fn load(state: &AppState, peers: &Peers) {
    match state.platform().store.remote_catalogs().await {
        Ok(kept) => {
            for catalog in kept {
                if peers.get(&catalog.peer).is_some_and(|p| p.config.region == catalog.region) {
                    peers.set_catalog(catalog);
                }
            }
        }
        Err(e) => tracing::error!(error = %e, "the peers' catalogs kept in the store cannot be read"),
    }
}

/// Asks every peer for its catalog, then again every `interval`.
pub(super) async fn refresh_forever(state: AppState, peers: Arc<Peers>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        refresh_all(&state, &peers).await;
        super::reload_mirrors(&state, &peers).await;
    }
}

/// Asks every peer for its catalog at once, and keeps what each answered.
pub async fn refresh_all(state: &AppState, peers: &Peers) {
    futures::future::join_all(peers.all().map(|client| refresh(state, peers, client))).await;
}

async fn refresh(state: &AppState, peers: &Peers, client: &PeerClient) {
    let peer = &client.config;
    let held = peers
        .catalogs()
        .get(&peer.name)
        .cloned()
        .unwrap_or_else(|| RemoteCatalog::empty(&peer.name, &peer.region));
    let mut headers = HeaderMap::new();
    headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    if let Some(etag) =
        held.etag.as_deref().filter(|_| held.document.is_some()).and_then(|e| HeaderValue::from_str(e).ok())
    {
        headers.insert(header::IF_NONE_MATCH, etag);
    }
    let now = state.platform().now();
    let store = &state.platform().store;
    let outcome = match client.call(Method::GET, "/federation/v1/catalog", headers, bytes::Bytes::new()).await
    {
        Err(e) => Err(e.to_string()),
        Ok(answer) if answer.status == StatusCode::NOT_MODIFIED => store
            .confirm_remote_catalog(&peer.name, now)
            .await
            .map_err(|e| e.to_string())
            .map(|()| RemoteCatalog { checked_at: Some(now), failure: None, ..held.clone() }),
        Ok(answer) if answer.status == StatusCode::OK => {
            match serde_json::from_slice::<CatalogDocument>(&answer.body) {
                Err(e) => Err(format!("the catalog is not a readable document: {e}")),
                Ok(document) => {
                    let (document, dropped) = document.accepted_from(&peer.region);
                    for why in &dropped {
                        tracing::warn!(peer = %peer.name, why, "a resource in a peer's catalog was not accepted");
                    }
                    let etag =
                        answer.headers.get(header::ETAG).and_then(|v| v.to_str().ok()).map(str::to_owned);
                    match store
                        .save_remote_catalog(&peer.name, &peer.region, etag.as_deref(), &document, now)
                        .await
                    {
                        Ok(()) => Ok(RemoteCatalog {
                            peer: peer.name.clone(),
                            region: peer.region.clone(),
                            document: Some(document),
                            etag,
                            fetched_at: Some(now),
                            checked_at: Some(now),
                            failure: None,
                        }),
                        Err(e) => Err(format!("the copy could not be stored: {e}")),
                    }
                }
            }
        }
        Ok(answer) => Err(format!("the peer answered {}", answer.status)),
    };
    match outcome {
        Ok(catalog) => peers.set_catalog(catalog),
        Err(error) => {
            tracing::warn!(peer = %peer.name, %error, "a peer's catalog could not be refreshed; keeping the last copy");
            if let Err(e) = store.fail_remote_catalog(&peer.name, &peer.region, now, &error).await {
                tracing::warn!(error = %e, "the failure to refresh a peer's catalog could not be stored");
            }
            peers.set_catalog(RemoteCatalog { failure: Some(RefreshFailure { at: now, error }), ..held });
        }
    }
}
