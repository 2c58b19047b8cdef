//! Calls to one peer gateway: pooled mutual-TLS connections, a deadline on every call, and a
//! circuit breaker, so that a peer that is down or slow costs its callers little.

use std::path::Path;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, Uri};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::config::{FederationConfig, PeerConfig};
use crate::breaker::Breaker;

/// A peer's answer.
#[derive(Debug)]
pub struct PeerAnswer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Why a call to a peer got no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PeerError {
    #[error("peer {peer} is failing; calls to it resume in {} ms", retry_after.as_millis())]
    CircuitOpen { peer: String, retry_after: Duration },
    #[error("peer {peer} did not answer within {after:?}")]
    Timeout { peer: String, after: Duration },
    #[error("peer {peer} presented a certificate that is not configured for it: {why}")]
    CertificateRefused { peer: String, why: String },
    #[error("peer {peer} cannot be reached: {why}")]
    Unreachable { peer: String, why: String },
    #[error("peer {peer} answered with more than {limit} bytes")]
    TooLarge { peer: String, limit: usize },
}

impl PeerError {
    /// A stable code for the failure, as problems and the log name it.
    pub fn code(&self) -> &'static str {
        match self {
            PeerError::CircuitOpen { .. } | PeerError::Unreachable { .. } => "peer_unavailable",
            PeerError::Timeout { .. } => "peer_timeout",
            PeerError::CertificateRefused { .. } => "peer_certificate_refused",
            PeerError::TooLarge { .. } => "peer_answer_too_large",
        }
    }
}

/// One peer gateway, as this gateway calls it.
#[derive(Debug)]
pub struct PeerClient {
    pub config: PeerConfig,
    base: String,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Body>,
    breaker: Breaker,
    timeout: Duration,
    max_response_bytes: usize,
}

impl PeerClient {
    pub fn new(federation: &FederationConfig, peer: &PeerConfig, base_dir: &Path) -> anyhow::Result<Self> {
        let tls = super::tls::client_config(federation, peer, base_dir)?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_millis(federation.connect_timeout_ms)));
        http.set_nodelay(true);
        http.set_keepalive(Some(Duration::from_secs(60)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client =
            Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(90)).build(connector);
        Ok(PeerClient {
            base: peer.url.trim_end_matches('/').to_owned(),
            breaker: Breaker::new(
                format!("peer gateway {}", peer.name),
                federation.breaker_failures,
                Duration::from_millis(federation.breaker_open_ms),
            ),
            timeout: Duration::from_millis(federation.timeout_ms),
            max_response_bytes: federation.max_response_bytes,
            config: peer.clone(),
            client,
        })
    }

    /// Calls `path_and_query` on the peer with `headers` and `body`, within the deadline.
    /// Failures to get an answer (not an answer's status) count towards opening the circuit.
    pub async fn call(
        &self,
        method: Method,
        path_and_query: &str,
        headers: HeaderMap,
        body: impl Into<Body>,
    ) -> Result<PeerAnswer, PeerError> {
        let peer = &self.config.name;
        let trial = self
            .breaker
            .admit()
            .map_err(|retry_after| PeerError::CircuitOpen { peer: peer.clone(), retry_after })?;
        let uri: Uri = format!("{}{path_and_query}", self.base)
            .parse()
            .map_err(|e| PeerError::Unreachable { peer: peer.clone(), why: format!("bad path: {e}") })?;
        let mut request = Request::new(body.into());
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        let outcome = tokio::time::timeout(self.timeout, async {
            let response = self.client.request(request).await.map_err(|e| self.failure(&e))?;
            let (parts, body) = response.into_parts();
            let body = http_body_util::Limited::new(body, self.max_response_bytes)
                .collect()
                .await
                .map_err(|e| {
                    if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                        PeerError::TooLarge { peer: peer.clone(), limit: self.max_response_bytes }
                    } else {
                        PeerError::Unreachable { peer: peer.clone(), why: e.to_string() }
                    }
                })?
                .to_bytes();
            Ok(PeerAnswer { status: parts.status, headers: parts.headers, body })
        })
        .await
        .unwrap_or_else(|_| Err(PeerError::Timeout { peer: peer.clone(), after: self.timeout }));
        self.breaker.record(
            trial,
            !matches!(
                outcome,
                Err(PeerError::Timeout { .. }
                    | PeerError::Unreachable { .. }
                    | PeerError::CertificateRefused { .. })
            ),
        );
        outcome
    }

    /// What a failed request says: a refused certificate, found in the error's sources, or
    /// a peer that cannot be reached.
    fn failure(&self, error: &hyper_util::client::legacy::Error) -> PeerError {
        let peer = self.config.name.clone();
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
        while let Some(current) = source {
            let tls = current.downcast_ref::<rustls::Error>().or_else(|| {
                current
                    .downcast_ref::<std::io::Error>()
                    .and_then(|io| io.get_ref())
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            });
            if let Some(rustls::Error::InvalidCertificate(why)) = tls {
                let unlisted = matches!(why, rustls::CertificateError::Other(other)
                    if other.0.downcast_ref::<super::tls::UnlistedCertificate>().is_some());
                let why =
                    if unlisted { super::tls::UnlistedCertificate.to_string() } else { why.to_string() };
                return PeerError::CertificateRefused { peer, why };
            }
            source = current.source();
        }
        let why = std::iter::successors(Some(error as &dyn std::error::Error), |e| e.source())
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(": ");
        // The connector may carry the TLS error as text only, by the time it reaches here.
        if why.contains("UnlistedCertificate") {
            return PeerError::CertificateRefused { peer, why: super::tls::UnlistedCertificate.to_string() };
        }
        if why.contains("invalid peer certificate") {
            return PeerError::CertificateRefused { peer, why };
        }
        PeerError::Unreachable { peer, why }
    }
}
