//! The management API under `/api/v1`: sessions, departments, systems, users, service items,
//! the catalog, demands and grants. Every route authenticates its caller and checks the
//! caller's role; the OpenAPI 3.1 document is generated from these handlers.

use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::OpenApi;

use crate::state::AppState;

mod catalog;
mod demands;
mod exchanges;
mod grants;
mod org;
mod quality;

/// The API's routes, to be nested at `/api/v1`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/openapi.json", get(openapi))
        .route("/sessions", post(org::sign_in))
        .route("/sessions/current", axum::routing::delete(org::sign_out))
        .route("/me", get(org::me))
        .route("/me/password", axum::routing::put(org::change_password))
        .route("/departments", get(org::list_departments).post(org::create_department))
        .route("/departments/{code}", get(org::get_department))
        .route("/systems", get(org::list_systems).post(org::create_system))
        .route("/systems/{id}/certificate", axum::routing::put(org::register_certificate))
        .route("/systems/{id}/api-key", post(org::rotate_api_key))
        .route("/systems/{id}/enabled", axum::routing::put(org::set_system_enabled))
        .route("/users", get(org::list_users).post(org::create_user))
        .route("/users/{username}/enabled", axum::routing::put(org::set_user_enabled))
        .route("/users/{username}/password", axum::routing::put(org::reset_password))
        .route("/admin-actions", get(org::list_admin_actions))
        .route("/service-items", get(catalog::list_service_items).post(catalog::create_service_item))
        .route("/service-items/{code}", get(catalog::get_service_item))
        .route("/catalog/resources", get(catalog::list_resources).post(catalog::create_resource))
        .route("/catalog/resources/{code}", get(catalog::get_resource).put(catalog::edit_resource))
        .route("/catalog/resources/{code}/versions/{version}", get(catalog::get_resource_version))
        .route("/demands", get(demands::list_demands).post(demands::file_demand))
        .route("/demands/overdue", get(demands::overdue_demands))
        .route("/demands/{id}", get(demands::get_demand))
        .route("/demands/{id}/actions", post(demands::act))
        .route("/grants", get(grants::list_grants))
        .route("/grants/in-force", get(grants::in_force))
        .route("/grants/{id}", get(grants::get_grant))
        .route("/grants/{id}/changes", post(grants::change_grant))
        .route("/exchanges", get(exchanges::search))
        .route("/exchanges/stats", get(exchanges::stats))
        .route("/exchanges/refusals", get(exchanges::refusals))
        .route("/exchanges/top-callers", get(exchanges::top_callers))
        .route("/exchanges/top-resources", get(exchanges::top_resources))
        .route("/exchanges/chain", get(exchanges::chain))
        .route("/exchanges/{id}", get(exchanges::get_record))
        .route("/quality", get(quality::report))
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Tongban API", description = "Catalog, demand workflow and grants of the Tongban data-sharing gateway, and its data plane (verification, record look-up, SQL over per-grant views)."),
    paths(
        org::sign_in, org::sign_out, org::me, org::change_password, org::list_departments, org::create_department, org::get_department,
        org::list_systems, org::create_system, org::register_certificate, org::rotate_api_key, org::set_system_enabled, org::list_users, org::create_user, org::set_user_enabled, org::reset_password, org::list_admin_actions,
        catalog::list_service_items, catalog::create_service_item, catalog::get_service_item,
        catalog::list_resources, catalog::create_resource, catalog::get_resource, catalog::edit_resource,
        catalog::get_resource_version,
        demands::list_demands, demands::file_demand, demands::overdue_demands, demands::get_demand, demands::act,
        grants::list_grants, grants::in_force, grants::get_grant, grants::change_grant,
        exchanges::search, exchanges::get_record, exchanges::stats, exchanges::refusals,
        exchanges::top_callers, exchanges::top_resources, exchanges::chain,
        quality::report,
        crate::data::calls::verify::verify, crate::data::calls::lookup::lookup, crate::data::calls::sql::run_sql,
        crate::data::calls::proxy::proxy_call,
    ),
    components(schemas(crate::error::ProblemSchema)),
    modifiers(&Security),
)]
struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A session token from POST /api/v1/sessions (tbs_…) or a system's API key (tbk_…).",
                    ))
                    .build(),
            ),
        );
    }
}

/// The OpenAPI document.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(openapi_document())
}

/// A page of a list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Listing<T> {
    pub items: Vec<T>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Paging parameters shared by lists.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct Paging {
    /// At most this many items (1–500, default 100).
    pub limit: Option<u32>,
    /// The `next` value of the previous page.
    pub after: Option<String>,
}

impl Paging {
    pub fn limit(&self) -> u32 {
        self.limit.unwrap_or(100).clamp(1, 500)
    }

    /// Pages a list already sorted by `key`.
    pub fn apply<T>(&self, items: Vec<T>, key: impl Fn(&T) -> String) -> Listing<T> {
        let limit = self.limit() as usize;
        let mut rest: Vec<T> = items
            .into_iter()
            .filter(|item| self.after.as_ref().is_none_or(|after| key(item) > *after))
            .collect();
        let next = if rest.len() > limit {
            rest.truncate(limit);
            rest.last().map(&key)
        } else {
            None
        };
        Listing { items: rest, next }
    }
}
