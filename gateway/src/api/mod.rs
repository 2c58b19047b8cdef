//! The management API under `/api/v1`: sessions, departments, systems, users, service items,
//! the catalog, demands and grants. Every route authenticates its caller and checks the
//! caller's role; the OpenAPI 3.1 document is generated from these handlers.

use serde::{Deserialize, Serialize};
use tongban_platform::store::{Page, PageRequest};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

mod catalog;
mod demands;
mod exchanges;
mod federation;
mod feedback;
mod grants;
mod licences;
mod org;
mod quality;
mod reports;

/// The API's routes, to be nested at `/api/v1`. Each handler is registered together with its
/// OpenAPI operation, so the document lists exactly the routes served.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(org::sign_in))
        .routes(routes!(licences::seal_licence))
        .routes(routes!(licences::revoke_licence))
        .routes(routes!(licences::licence_types))
        .routes(routes!(licences::seal_certificates, licences::register_seal))
        .routes(routes!(licences::retire_seal))
        .routes(routes!(licences::lookup_licence))
        .routes(routes!(licences::verify_document))
        .routes(routes!(org::sign_out))
        .routes(routes!(org::me))
        .routes(routes!(org::change_password))
        .routes(routes!(org::list_departments, org::create_department))
        .routes(routes!(org::get_department))
        .routes(routes!(org::list_systems, org::create_system))
        .routes(routes!(org::register_certificate))
        .routes(routes!(org::rotate_api_key))
        .routes(routes!(org::set_system_enabled))
        .routes(routes!(org::list_users, org::create_user))
        .routes(routes!(org::set_user_enabled))
        .routes(routes!(org::reset_password))
        .routes(routes!(org::list_admin_actions))
        .routes(routes!(catalog::list_service_items, catalog::create_service_item))
        .routes(routes!(catalog::import_service_items))
        .routes(routes!(catalog::export_service_items))
        .routes(routes!(catalog::get_service_item))
        .routes(routes!(catalog::list_resources, catalog::create_resource))
        .routes(routes!(catalog::get_resource, catalog::edit_resource))
        .routes(routes!(catalog::get_resource_version))
        .routes(routes!(federation::list_remote_resources))
        .routes(routes!(federation::get_remote_resource))
        .routes(routes!(federation::peers))
        .routes(routes!(federation::grant_mirrors))
        .routes(routes!(demands::list_demands, demands::file_demand))
        .routes(routes!(demands::overdue_demands))
        .routes(routes!(demands::get_demand))
        .routes(routes!(demands::act))
        .routes(routes!(grants::list_grants))
        .routes(routes!(grants::in_force))
        .routes(routes!(grants::get_grant))
        .routes(routes!(grants::change_grant))
        .routes(routes!(exchanges::search))
        .routes(routes!(exchanges::stats))
        .routes(routes!(exchanges::refusals))
        .routes(routes!(exchanges::top_callers))
        .routes(routes!(exchanges::top_resources))
        .routes(routes!(exchanges::chain))
        .routes(routes!(exchanges::get_record))
        .routes(routes!(quality::report))
        .routes(routes!(feedback::list_objections, feedback::file_objection))
        .routes(routes!(feedback::get_objection))
        .routes(routes!(feedback::answer_objection))
        .routes(routes!(feedback::check_objection_key))
        .routes(routes!(feedback::list_ratings, feedback::rate))
        .routes(routes!(feedback::get_rating))
        .routes(routes!(feedback::rectify))
        .routes(routes!(reports::monthly))
}

/// The document's title, description, shared schemas and security schemes; the operations are
/// added by the routers as they are built.
pub fn document_base() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// Finishes the document once the routers added their operations: errors are documented with
/// the media type they are sent with, `application/problem+json` (RFC 9457), not as plain JSON,
/// and an operation documented under several methods (the proxy) gets an id per method, since
/// operation ids are unique.
pub fn finish_document(document: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::path::{Operation, PathItem};
    fn operations(item: &mut PathItem) -> [(&'static str, &mut Option<Operation>); 8] {
        [
            ("get", &mut item.get),
            ("put", &mut item.put),
            ("post", &mut item.post),
            ("delete", &mut item.delete),
            ("options", &mut item.options),
            ("head", &mut item.head),
            ("patch", &mut item.patch),
            ("trace", &mut item.trace),
        ]
    }
    distribute_extensions(document);
    let mut ids = std::collections::HashMap::<String, usize>::new();
    for item in document.paths.paths.values_mut() {
        for (_, operation) in operations(item) {
            if let Some(id) = operation.as_ref().and_then(|o| o.operation_id.clone()) {
                *ids.entry(id).or_default() += 1;
            }
        }
    }
    for item in document.paths.paths.values_mut() {
        for (method, operation) in operations(item) {
            let Some(operation) = operation else { continue };
            if let Some(id) = &mut operation.operation_id
                && ids.get(id.as_str()).is_some_and(|n| *n > 1)
            {
                *id = format!("{id}_{method}");
            }
            for (status, response) in &mut operation.responses.responses {
                let RefOr::T(response) = response else { continue };
                let is_error = status.starts_with('4') || status.starts_with('5');
                if let Some(content) =
                    is_error.then(|| response.content.shift_remove("application/json")).flatten()
                {
                    response.content.insert("application/problem+json".to_owned(), content);
                }
            }
            document_problems(operation);
        }
    }
}

/// Rewrites each schema that extends a choice of objects (`allOf: [choice, {fields}]`, as a
/// flattened tagged enum beside fields of its own is generated) into the choice of each object
/// with the fields added (`oneOf: [{…variant, fields}]`). The two mean the same, but client
/// generators take `allOf` only of objects, and dropped the workflow's own requests
/// (`ActionRequest`, `ChangeRequest`) from generated clients.
fn distribute_extensions(document: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::{OneOf, Schema};
    let Some(components) = document.components.as_mut() else { return };
    let choices: std::collections::HashMap<String, Vec<RefOr<Schema>>> = components
        .schemas
        .iter()
        .filter_map(|(name, schema)| match schema {
            RefOr::T(Schema::OneOf(one_of)) => Some((name.clone(), one_of.items.clone())),
            _ => None,
        })
        .collect();
    for (name, schema) in components.schemas.iter_mut() {
        let RefOr::T(Schema::AllOf(all_of)) = schema else { continue };
        let [RefOr::Ref(choice), RefOr::T(Schema::Object(fields))] = all_of.items.as_slice() else {
            continue;
        };
        let Some(variants) =
            choice.ref_location.strip_prefix("#/components/schemas/").and_then(|name| choices.get(name))
        else {
            continue;
        };
        let extended: Option<Vec<RefOr<Schema>>> = variants
            .iter()
            .map(|variant| {
                let RefOr::T(Schema::Object(variant)) = variant else { return None };
                let mut variant = variant.clone();
                for (name, property) in &fields.properties {
                    variant.properties.insert(name.clone(), property.clone());
                }
                variant.required.extend(fields.required.iter().cloned());
                variant.title = variant_tag(&variant).map(|tag| format!("{}{name}", pascal_case(tag)));
                Some(RefOr::T(Schema::Object(variant)))
            })
            .collect();
        // A choice that is not only of objects is left as it is.
        let Some(extended) = extended else { continue };
        let mut one_of = OneOf::new();
        one_of.items = extended;
        one_of.description = all_of.description.clone();
        *schema = RefOr::T(Schema::OneOf(one_of));
    }
}

/// The tag that tells a variant of a choice apart: the value of its one required property
/// that admits a single value (`"action": "submit"`).
fn variant_tag(variant: &utoipa::openapi::schema::Object) -> Option<&str> {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::Schema;
    variant.required.iter().find_map(|name| match variant.properties.get(name) {
        Some(RefOr::T(Schema::Object(property))) => match property.enum_values.as_deref() {
            Some([only]) => only.as_str(),
            _ => None,
        },
        _ => None,
    })
}

/// `supplier_approve` as `SupplierApprove`, so that a generated client names the variant
/// `SupplierApproveActionRequest`.
fn pascal_case(tag: &str) -> String {
    tag.split('_')
        .map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// Documents the refusals every operation of its kind can answer, so that a client generated
/// from the document knows each of them as a problem: 400 for a malformed request, 401 and 403
/// where a credential is needed, 404 where the path names something, 415 where a body is
/// taken, 422 for a request that is well-formed but invalid, and `default` for the rest (429
/// when rate-limited, 503 when the log or store cannot take the call), all as
/// `application/problem+json`.
fn document_problems(operation: &mut utoipa::openapi::path::Operation) {
    use utoipa::openapi::path::ParameterIn;
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
    let names_something = operation
        .parameters
        .as_ref()
        .is_some_and(|ps| ps.iter().any(|p| matches!(p.parameter_in, ParameterIn::Path)));
    let takes_body = operation.request_body.is_some();
    let problems = [
        ("400", true, "The request is malformed: a parameter, header or body that cannot be read"),
        ("401", secured, "No valid credential"),
        ("403", secured, "The caller may not do this"),
        ("404", names_something, "Nothing by that name, or nothing the caller may see"),
        ("415", takes_body, "The body is not sent in the media type the operation takes"),
        ("422", true, "The request is well-formed but invalid"),
        (
            "default",
            true,
            "Any other refusal or failure: 429 when rate-limited, 503 when the gateway cannot take the call",
        ),
    ];
    for (status, applies, description) in problems {
        if !applies || operation.responses.responses.contains_key(status) {
            continue;
        }
        let problem = ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build();
        let response = ResponseBuilder::new()
            .description(description)
            .content("application/problem+json", problem)
            .build();
        operation.responses.responses.insert(status.to_owned(), response.into());
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Tongban API", description = "Catalog, demand workflow and grants of the Tongban data-sharing gateway, and its data plane (verification, record look-up, SQL over per-grant views)."),
    components(schemas(crate::error::ProblemSchema, tongban_exchange::query::Bucket, tongban_exchange::query::GroupBy,
        tongban_policy::feedback::ObjectionState, feedback::TaskState, reports::ReportFormat, reports::ReportTable)),
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

/// A page of a list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Listing<T> {
    pub items: Vec<T>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

impl<T> Listing<T> {
    /// The page the store read, each item shown as `view` shows it.
    pub fn of<S>(page: Page<S>, view: impl FnMut(S) -> T) -> Listing<T> {
        Listing { items: page.items.into_iter().map(view).collect(), next: page.next }
    }
}

impl<T> From<Page<T>> for Listing<T> {
    fn from(page: Page<T>) -> Listing<T> {
        Listing { items: page.items, next: page.next }
    }
}

/// Paging parameters shared by lists. Every list is paged by key in the store
/// ([`PageRequest`]); lists with filters of their own repeat these two fields.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct Paging {
    /// At most this many items (1–500, default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// The `next` value of the previous page.
    pub after: Option<String>,
}

impl Paging {
    /// The page asked for, refused with 422 `invalid_limit` outside 1–500.
    pub fn request(self) -> Result<PageRequest, crate::error::ApiError> {
        page_request(self.after, self.limit)
    }
}

/// The page a list's `after` and `limit` ask for. A limit outside 1–500 is refused rather than
/// quietly changed, so a client learns the bound instead of receiving fewer items than it
/// asked for without knowing why.
pub fn page_request(
    after: Option<String>,
    limit: Option<u32>,
) -> Result<PageRequest, crate::error::ApiError> {
    match limit {
        Some(limit) if !(1..=PageRequest::MAX_LIMIT).contains(&limit) => {
            Err(crate::error::ApiError::unprocessable(
                "invalid_limit",
                "Invalid limit",
                format!("limit must be between 1 and {}, not {limit}", PageRequest::MAX_LIMIT),
            ))
        }
        _ => Ok(PageRequest { after, limit }),
    }
}
