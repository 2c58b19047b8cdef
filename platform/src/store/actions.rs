//! The trail of management actions: who made, changed or stopped which department, system or
//! account, and when. Each action is written in the transaction of the change it describes,
//! so a change and its record are kept or lost together, and neither is ever written alone.

use chrono::NaiveDateTime;
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Keyset, Page, PageRequest, Result, Store, parse_time, time};

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
    #[serde(with = "tongban_policy::time::rfc3339")]
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
        request: &PageRequest,
    ) -> Result<Page<AdminAction>> {
        Keyset::new("SELECT id, at, actor, action, target, detail FROM admin_actions", "id")
            .equal("target", target)
            .page(&self.pool, request, action_from_row)
            .await
    }
}
