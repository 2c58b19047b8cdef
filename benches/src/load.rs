//! Load over real sockets, shared by the benchmarks that run servers: processes that stop
//! with the run, free ports, wrk as the load generator with its scripts, processor time per
//! call from `/proc`, rounds and their medians, and signing in to a gateway.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// wrk's connections for a path, unless a benchmark says otherwise.
pub const CONNECTIONS: u32 = 32;
/// How long wrk loads each path.
pub const SECONDS: &str = "10";

/// Waits for SIGINT or SIGTERM and names it.
pub async fn stopped() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).expect("SIGINT handler");
    let mut terminate = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = interrupt.recv() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
    }
}

/// Worker threads (or nginx's worker processes) for every server under test:
/// `TONGBAN_BENCH_WORKERS`, or one fewer than the processors, since wrk keeps one busy. Each
/// server gets the same count, so none is favoured by it.
pub fn server_workers() -> usize {
    std::env::var("TONGBAN_BENCH_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .filter(|&w| w > 0)
        .unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
        })
}

/// A process that is killed when dropped.
#[derive(Debug)]
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

pub fn tongban_bin() -> PathBuf {
    if let Ok(path) = std::env::var("TONGBAN_BIN") {
        return PathBuf::from(path);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("release/tongban")
}

pub async fn wait_for(url: &str, client: &reqwest::Client) {
    let deadline = Instant::now() + Duration::from_secs(600);
    while Instant::now() < deadline {
        if client.get(url).send().await.is_ok_and(|r| r.status().as_u16() < 500) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{url} did not come up");
}

/// One wrk run: requests per second and latency percentiles.
#[derive(Debug)]
pub struct Load {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: String,
}

pub fn wrk(url: &str, script: &Path, connections: u32) -> Load {
    let output = Command::new("wrk")
        .args(["-t1", "-c", &connections.to_string(), "-d", &format!("{SECONDS}s"), "--latency", "-s"])
        .arg(script)
        .arg(url)
        .output()
        .expect("run wrk (benches/run.sh installs it)");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let field = |prefix: &str| -> Option<String> {
        text.lines().find(|l| l.trim_start().starts_with(prefix)).map(|l| l.trim().to_owned())
    };
    let millis = |value: &str| -> f64 {
        let value = value.trim();
        if let Some(us) = value.strip_suffix("us") {
            us.parse::<f64>().unwrap_or(f64::NAN) / 1000.0
        } else if let Some(ms) = value.strip_suffix("ms") {
            ms.parse().unwrap_or(f64::NAN)
        } else if let Some(s) = value.strip_suffix('s') {
            s.parse::<f64>().unwrap_or(f64::NAN) * 1000.0
        } else {
            f64::NAN
        }
    };
    let percentile =
        |p: &str| field(p).and_then(|l| l.split_whitespace().nth(1).map(millis)).unwrap_or(f64::NAN);
    let rps = field("Requests/sec:")
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN);
    let errors =
        [field("Non-2xx"), field("Socket errors")].into_iter().flatten().collect::<Vec<_>>().join("; ");
    Load { rps, p50_ms: percentile("50%"), p99_ms: percentile("99%"), errors }
}

/// Loads each `(label, url, script)` in turn with wrk and prints what it measured.
pub fn load_each(runs: &[(&str, String, &PathBuf)]) -> Vec<Load> {
    load_each_with(runs, CONNECTIONS, None).into_iter().map(|(load, _)| load).collect()
}

/// [`load_each`] at `connections`, also returning the processor time per call of `server`
/// (a process id) over each run, in microseconds, when given.
pub fn load_each_with(
    runs: &[(&str, String, &PathBuf)],
    connections: u32,
    server: Option<u32>,
) -> Vec<(Load, Option<f64>)> {
    runs.iter()
        .map(|(label, url, script)| {
            load_measured(label, url, script, connections, &|| server.and_then(cpu_seconds))
        })
        .collect()
}

/// Loads `url` with wrk at `connections` and prints what it measured, with the processor time
/// per call that `cpu` (seconds used so far by the server, read before and after) gives.
pub fn load_measured(
    label: &str,
    url: &str,
    script: &Path,
    connections: u32,
    cpu: &dyn Fn() -> Option<f64>,
) -> (Load, Option<f64>) {
    let seconds: f64 = SECONDS.parse().expect("a number of seconds");
    let before = cpu();
    let load = wrk(url, script, connections);
    let cpu_us = cpu().zip(before).map(|(after, before)| (after - before) * 1e6 / (load.rps * seconds));
    let errors = if load.errors.is_empty() { String::new() } else { format!(" errors: {}", load.errors) };
    let shown = cpu_us.map(|us| format!(" cpu_us_per_call={us:.1}")).unwrap_or_default();
    println!(
        "load {label}, c{connections}: rps={:.0} p50_ms={:.2} p99_ms={:.2}{shown}{errors}",
        load.rps, load.p50_ms, load.p99_ms
    );
    (load, cpu_us)
}

/// The processor time process `pid` and its children (nginx's workers) have used, in seconds.
pub fn cpu_seconds_with_children(pid: u32) -> Option<f64> {
    let mut total = cpu_seconds(pid)?;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else { continue };
        // The parent's id is the second field after the command name.
        let parent =
            stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if parent == Some(pid) {
            total += cpu_seconds(child).unwrap_or_default();
        }
    }
    Some(total)
}

/// The most memory process `pid` has held resident, in MiB (`VmHWM`).
pub fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The processor time process `pid` has used, in seconds, from `/proc/PID/stat`.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    static TICKS_PER_SECOND: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    let ticks_per_second = *TICKS_PER_SECOND.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    });
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces: user
    // time is the 14th field of the line and system time the 15th.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let user: f64 = fields.next()?.parse().ok()?;
    let system: f64 = fields.next()?.parse().ok()?;
    Some((user + system) / ticks_per_second)
}

/// A wrk script sending `method` with `headers` and `body`.
pub fn script(dir: &Path, name: &str, method: &str, headers: &[(&str, &str)], body: Option<&str>) -> PathBuf {
    let lua_string = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let mut lua = format!("wrk.method = {}\n", lua_string(method));
    for (name, value) in headers {
        lua.push_str(&format!("wrk.headers[{}] = {}\n", lua_string(name), lua_string(value)));
    }
    if let Some(body) = body {
        lua.push_str(&format!("wrk.body = {}\n", lua_string(body)));
    }
    let path = dir.join(format!("{name}.lua"));
    std::fs::write(&path, lua).expect("write the wrk script");
    path
}

/// Loads `runs` in turn, round after round (`TONGBAN_BENCH_ROUNDS`, 3 by default), and for
/// each `(label, numerator, denominator)` prints the median of the rounds' throughput ratios
/// with every round's value. A ratio within one round compares runs seconds apart: this
/// machine's speed drifts by more than the differences measured between one pass and the next.
pub fn load_rounds(runs: &[(&str, String, &PathBuf)], ratios: &[(&str, usize, usize)]) {
    let rounds = rounds_from_env("TONGBAN_BENCH_ROUNDS");
    let mut values = vec![Vec::new(); ratios.len()];
    for round in 1..=rounds {
        println!("round {round} of {rounds}");
        let loads = load_each(runs);
        for ((_, numerator, denominator), values) in ratios.iter().zip(&mut values) {
            values.push(loads[*numerator].rps / loads[*denominator].rps);
        }
    }
    for ((label, _, _), values) in ratios.iter().zip(&values) {
        println!("load ratio {label}: rps={:.2}, median of {rounds} rounds {values:.2?}", median(values));
    }
}

/// Loads each of `runs` (label, URL, script, the server's process) in turn at `connections`,
/// round after round, answering each run's throughput and the processor time per call that
/// `cpu` reads for its process, one value per round: `(rps[run][round], cpu_us[run][round])`.
pub fn measured_rounds(
    runs: &[(&str, String, &PathBuf, u32)],
    connections: u32,
    rounds: usize,
    cpu: fn(u32) -> Option<f64>,
) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let mut rps = vec![Vec::new(); runs.len()];
    let mut cpu_us = vec![Vec::new(); runs.len()];
    for round in 1..=rounds {
        for (index, (label, url, script, pid)) in runs.iter().enumerate() {
            let label = format!("round {round}: {label}");
            let (load, us) = load_measured(&label, url, script, connections, &|| cpu(*pid));
            rps[index].push(load.rps);
            cpu_us[index].push(us.unwrap_or(f64::NAN));
        }
    }
    (rps, cpu_us)
}

/// How many rounds the variable `name` asks for, 3 by default.
pub fn rounds_from_env(name: &str) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(3)
}

/// The middle value (the upper one of an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

pub async fn sign_in(client: &reqwest::Client, base: &str, username: &str, password: &str) -> String {
    let answer: Value = client
        .post(format!("{base}/api/v1/sessions"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .expect("sign in")
        .json()
        .await
        .expect("session");
    answer["token"].as_str().expect("token").to_owned()
}

/// Takes `steps` ((gateway base URL, user, action) in order) on demand `id`, filed at `filed_at`.
pub async fn act(client: &reqwest::Client, id: &str, steps: &[(&str, &str, &str, Value)]) {
    for (base, password, who, action) in steps {
        let token = sign_in(client, base, who, password).await;
        // The step may be waiting for the hand-off to arrive at this gateway.
        let mut answer = Value::Null;
        for _ in 0..100 {
            let current: Value = client
                .get(format!("{base}/api/v1/demands/{id}"))
                .bearer_auth(&token)
                .send()
                .await
                .expect("read")
                .json()
                .await
                .expect("demand");
            let mut body = action.clone();
            body["version"] = current["version"].clone();
            let response = client
                .post(format!("{base}/api/v1/demands/{id}/actions"))
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await
                .expect("act");
            let ok = response.status().is_success();
            answer = response.json().await.expect("answer");
            if ok {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(answer["state"].is_string(), "{who}: {answer}");
    }
}

/// Files a demand of 广东's police for `resource` with `item` and `terms` at `base`; answers its id.
pub async fn file(
    client: &reqwest::Client,
    base: &str,
    password: &str,
    resource: &str,
    item: &str,
    terms: &Value,
) -> String {
    let token = sign_in(client, base, "demander.guangdong-police", password).await;
    let demand: Value = client
        .post(format!("{base}/api/v1/demands"))
        .bearer_auth(&token)
        .json(&json!({"resource_code": resource, "service_item": item, "purpose": "负载基准", "legal_basis": "负载基准",
            "terms": terms}))
        .send()
        .await
        .expect("file")
        .json()
        .await
        .expect("demand");
    demand["id"].as_str().unwrap_or_else(|| panic!("filed: {demand}")).to_owned()
}

/// A person of 河南's household file whose identity number starts with 41, and the name.
pub fn person(dir: &Path) -> (String, String) {
    use arrow::array::{Array, AsArray};
    let file = std::fs::File::open(dir.join("datasets/household.parquet")).expect("household file");
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("parquet")
        .build()
        .expect("reader");
    for batch in reader {
        let batch = batch.expect("batch");
        let text = |name: &str| {
            arrow::compute::cast(
                batch.column_by_name(name).expect("column"),
                &arrow::datatypes::DataType::Utf8,
            )
            .expect("text")
        };
        let (ids, names) = (text("id_number"), text("name"));
        let (ids, names) = (ids.as_string::<i32>(), names.as_string::<i32>());
        for row in 0..batch.num_rows() {
            if !ids.is_null(row) && !names.is_null(row) && ids.value(row).starts_with("41") {
                return (ids.value(row).to_owned(), names.value(row).to_owned());
            }
        }
    }
    panic!("no person of 河南")
}
