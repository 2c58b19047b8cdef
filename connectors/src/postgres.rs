//! PostgreSQL tables as DataFusion table providers.
//!
//! Projection, filters and limits are pushed into the SQL sent to the server. A filter is
//! reported to DataFusion as `Exact` only when its translation means the same thing in
//! PostgreSQL as in DataFusion: text ordering uses the `C` collation (byte order, as Arrow
//! compares), and parameters carry explicit types. Anything else stays in DataFusion.

use std::fmt;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder, Float64Builder, Int16Builder,
    Int32Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::TableType;
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::expr::InList;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use futures::TryStreamExt;
use sqlx::postgres::{PgArguments, PgPool, PgRow};
use sqlx::{Postgres, Row};

use crate::error::{ConnectorError, Result};
use crate::lookup::{KeyLookup, LookupOutcome, LookupStats};

/// Rows per Arrow batch when streaming a query's result.
const BATCH_ROWS: usize = 8192;

/// Days from 0001-01-01 (chrono's day 1) to 1970-01-01, where Arrow's `Date32` counts from.
const UNIX_EPOCH_DAYS_FROM_CE: i32 = 719_163;

/// How a PostgreSQL column is fetched and which Arrow type it becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PgKind {
    Text,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    Bool,
    Date,
    Timestamp,
    TimestampTz,
    /// `numeric(p, s)`, fetched as text and parsed exactly.
    Numeric {
        precision: u8,
        scale: i8,
    },
}

impl PgKind {
    fn from_information_schema(
        data_type: &str,
        precision: Option<i32>,
        scale: Option<i32>,
    ) -> Option<PgKind> {
        Some(match data_type {
            "text" | "character varying" | "character" => PgKind::Text,
            "smallint" => PgKind::Int16,
            "integer" => PgKind::Int32,
            "bigint" => PgKind::Int64,
            "real" => PgKind::Float32,
            "double precision" => PgKind::Float64,
            "boolean" => PgKind::Bool,
            "date" => PgKind::Date,
            "timestamp without time zone" => PgKind::Timestamp,
            "timestamp with time zone" => PgKind::TimestampTz,
            "numeric" => match (precision, scale) {
                (Some(p @ 1..=38), Some(s @ 0..=38)) => {
                    PgKind::Numeric { precision: p as u8, scale: s as i8 }
                }
                // An unconstrained numeric can exceed any Decimal128; it is served as text.
                _ => PgKind::Text,
            },
            _ => return None,
        })
    }

    fn arrow_type(self) -> DataType {
        match self {
            PgKind::Text => DataType::Utf8,
            PgKind::Int16 => DataType::Int16,
            PgKind::Int32 => DataType::Int32,
            PgKind::Int64 => DataType::Int64,
            PgKind::Float32 => DataType::Float32,
            PgKind::Float64 => DataType::Float64,
            PgKind::Bool => DataType::Boolean,
            PgKind::Date => DataType::Date32,
            PgKind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            PgKind::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            PgKind::Numeric { precision, scale } => DataType::Decimal128(precision, scale),
        }
    }
}

#[derive(Debug, Clone)]
struct PgColumn {
    name: String,
    kind: PgKind,
}

impl PgColumn {
    /// The select-list expression: numerics travel as text so no precision is lost.
    fn select_expr(&self) -> String {
        match self.kind {
            PgKind::Numeric { .. } => format!("{}::text", quote_ident(&self.name)),
            _ => quote_ident(&self.name),
        }
    }
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A query parameter with the PostgreSQL type it is sent as.
#[derive(Debug, Clone, PartialEq)]
enum SqlParam {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Date(NaiveDate),
    Numeric(String),
}

impl SqlParam {
    /// The parameter for `literal` compared against a column of `kind`, if the comparison
    /// means the same in both engines.
    fn for_column(kind: PgKind, literal: &ScalarValue) -> Option<SqlParam> {
        use ScalarValue as S;
        Some(match (kind, literal) {
            (PgKind::Text, S::Utf8(Some(s)) | S::LargeUtf8(Some(s)) | S::Utf8View(Some(s))) => {
                SqlParam::Text(s.clone())
            }
            (PgKind::Int16 | PgKind::Int32 | PgKind::Int64, v) => SqlParam::Int(match v {
                S::Int8(Some(i)) => i64::from(*i),
                S::Int16(Some(i)) => i64::from(*i),
                S::Int32(Some(i)) => i64::from(*i),
                S::Int64(Some(i)) => *i,
                S::UInt8(Some(i)) => i64::from(*i),
                S::UInt16(Some(i)) => i64::from(*i),
                S::UInt32(Some(i)) => i64::from(*i),
                _ => return None,
            }),
            (PgKind::Float32 | PgKind::Float64, S::Float64(Some(f))) => SqlParam::Float(*f),
            (PgKind::Float32 | PgKind::Float64, S::Float32(Some(f))) => SqlParam::Float(f64::from(*f)),
            (PgKind::Bool, S::Boolean(Some(b))) => SqlParam::Bool(*b),
            (PgKind::Date, S::Date32(Some(days))) => {
                SqlParam::Date(NaiveDate::from_num_days_from_ce_opt(UNIX_EPOCH_DAYS_FROM_CE + *days)?)
            }
            (PgKind::Numeric { .. }, S::Decimal128(Some(v), _, s)) => {
                SqlParam::Numeric(decimal_to_string(*v, *s))
            }
            _ => return None,
        })
    }

    fn placeholder(&self, n: usize) -> String {
        let cast = match self {
            SqlParam::Text(_) => "text",
            SqlParam::Int(_) => "int8",
            SqlParam::Float(_) => "float8",
            SqlParam::Bool(_) => "bool",
            SqlParam::Date(_) => "date",
            SqlParam::Numeric(_) => "numeric",
        };
        format!("${n}::{cast}")
    }

    fn bind<'q>(
        &self,
        query: sqlx::query::Query<'q, Postgres, PgArguments>,
    ) -> sqlx::query::Query<'q, Postgres, PgArguments> {
        match self.clone() {
            SqlParam::Text(s) | SqlParam::Numeric(s) => query.bind(s),
            SqlParam::Int(i) => query.bind(i),
            SqlParam::Float(f) => query.bind(f),
            SqlParam::Bool(b) => query.bind(b),
            SqlParam::Date(d) => query.bind(d),
        }
    }
}

fn decimal_to_string(value: i128, scale: i8) -> String {
    if scale <= 0 {
        return format!("{value}{}", "0".repeat((-scale) as usize));
    }
    let digits = value.unsigned_abs().to_string();
    let scale = scale as usize;
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{}{int}.{frac}", if value < 0 { "-" } else { "" })
}

fn parse_decimal(text: &str, scale: i8) -> Option<i128> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let scale = scale.max(0) as usize;
    if frac.len() > scale {
        return None;
    }
    let joined = format!("{int}{frac:0<scale$}");
    let value: i128 = joined.parse().ok()?;
    Some(if negative { -value } else { value })
}

/// Translates a DataFusion filter into a PostgreSQL condition, or `None` when it cannot be
/// translated exactly.
fn translate(expr: &Expr, columns: &[PgColumn], params: &mut Vec<SqlParam>) -> Option<String> {
    let column = |e: &Expr| match e {
        Expr::Column(c) => columns.iter().find(|pc| pc.name == c.name),
        _ => None,
    };
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op: op @ (Operator::And | Operator::Or), right }) => {
            let l = translate(left, columns, params)?;
            let r = translate(right, columns, params)?;
            Some(format!("({l} {} {r})", if *op == Operator::And { "AND" } else { "OR" }))
        }
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (col, literal, op) = match (left.as_ref(), right.as_ref()) {
                (l, Expr::Literal(v, _)) => (column(l)?, v, *op),
                (Expr::Literal(v, _), r) => (column(r)?, v, op.swap()?),
                _ => return None,
            };
            let sql_op = match op {
                Operator::Eq => "=",
                Operator::NotEq => "<>",
                Operator::Lt => "<",
                Operator::LtEq => "<=",
                Operator::Gt => ">",
                Operator::GtEq => ">=",
                _ => return None,
            };
            let param = SqlParam::for_column(col.kind, literal)?;
            params.push(param);
            let placeholder = params.last().expect("pushed").placeholder(params.len());
            let collate = if col.kind == PgKind::Text && !matches!(op, Operator::Eq | Operator::NotEq) {
                " COLLATE \"C\""
            } else {
                ""
            };
            Some(format!("{}{collate} {sql_op} {placeholder}", quote_ident(&col.name)))
        }
        Expr::IsNull(inner) => Some(format!("{} IS NULL", quote_ident(&column(inner)?.name))),
        Expr::IsNotNull(inner) => Some(format!("{} IS NOT NULL", quote_ident(&column(inner)?.name))),
        Expr::Not(inner) => Some(format!("(NOT {})", translate(inner, columns, params)?)),
        Expr::InList(InList { expr, list, negated }) => {
            let col = column(expr)?;
            let mut placeholders = Vec::with_capacity(list.len());
            for item in list {
                let Expr::Literal(v, _) = item else { return None };
                params.push(SqlParam::for_column(col.kind, v)?);
                placeholders.push(params.last().expect("pushed").placeholder(params.len()));
            }
            if placeholders.is_empty() {
                return None;
            }
            let not = if *negated { "NOT " } else { "" };
            Some(format!("{} {not}IN ({})", quote_ident(&col.name), placeholders.join(", ")))
        }
        _ => None,
    }
}

/// A PostgreSQL table exposed to DataFusion and to key look-ups.
#[derive(Clone)]
pub struct PostgresSource {
    pool: PgPool,
    qualified_table: String,
    columns: Arc<Vec<PgColumn>>,
    schema: SchemaRef,
    key_field: usize,
}

impl fmt::Debug for PostgresSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresSource").field("table", &self.qualified_table).finish_non_exhaustive()
    }
}

impl PostgresSource {
    /// Reads the table's columns from `information_schema` and maps them to Arrow types.
    pub async fn open(
        dataset: &str,
        pool: PgPool,
        schema: &str,
        table: &str,
        key_column: &str,
    ) -> Result<Self> {
        let qualified_table = format!("{}.{}", quote_ident(schema), quote_ident(table));
        let rows = sqlx::query(
            "SELECT column_name::text, data_type::text, numeric_precision, numeric_scale \
             FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 \
             ORDER BY ordinal_position",
        )
        .bind(schema)
        .bind(table)
        .fetch_all(&pool)
        .await?;
        if rows.is_empty() {
            return Err(ConnectorError::MissingPostgresTable(qualified_table));
        }
        let mut columns = Vec::with_capacity(rows.len());
        for row in rows {
            let name: String = row.try_get(0)?;
            let data_type: String = row.try_get(1)?;
            let kind = PgKind::from_information_schema(&data_type, row.try_get(2)?, row.try_get(3)?)
                .ok_or_else(|| ConnectorError::UnsupportedPostgresType {
                    table: qualified_table.clone(),
                    column: name.clone(),
                    pg_type: data_type.clone(),
                })?;
            columns.push(PgColumn { name, kind });
        }
        let schema = Arc::new(Schema::new(
            columns.iter().map(|c| Field::new(&c.name, c.kind.arrow_type(), true)).collect::<Vec<_>>(),
        ));
        let key_field = columns.iter().position(|c| c.name == key_column).ok_or_else(|| {
            ConnectorError::BadKeyColumn {
                dataset: dataset.to_owned(),
                column: key_column.to_owned(),
                problem: "is not a column of the table",
            }
        })?;
        if columns[key_field].kind != PgKind::Text {
            return Err(ConnectorError::BadKeyColumn {
                dataset: dataset.to_owned(),
                column: key_column.to_owned(),
                problem: "must be a text column",
            });
        }
        Ok(PostgresSource { pool, qualified_table, columns: Arc::new(columns), schema, key_field })
    }

    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// The statement and parameters a scan sends, given DataFusion's projection, the filters
    /// it pushed down and its limit.
    fn scan_sql(
        &self,
        projection: &[usize],
        filters: &[Expr],
        limit: Option<usize>,
    ) -> (String, Vec<SqlParam>) {
        let select = if projection.is_empty() {
            // A bare count needs rows but no columns.
            "1".to_owned()
        } else {
            projection.iter().map(|&i| self.columns[i].select_expr()).collect::<Vec<_>>().join(", ")
        };
        let mut params = Vec::new();
        let conditions: Vec<String> =
            filters.iter().filter_map(|f| translate(f, &self.columns, &mut params)).collect();
        let mut sql = format!("SELECT {select} FROM {}", self.qualified_table);
        if !conditions.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conditions.join(" AND "));
        }
        if let Some(limit) = limit {
            sql.push_str(&format!(" LIMIT {limit}"));
        }
        (sql, params)
    }
}

/// Converts fetched rows into a batch of the projected columns.
fn rows_to_batch(
    schema: &SchemaRef,
    kinds: &[PgKind],
    rows: &[PgRow],
) -> Result<RecordBatch, DataFusionError> {
    let external = |e: sqlx::Error| DataFusionError::External(Box::new(e));
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(kinds.len());
    for (i, kind) in kinds.iter().enumerate() {
        let array: ArrayRef = match kind {
            PgKind::Text => {
                let mut b = StringBuilder::with_capacity(rows.len(), rows.len() * 16);
                for row in rows {
                    b.append_option(row.try_get::<Option<String>, _>(i).map_err(external)?);
                }
                Arc::new(b.finish())
            }
            PgKind::Int16 => {
                let mut b = Int16Builder::with_capacity(rows.len());
                for row in rows {
                    b.append_option(row.try_get::<Option<i16>, _>(i).map_err(external)?);
                }
                Arc::new(b.finish())
            }
            PgKind::Int32 => {
                let mut b = Int32Builder::with_capacity(rows.len());
                for row in rows {
                    b.append_option(row.try_get::<Option<i32>, _>(i).map_err(external)?);
                }
                Arc::new(b.finish())
            }
            PgKind::Int64 => {
                let mut b = Int64Builder::with_capacity(rows.len());
                for row in rows {
                    b.append_option(row.try_get::<Option<i64>, _>(i).map_err(external)?);
                }
                Arc::new(b.finish())
            }
            PgKind::Float32 => {
                let mut b = Float32Builder::with_capacity(rows.len());
                for row in rows {
                    b.append_option(row.try_get::<Option<f32>, _>(i).map_err(external)?);
                }
                Arc::new(b.finish())
            }
            PgKind::Float64 => {
                let mut b = Float64Builder::with_capacity(rows.len());
                for row in rows {
                    b.append_option(row.try_get::<Option<f64>, _>(i).map_err(external)?);
                }
                Arc::new(b.finish())
            }
            PgKind::Bool => {
                let mut b = BooleanBuilder::with_capacity(rows.len());
                for row in rows {
                    b.append_option(row.try_get::<Option<bool>, _>(i).map_err(external)?);
                }
                Arc::new(b.finish())
            }
            PgKind::Date => {
                let mut b = Date32Builder::with_capacity(rows.len());
                for row in rows {
                    let date = row.try_get::<Option<NaiveDate>, _>(i).map_err(external)?;
                    b.append_option(
                        date.map(|d| chrono::Datelike::num_days_from_ce(&d) - UNIX_EPOCH_DAYS_FROM_CE),
                    );
                }
                Arc::new(b.finish())
            }
            PgKind::Timestamp => {
                let mut b = TimestampMicrosecondBuilder::with_capacity(rows.len());
                for row in rows {
                    let ts = row.try_get::<Option<NaiveDateTime>, _>(i).map_err(external)?;
                    b.append_option(ts.map(|t| t.and_utc().timestamp_micros()));
                }
                Arc::new(b.finish())
            }
            PgKind::TimestampTz => {
                let mut b = TimestampMicrosecondBuilder::with_capacity(rows.len()).with_timezone("UTC");
                for row in rows {
                    let ts = row.try_get::<Option<DateTime<Utc>>, _>(i).map_err(external)?;
                    b.append_option(ts.map(|t| t.timestamp_micros()));
                }
                Arc::new(b.finish())
            }
            PgKind::Numeric { precision, scale } => {
                let mut b = Decimal128Builder::with_capacity(rows.len())
                    .with_precision_and_scale(*precision, *scale)
                    .map_err(DataFusionError::from)?;
                for row in rows {
                    let text = row.try_get::<Option<String>, _>(i).map_err(external)?;
                    match text {
                        None => b.append_null(),
                        Some(t) => b.append_value(parse_decimal(&t, *scale).ok_or_else(|| {
                            DataFusionError::Execution(format!(
                                "numeric value {t} does not fit its declared scale"
                            ))
                        })?),
                    }
                }
                Arc::new(b.finish())
            }
        };
        arrays.push(array);
    }
    let options = arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(rows.len()));
    Ok(RecordBatch::try_new_with_options(Arc::clone(schema), arrays, &options)?)
}

/// One scan: a statement and its parameters, streamed into Arrow batches.
#[derive(Debug)]
struct PostgresScan {
    pool: PgPool,
    sql: String,
    params: Vec<SqlParam>,
    kinds: Vec<PgKind>,
    schema: SchemaRef,
}

impl PartitionStream for PostgresScan {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<RecordBatch, DataFusionError>>(2);
        let pool = self.pool.clone();
        let sql = self.sql.clone();
        let params = self.params.clone();
        let kinds = self.kinds.clone();
        let schema = Arc::clone(&self.schema);
        tracing::debug!(sql = %sql, "postgres scan");
        tokio::spawn(async move {
            let mut query = sqlx::query(&sql);
            for param in &params {
                query = param.bind(query);
            }
            let mut rows = query.fetch(&pool);
            let mut buffer = Vec::with_capacity(BATCH_ROWS);
            loop {
                match rows.try_next().await {
                    Ok(Some(row)) => {
                        buffer.push(row);
                        if buffer.len() == BATCH_ROWS {
                            let batch = rows_to_batch(&schema, &kinds, &buffer);
                            buffer.clear();
                            // A closed channel means the consumer stopped reading.
                            if tx.send(batch).await.is_err() {
                                return;
                            }
                        }
                    }
                    Ok(None) => {
                        if !buffer.is_empty() {
                            let _ = tx.send(rows_to_batch(&schema, &kinds, &buffer)).await;
                        }
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(DataFusionError::External(Box::new(e)))).await;
                        return;
                    }
                }
            }
        });
        let stream =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
        Box::pin(RecordBatchStreamAdapter::new(Arc::clone(&self.schema), stream))
    }
}

#[async_trait]
impl TableProvider for PostgresSource {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| {
                if translate(f, &self.columns, &mut Vec::new()).is_some() {
                    TableProviderFilterPushDown::Exact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let projection: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.columns.len()).collect(),
        };
        let (sql, params) = self.scan_sql(&projection, filters, limit);
        let schema = Arc::new(self.schema.project(&projection)?);
        let kinds = projection.iter().map(|&i| self.columns[i].kind).collect();
        let scan = PostgresScan { pool: self.pool.clone(), sql, params, kinds, schema: Arc::clone(&schema) };
        Ok(Arc::new(StreamingTableExec::try_new(schema, vec![Arc::new(scan)], None, [], false, limit)?))
    }
}

#[async_trait]
impl KeyLookup for PostgresSource {
    async fn lookup(&self, key: &str, projection: Option<&[usize]>) -> Result<LookupOutcome> {
        let wanted: Vec<usize> = match projection {
            Some(p) => p.to_vec(),
            None => (0..self.columns.len()).collect(),
        };
        let key_filter = Expr::Column(self.columns[self.key_field].name.as_str().into())
            .eq(Expr::Literal(ScalarValue::Utf8(Some(key.to_owned())), None));
        let (sql, params) = self.scan_sql(&wanted, &[key_filter], None);
        let mut query = sqlx::query(&sql);
        for param in &params {
            query = param.bind(query);
        }
        let rows = query.fetch_all(&self.pool).await?;
        let schema = Arc::new(self.schema.project(&wanted)?);
        let kinds: Vec<PgKind> = wanted.iter().map(|&i| self.columns[i].kind).collect();
        let batch = rows_to_batch(&schema, &kinds, &rows)?;
        let stats = LookupStats { rows_scanned: rows.len() as u64, row_groups_read: 0, rows_total: None };
        Ok(LookupOutcome { batch, stats })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};

    fn columns() -> Vec<PgColumn> {
        vec![
            PgColumn { name: "id_number".into(), kind: PgKind::Text },
            PgColumn { name: "paid_months".into(), kind: PgKind::Int32 },
            PgColumn { name: "base".into(), kind: PgKind::Numeric { precision: 14, scale: 2 } },
            PgColumn { name: "opened_on".into(), kind: PgKind::Date },
        ]
    }

    #[test]
    fn translates_comparisons_with_typed_parameters() {
        let mut params = Vec::new();
        let expr = col("id_number").gt_eq(lit("4115")).and(lit(12i32).lt(col("paid_months")));
        let sql = translate(&expr, &columns(), &mut params).expect("translatable");
        assert_eq!(sql, "(\"id_number\" COLLATE \"C\" >= $1::text AND \"paid_months\" > $2::int8)");
        assert_eq!(params, vec![SqlParam::Text("4115".into()), SqlParam::Int(12)]);
    }

    #[test]
    fn translates_in_lists_nulls_and_negation() {
        let mut params = Vec::new();
        let expr = col("id_number").in_list(vec![lit("a"), lit("b")], true);
        assert_eq!(
            translate(&expr, &columns(), &mut params).as_deref(),
            Some("\"id_number\" NOT IN ($1::text, $2::text)")
        );
        let expr = !col("opened_on").is_null();
        assert_eq!(
            translate(&expr, &columns(), &mut Vec::new()).as_deref(),
            Some("(NOT \"opened_on\" IS NULL)")
        );
    }

    #[test]
    fn refuses_what_it_cannot_translate_exactly() {
        let mut params = Vec::new();
        // Functions, type mismatches, unknown columns and null literals stay in DataFusion.
        assert!(
            translate(
                &datafusion::functions::expr_fn::upper(col("id_number")).eq(lit("X")),
                &columns(),
                &mut params
            )
            .is_none()
        );
        assert!(translate(&col("paid_months").eq(lit("12")), &columns(), &mut params).is_none());
        assert!(translate(&col("unknown").eq(lit(1)), &columns(), &mut params).is_none());
        assert!(
            translate(&col("paid_months").eq(lit(ScalarValue::Int32(None))), &columns(), &mut params)
                .is_none()
        );
        assert!(translate(&col("id_number").like(lit("41%")), &columns(), &mut params).is_none());
    }

    #[test]
    fn decimals_round_trip_through_text() {
        for (value, scale, text) in
            [(123456i128, 2i8, "1234.56"), (-5, 2, "-0.05"), (7, 0, "7"), (0, 3, "0.000")]
        {
            assert_eq!(decimal_to_string(value, scale), text);
            assert_eq!(parse_decimal(text, scale), Some(value));
        }
        assert_eq!(parse_decimal("1.5", 2), Some(150));
        assert_eq!(parse_decimal("1.505", 2), None);
    }

    #[test]
    fn quotes_identifiers() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
