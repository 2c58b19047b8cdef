//! Receipts as callers get them: every data-plane answer, refusals included, carries one that
//! `tongban receipt verify` checks offline with the body and the gateway's certificate; one
//! changed byte fails; a key rotated without a restart leaves the old receipts verifiable
//! with the retired certificate, which the log keeps; `tongban audit verify` checks every
//! signed head.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use tongban_e2e::{Demo, tongban_bin};

const POLICE_SYSTEM: &str = "广东省公安厅跨省户籍业务系统";
const HOUSEHOLD: &str = "A01-410000-0001";

fn with_purpose(system: &tongban_e2e::Api) -> tongban_e2e::Api {
    system.with_headers(&[
        ("x-tongban-service-item", "KSTB-GA-001"),
        ("x-tongban-case-number", "GD-2026-000731"),
        ("x-tongban-operator", "警员0031"),
    ])
}

/// Runs `tongban receipt verify` over a receipt and a body written to files in `dir`.
pub(crate) fn verify_receipt(
    dir: &Path,
    receipt: &str,
    body: &[u8],
    certs: &[&Path],
    request: Option<(&str, &str, &[u8])>,
) -> anyhow::Result<std::process::Output> {
    std::fs::write(dir.join("receipt.txt"), receipt)?;
    std::fs::write(dir.join("body"), body)?;
    let mut command = std::process::Command::new(tongban_bin());
    command.args(["receipt", "verify", "--json", "--receipt"]).arg(dir.join("receipt.txt"));
    command.arg("--body").arg(dir.join("body"));
    for cert in certs {
        command.arg("--cert").arg(cert);
    }
    if let Some((method, target, request_body)) = request {
        std::fs::write(dir.join("request"), request_body)?;
        command.args(["--method", method, "--target", target, "--request-body"]).arg(dir.join("request"));
    }
    Ok(command.output()?)
}

#[tokio::test]
async fn every_answer_carries_a_receipt_that_verifies_offline_and_survives_a_key_rotation()
-> anyhow::Result<()> {
    let work = tempfile::tempdir()?;
    let exported = work.path().join("witness/head.json");
    std::fs::create_dir_all(work.path().join("witness"))?;
    // A witness another party runs, which keeps the heads sent to it with their credential.
    let (witness_url, witnessed) = witness().await?;
    let demo = Demo::start_with(
        2000,
        &[
            ("TONGBAN_EVIDENCE__RELOAD_SECS", "1"),
            ("TONGBAN_EVIDENCE__ANCHOR_SECS", "1"),
            ("TONGBAN_EVIDENCE__EXPORT", exported.to_str().context("utf-8")?),
            ("TONGBAN_EVIDENCE__EXPORT_URL", witness_url.as_str()),
            ("TONGBAN_EVIDENCE__EXPORT_CREDENTIAL", "Bearer witness-token"),
        ],
    )
    .await?;
    let (_, system) = demo.system(POLICE_SYSTEM)?;
    let police = with_purpose(&system);
    let certificate = demo.data_dir().join("evidence/cert.pem");

    // An answered verification: its receipt verifies with its body, and with the request.
    let request = json!({"resource": HOUSEHOLD, "key": "11010519491231002X", "claims": {"name": "张三"}});
    let request_bytes = serde_json::to_vec(&request)?;
    let answer = police.send(reqwest::Method::POST, "/data/verify", Some(&request), None).await?;
    assert_eq!(answer.status, 200);
    let receipt = answer.header("x-tongban-receipt").context("a receipt")?;
    let output = verify_receipt(
        work.path(),
        &receipt,
        &answer.body,
        &[&certificate],
        Some(("POST", "/api/v1/data/verify", &request_bytes)),
    )?;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let verified: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(verified["exchange_id"].as_str(), answer.header("x-tongban-exchange-id").as_deref());
    assert_eq!(verified["request_checked"], json!(true));

    // One changed byte of the body, of the receipt or of the certificate: each fails.
    let mut body = answer.body.clone();
    body[1] ^= 0x01;
    let output = verify_receipt(work.path(), &receipt, &body, &[&certificate], None)?;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("body"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let decoded: serde_json::Value = serde_json::from_slice(&base64_decode(&receipt)?)?;
    let mut tampered = decoded.clone();
    tampered["head"]["signed_at_ms"] = json!(decoded["head"]["signed_at_ms"].as_u64().context("time")? + 1);
    let output = verify_receipt(work.path(), &tampered.to_string(), &answer.body, &[&certificate], None)?;
    assert_eq!(output.status.code(), Some(1), "a receipt with a changed time verifies");
    let pem = std::fs::read_to_string(&certificate)?;
    let mut lines: Vec<String> = pem.lines().map(str::to_owned).collect();
    let middle = lines.len() / 2;
    let changed = if lines[middle].starts_with('A') { "B" } else { "A" };
    lines[middle].replace_range(0..1, changed);
    let forged = work.path().join("forged.pem");
    std::fs::write(&forged, lines.join("\n") + "\n")?;
    let output = verify_receipt(work.path(), &receipt, &answer.body, &[&forged], None)?;
    assert_eq!(output.status.code(), Some(1), "a receipt verifies with a changed certificate");

    // A refusal has its receipt too, over the problem document it was answered with.
    let refused = system.send(reqwest::Method::POST, "/data/verify", Some(&request), None).await?;
    assert_eq!(refused.status, 400, "no purpose");
    let refusal_receipt = refused.header("x-tongban-receipt").context("a refusal's receipt")?;
    let output = verify_receipt(work.path(), &refusal_receipt, &refused.body, &[&certificate], None)?;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    // The key is rotated without a restart: new files, taken within a second or two.
    let issued = work.path().join("issued");
    let made = std::process::Command::new(tongban_bin())
        .args(["certs", "--evidence", "henan 2027", "--out"])
        .arg(&issued)
        .output()?;
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let retired = work.path().join("retired.pem");
    std::fs::copy(&certificate, &retired)?;
    std::fs::copy(issued.join("evidence-key.pem"), demo.data_dir().join("evidence/key.pem"))?;
    std::fs::copy(issued.join("evidence-cert.pem"), &certificate)?;
    let old_key = decoded["head"]["key"].as_str().context("key")?.to_owned();
    let mut rotated = None;
    for _ in 0..100 {
        let answer = police.send(reqwest::Method::POST, "/data/verify", Some(&request), None).await?;
        let receipt = answer.header("x-tongban-receipt").context("a receipt")?;
        let head: serde_json::Value = serde_json::from_slice(&base64_decode(&receipt)?)?;
        if head["head"]["key"] != json!(old_key) {
            rotated = Some((receipt, answer.body));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (new_receipt, new_body) = rotated.context("the new key is taken without a restart")?;
    let output = verify_receipt(work.path(), &new_receipt, &new_body, &[&certificate], None)?;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    // The receipt of the retired key: not with the new certificate, but with the retired
    // one, which the log keeps beside its segments.
    let output = verify_receipt(work.path(), &receipt, &answer.body, &[&certificate], None)?;
    assert_eq!(output.status.code(), Some(1));
    let kept = demo.data_dir().join("exchange/certs");
    let output = verify_receipt(work.path(), &receipt, &answer.body, &[&kept], None)?;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let output = verify_receipt(work.path(), &receipt, &answer.body, &[&retired], None)?;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    // A gateway with no peer exports its newest signed head for another party to keep: a head
    // of this log, signed by one of its keys.
    let mut head = None;
    for _ in 0..50 {
        if let Ok(bytes) = std::fs::read(&exported) {
            head = Some(serde_json::from_slice::<serde_json::Value>(&bytes)?);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let head = head.context("the newest head is exported")?;
    assert!(head["size"].as_u64().is_some_and(|n| n >= 1) && head["signature"].is_string(), "{head}");
    // And to the witness's URL, with the credential configured: heads of this log that verify
    // with its certificates.
    let mut sent = Vec::new();
    for _ in 0..50 {
        sent = witnessed.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
        if !sent.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (credential, body) = sent.first().context("the witness got the newest head")?;
    assert_eq!(credential.as_deref(), Some("Bearer witness-token"));
    let head: tongban_evidence::SignedHead = serde_json::from_slice(body)?;
    let certificates = [
        tongban_evidence::Certificate::from_pem(&std::fs::read_to_string(&retired)?)?,
        tongban_evidence::Certificate::from_pem(&std::fs::read_to_string(&certificate)?)?,
    ];
    head.verify(&certificates).map_err(|e| anyhow::anyhow!("the witnessed head: {e}"))?;

    // The audit checks every signed head, of both keys.
    let audit = std::process::Command::new(tongban_bin())
        .args(["audit", "verify", "--json", "--data-dir"])
        .arg(demo.data_dir())
        .output()?;
    assert!(audit.status.success(), "{}", String::from_utf8_lossy(&audit.stderr));
    let report: serde_json::Value = serde_json::from_slice(&audit.stdout)?;
    assert!(report["heads"].as_u64().context("heads")? >= 3, "{report}");
    assert_eq!(report["unsigned_records"], json!(0), "{report}");
    Ok(())
}

/// The heads a witness was sent, each with the `Authorization` header it came with.
type Witnessed = std::sync::Arc<std::sync::Mutex<Vec<(Option<String>, Vec<u8>)>>>;

/// A witness on loopback that keeps every head posted to `/heads`; answers its URL.
async fn witness() -> anyhow::Result<(String, Witnessed)> {
    let kept = Witnessed::default();
    let app = axum::Router::new().route(
        "/heads",
        axum::routing::post({
            let kept = kept.clone();
            move |headers: axum::http::HeaderMap, body: bytes::Bytes| {
                let kept = kept.clone();
                async move {
                    let credential =
                        headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
                    if let Ok(mut kept) = kept.lock() {
                        kept.push((credential, body.to_vec()));
                    }
                    axum::http::StatusCode::NO_CONTENT
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((format!("http://{address}/heads"), kept))
}

/// A receipt header's JSON (base64url without padding).
fn base64_decode(text: &str) -> anyhow::Result<Vec<u8>> {
    use base64::Engine as _;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text.trim())?)
}
