//! What data offices run besides the demand workflow, end to end over HTTP against the demo:
//! service-item lists imported and exported, data objections (纠错), ratings (好差评) and
//! the monthly report.

use serde_json::{Value, json};
use tongban_e2e::{Demo, RawAnswer};

const NATIONAL_LIST: &str = "全国高频政务服务“跨省通办”事项清单（国办发〔2020〕35号）";

/// Reads a CSV export with the `csv`-free rules the format keeps: no field of the demo's
/// list holds a comma or a quote, so a split is exact.
fn rows(answer: &RawAnswer) -> Vec<Vec<String>> {
    let text = String::from_utf8(answer.body.clone()).expect("UTF-8");
    let text = text.strip_prefix('\u{feff}').expect("a byte-order mark for spreadsheet programs");
    text.lines().map(|l| l.split(',').map(str::to_owned).collect()).collect()
}

#[tokio::test]
async fn service_item_lists_are_imported_exported_and_show_where_each_item_came_from() -> anyhow::Result<()> {
    let demo = Demo::start().await?;
    let admin = demo.sign_in("admin").await?;

    // The demo registered its items through the import: each names its list and origin.
    let (status, item) = admin.get("/service-items/KSTB-GA-001").await?;
    assert_eq!(status, 200, "{item}");
    assert_eq!(item["item_type"], "行政许可");
    assert_eq!(item["legal_basis"], "《中华人民共和国户口登记条例》");
    assert_eq!(item["source"]["list"], NATIONAL_LIST);
    assert_eq!(
        (item["source"]["origin"].as_str(), item["source"]["by"].as_str()),
        (Some("import"), Some("user:admin"))
    );
    assert!(item["source"]["at"].as_str().is_some_and(|at| at.ends_with("+08:00")), "{item}");

    let export = admin.send(reqwest::Method::GET, "/service-items/export", None, None).await?;
    assert_eq!(export.status, 200);
    assert!(export.content_type.starts_with("text/csv"), "{}", export.content_type);
    let exported = rows(&export);
    assert_eq!(
        exported[0],
        ["事项编码", "事项名称", "事项类型", "主管部门", "设定依据", "所需数据", "所属清单"]
    );
    assert_eq!(exported.len(), 1 + 14, "the header and the demo's 14 items");
    let social_card = exported.iter().find(|r| r[0] == "KSTB-RS-001").expect("KSTB-RS-001 exported");
    assert_eq!(social_card[5], "social_insurance;household");

    // A provincial list: one new item, one restated with a new legal basis, one as it is.
    let provincial = "code,name,item_type,ministry,legal_basis,needs,list\n\
        HN-GA-101,户口迁移证明补办,公共服务,公安部,《中华人民共和国户口登记条例》,household,河南省“跨省通办”事项清单\n\
        KSTB-GA-005,开具户籍类证明,公共服务,公安部,《公安部关于规范户籍证明的通知》,household,河南省“跨省通办”事项清单\n";
    let unchanged = exported.iter().find(|r| r[0] == "KSTB-GA-001").expect("KSTB-GA-001").join(",");
    let list = format!("{provincial}{unchanged}\n");
    let (status, summary) =
        admin.post_raw("/service-items/import", "text/csv; charset=utf-8", list.clone()).await?;
    assert_eq!(status, 200, "{summary}");
    assert_eq!(summary, json!({"created": ["HN-GA-101"], "updated": ["KSTB-GA-005"], "unchanged": 1}));
    let (_, restated) = admin.get("/service-items/KSTB-GA-005").await?;
    assert_eq!(restated["legal_basis"], "《公安部关于规范户籍证明的通知》");
    assert_eq!(restated["source"]["list"], "河南省“跨省通办”事项清单");
    // Importing the same list again changes nothing.
    let (_, again) = admin.post_raw("/service-items/import", "text/csv", list).await?;
    assert_eq!(again, json!({"created": [], "updated": [], "unchanged": 3}));

    // A list with a bad row is refused whole, naming the row; its good rows are not written.
    let bad = "code,name,item_type,ministry,needs,list\n\
        HN-GA-102,居住证签注,公共服务,公安部,household,河南省清单\n\
        HN-GA-103,,审批,公安部,household,河南省清单\n";
    let (status, problem) = admin.post_raw("/service-items/import", "text/csv", bad).await?;
    assert_eq!((status, problem["code"].as_str()), (422, Some("invalid_service_item_list")), "{problem}");
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(
        detail.starts_with("line 3: ")
            && detail.contains("name must not be empty")
            && detail.contains("审批"),
        "{detail}"
    );
    let (status, _) = admin.get("/service-items/HN-GA-102").await?;
    assert_eq!(status, 404, "nothing of a refused list is written");

    // Only platform administrators import; the body must be CSV, and UTF-8.
    let demander = demo.sign_in("demander.guangdong-police").await?;
    let (status, problem) = demander.post_raw("/service-items/import", "text/csv", provincial).await?;
    assert_eq!((status, problem["code"].as_str()), (403, Some("forbidden")), "{problem}");
    let (status, problem) = admin.post_raw("/service-items/import", "application/json", "{}").await?;
    assert_eq!((status, problem["code"].as_str()), (415, Some("unsupported_media_type")), "{problem}");
    let gbk = vec![b'c', b'o', b'd', b'e', b'\n', 0xca, 0xc2, b'\n'];
    let (status, problem) = admin.post_raw("/service-items/import", "text/csv", gbk).await?;
    assert_eq!((status, problem["code"].as_str()), (400, Some("invalid_encoding")), "{problem}");
    // Registering one item records it as registered, by its registrar.
    let (status, item) = admin
        .post(
            "/service-items",
            &json!({"code": "HN-GA-104", "name": "临时身份证明", "item_type": "公共服务", "ministry": "公安部",
                    "needs": ["household"]}),
        )
        .await?;
    assert_eq!(status, 201, "{item}");
    assert_eq!(
        (item["source"]["origin"].as_str(), item["source"]["list"].as_str()),
        (Some("registered"), Some(""))
    );
    let (status, problem) = admin
        .post("/service-items", &json!({"code": "HN-GA-105", "name": "x", "item_type": "审批", "ministry": "公安部", "needs": ["household"]}))
        .await?;
    assert_eq!((status, problem["code"].as_str()), (422, Some("invalid_request")), "{problem}");
    Ok(())
}

#[tokio::test]
async fn catalog_resources_carry_format_open_attribute_class_relations_and_legal_basis() -> anyhow::Result<()>
{
    let demo = Demo::start().await?;
    let admin = demo.sign_in("admin").await?;
    let (_, fund) = admin.get("/catalog/resources/C03-340000-0001").await?;
    assert_eq!(
        (fund["format"].as_str(), fund["open_type"].as_str(), fund["class"].as_str()),
        (Some("database"), Some("not_open"), Some("department"))
    );
    assert_eq!(fund["related_resources"], json!(["A01-410000-0001", "B02-440000-0001"]));
    assert!(fund["legal_basis"].as_str().is_some_and(|b| b.contains("住房公积金管理条例")), "{fund}");
    let (_, household) = admin.get("/catalog/resources/A01-410000-0001").await?;
    assert_eq!(household["class"], "base");

    // A relation must name a resource in the catalog, and a resource not shared its basis.
    let supplier = demo.sign_in("supplier.anhui-housing").await?;
    let mut edit: Value = fund.clone();
    for key in ["version", "supplier"] {
        edit.as_object_mut().map(|o| o.remove(key));
    }
    edit["related_resources"] = json!(["Z99-000000-0001"]);
    let (status, problem) = supplier
        .put("/catalog/resources/C03-340000-0001", &json!({"version": fund["version"], "resource": edit}))
        .await?;
    assert_eq!((status, problem["code"].as_str()), (422, Some("unknown_resource")), "{problem}");
    edit["related_resources"] = json!([]);
    edit["share_type"] = json!("not_shared");
    edit["legal_basis"] = json!("");
    let (status, problem) = supplier
        .put("/catalog/resources/C03-340000-0001", &json!({"version": fund["version"], "resource": edit}))
        .await?;
    assert_eq!((status, problem["code"].as_str()), (422, Some("invalid_request")), "{problem}");
    assert!(problem["detail"].as_str().is_some_and(|d| d.contains("legal_basis")), "{problem}");
    Ok(())
}

const HOUSEHOLD: &str = "A01-410000-0001";
const POLICE_SYSTEM: &str = "广东省公安厅跨省户籍业务系统";

/// A person of the demo's household file inside the Guangdong police's grant (Xinyang, 4115),
/// with a name: (identity number, name).
fn person_in_scope(demo: &Demo) -> anyhow::Result<(String, String)> {
    demo.household_person("4115")
}

/// Objections and ratings taken through every step against the demo on `store` (SQLite when
/// `None`): filed by the consumer, answered by the supplier within working-day deadlines,
/// refused to every other role.
async fn feedback_workflows(store: Option<&str>) -> anyhow::Result<()> {
    let env: Vec<(&str, &str)> = store.map(|url| vec![("TONGBAN_STORE__URL", url)]).unwrap_or_default();
    let demo = Demo::start_with(2000, &env).await?;
    let backend = if store.is_some() { "postgres" } else { "sqlite" };
    let (person, name) = person_in_scope(&demo)?;
    let (_, system) = demo.system(POLICE_SYSTEM)?;
    let police = system.with_headers(&[
        ("x-tongban-service-item", "KSTB-GA-001"),
        ("x-tongban-case-number", "GD-2026-004417"),
        ("x-tongban-operator", "警员0107"),
    ]);
    let answer =
        police.send(reqwest::Method::GET, &format!("/data/{HOUSEHOLD}/records/{person}"), None, None).await?;
    assert_eq!(answer.status, 200, "{backend}: {}", String::from_utf8_lossy(&answer.body));
    let exchange = answer.header("x-tongban-exchange-id").expect("an exchange id");
    let claim = json!({"resource": HOUSEHOLD, "key": person, "claims": {"name": name}});
    let verified = police.send(reqwest::Method::POST, "/data/verify", Some(&claim), None).await?;
    assert_eq!(verified.status, 200);
    let refused = police.send(reqwest::Method::GET, "/data/Z99-000000-0001/records/1", None, None).await?;
    assert!(refused.status >= 400);
    let refused_exchange = refused.header("x-tongban-exchange-id").expect("refusals have ids too");

    let demander = demo.sign_in("demander.guangdong-police").await?;
    let supplier = demo.sign_in("supplier.henan-police").await?;
    let henan_office = demo.sign_in("reviewer.henan").await?;
    let anhui_office = demo.sign_in("reviewer.anhui").await?;
    let operator = demo.sign_in("operator").await?;

    // The consumer objects to the status its answer held. The objection names no person: the
    // gateway filled in the resource, supplier and a digest of the key from the log.
    let objection = json!({"exchange_id": exchange, "item": "status", "description": "户口状态应为迁出，与本地受理材料不一致"});
    let (status, filed) = demander.post("/objections", &objection).await?;
    assert_eq!(status, 201, "{backend}: {filed}");
    assert_eq!((filed["state"].as_str(), filed["resource"].as_str()), (Some("open"), Some(HOUSEHOLD)));
    assert_eq!(filed["supplier"], demo.department_of("supplier.henan-police"));
    assert!(!filed.to_string().contains(&person), "the objection holds no identity number: {filed}");
    let id = filed["id"].as_str().expect("id").to_owned();
    let filed_on = filed["filed_at"].as_str().expect("filed_at")[..10].to_owned();
    let deadline = filed["deadline"].as_str().expect("deadline").to_owned();
    assert!(deadline.as_str() > filed_on.as_str(), "{backend}: due {deadline}, filed {filed_on}");
    // Five working days on: never fewer calendar days, since weekends do not count.
    let (filed_date, due): (chrono::NaiveDate, chrono::NaiveDate) = (filed_on.parse()?, deadline.parse()?);
    assert!((due - filed_date).num_days() >= 5, "{backend}: filed {filed_on}, due {deadline}");

    // A description naming the person is refused: the store never holds the identity number.
    let naming =
        json!({"exchange_id": exchange, "item": "gender", "description": format!("{person} 性别有误")});
    let (status, problem) = demander.post("/objections", &naming).await?;
    assert_eq!((status, problem["code"].as_str()), (422, Some("invalid_request")), "{problem}");

    // The same item of the same answer once; items not in the answer, failed calls and other
    // departments' calls not at all.
    let (status, problem) = demander.post("/objections", &objection).await?;
    assert_eq!((status, problem["code"].as_str()), (409, Some("already_exists")), "{problem}");
    let (status, problem) = demander
        .post("/objections", &json!({"exchange_id": exchange, "item": "marital_status", "description": "错"}))
        .await?;
    assert_eq!((status, problem["code"].as_str()), (422, Some("invalid_request")), "{problem}");
    let (status, problem) = demander
        .post("/objections", &json!({"exchange_id": refused_exchange, "item": "name", "description": "错"}))
        .await?;
    assert_eq!((status, problem["code"].as_str()), (422, Some("not_objectable")), "{problem}");
    let (status, problem) = supplier.post("/objections", &objection).await?;
    assert_eq!(
        (status, problem["code"].as_str()),
        (404, Some("not_found")),
        "a supplier cannot object: {problem}"
    );
    let (status, _) = henan_office.post("/objections", &objection).await?;
    assert_eq!(status, 404, "nor a reviewer");
    let (status, _) = demander
        .post("/objections", &json!({"exchange_id": "0190e0b4-0000-7000-8000-000000000000", "item": "name", "description": "错"}))
        .await?;
    assert_eq!(status, 404, "an exchange that does not exist");
    // A system of the department may file too, on another item.
    let (status, by_system) = system
        .post("/objections", &json!({"exchange_id": exchange, "item": "name", "description": "姓名有误"}))
        .await?;
    assert_eq!(
        (status, by_system["filed_by"].as_str().map(|b| b.starts_with("system:"))),
        (201, Some(true)),
        "{by_system}"
    );

    // Who sees it: both parties, the supplier's province's office, the operator.
    for (who, api, sees) in [
        ("demander", &demander, true),
        ("supplier", &supplier, true),
        ("henan office", &henan_office, true),
        ("operator", &operator, true),
        ("anhui office", &anhui_office, false),
    ] {
        let (status, _) = api.get(&format!("/objections/{id}")).await?;
        assert_eq!(status, if sees { 200 } else { 404 }, "{backend}: {who}");
        let (_, listed) = api.get("/objections").await?;
        let listed = listed["items"].as_array().map_or(0, Vec::len);
        assert_eq!(listed, if sees { 2 } else { 0 }, "{backend}: {who} lists");
    }

    // Overdue the day after the deadline, not on it.
    let after = next_day(&deadline);
    let (_, on_deadline) = henan_office.get(&format!("/objections?overdue_on={deadline}")).await?;
    assert_eq!(on_deadline["items"].as_array().map(Vec::len), Some(0), "{on_deadline}");
    let (_, past) = henan_office.get(&format!("/objections?overdue_on={after}")).await?;
    assert_eq!(past["items"].as_array().map(Vec::len), Some(2), "{past}");

    // The supplier checks a candidate key against the digest, never seeing the key stored.
    let (status, check) =
        supplier.post(&format!("/objections/{id}/key-check"), &json!({"key": person})).await?;
    assert_eq!((status, check["matches"].as_bool()), (200, Some(true)), "{check}");
    let lower = json!({"key": person.to_lowercase()});
    let (_, check) = supplier.post(&format!("/objections/{id}/key-check"), &lower).await?;
    assert_eq!(check["matches"], true, "a check character in lower case is the same key");
    let (_, check) =
        supplier.post(&format!("/objections/{id}/key-check"), &json!({"key": "410000199001011234"})).await?;
    assert_eq!(check["matches"], false);
    let (status, _) = demander.post(&format!("/objections/{id}/key-check"), &json!({"key": person})).await?;
    assert_eq!(status, 403);

    // Only the supplier answers; a rejection needs its reason; an answer is given once.
    let rejected_without_reason = json!({"outcome": "rejected", "reason": " "});
    for (who, api) in [("demander", &demander), ("henan office", &henan_office), ("operator", &operator)] {
        let (status, problem) = api
            .post(&format!("/objections/{id}/answer"), &json!({"outcome": "corrected", "note": "x"}))
            .await?;
        assert_eq!(
            (status, problem["code"].as_str()),
            (403, Some("wrong_role")),
            "{backend}: {who}: {problem}"
        );
    }
    let (status, problem) =
        supplier.post(&format!("/objections/{id}/answer"), &rejected_without_reason).await?;
    assert_eq!((status, problem["code"].as_str()), (422, Some("invalid_request")), "{problem}");
    let (status, answered) = supplier
        .post(
            &format!("/objections/{id}/answer"),
            &json!({"outcome": "corrected", "note": "已核实更正户口状态"}),
        )
        .await?;
    assert_eq!(status, 200, "{answered}");
    assert_eq!(
        (answered["state"].as_str(), answered["answered_late"].as_bool()),
        (Some("corrected"), Some(false))
    );
    let (status, problem) = supplier
        .post(&format!("/objections/{id}/answer"), &json!({"outcome": "rejected", "reason": "重复"}))
        .await?;
    assert_eq!((status, problem["code"].as_str()), (409, Some("already_answered")), "{problem}");
    // The consumer sees the outcome; an answered objection is no longer overdue.
    let (_, seen) = demander.get(&format!("/objections/{id}")).await?;
    assert_eq!(
        (seen["state"].as_str(), seen["answer"].as_str()),
        (Some("corrected"), Some("已核实更正户口状态"))
    );
    let (_, past) = henan_office.get(&format!("/objections?overdue_on={after}")).await?;
    assert_eq!(past["items"].as_array().map(Vec::len), Some(1), "{past}");

    // Ratings: the consuming department rates its grant once a month.
    let (_, in_force) = system.get("/grants/in-force").await?;
    let grant = in_force["items"]
        .as_array()
        .and_then(|g| {
            g.iter().find(|g| g["resource_code"] == HOUSEHOLD && g["service_item"] == "KSTB-GA-001")
        })
        .and_then(|g| g["id"].as_str())
        .expect("the police's household grant")
        .to_owned();
    let (status, problem) = demander.post("/ratings", &json!({"grant_id": grant, "score": 2})).await?;
    assert_eq!(
        (status, problem["code"].as_str()),
        (422, Some("invalid_request")),
        "a poor rating says why: {problem}"
    );
    let (status, problem) =
        demander.post("/ratings", &json!({"grant_id": grant, "score": 6, "tags": ["slow"]})).await?;
    assert_eq!(status, 422, "{problem}");
    for (who, api) in [("supplier", &supplier), ("henan office", &henan_office), ("operator", &operator)] {
        let (status, _) = api.post("/ratings", &json!({"grant_id": grant, "score": 5})).await?;
        assert_eq!(status, 404, "{backend}: {who} cannot rate another department's grant");
    }
    let poor = json!({"grant_id": grant, "score": 2, "tags": ["slow", "wrong_data"], "comment": "高峰期响应超过三秒"});
    let (status, rating) = demander.post("/ratings", &poor).await?;
    assert_eq!(status, 201, "{backend}: {rating}");
    let rating_id = rating["id"].as_str().expect("id").to_owned();
    let task_deadline =
        rating["rectification"]["deadline"].as_str().expect("a rectification task").to_owned();
    assert!(task_deadline > deadline, "ten working days are later than five");
    let (status, problem) = demander.post("/ratings", &json!({"grant_id": grant, "score": 5})).await?;
    assert_eq!((status, problem["code"].as_str()), (409, Some("already_exists")), "once a month: {problem}");
    let (_, overdue) = henan_office.get(&format!("/ratings?overdue_on={}", next_day(&task_deadline))).await?;
    assert_eq!(overdue["items"].as_array().map(Vec::len), Some(1), "{overdue}");
    let (_, open) = supplier.get("/ratings?task=open").await?;
    assert_eq!(open["items"][0]["id"], rating_id.as_str());
    let (status, problem) =
        demander.post(&format!("/ratings/{rating_id}/rectification"), &json!({"answer": "x"})).await?;
    assert_eq!((status, problem["code"].as_str()), (403, Some("wrong_role")), "{problem}");
    let (status, _) = anhui_office.get(&format!("/ratings/{rating_id}")).await?;
    assert_eq!(status, 404);
    let (status, rectified) = supplier
        .post(&format!("/ratings/{rating_id}/rectification"), &json!({"answer": "已扩容查询节点"}))
        .await?;
    assert_eq!(status, 200, "{rectified}");
    assert_eq!(rectified["rectification"]["answer"], "已扩容查询节点");
    let (status, problem) =
        supplier.post(&format!("/ratings/{rating_id}/rectification"), &json!({"answer": "again"})).await?;
    assert_eq!((status, problem["code"].as_str()), (409, Some("already_answered")), "{problem}");
    let (_, answered) = supplier.get("/ratings?task=answered").await?;
    assert_eq!(answered["items"].as_array().map(Vec::len), Some(1));
    Ok(())
}

/// The day after `day` (YYYY-MM-DD).
fn next_day(day: &str) -> String {
    let date: chrono::NaiveDate = day.parse().expect("a date");
    (date + chrono::Duration::days(1)).to_string()
}

#[tokio::test]
async fn objections_and_ratings_run_their_workflows_on_sqlite() -> anyhow::Result<()> {
    feedback_workflows(None).await
}

#[tokio::test]
async fn objections_and_ratings_run_their_workflows_on_postgres() -> anyhow::Result<()> {
    match tongban_e2e::postgres_store("offices").await? {
        Some(url) => feedback_workflows(Some(&url)).await,
        None => Ok(()),
    }
}

/// The workbook at `path` as openpyxl reads it: sheet name → rows of cells. `None` when the
/// test script's Python is not configured (and not required).
fn read_workbook(path: &std::path::Path) -> anyhow::Result<Option<serde_json::Map<String, Value>>> {
    let Some(python) = std::env::var_os("TONGBAN_PYTHON") else {
        anyhow::ensure!(
            std::env::var_os("TONGBAN_REQUIRE_CLIENTS").is_none(),
            "tests/run.sh sets TONGBAN_PYTHON"
        );
        return Ok(None);
    };
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/read_xlsx.py");
    let output = std::process::Command::new(python).arg(script).arg(path).output()?;
    anyhow::ensure!(output.status.success(), "openpyxl: {}", String::from_utf8_lossy(&output.stderr));
    Ok(serde_json::from_slice::<Value>(&output.stdout)?.as_object().cloned())
}

/// A report row's cells as the workbook holds them: numbers as numbers, absent values empty.
fn expected_cells(row: &Value) -> Vec<Value> {
    let reasons = row["refusals_by_reason"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| format!("{k}:{v}")).collect::<Vec<_>>().join("; "))
        .unwrap_or_default();
    let mut cells = vec![row["code"].clone(), row["name"].clone()];
    for key in ["calls", "succeeded", "refused", "failed"] {
        cells.push(json!(row[key].as_f64()));
    }
    cells.push(json!(reasons));
    for key in [
        "p95_ms",
        "objections",
        "objections_open",
        "ratings",
        "mean_score",
        "poor_ratings",
        "overdue_demands",
    ] {
        cells.push(json!(row[key].as_f64()));
    }
    cells
}

fn same_cells(got: &[Value], expected: &[Value]) -> bool {
    got.len() >= expected.len()
        && got.iter().zip(expected).all(|(g, e)| match (g.as_f64(), e.as_f64()) {
            (Some(g), Some(e)) => (g - e).abs() < 1e-9,
            _ => g == e || (g.is_null() && e.as_str() == Some("")),
        })
}

#[tokio::test]
async fn the_monthly_report_counts_what_the_log_and_the_store_hold() -> anyhow::Result<()> {
    let demo = Demo::start().await?;
    let (person, _) = person_in_scope(&demo)?;
    let (_, system) = demo.system(POLICE_SYSTEM)?;
    let with_item = |item: &str| {
        system.with_headers(&[
            ("x-tongban-service-item", item),
            ("x-tongban-case-number", "GD-2026-005120"),
            ("x-tongban-operator", "警员0200"),
        ])
    };
    let granted = with_item("KSTB-GA-001");
    let mut exchange = None;
    for _ in 0..4 {
        let answer = granted
            .send(reqwest::Method::GET, &format!("/data/{HOUSEHOLD}/records/{person}"), None, None)
            .await?;
        assert_eq!(answer.status, 200);
        exchange = answer.header("x-tongban-exchange-id");
    }
    // Calls under a purpose the grant does not serve are refused, and counted under it.
    let unserved = with_item("KSTB-RS-002");
    for _ in 0..3 {
        let (status, _) = unserved.get(&format!("/data/{HOUSEHOLD}/records/{person}")).await?;
        assert_eq!(status, 403);
    }
    let demander = demo.sign_in("demander.guangdong-police").await?;
    let (status, _) = demander
        .post("/objections", &json!({"exchange_id": exchange, "item": "status", "description": "状态有误"}))
        .await?;
    assert_eq!(status, 201);
    let (_, in_force) = system.get("/grants/in-force").await?;
    let grant = in_force["items"]
        .as_array()
        .and_then(|g| {
            g.iter().find(|g| g["resource_code"] == HOUSEHOLD && g["service_item"] == "KSTB-GA-001")
        })
        .and_then(|g| g["id"].as_str())
        .expect("the household grant")
        .to_owned();
    let (status, _) =
        demander.post("/ratings", &json!({"grant_id": grant, "score": 1, "tags": ["wrong_data"]})).await?;
    assert_eq!(status, 201);

    let month = (chrono::Utc::now() + chrono::Duration::hours(8)).format("%Y-%m").to_string();
    let operator = demo.sign_in("operator").await?;
    let (status, report) = operator.get(&format!("/reports/monthly?month={month}")).await?;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["month"], month.as_str());

    // Counts per service item and department, against the records the log wrote.
    let records = demo.exchange_records()?;
    let of_item =
        |item: &str| -> Vec<&Value> { records.iter().filter(|r| r["service_item"] == item).collect() };
    let row = |table: &str, code: &str| -> Value {
        report[table]
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["code"] == code))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let served = row("service_items", "KSTB-GA-001");
    assert_eq!(served["calls"].as_u64(), Some(of_item("KSTB-GA-001").len() as u64), "{served}");
    assert_eq!(served["name"], "工作调动户口迁移");
    assert_eq!((served["objections"].as_u64(), served["objections_open"].as_u64()), (Some(1), Some(1)));
    assert_eq!(
        (served["ratings"].as_u64(), served["mean_score"].as_f64(), served["poor_ratings"].as_u64()),
        (Some(1), Some(1.0), Some(1))
    );
    assert!(served["p95_ms"].as_f64().is_some(), "{served}");
    let refused = row("service_items", "KSTB-RS-002");
    let refused_records = of_item("KSTB-RS-002");
    assert_eq!((refused["calls"].as_u64(), refused["refused"].as_u64()), (Some(3), Some(3)), "{refused}");
    let mut reasons = std::collections::BTreeMap::<String, u64>::new();
    for record in &refused_records {
        for reason in record["reasons"].as_array().into_iter().flatten() {
            let code = reason.as_str().or_else(|| reason["code"].as_str()).unwrap_or_default();
            *reasons.entry(code.to_owned()).or_default() += 1;
        }
    }
    assert!(!reasons.is_empty(), "the refusals carry reasons: {refused_records:?}");
    assert_eq!(refused["refusals_by_reason"], json!(reasons), "{refused}");
    let police_department = demo.department_of("demander.guangdong-police");
    let department = row("departments", &police_department);
    let department_calls = records.iter().filter(|r| r["department"] == police_department.as_str()).count();
    assert_eq!(department["calls"].as_u64(), Some(department_calls as u64), "{department}");
    assert_eq!(department["objections"].as_u64(), Some(1));
    let household = row("resources", HOUSEHOLD);
    assert_eq!(
        (household["objections"].as_u64(), household["open"].as_u64(), household["ratings"].as_u64()),
        (Some(1), Some(1), Some(1))
    );

    // CSV: one table, with the headers offices read.
    let csv = operator
        .send(
            reqwest::Method::GET,
            &format!("/reports/monthly?month={month}&format=csv&table=resources"),
            None,
            None,
        )
        .await?;
    assert!(csv.content_type.starts_with("text/csv"));
    let text = String::from_utf8(csv.body)?;
    assert!(text.starts_with("\u{feff}资源编码,资源名称,提供部门,调用次数,纠错"), "{text}");
    assert!(text.lines().any(|l| l.starts_with(HOUSEHOLD)), "{text}");

    // XLSX, read back by openpyxl: a sheet per table, titled, with the JSON's cells.
    let xlsx = operator
        .send(reqwest::Method::GET, &format!("/reports/monthly?month={month}&format=xlsx"), None, None)
        .await?;
    assert_eq!(xlsx.status, 200);
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("report.xlsx");
    std::fs::write(&file, &xlsx.body)?;
    if let Some(sheets) = read_workbook(&file)? {
        assert_eq!(sheets.keys().cloned().collect::<Vec<_>>(), ["按事项", "按部门", "资源质量"]);
        let items = sheets["按事项"].as_array().cloned().unwrap_or_default();
        assert_eq!(items[0][0], format!("跨省通办数据共享月度汇总表（{month}）"));
        assert_eq!(items[3][0], "编码");
        assert_eq!(items[3][7], "P95时延(毫秒)");
        let body: Vec<&Value> = items.iter().skip(4).collect();
        assert_eq!(body.len(), report["service_items"].as_array().map_or(0, Vec::len));
        for expected in report["service_items"].as_array().into_iter().flatten() {
            let cells = expected_cells(expected);
            let found = body.iter().any(|r| r.as_array().is_some_and(|r| same_cells(r, &cells)));
            assert!(found, "row {cells:?} in {body:?}");
        }

        // The command line writes the same workbook from the configuration's store and log.
        let written = dir.path().join("cli.xlsx");
        let output = std::process::Command::new(tongban_e2e::tongban_bin())
            .args(["report", "--month", &month, "--config"])
            .arg(demo.data_dir().join("tongban.toml"))
            .arg("--output")
            .arg(&written)
            .output()?;
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let from_cli = read_workbook(&written)?.unwrap_or_default();
        assert_eq!(from_cli["按事项"].as_array().map(|rows| rows[3..].to_vec()), Some(items[3..].to_vec()));
    }

    // Departments' people do not read reports; a month is a month.
    let (status, _) = demander.get(&format!("/reports/monthly?month={month}")).await?;
    assert_eq!(status, 403);
    // A data office reads what its province's departments took part in, and no more.
    let henan = demo.sign_in("reviewer.henan").await?;
    let (status, own) = henan.get(&format!("/reports/monthly?month={month}")).await?;
    assert_eq!((status, own["province"].as_str()), (200, Some("41")), "{own}");
    let codes = |table: &str| -> Vec<String> {
        own[table]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["code"].as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(
        codes("resources"),
        [HOUSEHOLD, "E01-410000-0001", "E02-410000-0001", "E05-410000-0001"],
        "only Henan's resources"
    );
    assert!(codes("departments").iter().all(|code| &code[2..4] == "41"), "only Henan's departments: {own}");
    let item = own["service_items"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["code"] == "KSTB-GA-001"))
        .cloned();
    assert_eq!(item.map(|r| r["objections"].clone()), Some(json!(1)), "the objection on Henan's data counts");
    let (_, anhui) =
        demo.sign_in("reviewer.anhui").await?.get(&format!("/reports/monthly?month={month}")).await?;
    assert!(
        anhui["resources"].as_array().is_some_and(|r| r.iter().all(|r| r["code"] != HOUSEHOLD)),
        "{anhui}"
    );
    assert!(
        anhui["service_items"].as_array().is_some_and(|r| r.iter().all(|r| r["objections"] == 0)),
        "{anhui}"
    );
    let (status, _) =
        demo.sign_in("supplier.henan-police").await?.get(&format!("/reports/monthly?month={month}")).await?;
    assert_eq!(status, 403);
    let (status, problem) = operator.get("/reports/monthly?month=2026-13").await?;
    assert_eq!((status, problem["code"].as_str()), (422, Some("invalid_month")), "{problem}");
    Ok(())
}
