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
//!
//! Departments also register certificates through the API (`POST /api/v1/licences/seals`),
//! kept in the store: a document check passes those in force to [`Seals::check`] beside the
//! directory's.

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

    /// The certificates of the seals directory, by department.
    pub fn directory_certificates(&self) -> impl Iterator<Item = (&str, &Certificate)> {
        self.registered.iter().flat_map(|(department, certificates)| {
            certificates.iter().map(move |certificate| (department.as_str(), certificate))
        })
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
    /// and that it signs `document`'s canonical bytes. `registered` are the department's
    /// certificates registered through the API and in force, beside those of the directory.
    pub fn check(
        &self,
        department: &str,
        registered: &[Certificate],
        seal: &Seal,
        document: &LicenceDocument,
        now: u64,
    ) -> Result<(), SealError> {
        let der = STANDARD.decode(&seal.certificate).map_err(|_| SealError::Encoding("certificate"))?;
        let from_directory = self.registered.get(department).map(Vec::as_slice).unwrap_or_default();
        let certificate = from_directory
            .iter()
            .chain(registered)
            .filter(|_| seal.department == department)
            .find(|c| c.der() == der.as_slice())
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

/// The fingerprint of a seal's certificate, or an empty string when it cannot be read.
pub fn fingerprint(seal: &Seal) -> String {
    STANDARD
        .decode(&seal.certificate)
        .ok()
        .and_then(|der| Certificate::from_der(&der).ok())
        .map(|c| c.fingerprint())
        .unwrap_or_default()
}

/// Escapes `text` for HTML text and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A sealed licence as a page people read: the face with its labels, the issuer, the dates,
/// the verification code and the seal's department and certificate fingerprint. The sealed
/// document itself travels in the page as JSON (`<script type="application/json"
/// id="sealed-licence">`), so a printed or saved copy can still be checked by machine.
pub fn render_html(sealed: &SealedLicence) -> String {
    use std::fmt::Write;
    let document = &sealed.document;
    let licence_type = tongban_policy::licence::licence_type(&document.licence_type);
    let title = licence_type.map_or(document.licence_type.as_str(), |t| t.name);
    let fingerprint = fingerprint(&sealed.seal);
    // Every `<` in the embedded JSON (it can only be inside a string) is written as an escape,
    // so that no value can close the script element or open a comment.
    let embedded = serde_json::to_string(sealed).unwrap_or_default().replace('<', "\\u003c");
    let mut page = String::with_capacity(4096);
    let _ = write!(
        page,
        "<!doctype html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>body{{font-family:sans-serif;max-width:40em;margin:2em auto}}th{{text-align:left;padding-right:1em}}\
         .code{{font-family:monospace;font-size:1.4em;letter-spacing:.1em}}</style></head><body>\
         <h1>{title}</h1><p>证照编号 <b>{number}</b></p><table>",
        title = escape(title),
        number = escape(&document.number),
    );
    let mut row = |label: &str, value: &str| {
        let _ = write!(page, "<tr><th>{}</th><td>{}</td></tr>", escape(label), escape(value));
    };
    row("持证主体", &document.holder_name);
    row("持证主体代码", &document.holder);
    if let Some(licence_type) = licence_type {
        for item in licence_type.items {
            if let Some(value) = document.surface.get(item.name) {
                row(item.label, value);
            }
        }
    }
    row("发证机关", &document.issuer_name);
    row("发证日期", &document.issued_on.to_string());
    row("有效期至", &document.valid_until.map_or_else(|| "长期".to_owned(), |d| d.to_string()));
    let _ = writeln!(
        page,
        "</table><p>核验码 <span class=\"code\">{code}</span></p>\
         <p>电子印章：{department}（证书指纹 {fingerprint}），{algorithm}</p>\
         <p>本件可向用证部门出示，由其经共享交换平台在线核验。</p>\
         <script type=\"application/json\" id=\"sealed-licence\">{embedded}</script></body></html>",
        code = escape(&sealed.verification_code),
        department = escape(&sealed.seal.department),
        fingerprint = escape(&fingerprint),
        algorithm = escape(&sealed.seal.algorithm),
    );
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hostile value on a face can neither inject markup nor close the embedded document.
    #[test]
    fn the_rendering_escapes_every_value_and_keeps_the_document_whole() {
        let holder = tongban_policy::IdNumber::compose("410105", "1988-03-14".parse().expect("day"), 123);
        let hostile = "</script><script>alert(1)</script><!--";
        let document = LicenceDocument {
            licence_type: "housing_fund_certificate".into(),
            number: "410105400000042".into(),
            holder: holder.clone(),
            holder_name: hostile.into(),
            issuer: "11410100004101000X".into(),
            issuer_name: "郑州住房公积金管理中心".into(),
            issued_on: "2026-11-02".parse().expect("day"),
            valid_until: Some("2027-02-01".parse().expect("day")),
            surface: [("name", hostile), ("account_status", "正常")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        };
        let sealed = SealedLicence {
            verification_code: document.verification_code(),
            seal: Seal {
                algorithm: "sm2-sm3".into(),
                department: "<i>".into(),
                certificate: "not base64".into(),
                signature: String::new(),
            },
            document,
        };
        let page = render_html(&sealed);
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(!page.contains("<!--"), "{page}");
        assert!(!page.contains("<i>"));
        assert_eq!(page.matches("</script>").count(), 1, "only the embedded document's own end");
        let start = page.find("id=\"sealed-licence\">").expect("embedded") + "id=\"sealed-licence\">".len();
        let end = start + page[start..].find("</script>").expect("end");
        let embedded: SealedLicence =
            serde_json::from_str(&page[start..end]).expect("the document reads back");
        assert_eq!(embedded, sealed);
        assert!(page.contains("账户状态") && page.contains("2027-02-01"));
    }
}
