//! Seal certificates registered by issuing departments: the public half of the seals their
//! own sealing systems use, so that documents those systems seal are recognised.

use chrono::NaiveDateTime;
use serde::Serialize;
use sqlx::Row;

use super::{Acting, Result, Store, StoreError, actions, parse_time, time};

/// The most certificates a department may have registered and in force at once: enough for
/// a rotation with overlap across several sealing systems, few enough that no department
/// can fill the store or slow every check of its documents.
pub const MAX_SEAL_CERTIFICATES: usize = 16;

/// A seal certificate a department registered.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SealCertificate {
    pub department_code: String,
    /// SHA-256 of the certificate's DER, in hex.
    pub fingerprint: String,
    /// The certificate, PEM.
    pub certificate: String,
    pub subject: String,
    #[serde(with = "tongban_policy::time::rfc3339")]
    pub not_before: NaiveDateTime,
    #[serde(with = "tongban_policy::time::rfc3339")]
    pub not_after: NaiveDateTime,
    #[serde(with = "tongban_policy::time::rfc3339")]
    pub registered_at: NaiveDateTime,
    pub registered_by: String,
    #[serde(with = "tongban_policy::time::rfc3339_option")]
    pub retired_at: Option<NaiveDateTime>,
    pub retired_by: Option<String>,
}

/// A certificate to register, as read and checked by the caller.
#[derive(Debug, Clone)]
pub struct NewSealCertificate<'a> {
    pub department_code: &'a str,
    pub fingerprint: &'a str,
    pub certificate: &'a str,
    pub subject: &'a str,
    pub not_before: NaiveDateTime,
    pub not_after: NaiveDateTime,
}

const COLUMNS: &str = "department_code, fingerprint, certificate, subject, not_before, not_after, \
                       registered_at, registered_by, retired_at, retired_by";

fn read(row: &sqlx::any::AnyRow) -> Result<SealCertificate> {
    let optional_time = |name: &str| -> Result<Option<NaiveDateTime>> {
        row.try_get::<Option<String>, _>(name)?.as_deref().map(parse_time).transpose()
    };
    Ok(SealCertificate {
        department_code: row.try_get("department_code")?,
        fingerprint: row.try_get("fingerprint")?,
        certificate: row.try_get("certificate")?,
        subject: row.try_get("subject")?,
        not_before: parse_time(&row.try_get::<String, _>("not_before")?)?,
        not_after: parse_time(&row.try_get::<String, _>("not_after")?)?,
        registered_at: parse_time(&row.try_get::<String, _>("registered_at")?)?,
        registered_by: row.try_get("registered_by")?,
        retired_at: optional_time("retired_at")?,
        retired_by: row.try_get("retired_by")?,
    })
}

impl Store {
    /// Registers a seal certificate for its department, with the action in the management
    /// trail. A certificate registered before, even retired, is a duplicate: a retired seal is
    /// not brought back, a new certificate is registered instead.
    pub async fn register_seal_certificate(
        &self,
        new: NewSealCertificate<'_>,
        acting: Acting<'_>,
    ) -> Result<SealCertificate> {
        // The write comes first, so that the transaction holds the write lock from its start
        // (SQLite cannot always upgrade a read to a write); the limit is then counted with
        // the new certificate, and a registration over it is rolled back.
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO seal_certificates (department_code, fingerprint, certificate, subject, not_before, not_after,
                 registered_at, registered_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (department_code, fingerprint) DO NOTHING",
        )
        .bind(new.department_code)
        .bind(new.fingerprint)
        .bind(new.certificate)
        .bind(new.subject)
        .bind(time(new.not_before))
        .bind(time(new.not_after))
        .bind(time(acting.at))
        .bind(acting.by)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Err(StoreError::Duplicate(format!("seal certificate {}", new.fingerprint)));
        }
        let in_force: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM seal_certificates WHERE department_code = $1 AND retired_at IS NULL",
        )
        .bind(new.department_code)
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
        if usize::try_from(in_force).unwrap_or(usize::MAX) > MAX_SEAL_CERTIFICATES {
            return Err(StoreError::Conflict(format!(
                "department {}'s seal certificates ({MAX_SEAL_CERTIFICATES} in force; retire one first)",
                new.department_code
            )));
        }
        let detail = serde_json::json!({"department": new.department_code, "subject": new.subject});
        actions::record(&mut *tx, acting, "seal.registered", new.fingerprint, detail).await?;
        tx.commit().await?;
        self.seal_certificate(new.department_code, new.fingerprint)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("seal certificate {}", new.fingerprint)))
    }

    /// Retires a department's seal certificate: documents under it are no longer recognised.
    /// Retiring a retired certificate answers it as it was retired.
    pub async fn retire_seal_certificate(
        &self,
        department: &str,
        fingerprint: &str,
        acting: Acting<'_>,
    ) -> Result<SealCertificate> {
        let mut tx = self.pool.begin().await?;
        let retired = sqlx::query(
            "UPDATE seal_certificates SET retired_at = $1, retired_by = $2
             WHERE department_code = $3 AND fingerprint = $4 AND retired_at IS NULL",
        )
        .bind(time(acting.at))
        .bind(acting.by)
        .bind(department)
        .bind(fingerprint)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if retired == 1 {
            let detail = serde_json::json!({"department": department});
            actions::record(&mut *tx, acting, "seal.retired", fingerprint, detail).await?;
        }
        tx.commit().await?;
        self.seal_certificate(department, fingerprint)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("seal certificate {fingerprint}")))
    }

    /// One registered seal certificate, retired or not.
    pub async fn seal_certificate(
        &self,
        department: &str,
        fingerprint: &str,
    ) -> Result<Option<SealCertificate>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM seal_certificates WHERE department_code = $1 AND fingerprint = $2"
        ))
        .bind(department)
        .bind(fingerprint)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(read).transpose()
    }

    /// The seal certificates registered for `department` (every department's when `None`),
    /// newest first; those in force only when `in_force`.
    pub async fn seal_certificates(
        &self,
        department: Option<&str>,
        in_force: bool,
    ) -> Result<Vec<SealCertificate>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM seal_certificates
             WHERE ($1 = '' OR department_code = $1) AND ($2 = 0 OR retired_at IS NULL)
             ORDER BY registered_at DESC, fingerprint"
        ))
        .bind(department.unwrap_or_default())
        .bind(i32::from(in_force))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(read).collect()
    }
}
