//! The kinds of data call, one module each: verification, record look-up, SQL, and calls
//! passed on to a supplier's API. The lifecycle (`serve` in the parent module) runs the same
//! named phases for every kind and asks the kind only what differs between them, through
//! [`DataCall`]: which operation it is, what it reads (resolve grant), and how it is answered
//! (cache, execute, mask). A new kind of call is a new module here and its routes.

use std::future::Future;

use axum::http::HeaderMap;
use chrono::NaiveDate;
use tongban_exchange::ExchangeRecord;
use tongban_platform::{DatasetSuppliers, PolicySnapshot};
use tongban_policy::catalog::Resource;
use tongban_policy::decision::{AccessRequest, Operation, Permit, Purpose, decide};

use super::{Answer, CacheOutcome, DataPlane, Phases, System, Upstreams, denied};
use crate::datasets::DatasetRegistry;
use crate::error::ApiError;

pub(crate) mod document;
pub(crate) mod licence;
pub(crate) mod lookup;
pub(crate) mod proxy;
pub(crate) mod sql;
pub(crate) mod verify;

/// A resource a call reads, in its current catalog version, and the permit deciding it.
pub(crate) type Granted<'s> = (&'s Resource, Permit<'s>);

/// One kind of data call, as its handler received it. A rejection of its path or body is kept
/// in the call, so that a malformed call is refused in the resolve phase and recorded like
/// any other.
pub(crate) trait DataCall: Send + Sync {
    /// The operation the call is decided and recorded as.
    const OPERATION: Operation;

    /// The call refused before it could be read (asked with a method its route does not take).
    fn refused(error: ApiError) -> Self;

    /// Resolve grant: what the call reads, each resource decided by [`Resolving::ask`]. The
    /// resources asked for go into the record, whether or not they are granted.
    fn resolve<'s>(
        &self,
        resolving: &Resolving<'s, '_>,
        record: &mut ExchangeRecord,
    ) -> Result<Vec<Granted<'s>>, ApiError>;

    /// For a call naming another province's resource (a remote id): what the supplier's
    /// gateway is to be asked. `None` for a call on this gateway's own resources.
    fn forwarded(
        &self,
        _context: &super::forward::ForwardContext<'_>,
    ) -> Result<Option<super::forward::Forwarded>, ApiError> {
        Ok(None)
    }

    /// Cache, execute and mask: the answer under the permits, and whether it came from the
    /// cache. Each phase is ended on `phases` as it completes.
    fn answer(
        &self,
        answering: &Answering<'_, '_>,
        phases: &mut Phases<'_>,
    ) -> impl Future<Output = Result<(Answer, CacheOutcome), ApiError>> + Send;
}

/// What the resolve phase decides with.
pub(crate) struct Resolving<'s, 'a> {
    pub(crate) snapshot: &'s PolicySnapshot,
    pub(crate) registry: &'a DatasetRegistry,
    pub(crate) suppliers: &'a DatasetSuppliers,
    pub(crate) system: &'a System,
    pub(crate) purpose: &'a Purpose,
    pub(crate) upstreams: &'a Upstreams,
    pub(crate) operation: Operation,
    pub(crate) today: NaiveDate,
    /// The log's key, for digests of what a call names.
    pub(crate) salt: &'a [u8],
}

impl<'s> Resolving<'s, '_> {
    /// The policy's decision on reading `items` of `resource_code` for this call.
    pub(crate) fn ask(&self, resource_code: &str, items: &[String]) -> Result<Granted<'s>, ApiError> {
        let resource = self.snapshot.resources.get(resource_code).ok_or_else(|| {
            ApiError::not_found(format!("there is no catalog resource {resource_code}"))
                .with_code("unknown_resource")
        })?;
        let request = AccessRequest {
            department: self.system.department(),
            system: self.system.id(),
            resource,
            dataset_supplier: self.suppliers.get(&resource.dataset).and_then(Option::as_deref),
            operation: self.operation,
            items,
            purpose: self.purpose,
            today: self.today,
        };
        decide(&self.snapshot.grants, &request).map(|permit| (resource, permit)).map_err(denied)
    }
}

/// What the cache, execute and mask phases work with.
pub(crate) struct Answering<'a, 's> {
    pub(crate) data: &'a DataPlane,
    pub(crate) snapshot: &'s PolicySnapshot,
    pub(crate) registry: &'a DatasetRegistry,
    pub(crate) permits: &'a [Granted<'s>],
    pub(crate) system: &'a System,
    pub(crate) purpose: &'a Purpose,
    pub(crate) headers: &'a HeaderMap,
    /// The day the call is answered on, by the platform's clock.
    pub(crate) today: NaiveDate,
}

impl<'s> Answering<'_, 's> {
    /// The one resource a verification, look-up or proxied call reads.
    pub(crate) fn only(&self) -> &Granted<'s> {
        &self.permits[0]
    }

    /// The cache key of an answer: everything that decides it, `request` being what the call
    /// asked beyond its resource and grant.
    pub(crate) fn cache_key(&self, operation: &str, request: &[&[u8]]) -> [u8; 32] {
        let (resource, permit) = self.only();
        super::cache_key(operation, self.snapshot, self.registry, resource, permit, request)
    }
}
