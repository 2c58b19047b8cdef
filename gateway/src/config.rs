//! The gateway's configuration: a TOML file, with `TONGBAN_`-prefixed environment variables
//! overriding it (`TONGBAN_SERVER__LISTEN=0.0.0.0:8443` sets `server.listen`). Only variables
//! with a double underscore are read as configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use tongban_connectors::DatasetConfig;

pub use crate::data::DataConfig;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    /// Shared datasets and where their rows come from.
    #[serde(default)]
    pub datasets: Vec<DatasetConfig>,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub workflow: WorkflowConfig,
    #[serde(default)]
    pub data: DataConfig,
    #[serde(default)]
    pub exchange_log: tongban_exchange::ExchangeLogConfig,
    /// The signing identity receipts and the log's heads are signed with.
    #[serde(default)]
    pub evidence: crate::evidence::EvidenceConfig,
    #[serde(default)]
    pub telemetry: crate::telemetry::TelemetryConfig,
    #[serde(default, skip_serializing_if = "ReferenceConfig::is_default")]
    pub reference: ReferenceConfig,
    /// Peer gateways in other provinces; absent for a gateway that stands alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub federation: Option<crate::peers::FederationConfig>,
}

/// Reference data that changes on its own schedule, replaceable without a new release.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceConfig {
    /// A GB/T 2260 division table in the shipped format (`code`, `level`, `name`, `parent`,
    /// tab-separated; `policy/data/divisions.tsv`), replacing the shipped table of the
    /// National Bureau of Statistics' 2023 codes. Read at start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub divisions: Option<PathBuf>,
}

impl ReferenceConfig {
    fn is_default(&self) -> bool {
        *self == ReferenceConfig::default()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://PATH?mode=rwc` (a relative path is taken from the configuration file's
    /// directory) or `postgres://…`.
    #[serde(default = "default_store_url")]
    pub url: String,
    /// How long a signed-in session lasts, in hours.
    #[serde(default = "default_session_hours")]
    pub session_hours: u32,
}

fn default_store_url() -> String {
    "sqlite://tongban.db?mode=rwc".to_owned()
}

fn default_session_hours() -> u32 {
    8
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig { url: default_store_url(), session_hours: default_session_hours() }
    }
}

/// Review deadlines, in working days, and the calendar they are counted on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowConfig {
    #[serde(default = "default_conformity_days")]
    pub conformity_days: u32,
    #[serde(default = "default_supplier_days")]
    pub supplier_days: u32,
    #[serde(default = "default_coordination_days")]
    pub coordination_days: u32,
    /// Working days a supplier has to answer a data objection (纠错).
    #[serde(default = "default_objection_days")]
    pub objection_days: u32,
    /// Working days a supplier has to answer a poor rating with its rectification (整改).
    #[serde(default = "default_rectification_days")]
    pub rectification_days: u32,
    /// A calendar file (TOML with `holidays` and `makeup_working_days` date lists); the
    /// published national schedule built into the gateway when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calendar: Option<PathBuf>,
}

fn default_conformity_days() -> u32 {
    2
}

fn default_supplier_days() -> u32 {
    10
}

fn default_coordination_days() -> u32 {
    10
}

fn default_objection_days() -> u32 {
    5
}

fn default_rectification_days() -> u32 {
    10
}

impl Default for WorkflowConfig {
    fn default() -> Self {
        WorkflowConfig {
            conformity_days: default_conformity_days(),
            supplier_days: default_supplier_days(),
            coordination_days: default_coordination_days(),
            objection_days: default_objection_days(),
            rectification_days: default_rectification_days(),
            calendar: None,
        }
    }
}

impl LoadedConfig {
    /// The store URL with a relative SQLite path taken from the configuration's directory.
    pub fn store_url(&self) -> String {
        let url = &self.config.store.url;
        match url.strip_prefix("sqlite://") {
            Some(rest) if !rest.starts_with('/') && !rest.starts_with(":memory:") => {
                format!("sqlite://{}", self.base_dir.join(rest).display())
            }
            _ => url.clone(),
        }
    }

    /// What the platform is opened with, paths resolved against the configuration's folder.
    pub fn platform_options(&self) -> tongban_platform::PlatformOptions {
        let config = &self.config;
        tongban_platform::PlatformOptions {
            store_url: self.store_url(),
            calendar: config.workflow.calendar.as_ref().map(|p| self.base_dir.join(p)),
            limits: tongban_policy::workflow::StageLimits {
                conformity: config.workflow.conformity_days,
                supplier: config.workflow.supplier_days,
                coordination: config.workflow.coordination_days,
                objection: config.workflow.objection_days,
                rectification: config.workflow.rectification_days,
            },
            datasets: config.datasets.iter().map(|d| (d.name.clone(), d.supplier.clone())).collect(),
            session_hours: config.store.session_hours,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on. Plain HTTP is for loopback demos; production listeners use TLS.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// How long in-flight requests may take to finish after a shutdown signal, in seconds.
    #[serde(default = "default_grace")]
    pub shutdown_grace_secs: u64,
    /// TLS for the listener. Without it the gateway serves plain HTTP only when `plaintext`
    /// says so: a listener never falls back to plain HTTP by omission.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::tls::TlsConfig>,
    /// Serve plain HTTP (for a loopback demo, or behind a terminating proxy on a private link).
    #[serde(default)]
    pub plaintext: bool,
    /// The bearer token Prometheus presents to read `/metrics` (better set through
    /// `TONGBAN_SERVER__METRICS_TOKEN`). Without it only signed-in operators read metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_token: Option<String>,
    /// Threads serving HTTP; 0 means one per processor. On a machine whose processors are
    /// shared with other busy programs, fewer threads than processors can serve more calls:
    /// each thread that runs out of work sleeps and is woken again, and those wake-ups cost
    /// more than the parallelism gains when no processor is free (see `docs/benchmarks.md`).
    #[serde(default)]
    pub worker_threads: usize,
    /// Connections served at once; at the cap no more are accepted until one closes, so that
    /// clients holding connections cannot exhaust the gateway's file descriptors.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Seconds a connection may take to send a request's head (and a TLS handshake), counted
    /// from when it waits for one: a slow or idle client is closed after it.
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout_secs: u64,
    /// Limits per source address on what is sent without a credential.
    #[serde(default)]
    pub sources: crate::sources::SourceLimitsConfig,
}

fn default_max_connections() -> usize {
    4096
}

fn default_header_read_timeout() -> u64 {
    10
}

impl ServerConfig {
    /// `server.worker_threads` in the settings read before the rest ([`file_and_env`]): the
    /// runtime that loads the rest is built with it.
    pub fn worker_threads_in(early: &Figment) -> Result<usize, Box<figment::Error>> {
        // A value that is absent, or a file that does not parse, leaves the default here; the
        // full load that follows reports a broken file with its path.
        match early.find_value("server.worker_threads") {
            Ok(value) => value.deserialize().map_err(Box::new),
            Err(_) => Ok(0),
        }
    }
}

/// The configuration file at `path` (when there is one) with the environment's overrides over
/// it: the source of the settings read before the rest of the configuration is loaded
/// (telemetry and the worker count), read once for all of them.
pub fn file_and_env(path: &Path) -> Figment {
    let mut figment = Figment::new();
    if path.is_file() {
        figment = figment.merge(Toml::file(path));
    }
    figment.merge(env_overrides())
}

/// The `TONGBAN_`-prefixed variables with a double underscore, as configuration that overrides
/// the file's. Only nested keys (`TONGBAN_SECTION__FIELD`) are configuration; other `TONGBAN_`
/// variables (`TONGBAN_LOG`, `TONGBAN_CONFIG`) belong to the command line.
fn env_overrides() -> Env {
    Env::prefixed("TONGBAN_").filter(|key| key.as_str().contains("__")).split("__")
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

fn default_grace() -> u64 {
    20
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            shutdown_grace_secs: default_grace(),
            tls: None,
            plaintext: false,
            metrics_token: None,
            worker_threads: 0,
            max_connections: default_max_connections(),
            header_read_timeout_secs: default_header_read_timeout(),
            sources: crate::sources::SourceLimitsConfig::default(),
        }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {0} does not exist")]
    Missing(PathBuf),
    /// One line per problem, each naming where it was set, the key and the value.
    #[error("{}", problems.join("\n"))]
    Invalid { path: PathBuf, problems: Vec<String> },
}

/// Each of `error`'s problems on a line: the file (or environment variable) that set the key,
/// the key as written there, the value, and what is wrong with it.
fn describe(figment: &Figment, error: figment::Error, file: &Path) -> Vec<String> {
    error
        .into_iter()
        .map(|problem| {
            let key = problem.path.join(".");
            let profile = problem.profile.clone().unwrap_or_default();
            let source = match problem.metadata.as_ref() {
                // Set by an environment variable: name the variable, as `env_overrides` reads it.
                Some(metadata) if metadata.source.is_none() && metadata.name.contains("environment") => {
                    format!("TONGBAN_{}", problem.path.join("__").to_uppercase())
                }
                Some(metadata) => match &metadata.source {
                    Some(figment::Source::File(path)) => format!("{}: {key}", path.display()),
                    _ => format!("{}: {key}", file.display()),
                },
                None => format!("{}: {key}", file.display()),
            };
            let value = figment
                .find_value(&format!("{profile}.{key}"))
                .ok()
                .or_else(|| figment.find_value(&key).ok())
                .and_then(|value| serde_json::to_string(&value).ok())
                .map(|value| format!(" = {value}"))
                .unwrap_or_default();
            let source = if key.is_empty() { file.display().to_string() } else { source };
            format!("{source}{value}: {}", problem.kind)
        })
        .collect()
}

/// A loaded configuration and the directory relative paths in it are resolved against.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: Config,
    pub base_dir: PathBuf,
    /// The file the configuration was read from, read again on reload.
    pub source: PathBuf,
}

impl LoadedConfig {
    /// Replaces the shipped division table with the one `reference.divisions` names, if it
    /// names one. Called once, at start, before anything reads the table.
    pub fn install_divisions(&self) -> anyhow::Result<()> {
        let Some(file) = &self.config.reference.divisions else { return Ok(()) };
        let path = self.base_dir.join(file);
        let describe = |why: String| {
            anyhow::anyhow!(
                "{}: reference.divisions = {:?}: {why}",
                self.source.display(),
                file.display().to_string()
            )
        };
        let text = std::fs::read_to_string(&path).map_err(|e| describe(e.to_string()))?;
        let table = tongban_policy::division::install(text).map_err(|e| describe(e.to_string()))?;
        tracing::info!(divisions = table.all().len(), file = %path.display(), "division table replaced");
        Ok(())
    }

    /// The division table `reference.divisions` names, checked without being put in use:
    /// `None` when it names none or the file is missing (which `missing_files` tells).
    pub fn check_divisions(&self) -> Option<String> {
        let file = self.config.reference.divisions.as_ref()?;
        let text = std::fs::read_to_string(self.base_dir.join(file)).ok()?;
        let text: &'static str = Box::leak(text.into_boxed_str());
        tongban_policy::division::DivisionTable::parse(text).err().map(|why| {
            format!(
                "{}: reference.divisions = {:?}: {why}",
                self.source.display(),
                file.display().to_string()
            )
        })
    }

    /// The files the configuration names that do not exist, each on a line naming its key.
    /// Locations that are URLs (object stores, PostgreSQL) are not looked at here.
    pub fn missing_files(&self) -> Vec<String> {
        let mut named: Vec<(String, PathBuf)> = Vec::new();
        for (n, dataset) in self.config.datasets.iter().enumerate() {
            let location = match &dataset.source {
                tongban_connectors::SourceConfig::Parquet { location }
                | tongban_connectors::SourceConfig::Csv { location, .. } => location,
                tongban_connectors::SourceConfig::Postgres { .. } => continue,
            };
            if !location.contains("://") {
                named.push((
                    format!("datasets[{n}].source.location ({})", dataset.name),
                    PathBuf::from(location),
                ));
            }
        }
        if let Some(tls) = &self.config.server.tls {
            named.push(("server.tls.cert".into(), tls.cert.clone()));
            named.push(("server.tls.key".into(), tls.key.clone()));
            if let Some(ca) = &tls.client_ca {
                named.push(("server.tls.client_ca".into(), ca.clone()));
            }
        }
        if let Some(federation) = &self.config.federation {
            named.push(("federation.cert".into(), federation.cert.clone()));
            named.push(("federation.key".into(), federation.key.clone()));
            for peer in &federation.peers {
                named.push((format!("federation.peers.{}.ca", peer.name), peer.ca.clone()));
            }
        }
        if let Some(calendar) = &self.config.workflow.calendar {
            named.push(("workflow.calendar".into(), calendar.clone()));
        }
        if let Some(divisions) = &self.config.reference.divisions {
            named.push(("reference.divisions".into(), divisions.clone()));
        }
        named
            .into_iter()
            .filter(|(_, path)| !self.base_dir.join(path).exists())
            .map(|(key, path)| {
                format!("{}: {key} = {:?}: no such file", self.source.display(), path.display().to_string())
            })
            .collect()
    }
}

impl Config {
    /// Loads `path`, applies environment overrides and checks every field.
    pub fn load(path: &Path) -> Result<LoadedConfig, ConfigError> {
        if !path.is_file() {
            return Err(ConfigError::Missing(path.to_owned()));
        }
        let figment =
            Figment::from(Serialized::default("server", ServerConfig::default())).merge(file_and_env(path));
        let config: Config = figment.extract().map_err(|e| ConfigError::Invalid {
            path: path.to_owned(),
            problems: describe(&figment, e, path),
        })?;
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let base_dir = if base_dir.as_os_str().is_empty() { PathBuf::from(".") } else { base_dir };
        Ok(LoadedConfig { config, base_dir, source: path.to_owned() })
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("the configuration serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    // The error type is figment's own, fixed by `Jail`.
    #[allow(clippy::result_large_err)]
    fn unknown_fields_are_refused_and_env_overrides() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tongban.toml");
        std::fs::write(&path, "[server]\nlisten = \"127.0.0.1:9000\"\nlisen = 1\n").expect("write");
        let err = Config::load(&path).expect_err("typo is refused");
        assert!(err.to_string().contains("lisen"), "{err}");

        std::fs::write(
            &path,
            "[server]\nlisten = \"127.0.0.1:9000\"\n\n[[datasets]]\nname = \"household\"\nkey = \"id_number\"\n\
             [datasets.source]\nkind = \"parquet\"\nlocation = \"data/household.parquet\"\n",
        )
        .expect("write");
        figment::Jail::expect_with(|jail| {
            jail.set_env("TONGBAN_SERVER__LISTEN", "127.0.0.1:9100");
            jail.set_env("TONGBAN_LOG", "debug");
            let loaded = Config::load(&path).expect("valid");
            assert_eq!(loaded.config.server.listen, "127.0.0.1:9100".parse().expect("addr"));
            assert_eq!(loaded.config.datasets.len(), 1);
            assert_eq!(loaded.base_dir, dir.path());
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn the_worker_count_is_read_before_the_rest_from_the_file_and_the_environment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tongban.toml");
        figment::Jail::expect_with(|jail| {
            // No file and no variable: one thread per processor.
            assert_eq!(ServerConfig::worker_threads_in(&file_and_env(&path)).expect("default"), 0);
            std::fs::write(&path, "[server]\nplaintext = true\nworker_threads = 3\n").expect("write");
            assert_eq!(ServerConfig::worker_threads_in(&file_and_env(&path)).expect("from the file"), 3);
            assert_eq!(Config::load(&path).expect("valid").config.server.worker_threads, 3);
            jail.set_env("TONGBAN_SERVER__WORKER_THREADS", "1");
            assert_eq!(
                ServerConfig::worker_threads_in(&file_and_env(&path)).expect("from the environment"),
                1
            );
            jail.set_env("TONGBAN_SERVER__WORKER_THREADS", "many");
            assert!(
                ServerConfig::worker_threads_in(&file_and_env(&path)).is_err(),
                "not a number is refused"
            );
            Ok(())
        });
    }

    #[test]
    fn the_deployment_example_loads_as_written() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/tongban.toml");
        let loaded = Config::load(&path).expect("deploy/tongban.toml is a valid configuration");
        let config = &loaded.config;
        let tls = config.server.tls.as_ref().expect("production listens with TLS");
        assert!(tls.client_ca.is_some(), "and accepts client certificates");
        assert!(!config.server.plaintext);
        assert!(config.store.url.starts_with("postgres://"));
        assert_eq!(config.exchange_log.durability, tongban_exchange::Durability::Fsync);
        assert_eq!(config.datasets.len(), 3);
        assert_eq!(config.data.upstreams.len(), 1);
        assert!(config.data.upstreams[0].credential.is_none(), "credentials come from the environment");
    }

    #[test]
    fn a_dataset_source_with_an_unknown_kind_or_field_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tongban.toml");
        for bad in
            ["kind = \"excel\"\nlocation = \"x\"", "kind = \"parquet\"\nlocation = \"x\"\npasword = \"y\""]
        {
            std::fs::write(
                &path,
                format!("[[datasets]]\nname = \"d\"\nkey = \"k\"\n[datasets.source]\n{bad}\n"),
            )
            .expect("write");
            assert!(Config::load(&path).is_err(), "{bad}");
        }
    }
}
