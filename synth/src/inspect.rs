//! Reading generated output back: what the generator's own tests and the connectors' tests
//! check the datasets with.

use std::fs::File;
use std::path::Path;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::concat_batches;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::DEFECTS_FILE;
use crate::error::Result;

/// Reads a whole Parquet file into one batch.
pub fn read_parquet(path: &Path) -> Result<RecordBatch> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path)?)?;
    let schema = builder.schema().clone();
    let batches: Vec<RecordBatch> = builder.build()?.collect::<Result<_, _>>()?;
    Ok(concat_batches(&schema, &batches)?)
}

/// A column as optional strings, whatever its Arrow type; `None` when there is no such column.
pub fn strings(batch: &RecordBatch, column: &str) -> Option<Vec<Option<String>>> {
    let array = batch.column_by_name(column)?;
    let array = arrow::compute::cast(array, &arrow::datatypes::DataType::Utf8).ok()?;
    Some(array.as_string::<i32>().iter().map(|v| v.map(str::to_owned)).collect())
}

/// The number of nulls in a column; `None` when there is no such column.
pub fn null_count(batch: &RecordBatch, column: &str) -> Option<usize> {
    Some(batch.column_by_name(column)?.null_count())
}

/// One row of the defects sidecar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefectRow {
    pub dataset: String,
    pub key: String,
    pub original_key: String,
    pub kind: String,
    pub column: String,
}

/// The defects sidecar of the datasets generated into `dir`.
pub fn defects(dir: &Path) -> Result<Vec<DefectRow>> {
    let text = std::fs::read_to_string(dir.join(DEFECTS_FILE))?;
    let mut lines = text.lines();
    if lines.next() != Some("dataset,key,original_key,kind,column") {
        return Err(std::io::Error::other(format!("{DEFECTS_FILE} does not start with its header")).into());
    }
    lines
        .map(|line| match line.split(',').collect::<Vec<_>>()[..] {
            [dataset, key, original_key, kind, column] => Ok(DefectRow {
                dataset: dataset.to_owned(),
                key: key.to_owned(),
                original_key: original_key.to_owned(),
                kind: kind.to_owned(),
                column: column.to_owned(),
            }),
            _ => {
                Err(std::io::Error::other(format!("{DEFECTS_FILE}: {line:?} does not have five fields"))
                    .into())
            }
        })
        .collect()
}
