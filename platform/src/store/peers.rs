//! Peer gateways' catalogs, as last received, and how refreshing them stands; the outbox of
//! messages to peers, the inbox position of messages from them, and the mirrors of grants they
//! compiled for this gateway's departments.

use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use sqlx::Row;
use tongban_policy::grant::Grant;
use tongban_policy::workflow::Demand;

use super::{
    DemandFiling, DemandRecord, Result, Store, StoreError, deadline_of, insert_demand, json_column,
    parse_time, serde_name, time, write_demand,
};
use crate::federation::{
    CatalogDocument, GrantMirror, OutboxDepth, PeerMessage, RefreshFailure, RemoteCatalog, RemoteDepartment,
};

/// Writes `message` for `peer` in `tx`, numbered next after the peer's last message. The
/// counter row is taken by an update, so concurrent writers queue on its lock rather than
/// number two messages alike.
pub(super) async fn enqueue(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    peer: &str,
    message: &PeerMessage,
    now: NaiveDateTime,
) -> Result<i64> {
    sqlx::query("INSERT INTO outbox_heads (peer, last_seq) VALUES ($1, 0) ON CONFLICT (peer) DO NOTHING")
        .bind(peer)
        .execute(&mut **tx)
        .await?;
    let seq: i64 =
        sqlx::query("UPDATE outbox_heads SET last_seq = last_seq + 1 WHERE peer = $1 RETURNING last_seq")
            .bind(peer)
            .fetch_one(&mut **tx)
            .await?
            .try_get("last_seq")?;
    sqlx::query(
        "INSERT INTO outbox (peer, seq, kind, body, created_at, attempts) VALUES ($1, $2, $3, $4, $5, 0)",
    )
    .bind(peer)
    .bind(seq)
    .bind(message.kind())
    .bind(serde_json::to_string(message)?)
    .bind(time(now))
    .execute(&mut **tx)
    .await?;
    Ok(seq)
}

/// When `grant` belongs to a demand that crossed from a peer's department, writes the grant
/// for that peer's mirror in `tx`: every path that writes a grant calls this, so no approval,
/// suspension, narrowing, revocation or supersession stays unknown to the home gateway.
pub(super) async fn mirror_to_peer(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    grant: &Grant,
    now: NaiveDateTime,
) -> Result<()> {
    let peer: Option<String> = sqlx::query("SELECT peer FROM demands WHERE id = $1 AND side = 'supplier'")
        .bind(&grant.demand_id)
        .fetch_optional(&mut **tx)
        .await?
        .map(|row| row.try_get("peer"))
        .transpose()?;
    if let Some(peer) = peer {
        enqueue(tx, &peer, &PeerMessage::GrantChanged { grant: Box::new(grant.clone()) }, now).await?;
    }
    Ok(())
}

/// Takes message `seq` from `peer` as the next one applied, in `tx`: `false` when it is not
/// the next (a repeat, or one applied meanwhile by a concurrent delivery).
async fn take_inbox_seq(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    peer: &str,
    seq: i64,
    now: NaiveDateTime,
) -> Result<bool> {
    sqlx::query(
        "INSERT INTO inbox (peer, last_seq, updated_at) VALUES ($1, 0, $2) ON CONFLICT (peer) DO NOTHING",
    )
    .bind(peer)
    .bind(time(now))
    .execute(&mut **tx)
    .await?;
    let taken =
        sqlx::query("UPDATE inbox SET last_seq = $1, updated_at = $2 WHERE peer = $3 AND last_seq = $4")
            .bind(seq)
            .bind(time(now))
            .bind(peer)
            .bind(seq - 1)
            .execute(&mut **tx)
            .await?
            .rows_affected();
    Ok(taken == 1)
}

/// A change a peer's message makes here, applied with the message's place in the inbox.
#[derive(Debug)]
pub enum PeerChange<'a> {
    /// The first step of a demand that crossed from the peer (the home office's pass).
    NewDemand { id: &'a str, filing: &'a DemandFiling, applicant: Option<&'a RemoteDepartment> },
    /// A later step on a demand shared with the peer.
    Demand { id: &'a str, expected_version: i64, workflow: &'a Demand },
    /// A grant for the home gateway's mirror.
    Mirror(&'a GrantMirror),
    /// Nothing: the message was refused, and only its place in the sequence is taken.
    Refused,
}

/// Whether a peer's message changed anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    Applied,
    /// It had been applied before: nothing changed.
    Repeat,
}

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

    /// The last message applied from `peer` (0 before any).
    pub async fn inbox_position(&self, peer: &str) -> Result<i64> {
        Ok(sqlx::query("SELECT last_seq FROM inbox WHERE peer = $1")
            .bind(peer)
            .fetch_optional(&self.pool)
            .await?
            .map(|row| row.try_get("last_seq"))
            .transpose()?
            .unwrap_or(0))
    }

    /// Applies message `seq` from `peer`: the change and the inbox position in one
    /// transaction, so a message is applied exactly once whatever fails or repeats.
    pub async fn receive_from_peer(
        &self,
        peer: &str,
        seq: i64,
        change: PeerChange<'_>,
        now: NaiveDateTime,
    ) -> Result<Received> {
        let mut tx = self.pool.begin().await?;
        if !take_inbox_seq(&mut tx, peer, seq, now).await? {
            tx.rollback().await?;
            return Ok(Received::Repeat);
        }
        match change {
            PeerChange::NewDemand { id, filing, applicant } => {
                if let Some(department) = applicant {
                    sqlx::query(
                        "INSERT INTO remote_departments (code, name, region, peer, updated_at) VALUES ($1, $2, $3, $4, $5) \
                         ON CONFLICT (code) DO UPDATE SET name = $2, region = $3, peer = $4, updated_at = $5",
                    )
                    .bind(&department.code)
                    .bind(&department.name)
                    .bind(&department.region)
                    .bind(peer)
                    .bind(time(now))
                    .execute(&mut *tx)
                    .await?;
                }
                let taken = sqlx::query("SELECT id FROM demands WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
                if taken.is_some() {
                    return Err(StoreError::Duplicate(format!("demand {id}")));
                }
                insert_demand(&mut tx, id, filing, now).await?;
            }
            PeerChange::Demand { id, expected_version, workflow } => {
                if !write_demand(&mut tx, id, expected_version, workflow, now).await? {
                    return Err(StoreError::Conflict(format!("demand {id}")));
                }
            }
            PeerChange::Mirror(mirror) => {
                let grant = &mirror.grant;
                // Only a newer version replaces the copy.
                sqlx::query(
                    "INSERT INTO grant_mirrors (grant_id, peer, demand_id, consumer_department, resource_id, status, \
                     valid_until, version, body, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                     ON CONFLICT (grant_id) DO UPDATE SET status = excluded.status, valid_until = excluded.valid_until, \
                     version = excluded.version, body = excluded.body, received_at = excluded.received_at \
                     WHERE grant_mirrors.version < excluded.version",
                )
                .bind(&grant.id)
                .bind(&mirror.peer)
                .bind(&grant.demand_id)
                .bind(&grant.consumer_department)
                .bind(&mirror.resource_id)
                .bind(serde_name(&grant.status))
                .bind(grant.valid_until.format("%Y-%m-%d").to_string())
                .bind(i64::from(grant.version))
                .bind(serde_json::to_string(grant)?)
                .bind(time(mirror.received_at))
                .execute(&mut *tx)
                .await?;
            }
            PeerChange::Refused => {}
        }
        tx.commit().await?;
        Ok(Received::Applied)
    }

    /// A department of another province that a peer stated, when no local one has its code.
    pub async fn remote_department(&self, code: &str) -> Result<Option<RemoteDepartment>> {
        let row = sqlx::query("SELECT code, name, region FROM remote_departments WHERE code = $1")
            .bind(code)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            Ok(RemoteDepartment {
                code: row.try_get("code")?,
                name: row.try_get("name")?,
                region: row.try_get("region")?,
            })
        })
        .transpose()
    }

    /// Sets the clock of a demand still in the state it was sent in, as the peer running its
    /// stage computed it. The version is not bumped: nothing anyone acts on changed.
    pub async fn adopt_clock(
        &self,
        id: &str,
        sent: &Demand,
        clock: tongban_policy::workflow::StageClock,
    ) -> Result<()> {
        let record = self.demand(id).await?;
        let mut workflow = record.filing.workflow;
        if workflow.state != sent.state || workflow.history.len() != sent.history.len() {
            return Ok(());
        }
        workflow.clock = Some(clock);
        sqlx::query("UPDATE demands SET deadline = $1, body = $2 WHERE id = $3 AND version = $4")
            .bind(deadline_of(&workflow))
            .bind(serde_json::to_string(&workflow)?)
            .bind(id)
            .bind(record.version)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The oldest message for `peer` not yet delivered: its number and body.
    pub async fn next_outgoing(&self, peer: &str) -> Result<Option<(i64, PeerMessage)>> {
        let row = sqlx::query(
            "SELECT seq, body FROM outbox WHERE peer = $1 AND delivered_at IS NULL ORDER BY seq LIMIT 1",
        )
        .bind(peer)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| Ok((row.try_get("seq")?, json_column(&row, "body")?))).transpose()
    }

    /// Notes message `seq` to `peer` delivered at `now`, or refused for good with `refused`.
    pub async fn delivered(
        &self,
        peer: &str,
        seq: i64,
        refused: Option<&str>,
        now: NaiveDateTime,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE outbox SET delivered_at = $1, refused = $2, attempts = attempts + 1 WHERE peer = $3 AND seq = $4",
        )
        .bind(time(now))
        .bind(refused)
        .bind(peer)
        .bind(seq)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Notes a failed attempt to deliver message `seq` to `peer`; it stays pending.
    pub async fn delivery_failed(&self, peer: &str, seq: i64, error: &str) -> Result<()> {
        sqlx::query(
            "UPDATE outbox SET attempts = attempts + 1, last_error = $1 WHERE peer = $2 AND seq = $3",
        )
        .bind(error)
        .bind(peer)
        .bind(seq)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// How each peer's outbox stands, by peer.
    pub async fn outbox_depths(&self) -> Result<BTreeMap<String, OutboxDepth>> {
        let rows = sqlx::query(
            "SELECT peer, \
             SUM(CASE WHEN delivered_at IS NULL THEN 1 ELSE 0 END) AS pending, \
             MIN(CASE WHEN delivered_at IS NULL THEN created_at END) AS oldest, \
             SUM(CASE WHEN refused IS NOT NULL THEN 1 ELSE 0 END) AS refused, \
             SUM(CASE WHEN delivered_at IS NOT NULL AND refused IS NULL THEN 1 ELSE 0 END) AS delivered \
             FROM outbox GROUP BY peer",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut depths = BTreeMap::new();
        for row in rows {
            let peer: String = row.try_get("peer")?;
            let oldest: Option<String> = row.try_get("oldest")?;
            let pending: i64 = row.try_get("pending")?;
            let last_error = if pending > 0 {
                sqlx::query(
                    "SELECT last_error FROM outbox WHERE peer = $1 AND delivered_at IS NULL ORDER BY seq LIMIT 1",
                )
                .bind(&peer)
                .fetch_one(&self.pool)
                .await?
                .try_get("last_error")?
            } else {
                None
            };
            depths.insert(
                peer,
                OutboxDepth {
                    pending,
                    oldest_pending_at: oldest.as_deref().map(parse_time).transpose()?,
                    refused: row.try_get("refused")?,
                    delivered: row.try_get("delivered")?,
                    last_error,
                },
            );
        }
        Ok(depths)
    }

    /// The grants peers compiled for `consumer` (every one when `None`), newest first.
    pub async fn grant_mirrors(&self, consumer: Option<&str>) -> Result<Vec<GrantMirror>> {
        let rows = sqlx::query(
            "SELECT peer, resource_id, body, received_at FROM grant_mirrors \
             WHERE ($1 IS NULL OR consumer_department = $1) ORDER BY grant_id DESC",
        )
        .bind(consumer)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(GrantMirror {
                    peer: row.try_get("peer")?,
                    resource_id: row.try_get("resource_id")?,
                    grant: json_column(row, "body")?,
                    received_at: parse_time(&row.try_get::<String, _>("received_at")?)?,
                })
            })
            .collect()
    }

    /// The demand `id` as stored, when it exists.
    pub async fn demand_if_any(&self, id: &str) -> Result<Option<DemandRecord>> {
        match self.demand(id).await {
            Ok(record) => Ok(Some(record)),
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
