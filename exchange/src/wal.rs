//! The exchange log's write-ahead log: numbered segment files of JSON lines, one exchange
//! record per line, hash-chained and sealed.
//!
//! Each record line carries `seq` (one more than the record before it, across segments) and
//! `prev` (the SHA-256, in hex, of the previous record's line as written, without its newline;
//! 64 zeros for the first record). A segment ends with a seal line, written when it is full or
//! old enough, naming its first and last record, the last record's hash and the SHA-256 of every
//! byte of the segment before the seal. Changing, inserting or removing a record breaks a link
//! or a seal, which `tongban audit verify` reports (see `audit.rs`).
//!
//! One thread owns the active segment. It takes every record waiting in its queue, writes the
//! batch with one `write` and one `fdatasync` (group commit), and only then tells the callers
//! their records are durable. A failed write leaves the chain as it was before the batch: the
//! next batch first cuts the segment back to its last durable length, so a half-written batch
//! is never followed by more records, and the log recovers by itself once the disk does.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Durability, ExchangeRecord, LogMetrics};

/// The link of the first record of a log.
pub const GENESIS: [u8; 32] = [0; 32];

/// The file name of segment `number`.
pub fn segment_name(number: u64) -> String {
    format!("{number:012}.wal")
}

/// The segments in `dir`, in order.
pub fn list_segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut segments = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let number = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".wal"))
            .filter(|n| n.len() == 12)
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(number) = number {
            segments.push((number, path));
        }
    }
    segments.sort_unstable();
    Ok(segments)
}

/// The last line of a finished segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seal {
    pub segment: u64,
    /// The first and last record of the segment (only segments holding records are sealed).
    pub first_seq: u64,
    pub last_seq: u64,
    pub records: u64,
    /// The hash of the segment's last record line: the link the next segment continues from.
    pub last_hash: String,
    /// SHA-256 over the line hashes of the segment's records, in order: it commits to every
    /// byte of every record line while hashing 32 bytes per record, not the record again.
    pub digest: String,
    pub sealed_at: DateTime<Utc>,
}

#[derive(Serialize)]
struct SealLine<'a> {
    seal: &'a Seal,
}

/// What recovery and the audit read from each line: its link, or a seal.
#[derive(Debug, Deserialize)]
pub struct Link {
    pub seq: Option<u64>,
    pub prev: Option<String>,
    pub seal: Option<Seal>,
    /// A signed tree head over the records since the one before it.
    pub head: Option<tongban_evidence::SignedHead>,
}

/// Makes the signed head line written after a group, from the group's first record number, its
/// size (zero when the head is written alone) and the chain after its last record; an empty
/// line writes none.
pub type HeadLine<'h> = &'h mut dyn FnMut(u64, u64, &[u8; 32]) -> Vec<u8>;

/// The hash of one line, without its newline.
pub fn line_hash(line: &[u8]) -> [u8; 32] {
    Sha256::digest(line).into()
}

/// How the writer shapes its segments.
#[derive(Debug, Clone)]
pub struct WalOptions {
    pub durability: Durability,
    pub segment_max_bytes: u64,
    pub segment_max_age: Duration,
}

/// The segment records are appended to.
#[derive(Debug)]
struct Active {
    number: u64,
    path: PathBuf,
    file: File,
    /// Bytes known to be durable (or written, without fsync).
    len: u64,
    first_seq: Option<u64>,
    records: u64,
    digest: Sha256,
    opened: Instant,
    /// Set once the seal is written and the next segment still has to be created.
    sealed: bool,
}

/// The writer's state: the active segment and the end of the chain.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    /// The directory's writer lock, held for as long as the log is open.
    _lock: File,
    options: WalOptions,
    active: Active,
    next_seq: u64,
    chain: [u8; 32],
    /// A write failed: the segment may hold bytes past `active.len`.
    broken: bool,
    /// The group being written, kept between groups.
    buf: Vec<u8>,
    /// Records are written that a head to come will cover: the segment is not sealed by size
    /// until it is written, so that a head and its records share a segment.
    awaiting_head: bool,
    metrics: LogMetrics,
    #[cfg(any(test, feature = "fault-injection"))]
    pub(super) faults: std::sync::Arc<std::sync::atomic::AtomicU32>,
}

/// Why the log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error(
        "{path} line {line} is not a log line; run `tongban audit verify` and restore the log before serving"
    )]
    Unreadable { path: PathBuf, line: usize },
    #[error(
        "{0} is the exchange log of another running gateway; give each gateway a log directory of its own"
    )]
    InUse(PathBuf),
}

/// The file in a log's directory that its writer holds locked while it runs.
const LOCK_FILE: &str = "writer.lock";

/// Takes the directory's writer lock, so that a second gateway pointed at the same log fails at
/// start instead of interleaving its records into this one's chain. The operating system
/// releases it when the process ends, however it ends.
fn lock_dir(dir: &Path) -> Result<File, OpenError> {
    let file = OpenOptions::new().create(true).truncate(false).write(true).open(dir.join(LOCK_FILE))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(OpenError::InUse(dir.to_owned())),
        Err(std::fs::TryLockError::Error(e)) => Err(OpenError::Io(e)),
    }
}

impl Wal {
    /// Opens the log in `dir`: continues the last segment after cutting off a line a crash
    /// left half-written (its call was never answered), or starts the next segment after a
    /// sealed one.
    pub fn open(dir: &Path, options: WalOptions, metrics: LogMetrics) -> Result<Wal, OpenError> {
        std::fs::create_dir_all(dir)?;
        let lock = lock_dir(dir)?;
        let segments = list_segments(dir)?;
        let Some((number, path)) = segments.last().cloned() else {
            let active = create_segment(dir, 1)?;
            return Ok(Wal::with(dir, lock, options, metrics, active, 1, GENESIS));
        };
        let mut bytes = std::fs::read(&path)?;
        let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        if complete < bytes.len() {
            tracing::warn!(segment = %path.display(), bytes = bytes.len() - complete, "cutting off a half-written line");
            let file = OpenOptions::new().write(true).open(&path)?;
            file.set_len(complete as u64)?;
            file.sync_all()?;
            bytes.truncate(complete);
        }
        let mut first_seq = None;
        let mut last: Option<(u64, [u8; 32])> = None;
        let mut seal = None;
        let mut digest = Sha256::new();
        for (index, line) in bytes.split(|b| *b == b'\n').enumerate().filter(|(_, l)| !l.is_empty()) {
            let link: Link = serde_json::from_slice(line)
                .map_err(|_| OpenError::Unreadable { path: path.clone(), line: index + 1 })?;
            match (link.seal, link.seq) {
                (Some(s), _) => seal = Some(s),
                // A signed head counts in the segment's digest like a record, so that removing
                // it breaks the seal.
                (None, None) if link.head.is_some() => digest.update(line_hash(line)),
                (None, Some(seq)) => {
                    first_seq.get_or_insert(seq);
                    let hash = line_hash(line);
                    digest.update(hash);
                    last = Some((seq, hash));
                }
                (None, None) => return Err(OpenError::Unreadable { path: path.clone(), line: index + 1 }),
            }
        }
        if let Some(seal) = seal {
            let chain = decode_hash(&seal.last_hash)
                .ok_or_else(|| OpenError::Unreadable { path: path.clone(), line: 0 })?;
            let next_seq = seal.last_seq + 1;
            let active = create_segment(dir, number + 1)?;
            return Ok(Wal::with(dir, lock, options, metrics, active, next_seq, chain));
        }
        let (next_seq, chain) = match last {
            Some((seq, hash)) => (seq + 1, hash),
            None => previous_end(dir, &segments)?,
        };
        let file = OpenOptions::new().append(true).open(&path)?;
        let active = Active {
            number,
            path,
            file,
            len: bytes.len() as u64,
            first_seq,
            records: last.map_or(0, |(seq, _)| seq + 1 - first_seq.unwrap_or(seq + 1)),
            digest,
            opened: Instant::now(),
            sealed: false,
        };
        Ok(Wal::with(dir, lock, options, metrics, active, next_seq, chain))
    }

    fn with(
        dir: &Path,
        lock: File,
        options: WalOptions,
        metrics: LogMetrics,
        active: Active,
        next_seq: u64,
        chain: [u8; 32],
    ) -> Wal {
        Wal {
            dir: dir.to_owned(),
            _lock: lock,
            options,
            active,
            next_seq,
            chain,
            broken: false,
            buf: Vec::with_capacity(256 * 1024),
            awaiting_head: false,
            metrics,
            #[cfg(any(test, feature = "fault-injection"))]
            faults: Default::default(),
        }
    }

    /// Serialises `records` and appends them as one group (tests and benchmarks; the writer
    /// gets records its callers have already serialised).
    pub fn append_records(&mut self, records: &[ExchangeRecord]) -> io::Result<()> {
        let bodies = records.iter().map(serde_json::to_vec).collect::<Result<Vec<_>, _>>()?;
        self.append(bodies.iter().map(Vec::as_slice))
    }

    /// Appends serialised records (each a JSON object) as one group and makes them durable.
    /// Each line is the record's object with `seq` and `prev` put first. On error none of them
    /// is in the log.
    pub fn append<'r>(&mut self, bodies: impl Iterator<Item = &'r [u8]>) -> io::Result<()> {
        self.append_group(bodies, None)
    }

    /// Appends a group as [`Wal::append`] does, followed, when `head` is given, by the line it
    /// makes from the group's first record number, its size and the chain after its last
    /// record (a signed tree head), in the same write.
    pub fn append_group<'r>(
        &mut self,
        bodies: impl Iterator<Item = &'r [u8]>,
        head: Option<HeadLine<'_>>,
    ) -> io::Result<()> {
        if self.broken {
            self.repair()?;
        }
        // One buffer for every group: a fresh one each time would be zeroed pages from the
        // allocator on every write.
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let mut chain = self.chain;
        let mut seq = self.next_seq;
        let mut prev = [0u8; 64];
        // The segment's digest with this group's line hashes, kept only once the group is written.
        let mut digest = self.active.digest.clone();
        for body in bodies {
            let Some(members) = body.strip_prefix(b"{").filter(|rest| rest.len() > 1) else {
                self.buf = buf;
                return Err(io::Error::other("an exchange record must be a non-empty JSON object"));
            };
            let start = buf.len();
            hex::encode_to_slice(chain, &mut prev).map_err(io::Error::other)?;
            write!(buf, "{{\"seq\":{seq},\"prev\":\"")?;
            buf.extend_from_slice(&prev);
            buf.extend_from_slice(b"\",");
            buf.extend_from_slice(members);
            chain = line_hash(&buf[start..]);
            digest.update(chain);
            buf.push(b'\n');
            seq += 1;
        }
        let count = seq - self.next_seq;
        // A head may also be written alone, over records an earlier write made durable.
        if let Some(head) = head {
            let line = head(self.next_seq, count, &chain);
            if !line.is_empty() {
                digest.update(line_hash(&line));
                buf.extend_from_slice(&line);
                buf.push(b'\n');
            }
        }
        if buf.is_empty() {
            self.buf = buf;
            return Ok(());
        }
        let written = self.write_durably(&buf);
        self.buf = buf;
        written?;
        self.active.digest = digest;
        if count > 0 {
            self.active.first_seq.get_or_insert(self.next_seq);
            self.active.records += count;
            self.next_seq = seq;
            self.chain = chain;
            self.metrics.appended.inc_by(count);
            self.metrics.batch_records.observe(count as f64);
        }
        if self.active.len >= self.options.segment_max_bytes && !self.awaiting_head {
            self.seal()?;
        }
        Ok(())
    }

    /// The number the next record gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Says whether written records wait for a head to come; while they do, the segment is not
    /// sealed, whatever its size or age.
    pub fn set_awaiting_head(&mut self, awaiting: bool) {
        self.awaiting_head = awaiting;
    }

    /// Seals the active segment if it holds records and is at least `min_age` old, and starts
    /// the next one. Returns the number of the segment sealed.
    pub fn seal_if_older(&mut self, min_age: Duration) -> io::Result<Option<u64>> {
        if self.broken {
            self.repair()?;
        }
        if self.awaiting_head || !self.seal_due(min_age) {
            return Ok(None);
        }
        self.seal().map(Some)
    }

    /// Whether [`Wal::seal_if_older`] with `min_age` would seal the active segment once no
    /// record waits for a head.
    pub fn seal_due(&self, min_age: Duration) -> bool {
        self.active.records > 0 && self.active.opened.elapsed() >= min_age
    }

    /// The age limit of a segment from the options.
    pub fn max_age(&self) -> Duration {
        self.options.segment_max_age
    }

    fn seal(&mut self) -> io::Result<u64> {
        let number = self.active.number;
        if !self.active.sealed {
            let seal = Seal {
                segment: number,
                first_seq: self.active.first_seq.unwrap_or(self.next_seq),
                last_seq: self.next_seq - 1,
                records: self.active.records,
                last_hash: hex::encode(self.chain),
                digest: hex::encode(self.active.digest.clone().finalize()),
                sealed_at: Utc::now(),
            };
            let mut line = serde_json::to_vec(&SealLine { seal: &seal })?;
            line.push(b'\n');
            self.write_durably(&line)?;
            self.active.sealed = true;
        }
        match create_segment(&self.dir, number + 1) {
            Ok(next) => {
                self.active = next;
                self.metrics.sealed.inc();
                Ok(number)
            }
            Err(e) => {
                self.broken = true;
                Err(e)
            }
        }
    }

    /// Cuts the active segment back to its durable length (dropping what a failed write may
    /// have left) and finishes a seal that was written before the next segment could be made.
    fn repair(&mut self) -> io::Result<()> {
        let file = OpenOptions::new().append(true).open(&self.active.path)?;
        file.set_len(self.active.len)?;
        file.sync_all()?;
        self.active.file = file;
        self.broken = false;
        if self.active.sealed {
            self.seal()?;
        }
        tracing::info!(segment = %self.active.path.display(), "exchange log writable again");
        Ok(())
    }

    fn write_durably(&mut self, bytes: &[u8]) -> io::Result<()> {
        let outcome = self.try_write(bytes);
        match &outcome {
            Ok(()) => self.active.len += bytes.len() as u64,
            Err(_) => {
                self.broken = true;
                self.metrics.failures.inc();
            }
        }
        outcome
    }

    fn try_write(&mut self, bytes: &[u8]) -> io::Result<()> {
        #[cfg(any(test, feature = "fault-injection"))]
        if self
            .faults
            .fetch_update(std::sync::atomic::Ordering::SeqCst, std::sync::atomic::Ordering::SeqCst, |n| {
                n.checked_sub(1)
            })
            .is_ok()
        {
            // A disk that takes half the batch and then fails.
            self.active.file.write_all(&bytes[..bytes.len() / 2])?;
            return Err(io::Error::other("injected write failure"));
        }
        self.active.file.write_all(bytes)?;
        if self.options.durability == Durability::Fsync {
            let started = Instant::now();
            self.active.file.sync_data()?;
            self.metrics.fsync_seconds.observe(started.elapsed().as_secs_f64());
        }
        Ok(())
    }
}

/// Where segments stand after retention.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retained {
    /// The first segment kept.
    pub first_segment: u64,
    /// Its first record, and the hash that record links to.
    pub first_seq: u64,
    pub prev: String,
    /// When the last segment removed was sealed: the audit checks it was old enough for the
    /// configured retention to remove it. (Absent in anchors written before it was recorded.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed_sealed_at: Option<chrono::DateTime<chrono::Utc>>,
}

pub const RETAINED_FILE: &str = "retained.json";

/// Reads `retained.json`, if retention has removed segments.
pub fn retained(dir: &Path) -> std::io::Result<Option<Retained>> {
    match std::fs::read(dir.join(RETAINED_FILE)) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(std::io::Error::other),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Where the chain stands after the segments before the last, when the last one is empty.
fn previous_end(dir: &Path, segments: &[(u64, PathBuf)]) -> Result<(u64, [u8; 32]), OpenError> {
    let Some((_, path)) = segments.len().checked_sub(2).map(|i| &segments[i]) else {
        // The only segment: the chain starts at the log's beginning, or where retention
        // left it.
        return match retained(dir)? {
            Some(retained) => {
                let prev = decode_hash(&retained.prev)
                    .ok_or_else(|| OpenError::Unreadable { path: dir.join(RETAINED_FILE), line: 0 })?;
                Ok((retained.first_seq, prev))
            }
            None => Ok((1, GENESIS)),
        };
    };
    let bytes = std::fs::read(path)?;
    let seal = bytes
        .split(|b| *b == b'\n')
        .rfind(|l| !l.is_empty())
        .and_then(|line| serde_json::from_slice::<Link>(line).ok())
        .and_then(|link| link.seal)
        .ok_or_else(|| OpenError::Unreadable { path: path.clone(), line: 0 })?;
    let chain =
        decode_hash(&seal.last_hash).ok_or_else(|| OpenError::Unreadable { path: path.clone(), line: 0 })?;
    Ok((seal.last_seq + 1, chain))
}

pub fn decode_hash(hex_hash: &str) -> Option<[u8; 32]> {
    let mut hash = [0u8; 32];
    hex::decode_to_slice(hex_hash, &mut hash).ok()?;
    Some(hash)
}

/// Creates segment `number` and makes its directory entry durable.
fn create_segment(dir: &Path, number: u64) -> io::Result<Active> {
    let path = dir.join(segment_name(number));
    let file = OpenOptions::new().create(true).append(true).open(&path)?;
    let len = file.metadata()?.len();
    if len > 0 {
        // A segment made by a seal whose caller then failed, and written to since: never
        // happens, because nothing is appended before the seal reports success.
        return Err(io::Error::other(format!("{} exists and is not empty", path.display())));
    }
    File::open(dir)?.sync_all()?;
    Ok(Active {
        number,
        path,
        file,
        len: 0,
        first_seq: None,
        records: 0,
        digest: Sha256::new(),
        opened: Instant::now(),
        sealed: false,
    })
}
