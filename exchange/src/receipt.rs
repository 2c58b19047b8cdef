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

use base64::Engine as _;
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

/// What a signing log finds at its end when it opens.
#[derive(Debug, Default)]
pub struct Tail {
    /// The newest head in the log, which the next head follows.
    pub last_head: Option<SignedHead>,
    /// The records after it that a signing log wrote but no head covers, because a crash
    /// came between their write and their head's (their calls were never answered): the
    /// first one's number and their leaves. The writer signs them with its first write. Only
    /// records after a head in the same open segment are taken, so that records written while
    /// the log did not sign are not signed after the fact.
    pub unsigned: Option<(u64, Vec<Digest>)>,
}

/// Reads the end of the log in `dir`: the newest segments back to the one with the newest
/// head (only a log that has never signed is read whole, once).
pub fn tail(dir: &Path, hash: HashAlgorithm) -> std::io::Result<Tail> {
    #[derive(serde::Deserialize)]
    struct HeadLine {
        head: SignedHead,
    }
    #[derive(serde::Deserialize)]
    struct RecordLine {
        seq: u64,
    }
    let mut segments = crate::wal::list_segments(dir)?;
    let mut found = Tail::default();
    let mut newest = true;
    while let Some((_, path)) = segments.pop() {
        let bytes = std::fs::read(path)?;
        let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').filter(|line| !line.is_empty()).collect();
        // Only the newest head line is parsed, and records only after it in the newest
        // segment: a seal, always a segment's last line, closes a segment no head follows.
        let sealed = lines.last().is_some_and(|line| line.starts_with(b"{\"seal\""));
        let at = lines.iter().rposition(|line| line.starts_with(b"{\"head\""));
        let last_head = at.and_then(|at| serde_json::from_slice::<HeadLine>(lines[at]).ok()).map(|l| l.head);
        if let (true, false, Some(at), Some(_)) = (newest, sealed, at, &last_head) {
            let mut records = lines[at + 1..].iter().filter_map(|line| {
                let seq = serde_json::from_slice::<RecordLine>(line).ok()?.seq;
                Some((seq, hash.leaf(&claims_of_line(line)?)))
            });
            if let Some((first, leaf)) = records.next() {
                let leaves: Vec<Digest> =
                    std::iter::once(leaf).chain(records.map(|(_, leaf)| leaf)).collect();
                if leaves.len() < MAX_HEAD_RECORDS {
                    found.unsigned = Some((first, leaves));
                }
            }
        }
        newest = false;
        if last_head.is_some() {
            found.last_head = last_head;
            break;
        }
    }
    Ok(found)
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
    /// The least time between two heads: the records written meanwhile wait for the next
    /// head, so that one signature covers every group of the interval.
    head_interval: std::time::Duration,
}

/// The least time between two heads by default: none, one head per group commit. Groups grow
/// with load, so a signature is shared by more calls the busier the gateway is, and no answer
/// waits past its group's write. An interval bounds the signing rate (a key in a hardware module
/// that signs a few hundred times a second), at the cost of up to the interval in latency,
/// which lowers the throughput of callers that wait for each answer before the next call.
pub const DEFAULT_HEAD_INTERVAL: std::time::Duration = std::time::Duration::ZERO;

/// The most records one head covers: the writer signs sooner rather than let a tree grow past
/// it, and the audit holds no more than this many records' claims at once.
pub const MAX_HEAD_RECORDS: usize = 16_384;

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
            head_interval: DEFAULT_HEAD_INTERVAL,
        })
    }

    /// Sets the least time between two heads; zero signs every group commit.
    pub fn with_head_interval(mut self, interval: std::time::Duration) -> Signer {
        self.head_interval = interval;
        self
    }

    pub fn head_interval(&self) -> std::time::Duration {
        self.head_interval
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

    /// The newest head in the log: signed since it opened, or found in it when it opened.
    pub fn latest_head(&self) -> Option<SignedHead> {
        self.latest.lock().map_or_else(|e| e.into_inner().clone(), |h| h.clone())
    }

    /// Takes the newest head found in the log when it opens, which the next head follows.
    pub fn resume_after(&self, head: SignedHead) {
        let mut latest = self.latest.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if latest.as_ref().is_none_or(|current| current.last_seq() < head.last_seq()) {
            *latest = Some(head);
        }
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
    /// The head as JSON, made once for every receipt of the group.
    head_json: Vec<u8>,
}

impl SignedGroup {
    /// Signs the group whose leaves are `leaves`, first record `first_seq`, chain `chain`.
    pub fn sign(signer: &Signer, leaves: Vec<Digest>, first_seq: u64, chain: &Digest) -> SignedGroup {
        let tree = Tree::new(signer.hash, leaves);
        let identity = signer.identity();
        let now = u64::try_from(Utc::now().timestamp_millis()).unwrap_or_default();
        let mut latest = signer.latest.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let after = latest.as_ref().map_or(0, SignedHead::last_seq);
        let head = SignedHead::sign(
            &identity.key,
            &identity.fingerprint,
            &signer.log,
            first_seq,
            tree.size() as u64,
            Some(after),
            &tree.root(),
            chain,
            now,
        );
        *latest = Some(head.clone());
        drop(latest);
        let head_json = serde_json::to_vec(&head).unwrap_or_default();
        SignedGroup { head, tree, head_json }
    }

    /// The head line the log keeps after the group's records.
    pub fn head_line(&self) -> Vec<u8> {
        let mut line = Vec::with_capacity(self.head_json.len() + 10);
        line.extend_from_slice(b"{\"head\":");
        line.extend_from_slice(&self.head_json);
        line.push(b'}');
        line
    }

    /// The receipt of leaf `index` as [`SignedGroup::receipt`] makes it, already in its header
    /// form (base64url of its JSON), written directly: the head's JSON is made once per group,
    /// and the claims, already JSON, are not parsed again.
    pub fn encoded_receipt(&self, index: usize, claims: &[u8], nonce: &[u8]) -> Option<String> {
        use std::io::Write as _;
        let path = self.tree.path(index)?;
        let mut json = Vec::with_capacity(claims.len() + self.head_json.len() + 68 * path.len() + 96);
        write!(json, "{{\"v\":{},\"claims\":", tongban_evidence::receipt::RECEIPT_VERSION).ok()?;
        json.extend_from_slice(claims);
        json.extend_from_slice(b",\"nonce\":\"");
        json.extend_from_slice(hex::encode(nonce).as_bytes());
        write!(json, "\",\"index\":{index},\"path\":[").ok()?;
        let mut digest = [0u8; 64];
        for (n, node) in path.iter().enumerate() {
            if n > 0 {
                json.push(b',');
            }
            hex::encode_to_slice(node, &mut digest).ok()?;
            json.push(b'"');
            json.extend_from_slice(&digest);
            json.push(b'"');
        }
        json.extend_from_slice(b"],\"head\":");
        json.extend_from_slice(&self.head_json);
        json.push(b'}');
        Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json))
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

    /// The receipt written directly in its header form is the receipt the struct encodes, for
    /// every leaf of a group whose paths differ in length.
    #[test]
    fn a_receipt_written_directly_decodes_to_the_one_the_struct_makes() {
        let key = tongban_evidence::SigningKey::generate(tongban_evidence::Algorithm::Sm2Sm3).expect("key");
        let certificate =
            tongban_evidence::Certificate::self_signed(&key, "CN=t", std::time::Duration::from_secs(60))
                .expect("cert");
        let dir = tempfile::tempdir().expect("dir");
        let signer =
            Signer::new("henan", SigningIdentity::new(key, certificate).expect("identity"), dir.path())
                .expect("signer");
        let claims: Vec<Vec<u8>> = (0..5)
            .map(|n| {
                let mut record = ExchangeRecord::begin(Operation::Verify);
                record.rows = n;
                claims_of(&record)
            })
            .collect();
        let leaves = claims.iter().map(|c| signer.hash().leaf(c)).collect();
        let group = SignedGroup::sign(&signer, leaves, 7, &[3u8; 32]);
        for (index, claims) in claims.iter().enumerate() {
            let made = group.receipt(index, claims.clone(), b"nonce").expect("receipt");
            let written = group.encoded_receipt(index, claims, b"nonce").expect("receipt");
            assert_eq!(written, made.encode(), "the same bytes as serde writes");
            assert_eq!(Receipt::decode(&written).expect("decodes").encode(), written);
        }
        assert_eq!(
            group.head_line(),
            [b"{\"head\":".as_slice(), &serde_json::to_vec(&group.head).expect("json"), b"}"].concat()
        );
    }

    /// What the writer encodes from a record and what the audit encodes from its line are the
    /// same bytes, with every member filled in and with every optional one absent.
    #[test]
    fn claims_from_a_record_and_from_its_line_are_the_same_bytes() {
        let mut full = ExchangeRecord::with_every_member();
        // A code that needs escaping in JSON.
        full.code = Some("ok\"quoted\"");
        let empty = ExchangeRecord::begin(Operation::Verify);
        for record in [full, empty] {
            let line = serde_json::to_vec(&record).expect("json");
            assert_eq!(claims_of_line(&line), Some(claims_of(&record)));
        }
    }
}
