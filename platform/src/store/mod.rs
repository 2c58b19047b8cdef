//! The gateway's store: embedded SQLite by default, PostgreSQL by URL, one set of portable
//! migrations for both.
//!
//! Workflow records carry a version. A change names the version it was computed from and is
//! written only if the record still has it, so two reviewers acting on one demand at once
//! cannot overwrite each other: the second is told the demand changed and must look again.

use chrono::{NaiveDate, NaiveDateTime};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use tongban_policy::grant::Grant;
use tongban_policy::workflow::{Demand, DemandState, Side, Transition};

mod actions;
mod catalog;
mod changes;
mod feedback;
pub mod grants;
mod licences;
mod org;
mod paging;
mod peers;
mod seals;

pub use actions::{Acting, AdminAction};
pub use catalog::ResourceFilter;
pub use changes::{CHANNEL, Change, ChangeListener};
pub use feedback::FeedbackFilter;
pub use grants::{GrantFilter, GrantRecord, Superseded};
pub use licences::Revocation;
pub use org::{DepartmentFilter, SignInAttempt, SystemRecord, UserRecord};
pub(crate) use paging::{Keyset, like_escaped, starts_with_pattern};
pub use paging::{Page, PageRequest};
pub use peers::{PeerChange, Received};
pub use seals::{MAX_SEAL_CERTIFICATES, NewSealCertificate, SealCertificate};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} was changed by someone else; reload it and try again")]
    Conflict(String),
    #[error("{0} already exists")]
    Duplicate(String),
    #[error("store URL {0:?} names no supported database (sqlite: or postgres:)")]
    UnsupportedUrl(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("stored record is unreadable: {0}")]
    Corrupt(#[from] serde_json::Error),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A connected, migrated store.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    /// The URL of a PostgreSQL store, for the connection that listens for other instances'
    /// changes; `None` for SQLite.
    postgres_url: Option<std::sync::Arc<str>>,
}

/// A demand as filed: who asks, for what, and why, with its workflow.
#[derive(Debug, Clone, PartialEq)]
pub struct DemandFiling {
    pub applicant_department: String,
    pub applicant_system: Option<String>,
    pub resource_code: String,
    /// The catalog version the demand was filed against.
    pub resource_version: i64,
    /// The resource's supplying department, so suppliers find the demands they must answer.
    pub supplier_department: String,
    pub service_item: String,
    pub purpose: String,
    pub legal_basis: String,
    pub workflow: Demand,
    /// For a demand that crosses gateways: the peer on the other side and this gateway's side.
    pub crossing: Option<crate::federation::Crossing>,
}

/// A stored demand.
#[derive(Debug, Clone, PartialEq)]
pub struct DemandRecord {
    pub id: String,
    /// The version this record was read at; a change must name it.
    pub version: i64,
    pub filing: DemandFiling,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// Which demands to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DemandFilter {
    pub state: Option<DemandState>,
    pub applicant_department: Option<String>,
    pub resource_code: Option<String>,
    pub supplier_department: Option<String>,
    /// Only demands this province's data office reviews here (two-digit code): within one
    /// gateway those on data of suppliers seated in it; across gateways those whose party on
    /// this gateway's side is seated in it.
    pub office_province: Option<String>,
}

/// The query selecting the demands within `filter`, for more conditions to be added to: every
/// list of demands reads through it. v7 identifiers sort in creation order, so the key `id`
/// lists demands as they were filed.
fn demands_where(filter: &DemandFilter) -> Keyset {
    let keyset = Keyset::new(&format!("SELECT {DEMAND_COLUMNS} FROM demands"), "id")
        .equal("state", filter.state.map(state_name))
        .equal("applicant_department", filter.applicant_department.clone())
        .equal("resource_code", filter.resource_code.clone())
        .equal("supplier_department", filter.supplier_department.clone());
    match &filter.office_province {
        Some(province) => keyset.condition(
            "(CASE WHEN side = 'home' THEN applicant_department ELSE supplier_department END) \
             IN (SELECT code FROM departments WHERE region LIKE $? ESCAPE '\\')",
            starts_with_pattern(province),
        ),
        None => keyset,
    }
}

const TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6f";

fn time(value: NaiveDateTime) -> String {
    value.format(TIME_FORMAT).to_string()
}

fn parse_time(text: &str) -> Result<NaiveDateTime> {
    NaiveDateTime::parse_from_str(text, TIME_FORMAT)
        .map_err(|e| StoreError::Database(sqlx::Error::Decode(Box::new(e))))
}

/// The serde name of a unit enum variant, as stored (`supplier_review`, `data_office`).
fn serde_name<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

fn state_name(state: DemandState) -> String {
    serde_name(&state)
}

const DEMAND_COLUMNS: &str = "id, applicant_department, applicant_system, resource_code, resource_version, \
    supplier_department, service_item, purpose, legal_basis, version, body, created_at, updated_at, peer, side";

fn demand_from_row(row: &AnyRow) -> Result<DemandRecord> {
    let body: String = row.try_get("body")?;
    Ok(DemandRecord {
        id: row.try_get("id")?,
        version: row.try_get("version")?,
        filing: DemandFiling {
            applicant_department: row.try_get("applicant_department")?,
            applicant_system: row.try_get("applicant_system")?,
            resource_code: row.try_get("resource_code")?,
            resource_version: row.try_get::<Option<i64>, _>("resource_version")?.unwrap_or(1),
            supplier_department: row.try_get::<Option<String>, _>("supplier_department")?.unwrap_or_default(),
            service_item: row.try_get("service_item")?,
            purpose: row.try_get("purpose")?,
            legal_basis: row.try_get("legal_basis")?,
            workflow: serde_json::from_str(&body)?,
            crossing: crossing_from(row.try_get("peer")?, row.try_get("side")?),
        },
        created_at: parse_time(&row.try_get::<String, _>("created_at")?)?,
        updated_at: parse_time(&row.try_get::<String, _>("updated_at")?)?,
    })
}

fn side_name(side: Side) -> String {
    serde_name(&side)
}

fn crossing_from(peer: Option<String>, side: Option<String>) -> Option<crate::federation::Crossing> {
    let side = match side.as_deref() {
        Some("home") => Side::Home,
        Some("supplier") => Side::Supplier,
        _ => return None,
    };
    Some(crate::federation::Crossing { peer: peer?, side })
}

/// What every SQLite connection is set to: concurrent readers with one writer, waiting rather
/// than failing on a busy database file, and foreign keys enforced.
const SQLITE_PRAGMAS: [&str; 3] =
    ["PRAGMA journal_mode = WAL", "PRAGMA busy_timeout = 5000", "PRAGMA foreign_keys = ON"];

impl Store {
    /// Connects to `url` (`sqlite://PATH?mode=rwc`, `sqlite::memory:`, or `postgres://…`) and
    /// applies pending migrations.
    /// The pool's connections: open, and of those idle.
    pub fn connections(&self) -> (u32, u32) {
        (self.pool.size(), u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX))
    }

    pub async fn connect(url: &str) -> Result<Store> {
        if !(url.starts_with("sqlite:") || url.starts_with("postgres:") || url.starts_with("postgresql:")) {
            return Err(StoreError::UnsupportedUrl(url.to_owned()));
        }
        sqlx::any::install_default_drivers();
        let in_memory = url.contains(":memory:");
        let sqlite = url.starts_with("sqlite:");
        let pool = AnyPoolOptions::new()
            // An in-memory SQLite database exists per connection; keep exactly one.
            .max_connections(if in_memory { 1 } else { 8 })
            .min_connections(if in_memory { 1 } else { 0 })
            .idle_timeout(if in_memory { None } else { Some(std::time::Duration::from_secs(600)) })
            // SQLite's settings belong to a connection, not to the database: each connection
            // the pool opens gets them, or only the first would wait on a busy file and check
            // foreign keys.
            .after_connect(move |connection, _| {
                Box::pin(async move {
                    if sqlite {
                        for pragma in SQLITE_PRAGMAS {
                            sqlx::query(pragma).execute(&mut *connection).await?;
                        }
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        MIGRATOR.run(&pool).await?;
        let postgres_url = (!sqlite).then(|| std::sync::Arc::from(url));
        Ok(Store { pool, postgres_url })
    }

    /// Closes every connection: later calls fail as they would with the database gone.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Files a new demand.
    pub async fn create_demand(&self, new: DemandFiling, now: NaiveDateTime) -> Result<DemandRecord> {
        let id = uuid::Uuid::now_v7().to_string();
        let mut tx = self.pool.begin().await?;
        insert_demand(&mut tx, &id, &new, now).await?;
        tx.commit().await?;
        self.demand(&id).await
    }

    /// Reads one demand.
    pub async fn demand(&self, id: &str) -> Result<DemandRecord> {
        let row = sqlx::query(&format!("SELECT {DEMAND_COLUMNS} FROM demands WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("demand {id}")))?;
        demand_from_row(&row)
    }

    /// Writes a demand's new workflow, if it is still at `expected_version`. Transitions the
    /// workflow gained since then are appended to its history table in the same transaction.
    pub async fn update_demand(
        &self,
        id: &str,
        expected_version: i64,
        workflow: &Demand,
        grant: Option<(&Grant, &str)>,
        to_peer: Option<(&str, &crate::federation::PeerMessage)>,
        now: NaiveDateTime,
    ) -> Result<DemandRecord> {
        let mut tx = self.pool.begin().await?;
        if !write_demand(&mut tx, id, expected_version, workflow, now).await? {
            tx.rollback().await?;
            // Tell a missing demand from a changed one.
            self.demand(id).await?;
            return Err(StoreError::Conflict(format!("demand {id}")));
        }
        // A step on a demand that crosses gateways reaches the peer exactly when it is stored,
        // before the grant an approval compiles.
        if let Some((peer, message)) = to_peer {
            peers::enqueue(&mut tx, peer, message, now).await?;
        }
        // An approval and its grant are one change: the grant exists exactly when the demand
        // is approved, and replaces the grant standing for the same purpose, if one does.
        if let Some((grant, actor)) = grant {
            grants::supersede_for(&mut tx, grant, actor, now).await?;
            grants::insert_grant(&mut tx, grant, actor, now).await?;
        }
        tx.commit().await?;
        self.demand(id).await
    }

    /// Lists demands in creation order, a page at a time.
    pub async fn list_demands(
        &self,
        filter: &DemandFilter,
        request: &PageRequest,
    ) -> Result<Page<DemandRecord>> {
        demands_where(filter).page(&self.pool, request, demand_from_row).await
    }

    /// Demands within `filter` whose running review stage is past its deadline on `today`.
    pub async fn overdue_demands(
        &self,
        today: NaiveDate,
        filter: &DemandFilter,
    ) -> Result<Vec<DemandRecord>> {
        let (mut sql, mut binds) = demands_where(filter).into_parts();
        let running = [DemandState::Submitted, DemandState::SupplierReview, DemandState::Disputed];
        let mut placeholders = Vec::new();
        for state in running {
            binds.push(state_name(state));
            placeholders.push(format!("${}", binds.len()));
        }
        binds.push(today.format("%Y-%m-%d").to_string());
        sql.push_str(&format!(
            " AND state IN ({}) AND deadline < ${} ORDER BY deadline, id",
            placeholders.join(", "),
            binds.len()
        ));
        let mut query = sqlx::query(&sql);
        for bind in &binds {
            query = query.bind(bind);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(demand_from_row).collect()
    }

    /// The transitions recorded for a demand, oldest first.
    pub async fn demand_transitions(&self, id: &str) -> Result<Vec<(i64, String, String, String)>> {
        let rows = sqlx::query(
            "SELECT seq, actor, action, to_state FROM demand_transitions WHERE demand_id = $1 ORDER BY seq",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((r.try_get("seq")?, r.try_get("actor")?, r.try_get("action")?, r.try_get("to_state")?))
            })
            .collect()
    }
}

/// Maps a unique-key violation to the error `on_unique` makes, any other failure to
/// [`StoreError::Database`].
fn unique_as(on_unique: impl FnOnce() -> StoreError) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => on_unique(),
        _ => StoreError::Database(e),
    }
}

/// Maps a unique-key violation to [`StoreError::Duplicate`] naming `what`.
fn duplicate(what: impl FnOnce() -> String) -> impl FnOnce(sqlx::Error) -> StoreError {
    unique_as(move || StoreError::Duplicate(what()))
}

/// A column holding JSON, decoded.
fn json_column<T: serde::de::DeserializeOwned>(row: &AnyRow, column: &str) -> Result<T> {
    Ok(serde_json::from_str(&row.try_get::<String, _>(column)?)?)
}

/// The running stage's deadline, stored so overdue work is one indexed query.
fn deadline_of(workflow: &Demand) -> Option<String> {
    workflow.state.running_stage()?;
    workflow.clock.map(|c| c.deadline.format("%Y-%m-%d").to_string())
}

/// Writes a demand's new workflow in `tx` if the demand is still at `expected_version`, with
/// the transitions it gained since then; `false` (nothing written) when it is not. The
/// version-checked write comes first: it takes the write lock (SQLite) or the row lock
/// (PostgreSQL) before anything is read, so a concurrent writer waits for it and then finds
/// the version changed, rather than failing on a stale snapshot.
async fn write_demand(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: &str,
    expected_version: i64,
    workflow: &Demand,
    now: NaiveDateTime,
) -> Result<bool> {
    let updated = sqlx::query(
        "UPDATE demands SET state = $1, deadline = $2, body = $3, version = version + 1, updated_at = $4 \
         WHERE id = $5 AND version = $6",
    )
    .bind(state_name(workflow.state))
    .bind(deadline_of(workflow))
    .bind(serde_json::to_string(workflow)?)
    .bind(time(now))
    .bind(id)
    .bind(expected_version)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if updated == 0 {
        return Ok(false);
    }
    let stored: i64 = sqlx::query("SELECT count(*) AS n FROM demand_transitions WHERE demand_id = $1")
        .bind(id)
        .fetch_one(&mut **tx)
        .await?
        .try_get("n")?;
    let new = workflow.history.get(stored as usize..).unwrap_or_default();
    insert_transitions(tx, id, stored, new).await?;
    Ok(true)
}

/// Writes a new demand and its history in `tx`.
async fn insert_demand(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: &str,
    new: &DemandFiling,
    now: NaiveDateTime,
) -> Result<()> {
    let body = serde_json::to_string(&new.workflow)?;
    sqlx::query(
        "INSERT INTO demands (id, applicant_department, applicant_system, resource_code, resource_version, \
         supplier_department, service_item, purpose, legal_basis, state, deadline, version, body, created_at, \
         updated_at, peer, side) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 1, $12, $13, $13, $14, $15)",
    )
    .bind(id)
    .bind(&new.applicant_department)
    .bind(&new.applicant_system)
    .bind(&new.resource_code)
    .bind(new.resource_version)
    .bind(&new.supplier_department)
    .bind(&new.service_item)
    .bind(&new.purpose)
    .bind(&new.legal_basis)
    .bind(state_name(new.workflow.state))
    .bind(deadline_of(&new.workflow))
    .bind(&body)
    .bind(time(now))
    .bind(new.crossing.as_ref().map(|c| c.peer.clone()))
    .bind(new.crossing.as_ref().map(|c| side_name(c.side)))
    .execute(&mut **tx)
    .await?;
    insert_transitions(tx, id, 0, &new.workflow.history).await
}

async fn insert_transitions(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: &str,
    first_seq: i64,
    transitions: &[Transition],
) -> Result<()> {
    for (offset, t) in transitions.iter().enumerate() {
        sqlx::query(
            "INSERT INTO demand_transitions (demand_id, seq, actor, role, action, from_state, to_state, at, reason) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(id)
        .bind(first_seq + offset as i64 + 1)
        .bind(&t.actor)
        .bind(serde_name(&t.role))
        .bind(serde_name(&t.kind))
        .bind(state_name(t.from))
        .bind(state_name(t.to))
        .bind(time(t.at))
        .bind(&t.reason)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
