//! Changes made through one gateway instance, announced to the others on the same store.
//!
//! On PostgreSQL each change is a `NOTIFY` on one channel, sent after the change is
//! committed; every instance listens and reloads what the change names at once. Polling stays
//! as the fallback (a listener that lost its connection, a notification sent while it was
//! reconnecting), so a missed notification delays a change by the polling interval and never
//! loses it. On SQLite, which one process owns, there is nothing to announce.

use sqlx::postgres::PgListener;

use super::{Result, Store};

/// The channel every instance listens on.
pub const CHANNEL: &str = "tongban_changes";

/// What changed, as far as other instances must act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Grants or the catalog: reload the policy snapshot.
    Policy,
    /// A system's credentials or standing (a key replaced, a certificate registered, a system
    /// stopped): forget the identities cached from the store.
    Identities,
}

impl Change {
    fn payload(self) -> &'static str {
        match self {
            Change::Policy => "policy",
            Change::Identities => "identities",
        }
    }

    fn parse(payload: &str) -> Option<Change> {
        match payload {
            "policy" => Some(Change::Policy),
            "identities" => Some(Change::Identities),
            _ => None,
        }
    }
}

/// Notifications from the other instances on the store.
pub struct ChangeListener(PgListener);

impl std::fmt::Debug for ChangeListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeListener").finish_non_exhaustive()
    }
}

impl ChangeListener {
    /// The next change announced, or `None` when the connection was lost: the listener
    /// reconnects on the next call, and since what was announced meanwhile is gone the caller
    /// reloads everything. A payload this version does not know reloads the policy.
    pub async fn next(&mut self) -> Result<Option<Change>> {
        let notification = self.0.try_recv().await?;
        Ok(notification.map(|n| Change::parse(n.payload()).unwrap_or(Change::Policy)))
    }
}

impl Store {
    /// Whether instances on this store hear each other's changes (PostgreSQL).
    pub fn announces_changes(&self) -> bool {
        self.postgres_url.is_some()
    }

    /// Tells the other instances on the store of `change`, once it is committed. A failure is
    /// logged, not returned: the change itself is made, and polling carries it.
    pub async fn announce(&self, change: Change) {
        if self.postgres_url.is_none() {
            return;
        }
        let sent = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(change.payload())
            .execute(&self.pool)
            .await;
        if let Err(e) = sent {
            tracing::warn!(error = %e, ?change, "the change could not be announced; other instances poll for it");
        }
    }

    /// Listens for the changes other instances announce; `None` on a store without
    /// notifications.
    pub async fn listen(&self) -> Result<Option<ChangeListener>> {
        let Some(url) = &self.postgres_url else { return Ok(None) };
        let mut listener = PgListener::connect(url).await?;
        listener.listen(CHANNEL).await?;
        Ok(Some(ChangeListener(listener)))
    }
}
