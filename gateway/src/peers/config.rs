//! The `[federation]` section: this gateway as its peers know it, and its peers.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// This gateway's place in the network of provincial gateways. Without the section a gateway
/// stands alone: it publishes nothing and listens for no peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederationConfig {
    /// This gateway's name, as its peers configure it (`henan`).
    pub name: String,
    /// This gateway's province: a GB/T 2260 province code (`410000`).
    pub region: String,
    /// The peer listener: mutual TLS, serving the federation routes and nothing else. A client
    /// must present a certificate issued by a configured peer's CA.
    pub listen: SocketAddr,
    /// The gateway's certificate chain (PEM): its server certificate on `listen`, and the
    /// client certificate it presents to peers.
    pub cert: PathBuf,
    /// The key of `cert` (PEM).
    pub key: PathBuf,
    /// Seconds between asking each peer whether its catalog changed.
    #[serde(default = "defaults::catalog_refresh_secs")]
    pub catalog_refresh_secs: u64,
    #[serde(default = "defaults::connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// The deadline of a call to a peer, answer included: past it the caller gets 504.
    #[serde(default = "defaults::timeout_ms")]
    pub timeout_ms: u64,
    /// Consecutive failures that open a peer's circuit, after which calls to it are answered
    /// 502 at once until a trial call succeeds.
    #[serde(default = "defaults::breaker_failures")]
    pub breaker_failures: u32,
    #[serde(default = "defaults::breaker_open_ms")]
    pub breaker_open_ms: u64,
    /// The largest answer taken from a peer.
    #[serde(default = "defaults::max_response_bytes")]
    pub max_response_bytes: usize,
    /// Refuses data calls a peer passes on without its signature over them
    /// (`docs/evidence.md`). Turned off only while a peer that cannot sign yet is brought up.
    #[serde(default = "defaults::require_signed_requests")]
    pub require_signed_requests: bool,
    /// How far a signed request's time may be from this gateway's clock, in seconds; older
    /// ones are refused as stale, and a nonce is remembered for twice as long.
    #[serde(default = "defaults::max_skew_secs")]
    pub max_skew_secs: u64,
    #[serde(default)]
    pub peers: Vec<PeerConfig>,
}

/// A peer gateway. Its identity is its certificate: one issued by `ca` whose SHA-256 is in
/// `certificates`. A national hub may later distribute this list; until then each province
/// configures its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// The peer's name (`guangdong`).
    pub name: String,
    /// The peer's province (`440000`).
    pub region: String,
    /// The peer's listener: `https://host:port`.
    pub url: String,
    /// The CA (PEM) that issued the peer's gateway certificate.
    pub ca: PathBuf,
    /// SHA-256 (hex) of each certificate the peer may present, as `tongban certs` prints it.
    /// A certificate not listed is refused even when `ca` issued it, so a replaced certificate
    /// is accepted only once it is configured.
    pub certificates: Vec<String>,
    /// The peer's evidence certificates (PEM files), pinned: its signed requests, heads and
    /// countersignatures are checked with them. Certificates the peer lists for itself at
    /// `/federation/v1/evidence`, over its pinned TLS identity, are taken besides, so that a
    /// peer's rotated key is checked without a change here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<PathBuf>,
}

mod defaults {
    pub(super) fn require_signed_requests() -> bool {
        true
    }
    pub(super) fn max_skew_secs() -> u64 {
        60
    }
    pub(super) fn catalog_refresh_secs() -> u64 {
        30
    }
    pub(super) fn connect_timeout_ms() -> u64 {
        1_000
    }
    pub(super) fn timeout_ms() -> u64 {
        5_000
    }
    pub(super) fn breaker_failures() -> u32 {
        3
    }
    pub(super) fn breaker_open_ms() -> u64 {
        5_000
    }
    pub(super) fn max_response_bytes() -> usize {
        16 * 1024 * 1024
    }
}

/// Why a federation section cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("federation: {0}")]
pub struct FederationConfigError(pub String);

impl FederationConfig {
    /// Checks what can be checked without reading files: names, regions, URLs, fingerprints.
    pub fn check(&self) -> Result<(), FederationConfigError> {
        let error = |why: String| Err(FederationConfigError(why));
        let is_province = |code: &str| {
            code.len() == 6
                && code.ends_with("0000")
                && tongban_policy::division::find(code)
                    .is_some_and(|d| d.level == tongban_policy::division::DivisionLevel::Province)
        };
        if !valid_name(&self.name) {
            return error(format!("name {:?}: letters, digits and -, at most 32", self.name));
        }
        if !is_province(&self.region) {
            return error(format!("region {:?} is not a province's GB/T 2260 code", self.region));
        }
        if self.peers.is_empty() {
            return error("peers: a federation section names at least one peer".into());
        }
        let mut names = std::collections::BTreeSet::from([self.name.as_str()]);
        let mut regions = std::collections::BTreeSet::from([self.region.as_str()]);
        for peer in &self.peers {
            if !valid_name(&peer.name) {
                return error(format!("peers: name {:?}: letters, digits and -, at most 32", peer.name));
            }
            if !names.insert(&peer.name) {
                return error(format!("peers: the name {} is used twice (or is this gateway's)", peer.name));
            }
            if !is_province(&peer.region) {
                return error(format!(
                    "peers.{}: region {:?} is not a province's code",
                    peer.name, peer.region
                ));
            }
            if !regions.insert(&peer.region) {
                return error(format!(
                    "peers.{}: region {} has another gateway already (or is this gateway's)",
                    peer.name, peer.region
                ));
            }
            let uri: axum::http::Uri = peer.url.parse().map_err(|e| {
                FederationConfigError(format!("peers.{}: url {:?}: {e}", peer.name, peer.url))
            })?;
            if uri.scheme_str() != Some("https") || uri.host().is_none() || uri.path() != "/" {
                return error(format!("peers.{}: url {:?} is not https://host:port", peer.name, peer.url));
            }
            if peer.certificates.is_empty() {
                return error(format!(
                    "peers.{}: certificates: name the peer's certificate's SHA-256",
                    peer.name
                ));
            }
            if let Some(bad) = peer.certificates.iter().find(|c| c.len() != 64 || hex::decode(c).is_err()) {
                return error(format!("peers.{}: certificates: {bad:?} is not a SHA-256 in hex", peer.name));
            }
        }
        Ok(())
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 32 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}
