//! What a gateway shares with its peers in other provinces, and what it keeps of theirs.
//!
//! A gateway publishes a catalog document to its peers: the resources it shares beyond its
//! province, which are all of its own except those not shared (不予共享), each without the
//! items that are not shared. A peer keeps the last good copy of each other gateway's
//! document and lists its resources beside its own, under ids that cannot collide with local
//! codes: the supplying province's code, a colon, and the supplier's own code
//! (`410000:A01-410000-0001`).

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};
use tongban_policy::catalog::{Resource, ShareType};
use tongban_policy::grant::Grant;
use tongban_policy::workflow::{Action, Demand, Role, Side, Stage, StageClock};

/// The catalog a gateway publishes to its peers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogDocument {
    /// The publishing gateway's name, as its peers configure it.
    pub gateway: String,
    /// The publishing gateway's province (GB/T 2260).
    pub region: String,
    /// Its shared resources, each at its newest version, ordered by code.
    pub resources: Vec<Resource>,
}

impl CatalogDocument {
    /// The document of a gateway named `gateway` in `region` whose catalog is `resources`:
    /// those of suppliers seated in its province, since a gateway speaks for its own
    /// province's data only (and its peers accept nothing else from it).
    pub fn publish<'a>(
        gateway: &str,
        region: &str,
        resources: impl IntoIterator<Item = &'a Resource>,
    ) -> CatalogDocument {
        let province = region.get(..2).unwrap_or(region);
        let mut resources: Vec<Resource> = resources
            .into_iter()
            .filter(|r| r.supplier.get(2..4) == Some(province))
            .filter_map(publishable)
            .collect();
        resources.sort_by(|a, b| a.code.cmp(&b.code));
        CatalogDocument { gateway: gateway.to_owned(), region: region.to_owned(), resources }
    }

    /// The document as a peer accepts it from the gateway it configured as `region`: only
    /// resources of suppliers seated in that province, each as it may be published. A peer
    /// cannot publish another province's resources, nor items that are not shared; what is
    /// dropped is named, for the operator.
    pub fn accepted_from(mut self, region: &str) -> (CatalogDocument, Vec<String>) {
        let mut dropped = Vec::new();
        let province = region.get(..2).unwrap_or(region);
        if self.region != region {
            dropped.push(format!("the document names region {}, not {region}", self.region));
            self.region = region.to_owned();
        }
        let mut kept = Vec::with_capacity(self.resources.len());
        let mut seen = std::collections::BTreeSet::new();
        for resource in std::mem::take(&mut self.resources) {
            let seat = resource.supplier.get(2..4);
            if seat != Some(province) {
                dropped.push(format!(
                    "{}: its supplier {} is not seated in {region}",
                    resource.code, resource.supplier
                ));
            } else if !valid_code(&resource.code) {
                dropped.push(format!("{:?}: not a resource code", resource.code));
            } else if !seen.insert(resource.code.clone()) {
                dropped.push(format!("{}: listed twice", resource.code));
            } else if let Some(resource) = publishable(&resource) {
                kept.push(resource);
            } else {
                dropped.push(format!("{}: not shared", resource.code));
            }
        }
        self.resources = kept;
        (self, dropped)
    }
}

/// A resource as it may leave its province: `None` when it is not shared, else without its
/// items that are not shared.
fn publishable(resource: &Resource) -> Option<Resource> {
    if resource.share_type == ShareType::NotShared {
        return None;
    }
    let mut published = resource.clone();
    published.items.retain(|item| resource.item_share_type(&item.name) != Some(ShareType::NotShared));
    (!published.items.is_empty()).then_some(published)
}

/// Whether `code` can be a resource code: letters, digits, `-`, `_` and `.`, at most 64.
pub fn valid_code(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= 64
        && code.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The id a resource of the gateway in `region` has at its peers.
pub fn remote_id(region: &str, code: &str) -> String {
    format!("{region}:{code}")
}

/// The province and the supplier's own code of a remote resource id, when `id` is one.
pub fn split_remote_id(id: &str) -> Option<(&str, &str)> {
    let (region, code) = id.split_once(':')?;
    (region.len() == 6 && region.bytes().all(|b| b.is_ascii_digit()) && valid_code(code))
        .then_some((region, code))
}

/// The last good copy of a peer's catalog, and how its refreshing stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteCatalog {
    /// The peer's name in this gateway's configuration.
    pub peer: String,
    pub region: String,
    /// The document, when one was ever received.
    pub document: Option<CatalogDocument>,
    /// The peer's entity tag for the document, sent back to ask whether it changed.
    pub etag: Option<String>,
    /// When the document was received (Beijing time).
    pub fetched_at: Option<NaiveDateTime>,
    /// When the peer last confirmed the copy current: the copy's age counts from here.
    pub checked_at: Option<NaiveDateTime>,
    /// The last failure to refresh it since, if the last attempt failed.
    pub failure: Option<RefreshFailure>,
}

/// Why a catalog could not be refreshed, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshFailure {
    pub at: NaiveDateTime,
    pub error: String,
}

impl RemoteCatalog {
    /// A peer's catalog before anything was received from it.
    pub fn empty(peer: &str, region: &str) -> RemoteCatalog {
        RemoteCatalog {
            peer: peer.to_owned(),
            region: region.to_owned(),
            document: None,
            etag: None,
            fetched_at: None,
            checked_at: None,
            failure: None,
        }
    }

    /// Seconds since the peer last confirmed the copy, at `now`.
    pub fn age_seconds(&self, now: NaiveDateTime) -> Option<i64> {
        self.checked_at.map(|at| (now - at).num_seconds().max(0))
    }
}

/// A message from this gateway to a peer, written to the outbox in the same transaction as
/// the change it carries and delivered exactly once, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PeerMessage {
    /// A step on a demand that crosses gateways, taken on the sender's side.
    DemandStep(Box<DemandStep>),
    /// A grant the supplier's gateway compiled or changed, for the home gateway's mirror.
    GrantChanged { grant: Box<Grant> },
}

impl PeerMessage {
    /// The message's kind, as the outbox lists it.
    pub fn kind(&self) -> &'static str {
        match self {
            PeerMessage::DemandStep(_) => "demand_step",
            PeerMessage::GrantChanged { .. } => "grant_changed",
        }
    }
}

/// A department of another province as its home gateway states it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteDepartment {
    pub code: String,
    pub name: String,
    pub region: String,
}

/// One step on a demand that crosses gateways, with the demand as filed, so that the first
/// step the supplier's gateway receives (the home office's conformity pass) creates it there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemandStep {
    /// The demand's id, the same on both gateways.
    pub demand_id: String,
    pub applicant: RemoteDepartment,
    pub applicant_system: Option<String>,
    /// The supplier's own code for the resource (not the remote id).
    pub resource_code: String,
    pub resource_version: i64,
    pub supplier_department: String,
    pub service_item: String,
    pub purpose: String,
    pub legal_basis: String,
    /// Who took the step, as the sender records actors.
    pub actor: String,
    pub role: Role,
    pub action: Action,
    #[serde(with = "tongban_policy::time::rfc3339")]
    pub at: NaiveDateTime,
    /// The demand after the step, as the sender computed it. The receiver replays the step on
    /// its own copy and takes from this only the clock of a stage the sender runs.
    pub workflow: Demand,
}

/// What a receiving gateway answers to a delivered message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delivery {
    /// `false` when the message had been applied before: a repeat changes nothing.
    pub applied: bool,
    /// For a demand step: the clock of the stage the receiver now runs, computed with the
    /// receiver's calendar, for the sender's copy.
    pub clock: Option<StageClock>,
}

/// Which side runs a review stage of a demand that crosses gateways, and so whose calendar
/// sets its deadline.
pub fn stage_side(stage: Stage) -> Side {
    match stage {
        Stage::Conformity => Side::Home,
        Stage::Supplier | Stage::Coordination => Side::Supplier,
    }
}

/// What one of this gateway's demands that cross gateways is: the peer on the other side and
/// this gateway's side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crossing {
    pub peer: String,
    pub side: Side,
}

/// A grant a peer compiled for one of this gateway's departments, as last received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantMirror {
    pub peer: String,
    /// The remote resource id (`region:code`).
    pub resource_id: String,
    pub grant: Grant,
    pub received_at: NaiveDateTime,
}

/// How the outbox to one peer stands.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OutboxDepth {
    /// Messages written and not yet delivered.
    pub pending: i64,
    /// When the oldest of them was written.
    pub oldest_pending_at: Option<NaiveDateTime>,
    /// Messages the peer refused for good.
    pub refused: i64,
    pub delivered: i64,
    /// The last delivery attempt's failure, while messages are pending.
    pub last_error: Option<String>,
}

#[cfg(test)]
pub(crate) mod tests {
    use tongban_policy::catalog::{InformationItem, MaskRule, Sensitivity};

    use super::*;

    pub(crate) fn resource(
        code: &str,
        supplier: &str,
        share_type: ShareType,
        items: &[(&str, ShareType)],
    ) -> Resource {
        Resource {
            code: code.into(),
            version: 1,
            name: code.into(),
            supplier: supplier.into(),
            summary: String::new(),
            share_type,
            share_condition: None,
            share_methods: vec![],
            update_cycle: tongban_policy::catalog::UpdateCycle::Daily,
            dataset: "household".into(),
            items: items
                .iter()
                .map(|(name, share_type)| InformationItem {
                    name: (*name).into(),
                    label: (*name).into(),
                    data_type: "string".into(),
                    sensitivity: Sensitivity::General,
                    personal: false,
                    default_mask: MaskRule::None,
                    share_type: *share_type,
                    required: false,
                })
                .collect(),
            service_items: vec![],
            division_item: None,
            format: Default::default(),
            open_type: Default::default(),
            class: Default::default(),
            related_resources: vec![],
            legal_basis: "the law".into(),
        }
    }

    const HENAN_POLICE: &str = "11410000MB0000001X";

    #[test]
    fn resources_and_items_not_shared_are_never_published() {
        let resources = [
            resource(
                "B",
                HENAN_POLICE,
                ShareType::Conditional,
                &[("name", ShareType::Unconditional), ("religion", ShareType::NotShared)],
            ),
            resource("A", HENAN_POLICE, ShareType::NotShared, &[("name", ShareType::Unconditional)]),
            resource("C", HENAN_POLICE, ShareType::Unconditional, &[("x", ShareType::NotShared)]),
        ];
        let document = CatalogDocument::publish("henan", "410000", &resources);
        assert_eq!(document.resources.len(), 1, "{document:?}");
        // Another province's resource held in this gateway's store is that province's to publish.
        let guangdong =
            resource("D", "11440000MB0000002Y", ShareType::Unconditional, &[("x", ShareType::Unconditional)]);
        assert!(CatalogDocument::publish("henan", "410000", [&guangdong]).resources.is_empty());
        assert_eq!(document.resources[0].code, "B");
        let items: Vec<&str> = document.resources[0].items.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(items, ["name"]);
    }

    #[test]
    fn a_peer_publishes_only_its_own_provinces_resources() {
        let guangdong = "11440000MB0000002Y";
        let document = CatalogDocument {
            gateway: "henan".into(),
            region: "440000".into(),
            resources: vec![
                resource("A", HENAN_POLICE, ShareType::Unconditional, &[("name", ShareType::Unconditional)]),
                resource("B", guangdong, ShareType::Unconditional, &[("name", ShareType::Unconditional)]),
                resource("A", HENAN_POLICE, ShareType::Unconditional, &[("name", ShareType::Unconditional)]),
                resource(
                    "a/b",
                    HENAN_POLICE,
                    ShareType::Unconditional,
                    &[("name", ShareType::Unconditional)],
                ),
                resource("C", HENAN_POLICE, ShareType::NotShared, &[("name", ShareType::Unconditional)]),
            ],
        };
        let (accepted, dropped) = document.accepted_from("410000");
        assert_eq!(accepted.region, "410000");
        let codes: Vec<&str> = accepted.resources.iter().map(|r| r.code.as_str()).collect();
        assert_eq!(codes, ["A"]);
        assert_eq!(dropped.len(), 5, "{dropped:?}");
    }

    #[test]
    fn remote_ids_name_the_province_and_the_suppliers_code() {
        let id = remote_id("410000", "A01-410000-0001");
        assert_eq!(split_remote_id(&id), Some(("410000", "A01-410000-0001")));
        for not_remote in ["A01-410000-0001", "41:A", "410000:", "410000:a/b", "4100x0:A"] {
            assert_eq!(split_remote_id(not_remote), None, "{not_remote}");
        }
    }
}
