//! Demands (需求清单) and the workflow steps on them.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{NaiveDate, NaiveDateTime};
use serde::{Deserialize, Serialize};
use tongban_policy::org::UserRole;
use tongban_policy::workflow::{Action, DemandState, Reasoned, Side, StageClock, Terms, Transition};

use super::Listing;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;
use tongban_platform::store::{DemandFilter, DemandRecord};
use tongban_platform::{Caller, DemandInput};

/// A demand as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct DemandView {
    id: String,
    /// Name it when acting, so two reviewers cannot overwrite each other.
    version: i64,
    applicant_department: String,
    applicant_system: Option<String>,
    resource_code: String,
    resource_version: i64,
    supplier_department: String,
    service_item: String,
    purpose: String,
    legal_basis: String,
    state: DemandState,
    supplier_review: bool,
    requested: Terms,
    approved: Option<Terms>,
    refusal: Option<Reasoned>,
    /// The running (or, during a correction, paused) review stage's clock.
    clock: Option<StageClock>,
    overdue: bool,
    history: Vec<Transition>,
    #[serde(serialize_with = "tongban_policy::time::rfc3339::serialize")]
    created_at: NaiveDateTime,
    #[serde(serialize_with = "tongban_policy::time::rfc3339::serialize")]
    updated_at: NaiveDateTime,
    /// For a demand that crosses gateways: the peer gateway on the other side.
    peer: Option<String>,
    /// For a demand that crosses gateways: this gateway's side. Each step is taken on one
    /// side only; the other side shows it once the hand-off arrives.
    side: Option<Side>,
}

impl DemandView {
    fn of(record: DemandRecord, today: NaiveDate) -> Self {
        let filing = record.filing;
        let workflow = filing.workflow;
        DemandView {
            id: record.id,
            version: record.version,
            applicant_department: filing.applicant_department,
            applicant_system: filing.applicant_system,
            resource_code: filing.resource_code,
            resource_version: filing.resource_version,
            supplier_department: filing.supplier_department,
            service_item: filing.service_item,
            purpose: filing.purpose,
            legal_basis: filing.legal_basis,
            state: workflow.state,
            supplier_review: workflow.supplier_review,
            overdue: workflow.is_overdue(today),
            requested: workflow.requested,
            approved: workflow.approved,
            refusal: workflow.refusal,
            clock: workflow.clock,
            history: workflow.history,
            created_at: record.created_at,
            updated_at: record.updated_at,
            peer: filing.crossing.as_ref().map(|c| c.peer.clone()),
            side: filing.crossing.as_ref().map(|c| c.side),
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct DemandQuery {
    state: Option<DemandState>,
    /// The demanding department (credit code).
    applicant: Option<String>,
    /// The supplying department (credit code).
    supplier: Option<String>,
    resource: Option<String>,
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    after: Option<String>,
}

/// Lists demands the caller may see: a department sees its own and those it must answer,
/// reviewers those on their province's data, and those who oversee the platform all.
#[utoipa::path(get, path = "/demands", tag = "demands", security(("bearer" = [])), params(DemandQuery),
    responses((status = 200, body = Listing<DemandView>), (status = 401, body = crate::error::ProblemSchema),
        (status = 403, body = crate::error::ProblemSchema)))]
pub(super) async fn list_demands(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<DemandQuery>,
) -> Result<Json<Listing<DemandView>>, ApiError> {
    let filter = state.platform().demand_scope(
        &caller,
        DemandFilter {
            state: query.state,
            applicant_department: query.applicant,
            resource_code: query.resource,
            supplier_department: query.supplier,
            office_province: None,
        },
    )?;
    let page = super::page_request(query.after, query.limit)?;
    let page = state.platform().store.list_demands(&filter, &page).await?;
    let today = state.platform().now().date();
    Ok(Json(Listing::of(page, |d| DemandView::of(d, today))))
}

/// Files a demand as a draft (demanders).
#[utoipa::path(post, path = "/demands", tag = "demands", security(("bearer" = [])), request_body = DemandInput,
    responses((status = 201, body = DemandView), (status = 403, body = crate::error::ProblemSchema),
        (status = 422, body = crate::error::ProblemSchema)))]
pub(super) async fn file_demand(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(input): ApiJson<DemandInput>,
) -> Result<(StatusCode, Json<DemandView>), ApiError> {
    let record = state.platform().file_demand(&caller, input).await?;
    Ok((StatusCode::CREATED, Json(DemandView::of(record, state.platform().now().date()))))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct OverdueQuery {
    /// The day to judge on (YYYY-MM-DD); today when absent.
    on: Option<NaiveDate>,
}

/// Demands whose running review stage is past its deadline (reviewers and operators).
#[utoipa::path(get, path = "/demands/overdue", tag = "demands", security(("bearer" = [])),
    params(OverdueQuery),
    responses((status = 200, body = Listing<DemandView>), (status = 403, body = crate::error::ProblemSchema)))]
pub(super) async fn overdue_demands(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<OverdueQuery>,
) -> Result<Json<Listing<DemandView>>, ApiError> {
    caller.require(&[UserRole::DataOfficeReviewer, UserRole::Operator, UserRole::PlatformAdmin])?;
    let filter = state.platform().demand_scope(&caller, DemandFilter::default())?;
    let on = query.on.unwrap_or_else(|| state.platform().now().date());
    let overdue = state.platform().store.overdue_demands(on, &filter).await?;
    Ok(Json(Listing { items: overdue.into_iter().map(|d| DemandView::of(d, on)).collect(), next: None }))
}

/// One demand with its history.
#[utoipa::path(get, path = "/demands/{id}", tag = "demands", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = DemandView), (status = 403, body = crate::error::ProblemSchema),
        (status = 404, body = crate::error::ProblemSchema)))]
pub(super) async fn get_demand(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<DemandView>, ApiError> {
    let platform = state.platform();
    let record = platform.store.demand(&id).await?;
    if !platform.may_read_demand(&caller, &record).await? {
        return Err(ApiError::forbidden(format!("demand {id} is not the caller's to see")));
    }
    Ok(Json(DemandView::of(record, state.platform().now().date())))
}

/// A workflow step, naming the version of the demand it was decided on.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(super) struct ActionRequest {
    version: i64,
    #[serde(flatten)]
    action: Action,
}

/// Takes a workflow step: submit, pass or refuse the conformity check, request a correction,
/// resubmit, answer as supplier, dispute, decide, withdraw.
#[utoipa::path(post, path = "/demands/{id}/actions", tag = "demands", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = ActionRequest,
    responses((status = 200, body = DemandView), (status = 403, body = crate::error::ProblemSchema),
        (status = 404, body = crate::error::ProblemSchema), (status = 409, body = crate::error::ProblemSchema),
        (status = 422, body = crate::error::ProblemSchema)))]
pub(super) async fn act(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(request): ApiJson<ActionRequest>,
) -> Result<Json<DemandView>, ApiError> {
    let record = state.platform().act_on_demand(&caller, &id, request.version, request.action).await?;
    Ok(Json(DemandView::of(record, state.platform().now().date())))
}
