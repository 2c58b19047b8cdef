//! The trail of management actions: who made, changed or stopped which department, system or
//! account, and when. Each action is written in the transaction of the change it describes,
//! so a change and its record are kept or lost together, and neither is ever written alone.

use chrono::NaiveDateTime;
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Page, Result, Store, page_of, parse_time, time};

/// Who acts, and when.
#[derive(Debug, Clone, Copy)]
pub struct Acting<'a> {
    /// As the workflow's histories name actors: `user:NAME`; or `bootstrap` for `tongban
    /// bootstrap` and `seed` for the demo's seed.
    pub by: &'a str,
    pub at: NaiveDateTime,
}

/// A recorded management action.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AdminAction {
    pub id: String,
    pub at: NaiveDateTime,
    /// Who acted: `user:NAME`, `bootstrap` or `seed`.
    pub actor: String,
    /// `department.created`, `system.created`, `system.api_key_replaced`,
    /// `system.certificate_registered`, `system.enabled`, `system.disabled`, `user.created`,
    /// `user.enabled`, `user.disabled`, `user.password_changed` (by the person),
    /// `user.password_reset` (by an administrator) or `platform.bootstrapped`.
    pub action: String,
    /// A username, a system id or a department's credit code.
    pub target: String,
    /// What changed; never a secret.
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

/// Writes one action, with `executor` the transaction of the change it describes.
pub(super) async fn record<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Any>,
    acting: Acting<'_>,
    action: &str,
    target: &str,
    detail: serde_json::Value,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO admin_actions (id, at, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(time(acting.at))
    .bind(acting.by)
    .bind(action)
    .bind(target)
    .bind(detail.to_string())
    .execute(executor)
    .await?;
    Ok(())
}

fn action_from_row(row: &AnyRow) -> Result<AdminAction> {
    Ok(AdminAction {
        id: row.try_get("id")?,
        at: parse_time(&row.try_get::<String, _>("at")?)?,
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        target: row.try_get("target")?,
        detail: serde_json::from_str(&row.try_get::<String, _>("detail")?)?,
    })
}

impl Store {
    /// Management actions in the order they were taken, those on `target` only when given.
    pub async fn admin_actions(
        &self,
        target: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page<AdminAction>> {
        let limit = limit.clamp(1, 500);
        let rows = sqlx::query(&format!(
            "SELECT id, at, actor, action, target, detail FROM admin_actions \
             WHERE ($1 = '' OR target = $1) AND id > $2 ORDER BY id LIMIT {}",
            limit + 1
        ))
        .bind(target.unwrap_or_default())
        .bind(after.unwrap_or_default())
        .fetch_all(&self.pool)
        .await?;
        let items = rows.iter().map(action_from_row).collect::<Result<Vec<_>>>()?;
        Ok(page_of(items, limit, |a| a.id.clone()))
    }
}
