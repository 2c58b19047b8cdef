//! Verification across gateways against the same verification made locally, in one run on
//! one machine. `tongban demo --federation` runs 河南's and 广东's gateways in one process (so
//! its processor time per call counts both gateways' work); the harness files two grants for
//! 广东's police on 河南's household resource through the workflow API, with rates that do not
//! limit the run:
//!
//! - a local one at 河南 (service item `KSTB-GA-004`): the police system calls 河南's gateway;
//! - one across the gateways (`KSTB-GA-002`): filed and checked at 广东, approved at 河南; the
//!   police system calls 广东's gateway, which decides against its mirror and passes the call
//!   to 河南 over the peers' mutual TLS, where it is decided again, answered and recorded.
//!
//! Each path is loaded with wrk for 10 s, in turn, for several rounds, twice: with the answer
//! cache on (every call after the first is a cache hit at 河南; 广东 never caches) and off.

#![allow(clippy::print_stdout)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tongban_benches::load::{
    Process, act, file, median, person, rounds_from_env, script, server_workers, sign_in, tongban_bin,
    wait_for,
};

const HOUSEHOLD: &str = "A01-410000-0001";
const HOUSEHOLD_AT_GUANGDONG: &str = "410000:A01-410000-0001";
const LOCAL_ITEM: &str = "KSTB-GA-004";
const ACROSS_ITEM: &str = "KSTB-GA-002";
const POLICE: &str = "广东省公安厅跨省户籍业务系统";

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        tokio::select! {
            () = run() => {}
            signal = tongban_benches::load::stopped() => eprintln!("{signal}: stopping the gateways"),
        }
    });
}

/// Four consecutive free ports on loopback, the first returned.
fn four_free_ports() -> u16 {
    for _ in 0..50 {
        let first = tongban_benches::load::free_port();
        if first < u16::MAX - 4
            && (1..4).all(|o| std::net::TcpListener::bind(("127.0.0.1", first + o)).is_ok())
        {
            return first;
        }
    }
    panic!("no four consecutive free ports")
}

/// Both gateways, in one process, on `port` (河南) and `port + 1` (广东).
fn gateways(data_dir: &Path, port: u16, rows: u64, cache: bool) -> Process {
    let mut command = Command::new(tongban_bin());
    command
        .args(["demo", "--federation", "--listen", &format!("127.0.0.1:{port}"), "--rows", &rows.to_string()])
        .arg("--data-dir")
        .arg(data_dir)
        .env("TONGBAN_DATA__LIMITS__SYSTEM_PER_SECOND", "10000000")
        .env("TONGBAN_DATA__LIMITS__RESOURCE_PER_SECOND", "10000000")
        .env("TONGBAN_LOG", "warn")
        .env("TONGBAN_SERVER__WORKER_THREADS", server_workers().to_string())
        .stdout(Stdio::null());
    if !cache {
        command.env("TONGBAN_DATA__CACHE__MAX_BYTES", "0");
    }
    Process(command.spawn().expect("start the gateways (benches/run.sh builds tongban)"))
}

fn credentials(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("demo-credentials.json")).expect("credentials"))
        .expect("json")
}

fn police_key(credentials: &Value) -> String {
    credentials["systems"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == POLICE))
        .and_then(|s| s["api_key"].as_str())
        .expect("the police system's key")
        .to_owned()
}

fn as_refs(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

async fn run() {
    let work = tempfile::tempdir().expect("temporary directory");
    let data_dir = work.path().join("federation");
    let client = reqwest::Client::new();
    let rows: u64 = std::env::var("TONGBAN_BENCH_ROWS").ok().and_then(|r| r.parse().ok()).unwrap_or(200_000);
    let port = four_free_ports();
    let (henan, guangdong) = (format!("http://127.0.0.1:{port}"), format!("http://127.0.0.1:{}", port + 1));
    let (henan_dir, guangdong_dir) = (data_dir.join("henan"), data_dir.join("guangdong"));

    let process = gateways(&data_dir, port, rows, true);
    wait_for(&format!("{henan}/readyz"), &client).await;
    wait_for(&format!("{guangdong}/readyz"), &client).await;
    let (henan_credentials, guangdong_credentials) = (credentials(&henan_dir), credentials(&guangdong_dir));
    let henan_password = henan_credentials["password"].as_str().expect("password").to_owned();
    let guangdong_password = guangdong_credentials["password"].as_str().expect("password").to_owned();
    let terms = json!({
        "items": ["id_number", "name", "status"], "division_prefix": "41", "rate_per_second": 1_000_000,
        "daily_quota": 1_000_000_000,
        "valid_until": (chrono::Local::now().date_naive() + chrono::Duration::days(30)).to_string(),
    });
    let pass = json!({"action": "pass_conformity", "terms": terms});
    let approve = json!({"action": "supplier_approve", "terms": terms});
    // The local grant, at 河南.
    let local = file(&client, &henan, &henan_password, HOUSEHOLD, LOCAL_ITEM, &terms).await;
    let (hp, gp) = (henan_password.as_str(), guangdong_password.as_str());
    act(
        &client,
        &local,
        &[
            (&henan, hp, "demander.guangdong-police", json!({"action": "submit"})),
            (&henan, hp, "reviewer.henan", pass.clone()),
            (&henan, hp, "supplier.henan-police", approve.clone()),
        ],
    )
    .await;
    // The grant across the gateways, once 广东 holds 河南's catalog.
    wait_for(&format!("{guangdong}/api/v1/catalog/remote-resources/{HOUSEHOLD_AT_GUANGDONG}"), &client).await;
    let across = loop {
        let token = sign_in(&client, &guangdong, "operator", gp).await;
        let listed = client
            .get(format!("{guangdong}/api/v1/catalog/remote-resources/{HOUSEHOLD_AT_GUANGDONG}"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("remote resource");
        if listed.status().is_success() {
            break file(&client, &guangdong, gp, HOUSEHOLD_AT_GUANGDONG, ACROSS_ITEM, &terms).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    act(
        &client,
        &across,
        &[
            (&guangdong, gp, "demander.guangdong-police", json!({"action": "submit"})),
            (&guangdong, gp, "reviewer.guangdong", pass),
            (&henan, hp, "supplier.henan-police", approve),
        ],
    )
    .await;

    let (id_number, name) = person(&henan_dir);
    let body = json!({"resource": HOUSEHOLD, "key": id_number, "claims": {"name": name}}).to_string();
    let body_across =
        json!({"resource": HOUSEHOLD_AT_GUANGDONG, "key": id_number, "claims": {"name": name}}).to_string();
    let scripts = work.path();
    let headers = |key: &str, item: &str| {
        vec![
            ("Authorization".to_owned(), format!("Bearer {key}")),
            ("Content-Type".to_owned(), "application/json".to_owned()),
            ("X-Tongban-Service-Item".to_owned(), item.to_owned()),
            ("X-Tongban-Case-Number".to_owned(), "GD-2026-000731".to_owned()),
            ("X-Tongban-Operator".to_owned(), "0031".to_owned()),
        ]
    };
    let local_headers = headers(&police_key(&henan_credentials), LOCAL_ITEM);
    let across_headers = headers(&police_key(&guangdong_credentials), ACROSS_ITEM);
    let local_script = script(scripts, "local", "POST", &as_refs(&local_headers), Some(&body));
    let across_script = script(scripts, "across", "POST", &as_refs(&across_headers), Some(&body_across));
    // Both answer before the load starts.
    for (url, headers, body) in [
        (format!("{henan}/api/v1/data/verify"), &local_headers, &body),
        (format!("{guangdong}/api/v1/data/verify"), &across_headers, &body_across),
    ] {
        let mut request = client.post(&url).body(body.clone());
        for (k, v) in headers {
            request = request.header(k, v);
        }
        let answer = request.send().await.expect("verify");
        let status = answer.status();
        let text = answer.text().await.unwrap_or_default();
        assert!(status.is_success(), "{url}: {status} {text}");
    }
    let runs = [
        ("verification at 河南, local grant", format!("{henan}/api/v1/data/verify"), &local_script),
        ("verification at 广东, answered by 河南", format!("{guangdong}/api/v1/data/verify"), &across_script),
    ];
    measure("cache on", &runs, process.0.id());
    drop(process);

    // Again with the answer cache off: every call is decided, executed and masked at 河南.
    let process = gateways(&data_dir, port, rows, false);
    wait_for(&format!("{henan}/readyz"), &client).await;
    wait_for(&format!("{guangdong}/readyz"), &client).await;
    // 广东's catalog copy and mirror are loaded from its store at start; wait for the call.
    let mut request = client.post(format!("{guangdong}/api/v1/data/verify")).body(body_across.clone());
    for (k, v) in &across_headers {
        request = request.header(k, v);
    }
    let request = request.build().expect("request");
    for _ in 0..100 {
        let answer = client.execute(request.try_clone().expect("clone")).await.expect("verify");
        if answer.status().is_success() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    measure("cache off", &runs, process.0.id());
}

/// Loads each path for several rounds and prints each run, then the medians and the ratio of
/// throughput across gateways to local.
fn measure(heading: &str, runs: &[(&str, String, &std::path::PathBuf)], pid: u32) {
    let rounds = rounds_from_env("TONGBAN_BENCH_ROUNDS");
    let mut figures: Vec<Vec<(f64, f64, f64, f64)>> = vec![Vec::new(); runs.len()];
    for round in 1..=rounds {
        println!("{heading}: round {round} of {rounds}");
        let loads =
            tongban_benches::load::load_each_with(runs, tongban_benches::load::CONNECTIONS, Some(pid));
        for ((load, cpu), figures) in loads.into_iter().zip(&mut figures) {
            figures.push((load.rps, load.p50_ms, load.p99_ms, cpu.unwrap_or(f64::NAN)));
        }
    }
    for ((label, _, _), figures) in runs.iter().zip(&figures) {
        let column = |f: fn(&(f64, f64, f64, f64)) -> f64| median(&figures.iter().map(f).collect::<Vec<_>>());
        println!(
            "federation {heading}, {label}: rps={:.0} p50_ms={:.2} p99_ms={:.2} cpu_us_per_call={:.1} (medians of {rounds})",
            column(|f| f.0),
            column(|f| f.1),
            column(|f| f.2),
            column(|f| f.3)
        );
    }
    let ratios: Vec<f64> =
        figures[1].iter().zip(&figures[0]).map(|(across, local)| across.0 / local.0).collect();
    println!("federation {heading} ratio across/local: rps={:.2}, rounds {ratios:.2?}", median(&ratios));
}
