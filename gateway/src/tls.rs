//! TLS for the listener: the rustls (ring) acceptor, HTTP/1.1 and HTTP/2, and optional client certificates.
//!
//! When a client CA is configured, a client may present a certificate signed by it; the
//! certificate's SHA-256 goes into every request of the connection as
//! `listener::ClientCertificate`, which `caller` maps to a registered system. Clients without a certificate
//! can still connect and authenticate with an API key.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use serde::{Deserialize, Serialize};
use tokio_rustls::TlsAcceptor;

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
