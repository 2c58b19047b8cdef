//! The exchange log end to end: `kill -9` under load loses no answered call's record, and
//! `tongban audit verify` checks the log the killed process left.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use tongban_e2e::{Demo, tongban_bin};

const POLICE_SYSTEM: &str = "广东省公安厅跨省户籍业务系统";
const HOUSEHOLD: &str = "A01-410000-0001";
const WORKERS: usize = 16;

/// The police system's client with the purpose of its household grant.
fn with_purpose(system: &tongban_e2e::Api) -> tongban_e2e::Api {
    system.with_headers(&[
        ("x-tongban-service-item", "KSTB-GA-001"),
        ("x-tongban-case-number", "GD-2026-000731"),
        ("x-tongban-operator", "警员0031"),
    ])
}

#[tokio::test]
async fn kill_9_under_load_loses_no_answered_exchange() -> anyhow::Result<()> {
    let mut demo = Demo::start_with(2000, &[]).await?;
    let (_, system) = demo.system(POLICE_SYSTEM)?;
    let police = with_purpose(&system);
    let body = json!({"resource": HOUSEHOLD, "key": "11010519491231002X", "claims": {"name": "张三"}});

    // Callers keep calling until the process dies under them. Every answer they get, whatever
    // its status, names its exchange record; the grant's rate limit turns most calls into 429s
    // once its burst is spent, and those are records too.
    let answered: Arc<Mutex<Vec<(u16, String)>>> = Arc::default();
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let police = police.clone();
        let body = body.clone();
        let answered = Arc::clone(&answered);
        workers.push(tokio::spawn(async move {
            while let Ok(answer) = police.send(reqwest::Method::POST, "/data/verify", Some(&body), None).await
            {
                if let Some(id) = answer.header("x-tongban-exchange-id") {
                    answered.lock().expect("not poisoned").push((answer.status, id));
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    demo.gateway.signal("KILL")?;
    demo.gateway.wait_exit(Duration::from_secs(10)).await?;
    for worker in workers {
        worker.await?;
    }
    let answered = std::mem::take(&mut *answered.lock().expect("not poisoned"));
    let successes = answered.iter().filter(|(status, _)| (200..300).contains(status)).count();
    eprintln!("{} answers ({successes} of them 2xx) before kill -9", answered.len());
    assert!(answered.len() >= 200, "only {} answers before the kill", answered.len());
    assert!(successes > 0, "no 2xx answers before the kill");

    // The restarted gateway recovers the log; every answered call's record is in it.
    demo.restart().await?;
    let recorded: HashSet<String> =
        demo.exchange_records()?.iter().filter_map(|r| r["id"].as_str().map(str::to_owned)).collect();
    let lost: Vec<&(u16, String)> = answered.iter().filter(|(_, id)| !recorded.contains(id)).collect();
    assert!(lost.is_empty(), "{} of {} answered calls have no record: {lost:?}", lost.len(), answered.len());

    // The restarted gateway goes on writing the same chain, and the whole log verifies.
    let (_, system) = demo.system(POLICE_SYSTEM)?;
    let police = with_purpose(&system);
    let (status, body) = police.post("/data/verify", &body).await.context("call")?;
    assert!([200, 429].contains(&status), "{body}");
    let report = std::process::Command::new(tongban_bin())
        .args(["audit", "verify", "--json", "--data-dir"])
        .arg(demo.data_dir())
        .output()?;
    let stdout = String::from_utf8_lossy(&report.stdout);
    assert!(report.status.success(), "{stdout}{}", String::from_utf8_lossy(&report.stderr));
    let report: serde_json::Value = serde_json::from_str(&stdout)?;
    assert!(report["records"].as_u64().unwrap_or(0) >= answered.len() as u64, "{report}");
    assert!(report["problem"].is_null(), "{report}");
    Ok(())
}

#[tokio::test]
async fn audit_verify_names_a_modified_record() -> anyhow::Result<()> {
    let demo = Demo::start_with(2000, &[]).await?;
    let (_, system) = demo.system(POLICE_SYSTEM)?;
    let police = with_purpose(&system);
    let body = json!({"resource": HOUSEHOLD, "key": "11010519491231002X", "claims": {"name": "张三"}});
    for _ in 0..5 {
        police.post("/data/verify", &body).await?;
    }
    demo.gateway.signal("TERM")?;
    let log_dir = demo.data_dir().join("exchange");
    let segment = std::fs::read_dir(&log_dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "wal"))
        .context("a segment")?;
    let text = std::fs::read_to_string(&segment)?;
    // Someone turns the second record's refusal into a success.
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let at = lines.iter().position(|l| l.starts_with("{\"seq\":2,")).context("record 2")?;
    let second: serde_json::Value = serde_json::from_str(&lines[at])?;
    let status = second["status"].as_u64().context("status")?;
    lines[at] = lines[at].replace(&format!("\"status\":{status}"), "\"status\":299");
    std::fs::write(&segment, lines.iter().map(|l| format!("{l}\n")).collect::<String>())?;

    let output = std::process::Command::new(tongban_bin())
        .args(["audit", "verify", "--data-dir"])
        .arg(demo.data_dir())
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("record 2 was modified"), "{stderr}");
    Ok(())
}

/// Records removed at either end of the log: the newest segments (found against the head an
/// earlier audit printed), the oldest with a forged retention anchor (found against the
/// configuration, which keeps the log for ever), and bytes appended after a seal.
#[tokio::test]
async fn audit_verify_finds_records_removed_at_either_end() -> anyhow::Result<()> {
    let demo = Demo::start_with(2000, &[("TONGBAN_EXCHANGE_LOG__SEGMENT_MAX_BYTES", "4096")]).await?;
    let (_, system) = demo.system(POLICE_SYSTEM)?;
    let police = with_purpose(&system);
    let body = json!({"resource": HOUSEHOLD, "key": "11010519491231002X", "claims": {"name": "张三"}});
    for _ in 0..40 {
        police.post("/data/verify", &body).await?;
        tokio::time::sleep(std::time::Duration::from_millis(110)).await;
    }
    demo.gateway.signal("TERM")?;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let audit = |extra: &[&str]| -> anyhow::Result<(Option<i32>, String)> {
        let output = std::process::Command::new(tongban_bin())
            .args(["audit", "verify", "--data-dir"])
            .arg(demo.data_dir())
            .args(extra)
            .output()?;
        let text =
            format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        Ok((output.status.code(), text))
    };
    let (code, text) = audit(&[])?;
    assert_eq!(code, Some(0), "{text}");
    let head = text
        .split_whitespace()
        .find_map(|word| {
            word.split_once(':').filter(|(seq, hash)| seq.parse::<u64>().is_ok() && hash.len() == 64)
        })
        .map(|(seq, hash)| format!("{seq}:{hash}"))
        .context("the head as SEQ:HASH")?;
    let log_dir = demo.data_dir().join("exchange");
    let mut segments: Vec<std::path::PathBuf> = std::fs::read_dir(&log_dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    segments.sort();
    anyhow::ensure!(segments.len() >= 4, "{} segments", segments.len());
    let backup = tempfile::tempdir()?;
    for segment in &segments {
        std::fs::copy(segment, backup.path().join(segment.file_name().context("name")?))?;
    }
    let restore = || -> anyhow::Result<()> {
        for segment in &segments {
            std::fs::copy(backup.path().join(segment.file_name().context("name")?), segment)?;
        }
        let _ = std::fs::remove_file(log_dir.join("retained.json"));
        Ok(())
    };

    // The newest segment holding records removed (and any empty one after it): the rest is a
    // whole chain, but not the one seen.
    let newest = segments
        .iter()
        .rposition(|s| std::fs::read_to_string(s).is_ok_and(|t| t.contains("\"seq\"")))
        .context("a segment with records")?;
    for segment in &segments[newest..] {
        std::fs::remove_file(segment)?;
    }
    let (code, text) = audit(&["--expect-head", &head])?;
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("cut off"), "{text}");
    restore()?;
    assert_eq!(audit(&["--expect-head", &head])?.0, Some(0));

    // The oldest two segments removed, with the anchor retention would have written.
    let seal: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&segments[1])?.lines().last().context("the seal")?)?;
    let seal = &seal["seal"];
    std::fs::write(
        log_dir.join("retained.json"),
        serde_json::to_vec(&json!({
            "first_segment": 3,
            "first_seq": seal["last_seq"].as_u64().context("last_seq")? + 1,
            "prev": seal["last_hash"],
            "removed_sealed_at": "2020-01-01T00:00:00Z",
        }))?,
    )?;
    std::fs::remove_file(&segments[0])?;
    std::fs::remove_file(&segments[1])?;
    let (code, text) = audit(&[])?;
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("retention"), "{text}");
    restore()?;

    // Bytes after the seal of a segment.
    let mut bytes = std::fs::read(&segments[0])?;
    bytes.extend_from_slice(b"{\"seq\":1");
    std::fs::write(&segments[0], bytes)?;
    let (code, text) = audit(&[])?;
    assert_eq!(code, Some(1), "{text}");
    Ok(())
}

#[tokio::test]
async fn metrics_count_calls_cache_limits_and_log_writes_for_operators_only() -> anyhow::Result<()> {
    let demo = Demo::start_with(2000, &[("TONGBAN_SERVER__METRICS_TOKEN", "scrape-token-for-tests")]).await?;
    let (_, system) = demo.system(POLICE_SYSTEM)?;
    let police = with_purpose(&system);
    let body = json!({"resource": HOUSEHOLD, "key": "11010519491231002X", "claims": {"name": "张三"}});
    // The grant's burst is ten calls: the first is a miss, later ones hit the cache, and the
    // rest are refused by the grant's rate.
    let mut statuses = Vec::new();
    for _ in 0..15 {
        statuses.push(police.post("/data/verify", &body).await?.0);
    }
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(ok + limited, 15, "{statuses:?}");

    let client = reqwest::Client::new();
    // Asked as Prometheus asks, OpenMetrics first.
    let scrape = client
        .get(demo.gateway.url("/metrics"))
        .bearer_auth("scrape-token-for-tests")
        .header("accept", "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")
        .send()
        .await?;
    assert_eq!(scrape.status(), 200);
    assert!(
        scrape.headers()["content-type"].to_str()?.starts_with("application/openmetrics-text"),
        "{:?}",
        scrape.headers()
    );
    let text = scrape.text().await?;
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    };
    assert_eq!(value(r#"tongban_data_calls_total{operation="verify",status="200"}"#), ok as f64);
    assert_eq!(
        value(r#"tongban_data_calls_total{operation="verify",status="429",code="rate_limited"}"#),
        limited as f64
    );
    assert_eq!(value(r#"tongban_rate_limited_total{outcome="grant"}"#), limited as f64);
    assert_eq!(value(r#"tongban_cache_lookups_total{outcome="miss"}"#), 1.0);
    assert_eq!(value(r#"tongban_cache_lookups_total{outcome="hit"}"#), (ok - 1) as f64);
    assert_eq!(value(r#"tongban_data_call_duration_seconds_count{operation="verify"}"#), 15.0);
    assert!(value("tongban_exchange_log_appended_records_total") >= 15.0);
    assert!(value("tongban_exchange_log_fsync_duration_seconds_count") >= 1.0);
    assert_eq!(value("tongban_exchange_log_pending_records"), 0.0);
    // Labels never carry a person, a key or a caller.
    for secret in ["11010519491231002X", "张三", "GD-2026-000731", "警员0031"] {
        assert!(!text.contains(secret), "{secret} in the metrics");
    }

    // Without the token: an operator may read them, a department's reviewer may not, and an
    // anonymous caller must sign in.
    let anonymous = client.get(demo.gateway.url("/metrics")).send().await?;
    assert_eq!(anonymous.status(), 401);
    let wrong = client.get(demo.gateway.url("/metrics")).bearer_auth("guess").send().await?;
    assert_eq!(wrong.status(), 401);
    let (status, _) = demo.sign_in("operator").await?.get_root("/metrics").await?;
    assert_eq!(status, 200);
    let (status, body) = demo.sign_in("reviewer.guangdong").await?.get_root("/metrics").await?;
    assert_eq!(status, 403, "{body}");
    Ok(())
}

#[tokio::test]
async fn operators_query_the_log_and_departments_see_only_their_own() -> anyhow::Result<()> {
    let demo = Demo::start_with(2000, &[]).await?;
    let (police_id, system) = demo.system(POLICE_SYSTEM)?;
    let police = with_purpose(&system);
    let body = json!({"resource": HOUSEHOLD, "key": "11010519491231002X", "claims": {"name": "张三"}});
    let mut last_id = String::new();
    for _ in 0..3 {
        let answer = police.send(reqwest::Method::POST, "/data/verify", Some(&body), None).await?;
        assert_eq!(answer.status, 200);
        last_id = answer.header("x-tongban-exchange-id").context("exchange id")?;
    }
    // A call without its purpose is refused, and the refusal is in the log too.
    let (status, _) = system.post("/data/verify", &body).await?;
    assert_eq!(status, 400);

    let operator = demo.sign_in("operator").await?;
    let (status, stats) = operator.get("/exchanges/stats?bucket=all&by=status").await?;
    assert_eq!(status, 200, "{stats}");
    let calls_with = |status: u64| {
        stats["rows"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["status"] == status)
            .map(|r| r["calls"].clone())
    };
    assert_eq!(calls_with(200), Some(json!(3)), "{stats}");
    assert_eq!(calls_with(400), Some(json!(1)), "{stats}");
    // The same calls per service item and per province pair: Guangdong's police calling
    // Henan's household registration, for KSTB-GA-001.
    let (status, per_item) = operator.get("/exchanges/stats?bucket=month&by=service_item").await?;
    assert_eq!(status, 200, "{per_item}");
    let item_row =
        per_item["rows"].as_array().into_iter().flatten().find(|r| r["service_item"] == "KSTB-GA-001");
    assert_eq!(item_row.map(|r| r["calls"].clone()), Some(json!(3)), "{per_item}");
    let (status, pairs) = operator.get("/exchanges/stats?bucket=all&by=province_pair").await?;
    assert_eq!(status, 200, "{pairs}");
    let pair = pairs["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["consumer_province"] == "44" && r["supplier_province"] == "41");
    assert_eq!(pair.map(|r| r["calls"].clone()), Some(json!(3)), "{pairs}");

    let (status, refusals) = operator.get("/exchanges/refusals").await?;
    assert_eq!(status, 200);
    let reasons = refusals["by_reason"].as_array().context("by_reason")?;
    assert!(reasons.iter().any(|r| r["reason"] == "purpose_missing"), "{refusals}");

    let (status, callers) = operator.get("/exchanges/top-callers?limit=1").await?;
    assert_eq!(status, 200);
    assert_eq!(
        (callers["rows"][0]["system"].as_str(), callers["rows"][0]["calls"].as_i64()),
        (Some(police_id.as_str()), Some(4))
    );

    let (status, record) = operator.get(&format!("/exchanges/{last_id}")).await?;
    assert_eq!(status, 200, "{record}");
    assert_eq!((record["status"].as_u64(), record["cache"].as_str()), (Some(200), Some("hit")));
    assert_eq!(record["resources"], json!([HOUSEHOLD]));
    assert_eq!(record["region"], "440000", "{record}");
    assert!(record["phases"]["authenticate"].is_u64(), "{record}");
    let (status, found) = operator.get("/exchanges?status=400").await?;
    assert_eq!((status, found["rows"].as_array().map(Vec::len)), (200, Some(1)));

    let (status, chain) = operator.get("/exchanges/chain").await?;
    assert_eq!(status, 200);
    assert_eq!(
        (chain["records"].as_u64(), &chain["problem"]),
        (Some(4), &serde_json::Value::Null),
        "{chain}"
    );

    // The police department's own clerk sees its calls; another province's reviewer sees
    // none of them and may not ask for them, nor audit the chain.
    let clerk = demo.sign_in("demander.guangdong-police").await?;
    let (status, own) = clerk.get("/exchanges").await?;
    assert_eq!((status, own["rows"].as_array().map(Vec::len)), (200, Some(4)), "{own}");
    let reviewer = demo.sign_in("reviewer.henan").await?;
    let (status, none) = reviewer.get("/exchanges").await?;
    assert_eq!((status, none["rows"].as_array().map(Vec::len)), (200, Some(0)), "{none}");
    let (status, _) = reviewer.get(&format!("/exchanges/{last_id}")).await?;
    assert_eq!(status, 404);
    let (status, _) = reviewer
        .get(&format!("/exchanges?department={}", demo.department_of("demander.guangdong-police")))
        .await?;
    assert_eq!(status, 403);
    let (status, _) = reviewer.get("/exchanges/chain").await?;
    assert_eq!(status, 403);
    let (status, problem) = operator.get("/exchanges?from=yesterday").await?;
    assert_eq!((status, problem["code"].as_str()), (400, Some("invalid_query")), "{problem}");
    Ok(())
}

#[tokio::test]
async fn quality_indicators_match_the_defects_generated_into_the_data() -> anyhow::Result<()> {
    let demo = Demo::start_with(3000, &[]).await?;
    let (_, system) = demo.system(POLICE_SYSTEM)?;
    let police = with_purpose(&system);
    // A look-up asking for an item the grant does not cover: a call outside its grant.
    let (status, _) =
        police.get(&format!("/data/{HOUSEHOLD}/records/11010519491231002X?items=marital_status")).await?;
    assert_eq!(status, 403);

    let (status, report) = demo.sign_in("operator").await?.get("/quality").await?;
    assert_eq!(status, 200, "{report}");
    // The generator lists every defect it made; the report finds the same ones.
    let defects = std::fs::read_to_string(demo.data_dir().join("datasets/defects.csv"))?;
    let count = |dataset: &str, kind: &str| {
        defects
            .lines()
            .skip(1)
            .filter(|l| l.starts_with(&format!("{dataset},")) && l.contains(&format!(",{kind},")))
            .count()
    };
    let resources = report["resources"].as_array().context("resources")?;
    // The people's three datasets and the five licence registers.
    assert_eq!(resources.len(), 8, "{report}");
    for resource in resources {
        let dataset = resource["dataset"].as_str().context("dataset")?;
        let missing: u64 = resource["missing_required"]
            .as_object()
            .context("missing")?
            .values()
            .filter_map(|v| v.as_u64())
            .sum();
        assert_eq!(
            resource["invalid_keys"].as_u64(),
            Some(count(dataset, "bad_check_digit") as u64),
            "{resource}"
        );
        assert_eq!(missing, count(dataset, "missing_required") as u64, "{resource}");
        // The generator makes at most one defect per record.
        let invalid = resource["invalid_keys"].as_u64().unwrap_or(0);
        assert_eq!(resource["defective_records"].as_u64(), Some(invalid + missing), "{resource}");
        assert!(resource["age_days"].as_i64().is_some_and(|age| (0..=7).contains(&age)), "{resource}");
    }
    let found: u64 = resources.iter().filter_map(|r| r["defective_records"].as_u64()).sum();
    assert!(found > 0, "the generated data has defects to find: {report}");
    // The demo's demands were all decided on the day they were filed.
    assert!(report["demand_summary"]["stages_in_time"].as_u64() > Some(0), "{}", report["demand_summary"]);
    assert_eq!(report["demand_summary"]["stages_late"], 0);
    assert!(report["calls"]["outside_grant"].as_i64() >= Some(1), "{}", report["calls"]);

    let (status, _) = demo.sign_in("demander.guangdong-police").await?.get("/quality").await?;
    assert_eq!(status, 403);
    Ok(())
}
