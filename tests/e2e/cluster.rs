//! SQL on a Ballista cluster of Tongban's own scheduler and two executors on loopback
//! (`data.sql.engine = "ballista"`), against the same gateway on its own engine: the attack
//! suite gets the same verdicts, and the benchmarks' queries the same answers.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tongban_e2e::{Demo, tongban_bin};

use crate::data::{POLICE_SYSTEM, ROWS, Truth, attack_cases, fill, judge, sql_answer, with_purpose};

/// The query time limit of both gateways and of the cluster.
const SQL_TIMEOUT_MS: &str = "30000";

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A scheduler and executors, killed when dropped.
struct Cluster {
    processes: Vec<Child>,
    _work: tempfile::TempDir,
}

impl Cluster {
    /// `tongban cluster scheduler` on `scheduler_port` and `executors` × `tongban cluster
    /// executor` of two task slots each, over the datasets of the gateway configuration
    /// `config`.
    async fn start(config: &Path, scheduler_port: u16, executors: usize) -> anyhow::Result<Cluster> {
        let work = tempfile::tempdir()?;
        let spawn = |args: Vec<String>| {
            Command::new(tongban_bin())
                .args(&args)
                .env("TONGBAN_LOG", "warn")
                // The same time limit as the gateway's (`demo_on_cluster`).
                .env("TONGBAN_DATA__SQL_TIMEOUT_MS", SQL_TIMEOUT_MS)
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("spawn tongban {}", args.join(" ")))
        };
        let config = config.display().to_string();
        let scheduler = format!("127.0.0.1:{scheduler_port}");
        let mut processes = vec![spawn(vec![
            "cluster".into(),
            "scheduler".into(),
            "--config".into(),
            config.clone(),
            "--listen".into(),
            scheduler.clone(),
        ])?];
        let started = Instant::now();
        while tokio::net::TcpStream::connect(&scheduler).await.is_err() {
            if started.elapsed() > Duration::from_secs(60) {
                bail!("the scheduler did not listen on {scheduler} within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for executor in 0..executors {
            processes.push(spawn(vec![
                "cluster".into(),
                "executor".into(),
                "--config".into(),
                config.clone(),
                "--scheduler".into(),
                scheduler.clone(),
                "--flight-port".into(),
                free_port()?.to_string(),
                "--grpc-port".into(),
                free_port()?.to_string(),
                "--slots".into(),
                "2".into(),
                "--work-dir".into(),
                work.path().join(format!("executor-{executor}")).display().to_string(),
            ])?);
        }
        Ok(Cluster { processes, _work: work })
    }

    /// Processor time the executors have used, in seconds.
    fn executors_processor_seconds(&self) -> anyhow::Result<f64> {
        let mut seconds = 0.0;
        for executor in &self.processes[1..] {
            let pid = executor.id().context("a running executor")?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
            // utime and stime, in clock ticks (100 a second), are the 12th and 13th fields after
            // the command's closing bracket.
            let fields: Vec<&str> = stat.rsplit_once(')').context("stat")?.1.split_whitespace().collect();
            let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
            seconds += ticks / 100.0;
        }
        Ok(seconds)
    }

    /// Whether every process is still running.
    fn running(&mut self) -> bool {
        self.processes.iter_mut().all(|p| matches!(p.try_wait(), Ok(None)))
    }
}

/// A demo gateway whose SQL runs on the scheduler at `scheduler_port`.
async fn demo_on_cluster(scheduler_port: u16) -> anyhow::Result<Demo> {
    let scheduler = format!("127.0.0.1:{scheduler_port}");
    Demo::start_with(
        ROWS,
        &[
            ("TONGBAN_DATA__SQL_TIMEOUT_MS", SQL_TIMEOUT_MS),
            ("TONGBAN_DATA__SQL__ENGINE", "ballista"),
            ("TONGBAN_DATA__SQL__SCHEDULER", scheduler.as_str()),
        ],
    )
    .await
}

/// The rows of an answer as sorted text, to compare answers whose order the query leaves open.
fn sorted_rows(body: &Value) -> Vec<String> {
    let mut rows: Vec<String> =
        body["rows"].as_array().map(|rows| rows.iter().map(Value::to_string).collect()).unwrap_or_default();
    rows.sort();
    rows
}

#[tokio::test]
async fn the_cluster_gives_the_local_engines_verdicts_and_answers() -> anyhow::Result<()> {
    let scheduler_port = free_port()?;
    let (local, on_cluster) = tokio::try_join!(
        Demo::start_with(ROWS, &[("TONGBAN_DATA__SQL_TIMEOUT_MS", SQL_TIMEOUT_MS)]),
        demo_on_cluster(scheduler_port),
    )?;
    let (_, police) = local.system(POLICE_SYSTEM)?;
    let local_police = with_purpose(&police, "KSTB-GA-001");
    let (_, police) = on_cluster.system(POLICE_SYSTEM)?;
    let cluster_police = with_purpose(&police, "KSTB-GA-001");

    // Before the cluster runs, a query is refused as the engine being unavailable, and
    // recorded like any refusal.
    let (status, body) =
        cluster_police.post("/data/sql", &json!({"query": "SELECT count(*) AS n FROM household"})).await?;
    assert_eq!((status, body["code"].as_str()), (503, Some("sql_engine_unavailable")), "{body}");
    assert!(
        on_cluster.exchange_records()?.iter().any(|r| r["code"] == "sql_engine_unavailable"),
        "the refusal is recorded"
    );

    let mut cluster = Cluster::start(&on_cluster.data_dir().join("tongban.toml"), scheduler_port, 2).await?;
    let started = Instant::now();
    loop {
        let (status, body) = cluster_police
            .post("/data/sql", &json!({"query": "SELECT count(*) AS n FROM household"}))
            .await?;
        if status == 200 {
            break;
        }
        if started.elapsed() > Duration::from_secs(90) || !cluster.running() {
            bail!("the cluster does not answer: {status} {body}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // The benchmarks' queries over the police system's view (`benches/benches/dataplane.rs`,
    // `benches/benches/load.rs`) and a few more shapes: identical answers.
    let benchmark = [
        "SELECT status, count(*) AS n FROM household GROUP BY status",
        "SELECT id_number, name, status FROM household WHERE division_code = '411502'",
        "SELECT count(*) AS n FROM household WHERE name LIKE '张%'",
        "SELECT a.status, count(*) AS n, max(b.name) AS last FROM household a JOIN household b \
         ON a.status = b.status GROUP BY a.status",
        "SELECT division_code, count(*) AS n, min(id_number) AS first FROM household \
         GROUP BY division_code ORDER BY n DESC, division_code LIMIT 20",
        "SELECT * FROM household ORDER BY id_number, name, division_code, status LIMIT 50",
    ];
    for query in benchmark {
        let (local_status, local_body) = sql_answer(&local_police, query).await?;
        let (status, body) = sql_answer(&cluster_police, query).await?;
        assert_eq!((status, local_status), (200, 200), "{query}\n{body}\n{local_body}");
        assert!(body["row_count"].as_u64().is_some_and(|n| n > 0), "{query}: {body}");
        assert_eq!(body["columns"], local_body["columns"], "{query}");
        assert_eq!(sorted_rows(&body), sorted_rows(&local_body), "{query}");
    }

    // The attack suite: the same verdict on both engines for every query, and every answer
    // from the cluster meets its expectation and leaks nothing.
    let truth = Truth::read(&on_cluster)?;
    let local_truth = Truth::read(&local)?;
    let dataset_path = |demo: &Demo| demo.data_dir().join("datasets/household.parquet").display().to_string();
    let mut failures = Vec::new();
    let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
    let cases = attack_cases();
    for (expect, query) in &cases {
        let (local_status, local_body) =
            sql_answer(&local_police, &fill(query, &local_truth, &dataset_path(&local))).await?;
        let (status, body) =
            sql_answer(&cluster_police, &fill(query, &truth, &dataset_path(&on_cluster))).await?;
        // The verdict is the suite's: refused or answered, and whether the answer meets the
        // expectation. Refusals may name different limits (the cluster writes shuffles to
        // disk, so a query over its memory on one machine can run out of time there instead).
        // A `safe` query may be refused by one engine and answered by the other (a cluster
        // answers a count over a cross join from its stages' exact row counts, where one
        // machine runs out of time); the answer must still pass the leak checks.
        if (status == 200) != (local_status == 200) && *expect != "safe" {
            failures.push(format!(
                "[{expect}] {query}\n    cluster {status} {}, local {local_status} {}",
                if status == 200 { body["rows"].to_string() } else { body["code"].to_string() },
                if local_status == 200 {
                    local_body["rows"].to_string()
                } else {
                    local_body["code"].to_string()
                },
            ));
            continue;
        }
        if body["code"] != local_body["code"] {
            eprintln!(
                "{query}: refused as {} on the cluster, as {} locally",
                body["code"], local_body["code"]
            );
        }
        match judge(expect, status, &body, &truth) {
            Ok(outcome) => *outcomes.entry(outcome).or_default() += 1,
            Err(why) => failures.push(format!("[{expect}] {query}\n    {why}")),
        }
        if status == 200 && local_status == 200 && body["row_count"] != local_body["row_count"] {
            failures.push(format!(
                "[{expect}] {query}\n    {} rows on the cluster, {} locally",
                body["row_count"], local_body["row_count"]
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} attacks differ or fail on the cluster:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    eprintln!("{} attacks on the cluster: {outcomes:?}", cases.len());

    // A query past its time limit is stopped on the cluster too: the gateway answers
    // `query_timeout` and has the scheduler cancel the job, and the work Ballista runs apart
    // from the job's tasks stops at the same limit, so the executors are idle again rather
    // than working on for nobody (this join runs for minutes).
    let bomb = "SELECT count(*) FROM household a JOIN household b ON a.status = b.status \
                JOIN household c ON b.status = c.status JOIN household d ON c.status = d.status";
    let (status, body) = sql_answer(&cluster_police, bomb).await?;
    assert_eq!((status, body["code"].as_str()), (422, Some("query_timeout")), "{body}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let before = cluster.executors_processor_seconds()?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let used = cluster.executors_processor_seconds()? - before;
    assert!(
        used < 0.3,
        "the executors used {used:.2} s of processor in the 3 s after the query was cancelled"
    );
    let (status, body) = sql_answer(&cluster_police, "SELECT count(*) AS n FROM household").await?;
    assert_eq!(status, 200, "{body}");
    assert!(cluster.running(), "the cluster's processes are all still running");
    Ok(())
}
