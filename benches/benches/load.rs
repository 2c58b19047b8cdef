//! Load over real sockets, in one run on one machine, with wrk as the load generator:
//!
//! 1. the demo housing fund supplier's API, directly;
//! 2. the same API through nginx as a bare `proxy_pass` (the Debian package);
//! 3. the same API through Tongban's proxy, with the full policy path (API key, purpose,
//!    decision, rate limits, JSON filtering and masking, exchange record), uncached;
//! 4. a bare hyper server answering a fixed verification answer;
//! 5. Tongban answering that verification from its cache (the full lifecycle but execute);
//! 6. that verification again while other clients run costly SQL, against it alone.
//!
//! Every server runs as its own process (the hyper baseline as a thread pool of this one) on
//! loopback; wrk runs with one thread and a fixed number of connections for a fixed time. The
//! paths are loaded in turn for several rounds, and each ratio is the median of its rounds.
//! Every server gets the same number of worker threads or processes ([`server_workers`]).

#![allow(clippy::print_stdout)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tongban_benches::load::{
    CONNECTIONS, Process, SECONDS, cpu_seconds, cpu_seconds_with_children, free_port, load_each,
    load_each_with, load_measured, load_rounds, measured_rounds, median, peak_rss_mib, rounds_from_env,
    script, server_workers, sign_in, stopped, tongban_bin, wait_for,
};

/// Connections for the exchange log's cost at saturation: enough callers that waiting for
/// `fdatasync` does not leave the CPU idle.
const SATURATING_CONNECTIONS: u32 = 256;
const SUPPLIER_TOKEN: &str = "load-bench-token";
const HOUSING_FUND: &str = "C03-340000-0001";
const SERVICE_ITEM: &str = "KSTB-JS-002";

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        // Interrupted or terminated, the bench drops its run, whose guards stop every server it
        // started; otherwise the gateway, the supplier and nginx would outlive it.
        tokio::select! {
            () = run() => {}
            signal = stopped() => eprintln!("{signal}: stopping the servers"),
        }
    });
}

/// Files and approves, through the workflow API, a grant on the housing fund resource for the
/// Guangzhou fund system with a rate that does not limit the benchmark.
async fn approve_grant(client: &reqwest::Client, base: &str, password: &str, system_id: &str) {
    let terms = json!({
        "items": ["id_number", "name", "account_status", "balance", "paid_through_month"],
        "division_prefix": "",
        "rate_per_second": 1_000_000,
        "daily_quota": 1_000_000_000,
        "valid_until": (chrono::Local::now().date_naive() + chrono::Duration::days(30)).to_string(),
    });
    let applicant = sign_in(client, base, "demander.guangzhou-fund", password).await;
    let demand: Value = client
        .post(format!("{base}/api/v1/demands"))
        .bearer_auth(&applicant)
        .json(&json!({"resource_code": HOUSING_FUND, "system_id": system_id, "service_item": SERVICE_ITEM,
            "purpose": "负载基准", "legal_basis": "负载基准", "terms": terms}))
        .send()
        .await
        .expect("file")
        .json()
        .await
        .expect("demand");
    let id = demand["id"].as_str().expect("demand id").to_owned();
    let mut version = demand["version"].clone();
    let steps = [
        ("demander.guangzhou-fund", json!({"action": "submit"})),
        ("reviewer.anhui", json!({"action": "pass_conformity", "terms": terms})),
        ("supplier.anhui-housing", json!({"action": "supplier_approve", "terms": terms})),
    ];
    for (who, action) in steps {
        let token = sign_in(client, base, who, password).await;
        let mut body = action;
        body["version"] = version.clone();
        let answer = client
            .post(format!("{base}/api/v1/demands/{id}/actions"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .expect("act");
        let status = answer.status();
        let record: Value = answer.json().await.expect("record");
        assert!(status.is_success(), "{who}: {status} {record}");
        version = record["version"].clone();
    }
}

/// The bare hyper baseline: answers every request with `body`, as the gateway's cache would.
fn bare_hyper(listener: std::net::TcpListener, body: bytes::Bytes, cache_control: Option<&'static str>) {
    use hyper::service::service_fn;
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(server_workers())
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let body = body.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |_request| {
                        let body = body.clone();
                        async move {
                            let mut response =
                                hyper::Response::builder().header("content-type", "application/json");
                            if let Some(value) = cache_control {
                                response = response.header("cache-control", value);
                            }
                            response.body(http_body_util::Full::new(body))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
}

/// nginx as a bare reverse proxy to `upstream` (defaults: HTTP/1.0 upstream, no cache),
/// [`server_workers`] worker processes, access log off.
/// nginx under a bench, stopped by its own `-s stop` when dropped: killing only the master
/// would leave its workers running, holding the bench's output open.
struct Nginx {
    dir: PathBuf,
    master: Process,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new("nginx")
            .arg("-p")
            .arg(&self.dir)
            .arg("-c")
            .arg(self.dir.join("nginx.conf"))
            .args(["-s", "stop"])
            .stderr(Stdio::null())
            .status();
        let _ = self.master.0.wait();
    }
}

fn nginx(dir: &Path, port: u16, upstream: SocketAddr) -> Nginx {
    std::fs::create_dir_all(dir.join("logs")).expect("nginx dir");
    let conf = format!(
        "worker_processes {workers};\npid {dir}/nginx.pid;\nerror_log {dir}/logs/error.log warn;\n\
         events {{ worker_connections 1024; }}\n\
         http {{ access_log off;\n client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy;\n\
          fastcgi_temp_path {dir}/fastcgi; uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;\n\
          server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://{upstream}; }} }} }}\n",
        dir = dir.display(),
        workers = server_workers()
    );
    start_nginx(dir, &conf)
}

/// nginx doing the work the gateway's proxy does, as an operator would configure it: the
/// caller's API key checked through a `map` (an unknown key is refused with 401), a request
/// limit per caller with `limit_req` (set as high as the gateway's, so it refuses nothing but
/// is counted), one JSON line per call in an access log (written, not synced), the supplier's
/// credential put in place of the caller's, and pooled HTTP/1.1 connections to the supplier.
/// It proxies the gateway's own paths (`/api/v1/proxy/RESOURCE/…`), so the same wrk script
/// loads both.
fn nginx_with_policy(dir: &Path, port: u16, upstream: SocketAddr, api_key: &str) -> Nginx {
    std::fs::create_dir_all(dir.join("logs")).expect("nginx dir");
    let conf = format!(
        r#"worker_processes {workers};
pid {dir}/nginx.pid;
error_log {dir}/logs/error.log warn;
events {{ worker_connections 1024; }}
http {{
  client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi; uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;
  map_hash_bucket_size 256;
  map $http_authorization $caller {{ default ""; "Bearer {api_key}" "fund-system"; }}
  limit_req_zone $caller zone=callers:10m rate=10000000r/s;
  log_format exchange escape=json '{{"time":"$time_iso8601","id":"$request_id","caller":"$caller",'
    '"method":"$request_method","uri":"$request_uri","service_item":"$http_x_tongban_service_item",'
    '"status":$status,"bytes_in":$request_length,"bytes_out":$bytes_sent,"seconds":$request_time,'
    '"upstream_status":"$upstream_status","upstream_seconds":"$upstream_response_time"}}';
  access_log {dir}/logs/exchange.json exchange;
  upstream supplier {{ server {upstream}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port};
    location /api/v1/proxy/{HOUSING_FUND}/ {{
      if ($caller = "") {{ return 401; }}
      limit_req zone=callers burst=1000000 nodelay;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "Bearer {SUPPLIER_TOKEN}";
      proxy_pass http://supplier/;
    }}
  }}
}}
"#,
        dir = dir.display(),
        workers = server_workers()
    );
    start_nginx(dir, &conf)
}

/// Loads `url` with POSTs of `body` at a constant `rate` for 10 s with oha (from crates.io,
/// which `benches/run.sh` installs; `TONGBAN_BENCH_OHA` names it), correcting latency for
/// coordinated omission, and answers its median and 99th percentile in milliseconds. Every
/// answer must be a success.
fn constant_rate(url: &str, rate: f64, headers: &[(&str, &str)], body: &str) -> (f64, f64) {
    let oha = std::env::var("TONGBAN_BENCH_OHA").unwrap_or_else(|_| "oha".to_owned());
    let mut command = Command::new(&oha);
    command.args(["-z", "10s", "-c", "64", "-q", &format!("{rate:.0}"), "--latency-correction", "--no-tui"]);
    command.args(["--output-format", "json", "-m", "POST", "-d", body]);
    for (name, value) in headers {
        command.args(["-H", &format!("{name}: {value}")]);
    }
    let output =
        command.arg(url).output().unwrap_or_else(|e| panic!("run {oha} (benches/run.sh installs it): {e}"));
    let report: Value = serde_json::from_slice(&output.stdout).expect("oha's JSON report");
    let success = report["summary"]["successRate"].as_f64().unwrap_or_default();
    let codes = &report["statusCodeDistribution"];
    assert!(
        success > 0.999 && codes.as_object().is_some_and(|c| c.keys().all(|k| k == "200")),
        "oha: every call must succeed: {codes} {}",
        report["errorDistribution"]
    );
    let percentile = |p: &str| report["latencyPercentiles"][p].as_f64().unwrap_or(f64::NAN) * 1000.0;
    (percentile("p50"), percentile("p99"))
}

/// Starts nginx in `dir` with the configuration `conf`.
fn start_nginx(dir: &Path, conf: &str) -> Nginx {
    std::fs::write(dir.join("nginx.conf"), conf).expect("nginx conf");
    let master = Process(
        Command::new("nginx")
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .spawn()
            .expect("start nginx (benches/run.sh installs it)"),
    );
    Nginx { dir: dir.to_path_buf(), master }
}

/// `tongban demo` on `port` over `data_dir`, its housing fund resource bound to `upstream`.
fn gateway(data_dir: &Path, port: u16, rows: u64, upstream: SocketAddr) -> Process {
    gateway_with(data_dir, port, rows, upstream, &[])
}

/// [`gateway`] with extra `TONGBAN_…` settings.
fn gateway_with(
    data_dir: &Path,
    port: u16,
    rows: u64,
    upstream: SocketAddr,
    env: &[(&str, &str)],
) -> Process {
    let binding = format!(
        "[{{resource=\"{HOUSING_FUND}\", url=\"http://{upstream}\", credential_header=\"authorization\", \
         credential=\"Bearer {SUPPLIER_TOKEN}\", envelope=[\"code\", \"message\", \"data\"]}}]"
    );
    Process(
        Command::new(tongban_bin())
            .args(["demo", "--listen", &format!("127.0.0.1:{port}"), "--rows", &rows.to_string()])
            .arg("--data-dir")
            .arg(data_dir)
            .env("TONGBAN_DATA__UPSTREAMS", &binding)
            .env("TONGBAN_DATA__LIMITS__SYSTEM_PER_SECOND", "10000000")
            .env("TONGBAN_DATA__LIMITS__RESOURCE_PER_SECOND", "10000000")
            .env("TONGBAN_LOG", "warn")
            .env("TONGBAN_SERVER__WORKER_THREADS", server_workers().to_string())
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .spawn()
            .expect("start the gateway (benches/run.sh builds it)"),
    )
}

async fn run() {
    let work = tempfile::tempdir().expect("temporary directory");
    let data_dir = work.path().join("demo");
    let client = reqwest::Client::new();
    let (gateway_port, supplier_port, nginx_port) = (free_port(), free_port(), free_port());
    let supplier = SocketAddr::from(([127, 0, 0, 1], supplier_port));
    let rows: u64 = std::env::var("TONGBAN_BENCH_ROWS").ok().and_then(|r| r.parse().ok()).unwrap_or(200_000);

    // Tongban: the demo, its housing fund resource bound to the supplier started below, answers
    // cached for verification, and limits raised out of the way.
    let gateway_process = gateway(&data_dir, gateway_port, rows, supplier);
    let base = format!("http://127.0.0.1:{gateway_port}");
    wait_for(&format!("{base}/readyz"), &client).await;
    let credentials: Value =
        serde_json::from_slice(&std::fs::read(data_dir.join("demo-credentials.json")).expect("credentials"))
            .expect("credentials json");
    let password = credentials["password"].as_str().expect("password");
    let system = credentials["systems"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "广州公积金业务系统"))
        .expect("the fund system");
    let (system_id, api_key) = (system["id"].as_str().expect("id"), system["api_key"].as_str().expect("key"));
    approve_grant(&client, &base, password, system_id).await;

    // The supplier, its answers marked not to be kept, so the proxy path is never cached.
    let parquet = data_dir.join("datasets/housing_fund.parquet");
    let _supplier = Process(
        Command::new(tongban_bin())
            .args([
                "supplier",
                "--listen",
                &supplier.to_string(),
                "--token",
                SUPPLIER_TOKEN,
                "--cache-control",
                "no-store",
            ])
            .arg("--parquet")
            .arg(&parquet)
            .env("TONGBAN_LOG", "warn")
            // The supplier reads no configuration file; tokio reads this.
            .env("TOKIO_WORKER_THREADS", server_workers().to_string())
            .stdout(Stdio::null())
            .spawn()
            .expect("start the supplier"),
    );
    wait_for(&format!("http://{supplier}/deposits/x"), &client).await;

    let _nginx = nginx(&work.path().join("nginx"), nginx_port, supplier);
    wait_for(&format!("http://127.0.0.1:{nginx_port}/deposits/x"), &client).await;

    // An account the supplier holds.
    let id_number = {
        let file = std::fs::File::open(&parquet).expect("housing fund file");
        let batch = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .expect("reader")
            .build()
            .expect("reader")
            .next()
            .expect("a batch")
            .expect("batch");
        let ids = arrow::compute::cast(
            batch.column_by_name("id_number").expect("ids"),
            &arrow::datatypes::DataType::Utf8,
        )
        .expect("text");
        arrow::array::AsArray::as_string::<i32>(&ids).value(0).to_owned()
    };

    let scripts = work.path();
    let supplier_auth = format!("Bearer {SUPPLIER_TOKEN}");
    let caller_auth = format!("Bearer {api_key}");
    let purpose = [
        ("Authorization", caller_auth.as_str()),
        ("X-Tongban-Service-Item", SERVICE_ITEM),
        ("X-Tongban-Case-Number", "GZ-2026-000118"),
        ("X-Tongban-Operator", "0118"),
    ];
    let direct_script = script(scripts, "direct", "GET", &[("Authorization", &supplier_auth)], None);
    let proxy_script = script(scripts, "proxy", "GET", &purpose, None);
    let verify_body =
        json!({"resource": HOUSING_FUND, "key": id_number, "claims": {"account_status": "正常"}}).to_string();
    let mut verify_headers = purpose.to_vec();
    verify_headers.push(("Content-Type", "application/json"));
    let verify_script = script(scripts, "verify", "POST", &verify_headers, Some(&verify_body));

    // Check each path answers 200 once before loading it, and take the cached answer's body
    // for the hyper baseline.
    let check = |request: reqwest::RequestBuilder| async move {
        let answer = request.send().await.expect("call");
        let status = answer.status();
        let body = answer.bytes().await.expect("body");
        assert!(status.is_success(), "{status}: {}", String::from_utf8_lossy(&body));
        body
    };
    let deposit_path = format!("/deposits/{id_number}");
    check(client.get(format!("http://{supplier}{deposit_path}")).header("authorization", &supplier_auth))
        .await;
    check(
        client
            .get(format!("http://127.0.0.1:{nginx_port}{deposit_path}"))
            .header("authorization", &supplier_auth),
    )
    .await;
    let mut proxy_request = client.get(format!("{base}/api/v1/proxy/{HOUSING_FUND}{deposit_path}"));
    let mut verify_request = client.post(format!("{base}/api/v1/data/verify")).body(verify_body.clone());
    for (name, value) in &verify_headers {
        verify_request = verify_request.header(*name, *value);
        if *name != "Content-Type" {
            proxy_request = proxy_request.header(*name, *value);
        }
    }
    check(proxy_request).await;
    let verification = check(verify_request).await;
    let hyper_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let hyper_port = hyper_listener.local_addr().expect("address").port();
    bare_hyper(hyper_listener, verification, None);

    println!(
        "load: wrk -t1 -c{CONNECTIONS} -d{SECONDS}s, dataset rows={rows}, {} worker(s) per server",
        server_workers()
    );
    let runs = [
        ("supplier direct", format!("http://{supplier}{deposit_path}"), &direct_script),
        ("nginx proxy_pass", format!("http://127.0.0.1:{nginx_port}{deposit_path}"), &direct_script),
        (
            "tongban proxy, full policy path",
            format!("{base}/api/v1/proxy/{HOUSING_FUND}{deposit_path}"),
            &proxy_script,
        ),
        ("bare hyper, fixed answer", format!("http://127.0.0.1:{hyper_port}/"), &verify_script),
        ("tongban verification, cached", format!("{base}/api/v1/data/verify"), &verify_script),
    ];
    // `TONGBAN_BENCH_LOAD=logging` runs only the exchange log's cost, below; `hold` only sets
    // up.
    // `sql` only verification under SQL, below.
    let mode = std::env::var("TONGBAN_BENCH_LOAD").ok();
    let everything = mode
        .as_deref()
        .is_none_or(|v| !["logging", "hold", "sql", "receipts", "proxy", "latency", "hyper"].contains(&v));
    if everything {
        load_rounds(
            &runs,
            &[("tongban proxy / nginx proxy_pass", 2, 1), ("tongban cached verification / bare hyper", 4, 3)],
        );
    }
    // Cached verification with the default durable log against the bare hyper server
    // (`TONGBAN_BENCH_LOAD=hyper` runs only this), at both connection counts, with each
    // server's processor time per call: the gateway's process, and for hyper this harness's,
    // whose other threads wait while wrk runs.
    if everything || mode.as_deref() == Some("hyper") {
        let gateway_pid = gateway_process.0.id();
        let harness_pid = std::process::id();
        let measured = [
            (
                "bare hyper, fixed answer",
                format!("http://127.0.0.1:{hyper_port}/"),
                &verify_script,
                harness_pid,
            ),
            (
                "tongban verification, cached, records fsync",
                format!("{base}/api/v1/data/verify"),
                &verify_script,
                gateway_pid,
            ),
        ];
        let rounds = rounds_from_env("TONGBAN_BENCH_ROUNDS");
        for connections in [CONNECTIONS, SATURATING_CONNECTIONS] {
            let (rps, cpu) = measured_rounds(&measured, connections, rounds, cpu_seconds);
            let ratios: Vec<f64> =
                rps[1].iter().zip(&rps[0]).map(|(gateway, hyper)| gateway / hyper).collect();
            println!(
                "load ratio tongban cached verification (fsync) / bare hyper, c{connections}, median of {rounds} \
                 rounds: {:.3} {ratios:.3?}; cpu us per call {:.1} / {:.1}",
                median(&ratios),
                median(&cpu[1]),
                median(&cpu[0]),
            );
        }
        if mode.is_some() {
            return;
        }
    }
    if everything || mode.as_deref() == Some("sql") {
        let police = credentials["systems"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["name"] == "广东省公安厅跨省户籍业务系统"))
            .and_then(|s| s["api_key"].as_str())
            .expect("the police system's key");
        verification_under_sql(&client, &base, police, &verify_script).await;
        if mode.is_some() {
            return;
        }
    }

    // The proxies' own cost: the same three paths to an upstream that answers at once (a bare
    // hyper server giving the supplier's answer, marked not to be kept).
    drop(gateway_process);
    let deposit =
        check(client.get(format!("http://{supplier}{deposit_path}")).header("authorization", &supplier_auth))
            .await;
    let fast_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let fast = fast_listener.local_addr().expect("address");
    bare_hyper(fast_listener, deposit, Some("no-store"));
    let (gateway_port, nginx_port) = (free_port(), free_port());
    let fast_gateway = gateway(&data_dir, gateway_port, rows, fast);
    let base = format!("http://127.0.0.1:{gateway_port}");
    wait_for(&format!("{base}/readyz"), &client).await;
    let _nginx_fast = nginx(&work.path().join("nginx-fast"), nginx_port, fast);
    wait_for(&format!("http://127.0.0.1:{nginx_port}/deposits/x"), &client).await;
    let mut proxy_request = client.get(format!("{base}/api/v1/proxy/{HOUSING_FUND}{deposit_path}"));
    for (name, value) in &purpose {
        proxy_request = proxy_request.header(*name, *value);
    }
    check(proxy_request).await;
    // `TONGBAN_BENCH_LOAD=hold` stops here and keeps every server up, for profiling the
    // gateway by hand (its settings, such as `TONGBAN_EXCHANGE_LOG__DURABILITY`, come from
    // this process's environment).
    if std::env::var("TONGBAN_BENCH_LOAD").is_ok_and(|v| v == "hold") {
        println!(
            "holding until SIGINT or SIGTERM (bench pid {}): gateway pid {}",
            std::process::id(),
            fast_gateway.0.id()
        );
        println!("  wrk -t1 -c{CONNECTIONS} -d10s -s {} {base}/api/v1/data/verify", verify_script.display());
        println!(
            "  wrk -t1 -c{CONNECTIONS} -d10s -s {} {base}/api/v1/proxy/{HOUSING_FUND}{deposit_path}",
            proxy_script.display()
        );
        println!(
            "  wrk -t1 -c{CONNECTIONS} -d10s -s {} http://127.0.0.1:{hyper_port}/",
            verify_script.display()
        );
        tokio::time::sleep(Duration::from_secs(3 * 3600)).await;
        return;
    }
    let runs = [
        ("fast upstream direct", format!("http://{fast}{deposit_path}"), &direct_script),
        ("nginx proxy_pass to it", format!("http://127.0.0.1:{nginx_port}{deposit_path}"), &direct_script),
        (
            "tongban proxy to it, full policy path",
            format!("{base}/api/v1/proxy/{HOUSING_FUND}{deposit_path}"),
            &proxy_script,
        ),
    ];
    if everything {
        load_rounds(&runs, &[("tongban proxy / nginx proxy_pass, fast upstream", 2, 1)]);
    }

    // The proxy against nginx doing comparable work (`TONGBAN_BENCH_LOAD=proxy` runs only
    // this): the same wrk script through both, the gateway with its records made durable (the
    // default) and only written (as nginx writes its access log), each server's processor
    // time per call read from `/proc`, round after round.
    if everything || mode.as_deref() == Some("proxy") {
        let policy_port = free_port();
        let nginx_policy = nginx_with_policy(&work.path().join("nginx-policy"), policy_port, fast, api_key);
        let policy_base = format!("http://127.0.0.1:{policy_port}");
        wait_for(&format!("{policy_base}/api/v1/proxy/{HOUSING_FUND}/deposits/x"), &client).await;
        let write_port = free_port();
        let write_log = work.path().join("exchange-write");
        let write_gateway = gateway_with(
            &data_dir,
            write_port,
            rows,
            fast,
            &[
                ("TONGBAN_EXCHANGE_LOG__DURABILITY", "write"),
                ("TONGBAN_EXCHANGE_LOG__DIR", write_log.to_str().expect("a UTF-8 temporary path")),
            ],
        );
        let write_base = format!("http://127.0.0.1:{write_port}");
        wait_for(&format!("{write_base}/readyz"), &client).await;
        let proxy_path = format!("/api/v1/proxy/{HOUSING_FUND}{deposit_path}");
        for target in [&policy_base, &write_base, &base] {
            let mut request = client.get(format!("{target}{proxy_path}"));
            for (name, value) in &purpose {
                request = request.header(*name, *value);
            }
            check(request).await;
        }
        // A key nginx does not know is refused, as the gateway refuses it.
        let refused = client
            .get(format!("{policy_base}{proxy_path}"))
            .header("authorization", "Bearer not-a-key")
            .send()
            .await
            .expect("call");
        assert_eq!(refused.status(), 401);
        let (gateway_pid, write_pid) = (fast_gateway.0.id(), write_gateway.0.id());
        let (nginx_policy_pid, nginx_bare_pid) = (nginx_policy.master.0.id(), _nginx_fast.master.0.id());
        let measured: [(&str, String, &PathBuf, u32); 4] = [
            (
                "nginx, key map + limit_req + JSON access log",
                format!("{policy_base}{proxy_path}"),
                &proxy_script,
                nginx_policy_pid,
            ),
            (
                "nginx proxy_pass, bare",
                format!("http://127.0.0.1:{nginx_port}{deposit_path}"),
                &direct_script,
                nginx_bare_pid,
            ),
            (
                "tongban proxy, records fsync (default)",
                format!("{base}{proxy_path}"),
                &proxy_script,
                gateway_pid,
            ),
            ("tongban proxy, records written", format!("{write_base}{proxy_path}"), &proxy_script, write_pid),
        ];
        let rounds = rounds_from_env("TONGBAN_BENCH_ROUNDS");
        for connections in [CONNECTIONS, SATURATING_CONNECTIONS] {
            let (rps, cpu) = measured_rounds(&measured, connections, rounds, cpu_seconds_with_children);
            let ratio = |a: usize, b: usize| -> (f64, Vec<f64>) {
                let values: Vec<f64> = rps[a].iter().zip(&rps[b]).map(|(x, y)| x / y).collect();
                (median(&values), values)
            };
            for (label, a, b) in [
                ("tongban proxy (fsync) / nginx with policy", 2, 0),
                ("tongban proxy (written) / nginx with policy", 3, 0),
                ("tongban proxy (fsync) / nginx proxy_pass", 2, 1),
                ("nginx with policy / nginx proxy_pass", 0, 1),
            ] {
                let (median_ratio, values) = ratio(a, b);
                println!(
                    "load ratio {label}, c{connections}, median of {rounds} rounds: {median_ratio:.3} {values:.3?}; \
                     cpu us per call {:.1} / {:.1}",
                    median(&cpu[a]),
                    median(&cpu[b]),
                );
            }
        }
        for (label, pid) in [("fsync", gateway_pid), ("written", write_pid)] {
            println!(
                "gateway peak resident memory after the proxy runs ({label}, dataset rows={rows}): {:.0} MiB",
                peak_rss_mib(pid).unwrap_or(f64::NAN)
            );
        }
        if mode.is_some() {
            return;
        }
    }
    // Latency at half the saturated throughput, under constant-rate load with the latency
    // of calls that could not be sent on time counted from when they should have been
    // (`TONGBAN_BENCH_LOAD=latency` runs only this): oha's `--latency-correction`.
    if everything || mode.as_deref() == Some("latency") {
        let url = format!("{base}/api/v1/data/verify");
        let gateway_pid = fast_gateway.0.id();
        let rounds = rounds_from_env("TONGBAN_BENCH_ROUNDS");
        let (mut p50s, mut p99s) = (Vec::new(), Vec::new());
        for round in 1..=rounds {
            let (saturated, _) = load_measured(
                &format!("round {round}: tongban verification, cached, saturated"),
                &url,
                &verify_script,
                SATURATING_CONNECTIONS,
                &|| cpu_seconds_with_children(gateway_pid),
            );
            let rate = (saturated.rps / 2.0).floor().max(1.0);
            let (p50, p99) = constant_rate(&url, rate, &verify_headers, &verify_body);
            println!(
                "latency round {round}: tongban verification, cached, at {rate:.0}/s (half of {:.0}/s): \
                 p50_ms={p50:.2} p99_ms={p99:.2}",
                saturated.rps
            );
            p50s.push(p50);
            p99s.push(p99);
        }
        println!(
            "latency cached verification at half its saturated throughput, median of {rounds} rounds: \
             p50 {:.2} ms, p99 {:.2} ms (rounds {p99s:.2?})",
            median(&p50s),
            median(&p99s)
        );
        println!(
            "gateway peak resident memory after the verification runs (dataset rows={rows}): {:.0} MiB",
            peak_rss_mib(gateway_pid).unwrap_or(f64::NAN)
        );
        if mode.is_some() {
            return;
        }
    }
    drop(fast_gateway);

    // What receipts cost (`TONGBAN_BENCH_LOAD=receipts` runs only this): the same gateway,
    // records durable (the default), with every answer receipted and every group commit
    // signed (SM2 over SM3, the default), and with receipts off. Loaded in turn, round after
    // round; each ratio is the median of its rounds.
    if everything || mode.as_deref() == Some("receipts") {
        let settings = [("on", "true"), ("off", "false")];
        let mut gateways = Vec::new();
        for (name, receipts) in settings {
            let port = free_port();
            let log_dir = work.path().join(format!("exchange-receipts-{name}"));
            let log_dir = log_dir.to_str().expect("a UTF-8 temporary path");
            let process = gateway_with(
                &data_dir,
                port,
                rows,
                fast,
                &[("TONGBAN_EVIDENCE__RECEIPTS", receipts), ("TONGBAN_EXCHANGE_LOG__DIR", log_dir)],
            );
            let base = format!("http://127.0.0.1:{port}");
            wait_for(&format!("{base}/readyz"), &client).await;
            let mut request = client.post(format!("{base}/api/v1/data/verify")).body(verify_body.clone());
            for (header, value) in &verify_headers {
                request = request.header(*header, *value);
            }
            let answer = request.send().await.expect("call");
            assert_eq!(
                answer.headers().contains_key("x-tongban-receipt"),
                receipts == "true",
                "receipts {name}"
            );
            gateways.push((process, base));
        }
        let rounds = rounds_from_env("TONGBAN_BENCH_ROUNDS");
        for connections in [CONNECTIONS, SATURATING_CONNECTIONS] {
            let (mut throughput, mut cpu, mut cpu_on, mut cpu_off) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for round in 1..=rounds {
                let mut loads = Vec::new();
                for ((name, _), (process, base)) in settings.iter().zip(&gateways) {
                    let label = format!("round {round}: tongban verification, cached, receipts {name}");
                    let runs = [(label.as_str(), format!("{base}/api/v1/data/verify"), &verify_script)];
                    loads.extend(load_each_with(&runs, connections, Some(process.0.id())));
                }
                throughput.push(loads[0].0.rps / loads[1].0.rps);
                let (on, off) = (loads[0].1.unwrap_or(f64::NAN), loads[1].1.unwrap_or(f64::NAN));
                cpu.push(off / on);
                cpu_on.push(on);
                cpu_off.push(off);
            }
            println!(
                "load ratio receipts on / off, cached verification, c{connections}, median of {rounds} rounds: \
                 throughput {:.3}, processor time per call off / on {:.3} ({:.1} us on, {:.1} us off; \
                 rounds {throughput:.3?} {cpu:.3?})",
                median(&throughput),
                median(&cpu),
                median(&cpu_on),
                median(&cpu_off),
            );
        }
        if mode.is_some() {
            return;
        }
    }

    // What the exchange log costs: the same gateway with records made durable (fdatasync
    // before each answer, the default), only written, and not kept at all. The three run side
    // by side (an idle one costs nothing) and are loaded in turn, round after round, and each
    // ratio is the median of its rounds: this machine's speed drifts by more than the
    // difference being measured, so one pass of off, then write, then fsync compares
    // different moments rather than different settings.
    let durabilities = ["off", "write", "fsync"];
    let mut gateways = Vec::new();
    for durability in durabilities {
        let port = free_port();
        // One dataset and store, but each gateway its own exchange log (a log has one writer).
        let log_dir = work.path().join(format!("exchange-{durability}"));
        let log_dir = log_dir.to_str().expect("a UTF-8 temporary path");
        let process = gateway_with(
            &data_dir,
            port,
            rows,
            fast,
            &[("TONGBAN_EXCHANGE_LOG__DURABILITY", durability), ("TONGBAN_EXCHANGE_LOG__DIR", log_dir)],
        );
        let base = format!("http://127.0.0.1:{port}");
        wait_for(&format!("{base}/readyz"), &client).await;
        let mut verify_request = client.post(format!("{base}/api/v1/data/verify")).body(verify_body.clone());
        for (name, value) in &verify_headers {
            verify_request = verify_request.header(*name, *value);
        }
        check(verify_request).await;
        gateways.push((process, base));
    }
    let rounds = rounds_from_env("TONGBAN_BENCH_LOG_ROUNDS");
    // ratios[connections][path][durability - 1]: throughput against `off` in each round.
    let mut ratios = vec![vec![vec![Vec::new(); 2]; 2]; 2];
    // The same for the gateway's processor time per call, as `off`'s over the other's: where
    // the load saturates the processor, the throughput a setting leaves. It drifts less with
    // the machine's speed than throughput does.
    let mut cpu_ratios = vec![vec![vec![Vec::new(); 2]; 2]; 2];
    // cpu_us[connections][path][durability]: the gateway's processor time per call.
    let mut cpu_us = vec![vec![vec![Vec::new(); 3]; 2]; 2];
    for round in 1..=rounds {
        for (c, connections) in [CONNECTIONS, SATURATING_CONNECTIONS].into_iter().enumerate() {
            let mut rps = Vec::new();
            let mut cpu = Vec::new();
            for (durability, (process, base)) in durabilities.iter().zip(&gateways) {
                let verify_label = format!("round {round}: tongban verification, cached, log {durability}");
                let proxy_label = format!("round {round}: tongban proxy to fast upstream, log {durability}");
                let runs = [
                    (verify_label.as_str(), format!("{base}/api/v1/data/verify"), &verify_script),
                    (
                        proxy_label.as_str(),
                        format!("{base}/api/v1/proxy/{HOUSING_FUND}{deposit_path}"),
                        &proxy_script,
                    ),
                ];
                let loads = load_each_with(&runs, connections, Some(process.0.id()));
                rps.push(loads.iter().map(|(l, _)| l.rps).collect::<Vec<_>>());
                cpu.push(loads.iter().map(|(_, us)| us.unwrap_or(f64::NAN)).collect::<Vec<_>>());
            }
            for path in 0..2 {
                for (durability, us) in cpu.iter().enumerate() {
                    cpu_us[c][path][durability].push(us[path]);
                }
                for durability in 1..3 {
                    ratios[c][path][durability - 1].push(rps[durability][path] / rps[0][path]);
                    cpu_ratios[c][path][durability - 1].push(cpu[0][path] / cpu[durability][path]);
                }
            }
        }
    }
    for (c, connections) in [CONNECTIONS, SATURATING_CONNECTIONS].into_iter().enumerate() {
        let heading = format!("at c{connections}, median of {rounds} rounds");
        print_log_medians(
            &format!("load ratio {heading}, throughput"),
            ["log fsync / log off", "log write / log off"],
            &ratios[c],
        );
        print_log_medians(
            &format!("load processor time per call {heading}"),
            ["log off / log fsync", "log off / log write"],
            &cpu_ratios[c],
        );
        // What a record costs on top of a call without one: the difference of the medians.
        for (path, name) in ["cached verification", "proxy"].iter().enumerate() {
            let [off, write, fsync] = [0, 1, 2].map(|d| median(&cpu_us[c][path][d]));
            println!(
                "load record cost {heading}, {name}: cpu us per call off {off:.1}, write {write:.1} \
                 (+{:.1}), fsync {fsync:.1} (+{:.1})",
                write - off,
                fsync - off,
            );
        }
    }
}

/// Clients running a costly query over and over while verification is loaded.
const SQL_CLIENTS: usize = 4;

/// Cached verification loaded alone, then while [`SQL_CLIENTS`] clients of another system run
/// a costly query over and over (a self-join of the police system's household view: 12 million
/// joined rows, about 0.6 s of one processor), in turn for the rounds. Prints verification's
/// throughput under SQL over alone (median of the rounds) and how many queries were answered,
/// so that a gateway which protects verification by starving SQL entirely shows it.
async fn verification_under_sql(
    client: &reqwest::Client,
    base: &str,
    police_key: &str,
    verify_script: &Path,
) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let query = json!({"query": "SELECT a.status, count(*) AS n, max(b.name) AS last FROM household a \
        JOIN household b ON a.status = b.status GROUP BY a.status"});
    let sql = |client: &reqwest::Client| {
        client
            .post(format!("{base}/api/v1/data/sql"))
            .bearer_auth(police_key)
            .header("X-Tongban-Service-Item", "KSTB-GA-001")
            .header("X-Tongban-Case-Number", "GD-2026-000731")
            .header("X-Tongban-Operator", "0031")
            .timeout(Duration::from_secs(60))
            .json(&query)
    };
    let started = Instant::now();
    let answer = sql(client).send().await.expect("the query");
    assert!(answer.status().is_success(), "{}: {}", answer.status(), answer.text().await.unwrap_or_default());
    println!("load sql: one costly query alone took {} ms", started.elapsed().as_millis());

    let verify_url = format!("{base}/api/v1/data/verify");
    let rounds = rounds_from_env("TONGBAN_BENCH_ROUNDS");
    let (mut throughput, mut p99) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let runs = [("tongban verification, cached, alone", verify_url.clone(), &verify_script.to_owned())];
        let alone = tokio::task::block_in_place(|| load_each(&runs)).remove(0);
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..SQL_CLIENTS)
            .map(|_| {
                let (stop, request) = (Arc::clone(&stop), sql(client));
                tokio::spawn(async move {
                    // Answered, refused on their time limit, and refused for rate or slots.
                    let mut outcomes = [0u32; 3];
                    while !stop.load(Ordering::Relaxed) {
                        let Ok(answer) = request.try_clone().expect("a JSON body").send().await else {
                            continue;
                        };
                        let status = answer.status().as_u16();
                        let retry =
                            answer.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse().ok());
                        let _ = answer.bytes().await;
                        match status {
                            200 => outcomes[0] += 1,
                            422 => outcomes[1] += 1,
                            _ => {
                                outcomes[2] += 1;
                                tokio::time::sleep(Duration::from_secs(retry.unwrap_or(1))).await;
                            }
                        }
                    }
                    outcomes
                })
            })
            .collect();
        let runs =
            [("tongban verification, cached, under SQL", verify_url.clone(), &verify_script.to_owned())];
        let under = tokio::task::block_in_place(|| load_each(&runs)).remove(0);
        stop.store(true, Ordering::Relaxed);
        let mut outcomes = [0u32; 3];
        for client in clients {
            for (total, n) in outcomes.iter_mut().zip(client.await.expect("SQL client")) {
                *total += n;
            }
        }
        println!(
            "load sql round {round}: verification under SQL / alone rps={:.2} p99 {:.1} ms / {:.1} ms; \
             queries answered {}, timed out {}, refused for rate or slots {}",
            under.rps / alone.rps,
            under.p99_ms,
            alone.p99_ms,
            outcomes[0],
            outcomes[1],
            outcomes[2]
        );
        throughput.push(under.rps / alone.rps);
        p99.push(under.p99_ms / alone.p99_ms);
    }
    println!(
        "load ratio tongban verification under SQL / alone: rps={:.2}, p99={:.2}, median of {rounds} rounds \
         {throughput:.2?} {p99:.2?}",
        median(&throughput),
        median(&p99)
    );
}

/// Prints the medians of `ratios[path][durability - 1]` (path 0 cached verification, 1 the
/// proxy; durability 1 `write`, 2 `fsync`), named by `[fsync, write]`, with every round's value.
fn print_log_medians(heading: &str, [fsync, write]: [&str; 2], ratios: &[Vec<Vec<f64>>]) {
    let (verification, proxy) = (&ratios[0], &ratios[1]);
    println!(
        "{heading}, {fsync}: cached verification {:.2}, proxy {:.2}; {write}: cached verification {:.2}, \
         proxy {:.2} (rounds: fsync {:.2?} {:.2?}; write {:.2?} {:.2?})",
        median(&verification[1]),
        median(&proxy[1]),
        median(&verification[0]),
        median(&proxy[0]),
        verification[1],
        proxy[1],
        verification[0],
        proxy[0],
    );
}
