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
