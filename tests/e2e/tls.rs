//! The listener over real TLS: systems authenticate by client certificate (mutual TLS) or by
//! API key; certificates from another CA and plain HTTP are refused.

use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};
use tongban_e2e::{Api, Demo};

const POLICE_SYSTEM: &str = "广东省公安厅跨省户籍业务系统";
const FUND_SYSTEM: &str = "广州公积金业务系统";

fn client(ca: &[u8], identity: Option<Vec<u8>>) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca)?);
    if let Some(pem) = identity {
        builder = builder.identity(reqwest::Identity::from_pem(&pem)?);
    }
    Ok(builder.build()?)
}

/// A file (`cert` or `key`) of a demo system's client certificate.
fn clients_file(demo: &Demo, system: &str, which: &str) -> anyhow::Result<String> {
    let clients: Vec<Value> =
        serde_json::from_slice(&std::fs::read(demo.data_dir().join("certs/clients.json"))?)?;
    let files =
        clients.iter().find(|c| c["name"] == system).with_context(|| format!("certificate of {system}"))?;
    Ok(files[which].as_str().context("file")?.to_owned())
}

/// The PEM certificate and key of a demo system's client certificate.
fn identity(demo: &Demo, system: &str) -> anyhow::Result<Vec<u8>> {
    let clients: Vec<Value> =
        serde_json::from_slice(&std::fs::read(demo.data_dir().join("certs/clients.json"))?)?;
    let files =
        clients.iter().find(|c| c["name"] == system).with_context(|| format!("certificate of {system}"))?;
    let mut pem = std::fs::read(files["cert"].as_str().context("cert")?)?;
    pem.extend(std::fs::read(files["key"].as_str().context("key")?)?);
    Ok(pem)
}

#[tokio::test]
async fn systems_authenticate_by_client_certificate_or_key_over_tls() -> anyhow::Result<()> {
    let demo = Demo::start_tls(2000).await?;
    let base = demo.gateway.base_url.clone();
    assert!(base.starts_with("https://"), "{base}");
    let ca = std::fs::read(demo.data_dir().join("certs/ca.pem"))?;

    // Ready, over TLS, with no client certificate.
    let anonymous = client(&ca, None)?;
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
    let police = Api::with_client(&base, None, client(&ca, Some(identity(&demo, POLICE_SYSTEM)?))?);
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
    let log = std::fs::read_to_string(demo.data_dir().join("exchange.jsonl"))?;
    let (police_id, _) = demo.system(POLICE_SYSTEM)?;
    assert!(log.lines().any(|l| l.contains(&police_id) && l.contains("\"status\":200")), "{log}");

    // A certificate and an API key of different systems contradict each other.
    let other_key = demo.credentials["systems"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] != POLICE_SYSTEM))
        .and_then(|s| s["api_key"].as_str())
        .context("another system's key")?
        .to_owned();
    let mixed =
        Api::with_client(&base, Some(other_key.clone()), client(&ca, Some(identity(&demo, POLICE_SYSTEM)?))?);
    let (status, body) = mixed.get("/grants/in-force").await?;
    assert_eq!((status, body["code"].as_str()), (401, Some("identity_mismatch")), "{body}");

    // API keys still work over TLS without a certificate.
    let keyed = Api::with_client(&base, Some(other_key), client(&ca, None)?);
    assert_eq!(keyed.get("/grants/in-force").await?.0, 200);
    // Without either, the call is unauthenticated.
    let (status, body) = Api::with_client(&base, None, client(&ca, None)?).get("/grants/in-force").await?;
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
    let impostor = client(&ca, Some(pem))?;
    assert!(
        impostor.get(format!("{base}/api/v1/grants/in-force")).send().await.is_err(),
        "a foreign certificate was accepted"
    );

    // The proxy over mutual TLS: the housing fund system reaches its supplier's API.
    let fund =
        Api::with_client(&base, None, client(&ca, Some(identity(&demo, FUND_SYSTEM)?))?).with_headers(&[
            ("x-tongban-service-item", "KSTB-JS-004"),
            ("x-tongban-case-number", "GZ-2026-000118"),
            ("x-tongban-operator", "0118"),
        ]);
    let file = std::fs::File::open(demo.data_dir().join("datasets/housing_fund.parquet"))?;
    let batch = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)?
        .build()?
        .next()
        .context("a batch")??;
    let ids = arrow::compute::cast(
        batch.column_by_name("id_number").context("ids")?,
        &arrow::datatypes::DataType::Utf8,
    )?;
    let id_number = arrow::array::AsArray::as_string::<i32>(&ids).value(0).to_owned();
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
    let admin = Api::with_client(&base, None, client(&ca, None)?);
    let admin = Api::sign_in_with(admin, "admin", &demo.password()).await?;
    let (police_id, _) = demo.system(POLICE_SYSTEM)?;
    let (fund_id, _) = demo.system(FUND_SYSTEM)?;
    let police_pem = String::from_utf8(std::fs::read(clients_file(&demo, POLICE_SYSTEM, "cert")?)?)?;
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
    let stranger = Api::sign_in_with(
        Api::with_client(&base, None, client(&ca, None)?),
        "demander.guangzhou-fund",
        &demo.password(),
    )
    .await?;
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
