//! `tongban cluster`: a scheduler or an executor of the Ballista cluster that runs SQL when
//! `data.sql.engine = "ballista"` (`docs/scale-out.md`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use datafusion::execution::object_store::ObjectStoreRegistry;
use tongban_cluster::{Datasets, ExecutorOptions};
use tongban_connectors::SourceConfig;

use crate::config::Config;
use crate::data::DataConfig;
use crate::datasets::DatasetRegistry;

/// Which process of the cluster to run.
#[derive(Debug)]
pub enum Role {
    Scheduler {
        config: PathBuf,
        listen: SocketAddr,
    },
    Executor {
        config: PathBuf,
        scheduler: String,
        host: String,
        flight_port: u16,
        grpc_port: u16,
        slots: usize,
        work_dir: PathBuf,
    },
}

/// Runs `role` until the process is stopped.
pub async fn run(role: Role) -> anyhow::Result<()> {
    match role {
        Role::Scheduler { config, listen } => {
            let (datasets, stores, limits) = open(&config).await?;
            let time_limit = std::time::Duration::from_millis(limits.sql_timeout_ms);
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen} (--listen)"))?;
            tongban_cluster::scheduler::serve(listener, datasets, stores, time_limit).await?;
        }
        Role::Executor { config, scheduler, host, flight_port, grpc_port, slots, work_dir } => {
            let (_, stores, limits) = open(&config).await?;
            let (scheduler_host, scheduler_port) = scheduler
                .rsplit_once(':')
                .and_then(|(host, port)| Some((host.to_owned(), port.parse::<u16>().ok()?)))
                .with_context(|| format!("--scheduler {scheduler:?}: give host:port"))?;
            std::fs::create_dir_all(&work_dir)
                .with_context(|| format!("cannot make the work directory {}", work_dir.display()))?;
            let task_slots = match slots {
                0 => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
                n => n,
            };
            let options = ExecutorOptions {
                scheduler_host,
                scheduler_port,
                host,
                flight_port,
                grpc_port,
                task_slots,
                task_memory_bytes: (limits.sql_memory_mib as u64).saturating_mul(1024 * 1024),
                work_dir,
            };
            tongban_cluster::executor::serve(options, stores).await?;
        }
    }
    Ok(())
}

/// The configuration's Parquet datasets, opened, with the object stores they are read from,
/// and the data plane's limits (each task's memory, the query time limit). Other datasets (CSV held in a
/// gateway's memory, PostgreSQL tables) are not read by the cluster: a query over one of them
/// fails on the cluster with a message naming it.
async fn open(path: &Path) -> anyhow::Result<(Datasets, Arc<dyn ObjectStoreRegistry>, DataConfig)> {
    let loaded = Config::load(path)?;
    let (parquet, other): (Vec<_>, Vec<_>) = loaded
        .config
        .datasets
        .iter()
        .cloned()
        .partition(|d| matches!(d.source, SourceConfig::Parquet { .. }));
    for dataset in &other {
        tracing::warn!(dataset = %dataset.name, "not a Parquet dataset: queries over it do not run on the cluster");
    }
    let registry = DatasetRegistry::open(&parquet, &loaded.base_dir).await?;
    let datasets: Datasets = Arc::new(
        registry.datasets.iter().map(|(name, dataset)| (name.clone(), Arc::clone(&dataset.table))).collect(),
    );
    let stores = Arc::clone(&registry.ctx.runtime_env().object_store_registry);
    Ok((datasets, stores, loaded.config.data))
}
