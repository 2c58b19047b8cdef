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

/// A seal certificate, as the listing shows it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct SealCertificateEntry {
    pub(crate) department_code: String,
    pub(crate) fingerprint: String,
    pub(crate) subject: String,
    /// `directory` (the seals directory, read at start) or `registered` (through the API).
    pub(crate) source: &'static str,
    /// Whether documents under it are recognised today: registered, not retired, and within
    /// its validity.
    pub(crate) in_force: bool,
    #[schema(value_type = Option<String>)]
    pub(crate) not_after: Option<String>,
    /// The registration, for certificates registered through the API.
    pub(crate) registration: Option<tongban_platform::store::SealCertificate>,
}

fn unix_to_beijing(seconds: u64) -> chrono::NaiveDateTime {
    let utc = chrono::DateTime::from_timestamp(i64::try_from(seconds).unwrap_or(i64::MAX), 0)
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
    utc.with_timezone(&tongban_policy::time::beijing()).naive_local()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The seal certificates every issuing department has, from the seals directory and
/// registered through the API, for signed-in callers: they are public keys, and relying
/// departments read the fingerprints to know whose seal a document bears.
#[utoipa::path(get, path = "/licences/seals", tag = "licences", security(("bearer" = [])),
    responses((status = 200, body = [SealCertificateEntry]), (status = 401, body = crate::error::ProblemSchema)))]
pub(crate) async fn seal_certificates(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<Json<Vec<SealCertificateEntry>>, ApiError> {
    let now = unix_now();
    let mut entries: Vec<SealCertificateEntry> = state
        .data()
        .seals
        .directory_certificates()
        .map(|(department, certificate)| SealCertificateEntry {
            department_code: department.to_owned(),
            fingerprint: certificate.fingerprint(),
            subject: certificate.subject(),
            source: "directory",
            in_force: certificate.valid_at(now),
            not_after: Some(tongban_policy::time::to_rfc3339(unix_to_beijing(certificate.validity().1))),
            registration: None,
        })
        .collect();
    let today = state.platform().now();
    for registered in state.platform().store.seal_certificates(None, false).await? {
        entries.push(SealCertificateEntry {
            department_code: registered.department_code.clone(),
            fingerprint: registered.fingerprint.clone(),
            subject: registered.subject.clone(),
            source: "registered",
            in_force: registered.retired_at.is_none()
                && registered.not_before <= today
                && today <= registered.not_after,
            not_after: Some(tongban_policy::time::to_rfc3339(registered.not_after)),
            registration: Some(registered),
        });
    }
    entries.sort_by(|a, b| (&a.department_code, &a.fingerprint).cmp(&(&b.department_code, &b.fingerprint)));
    Ok(Json(entries))
}

/// A seal certificate to register.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegisterSealRequest {
    /// One X.509 certificate, PEM, of an SM2 (or ECDSA P-256) key.
    pub(crate) certificate: String,
}

/// The caller's department, when it is a data administrator of a department that supplies a
/// licence register: only such a department has seals to register or retire.
fn issuing_admin(state: &AppState, caller: &Caller) -> Result<String, ApiError> {
    caller.require(&[tongban_policy::org::UserRole::SupplierAdmin])?;
    let department = caller.department().code.clone();
    let supplies_a_register = state.platform().grants.snapshot().resources.values().any(|resource| {
        resource.supplier == department
            && tongban_policy::licence::LICENCE_TYPES.iter().any(|t| t.dataset() == resource.dataset)
    });
    if !supplies_a_register {
        return Err(ApiError::forbidden("the caller's department supplies no licence register")
            .with_code("not_the_issuer"));
    }
    Ok(department)
}

/// Registers a seal certificate for the caller's department (登记电子印章证书), so that
/// documents its own sealing systems seal under the matching key are recognised by document
/// checks. Only the department's data administrators may; the certificate must be one X.509
/// certificate of a supported key, within its validity.
#[utoipa::path(post, path = "/licences/seals", tag = "licences", security(("bearer" = [])),
    request_body = RegisterSealRequest,
    responses((status = 201, body = tongban_platform::store::SealCertificate), (status = 403, body = crate::error::ProblemSchema),
        (status = 409, body = crate::error::ProblemSchema), (status = 422, body = crate::error::ProblemSchema)))]
pub(crate) async fn register_seal(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<RegisterSealRequest>,
) -> Result<(axum::http::StatusCode, Json<tongban_platform::store::SealCertificate>), ApiError> {
    let department = issuing_admin(&state, &caller)?;
    let invalid =
        |detail: String| ApiError::unprocessable("invalid_certificate", "Not a seal certificate", detail);
    if request.certificate.len() > 16 * 1024 {
        return Err(invalid("a seal certificate is at most 16 KiB of PEM".into()));
    }
    let certificates = tongban_evidence::Certificate::all_from_pem(&request.certificate)
        .map_err(|e| invalid(format!("the certificate does not read: {e}")))?;
    let [certificate] = certificates.as_slice() else {
        return Err(invalid(format!("one certificate is registered at a time, not {}", certificates.len())));
    };
    if !certificate.valid_at(unix_now()) {
        return Err(invalid("the certificate is outside its validity".into()));
    }
    let (not_before, not_after) = certificate.validity();
    let pem = certificate.to_pem().map_err(|e| invalid(e.to_string()))?;
    let fingerprint = certificate.fingerprint();
    let subject = certificate.subject();
    let actor = caller.actor();
    let acting = tongban_platform::store::Acting { by: &actor, at: state.platform().now() };
    let new = tongban_platform::store::NewSealCertificate {
        department_code: &department,
        fingerprint: &fingerprint,
        certificate: &pem,
        subject: &subject,
        not_before: unix_to_beijing(not_before),
        not_after: unix_to_beijing(not_after),
    };
    let registered = state.platform().store.register_seal_certificate(new, acting).await?;
    tracing::info!(department = %department, fingerprint = %fingerprint, "seal certificate registered");
    Ok((axum::http::StatusCode::CREATED, Json(registered)))
}

/// Retires a seal certificate the caller's department registered (a lost or replaced key):
/// documents under it are no longer recognised, from the next check on.
#[utoipa::path(delete, path = "/licences/seals/{fingerprint}", tag = "licences", security(("bearer" = [])),
    params(("fingerprint" = String, Path, description = "SHA-256 of the certificate, hex")),
    responses((status = 200, body = tongban_platform::store::SealCertificate), (status = 403, body = crate::error::ProblemSchema),
        (status = 404, body = crate::error::ProblemSchema)))]
pub(crate) async fn retire_seal(
    State(state): State<AppState>,
    caller: Caller,
    crate::error::ApiPath(fingerprint): crate::error::ApiPath<String>,
) -> Result<Json<tongban_platform::store::SealCertificate>, ApiError> {
    let department = issuing_admin(&state, &caller)?;
    let actor = caller.actor();
    let acting = tongban_platform::store::Acting { by: &actor, at: state.platform().now() };
    let retired = state.platform().store.retire_seal_certificate(&department, &fingerprint, acting).await?;
    tracing::info!(department = %department, fingerprint = %fingerprint, "seal certificate retired");
    Ok(Json(retired))
}

/// A licence to look up in the caller's own register.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LookupRequest {
    /// The catalog resource of the register.
    pub(crate) resource: String,
    /// 证照编号.
    pub(crate) number: String,
}

/// A licence of the caller's register as its data administrators see it: its metadata and
/// status today in full, the holder and the face masked as the licence type masks them.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct IssuedLicence {
    pub(crate) resource: String,
    pub(crate) licence_type: String,
    pub(crate) number: String,
    /// The holder's code, masked when it is a person's identity number.
    pub(crate) holder: String,
    pub(crate) holder_name: String,
    pub(crate) issuer: String,
    pub(crate) issuer_name: String,
    #[schema(value_type = String, format = Date)]
    pub(crate) issued_on: chrono::NaiveDate,
    #[schema(value_type = Option<String>, format = Date)]
    pub(crate) valid_until: Option<chrono::NaiveDate>,
    /// What the register records (`issued` or `revoked`).
    pub(crate) recorded: RecordedStatus,
    pub(crate) status: tongban_policy::licence::LicenceStatus,
    /// The face, masked.
    #[schema(value_type = Object)]
    pub(crate) surface: std::collections::BTreeMap<String, String>,
    /// The revocation made through the gateway, if any.
    pub(crate) revocation: Option<tongban_platform::store::Revocation>,
    pub(crate) verification_code: String,
}

/// Looks up a licence of the caller's own register (已签发证照查询), for the issuing
/// department's data administrators: to answer a holder, or before revoking. Personal items
/// are masked as the licence type masks them, and each look-up is in the management trail.
#[utoipa::path(post, path = "/licences/lookup", tag = "licences", security(("bearer" = [])),
    request_body = LookupRequest,
    responses((status = 200, body = IssuedLicence), (status = 403, body = crate::error::ProblemSchema),
        (status = 404, body = crate::error::ProblemSchema)))]
pub(crate) async fn lookup_licence(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<LookupRequest>,
) -> Result<Json<IssuedLicence>, ApiError> {
    use tongban_policy::catalog::MaskRule;
    caller.require(&[tongban_policy::org::UserRole::SupplierAdmin])?;
    let (resource, document, recorded) =
        own_licence(&state, &caller, &request.resource, &request.number).await?;
    let licence_type = tongban_policy::licence::licence_type(&document.licence_type)
        .ok_or_else(|| ApiError::internal(&format!("unknown licence type {}", document.licence_type)))?;
    let person = licence_type.holder == tongban_policy::licence::HolderKind::Person;
    let today = state.platform().now().date();
    let revocation = state.platform().store.licence_revocation(&resource.code, &document.number).await?;
    let actor = caller.actor();
    let acting = tongban_platform::store::Acting { by: &actor, at: state.platform().now() };
    let detail = serde_json::json!({"resource": resource.code});
    state.platform().store.record_licence_action(acting, "licence.viewed", &document.number, detail).await?;
    let masked = |rule: MaskRule, value: &str| rule.apply(value).into_owned();
    Ok(Json(IssuedLicence {
        resource: resource.code.clone(),
        licence_type: document.licence_type.clone(),
        number: document.number.clone(),
        holder: if person { masked(MaskRule::IdNumber, &document.holder) } else { document.holder.clone() },
        holder_name: if person {
            masked(MaskRule::Name, &document.holder_name)
        } else {
            document.holder_name.clone()
        },
        issuer: document.issuer.clone(),
        issuer_name: document.issuer_name.clone(),
        issued_on: document.issued_on,
        valid_until: document.valid_until,
        recorded,
        status: tongban_policy::licence::status(recorded, document.issued_on, document.valid_until, today),
        surface: document
            .surface
            .iter()
            .map(|(name, value)| {
                let rule = licence_type.item(name).map_or(MaskRule::Redact, |item| item.mask);
                (name.clone(), masked(rule, value))
            })
            .collect(),
        revocation,
        verification_code: document.verification_code(),
    }))
}

/// A sealed document a person presented, to verify.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct VerifyDocumentRequest {
    pub(crate) sealed: SealedLicence,
}

/// Verifies a sealed licence document presented at a counter (证照核验), for signed-in
/// people: the same checks as a system's document check, against the register of this
/// gateway that the seal's department supplies. The answer says only what the presenter's
/// document already shows (genuine or the reason, the status, the altered fields), and every
/// verification is an exchange in the log, refusals included, under the person's rate limit.
#[utoipa::path(post, path = "/licences/verify", tag = "licences", security(("bearer" = [])),
    request_body = VerifyDocumentRequest,
    responses((status = 200, body = crate::data::calls::document::DocumentCheckAnswer), (status = 401, body = crate::error::ProblemSchema),
        (status = 422, body = crate::error::ProblemSchema), (status = 429, body = crate::error::ProblemSchema)))]
pub(crate) async fn verify_document(
    State(state): State<AppState>,
    caller: Caller,
    request: Result<ApiJson<VerifyDocumentRequest>, ApiError>,
) -> Result<Json<crate::data::calls::document::DocumentCheckAnswer>, ApiError> {
    let data = state.data();
    let mut record =
        tongban_exchange::ExchangeRecord::begin(tongban_policy::decision::Operation::LicenceCheck);
    let department = caller.department().code.clone();
    record.region = department.get(2..8).map(str::to_owned);
    record.department = Some(department);
    record.operator_digest = Some(tongban_exchange::key_digest(data.log.key(), &caller.actor()));
    // A body that does not read is refused and recorded like any other verification.
    let outcome = match &request {
        Ok(ApiJson(request)) => {
            record.key_digest =
                Some(tongban_exchange::key_digest(data.log.key(), &request.sealed.document.number));
            verify_recorded(&state, &caller, &request.sealed, &mut record).await
        }
        Err(rejected) => Err(rejected.clone()),
    };
    match &outcome {
        Ok(answer) => {
            record.status = 200;
            record.rows = u64::from(answer.genuine);
        }
        Err(error) => {
            record.status = error.status.as_u16();
            record.code = Some(error.code);
        }
    }
    record.finished_at = Some(chrono::Utc::now());
    // The verification is answered only once it is recorded.
    data.log.write(record).await.map_err(|e| {
        tracing::error!(error = %e, "a verification could not be recorded; refusing it");
        ApiError::not_ready("the exchange log cannot record the verification")
    })?;
    outcome.map(Json)
}

async fn verify_recorded(
    state: &AppState,
    caller: &Caller,
    sealed: &SealedLicence,
    record: &mut tongban_exchange::ExchangeRecord,
) -> Result<crate::data::calls::document::DocumentCheckAnswer, ApiError> {
    let data = state.data();
    let now = state.platform().now();
    match data.limits.check(&caller.actor(), &[], &[], now).await {
        Ok(()) => {}
        Err(crate::data::Refusal::Limited(limited)) => {
            record.rate_limit = Some(limited.limit);
            return Err(limited.into());
        }
        Err(crate::data::Refusal::QuotaUnavailable(_)) => return Err(ApiError::quota_unavailable()),
    }
    let licence_type =
        tongban_policy::licence::licence_type(&sealed.document.licence_type).ok_or_else(|| {
            ApiError::unprocessable(
                "malformed_document",
                "Not a licence document",
                format!("{} is not a licence type", sealed.document.licence_type),
            )
        })?;
    let snapshot = state.platform().grants.snapshot();
    let resource = snapshot
        .resources
        .values()
        .find(|r| r.dataset == licence_type.dataset() && r.supplier == sealed.seal.department)
        .ok_or_else(|| {
            ApiError::unprocessable(
                "unknown_register",
                "No such register here",
                format!(
                    "no register of this gateway is sealed by department {}; another province's documents are checked through its gateway",
                    sealed.seal.department
                ),
            )
        })?;
    record.resources.push(resource.code.clone());
    record.resource_versions.push(resource.version);
    record.suppliers.push(resource.supplier.clone());
    record.supplier_regions.push(resource.supplier.get(2..8).unwrap_or_default().to_owned());
    let Readiness::Ready(registry) = state.readiness() else {
        return Err(ApiError::not_ready("datasets are not loaded"));
    };
    crate::data::calls::document::examine(data, &registry, resource, sealed, None, now.date()).await
}
