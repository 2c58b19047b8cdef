//! Sessions, departments, systems and users.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};
use tongban_policy::org::{Department, DepartmentRole, UserRole};

use super::{Listing, Paging};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;
use tongban_platform::auth;
use tongban_platform::store::{Acting, AdminAction, DepartmentFilter, SystemRecord, UserRecord};
use tongban_platform::users::{self, NewUser};
use tongban_platform::{Caller, Platform};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SignIn {
    username: String,
    password: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct Session {
    /// Send as `Authorization: Bearer <token>`.
    token: String,
    #[serde(serialize_with = "tongban_policy::time::rfc3339::serialize")]
    expires_at: NaiveDateTime,
    user: UserRecord,
}

/// Signs a person in.
#[utoipa::path(post, path = "/sessions", tag = "sessions", request_body = SignIn,
    responses((status = 201, body = Session), (status = 401, body = crate::error::ProblemSchema),
        (status = 429, description = "sign_in_locked or sign_in_rate_limited, with Retry-After", body = crate::error::ProblemSchema),
        (status = 503, description = "sign_in_busy: every password check in use", body = crate::error::ProblemSchema)))]
pub(super) async fn sign_in(
    State(state): State<AppState>,
    crate::listener::Peer(peer): crate::listener::Peer,
    ApiJson(input): ApiJson<SignIn>,
) -> Result<(StatusCode, Json<Session>), ApiError> {
    // Per source address before anything else: fresh names escape the per-name lock.
    state.sources().sign_in(peer)?;
    let platform = state.platform();
    count_attempt(platform, &input.username).await?;
    let found = platform.store.user_with_password(&input.username).await?;
    // Verify against a decoy when the user is unknown, so both answers take as long.
    let hash = found.as_ref().map_or(auth::decoy_hash(), |(_, hash)| hash.as_str()).to_owned();
    let password = input.password;
    let matches = auth::password_work(move || auth::verify_password(&password, &hash)).await?;
    let user = match found {
        Some((user, _)) if matches && user.enabled => user,
        // Attempts on unknown names were counted like the others, so that probing cannot
        // tell them from known ones.
        _ => return Err(ApiError::invalid_credentials()),
    };
    auth::clear_sign_ins(&platform.store, &input.username).await?;
    let token = auth::new_secret(auth::SESSION_PREFIX);
    let now = platform.now();
    let expires_at = now + chrono::Duration::hours(i64::from(platform.session_hours));
    platform.store.create_session(&auth::digest(&token), &user.username, now, expires_at).await?;
    Ok((StatusCode::CREATED, Json(Session { token, expires_at, user })))
}

/// `actor` acting now, for the trail of management actions.
fn acting<'a>(platform: &Platform, actor: &'a str) -> Acting<'a> {
    Acting { by: actor, at: platform.now() }
}

/// Counts an attempt to sign in as `username` before its password is checked (see
/// [`auth::count_sign_in`]), refusing it with `sign_in_locked` while the name is locked.
async fn count_attempt(platform: &Platform, username: &str) -> Result<(), ApiError> {
    let Err(wait) = auth::count_sign_in(&platform.store, username, platform.now()).await? else {
        return Ok(());
    };
    let mut locked = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "sign_in_locked",
        "Sign-in locked",
        format!(
            "too many attempts without the right password for this name; try again in {} minutes",
            wait.as_secs().div_ceil(60)
        ),
    );
    locked.retry_after = Some(wait.as_secs());
    Err(locked)
}

/// Ends the caller's session.
#[utoipa::path(delete, path = "/sessions/current", tag = "sessions", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = crate::error::ProblemSchema)))]
pub(super) async fn sign_out(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    if !matches!(caller, Caller::User { .. }) {
        return Err(ApiError::forbidden("systems have no session"));
    }
    state.platform().store.delete_session(&auth::digest(bearer(&headers))).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(super) enum Me {
    User { user: UserRecord, department: Department },
    System { system: SystemRecord, department: Department },
}

/// A new password for the signed-in person.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PasswordChange {
    current_password: String,
    new_password: String,
}

/// Changes the signed-in person's password. The current one must be given; every other
/// session of theirs ends.
#[utoipa::path(put, path = "/me/password", tag = "sessions", security(("bearer" = [])),
    request_body = PasswordChange,
    responses((status = 204), (status = 401, body = crate::error::ProblemSchema), (status = 403, body = crate::error::ProblemSchema),
        (status = 422, description = "wrong_password, invalid_request", body = crate::error::ProblemSchema),
        (status = 429, description = "sign_in_locked, with Retry-After", body = crate::error::ProblemSchema)))]
pub(super) async fn change_password(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(input): ApiJson<PasswordChange>,
) -> Result<StatusCode, ApiError> {
    let Caller::User { user, .. } = &caller else {
        return Err(ApiError::forbidden("systems have no password"));
    };
    users::long_enough("new_password", &input.new_password)?;
    if input.new_password == input.current_password {
        return Err(ApiError::invalid("new_password: the same as the current one"));
    }
    let platform = state.platform();
    // Current passwords count with sign-ins, so a taken session cannot guess it.
    count_attempt(platform, &user.username).await?;
    let (_, hash) = platform
        .store
        .user_with_password(&user.username)
        .await?
        .ok_or_else(|| ApiError::unauthenticated("the session's user no longer exists"))?;
    let (current, new) = (input.current_password, input.new_password);
    let new_hash = auth::password_work(move || {
        auth::verify_password(&current, &hash).then(|| auth::hash_password(&new))
    })
    .await?
    .ok_or_else(|| {
        ApiError::unprocessable("wrong_password", "Wrong password", "current_password is not right")
    })?;
    let session = auth::digest(bearer(&headers));
    let actor = caller.actor();
    platform
        .store
        .change_password(&user.username, &new_hash, &session, acting(state.platform(), &actor))
        .await?;
    auth::clear_sign_ins(&platform.store, &user.username).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The bearer token of a request, or an empty string.
fn bearer(headers: &HeaderMap) -> &str {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .trim()
}

/// Who the caller is.
#[utoipa::path(get, path = "/me", tag = "sessions", security(("bearer" = [])),
    responses((status = 200, body = Me), (status = 401, body = crate::error::ProblemSchema)))]
pub(super) async fn me(caller: Caller) -> Json<Me> {
    Json(match caller {
        Caller::User { user, department } => Me::User { user, department },
        Caller::System(identity) => {
            Me::System { system: identity.system.clone(), department: identity.department.clone() }
        }
    })
}

/// Lists departments.
#[utoipa::path(get, path = "/departments", tag = "departments", security(("bearer" = [])),
    params(DepartmentQuery),
    responses((status = 200, body = Listing<Department>), (status = 401, body = crate::error::ProblemSchema)))]
pub(super) async fn list_departments(
    State(state): State<AppState>,
    _caller: Caller,
    ApiQuery(query): ApiQuery<DepartmentQuery>,
) -> Result<Json<Listing<Department>>, ApiError> {
    let filter = DepartmentFilter { role: query.role, region_prefix: query.region };
    let page = super::page_request(query.after, query.limit)?;
    Ok(Json(state.platform().store.departments_page(&filter, &page).await?.into()))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct DepartmentQuery {
    /// Only departments with this role.
    role: Option<DepartmentRole>,
    /// Only departments whose region starts with this division prefix.
    region: Option<String>,
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    after: Option<String>,
}

/// Registers a department (platform administrators).
#[utoipa::path(post, path = "/departments", tag = "departments", security(("bearer" = [])),
    request_body = Department,
    responses((status = 201, body = Department), (status = 403, body = crate::error::ProblemSchema),
        (status = 409, body = crate::error::ProblemSchema), (status = 422, body = crate::error::ProblemSchema)))]
pub(super) async fn create_department(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(department): ApiJson<Department>,
) -> Result<(StatusCode, Json<Department>), ApiError> {
    caller.require(&[UserRole::PlatformAdmin])?;
    department.validate()?;
    state.platform().store.create_department(&department, acting(state.platform(), &caller.actor())).await?;
    Ok((StatusCode::CREATED, Json(department)))
}

/// One department.
#[utoipa::path(get, path = "/departments/{code}", tag = "departments", security(("bearer" = [])),
    params(("code" = String, Path, description = "统一社会信用代码")),
    responses((status = 200, body = Department), (status = 404, body = crate::error::ProblemSchema)))]
pub(super) async fn get_department(
    State(state): State<AppState>,
    _caller: Caller,
    ApiPath(code): ApiPath<String>,
) -> Result<Json<Department>, ApiError> {
    Ok(Json(state.platform().store.department(&code).await?))
}

/// Lists systems: a department's own, or every system for those who oversee the platform.
#[utoipa::path(get, path = "/systems", tag = "systems", security(("bearer" = [])), params(Paging),
    responses((status = 200, body = Listing<SystemRecord>), (status = 401, body = crate::error::ProblemSchema)))]
pub(super) async fn list_systems(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(paging): ApiQuery<Paging>,
) -> Result<Json<Listing<SystemRecord>>, ApiError> {
    let department = (!caller.oversees()).then(|| caller.department().code.clone());
    Ok(Json(state.platform().store.systems_page(department.as_deref(), &paging.request()?).await?.into()))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewSystem {
    name: String,
    /// Platform administrators register systems for any department; others for their own.
    #[serde(default)]
    department_code: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct RegisteredSystem {
    system: SystemRecord,
    /// Shown once; only its digest is stored.
    api_key: String,
}

/// Registers a calling system and issues its API key.
#[utoipa::path(post, path = "/systems", tag = "systems", security(("bearer" = [])), request_body = NewSystem,
    responses((status = 201, body = RegisteredSystem), (status = 403, body = crate::error::ProblemSchema),
        (status = 409, body = crate::error::ProblemSchema)))]
pub(super) async fn create_system(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(input): ApiJson<NewSystem>,
) -> Result<(StatusCode, Json<RegisteredSystem>), ApiError> {
    let user = caller.require(&[UserRole::Demander, UserRole::SupplierAdmin, UserRole::PlatformAdmin])?;
    let own = &caller.department().code;
    let department = match input.department_code {
        Some(code) if &code != own && !user.roles.contains(&UserRole::PlatformAdmin) => {
            return Err(ApiError::forbidden(
                "only platform administrators register systems of other departments",
            ));
        }
        Some(code) => code,
        None => own.clone(),
    };
    if input.name.trim().is_empty() {
        return Err(ApiError::invalid("name must not be empty"));
    }
    let platform = state.platform();
    platform.store.department(&department).await?;
    let issued = auth::issue_api_key();
    let system = platform
        .store
        .create_system(
            &department,
            input.name.trim(),
            &issued.digest,
            &issued.prefix,
            acting(state.platform(), &caller.actor()),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(RegisteredSystem { system, api_key: issued.key })))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SystemCertificate {
    /// The system's client certificate (PEM, one `CERTIFICATE` block). Only its SHA-256
    /// fingerprint is kept; the TLS handshake checks that it chains to the client CA.
    certificate: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct RegisteredCertificate {
    system_id: String,
    /// SHA-256 of the certificate's DER encoding, hex.
    sha256: String,
}

/// Registers the client certificate a system authenticates with over mutual TLS, replacing
/// any earlier one.
#[utoipa::path(put, path = "/systems/{id}/certificate", tag = "systems", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = SystemCertificate,
    responses((status = 200, body = RegisteredCertificate), (status = 403, body = crate::error::ProblemSchema),
        (status = 404, body = crate::error::ProblemSchema), (status = 409, body = crate::error::ProblemSchema),
        (status = 422, description = "invalid_certificate", body = crate::error::ProblemSchema)))]
pub(super) async fn register_certificate(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(input): ApiJson<SystemCertificate>,
) -> Result<Json<RegisteredCertificate>, ApiError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let system = managed_system(&state, &caller, &id).await?;
    let platform = state.platform();
    let invalid =
        |detail: &str| ApiError::unprocessable("invalid_certificate", "Invalid certificate", detail);
    let certificates: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(input.certificate.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|_| invalid("certificate is not PEM"))?;
    let [certificate] = certificates.as_slice() else {
        return Err(invalid("give exactly one CERTIFICATE block"));
    };
    let sha256 = crate::certs::fingerprint(certificate);
    if let Some(holder) = platform.store.system_by_certificate(&sha256).await?
        && holder.id != system.id
    {
        return Err(ApiError::conflict("this certificate is registered to another system")
            .with_code("certificate_in_use"));
    }
    platform
        .store
        .set_system_certificate(&system.id, &sha256, acting(state.platform(), &caller.actor()))
        .await?;
    // The old certificate stops identifying the system at once on this instance.
    platform.identities.forget_all();
    platform.store.announce(tongban_platform::store::Change::Identities).await;
    tracing::info!(system = %system.id, %sha256, "client certificate registered");
    Ok(Json(RegisteredCertificate { system_id: system.id, sha256 }))
}

/// A system `caller` may manage: one of their department's, or any for platform
/// administrators.
async fn managed_system(state: &AppState, caller: &Caller, id: &str) -> Result<SystemRecord, ApiError> {
    let user = caller.require(&[UserRole::Demander, UserRole::SupplierAdmin, UserRole::PlatformAdmin])?;
    let system = state.platform().store.system(id).await?;
    if system.department_code != caller.department().code && !user.roles.contains(&UserRole::PlatformAdmin) {
        return Err(ApiError::forbidden("only platform administrators manage systems of other departments"));
    }
    Ok(system)
}

/// Issues a system a new API key, shown once; the old key stops working at once on this
/// gateway and within 5 seconds on others sharing the store (their identity caches).
#[utoipa::path(post, path = "/systems/{id}/api-key", tag = "systems", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = RegisteredSystem), (status = 403, body = crate::error::ProblemSchema),
        (status = 404, body = crate::error::ProblemSchema)))]
pub(super) async fn rotate_api_key(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<RegisteredSystem>, ApiError> {
    let system = managed_system(&state, &caller, &id).await?;
    let platform = state.platform();
    let issued = auth::issue_api_key();
    let system = platform
        .store
        .set_system_api_key(
            &system.id,
            &issued.digest,
            &issued.prefix,
            acting(state.platform(), &caller.actor()),
        )
        .await?;
    platform.identities.forget_all();
    platform.store.announce(tongban_platform::store::Change::Identities).await;
    tracing::info!(system = %system.id, prefix = %issued.prefix, "API key replaced");
    Ok(Json(RegisteredSystem { system, api_key: issued.key }))
}

/// Whether a system may call, or a person sign in.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Enabled {
    enabled: bool,
}

/// Stops a system calling (by key and by certificate alike), or lets it call again. Takes
/// effect at once on this gateway and within 5 seconds on others sharing the store.
#[utoipa::path(put, path = "/systems/{id}/enabled", tag = "systems", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = Enabled,
    responses((status = 200, body = SystemRecord), (status = 403, body = crate::error::ProblemSchema),
        (status = 404, body = crate::error::ProblemSchema)))]
pub(super) async fn set_system_enabled(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(input): ApiJson<Enabled>,
) -> Result<Json<SystemRecord>, ApiError> {
    let system = managed_system(&state, &caller, &id).await?;
    let platform = state.platform();
    let system = platform
        .store
        .set_system_enabled(&system.id, input.enabled, acting(state.platform(), &caller.actor()))
        .await?;
    platform.identities.forget_all();
    platform.store.announce(tongban_platform::store::Change::Identities).await;
    tracing::info!(system = %system.id, enabled = input.enabled, "system enabled changed");
    Ok(Json(system))
}

/// Lists people (platform administrators).
#[utoipa::path(get, path = "/users", tag = "users", security(("bearer" = [])), params(Paging),
    responses((status = 200, body = Listing<UserRecord>), (status = 403, body = crate::error::ProblemSchema)))]
pub(super) async fn list_users(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(paging): ApiQuery<Paging>,
) -> Result<Json<Listing<UserRecord>>, ApiError> {
    caller.require(&[UserRole::PlatformAdmin])?;
    Ok(Json(state.platform().store.users_page(None, &paging.request()?).await?.into()))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct AdminActionQuery {
    /// Only the actions on this username, system id or department code.
    target: Option<String>,
    /// At most this many (1–500, default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// The `next` value of the previous page.
    after: Option<String>,
}

/// The trail of management actions, oldest first: who made, changed or stopped which
/// department, system or account, and when (platform administrators).
#[utoipa::path(get, path = "/admin-actions", tag = "users", security(("bearer" = [])),
    params(AdminActionQuery),
    responses((status = 200, body = Listing<AdminAction>), (status = 403, body = crate::error::ProblemSchema)))]
pub(super) async fn list_admin_actions(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<AdminActionQuery>,
) -> Result<Json<Listing<AdminAction>>, ApiError> {
    caller.require(&[UserRole::PlatformAdmin])?;
    let page = super::page_request(query.after, query.limit)?;
    Ok(Json(state.platform().store.admin_actions(query.target.as_deref(), &page).await?.into()))
}

/// Registers a person (platform administrators).
#[utoipa::path(post, path = "/users", tag = "users", security(("bearer" = [])), request_body = NewUser,
    responses((status = 201, body = UserRecord), (status = 403, body = crate::error::ProblemSchema),
        (status = 409, body = crate::error::ProblemSchema), (status = 422, body = crate::error::ProblemSchema)))]
pub(super) async fn create_user(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(input): ApiJson<NewUser>,
) -> Result<(StatusCode, Json<UserRecord>), ApiError> {
    caller.require(&[UserRole::PlatformAdmin])?;
    let user = users::create_user(state.platform(), input, &caller.actor()).await?;
    Ok((StatusCode::CREATED, Json(user)))
}

/// Stops a person signing in, ending their sessions at once (someone who has left), or lets
/// them sign in again (platform administrators, not for themselves).
#[utoipa::path(put, path = "/users/{username}/enabled", tag = "users", security(("bearer" = [])),
    params(("username" = String, Path)), request_body = Enabled,
    responses((status = 200, body = UserRecord), (status = 403, body = crate::error::ProblemSchema),
        (status = 404, body = crate::error::ProblemSchema)))]
pub(super) async fn set_user_enabled(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(username): ApiPath<String>,
    ApiJson(input): ApiJson<Enabled>,
) -> Result<Json<UserRecord>, ApiError> {
    let admin = administrator_of_another(
        &caller,
        &username,
        "administrators do not stop or start their own account",
    )?;
    let user = state
        .platform()
        .store
        .set_user_enabled(&username, input.enabled, acting(state.platform(), &caller.actor()))
        .await?;
    tracing::info!(%username, enabled = input.enabled, by = %admin.username, "account enabled changed");
    Ok(Json(user))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PasswordReset {
    /// At least 12 characters; give it to the person, who changes it after signing in.
    password: String,
}

/// Sets a new password for someone who lost theirs (platform administrators; their own is
/// changed at `/me/password`). Every session of that person ends, and a lock on their name
/// is lifted.
#[utoipa::path(put, path = "/users/{username}/password", tag = "users", security(("bearer" = [])),
    params(("username" = String, Path)), request_body = PasswordReset,
    responses((status = 204), (status = 403, body = crate::error::ProblemSchema), (status = 404, body = crate::error::ProblemSchema),
        (status = 422, body = crate::error::ProblemSchema)))]
pub(super) async fn reset_password(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(username): ApiPath<String>,
    ApiJson(input): ApiJson<PasswordReset>,
) -> Result<StatusCode, ApiError> {
    let admin = administrator_of_another(
        &caller,
        &username,
        "change your own password at /me/password, with the current one",
    )?;
    users::long_enough("password", &input.password)?;
    let hash = users::hashed(input.password).await?;
    let platform = state.platform();
    // No session is kept: none of the person's sessions is the administrator's.
    platform.store.change_password(&username, &hash, "", acting(state.platform(), &caller.actor())).await?;
    auth::clear_sign_ins(&platform.store, &username).await?;
    tracing::info!(%username, by = %admin.username, "password reset");
    Ok(StatusCode::NO_CONTENT)
}

/// The platform administrator acting on `username`'s account, refused with `own_account` when
/// the account is their own.
fn administrator_of_another<'a>(
    caller: &'a Caller,
    username: &str,
    own_account: &str,
) -> Result<&'a UserRecord, ApiError> {
    let admin = caller.require(&[UserRole::PlatformAdmin])?;
    if admin.username == username {
        return Err(ApiError::forbidden(own_account));
    }
    Ok(admin)
}
