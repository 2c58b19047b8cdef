//! Record look-up by key without SQL planning.

use std::fmt::Debug;

use arrow::record_batch::RecordBatch;
use async_trait::async_trait;

use crate::error::Result;

/// What a look-up read to find its answer, so callers and tests can see that a key look-up
/// touched a small part of the dataset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LookupStats {
    /// Rows decoded (or fetched) to answer, including rows that did not match.
    pub rows_scanned: u64,
    /// Row groups (or equivalent units) opened.
    pub row_groups_read: u64,
    /// Rows the dataset holds, where the source knows it.
    pub rows_total: Option<u64>,
}

/// The rows found for a key, with the columns asked for, and what it cost.
#[derive(Debug, Clone)]
pub struct LookupOutcome {
    pub batch: RecordBatch,
    pub stats: LookupStats,
}

/// Finds the records whose key column equals a given value.
#[async_trait]
pub trait KeyLookup: Debug + Send + Sync {
    /// Returns the matching rows with the columns at `projection` (indices into the dataset's
    /// schema, in the order given), or every column when `projection` is `None`.
    async fn lookup(&self, key: &str, projection: Option<&[usize]>) -> Result<LookupOutcome>;
}
