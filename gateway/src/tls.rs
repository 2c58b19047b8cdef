//! The TLS listener: rustls (ring), HTTP/1.1 and HTTP/2, and optional client certificates.
//!
//! When a client CA is configured, a client may present a certificate signed by it; the
//! certificate's SHA-256 goes into every request of the connection as [`ClientCertificate`],
//! which the `Caller` extractor maps to a registered system. Clients without a certificate
//! can still connect and authenticate with an API key.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::api::ClientCertificate;

/// TLS settings of the listener. Paths are relative to the configuration file's directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The server's certificate chain (PEM).
    pub cert: PathBuf,
    /// The server's private key (PEM).
    pub key: PathBuf,
    /// The CA (PEM) that signs department systems' client certificates; client certificates
    /// are not asked for when absent.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds the acceptor from the configured files.
pub fn acceptor(config: &TlsConfig, base_dir: &Path) -> anyhow::Result<TlsAcceptor> {
    let path = |p: &Path| base_dir.join(p);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path(&config.cert))
        .with_context(|| format!("reading {}", config.cert.display()))?
        .collect::<Result<_, _>>()?;
    let key = PrivateKeyDer::from_pem_file(path(&config.key))
        .with_context(|| format!("reading {}", config.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?;
    let builder = match &config.client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path(ca))
                .with_context(|| format!("reading {}", ca.display()))?
            {
                roots.add(cert?)?;
            }
            // Certificates are optional: systems may use API keys instead.
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut server = builder.with_single_cert(certs, key)?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(server)))
}

/// Serves `app` over TLS until `shutdown` completes, then stops accepting and waits for the
/// connections in flight to finish (the caller bounds the wait).
pub async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    app: Router,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                };
                let (acceptor, app, builder) = (acceptor.clone(), app.clone(), builder.clone());
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake refused");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let certificate = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .map(|leaf| ClientCertificate { sha256: crate::certs::fingerprint_bytes(leaf) });
                    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                        if let Some(certificate) = &certificate {
                            request.extensions_mut().insert(*certificate);
                        }
                        app.clone().oneshot(request)
                    });
                    let connection = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
                    if let Err(e) = watcher.watch(connection.into_owned()).await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
