//! SQL over per-grant views, in a sandbox built for each call.
//!
//! DataFusion is not the authorization boundary; the views are. Each call gets a fresh
//! session whose only tables are the caller's per-grant views (granted columns, masked, rows
//! in scope). The session has no table functions, no URL tables, no file formats, no
//! information schema and no recursive CTEs; the text must be exactly one query (not DDL, DML,
//! `EXPLAIN`, `SET`, `SHOW` or any other statement). Memory is capped with nothing spilled to
//! disk, the run time is capped, and results over the row limit are refused, not cut.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, MemoryCatalogProvider, MemoryCatalogProviderList,
    MemorySchemaProvider, SchemaProvider,
};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::config::Dialect;
use datafusion::error::DataFusionError;
use datafusion::execution::context::SQLOptions;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::prelude::{DataFrame, SessionConfig};
use datafusion::sql::parser::Statement;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use futures::TryStreamExt;
use serde::Deserialize;
use tongban_connectors::{GrantedView, ViewColumn, ViewScope, functions, session_config};
use tongban_policy::catalog::Resource;
use tongban_policy::decision::Permit;

use super::Answer;
use super::DataConfig;
use super::sql_executor::SqlExecutor;
use crate::datasets::DatasetRegistry;
use crate::error::ApiError;

/// A SQL call.
#[derive(Debug, Clone, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlRequest {
    /// One `SELECT` (or `WITH … SELECT`) over the views the caller's grants give: each named
    /// after its dataset, such as `household`.
    pub query: String,
}

/// Result encodings, chosen by `Accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Csv,
    ArrowIpc,
    Parquet,
}

impl Format {
    fn from_accept(accept: Option<&str>) -> Result<Format, ApiError> {
        let Some(accept) = accept else { return Ok(Format::Json) };
        for media in accept.split(',').map(|m| m.split(';').next().unwrap_or("").trim()) {
            match media {
                "application/json" | "application/*" | "*/*" | "" => return Ok(Format::Json),
                "text/csv" => return Ok(Format::Csv),
                "application/vnd.apache.arrow.stream" => return Ok(Format::ArrowIpc),
                "application/vnd.apache.parquet" => return Ok(Format::Parquet),
                _ => {}
            }
        }
        Err(ApiError::new(
            axum::http::StatusCode::NOT_ACCEPTABLE,
            "not_acceptable",
            "Not acceptable",
            "results come as application/json, text/csv, application/vnd.apache.arrow.stream or \
             application/vnd.apache.parquet",
        ))
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Csv => "text/csv; charset=utf-8",
            Format::ArrowIpc => "application/vnd.apache.arrow.stream",
            Format::Parquet => "application/vnd.apache.parquet",
        }
    }
}

/// Runs `request` over the views of `permits`: checked and put in its sandbox here, then
/// parsed, planned, run and encoded on the SQL runtime (`sql_executor`), under the time limit.
pub(super) async fn run(
    executor: &SqlExecutor,
    department: &str,
    registry: &DatasetRegistry,
    limits: &DataConfig,
    permits: &[(&Resource, Permit<'_>)],
    request: &SqlRequest,
    accept: Option<&str>,
) -> Result<Answer, ApiError> {
    let format = Format::from_accept(accept)?;
    if request.query.len() > limits.sql_max_bytes {
        return Err(ApiError::unprocessable(
            "query_too_long",
            "Query too long",
            format!("queries are at most {} bytes", limits.sql_max_bytes),
        ));
    }
    let views: Vec<&str> = permits.iter().map(|(resource, _)| resource.dataset.as_str()).collect();
    check_complexity(&request.query, &views)?;
    let mut state = sandbox(registry, limits, permits)?;
    let cluster = executor.cluster().map(str::to_owned);
    if let Some(scheduler) = &cluster {
        state = tongban_cluster::on_cluster(state, scheduler);
    }
    let query = request.query.clone();
    let max_rows = limits.sql_max_rows;
    executor
        .run(
            department,
            async move { plan_and_run(state, cluster.as_deref(), &query, max_rows, format).await },
        )
        .await
}

/// Plans and runs `query` in `state`, on the cluster whose scheduler is `cluster` if any.
async fn plan_and_run(
    state: SessionState,
    cluster: Option<&str>,
    query: &str,
    limit: usize,
    format: Format,
) -> Result<Answer, ApiError> {
    let statement = state.sql_to_statement(query, &Dialect::Generic).map_err(invalid_sql)?;
    // Only a query: the parser also reads EXPLAIN, SHOW, SET, COPY, CREATE and the like.
    if !matches!(&statement, Statement::Statement(s) if matches!(**s, SqlStatement::Query(_))) {
        return Err(ApiError::unprocessable(
            "statement_not_allowed",
            "Only queries",
            "send one SELECT query; other statements are not run",
        ));
    }
    let plan = state.statement_to_plan(statement).await.map_err(invalid_sql)?;
    check_tables(&plan)?;
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(&plan)
        .map_err(|_| {
            ApiError::unprocessable(
                "statement_not_allowed",
                "Only queries",
                "the query would change or configure state",
            )
        })?;
    // One row past the limit tells a result that is too large from one that just fits.
    let frame = DataFrame::new(state, plan).limit(0, Some(limit + 1)).map_err(invalid_sql)?;
    let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
    let task = Arc::new(frame.task_ctx());
    let plan = frame.create_physical_plan().await.map_err(execution_error)?;
    // On a cluster the plan is one node that sends the query to the scheduler and fetches its
    // answer; if this future is dropped (the time limit, or a caller that hung up), the guard
    // cancels the job on the cluster too.
    let job = cluster.map(|scheduler| tongban_cluster::JobGuard::new(scheduler, &plan));
    let plan = yielding(plan).map_err(execution_error)?;
    let stream = datafusion::physical_plan::execute_stream(plan, task).map_err(execution_error)?;
    let collected: Result<Vec<RecordBatch>, DataFusionError> = stream.try_collect().await;
    if let Some(job) = job {
        job.finished();
    }
    let batches = collected.map_err(execution_error)?;
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if rows > limit {
        return Err(ApiError::unprocessable(
            "result_too_large",
            "Result too large",
            format!("results have at most {limit} rows; add LIMIT, a filter or an aggregate"),
        ));
    }
    let body = encode(format, &schema, &batches).map_err(|e| ApiError::internal(&e))?;
    Ok(Answer::ok(format.content_type(), body.into(), rows as u64))
}

/// The most tokens a query may hold that can deepen the trees it is parsed and planned into
/// (see [`deepens`]). DataFusion and its parser build, copy, compare and drop those trees
/// recursively, much of it without the stack growth its `recursive_protection` gives some
/// passes: a chain of 5,000 additions in a 10 KB query overflowed a worker's stack and
/// aborted the whole gateway. The parser's own recursion limit bounds nesting by brackets and
/// subqueries, not chains, which it reads in a loop. Measured in a debug build: on 2 MiB
/// stacks 2,000 additions, or a join of 1,000 tables, overflowed; on the 16 MiB worker stacks
/// the binary runs with (`cli`), chains of 8,000 additions, 1,900 casts and 2,200
/// concatenations and a join of 1,000 tables were planned and answered. Legitimate queries
/// use tens.
pub(crate) const MAX_QUERY_TERMS: usize = 1000;

/// The most tables (views, each time one is read, subqueries included) one query may read.
/// Optimizing a join grows faster than its tables: a join of 1,000 views took about 3 s of
/// planning, which runs on a worker thread and cannot be cut short by the query's time limit.
/// Queries over a caller's few views read a handful.
pub(crate) const MAX_QUERY_TABLES: usize = 32;

/// Refuses a planned (not yet optimized) query that reads more than [`MAX_QUERY_TABLES`]: the
/// count [`tables_read`] made from the tokens, checked on what the planner made of them.
fn check_tables(plan: &datafusion::logical_expr::LogicalPlan) -> Result<(), ApiError> {
    // The walk stops at the first table over the bound: a plan shares a common table
    // expression's plan wherever it is read, so a few lines of `WITH` can make a tree with
    // billions of paths to walk.
    let mut tables = 0;
    plan.apply_with_subqueries(|node| {
        if matches!(node, datafusion::logical_expr::LogicalPlan::TableScan(_)) {
            tables += 1;
            if tables > MAX_QUERY_TABLES {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .map_err(|e| ApiError::internal(&e))?;
    if tables > MAX_QUERY_TABLES {
        return Err(ApiError::unprocessable(
            "query_too_complex",
            "Query too complex",
            format!("the query reads more than {MAX_QUERY_TABLES} tables"),
        ));
    }
    Ok(())
}

/// Refuses a query whose parse tree could be deep enough to overflow the stack, counting
/// tokens before anything is parsed: a tree that deep overflows when it is dropped, too.
fn check_complexity(query: &str, views: &[&str]) -> Result<(), ApiError> {
    let tokens = tokens(query)?;
    let terms = tokens.iter().filter(|t| deepens(t)).count();
    if terms > MAX_QUERY_TERMS {
        return Err(ApiError::unprocessable(
            "query_too_complex",
            "Query too complex",
            format!(
                "the query has {terms} operators, list items and joins; at most {MAX_QUERY_TERMS} are allowed"
            ),
        ));
    }
    if tables_read(&tokens, views) > MAX_QUERY_TABLES {
        return Err(ApiError::unprocessable(
            "query_too_complex",
            "Query too complex",
            format!(
                "the query reads more than {MAX_QUERY_TABLES} tables, counting each as often as it is read"
            ),
        ));
    }
    Ok(())
}

/// A query's tokens, without the spaces and comments, which carry no structure.
/// The names a query holds (identifiers and keywords alike, as DataFusion folds them: unquoted
/// ones in lower case), to tell which views it could read before it is planned.
pub(crate) fn names_in(query: &str) -> Result<std::collections::BTreeSet<String>, ApiError> {
    use datafusion::sql::sqlparser::tokenizer::Token;
    Ok(tokens(query)?
        .into_iter()
        .filter_map(|token| match token {
            Token::Word(word) if word.quote_style.is_none() => Some(word.value.to_lowercase()),
            Token::Word(word) => Some(word.value),
            _ => None,
        })
        .collect())
}

fn tokens(query: &str) -> Result<Vec<datafusion::sql::sqlparser::tokenizer::Token>, ApiError> {
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    let tokens = Tokenizer::new(&GenericDialect {}, query)
        .tokenize()
        .map_err(|e| ApiError::unprocessable("invalid_sql", "Invalid query", first_line(&e.to_string())))?;
    Ok(tokens.into_iter().filter(|t| !matches!(t, Token::Whitespace(_))).collect())
}

/// How many tables a query reads, from its [`tokens`], before anything is parsed: each of
/// `views` each time it is named, and each common table expression each time it is named,
/// as many times as it reads in turn (at least once), saturating. The planner expands common
/// table expressions where they are read, in time that grows with the expansion: forty
/// `WITH` items each reading the one before twice (a query of 2 KB) did not finish planning,
/// as 2^40 readings. A name is taken as a reading wherever it stands but as a qualifier
/// (before a dot) or where it is defined, which can only overcount.
fn tables_read(tokens: &[datafusion::sql::sqlparser::tokenizer::Token], views: &[&str]) -> usize {
    use datafusion::sql::sqlparser::keywords::Keyword;
    use datafusion::sql::sqlparser::tokenizer::Token;
    let closing = |open: usize| {
        let mut depth = 0usize;
        for (at, token) in tokens.iter().enumerate().skip(open) {
            match token {
                Token::LParen => depth += 1,
                Token::RParen => {
                    depth -= 1;
                    if depth == 0 {
                        return at;
                    }
                }
                _ => {}
            }
        }
        tokens.len()
    };
    let opening = |close: usize| {
        let mut depth = 0usize;
        for at in (0..=close).rev() {
            match tokens[at] {
                Token::RParen => depth += 1,
                Token::LParen => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(at);
                    }
                }
                _ => {}
            }
        }
        None
    };
    // Each definition `name [(columns)] AS [[NOT] MATERIALIZED] (body)`: its name, where the
    // name stands and the span of its body.
    let mut definitions: Vec<(String, usize, std::ops::Range<usize>)> = Vec::new();
    for at in 0..tokens.len() {
        let Token::Word(word) = &tokens[at] else { continue };
        if word.keyword != Keyword::AS || word.quote_style.is_some() {
            continue;
        }
        let mut body = at + 1;
        while let Some(Token::Word(w)) = tokens.get(body)
            && matches!(w.keyword, Keyword::NOT | Keyword::MATERIALIZED)
        {
            body += 1;
        }
        if !matches!(tokens.get(body), Some(Token::LParen)) || at == 0 {
            continue;
        }
        let mut name_at = at - 1;
        if matches!(tokens[name_at], Token::RParen) {
            match opening(name_at).and_then(|open| open.checked_sub(1)) {
                Some(before) => name_at = before,
                None => continue,
            }
        }
        if let Token::Word(name) = &tokens[name_at] {
            definitions.push((name.value.to_lowercase(), name_at, body..closing(body)));
        }
    }
    // Names that can be readings: words not before a dot and not where a name is defined.
    let defined: std::collections::HashSet<usize> = definitions.iter().map(|(_, at, _)| *at).collect();
    let names: Vec<Option<String>> = tokens
        .iter()
        .enumerate()
        .map(|(at, token)| match token {
            Token::Word(w)
                if !matches!(tokens.get(at + 1), Some(Token::Period)) && !defined.contains(&at) =>
            {
                Some(w.value.to_lowercase())
            }
            _ => None,
        })
        .collect();
    // The weight of a name: a view weighs one; a definition what its body reads, at least
    // one (a definition reading no table still costs the planner a copy wherever it is read).
    // The query reads what is named outside every body.
    let mut weights: std::collections::HashMap<String, usize> =
        views.iter().map(|view| (view.to_lowercase(), 1)).collect();
    let mut heaviest = 0usize;
    let mut in_a_body = vec![false; tokens.len()];
    for (name, _, body) in &definitions {
        let mut weight = 0usize;
        for at in body.clone() {
            in_a_body[at] = true;
            if let Some(read) = names[at].as_deref().and_then(|n| weights.get(n)) {
                weight = weight.saturating_add(*read);
            }
        }
        let weight = weight.max(1);
        heaviest = heaviest.max(weight);
        weights.insert(name.clone(), weight);
    }
    let mut readings = 0usize;
    for (at, name) in names.iter().enumerate() {
        if let Some(read) = name.as_deref().filter(|_| !in_a_body[at]).and_then(|n| weights.get(n)) {
            readings = readings.saturating_add(*read);
        }
    }
    readings.max(heaviest)
}

/// Whether a token can add a level to a query's trees: every operator (a chain of them
/// parses to a tree as deep as it is long), the keywords that join terms, queries or tables,
/// and commas (which separate the tables of a join as well as the items of a list). Names,
/// literals, brackets and the dots of qualified names cannot.
fn deepens(token: &datafusion::sql::sqlparser::tokenizer::Token) -> bool {
    use datafusion::sql::sqlparser::keywords::Keyword;
    use datafusion::sql::sqlparser::tokenizer::Token;
    match token {
        Token::Word(word) => matches!(
            word.keyword,
            Keyword::AND
                | Keyword::OR
                | Keyword::XOR
                | Keyword::NOT
                | Keyword::IS
                | Keyword::LIKE
                | Keyword::ILIKE
                | Keyword::SIMILAR
                | Keyword::BETWEEN
                | Keyword::IN
                | Keyword::COLLATE
                | Keyword::AT
                | Keyword::DIV
                | Keyword::REGEXP
                | Keyword::RLIKE
                | Keyword::OVERLAPS
                | Keyword::UNION
                | Keyword::INTERSECT
                | Keyword::EXCEPT
                | Keyword::MINUS
                | Keyword::JOIN
                | Keyword::WHEN
        ),
        Token::EOF
        | Token::Whitespace(_)
        | Token::Number(..)
        | Token::Char(_)
        | Token::Placeholder(_)
        | Token::LParen
        | Token::RParen
        | Token::Period
        | Token::SemiColon
        | Token::SingleQuotedString(_)
        | Token::DoubleQuotedString(_)
        | Token::TripleSingleQuotedString(_)
        | Token::TripleDoubleQuotedString(_)
        | Token::DollarQuotedString(_)
        | Token::SingleQuotedByteStringLiteral(_)
        | Token::DoubleQuotedByteStringLiteral(_)
        | Token::TripleSingleQuotedByteStringLiteral(_)
        | Token::TripleDoubleQuotedByteStringLiteral(_)
        | Token::SingleQuotedRawStringLiteral(_)
        | Token::DoubleQuotedRawStringLiteral(_)
        | Token::TripleSingleQuotedRawStringLiteral(_)
        | Token::TripleDoubleQuotedRawStringLiteral(_)
        | Token::NationalStringLiteral(_)
        | Token::QuoteDelimitedStringLiteral(_)
        | Token::NationalQuoteDelimitedStringLiteral(_)
        | Token::EscapedStringLiteral(_)
        | Token::UnicodeStringLiteral(_)
        | Token::HexStringLiteral(_) => false,
        _ => true,
    }
}

/// A session whose catalog holds only the caller's views.
fn sandbox(
    registry: &DatasetRegistry,
    limits: &DataConfig,
    permits: &[(&Resource, Permit<'_>)],
) -> Result<SessionState, ApiError> {
    let schema = Arc::new(MemorySchemaProvider::new());
    for (resource, permit) in permits {
        let dataset = super::records::dataset(registry, resource)?;
        let columns: Vec<ViewColumn> =
            permit.items.iter().map(|i| ViewColumn { name: i.name.clone(), mask: i.mask }).collect();
        let scope =
            permit.scope.as_ref().map(|s| ViewScope { column: s.item.clone(), prefix: s.prefix.clone() });
        let view = GrantedView::try_new(Arc::clone(&dataset.table), &columns, scope.as_ref())
            .map_err(|e| ApiError::internal(&e))?;
        // Two grants on one dataset (through two resources) keep the first view: names are
        // unique and a caller cannot widen one view with another's columns.
        if schema.table_exist(&resource.dataset) {
            continue;
        }
        schema
            .register_table(resource.dataset.clone(), Arc::new(view))
            .map_err(|e| ApiError::internal(&e))?;
    }
    let catalog = Arc::new(MemoryCatalogProvider::new());
    catalog.register_schema("public", schema).map_err(|e| ApiError::internal(&e))?;
    let catalogs = Arc::new(MemoryCatalogProviderList::new());
    catalogs.register_catalog("datafusion".into(), catalog);

    let mut runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(limits.sql_memory_mib * 1024 * 1024, 1.0)
        .with_disk_manager_builder(DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled))
        .with_object_store_registry(Arc::clone(&registry.ctx.runtime_env().object_store_registry))
        .build()
        .map_err(|e| ApiError::internal(&e))?;
    // The datasets' file metadata (Parquet footers and page indexes) is cached once for every
    // call rather than read and parsed again by each call's fresh runtime. It describes the
    // files, not any caller's view; each call still has its own memory pool.
    runtime.cache_manager = Arc::clone(&registry.ctx.runtime_env().cache_manager);
    let runtime = Arc::new(runtime);
    let mut config: SessionConfig = session_config().with_create_default_catalog_and_schema(false);
    config.options_mut().execution.enable_recursive_ctes = false;
    Ok(SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_catalog_list(catalogs)
        .with_expr_planners(functions::expr_planners())
        .with_scalar_functions(functions::scalar_functions())
        .with_aggregate_functions(functions::aggregate_functions())
        .with_window_functions(functions::window_functions())
        .build())
}

/// Makes every operator of `plan` spend the task's scheduling budget on each batch it emits.
/// DataFusion yields at its sources and exchanges, but an operator that makes many batches
/// from few (a join exploding into a cross product feeding an aggregate) can run for minutes
/// inside one poll; then neither the time limit nor cancellation can stop it, and it holds a
/// worker thread. With a budget spent per batch, every operator yields regularly, so a query
/// past its time limit is dropped at its next batch.
fn yielding(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>, DataFusionError> {
    plan.transform_up(|node| {
        if node.children().is_empty() || node.as_ref().is::<CooperativeExec>() {
            Ok(Transformed::no(node))
        } else {
            Ok(Transformed::yes(Arc::new(CooperativeExec::new(node)) as Arc<dyn ExecutionPlan>))
        }
    })
    .map(|transformed| transformed.data)
}

fn invalid_sql(e: DataFusionError) -> ApiError {
    match e.find_root() {
        DataFusionError::ResourcesExhausted(_) => too_expensive(),
        root => ApiError::unprocessable("invalid_sql", "Invalid query", first_line(&root.to_string())),
    }
}

fn execution_error(e: DataFusionError) -> ApiError {
    match e.find_root() {
        DataFusionError::ResourcesExhausted(_) => too_expensive(),
        root => {
            let message = root.to_string();
            // A cluster reports its executors' errors as text inside its own.
            if message.contains("Resources exhausted") {
                too_expensive()
            } else if cluster_unreachable(&message) {
                ApiError::new(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "sql_engine_unavailable",
                    "SQL engine unavailable",
                    "the cluster that runs queries cannot be reached; try again later",
                )
            } else {
                ApiError::unprocessable("query_failed", "Query failed", first_line(&message))
            }
        }
    }
}

/// Whether a cluster's error says its scheduler or executors could not be reached, rather
/// than that the query failed.
fn cluster_unreachable(message: &str) -> bool {
    ["transport error", "Connection refused", "tcp connect error", "GrpcConnectionError"]
        .iter()
        .any(|sign| message.contains(sign))
}

fn too_expensive() -> ApiError {
    ApiError::unprocessable(
        "query_too_expensive",
        "Query needs too much memory",
        "the query needs more memory than a call may use; narrow or aggregate it",
    )
}

/// DataFusion's messages can run to a backtrace; the first line says what went wrong.
fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or_default().chars().take(500).collect()
}

fn encode(format: Format, schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>, DataFusionError> {
    let mut out = Vec::new();
    match format {
        Format::Json => {
            let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
            out.extend_from_slice(b"{\"columns\":");
            let columns: Vec<serde_json::Value> = schema
                .fields()
                .iter()
                .map(|f| serde_json::json!({"name": f.name(), "type": f.data_type().to_string()}))
                .collect();
            serde_json::to_writer(&mut out, &columns).map_err(|e| DataFusionError::External(Box::new(e)))?;
            out.extend_from_slice(format!(",\"row_count\":{rows},\"rows\":").as_bytes());
            let mut writer = arrow::json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, arrow::json::writer::JsonArray>(&mut out);
            for batch in batches {
                writer.write(batch)?;
            }
            writer.finish()?;
            drop(writer);
            out.push(b'}');
        }
        Format::Csv => {
            let mut writer = arrow::csv::WriterBuilder::new().with_header(true).build(&mut out);
            for batch in batches {
                writer.write(batch)?;
            }
        }
        Format::ArrowIpc => {
            let mut writer = arrow::ipc::writer::StreamWriter::try_new(&mut out, schema)?;
            for batch in batches {
                writer.write(batch)?;
            }
            writer.finish()?;
        }
        Format::Parquet => {
            let mut writer = parquet::arrow::ArrowWriter::try_new(&mut out, Arc::clone(schema), None)?;
            for batch in batches {
                writer.write(batch)?;
            }
            writer.close()?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(query: &str) -> usize {
        tokens(query).expect("tokens").iter().filter(|t| deepens(t)).count()
    }

    #[test]
    fn operators_commas_and_joining_keywords_count_as_terms_and_names_and_literals_do_not() {
        let cases = [
            ("SELECT count(*) FROM household", 1),
            ("SELECT h.name, h.status FROM household h WHERE h.status = '正常'", 2),
            ("SELECT 1 + 2 * 3 - 4 AS x", 3),
            ("SELECT a FROM t WHERE x IN ('a', 'b', 'c') AND NOT y LIKE '张%'", 6),
            ("SELECT a::bigint FROM t UNION ALL SELECT b FROM u JOIN v ON u.k = v.k", 4),
            ("SELECT CASE WHEN a > 1 THEN 'x' WHEN a IS NULL THEN 'y' END FROM t", 4),
            ("SELECT 'a + b, c = d' AS text, \"odd, name\" FROM t -- a, b + c", 1),
        ];
        for (query, expected) in cases {
            assert_eq!(terms(query), expected, "{query}");
        }
    }

    fn readings(query: &str) -> usize {
        tables_read(&tokens(query).expect("tokens"), &["household", "social_insurance"])
    }

    /// `levels` common table expressions over `household`, each reading the one before twice.
    fn doubling(levels: usize) -> String {
        let mut query = "WITH a0 AS (SELECT status AS x FROM household)".to_owned();
        for level in 1..=levels {
            query.push_str(&format!(
                ", a{level} AS (SELECT p.x AS x FROM a{} p, a{} q)",
                level - 1,
                level - 1
            ));
        }
        query + &format!(" SELECT count(*) FROM a{levels}")
    }

    #[test]
    fn tables_are_counted_each_time_they_are_read_with_common_table_expressions_expanded() {
        let cases = [
            ("SELECT 1", 0),
            ("SELECT * FROM household", 1),
            ("SELECT h.name FROM household h JOIN Social_Insurance s ON h.id_number = s.id_number", 2),
            ("SELECT * FROM household a, household b, \"household\" c", 3),
            ("WITH a AS (SELECT * FROM household) SELECT * FROM a", 1),
            ("WITH a AS (SELECT * FROM household) SELECT a.status, b.status FROM a, A b", 2),
            (
                "WITH a (x) AS (SELECT 1), b AS NOT MATERIALIZED (SELECT * FROM a JOIN a c ON true) \
                 SELECT * FROM b, b d",
                4,
            ),
            ("WITH a AS (SELECT 'a' AS a) SELECT 'a' FROM household", 1),
        ];
        for (query, expected) in cases {
            assert_eq!(readings(query), expected, "{query}");
        }
        assert_eq!(readings(&doubling(4)), 16);
        assert_eq!(readings(&doubling(70)), usize::MAX, "saturates");
        let refused = check_complexity(&doubling(40), &["household"]).expect_err("2^40 readings");
        assert_eq!(refused.code, "query_too_complex");
        let tables: Vec<String> = (0..33).map(|i| format!("household t{i}")).collect();
        let join = format!("SELECT count(*) FROM {}", tables.join(", "));
        assert!(check_complexity(&join, &["household"]).is_err(), "33 tables");
        assert!(check_complexity(&join, &["social_insurance"]).is_ok(), "names that are no view");
    }

    #[test]
    fn a_query_over_the_bound_of_terms_is_refused_before_it_is_parsed() {
        let chain = |n: usize| format!("SELECT {} AS total", vec!["1"; n].join(" + "));
        assert!(check_complexity(&chain(MAX_QUERY_TERMS + 1), &[]).is_ok());
        let refused = check_complexity(&chain(MAX_QUERY_TERMS + 2), &[]).expect_err("over the bound");
        assert_eq!((refused.status.as_u16(), refused.code), (422, "query_too_complex"));
        let unreadable = check_complexity("SELECT 'unterminated", &[]).expect_err("not a query");
        assert_eq!(unreadable.code, "invalid_sql");
    }
}
