//! Hand-offs between gateways. A step on a demand that crosses gateways, and every version of
//! a grant compiled for another gateway's department, is written to the outbox in the same
//! transaction that stores it; this module delivers the outbox to each peer in sequence
//! (`POST /federation/v1/messages/{seq}`), one message at a time, and retries while the peer
//! cannot be reached. The receiver applies each message with its place in its inbox in one
//! transaction, so a message is applied exactly once however often it is sent: a killed
//! sender sends again what it had not seen acknowledged, and a killed receiver either applied
//! a message or did not.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use tongban_platform::PeerGateway;
use tongban_platform::federation::{Delivery, PeerMessage};

use super::PeerIdentity;
use crate::error::ApiError;
use crate::peers::{PeerClient, Peers};
use crate::state::AppState;

/// Message `seq` from the peer calling: applied, acknowledged as a repeat, or refused.
pub(super) async fn receive(
    State(state): State<AppState>,
    peer: PeerIdentity,
    Path(seq): Path<i64>,
    body: Bytes,
) -> Result<Json<Delivery>, ApiError> {
    let sender = PeerGateway { name: peer.name, region: peer.region };
    let platform = state.platform();
    let message = match serde_json::from_slice::<PeerMessage>(&body) {
        Ok(message) => message,
        // An unreadable message still takes its place, or none behind it could be applied.
        Err(e) => return Err(platform.refuse_unreadable(&sender, seq, &e.to_string()).await.into()),
    };
    let mirrored = matches!(message, PeerMessage::GrantChanged { .. });
    let delivery = platform.receive_from_peer(&sender, seq, message).await?;
    // A grant a peer changed takes effect in the mirror the data plane reads at once.
    if delivery.applied
        && mirrored
        && let Some(peers) = state.peers()
    {
        super::reload_mirrors(&state, peers).await;
    }
    Ok(Json(delivery))
}

/// Delivers each peer's outbox until the process ends.
pub(super) fn deliver_forever(state: &AppState, peers: &Arc<Peers>) {
    for client in peers.all() {
        tokio::spawn(deliver_to(state.clone(), Arc::clone(peers), client.config.name.clone()));
    }
}

/// How long a delivery loop waits between looks at an empty outbox: other instances of this
/// gateway write to the same store without waking this one.
const IDLE_LOOK: Duration = Duration::from_secs(1);

async fn deliver_to(state: AppState, peers: Arc<Peers>, name: String) {
    let Some(client) = peers.get(&name) else { return };
    let mut written = state.platform().outbox_written.subscribe();
    let mut backoff = Duration::from_millis(100);
    loop {
        match deliver_next(&state, client).await {
            Next::Delivered => backoff = Duration::from_millis(100),
            Next::Empty => {
                // Woken by a write here, or after a while for writes by other instances.
                let _ = tokio::time::timeout(IDLE_LOOK, written.changed()).await;
            }
            Next::Retry => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

enum Next {
    Delivered,
    Empty,
    Retry,
}

/// Problem codes that say nothing against the message itself: the peer does not (yet) know
/// this gateway's certificate, or is missing messages before it. The message is sent again.
const TRANSIENT_CODES: [&str; 2] = ["unknown_peer", "out_of_sequence"];

async fn deliver_next(state: &AppState, client: &PeerClient) -> Next {
    let platform = state.platform();
    let store = &platform.store;
    let peer = &client.config.name;
    let (seq, message) = match store.next_outgoing(peer).await {
        Ok(Some(next)) => next,
        Ok(None) => return Next::Empty,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "the outbox cannot be read");
            return Next::Retry;
        }
    };
    let body = match serde_json::to_vec(&message) {
        Ok(body) => body,
        Err(e) => {
            tracing::error!(%peer, seq, error = %e, "an outbox message cannot be serialized");
            return Next::Retry;
        }
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let path = format!("/federation/v1/messages/{seq}");
    let answer = client.call(Method::POST, &path, headers, Bytes::from(body)).await;
    let now = platform.now();
    let failed = |why: String| async move {
        tracing::debug!(%peer, seq, why, "a message to a peer was not delivered; retrying");
        if let Err(e) = store.delivery_failed(peer, seq, &why).await {
            tracing::warn!(%peer, error = %e, "a failed delivery could not be noted");
        }
        Next::Retry
    };
    let answer = match answer {
        Ok(answer) => answer,
        Err(e) => return failed(e.to_string()).await,
    };
    if answer.status == StatusCode::OK {
        let delivery = serde_json::from_slice::<Delivery>(&answer.body).ok();
        if let Err(e) = store.delivered(peer, seq, None, now).await {
            tracing::warn!(%peer, seq, error = %e, "a delivered message could not be noted; it will be sent again");
            return Next::Retry;
        }
        // The peer runs the stage the step led to: its calendar sets the deadline shown here.
        if let (Some(Delivery { clock: Some(clock), .. }), PeerMessage::DemandStep(step)) =
            (delivery, &message)
            && let Err(e) = store.adopt_clock(&step.demand_id, &step.workflow, clock).await
        {
            tracing::warn!(%peer, demand = %step.demand_id, error = %e, "the peer's stage clock could not be kept");
        }
        tracing::debug!(%peer, seq, kind = message.kind(), "message delivered");
        return Next::Delivered;
    }
    let problem: Option<serde_json::Value> = serde_json::from_slice(&answer.body).ok();
    let code = problem.as_ref().and_then(|p| p["code"].as_str()).unwrap_or_default().to_owned();
    let detail = problem.as_ref().and_then(|p| p["detail"].as_str()).unwrap_or_default().to_owned();
    let for_good = answer.status.is_client_error()
        && !matches!(
            answer.status,
            StatusCode::NOT_FOUND | StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS
        )
        && !TRANSIENT_CODES.contains(&code.as_str());
    if !for_good {
        return failed(format!("the peer answered {} {code}", answer.status)).await;
    }
    tracing::warn!(%peer, seq, kind = message.kind(), %code, %detail, "the peer refused a message");
    match store.delivered(peer, seq, Some(&format!("{code}: {detail}")), now).await {
        Ok(()) => Next::Delivered,
        Err(e) => {
            tracing::warn!(%peer, seq, error = %e, "a refused message could not be noted");
            Next::Retry
        }
    }
}
