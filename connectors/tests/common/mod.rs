//! Helpers shared by the connector tests: datasets from the generator, read back.

#![allow(dead_code, unreachable_pub)]

use std::path::Path;

use arrow::array::RecordBatch;
use chrono::NaiveDate;
use tongban_synth::{self as synth, SynthConfig, inspect};

pub fn as_of() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 6, 30).expect("date")
}

/// Generates `rows` people into `dir` with small row groups and pages, so pruning shows.
pub fn generate(dir: &Path, rows: u64, seed: u64, defect_rate: f64) -> synth::SynthReport {
    let mut config = SynthConfig::new(rows, seed, as_of());
    config.defect_rate = defect_rate;
    config.row_group_rows = 16_384;
    config.page_rows = 1024;
    synth::generate(&config, dir, &|_| {}).expect("generation succeeds")
}

/// Reads a whole Parquet file into one batch.
pub fn read(path: &Path) -> RecordBatch {
    inspect::read_parquet(path).expect("a readable Parquet file")
}

/// A string column as owned optional values.
pub fn strings(batch: &RecordBatch, column: &str) -> Vec<Option<String>> {
    inspect::strings(batch, column).unwrap_or_else(|| panic!("column {column}"))
}

/// A required string column.
pub fn keys(batch: &RecordBatch, column: &str) -> Vec<String> {
    strings(batch, column).into_iter().map(|v| v.expect("non-null")).collect()
}
