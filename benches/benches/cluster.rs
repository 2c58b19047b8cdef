//! A SQL aggregate over the 10-million-person household file through a per-grant view, run by
//! the gateway's own engine and on a Ballista cluster of `tongban cluster` processes (release
//! build): a scheduler and two executors of one task slot each, on loopback. Both answer the
//! same query planned the same way over the same view; the answers are compared before
//! anything is timed. On a 2-core machine the executors share the processors the local engine
//! has to itself, so this shows what the cluster costs per query, not a speed-up.
//!
//! Prints, per query and engine: the median wall time over the rounds, and the processor time
//! per query of every process involved (this one, and the scheduler and executors).

#![allow(clippy::print_stdout)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::util::pretty::pretty_format_batches;
use datafusion::prelude::SessionContext;
use tongban_benches::load::{Process, cpu_seconds, free_port, median, rounds_from_env, tongban_bin};
use tongban_benches::{ensure_dataset, rows_from_env};
use tongban_connectors::{DatasetConfig, GrantedView, SourceConfig, ViewColumn, session_config};
use tongban_gateway::datasets::DatasetRegistry;
use tongban_policy::catalog::MaskRule;
use tongban_synth::HOUSEHOLD_FILE;

const QUERIES: [(&str, &str); 2] = [
    (
        "count by county and status (unmasked items, every row)",
        "SELECT division_code, status, count(*) AS n FROM household GROUP BY division_code, status",
    ),
    (
        "the 20 commonest surnames (a masked item, every row masked)",
        "SELECT name AS surname, count(*) AS n FROM household GROUP BY name ORDER BY n DESC, surname LIMIT 20",
    ),
];

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rows = rows_from_env(10_000_000);
    let dir = ensure_dataset(rows);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(run(rows, &dir));
}

async fn run(rows: u64, dir: &Path) {
    let work = tempfile::tempdir().expect("tempdir");
    let household = dir.join(HOUSEHOLD_FILE);
    let config = work.path().join("tongban.toml");
    std::fs::write(
        &config,
        format!(
            "[[datasets]]\nname = \"household\"\nkey = \"id_number\"\n[datasets.source]\nkind = \"parquet\"\n\
             location = \"{}\"\n",
            household.display()
        ),
    )
    .expect("config");
    let scheduler_port = free_port();
    let scheduler = format!("127.0.0.1:{scheduler_port}");
    let spawn = |args: &[&str]| {
        Process(
            Command::new(tongban_bin())
                .args(args)
                .env("TONGBAN_LOG", "warn")
                .stdout(Stdio::null())
                .spawn()
                .expect("tongban cluster"),
        )
    };
    let config_arg = config.display().to_string();
    let mut processes =
        vec![spawn(&["cluster", "scheduler", "--config", &config_arg, "--listen", &scheduler])];
    while tokio::net::TcpStream::connect(&scheduler).await.is_err() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for executor in 0..2 {
        let work_dir = work.path().join(format!("executor-{executor}")).display().to_string();
        let (flight, grpc) = (free_port().to_string(), free_port().to_string());
        processes.push(spawn(&[
            "cluster",
            "executor",
            "--config",
            &config_arg,
            "--scheduler",
            &scheduler,
            "--flight-port",
            &flight,
            "--grpc-port",
            &grpc,
            "--slots",
            "1",
            "--work-dir",
            &work_dir,
        ]));
    }

    // The police system's view of the file, without its row scope so that every row is read:
    // division and status as stored, the name masked to its surname.
    let datasets = [DatasetConfig {
        name: "household".into(),
        key: "id_number".into(),
        supplier: None,
        source: SourceConfig::Parquet { location: household.display().to_string() },
    }];
    let registry = DatasetRegistry::open(&datasets, dir).await.expect("datasets");
    let view = GrantedView::try_new(
        Arc::clone(&registry.datasets["household"].table),
        &[
            ViewColumn { name: "division_code".into(), mask: MaskRule::None },
            ViewColumn { name: "status".into(), mask: MaskRule::None },
            ViewColumn { name: "name".into(), mask: MaskRule::Name },
        ],
        None,
    )
    .expect("view");
    let local = SessionContext::new_with_config(session_config());
    local.register_table("household", Arc::new(view)).expect("register");
    let cluster = SessionContext::new_with_state(tongban_cluster::on_cluster(
        local.state(),
        &format!("http://{scheduler}"),
    ));

    let answer = |ctx: &SessionContext, query: &'static str| {
        let ctx = ctx.clone();
        async move {
            let batches = ctx.sql(query).await?.collect().await?;
            let mut lines: Vec<String> =
                pretty_format_batches(&batches)?.to_string().lines().map(str::to_owned).collect();
            lines.sort();
            Ok::<_, datafusion::error::DataFusionError>(lines)
        }
    };
    // The executors register with the scheduler within seconds of starting.
    let started = Instant::now();
    loop {
        match answer(&cluster, QUERIES[0].1).await {
            Ok(_) => break,
            Err(e) if started.elapsed() < Duration::from_secs(120) => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let _ = e;
            }
            Err(e) => panic!("the cluster does not answer: {e}"),
        }
    }
    for (label, query) in QUERIES {
        let (on_one, on_cluster) = (answer(&local, query).await, answer(&cluster, query).await);
        assert_eq!(on_one.expect("local"), on_cluster.expect("cluster"), "{label}: the same answer");
    }

    let pids: Vec<u32> =
        std::iter::once(std::process::id()).chain(processes.iter().map(|p| p.0.id())).collect();
    let cpu = || pids.iter().filter_map(|pid| cpu_seconds(*pid)).sum::<f64>();
    let rounds = rounds_from_env("TONGBAN_BENCH_ROUNDS").max(5);
    println!("cluster: {rows} people, {rounds} rounds, the engines in turn");
    for (label, query) in QUERIES {
        let mut times = [Vec::new(), Vec::new()];
        let mut processor = [Vec::new(), Vec::new()];
        for _ in 0..rounds {
            for (engine, ctx) in [&local, &cluster].into_iter().enumerate() {
                let (before, started) = (cpu(), Instant::now());
                answer(ctx, query).await.expect("answer");
                times[engine].push(started.elapsed().as_secs_f64());
                processor[engine].push(cpu() - before);
            }
        }
        let (local_time, cluster_time) = (median(&times[0]), median(&times[1]));
        let ratios: Vec<String> =
            times[1].iter().zip(&times[0]).map(|(c, l)| format!("{:.2}", c / l)).collect();
        println!("cluster: {label}");
        println!(
            "cluster:   local engine   p50 {:>7.0} ms   processor {:>7.0} ms per query",
            local_time * 1e3,
            median(&processor[0]) * 1e3
        );
        println!(
            "cluster:   Ballista       p50 {:>7.0} ms   processor {:>7.0} ms per query   cluster / local {:.2} (rounds {})",
            cluster_time * 1e3,
            median(&processor[1]) * 1e3,
            cluster_time / local_time,
            ratios.join(", ")
        );
    }
    drop(processes);
}
