//! Quality indicators for data offices and operators: per resource, freshness against its
//! update cycle and the defects in the data it serves; per demand, review deadlines met and
//! missed; and calls refused for reaching outside their grants or their validity.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Date32Type};
use chrono::NaiveDate;
use futures::StreamExt;
use serde::Serialize;
use tongban_policy::IdNumber;
use tongban_policy::catalog::{Resource, UpdateCycle};

use crate::data::SqlExecutor;
use crate::datasets::DatasetRegistry;

/// The item whose newest value says when a dataset was last updated.
pub const UPDATED_ITEM: &str = "updated_on";

/// Freshness and defects of one resource's data.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ResourceQuality {
    pub code: String,
    pub version: u32,
    pub name: String,
    pub dataset: String,
    pub update_cycle: UpdateCycle,
    pub rows: u64,
    /// The newest `updated_on` in the data; `None` when the dataset has no such item.
    pub newest_update: Option<NaiveDate>,
    pub age_days: Option<i64>,
    /// Whether the newest update is within the update cycle.
    pub fresh: Option<bool>,
    /// Records whose key is not a valid citizen identity number (GB 11643 check digit).
    pub invalid_keys: u64,
    /// Records lacking each required item.
    pub missing_required: BTreeMap<String, u64>,
    /// Records with at least one defect, and their share of all records.
    pub defective_records: u64,
    pub defect_rate: f64,
}

/// Why a resource's quality could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum QualityError {
    #[error("dataset {0} is not open")]
    DatasetMissing(String),
    #[error("reading dataset {dataset}: {source}")]
    Read { dataset: String, source: datafusion::error::DataFusionError },
    #[error("the measurement did not finish: {0}")]
    Interrupted(String),
}

/// What a dataset's key is, and so what makes one valid.
enum KeyKind {
    /// An identity number, with its check digit.
    Identity,
    /// A licence number of the register's licence type.
    Licence(&'static tongban_policy::licence::LicenceType),
    /// Any key that is not empty.
    Other,
}

impl KeyKind {
    fn of(resource: &Resource, key_column: &str) -> KeyKind {
        let key_item = resource.items.iter().find(|i| i.name == key_column);
        if key_item.is_some_and(|i| i.default_mask == tongban_policy::catalog::MaskRule::IdNumber) {
            return KeyKind::Identity;
        }
        let register =
            tongban_policy::licence::LICENCE_TYPES.iter().find(|t| t.dataset() == resource.dataset);
        match register {
            Some(licence_type) if key_column == "licence_number" => KeyKind::Licence(licence_type),
            _ => KeyKind::Other,
        }
    }

    fn admits(&self, key: &str) -> bool {
        match self {
            KeyKind::Identity => IdNumber::parse(key).is_ok(),
            KeyKind::Licence(licence_type) => {
                key.len() == 15
                    && key.bytes().all(|b| b.is_ascii_digit())
                    && tongban_policy::licence::type_of_number(key)
                        .is_some_and(|t| t.code == licence_type.code)
            }
            KeyKind::Other => !key.trim().is_empty(),
        }
    }
}

/// Measures `resource` over its dataset on `today`: one pass over the key, the required items
/// and `updated_on`.
pub async fn measure(
    registry: &DatasetRegistry,
    resource: &Resource,
    today: NaiveDate,
) -> Result<ResourceQuality, QualityError> {
    let dataset = registry
        .datasets
        .get(&resource.dataset)
        .ok_or_else(|| QualityError::DatasetMissing(resource.dataset.clone()))?;
    let read = |source| QualityError::Read { dataset: resource.dataset.clone(), source };
    let schema = dataset.schema.clone();
    let has = |name: &str| schema.column_with_name(name).is_some();
    let required: Vec<String> = resource
        .items
        .iter()
        .filter(|i| i.required && i.name != dataset.key_column && has(&i.name))
        .map(|i| i.name.clone())
        .collect();
    let key_kind = KeyKind::of(resource, &dataset.key_column);
    let mut columns = vec![dataset.key_column.clone()];
    columns.extend(required.iter().cloned());
    let updated = has(UPDATED_ITEM).then(|| UPDATED_ITEM.to_owned());
    columns.extend(updated.iter().cloned());
    let names: Vec<&str> = columns.iter().map(String::as_str).collect();
    let frame =
        registry.ctx.read_table(dataset.table.clone()).map_err(read)?.select_columns(&names).map_err(read)?;
    let mut stream = frame.execute_stream().await.map_err(read)?;

    let mut rows = 0u64;
    let mut invalid_keys = 0u64;
    let mut missing: Vec<u64> = vec![0; required.len()];
    let mut defective = 0u64;
    let mut newest: Option<i32> = None;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(read)?;
        let keys = arrow::compute::cast(batch.column(0), &DataType::Utf8)
            .map_err(|e| read(datafusion::error::DataFusionError::ArrowError(Box::new(e), None)))?;
        let keys = keys.as_string::<i32>();
        let required_columns = &batch.columns()[1..=required.len()];
        if let Some(dates) = updated
            .as_ref()
            .and_then(|_| batch.columns().last())
            .and_then(|c| c.as_primitive_opt::<Date32Type>())
        {
            newest = newest.max(arrow::compute::max(dates));
        }
        for row in 0..batch.num_rows() {
            let bad_key = keys.is_null(row) || !key_kind.admits(keys.value(row));
            let mut lacking = false;
            for (count, column) in missing.iter_mut().zip(required_columns) {
                if column.is_null(row) {
                    *count += 1;
                    lacking = true;
                }
            }
            invalid_keys += u64::from(bad_key);
            defective += u64::from(bad_key || lacking);
        }
        rows += batch.num_rows() as u64;
    }
    let newest_update = newest.and_then(|days| NaiveDate::from_num_days_from_ce_opt(days + 719_163));
    let age_days = newest_update.map(|d| (today - d).num_days());
    Ok(ResourceQuality {
        code: resource.code.clone(),
        version: resource.version,
        name: resource.name.clone(),
        dataset: resource.dataset.clone(),
        update_cycle: resource.update_cycle,
        rows,
        newest_update,
        age_days,
        fresh: age_days.map(|age| age <= i64::from(resource.update_cycle.max_age_days())),
        invalid_keys,
        missing_required: required.into_iter().zip(missing).collect(),
        defective_records: defective,
        defect_rate: if rows == 0 { 0.0 } else { defective as f64 / rows as f64 },
    })
}

/// Measurements kept per opened set of datasets and catalog version: the data does not change
/// until the datasets are reloaded, which opens a new registry.
#[derive(Debug, Clone)]
pub struct QualityCache {
    entries: moka::future::Cache<(u64, String, u32, NaiveDate), Arc<ResourceQuality>>,
}

impl Default for QualityCache {
    fn default() -> Self {
        QualityCache { entries: moka::future::Cache::new(1024) }
    }
}

impl QualityCache {
    /// The measurement of `resource`, made on the SQL runtime (a pass over a whole dataset)
    /// when it is not kept yet.
    pub async fn get(
        &self,
        executor: &SqlExecutor,
        registry: &Arc<DatasetRegistry>,
        resource: &Resource,
        today: NaiveDate,
    ) -> Result<Arc<ResourceQuality>, Arc<QualityError>> {
        let key = (registry.generation, resource.code.clone(), resource.version, today);
        self.entries
            .try_get_with(key, async {
                // Copies for the SQL runtime's task, made only when the measurement is.
                let (registry, resource) = (Arc::clone(registry), resource.clone());
                executor
                    .offload(async move { measure(&registry, &resource, today).await })
                    .await
                    .map_err(|e| QualityError::Interrupted(e.to_string()))?
                    .map(Arc::new)
            })
            .await
    }
}

/// Refusal reasons of calls that reached outside what their grants allow.
pub const OUTSIDE_GRANT_REASONS: &[&str] = &[
    "no_grant",
    "wrong_system",
    "wrong_purpose",
    "items_not_granted",
    "items_withdrawn",
    "items_redacted",
    "operation_not_offered",
    "scope_unenforceable",
    "document_unmaskable",
];

/// Refusal reasons of calls made outside their grants' validity.
pub const OUTSIDE_VALIDITY_REASONS: &[&str] =
    &["grant_expired", "grant_not_yet_valid", "grant_suspended", "grant_revoked", "grant_superseded"];
