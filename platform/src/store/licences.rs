//! Revocations of licences by their issuing departments, kept beside the registers.

use chrono::NaiveDateTime;
use serde::Serialize;
use sqlx::Row;

use super::{Acting, Result, Store, actions, parse_time, time};

/// A licence revoked through the gateway.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Revocation {
    pub resource_code: String,
    pub licence_number: String,
    #[serde(with = "tongban_policy::time::rfc3339")]
    pub revoked_at: NaiveDateTime,
    pub actor: String,
    pub reason: String,
}

impl Store {
    /// Revokes licence `number` of `resource`, with the action in the management trail.
    /// Returns the revocation in force: this one, or the earlier one when the licence was
    /// already revoked (a revocation is never undone or moved).
    pub async fn revoke_licence(
        &self,
        resource: &str,
        number: &str,
        reason: &str,
        acting: Acting<'_>,
    ) -> Result<Revocation> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO licence_revocations (resource_code, licence_number, revoked_at, actor, reason)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (resource_code, licence_number) DO NOTHING",
        )
        .bind(resource)
        .bind(number)
        .bind(time(acting.at))
        .bind(acting.by)
        .bind(reason)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 1 {
            let detail = serde_json::json!({"resource": resource, "reason": reason});
            actions::record(&mut *tx, acting, "licence.revoked", number, detail).await?;
        }
        tx.commit().await?;
        self.licence_revocation(resource, number)
            .await?
            .ok_or_else(|| super::StoreError::NotFound(format!("revocation of {number}")))
    }

    /// Writes one action on a licence to the management trail (a document sealed, for one).
    pub async fn record_licence_action(
        &self,
        acting: Acting<'_>,
        action: &str,
        target: &str,
        detail: serde_json::Value,
    ) -> Result<()> {
        actions::record(&self.pool, acting, action, target, detail).await
    }

    /// The revocation of licence `number` of `resource`, if it was revoked.
    pub async fn licence_revocation(&self, resource: &str, number: &str) -> Result<Option<Revocation>> {
        let row = sqlx::query(
            "SELECT resource_code, licence_number, revoked_at, actor, reason FROM licence_revocations
             WHERE resource_code = $1 AND licence_number = $2",
        )
        .bind(resource)
        .bind(number)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(Revocation {
                resource_code: row.try_get("resource_code")?,
                licence_number: row.try_get("licence_number")?,
                revoked_at: parse_time(&row.try_get::<String, _>("revoked_at")?)?,
                actor: row.try_get("actor")?,
                reason: row.try_get("reason")?,
            })
        })
        .transpose()
    }
}
