//! Development certificates: a CA, a server certificate and client certificates for systems,
//! as PEM files, for the demo and the tests. Production deployments use their own PKI; the
//! gateway only needs the CA that signs client certificates and its own certificate and key.

use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use sha2::{Digest, Sha256};

pub const CA_FILE: &str = "ca.pem";
pub const SERVER_CERT_FILE: &str = "server.pem";
pub const SERVER_KEY_FILE: &str = "server-key.pem";
/// A federated gateway's own certificate: its server certificate on the peer listener and its
/// client certificate towards peers.
pub const GATEWAY_CERT_FILE: &str = "gateway.pem";
pub const GATEWAY_KEY_FILE: &str = "gateway-key.pem";

/// A client certificate written for one system.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ClientFiles {
    pub name: String,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// SHA-256 (hex) of the certificate's DER: what the gateway registers for the system.
    pub sha256: String,
}

/// The SHA-256 (hex) of a certificate's DER encoding.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(fingerprint_bytes(der))
}

/// [`fingerprint`] before it is written in hex.
pub fn fingerprint_bytes(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

/// Writes a development CA, a server certificate for `hosts` and a client certificate per name
/// in `clients` into `out`. Keys are written readable by the owner only.
///
/// With `gateway`, also a federated gateway's certificate named so, valid for `hosts`, for
/// both server and client authentication; it is the last of the files returned.
pub fn generate(
    out: &Path,
    hosts: &[String],
    clients: &[String],
    gateway: Option<&str>,
) -> anyhow::Result<Vec<ClientFiles>> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name.push(DnType::CommonName, "Tongban development CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
    write(out, CA_FILE, ca.pem().as_bytes(), false)?;

    let mut server = CertificateParams::new(hosts.to_vec())?;
    server.distinguished_name.push(DnType::CommonName, hosts.first().map_or("tongban", String::as_str));
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = KeyPair::generate()?;
    let server_cert = server.signed_by(&server_key, &ca)?;
    write(out, SERVER_CERT_FILE, server_cert.pem().as_bytes(), false)?;
    write(out, SERVER_KEY_FILE, server_key.serialize_pem().as_bytes(), true)?;

    let mut issued = Vec::with_capacity(clients.len());
    for (index, name) in clients.iter().enumerate() {
        let mut client = CertificateParams::new(Vec::<String>::new())?;
        client.distinguished_name.push(DnType::CommonName, name.as_str());
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate()?;
        let cert = client.signed_by(&key, &ca)?;
        let (cert_file, key_file) = (format!("client-{index}.pem"), format!("client-{index}-key.pem"));
        write(out, &cert_file, cert.pem().as_bytes(), false)?;
        write(out, &key_file, key.serialize_pem().as_bytes(), true)?;
        issued.push(ClientFiles {
            name: name.clone(),
            cert: out.join(cert_file),
            key: out.join(key_file),
            sha256: fingerprint(cert.der()),
        });
    }
    std::fs::write(out.join("clients.json"), serde_json::to_vec_pretty(&issued)?)?;
    if let Some(name) = gateway {
        // Peers know a gateway by this certificate's SHA-256, so it serves both ends of a peer
        // connection: the listener's side and the caller's.
        let mut params = CertificateParams::new(hosts.to_vec())?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages =
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &ca)?;
        write(out, GATEWAY_CERT_FILE, cert.pem().as_bytes(), false)?;
        write(out, GATEWAY_KEY_FILE, key.serialize_pem().as_bytes(), true)?;
        issued.push(ClientFiles {
            name: name.to_owned(),
            cert: out.join(GATEWAY_CERT_FILE),
            key: out.join(GATEWAY_KEY_FILE),
            sha256: fingerprint(cert.der()),
        });
    }
    Ok(issued)
}

fn write(dir: &Path, name: &str, bytes: &[u8], private: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let path = dir.join(name);
    options.open(&path).with_context(|| format!("writing {}", path.display()))?.write_all(bytes)?;
    Ok(())
}
