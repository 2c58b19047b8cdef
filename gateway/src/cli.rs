//! The command line: `serve`, `demo` and `generate`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::NaiveDate;
use clap::{Parser, Subcommand};
use tongban_synth::{SynthConfig, SynthReport};

use crate::config::{Config, ServerConfig};

#[derive(Debug, Parser)]
#[command(
    name = "tongban",
    version,
    about = "Governed data-sharing gateway for cross-province government services"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve with a configuration file.
    Serve {
        /// The configuration file (TOML); `TONGBAN_SECTION__FIELD` variables override it.
        #[arg(long, env = "TONGBAN_CONFIG")]
        config: PathBuf,
    },
    /// Run a scheduler or executor of a Ballista cluster for SQL (`data.sql.engine =
    /// "ballista"`), over the Parquet datasets of a configuration.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Check a configuration without serving.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Make the first platform administrator of a new store, in the data office that runs the
    /// platform; prints the password once. Refused when the store already has one.
    Bootstrap {
        /// The configuration file naming the store (TOML).
        #[arg(long, env = "TONGBAN_CONFIG")]
        config: PathBuf,
        /// The data office's 统一社会信用代码 (registered as a data office if it is new).
        #[arg(long)]
        department_code: String,
        /// The data office's name, such as 河南省数据局.
        #[arg(long)]
        department_name: String,
        /// The GB/T 2260 division of the department's seat, such as 410000.
        #[arg(long)]
        region: String,
        /// The administrator's sign-in name.
        #[arg(long, default_value = "admin")]
        username: String,
        /// The administrator's name as people see it.
        #[arg(long, default_value = "平台管理员")]
        display_name: String,
    },
    /// Serve demo data on loopback, generating it into the data directory on first run.
    Demo {
        /// The address to serve on (checked before anything is generated).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Where the demo keeps its configuration, datasets, store and exchange log.
        #[arg(long, default_value = "tongban-demo")]
        data_dir: PathBuf,
        /// People in the demo's household registration, when it is generated.
        #[arg(long, default_value_t = 200_000)]
        rows: u64,
        /// The generator's seed: the same seed makes the same people.
        #[arg(long, default_value_t = 2026)]
        seed: u64,
        /// Serve HTTPS with development certificates (made on first use in DATA_DIR/certs),
        /// and register a client certificate for every demo system.
        #[arg(long)]
        tls: bool,
        /// Run two provinces' gateways peered on loopback, 河南 on --listen and 广东 on the
        /// next port (their peer listeners on the two after), each in its own directory under
        /// DATA_DIR, with a demand approved through both.
        #[arg(long, conflicts_with = "tls")]
        federation: bool,
    },
    /// Serve the demo housing fund centre's own API (a supplier the gateway proxies to) from a
    /// generated housing fund Parquet file.
    Supplier {
        /// The address to serve on.
        #[arg(long, default_value = "127.0.0.1:9090")]
        listen: SocketAddr,
        /// The housing fund dataset, e.g. tongban-demo/datasets/housing_fund.parquet.
        #[arg(long)]
        parquet: PathBuf,
        /// The bearer token callers (the gateway) must present.
        #[arg(long, env = "TONGBAN_SUPPLIER_TOKEN")]
        token: String,
        /// The Cache-Control its answers carry (`no-store` keeps them out of shared caches).
        #[arg(long, default_value = crate::demo::supplier::CACHE_CONTROL)]
        cache_control: String,
    },
    /// Write a development CA, a server certificate and client certificates (PEM).
    Certs {
        /// The directory the PEM files are written to.
        #[arg(long)]
        out: PathBuf,
        /// Names the server certificate is valid for.
        #[arg(long = "host", default_values_t = ["localhost".to_owned(), "127.0.0.1".to_owned()])]
        hosts: Vec<String>,
        /// A client certificate is made for each (the common name: a system's name).
        #[arg(long = "client")]
        clients: Vec<String>,
        /// Also make a federated gateway's certificate with this name (`gateway.pem`), valid
        /// for the hosts, which its peers list by the SHA-256 printed.
        #[arg(long)]
        gateway: Option<String>,
        /// Also make an evidence signing key and a self-signed certificate with this name
        /// (`evidence-key.pem`, `evidence-cert.pem`), for `[evidence]`.
        #[arg(long)]
        evidence: Option<String>,
        /// The evidence key's algorithm: sm2-sm3 (GM/T 0003 with SM3) or ecdsa-p256-sha256.
        #[arg(long, default_value = "sm2-sm3")]
        evidence_algorithm: String,
    },
    /// Check the exchange log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Check the signed receipt a data call was answered with.
    Receipt {
        #[command(subcommand)]
        command: ReceiptCommand,
    },
    /// Write the monthly report (跨省通办数据共享月度汇总表) from the store and the exchange log
    /// a configuration names.
    Report {
        /// The configuration file (TOML) naming the store and the log.
        #[arg(long, env = "TONGBAN_CONFIG")]
        config: PathBuf,
        /// The month, YYYY-MM (Beijing time).
        #[arg(long)]
        month: String,
        /// Where to write it: `.xlsx` writes the workbook, `.csv` the service-item table (or
        /// the one `--table` names), `.json` the whole report; `-` prints JSON.
        #[arg(long, default_value = "-")]
        output: PathBuf,
        /// For CSV: service-items, departments or resources.
        #[arg(long, default_value = "service-items")]
        table: ReportTableArg,
        /// Only what departments of this province (two-digit GB/T 2260 code) took part in:
        /// a data office's report.
        #[arg(long)]
        province: Option<String>,
    },
    /// Generate the synthetic shared datasets as Parquet.
    Generate {
        /// People in household registration.
        #[arg(long)]
        rows: u64,
        /// The generator's seed: the same seed makes the same files.
        #[arg(long, default_value_t = 2026)]
        seed: u64,
        /// The directory the Parquet files are written to.
        #[arg(long)]
        out: PathBuf,
        /// Fraction of rows made defective on purpose, listed in defects.csv.
        #[arg(long, default_value_t = 0.002)]
        defect_rate: f64,
        /// The day the data describes (YYYY-MM-DD); defaults to today.
        #[arg(long)]
        as_of: Option<NaiveDate>,
        /// Rows per Parquet row group.
        #[arg(long, default_value_t = 131_072)]
        row_group_rows: usize,
    },
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// The cluster's scheduler, which plans the gateway's queries over the same views.
    Scheduler {
        /// The configuration naming the datasets (the gateway's own file will do).
        #[arg(long, env = "TONGBAN_CONFIG")]
        config: PathBuf,
        /// Where to serve the scheduler's gRPC, which the gateways and executors reach.
        #[arg(long, default_value = "127.0.0.1:50050")]
        listen: SocketAddr,
    },
    /// One of the cluster's executors, which run the scheduler's tasks.
    Executor {
        /// The configuration naming the datasets and `data.sql_memory_mib`, each task's memory.
        #[arg(long, env = "TONGBAN_CONFIG")]
        config: PathBuf,
        /// The scheduler's host:port.
        #[arg(long, default_value = "127.0.0.1:50050")]
        scheduler: String,
        /// The host the executor binds and is reached at.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// Its Arrow Flight port (shuffles and answers).
        #[arg(long, default_value_t = 50051)]
        flight_port: u16,
        /// Its gRPC port (tasks).
        #[arg(long, default_value_t = 50052)]
        grpc_port: u16,
        /// Tasks at once; 0 means one per processor.
        #[arg(long, default_value_t = 0)]
        slots: usize,
        /// Where shuffle files are written.
        #[arg(long)]
        work_dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Load a configuration as `serve` would, check that the files it names exist, and print
    /// each problem on a line of its own naming the file, the key and the value; exits with
    /// status 1 when there is one.
    Check {
        /// The configuration file (TOML); `TONGBAN_SECTION__FIELD` variables override it.
        file: PathBuf,
        /// Check the configuration alone, not that the files it names exist here: for one
        /// written for another machine (a container, a cluster).
        #[arg(long)]
        no_files: bool,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Walk the whole exchange log, checking every record's link and every segment's seal;
    /// exits with status 1 naming the first record modified, inserted or missing.
    Verify {
        /// The gateway's data directory (holding its configuration), or the log's own
        /// directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// A head an earlier audit printed, or a peer holds, as SEQ:HASH: the log must still
        /// lead through it, so records cut off at the end are found.
        #[arg(long)]
        expect_head: Option<tongban_exchange::audit::ExpectedHead>,
        /// The retention the log is kept under, in days, when the data directory has no
        /// configuration to read it from. Without either, no segment may have been removed.
        #[arg(long)]
        retention_days: Option<u32>,
        /// Certificates (PEM files or directories of them) to check the signed heads with,
        /// instead of those the log keeps beside it: an auditor's own copies.
        #[arg(long = "cert")]
        certs: Vec<PathBuf>,
        /// A peer's countersignature of one of the log's signed heads (JSON, as the peer
        /// keeps it): the log must still lead through that head. Without it, the newest
        /// countersignature kept beside the log is used.
        #[arg(long, requires = "peer_cert")]
        anchor: Option<PathBuf>,
        /// The countersigning peer's certificate (PEM).
        #[arg(long = "peer-cert")]
        peer_cert: Vec<PathBuf>,
    },
    /// Copy the segments every replica shipped to a shared store (`exchange_log.shipping`)
    /// into DIR/<replica>/, each then audited with `tongban audit verify --data-dir
    /// DIR/<replica>`: the whole chain since the log began, segments removed locally by
    /// retention included.
    Fetch {
        /// The shared store's URL (`file:///…` or `s3://bucket/prefix`), as configured.
        #[arg(long)]
        shared: String,
        /// Only this replica's segments.
        #[arg(long)]
        replica: Option<String>,
        /// Where the copies go.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum ReceiptCommand {
    /// Check a receipt offline: the gateway's signature by the certificate holding its key,
    /// the receipt's place in the signed tree, and that the body (and, when given, the
    /// request) is the one it was given with. Exits with status 1 naming what does not hold.
    Verify {
        /// The receipt, as the `Tongban-Receipt` header carried it (or its JSON); `-` reads
        /// standard input.
        #[arg(long)]
        receipt: PathBuf,
        /// The answer body the receipt came with.
        #[arg(long)]
        body: PathBuf,
        /// The gateway's certificates (PEM files or directories of them); a retired
        /// certificate checks the receipts its key signed.
        #[arg(long = "cert", required = true)]
        certs: Vec<PathBuf>,
        /// Certificates of the authorities the gateway's certificate must be issued by (or
        /// the pinned certificate itself). Without it, the certificates given are trusted.
        #[arg(long)]
        trust: Vec<PathBuf>,
        /// The request's method, to check the request too (with --target and --request-body).
        #[arg(long, requires_all = ["target", "request_body"])]
        method: Option<String>,
        /// The request's path and query, as sent (`/api/v1/data/verify`).
        #[arg(long)]
        target: Option<String>,
        /// The request's body (an empty file for a look-up).
        #[arg(long)]
        request_body: Option<PathBuf>,
        /// Print what was verified as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Parses the command line and runs the command.
pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // A configuration is checked whole before anything reads part of it, so that each problem
    // is told once, on a line of its own.
    let preloaded = match &cli.command {
        Command::Serve { config }
        | Command::Config { command: ConfigCommand::Check { file: config, .. } } => {
            Some(Config::load(config)?)
        }
        _ => None,
    };
    // Telemetry and the worker count are read before the rest of the configuration: diagnostics
    // are set up, and the runtime that loads the rest is built, first.
    let early_config = match &cli.command {
        Command::Serve { config }
        | Command::Config { command: ConfigCommand::Check { file: config, .. } } => Some(config.clone()),
        Command::Demo { data_dir, .. } => Some(data_dir.join(crate::demo::CONFIG_FILE)),
        _ => None,
    };
    let early = early_config.as_deref().map(crate::config::file_and_env);
    let telemetry = early.as_ref().map(crate::telemetry::TelemetryConfig::resolve).transpose()?;
    let _telemetry = init_tracing(telemetry.as_ref())?;
    let worker_threads = early.as_ref().map(ServerConfig::worker_threads_in).transpose()?.unwrap_or(0);
    // SQL queries, whose planning recurses deeply, run on a runtime of their own with larger
    // stacks (`data::SqlExecutor`); this one serves HTTP.
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if worker_threads > 0 {
        runtime.worker_threads(worker_threads);
    }
    let runtime = runtime.enable_all().build()?;
    match cli.command {
        Command::Serve { config } => {
            let loaded = match preloaded {
                Some(loaded) => loaded,
                None => Config::load(&config)?,
            };
            loaded.install_divisions()?;
            runtime.block_on(crate::server::serve(loaded, None))
        }
        Command::Cluster { command } => runtime.block_on(crate::cluster::run(command.into())),
        Command::Config { command: ConfigCommand::Check { file, no_files } } => {
            let loaded = match preloaded {
                Some(loaded) => loaded,
                None => Config::load(&file)?,
            };
            let mut problems = if no_files { Vec::new() } else { loaded.missing_files() };
            problems.extend(loaded.check_divisions());
            problems.extend(
                loaded.config.data.sql.scheduler_url().err().map(|e| format!("{}: {e}", file.display())),
            );
            problems.extend(
                loaded
                    .config
                    .federation
                    .as_ref()
                    .and_then(|f| f.check().err())
                    .map(|e| format!("{}: {e}", file.display())),
            );
            #[allow(clippy::print_stdout)]
            for problem in &problems {
                println!("{problem}");
            }
            anyhow::ensure!(problems.is_empty(), "{}: {} problems", file.display(), problems.len());
            #[allow(clippy::print_stdout)]
            {
                println!(
                    "{}: valid; {} datasets, listening on {}",
                    file.display(),
                    loaded.config.datasets.len(),
                    loaded.config.server.listen
                );
            }
            Ok(())
        }
        Command::Bootstrap { config, department_code, department_name, region, username, display_name } => {
            let loaded = Config::load(&config)?;
            loaded.install_divisions()?;
            let admin = crate::bootstrap::FirstAdmin {
                department_code,
                department_name,
                region,
                username,
                display_name,
            };
            let password = runtime.block_on(async {
                let platform = tongban_platform::Platform::open(loaded.platform_options()).await?;
                crate::bootstrap::first_admin(&platform, &admin).await
            })?;
            #[allow(clippy::print_stdout)]
            {
                println!("platform administrator {} created in {}", admin.username, admin.department_code);
                println!("password (shown once; only its hash is kept): {password}");
            }
            Ok(())
        }
        Command::Demo { listen, data_dir, rows, seed, federation: true, .. } => {
            runtime.block_on(crate::demo::federation::run(listen, &data_dir, rows, seed))
        }
        Command::Demo { listen, data_dir, rows, seed, tls, federation: false } => runtime.block_on(async {
            // A taken address is told at once, not after the data is generated and seeded.
            drop(
                std::net::TcpListener::bind(listen)
                    .with_context(|| format!("cannot listen on {listen} (--listen)"))?,
            );
            let mut loaded = crate::demo::prepare(listen, &data_dir, rows, seed, tls).await?;
            crate::demo::start_supplier(&mut loaded, &data_dir).await?;
            let seed: crate::server::Seed = Box::new(move |platform| {
                Box::pin(async move {
                    crate::demo::seed::demo(&platform, &data_dir).await?;
                    if tls {
                        crate::demo::seed::demo_certificates(&platform, &data_dir).await?;
                    }
                    Ok(())
                })
            });
            crate::server::serve(loaded, Some(seed)).await
        }),
        Command::Supplier { listen, parquet, token, cache_control } => runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen} (--listen)"))?;
            let app = crate::demo::supplier::app(&parquet, &token, &cache_control).await?;
            tracing::info!(%listen, "supplier API listening");
            axum::serve(listener, app).await?;
            Ok(())
        }),
        Command::Certs { out, hosts, clients, gateway, evidence, evidence_algorithm } => {
            let algorithm = tongban_evidence::Algorithm::parse(&evidence_algorithm).with_context(|| {
                format!("--evidence-algorithm {evidence_algorithm:?}: use sm2-sm3 or ecdsa-p256-sha256")
            })?;
            let issued = crate::certs::generate(&out, &hosts, &clients, gateway.as_deref())?;
            #[allow(clippy::print_stdout)]
            for client in &issued {
                println!("{}  sha256={}  {}", client.cert.display(), client.sha256, client.name);
            }
            if let Some(name) = evidence {
                let (key, certificate) = crate::evidence::development_identity(algorithm, &name)?;
                let (key_path, certificate_path) =
                    (out.join("evidence-key.pem"), out.join("evidence-cert.pem"));
                crate::evidence::write_identity(&key, &certificate, &key_path, &certificate_path)?;
                #[allow(clippy::print_stdout)]
                {
                    println!(
                        "{}  key={}  {}",
                        certificate_path.display(),
                        certificate.fingerprint(),
                        algorithm.as_str()
                    );
                }
            }
            Ok(())
        }
        Command::Audit {
            command:
                AuditCommand::Verify { data_dir, json, expect_head, retention_days, certs, anchor, peer_cert },
        } => {
            let evidence = crate::evidence::AuditEvidence::read(&certs, anchor.as_deref(), &peer_cert)?;
            audit_verify(&data_dir, json, expect_head, retention_days, evidence)
        }
        Command::Audit { command: AuditCommand::Fetch { shared, replica, out } } => {
            let shared = tongban_exchange::ship::SharedLog::open(&shared)?;
            runtime.block_on(async {
                let replicas = match replica {
                    Some(replica) => vec![replica],
                    None => shared.replicas().await?,
                };
                anyhow::ensure!(!replicas.is_empty(), "the shared store holds no replica's log");
                for replica in replicas {
                    let dir = out.join(&replica);
                    let copied = shared.fetch(&replica, &dir).await?;
                    #[allow(clippy::print_stdout)]
                    {
                        println!("{replica}: {copied} segments in {}", dir.display());
                    }
                }
                Ok(())
            })
        }
        Command::Receipt {
            command:
                ReceiptCommand::Verify { receipt, body, certs, trust, method, target, request_body, json },
        } => {
            let request = match (method, target, request_body) {
                (Some(method), Some(target), Some(body)) => Some((method, target, body)),
                _ => None,
            };
            crate::evidence::verify_receipt_files(&receipt, &body, &certs, &trust, request, json)
        }
        Command::Report { config, month, output, table, province } => {
            let loaded = Config::load(&config)?;
            loaded.install_divisions()?;
            if let Some(province) = &province {
                anyhow::ensure!(
                    province.len() == 2
                        && tongban_policy::division::find(&format!("{province}0000")).is_some(),
                    "--province {province:?}: give a province's two-digit code, such as 41"
                );
            }
            let month = crate::report::Month::parse(&month)?;
            // Every replica's records, when the log is shipped to a shared store.
            let exchange_log = &loaded.config.exchange_log;
            let view = tongban_exchange::query::LogView {
                dir: loaded.base_dir.join(&exchange_log.dir),
                replica: exchange_log.replica.clone(),
                shared: exchange_log
                    .shipping
                    .as_ref()
                    .map(|shipping| tongban_exchange::ship::SharedLog::open(&shipping.url))
                    .transpose()?,
            };
            let report = runtime.block_on(async {
                let platform = tongban_platform::Platform::open(loaded.platform_options()).await?;
                anyhow::Ok(crate::report::build(&platform, &view, month, province.as_deref()).await?)
            })?;
            write_report(&report, &output, table as usize)
        }
        Command::Generate { rows, seed, out, defect_rate, as_of, row_group_rows } => {
            anyhow::ensure!(rows > 0, "--rows must be at least 1");
            anyhow::ensure!((0.0..=1.0).contains(&defect_rate), "--defect-rate must be between 0 and 1");
            anyhow::ensure!(row_group_rows >= 1024, "--row-group-rows must be at least 1024");
            let mut config = SynthConfig::new(
                rows,
                seed,
                as_of.unwrap_or_else(|| tongban_platform::Clock::system().now().date()),
            );
            config.defect_rate = defect_rate;
            config.row_group_rows = row_group_rows;
            let report = crate::demo::generate_with_progress(&config, &out)?;
            report_generation(&report, &out);
            Ok(())
        }
    }
}

/// The report's tables, as `--table` names them.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ReportTableArg {
    ServiceItems,
    Departments,
    Resources,
}

/// Writes `report` to `output` in the form its extension names.
fn write_report(report: &crate::report::MonthlyReport, output: &Path, table: usize) -> anyhow::Result<()> {
    let bytes = match output.extension().and_then(|e| e.to_str()) {
        _ if output == Path::new("-") => {
            #[allow(clippy::print_stdout)]
            {
                println!("{}", serde_json::to_string_pretty(report)?);
            }
            return Ok(());
        }
        Some("xlsx") => report.xlsx()?,
        Some("csv") => report.csv(table).into_bytes(),
        Some("json") => serde_json::to_vec_pretty(report)?,
        _ => anyhow::bail!("--output {}: name a .xlsx, .csv or .json file, or - for JSON", output.display()),
    };
    std::fs::write(output, bytes).with_context(|| format!("writing {}", output.display()))?;
    #[allow(clippy::print_stdout)]
    {
        println!("{}: the report for {}", output.display(), report.month);
    }
    Ok(())
}

/// The exchange log's directory for a data directory, with the retention its configuration
/// sets: the one its configuration names, else `exchange/` inside it, else the directory
/// itself.
fn log_dir_of(data_dir: &Path) -> anyhow::Result<(PathBuf, Option<u32>)> {
    let config = data_dir.join(crate::demo::CONFIG_FILE);
    if config.is_file() {
        let loaded = Config::load(&config)?;
        return Ok((
            loaded.base_dir.join(&loaded.config.exchange_log.dir),
            loaded.config.exchange_log.retention_days,
        ));
    }
    let default = data_dir.join(tongban_exchange::ExchangeLogConfig::default().dir);
    Ok((if default.is_dir() { default } else { data_dir.to_owned() }, None))
}

#[allow(clippy::print_stdout)]
fn audit_verify(
    data_dir: &Path,
    json: bool,
    head: Option<tongban_exchange::audit::ExpectedHead>,
    retention_days: Option<u32>,
    evidence: crate::evidence::AuditEvidence,
) -> anyhow::Result<()> {
    let (dir, configured) = log_dir_of(data_dir)?;
    let anchor = match evidence.anchor {
        Some(anchor) => Some(anchor),
        None => crate::evidence::newest_kept_anchor(&dir)?,
    };
    let expected = tongban_exchange::audit::Expectations {
        retention_days: retention_days.or(configured),
        head,
        certificates: evidence.certificates,
        anchor,
    };
    let report = tongban_exchange::audit::verify_against(&dir, &expected)
        .with_context(|| format!("reading {}", dir.display()))?;
    anyhow::ensure!(report.segments > 0, "{} holds no exchange log segments", dir.display());
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{}: {} records in {} segments ({} sealed); head {}:{}",
            dir.display(),
            report.records,
            report.segments,
            report.sealed,
            report.head_seq.map_or_else(|| "0".to_owned(), |s| s.to_string()),
            report.head_hash
        );
        if let Some(first) = report.retained_from {
            println!("segments before {first} were removed by retention");
        }
        match &report.last_signed {
            Some(signed) => println!(
                "{} signed heads cover {} records ({} unsigned); last signed record {} at {} by key {}",
                report.heads,
                report.signed_records,
                report.unsigned_records,
                signed.seq,
                crate::evidence::time_of_ms(signed.signed_at_ms),
                signed.key
            ),
            None => println!("no signed heads: the log signed no receipts"),
        }
        match &report.anchored {
            Some(anchored) => println!(
                "anchored: record {} ({}), countersigned by {} at {}",
                anchored.seq,
                anchored.chain,
                anchored.by,
                crate::evidence::time_of_ms(anchored.countersigned_at_ms)
            ),
            None if report.problem.is_none() => println!("no peer's countersignature checked"),
            None => {}
        }
        if report.torn_tail_bytes > 0 {
            println!(
                "the last segment ends with {} bytes of a write cut short by a crash (never acknowledged; cut off when the gateway starts)",
                report.torn_tail_bytes
            );
        }
        if expected.head.is_none() {
            println!(
                "keep the head above and pass it as --expect-head next time, so records cut off at the end are found"
            );
        }
    }
    match &report.problem {
        None => {
            if !json {
                println!("intact");
            }
            Ok(())
        }
        Some(problem) => anyhow::bail!("exchange log tampered with: {problem}"),
    }
}

#[allow(clippy::print_stdout)]
fn report_generation(report: &SynthReport, out: &Path) {
    println!(
        "wrote {} household, {} social insurance and {} housing fund rows ({} deliberate defects) to {} in {:.1}s",
        report.household_rows,
        report.social_insurance_rows,
        report.housing_fund_rows,
        report.defects,
        out.display(),
        report.elapsed.as_secs_f64()
    );
}

/// Diagnostics to standard error, filtered by `TONGBAN_LOG`; and, when telemetry is
/// configured, the data calls' spans to the OTLP exporter, whatever `TONGBAN_LOG` says.
fn init_tracing(
    telemetry: Option<&crate::telemetry::TelemetryConfig>,
) -> anyhow::Result<Option<crate::telemetry::Telemetry>> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer};
    let filter = EnvFilter::try_from_env("TONGBAN_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only for people at a terminal; files and collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let diagnostics =
        tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi).with_filter(filter);
    let (exported, guard) = match telemetry.map(crate::telemetry::start).transpose()?.flatten() {
        Some((tracer, guard)) => {
            let spans = tracing_subscriber::filter::Targets::new()
                .with_target(crate::telemetry::SPAN_TARGET, tracing::Level::INFO);
            (Some(tracing_opentelemetry::layer().with_tracer(tracer).with_filter(spans)), Some(guard))
        }
        None => (None, None),
    };
    tracing_subscriber::registry().with(diagnostics).with(exported).init();
    Ok(guard)
}

impl From<ClusterCommand> for crate::cluster::Role {
    fn from(command: ClusterCommand) -> Self {
        match command {
            ClusterCommand::Scheduler { config, listen } => {
                crate::cluster::Role::Scheduler { config, listen }
            }
            ClusterCommand::Executor { config, scheduler, host, flight_port, grpc_port, slots, work_dir } => {
                crate::cluster::Role::Executor {
                    config,
                    scheduler,
                    host,
                    flight_port,
                    grpc_port,
                    slots,
                    work_dir,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every option and argument of every command says what it is for.
    #[test]
    fn every_option_has_help() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} --{id}"));
                }
            }
            for sub in command.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "tongban", &mut missing);
        assert!(missing.is_empty(), "options without help: {missing:?}");
        Cli::command().debug_assert();
    }
}
