//! Evidence of exchanges that each side can check without trusting the other's operator.
//!
//! `keys` signs and verifies with SM2 over SM3 (the default, as government systems require)
//! or ECDSA P-256 over SHA-256, from the PEM files OpenSSL reads and writes. `cert` reads,
//! checks and (for development) makes the X.509 certificates that bind a gateway's key to its
//! name. `merkle` builds Certificate Transparency's trees over records, so that one signature
//! over a root stands for a whole group of records and each record carries its inclusion
//! path. `receipt` holds what is signed: tree heads, receipts and peers' countersignatures,
//! and checks them offline.
//!
//! *Boundary:* this crate knows nothing of HTTP, storage or the exchange log's format; it
//! signs and hashes bytes it is given.

pub mod cert;
pub mod keys;
pub mod merkle;
pub mod receipt;

pub use cert::{CertError, Certificate, SigningIdentity};
pub use keys::{Algorithm, KeyError, SM2_DISTINGUISHING_ID, SigningKey, VerifyingKey};
pub use merkle::{Digest, HashAlgorithm, Hasher, Tree};
pub use receipt::{
    Countersignature, EvidenceError, Part, Receipt, SignedHead, SignedRequest, Verified, part_digest,
    request_digest, response_digest,
};
