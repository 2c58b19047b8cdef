//! Verification through HAProxy to one, two and three gateway replicas on one PostgreSQL
//! store, in one run on one machine, against the same verification made directly to one
//! replica. On a 2-core machine the replicas, HAProxy, PostgreSQL and wrk share the same two
//! processors, so more replicas cannot add throughput here: the figures show what the balancer
//! and each added replica cost, not a speed-up. Processor time per call counts every replica
//! and HAProxy over the run.
//!
//! A throwaway PostgreSQL cluster is started on loopback (Debian's server binaries), the demo
//! is replica a on it, and replicas b and c serve the demo's configuration on the same store,
//! each with its own exchange log. A grant for 广东's police on 河南's household resource is
//! filed through the workflow with rates that do not limit the run.

#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::json;
use tongban_benches::load::{
    Process, act, cpu_seconds, file, load_measured, median, person, rounds_from_env, script, server_workers,
    tongban_bin, wait_for,
};

const HOUSEHOLD: &str = "A01-410000-0001";
const ITEM: &str = "KSTB-GA-004";
const POLICE: &str = "广东省公安厅跨省户籍业务系统";
const HAPROXY: &str = "/usr/sbin/haproxy";

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        tokio::select! {
            () = run() => {}
            signal = tongban_benches::load::stopped() => eprintln!("{signal}: stopping the replicas"),
        }
    });
}

/// A PostgreSQL cluster in `dir` on `port`, stopped when dropped.
struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    as_postgres: bool,
}

impl Postgres {
    fn start(dir: &Path, port: u16) -> Postgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL's server (apt install postgresql)")
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin"))
            .max()
            .expect("a PostgreSQL version");
        // initdb refuses root: as root the cluster is the postgres user's.
        let as_postgres = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        if as_postgres {
            Command::new("chown").args(["postgres:postgres"]).arg(dir).status().expect("chown");
        }
        let postgres = Postgres { bin, data: dir.join("data"), as_postgres };
        postgres.run(
            "initdb",
            &["-D", postgres.data.to_str().expect("utf-8"), "-A", "trust", "-U", "tongban", "--no-sync"],
        );
        let options =
            format!("-c listen_addresses=127.0.0.1 -p {port} -k {} -c max_connections=200", dir.display());
        postgres.run(
            "pg_ctl",
            &[
                "-D",
                postgres.data.to_str().expect("utf-8"),
                "-l",
                &dir.join("log").display().to_string(),
                "-w",
                "-o",
                &options,
                "start",
            ],
        );
        postgres
    }

    fn run(&self, program: &str, args: &[&str]) {
        let program = self.bin.join(program);
        let status = if self.as_postgres {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&program)
                .args(args)
                .stdout(Stdio::null())
                .status()
        } else {
            Command::new(&program).args(args).stdout(Stdio::null()).status()
        };
        assert!(status.is_ok_and(|s| s.success()), "{} {args:?}", program.display());
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.data.to_str().unwrap_or_default().to_owned();
        self.run("pg_ctl", &["-D", &data, "-m", "immediate", "stop"]);
    }
}

/// Settings every replica runs with: no system or resource limit in the way of the load.
const UNLIMITED: [(&str, &str); 3] = [
    ("TONGBAN_DATA__LIMITS__SYSTEM_PER_SECOND", "10000000"),
    ("TONGBAN_DATA__LIMITS__RESOURCE_PER_SECOND", "10000000"),
    ("TONGBAN_LOG", "warn"),
];

/// HAProxy balancing `replicas` on `port`, as the scale-out test runs it.
fn haproxy(dir: &Path, name: &str, port: u16, replicas: &[u16]) -> Process {
    let mut config = format!(
        "global\n  maxconn 4000\n  nbthread 1\n\ndefaults\n  mode http\n  timeout connect 1s\n  timeout client 30s\n  \
         timeout server 30s\n  retries 3\n  option redispatch\n  retry-on conn-failure empty-response\n\n\
         frontend gateways\n  bind 127.0.0.1:{port}\n  default_backend replicas\n\n\
         backend replicas\n  balance roundrobin\n  option httpchk GET /readyz\n  default-server inter 1s fall 2 rise 2\n"
    );
    for (index, replica) in replicas.iter().enumerate() {
        config.push_str(&format!("  server r{index} 127.0.0.1:{replica} check\n"));
    }
    let path = dir.join(format!("{name}.cfg"));
    std::fs::write(&path, config).expect("haproxy.cfg");
    Process(
        Command::new(HAPROXY)
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy (apt install haproxy)"),
    )
}

async fn run() {
    let work = tempfile::tempdir().expect("temporary directory");
    let rows: u64 = std::env::var("TONGBAN_BENCH_ROWS").ok().and_then(|r| r.parse().ok()).unwrap_or(200_000);
    let pg_dir = work.path().join("pg");
    std::fs::create_dir_all(&pg_dir).expect("pg dir");
    let pg_port = tongban_benches::load::free_port();
    let _postgres = Postgres::start(&pg_dir, pg_port);
    let store = format!("postgres://tongban@127.0.0.1:{pg_port}/postgres");
    let data_dir = work.path().join("demo");
    let client = reqwest::Client::new();
    let workers = server_workers().to_string();

    let port_a = tongban_benches::load::free_port();
    let a = Process(
        Command::new(tongban_bin())
            .args([
                "demo",
                "--listen",
                &format!("127.0.0.1:{port_a}"),
                "--rows",
                &rows.to_string(),
                "--data-dir",
            ])
            .arg(&data_dir)
            .envs(UNLIMITED)
            .env("TONGBAN_STORE__URL", &store)
            .env("TONGBAN_SERVER__WORKER_THREADS", &workers)
            .stdout(Stdio::null())
            .spawn()
            .expect("the demo (benches/run.sh builds tongban)"),
    );
    let base_a = format!("http://127.0.0.1:{port_a}");
    wait_for(&format!("{base_a}/readyz"), &client).await;
    let credentials: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data_dir.join("demo-credentials.json")).expect("credentials"))
            .expect("json");
    let password = credentials["password"].as_str().expect("password").to_owned();
    let key = credentials["systems"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == POLICE))
        .and_then(|s| s["api_key"].as_str())
        .expect("the police system's key")
        .to_owned();
    let terms = json!({
        "items": ["id_number", "name", "status"], "division_prefix": "41", "rate_per_second": 1_000_000,
        "daily_quota": 1_000_000_000,
        "valid_until": (chrono::Local::now().date_naive() + chrono::Duration::days(30)).to_string(),
    });
    let id = file(&client, &base_a, &password, HOUSEHOLD, ITEM, &terms).await;
    act(
        &client,
        &id,
        &[
            (&base_a, &password, "demander.guangdong-police", json!({"action": "submit"})),
            (&base_a, &password, "reviewer.henan", json!({"action": "pass_conformity", "terms": terms})),
            (
                &base_a,
                &password,
                "supplier.henan-police",
                json!({"action": "supplier_approve", "terms": terms}),
            ),
        ],
    )
    .await;

    let config = data_dir.join("tongban.toml");
    let mut replicas = vec![(a, port_a)];
    for name in ["b", "c"] {
        let port = tongban_benches::load::free_port();
        let process = Process(
            Command::new(tongban_bin())
                .args(["serve", "--config"])
                .arg(&config)
                .envs(UNLIMITED)
                .env("TONGBAN_STORE__URL", &store)
                .env("TONGBAN_SERVER__LISTEN", format!("127.0.0.1:{port}"))
                .env("TONGBAN_SERVER__WORKER_THREADS", &workers)
                .env("TONGBAN_EXCHANGE_LOG__DIR", format!("exchange-{name}"))
                .stdout(Stdio::null())
                .spawn()
                .expect("a replica"),
        );
        wait_for(&format!("http://127.0.0.1:{port}/readyz"), &client).await;
        replicas.push((process, port));
    }
    let ports: Vec<u16> = replicas.iter().map(|(_, p)| *p).collect();
    let balancers: Vec<(Process, u16)> = (1..=3)
        .map(|n| {
            let port = tongban_benches::load::free_port();
            (haproxy(work.path(), &format!("haproxy-{n}"), port, &ports[..n]), port)
        })
        .collect();
    for (_, port) in &balancers {
        wait_for(&format!("http://127.0.0.1:{port}/readyz"), &client).await;
    }
    // Let the balancers' checks mark every replica up.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;

    let (person, name) = person(&data_dir);
    let body = json!({"resource": HOUSEHOLD, "key": person, "claims": {"name": name}}).to_string();
    let bearer = format!("Bearer {key}");
    let verify = script(
        work.path(),
        "verify",
        "POST",
        &[
            ("Authorization", &bearer),
            ("Content-Type", "application/json"),
            ("X-Tongban-Service-Item", ITEM),
            ("X-Tongban-Case-Number", "GD-2026-BENCH"),
            ("X-Tongban-Operator", "0031"),
        ],
        Some(&body),
    );
    let mut pids: Vec<u32> = replicas.iter().map(|(p, _)| p.0.id()).collect();
    pids.extend(balancers.iter().map(|(p, _)| p.0.id()));
    let cpu = || pids.iter().map(|pid| cpu_seconds(*pid)).sum::<Option<f64>>();
    let runs: Vec<(String, String)> =
        std::iter::once(("direct to one replica".to_owned(), format!("{base_a}/api/v1/data/verify")))
            .chain(balancers.iter().enumerate().map(|(i, (_, port))| {
                (
                    format!("HAProxy to {} replica{}", i + 1, if i == 0 { "" } else { "s" }),
                    format!("http://127.0.0.1:{port}/api/v1/data/verify"),
                )
            }))
            .collect();
    let rounds = rounds_from_env("TONGBAN_BENCH_ROUNDS");
    let mut rps = vec![Vec::new(); runs.len()];
    let mut cpu_us = vec![Vec::new(); runs.len()];
    for round in 1..=rounds {
        for (index, (label, url)) in runs.iter().enumerate() {
            let (load, us) = load_measured(&format!("round {round}: {label}"), url, &verify, 32, &cpu);
            rps[index].push(load.rps);
            cpu_us[index].push(us.unwrap_or(f64::NAN));
        }
    }
    println!("| path | requests/s | CPU per call (all replicas and HAProxy) | throughput / direct |");
    println!("|---|---:|---:|---:|");
    for (index, (label, _)) in runs.iter().enumerate() {
        let ratios: Vec<f64> = rps[index].iter().zip(&rps[0]).map(|(r, d)| r / d).collect();
        println!(
            "| {label} | {:.0} | {:.0} µs | {:.2} (rounds {ratios:.2?}) |",
            median(&rps[index]),
            median(&cpu_us[index]),
            median(&ratios)
        );
    }
}
