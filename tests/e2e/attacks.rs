//! Holes an attacker found, each tried again against the real binary: a supplier sharing
//! another department's dataset, resubmissions that skipped a review, reviewers reading other
//! provinces' demands, data routes refused before their handler without a record, and floods
//! of sign-ins and of calls without a credential.

use std::time::Duration;

use serde_json::{Value, json};
use tongban_e2e::{Api, Demo, act, terms};

const HOUSEHOLD: &str = "A01-410000-0001";
const INSURANCE: &str = "B02-440000-0001";
const FUND: &str = "C03-340000-0001";

/// A resource over Henan police's household dataset, as Guangdong's social insurance
/// department would try to make it: every item unconditional and unmasked.
fn resource_over(dataset: &str, code: &str) -> Value {
    let items: Vec<Value> = ["id_number", "name", "address", "ethnicity", "marital_status"]
        .map(|name| {
            json!({"name": name, "label": name, "data_type": "Utf8", "sensitivity": "general",
                "personal": true, "default_mask": "none", "share_type": "unconditional"})
        })
        .to_vec();
    json!({
        "code": code,
        "name": "借来的户籍数据",
        "share_type": "unconditional",
        "share_methods": ["interface", "table"],
        "update_cycle": "daily",
        "dataset": dataset,
        "items": items,
        "service_items": ["KSTB-RS-001"],
    })
}

#[tokio::test]
async fn a_supplier_shares_only_its_own_datasets_and_cannot_widen_live_grants() {
    let demo = Demo::start().await.expect("demo");
    let hrss = demo.sign_in("supplier.guangdong-hrss").await.expect("sign in");
    let police = demo.sign_in("supplier.henan-police").await.expect("sign in");
    let housing = demo.sign_in("supplier.anhui-housing").await.expect("sign in");

    // A new resource over another department's dataset.
    let (status, problem) =
        hrss.post("/catalog/resources", &resource_over("household", "B09-440000-0009")).await.expect("post");
    assert_eq!((status, problem["code"].as_str()), (403, Some("dataset_not_owned")), "{problem}");
    let (status, _) = hrss.get("/catalog/resources/B09-440000-0009").await.expect("get");
    assert_eq!(status, 404, "nothing was made");

    // Its own resource re-pointed at another department's dataset.
    let (status, problem) = edit_resource(&hrss, INSURANCE, |r| r["dataset"] = json!("household")).await;
    assert_eq!((status, problem["code"].as_str()), (403, Some("dataset_not_owned")), "{problem}");

    // Edits that change what live grants read: the division item rows are scoped by, and a
    // new way to call (SQL on a resource approved for per-call interfaces only).
    let (status, problem) =
        edit_resource(&police, HOUSEHOLD, |r| r["division_item"] = json!("household_number")).await;
    assert_eq!((status, problem["code"].as_str()), (409, Some("edit_widens_grants")), "{problem}");
    let (status, problem) =
        edit_resource(&housing, FUND, |r| r["share_methods"] = json!(["interface", "table"])).await;
    assert_eq!((status, problem["code"].as_str()), (409, Some("edit_widens_grants")), "{problem}");
    // A narrowing edit still goes through.
    let (status, edited) = edit_resource(&housing, FUND, |r| {
        r["summary"] = json!("住房公积金个人账户的缴存、余额与贷款信息（修订）");
    })
    .await;
    assert_eq!(status, 200, "{edited}");
}

/// Edits resource `code` as `api`: its current version, changed by `change`.
async fn edit_resource(api: &Api, code: &str, change: impl FnOnce(&mut Value)) -> (u16, Value) {
    let (_, current) = api.get(&format!("/catalog/resources/{code}")).await.expect("get");
    let mut edit = current.clone();
    for field in ["version", "supplier"] {
        edit.as_object_mut().expect("object").remove(field);
    }
    change(&mut edit);
    api.put(&format!("/catalog/resources/{code}"), &json!({"version": current["version"], "resource": edit}))
        .await
        .expect("put")
}

#[tokio::test]
async fn a_resubmission_is_reviewed_from_the_start_by_every_reviewer_its_terms_need() {
    let demo = Demo::start().await.expect("demo");
    let applicant = demo.sign_in("demander.henan-hrss").await.expect("sign in");
    let office = demo.sign_in("reviewer.guangdong").await.expect("sign in");
    let supplier = demo.sign_in("supplier.guangdong-hrss").await.expect("sign in");
    let filing = |terms: Value| {
        json!({
            "resource_code": INSURANCE,
            "service_item": "KSTB-RS-002",
            "purpose": "办理养老保险关系转移接续",
            "legal_basis": "《社会保险法》",
            "terms": terms,
        })
    };

    // Filed for unconditional items, sent back by the office, resubmitted for conditional
    // ones: the supplier must now answer, so the office's pass is not an approval.
    let (status, demand) =
        applicant.post("/demands", &filing(terms(&["id_number", "status"], "", 5, 100))).await.expect("file");
    assert_eq!(status, 201, "{demand}");
    assert_eq!(demand["supplier_review"], false);
    let id = demand["id"].as_str().expect("id").to_owned();
    assert_eq!(act(&applicant, &applicant, &id, json!({"action": "submit"})).await.0, 200);
    let (status, _) =
        act(&office, &applicant, &id, json!({"action": "request_correction", "reason": "请补充依据"})).await;
    assert_eq!(status, 200);
    let conditional = terms(&["id_number", "contribution_base", "employer_contribution"], "", 5, 100);
    let (status, resubmitted) =
        act(&applicant, &applicant, &id, json!({"action": "resubmit", "terms": conditional})).await;
    assert_eq!(status, 200, "{resubmitted}");
    assert_eq!(resubmitted["supplier_review"], true, "{resubmitted}");
    let (status, passed) =
        act(&office, &applicant, &id, json!({"action": "pass_conformity", "terms": conditional})).await;
    assert_eq!((status, passed["state"].as_str()), (200, Some("supplier_review")), "{passed}");

    // Sent back by the supplier, resubmitted with wider terms: back to the office first, and
    // the supplier's approval alone cannot make it a grant.
    let (status, _) =
        act(&supplier, &applicant, &id, json!({"action": "request_correction", "reason": "请说明用途"}))
            .await;
    assert_eq!(status, 200);
    let wider = terms(
        &[
            "id_number",
            "name",
            "status",
            "contribution_base",
            "employer_contribution",
            "personal_contribution",
        ],
        "",
        20,
        20_000,
    );
    let (status, resubmitted) =
        act(&applicant, &applicant, &id, json!({"action": "resubmit", "terms": wider})).await;
    assert_eq!((status, resubmitted["state"].as_str()), (200, Some("submitted")), "{resubmitted}");
    let (status, problem) =
        act(&supplier, &applicant, &id, json!({"action": "supplier_approve", "terms": wider})).await;
    assert!(
        status == 403 || status == 409 || status == 422,
        "the supplier alone approved: {status} {problem}"
    );
    let (_, after) = applicant.get(&format!("/demands/{id}")).await.expect("read");
    assert_eq!(after["state"], "submitted");
    let (_, grants) = applicant.get("/grants").await.expect("grants");
    assert!(
        grants["items"].as_array().expect("items").iter().all(|g| g["grant"]["demand_id"] != json!(id)),
        "no grant was made"
    );

    // A resubmission is checked like a filing: items the resource does not share are refused.
    let (status, problem) =
        act(&applicant, &applicant, &id, json!({"action": "withdraw", "reason": "重新申请"})).await;
    assert_eq!(status, 200, "{problem}");
    let (_, demand) =
        applicant.post("/demands", &filing(terms(&["id_number"], "", 5, 100))).await.expect("file");
    let id = demand["id"].as_str().expect("id").to_owned();
    act(&applicant, &applicant, &id, json!({"action": "submit"})).await;
    act(&office, &applicant, &id, json!({"action": "request_correction", "reason": "请补充依据"})).await;
    let (status, problem) = act(
        &applicant,
        &applicant,
        &id,
        json!({"action": "resubmit", "terms": terms(&["id_number", "no_such_item"], "", 5, 100)}),
    )
    .await;
    assert_eq!((status, problem["code"].as_str()), (422, Some("ungrantable_items")), "{problem}");
}

#[tokio::test]
async fn reviewers_read_only_their_provinces_demands_on_every_route() {
    let demo = Demo::start().await.expect("demo");
    let reviewer = demo.sign_in("reviewer.guangdong").await.expect("sign in");
    let guangdong_resource = |code: &str| code.starts_with("B02-44");

    let (status, listed) = reviewer.get("/demands?limit=500").await.expect("list");
    assert_eq!(status, 200);
    let listed = listed["items"].as_array().expect("items").clone();
    assert!(!listed.is_empty());
    assert!(listed.iter().all(|d| guangdong_resource(d["resource_code"].as_str().unwrap_or_default())));

    let (status, overdue) = reviewer.get("/demands/overdue?on=2099-12-31").await.expect("overdue");
    assert_eq!(status, 200);
    let overdue = overdue["items"].as_array().expect("items").clone();
    assert!(
        overdue.iter().all(|d| guangdong_resource(d["resource_code"].as_str().unwrap_or_default())),
        "another province's demand among the overdue: {overdue:?}"
    );

    let (status, quality) = reviewer.get("/quality").await.expect("quality");
    assert_eq!(status, 200, "{quality}");
    let demands = quality["demands"].as_array().expect("demands");
    assert!(
        demands.iter().all(|d| guangdong_resource(d["resource_code"].as_str().unwrap_or_default())),
        "another province's demand in the quality report: {demands:?}"
    );
    let drafts = demands.iter().filter(|d| d["state"] == "draft").count();
    assert_eq!(
        drafts,
        listed.iter().filter(|d| d["state"] == "draft").count(),
        "the report counts what the reviewer may list"
    );

    // The operator still sees every province's.
    let operator = demo.sign_in("operator").await.expect("sign in");
    let (_, overdue) = operator.get("/demands/overdue?on=2099-12-31").await.expect("overdue");
    assert!(
        overdue["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|d| !guangdong_resource(d["resource_code"].as_str().unwrap_or_default())),
        "{overdue}"
    );
}

#[tokio::test]
async fn a_data_route_asked_with_the_wrong_method_is_refused_and_recorded() {
    let demo = Demo::start().await.expect("demo");
    let (_, system) = demo.system("广东省公安厅跨省户籍业务系统").expect("system");
    let system = system.with_headers(&[
        ("x-tongban-service-item", "KSTB-GA-001"),
        ("x-tongban-case-number", "GD-2026-000731"),
        ("x-tongban-operator", "0031"),
    ]);
    let before = demo.exchange_records().expect("records").len();
    let cases = [
        (reqwest::Method::GET, "/data/verify".to_owned(), "POST"),
        (reqwest::Method::PUT, "/data/sql".to_owned(), "POST"),
        (reqwest::Method::DELETE, format!("/data/{HOUSEHOLD}/records/411502199001011234"), "GET"),
        (reqwest::Method::GET, "/data/licences/check".to_owned(), "POST"),
        (reqwest::Method::PATCH, "/data/licences/documents/check".to_owned(), "POST"),
    ];
    let mut ids = Vec::new();
    for (method, path, allowed) in &cases {
        let answer = system.send(method.clone(), path, None, None).await.expect("send");
        assert_eq!(answer.status, 405, "{method} {path}");
        assert_eq!(answer.header("allow").as_deref(), Some(*allowed));
        ids.push(answer.header("x-tongban-exchange-id").expect("a record id"));
    }
    let records = demo.exchange_records().expect("records");
    assert_eq!(records.len(), before + cases.len());
    for (id, (_, path, _)) in ids.iter().zip(&cases) {
        let record = records.iter().find(|r| r["id"] == json!(id)).expect("recorded");
        assert_eq!(
            (record["status"].as_u64(), record["code"].as_str()),
            (Some(405), Some("method_not_allowed"))
        );
        // Recorded as the kind of call its route serves.
        if path.contains("licences") {
            assert_eq!(record["operation"], "licence_check", "{path}");
        }
    }
}

#[tokio::test]
async fn floods_without_credentials_are_cut_per_source_and_summarised() {
    let demo = Demo::start().await.expect("demo");
    // Sign-ins with fresh names: each name is under its own lock, so only the per-address
    // limit stops them before Argon2 runs.
    let anonymous = demo.anonymous();
    let attempts = (0..80).map(|i| {
        let anonymous = anonymous.clone();
        async move {
            anonymous
                .post("/sessions", &json!({"username": format!("fresh-{i}"), "password": "wrong password!"}))
                .await
                .expect("post")
        }
    });
    let answers = futures::future::join_all(attempts).await;
    let limited = answers.iter().filter(|(_, p)| p["code"] == "sign_in_rate_limited").count();
    let checked = answers.iter().filter(|(_, p)| p["code"] == "invalid_credentials").count();
    assert_eq!(limited + checked, answers.len(), "{answers:?}");
    assert!(checked <= 40 && limited >= 40, "{checked} checked, {limited} limited");

    // Data calls with a forged key: each has its record within the allowance, past it they
    // are refused at once and summarised.
    let forged = Api::new(&demo.gateway.base_url, Some("tbk_forged".into())).with_headers(&[
        ("x-tongban-service-item", "KSTB-GA-001"),
        ("x-tongban-case-number", "GD-2026-000731"),
        ("x-tongban-operator", "0031"),
    ]);
    let before = demo.exchange_records().expect("records").len();
    let mut statuses = Vec::new();
    for _ in 0..300 {
        let answer = forged
            .send(reqwest::Method::GET, &format!("/data/{HOUSEHOLD}/records/411502199001011234"), None, None)
            .await
            .expect("send");
        statuses.push(answer.status);
    }
    let refused_at_once = statuses.iter().filter(|s| **s == 429).count() as u64;
    let recorded_each = statuses.iter().filter(|s| **s == 401).count();
    assert!(refused_at_once >= 100, "{statuses:?}");
    // The summary is written within ten seconds.
    let mut summarised = 0;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let records = demo.exchange_records().expect("records");
        summarised = records[before..]
            .iter()
            .filter(|r| r["code"] == "unauthenticated_rate_limited")
            .map(|r| r["rows"].as_u64().unwrap_or(0))
            .sum::<u64>();
        if summarised == refused_at_once {
            assert_eq!(
                records[before..].iter().filter(|r| r["code"] == "invalid_credentials").count(),
                recorded_each
            );
            break;
        }
    }
    assert_eq!(summarised, refused_at_once, "every refusal is in a summary");

    // A signed-in person and a system are served meanwhile.
    demo.sign_in("operator").await.expect("sign in after the flood (the burst has refilled)");
}

/// One system running costly queries at once holds at most its department's share of the
/// SQL slots: another department's trivial query is answered while they run.
#[tokio::test]
async fn one_department_cannot_hold_every_sql_slot() {
    let demo = Demo::start_with(
        20_000,
        &[
            ("TONGBAN_DATA__SQL_TIMEOUT_MS", "3000"),
            ("TONGBAN_DATA__SQL_CONCURRENCY", "2"),
            ("TONGBAN_DATA__SQL_QUEUE_MS", "300"),
        ],
    )
    .await
    .expect("demo");
    let purpose = |api: &Api, item: &str| {
        api.with_headers(&[
            ("x-tongban-service-item", item),
            ("x-tongban-case-number", "CASE-2026-000001"),
            ("x-tongban-operator", "0031"),
        ])
    };
    let (_, police) = demo.system("广东省公安厅跨省户籍业务系统").expect("system");
    let police = purpose(&police, "KSTB-GA-001");
    let (_, hrss) = demo.system("河南省社保经办系统").expect("system");
    let hrss = purpose(&hrss, "KSTB-RS-002");
    let costly = json!({"query": "SELECT count(*) FROM household a, household b, household c, household d"});
    let hogs: Vec<_> = (0..3)
        .map(|_| {
            let police = police.clone();
            let costly = costly.clone();
            tokio::spawn(async move { police.post("/data/sql", &costly).await.expect("post") })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, body) = hrss
        .post("/data/sql", &json!({"query": "SELECT count(*) AS n FROM social_insurance"}))
        .await
        .expect("post");
    assert_eq!(status, 200, "another department's query was kept out: {body}");
    let mut codes = Vec::new();
    for hog in hogs {
        let (_, body) = hog.await.expect("joined");
        codes.push(body["code"].as_str().unwrap_or("ok").to_owned());
    }
    codes.sort();
    assert_eq!(codes, ["query_timeout", "sql_busy", "sql_busy"], "the hog had one slot of two");

    // A caller that gives up on its query: the query is stopped, and recorded as closed by
    // the client.
    let (hrss_id, _) = demo.system("河南省社保经办系统").expect("system");
    let key = demo.credentials["systems"]
        .as_array()
        .and_then(|systems| systems.iter().find(|s| s["id"] == json!(hrss_id)))
        .and_then(|s| s["api_key"].as_str())
        .expect("key")
        .to_owned();
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(300)).build().expect("client");
    let abandoned = impatient
        .post(demo.gateway.url("/api/v1/data/sql"))
        .bearer_auth(&key)
        .header("x-tongban-service-item", "KSTB-RS-002")
        .header("x-tongban-case-number", "CASE-2026-000002")
        .header("x-tongban-operator", "0031")
        .json(&json!({"query": "SELECT count(*) FROM social_insurance a, social_insurance b, social_insurance c"}))
        .send()
        .await;
    assert!(abandoned.is_err(), "the caller gave up");
    let mut recorded = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let records = demo.exchange_records().expect("records");
        recorded = records.iter().any(|r| {
            r["operation"] == "sql" && r["system"] == json!(hrss_id) && r["code"] == "client_closed"
        });
        if recorded {
            break;
        }
    }
    assert!(recorded, "the abandoned query has its record");
}
