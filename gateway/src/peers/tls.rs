//! Mutual TLS between gateways: the peer listener's acceptor, and the client configuration
//! each peer is called with. A peer is known by its certificate: issued by the CA configured
//! for it, and listed by its SHA-256.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_rustls::TlsAcceptor;

use super::config::{FederationConfig, PeerConfig};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading {}", path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading {}", path.display()))?;
    anyhow::ensure!(!certs.is_empty(), "{} holds no certificate", path.display());
    Ok(certs)
}

/// The gateway's own certificate chain and key, presented on both sides of a peer connection.
fn identity(
    config: &FederationConfig,
    base_dir: &Path,
) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let chain = certificates(&base_dir.join(&config.cert)).context("federation.cert")?;
    let key = PrivateKeyDer::from_pem_file(base_dir.join(&config.key))
        .with_context(|| format!("federation.key: reading {}", config.key.display()))?;
    Ok((chain, key))
}

fn roots<'a>(cas: impl IntoIterator<Item = &'a Path>, base_dir: &Path) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for ca in cas {
        for cert in certificates(&base_dir.join(ca))? {
            roots.add(cert).with_context(|| format!("{} is not a usable CA certificate", ca.display()))?;
        }
    }
    Ok(roots)
}

/// The peer listener's acceptor: a client certificate from one of the peers' CAs is required
/// to complete the handshake; which peer it is, if any, is decided per request from its
/// fingerprint.
pub fn acceptor(config: &FederationConfig, base_dir: &Path) -> anyhow::Result<TlsAcceptor> {
    let (chain, key) = identity(config, base_dir)?;
    let roots = roots(config.peers.iter().map(|p| p.ca.as_path()), base_dir)?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider()).build()?;
    let mut server = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .context("federation.cert and federation.key do not match")?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(server)))
}

/// The client configuration `peer` is called with: its server certificate must be issued by
/// its CA and be one of its listed certificates; this gateway presents its own.
pub fn client_config(
    config: &FederationConfig,
    peer: &PeerConfig,
    base_dir: &Path,
) -> anyhow::Result<rustls::ClientConfig> {
    let (chain, key) = identity(config, base_dir)?;
    let roots = roots([peer.ca.as_path()], base_dir).with_context(|| format!("peers.{}.ca", peer.name))?;
    let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider()).build()?;
    let pins = peer
        .certificates
        .iter()
        .map(|c| {
            let mut pin = [0u8; 32];
            hex::decode_to_slice(c, &mut pin).map(|()| pin)
        })
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("peers.{}.certificates", peer.name))?;
    let client = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned { inner, pins }))
        .with_client_auth_cert(chain, key)
        .context("federation.cert and federation.key do not match")?;
    Ok(client)
}

/// A peer's server certificate is checked as the web PKI checks one (chain to the peer's CA,
/// validity, the URL's host), and then against the certificates listed for the peer.
#[derive(Debug)]
struct Pinned {
    inner: Arc<WebPkiServerVerifier>,
    pins: Vec<[u8; 32]>,
}

/// The error a peer's unlisted certificate fails the handshake with.
#[derive(Debug, thiserror::Error)]
#[error("the peer's certificate is not one of those configured for it (a changed certificate?)")]
pub struct UnlistedCertificate;

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;
        if self.pins.contains(&crate::certs::fingerprint_bytes(end_entity)) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
                Arc::new(UnlistedCertificate),
            ))))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
