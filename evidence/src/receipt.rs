//! Signed tree heads, receipts and countersignatures: the evidence a gateway hands out.
//!
//! A gateway signs once per group of records written together: a **signed tree head** over
//! the Merkle root of the group's receipt claims, the log's hash chain after the group, the
//! time and the signing key's fingerprint. Each call's **receipt** carries its claims (what
//! was asked, by whom, under which grant, with what outcome, and digests of the request and
//! of the answer), its position and inclusion path in the group's tree, and the signed head:
//! anyone holding the gateway's certificate checks it offline. A peer **countersigns** a
//! gateway's latest head, so that the gateway cannot later rewrite what came before it
//! without the peer's copy showing it.
//!
//! The digests of the request and the answer are salted with a per-exchange nonce that the
//! receipt carries and the log does not keep, so that the log's digests of a short answer
//! (match or no match) cannot be guessed back from it.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::cert::Certificate;
use crate::keys::{Algorithm, SigningKey, VerifyingKey};
use crate::merkle::{Digest, HashAlgorithm};

/// The receipt's format version.
pub const RECEIPT_VERSION: u32 = 1;

/// Why a piece of evidence does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceError {
    #[error("the evidence is malformed: {0}")]
    Malformed(String),
    #[error("no certificate given has the key {0} that signed the evidence")]
    UnknownKey(String),
    #[error("the certificate of key {0} was not valid when the evidence was signed")]
    CertificateNotValid(String),
    #[error("the signature does not match what it signs")]
    BadSignature,
    #[error("the receipt's claims are not in the signed tree at the position it names")]
    NotIncluded,
    #[error("the body is not the one the receipt was given with")]
    BodyMismatch,
    #[error("the request is not the one the receipt was given for")]
    RequestMismatch,
}

/// One signature over a group of records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedHead {
    /// The gateway whose log this is.
    pub log: String,
    /// The signature algorithm (`sm2-sm3` or `ecdsa-p256-sha256`); the tree's hash follows
    /// from it (SM3 or SHA-256).
    pub alg: String,
    /// The signing key's fingerprint: its certificate is found by it.
    pub key: String,
    /// The sequence number of the group's first record, and how many records it holds.
    pub first_seq: u64,
    pub size: u64,
    /// The last record the log's previous head covered (0 before the first): heads form a
    /// chain of their own, so that a head line removed from the log is missed by the next.
    /// Absent from heads of format 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    /// The Merkle root over the group's receipt claims, in hex.
    pub root: String,
    /// The log's hash chain after the group's last record, in hex: a signature over it stands
    /// for every record before it.
    pub chain: String,
    /// When it was signed, in milliseconds since the Unix epoch.
    pub signed_at_ms: u64,
    /// The DER signature, in base64url.
    pub signature: String,
}

impl SignedHead {
    /// Signs a head over a group.
    #[allow(clippy::too_many_arguments)]
    pub fn sign(
        key: &SigningKey,
        fingerprint: &str,
        log: &str,
        first_seq: u64,
        size: u64,
        after: Option<u64>,
        root: &Digest,
        chain: &Digest,
        signed_at_ms: u64,
    ) -> SignedHead {
        let mut head = SignedHead {
            log: log.to_owned(),
            alg: key.algorithm().as_str().to_owned(),
            key: fingerprint.to_owned(),
            first_seq,
            size,
            after,
            root: hex::encode(root),
            chain: hex::encode(chain),
            signed_at_ms,
            signature: String::new(),
        };
        head.signature = URL_SAFE_NO_PAD.encode(key.sign(head.signed_bytes().as_bytes()));
        head
    }

    /// The text the signature is made over: a line per field, so that anyone can rebuild it
    /// and check it with a tool of their own (`openssl pkeyutl -verify`).
    /// Format 2 adds the previous head's last record after the size.
    pub fn signed_bytes(&self) -> String {
        let (format, after) = match self.after {
            Some(after) => (2, format!("after {after}\n")),
            None => (1, String::new()),
        };
        format!(
            "tongban-signed-head/{format}\nlog {}\nalg {}\nkey {}\nfirst {}\nsize {}\n{after}root {}\nchain {}\nat {}\n",
            self.log, self.alg, self.key, self.first_seq, self.size, self.root, self.chain, self.signed_at_ms
        )
    }

    pub fn algorithm(&self) -> Result<Algorithm, EvidenceError> {
        Algorithm::parse(&self.alg).ok_or_else(|| EvidenceError::Malformed(format!("algorithm {}", self.alg)))
    }

    pub fn hash(&self) -> Result<HashAlgorithm, EvidenceError> {
        self.algorithm().map(HashAlgorithm::for_signatures)
    }

    /// The sequence number of the group's last record.
    pub fn last_seq(&self) -> u64 {
        (self.first_seq + self.size).saturating_sub(1)
    }

    pub fn root_digest(&self) -> Result<Digest, EvidenceError> {
        decode_digest(&self.root)
    }

    pub fn chain_digest(&self) -> Result<Digest, EvidenceError> {
        decode_digest(&self.chain)
    }

    /// Checks the signature with `key`, which must be the key the head names.
    pub fn verify_with(&self, key: &VerifyingKey) -> Result<(), EvidenceError> {
        if key.fingerprint() != self.key || key.algorithm() != self.algorithm()? {
            return Err(EvidenceError::UnknownKey(self.key.clone()));
        }
        check_signature(key, &self.alg, &self.signed_bytes(), &self.signature)
    }

    /// Checks the signature with whichever of `certificates` holds the head's key, and that
    /// the certificate was valid when the head was signed.
    pub fn verify(&self, certificates: &[Certificate]) -> Result<(), EvidenceError> {
        self.verify_with(certificate_for(certificates, &self.key, self.signed_at_ms)?.key())
    }
}

/// What a part of an exchange is digested as: the request the caller sent, or the body it got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Request,
    Response,
}

/// The salted digest of a request, as receipts bind it: the method, a space, the path and
/// query as sent, a line feed and the digest of the body (which a gateway computes as the body
/// streams past, without holding it).
pub fn request_digest(
    hash: HashAlgorithm,
    nonce: &[u8],
    method: &str,
    target: &str,
    body: &Digest,
) -> Digest {
    part_digest(hash, nonce, Part::Request, &[method.as_bytes(), b" ", target.as_bytes(), b"\n", body])
}

/// The salted digest of an answer body, as receipts bind it.
pub fn response_digest(hash: HashAlgorithm, nonce: &[u8], body: &[u8]) -> Digest {
    part_digest(hash, nonce, Part::Response, &[body])
}

/// The salted digest of a part of an exchange: the hash of the nonce, a byte naming the part,
/// and the bytes.
pub fn part_digest(hash: HashAlgorithm, nonce: &[u8], part: Part, bytes: &[&[u8]]) -> Digest {
    let mut hasher = hash.hasher();
    hasher.update(nonce);
    hasher.update(&[match part {
        Part::Request => 1,
        Part::Response => 2,
    }]);
    for piece in bytes {
        hasher.update(piece);
    }
    hasher.finalize()
}

/// The evidence of one exchange, handed to the caller with the answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    pub v: u32,
    /// The gateway's claims about the exchange, as the JSON object whose bytes are the leaf.
    pub claims: Box<RawValue>,
    /// The salt of the request and answer digests, in hex: kept by the caller, not the log.
    pub nonce: String,
    /// The claims' position in the group's tree, and the path from them to its root, in hex.
    pub index: u64,
    pub path: Vec<String>,
    pub head: SignedHead,
}

/// The members of the claims a verifier reads; the others are for the reader.
#[derive(Debug, Clone, Deserialize)]
struct ClaimedDigests {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    request_digest: Option<String>,
    #[serde(default)]
    response_digest: Option<String>,
}

/// What a verified receipt established.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verified {
    pub exchange_id: Option<String>,
    pub log: String,
    pub key: String,
    pub signed_at_ms: u64,
    /// The record's sequence number in the gateway's log.
    pub seq: u64,
    /// Whether a request was given and matched (a receipt for which none was given proves
    /// only the answer).
    pub request_checked: bool,
}

impl Receipt {
    /// The receipt as its header carries it: base64url of its JSON.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    pub fn decode(text: &str) -> Result<Receipt, EvidenceError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(text.trim().as_bytes())
            .map_err(|_| EvidenceError::Malformed("not base64url".into()))?;
        serde_json::from_slice(&bytes).map_err(|e| EvidenceError::Malformed(e.to_string()))
    }

    /// Checks the receipt offline: the head's signature by the certificate holding its key
    /// (valid when it signed), the claims' inclusion in the signed tree, and that `body` is the
    /// answer the claims name; when `request` is given (method, path and query, body), that
    /// it is the request they name.
    pub fn verify(
        &self,
        body: &[u8],
        request: Option<(&str, &str, &[u8])>,
        certificates: &[Certificate],
    ) -> Result<Verified, EvidenceError> {
        if self.v != RECEIPT_VERSION {
            return Err(EvidenceError::Malformed(format!("receipt version {}", self.v)));
        }
        self.head.verify(certificates)?;
        let hash = self.head.hash()?;
        let path = self.path.iter().map(|p| decode_digest(p)).collect::<Result<Vec<_>, _>>()?;
        let leaf = hash.leaf(self.claims.get().as_bytes());
        if !hash.verify_inclusion(&leaf, self.index, self.head.size, &path, &self.head.root_digest()?) {
            return Err(EvidenceError::NotIncluded);
        }
        let claimed: ClaimedDigests =
            serde_json::from_str(self.claims.get()).map_err(|e| EvidenceError::Malformed(e.to_string()))?;
        let nonce = hex::decode(&self.nonce).map_err(|_| EvidenceError::Malformed("nonce".into()))?;
        let answered = hex::encode(response_digest(hash, &nonce, body));
        if claimed.response_digest.as_deref() != Some(answered.as_str()) {
            return Err(EvidenceError::BodyMismatch);
        }
        if let Some((method, target, request_body)) = request {
            let asked =
                hex::encode(request_digest(hash, &nonce, method, target, &hash.digest(&[request_body])));
            if claimed.request_digest.as_deref() != Some(asked.as_str()) {
                return Err(EvidenceError::RequestMismatch);
            }
        }
        Ok(Verified {
            exchange_id: claimed.id,
            log: self.head.log.clone(),
            key: self.head.key.clone(),
            signed_at_ms: self.head.signed_at_ms,
            seq: self.head.first_seq + self.index,
            request_checked: request.is_some(),
        })
    }
}

/// A peer's signature over a gateway's signed head: the peer saw the head, and so every
/// record before it, at that time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Countersignature {
    pub head: SignedHead,
    /// The countersigning gateway, its algorithm and key.
    pub by: String,
    pub alg: String,
    pub key: String,
    pub signed_at_ms: u64,
    pub signature: String,
}

impl Countersignature {
    pub fn sign(
        key: &SigningKey,
        fingerprint: &str,
        by: &str,
        head: SignedHead,
        signed_at_ms: u64,
    ) -> Countersignature {
        let mut countersignature = Countersignature {
            head,
            by: by.to_owned(),
            alg: key.algorithm().as_str().to_owned(),
            key: fingerprint.to_owned(),
            signed_at_ms,
            signature: String::new(),
        };
        countersignature.signature =
            URL_SAFE_NO_PAD.encode(key.sign(countersignature.signed_bytes().as_bytes()));
        countersignature
    }

    /// The head's own signed text and signature, then the countersigner's lines.
    pub fn signed_bytes(&self) -> String {
        format!(
            "tongban-countersignature/1\n{}signature {}\nby {}\nalg {}\nkey {}\nat {}\n",
            self.head.signed_bytes(),
            self.head.signature,
            self.by,
            self.alg,
            self.key,
            self.signed_at_ms
        )
    }

    /// Checks the countersignature with whichever of `certificates` holds its key. The head's
    /// own signature is checked separately, with the log's certificates.
    pub fn verify(&self, certificates: &[Certificate]) -> Result<(), EvidenceError> {
        let certificate = certificate_for(certificates, &self.key, self.signed_at_ms)?;
        check_signature(certificate.key(), &self.alg, &self.signed_bytes(), &self.signature)
    }
}

/// The certificate among `certificates` holding the key with fingerprint `key`, which must
/// have been valid at `at_ms`.
fn certificate_for<'c>(
    certificates: &'c [Certificate],
    key: &str,
    at_ms: u64,
) -> Result<&'c Certificate, EvidenceError> {
    let certificate = certificates
        .iter()
        .find(|c| c.fingerprint() == key)
        .ok_or_else(|| EvidenceError::UnknownKey(key.to_owned()))?;
    if !certificate.valid_at(at_ms / 1000) {
        return Err(EvidenceError::CertificateNotValid(key.to_owned()));
    }
    Ok(certificate)
}

/// Checks a base64url DER `signature` over `text` by `key`, which must be of algorithm `alg`.
fn check_signature(key: &VerifyingKey, alg: &str, text: &str, signature: &str) -> Result<(), EvidenceError> {
    if Algorithm::parse(alg) != Some(key.algorithm()) {
        return Err(EvidenceError::BadSignature);
    }
    let signature =
        URL_SAFE_NO_PAD.decode(signature).map_err(|_| EvidenceError::Malformed("signature".into()))?;
    key.verify(text.as_bytes(), &signature).map_err(|_| EvidenceError::BadSignature)
}

pub fn decode_digest(text: &str) -> Result<Digest, EvidenceError> {
    let mut digest = [0u8; 32];
    hex::decode_to_slice(text, &mut digest)
        .map_err(|_| EvidenceError::Malformed(format!("digest {text}")))?;
    Ok(digest)
}

/// A home gateway's signature over a data call it passes on to a supplier's gateway: who it
/// asserts is calling, for what purpose, exactly what is asked, when, and a nonce the supplier
/// refuses to see twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedRequest {
    /// The home gateway that signs, and the supplier's gateway it is meant for.
    pub from: String,
    pub to: String,
    pub department: String,
    pub system: String,
    pub service_item: String,
    /// Salted digests of the case number and the operator, which travel as headers.
    pub case_digest: String,
    pub operator_digest: String,
    /// The request's salted digest ([`request_digest`]); a body streamed on to a supplier's
    /// own API is not in it (`streamed`), and the supplier's receipt binds it instead.
    pub request_digest: String,
    pub streamed: bool,
    pub at_ms: u64,
    pub nonce: String,
    pub alg: String,
    pub key: String,
    pub signature: String,
}

impl SignedRequest {
    /// The text the signature is made over.
    pub fn signed_bytes(&self) -> String {
        format!(
            "tongban-signed-request/1\nfrom {}\nto {}\ndepartment {}\nsystem {}\nservice_item {}\ncase {}\noperator {}\nrequest {}\nstreamed {}\nat {}\nnonce {}\nalg {}\nkey {}\n",
            self.from,
            self.to,
            self.department,
            self.system,
            self.service_item,
            self.case_digest,
            self.operator_digest,
            self.request_digest,
            self.streamed,
            self.at_ms,
            self.nonce,
            self.alg,
            self.key
        )
    }

    /// Signs the request with `key`, whose fingerprint is `fingerprint`.
    pub fn sign(mut self, key: &SigningKey, fingerprint: &str) -> SignedRequest {
        self.alg = key.algorithm().as_str().to_owned();
        self.key = fingerprint.to_owned();
        self.signature = URL_SAFE_NO_PAD.encode(key.sign(self.signed_bytes().as_bytes()));
        self
    }

    pub fn hash(&self) -> Result<HashAlgorithm, EvidenceError> {
        Algorithm::parse(&self.alg)
            .map(HashAlgorithm::for_signatures)
            .ok_or_else(|| EvidenceError::Malformed(format!("algorithm {}", self.alg)))
    }

    /// The salted digest of a purpose field (case number, operator) under the request's nonce.
    pub fn purpose_digest(hash: HashAlgorithm, nonce: &[u8], value: &[u8]) -> String {
        hex::encode(hash.digest(&[nonce, &[3], value]))
    }

    /// Checks the signature with whichever of `certificates` holds its key (valid at the time
    /// it names).
    pub fn verify(&self, certificates: &[Certificate]) -> Result<(), EvidenceError> {
        let certificate = certificate_for(certificates, &self.key, self.at_ms)?;
        check_signature(certificate.key(), &self.alg, &self.signed_bytes(), &self.signature)
    }

    /// The request as its header carries it: base64url of its JSON.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    pub fn decode(text: &str) -> Result<SignedRequest, EvidenceError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(text.trim().as_bytes())
            .map_err(|_| EvidenceError::Malformed("not base64url".into()))?;
        serde_json::from_slice(&bytes).map_err(|e| EvidenceError::Malformed(e.to_string()))
    }
}
