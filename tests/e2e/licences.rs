//! Licence checks (证照核验) end to end: a demand for a licence register approved through the
//! workflow, then checks by number and holder that say valid, revoked or expired, with the
//! granted face items masked, every call recorded, and nothing said of a number whose holder
//! is not the one named.

use anyhow::Context;
use arrow::array::{Array, AsArray};
use arrow::datatypes::Date32Type;
use chrono::NaiveDate;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Value, json};
use tongban_e2e::{Api, Demo, act, terms};
use tongban_evidence::{Algorithm, Certificate, SigningKey};
use tongban_policy::licence::LicenceDocument;

const CERTIFICATES: &str = "E04-340000-0001";
const SYSTEM: &str = "广东省公安厅跨省户籍业务系统";
const SERVICE_ITEM: &str = "KSTB-JS-003";

/// One licence of the register, raw.
#[derive(Debug, Clone)]
struct Licence {
    number: String,
    holder: String,
    status: String,
    valid_until: Option<NaiveDate>,
    account_number: String,
}

fn register(demo: &Demo) -> anyhow::Result<Vec<Licence>> {
    let path = demo.data_dir().join("datasets/licence_housing_fund_certificate.parquet");
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path)?)?.build()?;
    let mut licences = Vec::new();
    for batch in reader {
        let batch = batch?;
        let text = |name: &str| -> anyhow::Result<_> {
            Ok(batch.column_by_name(name).context("column")?.as_string::<i32>().clone())
        };
        let (numbers, holders, statuses, accounts) =
            (text("licence_number")?, text("holder")?, text("status")?, text("account_number")?);
        let until =
            batch.column_by_name("valid_until").context("valid_until")?.as_primitive::<Date32Type>().clone();
        for row in 0..batch.num_rows() {
            licences.push(Licence {
                number: numbers.value(row).to_owned(),
                holder: holders.value(row).to_owned(),
                status: statuses.value(row).to_owned(),
                valid_until: until.is_valid(row).then(|| until.value_as_date(row)).flatten(),
                account_number: accounts.value(row).to_owned(),
            });
        }
    }
    Ok(licences)
}

async fn approve(demo: &Demo, items: &[&str]) -> anyhow::Result<()> {
    let applicant = demo.sign_in("demander.guangdong-police").await?;
    let office = demo.sign_in("reviewer.anhui").await?;
    let supplier = demo.sign_in("supplier.anhui-housing").await?;
    let (system_id, _) = demo.system(SYSTEM)?;
    let body = json!({
        "resource_code": CERTIFICATES,
        "system_id": system_id,
        "service_item": SERVICE_ITEM,
        "purpose": "办理异地贷款时核验申请人提交的住房公积金缴存证明",
        "legal_basis": "《国务院办公厅关于加快推进政务服务“跨省通办”的指导意见》",
        "terms": terms(items, "", 100, 10_000),
    });
    let (status, created) = applicant.post("/demands", &body).await?;
    anyhow::ensure!(status == 201, "{created}");
    let id = created["id"].as_str().context("id")?;
    let (status, submitted) = act(&applicant, &applicant, id, json!({"action": "submit"})).await;
    anyhow::ensure!(status == 200, "{submitted}");
    let (status, reviewed) =
        act(&office, &office, id, json!({"action": "pass_conformity", "terms": body["terms"]})).await;
    anyhow::ensure!(reviewed["state"] == "supplier_review", "{status} {reviewed}");
    let (status, approved) =
        act(&supplier, &supplier, id, json!({"action": "supplier_approve", "terms": body["terms"]})).await;
    anyhow::ensure!(approved["state"] == "approved", "{status} {approved}");
    Ok(())
}

fn with_purpose(api: &Api) -> Api {
    api.with_headers(&[
        ("x-tongban-service-item", SERVICE_ITEM),
        ("x-tongban-case-number", "GD-2026-001207"),
        ("x-tongban-operator", "0031"),
    ])
}

async fn check(
    system: &Api,
    licence: &Licence,
    holder: &str,
    items: &[&str],
) -> anyhow::Result<(u16, Value)> {
    system
        .post(
            "/data/licences/check",
            &json!({"resource": CERTIFICATES, "number": licence.number, "holder": holder, "items": items}),
        )
        .await
}

#[tokio::test]
async fn a_licence_check_says_valid_revoked_or_expired_with_granted_items_masked() -> anyhow::Result<()> {
    let demo = Demo::start().await?;
    let licences = register(&demo)?;
    let today = chrono::Local::now().date_naive();
    let valid = licences
        .iter()
        .find(|l| l.status == "issued" && l.valid_until.is_some_and(|d| d >= today))
        .context("a valid certificate")?;
    let revoked = licences.iter().find(|l| l.status == "revoked").context("a revoked certificate")?;
    let expired = licences
        .iter()
        .find(|l| l.status == "issued" && l.valid_until.is_some_and(|d| d < today))
        .context("an expired certificate")?;

    approve(
        &demo,
        &[
            "licence_number",
            "holder",
            "status",
            "issued_on",
            "valid_until",
            "name",
            "id_number",
            "account_number",
        ],
    )
    .await?;

    // The licence types, for any signed-in caller and no one else.
    let (status, types) = demo.sign_in("demander.guangdong-police").await?.get("/licences/types").await?;
    assert_eq!(status, 200, "{types}");
    let codes: Vec<&str> =
        types.as_array().context("types")?.iter().filter_map(|t| t["code"].as_str()).collect();
    assert_eq!(
        codes,
        [
            "household_register",
            "marriage_certificate",
            "social_insurance_certificate",
            "housing_fund_certificate",
            "business_licence"
        ]
    );
    assert_eq!(types[3]["items"][2]["mask"], "redact", "{}", types[3]);
    let (status, _) = demo.anonymous().get("/licences/types").await?;
    assert_eq!(status, 401);
    let (_, system) = demo.system(SYSTEM)?;
    let system = with_purpose(&system);

    // Valid, with the asked items masked as the licence type says.
    let (status, answer) =
        check(&system, valid, &valid.holder, &["name", "id_number", "account_number"]).await?;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (answer["found"].as_bool(), answer["status"].as_str()),
        (Some(true), Some("valid")),
        "{answer}"
    );
    assert_eq!(answer["valid_until"], json!(valid.valid_until.map(|d| d.to_string())));
    assert_eq!(answer["items"]["account_number"], "***", "the account number is redacted: {answer}");
    let id = answer["items"]["id_number"].as_str().context("id_number")?;
    assert_eq!(id.len(), 18);
    assert_ne!(id, valid.holder, "the identity number is masked");
    assert!(id.starts_with(&valid.holder[..6]) && id.ends_with(&valid.holder[14..]), "{id}");
    assert!(!answer.to_string().contains(&valid.account_number));
    // Without items asked, only the status.
    let (_, bare) = check(&system, valid, &valid.holder, &[]).await?;
    assert_eq!(bare["items"], json!({}), "{bare}");

    // Revoked and expired, each said as such.
    let (_, answer) = check(&system, revoked, &revoked.holder, &[]).await?;
    assert_eq!(answer["status"], "revoked", "{answer}");
    let (_, answer) = check(&system, expired, &expired.holder, &[]).await?;
    assert_eq!(answer["status"], "expired", "{answer}");

    // Another holder's number answers as a number that does not exist.
    let (status, wrong_holder) = check(&system, valid, &revoked.holder, &["name"]).await?;
    assert_eq!(status, 200);
    let missing =
        Licence { number: format!("{}9", &valid.number[..valid.number.len() - 1]), ..valid.clone() };
    let missing = if licences.iter().any(|l| l.number == missing.number) {
        Licence { number: "340000499999999".into(), ..valid.clone() }
    } else {
        missing
    };
    let (_, absent) = check(&system, &missing, &valid.holder, &["name"]).await?;
    for answer in [&wrong_holder, &absent] {
        assert_eq!(answer["found"], false, "{answer}");
        assert!(answer["status"].is_null() && answer["items"] == json!({}), "{answer}");
    }

    // An item the grant does not cover is refused, as is a malformed check.
    let (status, problem) = check(&system, valid, &valid.holder, &["employer_name"]).await?;
    assert_eq!((status, problem["code"].as_str()), (403, Some("access_denied")), "{problem}");
    let (status, problem) = system
        .post(
            "/data/licences/check",
            &json!({"resource": CERTIFICATES, "number": valid.number, "holders": "x"}),
        )
        .await?;
    assert!((400..500).contains(&status) && problem["code"].is_string(), "{status} {problem}");
    // A call without its purpose is refused.
    let (_, bare_system) = demo.system(SYSTEM)?;
    let (status, _) = check(&bare_system, valid, &valid.holder, &[]).await?;
    assert!((400..500).contains(&status));

    // Every check is in the exchange log, refusals too, and none carries the number itself.
    let records = demo.exchange_records()?;
    let checks: Vec<&Value> = records.iter().filter(|r| r["operation"] == "licence_check").collect();
    assert!(checks.len() >= 9, "{} checks recorded", checks.len());
    assert!(checks.iter().any(|r| r["status"] == 403));
    assert!(checks.iter().all(|r| !r.to_string().contains(&valid.number)), "numbers are digested");
    Ok(())
}

const ISSUER_SYSTEM: &str = "安徽省住房公积金电子证照系统";

/// Every licence of the certificates' register as a document's content, with its recorded
/// status, read from the file without the gateway.
pub(crate) fn register_documents(demo: &Demo) -> anyhow::Result<Vec<(LicenceDocument, String)>> {
    let path = demo.data_dir().join("datasets/licence_housing_fund_certificate.parquet");
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path)?)?.build()?;
    let licence_type = tongban_policy::licence::licence_type("housing_fund_certificate").context("type")?;
    let mut documents = Vec::new();
    for batch in reader {
        let batch = batch?;
        for row in 0..batch.num_rows() {
            let text = |name: &str| -> Option<String> {
                let column = batch.column_by_name(name)?.as_string::<i32>();
                column.is_valid(row).then(|| column.value(row).to_owned())
            };
            let day = |name: &str| -> Option<NaiveDate> {
                let column = batch.column_by_name(name)?.as_primitive::<Date32Type>();
                column.is_valid(row).then(|| column.value_as_date(row)).flatten()
            };
            let document = LicenceDocument {
                licence_type: licence_type.code.to_owned(),
                number: text("licence_number").context("number")?,
                holder: text("holder").context("holder")?,
                holder_name: text("holder_name").context("holder name")?,
                issuer: text("issuer_credit_code").context("issuer")?,
                issuer_name: text("issuer_name").context("issuer name")?,
                issued_on: day("issued_on").context("issued on")?,
                valid_until: day("valid_until"),
                surface: licence_type
                    .items
                    .iter()
                    .filter_map(|i| text(i.name).map(|v| (i.name.to_owned(), v)))
                    .collect(),
            };
            documents.push((document, text("status").context("status")?));
        }
    }
    Ok(documents)
}

/// `document` sealed with `key` under `certificate`, as the issuer's gateway seals.
fn sealed_with(
    document: &LicenceDocument,
    department: &str,
    key: &SigningKey,
    certificate: &Certificate,
) -> Value {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    json!({
        "document": document,
        "seal": {
            "algorithm": key.algorithm().as_str(),
            "department": department,
            "certificate": b64.encode(certificate.der()),
            "signature": b64.encode(key.sign(&document.canonical_bytes())),
        },
        "verification_code": document.verification_code(),
    })
}

async fn check_document(system: &Api, sealed: &Value) -> anyhow::Result<Value> {
    let (status, answer) = system
        .post("/data/licences/documents/check", &json!({"resource": CERTIFICATES, "sealed": sealed}))
        .await?;
    anyhow::ensure!(status == 200, "{status} {answer}");
    Ok(answer)
}

#[tokio::test]
async fn sealed_documents_are_checked_offline_and_online_and_forgeries_are_named() -> anyhow::Result<()> {
    let demo = Demo::start().await?;
    let today = chrono::Local::now().date_naive();
    let documents = register_documents(&demo)?;
    let valid = documents
        .iter()
        .find(|(d, s)| {
            s == "issued" && d.valid_until.is_some_and(|last| last >= today + chrono::Days::new(2))
        })
        .map(|(d, _)| d.clone())
        .context("a valid certificate")?;
    let expired = documents
        .iter()
        .find(|(d, s)| s == "issued" && d.valid_until.is_some_and(|last| last < today))
        .map(|(d, _)| d.clone())
        .context("an expired certificate")?;
    let revoked =
        documents.iter().find(|(_, s)| s == "revoked").map(|(d, _)| d.clone()).context("a revoked one")?;

    // The issuing department's system seals a licence of its register.
    let (_, issuer) = demo.system(ISSUER_SYSTEM)?;
    let (status, sealed) =
        issuer.post("/licences/seal", &json!({"resource": CERTIFICATES, "number": valid.number})).await?;
    assert_eq!(status, 200, "{sealed}");
    assert_eq!(sealed["document"], serde_json::to_value(&valid)?, "the register's contents");
    assert_eq!(sealed["seal"]["algorithm"], "sm2-sm3");
    assert_eq!(sealed["verification_code"], valid.verification_code());
    // The readable copy: the face with its labels and the verification code, carrying the
    // sealed document for machines; an unknown format is refused.
    let page = issuer
        .send(
            reqwest::Method::POST,
            "/licences/seal?format=html",
            Some(&json!({"resource": CERTIFICATES, "number": valid.number})),
            None,
        )
        .await?;
    assert_eq!(page.status, 200);
    assert!(page.content_type.starts_with("text/html"), "{}", page.content_type);
    let html = String::from_utf8(page.body)?;
    for expected in ["住房公积金缴存证明", "账户状态", valid.number.as_str(), &valid.verification_code()]
    {
        assert!(html.contains(expected), "the page shows {expected}");
    }
    let start = html.find("id=\"sealed-licence\">").context("the embedded document")?
        + "id=\"sealed-licence\">".len();
    let end = start + html[start..].find("</script>").context("its end")?;
    let embedded: Value = serde_json::from_str(&html[start..end])?;
    assert_eq!(embedded["document"], sealed["document"]);
    assert_eq!(embedded["seal"]["certificate"], sealed["seal"]["certificate"]);
    let (status, problem) = issuer
        .post("/licences/seal?format=pdf", &json!({"resource": CERTIFICATES, "number": valid.number}))
        .await?;
    assert_eq!((status, problem["code"].as_str()), (422, Some("invalid_format")), "{problem}");

    // No one else seals it, and an expired licence is not sealed again.
    let (_, relying) = demo.system(SYSTEM)?;
    let (status, problem) =
        relying.post("/licences/seal", &json!({"resource": CERTIFICATES, "number": valid.number})).await?;
    assert_eq!((status, problem["code"].as_str()), (403, Some("not_the_issuer")), "{problem}");
    let (status, problem) =
        issuer.post("/licences/seal", &json!({"resource": CERTIFICATES, "number": expired.number})).await?;
    assert_eq!((status, problem["code"].as_str()), (422, Some("licence_not_valid")), "{problem}");

    // An implementation that did not make the seal checks it: OpenSSL 3's SM2 over the
    // canonical bytes, rebuilt here by a generic JSON writer with sorted keys.
    if std::process::Command::new("openssl").arg("version").output().is_ok_and(|o| o.status.success()) {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let dir = tempfile::tempdir()?;
        let canonical = serde_json::to_vec(&serde_json::from_value::<Value>(sealed["document"].clone())?)?;
        assert_eq!(canonical, valid.canonical_bytes(), "the canonical form is sorted compact JSON");
        std::fs::write(dir.path().join("document.json"), &canonical)?;
        std::fs::write(
            dir.path().join("seal.der"),
            b64.decode(sealed["seal"]["certificate"].as_str().context("cert")?)?,
        )?;
        std::fs::write(
            dir.path().join("seal.sig"),
            b64.decode(sealed["seal"]["signature"].as_str().context("sig")?)?,
        )?;
        let openssl = |args: &[&str]| {
            std::process::Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("openssl runs")
        };
        let key = openssl(&["x509", "-inform", "DER", "-in", "seal.der", "-pubkey", "-noout"]);
        assert!(key.status.success(), "{}", String::from_utf8_lossy(&key.stderr));
        std::fs::write(dir.path().join("seal.pub"), &key.stdout)?;
        let verify = [
            "dgst",
            "-sm3",
            "-verify",
            "seal.pub",
            "-signature",
            "seal.sig",
            "-sigopt",
            "distid:1234567812345678",
        ];
        let said = openssl(&[&verify[..], &["document.json"]].concat());
        assert!(
            String::from_utf8_lossy(&said.stdout).contains("Verified OK"),
            "{}",
            String::from_utf8_lossy(&said.stderr)
        );
        let mut altered = canonical.clone();
        let at = altered.len() - 5;
        altered[at] ^= 1;
        std::fs::write(dir.path().join("altered.json"), altered)?;
        assert!(
            !openssl(&[&verify[..], &["altered.json"]].concat()).status.success(),
            "OpenSSL refuses an altered document"
        );
    } else {
        assert!(std::env::var_os("TONGBAN_REQUIRE_OPENSSL").is_none(), "tests/run.sh installs openssl");
    }

    // A relying system with a grant checks documents under it.
    approve(&demo, &["licence_number", "holder", "status", "issued_on", "valid_until"]).await?;
    let system = with_purpose(&relying);
    let answer = check_document(&system, &sealed).await?;
    assert_eq!(
        (answer["genuine"].as_bool(), answer["status"].as_str()),
        (Some(true), Some("valid")),
        "{answer}"
    );

    // An altered face is named item by item.
    let mut altered = sealed.clone();
    altered["document"]["surface"]["account_status"] = json!("正常缴存（已核）");
    altered["document"]["holder_name"] = json!("李四");
    let answer = check_document(&system, &altered).await?;
    assert_eq!(answer["reason"], "surface_altered", "{answer}");
    assert_eq!(answer["altered"], json!(["holder_name", "surface.account_status"]));

    // A seal made with another key: under a certificate of its own it is not the department's;
    // under the department's certificate it does not verify.
    let department = sealed["seal"]["department"].as_str().context("department")?;
    let forger = SigningKey::generate(Algorithm::Sm2Sm3)?;
    let forged_certificate = Certificate::self_signed(
        &forger,
        "CN=tongban seal forged,O=Tongban",
        std::time::Duration::from_secs(86_400),
    )?;
    let forged = sealed_with(&valid, department, &forger, &forged_certificate);
    let answer = check_document(&system, &forged).await?;
    assert_eq!(answer["reason"], "seal_not_registered", "{answer}");
    let mut borrowed = forged.clone();
    borrowed["seal"]["certificate"] = sealed["seal"]["certificate"].clone();
    let answer = check_document(&system, &borrowed).await?;
    assert_eq!(answer["reason"], "seal_invalid", "{answer}");

    // Documents sealed by the issuer while they stood, presented after expiry and revocation
    // (sealed here with the issuer's own key, as its gateway did then).
    let seals = demo.data_dir().join("seals");
    let key =
        SigningKey::from_pkcs8_pem(&std::fs::read_to_string(seals.join(format!("{department}.key.pem")))?)?;
    let certificate =
        Certificate::all_from_pem(&std::fs::read_to_string(seals.join(format!("{department}.cert.pem")))?)?
            .into_iter()
            .next()
            .context("the seal's certificate")?;
    let answer = check_document(&system, &sealed_with(&expired, department, &key, &certificate)).await?;
    assert_eq!(
        (answer["reason"].as_str(), answer["status"].as_str()),
        (Some("expired"), Some("expired")),
        "{answer}"
    );
    let answer = check_document(&system, &sealed_with(&revoked, department, &key, &certificate)).await?;
    assert_eq!(
        (answer["reason"].as_str(), answer["status"].as_str()),
        (Some("revoked"), Some("revoked")),
        "{answer}"
    );
    // A well-sealed licence the register never held.
    let mut invented = valid.clone();
    invented.number = format!("{}99999999", &valid.number[..7]);
    let answer = check_document(&system, &sealed_with(&invented, department, &key, &certificate)).await?;
    assert_eq!(answer["reason"], "not_in_register", "{answer}");
    // A malformed document is refused for its form.
    let mut malformed = sealed.clone();
    malformed["document"]["surface"]["balance"] = json!("100000.00");
    let answer = check_document(&system, &malformed).await?;
    assert_eq!(answer["reason"], "malformed_document", "{answer}");

    // Sealing is in the management trail, with the seal's fingerprint; people, even the
    // issuer's own data administrators, do not seal.
    let admin = demo.sign_in("admin").await?;
    let (status, trail) = admin.get(&format!("/admin-actions?target={}", valid.number)).await?;
    assert_eq!(status, 200, "{trail}");
    let sealings: Vec<&Value> = trail["items"]
        .as_array()
        .context("items")?
        .iter()
        .filter(|a| a["action"] == "licence.sealed")
        .collect();
    assert_eq!(sealings.len(), 2, "the JSON and the HTML issuance: {trail}");
    assert!(
        sealings.iter().all(|a| a["actor"].as_str().is_some_and(|s| s.starts_with("system:"))),
        "{trail}"
    );
    assert!(sealings.iter().all(|a| a["detail"]["seal"].as_str().is_some_and(|f| f.len() == 64)), "{trail}");
    let issuer_admin = demo.sign_in("supplier.anhui-housing").await?;
    let (status, _) = issuer_admin
        .post("/licences/seal", &json!({"resource": CERTIFICATES, "number": valid.number}))
        .await?;
    assert_eq!(status, 403);
    // Another department's data administrator and a demander may not revoke; the issuer's may.
    let expired_revocation =
        json!({"resource": CERTIFICATES, "number": expired.number, "reason": "证明已过期作废"});
    let (status, problem) =
        demo.sign_in("supplier.henan-police").await?.post("/licences/revoke", &expired_revocation).await?;
    assert_eq!((status, problem["code"].as_str()), (403, Some("not_the_issuer")), "{problem}");
    let (status, _) = demo
        .sign_in("demander.guangdong-police")
        .await?
        .post("/licences/revoke", &expired_revocation)
        .await?;
    assert_eq!(status, 403);
    let (status, revoked_by_person) = issuer_admin.post("/licences/revoke", &expired_revocation).await?;
    assert_eq!((status, revoked_by_person["actor"].as_str()), (200, Some("user:supplier.anhui-housing")));

    // The issuer revokes the licence; the same document is refused from then on, and the
    // licence is not sealed again. No one else may revoke.
    let revoke =
        json!({"resource": CERTIFICATES, "number": valid.number, "reason": "缴存单位申请更正后重新出具"});
    let (status, problem) = relying.post("/licences/revoke", &revoke).await?;
    assert_eq!((status, problem["code"].as_str()), (403, Some("not_the_issuer")), "{problem}");
    let (status, problem) = issuer
        .post("/licences/revoke", &json!({"resource": CERTIFICATES, "number": valid.number, "reason": " "}))
        .await?;
    assert_eq!((status, problem["code"].as_str()), (422, Some("invalid_reason")), "{problem}");
    let (status, revocation) = issuer.post("/licences/revoke", &revoke).await?;
    assert_eq!(status, 200, "{revocation}");
    assert_eq!(revocation["licence_number"], valid.number.as_str());
    let (status, again) = issuer
        .post(
            "/licences/revoke",
            &json!({"resource": CERTIFICATES, "number": valid.number, "reason": "再次撤销"}),
        )
        .await?;
    assert_eq!(
        (status, &again["revoked_at"], &again["reason"]),
        (200, &revocation["revoked_at"], &revocation["reason"]),
        "a revocation stands as first made"
    );
    let answer = check_document(&system, &sealed).await?;
    assert_eq!(
        (answer["genuine"].as_bool(), answer["reason"].as_str()),
        (Some(false), Some("revoked")),
        "{answer}"
    );
    let (status, problem) =
        issuer.post("/licences/seal", &json!({"resource": CERTIFICATES, "number": valid.number})).await?;
    assert_eq!((status, problem["code"].as_str()), (422, Some("licence_not_valid")), "{problem}");

    // Every check is recorded.
    let records = demo.exchange_records()?;
    let checks = records.iter().filter(|r| r["operation"] == "licence_check").count();
    assert!(checks >= 9, "{checks} checks recorded");
    Ok(())
}

/// A department's own sealing system: its seal certificate registered through the API by the
/// department's data administrator, documents sealed under it recognised at the counter and
/// by systems, and no longer once it is retired. People at a counter verify what they are
/// shown, each verification recorded; the issuer's administrators look licences up, masked.
#[tokio::test]
async fn seals_registered_through_the_api_are_recognised_until_retired() -> anyhow::Result<()> {
    let demo = Demo::start().await?;
    let today = chrono::Local::now().date_naive();
    let documents = register_documents(&demo)?;
    let (valid, _) = documents
        .iter()
        .find(|(d, s)| {
            s == "issued" && d.valid_until.is_some_and(|last| last >= today + chrono::Days::new(2))
        })
        .context("a valid certificate")?;
    let issuer_admin = demo.sign_in("supplier.anhui-housing").await?;
    let department = demo.department_of("supplier.anhui-housing");
    let key = SigningKey::generate(Algorithm::Sm2Sm3)?;
    let certificate = Certificate::self_signed(
        &key,
        "CN=安徽省住建厅电子印章系统,O=Anhui",
        std::time::Duration::from_secs(365 * 86_400),
    )?;
    let sealed = sealed_with(valid, &department, &key, &certificate);
    let counter = demo.sign_in("demander.hefei-fund").await?;
    let verify = |sealed: Value| {
        let counter = counter.clone();
        async move { counter.post("/licences/verify", &json!({"sealed": sealed})).await }
    };

    // Before it is registered the seal is no one's.
    let (status, answer) = verify(sealed.clone()).await?;
    assert_eq!((status, answer["reason"].as_str()), (200, Some("seal_not_registered")), "{answer}");

    // Only the issuing department's data administrators register, one well-formed current
    // certificate at a time.
    let pem = certificate.to_pem()?;
    let register = json!({"certificate": pem});
    for (who, code) in [("demander.hefei-fund", "forbidden"), ("operator", "forbidden")] {
        let (status, problem) = demo.sign_in(who).await?.post("/licences/seals", &register).await?;
        assert_eq!((status, problem["code"].as_str()), (403, Some(code)), "{who}: {problem}");
    }
    let other = Certificate::self_signed(&key, "CN=other", std::time::Duration::from_secs(86_400))?;
    for (bad, why) in [
        (json!({"certificate": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}), "garbage"),
        (json!({"certificate": format!("{pem}{}", other.to_pem()?)}), "two certificates"),
        (json!({"certificate": ""}), "nothing"),
    ] {
        let (status, problem) = issuer_admin.post("/licences/seals", &bad).await?;
        assert_eq!(
            (status, problem["code"].as_str()),
            (422, Some("invalid_certificate")),
            "{why}: {problem}"
        );
    }
    let (status, registered) = issuer_admin.post("/licences/seals", &register).await?;
    assert_eq!(status, 201, "{registered}");
    let fingerprint = registered["fingerprint"].as_str().context("fingerprint")?.to_owned();
    assert_eq!(fingerprint, certificate.fingerprint());
    assert_eq!(registered["registered_by"], "user:supplier.anhui-housing");
    let (status, problem) = issuer_admin.post("/licences/seals", &register).await?;
    assert_eq!((status, problem["code"].as_str()), (409, Some("already_exists")), "{problem}");
    // Listed for signed-in callers beside the directory's seals.
    let (status, seals) = counter.get("/licences/seals").await?;
    assert_eq!(status, 200, "{seals}");
    let listed = seals.as_array().context("seals")?;
    let ours = listed.iter().find(|s| s["fingerprint"] == fingerprint.as_str()).context("listed")?;
    assert_eq!((ours["source"].as_str(), ours["in_force"].as_bool()), (Some("registered"), Some(true)));
    assert!(listed.iter().any(|s| s["source"] == "directory" && s["department_code"] == department.as_str()));
    assert_eq!(demo.anonymous().get("/licences/seals").await?.0, 401);

    // Recognised at the counter and by systems under a grant; an altered face is named.
    let (status, answer) = verify(sealed.clone()).await?;
    assert_eq!((status, answer["genuine"].as_bool()), (200, Some(true)), "{answer}");
    let mut altered = sealed.clone();
    altered["document"]["surface"]["account_status"] = json!("封存");
    let (_, answer) = verify(altered).await?;
    assert_eq!(answer["reason"], "surface_altered", "{answer}");
    approve(&demo, &["licence_number", "holder", "status", "issued_on", "valid_until"]).await?;
    let (_, relying) = demo.system(SYSTEM)?;
    let system = with_purpose(&relying);
    let answer = check_document(&system, &sealed).await?;
    assert_eq!(answer["genuine"], true, "{answer}");

    // Retired by another department's administrator: not theirs. By the issuer's: from the
    // next check on, documents under it are not recognised, and it stays listed, retired.
    let (status, _) = demo
        .sign_in("supplier.henan-police")
        .await?
        .delete(&format!("/licences/seals/{fingerprint}"))
        .await?;
    assert_eq!(status, 404, "another department's certificate is not found among its own");
    let (status, retired) = issuer_admin.delete(&format!("/licences/seals/{fingerprint}")).await?;
    assert_eq!(
        (status, retired["retired_by"].as_str()),
        (200, Some("user:supplier.anhui-housing")),
        "{retired}"
    );
    let (_, answer) = verify(sealed.clone()).await?;
    assert_eq!(answer["reason"], "seal_not_registered", "{answer}");
    let answer = check_document(&system, &sealed).await?;
    assert_eq!(answer["reason"], "seal_not_registered", "{answer}");
    let (_, seals) = counter.get("/licences/seals").await?;
    let ours = seals.as_array().context("seals")?.iter().find(|s| s["fingerprint"] == fingerprint.as_str());
    assert_eq!(ours.and_then(|s| s["in_force"].as_bool()), Some(false));
    let (status, problem) = issuer_admin.post("/licences/seals", &register).await?;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("already_exists")),
        "a retired seal stays retired"
    );

    // A document of a register this gateway does not hold is refused with its reason.
    let mut elsewhere = sealed.clone();
    elsewhere["seal"]["department"] = json!("11440000MB2C00000X");
    let (status, problem) = verify(elsewhere).await?;
    assert_eq!((status, problem["code"].as_str()), (422, Some("unknown_register")), "{problem}");

    // The issuer's administrators look a licence up: status and dates in full, the holder and
    // the face masked; no one else may.
    let lookup = json!({"resource": CERTIFICATES, "number": valid.number});
    let (status, found) = issuer_admin.post("/licences/lookup", &lookup).await?;
    assert_eq!((status, found["status"].as_str()), (200, Some("valid")), "{found}");
    assert_eq!(found["verification_code"], valid.verification_code());
    let holder = found["holder"].as_str().context("holder")?;
    assert!(holder.contains('*') && holder != valid.holder, "{found}");
    assert_eq!(found["surface"]["account_number"], "***", "{found}");
    assert!(!found.to_string().contains(&valid.holder));
    for who in ["supplier.henan-police", "demander.hefei-fund", "operator"] {
        let (status, _) = demo.sign_in(who).await?.post("/licences/lookup", &lookup).await?;
        assert_eq!(status, 403, "{who}");
    }

    // The trail holds the registration, the retirement and the look-up; the log holds each
    // verification at the counter as an exchange of the person's department, without the
    // number.
    let admin = demo.sign_in("admin").await?;
    let (_, trail) = admin.get(&format!("/admin-actions?target={fingerprint}")).await?;
    let actions: Vec<&str> =
        trail["items"].as_array().context("items")?.iter().filter_map(|a| a["action"].as_str()).collect();
    assert!(actions.contains(&"seal.registered") && actions.contains(&"seal.retired"), "{trail}");
    let (_, trail) = admin.get(&format!("/admin-actions?target={}", valid.number)).await?;
    assert!(
        trail["items"].as_array().context("items")?.iter().any(|a| a["action"] == "licence.viewed"),
        "{trail}"
    );
    // A body that is no document is refused, and recorded too.
    let (status, problem) = counter.post("/licences/verify", &json!({"sealed": "x"})).await?;
    assert!((400..500).contains(&status) && problem["code"].is_string(), "{status} {problem}");
    let hefei = demo.department_of("demander.hefei-fund");
    let records = demo.exchange_records()?;
    let at_counter: Vec<&Value> = records
        .iter()
        .filter(|r| {
            r["operation"] == "licence_check" && r["department"] == hefei.as_str() && r["system"].is_null()
        })
        .collect();
    assert_eq!(at_counter.len(), 6, "{at_counter:?}");
    assert!(at_counter.iter().any(|r| r["status"] == 422 && r["code"] == "unknown_register"));
    assert!(at_counter.iter().all(|r| !r.to_string().contains(&valid.number)));
    Ok(())
}
