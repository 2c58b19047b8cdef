//! Grants and their version history.

use chrono::{NaiveDate, NaiveDateTime};
use sqlx::Row;
use tongban_policy::grant::Grant;

use super::{
    Keyset, Page, PageRequest, Result, Store, StoreError, json_column, serde_name, starts_with_pattern, time,
    unique_as,
};

/// Which grants to list: all, or those a department is party to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrantFilter {
    /// Only grants this department holds or that are on resources it supplies, and, with
    /// `reviewing_province`, those on data of suppliers seated in that province.
    pub party: Option<String>,
    /// A province (two-digit code) whose data office reviews the grants on its suppliers' data.
    pub reviewing_province: Option<String>,
}

/// A stored grant and the store version a change must name.
#[derive(Debug, Clone, PartialEq)]
pub struct GrantRecord {
    pub grant: Grant,
    pub version: i64,
}

pub(super) async fn insert_grant(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    grant: &Grant,
    actor: &str,
    now: NaiveDateTime,
) -> Result<()> {
    let body = serde_json::to_string(grant)?;
    sqlx::query(
        "INSERT INTO grants (id, demand_id, consumer_department, resource_code, status, valid_until, version, body, \
         updated_at, purpose) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(&grant.id)
    .bind(&grant.demand_id)
    .bind(&grant.consumer_department)
    .bind(&grant.resource_code)
    .bind(serde_name(&grant.status))
    .bind(grant.valid_until.format("%Y-%m-%d").to_string())
    .bind(i64::from(grant.version))
    .bind(&body)
    .bind(time(now))
    .bind(purpose_key(grant)?)
    .execute(&mut **tx)
    .await
    .map_err(unique_as(|| {
        StoreError::Conflict(format!(
            "the grants for service item {} on {} (another approval for the same purpose was written first)",
            grant.service_item, grant.resource_code
        ))
    }))?;
    insert_version(tx, grant, &body, actor, Some("approved"), now).await
}

/// The key of the purpose a grant serves (see [`Grant::same_purpose`]).
fn purpose_key(grant: &Grant) -> Result<String> {
    Ok(serde_json::to_string(&(
        &grant.consumer_department,
        grant.consumer_system.as_deref().unwrap_or_default(),
        &grant.resource_code,
        &grant.service_item,
    ))?)
}

/// A grant replaced by a later approval, and the approval that replaced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superseded {
    pub grant: String,
    pub by: String,
}

/// Replaces the standing grants for `successor`'s purpose by `successor`, in the transaction
/// that writes it: each gets its next version, superseded and naming its successor, and the
/// calls it used today count against the successor's daily quota.
pub(super) async fn supersede_for(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    successor: &Grant,
    actor: &str,
    now: NaiveDateTime,
) -> Result<Vec<Superseded>> {
    let rows = sqlx::query(
        "SELECT body, version FROM grants WHERE consumer_department = $1 AND resource_code = $2 AND id <> $3 \
         AND status IN ('active', 'suspended') ORDER BY id",
    )
    .bind(&successor.consumer_department)
    .bind(&successor.resource_code)
    .bind(&successor.id)
    .fetch_all(&mut **tx)
    .await?;
    let mut replaced = Vec::new();
    for row in rows {
        let old: Grant = json_column(&row, "body")?;
        let version: i64 = row.try_get("version")?;
        let Ok(next) = old.supersede(successor) else { continue };
        let body = serde_json::to_string(&next)?;
        let updated = sqlx::query(
            "UPDATE grants SET status = $1, version = $2, body = $3, updated_at = $4 WHERE id = $5 AND version = $6",
        )
        .bind(serde_name(&next.status))
        .bind(i64::from(next.version))
        .bind(&body)
        .bind(time(now))
        .bind(&next.id)
        .bind(version)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(StoreError::Conflict(format!("grant {}", next.id)));
        }
        let reason = format!("superseded by grant {}, a later approval for the same purpose", successor.id);
        insert_version(tx, &next, &body, actor, Some(&reason), now).await?;
        sqlx::query(
            "INSERT INTO quota_usage (grant_id, day, used, last_lease) \
             SELECT $1, day, used, 0 FROM quota_usage WHERE grant_id = $2 AND day = $3 \
             ON CONFLICT (grant_id, day) DO UPDATE SET used = quota_usage.used + excluded.used",
        )
        .bind(&successor.id)
        .bind(&old.id)
        .bind(now.date().format("%Y-%m-%d").to_string())
        .execute(&mut **tx)
        .await?;
        replaced.push(Superseded { grant: old.id, by: successor.id.clone() });
    }
    Ok(replaced)
}

/// Records a version of a grant in `tx`.
async fn insert_version(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    grant: &Grant,
    body: &str,
    actor: &str,
    reason: Option<&str>,
    now: NaiveDateTime,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO grant_versions (grant_id, version, body, changed_by, reason, at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&grant.id)
    .bind(i64::from(grant.version))
    .bind(body)
    .bind(actor)
    .bind(reason)
    .bind(time(now))
    .execute(&mut **tx)
    .await?;
    // Every version of every grant is written here, so this is where a peer's mirror learns of
    // each one: approval, suspension, narrowing, revocation and supersession alike.
    super::peers::mirror_to_peer(tx, grant, now).await
}

impl Store {
    pub async fn grant(&self, id: &str) -> Result<GrantRecord> {
        let row = sqlx::query("SELECT body, version FROM grants WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("grant {id}")))?;
        Ok(GrantRecord { grant: json_column(&row, "body")?, version: row.try_get("version")? })
    }

    /// The grant an approved demand compiled into.
    pub async fn grant_of_demand(&self, demand_id: &str) -> Result<Option<Grant>> {
        let row = sqlx::query("SELECT body FROM grants WHERE demand_id = $1")
            .bind(demand_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| json_column(&r, "body")).transpose()
    }

    /// A page of the grants within `filter`, in identifier order.
    pub async fn grants_page(
        &self,
        filter: &GrantFilter,
        request: &PageRequest,
    ) -> Result<Page<GrantRecord>> {
        let mut keyset = Keyset::new("SELECT body, version FROM grants", "id");
        if let Some(department) = &filter.party {
            // A province that matches no region stands in when the department reviews none.
            let province =
                filter.reviewing_province.as_deref().map_or_else(|| "-".to_owned(), starts_with_pattern);
            keyset = keyset.condition_with(
                "consumer_department = $?1 \
                 OR resource_code IN (SELECT code FROM resource_versions WHERE supplier = $?1) \
                 OR resource_code IN (SELECT r.code FROM resource_versions r JOIN departments s ON s.code = r.supplier \
                                      WHERE s.region LIKE $?2 ESCAPE '\\')",
                [department.clone(), province],
            );
        }
        keyset
            .page(&self.pool, request, |r| {
                Ok(GrantRecord { grant: json_column(r, "body")?, version: r.try_get("version")? })
            })
            .await
    }

    /// Brings a store to one standing grant per purpose: fills the purpose of grants written
    /// before it was kept, replaces all but the newest approval of each purpose that has more
    /// than one (as an approval would have), and makes the unique index that keeps it so.
    /// Returns what it replaced, for the operator to hear; nothing on a store already so.
    pub async fn one_grant_per_purpose(&self, now: NaiveDateTime) -> Result<Vec<Superseded>> {
        let mut tx = self.pool.begin().await?;
        let unfilled =
            sqlx::query("SELECT id, body FROM grants WHERE purpose IS NULL").fetch_all(&mut *tx).await?;
        for row in &unfilled {
            let grant: Grant = json_column(row, "body")?;
            sqlx::query("UPDATE grants SET purpose = $1 WHERE id = $2")
                .bind(purpose_key(&grant)?)
                .bind(row.try_get::<String, _>("id")?)
                .execute(&mut *tx)
                .await?;
        }
        let rows = sqlx::query(
            "SELECT body FROM grants WHERE status IN ('active', 'suspended') AND purpose IN \
             (SELECT purpose FROM grants WHERE status IN ('active', 'suspended') GROUP BY purpose HAVING COUNT(*) > 1)",
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut overlapping: Vec<Grant> =
            rows.iter().map(|r| json_column(r, "body")).collect::<Result<_>>()?;
        // The newest approval first: the latest start, then the latest identifier (v7
        // identifiers grow with time).
        overlapping.sort_by(|a, b| (b.valid_from, &b.id).cmp(&(a.valid_from, &a.id)));
        let mut newest_of_each: Vec<Grant> = Vec::new();
        for grant in overlapping {
            if !newest_of_each.iter().any(|newest| newest.same_purpose(&grant)) {
                newest_of_each.push(grant);
            }
        }
        let mut replaced = Vec::new();
        for newest in &newest_of_each {
            replaced.extend(supersede_for(&mut tx, newest, "migration", now).await?);
        }
        sqlx::query(
            "CREATE UNIQUE INDEX IF NOT EXISTS grants_one_standing_per_purpose ON grants (purpose) \
             WHERE status IN ('active', 'suspended')",
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(replaced)
    }

    /// Every grant, in identifier order.
    pub async fn grants(&self) -> Result<Vec<GrantRecord>> {
        let rows = sqlx::query("SELECT body, version FROM grants ORDER BY id").fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| Ok(GrantRecord { grant: json_column(r, "body")?, version: r.try_get("version")? }))
            .collect()
    }

    /// Writes the grant's next version if the stored one is still `expected_version`.
    pub async fn update_grant(
        &self,
        next: &Grant,
        expected_version: i64,
        actor: &str,
        reason: Option<&str>,
        now: NaiveDateTime,
    ) -> Result<GrantRecord> {
        let body = serde_json::to_string(next)?;
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE grants SET status = $1, valid_until = $2, version = $3, body = $4, updated_at = $5 \
             WHERE id = $6 AND version = $7",
        )
        .bind(serde_name(&next.status))
        .bind(next.valid_until.format("%Y-%m-%d").to_string())
        .bind(i64::from(next.version))
        .bind(&body)
        .bind(time(now))
        .bind(&next.id)
        .bind(expected_version)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            tx.rollback().await?;
            self.grant(&next.id).await?;
            return Err(StoreError::Conflict(format!("grant {}", next.id)));
        }
        insert_version(&mut tx, next, &body, actor, reason, now).await?;
        tx.commit().await?;
        self.grant(&next.id).await
    }

    /// Every version of a grant, oldest first, with who changed it and why.
    pub async fn grant_versions(
        &self,
        id: &str,
    ) -> Result<Vec<(Grant, String, Option<String>, NaiveDateTime)>> {
        let rows = sqlx::query(
            "SELECT body, changed_by, reason, at FROM grant_versions WHERE grant_id = $1 ORDER BY version",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    json_column(r, "body")?,
                    r.try_get("changed_by")?,
                    r.try_get("reason")?,
                    super::parse_time(&r.try_get::<String, _>("at")?)?,
                ))
            })
            .collect()
    }

    /// A number that grows with every grant change, for instances to notice changes made
    /// elsewhere.
    pub async fn grant_revision(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM grant_versions").fetch_one(&self.pool).await?;
        Ok(row.try_get("n")?)
    }

    /// A number that grows with every grant change and every catalog edit. Both tables are
    /// insert-only, so the sum of their row counts only grows.
    pub async fn policy_revision(&self) -> Result<i64> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM grant_versions) + (SELECT COUNT(*) FROM resource_versions) AS n",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("n")?)
    }

    /// Takes up to `want` calls of `grant_id`'s daily quota of `quota` calls on `day` and
    /// returns how many it got: fewer near the end of the quota, none once it is used up. One
    /// statement takes and counts them, so leases taken at once, by one gateway or several,
    /// never add up to more than the quota.
    pub async fn lease_quota(&self, grant_id: &str, day: NaiveDate, want: u32, quota: u32) -> Result<u32> {
        let day = day.format("%Y-%m-%d").to_string();
        sqlx::query(
            "INSERT INTO quota_usage (grant_id, day, used, last_lease) VALUES ($1, $2, 0, 0) \
             ON CONFLICT (grant_id, day) DO NOTHING",
        )
        .bind(grant_id)
        .bind(&day)
        .execute(&self.pool)
        .await?;
        // Every right-hand side reads the row as it was, so `last_lease` is what this
        // statement added to `used`.
        let row = sqlx::query(
            "UPDATE quota_usage SET \
               last_lease = CASE WHEN used + $3 <= $4 THEN $3 WHEN used < $4 THEN $4 - used ELSE 0 END, \
               used = CASE WHEN used + $3 <= $4 THEN used + $3 WHEN used < $4 THEN $4 ELSE used END \
             WHERE grant_id = $1 AND day = $2 RETURNING last_lease",
        )
        .bind(grant_id)
        .bind(&day)
        .bind(i64::from(want))
        .bind(i64::from(quota))
        .fetch_one(&self.pool)
        .await?;
        let leased: i64 = row.try_get("last_lease")?;
        Ok(u32::try_from(leased).unwrap_or(0))
    }

    /// Gives back `calls` leased from `grant_id`'s quota on `day` and not used (the grant
    /// changed, or the gateway is stopping), so that other gateways can use them.
    pub async fn return_quota(&self, grant_id: &str, day: NaiveDate, calls: u32) -> Result<()> {
        sqlx::query(
            "UPDATE quota_usage SET used = CASE WHEN used >= $3 THEN used - $3 ELSE 0 END \
             WHERE grant_id = $1 AND day = $2",
        )
        .bind(grant_id)
        .bind(day.format("%Y-%m-%d").to_string())
        .bind(i64::from(calls))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The calls of `grant_id`'s quota taken on `day`, leased or used.
    pub async fn quota_used(&self, grant_id: &str, day: NaiveDate) -> Result<u32> {
        let row = sqlx::query("SELECT used FROM quota_usage WHERE grant_id = $1 AND day = $2")
            .bind(grant_id)
            .bind(day.format("%Y-%m-%d").to_string())
            .fetch_optional(&self.pool)
            .await?;
        let used: i64 = row.map(|r| r.try_get("used")).transpose()?.unwrap_or(0);
        Ok(u32::try_from(used).unwrap_or(u32::MAX))
    }

    /// Forgets the usage of days before `day`, which no quota counts any more.
    pub async fn sweep_quota_usage(&self, day: NaiveDate) -> Result<u64> {
        let done = sqlx::query("DELETE FROM quota_usage WHERE day < $1")
            .bind(day.format("%Y-%m-%d").to_string())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
