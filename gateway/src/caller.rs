//! Who is calling: a person with a session token, a system with an API key, or a system
//! with the client certificate the TLS layer verified. Both the management API and the data
//! plane find their caller here, so that the two cannot authenticate differently.

use std::sync::Arc;

use axum::http::header;
use axum::http::request::Parts;
use tongban_platform::auth;
use tongban_platform::{Caller, Credential, Platform, SystemIdentity};

use crate::error::ApiError;
use crate::listener::ClientCertificate;

/// Authenticates `Authorization: Bearer …` (a session token for people, an API key for
/// systems) or a system's client certificate, verified by the TLS layer. No credentials is
/// 401 `unauthenticated`; wrong ones 401 `invalid_credentials`; a certificate no system
/// registered 401 `unknown_certificate`; a certificate and a key of different systems 401
/// `identity_mismatch`.
pub async fn caller(parts: &Parts, platform: &Platform) -> Result<Caller, ApiError> {
    let certified = match parts.extensions.get::<ClientCertificate>() {
        Some(certificate) => Some(system_by_certificate(platform, certificate.sha256).await?),
        None => None,
    };
    let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
        return match certified {
            Some(identity) => Ok(Caller::System(identity)),
            None => Err(ApiError::unauthenticated("send Authorization: Bearer <session token or API key>")),
        };
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(ApiError::invalid_credentials)?;
    let caller = authenticate(platform, token).await?;
    if let (Some(certified), Caller::System(identity)) = (&certified, &caller)
        && certified.system.id != identity.system.id
    {
        return Err(ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "identity_mismatch",
            "Identity mismatch",
            "the client certificate and the API key belong to different systems",
        ));
    }
    Ok(caller)
}

/// The enabled system a verified client certificate is registered to.
async fn system_by_certificate(
    platform: &Platform,
    sha256: [u8; 32],
) -> Result<Arc<SystemIdentity>, ApiError> {
    let credential = Credential::Certificate(sha256);
    if let Some(identity) = platform.identities.get(&credential) {
        return Ok(identity);
    }
    let system = platform.store.system_by_certificate(&hex::encode(sha256)).await?.ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "unknown_certificate",
            "Unknown certificate",
            "the client certificate is not registered to any enabled system",
        )
    })?;
    let department = platform.store.department(&system.department_code).await?;
    Ok(platform.identities.insert(credential, system, department))
}

async fn authenticate(platform: &Platform, token: &str) -> Result<Caller, ApiError> {
    if token.starts_with(auth::SESSION_PREFIX) {
        let digest = auth::digest(token);
        let user = platform
            .store
            .session_user(&digest, platform.now())
            .await?
            .ok_or_else(ApiError::invalid_credentials)?;
        let department = platform.store.department(&user.department_code).await?;
        Ok(Caller::User { user, department })
    } else if token.starts_with(auth::API_KEY_PREFIX) {
        let digest = auth::digest_bytes(token);
        let credential = Credential::ApiKey(digest);
        if let Some(identity) = platform.identities.get(&credential) {
            return Ok(Caller::System(identity));
        }
        let system = platform
            .store
            .system_by_key_digest(&hex::encode(digest))
            .await?
            .ok_or_else(ApiError::invalid_credentials)?;
        let department = platform.store.department(&system.department_code).await?;
        Ok(Caller::System(platform.identities.insert(credential, system, department)))
    } else {
        Err(ApiError::invalid_credentials())
    }
}
