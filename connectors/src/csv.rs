//! CSV datasets, held in memory with a hash index on the key.
//!
//! CSV files carry no statistics and cannot be searched without reading them whole, so a CSV
//! dataset is loaded once when it is opened. This suits the small reference tables suppliers
//! send as files; large datasets belong in Parquet or PostgreSQL.

use std::collections::HashMap;
use std::io::Cursor;
use std::str::FromStr;
use std::sync::Arc;

use arrow::array::{Array, StringArray};
use arrow::compute::interleave;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::TableProvider;
use datafusion::datasource::MemTable;
use object_store::ObjectStoreExt;

use crate::error::{ConnectorError, Result};
use crate::location::Location;
use crate::lookup::{KeyLookup, LookupOutcome, LookupStats};

/// How to read a CSV file.
#[derive(Debug, Clone)]
pub struct CsvOptions {
    pub delimiter: u8,
    pub header: bool,
    /// Arrow types for named columns (`"Int64"`, `"Date32"`, `"Decimal128(14, 2)"`, …).
    /// Every other column is read as text, so that codes such as `01` keep their leading zeros.
    pub types: HashMap<String, String>,
}

/// A CSV file loaded into memory.
#[derive(Debug)]
pub struct CsvSource {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    key_field: usize,
    index: HashMap<String, Vec<(usize, usize)>>,
    rows: u64,
}

impl CsvSource {
    pub async fn open(
        dataset: &str,
        location: Location,
        key_column: &str,
        options: &CsvOptions,
    ) -> Result<Self> {
        let bytes = location.store.get(&location.path).await?.bytes().await?;

        // Column names come from the header; types from the configuration, text otherwise.
        let format = arrow::csv::reader::Format::default()
            .with_header(options.header)
            .with_delimiter(options.delimiter);
        let (inferred, _) = format.infer_schema(Cursor::new(&bytes), Some(1))?;
        let mut fields = Vec::with_capacity(inferred.fields().len());
        for field in inferred.fields() {
            let data_type = match options.types.get(field.name()) {
                Some(name) => {
                    DataType::from_str(name).map_err(|_| ConnectorError::BadColumnType(name.clone()))?
                }
                None => DataType::Utf8,
            };
            fields.push(Field::new(field.name(), data_type, true));
        }
        let schema = Arc::new(Schema::new(fields));
        let key_field = schema.index_of(key_column).map_err(|_| ConnectorError::BadKeyColumn {
            dataset: dataset.to_owned(),
            column: key_column.to_owned(),
            problem: "is not in the header",
        })?;
        if schema.field(key_field).data_type() != &DataType::Utf8 {
            return Err(ConnectorError::BadKeyColumn {
                dataset: dataset.to_owned(),
                column: key_column.to_owned(),
                problem: "must be read as text",
            });
        }

        let reader = arrow::csv::ReaderBuilder::new(Arc::clone(&schema))
            .with_header(options.header)
            .with_delimiter(options.delimiter)
            .with_batch_size(8192)
            .build(Cursor::new(bytes))?;
        let batches = reader.collect::<Result<Vec<_>, _>>()?;

        let mut index: HashMap<String, Vec<(usize, usize)>> = HashMap::new();
        let mut rows = 0u64;
        for (b, batch) in batches.iter().enumerate() {
            rows += batch.num_rows() as u64;
            let keys = batch
                .column(key_field)
                .as_any()
                .downcast_ref::<StringArray>()
                .expect("key column is read as Utf8");
            for (r, key) in keys.iter().enumerate() {
                if let Some(key) = key {
                    index.entry(key.to_owned()).or_default().push((b, r));
                }
            }
        }
        Ok(CsvSource { schema, batches, key_field, index, rows })
    }

    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    pub fn num_rows(&self) -> u64 {
        self.rows
    }

    pub fn key_field(&self) -> usize {
        self.key_field
    }

    pub fn table_provider(&self) -> Result<Arc<dyn TableProvider>> {
        Ok(Arc::new(MemTable::try_new(self.schema(), vec![self.batches.clone()])?))
    }
}

#[async_trait]
impl KeyLookup for CsvSource {
    async fn lookup(&self, key: &str, projection: Option<&[usize]>) -> Result<LookupOutcome> {
        let wanted: Vec<usize> = match projection {
            Some(p) => p.to_vec(),
            None => (0..self.schema.fields().len()).collect(),
        };
        let output_schema = Arc::new(self.schema.project(&wanted)?);
        let hits = self.index.get(key).map(Vec::as_slice).unwrap_or_default();
        let columns = wanted
            .iter()
            .map(|&c| {
                let arrays: Vec<&dyn Array> = self.batches.iter().map(|b| b.column(c).as_ref()).collect();
                interleave(&arrays, hits)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let batch = RecordBatch::try_new_with_options(
            output_schema,
            columns,
            &arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(hits.len())),
        )?;
        let stats =
            LookupStats { rows_scanned: hits.len() as u64, row_groups_read: 0, rows_total: Some(self.rows) };
        Ok(LookupOutcome { batch, stats })
    }
}
