//! Per-grant views: a dataset as one grant lets a caller see it.
//!
//! A [`GrantedView`] is a table provider over a dataset's table that has only the granted
//! columns, masked as granted, and only the rows in the grant's scope. Masking and the row
//! scope are applied inside the view's own scan, below anything a caller's query adds, so a
//! query can only ever compute over masked, in-scope values: a filter, sort, join or function
//! on a masked column sees the masked value, and rows out of scope never reach the caller's
//! operators.
//!
//! For speed, caller filters are handed down to the dataset's scan (where Parquet can prune
//! with them) only when they read unmasked columns and cannot fail: such a filter means the
//! same on raw and on viewed values, and evaluating it on rows out of scope reveals nothing
//! because it neither returns those rows nor raises an error that depends on them.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, OffsetSizeTrait, StringArray, StringBuilder};
use arrow::buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, Result as DfResult, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::expr::{InList, Like};
use datafusion::logical_expr::{
    Between, BinaryExpr, ColumnarValue, Expr, Operator, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, TableProviderFilterPushDown, Volatility, col, lit,
};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::ScalarFunctionExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::{ProjectionExec, ProjectionExpr};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, PlanProperties};
use tongban_policy::catalog::MaskRule;

use crate::error::{ConnectorError, Result};

/// One column of a view: a dataset column and the mask the grant applies to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewColumn {
    pub name: String,
    pub mask: MaskRule,
}

/// A dataset's rows limited to those whose `column` starts with `prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewScope {
    pub column: String,
    pub prefix: String,
}

/// A dataset table seen through one grant.
#[derive(Debug)]
pub struct GrantedView {
    inner: Arc<dyn TableProvider>,
    /// For each view column, its index in the dataset's schema and its mask.
    columns: Vec<(usize, MaskRule)>,
    scope: Option<(usize, String)>,
    schema: SchemaRef,
}

impl GrantedView {
    /// Builds the view. Every column must exist in the dataset; the scope prefix must be
    /// digits, as division codes are.
    pub fn try_new(
        inner: Arc<dyn TableProvider>,
        columns: &[ViewColumn],
        scope: Option<&ViewScope>,
    ) -> Result<Self> {
        let dataset = inner.schema();
        let index_of = |name: &str| {
            dataset
                .index_of(name)
                .map_err(|_| ConnectorError::View(format!("the dataset has no column {name}")))
        };
        let mut fields = Vec::with_capacity(columns.len());
        let mut resolved = Vec::with_capacity(columns.len());
        for column in columns {
            let index = index_of(&column.name)?;
            let field = dataset.field(index);
            fields.push(if column.mask == MaskRule::None {
                field.clone()
            } else {
                Field::new(field.name(), DataType::Utf8, true).with_metadata(field.metadata().clone())
            });
            resolved.push((index, column.mask));
        }
        let scope = match scope {
            None => None,
            Some(scope) if !scope.prefix.is_empty() && scope.prefix.bytes().all(|b| b.is_ascii_digit()) => {
                Some((index_of(&scope.column)?, scope.prefix.clone()))
            }
            Some(scope) => {
                return Err(ConnectorError::View(format!(
                    "row scope prefix {:?} is not digits",
                    scope.prefix
                )));
            }
        };
        Ok(GrantedView { inner, columns: resolved, scope, schema: Arc::new(Schema::new(fields)) })
    }

    /// The view's columns and masks, as it was built.
    pub fn columns(&self) -> Vec<ViewColumn> {
        let dataset = self.inner.schema();
        self.columns
            .iter()
            .map(|(index, mask)| ViewColumn { name: dataset.field(*index).name().clone(), mask: *mask })
            .collect()
    }

    /// The view's row scope, as it was built.
    pub fn scope(&self) -> Option<ViewScope> {
        let dataset = self.inner.schema();
        self.scope.as_ref().map(|(index, prefix)| ViewScope {
            column: dataset.field(*index).name().clone(),
            prefix: prefix.clone(),
        })
    }

    fn mask_of(&self, name: &str) -> Option<MaskRule> {
        let index = self.schema.index_of(name).ok()?;
        Some(self.columns[index].1)
    }

    /// Whether `expr` is a column of a string type.
    fn is_text(&self, expr: &Expr) -> bool {
        matches!(expr, Expr::Column(c) if self.schema.field_with_name(&c.name).is_ok_and(|f| {
            matches!(f.data_type(), DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8)
        }))
    }

    /// Whether `expr` may be evaluated on the dataset's raw rows: it reads only unmasked view
    /// columns and is built only of comparisons, boolean logic, `IN`, `BETWEEN`, `LIKE` with a
    /// literal pattern and null tests, none of which can raise an error.
    fn pushable(&self, expr: &Expr) -> bool {
        match expr {
            Expr::Column(c) => self.mask_of(&c.name) == Some(MaskRule::None),
            Expr::Literal(..) => true,
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                matches!(
                    op,
                    Operator::Eq
                        | Operator::NotEq
                        | Operator::Lt
                        | Operator::LtEq
                        | Operator::Gt
                        | Operator::GtEq
                        | Operator::And
                        | Operator::Or
                        | Operator::IsDistinctFrom
                        | Operator::IsNotDistinctFrom
                ) && self.pushable(left)
                    && self.pushable(right)
            }
            Expr::Not(e) | Expr::IsNull(e) | Expr::IsNotNull(e) => self.pushable(e),
            Expr::Between(Between { expr, low, high, .. }) => {
                self.pushable(expr) && self.pushable(low) && self.pushable(high)
            }
            Expr::InList(InList { expr, list, .. }) => {
                self.pushable(expr) && list.iter().all(|e| self.pushable(e))
            }
            // Casts between string types cannot fail (type coercion adds them when a literal
            // and a column differ only in string representation).
            Expr::Cast(datafusion::logical_expr::Cast { expr, field })
                if matches!(field.data_type(), DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8) =>
            {
                self.pushable(expr) && self.is_text(expr)
            }
            Expr::Like(Like { expr, pattern, escape_char: None, case_insensitive: false, .. }) => {
                self.pushable(expr) && matches!(**pattern, Expr::Literal(ScalarValue::Utf8(Some(_)), _))
            }
            _ => false,
        }
    }
}

#[async_trait]
impl TableProvider for GrantedView {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // Exact: the view's own filter applies every pushable filter below its masks, and a
        // pushable filter reads only unmasked columns, whose raw and viewed values are the
        // same. So the caller's plan need not apply it again above the view, nor ask the view
        // for the columns it reads only to filter on them.
        Ok(filters
            .iter()
            .map(|f| {
                if self.pushable(f) {
                    TableProviderFilterPushDown::Exact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        // A limit cannot go below the row scope: the dataset's first rows may all be out of
        // scope. The caller's plan applies it above the view.
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let wanted: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.columns.len()).collect(),
        };
        // Dataset columns to read: the wanted ones, then the scope column if not among them.
        let mut read: Vec<usize> = Vec::new();
        for &w in &wanted {
            let dataset_index = self.columns[w].0;
            if !read.contains(&dataset_index) {
                read.push(dataset_index);
            }
        }
        if let Some((scope_index, _)) = &self.scope
            && !read.contains(scope_index)
        {
            read.push(*scope_index);
        }
        let dataset = self.inner.schema();
        // Pushed filters name view columns, which are the dataset's unmasked columns under
        // the same names; they are read too (the plan above asks for them anyway, as the
        // filters stay there as well).
        let mut pushed = Vec::new();
        for filter in filters.iter().filter(|f| self.pushable(f)) {
            let unqualified = filter
                .clone()
                .transform(|e| {
                    Ok(match e {
                        Expr::Column(c) => {
                            Transformed::yes(col(datafusion::common::Column::new_unqualified(c.name)))
                        }
                        other => Transformed::no(other),
                    })
                })?
                .data;
            for column in unqualified.column_refs() {
                let index = self.inner.schema().index_of(&column.name)?;
                if !read.contains(&index) {
                    read.push(index);
                }
            }
            pushed.push(unqualified);
        }
        let scope_expr = self.scope.as_ref().map(|(index, prefix)| {
            col(datafusion::common::Column::new_unqualified(dataset.field(*index).name()))
                .like(lit(format!("{prefix}%")))
        });
        if let Some(scope) = scope_expr {
            pushed.push(scope);
        }
        // The source is handed only the filters it says it applies exactly (PostgreSQL, for
        // those it can translate), so that it sends fewer rows. All of them, with the scope,
        // are applied again by a filter here, whatever the source does: so that only the rows
        // the caller's filters keep are masked (masking is the costly step, and a pushed
        // filter reads only unmasked columns, so it means the same below the masks as above
        // them), and so that the scope holds. Sources that take filters into their own scan
        // plan (Parquet) receive this filter from the optimizer, once; handing it to their
        // scan as well would have them evaluate every predicate twice.
        let refs: Vec<&Expr> = pushed.iter().collect();
        let exact: Vec<Expr> = self
            .inner
            .supports_filters_pushdown(&refs)?
            .iter()
            .zip(&pushed)
            .filter(|(support, _)| **support == TableProviderFilterPushDown::Exact)
            .map(|(_, filter)| filter.clone())
            .collect();
        let mut plan = self.inner.scan(state, Some(&read), &exact, None).await?;
        let read_schema = plan.schema();
        if let Some(predicate) = pushed.into_iter().reduce(Expr::and) {
            let df_schema = DFSchema::try_from(read_schema.as_ref().clone())?;
            let predicate = state.create_physical_expr(predicate, &df_schema)?;
            plan = Arc::new(FilterExec::try_new(predicate, plan)?);
        }
        let config = Arc::new(state.config_options().clone());
        let mut exprs = Vec::with_capacity(wanted.len());
        for &w in &wanted {
            let (dataset_index, mask) = self.columns[w];
            let field = dataset.field(dataset_index);
            let position = read.iter().position(|&r| r == dataset_index).expect("read above");
            let column: Arc<dyn datafusion::physical_expr::PhysicalExpr> =
                Arc::new(Column::new(field.name(), position));
            let expr = if mask == MaskRule::None {
                column
            } else {
                let udf = Arc::new(mask_udf(mask));
                Arc::new(ScalarFunctionExpr::try_new(
                    udf,
                    vec![column],
                    read_schema.as_ref(),
                    Arc::clone(&config),
                )?)
            };
            exprs.push(ProjectionExpr { expr, alias: self.schema.field(w).name().clone() });
        }
        let masked = Arc::new(ProjectionExec::try_new(exprs, plan)?);
        Ok(Arc::new(ViewBoundaryExec::new(masked)))
    }
}

/// The top of a view's plan, which the physical optimizer may not see through: nothing of
/// the caller's query is pushed below it. Without it, filter pushdown would merge a caller's
/// filter into the view's scope filter (or the Parquet scan's row filter), where it may be
/// evaluated on rows out of scope, and an expression that fails on such a row would tell the
/// caller the row exists. Filters that are safe on any row reach the scan through
/// [`TableProvider::supports_filters_pushdown`] instead.
///
/// A cluster's codec rebuilds it where a plan is decoded, so it is public; nothing else makes
/// one but [`GrantedView::scan`].
#[derive(Debug)]
pub struct ViewBoundaryExec {
    input: Arc<dyn ExecutionPlan>,
}

impl ViewBoundaryExec {
    pub fn new(input: Arc<dyn ExecutionPlan>) -> Self {
        ViewBoundaryExec { input }
    }
}

impl DisplayAs for ViewBoundaryExec {
    fn fmt_as(&self, _format: DisplayFormatType, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ViewBoundaryExec")
    }
}

impl ExecutionPlan for ViewBoundaryExec {
    fn name(&self) -> &str {
        "ViewBoundaryExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        match (children.pop(), children.is_empty()) {
            (Some(input), true) => Ok(Arc::new(ViewBoundaryExec::new(input))),
            _ => Err(datafusion::error::DataFusionError::Internal("a view boundary has one input".into())),
        }
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        self.input.execute(partition, context)
    }

    // Filter pushdown keeps the trait's default, which bars every parent filter; limit
    // pushdown keeps its default too (a limit below the scope could cut in-scope rows).
}

/// Masks every value of `array` by `rule`. Unmasked columns are returned as they are; masked
/// ones become text, with nulls kept (a redacted column is redacted everywhere, nulls too, so
/// it shows nothing at all).
pub fn mask_array(array: &ArrayRef, rule: MaskRule) -> Result<ArrayRef> {
    if rule == MaskRule::None {
        return Ok(Arc::clone(array));
    }
    if rule == MaskRule::Redact {
        return Ok(Arc::new(StringArray::from(vec![tongban_policy::mask::REDACTED; array.len()])));
    }
    // Text columns are read where they lie; others are first written out as text.
    let text;
    let array = match array.data_type() {
        DataType::Utf8View | DataType::Utf8 | DataType::LargeUtf8 => array,
        _ => {
            text = cast(array, &DataType::Utf8)?;
            &text
        }
    };
    Ok(Arc::new(mask_text_column(array, rule)?))
}

/// Masks a text column (`Utf8View`, `Utf8` or `LargeUtf8`), with a loop compiled for each
/// layout so that each value's mask is written inline.
fn mask_text_column(array: &ArrayRef, rule: MaskRule) -> Result<StringArray> {
    match array.data_type() {
        DataType::Utf8View => mask_values(array.as_string_view().iter(), array, rule),
        DataType::Utf8 => mask_values(array.as_string::<i32>().iter(), array, rule),
        _ => mask_values(array.as_string::<i64>().iter(), array, rule),
    }
}

/// Masks `values`, the values of `array`. A null stays null.
///
/// Masks that are ASCII but for odd values (identity numbers, phones) go into one buffer for
/// the whole column, with an offset closing each value: checking the finished buffer is
/// UTF-8, as building the array from it does, is cheap for ASCII, and cheaper than the column
/// builder's calls for each piece of each mask. For Chinese text (names, addresses) it is the
/// other way round, so those go through the builder (measured with `benches/benches/mask.rs`).
#[inline]
fn mask_values<'a>(
    values: impl Iterator<Item = Option<&'a str>>,
    array: &ArrayRef,
    rule: MaskRule,
) -> Result<StringArray> {
    // A mask is never longer than its value but for a short value's redaction, so the values'
    // own length is the buffer's first size.
    let bytes = text_bytes(array);
    if !matches!(rule, MaskRule::IdNumber | MaskRule::Phone) {
        let mut out = StringBuilder::with_capacity(array.len(), bytes);
        for value in values {
            match value {
                Some(v) => {
                    // Writing to a builder cannot fail.
                    let _ = rule.write_to(v, &mut out);
                    out.append_value("");
                }
                None => out.append_null(),
            }
        }
        return Ok(out.finish());
    }
    let mut masked = String::with_capacity(bytes);
    let mut offsets: Vec<i32> = Vec::with_capacity(array.len() + 1);
    offsets.push(0);
    for value in values {
        if let Some(v) = value {
            // Writing to a `String` cannot fail.
            let _ = rule.write_to(v, &mut masked);
        }
        // A column past `i32::MAX` bytes wraps here and is refused below.
        offsets.push(masked.len() as i32);
    }
    if i32::try_from(masked.len()).is_err() {
        return Err(arrow::error::ArrowError::OffsetOverflowError(masked.len()).into());
    }
    // A null's slot holds no bytes; the input's own null buffer marks it.
    Ok(StringArray::try_new(
        OffsetBuffer::new(ScalarBuffer::from(offsets)),
        Buffer::from_vec(masked.into_bytes()),
        array.logical_nulls(),
    )?)
}

/// The bytes of text a string column holds, for sizing its masks' buffer.
fn text_bytes(array: &ArrayRef) -> usize {
    // The span of a sliced column's offsets, not its whole buffer.
    fn span<O: OffsetSizeTrait>(offsets: &OffsetBuffer<O>) -> usize {
        (offsets[offsets.len() - 1] - offsets[0]).as_usize()
    }
    match array.data_type() {
        DataType::Utf8View => array.as_string_view().views().iter().map(|view| *view as u32 as usize).sum(),
        DataType::Utf8 => span(array.as_string::<i32>().offsets()),
        DataType::LargeUtf8 => span(array.as_string::<i64>().offsets()),
        _ => 0,
    }
}

/// The query function that masks a column inside a view's scan. It is never registered by
/// name, so a caller's SQL cannot call it (nor needs to).
pub fn mask_udf(rule: MaskRule) -> ScalarUDF {
    ScalarUDF::new_from_impl(MaskFunction { rule, signature: Signature::any(1, Volatility::Immutable) })
}

/// Every mask rule, for finding one by its function's name.
const MASK_RULES: [MaskRule; 6] = [
    MaskRule::None,
    MaskRule::IdNumber,
    MaskRule::Phone,
    MaskRule::Name,
    MaskRule::Address,
    MaskRule::Redact,
];

/// The name of the function that masks by `rule`.
pub fn mask_function_name(rule: MaskRule) -> &'static str {
    match rule {
        MaskRule::None => "tongban_mask_none",
        MaskRule::IdNumber => "tongban_mask_id_number",
        MaskRule::Phone => "tongban_mask_phone",
        MaskRule::Name => "tongban_mask_name",
        MaskRule::Address => "tongban_mask_address",
        MaskRule::Redact => "tongban_mask_redact",
    }
}

/// The rule whose masking function is named `name`.
pub fn mask_rule_named(name: &str) -> Option<MaskRule> {
    MASK_RULES.into_iter().find(|rule| mask_function_name(*rule) == name)
}

#[derive(Debug, PartialEq, Eq)]
struct MaskFunction {
    rule: MaskRule,
    signature: Signature,
}

impl Hash for MaskFunction {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.rule.hash(state);
    }
}

impl ScalarUDFImpl for MaskFunction {
    fn name(&self) -> &str {
        mask_function_name(self.rule)
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let [value] = args.args.as_slice() else {
            return Err(datafusion::error::DataFusionError::Internal("mask takes one argument".into()));
        };
        let array = value.clone().into_array(args.number_rows)?;
        let masked = mask_array(&array, self.rule)
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        Ok(ColumnarValue::Array(masked))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int32Array, RecordBatch};
    use arrow::util::pretty::pretty_format_batches;
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionContext;

    fn people() -> Arc<dyn TableProvider> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id_number", DataType::Utf8, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("division_code", DataType::Utf8, true),
            Field::new("marital_status", DataType::Utf8, true),
            Field::new("age", DataType::Int32, true),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from(vec![
                    "41010519491231002X",
                    "410105199001011234",
                    "440106198505050011",
                    "110101197001010022",
                ])),
                Arc::new(StringArray::from(vec![Some("张三"), Some("李四"), Some("王五"), None])),
                Arc::new(StringArray::from(vec![Some("410105"), Some("410105"), Some("440106"), None])),
                Arc::new(StringArray::from(vec!["已婚", "未婚", "已婚", "离婚"])),
                Arc::new(Int32Array::from(vec![76, 36, 41, 56])),
            ],
        )
        .expect("batch");
        Arc::new(MemTable::try_new(schema, vec![vec![batch]]).expect("table"))
    }

    async fn query(sql: &str) -> String {
        let ctx = SessionContext::new();
        let view = GrantedView::try_new(
            people(),
            &[
                ViewColumn { name: "id_number".into(), mask: MaskRule::IdNumber },
                ViewColumn { name: "name".into(), mask: MaskRule::Name },
                ViewColumn { name: "division_code".into(), mask: MaskRule::None },
                ViewColumn { name: "age".into(), mask: MaskRule::None },
            ],
            Some(&ViewScope { column: "division_code".into(), prefix: "41".into() }),
        )
        .expect("view");
        ctx.register_table("people", Arc::new(view)).expect("register");
        match ctx.sql(sql).await {
            Ok(df) => match df.collect().await {
                Ok(batches) => pretty_format_batches(&batches).expect("format").to_string(),
                Err(e) => format!("error: {e}"),
            },
            Err(e) => format!("error: {e}"),
        }
    }

    #[tokio::test]
    async fn views_show_granted_columns_masked_and_rows_in_scope() {
        let all = query("SELECT * FROM people ORDER BY age").await;
        assert!(all.contains("410105********1234") && all.contains("李*"), "{all}");
        assert!(!all.contains("440106") && !all.contains("110101"), "{all}");
        assert!(!all.contains("已婚") && !all.contains("marital_status"), "{all}");
        assert!(query("SELECT count(*) AS n FROM people").await.contains("| 2 |"));
        // Filters on masked columns compare masked values; the raw value matches nothing.
        assert!(
            query("SELECT count(*) AS n FROM people WHERE id_number = '410105199001011234'")
                .await
                .contains("| 0 |")
        );
        assert!(query("SELECT count(*) AS n FROM people WHERE name = '张*'").await.contains("| 1 |"));
        assert!(query("SELECT count(*) AS n FROM people WHERE name LIKE '张三%'").await.contains("| 0 |"));
        // Out-of-scope rows are gone before any caller expression runs.
        assert!(
            query("SELECT count(*) AS n FROM people WHERE division_code = '440106'").await.contains("| 0 |")
        );
        assert!(query("SELECT sum(age) AS s FROM people").await.contains("| 112 |"));
        // A caller's expression never runs on rows out of scope, so it cannot fail on them
        // (an error would tell the caller such a row exists).
        for oracle in [
            "SELECT count(*) AS n FROM people WHERE CASE WHEN division_code = '440106' THEN 1/0 ELSE 1 END = 1",
            "SELECT count(*) AS n FROM people WHERE CASE WHEN age = 41 THEN 1/0 ELSE 1 END = 1",
            "SELECT count(*) AS n FROM people WHERE CAST(CASE WHEN age > 40 AND age < 50 THEN 'x' ELSE '1' END AS INT) = 1",
        ] {
            assert!(query(oracle).await.contains("| 2 |"), "{oracle}: {}", query(oracle).await);
        }
        assert!(query("SELECT marital_status FROM people").await.starts_with("error"));
        assert!(query("SELECT * FROM people LIMIT 1").await.contains("410105"));
    }

    #[tokio::test]
    async fn safe_filters_run_once_below_the_masks_and_others_above_the_view() {
        // A filter on an unmasked column is the view's own: applied below the masks, not again
        // above the boundary, and its column is not asked of the view only to filter on it.
        let pushed = query("EXPLAIN SELECT id_number FROM people WHERE division_code = '410105'").await;
        let physical = pushed.split("physical_plan").nth(1).expect("a physical plan");
        let above_view = physical.split("ViewBoundaryExec").next().expect("plan text");
        assert!(!above_view.contains("FilterExec"), "{pushed}");
        let below_view = physical.split("ViewBoundaryExec").nth(1).expect("plan text");
        assert!(below_view.contains("FilterExec: division_code@1 = 410105"), "{pushed}");
        assert!(
            query("SELECT id_number FROM people WHERE division_code = '410105'")
                .await
                .contains("410105********1234")
        );
        // A filter on a masked column sees masked values, so it stays above the view.
        let kept = query("EXPLAIN SELECT id_number FROM people WHERE name = '张*'").await;
        let physical = kept.split("physical_plan").nth(1).expect("a physical plan");
        let above_view = physical.split("ViewBoundaryExec").next().expect("plan text");
        assert!(above_view.contains("FilterExec"), "{kept}");
    }

    #[test]
    fn arrays_are_masked_with_nulls_kept_and_redaction_total() {
        let names: ArrayRef = Arc::new(StringArray::from(vec![Some("欧阳娜娜"), None]));
        let masked = mask_array(&names, MaskRule::Name).expect("mask");
        let masked = masked.as_any().downcast_ref::<StringArray>().expect("text");
        assert_eq!((masked.value(0), masked.is_null(1)), ("欧阳**", true));
        let redacted = mask_array(&names, MaskRule::Redact).expect("mask");
        assert_eq!(redacted.null_count(), 0);
        let ages: ArrayRef = Arc::new(Int32Array::from(vec![36]));
        assert_eq!(mask_array(&ages, MaskRule::None).expect("same").data_type(), &DataType::Int32);
    }

    proptest::proptest! {
        // Every layout of text column, masked by every rule through either of the column's
        // ways, shows each value as the rule masks it alone, with nulls kept: a sliced view,
        // odd values (short, spaced, non-ASCII identity numbers) and nulls included.
        #[test]
        fn columns_mask_as_their_values_do(
            values in proptest::collection::vec(
                proptest::option::of("\\PC{0,20}|[0-9]{17}[0-9X]|1[0-9]{10}|[张王欧][阳小]{0,3}|[一-龥]{1,5}"),
                1..40,
            ),
            skip in 0usize..3,
        ) {
            let skip = skip.min(values.len() - 1);
            let columns: [ArrayRef; 3] = [
                Arc::new(StringArray::from(values.clone())),
                Arc::new(arrow::array::LargeStringArray::from(values.clone())),
                Arc::new(arrow::array::StringViewArray::from(values.clone())),
            ];
            for rule in [MaskRule::IdNumber, MaskRule::Phone, MaskRule::Name, MaskRule::Address] {
                for column in &columns {
                    let column = column.slice(skip, values.len() - skip);
                    let masked = mask_array(&column, rule).expect("mask");
                    let masked = masked.as_string::<i32>();
                    proptest::prop_assert_eq!(masked.len(), values.len() - skip);
                    for (row, value) in values[skip..].iter().enumerate() {
                        match value {
                            Some(v) => proptest::prop_assert_eq!(masked.value(row), rule.apply(v).into_owned()),
                            None => proptest::prop_assert!(masked.is_null(row)),
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn scopes_must_be_division_digits() {
        let scope = ViewScope { column: "division_code".into(), prefix: "41' OR '1".into() };
        assert!(GrantedView::try_new(people(), &[], Some(&scope)).is_err());
        let unknown = [ViewColumn { name: "religion".into(), mask: MaskRule::None }];
        assert!(GrantedView::try_new(people(), &unknown, None).is_err());
    }
}
