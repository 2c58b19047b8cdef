//! The data plane's section of the configuration (`[data]`).

use std::num::NonZeroUsize;

use serde::{Deserialize, Serialize};

/// Limits on the data plane's calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// The largest request body a data call may send, in bytes.
    pub max_body_bytes: usize,
    /// The longest SQL text accepted, in bytes.
    pub sql_max_bytes: usize,
    /// The most rows a SQL result may have; a larger result is refused, not cut short.
    pub sql_max_rows: usize,
    /// How long a SQL query may run, in milliseconds.
    pub sql_timeout_ms: u64,
    /// How much memory one SQL query may hold for sorts, joins and aggregates, in MiB. Nothing
    /// spills to disk: a query that needs more is refused.
    pub sql_memory_mib: usize,
    /// How many SQL queries may run at once. Each may hold `sql_memory_mib`, so this also
    /// bounds the memory SQL takes.
    pub sql_concurrency: NonZeroUsize,
    /// How long a query waits for a free slot, in milliseconds, before it is refused with 503
    /// `sql_busy`.
    pub sql_queue_ms: u64,
    /// How many of the slots the queries of one department may hold at once; 0 means half of
    /// `sql_concurrency` (at least one), so that no department's queries can keep another's
    /// waiting for every slot.
    pub sql_slots_per_department: usize,
    /// Threads SQL queries run on, apart from the threads serving HTTP; 0 means one per
    /// processor.
    pub sql_threads: usize,
    /// The nice value (0 to 19) of the SQL threads: the higher, the more the operating system
    /// favours verifications, look-ups and proxied calls over queries when both want a
    /// processor. At 10, by the kernel's scheduling weights (110 against 1024 at nice 0), a
    /// query gets about a tenth of a processor that calls keep busy.
    pub sql_nice: u8,
    /// Where queries run (`[data.sql]`): on the gateway (the default) or on a Ballista cluster.
    pub sql: SqlEngineConfig,
    pub limits: super::LimitsConfig,
    pub cache: super::CacheConfig,
    /// Supplier APIs bound to catalog resources (`[[data.upstreams]]`).
    pub upstreams: Vec<super::UpstreamConfig>,
    /// The issuing departments' seals (`[data.seals]`; `docs/licences.md`).
    pub seals: crate::seals::SealsConfig,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            max_body_bytes: 64 * 1024,
            sql_max_bytes: 16 * 1024,
            sql_max_rows: 100_000,
            sql_timeout_ms: 10_000,
            sql_memory_mib: 256,
            sql_concurrency: NonZeroUsize::new(4).expect("nonzero"),
            sql_queue_ms: 1_000,
            sql_slots_per_department: 0,
            sql_threads: 0,
            sql_nice: 10,
            sql: SqlEngineConfig::default(),
            limits: super::LimitsConfig::default(),
            cache: super::CacheConfig::default(),
            upstreams: Vec::new(),
            seals: crate::seals::SealsConfig::default(),
        }
    }
}

/// The engine SQL queries run on (`[data.sql]`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SqlEngineConfig {
    pub engine: SqlEngine,
    /// The Ballista scheduler's gRPC address, `host:port`, for `engine = "ballista"`.
    pub scheduler: Option<String>,
}

/// Where a query's plan runs. Either way the gateway plans it over the caller's views, with the
/// same sandbox and bounds (`docs/data-plane.md`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SqlEngine {
    /// In the gateway's own process.
    #[default]
    Local,
    /// On a Ballista cluster of `tongban cluster scheduler` and `tongban cluster executor`
    /// processes (`docs/scale-out.md`).
    Ballista,
}

impl SqlEngineConfig {
    /// The scheduler's URL when queries run on a cluster; `None` on the local engine.
    pub fn scheduler_url(&self) -> Result<Option<String>, String> {
        match (self.engine, self.scheduler.as_deref()) {
            (SqlEngine::Local, _) => Ok(None),
            (SqlEngine::Ballista, Some(address)) if !address.trim().is_empty() => {
                let address = address.trim();
                Ok(Some(if address.contains("://") {
                    address.to_owned()
                } else {
                    format!("http://{address}")
                }))
            }
            (SqlEngine::Ballista, _) => {
                Err("data.sql.engine = \"ballista\" needs data.sql.scheduler, the scheduler's host:port"
                    .into())
            }
        }
    }
}
