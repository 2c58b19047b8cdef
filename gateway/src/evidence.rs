//! The gateway's evidence: its signing identity (`[evidence]`), rotated without a restart;
//! the receipts its data calls are answered with (written by the log phase, see
//! `data::lifecycle`); the anchors peers countersign; and the commands that check receipts
//! and logs offline (`tongban receipt verify`, `tongban audit verify`). `docs/evidence.md`
//! describes what is signed, by whom, and the trust model.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tongban_evidence::{Algorithm, Certificate, Countersignature, Receipt, SigningIdentity, SigningKey};
use tongban_exchange::receipt::Signer;

/// Response header carrying a data call's receipt (base64url of its JSON).
pub const RECEIPT_HEADER: &str = "x-tongban-receipt";
/// Response header carrying, at the home gateway, the receipt the supplier's gateway gave for
/// a call passed on to it.
pub const PEER_RECEIPT_HEADER: &str = "x-tongban-peer-receipt";
/// Where countersignatures of this gateway's heads are kept, beside the log.
pub const ANCHORS_DIR: &str = "anchors";

/// `[evidence]`: the signing identity and what it signs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvidenceConfig {
    /// Whether data calls are answered with signed receipts and the log's groups signed.
    pub receipts: bool,
    /// The signing key (PKCS#8 PEM) and its X.509 certificate (PEM), relative to the
    /// configuration file's directory. Replacing both files rotates the key within
    /// `reload_secs`; the retired certificate is kept beside the log.
    pub key: PathBuf,
    pub certificate: PathBuf,
    /// Makes a self-signed key and certificate on first start when neither file exists (the
    /// demo, development). A deployment whose certificates its CA issues sets this to false,
    /// so that a missing file stops the gateway instead.
    pub generate: bool,
    /// The algorithm of a generated key: `sm2-sm3` (GM/T 0003 with SM3) or
    /// `ecdsa-p256-sha256`.
    pub algorithm: String,
    /// The name signed heads carry: the federation name when absent, else `tongban`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The least time between two signed heads, in milliseconds; zero (the default) signs
    /// every group commit. With an interval, one head covers every group committed in it, which
    /// bounds the signing rate (for a key in a hardware module), and a receipt waits up to this
    /// long past its record's durability.
    pub head_interval_ms: u64,
    /// Seconds between checks of the key files for a rotation.
    pub reload_secs: u64,
    /// Seconds between anchoring rounds: each peer countersigns the newest head, and a
    /// standalone gateway writes it to `export`.
    pub anchor_secs: u64,
    /// A file the newest signed head is written to every round (for example on storage
    /// another party keeps), for a gateway with no peers to countersign it; relative to the
    /// configuration file's directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub export: Option<PathBuf>,
    /// A URL the newest signed head is sent to (`POST`, the head as JSON) every round in which
    /// it changed: a witness another party runs. `http` or `https`; `https` checks the
    /// witness's certificate against `export_ca`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub export_url: Option<String>,
    /// The CA certificates (PEM) the witness's certificate must chain to, relative to the
    /// configuration file's directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub export_ca: Option<PathBuf>,
    /// The `Authorization` header sent to the witness, for example `Bearer …`; best given
    /// through `TONGBAN_EVIDENCE__EXPORT_CREDENTIAL` rather than the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub export_credential: Option<String>,
}

impl Default for EvidenceConfig {
    fn default() -> Self {
        EvidenceConfig {
            receipts: true,
            key: PathBuf::from("evidence/key.pem"),
            certificate: PathBuf::from("evidence/cert.pem"),
            generate: true,
            algorithm: Algorithm::Sm2Sm3.as_str().to_owned(),
            name: None,
            head_interval_ms: tongban_exchange::receipt::DEFAULT_HEAD_INTERVAL.as_millis() as u64,
            reload_secs: 10,
            anchor_secs: 300,
            export: None,
            export_url: None,
            export_ca: None,
            export_credential: None,
        }
    }
}

impl EvidenceConfig {
    pub fn algorithm(&self) -> anyhow::Result<Algorithm> {
        Algorithm::parse(&self.algorithm).with_context(|| {
            format!("evidence.algorithm = {:?}: use \"sm2-sm3\" or \"ecdsa-p256-sha256\"", self.algorithm)
        })
    }
}

/// Reads the signing identity from its files, making a self-signed one first when allowed and
/// neither file exists.
pub fn load_identity(
    config: &EvidenceConfig,
    base_dir: &Path,
    name: &str,
) -> anyhow::Result<SigningIdentity> {
    let key_path = base_dir.join(&config.key);
    let certificate_path = base_dir.join(&config.certificate);
    if config.generate && !key_path.exists() && !certificate_path.exists() {
        let algorithm = config.algorithm()?;
        let (key, certificate) = development_identity(algorithm, name)?;
        write_identity(&key, &certificate, &key_path, &certificate_path)?;
        tracing::warn!(
            key = %key_path.display(),
            certificate = %certificate_path.display(),
            fingerprint = %certificate.fingerprint(),
            "made a self-signed evidence key; a deployment whose CA issues its certificates configures its own"
        );
    }
    read_identity(&key_path, &certificate_path)
}

fn read_identity(key_path: &Path, certificate_path: &Path) -> anyhow::Result<SigningIdentity> {
    let key = std::fs::read_to_string(key_path)
        .with_context(|| format!("evidence.key: cannot read {}", key_path.display()))?;
    let certificate = std::fs::read_to_string(certificate_path)
        .with_context(|| format!("evidence.certificate: cannot read {}", certificate_path.display()))?;
    SigningIdentity::from_pem(&key, &certificate).map_err(|e| {
        anyhow::anyhow!("evidence: {} with {}: {e}", key_path.display(), certificate_path.display())
    })
}

/// A new key and a self-signed certificate for it, valid for two years.
pub fn development_identity(algorithm: Algorithm, name: &str) -> anyhow::Result<(SigningKey, Certificate)> {
    let key = SigningKey::generate(algorithm)?;
    let subject = format!("CN=tongban evidence {name},O=Tongban");
    let certificate = Certificate::self_signed(&key, &subject, Duration::from_secs(2 * 365 * 86_400))?;
    Ok((key, certificate))
}

/// Writes a key (readable by its owner only) and its certificate.
pub fn write_identity(
    key: &SigningKey,
    certificate: &Certificate,
    key_path: &Path,
    certificate_path: &Path,
) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    for path in [key_path, certificate_path] {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(key_path)
        .with_context(|| format!("writing {}", key_path.display()))?;
    file.write_all(key.to_pkcs8_pem()?.as_bytes())?;
    std::fs::write(certificate_path, certificate.to_pem()?)
        .with_context(|| format!("writing {}", certificate_path.display()))?;
    Ok(())
}

/// The log's signer for a configuration, when receipts are on.
pub fn open_signer(
    config: &EvidenceConfig,
    base_dir: &Path,
    name: &str,
    log_dir: &Path,
) -> anyhow::Result<Option<Arc<Signer>>> {
    if !config.receipts {
        return Ok(None);
    }
    let identity = load_identity(config, base_dir, name)?;
    tracing::info!(
        algorithm = identity.key.algorithm().as_str(),
        fingerprint = %identity.fingerprint,
        subject = %identity.certificate.subject(),
        "signing receipts"
    );
    let interval = std::time::Duration::from_millis(config.head_interval_ms);
    Ok(Some(Arc::new(Signer::new(name, identity, log_dir)?.with_head_interval(interval))))
}

/// Checks the key files every `reload_secs` and takes a new key and certificate once both
/// read and match; a pair that does not is reported and the current key kept.
pub fn watch_rotation(signer: Arc<Signer>, config: &EvidenceConfig, base_dir: &Path) {
    let key_path = base_dir.join(&config.key);
    let certificate_path = base_dir.join(&config.certificate);
    let every = Duration::from_secs(config.reload_secs.max(1));
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    tokio::spawn(async move {
        let mut seen = (modified(&key_path), modified(&certificate_path));
        let mut ticks = tokio::time::interval(every);
        loop {
            ticks.tick().await;
            let now = (modified(&key_path), modified(&certificate_path));
            if now == seen {
                continue;
            }
            match read_identity(&key_path, &certificate_path) {
                Ok(identity) => {
                    let fingerprint = identity.fingerprint.clone();
                    match signer.rotate(identity) {
                        Ok(true) => {
                            tracing::info!(%fingerprint, "evidence key rotated; the retired certificate is kept beside the log");
                        }
                        Ok(false) => {}
                        Err(e) => tracing::error!(error = %e, "the new evidence key is not taken"),
                    }
                    seen = now;
                }
                // Files replaced one after the other are read again on the next tick.
                Err(e) => tracing::warn!(error = %e, "the evidence key files do not make a pair yet"),
            }
        }
    });
}

/// Milliseconds since the epoch, as RFC 3339.
pub fn time_of_ms(ms: u64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(i64::try_from(ms).unwrap_or(i64::MAX))
        .map_or_else(|| ms.to_string(), |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// Every certificate in `paths`: PEM files (each may hold several) or directories of them.
pub fn read_certificates(paths: &[PathBuf]) -> anyhow::Result<Vec<Certificate>> {
    let mut certificates = Vec::new();
    for path in paths {
        let files: Vec<PathBuf> = if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "pem"))
                .collect();
            files.sort();
            files
        } else {
            vec![path.clone()]
        };
        for file in files {
            let pem =
                std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            certificates.extend(
                Certificate::all_from_pem(&pem).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?,
            );
        }
    }
    Ok(certificates)
}

/// What `tongban audit verify` was given besides the log.
#[derive(Debug, Default)]
pub struct AuditEvidence {
    pub certificates: Option<Vec<Certificate>>,
    pub anchor: Option<(Countersignature, Vec<Certificate>)>,
}

impl AuditEvidence {
    pub fn read(
        certs: &[PathBuf],
        anchor: Option<&Path>,
        peer_certs: &[PathBuf],
    ) -> anyhow::Result<AuditEvidence> {
        let certificates = if certs.is_empty() { None } else { Some(read_certificates(certs)?) };
        let anchor = match anchor {
            None => None,
            Some(path) => {
                let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
                let countersignature: Countersignature = serde_json::from_slice(&text)
                    .with_context(|| format!("{} is not a countersignature", path.display()))?;
                Some((countersignature, read_certificates(peer_certs)?))
            }
        };
        Ok(AuditEvidence { certificates, anchor })
    }
}

/// A countersignature kept beside the log, with the countersigning peer's certificate.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeptAnchor {
    pub countersignature: Countersignature,
    /// The peer's evidence certificate (PEM) as this gateway pinned it when it was received.
    pub certificate: String,
}

/// Keeps a peer's countersignature of one of this gateway's heads beside its log.
pub fn keep_anchor(log_dir: &Path, anchor: &KeptAnchor) -> std::io::Result<()> {
    keep_anchor_in(&log_dir.join(ANCHORS_DIR), anchor)
}

/// Keeps a countersignature in `dir`, named by the head's last record and the countersigner.
pub fn keep_anchor_in(dir: &Path, anchor: &KeptAnchor) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let name = format!("{:020}-{}.json", anchor.countersignature.head.last_seq(), anchor.countersignature.by);
    let temporary = dir.join(format!(".{name}.tmp"));
    std::fs::write(&temporary, serde_json::to_vec_pretty(anchor).map_err(std::io::Error::other)?)?;
    std::fs::rename(&temporary, dir.join(name))?;
    // The newest countersignature stands for everything before it, so only the newest few are
    // kept: a peer sending heads as fast as it can fills no disk.
    let mut kept: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    kept.sort();
    for old in kept.iter().rev().skip(KEPT_ANCHORS) {
        std::fs::remove_file(old)?;
    }
    Ok(())
}

/// How many countersignatures are kept in each directory of them.
const KEPT_ANCHORS: usize = 64;

/// The newest countersignature kept beside the log in `log_dir`, with its peer's certificate.
pub fn newest_kept_anchor(log_dir: &Path) -> anyhow::Result<Option<(Countersignature, Vec<Certificate>)>> {
    let dir = log_dir.join(ANCHORS_DIR);
    let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(None) };
    let newest = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .max();
    let Some(path) = newest else { return Ok(None) };
    let kept: KeptAnchor = serde_json::from_slice(&std::fs::read(&path)?)
        .with_context(|| format!("{} is not a kept anchor", path.display()))?;
    let certificate =
        Certificate::from_pem(&kept.certificate).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(Some((kept.countersignature, vec![certificate])))
}

/// `tongban receipt verify`.
#[allow(clippy::print_stdout)]
pub fn verify_receipt_files(
    receipt: &Path,
    body: &Path,
    certs: &[PathBuf],
    trust: &[PathBuf],
    request: Option<(String, String, PathBuf)>,
    json: bool,
) -> anyhow::Result<()> {
    let text = if receipt == Path::new("-") {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(receipt).with_context(|| format!("reading {}", receipt.display()))?
    };
    let text = text.trim();
    let receipt = if text.starts_with('{') {
        serde_json::from_str::<Receipt>(text).context("the receipt's JSON")?
    } else {
        Receipt::decode(text.strip_prefix("x-tongban-receipt:").unwrap_or(text).trim())?
    };
    let body = std::fs::read(body).with_context(|| format!("reading {}", body.display()))?;
    let certificates = read_certificates(certs)?;
    if !trust.is_empty() {
        let authorities = read_certificates(trust)?;
        let certificate = certificates
            .iter()
            .find(|c| c.fingerprint() == receipt.head.key)
            .with_context(|| format!("no certificate given has the signing key {}", receipt.head.key))?;
        let trusted = authorities.iter().any(|a| a == certificate || certificate.verify_issued_by(a).is_ok());
        anyhow::ensure!(
            trusted,
            "the certificate {} is not issued by a trusted authority",
            certificate.subject()
        );
    }
    let request_body = match &request {
        Some((_, _, path)) => {
            Some(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)
        }
        None => None,
    };
    let asked =
        request.as_ref().zip(request_body.as_deref()).map(|((m, t, _), b)| (m.as_str(), t.as_str(), b));
    let verified = receipt.verify(&body, asked, &certificates)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&verified)?);
    } else {
        println!(
            "receipt verified: exchange {} is record {} of {}'s log, signed at {} by key {}{}",
            verified.exchange_id.as_deref().unwrap_or("?"),
            verified.seq,
            verified.log,
            time_of_ms(verified.signed_at_ms),
            verified.key,
            if verified.request_checked { "; the request matches" } else { "" }
        );
    }
    Ok(())
}
