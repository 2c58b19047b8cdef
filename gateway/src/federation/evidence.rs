//! Evidence between gateways: each gateway's evidence certificates (current and retired) for
//! its peers to check its signatures with; signed requests, checked on every data call a peer
//! passes on; and anchoring, in which a peer countersigns this gateway's newest signed head
//! and keeps a copy, so that this gateway's history before it cannot be rewritten unseen.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde::{Deserialize, Serialize};
use tongban_evidence::{Certificate, Countersignature, EvidenceError, SignedHead, SignedRequest};

use super::PeerIdentity;
use crate::data::forward::{PEER_DEPARTMENT_HEADER, PEER_SYSTEM_HEADER, REQUEST_SIGNATURE_HEADER};
use crate::data::{Asked, CASE_NUMBER_HEADER, OPERATOR_HEADER, SERVICE_ITEM_HEADER};
use crate::error::ApiError;
use crate::evidence::KeptAnchor;
use crate::peers::Peers;
use crate::state::AppState;

/// Where the countersignatures this gateway made of its peers' heads are kept, beside its log:
/// the copy an auditor of a peer asks for.
pub const PEER_ANCHORS_DIR: &str = "peer-anchors";
/// The longest signed request header taken.
const MAX_SIGNATURE_BYTES: usize = 4096;

/// A gateway's evidence certificates, as its peers fetch them.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct EvidenceCertificates {
    pub(crate) name: String,
    /// Every certificate that has signed this gateway's evidence, PEM.
    pub(crate) certificates: Vec<String>,
}

/// `GET /federation/v1/evidence`.
pub(super) async fn certificates(
    State(state): State<AppState>,
    _peer: PeerIdentity,
) -> Result<Json<EvidenceCertificates>, ApiError> {
    let log = &state.data().log;
    let signer = log.signer().ok_or_else(|| ApiError::not_found("this gateway signs no evidence"))?;
    let kept = tongban_exchange::receipt::kept_certificates(log.dir()).map_err(|e| ApiError::internal(&e))?;
    let certificates = kept.iter().filter_map(|c| c.to_pem().ok()).collect();
    Ok(Json(EvidenceCertificates { name: signer.log().to_owned(), certificates }))
}

/// Fetches a peer's evidence certificates and keeps them for checking its signatures.
pub(crate) async fn refresh_certificates(peers: &Peers, peer: &str) -> Result<Arc<Vec<Certificate>>, String> {
    let client = peers.get(peer).ok_or_else(|| format!("no peer {peer}"))?;
    let mut headers = HeaderMap::new();
    headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    let answer = client
        .call(Method::GET, "/federation/v1/evidence", headers, axum::body::Body::empty())
        .await
        .map_err(|e| e.to_string())?;
    if !answer.status.is_success() {
        return Err(format!("{peer} answered {} for its evidence certificates", answer.status));
    }
    let listed: EvidenceCertificates = serde_json::from_slice(&answer.body).map_err(|e| e.to_string())?;
    if listed.name != peer {
        return Err(format!("{peer} names its evidence {}", listed.name));
    }
    let certificates =
        listed.certificates.iter().map(|pem| Certificate::from_pem(pem)).collect::<Result<Vec<_>, _>>();
    let certificates = certificates.map_err(|e| e.to_string())?;
    peers.set_evidence_certificates(peer, certificates);
    Ok(peers.evidence_certificates(peer))
}

/// Checks `check` with the peer's certificates, fetching them again when the key is not among
/// those held (a peer that rotated its key), at most once in ten seconds per peer.
async fn with_peer_certificates(
    peers: &Peers,
    peer: &str,
    check: impl Fn(&[Certificate]) -> Result<(), EvidenceError>,
) -> Result<(), String> {
    match check(&peers.evidence_certificates(peer)) {
        Err(EvidenceError::UnknownKey(_)) if peers.may_fetch_evidence(peer) => {
            let fetched = refresh_certificates(peers, peer).await?;
            check(&fetched).map_err(|e| e.to_string())
        }
        other => other.map_err(|e| e.to_string()),
    }
}

/// The signed request a peer's data call carries, checked against what the call asks: by whom,
/// for what, exactly what, when, and never before. Answers the header as it came (for the
/// record, whatever the outcome) and the outcome.
pub(crate) async fn check_signed_request(
    state: &AppState,
    peer: &PeerIdentity,
    headers: &HeaderMap,
    asked: &Asked,
) -> (Option<String>, Result<(), ApiError>) {
    let Some(peers) = state.peers() else {
        return (None, Err(ApiError::internal(&"a peer's call on a gateway without peers")));
    };
    let refused = |code: &'static str, detail: String| {
        ApiError::new(StatusCode::FORBIDDEN, code, "Request signature refused", detail)
    };
    let Some(text) = headers.get(REQUEST_SIGNATURE_HEADER).and_then(|v| v.to_str().ok()) else {
        return if peers.config.require_signed_requests {
            (
                None,
                Err(refused(
                    "request_signature_missing",
                    format!("a call passed on by a peer carries {REQUEST_SIGNATURE_HEADER}"),
                )),
            )
        } else {
            (None, Ok(()))
        };
    };
    if text.len() > MAX_SIGNATURE_BYTES {
        return (None, Err(refused("request_signature_invalid", "the signed request is too long".into())));
    }
    let kept = Some(text.to_owned());
    let outcome = async {
        let invalid = |detail: String| refused("request_signature_invalid", detail);
        let signed = SignedRequest::decode(text).map_err(|e| invalid(e.to_string()))?;
        if signed.from != peer.name || signed.to != peers.config.name {
            return Err(invalid(format!(
                "signed by {} for {}, but sent by {} to {}",
                signed.from, signed.to, peer.name, peers.config.name
            )));
        }
        let now = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or_default();
        let skew = peers.config.max_skew_secs.saturating_mul(1000);
        if signed.at_ms.abs_diff(now) > skew {
            return Err(refused(
                "request_stale",
                format!(
                    "signed {} ms from this gateway's clock; at most {skew} ms are allowed",
                    signed.at_ms.abs_diff(now)
                ),
            ));
        }
        with_peer_certificates(peers, &peer.name, |certificates| signed.verify(certificates))
            .await
            .map_err(invalid)?;
        // What is signed is what is asked.
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default();
        // Purpose values are digested as the bytes they came as: an operator's name is not ASCII.
        let raw = |name: &str| headers.get(name).map_or(&b""[..], |v| v.as_bytes());
        let hash = signed.hash().map_err(|e| invalid(e.to_string()))?;
        let nonce = hex::decode(&signed.nonce).map_err(|_| invalid("the nonce is not hex".into()))?;
        let matches = signed.department == header(PEER_DEPARTMENT_HEADER)
            && signed.system == header(PEER_SYSTEM_HEADER)
            && signed.service_item == header(SERVICE_ITEM_HEADER)
            && signed.case_digest == SignedRequest::purpose_digest(hash, &nonce, raw(CASE_NUMBER_HEADER))
            && signed.operator_digest == SignedRequest::purpose_digest(hash, &nonce, raw(OPERATOR_HEADER))
            && Some(&signed.request_digest) == asked.signed_digest(hash, &nonce, signed.streamed).as_ref();
        if !matches {
            return Err(invalid(
                "the call is not the one signed: its caller, purpose or request differs".into(),
            ));
        }
        if !peers.fresh_nonce(&peer.name, &signed.nonce) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "request_replayed",
                "Request replayed",
                "this signed request was already received".to_owned(),
            ));
        }
        Ok(())
    }
    .await;
    (kept, outcome)
}

/// `POST /federation/v1/anchors`: a peer's newest signed head, countersigned here after its
/// signature is checked with the peer's certificates, and kept here as the peer's auditors'
/// copy. Answers the countersignature with this gateway's certificate.
pub(super) async fn countersign(
    State(state): State<AppState>,
    peer: PeerIdentity,
    body: Result<crate::error::ApiJson<SignedHead>, ApiError>,
) -> Result<Json<KeptAnchor>, ApiError> {
    let crate::error::ApiJson(head) = body?;
    let peers = state.peers().ok_or_else(|| ApiError::internal(&"anchoring without peers"))?;
    let log = &state.data().log;
    let signer = log.signer().ok_or_else(|| ApiError::not_found("this gateway signs no evidence"))?;
    let refused =
        |detail: String| ApiError::new(StatusCode::FORBIDDEN, "anchor_refused", "Anchor refused", detail);
    if head.log != peer.name {
        return Err(refused(format!("the head is of {}'s log, not of {}", head.log, peer.name)));
    }
    with_peer_certificates(peers, &peer.name, |certificates| head.verify(certificates))
        .await
        .map_err(refused)?;
    let identity = signer.identity();
    let now = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or_default();
    let countersignature =
        Countersignature::sign(&identity.key, &identity.fingerprint, signer.log(), head, now);
    let anchor = KeptAnchor {
        countersignature,
        certificate: identity.certificate.to_pem().map_err(|e| ApiError::internal(&e))?,
    };
    let dir = log.dir().join(PEER_ANCHORS_DIR).join(&peer.name);
    crate::evidence::keep_anchor_in(&dir, &anchor).map_err(|e| ApiError::internal(&e))?;
    Ok(Json(anchor))
}

/// Every `anchor_secs`, asks each peer to countersign this gateway's newest signed head (when
/// it changed) and keeps what comes back beside the log; with `export`, also writes the head
/// there, for a gateway with no peer to countersign it.
pub fn spawn_anchoring(state: AppState, config: crate::evidence::EvidenceConfig, witness: Option<Witness>) {
    let every = Duration::from_secs(config.anchor_secs.max(1));
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        let mut anchored: std::collections::HashMap<String, SignedHead> = Default::default();
        let mut witnessed: Option<SignedHead> = None;
        loop {
            ticks.tick().await;
            let log = &state.data().log;
            let Some(head) = log.signer().and_then(|s| s.latest_head()) else { continue };
            if let Some(path) = &config.export
                && let Err(e) = export_head(path, &head)
            {
                tracing::warn!(error = %e, path = %path.display(), "exporting the signed head failed; will retry");
            }
            if let Some(witness) = &witness
                && witnessed.as_ref() != Some(&head)
            {
                match witness.send(&head).await {
                    Ok(()) => witnessed = Some(head.clone()),
                    Err(e) => {
                        tracing::warn!(error = %e, url = %witness.url, "sending the signed head to the witness failed; will retry")
                    }
                }
            }
            let Some(peers) = state.peers() else { continue };
            for client in peers.all() {
                let name = client.config.name.clone();
                if anchored.get(&name) == Some(&head) {
                    continue;
                }
                match anchor_at(peers, &name, &head, log.dir()).await {
                    Ok(()) => {
                        anchored.insert(name, head.clone());
                    }
                    Err(e) => {
                        tracing::warn!(peer = %name, error = %e, "anchoring at the peer failed; will retry")
                    }
                }
            }
        }
    });
}

/// A witness's URL that a standalone gateway sends its newest signed head to, and the client
/// it is sent with.
#[derive(Debug)]
pub struct Witness {
    url: hyper::Uri,
    credential: Option<HeaderValue>,
    client: hyper_util::client::legacy::Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        http_body_util::Full<bytes::Bytes>,
    >,
}

impl Witness {
    /// The witness `config` names, if any; `base_dir` is the configuration file's directory.
    pub fn from_config(
        config: &crate::evidence::EvidenceConfig,
        base_dir: &std::path::Path,
    ) -> anyhow::Result<Option<Witness>> {
        use anyhow::Context as _;
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject as _;
        let Some(url) = &config.export_url else { return Ok(None) };
        let uri: hyper::Uri =
            url.parse().with_context(|| format!("evidence.export_url {url:?} is not a URL"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => anyhow::bail!("evidence.export_url {url:?}: use an http or https URL"),
        };
        let mut roots = rustls::RootCertStore::empty();
        match &config.export_ca {
            Some(ca) => {
                let path = base_dir.join(ca);
                for cert in CertificateDer::pem_file_iter(&path)
                    .with_context(|| format!("evidence.export_ca: reading {}", path.display()))?
                {
                    let cert =
                        cert.with_context(|| format!("evidence.export_ca: reading {}", path.display()))?;
                    roots
                        .add(cert)
                        .with_context(|| format!("{} is not a usable CA certificate", path.display()))?;
                }
            }
            None if https => {
                anyhow::bail!("evidence.export_url is https: give the witness's CA as evidence.export_ca")
            }
            None => {}
        }
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(connector);
        let credential = config
            .export_credential
            .as_deref()
            .map(|value| {
                let mut value = HeaderValue::try_from(value)
                    .context("evidence.export_credential is not a header value")?;
                value.set_sensitive(true);
                Ok::<_, anyhow::Error>(value)
            })
            .transpose()?;
        Ok(Some(Witness { url: uri, credential, client }))
    }

    /// Sends `head`; a witness answering anything but success has not taken it.
    async fn send(&self, head: &SignedHead) -> Result<(), String> {
        let body = serde_json::to_vec(head).map_err(|e| e.to_string())?;
        let mut request = hyper::Request::post(self.url.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        if let Some(credential) = &self.credential {
            request.headers_mut().insert(header::AUTHORIZATION, credential.clone());
        }
        let answer = tokio::time::timeout(Duration::from_secs(10), self.client.request(request))
            .await
            .map_err(|_| "the witness did not answer within 10 s".to_owned())?
            .map_err(|e| e.to_string())?;
        match answer.status() {
            status if status.is_success() => Ok(()),
            status => Err(format!("the witness answered {status}")),
        }
    }
}

fn export_head(path: &std::path::Path, head: &SignedHead) -> std::io::Result<()> {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, serde_json::to_vec_pretty(head).map_err(std::io::Error::other)?)?;
    std::fs::rename(&temporary, path)
}

/// Asks `peer` to countersign `head`, checks what it answers and keeps it.
pub(crate) async fn anchor_at(
    peers: &Peers,
    peer: &str,
    head: &SignedHead,
    log_dir: &std::path::Path,
) -> Result<(), String> {
    let client = peers.get(peer).ok_or_else(|| format!("no peer {peer}"))?;
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let body = serde_json::to_vec(head).map_err(|e| e.to_string())?;
    let answer = client
        .call(Method::POST, "/federation/v1/anchors", headers, body)
        .await
        .map_err(|e| e.to_string())?;
    if !answer.status.is_success() {
        return Err(format!("{peer} answered {}: {}", answer.status, String::from_utf8_lossy(&answer.body)));
    }
    let anchor: KeptAnchor = serde_json::from_slice(&answer.body).map_err(|e| e.to_string())?;
    if anchor.countersignature.head != *head || anchor.countersignature.by != peer {
        return Err(format!("{peer} countersigned something else"));
    }
    // The countersignature must be the peer's, by a certificate it lists for its evidence.
    with_peer_certificates(peers, peer, |certificates| anchor.countersignature.verify(certificates)).await?;
    crate::evidence::keep_anchor(log_dir, &anchor).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::Witness;
    use crate::evidence::EvidenceConfig;

    fn witness(url: &str, ca: Option<&str>, credential: Option<&str>) -> anyhow::Result<Option<Witness>> {
        let config = EvidenceConfig {
            export_url: Some(url.to_owned()),
            export_ca: ca.map(Into::into),
            export_credential: credential.map(str::to_owned),
            ..EvidenceConfig::default()
        };
        Witness::from_config(&config, std::path::Path::new("/nonexistent"))
    }

    /// A witness's URL is checked when the gateway starts, with a reason for each mistake.
    #[test]
    fn a_witness_is_refused_with_a_reason_when_its_settings_cannot_work() {
        assert!(
            Witness::from_config(&EvidenceConfig::default(), std::path::Path::new("."))
                .expect("none")
                .is_none()
        );
        assert!(witness("http://127.0.0.1:9/heads", None, Some("Bearer t")).expect("http").is_some());
        let reason = |e: anyhow::Error| format!("{e:#}");
        let refused = witness("ftp://witness/heads", None, None).map_err(reason).expect_err("ftp");
        assert!(refused.contains("http or https"), "{refused}");
        let refused = witness("https://witness/heads", None, None).map_err(reason).expect_err("no CA");
        assert!(refused.contains("export_ca"), "{refused}");
        let refused =
            witness("https://witness/heads", Some("ca.pem"), None).map_err(reason).expect_err("no file");
        assert!(refused.contains("ca.pem"), "{refused}");
        let refused =
            witness("http://witness/heads", None, Some("Bearer\nx")).map_err(reason).expect_err("header");
        assert!(refused.contains("export_credential"), "{refused}");
    }
}
