//! The exchange log for people: search, one record, statistics, refusals, top callers and
//! resources, and the chain's audit. Operators and platform administrators see every
//! exchange; anyone else sees the calls their department made and those on resources it
//! supplies. Systems use the data plane, not this.

use std::future::Future;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiPath, ApiQuery};
use crate::state::AppState;
use tongban_exchange::query::{self, Bucket, GroupBy, QueryError, Scope};
use tongban_platform::Caller;

/// Which exchanges a question is about.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct ExchangeFilter {
    /// From this instant (RFC 3339); statistics default to the last 24 hours.
    from: Option<DateTime<Utc>>,
    /// Up to (not including) this instant.
    to: Option<DateTime<Utc>>,
    /// The calling or supplying department (operators only; others always see their own).
    department: Option<String>,
    system: Option<String>,
    resource: Option<String>,
    operation: Option<String>,
    /// The HTTP status answered.
    #[param(minimum = 100, maximum = 599)]
    status: Option<u16>,
    /// The problem code of refused or failed calls.
    code: Option<String>,
    /// Time buckets of statistics: minute, hour (default), day, month (Beijing days and
    /// months) or all.
    bucket: Option<Bucket>,
    /// Grouping of statistics: none (default), department, resource, status, operation, system,
    /// service_item or province_pair (consumer and supplier provinces).
    by: Option<GroupBy>,
    /// At most this many rows (1–1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// Only records older than this sequence number: the `next` of the previous page.
    #[param(minimum = 0)]
    before: Option<i64>,
}

impl ExchangeFilter {
    fn limit(&self) -> usize {
        self.limit.unwrap_or(100)
    }

    /// Refuses, with 422, a limit, status or sequence number outside what the document states, rather
    /// than quietly changing it.
    fn check_bounds(&self) -> Result<(), ApiError> {
        if let Some(limit) = self.limit.filter(|l| !(1..=1000).contains(l)) {
            return Err(ApiError::unprocessable(
                "invalid_limit",
                "Invalid limit",
                format!("limit must be between 1 and 1000, not {limit}"),
            ));
        }
        if let Some(status) = self.status.filter(|s| !(100..=599).contains(s)) {
            return Err(ApiError::invalid(format!("status is an HTTP status, 100 to 599, not {status}")));
        }
        if let Some(before) = self.before.filter(|b| *b < 0) {
            return Err(ApiError::invalid(format!("before is a sequence number, not {before}")));
        }
        Ok(())
    }

    /// The scope of the question for `caller`, with `default_hours` of history when no start
    /// is given.
    pub(super) fn scope(&self, caller: &Caller, default_hours: Option<i64>) -> Result<Scope, ApiError> {
        self.check_bounds()?;
        let department = match caller {
            Caller::System(_) => {
                return Err(ApiError::forbidden("the exchange log is read by people, not systems"));
            }
            _ if caller.oversees() => self.department.clone(),
            Caller::User { department, .. } => {
                if self.department.as_ref().is_some_and(|d| *d != department.code) {
                    return Err(ApiError::forbidden("only operators read other departments' exchanges"));
                }
                Some(department.code.clone())
            }
        };
        if let (Some(from), Some(to)) = (self.from, self.to)
            && from >= to
        {
            return Err(ApiError::invalid("`from` must be before `to`"));
        }
        let from = self.from.or_else(|| default_hours.map(|h| Utc::now() - chrono::Duration::hours(h)));
        Ok(Scope {
            from,
            to: self.to,
            department,
            system: self.system.clone(),
            resource: self.resource.clone(),
            operation: self.operation.clone(),
            status: self.status,
            code: self.code.clone(),
            id: None,
            province: None,
        })
    }
}

/// Answers a question over the log in `AppState`'s log directory on the SQL runtime, off the
/// threads that serve calls.
pub(super) async fn ask<T, Q>(
    state: &AppState,
    question: impl FnOnce(tongban_exchange::query::LogView) -> Q,
) -> Result<T, ApiError>
where
    Q: Future<Output = Result<T, QueryError>> + Send + 'static,
    T: Send + 'static,
{
    let data = state.data();
    data.sql_executor.offload(question(data.log.view())).await?.map_err(|e| ApiError::internal(&e))
}

/// Rows of an answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct Rows {
    #[schema(value_type = Vec<Object>)]
    rows: Vec<serde_json::Value>,
}

/// Searches exchange records, newest first.
#[utoipa::path(get, path = "/exchanges", tag = "exchange log", security(("bearer" = [])),
    params(ExchangeFilter), responses((status = 200, body = RecordPage), (status = 403, body = crate::error::ProblemSchema)))]
pub(super) async fn search(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(filter): ApiQuery<ExchangeFilter>,
) -> Result<Json<RecordPage>, ApiError> {
    let scope = filter.scope(&caller, None)?;
    let (limit, before) = (filter.limit(), filter.before.and_then(|b| u64::try_from(b).ok()));
    // One row more than the page tells whether an older page exists, so the last page never
    // offers an empty one after it.
    let mut rows =
        ask(&state, |dir| async move { query::records(&dir, &scope, before, limit + 1).await }).await?;
    let next = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().and_then(|r| r["seq"].as_u64())
    } else {
        None
    };
    Ok(Json(RecordPage { rows, next }))
}

/// A page of exchange records, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct RecordPage {
    rows: Vec<serde_json::Value>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<u64>,
}

/// One exchange record.
#[utoipa::path(get, path = "/exchanges/{id}", tag = "exchange log", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = Object), (status = 404, body = crate::error::ProblemSchema)))]
pub(super) async fn get_record(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let mut scope = ExchangeFilter::default().scope(&caller, None)?;
    scope.id = Some(id.clone());
    let mut rows = ask(&state, |dir| async move { query::records(&dir, &scope, None, 1).await }).await?;
    rows.pop().map(Json).ok_or_else(|| ApiError::not_found(format!("there is no exchange {id} you may read")))
}

/// Calls per time bucket and group: volume, successes, refusals, rate-limited and failed
/// calls, cache hits, and latency percentiles (milliseconds).
#[utoipa::path(get, path = "/exchanges/stats", tag = "exchange log", security(("bearer" = [])),
    params(ExchangeFilter), responses((status = 200, body = Rows)))]
pub(super) async fn stats(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(filter): ApiQuery<ExchangeFilter>,
) -> Result<Json<Rows>, ApiError> {
    let scope = filter.scope(&caller, Some(24))?;
    let (bucket, by) = (filter.bucket.unwrap_or(Bucket::Hour), filter.by.unwrap_or(GroupBy::None));
    let mut rows = ask(&state, |dir| async move { query::stats(&dir, &scope, bucket, by).await }).await?;
    if by == GroupBy::ProvincePair {
        // Provinces by name too, from the division table in use, so a reader need not know
        // the codes.
        for row in &mut rows {
            for side in ["consumer_province", "supplier_province"] {
                let name = row[side]
                    .as_str()
                    .and_then(|code| tongban_policy::division::find(&format!("{code}0000")))
                    .map(|division| division.name);
                row[format!("{side}_name")] = name.into();
            }
        }
    }
    Ok(Json(Rows { rows }))
}

/// Refused and failed calls by policy reason and by problem code.
#[utoipa::path(get, path = "/exchanges/refusals", tag = "exchange log", security(("bearer" = [])),
    params(ExchangeFilter), responses((status = 200, body = Object)))]
pub(super) async fn refusals(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(filter): ApiQuery<ExchangeFilter>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let scope = filter.scope(&caller, Some(24))?;
    Ok(Json(ask(&state, |dir| async move { query::refusals(&dir, &scope).await }).await?))
}

/// The systems that called most.
#[utoipa::path(get, path = "/exchanges/top-callers", tag = "exchange log", security(("bearer" = [])),
    params(ExchangeFilter), responses((status = 200, body = Rows)))]
pub(super) async fn top_callers(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(filter): ApiQuery<ExchangeFilter>,
) -> Result<Json<Rows>, ApiError> {
    let scope = filter.scope(&caller, Some(24))?;
    let limit = filter.limit().min(100);
    let rows = ask(&state, |dir| async move { query::top_callers(&dir, &scope, limit).await }).await?;
    Ok(Json(Rows { rows }))
}

/// The resources called most.
#[utoipa::path(get, path = "/exchanges/top-resources", tag = "exchange log", security(("bearer" = [])),
    params(ExchangeFilter), responses((status = 200, body = Rows)))]
pub(super) async fn top_resources(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(filter): ApiQuery<ExchangeFilter>,
) -> Result<Json<Rows>, ApiError> {
    let scope = filter.scope(&caller, Some(24))?;
    let limit = filter.limit().min(100);
    let rows = ask(&state, |dir| async move { query::top_resources(&dir, &scope, limit).await }).await?;
    Ok(Json(Rows { rows }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct ChainQuery {
    /// A head an earlier audit saw, as `SEQ:HASH`: the log must still lead through it.
    expect_head: Option<String>,
}

/// Checks the whole chain now, as `tongban audit verify` does, against the configured
/// retention and an expected head when given: operators and platform administrators only.
#[utoipa::path(get, path = "/exchanges/chain", tag = "exchange log", security(("bearer" = [])),
    params(ChainQuery),
    responses((status = 200, body = Object), (status = 403, body = crate::error::ProblemSchema)))]
pub(super) async fn chain(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ChainQuery>,
) -> Result<Json<tongban_exchange::audit::Report>, ApiError> {
    if !caller.oversees() {
        return Err(ApiError::forbidden("the chain's audit is for operators and platform administrators"));
    }
    let head = query
        .expect_head
        .map(|h| h.parse::<tongban_exchange::audit::ExpectedHead>())
        .transpose()
        .map_err(|why| ApiError::invalid(format!("expect_head: {why}")))?;
    let expected = tongban_exchange::audit::Expectations {
        retention_days: state.data().log.retention_days(),
        head,
        ..Default::default()
    };
    let dir = state.data().log.dir().to_owned();
    let report =
        tokio::task::spawn_blocking(move || tongban_exchange::audit::verify_against(&dir, &expected))
            .await
            .map_err(|e| ApiError::internal(&e))?
            .map_err(|e| ApiError::internal(&e))?;
    Ok(Json(report))
}
