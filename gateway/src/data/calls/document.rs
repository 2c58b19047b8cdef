//! Document check: a sealed licence document a citizen or company presented, checked offline
//! (the form, the seal against the issuing department's registered certificates) and online
//! (the register: the licence still holds these contents, and its status today).
//!
//! The answer says whether the document is genuine and, when it is not, the one reason a
//! relying department acts on, in this order: a malformed document, a document of another
//! register, a seal that is not the department's, a face altered after sealing (named item by
//! item, found by the seal verifying over the register's contents but not over the
//! document's), a seal that does not verify at all, a licence the register does not hold, a
//! document the register has since corrected, and then the licence's status.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use tongban_exchange::{ExchangeRecord, Phase};
use tongban_platform::Caller;
use tongban_platform::federation::split_remote_id;
use tongban_policy::decision::Operation;
use tongban_policy::licence::{LicenceStatus, status};

use super::licence::{CHECKED_ITEMS, forwarded_json, registered_document};
use super::{Answering, DataCall, Granted, Resolving};
use crate::data::forward::{ForwardContext, Forwarded};
use crate::data::{Answer, CacheOutcome, DataState, Phases, PurposeHeaders, Received, serve};
use crate::error::ApiError;
use crate::listener::Peer;
use crate::seals::{SealError, SealedLicence};

/// A document check.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DocumentCheckRequest {
    /// The catalog resource of the licence type's register.
    pub resource: String,
    /// The document as it was presented.
    pub sealed: SealedLicence,
}

/// A document check's answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DocumentCheckAnswer {
    pub resource: String,
    pub number: String,
    /// Whether the document is a genuine, unaltered, currently valid licence.
    pub genuine: bool,
    /// Why it is not, as a stable code; absent when it is genuine.
    pub reason: Option<&'static str>,
    /// The reason in words.
    pub detail: Option<String>,
    /// The licence's status today, when the register holds it and the seal is the issuer's.
    pub status: Option<LicenceStatus>,
    /// The fields and face items (`surface.<item>`) in which the document departs from the
    /// register.
    pub altered: Vec<String>,
}

/// A document check as its handler received it.
pub(crate) struct DocumentCheck(Result<DocumentCheckRequest, ApiError>);

/// Checks a sealed licence document: its form and seal offline, its contents and status
/// against the issuer's register.
#[utoipa::path(post, path = "/data/licences/documents/check", tag = "data", security(("bearer" = [])),
    params(PurposeHeaders), request_body = DocumentCheckRequest,
    responses((status = 200, body = DocumentCheckAnswer, headers(("x-tongban-receipt" = String, description = "The signed receipt of the exchange (base64url JSON; docs/evidence.md), on every answer, refusals included"), ("x-tongban-exchange-id" = String, description = "The exchange record's id"))), (status = 400, body = crate::error::ProblemSchema),
        (status = 403, description = "access_denied, with reasons", body = crate::error::ProblemSchema),
        (status = 422, body = crate::error::ProblemSchema)))]
pub(crate) async fn check_document(
    State(state): State<DataState>,
    caller: Result<Caller, ApiError>,
    Peer(peer): Peer,
    headers: HeaderMap,
    body: Received<DocumentCheckRequest>,
) -> Response {
    serve(state, caller, peer, headers, body.asked, DocumentCheck(body.body)).await
}

impl DocumentCheck {
    /// A document check as a peer gateway passed it on.
    pub(crate) fn new(body: Result<DocumentCheckRequest, ApiError>) -> Self {
        DocumentCheck(body)
    }
}

impl DataCall for DocumentCheck {
    const OPERATION: Operation = Operation::LicenceCheck;

    fn refused(error: ApiError) -> Self {
        DocumentCheck(Err(error))
    }

    fn resolve<'s>(
        &self,
        resolving: &Resolving<'s, '_>,
        record: &mut ExchangeRecord,
    ) -> Result<Vec<Granted<'s>>, ApiError> {
        let request = self.0.as_ref().map_err(Clone::clone)?;
        record.resources.push(request.resource.clone());
        record.key_digest =
            Some(tongban_exchange::key_digest(resolving.salt, &request.sealed.document.number));
        let items: Vec<String> = CHECKED_ITEMS.iter().map(|i| (*i).to_owned()).collect();
        Ok(vec![resolving.ask(&request.resource, &items)?])
    }

    /// A document of another province's licence is checked by its issuer's gateway, which
    /// holds the issuing department's registered seals and the register.
    fn forwarded(&self, _context: &ForwardContext<'_>) -> Result<Option<Forwarded>, ApiError> {
        let Ok(request) = self.0.as_ref() else { return Ok(None) };
        let Some((_, code)) = split_remote_id(&request.resource) else { return Ok(None) };
        let items = CHECKED_ITEMS.iter().map(|i| (*i).to_owned()).collect();
        let local = DocumentCheckRequest { resource: code.to_owned(), ..request.clone() };
        Ok(Some(forwarded_json(
            &request.resource,
            items,
            &request.sealed.document.number,
            "/federation/v1/data/licences/documents/check",
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
        let answer = examine(
            answering.data,
            answering.registry,
            resource,
            &request.sealed,
            permit.scope.as_ref(),
            answering.today,
        )
        .await?;
        phases.end(Phase::Execute);
        phases.end(Phase::Mask);
        let body = serde_json::to_vec(&answer).map_err(|e| ApiError::internal(&e))?;
        Ok((Answer::ok("application/json", body.into(), u64::from(answer.genuine)), CacheOutcome::Bypass))
    }
}

/// The certificates `department` registered through the API and has in force.
pub(crate) async fn registered_certificates(
    store: &tongban_platform::store::Store,
    department: &str,
) -> Result<Vec<tongban_evidence::Certificate>, ApiError> {
    let registered = store.seal_certificates(Some(department), true).await.map_err(|e| {
        tracing::error!(error = %e, "seal certificates cannot be read; refusing the document check");
        ApiError::not_ready("seal certificates cannot be read")
    })?;
    // Each was read and checked when it was registered; one that no longer reads is skipped
    // and named for the operator, so that it cannot stop every other seal from checking.
    Ok(registered
        .iter()
        .filter_map(|registered| match tongban_evidence::Certificate::from_pem(&registered.certificate) {
            Ok(certificate) => Some(certificate),
            Err(e) => {
                tracing::error!(fingerprint = %registered.fingerprint, error = %e, "a registered seal certificate is unreadable");
                None
            }
        })
        .collect())
}

/// Checks sealed document `sealed` against the register of `resource`, read within `scope`,
/// on day `today`: offline (the form, the seal against the issuing department's registered
/// certificates), then online (the register's contents and the licence's status).
pub(crate) async fn examine(
    data: &crate::data::DataPlane,
    registry: &crate::datasets::DatasetRegistry,
    resource: &tongban_policy::catalog::Resource,
    sealed: &SealedLicence,
    scope: Option<&tongban_policy::decision::RowScope>,
    today: chrono::NaiveDate,
) -> Result<DocumentCheckAnswer, ApiError> {
    let document = &sealed.document;
    let mut answer = DocumentCheckAnswer {
        resource: resource.code.clone(),
        number: document.number.clone(),
        genuine: false,
        reason: None,
        detail: None,
        status: None,
        altered: Vec::new(),
    };
    let refuse = |answer: &mut DocumentCheckAnswer, reason: &'static str, detail: String| {
        answer.reason = Some(reason);
        answer.detail = Some(detail);
    };
    let seals = &data.seals;
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    // Offline: the form, then the seal.
    match document.check_form() {
        Err(e) => {
            refuse(&mut answer, "malformed_document", e.to_string());
            return Ok(answer);
        }
        Ok(licence_type) if licence_type.dataset() != resource.dataset => {
            let detail = format!("a {} is not checked in {}", licence_type.name, resource.code);
            refuse(&mut answer, "wrong_register", detail);
            return Ok(answer);
        }
        Ok(_) => {}
    }
    let department = resource.supplier.as_str();
    let registered = registered_certificates(&data.store, department).await?;
    let checked = seals.check(department, &registered, &sealed.seal, document, now);
    // Online: the register's contents, read for comparison only, and only when the seal is
    // the department's (a broken signature may still be over them).
    let in_register = match &checked {
        Ok(()) | Err(SealError::Signature) => {
            registered_document(registry, &data.store, resource, &document.number, scope).await?
        }
        Err(_) => None,
    };
    match (checked, in_register) {
        (Err(SealError::Signature), Some((register, _)))
            if seals.check(department, &registered, &sealed.seal, &register, now).is_ok() =>
        {
            let altered = document.differences(&register);
            let detail = format!("the document was altered after it was sealed: {}", altered.join(", "));
            answer.altered = altered;
            refuse(&mut answer, "surface_altered", detail);
        }
        (Err(SealError::Signature), _) => {
            refuse(&mut answer, "seal_invalid", SealError::Signature.to_string())
        }
        (Err(e), _) => refuse(&mut answer, "seal_not_registered", e.to_string()),
        (Ok(()), None) => {
            refuse(&mut answer, "not_in_register", "the register holds no such licence".to_owned());
        }
        (Ok(()), Some((register, recorded))) => {
            let standing = status(recorded, register.issued_on, register.valid_until, today);
            answer.status = Some(standing);
            answer.altered = document.differences(&register);
            if !answer.altered.is_empty() {
                let detail = "the register has corrected this licence since the document was sealed";
                refuse(&mut answer, "superseded", detail.to_owned());
            } else {
                match standing {
                    LicenceStatus::Valid => answer.genuine = true,
                    LicenceStatus::Revoked => {
                        refuse(&mut answer, "revoked", "the licence was revoked".to_owned())
                    }
                    LicenceStatus::Expired => refuse(
                        &mut answer,
                        "expired",
                        format!(
                            "the licence was valid until {}",
                            register.valid_until.map(|d| d.to_string()).unwrap_or_default()
                        ),
                    ),
                    LicenceStatus::NotYetValid => refuse(
                        &mut answer,
                        "not_yet_valid",
                        format!("the licence is issued on {}", register.issued_on),
                    ),
                }
            }
        }
    }
    Ok(answer)
}
