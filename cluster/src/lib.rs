//! SQL over per-grant views on an Apache DataFusion Ballista cluster whose scheduler and
//! executors are Tongban's own processes (`tongban cluster scheduler`, `tongban cluster
//! executor`).
//!
//! The gateway plans a query over a caller's views as it does for its own engine and sends the
//! plan to the scheduler. Views cross the wire as their definitions ([`codec`]) and are rebuilt
//! by the scheduler over its own opening of the datasets, so their masks, row scope and
//! boundary are planned inside their scans exactly as on one machine; the scheduler's rules
//! ([`rules`]) keep each view's scan, scope and masks in one task, so no raw row is ever
//! shuffled between executors. This crate knows nothing of HTTP, grants or the store: the
//! gateway decides what views a caller has.

pub mod client;
pub mod codec;
pub mod deadline;
pub mod executor;
mod rules;
pub mod scheduler;

pub use client::{JobGuard, on_cluster};
pub use codec::{Datasets, ViewLogicalCodec, ViewPhysicalCodec};
pub use executor::ExecutorOptions;

/// Why a scheduler or executor could not run.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("Ballista: {0}")]
    Ballista(#[from] ballista_core::error::BallistaError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}
