//! The listener over real TLS: systems authenticate by client certificate (mutual TLS) or by
//! API key; certificates from another CA and plain HTTP are refused.

use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};
use tongban_e2e::{Api, Demo};

const POLICE_SYSTEM: &str = "广东省公安厅跨省户籍业务系统";
const FUND_SYSTEM: &str = "广州公积金业务系统";

#[tokio::test]
async fn systems_authenticate_by_client_certificate_or_key_over_tls() -> anyhow::Result<()> {
    let demo = Demo::start_tls(2000).await?;
    let base = demo.gateway.base_url.clone();
    assert!(base.starts_with("https://"), "{base}");

    // Ready, over TLS, with no client certificate.
    let anonymous = demo.tls_client(None)?;
    let mut ready = false;
    for _ in 0..100 {
        if anonymous.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status() == 200) {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "the gateway did not become ready over TLS");

    // A client certificate alone identifies the system.
    let police = Api::with_client(&base, None, demo.tls_client(Some(POLICE_SYSTEM))?);
    let (status, grants) = police.get("/grants/in-force").await?;
    assert_eq!(status, 200, "{grants}");
    assert!(grants["items"].as_array().is_some_and(|g| !g.is_empty()), "{grants}");
    let purpose = [
        ("x-tongban-service-item", "KSTB-GA-001"),
        ("x-tongban-case-number", "GD-2026-000731"),
        ("x-tongban-operator", "0031"),
    ];
    let (status, body) = police
        .with_headers(&purpose)
        .post("/data/sql", &json!({"query": "SELECT count(*) AS n FROM household"}))
        .await?;
    assert_eq!(status, 200, "{body}");
    let records = demo.exchange_records()?;
    let (police_id, _) = demo.system(POLICE_SYSTEM)?;
    assert!(records.iter().any(|r| r["system"] == police_id.as_str() && r["status"] == 200), "{records:?}");

    // A certificate and an API key of different systems contradict each other.
    let other_key = demo.credentials["systems"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] != POLICE_SYSTEM))
        .and_then(|s| s["api_key"].as_str())
        .context("another system's key")?
        .to_owned();
    let mixed = Api::with_client(&base, Some(other_key.clone()), demo.tls_client(Some(POLICE_SYSTEM))?);
    let (status, body) = mixed.get("/grants/in-force").await?;
    assert_eq!((status, body["code"].as_str()), (401, Some("identity_mismatch")), "{body}");

    // API keys still work over TLS without a certificate.
    let keyed = Api::with_client(&base, Some(other_key), demo.tls_client(None)?);
    assert_eq!(keyed.get("/grants/in-force").await?.0, 200);
    // Without either, the call is unauthenticated.
    let (status, body) =
        Api::with_client(&base, None, demo.tls_client(None)?).get("/grants/in-force").await?;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthenticated")));

    // A certificate signed by another CA is refused in the handshake.
    let foreign = tempfile::tempdir()?;
    let out = foreign.path().to_str().context("utf-8")?;
    let made = std::process::Command::new(tongban_e2e::tongban_bin())
        .args(["certs", "--out", out, "--client", POLICE_SYSTEM])
        .output()?;
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let mut pem = std::fs::read(foreign.path().join("client-0.pem"))?;
    pem.extend(std::fs::read(foreign.path().join("client-0-key.pem"))?);
    let impostor = demo.tls_client_with_identity(Some(pem))?;
    assert!(
        impostor.get(format!("{base}/api/v1/grants/in-force")).send().await.is_err(),
        "a foreign certificate was accepted"
    );
    // The refused handshake is counted for operators.
    let (_, metrics) = demo.sign_in("operator").await?.get_root("/metrics").await?;
    let metrics = metrics.as_str().context("metrics text")?.to_owned();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("tongban_http_refused_total{outcome=\"tls_handshake\"}")
                && !l.ends_with(" 0")),
        "{metrics}"
    );

    // The proxy over mutual TLS: the housing fund system reaches its supplier's API.
    let fund = Api::with_client(&base, None, demo.tls_client(Some(FUND_SYSTEM))?).with_headers(&[
        ("x-tongban-service-item", "KSTB-JS-004"),
        ("x-tongban-case-number", "GZ-2026-000118"),
        ("x-tongban-operator", "0118"),
    ]);
    let id_number = demo.housing_fund_account()?;
    let deposit = fund
        .send(reqwest::Method::GET, &format!("/proxy/C03-340000-0001/deposits/{id_number}"), None, None)
        .await?;
    assert_eq!(deposit.status, 200, "{}", String::from_utf8_lossy(&deposit.body));
    let deposit: Value = serde_json::from_slice(&deposit.body)?;
    assert!(
        deposit["data"]["account_status"].is_string() && deposit["data"]["id_number"] != id_number.as_str()
    );

    // Certificates are registered through the API. A certificate already held by another
    // system is refused; moving the police system to a new certificate makes its old one,
    // though issued by the trusted CA, unknown.
    let admin = demo.sign_in("admin").await?;
    let (police_id, _) = demo.system(POLICE_SYSTEM)?;
    let (fund_id, _) = demo.system(FUND_SYSTEM)?;
    let police_pem = std::fs::read_to_string(demo.client_certificate(POLICE_SYSTEM)?.0)?;
    let (status, body) =
        admin.put(&format!("/systems/{fund_id}/certificate"), &json!({"certificate": police_pem})).await?;
    assert_eq!((status, body["code"].as_str()), (409, Some("certificate_in_use")), "{body}");
    let (status, body) = admin
        .put(&format!("/systems/{fund_id}/certificate"), &json!({"certificate": "not a certificate"}))
        .await?;
    assert_eq!((status, body["code"].as_str()), (422, Some("invalid_certificate")), "{body}");
    let other_pem = std::fs::read_to_string(foreign.path().join("client-0.pem"))?;
    let (status, body) =
        admin.put(&format!("/systems/{police_id}/certificate"), &json!({"certificate": other_pem})).await?;
    assert_eq!(status, 200, "{body}");
    let (status, body) = police.get("/grants/in-force").await?;
    assert_eq!((status, body["code"].as_str()), (401, Some("unknown_certificate")), "{body}");
    let (status, body) =
        admin.put(&format!("/systems/{police_id}/certificate"), &json!({"certificate": police_pem})).await?;
    assert_eq!((status, body["sha256"].as_str().map(str::len)), (200, Some(64)), "{body}");
    assert_eq!(police.get("/grants/in-force").await?.0, 200);
    // Someone of another department may not touch the police system's certificate.
    let stranger = demo.sign_in("demander.guangzhou-fund").await?;
    let (status, _) = stranger
        .put(&format!("/systems/{police_id}/certificate"), &json!({"certificate": police_pem}))
        .await?;
    assert_eq!(status, 403);

    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = base.replacen("https://", "http://", 1);
    let answer = reqwest::Client::new().get(format!("{plain}/healthz")).send().await;
    assert!(answer.is_err() || answer.is_ok_and(|r| r.status() != 200), "plain HTTP was served");
    Ok(())
}
