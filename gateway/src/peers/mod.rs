//! The other provinces' gateways, as this one knows them: who they are (`config`), how a
//! peer is told from any other client (`tls`: mutual TLS, a certificate from the peer's CA and
//! listed for it), how they are called (`client`), and the last good copy of each one's
//! catalog. The routes peers call and the tasks that keep the copies fresh are in
//! `federation`; this module knows nothing of them, so that the data plane can call peers
//! without knowing the routes that serve them.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use tongban_platform::federation::{GrantMirror, RemoteCatalog, split_remote_id};
use tongban_policy::catalog::Resource;
use tongban_policy::grant::GrantSet;

/// The grants peers compiled for this gateway's departments, with the remote id of each
/// one's resource.
#[derive(Debug, Default)]
pub struct Mirrors {
    pub grants: GrantSet,
    /// The remote resource id (`region:code`) by grant id.
    pub resource_ids: HashMap<String, String>,
}

pub mod client;
pub mod config;
pub mod tls;

pub use client::{PeerAnswer, PeerClient, PeerError};
pub use config::{FederationConfig, PeerConfig};

/// This gateway's peers: a client for each, who each certificate belongs to, and the
/// catalogs last received from them.
#[derive(Debug)]
pub struct Peers {
    pub config: FederationConfig,
    clients: BTreeMap<String, PeerClient>,
    by_certificate: HashMap<[u8; 32], String>,
    catalogs: RwLock<Arc<BTreeMap<String, RemoteCatalog>>>,
    /// The grants peers compiled for this gateway's departments, as last received: a
    /// read-only mirror the data plane decides early with, before a call leaves for a peer.
    mirrors: RwLock<Arc<Mirrors>>,
    /// Each peer's evidence certificates, current and retired, as last fetched from it.
    evidence: RwLock<HashMap<String, Arc<Vec<tongban_evidence::Certificate>>>>,
    /// The nonces of signed requests seen within twice the allowed skew, by peer: a request
    /// seen again is a replay.
    nonces: moka::sync::Cache<String, ()>,
    /// When each peer's evidence certificates were last fetched: a peer naming unknown keys
    /// cannot make this gateway fetch on every call.
    evidence_fetched: std::sync::Mutex<HashMap<String, std::time::Instant>>,
}

impl Peers {
    /// The peers `config` names, each with its pool of connections. Fails on a file that
    /// cannot be read or a certificate that does not parse.
    pub fn new(config: &FederationConfig, base_dir: &Path) -> anyhow::Result<Self> {
        config.check()?;
        let mut clients = BTreeMap::new();
        let mut by_certificate = HashMap::new();
        let mut catalogs = BTreeMap::new();
        for peer in &config.peers {
            clients.insert(peer.name.clone(), PeerClient::new(config, peer, base_dir)?);
            for certificate in &peer.certificates {
                let mut sha256 = [0u8; 32];
                hex::decode_to_slice(certificate, &mut sha256)?;
                by_certificate.insert(sha256, peer.name.clone());
            }
            catalogs.insert(peer.name.clone(), RemoteCatalog::empty(&peer.name, &peer.region));
        }
        let mut evidence = HashMap::new();
        for peer in &config.peers {
            let paths: Vec<PathBuf> = peer.evidence.iter().map(|p| base_dir.join(p)).collect();
            let certificates = crate::evidence::read_certificates(&paths)
                .map_err(|e| anyhow::anyhow!("federation.peers {}: evidence: {e}", peer.name))?;
            evidence.insert(peer.name.clone(), Arc::new(certificates));
        }
        Ok(Peers {
            config: config.clone(),
            clients,
            by_certificate,
            catalogs: RwLock::new(Arc::new(catalogs)),
            mirrors: RwLock::default(),
            evidence: RwLock::new(evidence),
            evidence_fetched: std::sync::Mutex::default(),
            nonces: moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(std::time::Duration::from_secs(2 * config.max_skew_secs.max(1)))
                .build(),
        })
    }

    /// A peer's evidence certificates, as last fetched.
    pub fn evidence_certificates(&self, peer: &str) -> Arc<Vec<tongban_evidence::Certificate>> {
        self.evidence
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(peer)
            .cloned()
            .unwrap_or_default()
    }

    /// Adds the certificates a peer lists for itself to those held (pinned ones stay).
    pub fn set_evidence_certificates(&self, peer: &str, certificates: Vec<tongban_evidence::Certificate>) {
        let mut evidence = self.evidence.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut held = evidence.get(peer).map(|c| Vec::clone(c)).unwrap_or_default();
        for certificate in certificates {
            if !held.contains(&certificate) {
                held.push(certificate);
            }
        }
        evidence.insert(peer.to_owned(), Arc::new(held));
    }

    /// Whether a peer's evidence certificates may be fetched now: at most once in ten seconds.
    pub fn may_fetch_evidence(&self, peer: &str) -> bool {
        let mut fetched = self.evidence_fetched.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = std::time::Instant::now();
        match fetched.get(peer) {
            Some(at) if now.duration_since(*at) < std::time::Duration::from_secs(10) => false,
            _ => {
                fetched.insert(peer.to_owned(), now);
                true
            }
        }
    }

    /// Whether `nonce` from `peer` is seen for the first time (and remembers it).
    pub fn fresh_nonce(&self, peer: &str, nonce: &str) -> bool {
        self.nonces.entry(format!("{peer}\n{nonce}")).or_insert(()).is_fresh()
    }

    /// The peer whose certificate has this SHA-256, if it is one of the configured ones.
    pub fn identify(&self, certificate_sha256: &[u8; 32]) -> Option<&PeerClient> {
        self.by_certificate.get(certificate_sha256).and_then(|name| self.clients.get(name))
    }

    pub fn all(&self) -> impl Iterator<Item = &PeerClient> {
        self.clients.values()
    }

    pub fn get(&self, name: &str) -> Option<&PeerClient> {
        self.clients.get(name)
    }

    /// The peer serving the province `region`.
    pub fn in_region(&self, region: &str) -> Option<&PeerClient> {
        self.clients.values().find(|c| c.config.region == region)
    }

    /// The catalogs last received, by peer name.
    pub fn catalogs(&self) -> Arc<BTreeMap<String, RemoteCatalog>> {
        Arc::clone(&self.catalogs.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Replaces what is known of one peer's catalog; peers no longer configured are ignored.
    pub fn set_catalog(&self, catalog: RemoteCatalog) {
        if !self.clients.contains_key(&catalog.peer) {
            return;
        }
        let mut current = self.catalogs.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut next = BTreeMap::clone(&current);
        next.insert(catalog.peer.clone(), catalog);
        *current = Arc::new(next);
    }

    /// A remote resource by its id, with the name of the peer supplying it: what a data call
    /// needs, without copying the rest of the peer's catalog.
    pub fn supplied_by(&self, id: &str) -> Option<(String, Resource)> {
        let (region, code) = split_remote_id(id)?;
        let catalogs = self.catalogs.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let catalog = catalogs.values().find(|c| c.region == region)?;
        let resource = catalog.document.as_ref()?.resources.iter().find(|r| r.code == code)?.clone();
        Some((catalog.peer.clone(), resource))
    }

    /// A remote resource by its id (`410000:A01-410000-0001`), with the catalog it came from.
    pub fn remote_resource(&self, id: &str) -> Option<(RemoteCatalog, Resource)> {
        let (peer, resource) = self.supplied_by(id)?;
        let catalog = self.catalogs().get(&peer)?.clone();
        Some((catalog, resource))
    }

    /// The mirror of the grants peers compiled for this gateway's departments.
    pub fn mirrors(&self) -> Arc<Mirrors> {
        Arc::clone(&self.mirrors.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Replaces the mirror with `mirrors`, as the store holds them now.
    pub fn set_mirrors(&self, mirrors: impl IntoIterator<Item = GrantMirror>) {
        let mut resource_ids = HashMap::new();
        let mut grants = Vec::new();
        for mirror in mirrors {
            resource_ids.insert(mirror.grant.id.clone(), mirror.resource_id);
            grants.push(mirror.grant);
        }
        let next = Mirrors { grants: GrantSet::new(grants), resource_ids };
        *self.mirrors.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(next);
    }
}
