//! `tongban audit verify`: walks the whole log and names the first record that was changed,
//! inserted or removed, or the first seal that no longer matches its segment.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use tongban_evidence::{Certificate, Countersignature, SignedHead, Tree};

use super::wal::{self, GENESIS, Link};

/// What the audit found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub dir: PathBuf,
    pub segments: u64,
    pub sealed: u64,
    pub records: u64,
    /// The last record's sequence number and hash: publish or copy these elsewhere, and a
    /// later audit shows the log still leads to them.
    pub head_seq: Option<u64>,
    pub head_hash: String,
    /// Bytes after the last complete line of the last segment: a write a crash cut short (its
    /// call was never answered); the gateway cuts them off when it starts.
    pub torn_tail_bytes: u64,
    /// The first segment kept, when retention has removed older ones.
    pub retained_from: Option<u64>,
    /// Signed tree heads checked, the records they cover, and records no head covers (written
    /// before the log signed, or whose head a crash cut off before their calls were answered).
    pub heads: u64,
    pub signed_records: u64,
    pub unsigned_records: u64,
    /// The last signed head: the point up to which the gateway's signature stands for the log.
    pub last_signed: Option<SignedPoint>,
    /// The last point a peer countersigned, when an anchor was given and holds.
    pub anchored: Option<AnchoredPoint>,
    /// The first problem found; the audit stops there, since every later link depends on it.
    pub problem: Option<Problem>,
}

/// Where a signed head leaves the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignedPoint {
    pub seq: u64,
    pub chain: String,
    pub signed_at_ms: u64,
    pub key: String,
}

/// The head a peer countersigned, which the log still leads through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AnchoredPoint {
    pub seq: u64,
    pub chain: String,
    pub by: String,
    pub countersigned_at_ms: u64,
}

impl Report {
    pub fn intact(&self) -> bool {
        self.problem.is_none()
    }
}

/// Where the log stops being what was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub segment: u64,
    /// The line in the segment file, from 1.
    pub line: usize,
    pub kind: ProblemKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProblemKind {
    /// The record's line no longer hashes to the link its successor (or its segment's seal)
    /// holds: it was modified.
    Modified { seq: u64 },
    /// A record whose number repeats or goes back: it was inserted.
    Inserted { seq: u64 },
    /// Records `first..=last` are not in the log.
    Missing { first: u64, last: u64 },
    /// A line that is not a record or a seal.
    Unreadable,
    /// The segment's bytes no longer match the digest its seal holds.
    SealMismatch,
    /// A segment file is missing from the numbering.
    SegmentMissing { number: u64 },
    /// A segment other than the last has no seal: its end was cut off.
    Unsealed,
    /// Lines after a segment's seal.
    AfterSeal,
    /// Bytes after the last complete line of a segment that a crash cannot have left there: a
    /// sealed segment, or one that is not the last.
    TrailingBytes { bytes: u64 },
    /// Segments were removed as if by retention, but the configuration keeps the log for
    /// ever, or for longer than the removed segments had been sealed.
    RetentionNotAllowed { first_segment: u64 },
    /// The log ends before the head an earlier audit (or a peer) saw: records were cut off.
    Truncated { expected_seq: u64, head_seq: Option<u64> },
    /// The record at the expected head's number is not the one an earlier audit saw.
    HeadRewritten { seq: u64 },
    /// A signed head does not match the records before it: its range or its tree.
    SignedHeadMismatch { first_seq: u64 },
    /// A signed head's signature does not hold, or no certificate has its key.
    SignedHeadUnverified { first_seq: u64, reason: String },
    /// A signed head follows a head over the records up to `after` that is not in the log: a
    /// head line was removed.
    SignedHeadRemoved { first_seq: u64, after: u64 },
    /// The peer's countersignature given as an anchor does not hold.
    AnchorUnverified { reason: String },
    /// The log no longer leads through the head a peer countersigned: history before it was
    /// rewritten, or cut off.
    AnchorContradicted { seq: u64, by: String },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = format!("segment {} line {}", wal::segment_name(self.segment), self.line);
        match &self.kind {
            ProblemKind::Modified { seq } => write!(f, "record {seq} was modified (chain breaks at {at})"),
            ProblemKind::Inserted { seq } => write!(f, "a record numbered {seq} was inserted at {at}"),
            ProblemKind::Missing { first, last } if first == last => {
                write!(f, "record {first} is missing (before {at})")
            }
            ProblemKind::Missing { first, last } => {
                write!(f, "records {first} to {last} are missing (before {at})")
            }
            ProblemKind::Unreadable => write!(f, "{at} is not a log line"),
            ProblemKind::SealMismatch => write!(f, "the seal at {at} does not match its segment's bytes"),
            ProblemKind::SegmentMissing { number } => {
                write!(f, "segment {} is missing", wal::segment_name(*number))
            }
            ProblemKind::Unsealed => {
                write!(f, "segment {} ends without its seal", wal::segment_name(self.segment))
            }
            ProblemKind::AfterSeal => write!(f, "{at} follows the segment's seal"),
            ProblemKind::TrailingBytes { bytes } => write!(
                f,
                "segment {} ends with {bytes} bytes after its last line, which no crash leaves there",
                wal::segment_name(self.segment)
            ),
            ProblemKind::RetentionNotAllowed { first_segment } => write!(
                f,
                "segments before {} were removed, which the configured retention does not allow",
                wal::segment_name(*first_segment)
            ),
            ProblemKind::Truncated { expected_seq, head_seq } => write!(
                f,
                "the log ends at record {} but an earlier head was record {expected_seq}: records were cut off",
                head_seq.map_or_else(|| "none".to_owned(), |s| s.to_string())
            ),
            ProblemKind::HeadRewritten { seq } => {
                write!(f, "record {seq} is not the record an earlier audit saw as the head")
            }
            ProblemKind::SignedHeadMismatch { first_seq } => {
                write!(f, "the signed head at {at} (from record {first_seq}) does not match its records")
            }
            ProblemKind::SignedHeadUnverified { first_seq, reason } => {
                write!(f, "the signed head at {at} (from record {first_seq}) does not verify: {reason}")
            }
            ProblemKind::SignedHeadRemoved { first_seq, after } => write!(
                f,
                "the signed head at {at} (from record {first_seq}) follows a head over the records up to \
                 {after}, which is not in the log: a head was removed"
            ),
            ProblemKind::AnchorUnverified { reason } => write!(f, "the anchor does not verify: {reason}"),
            ProblemKind::AnchorContradicted { seq, by } => write!(
                f,
                "the log does not lead through record {seq} as {by} countersigned it: history was rewritten"
            ),
        }
    }
}

/// A head an earlier audit or a peer saw: the log must still lead through it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedHead {
    pub seq: u64,
    pub hash: String,
}

impl std::str::FromStr for ExpectedHead {
    type Err = String;

    /// `SEQ:HASH`, as `tongban audit verify` prints a head.
    fn from_str(text: &str) -> Result<Self, String> {
        let (seq, hash) = text.split_once(':').ok_or("give the head as SEQ:HASH")?;
        let seq = seq.parse().map_err(|_| format!("{seq:?} is not a record number"))?;
        if wal::decode_hash(hash).is_none() {
            return Err(format!("{hash:?} is not a hash of 64 hexadecimal digits"));
        }
        Ok(ExpectedHead { seq, hash: hash.to_ascii_lowercase() })
    }
}

/// What the audit holds the log to besides its own chain.
#[derive(Debug, Clone, Default)]
pub struct Expectations {
    /// The configured retention: `None` keeps the log for ever, so no segment may be gone.
    pub retention_days: Option<u32>,
    /// A head the log must still lead through.
    pub head: Option<ExpectedHead>,
    /// The certificates signed heads are checked with; when absent, those kept beside the log.
    pub certificates: Option<Vec<Certificate>>,
    /// A peer's countersignature of one of the log's heads, and the peer's certificates: the log
    /// must still lead through that head.
    pub anchor: Option<(Countersignature, Vec<Certificate>)>,
}

/// Checks every segment of the log in `dir` on its own chain alone. Without the configured
/// retention and an earlier head, removals at either end cannot be told from a shorter log:
/// [`verify_against`] checks those too.
pub fn verify(dir: &Path) -> std::io::Result<Report> {
    let certificates = super::receipt::kept_certificates(dir)?;
    Ok(verify_chain(dir, None, &certificates)?.0)
}

/// Checks the log in `dir` against its chain, the configured retention and an earlier head.
pub fn verify_against(dir: &Path, expected: &Expectations) -> std::io::Result<Report> {
    let certificates = match &expected.certificates {
        Some(given) => given.clone(),
        None => super::receipt::kept_certificates(dir)?,
    };
    // A countersigned head is checked first on its own: the peer's signature over it, and
    // the log's signature within it. The log must then lead through it.
    let mut anchored = None;
    if let Some((countersignature, peer_certificates)) = &expected.anchor {
        let holds = countersignature
            .verify(peer_certificates)
            .and_then(|()| countersignature.head.verify(&certificates))
            .map_err(|e| e.to_string());
        if let Err(reason) = holds {
            let mut report = verify_chain(dir, None, &certificates)?.0;
            report.problem =
                Some(Problem { segment: 0, line: 0, kind: ProblemKind::AnchorUnverified { reason } });
            return Ok(report);
        }
        anchored = Some(AnchoredPoint {
            seq: countersignature.head.last_seq(),
            chain: countersignature.head.chain.clone(),
            by: countersignature.by.clone(),
            countersigned_at_ms: countersignature.signed_at_ms,
        });
    }
    let wanted = [expected.head.as_ref().map(|h| h.seq), anchored.as_ref().map(|a| a.seq)];
    let (mut report, seen) = verify_chain_at(dir, &wanted, &certificates)?;
    if report.problem.is_some() {
        return Ok(report);
    }
    if let Some(anchor) = anchored {
        let kind = match seen.get(&anchor.seq).map(hex::encode) {
            Some(hash) if hash == anchor.chain => None,
            // Before the first record kept: retention removed it, which is checked below.
            None if report.head_seq.is_some_and(|last| last >= anchor.seq) => None,
            _ => Some(ProblemKind::AnchorContradicted { seq: anchor.seq, by: anchor.by.clone() }),
        };
        if let Some(kind) = kind {
            let segment = wal::list_segments(dir)?.last().map_or(0, |(n, _)| *n);
            report.problem = Some(Problem { segment, line: 0, kind });
            return Ok(report);
        }
        report.anchored = Some(anchor);
    }
    let seen = expected.head.as_ref().and_then(|h| seen.get(&h.seq).copied());
    if let Some(retained) = super::wal::retained(dir)? {
        let allowed = match (expected.retention_days, retained.removed_sealed_at) {
            (None, _) | (Some(_), None) => false,
            (Some(days), Some(sealed_at)) => {
                sealed_at < chrono::Utc::now() - chrono::Duration::days(i64::from(days))
            }
        };
        if !allowed {
            report.problem = Some(Problem {
                segment: retained.first_segment,
                line: 0,
                kind: ProblemKind::RetentionNotAllowed { first_segment: retained.first_segment },
            });
            return Ok(report);
        }
    }
    if let Some(head) = &expected.head {
        let kind = match seen.map(hex::encode) {
            None if report.head_seq.is_none_or(|last| last < head.seq) => {
                Some(ProblemKind::Truncated { expected_seq: head.seq, head_seq: report.head_seq })
            }
            // Before the first record kept: retention removed it, which was checked above.
            None => None,
            Some(hash) if hash != head.hash => Some(ProblemKind::HeadRewritten { seq: head.seq }),
            Some(_) => None,
        };
        if let Some(kind) = kind {
            let segment = wal::list_segments(dir)?.last().map_or(0, |(n, _)| *n);
            report.problem = Some(Problem { segment, line: 0, kind });
        }
    }
    Ok(report)
}

/// Walks the chain, keeping the hash of record `want` when it passes it.
fn verify_chain(
    dir: &Path,
    want: Option<u64>,
    certificates: &[Certificate],
) -> std::io::Result<(Report, Option<[u8; 32]>)> {
    let (report, seen) = verify_chain_at(dir, &[want], certificates)?;
    let hash = want.and_then(|w| seen.get(&w).copied());
    Ok((report, hash))
}

/// The most records a head covers (the writer signs before a tree grows past it).
const MAX_GROUP: usize = super::receipt::MAX_HEAD_RECORDS;

/// Walks the chain and checks every signed head against the records before it, keeping the
/// hashes of the records numbered in `want` as it passes them.
fn verify_chain_at(
    dir: &Path,
    want: &[Option<u64>],
    certificates: &[Certificate],
) -> std::io::Result<(Report, std::collections::HashMap<u64, [u8; 32]>)> {
    let mut seen = std::collections::HashMap::new();
    // The claims of the records since the last signed head, and the first one's number.
    let mut pending: std::collections::VecDeque<Vec<u8>> = std::collections::VecDeque::new();
    let mut pending_first = 0u64;
    let segments = wal::list_segments(dir)?;
    let mut report = Report {
        dir: dir.to_owned(),
        segments: segments.len() as u64,
        sealed: 0,
        records: 0,
        head_seq: None,
        head_hash: hex::encode(GENESIS),
        torn_tail_bytes: 0,
        retained_from: None,
        heads: 0,
        signed_records: 0,
        unsigned_records: 0,
        last_signed: None,
        anchored: None,
        problem: None,
    };
    // After retention removed the oldest segments, the chain starts where they ended.
    let retained = super::wal::retained(dir)?;
    let mut expected_seq = retained.as_ref().map_or(1, |r| r.first_seq);
    let mut chain = match &retained {
        Some(r) => {
            wal::decode_hash(&r.prev).ok_or_else(|| std::io::Error::other("retained.json: bad hash"))?
        }
        None => GENESIS,
    };
    let first_number = retained.as_ref().map_or(1, |r| r.first_segment);
    report.retained_from = retained.map(|r| r.first_segment);
    let last_index = segments.len().saturating_sub(1);
    'segments: for (expected_number, (index, (number, path))) in
        (first_number..).zip(segments.iter().enumerate())
    {
        let problem = |line: usize, kind: ProblemKind| Some(Problem { segment: *number, line, kind });
        if *number != expected_number {
            report.problem = problem(0, ProblemKind::SegmentMissing { number: expected_number });
            break;
        }
        let bytes = std::fs::read(path)?;
        let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let trailing = (bytes.len() - complete) as u64;
        if index == last_index {
            report.torn_tail_bytes = trailing;
        } else if trailing > 0 {
            report.problem = problem(0, ProblemKind::TrailingBytes { bytes: trailing });
            break;
        }
        let mut digest = Sha256::new();
        let mut sealed = false;
        let mut offset = 0usize;
        for (line_index, line) in bytes[..complete].split(|b| *b == b'\n').enumerate() {
            let line_number = line_index + 1;
            if offset >= complete {
                break;
            }
            offset += line.len() + 1;
            if sealed {
                report.problem = problem(line_number, ProblemKind::AfterSeal);
                break 'segments;
            }
            let Ok(link) = serde_json::from_slice::<Link>(line) else {
                report.problem = problem(line_number, ProblemKind::Unreadable);
                break 'segments;
            };
            if let Some(seal) = link.seal {
                // The last record's hash first: it names the record when that one changed.
                if seal.last_seq + 1 == expected_seq && seal.last_hash != hex::encode(chain) {
                    report.problem = problem(line_number, ProblemKind::Modified { seq: seal.last_seq });
                    break 'segments;
                }
                let matches = seal.segment == *number
                    && seal.last_seq + 1 == expected_seq
                    && hex::encode(digest.clone().finalize()) == seal.digest;
                if !matches {
                    report.problem = problem(line_number, ProblemKind::SealMismatch);
                    break 'segments;
                }
                sealed = true;
                report.sealed += 1;
                continue;
            }
            if let Some(head) = link.head {
                digest.update(wal::line_hash(line));
                // Records before the head's first stand under no head: written while the log
                // did not sign, or before a write failed.
                let unsigned = head.first_seq.saturating_sub(pending_first).min(pending.len() as u64);
                pending.drain(..unsigned as usize);
                report.unsigned_records += unsigned;
                pending_first += unsigned;
                if let Some(kind) =
                    check_head(&head, pending.make_contiguous(), pending_first, &chain, certificates)
                {
                    report.problem = problem(line_number, kind);
                    break 'segments;
                }
                // Heads chain: each names the last record of the one before it, which must be
                // the one before it here (the first head after retention names one removed).
                let follows = match (head.after, &report.last_signed) {
                    (None, _) => true,
                    (Some(after), Some(previous)) => after == previous.seq,
                    (Some(after), None) => {
                        after == 0 || report.retained_from.is_some() && after < head.first_seq
                    }
                };
                if !follows {
                    let kind = ProblemKind::SignedHeadRemoved {
                        first_seq: head.first_seq,
                        after: head.after.unwrap_or(0),
                    };
                    report.problem = problem(line_number, kind);
                    break 'segments;
                }
                report.heads += 1;
                report.signed_records += head.size;
                report.last_signed = Some(SignedPoint {
                    seq: head.last_seq(),
                    chain: head.chain.clone(),
                    signed_at_ms: head.signed_at_ms,
                    key: head.key.clone(),
                });
                pending.clear();
                continue;
            }
            let (Some(seq), Some(prev)) = (link.seq, link.prev) else {
                report.problem = problem(line_number, ProblemKind::Unreadable);
                break 'segments;
            };
            if seq > expected_seq {
                report.problem =
                    problem(line_number, ProblemKind::Missing { first: expected_seq, last: seq - 1 });
                break 'segments;
            }
            if seq < expected_seq {
                report.problem = problem(line_number, ProblemKind::Inserted { seq });
                break 'segments;
            }
            if prev != hex::encode(chain) {
                // The link to the record before does not hold. When this line's own successor
                // still links to it, the earlier record is the one that changed; the first
                // record of a log has no predecessor, so its own link was altered.
                let kind = match seq.checked_sub(1).filter(|s| *s > 0) {
                    Some(previous) => ProblemKind::Modified { seq: previous },
                    None => ProblemKind::Modified { seq },
                };
                report.problem = problem(line_number, kind);
                break 'segments;
            }
            chain = wal::line_hash(line);
            if want.contains(&Some(seq)) {
                seen.insert(seq, chain);
            }
            // Records beyond the largest tree stand under no head: counted, not kept.
            if pending.len() >= MAX_GROUP {
                pending.pop_front();
                pending_first += 1;
                report.unsigned_records += 1;
            }
            if pending.is_empty() {
                pending_first = seq;
            }
            pending.push_back(super::receipt::claims_of_line(line).unwrap_or_default());
            digest.update(chain);
            expected_seq += 1;
            report.records += 1;
            report.head_seq = Some(seq);
        }
        if !sealed && index != last_index {
            report.problem = problem(0, ProblemKind::Unsealed);
            break;
        }
        // A crash can cut short a record being written, never bytes after a seal.
        if sealed && trailing > 0 {
            report.problem = problem(0, ProblemKind::TrailingBytes { bytes: trailing });
            report.torn_tail_bytes = 0;
            break;
        }
    }
    report.head_hash = hex::encode(chain);
    report.unsigned_records += pending.len() as u64;
    Ok((report, seen))
}

/// What is wrong with a signed head over the records `pending` (from `pending_first`), after
/// which the chain stands at `chain`; `None` when it holds.
fn check_head(
    head: &SignedHead,
    pending: &[Vec<u8>],
    pending_first: u64,
    chain: &[u8; 32],
    certificates: &[Certificate],
) -> Option<ProblemKind> {
    let first_seq = head.first_seq;
    let Ok(hash) = head.hash() else {
        return Some(ProblemKind::SignedHeadUnverified {
            first_seq,
            reason: format!("algorithm {}", head.alg),
        });
    };
    let covers = !pending.is_empty() && head.size == pending.len() as u64 && head.first_seq == pending_first;
    if !covers {
        return Some(ProblemKind::SignedHeadMismatch { first_seq });
    }
    // The last record changed since it was signed: the chain after it is not the one signed.
    if head.chain_digest().ok() != Some(*chain) {
        return Some(ProblemKind::Modified { seq: head.last_seq() });
    }
    let leaves = pending.iter().map(|claims| hash.leaf(claims)).collect();
    if head.root_digest().ok() != Some(Tree::new(hash, leaves).root()) {
        return Some(ProblemKind::SignedHeadMismatch { first_seq });
    }
    head.verify(certificates)
        .err()
        .map(|e| ProblemKind::SignedHeadUnverified { first_seq, reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tongban_policy::decision::Operation;

    use super::super::wal::{Wal, WalOptions, list_segments};
    use super::super::{Durability, ExchangeRecord, LogMetrics};
    use super::*;

    /// Writes `records` records in batches of three into segments of about 1 KiB.
    fn write_log(dir: &Path, records: u64) {
        let options = WalOptions {
            durability: Durability::Fsync,
            segment_max_bytes: 1024,
            segment_max_age: Duration::from_secs(3600),
        };
        let mut wal = Wal::open(dir, options, LogMetrics::new()).expect("open");
        let all: Vec<ExchangeRecord> = (0..records)
            .map(|i| {
                let mut record = ExchangeRecord::begin(Operation::Verify);
                record.status = 200;
                record.rows = i;
                record
            })
            .collect();
        for batch in all.chunks(3) {
            wal.append_records(batch).expect("append");
        }
    }

    fn segment_lines(dir: &Path, index: usize) -> (PathBuf, Vec<String>) {
        let path = list_segments(dir).expect("segments")[index].1.clone();
        let text = std::fs::read_to_string(&path).expect("segment");
        (path, text.lines().map(str::to_owned).collect())
    }

    fn rewrite(path: &Path, lines: &[String]) {
        std::fs::write(path, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).expect("write");
    }

    fn seq_of(line: &str) -> u64 {
        serde_json::from_str::<serde_json::Value>(line).expect("json")["seq"].as_u64().expect("seq")
    }

    fn problem(dir: &Path) -> ProblemKind {
        verify(dir).expect("audit").problem.expect("a problem").kind
    }

    #[test]
    fn a_log_has_one_writer_at_a_time() {
        let dir = tempfile::tempdir().expect("dir");
        let options = WalOptions {
            durability: Durability::Write,
            segment_max_bytes: 1024,
            segment_max_age: Duration::from_secs(3600),
        };
        let first = Wal::open(dir.path(), options.clone(), LogMetrics::new()).expect("open");
        let second = Wal::open(dir.path(), options.clone(), LogMetrics::new()).map(|_| ());
        assert!(
            matches!(&second, Err(wal::OpenError::InUse(d)) if d == dir.path()),
            "a second writer on an open log must be refused: {second:?}"
        );
        drop(first);
        Wal::open(dir.path(), options, LogMetrics::new()).expect("open again once the first writer is gone");
    }

    #[test]
    fn an_untouched_log_verifies_across_sealed_segments_and_reopening() {
        let dir = tempfile::tempdir().expect("dir");
        write_log(dir.path(), 20);
        // A second run of the gateway continues the same chain.
        write_log(dir.path(), 7);
        let report = verify(dir.path()).expect("audit");
        assert!(report.intact(), "{:?}", report.problem);
        assert_eq!(report.records, 27);
        assert_eq!(report.head_seq, Some(27));
        assert!(report.sealed >= 3, "small segments are sealed as they fill: {report:?}");
        assert_eq!(report.segments, report.sealed + 1);
    }

    #[test]
    fn a_modified_record_is_named() {
        let dir = tempfile::tempdir().expect("dir");
        write_log(dir.path(), 20);
        let (path, mut lines) = segment_lines(dir.path(), 1);
        let seq = seq_of(&lines[1]);
        lines[1] = lines[1].replace("\"status\":200", "\"status\":403");
        rewrite(&path, &lines);
        assert_eq!(problem(dir.path()), ProblemKind::Modified { seq });
    }

    #[test]
    fn a_modified_last_record_of_a_sealed_segment_is_named() {
        let dir = tempfile::tempdir().expect("dir");
        write_log(dir.path(), 20);
        let (path, mut lines) = segment_lines(dir.path(), 0);
        let last = lines.len() - 2;
        let seq = seq_of(&lines[last]);
        lines[last] = lines[last].replace("\"status\":200", "\"status\":500");
        rewrite(&path, &lines);
        assert_eq!(problem(dir.path()), ProblemKind::Modified { seq });
    }

    #[test]
    fn a_removed_record_is_named() {
        let dir = tempfile::tempdir().expect("dir");
        write_log(dir.path(), 20);
        let (path, mut lines) = segment_lines(dir.path(), 1);
        let seq = seq_of(&lines[1]);
        lines.remove(1);
        rewrite(&path, &lines);
        assert_eq!(problem(dir.path()), ProblemKind::Missing { first: seq, last: seq });
    }

    #[test]
    fn an_inserted_record_is_named() {
        let dir = tempfile::tempdir().expect("dir");
        write_log(dir.path(), 20);
        let (path, mut lines) = segment_lines(dir.path(), 1);
        // A copy of a genuine record, links and all, placed again after it.
        let copy = lines[0].clone();
        let seq = seq_of(&copy);
        lines.insert(1, copy);
        rewrite(&path, &lines);
        assert_eq!(problem(dir.path()), ProblemKind::Inserted { seq });
    }

    #[test]
    fn a_removed_segment_or_seal_is_found() {
        let dir = tempfile::tempdir().expect("dir");
        write_log(dir.path(), 30);
        let (path, mut lines) = segment_lines(dir.path(), 1);
        lines.pop();
        rewrite(&path, &lines);
        assert_eq!(problem(dir.path()), ProblemKind::Unsealed);

        let dir = tempfile::tempdir().expect("dir");
        write_log(dir.path(), 30);
        std::fs::remove_file(&list_segments(dir.path()).expect("segments")[1].1).expect("remove");
        assert_eq!(problem(dir.path()), ProblemKind::SegmentMissing { number: 2 });
    }

    #[test]
    fn a_forged_seal_is_found() {
        let dir = tempfile::tempdir().expect("dir");
        write_log(dir.path(), 20);
        let (path, mut lines) = segment_lines(dir.path(), 0);
        let seal = lines.last_mut().expect("seal");
        let digest = serde_json::from_str::<serde_json::Value>(seal).expect("json")["seal"]["digest"]
            .as_str()
            .expect("digest")
            .to_owned();
        *seal = seal.replace(&digest, &"0".repeat(64));
        rewrite(&path, &lines);
        assert_eq!(problem(dir.path()), ProblemKind::SealMismatch);
    }

    #[test]
    fn a_line_cut_short_by_a_crash_is_cut_off_on_reopening() {
        let dir = tempfile::tempdir().expect("dir");
        write_log(dir.path(), 5);
        let last = list_segments(dir.path()).expect("segments").len() - 1;
        let (path, _) = segment_lines(dir.path(), last);
        let mut bytes = std::fs::read(&path).expect("read");
        bytes.extend_from_slice(b"{\"seq\":6,\"prev\":\"00");
        std::fs::write(&path, &bytes).expect("write");
        let report = verify(dir.path()).expect("audit");
        assert!(report.intact());
        assert_eq!(report.torn_tail_bytes, 19);
        write_log(dir.path(), 2);
        let report = verify(dir.path()).expect("audit");
        assert!(report.intact(), "{:?}", report.problem);
        assert_eq!((report.records, report.torn_tail_bytes), (7, 0));
    }

    #[test]
    fn retention_removes_old_segments_and_the_rest_still_verifies() {
        let dir = tempfile::tempdir().expect("dir");
        write_log(dir.path(), 30);
        let before = list_segments(dir.path()).expect("segments").len();
        // Zero days: every sealed segment is past retention; the active one always stays.
        let done = super::super::compact::compact(dir.path(), Some(0), false).expect("compact");
        assert_eq!(done.removed_segments.len(), before - 1);
        let report = verify(dir.path()).expect("audit");
        assert!(report.intact(), "{:?}", report.problem);
        assert_eq!(report.retained_from, Some(before as u64));
        // The gateway goes on writing after retention, and the chain still holds.
        write_log(dir.path(), 3);
        let report = verify(dir.path()).expect("audit");
        assert!(report.intact(), "{:?}", report.problem);
        assert_eq!(report.head_seq, Some(33));
    }

    /// Shipping puts each sealed segment and its copy once, at names fixed by replica and
    /// number, and marks it only once the store holds it whole; retention under shipping keeps
    /// every segment not yet marked, and the log still verifies after it.
    #[tokio::test]
    async fn only_shipped_segments_are_removed_and_shipping_twice_ships_nothing_new() {
        let dir = tempfile::tempdir().expect("dir");
        let shared_dir = tempfile::tempdir().expect("shared");
        write_log(dir.path(), 30);
        let segments = list_segments(dir.path()).expect("segments").len();
        // Copies first; retention under shipping removes nothing before anything is shipped.
        let done = super::super::compact::compact(dir.path(), Some(0), true).expect("compact");
        assert!(done.removed_segments.is_empty(), "{done:?}");
        assert_eq!(done.written.len(), segments - 1);

        let url = format!("file://{}", shared_dir.path().display());
        let shared = crate::ship::SharedLog::open(&url).expect("shared store");
        let shipped = shared.ship(dir.path(), "gateway-0").await.expect("ship");
        assert_eq!(shipped.len(), segments - 1, "every sealed segment, not the active one");
        assert!(shared.ship(dir.path(), "gateway-0").await.expect("ship again").is_empty());
        let copies = shared.copies().await.expect("copies");
        assert_eq!(copies.len(), segments - 1);
        assert!(copies.iter().all(|c| c.replica == "gateway-0" && c.url.starts_with("file://")));
        for (number, path) in list_segments(dir.path()).expect("segments").iter().take(segments - 1) {
            let name = path.file_name().expect("name");
            let there = shared_dir.path().join("gateway-0/segments").join(name);
            assert_eq!(
                std::fs::read(there).expect("shipped segment"),
                std::fs::read(path).expect("local"),
                "{number}"
            );
        }
        // One mark taken away: that segment and every later one stay.
        let (second, _) = list_segments(dir.path()).expect("segments")[1].clone();
        std::fs::remove_file(dir.path().join("shipped").join(second.to_string())).expect("unmark");
        let done = super::super::compact::compact(dir.path(), Some(0), true).expect("compact");
        assert_eq!(done.removed_segments.len(), 1, "{done:?}");
        assert!(list_segments(dir.path()).expect("segments").iter().any(|(n, _)| *n == second));
        let report = verify(dir.path()).expect("audit");
        assert!(report.intact(), "{:?}", report.problem);
    }

    fn expecting(retention_days: Option<u32>, head: Option<ExpectedHead>) -> Expectations {
        Expectations { retention_days, head, ..Expectations::default() }
    }

    #[test]
    fn records_cut_off_at_the_end_are_found_against_an_expected_head() {
        let dir = tempfile::tempdir().expect("dir");
        write_log(dir.path(), 30);
        let report = verify(dir.path()).expect("audit");
        let head: ExpectedHead =
            format!("{}:{}", report.head_seq.expect("records"), report.head_hash).parse().expect("head");
        assert!(verify_against(dir.path(), &expecting(None, Some(head.clone()))).expect("audit").intact());
        // The newest one and two segments holding records removed: the chain that is left is
        // whole. (The active segment may hold none yet.)
        for removed in 1..=2 {
            loop {
                let segments = list_segments(dir.path()).expect("segments");
                let holds_records = std::fs::read_to_string(&segments[segments.len() - 1].1)
                    .expect("segment")
                    .lines()
                    .any(|l| l.contains("\"seq\""));
                std::fs::remove_file(&segments[segments.len() - 1].1).expect("remove");
                if holds_records {
                    break;
                }
            }
            let report = verify(dir.path()).expect("audit");
            assert!(report.intact() && report.head_seq < Some(30), "the chain alone cannot tell");
            let report = verify_against(dir.path(), &expecting(None, Some(head.clone()))).expect("audit");
            assert!(
                matches!(
                    report.problem.as_ref().map(|p| &p.kind),
                    Some(ProblemKind::Truncated { expected_seq: 30, .. })
                ),
                "{removed}: {:?}",
                report.problem
            );
        }
        // A head whose record is there but is not the one seen.
        let other = ExpectedHead { seq: 3, hash: "ab".repeat(32) };
        let report = verify_against(dir.path(), &expecting(None, Some(other))).expect("audit");
        assert_eq!(report.problem.map(|p| p.kind), Some(ProblemKind::HeadRewritten { seq: 3 }));
        assert!("3:xyz".parse::<ExpectedHead>().is_err());
        assert!("x:00".parse::<ExpectedHead>().is_err());
    }

    #[test]
    fn segments_removed_as_if_by_retention_are_found_unless_retention_allows_it() {
        // An attacker removes the first segments and writes the anchor retention would have
        // written, with a seal time as old as needed.
        let forge = |sealed_at: Option<chrono::DateTime<chrono::Utc>>| {
            let dir = tempfile::tempdir().expect("dir");
            write_log(dir.path(), 30);
            let segments = list_segments(dir.path()).expect("segments");
            let seal = super::super::compact::seal_of(&segments[1].1).expect("read").expect("sealed");
            for (_, path) in &segments[..2] {
                std::fs::remove_file(path).expect("remove");
            }
            let anchor = super::super::wal::Retained {
                first_segment: 3,
                first_seq: seal.last_seq + 1,
                prev: seal.last_hash,
                removed_sealed_at: sealed_at,
            };
            std::fs::write(dir.path().join("retained.json"), serde_json::to_vec(&anchor).expect("json"))
                .expect("write");
            assert!(verify(dir.path()).expect("audit").intact(), "the chain alone cannot tell");
            dir
        };
        let not_allowed = |dir: &Path, expected: Expectations| {
            let report = verify_against(dir, &expected).expect("audit");
            assert_eq!(
                report.problem.map(|p| p.kind),
                Some(ProblemKind::RetentionNotAllowed { first_segment: 3 }),
                "{expected:?}"
            );
        };
        // No retention configured: nothing may be gone.
        let dir = forge(Some(chrono::Utc::now() - chrono::Duration::days(400)));
        not_allowed(dir.path(), expecting(None, None));
        // Retention of 180 days, but the removed segment was sealed just now.
        let dir = forge(Some(chrono::Utc::now()));
        not_allowed(dir.path(), expecting(Some(180), None));
        // An anchor without a seal time proves nothing.
        let dir = forge(None);
        not_allowed(dir.path(), expecting(Some(180), None));

        // Real retention passes under the retention that made it.
        let dir = tempfile::tempdir().expect("dir");
        write_log(dir.path(), 30);
        super::super::compact::compact(dir.path(), Some(0), false).expect("compact");
        assert!(verify_against(dir.path(), &expecting(Some(0), None)).expect("audit").intact());
        not_allowed_from_any(dir.path());
    }

    /// Retention the configuration does not allow fails however the anchor looks.
    fn not_allowed_from_any(dir: &Path) {
        let report = verify_against(dir, &expecting(None, None)).expect("audit");
        assert!(matches!(report.problem.map(|p| p.kind), Some(ProblemKind::RetentionNotAllowed { .. })));
    }

    #[test]
    fn bytes_after_a_seal_are_found() {
        // After the seal of a segment that is not the last.
        let dir = tempfile::tempdir().expect("dir");
        write_log(dir.path(), 30);
        let (path, _) = segment_lines(dir.path(), 0);
        let mut bytes = std::fs::read(&path).expect("read");
        bytes.extend_from_slice(b"{\"seq\":99");
        std::fs::write(&path, &bytes).expect("write");
        assert_eq!(problem(dir.path()), ProblemKind::TrailingBytes { bytes: 9 });

        // After the seal of the last segment, where a crash could not have left them either.
        let dir = tempfile::tempdir().expect("dir");
        write_log(dir.path(), 30);
        let segments = list_segments(dir.path()).expect("segments");
        let (_, active) = segments.last().expect("segments");
        if super::super::compact::seal_of(active).expect("read").is_none() {
            std::fs::remove_file(active).expect("remove the active segment");
        }
        let (_, last) = list_segments(dir.path()).expect("segments").last().cloned().expect("segments");
        let mut bytes = std::fs::read(&last).expect("read");
        bytes.extend_from_slice(b"tail");
        std::fs::write(&last, &bytes).expect("write");
        assert_eq!(problem(dir.path()), ProblemKind::TrailingBytes { bytes: 4 });
    }
}
