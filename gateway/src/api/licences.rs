//! Issuing sealed licence documents: a system of the department that supplies a licence
//! register asks for a licence of its register as a document under the department's seal.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use tongban_platform::Caller;

use tongban_policy::catalog::Resource;
use tongban_policy::licence::{LicenceDocument, RecordedStatus};

use crate::datasets::Readiness;
use crate::error::{ApiError, ApiJson, ApiQuery};
use crate::seals::SealedLicence;
use crate::state::AppState;

/// A licence of the caller's own register: the resource (which the caller's department must
/// supply), the register's record of `number` and its status with revocations.
async fn own_licence(
    state: &AppState,
    caller: &Caller,
    code: &str,
    number: &str,
) -> Result<(Resource, LicenceDocument, RecordedStatus), ApiError> {
    let resource = state.platform().grants.snapshot().resources.get(code).cloned().ok_or_else(|| {
        ApiError::not_found(format!("there is no catalog resource {code}")).with_code("unknown_resource")
    })?;
    if resource.supplier != caller.department().code {
        return Err(ApiError::forbidden(
            "only the department that supplies the register issues or revokes its licences",
        )
        .with_code("not_the_issuer"));
    }
    let Readiness::Ready(registry) = state.readiness() else {
        return Err(ApiError::not_ready("datasets are not loaded"));
    };
    let (document, recorded) = crate::data::calls::licence::registered_document(
        &registry,
        &state.data().store,
        &resource,
        number,
        None,
    )
    .await?
    .ok_or_else(|| ApiError::not_found("the register holds no such licence").with_code("record_not_found"))?;
    Ok((resource, document, recorded))
}

/// How a sealed licence is answered.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct SealFormat {
    /// `json` (the default): the sealed document; `html`: a page people read, carrying the
    /// sealed document for machines.
    #[serde(default)]
    format: Option<String>,
}

/// A licence to seal.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SealRequest {
    /// The catalog resource of the register.
    pub(crate) resource: String,
    /// 证照编号.
    pub(crate) number: String,
}

/// Seals a licence of the caller's own register as a document (签发电子证照): the register's
/// contents in canonical form, signed with the department's seal. Only the supplying
/// department's systems may ask, and only while the licence stands.
#[utoipa::path(post, path = "/licences/seal", tag = "licences", security(("bearer" = [])),
    request_body = SealRequest, params(SealFormat),
    responses((status = 200, body = SealedLicence, description = "the sealed document, or with format=html a page (text/html)"), (status = 403, body = crate::error::ProblemSchema),
        (status = 404, body = crate::error::ProblemSchema), (status = 422, body = crate::error::ProblemSchema)))]
pub(crate) async fn seal_licence(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(format): ApiQuery<SealFormat>,
    ApiJson(request): ApiJson<SealRequest>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let html = match format.format.as_deref() {
        None | Some("json") => false,
        Some("html") => true,
        Some(other) => {
            return Err(ApiError::unprocessable(
                "invalid_format",
                "Unknown format",
                format!("format is json or html, not {other}"),
            ));
        }
    };
    if !matches!(caller, Caller::System(_)) {
        return Err(ApiError::forbidden("licences are sealed by the issuing department's systems"));
    }
    let (resource, document, recorded) =
        own_licence(&state, &caller, &request.resource, &request.number).await?;
    let today = state.platform().now().date();
    let standing = tongban_policy::licence::status(recorded, document.issued_on, document.valid_until, today);
    if standing != tongban_policy::licence::LicenceStatus::Valid {
        return Err(ApiError::unprocessable(
            "licence_not_valid",
            "The licence does not stand",
            format!("the licence is {standing:?} and is not sealed again").to_lowercase(),
        ));
    }
    document.check_form().map_err(|e| {
        ApiError::unprocessable(
            "malformed_document",
            "The register's licence is not well formed",
            e.to_string(),
        )
    })?;
    let sealed = state.data().seals.seal(&resource.supplier, document).ok_or_else(|| {
        ApiError::unprocessable(
            "no_seal",
            "No seal",
            "this gateway holds no seal key for the department (data.seals.dir)",
        )
    })?;
    // Every document issued is in the management trail, with the seal it was issued under.
    let actor = caller.actor();
    let acting = tongban_platform::store::Acting { by: &actor, at: state.platform().now() };
    let detail = serde_json::json!({
        "resource": resource.code,
        "verification_code": sealed.verification_code,
        "seal": crate::seals::fingerprint(&sealed.seal),
    });
    state
        .platform()
        .store
        .record_licence_action(acting, "licence.sealed", &sealed.document.number, detail)
        .await?;
    if html {
        let page = crate::seals::render_html(&sealed);
        return Ok(([(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response());
    }
    Ok(Json(sealed).into_response())
}

/// A licence to revoke.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RevokeRequest {
    /// The catalog resource of the register.
    pub(crate) resource: String,
    /// 证照编号.
    pub(crate) number: String,
    /// Why it is revoked, as the issuing department records it.
    pub(crate) reason: String,
}

/// Revokes a licence of the caller's own register (撤销): every check says `revoked` from
/// now on, on every gateway on the store, whatever the register still says. Only the
/// supplying department's systems and data administrators may, and a revocation is never
/// undone: revoking again answers the revocation in force.
#[utoipa::path(post, path = "/licences/revoke", tag = "licences", security(("bearer" = [])),
    request_body = RevokeRequest,
    responses((status = 200, body = tongban_platform::store::Revocation), (status = 403, body = crate::error::ProblemSchema),
        (status = 404, body = crate::error::ProblemSchema), (status = 422, body = crate::error::ProblemSchema)))]
pub(crate) async fn revoke_licence(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<RevokeRequest>,
) -> Result<Json<tongban_platform::store::Revocation>, ApiError> {
    if let Caller::User { .. } = &caller {
        caller.require(&[tongban_policy::org::UserRole::SupplierAdmin])?;
    }
    let reason = request.reason.trim();
    if reason.is_empty() || reason.chars().count() > 200 || reason.chars().any(char::is_control) {
        return Err(ApiError::unprocessable(
            "invalid_reason",
            "A revocation needs its reason",
            "the reason must be 1 to 200 printable characters",
        ));
    }
    let (resource, document, _) = own_licence(&state, &caller, &request.resource, &request.number).await?;
    let actor = caller.actor();
    let acting = tongban_platform::store::Acting { by: &actor, at: state.platform().now() };
    let revocation =
        state.platform().store.revoke_licence(&resource.code, &document.number, reason, acting).await?;
    tracing::info!(resource = %resource.code, "licence revoked");
    Ok(Json(revocation))
}

/// The licence types the platform knows (证照类型): code, name, issuing authority type,
/// holder kind, validity, and the face items with their default masks.
#[utoipa::path(get, path = "/licences/types", tag = "licences", security(("bearer" = [])),
    responses((status = 200, body = [tongban_policy::licence::LicenceType]), (status = 401, body = crate::error::ProblemSchema)))]
pub(crate) async fn licence_types(_caller: Caller) -> Json<&'static [tongban_policy::licence::LicenceType]> {
    Json(tongban_policy::licence::LICENCE_TYPES)
}
