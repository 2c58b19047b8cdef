//! The exchange log: one record per data call, allowed or refused, written by the lifecycle's
//! log phase. It is its own structured stream, separate from diagnostics, and holds no personal
//! data: the key and claimed values are never in it, and the case number and operator are kept
//! only as keyed digests that match across records of one case.
//!
//! Records go to a hash-chained write-ahead log (`wal.rs`) with group commit; by default a
//! call's response is released only once its record is on disk. `audit.rs` checks the chain.

pub mod audit;
pub mod compact;
pub mod query;
pub mod receipt;
pub mod record;
pub mod ship;
pub mod wal;

pub use record::{CacheOutcome, ExchangeRecord, Limit, Phase, key_digest, purpose_digest};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

/// When a call's record counts as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// On disk (`fdatasync`) before the response is released: survives a power cut.
    Fsync,
    /// Handed to the operating system before the response is released: survives the
    /// gateway's crash, not the machine's.
    Write,
    /// Not written at all. Only for measuring what logging costs; the gateway warns at start.
    Off,
}

/// `[exchange_log]`: where and how records are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExchangeLogConfig {
    /// The directory of the log's segments (relative to the configuration file's directory).
    pub dir: PathBuf,
    pub durability: Durability,
    /// A segment is sealed once it holds this many bytes…
    pub segment_max_bytes: u64,
    /// …or is this many seconds old, whichever comes first.
    pub segment_max_seconds: u64,
    /// How long a caller waits for its record before the call is refused, in milliseconds.
    pub write_timeout_ms: u64,
    /// Segments (and their Parquet copies) sealed longer ago than this many days are
    /// removed; kept for ever when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<u32>,
    /// This replica's name, written into each record, where several replicas share one store
    /// and their logs are read as one (a StatefulSet pod's name, a host name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
    /// Ships sealed segments to a store every replica's log is read from (`docs/scale-out.md`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shipping: Option<ship::ShippingConfig>,
}

impl Default for ExchangeLogConfig {
    fn default() -> Self {
        ExchangeLogConfig {
            dir: PathBuf::from("exchange"),
            durability: Durability::Fsync,
            segment_max_bytes: 64 * 1024 * 1024,
            segment_max_seconds: 300,
            write_timeout_ms: 10_000,
            retention_days: None,
            replica: None,
            shipping: None,
        }
    }
}

/// The log's own measurements, exported at `/metrics`.
#[derive(Debug, Clone)]
pub struct LogMetrics {
    pub appended: Counter,
    pub failures: Counter,
    pub sealed: Counter,
    /// Records handed to the writer and not yet written.
    pub pending: Gauge,
    pub batch_records: Histogram,
    pub fsync_seconds: Histogram,
}

impl Default for LogMetrics {
    fn default() -> Self {
        LogMetrics::new()
    }
}

impl LogMetrics {
    pub fn new() -> LogMetrics {
        LogMetrics {
            appended: Counter::default(),
            failures: Counter::default(),
            sealed: Counter::default(),
            pending: Gauge::default(),
            batch_records: Histogram::new([
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
            ]),
            fsync_seconds: Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.000_05, 2.0, 14,
            )),
        }
    }
}

/// Why a record could not be written.
#[derive(Debug, thiserror::Error)]
#[error("the exchange log cannot be written: {0}")]
pub struct LogUnavailable(String);

/// Tells a caller whether its record is durable, and hands its serialised record back so
/// that the caller's thread frees what it allocated: a buffer freed on the writer's thread
/// costs the allocator a cross-thread free, and the caller's next allocations its slow path.
type Done = oneshot::Sender<(Result<Option<Signed>, String>, Vec<u8>)>;

/// A record's place in its signed group: the group, shared, and the record's leaf index.
type Signed = (Arc<receipt::SignedGroup>, usize);

/// The bytes reserved for one serialised record, which most records fit (about 900 bytes for
/// a verification), so that serialising does not grow the buffer step by step.
const RECORD_CAPACITY: usize = 2048;

enum Message {
    /// A record serialised by its caller, so the one writer thread only links and writes, with
    /// the leaf hash of its claims when the log signs.
    Append {
        body: Vec<u8>,
        leaf: Option<tongban_evidence::Digest>,
        done: Done,
        /// The caller waits for its receipt, not only for its record to be durable.
        receipted: bool,
    },
    Seal {
        min_age: Duration,
        done: Option<oneshot::Sender<Result<Option<u64>, String>>>,
    },
}

/// The exchange log's handle. Records go to one thread of its own that writes every record
/// waiting as one group; a call waits until its record is durable, and a record that cannot
/// be written fails the call instead of being dropped. A thread rather than a task: the
/// runtime's blocking pool would hand every write to another thread and back.
#[derive(Debug, Clone)]
pub struct ExchangeLog {
    _alive: Arc<()>,
    sender: mpsc::Sender<Message>,
    key: Arc<[u8; 32]>,
    dir: PathBuf,
    durability: Durability,
    write_timeout: Duration,
    /// The retention the log is kept under, which its audit checks removals against.
    retention_days: Option<u32>,
    metrics: LogMetrics,
    /// The signer of receipts and tree heads, when the log signs.
    signer: Option<Arc<receipt::Signer>>,
    /// This replica's name, written into each record.
    replica: Option<Arc<str>>,
    /// The store every replica's log is shipped to, when the log is shipped.
    shared: Option<ship::SharedLog>,
    #[cfg(any(test, feature = "fault-injection"))]
    faults: Arc<std::sync::atomic::AtomicU32>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Message::Append { .. } => "Append",
            Message::Seal { .. } => "Seal",
        })
    }
}

impl ExchangeLog {
    /// Opens (creating if needed) the log in `config.dir`, recovering it after a crash, and
    /// starts its writer and the timer that seals old segments.
    pub async fn open(config: &ExchangeLogConfig, metrics: LogMetrics) -> Result<Self, wal::OpenError> {
        ExchangeLog::open_signed(config, metrics, None).await
    }

    /// Opens the log as [`ExchangeLog::open`] does; with a `signer`, every group of records
    /// written together gets a signed tree head and every caller its receipt.
    pub async fn open_signed(
        config: &ExchangeLogConfig,
        metrics: LogMetrics,
        signer: Option<Arc<receipt::Signer>>,
    ) -> Result<Self, wal::OpenError> {
        let dir = config.dir.clone();
        let options = wal::WalOptions {
            durability: config.durability,
            segment_max_bytes: config.segment_max_bytes.max(4096),
            segment_max_age: Duration::from_secs(config.segment_max_seconds.max(1)),
        };
        let (wal, key, tail) = {
            let dir = dir.clone();
            let metrics = metrics.clone();
            let hash = signer.as_ref().map(|s| s.hash());
            tokio::task::spawn_blocking(move || {
                let wal = wal::Wal::open(&dir, options, metrics)?;
                let key = purpose_key(&dir)?;
                let tail = match hash {
                    Some(hash) => receipt::tail(&dir, hash)?,
                    None => receipt::Tail::default(),
                };
                Ok::<_, wal::OpenError>((wal, key, tail))
            })
            .await
            .map_err(|e| wal::OpenError::Io(std::io::Error::other(e)))??
        };
        if config.durability == Durability::Off {
            tracing::warn!("the exchange log is off: data calls are served without records");
        }
        #[cfg(any(test, feature = "fault-injection"))]
        let faults = wal.faults.clone();
        let max_age = wal.max_age();
        if let (Some(signer), Some(head)) = (&signer, tail.last_head) {
            signer.resume_after(head);
        }
        let recovered = tail.unsigned;
        let (sender, receiver) = mpsc::channel::<Message>(8192);
        // The compaction thread stops once every handle of the log is gone.
        let sender_alive = Arc::new(());
        std::thread::Builder::new().name("exchange-log".into()).spawn({
            let signer = signer.clone();
            move || run_writer(wal, receiver, signer, recovered)
        })?;
        let ticker = sender.downgrade();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_secs(1).min(max_age));
            loop {
                interval.tick().await;
                let Some(sender) = ticker.upgrade() else { return };
                let _ = sender.send(Message::Seal { min_age: max_age, done: None }).await;
            }
        });
        // Sealed segments get their Parquet copies, and retention runs, on a thread of their
        // own scheduled only when the processor is otherwise idle (SCHED_IDLE): compaction
        // never takes time from calls, and catches up when load drops. Queries read a sealed
        // segment without its copy directly, so a backlog costs query time, not answers.
        let shared = match &config.shipping {
            Some(shipping) => {
                let replica = config.replica.clone().ok_or_else(|| {
                    wal::OpenError::Io(std::io::Error::other(
                        "exchange_log.shipping needs exchange_log.replica, the name this replica's records are shipped under",
                    ))
                })?;
                let shared = ship::SharedLog::open(&shipping.url)
                    .map_err(|e| wal::OpenError::Io(std::io::Error::other(e.to_string())))?;
                spawn_shipping(
                    shared.clone(),
                    dir.clone(),
                    replica,
                    shipping.interval_secs,
                    Arc::downgrade(&sender_alive),
                );
                Some(shared)
            }
            None => None,
        };
        let shipped_only = shared.is_some();
        let compacting = dir.clone();
        let retention_days = config.retention_days;
        let alive = Arc::downgrade(&sender_alive);
        std::thread::Builder::new().name("exchange-compact".into()).spawn(move || {
            use thread_priority::{NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy};
            let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
            if let Err(e) = thread_priority::set_thread_priority_and_policy(
                thread_priority::thread_native_id(),
                ThreadPriority::Min,
                idle,
            ) {
                tracing::warn!(error = ?e, "compaction runs at normal priority");
            }
            while alive.upgrade().is_some() {
                match compact::compact(&compacting, retention_days, shipped_only) {
                    Ok(done) if !done.removed_segments.is_empty() => {
                        tracing::info!(segments = ?done.removed_segments, "retention removed exchange log segments");
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "compacting the exchange log failed; will retry"),
                }
                std::thread::sleep(Duration::from_secs(5));
            }
        })?;
        Ok(ExchangeLog {
            _alive: sender_alive,
            sender,
            key: Arc::new(key),
            dir,
            durability: config.durability,
            write_timeout: Duration::from_millis(config.write_timeout_ms.max(1)),
            retention_days: config.retention_days,
            metrics,
            signer,
            replica: config.replica.as_deref().map(Arc::from),
            shared,
            #[cfg(any(test, feature = "fault-injection"))]
            faults,
        })
    }

    /// Opens a log in `dir` with the default settings (tests and benchmarks).
    pub async fn open_in(dir: &Path) -> Result<Self, wal::OpenError> {
        let config = ExchangeLogConfig { dir: dir.to_owned(), ..ExchangeLogConfig::default() };
        ExchangeLog::open(&config, LogMetrics::new()).await
    }

    /// The directory of the log's segments.
    pub fn retention_days(&self) -> Option<u32> {
        self.retention_days
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The key of purpose digests.
    pub fn key(&self) -> &[u8] {
        &self.key[..]
    }

    pub fn metrics(&self) -> &LogMetrics {
        &self.metrics
    }

    /// The signer of receipts, when the log signs.
    pub fn signer(&self) -> Option<&Arc<receipt::Signer>> {
        self.signer.as_ref().filter(|_| self.durability != Durability::Off)
    }

    /// The store every replica's log is shipped to, for queries over all of them.
    pub fn shared(&self) -> Option<&ship::SharedLog> {
        self.shared.as_ref()
    }

    /// The log as operators' questions read it: this replica's, and every replica's shipped.
    pub fn view(&self) -> query::LogView {
        query::LogView {
            dir: self.dir.clone(),
            replica: self.replica.as_deref().map(str::to_owned),
            shared: self.shared.clone(),
        }
    }

    /// This replica's name, as its records carry it.
    pub fn replica(&self) -> Option<&str> {
        self.replica.as_deref()
    }

    /// The salt of the request and answer digests of exchange `exchange_id`.
    pub fn nonce(&self, exchange_id: &str) -> [u8; 16] {
        receipt::nonce(&self.key[..], exchange_id)
    }

    /// Writes `record` and waits until it is durable.
    pub async fn write(&self, record: ExchangeRecord) -> Result<(), LogUnavailable> {
        self.write_signed(record, None).await.map(|_| ())
    }

    /// Writes `record`, waits until it is durable and under a signed head, and answers its
    /// receipt, in its header form (see [`tongban_evidence::Receipt::decode`]), when the log
    /// signs: the record's request and answer digests must be salted with `nonce`.
    pub async fn write_receipted(
        &self,
        record: ExchangeRecord,
        nonce: &[u8],
    ) -> Result<Option<String>, LogUnavailable> {
        self.write_signed(record, Some(nonce)).await
    }

    async fn write_signed(
        &self,
        mut record: ExchangeRecord,
        nonce: Option<&[u8]>,
    ) -> Result<Option<String>, LogUnavailable> {
        if self.durability == Durability::Off {
            return Ok(None);
        }
        if record.replica.is_none() {
            record.replica = self.replica.as_deref().map(str::to_owned);
        }
        let mut body = Vec::with_capacity(RECORD_CAPACITY);
        serde_json::to_writer(&mut body, &record).map_err(|e| LogUnavailable(e.to_string()))?;
        // Every record of a signing log is a leaf, receipted or not, so that the audit can
        // rebuild every group's tree from its lines.
        let claims = self.signer.as_ref().map(|signer| {
            let claims = receipt::claims_of(&record);
            let leaf = signer.hash().leaf(&claims);
            (claims, leaf)
        });
        drop(record);
        let (claims, leaf) = claims.map_or((None, None), |(c, l)| (Some(c), Some(l)));
        let (done, written) = oneshot::channel();
        self.metrics.pending.inc();
        let receipted = nonce.is_some();
        let sent = self.sender.send(Message::Append { body, leaf, done, receipted }).await;
        let outcome = match sent {
            Err(_) => Err(LogUnavailable("the writer has stopped".into())),
            Ok(()) => match tokio::time::timeout(self.write_timeout, written).await {
                Ok(Ok((Ok(signed), _))) => Ok(match (signed, claims, nonce) {
                    (Some((group, index)), Some(claims), Some(nonce)) => {
                        group.encoded_receipt(index, &claims, nonce)
                    }
                    _ => None,
                }),
                Ok(Ok((Err(e), _))) => Err(LogUnavailable(e)),
                Ok(Err(_)) => Err(LogUnavailable("the writer has stopped".into())),
                Err(_) => Err(LogUnavailable("the write timed out".into())),
            },
        };
        self.metrics.pending.dec();
        outcome
    }

    /// Makes the next `n` writes fail halfway, as a failing disk would.
    #[cfg(any(test, feature = "fault-injection"))]
    pub fn fail_next_writes(&self, n: u32) {
        self.faults.store(n, std::sync::atomic::Ordering::SeqCst);
    }

    /// Seals the active segment now if it holds any record, returning its number.
    pub async fn seal(&self) -> Result<Option<u64>, LogUnavailable> {
        let (done, sealed) = oneshot::channel();
        self.sender
            .send(Message::Seal { min_age: Duration::ZERO, done: Some(done) })
            .await
            .map_err(|_| LogUnavailable("the writer has stopped".into()))?;
        sealed.await.map_err(|_| LogUnavailable("the writer has stopped".into()))?.map_err(LogUnavailable)
    }
}

/// The key of purpose digests, made once per log and kept beside its segments.
fn purpose_key(dir: &Path) -> std::io::Result<[u8; 32]> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join("purpose.key");
    let mut key = [0u8; 32];
    match std::fs::read(&path) {
        Ok(bytes) if bytes.len() == 32 => {
            key.copy_from_slice(&bytes);
            return Ok(key);
        }
        Ok(_) => return Err(std::io::Error::other(format!("{} is not a 32-byte key", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    getrandom::fill(&mut key).map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
    file.write_all(&key)?;
    file.sync_all()?;
    Ok(key)
}

/// Records written since the last signed head, which the next head covers.
struct Unsigned {
    /// The number of the first of them.
    first_seq: u64,
    /// Their leaves, in order.
    leaves: Vec<tongban_evidence::Digest>,
    /// The callers waiting for their receipts: the leaf's index, the reply and the record.
    waiting: Vec<(usize, Done, Vec<u8>)>,
}

/// The most records the writer takes into one group.
const MAX_BATCH: usize = 1024;

fn run_writer(
    mut wal: wal::Wal,
    mut receiver: mpsc::Receiver<Message>,
    signer: Option<Arc<receipt::Signer>>,
    recovered: Option<(u64, Vec<tongban_evidence::Digest>)>,
) {
    // A clock for waiting on the channel until the next head is due; only a signing log
    // with an interval waits so, and one that cannot have a clock signs every group.
    let mut interval = signer.as_ref().map_or(Duration::ZERO, |s| s.head_interval());
    let timer = match interval.is_zero() {
        true => None,
        false => match tokio::runtime::Builder::new_current_thread().enable_time().build() {
            Ok(runtime) => Some(runtime),
            Err(e) => {
                tracing::error!(error = %e, "the exchange log signs every group: no timer for its head interval");
                interval = Duration::ZERO;
                None
            }
        },
    };
    // Records a crash left without their head are signed with the first write.
    let mut unsigned = Unsigned { first_seq: 0, leaves: Vec::new(), waiting: Vec::new() };
    if let (Some(_), Some((first_seq, leaves))) = (&signer, recovered) {
        unsigned.first_seq = first_seq;
        unsigned.leaves = leaves;
    }
    let mut last_head: Option<Instant> = None;
    let mut batch: Vec<(Vec<u8>, Option<tongban_evidence::Digest>, Done, bool)> =
        Vec::with_capacity(MAX_BATCH);
    let mut seals = Vec::new();
    let mut closed = false;
    loop {
        // The next message: waited for without end while no record waits for a head, and
        // otherwise only until the head is due.
        let due = last_head.map(|at| at + interval);
        let first = if !unsigned.leaves.is_empty() {
            match (due.map(|d| d.saturating_duration_since(Instant::now())), &timer) {
                (Some(wait), Some(timer)) if !wait.is_zero() => {
                    // The timeout is made inside the runtime, whose clock it needs.
                    match timer.block_on(async { tokio::time::timeout(wait, receiver.recv()).await }) {
                        Ok(Some(message)) => Some(message),
                        Ok(None) => {
                            closed = true;
                            None
                        }
                        Err(_) => None,
                    }
                }
                _ => match receiver.try_recv() {
                    Ok(message) => Some(message),
                    Err(mpsc::error::TryRecvError::Empty) => None,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        closed = true;
                        None
                    }
                },
            }
        } else {
            match receiver.blocking_recv() {
                Some(message) => Some(message),
                None => break,
            }
        };
        let mut next = first;
        while let Some(message) = next.take() {
            match message {
                Message::Append { body, leaf, done, receipted } => batch.push((body, leaf, done, receipted)),
                Message::Seal { min_age, done } => seals.push((min_age, done)),
            }
            if batch.len() < MAX_BATCH {
                next = receiver.try_recv().ok();
            }
        }
        // A head is signed when the interval since the last one has passed, and sooner before
        // a seal that is due (a head shares its records' segment), at the end, or when the tree
        // grows large.
        let sign = signer.as_deref().filter(|_| {
            let waiting = unsigned.leaves.len() + batch.len();
            waiting > 0
                && (due.is_none_or(|d| Instant::now() >= d)
                    || seals.iter().any(|(min_age, _)| wal.seal_due(*min_age))
                    || closed
                    || waiting + MAX_BATCH >= receipt::MAX_HEAD_RECORDS)
        });
        if !batch.is_empty() || sign.is_some() {
            write_group(&mut wal, &mut batch, &mut unsigned, signer.is_some(), sign, &mut last_head);
        }
        for (min_age, done) in seals.drain(..) {
            let outcome = wal.seal_if_older(min_age).map_err(|e| e.to_string());
            if let Err(e) = &outcome {
                tracing::error!(error = %e, "exchange log seal failed");
            }
            if let Some(done) = done {
                let _ = done.send(outcome);
            }
        }
        if closed && unsigned.leaves.is_empty() {
            break;
        }
    }
}

/// Writes `batch` as one group, followed by a head over every record since the last head when
/// `sign` is given, and answers the callers whose records are durable and, when they asked for
/// one and the log is `signing`, under a signed head.
fn write_group(
    wal: &mut wal::Wal,
    batch: &mut Vec<(Vec<u8>, Option<tongban_evidence::Digest>, Done, bool)>,
    unsigned: &mut Unsigned,
    signing: bool,
    sign: Option<&receipt::Signer>,
    last_head: &mut Option<Instant>,
) {
    if unsigned.leaves.is_empty() {
        unsigned.first_seq = wal.next_seq();
    }
    let base = unsigned.leaves.len();
    let mut leaves = std::mem::take(&mut unsigned.leaves);
    leaves.extend(batch.iter().filter_map(|(_, leaf, _, _)| *leaf));
    let first_seq = unsigned.first_seq;
    let mut group = None;
    let mut head_line = |_: u64, _: u64, chain: &[u8; 32]| -> Vec<u8> {
        let Some(signer) = sign else { return Vec::new() };
        let signed = receipt::SignedGroup::sign(signer, std::mem::take(&mut leaves), first_seq, chain);
        let line = signed.head_line();
        group = Some(Arc::new(signed));
        line
    };
    let started = Instant::now();
    let head: Option<wal::HeadLine<'_>> = if sign.is_some() { Some(&mut head_line) } else { None };
    let outcome = wal.append_group(batch.iter().map(|(body, _, _, _)| body.as_slice()), head);
    if let Err(e) = &outcome {
        tracing::error!(error = %e, "exchange log write failed");
        // The records of this group are not in the log; those written before it wait for a
        // head no longer, since the log cannot be written: their callers are refused.
        let reason = e.to_string();
        for (body, _, done, _) in batch.drain(..) {
            let _ = done.send((Err(reason.clone()), body));
        }
        for (_, done, body) in unsigned.waiting.drain(..) {
            let _ = done.send((Err(reason.clone()), body));
        }
        // The records written before this group stay without a head: the audit counts them
        // as unsigned, and the next head starts after them.
        unsigned.leaves.clear();
        wal.set_awaiting_head(false);
        return;
    }
    match group {
        Some(group) => {
            *last_head = Some(started);
            for (index, done, body) in unsigned.waiting.drain(..) {
                let _ = done.send((Ok(Some((group.clone(), index))), body));
            }
            for (offset, (body, _, done, _)) in batch.drain(..).enumerate() {
                let _ = done.send((Ok(Some((group.clone(), base + offset))), body));
            }
            unsigned.leaves.clear();
            wal.set_awaiting_head(false);
        }
        None => {
            // Durable, and waiting for the next head: only those asking for a receipt wait.
            for (offset, (body, _, done, receipted)) in batch.drain(..).enumerate() {
                if receipted && signing {
                    unsigned.waiting.push((base + offset, done, body));
                } else {
                    let _ = done.send((Ok(None), body));
                }
            }
            unsigned.leaves = leaves;
            wal.set_awaiting_head(signing && !unsigned.leaves.is_empty());
        }
    }
}

/// Every record in the log in `dir`, in order, as JSON objects (seals and heads left out).
pub fn read_records(dir: &Path) -> std::io::Result<Vec<serde_json::Value>> {
    let mut records = Vec::new();
    for (_, path) in wal::list_segments(dir)? {
        let bytes = std::fs::read(&path)?;
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let Ok(value) = serde_json::from_slice::<serde_json::Value>(line) else { continue };
            if value.get("seal").is_none() && value.get("head").is_none() {
                records.push(value);
            }
        }
    }
    Ok(records)
}

/// Ships sealed segments every `interval_secs` until the log is closed. A failed pass is
/// retried on the next; nothing is removed locally that the shared store has not confirmed.
fn spawn_shipping(
    shared: ship::SharedLog,
    dir: PathBuf,
    replica: String,
    interval_secs: u64,
    alive: std::sync::Weak<()>,
) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_secs(interval_secs.max(1)));
        loop {
            ticks.tick().await;
            if alive.upgrade().is_none() {
                return;
            }
            match shared.ship(&dir, &replica).await {
                Ok(shipped) if !shipped.is_empty() => {
                    tracing::debug!(segments = ?shipped, "exchange log segments shipped")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "shipping the exchange log failed; will retry"),
            }
        }
    });
}
