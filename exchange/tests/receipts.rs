//! A signing exchange log used as a library: receipts for records, signed heads the audit
//! checks, key rotation, and a peer's countersignature that a rewritten history contradicts.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tongban_evidence::{
    Algorithm, Certificate, Countersignature, EvidenceError, Receipt, SigningIdentity, SigningKey,
    request_digest, response_digest,
};
use tongban_exchange::audit::{self, Expectations, ProblemKind};
use tongban_exchange::receipt::Signer;
use tongban_exchange::wal::list_segments;
use tongban_exchange::{ExchangeLog, ExchangeLogConfig, ExchangeRecord, LogMetrics};
use tongban_policy::decision::Operation;

fn identity(algorithm: Algorithm, name: &str) -> SigningIdentity {
    let key = SigningKey::generate(algorithm).expect("key");
    let certificate =
        Certificate::self_signed(&key, &format!("CN={name},O=Tongban"), Duration::from_secs(86_400))
            .expect("cert");
    SigningIdentity::new(key, certificate).expect("identity")
}

async fn signed_log(dir: &Path, identity: SigningIdentity) -> (ExchangeLog, Arc<Signer>) {
    let signer = Arc::new(Signer::new("henan", identity, dir).expect("signer"));
    let config = ExchangeLogConfig { dir: dir.to_owned(), ..ExchangeLogConfig::default() };
    let log = ExchangeLog::open_signed(&config, LogMetrics::new(), Some(signer.clone())).await.expect("log");
    (log, signer)
}

/// Writes one answered call with `body` as its answer, as the gateway's log phase does, and
/// answers its receipt.
async fn answered(log: &ExchangeLog, body: &[u8], rows: u64) -> Receipt {
    let mut record = ExchangeRecord::begin(Operation::Verify);
    record.department = Some("11410000MB0000000X".into());
    record.system = Some("henan-social".into());
    record.resources = vec!["R-440000-household".into()];
    record.resource_versions = vec![2];
    record.grants = vec!["grant-1".into()];
    record.grant_versions = vec![1];
    record.status = 200;
    record.rows = rows;
    record.finished_at = Some(chrono::Utc::now());
    let nonce = log.nonce(&record.id);
    let hash = log.signer().expect("signing").hash();
    let body_digest = hash.digest(&[b"{}"]);
    record.request_digest =
        Some(hex::encode(request_digest(hash, &nonce, "POST", "/api/v1/data/verify", &body_digest)));
    record.response_digest = Some(hex::encode(response_digest(hash, &nonce, body)));
    log.write_receipted(record, &nonce).await.expect("written").expect("a signing log gives a receipt")
}

#[tokio::test]
async fn receipts_verify_with_their_body_for_both_algorithms_and_fail_on_any_change() {
    for algorithm in [Algorithm::Sm2Sm3, Algorithm::EcdsaP256Sha256] {
        let dir = tempfile::tempdir().expect("dir");
        let identity = identity(algorithm, "tongban henan");
        let certificate = identity.certificate.clone();
        let (log, _) = signed_log(dir.path(), identity).await;
        // Calls written together share a head; each has its own path.
        let bodies: Vec<Vec<u8>> =
            (0..7).map(|n| format!("{{\"match\":{}}}", n % 2 == 0).into_bytes()).collect();
        let receipts =
            futures::future::join_all(bodies.iter().enumerate().map(|(n, b)| answered(&log, b, n as u64)))
                .await;
        for (receipt, body) in receipts.iter().zip(&bodies) {
            let decoded = Receipt::decode(&receipt.encode()).expect("the header form decodes");
            let verified = decoded
                .verify(
                    body,
                    Some(("POST", "/api/v1/data/verify", b"{}")),
                    std::slice::from_ref(&certificate),
                )
                .unwrap_or_else(|e| panic!("{algorithm:?}: {e}"));
            assert!(verified.request_checked);
            assert_eq!(verified.log, "henan");
        }
        let (receipt, body) = (&receipts[3], &bodies[3]);
        let certs = std::slice::from_ref(&certificate);

        // One changed byte of the body.
        let mut changed = body.clone();
        changed[2] ^= 1;
        assert_eq!(receipt.verify(&changed, None, certs).err(), Some(EvidenceError::BodyMismatch));
        // Another request than the one asked.
        assert_eq!(
            receipt.verify(body, Some(("POST", "/api/v1/data/verify", b"{ }")), certs).err(),
            Some(EvidenceError::RequestMismatch)
        );
        // Each byte of the receipt's encoded form, changed in turn where it still decodes:
        // none of them passes.
        let encoded = serde_json::to_vec(receipt).expect("json");
        for at in 0..encoded.len() {
            let mut tampered = encoded.clone();
            tampered[at] = if tampered[at] == b'0' { b'1' } else { b'0' };
            if let Ok(tampered) = serde_json::from_slice::<Receipt>(&tampered) {
                assert!(
                    tampered.verify(body, None, certs).is_err(),
                    "{algorithm:?}: a receipt changed at byte {at} still verifies: {}",
                    String::from_utf8_lossy(&serde_json::to_vec(&tampered).expect("json"))
                );
            }
        }
        // Another certificate, even for the same name, does not stand for the gateway's key.
        let other = identity_certificate(algorithm);
        assert!(matches!(receipt.verify(body, None, &[other]), Err(EvidenceError::UnknownKey(_))));
        // One changed byte of the certificate: it no longer parses, or its key is another.
        let der = certificate.der().to_vec();
        let mut unparsed = 0;
        for at in 0..der.len() {
            let mut tampered = der.clone();
            tampered[at] ^= 0x01;
            match Certificate::from_der(&tampered) {
                Err(_) => unparsed += 1,
                Ok(tampered) => {
                    let verdict = receipt.verify(body, None, std::slice::from_ref(&tampered));
                    let self_signed = tampered.verify_issued_by(&tampered);
                    assert!(
                        verdict.is_err() || self_signed.is_err(),
                        "{algorithm:?}: a certificate changed at byte {at} passes both checks"
                    );
                }
            }
        }
        assert!(unparsed > 0);

        let report = audit::verify(dir.path()).expect("audit");
        assert!(report.intact(), "{report:?}");
        assert_eq!(report.signed_records, 7);
        assert_eq!(report.unsigned_records, 0);
        assert!(report.heads >= 1 && report.heads <= 7);
        assert_eq!(report.last_signed.as_ref().map(|s| s.seq), Some(7));
    }
}

fn now_ms() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp_millis()).expect("after 1970")
}

fn identity_certificate(algorithm: Algorithm) -> Certificate {
    identity(algorithm, "tongban henan").certificate
}

#[tokio::test]
async fn a_receipt_signed_by_a_retired_key_still_verifies_and_the_audit_checks_both_keys() {
    let dir = tempfile::tempdir().expect("dir");
    let first = identity(Algorithm::Sm2Sm3, "tongban henan 2026");
    let retired = first.certificate.clone();
    let (log, signer) = signed_log(dir.path(), first).await;
    let old = answered(&log, b"{\"match\":true}", 0).await;

    let second = identity(Algorithm::Sm2Sm3, "tongban henan 2027");
    let current = second.certificate.clone();
    assert!(signer.rotate(second).expect("rotated"), "a new key is taken");
    let new = answered(&log, b"{\"match\":false}", 1).await;
    assert_ne!(old.head.key, new.head.key);

    // The old receipt names the retired key, and verifies with the retired certificate.
    let both = [retired.clone(), current.clone()];
    old.verify(b"{\"match\":true}", None, &both).expect("the retired key's receipt holds");
    new.verify(b"{\"match\":false}", None, &both).expect("the current key's receipt holds");
    assert!(matches!(old.verify(b"{\"match\":true}", None, &[current]), Err(EvidenceError::UnknownKey(_))));

    // Both certificates are kept beside the log, so the audit checks heads of both keys.
    let report = audit::verify(dir.path()).expect("audit");
    assert!(report.intact(), "{report:?}");
    assert_eq!(report.heads, 2);
    // Changing the algorithm is refused while the log runs.
    assert!(signer.rotate(identity(Algorithm::EcdsaP256Sha256, "tongban henan")).is_err());
}

#[tokio::test]
async fn a_changed_last_record_is_caught_by_its_signed_head() {
    let dir = tempfile::tempdir().expect("dir");
    let (log, _) = signed_log(dir.path(), identity(Algorithm::Sm2Sm3, "tongban henan")).await;
    for n in 0..3 {
        answered(&log, b"{}", n).await;
    }
    drop(log);
    // The last record of the active segment has no successor to link to it; before heads,
    // changing it could not be told from the chain alone.
    let (_, path) = list_segments(dir.path()).expect("segments").pop().expect("a segment");
    let text = std::fs::read_to_string(&path).expect("segment");
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let last_record = lines.iter().rposition(|l| l.contains("\"seq\":3")).expect("record 3");
    lines[last_record] = lines[last_record].replace("\"status\":200", "\"status\":403");
    std::fs::write(&path, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).expect("write");
    let report = audit::verify(dir.path()).expect("audit");
    assert_eq!(report.problem.map(|p| p.kind), Some(ProblemKind::Modified { seq: 3 }));
}

#[tokio::test]
async fn a_history_rewritten_after_a_peers_countersignature_is_caught() {
    let dir = tempfile::tempdir().expect("dir");
    let identity_a = identity(Algorithm::Sm2Sm3, "tongban henan");
    let key_a = identity_a.clone();
    let (log, _) = signed_log(dir.path(), identity_a).await;
    let mut last = None;
    for n in 0..4 {
        last = Some(answered(&log, b"{\"match\":true}", n).await);
    }
    drop(log);
    // The peer countersigns the latest head it was sent.
    let peer = identity(Algorithm::Sm2Sm3, "tongban guangdong");
    let head = last.expect("a receipt").head;
    let countersignature = Countersignature::sign(&peer.key, &peer.fingerprint, "guangdong", head, now_ms());
    let anchor = Some((countersignature.clone(), vec![peer.certificate.clone()]));
    let expected = Expectations { anchor: anchor.clone(), ..Expectations::default() };
    let report = audit::verify_against(dir.path(), &expected).expect("audit");
    assert!(report.intact(), "{report:?}");
    assert_eq!(report.anchored.as_ref().map(|a| a.seq), Some(4));

    // The operator rewrites the whole log with the gateway's own key: every link, seal and
    // head is consistent again, and its own audit passes.
    std::fs::remove_dir_all(dir.path()).expect("remove");
    let (log, _) = signed_log(dir.path(), key_a).await;
    for n in 0..4 {
        answered(&log, b"{\"match\":false}", n + 100).await;
    }
    drop(log);
    assert!(audit::verify(dir.path()).expect("audit").intact(), "the rewrite is consistent on its own");
    let report = audit::verify_against(dir.path(), &expected).expect("audit");
    assert!(
        matches!(
            report.problem.as_ref().map(|p| &p.kind),
            Some(ProblemKind::AnchorContradicted { seq: 4, .. })
        ),
        "{report:?}"
    );

    // A countersignature whose bytes were changed is not taken as an anchor.
    let mut forged = countersignature;
    forged.by = "guangdonh".into();
    let forged = Expectations { anchor: Some((forged, vec![peer.certificate])), ..Expectations::default() };
    let report = audit::verify_against(dir.path(), &forged).expect("audit");
    assert!(matches!(report.problem.map(|p| p.kind), Some(ProblemKind::AnchorUnverified { .. })));
}
