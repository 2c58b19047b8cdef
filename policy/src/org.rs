//! Who takes part: departments, their calling systems, people and service items (事项), and
//! which workflow role a person holds on a given demand.

use serde::{Deserialize, Serialize};

use crate::credit_code::CreditCode;
use crate::division;
use crate::workflow::Role;

/// What a department does in data sharing. One department may hold several.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DepartmentRole {
    /// 数据提供方: registers resources in the catalog and answers conditional demands.
    Supplier,
    /// 数据需求方: files demands and calls the gateway through its systems.
    Demander,
    /// 数据管理部门: checks demands and coordinates disputes for its province.
    DataOffice,
}

/// A government department, identified by its unified social credit code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Department {
    /// 统一社会信用代码 (GB 32100).
    pub code: String,
    pub name: String,
    /// GB/T 2260 division code of the department's seat.
    pub region: String,
    pub roles: Vec<DepartmentRole>,
}

/// Why a department record is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrgError {
    #[error("credit code {code:?}: {reason}")]
    CreditCode { code: String, reason: String },
    #[error("region {0:?} is not a known GB/T 2260 division")]
    UnknownRegion(String),
    #[error("{0} must not be empty")]
    Empty(&'static str),
    #[error("a department needs at least one role")]
    NoRole,
}

impl Department {
    /// Checks the credit code's check characters, the region and the name.
    pub fn validate(&self) -> Result<(), OrgError> {
        CreditCode::parse(&self.code)
            .map_err(|e| OrgError::CreditCode { code: self.code.clone(), reason: e.to_string() })?;
        if division::find(&self.region).is_none() {
            return Err(OrgError::UnknownRegion(self.region.clone()));
        }
        if self.name.trim().is_empty() {
            return Err(OrgError::Empty("name"));
        }
        if self.roles.is_empty() {
            return Err(OrgError::NoRole);
        }
        Ok(())
    }

    pub fn has_role(&self, role: DepartmentRole) -> bool {
        self.roles.contains(&role)
    }

    /// The two-digit province code of the department's seat.
    pub fn province(&self) -> &str {
        self.region.get(..2).unwrap_or_default()
    }
}

/// What a person may do on the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum UserRole {
    /// Maintains a supplying department's catalog entries and answers its demands.
    SupplierAdmin,
    /// Files and follows a demanding department's demands; registers its systems.
    Demander,
    /// Checks demands and coordinates disputes for a data office.
    DataOfficeReviewer,
    /// Watches exchange quality; reads everything, changes nothing in the workflow.
    Operator,
    /// Registers departments, people and service items.
    PlatformAdmin,
}

impl UserRole {
    /// The department role a person with this role must belong to, if any.
    pub fn required_department_role(self) -> Option<DepartmentRole> {
        match self {
            UserRole::SupplierAdmin => Some(DepartmentRole::Supplier),
            UserRole::Demander => Some(DepartmentRole::Demander),
            UserRole::DataOfficeReviewer => Some(DepartmentRole::DataOffice),
            UserRole::Operator | UserRole::PlatformAdmin => None,
        }
    }
}

/// The kinds of 政务服务事项, as the national lists name them. An item's type must be one of
/// these, so lists from different offices group the same way.
pub const SERVICE_ITEM_TYPES: &[&str] = &[
    "行政许可",
    "行政给付",
    "行政确认",
    "行政裁决",
    "行政奖励",
    "行政征收",
    "行政检查",
    "行政处罚",
    "行政强制",
    "其他行政权力",
    "公共服务",
];

/// A 跨省通办 service item (政务服务事项) that shared data serves, as a national or
/// provincial list states it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServiceItemInput {
    /// The item's code in its list.
    pub code: String,
    pub name: String,
    /// 事项类型: one of `SERVICE_ITEM_TYPES`.
    pub item_type: String,
    /// The ministry responsible for the item nationally.
    pub ministry: String,
    /// 设定依据: the laws and regulations the item rests on.
    #[serde(default)]
    pub legal_basis: String,
    /// The kinds of data the item needs, as dataset names (household, social_insurance, …).
    pub needs: Vec<String>,
    /// The list the item comes from, such as 全国高频政务服务“跨省通办”事项清单; empty for an
    /// item registered on its own.
    #[serde(default)]
    pub list: String,
}

impl ServiceItemInput {
    /// Checks what an item must state. Every problem is named, so a list's author can fix a
    /// row in one go.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let code_ok = !self.code.is_empty()
            && self.code.len() <= 64
            && self.code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !code_ok {
            problems.push(format!("code {:?}: 1 to 64 letters, digits, '-' or '_'", self.code));
        }
        for (field, value) in [("name", &self.name), ("ministry", &self.ministry)] {
            if value.trim().is_empty() {
                problems.push(format!("{field} must not be empty"));
            }
        }
        if !SERVICE_ITEM_TYPES.contains(&self.item_type.as_str()) {
            problems.push(format!(
                "item_type {:?} is not one of {}",
                self.item_type,
                SERVICE_ITEM_TYPES.join("、")
            ));
        }
        if self.needs.is_empty() || self.needs.iter().any(|n| n.trim().is_empty()) {
            problems.push("needs: name at least one kind of data, none empty".into());
        }
        problems
    }
}

/// How a service item came to be registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ItemOrigin {
    /// Imported from a list file.
    Import,
    /// Registered one by one.
    #[default]
    Registered,
}

/// Where a service item came from: its list, how it was registered, by whom and when.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ItemSource {
    /// The list the item came from; empty for an item registered on its own.
    pub list: String,
    pub origin: ItemOrigin,
    /// The actor who registered or last imported it (`user:…`).
    pub by: String,
    /// When, as RFC 3339; empty for items registered before sources were kept.
    pub at: String,
}

/// A registered service item: what its list states, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServiceItem {
    pub code: String,
    pub name: String,
    /// 事项类型; empty for items registered before types were kept.
    #[serde(default)]
    pub item_type: String,
    pub ministry: String,
    #[serde(default)]
    pub legal_basis: String,
    pub needs: Vec<String>,
    #[serde(default)]
    pub source: ItemSource,
}

impl ServiceItem {
    /// The item as `input` states it, registered from `source`.
    pub fn new(input: ServiceItemInput, origin: ItemOrigin, by: String, at: String) -> ServiceItem {
        ServiceItem {
            code: input.code,
            name: input.name,
            item_type: input.item_type,
            ministry: input.ministry,
            legal_basis: input.legal_basis,
            needs: input.needs,
            source: ItemSource { list: input.list, origin, by, at },
        }
    }

    /// Whether the list's statement of the item differs from this one's, so an import must
    /// store it anew.
    pub fn differs_from(&self, input: &ServiceItemInput) -> bool {
        self.name != input.name
            || self.item_type != input.item_type
            || self.ministry != input.ministry
            || self.legal_basis != input.legal_basis
            || self.needs != input.needs
            || self.source.list != input.list
    }

    /// The item as a list states it, for export.
    pub fn input(&self) -> ServiceItemInput {
        ServiceItemInput {
            code: self.code.clone(),
            name: self.name.clone(),
            item_type: self.item_type.clone(),
            ministry: self.ministry.clone(),
            legal_basis: self.legal_basis.clone(),
            needs: self.needs.clone(),
            list: self.source.list.clone(),
        }
    }
}

/// The parties to one demand, as the rules for who acts on it need them.
#[derive(Debug, Clone, Copy)]
pub struct DemandParties<'a> {
    pub applicant: &'a Department,
    pub supplier: &'a Department,
    /// The province (two digits) whose data office reviews the demand here: the supplier's
    /// for a demand within one gateway; for one that crosses gateways, that of the party on
    /// this gateway's side, since each province's office acts at its own gateway.
    pub office_province: &'a str,
}

impl<'a> DemandParties<'a> {
    /// The parties of a demand within one gateway, reviewed by the supplier's province.
    pub fn local(applicant: &'a Department, supplier: &'a Department) -> DemandParties<'a> {
        DemandParties { applicant, supplier, office_province: supplier.province() }
    }
}

/// Whether a person in `department` holding `roles` reviews for the data office of
/// `supplier`'s province: checks its demands and decides on its grants.
pub fn reviews_for(roles: &[UserRole], department: &Department, supplier: &Department) -> bool {
    roles.contains(&UserRole::DataOfficeReviewer)
        && department.has_role(DepartmentRole::DataOffice)
        && department.province() == supplier.province()
}

/// The workflow roles that a person in `department` holding `roles` has on a demand between
/// `parties`. Demanders act for their own department, supplier administrators for theirs, and
/// reviewers for data offices of the supplier's province, whose data it is.
pub fn workflow_roles(roles: &[UserRole], department: &Department, parties: DemandParties<'_>) -> Vec<Role> {
    let mut held = Vec::new();
    if roles.contains(&UserRole::Demander) && department.code == parties.applicant.code {
        held.push(Role::Applicant);
    }
    if roles.contains(&UserRole::DataOfficeReviewer)
        && department.has_role(DepartmentRole::DataOffice)
        && department.province() == parties.office_province
    {
        held.push(Role::DataOffice);
    }
    if roles.contains(&UserRole::SupplierAdmin) && department.code == parties.supplier.code {
        held.push(Role::Supplier);
    }
    held
}

#[cfg(test)]
mod tests {
    use super::*;

    fn department(code_seq: &str, region: &str, roles: &[DepartmentRole]) -> Department {
        Department {
            code: CreditCode::compose('1', '1', region, code_seq),
            name: "部门".into(),
            region: region.into(),
            roles: roles.to_vec(),
        }
    }

    #[test]
    fn departments_are_checked() {
        let good = department("00000001", "410000", &[DepartmentRole::Supplier]);
        assert_eq!(good.validate(), Ok(()));
        let mut bad = good.clone();
        bad.code.replace_range(17..18, if good.code.ends_with('0') { "1" } else { "0" });
        assert!(matches!(bad.validate(), Err(OrgError::CreditCode { .. })));
        let mut bad = good.clone();
        bad.region = "999999".into();
        assert_eq!(bad.validate(), Err(OrgError::UnknownRegion("999999".into())));
        let mut bad = good;
        bad.roles.clear();
        assert_eq!(bad.validate(), Err(OrgError::NoRole));
    }

    #[test]
    fn reviewers_act_only_for_their_province_and_departments_only_for_themselves() {
        let henan_police = department("00000001", "410000", &[DepartmentRole::Supplier]);
        let guangdong_bureau = department("00000002", "440000", &[DepartmentRole::Demander]);
        let henan_office = department("00000003", "410000", &[DepartmentRole::DataOffice]);
        let anhui_office = department("00000004", "340000", &[DepartmentRole::DataOffice]);
        let parties = DemandParties::local(&guangdong_bureau, &henan_police);
        assert_eq!(workflow_roles(&[UserRole::Demander], &guangdong_bureau, parties), vec![Role::Applicant]);
        assert_eq!(workflow_roles(&[UserRole::Demander], &henan_police, parties), vec![]);
        assert_eq!(
            workflow_roles(&[UserRole::DataOfficeReviewer], &henan_office, parties),
            vec![Role::DataOffice]
        );
        assert_eq!(workflow_roles(&[UserRole::DataOfficeReviewer], &anhui_office, parties), vec![]);
        assert_eq!(workflow_roles(&[UserRole::SupplierAdmin], &henan_police, parties), vec![Role::Supplier]);
        assert_eq!(
            workflow_roles(&[UserRole::Operator, UserRole::PlatformAdmin], &henan_office, parties),
            vec![]
        );
        // At the demanding department's home gateway the home office reviews a demand on
        // another province's data; the supplier's office reviews it at its own gateway.
        let guangdong_office = department("00000005", "440000", &[DepartmentRole::DataOffice]);
        let at_home = DemandParties { office_province: "44", ..parties };
        assert_eq!(
            workflow_roles(&[UserRole::DataOfficeReviewer], &guangdong_office, at_home),
            vec![Role::DataOffice]
        );
        assert_eq!(workflow_roles(&[UserRole::DataOfficeReviewer], &henan_office, at_home), vec![]);
    }
}
