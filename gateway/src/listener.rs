//! The one accept loop behind plain and TLS listeners, and what bounds each connection.
//!
//! A client that opens connections and then sends nothing, or a header byte every few seconds,
//! must not take the gateway offline for everyone else. So:
//!
//! - **At most `server.max_connections` at once.** At the cap the loop stops accepting (new
//!   connections wait in the kernel's backlog) until one closes, rather than running out of
//!   file descriptors, which would stop the probes, the exchange log and the store alike.
//! - **A deadline for each request's head** (`server.header_read_timeout_secs`). It runs
//!   from the moment the connection waits for a request, so it also closes a keep-alive
//!   connection that stays idle, and a TLS handshake gets the same time.
//! - **HTTP/2 connections are pinged** while idle and closed when the client stops answering.
//! - **Accept errors back off** (running out of descriptors is one) instead of spinning.
//!
//! Every request carries the peer's address (`ConnectInfo`), for limits per source address,
//! and over TLS the client certificate's fingerprint ([`ClientCertificate`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// The SHA-256 of the client certificate the TLS layer verified for a connection, computed
/// once per connection and put in each request's extensions by the listener.
#[derive(Debug, Clone, Copy)]
pub struct ClientCertificate {
    pub sha256: [u8; 32],
}

/// What bounds the connections of one listener.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
}

/// Descriptors kept back from connections for everything else the gateway opens: segments of
/// the exchange log and their Parquet copies, dataset files, the store, suppliers.
const RESERVED_DESCRIPTORS: u64 = 512;

impl ConnectionLimits {
    /// The cap in force: the configured one, lowered when the process may not open that many
    /// descriptors beside the ones it keeps for its own files (a cap above the descriptor
    /// limit would let connections take the descriptors the log and the store need).
    pub fn effective_max_connections(&self) -> usize {
        match descriptor_limit() {
            Some(limit) => {
                let room = limit.saturating_sub(RESERVED_DESCRIPTORS).max(limit / 2).max(1);
                self.max_connections.min(usize::try_from(room).unwrap_or(usize::MAX))
            }
            None => self.max_connections,
        }
    }
}

/// The process's soft limit on open descriptors, from `/proc/self/limits` (Linux).
fn descriptor_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files").split_whitespace().next()?.parse().ok()
}

/// How long the loop waits after an accept error before accepting again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves `app` on `listener` (over TLS when `tls` is given) until `shutdown` completes, then
/// stops accepting and waits for the connections in flight (the caller bounds the wait).
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    limits: ConnectionLimits,
    refused: impl Fn(&'static str) + Clone + Send + 'static,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(Some(limits.header_read_timeout));
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(limits.header_read_timeout))
        .keep_alive_timeout(limits.header_read_timeout);
    let max_connections = limits.effective_max_connections();
    if max_connections < limits.max_connections {
        tracing::warn!(
            configured = limits.max_connections,
            max_connections,
            "server.max_connections is above what the descriptor limit leaves room for; lowered (raise LimitNOFILE)"
        );
    }
    let slots = Arc::new(Semaphore::new(max_connections.max(1)));
    let mut warned_full = false;
    tokio::pin!(shutdown);
    loop {
        // A slot first, then a connection: at the cap nothing more is accepted.
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        if slots.available_permits() == 0 && !warned_full {
            tracing::warn!(
                max_connections = limits.max_connections,
                "connection cap reached; accepting no more until some close"
            );
            warned_full = true;
        } else if slots.available_permits() > limits.max_connections / 10 {
            warned_full = false;
        }
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; backing off");
                    drop(slot);
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let (tls, app, builder, refused) = (tls.clone(), app.clone(), builder.clone(), refused.clone());
        let watcher = graceful.watcher();
        let handshake_timeout = limits.header_read_timeout;
        tokio::spawn(async move {
            // The slot is held for as long as the connection lives.
            let _slot = slot;
            let (io, certificate) = match tls {
                None => (Io::Plain(tcp), None),
                Some(acceptor) => match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let certificate =
                            stream.get_ref().1.peer_certificates().and_then(|chain| chain.first()).map(
                                |leaf| ClientCertificate { sha256: crate::certs::fingerprint_bytes(leaf) },
                            );
                        (Io::Tls(Box::new(stream)), certificate)
                    }
                    Ok(Err(e)) => {
                        // Counted like a refused request (a client without an accepted
                        // certificate never gets to make one).
                        refused("tls_handshake");
                        tracing::debug!(%peer, error = %e, "TLS handshake refused");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                },
            };
            let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                if let Some(certificate) = &certificate {
                    request.extensions_mut().insert(*certificate);
                }
                app.clone().oneshot(request)
            });
            let result = match io {
                Io::Plain(tcp) => {
                    watcher
                        .watch(
                            builder.serve_connection_with_upgrades(TokioIo::new(tcp), service).into_owned(),
                        )
                        .await
                }
                Io::Tls(tls) => {
                    watcher
                        .watch(
                            builder.serve_connection_with_upgrades(TokioIo::new(*tls), service).into_owned(),
                        )
                        .await
                }
            };
            if let Err(e) = result {
                match refusal_of(&*e) {
                    // Refused by the HTTP layer before any route or caller was known, so there
                    // is no exchange to record: counted, and named with the peer for operators.
                    Some(reason) => {
                        refused(reason);
                        tracing::info!(%peer, reason, "request refused before routing");
                    }
                    None => tracing::debug!(%peer, error = %e, "connection ended with an error"),
                }
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Why the HTTP layer refused a connection's request, when it did: a request it could not
/// read (answered 400), a head over the size limit (431 or 414), or a head that came too late.
fn refusal_of(error: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    let error = error.downcast_ref::<hyper::Error>()?;
    if error.is_parse_too_large() {
        Some("head_too_large")
    } else if error.is_parse() {
        Some("malformed")
    } else if error.is_timeout() {
        Some("head_too_slow")
    } else {
        None
    }
}

enum Io {
    Plain(tokio::net::TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>),
}

/// The peer address of a request, when the listener recorded it (tests that drive the router
/// directly have none).
pub fn peer_of(extensions: &axum::http::Extensions) -> Option<SocketAddr> {
    extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(peer)| *peer)
}

/// The peer address of the request, as an extractor that never fails.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub Option<SocketAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Peer(peer_of(&parts.extensions)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_descriptors_for_the_gateways_own_files() {
        let limit = descriptor_limit().expect("Linux reports the descriptor limit");
        let huge =
            ConnectionLimits { max_connections: usize::MAX, header_read_timeout: Duration::from_secs(1) };
        let cap = huge.effective_max_connections() as u64;
        assert!(cap < limit, "a cap of {cap} under a limit of {limit}");
        assert!(cap >= limit / 2);
        let small = ConnectionLimits { max_connections: 10, ..huge };
        assert_eq!(small.effective_max_connections(), 10);
    }
}
