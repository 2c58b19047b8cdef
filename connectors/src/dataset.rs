//! Datasets as configured: a name, a key column and a source.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::prelude::{SessionConfig, SessionContext};
use serde::{Deserialize, Serialize};

use crate::csv::{CsvOptions, CsvSource};
use crate::error::{ConnectorError, Result};
use crate::location::Location;
use crate::lookup::KeyLookup;
use crate::parquet::ParquetSource;
use crate::postgres::PostgresSource;

/// A dataset as written in the gateway's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetConfig {
    /// The name the catalog binds resources to.
    pub name: String,
    /// The key column record look-ups and verification search by, such as `id_number`.
    pub key: String,
    /// The unified social credit code of the department that supplies the dataset. Only that
    /// department's catalog resources may be bound to it; a dataset without one backs none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supplier: Option<String>,
    pub source: SourceConfig,
}

/// Where a dataset's rows come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    /// A Parquet file or a directory of Parquet files: a path (relative to the configuration
    /// file) or an object-store URL.
    Parquet { location: String },
    /// A CSV file, loaded into memory.
    Csv {
        location: String,
        #[serde(default = "default_delimiter")]
        delimiter: char,
        #[serde(default = "default_true")]
        header: bool,
        /// Arrow types for named columns; the rest are read as text.
        #[serde(default)]
        types: BTreeMap<String, String>,
    },
    /// A PostgreSQL table.
    Postgres {
        /// A connection URL, such as `postgres://user@127.0.0.1:5432/db`.
        url: String,
        #[serde(default = "default_pg_schema")]
        schema: String,
        table: String,
        #[serde(default = "default_max_connections")]
        max_connections: u32,
    },
}

fn default_delimiter() -> char {
    ','
}
fn default_true() -> bool {
    true
}
fn default_pg_schema() -> String {
    "public".into()
}
fn default_max_connections() -> u32 {
    8
}

/// An opened dataset: its schema, a table provider for SQL and a key look-up.
#[derive(Clone)]
pub struct Dataset {
    pub name: String,
    pub key_column: String,
    pub schema: SchemaRef,
    pub table: Arc<dyn TableProvider>,
    pub lookup: Arc<dyn KeyLookup>,
    /// Rows held, where the source knows without a query.
    pub rows: Option<u64>,
}

impl fmt::Debug for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dataset")
            .field("name", &self.name)
            .field("key_column", &self.key_column)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

impl Dataset {
    /// Index of the key column in [`Dataset::schema`].
    pub fn key_field(&self) -> usize {
        self.schema.index_of(&self.key_column).expect("checked when opened")
    }
}

/// The DataFusion settings Tongban runs with: Parquet filters are evaluated while decoding,
/// with the page index and bloom filters used to skip data, so that selective queries over
/// sorted shared datasets read little.
pub fn session_config() -> SessionConfig {
    let mut config = SessionConfig::new().with_information_schema(false);
    let parquet = &mut config.options_mut().execution.parquet;
    parquet.pushdown_filters = true;
    parquet.reorder_filters = true;
    parquet.enable_page_index = true;
    parquet.bloom_filter_on_read = true;
    parquet.pruning = true;
    config
}

/// Names the location in an error reading it, unless the error already does: an object
/// store's error names only the request it made.
fn unreadable(location: &Location, error: ConnectorError) -> ConnectorError {
    unreadable_at(location.url.to_string(), error)
}

fn unreadable_at(location: String, error: ConnectorError) -> ConnectorError {
    match error {
        ConnectorError::ObjectStore(_) | ConnectorError::Parquet(_) | ConnectorError::Io(_) => {
            ConnectorError::Unreadable { location, source: Box::new(error) }
        }
        named => named,
    }
}

/// Opens a configured dataset. File locations are resolved against `base_dir`; object stores
/// that the location needs are registered with `ctx`, which later runs SQL over the table.
pub async fn open_dataset(config: &DatasetConfig, base_dir: &Path, ctx: &SessionContext) -> Result<Dataset> {
    match &config.source {
        SourceConfig::Parquet { location } => {
            let location = Location::resolve(location, base_dir)?;
            // The look-up source reads every footer first, and names what is wrong with the
            // files (no files, mixed schemas, no key) before DataFusion plans anything.
            let source = ParquetSource::open(&config.name, location.clone(), &config.key)
                .await
                .map_err(|e| unreadable(&location, e))?;
            ctx.register_object_store(&location.store_url(), Arc::clone(&location.store));
            let table_url = ListingTableUrl::parse(location.url.as_str())?;
            // A single file is taken whatever its name; a directory contributes its *.parquet.
            let extension = if table_url.is_collection() { ".parquet" } else { "" };
            let options =
                ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(extension);
            let listing = ListingTableConfig::new(table_url)
                .with_listing_options(options)
                .infer_schema(&ctx.state())
                .await?;
            let table: Arc<dyn TableProvider> = Arc::new(ListingTable::try_new(listing)?);
            Ok(Dataset {
                name: config.name.clone(),
                key_column: config.key.clone(),
                schema: table.schema(),
                rows: Some(source.num_rows()),
                table,
                lookup: Arc::new(source),
            })
        }
        SourceConfig::Csv { location, delimiter, header, types } => {
            let location = Location::resolve(location, base_dir)?;
            let delimiter = u8::try_from(*delimiter).map_err(|_| ConnectorError::BadLocation {
                location: location.url.to_string(),
                reason: "the CSV delimiter must be one ASCII character".into(),
            })?;
            let options = CsvOptions {
                delimiter,
                header: *header,
                types: types.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            };
            let named = location.url.to_string();
            let source = CsvSource::open(&config.name, location, &config.key, &options)
                .await
                .map_err(|e| unreadable_at(named, e))?;
            Ok(Dataset {
                name: config.name.clone(),
                key_column: config.key.clone(),
                schema: source.schema(),
                rows: Some(source.num_rows()),
                table: source.table_provider()?,
                lookup: Arc::new(source),
            })
        }
        SourceConfig::Postgres { url, schema, table, max_connections } => {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(*max_connections)
                .acquire_timeout(std::time::Duration::from_secs(10))
                .connect(url)
                .await?;
            let source = PostgresSource::open(&config.name, pool, schema, table, &config.key).await?;
            let source = Arc::new(source);
            Ok(Dataset {
                name: config.name.clone(),
                key_column: config.key.clone(),
                schema: source.schema(),
                rows: None,
                table: Arc::clone(&source) as Arc<dyn TableProvider>,
                lookup: source,
            })
        }
    }
}
