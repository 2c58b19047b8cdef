//! Departments, their systems, people and sessions.

use chrono::NaiveDateTime;
use sqlx::Row;
use sqlx::any::AnyRow;
use tongban_policy::org::{Department, DepartmentRole, UserRole};

use serde_json::json;

use super::actions::{self, Acting};
use super::{
    Keyset, Page, PageRequest, Result, Store, StoreError, duplicate, json_column, like_escaped, parse_time,
    starts_with_pattern, time, unique_as,
};

/// Which departments to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DepartmentFilter {
    /// Only departments with this role.
    pub role: Option<DepartmentRole>,
    /// Only departments whose region starts with this division prefix.
    pub region_prefix: Option<String>,
}

/// A department's calling system. Its API key is stored only as a digest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct SystemRecord {
    pub id: String,
    pub department_code: String,
    pub name: String,
    /// The key's first characters, to tell keys apart; not enough to use it.
    pub api_key_prefix: String,
    pub enabled: bool,
    #[serde(with = "tongban_policy::time::rfc3339")]
    pub created_at: NaiveDateTime,
}

/// A person who signs in to the API or the console.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct UserRecord {
    pub username: String,
    pub display_name: String,
    pub department_code: String,
    pub roles: Vec<UserRole>,
    pub enabled: bool,
    #[serde(with = "tongban_policy::time::rfc3339")]
    pub created_at: NaiveDateTime,
}

fn department_from_row(row: &AnyRow) -> Result<Department> {
    Ok(Department {
        code: row.try_get("code")?,
        name: row.try_get("name")?,
        region: row.try_get("region")?,
        roles: json_column(row, "roles")?,
    })
}

fn system_from_row(row: &AnyRow) -> Result<SystemRecord> {
    Ok(SystemRecord {
        id: row.try_get("id")?,
        department_code: row.try_get("department_code")?,
        name: row.try_get("name")?,
        api_key_prefix: row.try_get("api_key_prefix")?,
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        created_at: parse_time(&row.try_get::<String, _>("created_at")?)?,
    })
}

fn user_from_row(row: &AnyRow) -> Result<UserRecord> {
    Ok(UserRecord {
        username: row.try_get("username")?,
        display_name: row.try_get("display_name")?,
        department_code: row.try_get("department_code")?,
        roles: json_column(row, "roles")?,
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        created_at: parse_time(&row.try_get::<String, _>("created_at")?)?,
    })
}

const SYSTEM_COLUMNS: &str = "id, department_code, name, api_key_prefix, enabled, created_at";
const USER_COLUMNS: &str = "username, display_name, department_code, roles, enabled, created_at";

/// What became of an attempt to sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInAttempt {
    /// Counted, as this many attempts in a row; the password may be checked.
    Counted(u32),
    /// Not counted: the name is locked until then, and no password is checked.
    Locked { until: NaiveDateTime },
}

impl Store {
    pub async fn create_department(&self, department: &Department, acting: Acting<'_>) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO departments (code, name, region, roles, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&department.code)
        .bind(&department.name)
        .bind(&department.region)
        .bind(serde_json::to_string(&department.roles)?)
        .bind(time(acting.at))
        .execute(&mut *tx)
        .await
        .map_err(duplicate(|| format!("department {}", department.code)))?;
        let detail = json!({"name": department.name, "region": department.region, "roles": department.roles});
        actions::record(&mut *tx, acting, "department.created", &department.code, detail).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn department(&self, code: &str) -> Result<Department> {
        let row = sqlx::query("SELECT code, name, region, roles FROM departments WHERE code = $1")
            .bind(code)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("department {code}")))?;
        department_from_row(&row)
    }

    /// A page of the departments within `filter`, by region and then code.
    pub async fn departments_page(
        &self,
        filter: &DepartmentFilter,
        request: &PageRequest,
    ) -> Result<Page<Department>> {
        let mut keyset = Keyset::new("SELECT code, name, region, roles FROM departments", "region || code");
        if let Some(role) = filter.role {
            // Roles are kept as a JSON array of their serialized names.
            keyset = keyset.condition(
                "roles LIKE $? ESCAPE '\\'",
                format!("%{}%", like_escaped(&serde_json::to_string(&role)?)),
            );
        }
        if let Some(region) = &filter.region_prefix {
            keyset = keyset.condition("region LIKE $? ESCAPE '\\'", starts_with_pattern(region));
        }
        keyset.page(&self.pool, request, department_from_row).await
    }

    pub async fn departments(&self) -> Result<Vec<Department>> {
        let rows = sqlx::query("SELECT code, name, region, roles FROM departments ORDER BY region, code")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(department_from_row).collect()
    }

    /// Registers a system with the digest of its API key.
    pub async fn create_system(
        &self,
        department_code: &str,
        name: &str,
        api_key_digest: &str,
        api_key_prefix: &str,
        acting: Acting<'_>,
    ) -> Result<SystemRecord> {
        let id = uuid::Uuid::now_v7().to_string();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO systems (id, department_code, name, api_key_hash, api_key_prefix, enabled, created_at) \
             VALUES ($1, $2, $3, $4, $5, 1, $6)",
        )
        .bind(&id)
        .bind(department_code)
        .bind(name)
        .bind(api_key_digest)
        .bind(api_key_prefix)
        .bind(time(acting.at))
        .execute(&mut *tx)
        .await
        .map_err(duplicate(|| format!("system {name:?} of department {department_code}")))?;
        let detail = json!({"department": department_code, "name": name, "api_key_prefix": api_key_prefix});
        actions::record(&mut *tx, acting, "system.created", &id, detail).await?;
        tx.commit().await?;
        self.system(&id).await
    }

    pub async fn system(&self, id: &str) -> Result<SystemRecord> {
        let row = sqlx::query(&format!("SELECT {SYSTEM_COLUMNS} FROM systems WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("system {id}")))?;
        system_from_row(&row)
    }

    /// A page of the systems, of one department when given, in the order they were registered.
    pub async fn systems_page(
        &self,
        department_code: Option<&str>,
        request: &PageRequest,
    ) -> Result<Page<SystemRecord>> {
        Keyset::new(&format!("SELECT {SYSTEM_COLUMNS} FROM systems"), "id")
            .equal("department_code", department_code)
            .page(&self.pool, request, system_from_row)
            .await
    }

    pub async fn systems(&self, department_code: Option<&str>) -> Result<Vec<SystemRecord>> {
        let rows = match department_code {
            Some(code) => {
                sqlx::query(&format!(
                    "SELECT {SYSTEM_COLUMNS} FROM systems WHERE department_code = $1 ORDER BY id"
                ))
                .bind(code)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!("SELECT {SYSTEM_COLUMNS} FROM systems ORDER BY id"))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(system_from_row).collect()
    }

    /// The enabled system whose API key has this digest.
    pub async fn system_by_key_digest(&self, digest: &str) -> Result<Option<SystemRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {SYSTEM_COLUMNS} FROM systems WHERE api_key_hash = $1 AND enabled = 1"
        ))
        .bind(digest)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(system_from_row).transpose()
    }

    /// The enabled system whose client certificate has this SHA-256 (hex) digest.
    pub async fn system_by_certificate(&self, sha256: &str) -> Result<Option<SystemRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {SYSTEM_COLUMNS} FROM systems WHERE cert_sha256 = $1 AND enabled = 1"
        ))
        .bind(sha256)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(system_from_row).transpose()
    }

    /// Registers (or replaces) the client certificate a system authenticates with.
    pub async fn set_system_certificate(&self, id: &str, sha256: &str, acting: Acting<'_>) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("UPDATE systems SET cert_sha256 = $1 WHERE id = $2")
            .bind(sha256)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(super::duplicate(|| "a system with this certificate".to_owned()))?;
        found(&done, || format!("system {id}"))?;
        actions::record(&mut *tx, acting, "system.certificate_registered", id, json!({"sha256": sha256}))
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Replaces a system's API key: the old one stops identifying it.
    pub async fn set_system_api_key(
        &self,
        id: &str,
        digest: &str,
        prefix: &str,
        acting: Acting<'_>,
    ) -> Result<SystemRecord> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("UPDATE systems SET api_key_hash = $1, api_key_prefix = $2 WHERE id = $3")
            .bind(digest)
            .bind(prefix)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        found(&done, || format!("system {id}"))?;
        actions::record(&mut *tx, acting, "system.api_key_replaced", id, json!({"api_key_prefix": prefix}))
            .await?;
        tx.commit().await?;
        self.system(id).await
    }

    /// Lets a system call, or stops it, by key and certificate alike.
    pub async fn set_system_enabled(
        &self,
        id: &str,
        enabled: bool,
        acting: Acting<'_>,
    ) -> Result<SystemRecord> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("UPDATE systems SET enabled = $1 WHERE id = $2")
            .bind(i64::from(enabled))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        found(&done, || format!("system {id}"))?;
        let action = if enabled { "system.enabled" } else { "system.disabled" };
        actions::record(&mut *tx, acting, action, id, json!({})).await?;
        tx.commit().await?;
        self.system(id).await
    }

    pub async fn create_user(
        &self,
        user: &UserRecord,
        password_hash: &str,
        acting: Acting<'_>,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        insert_user(&mut *tx, user, password_hash).await?;
        let detail = json!({"department": user.department_code, "roles": user.roles});
        actions::record(&mut *tx, acting, "user.created", &user.username, detail).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Makes the platform's first administrator, and their department unless it exists, in
    /// one transaction that also takes the store's one first-administrator slot: of two
    /// bootstraps at once, one makes its administrator and the other gets
    /// [`StoreError::Conflict`] and leaves nothing behind.
    pub async fn create_first_admin(
        &self,
        department: &Department,
        user: &UserRecord,
        password_hash: &str,
        now: NaiveDateTime,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO departments (code, name, region, roles, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (code) DO NOTHING",
        )
        .bind(&department.code)
        .bind(&department.name)
        .bind(&department.region)
        .bind(serde_json::to_string(&department.roles)?)
        .bind(time(now))
        .execute(&mut *tx)
        .await?;
        insert_user(&mut *tx, user, password_hash).await?;
        sqlx::query("INSERT INTO first_admin (slot, username, created_at) VALUES (1, $1, $2)")
            .bind(&user.username)
            .bind(time(now))
            .execute(&mut *tx)
            .await
            .map_err(unique_as(|| StoreError::Conflict("the platform's first administrator".into())))?;
        let acting = Acting { by: "bootstrap", at: now };
        let detail = json!({"department": department.code, "roles": user.roles});
        actions::record(&mut *tx, acting, "platform.bootstrapped", &user.username, detail).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Replaces `username`'s password hash and ends every session of theirs but `keep`, in
    /// one transaction: whoever held another session must sign in with the new password.
    pub async fn change_password(
        &self,
        username: &str,
        password_hash: &str,
        keep: &str,
        acting: Acting<'_>,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let changed = sqlx::query("UPDATE users SET password_hash = $1 WHERE username = $2")
            .bind(password_hash)
            .bind(username)
            .execute(&mut *tx)
            .await?;
        found(&changed, || format!("user {username}"))?;
        sqlx::query("DELETE FROM sessions WHERE username = $1 AND token_hash <> $2")
            .bind(username)
            .bind(keep)
            .execute(&mut *tx)
            .await?;
        let own = acting.by.strip_prefix("user:") == Some(username);
        let action = if own { "user.password_changed" } else { "user.password_reset" };
        actions::record(&mut *tx, acting, action, username, json!({})).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Lets a person sign in, or stops them; stopping ends their sessions in the same
    /// transaction.
    pub async fn set_user_enabled(
        &self,
        username: &str,
        enabled: bool,
        acting: Acting<'_>,
    ) -> Result<UserRecord> {
        let mut tx = self.pool.begin().await?;
        let changed = sqlx::query("UPDATE users SET enabled = $1 WHERE username = $2")
            .bind(i64::from(enabled))
            .bind(username)
            .execute(&mut *tx)
            .await?;
        found(&changed, || format!("user {username}"))?;
        if !enabled {
            sqlx::query("DELETE FROM sessions WHERE username = $1").bind(username).execute(&mut *tx).await?;
        }
        let action = if enabled { "user.enabled" } else { "user.disabled" };
        actions::record(&mut *tx, acting, action, username, json!({})).await?;
        tx.commit().await?;
        self.user_with_password(username)
            .await?
            .map(|(user, _)| user)
            .ok_or_else(|| StoreError::NotFound(format!("user {username}")))
    }

    /// A user and the stored hash of their password.
    pub async fn user_with_password(&self, username: &str) -> Result<Option<(UserRecord, String)>> {
        let row =
            sqlx::query(&format!("SELECT {USER_COLUMNS}, password_hash FROM users WHERE username = $1"))
                .bind(username)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|row| Ok((user_from_row(&row)?, row.try_get("password_hash")?))).transpose()
    }

    /// A page of the people, of one department when given, by username.
    pub async fn users_page(
        &self,
        department_code: Option<&str>,
        request: &PageRequest,
    ) -> Result<Page<UserRecord>> {
        Keyset::new(&format!("SELECT {USER_COLUMNS} FROM users"), "username")
            .equal("department_code", department_code)
            .page(&self.pool, request, user_from_row)
            .await
    }

    pub async fn users(&self, department_code: Option<&str>) -> Result<Vec<UserRecord>> {
        let rows = match department_code {
            Some(code) => {
                sqlx::query(&format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE department_code = $1 ORDER BY username"
                ))
                .bind(code)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY username"))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(user_from_row).collect()
    }

    pub async fn create_session(
        &self,
        token_digest: &str,
        username: &str,
        now: NaiveDateTime,
        expires_at: NaiveDateTime,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO sessions (token_hash, username, created_at, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(token_digest)
        .bind(username)
        .bind(time(now))
        .bind(time(expires_at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The enabled user whose unexpired session has this token digest.
    pub async fn session_user(&self, token_digest: &str, now: NaiveDateTime) -> Result<Option<UserRecord>> {
        let row = sqlx::query(
            "SELECT u.username, u.display_name, u.department_code, u.roles, u.enabled, u.created_at \
             FROM sessions s JOIN users u ON u.username = s.username \
             WHERE s.token_hash = $1 AND s.expires_at > $2 AND u.enabled = 1",
        )
        .bind(token_digest)
        .bind(time(now))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    pub async fn delete_session(&self, token_digest: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_digest)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes the sessions that ended before `now`, which no token can use any more, so the
    /// table holds the sessions in force rather than every sign-in ever made.
    pub async fn sweep_sessions(&self, now: NaiveDateTime) -> Result<u64> {
        let done = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(time(now))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Counts an attempt to sign in as `name` (already lower-cased) at `now`, unless the name
    /// is locked: `max` attempts have been counted, each within `lock` of the one before,
    /// and the last less than `lock` ago. A locked name's attempts are not counted, so trying
    /// during the lock does not lengthen it. One statement counts and checks, so attempts made
    /// at once, through one gateway or several, never pass the bound together.
    pub async fn count_sign_in_attempt(
        &self,
        name: &str,
        now: NaiveDateTime,
        lock: chrono::Duration,
        max: u32,
    ) -> Result<SignInAttempt> {
        let stale = time(now - lock);
        let counted = sqlx::query(
            "INSERT INTO sign_in_attempts (username, attempts, last_attempt) VALUES ($1, 1, $2) \
             ON CONFLICT (username) DO UPDATE SET \
               attempts = CASE WHEN sign_in_attempts.last_attempt <= $3 THEN 1 \
                               ELSE sign_in_attempts.attempts + 1 END, \
               last_attempt = $2 \
             WHERE sign_in_attempts.last_attempt <= $3 OR sign_in_attempts.attempts < $4 \
             RETURNING attempts",
        )
        .bind(name)
        .bind(time(now))
        .bind(&stale)
        .bind(i64::from(max))
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = counted {
            let attempts: i64 = row.try_get("attempts")?;
            return Ok(SignInAttempt::Counted(u32::try_from(attempts).unwrap_or(u32::MAX)));
        }
        let last: String = sqlx::query("SELECT last_attempt FROM sign_in_attempts WHERE username = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await?
            .try_get("last_attempt")?;
        Ok(SignInAttempt::Locked { until: parse_time(&last)? + lock })
    }

    /// Forgets the attempts to sign in as `name`: it signed in, or was given a new password.
    pub async fn clear_sign_in_attempts(&self, name: &str) -> Result<()> {
        sqlx::query("DELETE FROM sign_in_attempts WHERE username = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Forgets attempts made before `before`, which no longer count towards a lock.
    pub async fn sweep_sign_in_attempts(&self, before: NaiveDateTime) -> Result<u64> {
        let done = sqlx::query("DELETE FROM sign_in_attempts WHERE last_attempt < $1")
            .bind(time(before))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

async fn insert_user<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Any>,
    user: &UserRecord,
    password_hash: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO users (username, display_name, department_code, roles, password_hash, enabled, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&user.username)
    .bind(&user.display_name)
    .bind(&user.department_code)
    .bind(serde_json::to_string(&user.roles)?)
    .bind(password_hash)
    .bind(i64::from(user.enabled))
    .bind(time(user.created_at))
    .execute(executor)
    .await
    .map_err(duplicate(|| format!("user {}", user.username)))?;
    Ok(())
}

/// An update that changed nothing found no `what` to change.
fn found(done: &sqlx::any::AnyQueryResult, what: impl FnOnce() -> String) -> Result<()> {
    if done.rows_affected() == 0 { Err(StoreError::NotFound(what())) } else { Ok(()) }
}
