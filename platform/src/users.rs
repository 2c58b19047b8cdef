//! People: the rules a user account is made under, for the API, the first administrator and
//! the demo seed alike.

use serde::Deserialize;
use tongban_policy::org::UserRole;

use crate::Platform;
use crate::auth;
use crate::error::{PlatformError, Result};
use crate::store::{Acting, UserRecord};

/// A person to register.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub username: String,
    pub display_name: String,
    pub department_code: String,
    pub roles: Vec<UserRole>,
    /// At least 12 characters.
    pub password: String,
}

/// Refuses a new password shorter than the platform allows, naming its `field`.
pub fn long_enough(field: &str, password: &str) -> Result<()> {
    if password.chars().count() < auth::MIN_PASSWORD_CHARS {
        return Err(PlatformError::invalid(format!(
            "{field}: at least {} characters",
            auth::MIN_PASSWORD_CHARS
        )));
    }
    Ok(())
}

/// Hashes a password off the runtime's threads (Argon2id takes tens of milliseconds).
pub async fn hashed(password: String) -> Result<String> {
    Ok(auth::password_work(move || auth::hash_password(&password)).await?)
}

/// `username` without surrounding spaces, if it is a name people can be given.
pub fn valid_username(username: &str) -> Result<&str> {
    let username = username.trim();
    if username.is_empty()
        || username.len() > 64
        || !username.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(PlatformError::invalid("username: 1-64 of a-z, A-Z, 0-9, '.', '_' and '-'"));
    }
    Ok(username)
}

/// Registers a person, recording `actor` (as [`crate::Caller::actor`] names callers) as the
/// one who did it.
pub async fn create_user(platform: &Platform, input: NewUser, actor: &str) -> Result<UserRecord> {
    let username = valid_username(&input.username)?;
    long_enough("password", &input.password)?;
    if input.roles.is_empty() {
        return Err(PlatformError::invalid("roles: give at least one"));
    }
    let department = platform.store.department(&input.department_code).await.map_err(|_| {
        PlatformError::invalid(format!(
            "department_code {} is not a registered department",
            input.department_code
        ))
    })?;
    if let Some(role) =
        input.roles.iter().find(|r| r.required_department_role().is_some_and(|d| !department.has_role(d)))
    {
        return Err(PlatformError::invalid(format!(
            "role {role:?} needs a department with role {:?}",
            role.required_department_role()
        )));
    }
    let hash = hashed(input.password).await?;
    let user = UserRecord {
        username: username.to_owned(),
        display_name: input.display_name,
        department_code: department.code,
        roles: input.roles,
        enabled: true,
        created_at: platform.now(),
    };
    platform.store.create_user(&user, &hash, Acting { by: actor, at: user.created_at }).await?;
    Ok(user)
}
