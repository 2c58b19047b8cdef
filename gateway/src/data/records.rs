//! Verification and record look-up: answers for one key, read with the dataset's key look-up
//! (no query planning), limited to the grant's rows and items.

use std::collections::BTreeMap;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{Field, Schema};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use serde::{Deserialize, Serialize};
use tongban_connectors::{Dataset, mask_array};
use tongban_policy::IdNumber;
use tongban_policy::catalog::{MaskRule, Resource};
use tongban_policy::decision::{Permit, RowScope};

use super::Answer;
use crate::datasets::DatasetRegistry;
use crate::error::ApiError;

/// The most items one verification may claim.
const MAX_CLAIMS: usize = 32;

/// A verification: a key and the values a caller claims for it.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// The catalog resource code, such as `A01-410000-0001`.
    pub resource: String,
    /// The record's key (for people, the identity number).
    pub key: String,
    /// Claimed values by item, such as `{"name": "张三", "status": "正常"}`.
    pub claims: BTreeMap<String, String>,
}

/// Whether one claimed value matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Match,
    NoMatch,
}

/// A verification's answer: never a stored value.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VerifyAnswer {
    pub resource: String,
    /// Whether a record with the key exists within the grant's rows.
    pub record_found: bool,
    pub results: BTreeMap<String, Verdict>,
}

/// Which items a look-up returns: a comma-separated list, or every granted item.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupQuery {
    #[serde(default)]
    pub items: Option<String>,
}

impl LookupQuery {
    pub fn items(&self) -> Vec<String> {
        self.items
            .as_deref()
            .map(|list| list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default()
    }
}

/// The items a verification reads: the key and every claimed item.
pub(super) fn verify_items(
    registry: &DatasetRegistry,
    resource: Option<&Resource>,
    request: &VerifyRequest,
) -> Result<Vec<String>, ApiError> {
    if request.claims.is_empty() {
        return Err(ApiError::unprocessable(
            "no_claims",
            "Nothing to verify",
            "claims must name at least one item",
        ));
    }
    if request.claims.len() > MAX_CLAIMS {
        return Err(ApiError::unprocessable(
            "too_many_claims",
            "Too many claims",
            format!("a verification claims at most {MAX_CLAIMS} items"),
        ));
    }
    let key_column = resource.and_then(|r| registry.datasets.get(&r.dataset)).map(|d| d.key_column.clone());
    if let Some(key) = &key_column
        && request.claims.contains_key(key)
    {
        return Err(ApiError::unprocessable(
            "key_claimed",
            "The key is not a claim",
            format!("{key} is the key; claim other items"),
        ));
    }
    Ok(key_column.into_iter().chain(request.claims.keys().cloned()).collect())
}

/// Checks a key's form before any data is read: identity numbers must carry a valid check
/// digit, and every key must be short printable text.
pub(super) fn check_key(resource: &Resource, dataset: &Dataset, key: &str) -> Result<String, ApiError> {
    let key = key.trim();
    if key.is_empty() || key.len() > 64 || key.chars().any(char::is_control) {
        return Err(ApiError::unprocessable(
            "invalid_key",
            "Invalid key",
            "the key must be 1 to 64 printable characters",
        ));
    }
    let is_identity =
        resource.items.iter().any(|i| i.name == dataset.key_column && i.default_mask == MaskRule::IdNumber);
    if is_identity {
        let id = IdNumber::parse(key).map_err(|e| {
            ApiError::unprocessable("invalid_id_number", "Invalid identity number", e.to_string())
        })?;
        return Ok(id.to_string());
    }
    Ok(key.to_owned())
}

pub(super) fn dataset<'r>(
    registry: &'r DatasetRegistry,
    resource: &Resource,
) -> Result<&'r Dataset, ApiError> {
    registry.datasets.get(&resource.dataset).ok_or_else(|| {
        ApiError::not_ready(format!("dataset {} of {} is not configured", resource.dataset, resource.code))
    })
}

/// Reads the rows with `key`, with `items` (dataset column names), keeping only rows in
/// `scope`. Returns the rows with the items' columns only.
pub(super) async fn read(
    dataset: &Dataset,
    key: &str,
    items: &[&str],
    scope: Option<&RowScope>,
) -> Result<RecordBatch, ApiError> {
    let column = |name: &str| {
        dataset.schema.index_of(name).map_err(|_| {
            ApiError::internal(&format!(
                "dataset {} has no column {name} that the catalog names",
                dataset.name
            ))
        })
    };
    let mut projection: Vec<usize> = items.iter().map(|i| column(i)).collect::<Result<_, _>>()?;
    let scope_position = match scope {
        Some(scope) => {
            let index = column(&scope.item)?;
            projection.push(index);
            Some(projection.len() - 1)
        }
        None => None,
    };
    let outcome = dataset.lookup.lookup(key, Some(&projection)).await.map_err(|e| ApiError::internal(&e))?;
    let mut batch = outcome.batch;
    if let (Some(scope), Some(position)) = (scope, scope_position) {
        let codes = arrow::compute::cast(batch.column(position), &arrow::datatypes::DataType::Utf8)
            .map_err(|e| ApiError::internal(&e))?;
        let codes = codes.as_string::<i32>();
        let keep: arrow::array::BooleanArray = (0..codes.len())
            .map(|i| Some(scope.admits((!codes.is_null(i)).then(|| codes.value(i)))))
            .collect();
        batch = filter_record_batch(&batch, &keep).map_err(|e| ApiError::internal(&e))?;
        batch = batch.project(&(0..items.len()).collect::<Vec<_>>()).map_err(|e| ApiError::internal(&e))?;
    }
    Ok(batch)
}

/// Verifies claims: per item, a match when any in-scope record with the key holds the
/// claimed value. Stored values are compared, never returned.
pub(super) async fn verify(
    registry: &DatasetRegistry,
    resource: &Resource,
    permit: &Permit<'_>,
    request: &VerifyRequest,
) -> Result<Answer, ApiError> {
    let dataset = dataset(registry, resource)?;
    let key = check_key(resource, dataset, &request.key)?;
    let items: Vec<&str> = request.claims.keys().map(String::as_str).collect();
    let batch = read(dataset, &key, &items, permit.scope.as_ref()).await?;
    let options = FormatOptions::default();
    let mut results = BTreeMap::new();
    for (position, (item, claimed)) in request.claims.iter().enumerate() {
        let column = batch.column(position);
        let formatter =
            ArrayFormatter::try_new(column.as_ref(), &options).map_err(|e| ApiError::internal(&e))?;
        let matched = (0..column.len())
            .any(|row| column.is_valid(row) && same(&formatter.value(row).to_string(), claimed));
        results.insert(item.clone(), if matched { Verdict::Match } else { Verdict::NoMatch });
    }
    let answer =
        VerifyAnswer { resource: resource.code.clone(), record_found: batch.num_rows() > 0, results };
    Ok(Answer::ok(
        "application/json",
        serde_json::to_vec(&answer).map_err(|e| ApiError::internal(&e))?.into(),
        0,
    ))
}

/// Whether a stored value (as text) and a claimed one are the same: equal after trimming, or
/// equal as numbers (a claimed `1234.5` matches a stored `1234.50`), ignoring the case of an
/// identity number's `X`.
fn same(stored: &str, claimed: &str) -> bool {
    let (stored, claimed) = (stored.trim(), claimed.trim());
    if stored == claimed || stored.eq_ignore_ascii_case(claimed) && stored.ends_with(['X', 'x']) {
        return true;
    }
    matches!((stored.parse::<f64>(), claimed.parse::<f64>()), (Ok(a), Ok(b)) if a == b && !stored.is_empty())
}

/// Rows found by a look-up, not yet masked.
pub(super) struct Found {
    resource: String,
    batch: RecordBatch,
}

/// Reads the granted items of the in-scope records with `key`.
pub(super) async fn lookup(
    registry: &DatasetRegistry,
    resource: &Resource,
    permit: &Permit<'_>,
    key: &str,
) -> Result<Found, ApiError> {
    let dataset = dataset(registry, resource)?;
    let key = check_key(resource, dataset, key)?;
    let items: Vec<&str> = permit.items.iter().map(|i| i.name.as_str()).collect();
    let batch = read(dataset, &key, &items, permit.scope.as_ref()).await?;
    if batch.num_rows() == 0 {
        // The same answer whether the record is absent or out of the grant's rows.
        return Err(
            ApiError::not_found("no record with this key within the grant").with_code("record_not_found")
        );
    }
    Ok(Found { resource: resource.code.clone(), batch })
}

impl Found {
    /// Masks every item by its grant's rule and encodes the records as JSON.
    pub(super) fn mask(self, permit: &Permit<'_>) -> Result<Answer, ApiError> {
        let mut fields = Vec::with_capacity(permit.items.len());
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(permit.items.len());
        for (item, column) in permit.items.iter().zip(self.batch.columns()) {
            let masked = mask_array(column, item.mask).map_err(|e| ApiError::internal(&e))?;
            fields.push(Field::new(&item.name, masked.data_type().clone(), true));
            columns.push(masked);
        }
        let masked = RecordBatch::try_new(std::sync::Arc::new(Schema::new(fields)), columns)
            .map_err(|e| ApiError::internal(&e))?;
        let mut body = Vec::with_capacity(256 + masked.get_array_memory_size());
        body.extend_from_slice(b"{\"resource\":");
        serde_json::to_writer(&mut body, &self.resource).map_err(|e| ApiError::internal(&e))?;
        body.extend_from_slice(b",\"records\":");
        let mut writer = arrow::json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, arrow::json::writer::JsonArray>(&mut body);
        writer.write(&masked).map_err(|e| ApiError::internal(&e))?;
        writer.finish().map_err(|e| ApiError::internal(&e))?;
        drop(writer);
        body.push(b'}');
        Ok(Answer::ok("application/json", body.into(), masked.num_rows() as u64))
    }
}
