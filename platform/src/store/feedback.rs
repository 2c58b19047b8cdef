//! Objections (数据纠错) and ratings (好差评), each stored as its JSON document with the
//! columns lists filter on, and changed only at the version it was read at.

use chrono::NaiveDate;
use sqlx::Row;
use tongban_policy::feedback::{Objection, ObjectionState, Rating};

use super::{Keyset, Page, PageRequest, Result, Store, StoreError, json_column, time, unique_as};

/// Which objections or ratings to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedbackFilter {
    /// Only those a department filed or must answer (the consumer or the supplier).
    pub party: Option<String>,
    /// Only those on resources of suppliers seated in this province (two-digit code).
    pub supplier_province: Option<String>,
    pub resource: Option<String>,
    /// Objections in this state, or ratings whose task is `none`, `open` or `answered`.
    pub state: Option<String>,
    /// Only those open past their deadline on this day.
    pub overdue_on: Option<NaiveDate>,
}

impl FeedbackFilter {
    fn apply(&self, keyset: Keyset, state_column: &str, open: &str) -> Keyset {
        let keyset = match &self.party {
            Some(party) => {
                keyset.condition("consumer_department = $? OR supplier_department = $?", party.clone())
            }
            None => keyset,
        };
        let keyset = match &self.supplier_province {
            Some(province) => keyset.condition(
                "supplier_department IN (SELECT code FROM departments WHERE region LIKE $? ESCAPE '\\')",
                super::starts_with_pattern(province),
            ),
            None => keyset,
        };
        let keyset =
            keyset.equal("resource_code", self.resource.clone()).equal(state_column, self.state.clone());
        match self.overdue_on {
            Some(day) => keyset.condition(
                &format!("{state_column} = '{open}' AND deadline < $?"),
                day.format("%Y-%m-%d").to_string(),
            ),
            None => keyset,
        }
    }
}

fn rating_task(rating: &Rating) -> (&'static str, Option<String>) {
    match &rating.rectification {
        None => ("none", None),
        Some(task) => (
            if task.answer.is_some() { "answered" } else { "open" },
            Some(task.deadline.format("%Y-%m-%d").to_string()),
        ),
    }
}

impl Store {
    /// Stores a new objection; a second one on the same item of the same answer is a duplicate.
    pub async fn insert_objection(&self, objection: &Objection) -> Result<()> {
        sqlx::query(
            "INSERT INTO objections (id, exchange_id, item, consumer_department, supplier_department, \
             resource_code, state, deadline, filed_at, version, body) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, $10)",
        )
        .bind(&objection.id)
        .bind(&objection.exchange_id)
        .bind(&objection.item)
        .bind(&objection.consumer_department)
        .bind(&objection.supplier)
        .bind(&objection.resource)
        .bind(objection.state.as_str())
        .bind(objection.deadline.format("%Y-%m-%d").to_string())
        .bind(time(objection.filed_at))
        .bind(serde_json::to_string(objection)?)
        .execute(&self.pool)
        .await
        .map_err(unique_as(|| {
            StoreError::Duplicate(format!(
                "an objection to item {} of exchange {}",
                objection.item, objection.exchange_id
            ))
        }))?;
        Ok(())
    }

    /// An objection and the version it was read at.
    pub async fn objection(&self, id: &str) -> Result<(Objection, i64)> {
        let row = sqlx::query("SELECT body, version FROM objections WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("objection {id}")))?;
        Ok((json_column(&row, "body")?, row.try_get("version")?))
    }

    /// Writes a changed objection if it is still at `expected_version`.
    pub async fn update_objection(&self, objection: &Objection, expected_version: i64) -> Result<()> {
        let done = sqlx::query(
            "UPDATE objections SET state = $1, body = $2, version = version + 1 WHERE id = $3 AND version = $4",
        )
        .bind(objection.state.as_str())
        .bind(serde_json::to_string(objection)?)
        .bind(&objection.id)
        .bind(expected_version)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() != 1 {
            return Err(StoreError::Conflict(format!("objection {}", objection.id)));
        }
        Ok(())
    }

    /// A page of objections within `filter`, in the order they were filed.
    pub async fn objections_page(
        &self,
        filter: &FeedbackFilter,
        request: &PageRequest,
    ) -> Result<Page<Objection>> {
        let open = ObjectionState::Open.as_str();
        filter
            .apply(Keyset::new("SELECT body FROM objections", "id"), "state", open)
            .page(&self.pool, request, |r| json_column(r, "body"))
            .await
    }

    /// Every objection filed from `from` up to (not including) `to` (Beijing days), for
    /// reports and quality indicators.
    pub async fn objections_filed_between(&self, from: NaiveDate, to: NaiveDate) -> Result<Vec<Objection>> {
        let rows =
            sqlx::query("SELECT body FROM objections WHERE filed_at >= $1 AND filed_at < $2 ORDER BY id")
                .bind(from.format("%Y-%m-%d").to_string())
                .bind(to.format("%Y-%m-%d").to_string())
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(|r| json_column(r, "body")).collect()
    }

    /// Stores a new rating; a second one of the same grant for the same month is a duplicate.
    pub async fn insert_rating(&self, rating: &Rating) -> Result<()> {
        let (task, deadline) = rating_task(rating);
        sqlx::query(
            "INSERT INTO ratings (id, grant_id, period, consumer_department, supplier_department, resource_code, \
             score, task, deadline, rated_at, version, body) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 1, $11)",
        )
        .bind(&rating.id)
        .bind(&rating.grant_id)
        .bind(&rating.period)
        .bind(&rating.consumer_department)
        .bind(&rating.supplier)
        .bind(&rating.resource)
        .bind(i32::from(rating.score))
        .bind(task)
        .bind(deadline)
        .bind(time(rating.rated_at))
        .bind(serde_json::to_string(rating)?)
        .execute(&self.pool)
        .await
        .map_err(unique_as(|| {
            StoreError::Duplicate(format!("a rating of grant {} for {}", rating.grant_id, rating.period))
        }))?;
        Ok(())
    }

    pub async fn rating(&self, id: &str) -> Result<(Rating, i64)> {
        let row = sqlx::query("SELECT body, version FROM ratings WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("rating {id}")))?;
        Ok((json_column(&row, "body")?, row.try_get("version")?))
    }

    /// Writes a changed rating if it is still at `expected_version`.
    pub async fn update_rating(&self, rating: &Rating, expected_version: i64) -> Result<()> {
        let (task, _) = rating_task(rating);
        let done = sqlx::query(
            "UPDATE ratings SET task = $1, body = $2, version = version + 1 WHERE id = $3 AND version = $4",
        )
        .bind(task)
        .bind(serde_json::to_string(rating)?)
        .bind(&rating.id)
        .bind(expected_version)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() != 1 {
            return Err(StoreError::Conflict(format!("rating {}", rating.id)));
        }
        Ok(())
    }

    /// A page of ratings within `filter` (its state is the task's), in the order given.
    pub async fn ratings_page(&self, filter: &FeedbackFilter, request: &PageRequest) -> Result<Page<Rating>> {
        filter
            .apply(Keyset::new("SELECT body FROM ratings", "id"), "task", "open")
            .page(&self.pool, request, |r| json_column(r, "body"))
            .await
    }

    /// Every rating of the month `period` (`YYYY-MM`).
    pub async fn ratings_of_period(&self, period: &str) -> Result<Vec<Rating>> {
        let rows = sqlx::query("SELECT body FROM ratings WHERE period = $1 ORDER BY id")
            .bind(period)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| json_column(r, "body")).collect()
    }
}
