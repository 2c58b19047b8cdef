//! Issuers' seals (电子印章) on licence documents: each issuing department's SM2 key and its
//! certificate, registered per department, and the sealing and checking of documents.
//!
//! A seal signs a licence's canonical content (`policy::licence::LicenceDocument::canonical_bytes`)
//! with the key of the department that supplies the licence type's register. A document
//! carries its seal's certificate, and a check accepts it only when that certificate is one
//! registered for the department: a key of anyone else, however well formed its signature,
//! is no seal.
//!
//! The keys and certificates live in `data.seals.dir`, two files per department named by its
//! unified social credit code: `<code>.key.pem` (readable by its owner only; present only on the
//! gateway that issues for the department) and `<code>.cert.pem`. A department's registered
//! certificates are every certificate in its `.cert.pem`, so a rotated key's documents keep
//! checking while its certificate stays in the file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use tongban_evidence::{Algorithm, Certificate, SigningIdentity, SigningKey};
use tongban_policy::licence::LicenceDocument;

/// Where seals are kept (`[data.seals]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SealsConfig {
    /// The directory of the departments' seal keys and certificates, relative to the
    /// configuration file.
    pub dir: PathBuf,
    /// Makes a self-signed seal for each department that supplies a licence register and has
    /// none: for development and the demo. A deployment registers certificates its CA issued.
    pub generate: bool,
}

impl Default for SealsConfig {
    fn default() -> Self {
        SealsConfig { dir: PathBuf::from("seals"), generate: false }
    }
}

/// A seal on a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Seal {
    /// `sm2-sm3` (GM/T 0003 over SM3 with the default identifier) or `ecdsa-p256-sha256`.
    pub algorithm: String,
    /// The unified social credit code of the department whose seal it is.
    pub department: String,
    /// The seal's certificate, DER in standard base64.
    pub certificate: String,
    /// The signature over the document's canonical bytes, DER in standard base64.
    pub signature: String,
}

/// A sealed licence document: the content, its seal, and the verification code printed on a
/// readable copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SealedLicence {
    pub document: LicenceDocument,
    pub seal: Seal,
    pub verification_code: String,
}

/// What a seal check found wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the seal is not one of department {0}'s registered seals")]
    UnregisteredCertificate(String),
    #[error("the seal's certificate is outside its validity")]
    CertificateExpired,
    #[error("the seal's algorithm {0} is not its certificate's")]
    Algorithm(String),
    #[error("the seal's {0} is not base64")]
    Encoding(&'static str),
    #[error("the seal does not verify over the document")]
    Signature,
}

/// Every department's seals this gateway knows: its own keys, and the registered certificates.
#[derive(Default)]
pub struct Seals {
    own: HashMap<String, SigningIdentity>,
    registered: HashMap<String, Vec<Certificate>>,
}

impl std::fmt::Debug for Seals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seals")
            .field("own", &self.own.keys().collect::<Vec<_>>())
            .field("registered", &self.registered.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn key_file(dir: &Path, department: &str) -> PathBuf {
    dir.join(format!("{department}.key.pem"))
}

fn certificate_file(dir: &Path, department: &str) -> PathBuf {
    dir.join(format!("{department}.cert.pem"))
}

impl Seals {
    /// Reads every department's seal from the configured directory, first making a
    /// self-signed one for each department in `issuers` that has none when `generate` is set.
    pub fn load(config: &SealsConfig, base_dir: &Path, issuers: &[String]) -> anyhow::Result<Seals> {
        let dir = base_dir.join(&config.dir);
        if config.generate {
            for department in issuers {
                let (key_path, certificate_path) =
                    (key_file(&dir, department), certificate_file(&dir, department));
                if key_path.exists() || certificate_path.exists() {
                    continue;
                }
                let key = SigningKey::generate(Algorithm::Sm2Sm3)?;
                let subject = format!("CN=tongban seal {department},O=Tongban");
                let certificate =
                    Certificate::self_signed(&key, &subject, Duration::from_secs(5 * 365 * 86_400))?;
                crate::evidence::write_identity(&key, &certificate, &key_path, &certificate_path)?;
                tracing::warn!(department = %department, fingerprint = %certificate.fingerprint(),
                    "made a self-signed seal; a deployment registers the certificate its CA issued");
            }
        }
        let mut seals = Seals::default();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(seals),
            Err(e) => return Err(e).with_context(|| format!("data.seals.dir: {}", dir.display())),
        };
        for entry in entries {
            let path = entry?.path();
            let Some(department) =
                path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".cert.pem"))
            else {
                continue;
            };
            let pem =
                std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let certificates =
                Certificate::all_from_pem(&pem).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            let key_path = key_file(&dir, department);
            if key_path.exists() {
                let key = std::fs::read_to_string(&key_path)
                    .with_context(|| format!("reading {}", key_path.display()))?;
                // The newest certificate, first in the file, is the one the key signs under.
                let first = certificates
                    .first()
                    .with_context(|| format!("{} holds no certificate", path.display()))?;
                let identity = SigningIdentity::from_pem(&key, &first.to_pem()?)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", key_path.display()))?;
                seals.own.insert(department.to_owned(), identity);
            }
            seals.registered.insert(department.to_owned(), certificates);
        }
        Ok(seals)
    }

    /// Whether this gateway holds `department`'s seal key.
    pub fn can_seal(&self, department: &str) -> bool {
        self.own.contains_key(department)
    }

    /// Seals `document` as `department`.
    pub fn seal(&self, department: &str, document: LicenceDocument) -> Option<SealedLicence> {
        let identity = self.own.get(department)?;
        let signature = identity.key.sign(&document.canonical_bytes());
        Some(SealedLicence {
            verification_code: document.verification_code(),
            seal: Seal {
                algorithm: identity.key.algorithm().as_str().to_owned(),
                department: department.to_owned(),
                certificate: STANDARD.encode(identity.certificate.der()),
                signature: STANDARD.encode(signature),
            },
            document,
        })
    }

    /// Checks that `seal` is `department`'s registered seal, valid at `now` (Unix seconds),
    /// and that it signs `document`'s canonical bytes.
    pub fn check(
        &self,
        department: &str,
        seal: &Seal,
        document: &LicenceDocument,
        now: u64,
    ) -> Result<(), SealError> {
        let der = STANDARD.decode(&seal.certificate).map_err(|_| SealError::Encoding("certificate"))?;
        let certificate = self
            .registered
            .get(department)
            .filter(|_| seal.department == department)
            .and_then(|registered| registered.iter().find(|c| c.der() == der.as_slice()))
            .ok_or_else(|| SealError::UnregisteredCertificate(department.to_owned()))?;
        if !certificate.valid_at(now) {
            return Err(SealError::CertificateExpired);
        }
        if certificate.key().algorithm().as_str() != seal.algorithm {
            return Err(SealError::Algorithm(seal.algorithm.clone()));
        }
        let signature = STANDARD.decode(&seal.signature).map_err(|_| SealError::Encoding("signature"))?;
        certificate.key().verify(&document.canonical_bytes(), &signature).map_err(|_| SealError::Signature)
    }
}
