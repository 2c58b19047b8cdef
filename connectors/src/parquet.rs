//! Parquet datasets: SQL through DataFusion's listing table, and a key look-up that prunes by
//! row-group statistics and the page index so that one key reads about one page per column.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, StringArray};
use arrow::compute::kernels::cmp::eq;
use arrow::compute::{cast, concat_batches, filter_record_batch};
use arrow::datatypes::{DataType, SchemaRef};

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, TryFutureExt, TryStreamExt};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, RowSelection, RowSelector};
use parquet::arrow::async_reader::{AsyncFileReader, MetadataSuffixFetch, ParquetRecordBatchStreamBuilder};
use parquet::errors::ParquetError;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};
use parquet::file::page_index::column_index::ColumnIndexMetaData;
use parquet::file::statistics::Statistics;

use crate::error::{ConnectorError, Result};
use crate::location::Location;
use crate::lookup::{KeyLookup, LookupOutcome, LookupStats};

/// A Parquet dataset: one file, or every `*.parquet` file under a directory URL (ending in
/// `/`), with each file's footer and page index held in memory.
#[derive(Debug)]
pub struct ParquetSource {
    files: Vec<ParquetFile>,
    schema: SchemaRef,
    key_field: usize,
    rows: u64,
}

/// One file of a Parquet dataset.
#[derive(Debug)]
struct ParquetFile {
    reader: ObjectReader,
    metadata: ArrowReaderMetadata,
    /// Index of the key column among the Parquet leaf columns.
    key_leaf: usize,
    /// Minimum and maximum key of each row group, `None` where statistics are missing (such a
    /// row group is always searched).
    key_ranges: Vec<Option<(Vec<u8>, Vec<u8>)>>,
}

impl ParquetSource {
    /// Reads every file's footer and page index, checks that the files share one schema and
    /// that `key_column` is a top-level string column.
    pub async fn open(dataset: &str, location: Location, key_column: &str) -> Result<Self> {
        let paths: Vec<Path> = if location.url.path().ends_with('/') {
            let mut paths: Vec<Path> = location
                .store
                .list(Some(&location.path))
                .map_ok(|meta| meta.location)
                .try_filter(|path| futures::future::ready(path.as_ref().ends_with(".parquet")))
                .try_collect()
                .await?;
            paths.sort();
            paths
        } else {
            vec![location.path.clone()]
        };
        if paths.is_empty() {
            return Err(ConnectorError::BadLocation {
                location: location.url.to_string(),
                reason: "the directory holds no .parquet files".into(),
            });
        }

        let bad_key = |problem| ConnectorError::BadKeyColumn {
            dataset: dataset.to_owned(),
            column: key_column.to_owned(),
            problem,
        };
        let mut files = Vec::with_capacity(paths.len());
        for path in paths {
            let mut reader = ObjectReader { store: Arc::clone(&location.store), path };
            let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
            let metadata = ArrowReaderMetadata::load_async(&mut reader, options).await?;
            let key_leaf = metadata
                .parquet_schema()
                .columns()
                .iter()
                .position(|c| c.path().parts() == [key_column])
                .ok_or(bad_key("must be a top-level column of every file"))?;
            let key_ranges = metadata
                .metadata()
                .row_groups()
                .iter()
                .map(|rg| match rg.column(key_leaf).statistics() {
                    Some(Statistics::ByteArray(s)) => {
                        Some((s.min_bytes_opt()?.to_vec(), s.max_bytes_opt()?.to_vec()))
                    }
                    _ => None,
                })
                .collect();
            files.push(ParquetFile { reader, metadata, key_leaf, key_ranges });
        }

        let schema = Arc::clone(files[0].metadata.schema());
        if let Some(other) = files.iter().find(|f| f.metadata.schema().fields() != schema.fields()) {
            return Err(ConnectorError::BadLocation {
                location: location.url.to_string(),
                reason: format!("{} has a different schema from the first file", other.reader.path),
            });
        }
        let key_field = schema.index_of(key_column).map_err(|_| bad_key("is not in the files"))?;
        if !matches!(
            schema.field(key_field).data_type(),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        ) {
            return Err(bad_key("must be a string column"));
        }
        let rows = files.iter().map(|f| f.metadata.metadata().file_metadata().num_rows().max(0) as u64).sum();
        Ok(ParquetSource { files, schema, key_field, rows })
    }

    /// The files' Arrow schema.
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    pub fn num_rows(&self) -> u64 {
        self.rows
    }
}

impl ParquetFile {
    /// Row groups whose key range may hold `key`.
    fn candidate_row_groups(&self, key: &[u8]) -> Vec<usize> {
        self.key_ranges
            .iter()
            .enumerate()
            .filter(|(_, range)| match range {
                Some((min, max)) => min.as_slice() <= key && key <= max.as_slice(),
                None => true,
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// The rows of row group `rg` on pages whose key range may hold `key`, or `None` when no
    /// page can. Without a page index the whole row group is selected.
    fn page_selection(&self, rg: usize, key: &[u8]) -> Option<(RowSelection, u64)> {
        let metadata = self.metadata.metadata();
        let rg_rows = metadata.row_group(rg).num_rows().max(0) as usize;
        let pages = metadata
            .column_index()
            .zip(metadata.offset_index())
            .and_then(|(ci, oi)| Some((ci.get(rg)?.get(self.key_leaf)?, oi.get(rg)?.get(self.key_leaf)?)));
        let Some((ColumnIndexMetaData::BYTE_ARRAY(index), offsets)) = pages else {
            return Some((RowSelection::from(vec![RowSelector::select(rg_rows)]), rg_rows as u64));
        };
        let locations = offsets.page_locations();
        let mut selectors = Vec::new();
        let mut cursor = 0usize;
        let mut selected = 0u64;
        for (page, location) in locations.iter().enumerate() {
            let start = location.first_row_index.max(0) as usize;
            let end = locations.get(page + 1).map_or(rg_rows, |next| next.first_row_index.max(0) as usize);
            let may_hold = match (index.min_value(page), index.max_value(page)) {
                (Some(min), Some(max)) => min <= key && key <= max,
                // A page of nulls holds no key.
                _ => false,
            };
            if may_hold {
                if start > cursor {
                    selectors.push(RowSelector::skip(start - cursor));
                }
                selectors.push(RowSelector::select(end - start));
                selected += (end - start) as u64;
                cursor = end;
            }
        }
        if selected == 0 {
            return None;
        }
        if cursor < rg_rows {
            selectors.push(RowSelector::skip(rg_rows - cursor));
        }
        Some((RowSelection::from(selectors), selected))
    }

    /// Appends to `found` the rows of this file whose key equals `key`, with the columns at
    /// `output_positions` of the `read` columns.
    async fn lookup_into(
        &self,
        key: &str,
        read: &[usize],
        key_position: usize,
        output_positions: &[usize],
        found: &mut Vec<arrow::record_batch::RecordBatch>,
        stats: &mut LookupStats,
    ) -> Result<()> {
        for rg in self.candidate_row_groups(key.as_bytes()) {
            let Some((selection, selected)) = self.page_selection(rg, key.as_bytes()) else { continue };
            stats.row_groups_read += 1;
            stats.rows_scanned += selected;
            let mask = ProjectionMask::roots(self.metadata.parquet_schema(), read.iter().copied());
            let mut stream = ParquetRecordBatchStreamBuilder::new_with_metadata(
                self.reader.clone(),
                self.metadata.clone(),
            )
            .with_projection(mask)
            .with_row_groups(vec![rg])
            .with_row_selection(selection)
            .with_batch_size(selected.clamp(1, 65_536) as usize)
            .build()?;
            while let Some(batch) = stream.try_next().await? {
                let keys = batch.column(key_position);
                let needle: ArrayRef = cast(&StringArray::from(vec![key]), keys.data_type())?;
                let matches = eq(keys, &arrow::array::Scalar::new(needle))?;
                if matches.true_count() == 0 {
                    continue;
                }
                let batch = filter_record_batch(&batch, &matches)?;
                found.push(batch.project(output_positions)?);
            }
        }
        Ok(())
    }
}

#[async_trait]
impl KeyLookup for ParquetSource {
    async fn lookup(&self, key: &str, projection: Option<&[usize]>) -> Result<LookupOutcome> {
        let wanted: Vec<usize> = match projection {
            Some(p) => p.to_vec(),
            None => (0..self.schema.fields().len()).collect(),
        };
        // The reader returns columns in file order; the key is read too, to filter on.
        let mut read: Vec<usize> = wanted.iter().copied().chain([self.key_field]).collect();
        read.sort_unstable();
        read.dedup();
        let key_position = read.binary_search(&self.key_field).expect("key is read");
        let output_positions: Vec<usize> =
            wanted.iter().map(|c| read.binary_search(c).expect("wanted columns are read")).collect();
        let output_schema = Arc::new(self.schema.project(&wanted)?);

        let mut stats = LookupStats { rows_total: Some(self.rows), ..LookupStats::default() };
        let mut found = Vec::new();
        for file in &self.files {
            file.lookup_into(key, &read, key_position, &output_positions, &mut found, &mut stats).await?;
        }
        let batch = concat_batches(&output_schema, &found)?;
        Ok(LookupOutcome { batch, stats })
    }
}

/// Reads byte ranges of one object for the Parquet decoder. The footer is fetched once, when
/// the source opens; look-ups pass the cached metadata and fetch only the pages they select.
#[derive(Debug, Clone)]
struct ObjectReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
}

fn external(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for ObjectReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        self.store.get_range(&self.path, range).map_err(external).boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        // Each range on its own: object_store's `get_ranges` merges ranges up to 1 MiB apart,
        // which for a look-up (one page in each of many column chunks) reads megabytes of
        // other pages to return kilobytes.
        let store = Arc::clone(&self.store);
        let path = self.path.clone();
        async move {
            futures::future::try_join_all(ranges.into_iter().map(|range| store.get_range(&path, range)))
                .await
                .map_err(external)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let metadata = ParquetMetaDataReader::new()
                .with_arrow_reader_options(options)
                .load_via_suffix_and_finish(self)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}

impl MetadataSuffixFetch for &mut ObjectReader {
    fn fetch_suffix(&mut self, suffix: usize) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        let options = GetOptions { range: Some(GetRange::Suffix(suffix as u64)), ..GetOptions::default() };
        async move {
            self.store.get_opts(&self.path, options).await.map_err(external)?.bytes().await.map_err(external)
        }
        .boxed()
    }
}
