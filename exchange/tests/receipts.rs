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
    let encoded =
        log.write_receipted(record, &nonce).await.expect("written").expect("a signing log gives a receipt");
    Receipt::decode(&encoded).expect("the header form decodes")
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

async fn signed_log_every(dir: &Path, identity: SigningIdentity, interval: Duration) -> ExchangeLog {
    let signer = Arc::new(Signer::new("henan", identity, dir).expect("signer").with_head_interval(interval));
    let config = ExchangeLogConfig { dir: dir.to_owned(), ..ExchangeLogConfig::default() };
    ExchangeLog::open_signed(&config, LogMetrics::new(), Some(signer)).await.expect("log")
}

/// The head lines of the log in `dir`, in order.
fn heads(dir: &Path) -> Vec<tongban_evidence::SignedHead> {
    let mut heads = Vec::new();
    for (_, path) in list_segments(dir).expect("segments") {
        for line in std::fs::read(path).expect("segment").split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let value: serde_json::Value = serde_json::from_slice(line).expect("json line");
            if let Some(head) = value.get("head") {
                heads.push(serde_json::from_value(head.clone()).expect("a head"));
            }
        }
    }
    heads
}

/// With a head interval, the groups committed within it wait for one head: every call still
/// gets a receipt that verifies, each record is durable before it, and the audit holds.
#[tokio::test]
async fn one_head_covers_every_group_of_its_interval() {
    let dir = tempfile::tempdir().expect("dir");
    let identity = identity(Algorithm::Sm2Sm3, "tongban henan");
    let certificate = identity.certificate.clone();
    let log = signed_log_every(dir.path(), identity, Duration::from_millis(200)).await;
    // The first call after a quiet time is signed at once: its head covers it alone.
    let started = std::time::Instant::now();
    let first = answered(&log, b"{\"match\":true}", 0).await;
    assert!(started.elapsed() < Duration::from_millis(150), "the first head is not delayed");
    assert_eq!(first.head.size, 1);
    // Calls in waves inside the interval: several groups, one head.
    let mut calls = Vec::new();
    for wave in 0..4u64 {
        let log = log.clone();
        calls.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10 * wave)).await;
            let body = format!("{{\"wave\":{wave}}}").into_bytes();
            let receipt = answered(&log, &body, wave).await;
            (receipt, body)
        }));
    }
    let mut receipts = Vec::new();
    for call in calls {
        receipts.push(call.await.expect("call"));
    }
    for (receipt, body) in &receipts {
        receipt.verify(body, None, std::slice::from_ref(&certificate)).expect("verifies");
    }
    let covering: std::collections::BTreeSet<_> = receipts.iter().map(|(r, _)| r.head.first_seq).collect();
    assert_eq!(covering.len(), 1, "one head covers the four calls: {covering:?}");
    assert_eq!(receipts[0].0.head.size, 4);
    assert_eq!(heads(dir.path()).len(), 2);
    let report = audit::verify(dir.path()).expect("audit");
    assert!(report.intact(), "{report:?}");
    assert_eq!((report.heads, report.signed_records, report.unsigned_records), (2, 5, 0));
}

/// A crash after records were durable but before their head leaves them without one; the
/// next start signs them with its first write, so the log holds no unsigned record.
#[tokio::test]
async fn records_a_crash_left_without_their_head_are_signed_at_the_next_start() {
    let dir = tempfile::tempdir().expect("dir");
    let identity = identity(Algorithm::EcdsaP256Sha256, "tongban henan");
    let log = signed_log_every(dir.path(), identity.clone(), Duration::ZERO).await;
    answered(&log, b"{}", 1).await;
    drop(log);
    // The crash: records written as the writer writes them, and no head after them.
    tokio::time::sleep(Duration::from_millis(50)).await;
    {
        let options = tongban_exchange::wal::WalOptions {
            durability: tongban_exchange::Durability::Fsync,
            segment_max_bytes: 64 << 20,
            segment_max_age: Duration::from_secs(3600),
        };
        let mut wal = tongban_exchange::wal::Wal::open(dir.path(), options, LogMetrics::new()).expect("wal");
        let records: Vec<_> = (0..3).map(|_| ExchangeRecord::begin(Operation::Verify)).collect();
        wal.append_records(&records).expect("written");
    }
    let before = audit::verify(dir.path()).expect("audit");
    assert!(before.intact(), "{before:?}");
    assert_eq!(before.unsigned_records, 3);
    let log = signed_log_every(dir.path(), identity, Duration::ZERO).await;
    answered(&log, b"{}", 2).await;
    let report = audit::verify(dir.path()).expect("audit");
    assert!(report.intact(), "{report:?}");
    assert_eq!((report.signed_records, report.unsigned_records), (5, 0));
    // The head after the restart starts at the first record the crash left unsigned, alone or
    // with the call that came first.
    let recovered = &heads(dir.path())[1];
    assert_eq!(recovered.first_seq, 2);
    assert!(recovered.size >= 3);
}

/// A log kept without receipts that starts signing later: the earlier records stand under no
/// head and are counted as such, and the heads after them hold.
#[tokio::test]
async fn a_log_that_starts_signing_later_passes_its_audit() {
    let dir = tempfile::tempdir().expect("dir");
    let unsigned = ExchangeLog::open_in(dir.path()).await.expect("log");
    for _ in 0..4 {
        unsigned.write(ExchangeRecord::begin(Operation::Lookup)).await.expect("written");
    }
    drop(unsigned);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let identity = identity(Algorithm::Sm2Sm3, "tongban henan");
    let log = signed_log_every(dir.path(), identity, Duration::ZERO).await;
    answered(&log, b"{}", 1).await;
    answered(&log, b"{}", 2).await;
    let report = audit::verify(dir.path()).expect("audit");
    assert!(report.intact(), "{report:?}");
    assert_eq!((report.heads, report.signed_records, report.unsigned_records), (2, 2, 4));
}

/// Heads chain: a head line taken out of the open segment, where no seal counts its lines, is
/// caught by the head after it; taking out the last one leaves its records unsigned, as a
/// crash before the head would, and the caller's receipt still proves them.
#[tokio::test]
async fn a_head_line_removed_from_the_log_is_caught_by_the_next() {
    let dir = tempfile::tempdir().expect("dir");
    let identity = identity(Algorithm::Sm2Sm3, "tongban henan");
    let log = signed_log_every(dir.path(), identity, Duration::ZERO).await;
    for rows in 0..3 {
        answered(&log, b"{}", rows).await;
    }
    let written = heads(dir.path());
    assert_eq!(written.iter().map(|h| h.after).collect::<Vec<_>>(), [Some(0), Some(1), Some(2)]);
    drop(log);
    let (_, path) = list_segments(dir.path()).expect("segments").pop().expect("a segment");
    let text = std::fs::read_to_string(&path).expect("segment");
    let lines: Vec<&str> = text.lines().collect();
    let head_lines: Vec<usize> =
        lines.iter().enumerate().filter(|(_, l)| l.starts_with("{\"head\"")).map(|(i, _)| i).collect();
    let without = |index: usize| {
        let kept: Vec<&str> =
            lines.iter().enumerate().filter(|(i, _)| *i != index).map(|(_, l)| *l).collect();
        std::fs::write(&path, kept.join("\n") + "\n").expect("write");
    };
    without(head_lines[1]);
    let report = audit::verify(dir.path()).expect("audit");
    assert!(
        matches!(
            report.problem.as_ref().map(|p| &p.kind),
            Some(ProblemKind::SignedHeadRemoved { first_seq: 3, after: 2 })
        ),
        "{report:?}"
    );
    without(head_lines[2]);
    let report = audit::verify(dir.path()).expect("audit");
    assert!(report.intact(), "{report:?}");
    assert_eq!((report.heads, report.unsigned_records), (2, 1));
    std::fs::write(&path, &text).expect("restore");
    assert!(audit::verify(dir.path()).expect("audit").intact());
}

/// Records written without asking for a receipt are answered once durable, even while a head
/// interval holds their head back; when the log's last handle goes, the writer signs them
/// before it stops, so the log it leaves has no unsigned record.
#[tokio::test]
async fn records_waiting_for_their_head_are_signed_when_the_log_closes() {
    let dir = tempfile::tempdir().expect("dir");
    let identity = identity(Algorithm::Sm2Sm3, "tongban henan");
    let log = signed_log_every(dir.path(), identity, Duration::from_secs(60)).await;
    answered(&log, b"{}", 1).await;
    let started = std::time::Instant::now();
    for _ in 0..3 {
        log.write(ExchangeRecord::begin(Operation::Lookup)).await.expect("written");
    }
    assert!(started.elapsed() < Duration::from_secs(5), "unreceipted writes do not wait for the head");
    let before = audit::verify(dir.path()).expect("audit");
    assert_eq!(before.unsigned_records, 3, "their head is not due yet: {before:?}");
    drop(log);
    let mut report = audit::verify(dir.path()).expect("audit");
    for _ in 0..50 {
        if report.unsigned_records == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        report = audit::verify(dir.path()).expect("audit");
    }
    assert!(report.intact(), "{report:?}");
    assert_eq!((report.heads, report.signed_records, report.unsigned_records), (2, 4, 0));
}
