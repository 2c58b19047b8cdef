//! Licence check (证照核验): whether a licence stands (valid, revoked, expired) by its number
//! and holder, read from the issuer's register, with the granted items of its face, masked.
//!
//! The holder is part of the question, not of the answer: a number with another holder is
//! answered exactly as a number that does not exist, so that the check cannot be used to find
//! whose a licence is or which numbers exist.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray};
use arrow::datatypes::Date32Type;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use tongban_connectors::mask_array;
use tongban_exchange::{ExchangeRecord, Phase};
use tongban_platform::Caller;
use tongban_platform::federation::split_remote_id;
use tongban_policy::IdNumber;
use tongban_policy::decision::Operation;
use tongban_policy::licence::{LicenceStatus, RecordedStatus, status};

use super::{Answering, DataCall, Granted, Resolving};
use crate::data::forward::{ACCEPT_ONLY, ForwardContext, Forwarded};
use crate::data::records;
use crate::data::{Answer, CacheOutcome, DataState, Phases, PurposeHeaders, Received, serve};
use crate::error::ApiError;
use crate::listener::Peer;

/// The register's columns every licence or document check reads, whatever else it asks: the
/// grant must cover them, since they are what a check discloses.
pub(crate) const CHECKED_ITEMS: [&str; 5] =
    ["licence_number", "holder", "status", "issued_on", "valid_until"];

/// The most face items one check may ask for.
const MAX_ITEMS: usize = 32;

/// A licence check.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LicenceCheckRequest {
    /// The catalog resource of the licence type's register, such as `E04-340000-0001`.
    pub resource: String,
    /// 证照编号.
    pub number: String,
    /// The holder the caller was shown the licence by: an identity number or a credit code.
    pub holder: String,
    /// Items of the licence to return, masked by the grant; none when absent.
    #[serde(default)]
    pub items: Vec<String>,
}

/// A licence check's answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LicenceCheckAnswer {
    pub resource: String,
    pub number: String,
    /// Whether the register holds a licence with this number and holder, within the grant's rows.
    pub found: bool,
    /// The licence's status on the day of the check; absent when it was not found.
    pub status: Option<LicenceStatus>,
    #[schema(value_type = Option<String>, format = Date)]
    pub issued_on: Option<chrono::NaiveDate>,
    /// The last valid day; absent for a licence valid until revoked.
    #[schema(value_type = Option<String>, format = Date)]
    pub valid_until: Option<chrono::NaiveDate>,
    /// The items asked for, masked by the grant.
    #[schema(value_type = Object)]
    pub items: BTreeMap<String, serde_json::Value>,
}

/// A licence check as its handler received it.
pub(crate) struct LicenceCheck(Result<LicenceCheckRequest, ApiError>);

/// Checks a licence by number and holder: valid, revoked or expired, with the asked items of
/// its face, masked.
#[utoipa::path(post, path = "/data/licences/check", tag = "data", security(("bearer" = [])),
    params(PurposeHeaders), request_body = LicenceCheckRequest,
    responses((status = 200, body = LicenceCheckAnswer, headers(("x-tongban-receipt" = String, description = "The signed receipt of the exchange (base64url JSON; docs/evidence.md), on every answer, refusals included"), ("x-tongban-exchange-id" = String, description = "The exchange record's id"))), (status = 400, body = crate::error::ProblemSchema),
        (status = 403, description = "access_denied, with reasons", body = crate::error::ProblemSchema),
        (status = 422, body = crate::error::ProblemSchema)))]
pub(crate) async fn check_licence(
    State(state): State<DataState>,
    caller: Result<Caller, ApiError>,
    Peer(peer): Peer,
    headers: HeaderMap,
    body: Received<LicenceCheckRequest>,
) -> Response {
    serve(state, caller, peer, headers, body.asked, LicenceCheck(body.body)).await
}

impl LicenceCheck {
    /// A licence check as a peer gateway passed it on.
    pub(crate) fn new(body: Result<LicenceCheckRequest, ApiError>) -> Self {
        LicenceCheck(body)
    }

    /// The items a check reads: the checked ones, then the face items asked for.
    fn items(request: &LicenceCheckRequest) -> Result<Vec<String>, ApiError> {
        if request.items.len() > MAX_ITEMS {
            return Err(ApiError::unprocessable(
                "too_many_items",
                "Too many items",
                format!("a licence check asks for at most {MAX_ITEMS} items"),
            ));
        }
        let mut items: Vec<String> = CHECKED_ITEMS.iter().map(|i| (*i).to_owned()).collect();
        for item in &request.items {
            if !items.contains(item) {
                items.push(item.clone());
            }
        }
        Ok(items)
    }
}

/// The holder as the register spells it: an identity number in its canonical form, anything
/// else trimmed.
fn normalise_holder(holder: &str) -> String {
    let holder = holder.trim();
    IdNumber::parse(holder).map_or_else(|_| holder.to_owned(), |id| id.to_string())
}

impl DataCall for LicenceCheck {
    const OPERATION: Operation = Operation::LicenceCheck;

    fn refused(error: ApiError) -> Self {
        LicenceCheck(Err(error))
    }

    fn resolve<'s>(
        &self,
        resolving: &Resolving<'s, '_>,
        record: &mut ExchangeRecord,
    ) -> Result<Vec<Granted<'s>>, ApiError> {
        let request = self.0.as_ref().map_err(Clone::clone)?;
        record.resources.push(request.resource.clone());
        record.key_digest = Some(tongban_exchange::key_digest(resolving.salt, &request.number));
        let items = Self::items(request)?;
        Ok(vec![resolving.ask(&request.resource, &items)?])
    }

    /// A check of another province's licence is answered by its issuer's gateway, which
    /// reads the register and its revocations; this gateway decides early and records.
    fn forwarded(&self, _context: &ForwardContext<'_>) -> Result<Option<Forwarded>, ApiError> {
        let Ok(request) = self.0.as_ref() else { return Ok(None) };
        let Some((_, code)) = split_remote_id(&request.resource) else { return Ok(None) };
        let items = Self::items(request)?;
        let local = LicenceCheckRequest { resource: code.to_owned(), ..request.clone() };
        Ok(Some(forwarded_json(
            &request.resource,
            items,
            &request.number,
            "/federation/v1/data/licences/check",
            &local,
        )?))
    }

    async fn answer(
        &self,
        answering: &Answering<'_, '_>,
        phases: &mut Phases<'_>,
    ) -> Result<(Answer, CacheOutcome), ApiError> {
        let request = self.0.as_ref().map_err(Clone::clone)?;
        let (resource, permit) = answering.only();
        let holder = normalise_holder(&request.holder);
        let today = answering.today;
        let dataset = records::dataset(answering.registry, resource)?;
        let number = records::check_key(resource, dataset, &request.number)?;
        // The permit's items, in its order: the checked ones and those asked for.
        let names: Vec<&str> = permit.items.iter().map(|i| i.name.as_str()).collect();
        let batch = records::read(dataset, &number, &names, permit.scope.as_ref()).await?;
        phases.end(Phase::Execute);
        let position = |name: &str| names.iter().position(|n| *n == name);
        let column = |name: &str| {
            position(name)
                .map(|p| batch.column(p))
                .ok_or_else(|| ApiError::internal(&format!("the licence check's permit lacks {name}")))
        };
        let holders = column("holder")?
            .as_string_opt::<i32>()
            .ok_or_else(|| ApiError::internal(&format!("the holder of {} is not text", resource.dataset)))?;
        let row = (0..batch.num_rows()).find(|&row| holders.is_valid(row) && holders.value(row) == holder);
        let mut answer = LicenceCheckAnswer {
            resource: resource.code.clone(),
            number: number.clone(),
            found: false,
            status: None,
            issued_on: None,
            valid_until: None,
            items: BTreeMap::new(),
        };
        if let Some(row) = row {
            let date = |name: &str| -> Result<Option<chrono::NaiveDate>, ApiError> {
                let dates = column(name)?.as_primitive_opt::<Date32Type>().ok_or_else(|| {
                    ApiError::internal(&format!("{name} of {} is not a date", resource.dataset))
                })?;
                Ok(dates.is_valid(row).then(|| dates.value_as_date(row)).flatten())
            };
            let recorded = column("status")?
                .as_string_opt::<i32>()
                .filter(|c| c.is_valid(row))
                .and_then(|c| RecordedStatus::parse(c.value(row)))
                .ok_or_else(|| {
                    ApiError::internal(&format!("a licence in {} has no known status", resource.dataset))
                })?;
            let recorded = revoked_since(&answering.data.store, resource, &number, recorded).await?;
            let issued_on = date("issued_on")?.ok_or_else(|| {
                ApiError::internal(&format!("a licence in {} has no issue date", resource.dataset))
            })?;
            let valid_until = date("valid_until")?;
            answer.found = true;
            answer.status = Some(status(recorded, issued_on, valid_until, today));
            answer.issued_on = Some(issued_on);
            answer.valid_until = valid_until;
            let one_row = batch.slice(row, 1);
            for name in &request.items {
                let (Some(at), Some(item)) = (position(name), permit.items.iter().find(|i| &i.name == name))
                else {
                    continue;
                };
                let masked = mask_array(one_row.column(at), item.mask).map_err(|e| ApiError::internal(&e))?;
                let formatter = arrow::util::display::ArrayFormatter::try_new(
                    masked.as_ref(),
                    &arrow::util::display::FormatOptions::default(),
                )
                .map_err(|e| ApiError::internal(&e))?;
                let value = if masked.is_valid(0) {
                    serde_json::Value::String(formatter.value(0).to_string())
                } else {
                    serde_json::Value::Null
                };
                answer.items.insert(name.clone(), value);
            }
        }
        phases.end(Phase::Mask);
        let body = serde_json::to_vec(&answer).map_err(|e| ApiError::internal(&e))?;
        // Not cached: a revocation must be said from the moment it is made.
        Ok((Answer::ok("application/json", body.into(), u64::from(answer.found)), CacheOutcome::Bypass))
    }
}

/// What a licence or document check naming remote resource `remote_id` asks the issuer's
/// gateway: `local`, the same call naming the issuer's own resource code, at `path`.
pub(crate) fn forwarded_json(
    remote_id: &str,
    items: Vec<String>,
    number: &str,
    path: &str,
    local: &impl Serialize,
) -> Result<Forwarded, ApiError> {
    let body = serde_json::to_vec(local).map_err(|e| ApiError::internal(&e))?;
    let bytes = bytes::Bytes::from(body);
    Ok(Forwarded {
        resource_ids: vec![remote_id.to_owned()],
        items,
        key: Some(number.to_owned()),
        method: axum::http::Method::POST,
        path_and_query: path.to_owned(),
        body: bytes.clone().into(),
        body_bytes: Some(bytes),
        headers: ACCEPT_ONLY,
    })
}

/// A licence's recorded status with the revocations made through the gateway over it: the
/// register's next update carries a revocation, but the check must say it at once.
pub(crate) async fn revoked_since(
    store: &tongban_platform::store::Store,
    resource: &tongban_policy::catalog::Resource,
    number: &str,
    recorded: RecordedStatus,
) -> Result<RecordedStatus, ApiError> {
    if recorded == RecordedStatus::Revoked {
        return Ok(recorded);
    }
    let revocation = store.licence_revocation(&resource.code, number).await.map_err(|e| {
        tracing::error!(error = %e, "revocations cannot be read; refusing the licence check");
        ApiError::not_ready("revocations cannot be read")
    })?;
    Ok(if revocation.is_some() { RecordedStatus::Revoked } else { recorded })
}

/// The register's record of licence `number` as a document's content, with its recorded
/// status: every column, read on the gateway's side for comparison and sealing, never
/// returned as such. `None` when the register has no such licence within `scope` (a
/// relying system's grant's rows; none for the issuer's own register).
pub(crate) async fn registered_document(
    registry: &crate::datasets::DatasetRegistry,
    store: &tongban_platform::store::Store,
    resource: &tongban_policy::catalog::Resource,
    number: &str,
    scope: Option<&tongban_policy::decision::RowScope>,
) -> Result<Option<(tongban_policy::licence::LicenceDocument, RecordedStatus)>, ApiError> {
    use tongban_policy::licence::{LICENCE_TYPES, LicenceDocument};
    let licence_type = LICENCE_TYPES.iter().find(|t| t.dataset() == resource.dataset).ok_or_else(|| {
        ApiError::unprocessable(
            "not_a_licence_register",
            "Not a licence register",
            format!("{} is not a licence register", resource.code),
        )
    })?;
    let dataset = records::dataset(registry, resource)?;
    let number = records::check_key(resource, dataset, number)?;
    let mut names: Vec<&str> = tongban_policy::licence::REGISTER_COLUMNS.iter().map(|(n, _)| *n).collect();
    names.extend(licence_type.items.iter().map(|i| i.name));
    let batch = records::read(dataset, &number, &names, scope).await?;
    if batch.num_rows() == 0 {
        return Ok(None);
    }
    let broken = |what: &str| ApiError::internal(&format!("the register {} has {what}", resource.dataset));
    // Columns by name, so that the register's column order is the schema's business alone.
    let column = |name: &str| names.iter().position(|n| *n == name).map(|p| batch.column(p));
    let text = |name: &str| -> Result<Option<String>, ApiError> {
        let column = column(name)
            .and_then(|c| c.as_string_opt::<i32>())
            .ok_or_else(|| broken("a column not of text"))?;
        Ok(column.is_valid(0).then(|| column.value(0).to_owned()))
    };
    let date = |name: &str| -> Result<Option<chrono::NaiveDate>, ApiError> {
        let column = column(name)
            .and_then(|c| c.as_primitive_opt::<Date32Type>())
            .ok_or_else(|| broken("a date not of dates"))?;
        Ok(column.is_valid(0).then(|| column.value_as_date(0)).flatten())
    };
    let required = |value: Option<String>| value.ok_or_else(|| broken("a licence lacking metadata"));
    let recorded = text("status")?
        .as_deref()
        .and_then(RecordedStatus::parse)
        .ok_or_else(|| broken("an unknown status"))?;
    let recorded = revoked_since(store, resource, &number, recorded).await?;
    let mut surface = BTreeMap::new();
    for item in licence_type.items {
        if let Some(value) = text(item.name)? {
            surface.insert(item.name.to_owned(), value);
        }
    }
    let document = LicenceDocument {
        licence_type: licence_type.code.to_owned(),
        number: required(text("licence_number")?)?,
        holder: required(text("holder")?)?,
        holder_name: required(text("holder_name")?)?,
        issuer: required(text("issuer_credit_code")?)?,
        issuer_name: required(text("issuer_name")?)?,
        issued_on: date("issued_on")?.ok_or_else(|| broken("a licence without an issue date"))?,
        valid_until: date("valid_until")?,
        surface,
    };
    Ok(Some((document, recorded)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checked_items_come_first_and_are_asked_once() {
        let request = LicenceCheckRequest {
            resource: "E04-340000-0001".into(),
            number: "340102400000001".into(),
            holder: "x".into(),
            items: vec!["name".into(), "status".into(), "name".into()],
        };
        assert_eq!(
            LicenceCheck::items(&request).expect("items"),
            vec!["licence_number", "holder", "status", "issued_on", "valid_until", "name"]
        );
        let too_many = LicenceCheckRequest { items: (0..40).map(|i| i.to_string()).collect(), ..request };
        assert!(LicenceCheck::items(&too_many).is_err());
    }

    #[test]
    fn holders_are_compared_in_the_register_s_spelling() {
        assert_eq!(normalise_holder(" 91410100MA00000000 "), "91410100MA00000000");
        let id = IdNumber::compose("410105", "1988-03-14".parse().expect("day"), 123);
        assert_eq!(normalise_holder(&id.to_lowercase()), id);
    }
}
