//! Decisions (访问决策): whether one data call may proceed, under which grant, with which items
//! masked how and which rows in scope.
//!
//! Deny by default: a call is permitted only when one grant in force names the calling system's
//! department (and system, where the grant names one), the resource, the call's service item,
//! every item the call reads, and the current catalog version still shares those items and
//! offers the operation. Every refusal carries all the reasons that apply, so a caller can
//! mend its call and an auditor can read why.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::catalog::{MaskRule, Resource, ShareMethod};
use crate::grant::{Effective, Grant, GrantSet, GrantStatus, GrantedItem};

/// What a call does with a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// 核验: match / no match per claimed item, never a stored value.
    Verify,
    /// The approved items of the records with one key.
    Lookup,
    /// SQL over the per-grant view.
    Sql,
    /// A call passed on to the supplier's own HTTP API (接口), its answer filtered to the
    /// granted items, masked.
    Proxy,
    /// 证照核验: a licence's status (valid, revoked, expired) by its number and holder, with
    /// the granted items of its face, masked.
    LicenceCheck,
}

impl Operation {
    /// The operation's name as the API and the exchange log spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Verify => "verify",
            Operation::Lookup => "lookup",
            Operation::Sql => "sql",
            Operation::Proxy => "proxy",
            Operation::LicenceCheck => "licence_check",
        }
    }

    /// The catalog share method a resource must offer for this operation.
    pub fn share_method(self) -> ShareMethod {
        match self {
            Operation::Verify | Operation::Lookup | Operation::Proxy | Operation::LicenceCheck => {
                ShareMethod::Interface
            }
            Operation::Sql => ShareMethod::Table,
        }
    }
}

/// The purpose every data call is bound to: the service item (事项编码) its grant was approved
/// for, the case (办件编号) being handled, and the operator (经办人) handling it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Purpose {
    pub service_item: String,
    pub case_number: String,
    pub operator: String,
}

/// The longest purpose field accepted.
const PURPOSE_FIELD_MAX: usize = 64;

impl Purpose {
    /// Checks the three fields as a call supplied them; each missing or malformed field is a
    /// reason to refuse.
    pub fn parse(
        service_item: Option<&str>,
        case_number: Option<&str>,
        operator: Option<&str>,
    ) -> Result<Purpose, Vec<Reason>> {
        let mut reasons = Vec::new();
        let mut field =
            |name: &'static str, value: Option<&str>, allowed: fn(char) -> bool| match value.map(str::trim) {
                None | Some("") => {
                    reasons.push(Reason::PurposeMissing { field: name });
                    String::new()
                }
                Some(v) if v.chars().count() > PURPOSE_FIELD_MAX || !v.chars().all(allowed) => {
                    reasons.push(Reason::PurposeInvalid { field: name });
                    String::new()
                }
                Some(v) => v.to_owned(),
            };
        let code = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        // Operators are named by staff numbers or names; anything printable is allowed.
        let printable = |c: char| !c.is_control();
        let service_item = field("service_item", service_item, code);
        let case_number = field("case_number", case_number, code);
        let operator = field("operator", operator, printable);
        if reasons.is_empty() { Ok(Purpose { service_item, case_number, operator }) } else { Err(reasons) }
    }
}

/// Why a call is refused. The tag is a stable code.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Reason {
    /// A purpose field is absent.
    PurposeMissing {
        field: &'static str,
    },
    /// A purpose field is too long or has characters it may not have.
    PurposeInvalid {
        field: &'static str,
    },
    /// The caller's department holds no grant on the resource.
    NoGrant,
    /// The department's grants on the resource name other systems.
    WrongSystem,
    /// No grant on the resource covers the call's service item.
    WrongPurpose {
        service_item: String,
    },
    GrantSuspended {
        grant: String,
    },
    GrantRevoked {
        grant: String,
    },
    /// The grant was replaced by a later approval for the same purpose, which is not in
    /// force either.
    GrantSuperseded {
        grant: String,
        by: String,
    },
    GrantExpired {
        grant: String,
        valid_until: NaiveDate,
    },
    GrantNotYetValid {
        grant: String,
        valid_from: NaiveDate,
    },
    /// Items the grant does not cover.
    ItemsNotGranted {
        grant: String,
        items: Vec<String>,
    },
    /// Items the grant covers that the resource's current catalog version no longer shares.
    ItemsWithdrawn {
        items: Vec<String>,
    },
    /// Items granted redacted, which a verification would reveal one bit of.
    ItemsRedacted {
        items: Vec<String>,
    },
    /// The grant limits rows, but the resource's current version names no division item to
    /// limit them by.
    ScopeUnenforceable {
        grant: String,
    },
    /// The supplier answers with a document the gateway cannot mask or scope, and the grant
    /// masks these items (or limits rows), so the document may not be passed on.
    DocumentUnmaskable {
        items: Vec<String>,
    },
    /// The resource is not offered for this kind of call (共享方式).
    OperationNotOffered {
        operation: Operation,
    },
    /// The resource's dataset is not configured as its supplier's own, so nothing of it is
    /// served under any grant: a supplier shares only what it supplies.
    DatasetNotOwned {
        dataset: String,
    },
}

/// What a permitted call may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permit<'g> {
    pub grant: &'g Grant,
    /// The items to serve, in the order asked (all granted items when none were named), each
    /// with the mask this grant applies.
    pub items: Vec<GrantedItem>,
    /// The rows in scope, when the grant limits them.
    pub scope: Option<RowScope>,
}

impl Permit<'_> {
    /// Whether a document holding `items` may be passed on whole under this permit. A
    /// document cannot be masked or scoped, so every item it holds must be granted unmasked
    /// and the grant must not limit rows.
    pub fn admits_document(&self, items: &[String]) -> Result<(), Denial> {
        let mut reasons = Vec::new();
        let missing: Vec<String> =
            items.iter().filter(|name| !self.items.iter().any(|i| &i.name == *name)).cloned().collect();
        if !missing.is_empty() {
            reasons.push(Reason::ItemsNotGranted { grant: self.grant.id.clone(), items: missing });
        }
        let masked: Vec<String> = self
            .items
            .iter()
            .filter(|i| i.mask != MaskRule::None && items.contains(&i.name))
            .map(|i| i.name.clone())
            .collect();
        if !masked.is_empty() {
            reasons.push(Reason::DocumentUnmaskable { items: masked });
        }
        if self.scope.is_some() {
            reasons.push(Reason::ScopeUnenforceable { grant: self.grant.id.clone() });
        }
        if reasons.is_empty() { Ok(()) } else { Err(Denial { reasons }) }
    }
}

/// Rows whose division item starts with a prefix. Records with no division code are out of
/// every scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct RowScope {
    pub item: String,
    pub prefix: String,
}

impl RowScope {
    pub fn admits(&self, division_code: Option<&str>) -> bool {
        division_code.is_some_and(|code| code.starts_with(&self.prefix))
    }
}

/// A refused call, with every reason that applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Denial {
    pub reasons: Vec<Reason>,
}

/// One data call as the decision sees it.
#[derive(Debug, Clone, Copy)]
pub struct AccessRequest<'a> {
    pub department: &'a str,
    pub system: &'a str,
    /// The resource's current catalog version.
    pub resource: &'a Resource,
    /// The department the resource's dataset belongs to, as the gateway's configuration says
    /// (`None` when it names none).
    pub dataset_supplier: Option<&'a str>,
    pub operation: Operation,
    /// Items the call reads; empty means every granted item.
    pub items: &'a [String],
    pub purpose: &'a Purpose,
    pub today: NaiveDate,
}

/// Decides one call against the grants in force.
pub fn decide<'g>(grants: &'g GrantSet, request: &AccessRequest<'_>) -> Result<Permit<'g>, Denial> {
    let deny = |reason: Reason| Err(Denial { reasons: vec![reason] });
    let resource = request.resource;
    // A resource over another department's dataset is served to no one, whatever was approved
    // on it: the grant was made by people who may not share that data.
    if request.dataset_supplier != Some(resource.supplier.as_str()) {
        return deny(Reason::DatasetNotOwned { dataset: resource.dataset.clone() });
    }
    let on_resource: Vec<&Grant> =
        grants.of_department(request.department).filter(|g| g.resource_code == resource.code).collect();
    if on_resource.is_empty() {
        return deny(Reason::NoGrant);
    }
    let for_system: Vec<&Grant> = on_resource
        .into_iter()
        .filter(|g| g.consumer_system.as_deref().is_none_or(|s| s == request.system))
        .collect();
    if for_system.is_empty() {
        return deny(Reason::WrongSystem);
    }
    let for_purpose: Vec<&Grant> =
        for_system.into_iter().filter(|g| g.service_item == request.purpose.service_item).collect();
    if for_purpose.is_empty() {
        return deny(Reason::WrongPurpose { service_item: request.purpose.service_item.clone() });
    }
    let in_force: Vec<&Grant> =
        for_purpose.iter().copied().filter(|g| g.effective(request.today) == Effective::Active).collect();
    if in_force.is_empty() {
        // The newest grant says why: an older one may have been replaced by a later demand.
        // A replaced grant speaks only when its successor is not among these.
        let newest = for_purpose
            .iter()
            .max_by_key(|g| (g.status != GrantStatus::Superseded, g.valid_until, g.id.as_str()))
            .expect("not empty");
        let grant = newest.id.clone();
        return deny(match newest.effective(request.today) {
            Effective::Suspended => Reason::GrantSuspended { grant },
            Effective::Revoked => Reason::GrantRevoked { grant },
            Effective::Superseded => {
                Reason::GrantSuperseded { grant, by: newest.superseded_by.clone().unwrap_or_default() }
            }
            Effective::Expired => Reason::GrantExpired { grant, valid_until: newest.valid_until },
            Effective::NotYetValid | Effective::Active => {
                Reason::GrantNotYetValid { grant, valid_from: newest.valid_from }
            }
        });
    }

    let mut reasons = Vec::new();
    if !resource.share_methods.contains(&request.operation.share_method()) {
        reasons.push(Reason::OperationNotOffered { operation: request.operation });
    }
    // One grant decides. The store keeps at most one in force per purpose (department, system
    // or any system, resource, service item): a later approval replaces the earlier grant. So
    // there are two candidates at most, and the one naming the calling system decides over
    // the department's grant for any system. Should a store still hold two for one purpose,
    // the newest approval decides, as the store's own migration would have it.
    let grant = in_force
        .iter()
        .copied()
        .max_by_key(|g| (g.consumer_system.is_some(), g.valid_from, g.id.as_str()))
        .expect("not empty");
    let items: Vec<GrantedItem> = if request.items.is_empty() {
        grant.items.clone()
    } else {
        let missing: Vec<String> = request.items.iter().filter(|i| !grant.grants_item(i)).cloned().collect();
        if !missing.is_empty() {
            reasons.push(Reason::ItemsNotGranted { grant: grant.id.clone(), items: missing });
        }
        request
            .items
            .iter()
            .filter_map(|name| grant.items.iter().find(|g| &g.name == name).cloned())
            .collect()
    };
    let withdrawn: Vec<String> =
        resource.ungrantable(items.iter().map(|i| i.name.as_str())).into_iter().map(str::to_owned).collect();
    if !withdrawn.is_empty() {
        reasons.push(Reason::ItemsWithdrawn { items: withdrawn });
    }
    if request.operation == Operation::Verify {
        let redacted: Vec<String> =
            items.iter().filter(|i| i.mask == MaskRule::Redact).map(|i| i.name.clone()).collect();
        if !redacted.is_empty() {
            reasons.push(Reason::ItemsRedacted { items: redacted });
        }
    }
    if !reasons.is_empty() {
        return Err(Denial { reasons });
    }
    let scope = match (&resource.division_item, grant.division_prefix.as_str()) {
        (_, "") => None,
        (Some(item), prefix) => Some(RowScope { item: item.clone(), prefix: prefix.to_owned() }),
        // A row scope on a resource that lost its division item cannot be enforced; the whole
        // call is refused rather than served unscoped.
        (None, _) => return deny(Reason::ScopeUnenforceable { grant: grant.id.clone() }),
    };
    Ok(Permit { grant, items, scope })
}
