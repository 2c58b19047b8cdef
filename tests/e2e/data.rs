//! The data plane end to end: verification, record look-up and SQL against the demo's grants,
//! with the attack suite in `tests/attacks/sql.tsv` checked against the dataset itself.

use std::collections::{HashMap, HashSet};
use std::fs::File;

use anyhow::Context;
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Value, json};
use tongban_e2e::{Api, Demo};
use tongban_policy::catalog::MaskRule;

pub(crate) const POLICE_SYSTEM: &str = "广东省公安厅跨省户籍业务系统";
pub(crate) const HOUSEHOLD: &str = "A01-410000-0001";
const SCOPE: &str = "4115";
/// People in the demo's household file: enough that the grant's county scope holds hundreds.
pub(crate) const ROWS: u64 = 20_000;

fn purpose(service_item: &str) -> [(&'static str, String); 3] {
    [
        ("x-tongban-service-item", service_item.to_owned()),
        ("x-tongban-case-number", "GD-2026-000731".to_owned()),
        ("x-tongban-operator", "警员0031".to_owned()),
    ]
}

pub(crate) fn with_purpose(api: &Api, service_item: &str) -> Api {
    let headers = purpose(service_item);
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    api.with_headers(&headers)
}

/// One person of the household file, raw.
#[derive(Debug, Clone)]
struct Person {
    id_number: String,
    name: Option<String>,
    division_code: Option<String>,
    status: Option<String>,
    denied: Vec<String>,
}

/// The household file as the test reads it, without the gateway.
pub(crate) struct Truth {
    people: Vec<Person>,
    /// Approved rows: the granted columns, masked, of rows in scope.
    approved: Vec<HashMap<&'static str, String>>,
    raw_ids: HashSet<String>,
    raw_names: HashSet<String>,
    denied_values: HashSet<String>,
    out_of_scope_divisions: HashSet<String>,
    out_of_scope_masked_ids: HashSet<String>,
}

fn text(batch: &RecordBatch, name: &str, row: usize) -> Option<String> {
    let column = batch.column_by_name(name)?;
    if column.is_null(row) {
        return None;
    }
    let column = arrow::compute::cast(column, &DataType::Utf8).ok()?;
    Some(column.as_string::<i32>().value(row).to_owned())
}

impl Truth {
    pub(crate) fn read(demo: &Demo) -> anyhow::Result<Truth> {
        let file = File::open(demo.data_dir().join("datasets/household.parquet"))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)?.build()?;
        let denied_columns = [
            "household_number",
            "address",
            "registration_authority",
            "marital_status",
            "ethnicity",
            "relation_to_head",
        ];
        let mut people = Vec::new();
        for batch in reader {
            let batch = batch?;
            for row in 0..batch.num_rows() {
                people.push(Person {
                    id_number: text(&batch, "id_number", row).context("id")?,
                    name: text(&batch, "name", row),
                    division_code: text(&batch, "division_code", row),
                    status: text(&batch, "status", row),
                    denied: denied_columns.iter().filter_map(|c| text(&batch, c, row)).collect(),
                });
            }
        }
        let in_scope = |p: &Person| p.division_code.as_deref().is_some_and(|d| d.starts_with(SCOPE));
        let approved: Vec<HashMap<&str, String>> = people
            .iter()
            .filter(|p| in_scope(p))
            .map(|p| {
                let mut row = HashMap::new();
                row.insert("id_number", MaskRule::IdNumber.apply(&p.id_number).into_owned());
                if let Some(name) = &p.name {
                    row.insert("name", MaskRule::Name.apply(name).into_owned());
                }
                if let Some(code) = &p.division_code {
                    row.insert("division_code", code.clone());
                }
                if let Some(status) = &p.status {
                    row.insert("status", status.clone());
                }
                row
            })
            .collect();
        Ok(Truth {
            raw_ids: people.iter().map(|p| p.id_number.clone()).collect(),
            raw_names: people
                .iter()
                .filter_map(|p| p.name.clone())
                .filter(|n| n.chars().count() > 1)
                .collect(),
            // Values of the denied columns that no granted column can hold.
            // Values of the denied columns that no granted column or count can hold: short
            // numeric codes (marital status and relation to the head are coded) could be a count.
            denied_values: people
                .iter()
                .flat_map(|p| p.denied.iter().cloned())
                .filter(|v| v.chars().count() > 1 && !(v.len() < 8 && v.bytes().all(|b| b.is_ascii_digit())))
                .collect(),
            out_of_scope_divisions: people
                .iter()
                .filter(|p| !in_scope(p))
                .filter_map(|p| p.division_code.clone())
                .filter(|d| !d.starts_with(SCOPE))
                .collect(),
            // Masked numbers can coincide; only those no in-scope person shares tell of a row out
            // of scope.
            out_of_scope_masked_ids: people
                .iter()
                .filter(|p| !in_scope(p))
                .map(|p| MaskRule::IdNumber.apply(&p.id_number).into_owned())
                .filter(|masked| !approved.iter().any(|a| a.get("id_number") == Some(masked)))
                .collect(),
            approved,
            people,
        })
    }

    fn in_scope(&self) -> impl Iterator<Item = &Person> {
        self.people.iter().filter(|p| p.division_code.as_deref().is_some_and(|d| d.starts_with(SCOPE)))
    }

    fn out_of_scope(&self) -> &Person {
        self.people
            .iter()
            .find(|p| p.division_code.as_deref().is_some_and(|d| !d.starts_with("41")))
            .expect("people outside Henan")
    }

    /// Problems with one cell of a successful answer.
    fn leaks_in(&self, cell: &str) -> Option<String> {
        if self.raw_ids.iter().any(|id| cell.contains(id.as_str())) {
            return Some(format!("raw identity number in {cell:?}"));
        }
        if self.raw_names.contains(cell) {
            return Some(format!("raw name {cell:?}"));
        }
        if self.denied_values.contains(cell) {
            return Some(format!("value of a denied column {cell:?}"));
        }
        if self.out_of_scope_divisions.contains(cell) || self.out_of_scope_masked_ids.contains(cell) {
            return Some(format!("out-of-scope row's value {cell:?}"));
        }
        None
    }

    fn agrees_with_an_approved_row(&self, row: &serde_json::Map<String, Value>) -> bool {
        let granted: Vec<(&str, Option<String>)> = ["id_number", "name", "division_code", "status"]
            .into_iter()
            .filter(|c| row.contains_key(*c))
            .map(|c| (c, cell(&row[c])))
            .collect();
        self.approved.iter().any(|approved| granted.iter().all(|(c, v)| approved.get(c).cloned() == *v))
    }
}

fn cell(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

pub(crate) fn fill(query: &str, truth: &Truth, dataset_path: &str) -> String {
    let person =
        truth.in_scope().find(|p| p.name.as_deref().is_some_and(|n| n.chars().count() >= 2)).expect("person");
    let name = person.name.clone().expect("name");
    let out = truth.out_of_scope();
    query
        .replace("\\n", "\n")
        .replace("{in_id}", &person.id_number)
        .replace("{in_name}", &name)
        .replace("{in_given}", &name.chars().skip(1).collect::<String>())
        .replace("{in_birth}", &person.id_number[6..14])
        .replace("{out_id}", &out.id_number)
        .replace("{out_division}", out.division_code.as_deref().expect("division"))
        .replace("{out_prefix6}", &out.id_number[..6])
        .replace("{dataset_path}", dataset_path)
}

/// The attack suite's cases: (expectation, query with placeholders).
pub(crate) fn attack_cases() -> Vec<(&'static str, &'static str)> {
    include_str!("../attacks/sql.tsv")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split_once('\t').unwrap_or((l, "")))
        .collect()
}

/// Asks `api` for `sql`, waiting whenever the grant's rate (10 calls a second) says so, as any
/// client would.
pub(crate) async fn sql_answer(api: &Api, sql: &str) -> anyhow::Result<(u16, Value)> {
    loop {
        let (status, body) = api.post("/data/sql", &json!({ "query": sql })).await?;
        if status != 429 {
            return Ok((status, body));
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Whether an attack's answer meets its expectation (`tests/attacks/sql.tsv`): its outcome,
/// `refused` or `answered`, or every way it fails. Every answer is checked for leaks,
/// whatever the expectation.
pub(crate) fn judge(expect: &str, status: u16, body: &Value, truth: &Truth) -> Result<&'static str, String> {
    let mut failures = Vec::new();
    if status >= 500 {
        return Err(format!("server error {status}: {body}"));
    }
    if status != 200 {
        if !(400..500).contains(&status) || body["code"].as_str().is_none() {
            failures.push(format!("refusal without a problem code: {status} {body}"));
        }
        if matches!(expect, "rows" | "count") {
            failures.push(format!("refused ({status} {}): {}", body["code"], body["detail"]));
        }
        return if failures.is_empty() { Ok("refused") } else { Err(failures.join("; ")) };
    }
    let Some(rows) = body["rows"].as_array() else { return Err(format!("no rows in {body}")) };
    let leak = rows
        .iter()
        .filter_map(Value::as_object)
        .flat_map(|row| row.values())
        .find_map(|value| cell(value).and_then(|c| truth.leaks_in(&c)));
    if let Some(leak) = leak {
        failures.push(leak);
    }
    match expect {
        "refused" => failures.push(format!("answered with {} rows", rows.len())),
        "none" if !rows.is_empty() => failures.push(format!("answered with {} rows", rows.len())),
        "rows" => {
            if rows.is_empty() {
                failures.push("no rows".into());
            }
            if let Some(row) =
                rows.iter().find(|row| row.as_object().is_none_or(|r| !truth.agrees_with_an_approved_row(r)))
            {
                failures.push(format!("row matches no approved row: {row}"));
            }
        }
        "count" => {
            let in_scope_count = truth.approved.len();
            let value =
                rows.first().and_then(|r| r.as_object()).and_then(|r| r.values().next()).and_then(cell);
            if value.as_deref() != Some(in_scope_count.to_string().as_str()) {
                failures.push(format!("count {value:?}, expected {in_scope_count}"));
            }
        }
        _ => {}
    }
    if failures.is_empty() { Ok("answered") } else { Err(failures.join("; ")) }
}

#[tokio::test]
async fn sql_attacks_get_only_approved_masked_in_scope_data() -> anyhow::Result<()> {
    let demo = Demo::start_with(ROWS, &[("TONGBAN_DATA__SQL_TIMEOUT_MS", "3000")]).await?;
    let truth = Truth::read(&demo)?;
    let in_scope_count = truth.approved.len();
    assert!(in_scope_count > 100, "the scope holds {in_scope_count} people");
    let (_, police) = demo.system(POLICE_SYSTEM)?;
    let police = with_purpose(&police, "KSTB-GA-001");
    let dataset_path = demo.data_dir().join("datasets/household.parquet").display().to_string();

    let cases = attack_cases();
    assert!(cases.len() >= 150, "{} attack queries", cases.len());
    let mut failures = Vec::new();
    let mut outcomes: HashMap<&str, usize> = HashMap::new();
    for (expect, query) in &cases {
        let sql = fill(query, &truth, &dataset_path);
        let (status, body) = sql_answer(&police, &sql).await?;
        match judge(expect, status, &body, &truth) {
            Ok(outcome) => *outcomes.entry(outcome).or_default() += 1,
            Err(why) => failures.push(format!("[{expect}] {query}\n    {why}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} attacks failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    eprintln!("{} attacks: {outcomes:?}", cases.len());

    // Oversized and deeply nested queries are refused with codes of their own.
    let long = format!("SELECT * FROM household WHERE {}", vec!["status = 'x'"; 2000].join(" OR "));
    let (status, body) = police.post("/data/sql", &json!({ "query": long })).await?;
    assert_eq!((status, body["code"].as_str()), (422, Some("query_too_long")));
    let nested = format!("SELECT {}1{} FROM household", "(".repeat(300), ")".repeat(300));
    let (status, _) = police.post("/data/sql", &json!({ "query": nested })).await?;
    assert_eq!(status, 422);
    // The gateway is still healthy after the bombs.
    let (status, _) = police.post("/data/sql", &json!({"query": "SELECT count(*) FROM household"})).await?;
    assert_eq!(status, 200);
    Ok(())
}

/// Queries past the sandbox's bounds on terms and tables read are refused before they are
/// planned, and queries at the bounds are answered. Planning a chain at the bound takes about
/// 3 s in a debug build, and the time limit covers planning, so this gateway has a long one.
#[tokio::test]
async fn queries_past_the_bounds_are_refused_before_planning_and_at_the_bounds_answered() -> anyhow::Result<()>
{
    let demo = Demo::start_with(ROWS, &[("TONGBAN_DATA__SQL_TIMEOUT_MS", "60000")]).await?;
    let (_, police) = demo.system(POLICE_SYSTEM)?;
    let police = with_purpose(&police, "KSTB-GA-001");
    // Chains parse to trees as deep as they are long, which the planner copies and drops
    // recursively: 5,000 additions in 10 KB once overflowed a worker's stack and aborted the
    // gateway. Over the bound they are refused and at it answered; so are joins over and at
    // the bound on tables read (1,000 tables once took seconds of planning).
    let chain = |terms: usize| format!("SELECT {} AS total", vec!["1"; terms].join("+"));
    let (status, body) = police.post("/data/sql", &json!({ "query": chain(5_000) })).await?;
    assert_eq!((status, body["code"].as_str()), (422, Some("query_too_complex")), "{body}");
    let (status, body) = police.post("/data/sql", &json!({ "query": chain(1_001) })).await?;
    assert_eq!((status, body["rows"][0]["total"].as_u64()), (200, Some(1_001)), "{body}");
    let join = |tables: usize| {
        let tables: Vec<String> = (0..tables).map(|i| format!("household t{i}")).collect();
        format!("SELECT count(*) AS n FROM {} WHERE false", tables.join(", "))
    };
    let (status, body) = police.post("/data/sql", &json!({ "query": join(1_000) })).await?;
    assert_eq!((status, body["code"].as_str()), (422, Some("query_too_complex")), "{body}");
    let (status, body) = police.post("/data/sql", &json!({ "query": join(32) })).await?;
    assert_eq!((status, body["rows"][0]["n"].as_u64()), (200, Some(0)), "{body}");
    let (status, body) = police.post("/data/sql", &json!({ "query": join(33) })).await?;
    assert_eq!((status, body["code"].as_str()), (422, Some("query_too_complex")), "{body}");
    // Forty common table expressions, each reading the one before twice: 2 KB that expand to
    // 2^40 readings, which the planner once worked on without end.
    let mut doubling = "WITH a0 AS (SELECT status AS x FROM household)".to_owned();
    for level in 1..=40 {
        doubling.push_str(&format!(
            ", a{level} AS (SELECT p.x AS x FROM a{} p, a{} q)",
            level - 1,
            level - 1
        ));
    }
    doubling.push_str(" SELECT count(*) FROM a40");
    let (status, body) = police.post("/data/sql", &json!({ "query": doubling })).await?;
    assert_eq!((status, body["code"].as_str()), (422, Some("query_too_complex")), "{body}");
    let (status, _) = police.post("/data/sql", &json!({"query": "SELECT count(*) FROM household"})).await?;
    assert_eq!(status, 200, "the gateway is still healthy after the bombs");
    Ok(())
}

/// SQL runs in a bounded number of slots, on threads of its own: with one slot taken by a
/// query that runs until its time limit, another query waits for the queue time and is refused
/// 503 `sql_busy` (recorded like any refusal), verifications are answered meanwhile, and the
/// slot is free again once the long query is stopped.
#[tokio::test]
async fn sql_runs_in_bounded_slots_apart_from_verification() -> anyhow::Result<()> {
    let demo = Demo::start_with(
        ROWS,
        &[
            ("TONGBAN_DATA__SQL_TIMEOUT_MS", "3000"),
            ("TONGBAN_DATA__SQL_CONCURRENCY", "1"),
            ("TONGBAN_DATA__SQL_QUEUE_MS", "300"),
            ("TONGBAN_SERVER__METRICS_TOKEN", "scrape-token-for-tests"),
        ],
    )
    .await?;
    let truth = Truth::read(&demo)?;
    let (_, system) = demo.system(POLICE_SYSTEM)?;
    let police = with_purpose(&system, "KSTB-GA-001");
    let slow = json!({"query": "SELECT count(*) FROM household a, household b, household c, household d"});
    let long_query = {
        let police = police.clone();
        tokio::spawn(async move { police.post("/data/sql", &slow).await })
    };
    until_sql_running(&demo).await?;

    let started = std::time::Instant::now();
    let refused = police
        .send(reqwest::Method::POST, "/data/sql", Some(&json!({"query": "SELECT 1 AS one"})), None)
        .await?;
    assert_eq!(refused.status, 503);
    let problem: Value = serde_json::from_slice(&refused.body)?;
    assert_eq!(problem["code"], "sql_busy", "{problem}");
    assert_eq!(refused.header("retry-after").as_deref(), Some("1"));
    assert!(started.elapsed() >= std::time::Duration::from_millis(300), "it waited for a slot");

    let sql_gauges = || sql_gauges(&demo);
    assert_eq!(sql_gauges().await?, (Some(1.0), Some(0.0)), "the long query holds the one slot");

    let person = truth.in_scope().find(|p| p.name.is_some()).expect("person").clone();
    let claims = json!({"resource": HOUSEHOLD, "key": person.id_number, "claims": {"name": person.name}});
    let (status, body) = police.post("/data/verify", &claims).await?;
    assert_eq!((status, &body["results"]["name"]), (200, &json!("match")), "{body}");

    let (status, body) = long_query.await??;
    assert_eq!((status, body["code"].as_str()), (422, Some("query_timeout")), "{body}");
    let (status, body) = police.post("/data/sql", &json!({"query": "SELECT 1 AS one"})).await?;
    assert_eq!((status, &body["rows"][0]["one"]), (200, &json!(1)), "{body}");
    assert_eq!(sql_gauges().await?, (Some(0.0), Some(0.0)));

    let records = demo.exchange_records()?;
    assert!(
        records.iter().any(|r| r["status"] == 503 && r["code"] == "sql_busy" && r["operation"] == "sql"),
        "the refused query is recorded"
    );
    assert!(records.iter().any(|r| r["code"] == "query_timeout"));
    Ok(())
}

#[tokio::test]
async fn verification_and_look_up_answer_only_what_is_granted() -> anyhow::Result<()> {
    let demo = Demo::start_with(ROWS, &[]).await?;
    let truth = Truth::read(&demo)?;
    let (_, system) = demo.system(POLICE_SYSTEM)?;
    let police = with_purpose(&system, "KSTB-GA-001");
    let person = truth.in_scope().find(|p| p.name.is_some() && p.status.is_some()).expect("person").clone();
    let name = person.name.clone().expect("name");

    // Verification: match / no match per claim, never a stored value.
    let claims = json!({"resource": HOUSEHOLD, "key": person.id_number,
        "claims": {"name": name, "status": "不存在的状态"}});
    let (status, body) = police.post("/data/verify", &claims).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"resource": HOUSEHOLD, "record_found": true,
        "results": {"name": "match", "status": "no_match"}})
    );
    let lower_x = person.id_number.to_lowercase();
    let (status, body) = police
        .post("/data/verify", &json!({"resource": HOUSEHOLD, "key": lower_x, "claims": {"name": name}}))
        .await?;
    assert_eq!((status, body["results"]["name"].as_str()), (200, Some("match")));

    // Look-up: the granted items, masked.
    let (status, body) = police.get(&format!("/data/{HOUSEHOLD}/records/{}", person.id_number)).await?;
    assert_eq!(status, 200, "{body}");
    let record = &body["records"][0];
    assert_eq!(record["id_number"], MaskRule::IdNumber.apply(&person.id_number).as_ref());
    assert_eq!(record["name"], MaskRule::Name.apply(&name).as_ref());
    assert_eq!(record["status"], person.status.clone().expect("status"));
    assert_eq!(record.as_object().map(|r| r.len()), Some(4), "only granted items: {record}");
    let (status, body) =
        police.get(&format!("/data/{HOUSEHOLD}/records/{}?items=name,status", person.id_number)).await?;
    assert_eq!((status, body["records"][0].as_object().map(|r| r.len())), (200, Some(2)));

    // A record out of the grant's rows looks exactly like one that does not exist.
    let outsider = truth.out_of_scope();
    let (status, out_of_scope) =
        police.get(&format!("/data/{HOUSEHOLD}/records/{}", outsider.id_number)).await?;
    assert_eq!((status, out_of_scope["code"].as_str()), (404, Some("record_not_found")));
    let absent = tongban_policy::IdNumber::parse("11010519491231002X")?;
    let (status, missing) = police.get(&format!("/data/{HOUSEHOLD}/records/{absent}")).await?;
    assert_eq!((status, &missing["detail"]), (404, &out_of_scope["detail"]));
    let (status, body) = police
        .post(
            "/data/verify",
            &json!({"resource": HOUSEHOLD, "key": outsider.id_number, "claims": {"name": "x"}}),
        )
        .await?;
    assert_eq!((status, &body["record_found"]), (200, &json!(false)));

    // Refusals carry their reasons.
    let refused = |status: u16, body: &Value, code: &str, reason: Option<&str>| {
        assert_eq!(
            (status, body["code"].as_str()),
            (if code == "access_denied" { 403 } else { status }, Some(code)),
            "{body}"
        );
        if let Some(reason) = reason {
            let reasons: Vec<&str> =
                body["reasons"].as_array().into_iter().flatten().filter_map(|r| r["code"].as_str()).collect();
            assert!(reasons.contains(&reason), "{reason} not in {body}");
        }
    };
    let path = format!("/data/{HOUSEHOLD}/records/{}", person.id_number);
    let (status, body) = police.get(&format!("{path}?items=marital_status")).await?;
    refused(status, &body, "access_denied", Some("items_not_granted"));
    let (status, body) = police
        .post(
            "/data/verify",
            &json!({"resource": HOUSEHOLD, "key": person.id_number, "claims": {"gender": "男"}}),
        )
        .await?;
    refused(status, &body, "access_denied", Some("items_not_granted"));
    let (status, body) = with_purpose(&system, "KSTB-GA-003").get(&path).await?;
    refused(status, &body, "access_denied", Some("wrong_purpose"));
    let (status, body) = system.get(&path).await?;
    assert_eq!((status, body["code"].as_str()), (400, Some("purpose_required")));
    assert_eq!(body["reasons"].as_array().map(Vec::len), Some(3));
    let (_, other) = demo.system("河南省社保经办系统")?;
    let (status, body) = with_purpose(&other, "KSTB-GA-001").get(&path).await?;
    refused(status, &body, "access_denied", Some("no_grant"));
    let (_, fund) = demo.system("广州公积金业务系统")?;
    let (status, body) = with_purpose(&fund, "KSTB-JS-004")
        .post("/data/sql", &json!({"query": "SELECT count(*) FROM housing_fund"}))
        .await?;
    refused(status, &body, "access_denied", Some("operation_not_offered"));

    // People use the management API; data calls are made by systems.
    let reviewer = demo.sign_in("reviewer.henan").await?;
    let (status, _) = with_purpose(&reviewer, "KSTB-GA-001").get(&path).await?;
    assert_eq!(status, 403);
    let (status, _) = with_purpose(&demo.anonymous(), "KSTB-GA-001").get(&path).await?;
    assert_eq!(status, 401);

    // Suspending the grant stops calls at once; resuming restores them.
    let admin = demo.sign_in("reviewer.henan").await?;
    let (id, version, _) = police_grant(&admin).await?;
    let change = |version: &Value, action: &str| json!({"version": version, "action": action, "reason": "核查调用异常"});
    let (status, changed) =
        admin.post(&format!("/grants/{id}/changes"), &change(&version, "suspend")).await?;
    assert_eq!(status, 200, "{changed}");
    let (status, body) = police.get(&path).await?;
    refused(status, &body, "access_denied", Some("grant_suspended"));
    let (status, _) =
        admin.post(&format!("/grants/{id}/changes"), &change(&changed["version"], "resume")).await?;
    assert_eq!(status, 200);
    assert_eq!(police.get(&path).await?.0, 200);

    // Bad input gets problem documents, never a server error.
    let verify = |body: &'static str| police.post_raw("/data/verify", "application/json", body);
    let (status, body) = verify("{\"resource\": ").await?;
    assert_eq!((status, body["code"].as_str()), (400, Some("malformed_json")));
    let (status, body) = verify("{\"resource\": 1, \"key\": [], \"claims\": {}}").await?;
    assert_eq!((status, body["code"].as_str()), (422, Some("invalid_body")));
    let (status, body) =
        verify("{\"resource\": \"A01-410000-0001\", \"key\": \"1\", \"claims\": {}, \"x\": 1}").await?;
    assert_eq!((status, body["code"].as_str()), (422, Some("invalid_body")));
    let big = format!(
        "{{\"resource\": \"{HOUSEHOLD}\", \"key\": \"{}\", \"claims\": {{\"name\": \"{}\"}}}}",
        person.id_number,
        "张".repeat(40_000)
    );
    let (status, body) = police.post_raw("/data/verify", "application/json", big).await?;
    assert_eq!((status, body["code"].as_str()), (413, Some("body_too_large")));
    let (status, body) = police.post_raw("/data/verify", "text/plain", "hello").await?;
    assert_eq!((status, body["code"].as_str()), (415, Some("unsupported_media_type")));
    let (status, body) = police
        .post(
            "/data/verify",
            &json!({"resource": HOUSEHOLD, "key": "110105194912310021", "claims": {"name": "x"}}),
        )
        .await?;
    assert_eq!((status, body["code"].as_str()), (422, Some("invalid_id_number")));
    let (status, body) = police
        .post("/data/verify", &json!({"resource": HOUSEHOLD, "key": person.id_number, "claims": {}}))
        .await?;
    assert_eq!((status, body["code"].as_str()), (422, Some("no_claims")));
    let (status, body) = police
        .post(
            "/data/verify",
            &json!({"resource": "Z99-000000-0000", "key": person.id_number, "claims": {"name": "x"}}),
        )
        .await?;
    assert_eq!((status, body["code"].as_str()), (404, Some("unknown_resource")));
    let (status, body) = police.get(&format!("/data/{HOUSEHOLD}/records/not-an-id")).await?;
    assert_eq!((status, body["code"].as_str()), (422, Some("invalid_id_number")));
    let (status, body) = police.get(&format!("{path}?items=name&bogus=1")).await?;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_query")));
    // A path whose percent-encoding does not decode to UTF-8 is refused, and recorded, like a
    // bad body.
    let (status, body) = police.get(&format!("/data/{HOUSEHOLD}/records/%FF")).await?;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_path")), "{body}");
    let (status, body) = police.get("/proxy/%FF/deposits/1").await?;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_path")), "{body}");

    // Every call above was recorded, refusals with their reasons, and no record holds the
    // raw key, the name, the case number or the operator.
    let records = demo.exchange_records()?;
    assert!(records.len() >= 25, "{} exchange records", records.len());
    assert!(records.iter().any(|r| r["status"] == 403 && r["reasons"][0]["code"] == "grant_suspended"));
    assert!(records.iter().any(|r| r["status"] == 400 && r["code"] == "malformed_json"));
    for operation in ["lookup", "proxy"] {
        assert!(
            records.iter().any(|r| r["code"] == "invalid_path" && r["operation"] == operation),
            "no invalid_path record of a {operation}"
        );
    }
    assert!(records.iter().any(|r| r["status"] == 200 && r["operation"] == "lookup" && r["rows"] == 1));
    let log = serde_json::to_string(&records)?;
    for secret in
        [person.id_number.as_str(), name.as_str(), "GD-2026-000731", "警员0031", outsider.id_number.as_str()]
    {
        assert!(!log.contains(secret), "the exchange log holds {secret}");
    }
    Ok(())
}

#[tokio::test]
async fn sql_results_come_in_four_formats_masked_alike() -> anyhow::Result<()> {
    let demo = Demo::start_with(ROWS, &[]).await?;
    let truth = Truth::read(&demo)?;
    let (_, system) = demo.system(POLICE_SYSTEM)?;
    let police = with_purpose(&system, "KSTB-GA-001");
    let query = json!({"query": "SELECT id_number, name, status FROM household ORDER BY id_number"});
    let expected: HashSet<String> = truth.approved.iter().map(|r| r["id_number"].clone()).collect();
    let post = reqwest::Method::POST;

    let json_answer = police.send(post.clone(), "/data/sql", Some(&query), None).await?;
    assert_eq!((json_answer.status, json_answer.content_type.as_str()), (200, "application/json"));
    let body: Value = serde_json::from_slice(&json_answer.body)?;
    assert_eq!(body["row_count"], truth.approved.len());
    let ids: HashSet<String> =
        body["rows"].as_array().into_iter().flatten().filter_map(|r| cell(&r["id_number"])).collect();
    assert_eq!(ids, expected);

    let csv = police.send(post.clone(), "/data/sql", Some(&query), Some("text/csv")).await?;
    assert!(csv.content_type.starts_with("text/csv"));
    let csv = String::from_utf8(csv.body)?;
    assert_eq!(csv.lines().next(), Some("id_number,name,status"));
    let ids: HashSet<String> =
        csv.lines().skip(1).filter_map(|l| l.split(',').next()).map(str::to_owned).collect();
    assert_eq!(ids, expected);

    let ipc = police
        .send(post.clone(), "/data/sql", Some(&query), Some("application/vnd.apache.arrow.stream"))
        .await?;
    assert_eq!(ipc.content_type, "application/vnd.apache.arrow.stream");
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(ipc.body), None)?;
    let mut ids = HashSet::new();
    for batch in reader {
        let batch = batch?;
        for row in 0..batch.num_rows() {
            ids.insert(text(&batch, "id_number", row).context("id")?);
        }
    }
    assert_eq!(ids, expected);

    let file =
        police.send(post.clone(), "/data/sql", Some(&query), Some("application/vnd.apache.parquet")).await?;
    assert_eq!(file.content_type, "application/vnd.apache.parquet");
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(file.body))?.build()?;
    let mut ids = HashSet::new();
    for batch in reader {
        let batch = batch?;
        for row in 0..batch.num_rows() {
            ids.insert(text(&batch, "id_number", row).context("id")?);
        }
    }
    assert_eq!(ids, expected);

    let refused = police.send(post.clone(), "/data/sql", Some(&query), Some("application/xml")).await?;
    assert_eq!(refused.status, 406);
    // A result over the row limit is refused, not cut short.
    let demo_small = Demo::start_with(ROWS, &[("TONGBAN_DATA__SQL_MAX_ROWS", "5")]).await?;
    let (_, system) = demo_small.system(POLICE_SYSTEM)?;
    let (status, body) = with_purpose(&system, "KSTB-GA-001")
        .post("/data/sql", &json!({"query": "SELECT name FROM household"}))
        .await?;
    assert_eq!((status, body["code"].as_str()), (422, Some("result_too_large")), "{body}");
    Ok(())
}

/// The police system's grant on 户籍, as the reviewer sees it: (id, version, grant).
async fn police_grant(reviewer: &Api) -> anyhow::Result<(String, Value, Value)> {
    let (_, grants) = reviewer.get("/grants").await?;
    let view = grants["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|g| g["grant"]["resource_code"] == HOUSEHOLD && g["grant"]["status"] == "active")
        .context("grant")?
        .clone();
    Ok((
        view["grant"]["id"].as_str().context("id")?.to_owned(),
        view["version"].clone(),
        view["grant"].clone(),
    ))
}

async fn narrow(reviewer: &Api, items: &[&str], rate: u32, quota: u32) -> anyhow::Result<()> {
    let (id, version, grant) = police_grant(reviewer).await?;
    let terms = json!({"items": items, "division_prefix": grant["division_prefix"], "rate_per_second": rate,
        "daily_quota": quota, "valid_until": grant["valid_until"]});
    let (status, body) = reviewer
        .post(
            &format!("/grants/{id}/changes"),
            &json!({"version": version, "action": "narrow", "reason": "压降调用量", "terms": terms}),
        )
        .await?;
    anyhow::ensure!(status == 200, "narrowing answered {status}: {body}");
    Ok(())
}

#[tokio::test]
async fn answers_are_cached_per_grant_and_calls_are_rate_limited_over_tls() -> anyhow::Result<()> {
    // Over TLS, as department systems call in production.
    let demo = Demo::start_tls_with(ROWS, &[]).await?;
    let truth = Truth::read(&demo)?;
    let (_, system) = demo.system(POLICE_SYSTEM)?;
    let police = with_purpose(&system, "KSTB-GA-001");
    let reviewer = demo.sign_in("reviewer.henan").await?;
    let mut people = truth.in_scope().filter(|p| p.name.is_some());
    let person = people.next().context("person")?.clone();
    let path = format!("/data/{HOUSEHOLD}/records/{}", person.id_number);
    let get = reqwest::Method::GET;
    let cache_of = |answer: &tongban_e2e::RawAnswer| answer.header("x-tongban-cache");

    // A miss, then a hit with the same masked answer.
    let first = police.send(get.clone(), &path, None, None).await?;
    let second = police.send(get.clone(), &path, None, None).await?;
    assert_eq!((first.status, second.status), (200, 200));
    assert_eq!((cache_of(&first).as_deref(), cache_of(&second).as_deref()), (Some("miss"), Some("hit")));
    assert_eq!(first.body, second.body);
    // SQL is never cached.
    let sql = police
        .send(
            reqwest::Method::POST,
            "/data/sql",
            Some(&json!({"query": "SELECT count(*) FROM household"})),
            None,
        )
        .await?;
    assert_eq!(cache_of(&sql).as_deref(), Some("bypass"));

    // Concurrent misses for one key read the dataset once.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let other = people.next().context("another person")?;
    let other_path = format!("/data/{HOUSEHOLD}/records/{}", other.id_number);
    let calls = (0..6).map(|_| police.send(get.clone(), &other_path, None, None));
    let answers = futures::future::join_all(calls).await;
    let outcomes: Vec<String> =
        answers.into_iter().map(|a| a.map(|a| cache_of(&a).unwrap_or_default())).collect::<Result<_, _>>()?;
    assert_eq!(outcomes.iter().filter(|o| *o == "miss").count(), 1, "{outcomes:?}");
    assert_eq!(outcomes.iter().filter(|o| *o == "hit").count(), 5, "{outcomes:?}");

    // Narrowing the grant leaves the cached answer behind: the next answer is fresh and
    // narrower.
    narrow(&reviewer, &["id_number", "division_code", "status"], 10, 10_000).await?;
    let narrowed = police.send(get.clone(), &path, None, None).await?;
    assert_eq!(cache_of(&narrowed).as_deref(), Some("miss"));
    let body: Value = serde_json::from_slice(&narrowed.body)?;
    assert!(body["records"][0].get("name").is_none(), "{body}");

    // A burst over the approved rate gets 429 with Retry-After.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let burst = (0..25).map(|_| police.send(get.clone(), &path, None, None));
    let answers = futures::future::join_all(burst).await.into_iter().collect::<Result<Vec<_>, _>>()?;
    let limited: Vec<&tongban_e2e::RawAnswer> = answers.iter().filter(|a| a.status == 429).collect();
    let passed = answers.iter().filter(|a| a.status == 200).count();
    assert!((8..=12).contains(&passed), "{passed} of 25 passed a 10/s grant");
    assert_eq!(limited.len() + passed, 25);
    let problem: Value = serde_json::from_slice(&limited[0].body)?;
    assert_eq!(problem["code"], "rate_limited");
    assert_eq!(limited[0].header("retry-after").as_deref(), Some("1"));

    // A daily quota narrowed below today's calls refuses until midnight.
    narrow(&reviewer, &["id_number", "division_code", "status"], 10, 3).await?;
    let refused = police.send(get.clone(), &path, None, None).await?;
    assert_eq!(refused.status, 429);
    let problem: Value = serde_json::from_slice(&refused.body)?;
    assert!(problem["detail"].as_str().is_some_and(|d| d.contains("daily quota")), "{problem}");
    let wait: u64 = refused.header("retry-after").context("retry-after")?.parse()?;
    assert!((1..=86_400).contains(&wait), "{wait}");

    // The exchange log says which calls hit the cache and which limit refused which call.
    let records = demo.exchange_records()?;
    assert!(records.iter().any(|r| r["cache"] == "hit" && r["status"] == 200));
    assert!(
        records
            .iter()
            .any(|r| r["rate_limit"] == "grant" && r["status"] == 429 && r["code"] == "rate_limited")
    );
    assert!(records.iter().any(|r| r["rate_limit"] == "daily_quota"));
    Ok(())
}

/// A daily quota is the approval's, not the process's: the calls made before a restart still
/// count after it, and the calls the stopping gateway had leased but not used are given back.
#[tokio::test]
async fn a_daily_quota_holds_across_a_restart() -> anyhow::Result<()> {
    let mut demo = Demo::start_with(ROWS, &[]).await?;
    let truth = Truth::read(&demo)?;
    let reviewer = demo.sign_in("reviewer.henan").await?;
    // Leases are a second's worth of the approved rate: four calls, of which two are used.
    narrow(&reviewer, &["id_number", "division_code", "status"], 4, 6).await?;
    let person = truth.in_scope().next().context("person")?.clone();
    let path = format!("/data/{HOUSEHOLD}/records/{}", person.id_number);
    let calls = |demo: &Demo, n: usize| {
        let police = demo.system(POLICE_SYSTEM).map(|(_, system)| with_purpose(&system, "KSTB-GA-001"));
        let path = path.clone();
        async move {
            let police = police?;
            let mut statuses = Vec::new();
            for _ in 0..n {
                statuses.push(police.send(reqwest::Method::GET, &path, None, None).await?.status);
                // Slower than the approved rate, so that only the quota can refuse.
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            }
            anyhow::Ok(statuses)
        }
    };
    assert_eq!(calls(&demo, 2).await?, [200, 200]);

    demo.gateway.signal("TERM")?;
    let stopped = demo.gateway.wait_exit(std::time::Duration::from_secs(30)).await?;
    assert!(stopped.success(), "{stopped:?}");
    demo.restart().await?;
    assert_eq!(calls(&demo, 5).await?, [200, 200, 200, 200, 429], "the quota of 6 had 4 calls left");
    let records = demo.exchange_records()?;
    assert_eq!(records.iter().filter(|r| r["rate_limit"] == "daily_quota").count(), 1);
    Ok(())
}

#[tokio::test]
async fn datasets_reload_on_hangup_and_take_their_cached_answers_with_them() -> anyhow::Result<()> {
    let demo = Demo::start_with(ROWS, &[]).await?;
    let truth = Truth::read(&demo)?;
    let (_, system) = demo.system(POLICE_SYSTEM)?;
    let police = with_purpose(&system, "KSTB-GA-001");
    let person = truth.in_scope().next().context("person")?;
    let path = format!("/data/{HOUSEHOLD}/records/{}", person.id_number);
    let get = reqwest::Method::GET;
    assert_eq!(
        police.send(get.clone(), &path, None, None).await?.header("x-tongban-cache").as_deref(),
        Some("miss")
    );
    assert_eq!(
        police.send(get.clone(), &path, None, None).await?.header("x-tongban-cache").as_deref(),
        Some("hit")
    );

    demo.gateway.signal("HUP")?;
    // The reload swaps in newly opened datasets; answers cached from the old ones are not
    // served again, and the gateway stays ready throughout.
    let mut reloaded = false;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let ready = reqwest::get(demo.gateway.url("/readyz")).await?.status();
        assert_eq!(ready, 200, "ready throughout the reload");
        let answer = police.send(get.clone(), &path, None, None).await?;
        if answer.status == 429 {
            continue;
        }
        assert_eq!(answer.status, 200);
        if answer.header("x-tongban-cache").as_deref() == Some("miss") {
            reloaded = true;
            break;
        }
    }
    assert!(reloaded, "no fresh answer after SIGHUP");
    assert_eq!(
        police.send(get.clone(), &path, None, None).await?.header("x-tongban-cache").as_deref(),
        Some("hit")
    );
    Ok(())
}

#[tokio::test]
async fn shutdown_drains_calls_in_flight() -> anyhow::Result<()> {
    let mut demo = Demo::start_with(
        ROWS,
        &[
            ("TONGBAN_DATA__SQL_TIMEOUT_MS", "2000"),
            ("TONGBAN_SERVER__METRICS_TOKEN", "scrape-token-for-tests"),
        ],
    )
    .await?;
    let (_, system) = demo.system(POLICE_SYSTEM)?;
    let police = with_purpose(&system, "KSTB-GA-001");
    // A query that runs until its time limit, then answers 422.
    let slow = json!({"query": "SELECT count(*) FROM household a, household b, household c, household d"});
    let call = tokio::spawn(async move { police.post("/data/sql", &slow).await });
    until_sql_running(&demo).await?;
    demo.gateway.signal("TERM")?;
    // The call in flight still gets its whole answer.
    let (status, body) = call.await??;
    assert_eq!((status, body["code"].as_str()), (422, Some("query_timeout")), "{body}");
    let exit = demo.gateway.wait_exit(std::time::Duration::from_secs(30)).await?;
    assert!(exit.success(), "{exit:?}");
    Ok(())
}

/// The SQL gauges on `/metrics` of a gateway started with the tests' scrape token: queries
/// holding a slot and queries waiting for one.
async fn sql_gauges(demo: &Demo) -> anyhow::Result<(Option<f64>, Option<f64>)> {
    let text = demo.gateway.scrape_metrics("scrape-token-for-tests").await?;
    let value = |series: &str| text.lines().find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok());
    Ok((value("tongban_sql_running_queries "), value("tongban_sql_waiting_queries ")))
}

/// Waits until the gateway says a SQL query holds a slot, rather than for a time that is
/// usually long enough for it to start.
async fn until_sql_running(demo: &Demo) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while sql_gauges(demo).await?.0 != Some(1.0) {
        anyhow::ensure!(std::time::Instant::now() < deadline, "no SQL query started within ten seconds");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    Ok(())
}

/// An S3-compatible server for the object-store test: moto's (`moto_server`, from PyPI),
/// started on a free loopback port and stopped when dropped.
pub(crate) struct S3Server {
    _child: tokio::process::Child,
    pub(crate) endpoint: String,
}

impl S3Server {
    /// Starts the server `TONGBAN_S3_SERVER` names; `None` when it names none and the run does
    /// not require it (`tests/run.sh` installs the server and requires it).
    pub(crate) async fn start() -> anyhow::Result<Option<S3Server>> {
        let Some(program) = std::env::var_os("TONGBAN_S3_SERVER") else {
            anyhow::ensure!(
                std::env::var_os("TONGBAN_REQUIRE_S3").is_none(),
                "TONGBAN_S3_SERVER names no S3-compatible server"
            );
            eprintln!("skipped: TONGBAN_S3_SERVER names no S3-compatible server");
            return Ok(None);
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = tokio::process::Command::new(program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("start the S3 server")?;
        let endpoint = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let started = std::time::Instant::now();
        while client.get(format!("{endpoint}/")).send().await.is_err() {
            anyhow::ensure!(started.elapsed().as_secs() < 60, "the S3 server did not start in 60 s");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Ok(Some(S3Server { _child: child, endpoint }))
    }

    /// Every S3 client's settings for this server; the gateway reads `AWS_*` from its
    /// environment.
    pub(crate) fn env(&self) -> [(&'static str, &str); 5] {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_REGION", "cn-north-1"),
            ("AWS_ACCESS_KEY_ID", "tongban-test"),
            ("AWS_SECRET_ACCESS_KEY", "tongban-test-secret"),
        ]
    }
}

/// A dataset in an S3-compatible object store serves look-ups, verification and SQL as the
/// same file on disk does: the household file is moved into a bucket, the configuration names
/// `s3://…`, and the restarted gateway answers the same, reading only from the bucket.
#[tokio::test]
async fn a_dataset_in_an_s3_compatible_store_answers_as_the_file_did() -> anyhow::Result<()> {
    let Some(s3) = S3Server::start().await? else { return Ok(()) };
    let env = s3.env();
    let mut demo = Demo::start_with(2_000, &env).await?;
    let truth = Truth::read(&demo)?;
    let person = truth.in_scope().find(|p| p.name.is_some()).context("person")?.clone();
    let police = with_purpose(&demo.system(POLICE_SYSTEM)?.1, "KSTB-GA-001");
    let record = format!("/data/{HOUSEHOLD}/records/{}", person.id_number);
    let count = json!({"query": "SELECT count(*) AS n FROM household"});
    let (status, from_disk) = police.get(&record).await?;
    assert_eq!((status, from_disk["records"].as_array().map(Vec::len)), (200, Some(1)), "{from_disk}");
    let (status, counted_on_disk) = police.post("/data/sql", &count).await?;
    assert_eq!(status, 200, "{counted_on_disk}");
    assert_eq!(counted_on_disk["rows"][0]["n"].as_u64(), Some(truth.approved.len() as u64));

    // The bucket takes the file; the file leaves the disk, so only the bucket can answer.
    let file = demo.data_dir().join("datasets/household.parquet");
    let client = reqwest::Client::new();
    let created = client.put(format!("{}/tongban-datasets", s3.endpoint)).send().await?;
    anyhow::ensure!(created.status().is_success(), "create bucket: {}", created.status());
    let uploaded = client
        .put(format!("{}/tongban-datasets/province/household.parquet", s3.endpoint))
        .body(std::fs::read(&file)?)
        .send()
        .await?;
    anyhow::ensure!(uploaded.status().is_success(), "upload: {}", uploaded.status());
    demo.gateway.signal("TERM")?;
    demo.gateway.wait_exit(std::time::Duration::from_secs(30)).await?;
    std::fs::rename(&file, file.with_extension("moved"))?;
    let config = demo.data_dir().join("tongban.toml");
    let text = std::fs::read_to_string(&config)?;
    let moved =
        text.replace("datasets/household.parquet", "s3://tongban-datasets/province/household.parquet");
    anyhow::ensure!(moved != text, "the demo's configuration names the household file:\n{text}");
    std::fs::write(&config, moved)?;
    demo.restart().await?;

    let police = with_purpose(&demo.system(POLICE_SYSTEM)?.1, "KSTB-GA-001");
    let (status, from_bucket) = police.get(&record).await?;
    assert_eq!(status, 200, "{from_bucket}");
    assert_eq!(from_bucket["records"], from_disk["records"], "the same record, masked the same way");
    let (status, counted) = police.post("/data/sql", &count).await?;
    assert_eq!((status, &counted["rows"]), (200, &counted_on_disk["rows"]), "{counted}");
    let claims = json!({"resource": HOUSEHOLD, "key": person.id_number, "claims": {"name": person.name}});
    let (status, verified) = police.post("/data/verify", &claims).await?;
    assert_eq!((status, &verified["results"]["name"]), (200, &json!("match")), "{verified}");
    let (status, missing) = police.get(&format!("/data/{HOUSEHOLD}/records/11010519491231002X")).await?;
    assert_eq!((status, missing["code"].as_str()), (404, Some("record_not_found")), "{missing}");
    Ok(())
}
