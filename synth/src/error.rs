//! Errors raised while generating the synthetic datasets.

/// What can stop a generation run. Messages name what failed so the demo and the benchmarks
/// can say why no data was written.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("manifest: {0}")]
    Json(#[from] serde_json::Error),
    /// A Parquet writer thread stopped before its dataset was complete.
    #[error("the {0} writer stopped before its file was complete")]
    WriterStopped(String),
}

pub type Result<T, E = SynthError> = std::result::Result<T, E>;
