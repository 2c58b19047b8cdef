//! Tongban's data sources.
//!
//! Every shared dataset is exposed two ways: as a DataFusion [`TableProvider`] for SQL, and as
//! a [`KeyLookup`] that fetches the records for one key (an identity number) without planning
//! a query, for the high-volume verification and record look-up paths. This crate knows
//! nothing of serving HTTP; the gateway decides who may see what.
//!
//! [`TableProvider`]: datafusion::catalog::TableProvider

pub mod csv;
pub mod dataset;
pub mod error;
pub mod functions;
pub mod location;
pub mod lookup;
pub mod parquet;
pub mod postgres;
pub mod view;

pub use dataset::{Dataset, DatasetConfig, SourceConfig, open_dataset, session_config};
pub use error::ConnectorError;
pub use lookup::{KeyLookup, LookupOutcome, LookupStats};
pub use view::{GrantedView, ViewBoundaryExec, ViewColumn, ViewScope, mask_array};
