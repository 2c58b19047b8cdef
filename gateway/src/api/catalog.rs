//! Service items and the versioned catalog.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Deserialize;
use tongban_policy::catalog::{Resource, ShareType};
use tongban_policy::org::{ServiceItem, ServiceItemInput};

use super::{Listing, Paging};
use crate::error::{ApiCsv, ApiError, ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;
use tongban_platform::store::ResourceFilter;
use tongban_platform::{Caller, ImportSummary, ResourceInput};

/// Lists service items (事项).
#[utoipa::path(get, path = "/service-items", tag = "catalog", security(("bearer" = [])), params(Paging),
    responses((status = 200, body = Listing<ServiceItem>), (status = 401, body = crate::error::ProblemSchema)))]
pub(super) async fn list_service_items(
    State(state): State<AppState>,
    _caller: Caller,
    ApiQuery(paging): ApiQuery<Paging>,
) -> Result<Json<Listing<ServiceItem>>, ApiError> {
    Ok(Json(state.platform().store.service_items_page(&paging.request()?).await?.into()))
}

/// Registers a service item (platform administrators). Its source records who registered it
/// and when.
#[utoipa::path(post, path = "/service-items", tag = "catalog", security(("bearer" = [])),
    request_body = ServiceItemInput,
    responses((status = 201, body = ServiceItem), (status = 403, body = crate::error::ProblemSchema),
        (status = 409, body = crate::error::ProblemSchema)))]
pub(super) async fn create_service_item(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(item): ApiJson<ServiceItemInput>,
) -> Result<(StatusCode, Json<ServiceItem>), ApiError> {
    Ok((StatusCode::CREATED, Json(state.platform().create_service_item(&caller, item).await?)))
}

/// Imports a service-item list (事项清单) in the CSV format of `docs/service-items.md`
/// (platform administrators). New codes are registered and changed ones stored anew; when
/// any row is bad, nothing is written and every bad row is named by its line.
#[utoipa::path(post, path = "/service-items/import", tag = "catalog", security(("bearer" = [])),
    request_body(content = String, content_type = "text/csv", description = "The list, UTF-8, with a header row."),
    responses((status = 200, body = ImportSummary), (status = 403, body = crate::error::ProblemSchema),
        (status = 422, body = crate::error::ProblemSchema)))]
pub(super) async fn import_service_items(
    State(state): State<AppState>,
    caller: Caller,
    ApiCsv(text): ApiCsv,
) -> Result<Json<ImportSummary>, ApiError> {
    Ok(Json(state.platform().import_service_items(&caller, &text).await?))
}

/// Exports every service item as a list in the import format: UTF-8 CSV with a byte-order
/// mark and Chinese headers, which spreadsheet programs open as they are.
#[utoipa::path(get, path = "/service-items/export", tag = "catalog", security(("bearer" = [])),
    responses((status = 200, content_type = "text/csv", body = String)))]
pub(super) async fn export_service_items(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    let items = state.platform().store.service_items().await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"service-items.csv\""),
        ],
        tongban_platform::service_items::write(&items),
    ))
}

/// One service item.
#[utoipa::path(get, path = "/service-items/{code}", tag = "catalog", security(("bearer" = [])),
    params(("code" = String, Path)),
    responses((status = 200, body = ServiceItem), (status = 404, body = crate::error::ProblemSchema)))]
pub(super) async fn get_service_item(
    State(state): State<AppState>,
    _caller: Caller,
    ApiPath(code): ApiPath<String>,
) -> Result<Json<ServiceItem>, ApiError> {
    Ok(Json(state.platform().store.service_item(&code).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct ResourceQuery {
    /// Only resources of this supplier (credit code).
    supplier: Option<String>,
    share_type: Option<ShareType>,
    /// Only resources serving this service item.
    service_item: Option<String>,
    /// Only resources bound to this dataset.
    dataset: Option<String>,
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    after: Option<String>,
}

/// Lists the catalog's resources at their newest versions.
#[utoipa::path(get, path = "/catalog/resources", tag = "catalog", security(("bearer" = [])),
    params(ResourceQuery),
    responses((status = 200, body = Listing<Resource>), (status = 401, body = crate::error::ProblemSchema)))]
pub(super) async fn list_resources(
    State(state): State<AppState>,
    _caller: Caller,
    ApiQuery(query): ApiQuery<ResourceQuery>,
) -> Result<Json<Listing<Resource>>, ApiError> {
    let filter = ResourceFilter {
        supplier: query.supplier,
        share_type: query.share_type,
        service_item: query.service_item,
        dataset: query.dataset,
    };
    let page = super::page_request(query.after, query.limit)?;
    Ok(Json(state.platform().store.resources_page(&filter, &page).await?.into()))
}

/// Registers a resource of the caller's supplying department as version 1.
#[utoipa::path(post, path = "/catalog/resources", tag = "catalog", security(("bearer" = [])),
    request_body = ResourceInput,
    responses((status = 201, body = Resource), (status = 403, body = crate::error::ProblemSchema),
        (status = 409, body = crate::error::ProblemSchema), (status = 422, body = crate::error::ProblemSchema)))]
pub(super) async fn create_resource(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(input): ApiJson<ResourceInput>,
) -> Result<(StatusCode, Json<Resource>), ApiError> {
    Ok((StatusCode::CREATED, Json(state.platform().create_resource(&caller, input).await?)))
}

/// A resource at its newest version.
#[utoipa::path(get, path = "/catalog/resources/{code}", tag = "catalog", security(("bearer" = [])),
    params(("code" = String, Path)),
    responses((status = 200, body = Resource), (status = 404, body = crate::error::ProblemSchema)))]
pub(super) async fn get_resource(
    State(state): State<AppState>,
    _caller: Caller,
    ApiPath(code): ApiPath<String>,
) -> Result<Json<Resource>, ApiError> {
    Ok(Json(state.platform().store.resource(&code, None).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ResourceEdit {
    /// The version the edit was made from; an outdated one is a conflict.
    version: u32,
    resource: ResourceInput,
}

/// Edits a resource: stores the next version. Grants keep the version they were approved on.
#[utoipa::path(put, path = "/catalog/resources/{code}", tag = "catalog", security(("bearer" = [])),
    params(("code" = String, Path)), request_body = ResourceEdit,
    responses((status = 200, body = Resource), (status = 403, body = crate::error::ProblemSchema),
        (status = 409, body = crate::error::ProblemSchema), (status = 422, body = crate::error::ProblemSchema)))]
pub(super) async fn edit_resource(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(code): ApiPath<String>,
    ApiJson(edit): ApiJson<ResourceEdit>,
) -> Result<Json<Resource>, ApiError> {
    Ok(Json(state.platform().edit_resource(&caller, &code, edit.version, edit.resource).await?))
}

/// A resource at a given version.
#[utoipa::path(get, path = "/catalog/resources/{code}/versions/{version}", tag = "catalog",
    security(("bearer" = [])), params(("code" = String, Path), ("version" = u32, Path)),
    responses((status = 200, body = Resource), (status = 404, body = crate::error::ProblemSchema)))]
pub(super) async fn get_resource_version(
    State(state): State<AppState>,
    _caller: Caller,
    ApiPath((code, version)): ApiPath<(String, String)>,
) -> Result<Json<Resource>, ApiError> {
    let version: u32 = version.parse().map_err(|_| ApiError::not_found(format!("version {version:?}")))?;
    Ok(Json(state.platform().store.resource(&code, Some(version)).await?))
}
