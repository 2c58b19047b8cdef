//! Grants: reading them, and suspending, resuming, revoking or narrowing them.

use axum::Json;
use axum::extract::State;
use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};
use tongban_policy::grant::{Effective, Grant, GrantChange};
use tongban_policy::org::UserRole;

use super::{Listing, Paging};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;
use tongban_platform::Caller;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct GrantView {
    /// Name it when changing the grant.
    version: i64,
    /// Whether it allows calls today.
    effective: Effective,
    grant: Grant,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct GrantVersion {
    grant: Grant,
    changed_by: String,
    reason: Option<String>,
    #[serde(serialize_with = "tongban_policy::time::rfc3339::serialize")]
    at: NaiveDateTime,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct GrantDetail {
    #[serde(flatten)]
    current: GrantView,
    /// Every version, oldest first.
    versions: Vec<GrantVersion>,
}

/// Lists grants: a department's own and those on its resources, reviewers those on their
/// province's data, those who oversee the platform all (the rule of `may_read_grant`).
#[utoipa::path(get, path = "/grants", tag = "grants", security(("bearer" = [])), params(Paging),
    responses((status = 200, body = Listing<GrantView>), (status = 401, body = crate::error::ProblemSchema)))]
pub(super) async fn list_grants(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(paging): ApiQuery<Paging>,
) -> Result<Json<Listing<GrantView>>, ApiError> {
    let platform = state.platform();
    let page = platform.list_grants(&caller, &paging.request()?).await?;
    let today = platform.now().date();
    Ok(Json(Listing::of(page, |record| GrantView {
        version: record.version,
        effective: record.grant.effective(today),
        grant: record.grant,
    })))
}

/// The grants in force for the calling system, as the data plane sees them right now.
#[utoipa::path(get, path = "/grants/in-force", tag = "grants", security(("bearer" = [])),
    responses((status = 200, body = Listing<Grant>), (status = 403, body = crate::error::ProblemSchema)))]
pub(super) async fn in_force(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Listing<Grant>>, ApiError> {
    let Caller::System(identity) = &caller else {
        return Err(ApiError::forbidden("grants in force are asked for by a system, with its API key"));
    };
    let snapshot = state.platform().grants.snapshot();
    let today = state.platform().now().date();
    let system = &identity.system;
    let items = snapshot.grants.in_force(&system.department_code, &system.id, today).cloned().collect();
    Ok(Json(Listing { items, next: None }))
}

/// One grant with its versions.
#[utoipa::path(get, path = "/grants/{id}", tag = "grants", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = GrantDetail), (status = 403, body = crate::error::ProblemSchema),
        (status = 404, body = crate::error::ProblemSchema)))]
pub(super) async fn get_grant(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<GrantDetail>, ApiError> {
    let platform = state.platform();
    let record = platform.store.grant(&id).await?;
    if !platform.may_read_grant(&caller, &record.grant).await? {
        return Err(ApiError::forbidden(format!("grant {id} is not the caller's to see")));
    }
    let versions = platform
        .store
        .grant_versions(&id)
        .await?
        .into_iter()
        .map(|(grant, changed_by, reason, at)| GrantVersion { grant, changed_by, reason, at })
        .collect();
    let effective = record.grant.effective(state.platform().now().date());
    Ok(Json(GrantDetail {
        current: GrantView { version: record.version, effective, grant: record.grant },
        versions,
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(super) struct ChangeRequest {
    /// The version the change was decided on.
    version: i64,
    reason: String,
    #[serde(flatten)]
    change: GrantChange,
}

/// Suspends, resumes, revokes or narrows a grant (the supplier's administrators and the
/// reviewers of its province). Takes effect on the data plane before the answer is sent.
#[utoipa::path(post, path = "/grants/{id}/changes", tag = "grants", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = ChangeRequest,
    responses((status = 200, body = GrantView), (status = 403, body = crate::error::ProblemSchema),
        (status = 409, body = crate::error::ProblemSchema), (status = 422, body = crate::error::ProblemSchema)))]
pub(super) async fn change_grant(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(request): ApiJson<ChangeRequest>,
) -> Result<Json<GrantView>, ApiError> {
    caller.require(&[UserRole::SupplierAdmin, UserRole::DataOfficeReviewer])?;
    let record =
        state.platform().change_grant(&caller, &id, request.version, request.change, &request.reason).await?;
    let effective = record.grant.effective(state.platform().now().date());
    Ok(Json(GrantView { version: record.version, effective, grant: record.grant }))
}
