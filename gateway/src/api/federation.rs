//! What this gateway knows of its peers: other provinces' resources, listed beside the
//! catalog's own with the copy's age, and each peer's health.

use axum::Json;
use axum::extract::State;
use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};
use tongban_platform::federation::{OutboxDepth, RemoteCatalog, remote_id};
use tongban_platform::store::PageRequest;
use tongban_platform::{Caller, PlatformError};
use tongban_policy::catalog::Resource;

use super::Listing;
use crate::error::{ApiError, ApiPath, ApiQuery};
use crate::state::AppState;

/// A resource of another province's gateway, as last received from it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct RemoteResource {
    /// The id it has here: the supplying province's code and the supplier's own code
    /// (`410000:A01-410000-0001`). Local codes never hold a colon, so the two cannot collide.
    id: String,
    /// The peer gateway that publishes it.
    peer: String,
    /// The supplying province (GB/T 2260) and its name.
    region: String,
    region_name: String,
    /// The copy of the peer's catalog it was read from.
    catalog: CopyAge,
    /// The resource as the supplier's catalog states it, under the supplier's own code.
    resource: Resource,
}

/// How fresh a copy of a peer's catalog is.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct CopyAge {
    /// When the copy was received (Beijing time).
    fetched_at: Option<NaiveDateTime>,
    /// When the peer last confirmed it current.
    checked_at: Option<NaiveDateTime>,
    /// Seconds since then.
    age_seconds: Option<i64>,
}

impl CopyAge {
    fn of(catalog: &RemoteCatalog, now: NaiveDateTime) -> CopyAge {
        CopyAge {
            fetched_at: catalog.fetched_at,
            checked_at: catalog.checked_at,
            age_seconds: catalog.age_seconds(now),
        }
    }
}

fn region_name(region: &str) -> String {
    tongban_policy::division::find(region).map(|d| d.name.to_owned()).unwrap_or_default()
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct RemoteResourceQuery {
    /// Only resources of this province (GB/T 2260 code).
    region: Option<String>,
    /// Only resources serving this service item.
    service_item: Option<String>,
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    after: Option<String>,
}

/// Lists other provinces' resources, as their gateways last published them, by id. Empty on a
/// gateway without peers.
#[utoipa::path(get, path = "/catalog/remote-resources", tag = "catalog", security(("bearer" = [])),
    params(RemoteResourceQuery),
    responses((status = 200, body = Listing<RemoteResource>), (status = 401, body = crate::error::ProblemSchema)))]
pub(super) async fn list_remote_resources(
    State(state): State<AppState>,
    _caller: Caller,
    ApiQuery(query): ApiQuery<RemoteResourceQuery>,
) -> Result<Json<Listing<RemoteResource>>, ApiError> {
    let page = super::page_request(query.after, query.limit)?;
    let limit = page.limit.unwrap_or(PageRequest::DEFAULT_LIMIT) as usize;
    let now = state.platform().now();
    let Some(peers) = state.peers() else { return Ok(Json(Listing { items: Vec::new(), next: None })) };
    let catalogs = peers.catalogs();
    let mut matching: Vec<(String, &RemoteCatalog, &Resource)> = catalogs
        .values()
        .filter(|c| query.region.as_ref().is_none_or(|r| *r == c.region))
        .flat_map(|c| c.document.iter().flat_map(move |d| d.resources.iter().map(move |r| (c, r))))
        .filter(|(_, r)| query.service_item.as_ref().is_none_or(|s| r.service_items.contains(s)))
        .map(|(c, r)| (remote_id(&c.region, &r.code), c, r))
        .filter(|(id, _, _)| page.after.as_ref().is_none_or(|after| id > after))
        .collect();
    matching.sort_by(|a, b| a.0.cmp(&b.0));
    let next = (matching.len() > limit).then(|| matching[limit - 1].0.clone());
    let items = matching
        .into_iter()
        .take(limit)
        .map(|(id, catalog, resource)| RemoteResource {
            id,
            peer: catalog.peer.clone(),
            region: catalog.region.clone(),
            region_name: region_name(&catalog.region),
            catalog: CopyAge::of(catalog, now),
            resource: resource.clone(),
        })
        .collect();
    Ok(Json(Listing { items, next }))
}

/// One of another province's resources, by its id here.
#[utoipa::path(get, path = "/catalog/remote-resources/{id}", tag = "catalog", security(("bearer" = [])),
    params(("id" = String, Path, description = "`region:code`, as the list gives it")),
    responses((status = 200, body = RemoteResource), (status = 404, body = crate::error::ProblemSchema)))]
pub(super) async fn get_remote_resource(
    State(state): State<AppState>,
    _caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<RemoteResource>, ApiError> {
    let (catalog, resource) = state
        .peers()
        .and_then(|peers| peers.remote_resource(&id))
        .ok_or_else(|| ApiError::not_found(format!("no peer publishes a resource {id}")))?;
    Ok(Json(RemoteResource {
        id,
        peer: catalog.peer.clone(),
        region: catalog.region.clone(),
        region_name: region_name(&catalog.region),
        catalog: CopyAge::of(&catalog, state.platform().now()),
        resource,
    }))
}

/// A peer gateway and how this gateway's exchanges with it stand.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct PeerStatus {
    name: String,
    region: String,
    region_name: String,
    url: String,
    /// Whether the last call to the peer was answered.
    reachable: bool,
    /// The resources in the copy of its catalog held here.
    resources: usize,
    /// The copy of its catalog held here.
    catalog: CopyAge,
    /// The last failure to refresh its catalog, when the last attempt failed.
    failure: Option<String>,
    failed_at: Option<NaiveDateTime>,
    /// The hand-offs (demand steps, grants) written for it.
    outbox: OutboxStatus,
}

/// How the messages to one peer stand.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct OutboxStatus {
    /// Written and not yet delivered.
    pending: i64,
    /// When the oldest of those was written (Beijing time).
    oldest_pending_at: Option<NaiveDateTime>,
    delivered: i64,
    /// Refused by the peer for good; each is kept with the peer's reason.
    refused: i64,
    /// Why the last attempt to deliver failed, while messages are pending.
    last_error: Option<String>,
}

impl From<OutboxDepth> for OutboxStatus {
    fn from(depth: OutboxDepth) -> Self {
        OutboxStatus {
            pending: depth.pending,
            oldest_pending_at: depth.oldest_pending_at,
            delivered: depth.delivered,
            refused: depth.refused,
            last_error: depth.last_error,
        }
    }
}

/// This gateway's federation: its own name and province, and each peer's health. Empty on a
/// gateway without peers. For people signed in to the console, not for systems.
#[utoipa::path(get, path = "/federation/peers", tag = "federation", security(("bearer" = [])),
    responses((status = 200, body = Federation), (status = 403, body = crate::error::ProblemSchema)))]
pub(super) async fn peers(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Federation>, ApiError> {
    if matches!(caller, Caller::System(_)) {
        return Err(ApiError::forbidden("the federation's health is for people, not systems"));
    }
    let Some(peers) = state.peers() else {
        return Ok(Json(Federation { name: None, region: None, peers: Vec::new() }));
    };
    let now = state.platform().now();
    let catalogs = peers.catalogs();
    let mut depths = state.platform().store.outbox_depths().await.map_err(PlatformError::from)?;
    let statuses = peers
        .all()
        .map(|client| {
            let peer = &client.config;
            let catalog = catalogs
                .get(&peer.name)
                .cloned()
                .unwrap_or_else(|| RemoteCatalog::empty(&peer.name, &peer.region));
            PeerStatus {
                name: peer.name.clone(),
                region: peer.region.clone(),
                region_name: region_name(&peer.region),
                url: peer.url.clone(),
                reachable: catalog.failure.is_none() && catalog.checked_at.is_some(),
                resources: catalog.document.as_ref().map_or(0, |d| d.resources.len()),
                catalog: CopyAge::of(&catalog, now),
                failure: catalog.failure.as_ref().map(|f| f.error.clone()),
                failed_at: catalog.failure.as_ref().map(|f| f.at),
                outbox: depths.remove(&peer.name).unwrap_or_default().into(),
            }
        })
        .collect();
    Ok(Json(Federation {
        name: Some(peers.config.name.clone()),
        region: Some(peers.config.region.clone()),
        peers: statuses,
    }))
}

/// This gateway in the federation.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct Federation {
    /// This gateway's name, as its peers know it; absent when it has no peers.
    name: Option<String>,
    region: Option<String>,
    peers: Vec<PeerStatus>,
}

/// A grant a peer gateway compiled for one of this gateway's departments, as last received.
/// The supplier's gateway enforces the grant; this copy is for routing, early refusal and
/// display, and trails the original by the time a hand-off takes.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct GrantMirrorView {
    /// The peer gateway that compiled and enforces it.
    peer: String,
    /// The remote resource id (`region:code`).
    resource_id: String,
    /// When this version arrived (Beijing time).
    received_at: NaiveDateTime,
    grant: tongban_policy::grant::Grant,
}

/// The grants peer gateways compiled for this gateway's departments: a department's
/// demanders see their own, reviewers of this gateway's data office and those who oversee
/// the platform see all. For people, not systems.
#[utoipa::path(get, path = "/federation/grant-mirrors", tag = "federation", security(("bearer" = [])),
    responses((status = 200, body = Vec<GrantMirrorView>), (status = 403, body = crate::error::ProblemSchema)))]
pub(super) async fn grant_mirrors(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<GrantMirrorView>>, ApiError> {
    use tongban_policy::org::UserRole;
    let user = caller.require(&[
        UserRole::Demander,
        UserRole::DataOfficeReviewer,
        UserRole::Operator,
        UserRole::PlatformAdmin,
    ])?;
    let department = caller.department();
    let everything = caller.oversees()
        || (user.roles.contains(&UserRole::DataOfficeReviewer)
            && state.peers().is_some_and(|p| p.config.region.get(..2) == Some(department.province())));
    let consumer = (!everything).then_some(department.code.as_str());
    let mirrors = state.platform().store.grant_mirrors(consumer).await.map_err(PlatformError::from)?;
    Ok(Json(
        mirrors
            .into_iter()
            .map(|m| GrantMirrorView {
                peer: m.peer,
                resource_id: m.resource_id,
                received_at: m.received_at,
                grant: m.grant,
            })
            .collect(),
    ))
}
