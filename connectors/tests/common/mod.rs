//! Helpers shared by the connector tests.

#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::concat_batches;
use chrono::NaiveDate;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tongban_connectors::synth::{self, SynthConfig};

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
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path).expect("open")).expect("parquet");
    let schema = builder.schema().clone();
    let batches: Vec<RecordBatch> =
        builder.build().expect("reader").collect::<Result<_, _>>().expect("batches");
    concat_batches(&schema, &batches).expect("concat")
}

/// A string column as owned optional values.
pub fn strings(batch: &RecordBatch, column: &str) -> Vec<Option<String>> {
    let array = batch.column_by_name(column).unwrap_or_else(|| panic!("column {column}"));
    let array = arrow::compute::cast(array, &arrow::datatypes::DataType::Utf8).expect("cast");
    array.as_string::<i32>().iter().map(|v| v.map(str::to_owned)).collect()
}

/// A required string column.
pub fn keys(batch: &RecordBatch, column: &str) -> Vec<String> {
    strings(batch, column).into_iter().map(|v| v.expect("non-null")).collect()
}

pub fn null_count(batch: &RecordBatch, column: &str) -> usize {
    batch.column_by_name(column).expect("column").null_count()
}

/// The defects sidecar as (dataset, key, original key, kind, column) rows.
pub fn defects(dir: &Path) -> Vec<[String; 5]> {
    let text = std::fs::read_to_string(dir.join(synth::DEFECTS_FILE)).expect("defects.csv");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("dataset,key,original_key,kind,column"));
    lines
        .map(|line| {
            let parts: Vec<String> = line.split(',').map(str::to_owned).collect();
            parts.try_into().expect("five fields")
        })
        .collect()
}

pub fn count_by<'a>(items: impl Iterator<Item = &'a str>) -> HashMap<&'a str, usize> {
    items.fold(HashMap::new(), |mut m, k| {
        *m.entry(k).or_default() += 1;
        m
    })
}
