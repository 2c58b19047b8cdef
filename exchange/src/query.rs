//! Operators' questions over the exchange log, answered by DataFusion over the Parquet copies
//! of sealed segments and the records of the active segment.
//!
//! Every query starts from `scoped`: the records of a period, narrowed to one department's
//! calls (made or supplied) unless the asker oversees the platform, and to the filters asked
//! for. Filter values only ever reach DataFusion as literals, never as SQL text.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, IntervalMonthDayNano, TimeUnit};
use datafusion::datasource::MemTable;
use datafusion::functions::unicode::expr_fn::substring;
use datafusion::functions_aggregate::expr_fn::{approx_percentile_cont, count, sum};
use datafusion::logical_expr::{Expr, SortExpr, case, cast, col, lit};
use datafusion::prelude::{DataFrame, ParquetReadOptions, SessionConfig, SessionContext};
use datafusion::scalar::ScalarValue;
use serde::{Deserialize, Serialize};

use super::compact::{self, PARQUET_DIR, SCHEMA};

/// Why a question could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("reading the exchange log: {0}")]
    Read(#[from] compact::CompactError),
    #[error("querying the exchange log: {0}")]
    Query(#[from] datafusion::error::DataFusionError),
    #[error("encoding the answer: {0}")]
    Encode(String),
}

/// Which log a question is asked of: this replica's directory and, when the log is shipped,
/// the shared store of every replica's.
#[derive(Debug, Clone)]
pub struct LogView {
    pub dir: std::path::PathBuf,
    /// This replica's name, whose own shipped copies are read from `dir` while it holds them.
    pub replica: Option<String>,
    pub shared: Option<crate::ship::SharedLog>,
}

impl From<&Path> for LogView {
    fn from(dir: &Path) -> Self {
        LogView { dir: dir.to_owned(), replica: None, shared: None }
    }
}

impl From<&LogView> for LogView {
    fn from(view: &LogView) -> Self {
        view.clone()
    }
}

/// Which records a question is about.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Scope {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Only calls this department made or supplied; `None` for the whole platform.
    pub department: Option<String>,
    pub system: Option<String>,
    pub resource: Option<String>,
    pub operation: Option<String>,
    pub status: Option<u16>,
    pub code: Option<String>,
    pub id: Option<String>,
    /// Only calls made by departments seated in this province, or supplied by them (two-digit
    /// GB/T 2260 code): a data office's view.
    #[serde(default)]
    pub province: Option<String>,
}

/// How records are grouped in statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    None,
    Department,
    Resource,
    Status,
    Operation,
    System,
    /// The service item (事项) the calls named as their purpose.
    ServiceItem,
    /// The gateway replica that served the calls (`exchange_log.replica`).
    Replica,
    /// The calling department's province and the supplying one's (`consumer_province`,
    /// `supplier_province`: two-digit GB/T 2260 codes), for exchanges across provinces.
    ProvincePair,
}

/// The width of the time buckets of statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Bucket {
    Minute,
    Hour,
    /// Days in Beijing time.
    Day,
    /// Calendar months in Beijing time.
    Month,
    /// One bucket for the whole period.
    All,
}

fn timestamp(at: DateTime<Utc>) -> Expr {
    lit(ScalarValue::TimestampMicrosecond(Some(at.timestamp_micros()), Some("UTC".into())))
}

/// A session over the log in `dir`, with the table `exchanges`.
async fn table(ctx: &SessionContext, log: &LogView) -> Result<DataFrame, QueryError> {
    let dir = log.dir.as_path();
    let parquet_dir = dir.join(PARQUET_DIR);
    let has_parquet = std::fs::read_dir(&parquet_dir)
        .map(|entries| {
            entries.filter_map(Result::ok).any(|e| e.path().extension().is_some_and(|x| x == "parquet"))
        })
        .unwrap_or(false);
    let dir_owned = dir.to_owned();
    let tail = tokio::task::spawn_blocking(move || compact::tail(&dir_owned))
        .await
        .map_err(|e| QueryError::Read(compact::CompactError::Io(std::io::Error::other(e))))??;
    let tail: Vec<RecordBatch> = tail;
    let memory = MemTable::try_new(SCHEMA.clone(), vec![tail])?;
    let mut frame = ctx.read_table(Arc::new(memory))?;
    let options = || ParquetReadOptions::default().schema(&SCHEMA).file_extension(".parquet");
    if has_parquet {
        let sealed = ctx.read_parquet(parquet_dir.to_string_lossy().as_ref(), options()).await?;
        frame = sealed.union(frame)?;
    }
    // Every replica's shipped copies, but this replica's own only where this replica no
    // longer holds the segment (removed by retention after it was shipped): what it holds is
    // read above, its newest records among it.
    if let Some(shared) = &log.shared {
        let copies = shared
            .copies()
            .await
            .map_err(|e| QueryError::Read(compact::CompactError::Io(std::io::Error::other(e.to_string()))))?;
        let own = log.replica.as_deref();
        let held = |number: u64| {
            compact::parquet_path(dir, number).exists() || dir.join(super::wal::segment_name(number)).exists()
        };
        let urls: Vec<String> = copies
            .into_iter()
            .filter(|copy| Some(copy.replica.as_str()) != own || !held(copy.number))
            .map(|copy| copy.url)
            .collect();
        if !urls.is_empty() {
            if !shared.base_url().starts_with("file:") {
                let base = url::Url::parse(shared.base_url())
                    .map_err(|e| QueryError::Encode(format!("the shared store's URL: {e}")))?;
                ctx.register_object_store(&base, shared.store());
            }
            let others = ctx.read_parquet(urls, options()).await?;
            frame = others.union(frame)?;
        }
    }
    Ok(frame)
}

fn session() -> SessionContext {
    SessionContext::new_with_config(SessionConfig::new().with_target_partitions(2))
}

/// The records in `scope`, each call once per resource it read (`resource` and `supplier`
/// columns; a call refused before it named a resource has one row with neither).
async fn scoped(ctx: &SessionContext, log: &LogView, scope: &Scope) -> Result<DataFrame, QueryError> {
    let mut frame = table(ctx, log).await?;
    if let Some(from) = scope.from {
        frame = frame.filter(col("started_at").gt_eq(timestamp(from)))?;
    }
    if let Some(to) = scope.to {
        frame = frame.filter(col("started_at").lt(timestamp(to)))?;
    }
    // Unnesting both lists together pairs each resource with its supplier.
    frame = frame
        .unnest_columns_with_options(
            &["resources", "suppliers", "supplier_regions"],
            datafusion::common::UnnestOptions::new().with_preserve_nulls(true),
        )?
        .with_column_renamed("resources", "resource")?
        .with_column_renamed("suppliers", "supplier")?
        .with_column_renamed("supplier_regions", "supplier_region")?;
    if let Some(department) = &scope.department {
        // A department sees the calls it made and the calls on the resources it supplies.
        frame = frame.filter(
            col("department").eq(lit(department.as_str())).or(col("supplier").eq(lit(department.as_str()))),
        )?;
    }
    if let Some(province) = &scope.province {
        let of = |column: &str| substring(col(column), lit(1i64), lit(2i64)).eq(lit(province.as_str()));
        frame = frame.filter(of("region").or(of("supplier_region")))?;
    }
    if let Some(system) = &scope.system {
        frame = frame.filter(col("system").eq(lit(system.as_str())))?;
    }
    if let Some(resource) = &scope.resource {
        frame = frame.filter(col("resource").eq(lit(resource.as_str())))?;
    }
    if let Some(operation) = &scope.operation {
        frame = frame.filter(col("operation").eq(lit(operation.as_str())))?;
    }
    if let Some(status) = scope.status {
        frame = frame.filter(col("status").eq(lit(status)))?;
    }
    if let Some(code) = &scope.code {
        frame = frame.filter(col("code").eq(lit(code.as_str())))?;
    }
    if let Some(id) = &scope.id {
        frame = frame.filter(col("id").eq(lit(id.as_str())))?;
    }
    Ok(frame)
}

/// Rows of `frame` as JSON objects.
async fn to_json(frame: DataFrame) -> Result<Vec<serde_json::Value>, QueryError> {
    let batches = frame.collect().await?;
    let mut writer = arrow::json::ArrayWriter::new(Vec::new());
    for batch in &batches {
        writer.write(batch).map_err(|e| QueryError::Encode(e.to_string()))?;
    }
    writer.finish().map_err(|e| QueryError::Encode(e.to_string()))?;
    let bytes = writer.into_inner();
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&bytes).map_err(|e| QueryError::Encode(e.to_string()))
}

fn percentile_ms(p: f64, name: &str) -> Expr {
    let order: SortExpr = col("duration_us").sort(true, false);
    (approx_percentile_cont(order, lit(p), None) / lit(1000.0)).alias(name)
}

fn share(of: Expr, name: &str) -> Expr {
    sum(case(of).when(lit(true), lit(1i64)).otherwise(lit(0i64)).unwrap_or_else(|_| lit(0i64))).alias(name)
}

/// Calls per time bucket and group: volume, outcomes, cache hit rate and latency percentiles.
pub async fn stats(
    log: impl Into<LogView>,
    scope: &Scope,
    bucket: Bucket,
    by: GroupBy,
) -> Result<Vec<serde_json::Value>, QueryError> {
    let log: LogView = log.into();
    // Retention removes no file while this question reads the log.
    let _reading = compact::READING.read().await;
    let ctx = session();
    let frame = scoped(&ctx, &log, scope).await?;
    let mut group = Vec::new();
    let beijing_midnight = DateTime::UNIX_EPOCH - chrono::Duration::hours(8);
    let bin = |width: IntervalMonthDayNano, origin: DateTime<Utc>| {
        datafusion::functions::datetime::expr_fn::date_bin(
            lit(ScalarValue::IntervalMonthDayNano(Some(width))),
            col("started_at"),
            timestamp(origin),
        )
    };
    let bucketed = match bucket {
        Bucket::Minute => Some(bin(IntervalMonthDayNano::new(0, 0, 60_000_000_000), DateTime::UNIX_EPOCH)),
        Bucket::Hour => Some(bin(IntervalMonthDayNano::new(0, 0, 3_600_000_000_000), DateTime::UNIX_EPOCH)),
        // Days and months begin at midnight in Beijing, as the platform's reports count them.
        Bucket::Day => Some(bin(IntervalMonthDayNano::new(0, 1, 0), beijing_midnight)),
        Bucket::Month => Some(datafusion::functions::datetime::expr_fn::date_trunc(
            lit("month"),
            cast(col("started_at"), DataType::Timestamp(TimeUnit::Microsecond, Some("+08:00".into()))),
        )),
        Bucket::All => None,
    };
    let has_buckets = bucketed.is_some();
    if let Some(bucketed) = bucketed {
        group.push(bucketed.alias("bucket"));
    }
    let keys = group_keys(by);
    for (name, key) in &keys {
        group.push(key.clone().alias(*name));
    }
    let aggregates = vec![
        count(lit(1)).alias("calls"),
        share(col("status").between(lit(200u16), lit(299u16)), "succeeded"),
        share(
            col("status").between(lit(400u16), lit(499u16)).and(col("status").not_eq(lit(429u16))),
            "refused",
        ),
        share(col("status").eq(lit(429u16)), "rate_limited"),
        share(col("status").gt_eq(lit(500u16)), "failed"),
        share(col("cache").eq(lit("hit")), "cache_hits"),
        share(col("cache").is_not_null().and(col("cache").not_eq(lit("bypass"))), "cache_lookups"),
        percentile_ms(0.5, "p50_ms"),
        percentile_ms(0.95, "p95_ms"),
        percentile_ms(0.99, "p99_ms"),
    ];
    let mut sort: Vec<SortExpr> = Vec::new();
    if has_buckets {
        sort.push(col("bucket").sort(true, false));
    }
    for (name, _) in &keys {
        sort.push(col(*name).sort(true, true));
    }
    let frame = frame.aggregate(group, aggregates)?;
    let frame = if sort.is_empty() { frame } else { frame.sort(sort)? };
    to_json(frame).await
}

/// The columns a grouping names, with the expressions that compute them.
fn group_keys(by: GroupBy) -> Vec<(&'static str, Expr)> {
    match by {
        GroupBy::None => vec![],
        GroupBy::Department => vec![("department", col("department"))],
        GroupBy::Resource => vec![("resource", col("resource"))],
        GroupBy::Status => vec![("status", col("status"))],
        GroupBy::Operation => vec![("operation", col("operation"))],
        GroupBy::System => vec![("system", col("system"))],
        GroupBy::Replica => vec![("replica", col("replica"))],
        GroupBy::ServiceItem => vec![("service_item", col("service_item"))],
        GroupBy::ProvincePair => vec![
            ("consumer_province", substring(col("region"), lit(1i64), lit(2i64))),
            ("supplier_province", substring(col("supplier_region"), lit(1i64), lit(2i64))),
        ],
    }
}

/// Refused and failed calls per group of `by` and reason: each of the policy's reasons where
/// the decision gave them (a call refused for several counts once under each), else the
/// problem code (`rate_limited`, `purpose_required`, …). Rows hold the group's columns,
/// `reason` and `calls`.
pub async fn refusal_reasons(
    log: impl Into<LogView>,
    scope: &Scope,
    by: GroupBy,
) -> Result<Vec<serde_json::Value>, QueryError> {
    let log: LogView = log.into();
    // Retention removes no file while this question reads the log.
    let _reading = compact::READING.read().await;
    let ctx = session();
    let refused = scoped(&ctx, &log, scope)
        .await?
        .filter(col("status").gt_eq(lit(400u16)))?
        .unnest_columns_with_options(
            &["reason_codes"],
            datafusion::common::UnnestOptions::new().with_preserve_nulls(true),
        )?;
    let keys = group_keys(by);
    let mut group: Vec<Expr> = keys.iter().map(|(name, key)| key.clone().alias(*name)).collect();
    let reason = datafusion::functions::core::expr_fn::coalesce(vec![col("reason_codes"), col("code")]);
    group.push(reason.alias("reason"));
    let mut sort: Vec<SortExpr> = keys.iter().map(|(name, _)| col(*name).sort(true, true)).collect();
    sort.push(col("calls").sort(false, true));
    sort.push(col("reason").sort(true, true));
    let frame = refused.aggregate(group, vec![count(lit(1)).alias("calls")])?.sort(sort)?;
    to_json(frame).await
}

/// Refused and failed calls by refusal reason (a call refused for several reasons counts once
/// under each) and by problem code.
pub async fn refusals(log: impl Into<LogView>, scope: &Scope) -> Result<serde_json::Value, QueryError> {
    let log: LogView = log.into();
    // Retention removes no file while this question reads the log.
    let _reading = compact::READING.read().await;
    let ctx = session();
    let frame = scoped(&ctx, &log, scope).await?;
    let refused = frame.filter(col("status").gt_eq(lit(400u16)))?;
    let by_reason = refused
        .clone()
        .unnest_columns(&["reason_codes"])?
        .filter(col("reason_codes").is_not_null())?
        .aggregate(vec![col("reason_codes").alias("reason")], vec![count(lit(1)).alias("calls")])?
        .sort(vec![col("calls").sort(false, true), col("reason").sort(true, true)])?;
    let by_code = refused
        .aggregate(vec![col("code"), col("status")], vec![count(lit(1)).alias("calls")])?
        .sort(vec![col("calls").sort(false, true), col("code").sort(true, true)])?;
    Ok(serde_json::json!({
        "by_reason": to_json(by_reason).await?,
        "by_code": to_json(by_code).await?,
    }))
}

/// The systems that called most, with how many of their calls were refused.
pub async fn top_callers(
    log: impl Into<LogView>,
    scope: &Scope,
    limit: usize,
) -> Result<Vec<serde_json::Value>, QueryError> {
    let log: LogView = log.into();
    // Retention removes no file while this question reads the log.
    let _reading = compact::READING.read().await;
    top(log, scope, "system", Some("department"), limit).await
}

/// The resources called most.
pub async fn top_resources(
    log: impl Into<LogView>,
    scope: &Scope,
    limit: usize,
) -> Result<Vec<serde_json::Value>, QueryError> {
    let log: LogView = log.into();
    // Retention removes no file while this question reads the log.
    let _reading = compact::READING.read().await;
    top(log, scope, "resource", None, limit).await
}

/// The `limit` values of `key` with the most calls, with their refused or failed calls and
/// 95th-percentile latency; `also` is a column shown beside `key`.
async fn top(
    log: LogView,
    scope: &Scope,
    key: &str,
    also: Option<&str>,
    limit: usize,
) -> Result<Vec<serde_json::Value>, QueryError> {
    let ctx = session();
    let group: Vec<Expr> = std::iter::once(key).chain(also).map(col).collect();
    let frame = scoped(&ctx, &log, scope)
        .await?
        .filter(col(key).is_not_null())?
        .aggregate(
            group,
            vec![
                count(lit(1)).alias("calls"),
                share(col("status").gt_eq(lit(400u16)), "refused_or_failed"),
                percentile_ms(0.95, "p95_ms"),
            ],
        )?
        .sort(vec![col("calls").sort(false, true), col(key).sort(true, true)])?
        .limit(0, Some(limit))?;
    to_json(frame).await
}

/// Records in `scope`, newest first: the log search. Each call appears once, with all the
/// resources it read.
pub async fn records(
    log: impl Into<LogView>,
    scope: &Scope,
    before_seq: Option<u64>,
    limit: usize,
) -> Result<Vec<serde_json::Value>, QueryError> {
    let log: LogView = log.into();
    // Retention removes no file while this question reads the log.
    let _reading = compact::READING.read().await;
    let ctx = session();
    let ids = scoped(&ctx, &log, scope)
        .await?
        .select_columns(&["id"])?
        .distinct()?
        .with_column_renamed("id", "matched_id")?;
    let mut frame = table(&ctx, &log).await?;
    // Pages go back in time: each starts below the last sequence number the one before showed.
    if let Some(before) = before_seq {
        frame = frame.filter(col("seq").lt(lit(before)))?;
    }
    let frame = frame
        .join(ids, datafusion::common::JoinType::LeftSemi, &["id"], &["matched_id"], None)?
        .sort(vec![col("seq").sort(false, true)])?
        .limit(0, Some(limit))?;
    to_json(frame).await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tongban_policy::decision::{Operation, Reason};

    use super::super::wal::{Wal, WalOptions};
    use super::super::{Durability, ExchangeRecord, LogMetrics};
    use super::*;
    use crate::{CacheOutcome, Limit};

    fn call(system: Option<&str>, resource: Option<&str>, status: u16, ms: i64) -> ExchangeRecord {
        let mut record = ExchangeRecord::begin(Operation::Verify);
        record.system = system.map(str::to_owned);
        record.department = system.map(|s| format!("dept-of-{s}"));
        if let Some(resource) = resource {
            record.resources.push(resource.to_owned());
            record.suppliers.push("supplier-dept".to_owned());
        }
        record.status = status;
        record.finished_at = Some(record.started_at + chrono::Duration::milliseconds(ms));
        record
    }

    /// Eight calls sealed and compacted to Parquet, five more in the active segment.
    fn write_log(dir: &Path) {
        let options = WalOptions {
            durability: Durability::Write,
            segment_max_bytes: 1 << 20,
            segment_max_age: Duration::from_secs(3600),
        };
        let mut wal = Wal::open(dir, options, LogMetrics::new()).expect("open");
        let mut sealed = Vec::new();
        for i in 0..6 {
            let mut record = call(Some("s1"), Some("R1"), 200, 10 * (i + 1));
            record.cache = Some(if i < 4 { CacheOutcome::Hit } else { CacheOutcome::Miss });
            sealed.push(record);
        }
        for _ in 0..2 {
            let mut record = call(Some("s2"), Some("R2"), 403, 1);
            record.code = Some("access_denied");
            record.reasons = vec![Reason::NoGrant, Reason::WrongSystem];
            sealed.push(record);
        }
        wal.append_records(&sealed).expect("append");
        assert_eq!(wal.seal_if_older(Duration::ZERO).expect("seal"), Some(1));
        let written = compact::compact(dir, None, false).expect("compact").written;
        assert_eq!(written.len(), 1);

        let mut unauthenticated = call(None, None, 401, 1);
        unauthenticated.code = Some("unauthenticated");
        let mut tail = vec![unauthenticated];
        for _ in 0..3 {
            let mut record = call(Some("s1"), Some("R1"), 429, 1);
            record.code = Some("rate_limited");
            record.rate_limit = Some(Limit::Grant);
            tail.push(record);
        }
        tail.push(call(Some("s1"), Some("R1"), 502, 100));
        wal.append_records(&tail).expect("append");
    }

    #[tokio::test]
    async fn statistics_cover_parquet_copies_and_the_active_segment() {
        let dir = tempfile::tempdir().expect("dir");
        write_log(dir.path());
        let all = stats(dir.path(), &Scope::default(), Bucket::All, GroupBy::None).await.expect("stats");
        assert_eq!(all.len(), 1, "{all:?}");
        let row = &all[0];
        assert_eq!(row["calls"], 13, "{row}");
        assert_eq!((row["succeeded"].as_i64(), row["refused"].as_i64()), (Some(6), Some(3)), "{row}");
        assert_eq!((row["rate_limited"].as_i64(), row["failed"].as_i64()), (Some(3), Some(1)), "{row}");
        assert_eq!((row["cache_hits"].as_i64(), row["cache_lookups"].as_i64()), (Some(4), Some(6)), "{row}");
        assert!(row["p99_ms"].as_f64().is_some_and(|p| p >= 60.0), "{row}");

        let by_resource =
            stats(dir.path(), &Scope::default(), Bucket::Hour, GroupBy::Resource).await.expect("stats");
        let calls_of = |resource: serde_json::Value| {
            by_resource
                .iter()
                .find(|r| r.get("resource").cloned().unwrap_or_default() == resource)
                .map(|r| r["calls"].clone())
        };
        assert_eq!(calls_of("R1".into()), Some(10.into()), "{by_resource:?}");
        assert_eq!(calls_of("R2".into()), Some(2.into()), "{by_resource:?}");
        // The call refused before it named a resource is still counted.
        assert_eq!(calls_of(serde_json::Value::Null), Some(1.into()), "{by_resource:?}");
    }

    /// Statistics per service item, per province pair and per Beijing month agree with counts
    /// taken from the calls as they were written.
    #[tokio::test]
    async fn statistics_per_service_item_province_pair_and_month_match_the_calls() {
        use std::collections::BTreeMap;
        let dir = tempfile::tempdir().expect("dir");
        let options = WalOptions {
            durability: Durability::Write,
            segment_max_bytes: 1 << 20,
            segment_max_age: Duration::from_secs(3600),
        };
        let mut wal = Wal::open(dir.path(), options, LogMetrics::new()).expect("open");
        let items = ["KSTB-GA-001", "KSTB-RS-004", "KSTB-GJJ-002"];
        let regions = ["440106", "410102", "340104", "320102", "510104"];
        // 2026-11-30 20:00 UTC is 1 December 04:00 in Beijing: the last calls fall in December.
        let start = "2026-11-30T10:00:00Z".parse::<DateTime<Utc>>().expect("time");
        let (mut per_item, mut per_pair, mut per_month) = (
            BTreeMap::<&str, i64>::new(),
            BTreeMap::<(String, String), i64>::new(),
            BTreeMap::<u32, i64>::new(),
        );
        let mut records = Vec::new();
        for i in 0..97usize {
            let mut record = call(Some("s1"), Some("R1"), if i % 7 == 0 { 403 } else { 200 }, 5);
            let item = items[i % items.len()];
            let (consumer, supplier) = (regions[i % regions.len()], regions[(i / 3) % regions.len()]);
            record.service_item = Some(item.to_owned());
            record.region = Some(consumer.to_owned());
            record.supplier_regions = vec![supplier.to_owned()];
            record.started_at = start + chrono::Duration::minutes(10 * i as i64);
            record.finished_at = Some(record.started_at + chrono::Duration::milliseconds(5));
            *per_item.entry(item).or_default() += 1;
            *per_pair.entry((consumer[..2].to_owned(), supplier[..2].to_owned())).or_default() += 1;
            let beijing = record.started_at.with_timezone(&tongban_policy::time::beijing());
            *per_month.entry(chrono::Datelike::month(&beijing)).or_default() += 1;
            records.push(record);
        }
        // Half sealed and compacted to Parquet, half in the active segment.
        wal.append_records(&records[..50]).expect("append");
        wal.seal_if_older(Duration::ZERO).expect("seal");
        compact::compact(dir.path(), None, false).expect("compact");
        wal.append_records(&records[50..]).expect("append");

        let rows =
            stats(dir.path(), &Scope::default(), Bucket::All, GroupBy::ServiceItem).await.expect("stats");
        let got: BTreeMap<&str, i64> = rows
            .iter()
            .map(|r| (r["service_item"].as_str().unwrap_or_default(), r["calls"].as_i64().unwrap_or(0)))
            .collect();
        assert_eq!(got, per_item, "{rows:?}");

        let rows =
            stats(dir.path(), &Scope::default(), Bucket::All, GroupBy::ProvincePair).await.expect("stats");
        let got: BTreeMap<(String, String), i64> = rows
            .iter()
            .map(|r| {
                let province = |key: &str| r[key].as_str().unwrap_or_default().to_owned();
                (
                    (province("consumer_province"), province("supplier_province")),
                    r["calls"].as_i64().unwrap_or(0),
                )
            })
            .collect();
        assert_eq!(got, per_pair, "{rows:?}");

        let rows = stats(dir.path(), &Scope::default(), Bucket::Month, GroupBy::None).await.expect("stats");
        let got: Vec<(String, i64)> = rows
            .iter()
            .map(|r| (r["bucket"].as_str().unwrap_or_default().to_owned(), r["calls"].as_i64().unwrap_or(0)))
            .collect();
        assert_eq!(got.len(), 2, "November and December in Beijing: {rows:?}");
        assert!(
            got[0].0.starts_with("2026-11-01T00:00:00") && got[1].0.starts_with("2026-12-01T00:00:00"),
            "{got:?}"
        );
        assert_eq!((got[0].1, got[1].1), (per_month[&11], per_month[&12]), "{got:?}");
    }

    #[tokio::test]
    async fn refusals_callers_and_search_answer_from_the_log() {
        let dir = tempfile::tempdir().expect("dir");
        write_log(dir.path());
        let refused = refusals(dir.path(), &Scope::default()).await.expect("refusals");
        let reasons: Vec<(String, i64)> = refused["by_reason"]
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| (r["reason"].as_str().unwrap_or_default().to_owned(), r["calls"].as_i64().unwrap_or(0)))
            .collect();
        assert_eq!(reasons, vec![("no_grant".to_owned(), 2), ("wrong_system".to_owned(), 2)]);
        let codes = refused["by_code"].as_array().expect("rows");
        assert_eq!(codes[0]["code"], "rate_limited");
        assert_eq!(codes[0]["calls"], 3);

        let callers = top_callers(dir.path(), &Scope::default(), 1).await.expect("callers");
        assert_eq!(callers.len(), 1);
        assert_eq!((callers[0]["system"].as_str(), callers[0]["calls"].as_i64()), (Some("s1"), Some(10)));
        assert_eq!(callers[0]["refused_or_failed"], 4);

        // A department sees its own calls and those on resources it supplies, nothing else.
        let own = Scope { department: Some("dept-of-s2".into()), ..Scope::default() };
        let found = records(dir.path(), &own, None, 100).await.expect("records");
        assert_eq!(found.len(), 2);
        assert!(found.iter().all(|r| r["system"] == "s2"));
        let supplier = Scope { department: Some("supplier-dept".into()), ..Scope::default() };
        assert_eq!(records(dir.path(), &supplier, None, 100).await.expect("records").len(), 12);
        let newest = records(dir.path(), &Scope { status: Some(502), ..Scope::default() }, None, 5)
            .await
            .expect("records");
        assert_eq!((newest.len(), newest[0]["seq"].as_u64()), (1, Some(13)));
        assert_eq!(newest[0]["resources"], serde_json::json!(["R1"]));

        // Paged back in time, over the compacted and the active segments alike: every record
        // once, newest first.
        let mut seen = Vec::new();
        let mut before = None;
        loop {
            let page = records(dir.path(), &Scope::default(), before, 5).await.expect("page");
            seen.extend(page.iter().filter_map(|r| r["seq"].as_u64()));
            if page.len() < 5 {
                break;
            }
            before = page.last().and_then(|r| r["seq"].as_u64());
        }
        assert_eq!(seen, (1..=13).rev().collect::<Vec<u64>>());
    }
}
