//! Peer gateways' catalogs, as last received, and how refreshing them stands.

use chrono::NaiveDateTime;
use sqlx::Row;

use super::{Result, Store, parse_time, time};
use crate::federation::{CatalogDocument, RefreshFailure, RemoteCatalog};

impl Store {
    /// Every peer catalog kept, by peer name.
    pub async fn remote_catalogs(&self) -> Result<Vec<RemoteCatalog>> {
        let rows = sqlx::query(
            "SELECT peer, region, etag, document, fetched_at, checked_at, failed_at, error \
             FROM remote_catalogs ORDER BY peer",
        )
        .fetch_all(&self.pool)
        .await?;
        let optional_time = |text: Option<String>| text.as_deref().map(parse_time).transpose();
        rows.into_iter()
            .map(|row| {
                let document: Option<String> = row.try_get("document")?;
                let failed_at = optional_time(row.try_get("failed_at")?)?;
                let error: Option<String> = row.try_get("error")?;
                Ok(RemoteCatalog {
                    peer: row.try_get("peer")?,
                    region: row.try_get("region")?,
                    document: document.map(|d| serde_json::from_str::<CatalogDocument>(&d)).transpose()?,
                    etag: row.try_get("etag")?,
                    fetched_at: optional_time(row.try_get("fetched_at")?)?,
                    checked_at: optional_time(row.try_get("checked_at")?)?,
                    failure: failed_at.zip(error).map(|(at, error)| RefreshFailure { at, error }),
                })
            })
            .collect()
    }

    /// Keeps `document` as the peer's catalog, received and confirmed at `now`.
    pub async fn save_remote_catalog(
        &self,
        peer: &str,
        region: &str,
        etag: Option<&str>,
        document: &CatalogDocument,
        now: NaiveDateTime,
    ) -> Result<()> {
        let document = serde_json::to_string(document)?;
        sqlx::query(
            "INSERT INTO remote_catalogs (peer, region, etag, document, fetched_at, checked_at) \
             VALUES ($1, $2, $3, $4, $5, $5) \
             ON CONFLICT (peer) DO UPDATE SET region = $2, etag = $3, document = $4, fetched_at = $5, \
             checked_at = $5, failed_at = NULL, error = NULL",
        )
        .bind(peer)
        .bind(region)
        .bind(etag)
        .bind(document)
        .bind(time(now))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Notes that the peer confirmed its catalog unchanged at `now`.
    pub async fn confirm_remote_catalog(&self, peer: &str, now: NaiveDateTime) -> Result<()> {
        sqlx::query(
            "UPDATE remote_catalogs SET checked_at = $1, failed_at = NULL, error = NULL WHERE peer = $2",
        )
        .bind(time(now))
        .bind(peer)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Notes a failure to refresh the peer's catalog; the copy already kept stays.
    pub async fn fail_remote_catalog(
        &self,
        peer: &str,
        region: &str,
        now: NaiveDateTime,
        error: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO remote_catalogs (peer, region, failed_at, error) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (peer) DO UPDATE SET failed_at = $3, error = $4",
        )
        .bind(peer)
        .bind(region)
        .bind(time(now))
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
