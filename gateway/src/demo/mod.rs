//! `tongban demo`: generate demo datasets on first run, write a default configuration, serve.

pub mod federation;
pub mod seed;
pub mod supplier;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::NaiveDate;
use indicatif::{ProgressBar, ProgressStyle};
use tongban_connectors::{DatasetConfig, SourceConfig};
use tongban_synth::{self as synth, SynthConfig, SynthReport};

use crate::config::{Config, DataConfig, LoadedConfig, ServerConfig, StoreConfig, WorkflowConfig};

/// Where the demo keeps its generated datasets, under the data directory.
pub const DATASETS_DIR: &str = "datasets";
/// The configuration file the demo writes and then serves from.
pub const CONFIG_FILE: &str = "tongban.toml";
/// Where `--tls` keeps the demo's development certificates, under the data directory.
pub const CERTS_DIR: &str = "certs";

/// The configuration the demo serves: the three generated people's datasets, keyed by identity
/// number, and the licence registers, keyed by licence number.
pub fn default_config(listen: SocketAddr) -> Config {
    let parquet = |name: &str, file: &str, key: &str| DatasetConfig {
        name: name.to_owned(),
        key: key.to_owned(),
        supplier: seed::dataset_supplier(name),
        source: SourceConfig::Parquet { location: format!("{DATASETS_DIR}/{file}") },
    };
    let mut datasets = vec![
        parquet("household", synth::HOUSEHOLD_FILE, "id_number"),
        parquet("social_insurance", synth::SOCIAL_INSURANCE_FILE, "id_number"),
        parquet("housing_fund", synth::HOUSING_FUND_FILE, "id_number"),
    ];
    // The licence registers, keyed by licence number.
    datasets.extend(tongban_policy::licence::LICENCE_TYPES.iter().map(|licence_type| {
        parquet(&licence_type.dataset(), &synth::licence_file(licence_type), "licence_number")
    }));
    Config {
        // The demo listens on loopback; plain HTTP there is a deliberate choice.
        server: ServerConfig { listen, plaintext: true, ..ServerConfig::default() },
        datasets,
        store: StoreConfig::default(),
        workflow: WorkflowConfig::default(),
        // The demo's departments seal their licences with self-signed seals made on first run.
        data: DataConfig {
            seals: crate::seals::SealsConfig { generate: true, ..crate::seals::SealsConfig::default() },
            ..DataConfig::default()
        },
        exchange_log: tongban_exchange::ExchangeLogConfig::default(),
        evidence: crate::evidence::EvidenceConfig::default(),
        telemetry: crate::telemetry::TelemetryConfig::default(),
        reference: crate::config::ReferenceConfig::default(),
        federation: None,
    }
}

/// Prepares `data_dir` (datasets and configuration, each only if absent) and returns the
/// configuration to serve.
pub async fn prepare(
    listen: SocketAddr,
    data_dir: &Path,
    rows: u64,
    seed: u64,
    tls: bool,
) -> anyhow::Result<LoadedConfig> {
    tokio::fs::create_dir_all(data_dir).await?;
    // The configuration comes first: a division table it names is put in use before the
    // generator reads one.
    let config_path: PathBuf = data_dir.join(CONFIG_FILE);
    if !config_path.is_file() {
        tokio::fs::write(&config_path, default_config(listen).to_toml()).await?;
    }
    let mut loaded = Config::load(&config_path)?;
    loaded.install_divisions()?;
    let datasets = data_dir.join(DATASETS_DIR);
    if !synth::is_generated(&datasets) {
        let config = SynthConfig::new(rows, seed, today());
        tracing::info!(rows, dir = %datasets.display(), "generating demo datasets");
        let out = datasets.clone();
        let report = tokio::task::spawn_blocking(move || generate_with_progress(&config, &out)).await??;
        tracing::info!(
            household = report.household_rows,
            social_insurance = report.social_insurance_rows,
            housing_fund = report.housing_fund_rows,
            seconds = report.elapsed.as_secs_f64(),
            "demo datasets generated"
        );
    }
    // A configuration written by an earlier release names no supplier for the demo's datasets;
    // they are the seeded departments' own, and no resource can be bound to a dataset without one.
    for dataset in &mut loaded.config.datasets {
        if dataset.supplier.is_none() {
            dataset.supplier = seed::dataset_supplier(&dataset.name);
        }
    }
    // The command line names the address; the file may be from an earlier run, written before
    // plain HTTP had to be chosen explicitly.
    loaded.config.server.listen = listen;
    if tls {
        loaded.config.server.tls = Some(crate::tls::TlsConfig {
            cert: PathBuf::from(CERTS_DIR).join(crate::certs::SERVER_CERT_FILE),
            key: PathBuf::from(CERTS_DIR).join(crate::certs::SERVER_KEY_FILE),
            client_ca: Some(PathBuf::from(CERTS_DIR).join(crate::certs::CA_FILE)),
        });
        loaded.config.server.plaintext = false;
    } else if loaded.config.server.tls.is_none() {
        loaded.config.server.plaintext = true;
    }
    Ok(loaded)
}

/// The catalog resource the demo's supplier service serves: Anhui's housing fund deposits.
pub const SUPPLIER_RESOURCE: &str = "C03-340000-0001";

/// Starts the housing fund centre's own API on a loopback port and binds the demo's housing
/// fund resource to it, unless the configuration already binds that resource elsewhere.
pub async fn start_supplier(loaded: &mut LoadedConfig, data_dir: &Path) -> anyhow::Result<()> {
    if loaded.config.data.upstreams.iter().any(|u| u.resource == SUPPLIER_RESOURCE) {
        return Ok(());
    }
    let mut token = [0u8; 16];
    getrandom::fill(&mut token).map_err(|e| anyhow::anyhow!("randomness: {e}"))?;
    let token = hex::encode(token);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let parquet = data_dir.join(DATASETS_DIR).join(synth::HOUSING_FUND_FILE);
    let address = supplier::spawn(listener, &parquet, &token).await?;
    tracing::info!(%address, resource = SUPPLIER_RESOURCE, "demo supplier API started");
    let mut binding = crate::data::UpstreamConfig::new(SUPPLIER_RESOURCE, format!("http://{address}"));
    binding.credential_header = Some("authorization".into());
    binding.credential = Some(format!("Bearer {token}"));
    binding.envelope = ["code", "message", "data"].map(String::from).to_vec();
    binding.document_items =
        ["account_number", "id_number", "employer_credit_code", "account_status", "paid_through_month"]
            .map(String::from)
            .to_vec();
    loaded.config.data.upstreams.push(binding);
    Ok(())
}

fn today() -> NaiveDate {
    tongban_platform::Clock::system().now().date()
}

/// Generates datasets with a progress bar on standard error.
pub fn generate_with_progress(config: &SynthConfig, out: &Path) -> anyhow::Result<SynthReport> {
    // A bar for people at a terminal; a line at each tenth for logs and pipes, which a bar
    // would leave empty.
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let tenth = (config.rows / 10).max(1);
        let next = std::sync::atomic::AtomicU64::new(tenth);
        let started = std::time::Instant::now();
        let report = synth::generate(config, out, &|done| {
            if done >= next.load(std::sync::atomic::Ordering::Relaxed) {
                next.store(done - done % tenth + tenth, std::sync::atomic::Ordering::Relaxed);
                #[allow(clippy::print_stderr)]
                {
                    eprintln!(
                        "generated {done} of {} people ({}%) in {:.1}s",
                        config.rows,
                        done * 100 / config.rows.max(1),
                        started.elapsed().as_secs_f64()
                    );
                }
            }
        })
        .with_context(|| format!("generating into {}", out.display()))?;
        return Ok(report);
    }
    let bar = ProgressBar::new(config.rows);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {bar:40} {human_pos}/{human_len} people {per_sec} eta {eta}")
            .expect("valid template"),
    );
    let report = synth::generate(config, out, &|done| bar.set_position(done))
        .with_context(|| format!("generating into {}", out.display()))?;
    bar.finish_and_clear();
    Ok(report)
}
