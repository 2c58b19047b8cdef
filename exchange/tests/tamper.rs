//! The exchange log used as a library, with no gateway: records are written, a segment is
//! altered on disk, and the audit finds where.

use std::path::Path;

use tongban_exchange::audit::{self, Expectations, ExpectedHead, ProblemKind};
use tongban_exchange::wal::list_segments;
use tongban_exchange::{ExchangeLog, ExchangeRecord};
use tongban_policy::decision::Operation;

async fn write_calls(log: &ExchangeLog, department: &str, count: u64) {
    for n in 0..count {
        let mut record = ExchangeRecord::begin(Operation::Lookup);
        record.department = Some(department.to_owned());
        record.resources = vec!["R-410000-household".to_owned()];
        record.status = 200;
        record.rows = n;
        log.write(record).await.expect("the log takes the record");
    }
}

/// Rewrites the `nth` line (from 1) of a segment through `edit`, keeping the file's length
/// as a careful forger would.
fn edit_line(path: &Path, nth: usize, edit: impl Fn(&str) -> String) -> std::io::Result<()> {
    let text = std::fs::read_to_string(path)?;
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_owned).collect();
    let changed = edit(&lines[nth - 1]);
    assert_ne!(changed, lines[nth - 1], "the edit changes the line");
    assert_eq!(changed.len(), lines[nth - 1].len(), "the edit keeps the line's length");
    lines[nth - 1] = changed;
    std::fs::write(path, lines.concat())
}

#[tokio::test]
async fn an_intact_log_passes_and_names_its_head() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let log = ExchangeLog::open_in(dir.path()).await?;
    write_calls(&log, "henan-police", 5).await;
    log.seal().await?;
    write_calls(&log, "henan-police", 3).await;

    let report = audit::verify(dir.path())?;
    assert!(report.intact(), "{report:?}");
    assert_eq!(report.records, 8);
    assert_eq!(report.sealed, 1);
    assert_eq!(report.head_seq, Some(8));
    Ok(())
}

#[tokio::test]
async fn a_changed_record_in_a_sealed_segment_is_found() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let log = ExchangeLog::open_in(dir.path()).await?;
    write_calls(&log, "henan-police", 5).await;
    let sealed = log.seal().await?.expect("a segment was sealed");
    write_calls(&log, "henan-police", 2).await;

    let segments = list_segments(dir.path())?;
    let (_, path) =
        segments.iter().find(|(number, _)| *number == sealed).expect("the sealed segment is listed");
    // The third call is made to look like another department's.
    edit_line(path, 3, |line| line.replace("henan-police", "henan-hrss__"))?;

    let report = audit::verify(dir.path())?;
    let problem = report.problem.expect("the audit finds the change");
    assert_eq!(problem.segment, sealed);
    assert!(
        matches!(problem.kind, ProblemKind::Modified { seq: 3 } | ProblemKind::SealMismatch),
        "{problem:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_changed_record_in_the_open_segment_is_found_by_its_successor() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let log = ExchangeLog::open_in(dir.path()).await?;
    write_calls(&log, "henan-police", 4).await;

    let segments = list_segments(dir.path())?;
    let (number, path) = segments.last().expect("a segment is open").clone();
    edit_line(&path, 2, |line| line.replace("\"status\":200", "\"status\":403"))?;

    let report = audit::verify(dir.path())?;
    let problem = report.problem.expect("the audit finds the change");
    assert_eq!(problem.segment, number);
    // The chain breaks at the line after the changed one; the report names the changed record.
    assert_eq!(problem.line, 3);
    assert_eq!(problem.kind, ProblemKind::Modified { seq: 2 });
    Ok(())
}

#[tokio::test]
async fn records_cut_from_the_end_are_found_against_an_earlier_head() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let log = ExchangeLog::open_in(dir.path()).await?;
    write_calls(&log, "henan-police", 6).await;
    let before = audit::verify(dir.path())?;
    let head =
        ExpectedHead { seq: before.head_seq.expect("records were written"), hash: before.head_hash.clone() };
    drop(log);

    // The last two records are removed, leaving a chain that is whole on its own.
    let (_, path) = list_segments(dir.path())?.last().expect("a segment is open").clone();
    let text = std::fs::read_to_string(&path)?;
    let kept: Vec<&str> = text.split_inclusive('\n').collect();
    std::fs::write(&path, kept[..kept.len() - 2].concat())?;

    assert!(audit::verify(dir.path())?.intact(), "alone, a shorter chain is whole");
    let report = audit::verify_against(
        dir.path(),
        &Expectations { retention_days: None, head: Some(head), ..Expectations::default() },
    )?;
    let problem = report.problem.expect("the earlier head shows the cut");
    assert_eq!(problem.kind, ProblemKind::Truncated { expected_seq: 6, head_seq: Some(4) });
    Ok(())
}
