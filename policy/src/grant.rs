//! Grants (授权): what an approved demand compiles into, and what the data plane enforces.
//!
//! A grant names the consumer, the resource version it was approved on, the items with their
//! masks, the rows (a division-code prefix), the rate, the daily quota, the purpose and the
//! validity. It can be suspended, resumed, revoked, or changed; every change makes a new
//! version, and a change may only narrow it: wider access needs a new demand.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::catalog::{MaskRule, Resource};
use crate::workflow::Terms;

/// A grant's standing, as set by the people who manage it. Expiry is not a status: it follows
/// from the date, see [`Grant::effective`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum GrantStatus {
    Active,
    Suspended,
    Revoked,
    /// Replaced by a later approval for the same purpose (see [`Grant::same_purpose`]); the
    /// grant names its successor in [`Grant::superseded_by`].
    Superseded,
}

/// Whether a grant allows calls on a given day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Effective {
    Active,
    Suspended,
    Revoked,
    Superseded,
    NotYetValid,
    Expired,
}

/// One granted item and how it is masked for this consumer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GrantedItem {
    pub name: String,
    pub mask: MaskRule,
}

/// What a demand's approval allows, at one version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Grant {
    pub id: String,
    pub version: u32,
    /// The approved demand this grant came from.
    pub demand_id: String,
    /// The consuming department's credit code.
    pub consumer_department: String,
    /// The consuming system, when the demand named one; otherwise any system of the department.
    pub consumer_system: Option<String>,
    pub resource_code: String,
    /// The catalog version the grant was approved on.
    pub resource_version: u32,
    pub dataset: String,
    /// The service item (事项) the data may be used for, and nothing else.
    pub service_item: String,
    pub purpose: String,
    pub items: Vec<GrantedItem>,
    /// Rows: records whose division code starts with this prefix (`""` for all).
    pub division_prefix: String,
    pub rate_per_second: u32,
    pub daily_quota: u32,
    pub valid_from: NaiveDate,
    pub valid_until: NaiveDate,
    pub status: GrantStatus,
    /// The grant that replaced this one, once a later approval for the same purpose did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superseded_by: Option<String>,
}

/// Why a grant cannot be made or changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error("items {0:?} are not shared by the resource's current version")]
    Ungrantable(Vec<String>),
    #[error("the change widens the grant: {0}")]
    Widening(String),
    #[error("a {status:?} grant cannot be {action}")]
    IllegalChange { status: GrantStatus, action: &'static str },
    #[error("validity ends ({until}) before it starts ({from})")]
    EmptyValidity { from: NaiveDate, until: NaiveDate },
}

/// The demand fields a grant carries besides its approved terms.
#[derive(Debug, Clone, Copy)]
pub struct GrantSource<'a> {
    pub demand_id: &'a str,
    pub consumer_department: &'a str,
    pub consumer_system: Option<&'a str>,
    pub service_item: &'a str,
    pub purpose: &'a str,
}

impl Grant {
    /// Compiles approved `terms` on `resource` into version 1 of a grant valid from `today`.
    /// Items the resource no longer shares are refused, not silently dropped: the approval
    /// was made on what the reviewers saw.
    pub fn compile(
        id: String,
        source: GrantSource<'_>,
        terms: &Terms,
        resource: &Resource,
        today: NaiveDate,
    ) -> Result<Grant, GrantError> {
        let ungrantable: Vec<String> = resource
            .ungrantable(terms.items.iter().map(String::as_str))
            .into_iter()
            .map(str::to_owned)
            .collect();
        if !ungrantable.is_empty() {
            return Err(GrantError::Ungrantable(ungrantable));
        }
        if terms.valid_until < today {
            return Err(GrantError::EmptyValidity { from: today, until: terms.valid_until });
        }
        let items = terms
            .items
            .iter()
            .map(|name| {
                let item = resource.items.iter().find(|i| &i.name == name).expect("checked grantable above");
                GrantedItem { name: name.clone(), mask: item.default_mask }
            })
            .collect();
        Ok(Grant {
            id,
            version: 1,
            demand_id: source.demand_id.to_owned(),
            consumer_department: source.consumer_department.to_owned(),
            consumer_system: source.consumer_system.map(str::to_owned),
            resource_code: resource.code.clone(),
            resource_version: resource.version,
            dataset: resource.dataset.clone(),
            service_item: source.service_item.to_owned(),
            purpose: source.purpose.to_owned(),
            items,
            division_prefix: terms.division_prefix.clone(),
            rate_per_second: terms.rate_per_second,
            daily_quota: terms.daily_quota,
            valid_from: today,
            valid_until: terms.valid_until,
            status: GrantStatus::Active,
            superseded_by: None,
        })
    }

    /// Whether the grant allows calls on `today`.
    pub fn effective(&self, today: NaiveDate) -> Effective {
        match self.status {
            GrantStatus::Revoked => Effective::Revoked,
            GrantStatus::Superseded => Effective::Superseded,
            GrantStatus::Suspended => Effective::Suspended,
            GrantStatus::Active if today < self.valid_from => Effective::NotYetValid,
            GrantStatus::Active if today > self.valid_until => Effective::Expired,
            GrantStatus::Active => Effective::Active,
        }
    }

    /// The grant's current terms, in the shape a demand asks for them.
    pub fn terms(&self) -> Terms {
        Terms {
            items: self.items.iter().map(|i| i.name.clone()).collect(),
            division_prefix: self.division_prefix.clone(),
            rate_per_second: self.rate_per_second,
            daily_quota: self.daily_quota,
            valid_until: self.valid_until,
        }
    }

    /// Applies `change` and returns the next version. Nothing changes on error.
    pub fn change(&self, change: &GrantChange) -> Result<Grant, GrantError> {
        let (status, action) = (self.status, change.name());
        let mut next = self.clone();
        match change {
            GrantChange::Suspend if status == GrantStatus::Active => next.status = GrantStatus::Suspended,
            GrantChange::Resume if status == GrantStatus::Suspended => next.status = GrantStatus::Active,
            GrantChange::Revoke if self.stands() => next.status = GrantStatus::Revoked,
            GrantChange::Narrow { terms } if self.stands() => {
                if let Some(why) = terms.widening_of(&self.terms()) {
                    return Err(GrantError::Widening(why));
                }
                next.items.retain(|i| terms.items.contains(&i.name));
                next.division_prefix = terms.division_prefix.clone();
                next.rate_per_second = terms.rate_per_second;
                next.daily_quota = terms.daily_quota;
                next.valid_until = terms.valid_until;
            }
            _ => return Err(GrantError::IllegalChange { status, action }),
        }
        next.version += 1;
        Ok(next)
    }

    /// Whether the grant still stands, active or suspended: neither revoked nor replaced.
    fn stands(&self) -> bool {
        matches!(self.status, GrantStatus::Active | GrantStatus::Suspended)
    }

    /// Whether the grant is in force on `today`: standing, and not past its validity. One grant
    /// at most is in force for a purpose; a later approval for it replaces the earlier grant.
    pub fn in_force(&self, today: NaiveDate) -> bool {
        self.stands() && today <= self.valid_until
    }

    /// Whether `other` serves the same purpose: the same department, the same system (or both
    /// any of the department's systems), the same resource and the same service item.
    pub fn same_purpose(&self, other: &Grant) -> bool {
        self.consumer_department == other.consumer_department
            && self.consumer_system == other.consumer_system
            && self.resource_code == other.resource_code
            && self.service_item == other.service_item
    }

    /// The grant's next version, replaced by `successor`, a later approval for the same
    /// purpose. A suspended grant is replaced too: the new approval was reviewed as its own.
    pub fn supersede(&self, successor: &Grant) -> Result<Grant, GrantError> {
        if !self.stands() || !self.same_purpose(successor) || self.id == successor.id {
            return Err(GrantError::IllegalChange { status: self.status, action: "superseded" });
        }
        let mut next = self.clone();
        next.status = GrantStatus::Superseded;
        next.superseded_by = Some(successor.id.clone());
        next.version += 1;
        Ok(next)
    }

    /// Whether `item` is granted.
    pub fn grants_item(&self, item: &str) -> bool {
        self.items.iter().any(|i| i.name == item)
    }
}

/// A change to a grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum GrantChange {
    Suspend,
    Resume,
    Revoke,
    /// Narrows items, rows, rate, quota or validity.
    Narrow {
        terms: Terms,
    },
}

impl GrantChange {
    pub fn name(&self) -> &'static str {
        match self {
            GrantChange::Suspend => "suspended",
            GrantChange::Resume => "resumed",
            GrantChange::Revoke => "revoked",
            GrantChange::Narrow { .. } => "narrowed",
        }
    }
}

/// The grants in force, indexed by consumer, as the data plane reads them. Built from the
/// store and swapped whole when a grant changes, so a decision never sees half a change.
#[derive(Debug, Clone, Default)]
pub struct GrantSet {
    by_department: std::collections::HashMap<String, Vec<Grant>>,
}

impl GrantSet {
    pub fn new(grants: impl IntoIterator<Item = Grant>) -> Self {
        let mut by_department: std::collections::HashMap<String, Vec<Grant>> = Default::default();
        for grant in grants {
            by_department.entry(grant.consumer_department.clone()).or_default().push(grant);
        }
        GrantSet { by_department }
    }

    /// Grants that allow `system` of `department` to call on `today`.
    pub fn in_force<'a>(
        &'a self,
        department: &str,
        system: &'a str,
        today: NaiveDate,
    ) -> impl Iterator<Item = &'a Grant> + 'a {
        self.by_department.get(department).into_iter().flatten().filter(move |g| {
            g.effective(today) == Effective::Active
                && g.consumer_system.as_deref().is_none_or(|s| s == system)
        })
    }

    /// Every grant of `department`, in force or not, so a refusal can say why.
    pub fn of_department<'a>(&'a self, department: &str) -> impl Iterator<Item = &'a Grant> + 'a {
        self.by_department.get(department).into_iter().flatten()
    }

    pub fn len(&self) -> usize {
        self.by_department.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{InformationItem, Sensitivity, ShareMethod, ShareType, UpdateCycle};

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, d).expect("date")
    }

    fn resource() -> Resource {
        let item = |name: &str, mask, share_type| InformationItem {
            name: name.into(),
            label: name.into(),
            data_type: "Utf8".into(),
            sensitivity: Sensitivity::Important,
            personal: true,
            default_mask: mask,
            share_type,
            required: false,
        };
        Resource {
            code: "A01-0001".into(),
            version: 3,
            name: "户籍人口基本信息".into(),
            supplier: "11410000MB0000000X".into(),
            summary: String::new(),
            share_type: ShareType::Conditional,
            share_condition: Some("办理户籍类事项".into()),
            share_methods: vec![ShareMethod::Interface],
            update_cycle: UpdateCycle::Daily,
            dataset: "household".into(),
            items: vec![
                item("id_number", MaskRule::IdNumber, ShareType::Unconditional),
                item("name", MaskRule::Name, ShareType::Unconditional),
                item("religion", MaskRule::Redact, ShareType::NotShared),
            ],
            service_items: vec![],
            division_item: Some("division_code".into()),
            format: Default::default(),
            open_type: Default::default(),
            class: Default::default(),
            related_resources: vec![],
            legal_basis: String::new(),
        }
    }

    fn terms(items: &[&str]) -> Terms {
        Terms {
            items: items.iter().map(|s| (*s).to_owned()).collect(),
            division_prefix: "41".into(),
            rate_per_second: 10,
            daily_quota: 1000,
            valid_until: day(31),
        }
    }

    fn source() -> GrantSource<'static> {
        GrantSource {
            demand_id: "d1",
            consumer_department: "11440000MB0000001Y",
            consumer_system: Some("s1"),
            service_item: "户口迁移",
            purpose: "核验",
        }
    }

    #[test]
    fn approvals_compile_into_grants_on_the_resource_version() {
        let grant =
            Grant::compile("g1".into(), source(), &terms(&["id_number", "name"]), &resource(), day(1))
                .expect("grant");
        assert_eq!(grant.resource_version, 3);
        assert_eq!(grant.items[0], GrantedItem { name: "id_number".into(), mask: MaskRule::IdNumber });
        assert_eq!(grant.effective(day(1)), Effective::Active);
        assert_eq!(grant.effective(NaiveDate::from_ymd_opt(2027, 1, 1).expect("date")), Effective::Expired);
        assert_eq!(
            Grant::compile("g1".into(), source(), &terms(&["id_number", "religion"]), &resource(), day(1)),
            Err(GrantError::Ungrantable(vec!["religion".into()]))
        );
    }

    #[test]
    fn grants_change_as_new_versions_and_only_narrow() {
        let grant =
            Grant::compile("g1".into(), source(), &terms(&["id_number", "name"]), &resource(), day(1))
                .expect("grant");
        let suspended = grant.change(&GrantChange::Suspend).expect("suspend");
        assert_eq!((suspended.version, suspended.effective(day(2))), (2, Effective::Suspended));
        assert!(matches!(suspended.change(&GrantChange::Suspend), Err(GrantError::IllegalChange { .. })));
        let resumed = suspended.change(&GrantChange::Resume).expect("resume");
        assert_eq!(resumed.effective(day(2)), Effective::Active);
        let narrowed = resumed.change(&GrantChange::Narrow { terms: terms(&["id_number"]) }).expect("narrow");
        assert_eq!((narrowed.version, narrowed.items.len()), (4, 1));
        assert!(matches!(
            narrowed.change(&GrantChange::Narrow { terms: terms(&["id_number", "name"]) }),
            Err(GrantError::Widening(_))
        ));
        let revoked = narrowed.change(&GrantChange::Revoke).expect("revoke");
        assert_eq!(revoked.effective(day(2)), Effective::Revoked);
        assert!(matches!(revoked.change(&GrantChange::Resume), Err(GrantError::IllegalChange { .. })));

        let set = GrantSet::new([grant.clone(), revoked]);
        assert_eq!(set.in_force("11440000MB0000001Y", "s1", day(2)).count(), 1);
        assert_eq!(set.in_force("11440000MB0000001Y", "other", day(2)).count(), 0);
    }

    #[test]
    fn a_later_approval_for_the_same_purpose_replaces_the_grant_in_force() {
        let first = Grant::compile("g1".into(), source(), &terms(&["id_number"]), &resource(), day(1))
            .expect("grant");
        let second =
            Grant::compile("g2".into(), source(), &terms(&["id_number", "name"]), &resource(), day(3))
                .expect("grant");
        assert!(first.same_purpose(&second) && first.in_force(day(3)));
        let replaced = first.supersede(&second).expect("superseded");
        assert_eq!(
            (replaced.version, replaced.status, replaced.superseded_by.as_deref()),
            (2, GrantStatus::Superseded, Some("g2"))
        );
        assert_eq!(replaced.effective(day(3)), Effective::Superseded);
        assert!(!replaced.in_force(day(3)));
        // An ended grant stays ended: it is neither replaced again, revoked, narrowed nor resumed.
        assert!(replaced.supersede(&second).is_err());
        for change in
            [GrantChange::Revoke, GrantChange::Resume, GrantChange::Narrow { terms: terms(&["id_number"]) }]
        {
            assert!(matches!(replaced.change(&change), Err(GrantError::IllegalChange { .. })), "{change:?}");
        }
        // A suspended grant is replaced too; a grant for another purpose is not.
        let suspended = first.change(&GrantChange::Suspend).expect("suspend");
        assert_eq!(suspended.supersede(&second).expect("superseded").status, GrantStatus::Superseded);
        let mut elsewhere = second.clone();
        elsewhere.service_item = "另一事项".into();
        assert!(!first.same_purpose(&elsewhere));
        assert!(first.supersede(&elsewhere).is_err());
        assert!(!first.in_force(NaiveDate::from_ymd_opt(2027, 1, 1).expect("date")), "expired");
        // Older stored grants, written before successors were named, still read.
        let stored = serde_json::to_value(&first).expect("json");
        assert!(stored.get("superseded_by").is_none());
        let read: Grant = serde_json::from_value(stored).expect("read");
        assert_eq!(read.superseded_by, None);
    }
}
