//! Gateway replicas behind a real load balancer: three `tongban` processes on one PostgreSQL
//! store, each with its own exchange log, behind HAProxy (Debian's) checking `/readyz`. A
//! replica killed under load is carried by the others, and a grant revoked through one replica
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

/// A replica on the demo's configuration and store, with its own exchange log.
async fn replica(config: &Path, store: &str, name: &str) -> anyhow::Result<Gateway> {
    let log_dir = format!("exchange-{name}");
    let config = config.to_str().context("utf-8")?;
    let gateway = Gateway::start_with_env(
        &["serve", "--config", config],
        &[
            ("TONGBAN_STORE__URL", store),
            ("TONGBAN_SERVER__LISTEN", "127.0.0.1:0"),
            ("TONGBAN_EXCHANGE_LOG__DIR", &log_dir),
        ],
        Duration::from_secs(60),
    )
    .await?;
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
    let demo = Demo::start_with(2000, &[("TONGBAN_STORE__URL", &store)]).await?;
    let config = demo.data_dir().join("tongban.toml");
    let b = replica(&config, &store, "b").await?;
    let c = replica(&config, &store, "c").await?;
    let port = free_port()?;
    let work = tempfile::tempdir()?;
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
    let system_id = demo.system(POLICE_SYSTEM)?.0;
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
