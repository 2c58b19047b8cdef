//! Sealed segments become Parquet files for operators' queries, and old ones are removed when
//! a retention period is configured.
//!
//! The segments stay the evidence: Parquet is a derived, columnar copy that DataFusion reads
//! quickly, rebuilt from a segment whenever it is missing. Retention removes a segment and
//! its Parquet file together and records where the remaining chain starts in `retained.json`,
//! so the audit can still check everything that is kept.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, ListArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::wal::{self, Link, RETAINED_FILE, Retained};

/// The directory of the marks of segments a shared store has confirmed (`crate::ship`), one
/// empty file per segment number: retention under shipping removes only marked segments.
pub const SHIPPED_DIR: &str = "shipped";

/// Whether segment `number` of the log in `dir` was confirmed by the shared store.
pub fn is_shipped(dir: &Path, number: u64) -> bool {
    dir.join(SHIPPED_DIR).join(number.to_string()).exists()
}

/// Held (shared) by every operators' question while it reads the log's files, and taken
/// (exclusively) by retention while it removes them, so that a question never lists a file
/// that retention then removes under it.
pub static READING: LazyLock<tokio::sync::RwLock<()>> = LazyLock::new(|| tokio::sync::RwLock::new(()));

/// The directory of Parquet copies inside the log's directory.
pub const PARQUET_DIR: &str = "parquet";

fn list_of(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", item, true)))
}

fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The columns of an exchange record as JSON decodes them.
static RECORD_FIELDS: LazyLock<Vec<Field>> = LazyLock::new(|| {
    let phases: Fields = ["authenticate", "resolve_grant", "rate_limit", "cache", "execute", "mask", "log"]
        .into_iter()
        .map(|phase| Field::new(phase, DataType::UInt64, true))
        .collect();
    vec![
        Field::new("seq", DataType::UInt64, false),
        Field::new("id", DataType::Utf8, false),
        Field::new("trace_id", DataType::Utf8, true),
        Field::new("started_at", timestamp(), false),
        Field::new("finished_at", timestamp(), true),
        Field::new("operation", DataType::Utf8, false),
        Field::new("system", DataType::Utf8, true),
        Field::new("department", DataType::Utf8, true),
        Field::new("region", DataType::Utf8, true),
        Field::new("resources", list_of(DataType::Utf8), true),
        Field::new("resource_versions", list_of(DataType::UInt32), true),
        Field::new("suppliers", list_of(DataType::Utf8), true),
        Field::new("supplier_regions", list_of(DataType::Utf8), true),
        Field::new("grants", list_of(DataType::Utf8), true),
        Field::new("grant_versions", list_of(DataType::UInt32), true),
        Field::new("service_item", DataType::Utf8, true),
        Field::new("case_digest", DataType::Utf8, true),
        Field::new("operator_digest", DataType::Utf8, true),
        Field::new("key_digest", DataType::Utf8, true),
        Field::new("items", list_of(DataType::Utf8), true),
        Field::new("rows", DataType::UInt64, true),
        Field::new("bytes_in", DataType::UInt64, true),
        Field::new("bytes_out", DataType::UInt64, true),
        Field::new("status", DataType::UInt16, false),
        Field::new("code", DataType::Utf8, true),
        Field::new(
            "reasons",
            list_of(DataType::Struct(Fields::from(vec![Field::new("code", DataType::Utf8, true)]))),
            true,
        ),
        Field::new("rate_limit", DataType::Utf8, true),
        Field::new("cache", DataType::Utf8, true),
        Field::new("phases", DataType::Struct(phases), true),
        Field::new("upstream_status", DataType::UInt16, true),
        Field::new("upstream_attempts", DataType::UInt32, true),
        Field::new("upstream_us", DataType::UInt64, true),
        Field::new("peer", DataType::Utf8, true),
        Field::new("source", DataType::Utf8, true),
        Field::new("peer_exchange_id", DataType::Utf8, true),
        Field::new("request_digest", DataType::Utf8, true),
        Field::new("response_digest", DataType::Utf8, true),
        Field::new("request_signature", DataType::Utf8, true),
        Field::new("peer_receipt", DataType::Utf8, true),
        Field::new("replica", DataType::Utf8, true),
    ]
});

/// The schema of the queryable log: the record's columns, with each refusal reason reduced
/// to its code and the call's duration worked out.
pub static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields: Vec<Field> = RECORD_FIELDS.iter().filter(|f| f.name() != "reasons").cloned().collect();
    fields.push(Field::new("reason_codes", list_of(DataType::Utf8), true));
    fields.push(Field::new("duration_us", DataType::Int64, true));
    Arc::new(Schema::new(fields))
});

/// Why a segment could not be decoded or compacted.
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    #[error("reading or writing the log's files: {0}")]
    Io(#[from] std::io::Error),
    #[error("decoding records: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("writing Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("writing the retention anchor: {0}")]
    Json(#[from] serde_json::Error),
}

/// Decodes the record lines `reader` yields, handing each batch of up to 8,192 records on as
/// it fills, so a segment is never held whole. Seals and signed heads are skipped, and so is a last line
/// without its newline (one being written).
pub fn decode_stream(
    mut reader: impl std::io::BufRead,
    mut each: impl FnMut(RecordBatch) -> Result<(), CompactError>,
) -> Result<(), CompactError> {
    const BATCH: usize = 8192;
    let json_schema = Arc::new(Schema::new(RECORD_FIELDS.clone()));
    let mut decoder = arrow::json::ReaderBuilder::new(json_schema).with_batch_size(BATCH).build_decoder()?;
    let mut line = Vec::with_capacity(4096);
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 || !line.ends_with(b"\n") {
            break;
        }
        if line.len() <= 1 || line.starts_with(b"{\"seal\"") || line.starts_with(b"{\"head\"") {
            continue;
        }
        decoder.decode(&line)?;
        if decoder.len() >= BATCH
            && let Some(batch) = decoder.flush()?
        {
            each(finish(&batch)?)?;
        }
    }
    if let Some(batch) = decoder.flush()? {
        each(finish(&batch)?)?;
    }
    Ok(())
}

/// Turns a decoded batch into the queryable schema.
fn finish(batch: &RecordBatch) -> Result<RecordBatch, arrow::error::ArrowError> {
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(SCHEMA.fields().len());
    for field in SCHEMA.fields() {
        match field.name().as_str() {
            "reason_codes" => {
                let reasons = batch.column_by_name("reasons").map(|c| c.as_list::<i32>().clone());
                let Some(reasons) = reasons else {
                    return Err(arrow::error::ArrowError::SchemaError("no reasons column".into()));
                };
                let codes = reasons.values().as_struct().column(0).clone();
                let item = Arc::new(Field::new("item", DataType::Utf8, true));
                columns.push(Arc::new(ListArray::try_new(
                    item,
                    reasons.offsets().clone(),
                    codes,
                    reasons.nulls().cloned(),
                )?));
            }
            "duration_us" => {
                let started = batch
                    .column_by_name("started_at")
                    .map(|c| c.as_primitive::<arrow::datatypes::TimestampMicrosecondType>().clone());
                let finished = batch
                    .column_by_name("finished_at")
                    .map(|c| c.as_primitive::<arrow::datatypes::TimestampMicrosecondType>().clone());
                let (Some(started), Some(finished)) = (started, finished) else {
                    return Err(arrow::error::ArrowError::SchemaError("no timestamps".into()));
                };
                let durations: Int64Array =
                    started.iter().zip(finished.iter()).map(|(s, f)| Some(f? - s?)).collect();
                columns.push(Arc::new(durations));
            }
            // A call refused before it named a resource has none: kept as a null list, so
            // that unnesting keeps the call as one row instead of dropping it.
            "resources" | "suppliers" => {
                let Some(list) = batch.column_by_name(field.name()).map(|c| c.as_list::<i32>().clone())
                else {
                    return Err(arrow::error::ArrowError::SchemaError(format!("no column {}", field.name())));
                };
                let present: arrow::buffer::NullBuffer =
                    list.offsets().windows(2).map(|w| w[1] > w[0]).collect::<Vec<bool>>().into();
                let (item, offsets, values, _) = list.into_parts();
                columns.push(Arc::new(ListArray::try_new(item, offsets, values, Some(present))?));
            }
            name => match batch.column_by_name(name) {
                Some(column) => columns.push(column.clone()),
                None => return Err(arrow::error::ArrowError::SchemaError(format!("no column {name}"))),
            },
        }
    }
    RecordBatch::try_new(SCHEMA.clone(), columns)
}

/// The seal of a segment, if it has one. Only the end of the file is read: a seal line is
/// far shorter than 16 KiB, and segments are tens of megabytes.
pub fn seal_of(path: &Path) -> std::io::Result<Option<wal::Seal>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(16 * 1024)))?;
    let mut bytes = Vec::with_capacity(16 * 1024);
    file.read_to_end(&mut bytes)?;
    Ok(bytes
        .split(|b| *b == b'\n')
        .rfind(|l| !l.is_empty())
        .and_then(|line| serde_json::from_slice::<Link>(line).ok())
        .and_then(|link| link.seal))
}

/// What one compaction pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Compacted {
    pub written: Vec<PathBuf>,
    pub removed_segments: Vec<u64>,
}

/// Writes a Parquet copy of every sealed segment that lacks one, then removes segments (and
/// their copies) sealed more than `retention_days` ago; when `shipped_only`, only those the
/// shared store has confirmed (`crate::ship`), so that no record exists nowhere.
pub fn compact(
    dir: &Path,
    retention_days: Option<u32>,
    shipped_only: bool,
) -> Result<Compacted, CompactError> {
    let parquet_dir = dir.join(PARQUET_DIR);
    std::fs::create_dir_all(&parquet_dir)?;
    let mut done = Compacted::default();
    let segments = wal::list_segments(dir)?;
    for (number, path) in &segments {
        let target = parquet_path(dir, *number);
        if target.exists() {
            continue;
        }
        let Some(_) = seal_of(path)? else { continue };
        let partial = target.with_extension("parquet.partial");
        let file = std::fs::File::create(&partial)?;
        let properties =
            WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::try_new(1)?)).build();
        let mut writer = ArrowWriter::try_new(file, SCHEMA.clone(), Some(properties))?;
        let segment = BufReader::with_capacity(1 << 20, std::fs::File::open(path)?);
        decode_stream(segment, |batch| Ok(writer.write(&batch)?))?;
        writer.into_inner()?.sync_all()?;
        std::fs::rename(&partial, &target)?;
        done.written.push(target);
    }
    if let Some(days) = retention_days {
        let cutoff = chrono::Utc::now() - chrono::Duration::days(i64::from(days));
        // Only a prefix of sealed segments can go: the chain must stay whole after it.
        let mut anchor = None;
        for (number, path) in segments.iter().take(segments.len().saturating_sub(1)) {
            if shipped_only && !is_shipped(dir, *number) {
                break;
            }
            match seal_of(path)? {
                Some(seal) if seal.sealed_at < cutoff => {
                    anchor = Some((*number, seal));
                }
                _ => break,
            }
        }
        if let Some((last_removed, seal)) = anchor {
            let retained = Retained {
                first_segment: last_removed + 1,
                first_seq: seal.last_seq + 1,
                prev: seal.last_hash.clone(),
                removed_sealed_at: Some(seal.sealed_at),
            };
            // Questions being answered finish first; new ones wait the moment this takes.
            let _removing = loop {
                match READING.try_write() {
                    Ok(guard) => break guard,
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
                }
            };
            // The anchor is written before anything is removed, so a crash between leaves
            // extra segments, never a chain without its start.
            let partial = dir.join("retained.json.partial");
            std::fs::write(&partial, serde_json::to_vec_pretty(&retained)?)?;
            std::fs::File::open(&partial)?.sync_all()?;
            std::fs::rename(&partial, dir.join(RETAINED_FILE))?;
            for (number, path) in segments.iter().filter(|(n, _)| *n <= last_removed) {
                std::fs::remove_file(path)?;
                let copy = parquet_path(dir, *number);
                if copy.exists() {
                    std::fs::remove_file(copy)?;
                }
                done.removed_segments.push(*number);
            }
            std::fs::File::open(dir)?.sync_all()?;
        }
    }
    Ok(done)
}

pub fn parquet_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(PARQUET_DIR).join(format!("{number:012}.parquet"))
}

/// The records of the active (unsealed) segments, decoded: what queries add to the Parquet
/// copies so they see calls made a moment ago.
pub fn tail(dir: &Path) -> Result<Vec<RecordBatch>, CompactError> {
    let mut batches = Vec::new();
    for (number, path) in wal::list_segments(dir)? {
        if parquet_path(dir, number).exists() {
            continue;
        }
        // A line being written right now is left for the next query.
        let segment = BufReader::with_capacity(1 << 20, std::fs::File::open(&path)?);
        decode_stream(segment, |batch| {
            batches.push(batch);
            Ok(())
        })?;
    }
    Ok(batches.into_iter().filter(|b| b.num_rows() > 0).collect())
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, StringArray};

    use super::*;
    use crate::ExchangeRecord;

    /// Every member a record is written with is a column of its Parquet copy: operators'
    /// queries read the copies, and a member left out would be lost to them.
    #[test]
    fn every_member_of_a_record_is_a_column() {
        let written = serde_json::to_value(ExchangeRecord::with_every_member()).expect("json");
        let members = written.as_object().expect("an object");
        let columns: Vec<&str> = RECORD_FIELDS.iter().map(|f| f.name().as_str()).collect();
        let missing: Vec<&String> = members.keys().filter(|m| !columns.contains(&m.as_str())).collect();
        assert!(missing.is_empty(), "members without a column: {missing:?}");
    }

    /// The evidence members come through decoding as written.
    #[test]
    fn the_evidence_members_are_decoded() {
        let record = ExchangeRecord::with_every_member();
        let mut line = br#"{"seq":1,"prev":"00","#.to_vec();
        line.extend_from_slice(&serde_json::to_vec(&record).expect("json")[1..]);
        line.push(b'\n');
        let mut batches = Vec::new();
        decode_stream(line.as_slice(), |batch| {
            batches.push(batch);
            Ok(())
        })
        .expect("decoded");
        let batch = &batches[0];
        for (column, value) in [
            ("request_digest", record.request_digest.as_deref()),
            ("response_digest", record.response_digest.as_deref()),
            ("request_signature", record.request_signature.as_deref()),
            ("peer_receipt", record.peer_receipt.as_deref()),
            ("source", record.source.as_deref()),
        ] {
            let array = batch.column_by_name(column).expect(column);
            let strings = array.as_any().downcast_ref::<StringArray>().expect("strings");
            assert_eq!(strings.value(0), value.expect("set"), "{column}");
        }
        let versions =
            batch.column_by_name("grant_versions").expect("grant_versions").as_list::<i32>().value(0);
        assert_eq!(versions.len(), 1);
    }
}
