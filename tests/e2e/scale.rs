//! Gateway replicas behind a real load balancer: three `tongban` processes on one PostgreSQL
//! store, each with its own exchange log shipped to a shared directory, behind HAProxy
//! (Debian's) checking `/readyz`. The dashboard of any replica counts every replica's calls; a
//! replica killed under load is carried by the others; and a grant revoked through one replica
//! is refused on another within two seconds, by the store's change notifications rather than
//! the five-second poll.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use tongban_e2e::{Demo, Gateway};

const HAPROXY: &str = "/usr/sbin/haproxy";
const POLICE_SYSTEM: &str = "广东省公安厅跨省户籍业务系统";
const HOUSEHOLD: &str = "A01-410000-0001";

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn port_of(url: &str) -> anyhow::Result<u16> {
    Ok(url.rsplit(':').next().context("a port")?.trim_end_matches('/').parse()?)
}

/// HAProxy in the foreground, balancing `replicas` round robin on `port`, checking each
/// replica's `/readyz` every 200 ms and taking it out after two failed checks. A connection a
/// replica refuses, or a kept-alive one that a dead replica answers with nothing, is tried
/// again on another: data calls are reads, and each try is its own exchange record.
async fn haproxy(dir: &Path, port: u16, replicas: &[(&str, u16)]) -> anyhow::Result<tokio::process::Child> {
    let mut config = format!(
        "global\n  maxconn 2000\n\ndefaults\n  mode http\n  timeout connect 1s\n  timeout client 30s\n  \
         timeout server 30s\n  retries 3\n  option redispatch\n  retry-on conn-failure empty-response\n\n\
         frontend gateways\n  bind 127.0.0.1:{port}\n  default_backend replicas\n\n\
         backend replicas\n  balance roundrobin\n  option httpchk GET /readyz\n  http-check expect status 200\n  \
         default-server inter 200ms fall 2 rise 2\n"
    );
    for (name, replica) in replicas {
        config.push_str(&format!("  server {name} 127.0.0.1:{replica} check\n"));
    }
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, config)?;
    let check = std::process::Command::new(HAPROXY).arg("-c").arg("-f").arg(&path).output()?;
    anyhow::ensure!(check.status.success(), "haproxy -c: {}", String::from_utf8_lossy(&check.stderr));
    Ok(tokio::process::Command::new(HAPROXY)
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?)
}

/// What every replica's configuration adds: its name, and its log shipped every second (of
/// segments sealed every second) to the shared directory `shared`.
fn shipping(name: &str, shared: &str) -> Vec<(String, String)> {
    [
        ("TONGBAN_EXCHANGE_LOG__REPLICA", name.to_owned()),
        ("TONGBAN_EXCHANGE_LOG__SEGMENT_MAX_SECONDS", "1".to_owned()),
        ("TONGBAN_EXCHANGE_LOG__SHIPPING__URL", format!("file://{shared}")),
        ("TONGBAN_EXCHANGE_LOG__SHIPPING__INTERVAL_SECS", "1".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// A replica on the demo's configuration and store, with its own exchange log, shipped to
/// `shared`.
async fn replica(config: &Path, store: &str, name: &str, shared: &str) -> anyhow::Result<Gateway> {
    let log_dir = format!("exchange-{name}");
    let config = config.to_str().context("utf-8")?;
    let mut env = shipping(name, shared);
    env.push(("TONGBAN_STORE__URL".into(), store.to_owned()));
    env.push(("TONGBAN_SERVER__LISTEN".into(), "127.0.0.1:0".into()));
    env.push(("TONGBAN_EXCHANGE_LOG__DIR".into(), log_dir));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let gateway =
        Gateway::start_with_env(&["serve", "--config", config], &env, Duration::from_secs(60)).await?;
    gateway.wait_ready(Duration::from_secs(60)).await?;
    Ok(gateway)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_behind_a_balancer_carry_a_killed_replica_and_hear_each_others_grants() -> anyhow::Result<()>
{
    let Some(store) = tongban_e2e::postgres_store("replicas").await? else {
        eprintln!("skipping: no PostgreSQL server");
        return Ok(());
    };
    if !Path::new(HAPROXY).exists() {
        anyhow::ensure!(std::env::var_os("TONGBAN_REQUIRE_PG").is_none(), "tests/run.sh installs haproxy");
        eprintln!("skipping: no haproxy");
        return Ok(());
    }
    // Replica A is the demo (it generates the datasets and seeds the store); B and C serve its
    // configuration on the same store.
    let work = tempfile::tempdir()?;
    let shared = work.path().join("shared");
    let shared = shared.to_str().context("utf-8")?;
    let mut env = shipping("a", shared);
    env.push(("TONGBAN_STORE__URL".into(), store.clone()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let demo = Demo::start_with(2000, &env).await?;
    let config = demo.data_dir().join("tongban.toml");
    let b = replica(&config, &store, "b", shared).await?;
    let c = replica(&config, &store, "c", shared).await?;
    let port = free_port()?;
    let replicas =
        [("a", port_of(&demo.gateway.base_url)?), ("b", port_of(&b.base_url)?), ("c", port_of(&c.base_url)?)];
    let _balancer = haproxy(work.path(), port, &replicas).await?;
    let balanced = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let started = Instant::now();
    while !client.get(format!("{balanced}/readyz")).send().await.is_ok_and(|r| r.status() == 200) {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(20), "the balancer never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (person, name) = demo.household_person("4115")?;
    let (_, police) = demo.system(POLICE_SYSTEM)?;
    let key = police.token().context("the system's key")?.to_owned();
    let verify = {
        let client = client.clone();
        let key = key.clone();
        let body = json!({"resource": HOUSEHOLD, "key": person, "claims": {"name": name}});
        move |base: String| {
            let request = client
                .post(format!("{base}/api/v1/data/verify"))
                .bearer_auth(&key)
                .header("x-tongban-service-item", "KSTB-GA-001")
                .header("x-tongban-case-number", "GD-2026-009001")
                .header("x-tongban-operator", "0031")
                .json(&body);
            async move { request.send().await }
        }
    };

    // One view of the log: calls made through the balancer land on all three replicas, and the
    // operator's dashboard, asked of any one replica, counts every one of them, each record
    // naming its replica, once the replicas' sealed segments are shipped.
    let calls = 60;
    for _ in 0..calls {
        let status = verify(balanced.clone()).await?.status();
        assert!(status == 200 || status == 429, "{status}");
    }
    let operator = demo.sign_in("operator").await?;
    let system_id = demo.system(POLICE_SYSTEM)?.0;
    let shipped = Instant::now();
    let by_replica = loop {
        let (status, stats) =
            operator.get(&format!("/exchanges/stats?bucket=all&by=replica&system={system_id}")).await?;
        assert_eq!(status, 200, "{stats}");
        let rows = stats["rows"].as_array().context("rows")?.clone();
        let total: u64 = rows.iter().filter_map(|r| r["calls"].as_u64()).sum();
        if total == calls {
            break rows;
        }
        assert!(total <= calls, "more records than calls: {stats}");
        assert!(
            shipped.elapsed() < Duration::from_secs(30),
            "the dashboard counts {total} of {calls}: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let replicas_named: Vec<&str> = by_replica.iter().filter_map(|r| r["replica"].as_str()).collect();
    assert_eq!(replicas_named.len(), 3, "every replica served some: {by_replica:?}");
    for name in ["a", "b", "c"] {
        assert!(replicas_named.contains(&name), "{name}: {by_replica:?}");
    }
    // Asked of another replica, the same totals.
    let operator_on_c = tongban_e2e::Api::sign_in(&c.base_url, "operator", &demo.password()).await?;
    let (_, on_c) = operator_on_c.get(&format!("/exchanges/stats?bucket=all&system={system_id}")).await?;
    assert_eq!(on_c["rows"][0]["calls"].as_u64(), Some(calls), "{on_c}");

    // Load through the balancer from four callers; replica B is killed in the middle of it.
    let stop = Arc::new(AtomicBool::new(false));
    let (answered, failed, after_kill) =
        (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let killed = Arc::new(AtomicBool::new(false));
    let mut callers = Vec::new();
    for _ in 0..4 {
        let (verify, stop, answered, failed, after_kill, killed, balanced) = (
            verify.clone(),
            stop.clone(),
            answered.clone(),
            failed.clone(),
            after_kill.clone(),
            killed.clone(),
            balanced.clone(),
        );
        callers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match verify(balanced.clone()).await {
                    // A refusal by policy (429 at the grant's rate) is an answer; a 5xx or a
                    // broken connection is a failed call.
                    Ok(response) if response.status().as_u16() < 500 => {
                        answered.fetch_add(1, Ordering::Relaxed);
                        if killed.load(Ordering::Relaxed) {
                            after_kill.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    outcome => {
                        eprintln!("a failed call: {:?}", outcome.map(|r| r.status()));
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    b.signal("KILL")?;
    killed.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        caller.await?;
    }
    let (answered, failed, after_kill) = (
        answered.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        after_kill.load(Ordering::Relaxed),
    );
    eprintln!(
        "through the balancer: {answered} answered, {failed} failed, {after_kill} answered after the kill"
    );
    assert!(answered > 50, "{answered} answered");
    assert!(failed <= 4, "{failed} calls failed: more than the four callers could have had in flight on B");
    assert!(after_kill > 20, "the balancer carried on after the kill: {after_kill} answered");

    // A grant revoked through replica A is refused on replica C within two seconds (once the
    // grant's rate, spent by the load, has refilled).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let on_c = verify(c.base_url.clone()).await?;
    assert_eq!(on_c.status(), 200, "answered on C before the revocation");
    let (_, in_force) = police.get("/grants/in-force").await?;
    let grant = in_force["items"]
        .as_array()
        .context("items")?
        .iter()
        .find(|g| g["resource_code"] == HOUSEHOLD && g["service_item"] == "KSTB-GA-001")
        .context("the police's household grant")?
        .clone();
    let grant_id = grant["id"].as_str().context("id")?;
    let supplier = demo.sign_in("supplier.henan-police").await?;
    let revoke = json!({"action": "revoke", "version": grant["version"], "reason": "专项检查发现超范围调用"});
    let (status, revoked) = supplier.post(&format!("/grants/{grant_id}/changes"), &revoke).await?;
    assert_eq!(status, 200, "{revoked}");
    let revoked_at = Instant::now();
    loop {
        let status = verify(c.base_url.clone()).await?.status();
        if status == 403 {
            break;
        }
        assert!(revoked_at.elapsed() < Duration::from_secs(2), "replica C still answers {status} after 2 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("refused on replica C {:?} after the revocation on A", revoked_at.elapsed());

    // A system stopped through replica A is refused on replica C within two seconds, though C
    // had its identity cached from the calls just made.
    let on_c = tongban_e2e::Api::new(&c.base_url, Some(key.clone()));
    assert_eq!(on_c.get("/grants/in-force").await?.0, 200);
    let admin = demo.sign_in("admin").await?;
    let (status, stopped) =
        admin.put(&format!("/systems/{system_id}/enabled"), &json!({"enabled": false})).await?;
    assert_eq!(status, 200, "{stopped}");
    let stopped_at = Instant::now();
    loop {
        let (status, _) = on_c.get("/grants/in-force").await?;
        if status == 401 {
            break;
        }
        assert!(
            stopped_at.elapsed() < Duration::from_secs(2),
            "replica C still lets the stopped system in ({status})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("the stopped system refused on replica C {:?} after it was stopped on A", stopped_at.elapsed());
    c.stop().await?;
    Ok(())
}

/// A log shipped to an S3-compatible store (moto's server, from PyPI) is read back from it:
/// with retention at zero days the gateway removes every segment the store has confirmed, and
/// the dashboard still counts every call, reading the removed ones from the bucket.
#[tokio::test]
async fn a_log_shipped_to_an_s3_compatible_store_is_read_back_after_retention() -> anyhow::Result<()> {
    let Some(s3) = crate::data::S3Server::start().await? else { return Ok(()) };
    let client = reqwest::Client::new();
    let created = client.put(format!("{}/tongban-log", s3.endpoint)).send().await?;
    anyhow::ensure!(created.status().is_success(), "create bucket: {}", created.status());
    let s3_env = s3.env();
    let env = [
        s3_env[0],
        s3_env[1],
        s3_env[2],
        s3_env[3],
        s3_env[4],
        ("TONGBAN_EXCHANGE_LOG__REPLICA", "gateway-0"),
        ("TONGBAN_EXCHANGE_LOG__SEGMENT_MAX_SECONDS", "1"),
        ("TONGBAN_EXCHANGE_LOG__RETENTION_DAYS", "0"),
        ("TONGBAN_EXCHANGE_LOG__SHIPPING__URL", "s3://tongban-log/province"),
        ("TONGBAN_EXCHANGE_LOG__SHIPPING__INTERVAL_SECS", "1"),
    ];
    let demo = Demo::start_with(2000, &env).await?;
    let (person, name) = demo.household_person("4115")?;
    let (system_id, police) = demo.system(POLICE_SYSTEM)?;
    let police = police.with_headers(&[
        ("x-tongban-service-item", "KSTB-GA-001"),
        ("x-tongban-case-number", "GD-2026-009002"),
        ("x-tongban-operator", "0031"),
    ]);
    let claim = json!({"resource": HOUSEHOLD, "key": person, "claims": {"name": name}});
    let calls = 30;
    for _ in 0..calls {
        let (status, answer) = police.post("/data/verify", &claim).await?;
        assert!(status == 200 || status == 429, "{status} {answer}");
        // Spread over several segments, sealed every second.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let operator = demo.sign_in("operator").await?;
    let log_dir = demo.data_dir().join("exchange");
    let started = Instant::now();
    loop {
        let (status, stats) =
            operator.get(&format!("/exchanges/stats?bucket=all&system={system_id}")).await?;
        assert_eq!(status, 200, "{stats}");
        let counted = stats["rows"][0]["calls"].as_u64().unwrap_or(0);
        let removed = log_dir.join("retained.json").exists();
        if counted == calls && removed {
            break;
        }
        assert!(counted <= calls, "{stats}");
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "after 40 s the dashboard counts {counted} of {calls}, segments removed: {removed}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The bucket holds the replica's segments and their copies under their fixed names.
    let listing = client
        .get(format!("{}/tongban-log?list-type=2&prefix=province/gateway-0/", s3.endpoint))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        listing.contains("province/gateway-0/segments/") && listing.contains("province/gateway-0/parquet/"),
        "{listing}"
    );
    // The audit walks the whole chain from the bucket, the segments removed here included,
    // once the last segments are sealed and shipped too.
    let started = Instant::now();
    let report = loop {
        let fetched = tempfile::tempdir()?;
        let fetch = std::process::Command::new(tongban_e2e::tongban_bin())
            .args(["audit", "fetch", "--shared", "s3://tongban-log/province", "--out"])
            .arg(fetched.path())
            .envs(env)
            .output()?;
        assert!(fetch.status.success(), "{}", String::from_utf8_lossy(&fetch.stderr));
        // With the gateway's evidence certificate, as an auditor holds it: the copies carry the
        // signed heads, not the certificates kept beside the log.
        let audit = std::process::Command::new(tongban_e2e::tongban_bin())
            .args(["audit", "verify", "--json", "--data-dir"])
            .arg(fetched.path().join("gateway-0"))
            .arg("--cert")
            .arg(demo.data_dir().join("evidence/cert.pem"))
            .output()?;
        assert!(
            audit.status.success(),
            "{}{}",
            String::from_utf8_lossy(&audit.stdout),
            String::from_utf8_lossy(&audit.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&audit.stdout)?;
        if report["records"].as_u64().is_some_and(|n| n >= calls) {
            break report;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the bucket's chain holds too few records: {report}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(report["sealed"].as_u64().is_some_and(|n| n >= 2), "{report}");
    assert_eq!(
        report["retained_from"],
        serde_json::Value::Null,
        "the bucket holds the chain from its start: {report}"
    );

    // And the records read back name the replica.
    let (status, found) = operator.get(&format!("/exchanges?system={system_id}&limit=5")).await?;
    assert_eq!(status, 200, "{found}");
    let items = found["rows"].as_array().context("rows")?;
    assert!(!items.is_empty() && items.iter().all(|r| r["replica"] == "gateway-0"), "{found}");
    Ok(())
}
