//! The shared datasets the gateway serves, opened from configuration.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use datafusion::prelude::SessionContext;
use tongban_connectors::{Dataset, DatasetConfig, open_dataset, session_config};

/// Where dataset loading stands; `/readyz` reports it, and data calls wait for `Ready`.
#[derive(Debug, Clone)]
pub enum Readiness {
    Loading,
    Ready(Arc<DatasetRegistry>),
    Failed(String),
}

/// Every configured dataset, opened, with the query context their tables are registered in.
pub struct DatasetRegistry {
    pub datasets: BTreeMap<String, Dataset>,
    pub ctx: SessionContext,
    /// Distinct for every registry opened in this process, so answers cached from one set of
    /// opened datasets are never served from another.
    pub generation: u64,
}

static GENERATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl std::fmt::Debug for DatasetRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatasetRegistry").field("datasets", &self.datasets).finish_non_exhaustive()
    }
}

impl DatasetRegistry {
    /// Opens every dataset. A dataset that cannot be opened fails the whole load: serving a
    /// partial catalog would answer "no such record" where the truth is "source unavailable".
    pub async fn open(configs: &[DatasetConfig], base_dir: &Path) -> anyhow::Result<Self> {
        let ctx = SessionContext::new_with_config(session_config());
        let mut datasets = BTreeMap::new();
        for config in configs {
            let dataset = open_dataset(config, base_dir, &ctx)
                .await
                .map_err(|e| anyhow::anyhow!("dataset {}: {e}", config.name))?;
            tracing::info!(dataset = %config.name, rows = ?dataset.rows, "dataset opened");
            datasets.insert(config.name.clone(), dataset);
        }
        let generation = GENERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(DatasetRegistry { datasets, ctx, generation })
    }
}
