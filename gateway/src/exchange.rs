//! The exchange record: one per data call, allowed or refused, written by the lifecycle's log
//! phase. It is its own structured stream (JSON lines), separate from diagnostics, and holds no
//! personal data: the key and claimed values are never in it, and the case number and operator
//! are kept only as salted digests that match across records of one case.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};
use tongban_policy::decision::{Operation, Reason};

/// The named phases of a data call, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Authenticate,
    ResolveGrant,
    RateLimit,
    Cache,
    Execute,
    Mask,
    Log,
}

/// One exchange, as written to the log.
#[derive(Debug, Clone, Serialize)]
pub struct ExchangeRecord {
    pub id: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub operation: Operation,
    pub system: Option<String>,
    pub department: Option<String>,
    /// Resources the call read (or asked for, when refused).
    pub resources: Vec<String>,
    pub grants: Vec<String>,
    pub service_item: Option<String>,
    /// Salted SHA-256 of the case number (办件编号), so calls of one case can be found together
    /// without the log holding the number.
    pub case_digest: Option<String>,
    pub operator_digest: Option<String>,
    /// Items served (column names, never values).
    pub items: Vec<String>,
    pub rows: u64,
    pub bytes_out: u64,
    pub status: u16,
    /// The problem code of a refused or failed call.
    pub code: Option<&'static str>,
    pub reasons: Vec<Reason>,
    /// The limit that refused the call, if one did.
    pub rate_limit: Option<crate::data::Limit>,
    /// Whether the answer came from the cache.
    pub cache: Option<crate::data::CacheOutcome>,
    /// Microseconds spent in each phase that ran.
    pub phases: Vec<(Phase, u64)>,
    /// For a proxied call: the supplier's status, how many attempts were made, and the
    /// microseconds from the first attempt to the supplier's answer.
    pub upstream_status: Option<u16>,
    pub upstream_attempts: u32,
    pub upstream_us: Option<u64>,
}

impl ExchangeRecord {
    pub fn begin(operation: Operation) -> Self {
        ExchangeRecord {
            id: uuid::Uuid::now_v7().to_string(),
            started_at: Utc::now(),
            finished_at: None,
            operation,
            system: None,
            department: None,
            resources: Vec::new(),
            grants: Vec::new(),
            service_item: None,
            case_digest: None,
            operator_digest: None,
            items: Vec::new(),
            rows: 0,
            bytes_out: 0,
            status: 0,
            code: None,
            upstream_status: None,
            upstream_attempts: 0,
            upstream_us: None,
            reasons: Vec::new(),
            rate_limit: None,
            cache: None,
            phases: Vec::new(),
        }
    }
}

/// A salted digest of a purpose field, so the log can group calls by case without holding it.
pub fn purpose_digest(salt: &[u8], value: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(salt);
    hasher.update(value.as_bytes());
    hex::encode(&hasher.finalize()[..16])
}

/// Why a record could not be written.
#[derive(Debug, thiserror::Error)]
#[error("the exchange log cannot be written: {0}")]
pub struct LogUnavailable(String);

type Pending = (ExchangeRecord, oneshot::Sender<Result<(), String>>);

/// The exchange log's writer. Records are handed to one thread of its own that appends them
/// as JSON lines and writes each batch it drains with one system call (group commit); a call
/// waits until its record is written, and a record that cannot be written fails the call
/// instead of being dropped. A thread rather than a task: the runtime's blocking pool would
/// hand every write to another thread and back.
#[derive(Debug, Clone)]
pub struct ExchangeLog {
    sender: mpsc::Sender<Pending>,
    salt: [u8; 16],
    path: PathBuf,
}

impl ExchangeLog {
    /// Opens (creating if needed) the log at `path` and starts its writer.
    pub async fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        let (sender, receiver) = mpsc::channel::<Pending>(4096);
        std::thread::Builder::new()
            .name("exchange-log".into())
            .spawn(move || write_records(file, receiver))?;
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(ExchangeLog { sender, salt, path: path.to_owned() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn salt(&self) -> &[u8] {
        &self.salt
    }

    /// Writes `record` and waits until it is in the file.
    pub async fn write(&self, record: ExchangeRecord) -> Result<(), LogUnavailable> {
        let (done, written) = oneshot::channel();
        self.sender
            .send((record, done))
            .await
            .map_err(|_| LogUnavailable("the writer has stopped".into()))?;
        match tokio::time::timeout(Duration::from_secs(10), written).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(LogUnavailable(e)),
            Ok(Err(_)) => Err(LogUnavailable("the writer has stopped".into())),
            Err(_) => Err(LogUnavailable("the write timed out".into())),
        }
    }
}

fn write_records(mut file: std::fs::File, mut receiver: mpsc::Receiver<Pending>) {
    use std::io::Write;
    let mut batch: Vec<Pending> = Vec::with_capacity(256);
    let mut lines = Vec::with_capacity(256 * 512);
    while let Some(first) = receiver.blocking_recv() {
        batch.push(first);
        while batch.len() < 256 {
            match receiver.try_recv() {
                Ok(pending) => batch.push(pending),
                Err(_) => break,
            }
        }
        lines.clear();
        for (record, _) in &batch {
            // Serialising these plain structs cannot fail.
            serde_json::to_writer(&mut lines, record).expect("exchange records serialise");
            lines.push(b'\n');
        }
        let outcome = file.write_all(&lines).and_then(|()| file.flush()).map_err(|e| e.to_string());
        if let Err(e) = &outcome {
            tracing::error!(error = %e, "exchange log write failed");
        }
        for (_, done) in batch.drain(..) {
            let _ = done.send(outcome.clone());
        }
    }
}
