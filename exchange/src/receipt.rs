//! Receipts for exchanges: what of a record a receipt claims, and the signing of the log's
//! groups.
//!
//! When the log has a signing identity, every record is a leaf of its group's Merkle tree:
//! the leaf is the record's **claims** (the subset of the record that says who asked what,
//! under which grant and purpose, with what outcome, and the digests of request and answer),
//! encoded as one JSON object. The writer signs one head per group and writes it after the
//! group's records, in the same write; each caller gets its claims, its path and the head as
//! its receipt. `tongban audit verify` rebuilds every leaf from the record lines and checks
//! every head.

use std::path::Path;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tongban_evidence::{Digest, HashAlgorithm, Receipt, SignedHead, SigningIdentity, Tree};
use tongban_policy::decision::Operation;

use super::ExchangeRecord;

/// The claims of a record as they are written at the call, borrowed from its record.
#[derive(Serialize)]
struct ClaimsRef<'r> {
    id: &'r str,
    finished_at: Option<&'r DateTime<Utc>>,
    operation: Operation,
    department: Option<&'r str>,
    system: Option<&'r str>,
    service_item: Option<&'r str>,
    case_digest: Option<&'r str>,
    operator_digest: Option<&'r str>,
    grants: &'r [String],
    grant_versions: &'r [u32],
    resources: &'r [String],
    resource_versions: &'r [u32],
    status: u16,
    code: Option<&'r str>,
    request_digest: Option<&'r str>,
    response_digest: Option<&'r str>,
    peer: Option<&'r str>,
    peer_exchange_id: Option<&'r str>,
    request_signature: Option<&'r str>,
    peer_receipt: Option<&'r str>,
}

/// The claims of a record as the audit reads them back from its line: the same members in
/// the same order, so that they encode to the same bytes.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    id: String,
    #[serde(default)]
    finished_at: Option<DateTime<Utc>>,
    operation: Operation,
    #[serde(default)]
    department: Option<String>,
    #[serde(default)]
    system: Option<String>,
    #[serde(default)]
    service_item: Option<String>,
    #[serde(default)]
    case_digest: Option<String>,
    #[serde(default)]
    operator_digest: Option<String>,
    #[serde(default)]
    grants: Vec<String>,
    #[serde(default)]
    grant_versions: Vec<u32>,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    resource_versions: Vec<u32>,
    #[serde(default)]
    status: u16,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    request_digest: Option<String>,
    #[serde(default)]
    response_digest: Option<String>,
    #[serde(default)]
    peer: Option<String>,
    #[serde(default)]
    peer_exchange_id: Option<String>,
    #[serde(default)]
    request_signature: Option<String>,
    #[serde(default)]
    peer_receipt: Option<String>,
}

/// The claims of `record`, encoded as its leaf.
pub fn claims_of(record: &ExchangeRecord) -> Vec<u8> {
    let claims = ClaimsRef {
        id: &record.id,
        finished_at: record.finished_at.as_ref(),
        operation: record.operation,
        department: record.department.as_deref(),
        system: record.system.as_deref(),
        service_item: record.service_item.as_deref(),
        case_digest: record.case_digest.as_deref(),
        operator_digest: record.operator_digest.as_deref(),
        grants: &record.grants,
        grant_versions: &record.grant_versions,
        resources: &record.resources,
        resource_versions: &record.resource_versions,
        status: record.status,
        code: record.code,
        request_digest: record.request_digest.as_deref(),
        response_digest: record.response_digest.as_deref(),
        peer: record.peer.as_deref(),
        peer_exchange_id: record.peer_exchange_id.as_deref(),
        request_signature: record.request_signature.as_deref(),
        peer_receipt: record.peer_receipt.as_deref(),
    };
    let mut bytes = Vec::with_capacity(512);
    // Serialising borrowed strings and numbers into a vector cannot fail.
    let _ = serde_json::to_writer(&mut bytes, &claims);
    bytes
}

/// The claims of a record line as written in the log, encoded as its leaf; `None` for a line
/// that is not a record.
pub fn claims_of_line(line: &[u8]) -> Option<Vec<u8>> {
    let claims: Claims = serde_json::from_slice(line).ok()?;
    serde_json::to_vec(&claims).ok()
}

/// The salt of a record's request and answer digests: derived from the log's own key and the
/// exchange id, so that it costs no randomness per call, differs for every exchange, and
/// cannot be derived by anyone without the key.
pub fn nonce(log_key: &[u8], exchange_id: &str) -> [u8; 16] {
    let mut hasher = Sha256::new();
    hasher.update(log_key);
    hasher.update(b"tongban-receipt-nonce");
    hasher.update(exchange_id.as_bytes());
    let mut nonce = [0u8; 16];
    nonce.copy_from_slice(&hasher.finalize()[..16]);
    nonce
}

/// The log's signer: the current identity (replaced on rotation) and the name heads carry.
#[derive(Debug)]
pub struct Signer {
    log: String,
    hash: HashAlgorithm,
    identity: RwLock<Arc<SigningIdentity>>,
    certificates: std::path::PathBuf,
    /// The newest head signed, which peers countersign and a standalone gateway exports.
    latest: std::sync::Mutex<Option<SignedHead>>,
}

/// The directory beside the log's segments where every certificate that signed a head is
/// kept, by fingerprint, so that heads signed by retired keys stay verifiable.
pub const CERTIFICATES_DIR: &str = "certs";

/// Why a signing identity cannot be taken.
#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    #[error("the new key is {new}, the log signs with {current}: changing the algorithm takes a restart")]
    AlgorithmChanged { current: &'static str, new: &'static str },
    #[error("the certificate cannot be kept beside the log: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Certificate(#[from] tongban_evidence::CertError),
}

impl Signer {
    /// A signer naming its heads `log`, keeping its certificates in the log directory `dir`.
    pub fn new(log: &str, identity: SigningIdentity, dir: &Path) -> Result<Signer, SignerError> {
        let certificates = dir.join(CERTIFICATES_DIR);
        keep_certificate(&certificates, &identity)?;
        Ok(Signer {
            log: log.to_owned(),
            hash: HashAlgorithm::for_signatures(identity.key.algorithm()),
            identity: RwLock::new(Arc::new(identity)),
            certificates,
            latest: std::sync::Mutex::new(None),
        })
    }

    pub fn log(&self) -> &str {
        &self.log
    }

    /// The hash of the log's trees and digests, fixed for as long as it runs.
    pub fn hash(&self) -> HashAlgorithm {
        self.hash
    }

    pub fn identity(&self) -> Arc<SigningIdentity> {
        self.identity.read().map_or_else(|e| e.into_inner().clone(), |i| i.clone())
    }

    /// The newest head signed since the log opened.
    pub fn latest_head(&self) -> Option<SignedHead> {
        self.latest.lock().map_or_else(|e| e.into_inner().clone(), |h| h.clone())
    }

    /// Takes a new identity for the next groups: the retired certificate stays in the store.
    /// Returns whether the key changed.
    pub fn rotate(&self, identity: SigningIdentity) -> Result<bool, SignerError> {
        let current = self.identity();
        if current.fingerprint == identity.fingerprint && current.certificate == identity.certificate {
            return Ok(false);
        }
        if current.key.algorithm() != identity.key.algorithm() {
            return Err(SignerError::AlgorithmChanged {
                current: current.key.algorithm().as_str(),
                new: identity.key.algorithm().as_str(),
            });
        }
        keep_certificate(&self.certificates, &identity)?;
        let mut slot = self.identity.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        *slot = Arc::new(identity);
        Ok(true)
    }
}

fn keep_certificate(dir: &Path, identity: &SigningIdentity) -> Result<(), SignerError> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{}.pem", identity.fingerprint));
    if !path.exists() {
        let temporary = dir.join(format!(".{}.pem.tmp", identity.fingerprint));
        std::fs::write(&temporary, identity.certificate.to_pem()?)?;
        std::fs::File::open(&temporary)?.sync_all()?;
        std::fs::rename(&temporary, &path)?;
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Every certificate kept beside the log in `dir`.
pub fn kept_certificates(dir: &Path) -> std::io::Result<Vec<tongban_evidence::Certificate>> {
    let mut certificates = Vec::new();
    let entries = match std::fs::read_dir(dir.join(CERTIFICATES_DIR)) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(certificates),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "pem") {
            let pem = std::fs::read_to_string(&path)?;
            match tongban_evidence::Certificate::from_pem(&pem) {
                Ok(certificate) => certificates.push(certificate),
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "not a certificate; left out"),
            }
        }
    }
    Ok(certificates)
}

/// A signed group: its head and its tree, shared by the group's callers.
#[derive(Debug)]
pub struct SignedGroup {
    pub head: SignedHead,
    pub tree: Tree,
}

impl SignedGroup {
    /// Signs the group whose leaves are `leaves`, first record `first_seq`, chain `chain`.
    pub fn sign(signer: &Signer, leaves: Vec<Digest>, first_seq: u64, chain: &Digest) -> SignedGroup {
        let tree = Tree::new(signer.hash, leaves);
        let identity = signer.identity();
        let now = u64::try_from(Utc::now().timestamp_millis()).unwrap_or_default();
        let head = SignedHead::sign(
            &identity.key,
            &identity.fingerprint,
            &signer.log,
            first_seq,
            tree.size() as u64,
            &tree.root(),
            chain,
            now,
        );
        if let Ok(mut latest) = signer.latest.lock() {
            *latest = Some(head.clone());
        }
        SignedGroup { head, tree }
    }

    /// The receipt of leaf `index`, whose claims are `claims`.
    pub fn receipt(&self, index: usize, claims: Vec<u8>, nonce: &[u8]) -> Option<Receipt> {
        let path = self.tree.path(index)?;
        let claims = serde_json::value::RawValue::from_string(String::from_utf8(claims).ok()?).ok()?;
        Some(Receipt {
            v: tongban_evidence::receipt::RECEIPT_VERSION,
            claims,
            nonce: hex::encode(nonce),
            index: index as u64,
            path: path.iter().map(hex::encode).collect(),
            head: self.head.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the writer encodes from a record and what the audit encodes from its line are the
    /// same bytes, with every member filled in and with every optional one absent.
    #[test]
    fn claims_from_a_record_and_from_its_line_are_the_same_bytes() {
        let mut full = ExchangeRecord::begin(Operation::Lookup);
        full.finished_at = Some(Utc::now());
        full.department = Some("11410000MB0000000X".into());
        full.system = Some("sys-1".into());
        full.service_item = Some("KSTB-001".into());
        full.case_digest = Some("ab".repeat(16));
        full.operator_digest = Some("cd".repeat(16));
        full.grants = vec!["g-1".into()];
        full.grant_versions = vec![3];
        full.resources = vec!["R-1".into()];
        full.resource_versions = vec![2];
        full.status = 200;
        full.code = Some("ok\"quoted\"");
        full.request_digest = Some("01".repeat(32));
        full.response_digest = Some("02".repeat(32));
        full.peer = Some("guangdong".into());
        full.peer_exchange_id = Some("x-1".into());
        full.request_signature = Some("c2ln".into());
        full.peer_receipt = Some("cmVj".into());
        let empty = ExchangeRecord::begin(Operation::Verify);
        for record in [full, empty] {
            let line = serde_json::to_vec(&record).expect("json");
            assert_eq!(claims_of_line(&line), Some(claims_of(&record)));
        }
    }
}
