//! Errors raised while opening or reading data sources.

/// Everything that can go wrong in a connector. Messages name the dataset or location so an
/// operator can act on them without a debugger.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    #[error("location {location:?} cannot be used: {reason}")]
    BadLocation { location: String, reason: String },
    /// A location that resolved but whose files could not be read: missing, unreachable, or
    /// refused by the object store (credentials, bucket, key).
    #[error("location {location} cannot be read: {source}")]
    Unreadable { location: String, source: Box<ConnectorError> },
    #[error("dataset {dataset}: key column {column:?} {problem}")]
    BadKeyColumn { dataset: String, column: String, problem: &'static str },
    #[error("PostgreSQL table {table}: column {column:?} has type {pg_type:?}, which has no Arrow mapping")]
    UnsupportedPostgresType { table: String, column: String, pg_type: String },
    #[error("PostgreSQL table {0} does not exist or has no columns")]
    MissingPostgresTable(String),
    #[error("CSV column type {0:?} is not an Arrow type name")]
    BadColumnType(String),
    #[error("view: {0}")]
    View(String),
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("query engine: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Json(#[from] serde_json::Error),
}

pub type Result<T, E = ConnectorError> = std::result::Result<T, E>;
