//! `GET /api/v1/quality`: the quality indicators data offices and operators watch.

use axum::Json;
use axum::extract::State;
use chrono::NaiveDate;
use serde::Serialize;
use tongban_policy::org::UserRole;
use tongban_policy::workflow::DemandState;

use crate::error::ApiError;
use crate::quality::{OUTSIDE_GRANT_REASONS, OUTSIDE_VALIDITY_REASONS, ResourceQuality};
use crate::state::AppState;
use tongban_platform::Caller;
use tongban_platform::store::{DemandFilter, PageRequest};

/// One demand's review deadlines.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct DemandDeadlines {
    id: String,
    resource_code: String,
    applicant_department: String,
    state: DemandState,
    /// The running stage's deadline.
    deadline: Option<NaiveDate>,
    /// The running stage is past its deadline.
    overdue: bool,
    /// Review stages decided (or paused) within their deadline, and after it.
    stages_in_time: u32,
    stages_late: u32,
}

#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub(super) struct DemandSummary {
    stages_in_time: u32,
    stages_late: u32,
    running_in_time: u32,
    running_overdue: u32,
}

/// Calls of the last 24 hours refused for reaching outside their grants or their validity.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub(super) struct CallSummary {
    outside_grant: i64,
    outside_validity: i64,
    #[schema(value_type = Vec<Object>)]
    by_reason: Vec<serde_json::Value>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct QualityReport {
    as_of: NaiveDate,
    resources: Vec<ResourceQuality>,
    demands: Vec<DemandDeadlines>,
    demand_summary: DemandSummary,
    calls: CallSummary,
}

/// Quality indicators: freshness and defect rate per resource, review deadlines per demand,
/// and refused calls outside grants or validity (reviewers, operators, administrators).
#[utoipa::path(get, path = "/quality", tag = "exchange log", security(("bearer" = [])),
    responses((status = 200, body = QualityReport), (status = 403, body = crate::error::ProblemSchema),
        (status = 503, body = crate::error::ProblemSchema)))]
pub(super) async fn report(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<QualityReport>, ApiError> {
    caller.require(&[UserRole::DataOfficeReviewer, UserRole::Operator, UserRole::PlatformAdmin])?;
    let today = state.platform().now().date();
    let registry = match state.readiness() {
        crate::datasets::Readiness::Ready(registry) => registry,
        _ => return Err(ApiError::not_ready("datasets are not loaded yet")),
    };
    let snapshot = state.platform().grants.snapshot();
    let mut codes: Vec<&String> = snapshot.resources.keys().collect();
    codes.sort();
    let mut resources = Vec::new();
    for code in codes {
        let resource = &snapshot.resources[code];
        if !registry.datasets.contains_key(&resource.dataset) {
            continue;
        }
        let measured = state
            .quality()
            .get(&state.data().sql_executor, &registry, resource, today)
            .await
            .map_err(|e| ApiError::internal(&e))?;
        resources.push((*measured).clone());
    }

    // Reviewers count the demands on their province's data, as they list them.
    let filter = state.platform().demand_scope(&caller, DemandFilter::default())?;
    let mut demands = Vec::new();
    let mut summary = DemandSummary::default();
    let mut after: Option<String> = None;
    loop {
        let request = PageRequest { after: after.take(), limit: Some(PageRequest::MAX_LIMIT) };
        let page = state.platform().store.list_demands(&filter, &request).await?;
        for record in page.items {
            let workflow = &record.filing.workflow;
            let (mut in_time, mut late) = (0, 0);
            for transition in &workflow.history {
                match transition.met_deadline() {
                    Some(true) => in_time += 1,
                    Some(false) => late += 1,
                    None => {}
                }
            }
            let running = workflow.state.running_stage().is_some();
            let overdue = workflow.is_overdue(today);
            summary.stages_in_time += in_time;
            summary.stages_late += late;
            summary.running_overdue += u32::from(overdue);
            summary.running_in_time += u32::from(running && !overdue);
            demands.push(DemandDeadlines {
                id: record.id,
                resource_code: record.filing.resource_code,
                applicant_department: record.filing.applicant_department,
                state: workflow.state,
                deadline: workflow.clock.filter(|_| running).map(|c| c.deadline),
                overdue,
                stages_in_time: in_time,
                stages_late: late,
            });
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }

    // The refused calls the caller may read, by the exchange routes' own rule.
    let scope = super::exchanges::ExchangeFilter::default().scope(&caller, Some(24))?;
    let refusals =
        super::exchanges::ask(
            &state,
            |dir| async move { tongban_exchange::query::refusals(&dir, &scope).await },
        )
        .await?;
    let mut calls = CallSummary::default();
    for row in refusals["by_reason"].as_array().into_iter().flatten() {
        let reason = row["reason"].as_str().unwrap_or_default();
        let count = row["calls"].as_i64().unwrap_or(0);
        if OUTSIDE_GRANT_REASONS.contains(&reason) {
            calls.outside_grant += count;
        } else if OUTSIDE_VALIDITY_REASONS.contains(&reason) {
            calls.outside_validity += count;
        }
        calls.by_reason.push(row.clone());
    }
    Ok(Json(QualityReport { as_of: today, resources, demands, demand_summary: summary, calls }))
}
