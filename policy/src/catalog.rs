//! The catalog of shared resources (政务信息资源目录): what each supplier shares, item by item.

use serde::{Deserialize, Serialize};

/// Share type (共享类型) of a resource or of one of its items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ShareType {
    /// 无条件共享: any government department may obtain it once its demand passes the data
    /// office's conformity check.
    Unconditional,
    /// 有条件共享: the supplier must agree, and may agree to part of it.
    Conditional,
    /// 不予共享: never granted through the catalog.
    NotShared,
}

/// Share method (共享方式).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ShareMethod {
    /// 接口: per-call API (verification, look-up, proxy).
    Interface,
    /// 库表: table access (SQL over per-grant views).
    Table,
    /// 文件: file delivery.
    File,
}

/// 资源格式: how the supplier holds the resource, as the national catalog rules classify it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ResourceFormat {
    /// 数据库
    #[default]
    Database,
    /// 电子表格
    Spreadsheet,
    /// 电子文件 (text, documents)
    ElectronicFile,
    /// 图形图像
    Image,
    /// 流媒体
    Streaming,
    /// 自描述格式 (XML, JSON)
    SelfDescribing,
    /// 其他
    Other,
}

/// 开放属性: whether the resource may be opened to the public, apart from sharing between
/// departments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OpenType {
    /// 无条件开放
    Unconditional,
    /// 有条件开放
    Conditional,
    /// 不予开放: the default, since shared personal data is never opened.
    #[default]
    NotOpen,
}

/// The catalog class of a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ResourceClass {
    /// 基础信息资源: 人口, 法人, 空间地理, 信用, 电子证照.
    Base,
    /// 主题信息资源: 社会保障, 健康, ….
    Theme,
    /// 部门信息资源: a department's own.
    #[default]
    Department,
}

/// Data grade under GB/T 43697.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Sensitivity {
    /// 一般
    General,
    /// 重要
    Important,
    /// 核心
    Core,
}

/// Update cycle (更新周期): how often the supplier refreshes the resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum UpdateCycle {
    RealTime,
    Daily,
    Weekly,
    Monthly,
    Quarterly,
    Yearly,
}

impl UpdateCycle {
    /// The longest a resource may go without an update and still be fresh, in days.
    pub fn max_age_days(self) -> u32 {
        match self {
            UpdateCycle::RealTime | UpdateCycle::Daily => 1,
            UpdateCycle::Weekly => 7,
            UpdateCycle::Monthly => 31,
            UpdateCycle::Quarterly => 92,
            UpdateCycle::Yearly => 366,
        }
    }
}

/// How an item is masked by default when a grant does not say otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum MaskRule {
    /// Shown as stored.
    None,
    /// Identity number: first 6 and last 4 characters kept.
    IdNumber,
    /// Phone number: first 3 and last 4 digits kept.
    Phone,
    /// Name: surname kept.
    Name,
    /// Address: cut after the county-level division.
    Address,
    /// Replaced entirely.
    Redact,
}

/// An information item (信息项) of a resource: one column of its dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InformationItem {
    /// The dataset column.
    pub name: String,
    /// The item's name in the catalog, such as 公民身份号码.
    pub label: String,
    pub data_type: String,
    pub sensitivity: Sensitivity,
    /// Personal information under PIPL.
    pub personal: bool,
    pub default_mask: MaskRule,
    /// An item can be shared more narrowly than its resource, never more widely.
    pub share_type: ShareType,
    /// Every record must have it: a record without it is a defect in the quality report.
    #[serde(default)]
    pub required: bool,
}

/// A catalog resource, at one version. Edits make a new version; grants name the version they
/// were approved on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Resource {
    /// Resource code: classification code and sequence code.
    pub code: String,
    pub version: u32,
    pub name: String,
    /// The supplying department's unified social credit code.
    pub supplier: String,
    pub summary: String,
    pub share_type: ShareType,
    /// The condition under which conditional data is shared, as the supplier states it.
    pub share_condition: Option<String>,
    pub share_methods: Vec<ShareMethod>,
    pub update_cycle: UpdateCycle,
    /// The dataset in the gateway's configuration that serves this resource.
    pub dataset: String,
    pub items: Vec<InformationItem>,
    /// Codes of the service items (事项) this resource serves.
    pub service_items: Vec<String>,
    /// The item holding each record's GB/T 2260 division code, which row scopes (a division
    /// prefix) apply to; a resource without one can only be granted whole.
    #[serde(default)]
    pub division_item: Option<String>,
    #[serde(default)]
    pub format: ResourceFormat,
    #[serde(default)]
    pub open_type: OpenType,
    #[serde(default)]
    pub class: ResourceClass,
    /// Codes of related catalog resources (关联资源).
    #[serde(default)]
    pub related_resources: Vec<String>,
    /// The laws and regulations the sharing rests on; a resource not shared must state why.
    #[serde(default)]
    pub legal_basis: String,
}

impl Resource {
    /// The effective share type of an item: the narrower of the item's and the resource's.
    pub fn item_share_type(&self, item: &str) -> Option<ShareType> {
        self.items.iter().find(|i| i.name == item).map(|i| i.share_type.max(self.share_type))
    }

    /// Whether a demand for `items` needs the supplier's review: any item conditional.
    pub fn needs_supplier_review<'a>(&self, items: impl IntoIterator<Item = &'a str>) -> bool {
        items.into_iter().any(|i| self.item_share_type(i) == Some(ShareType::Conditional))
    }

    /// Items in `items` that can never be granted: unknown, or not shared.
    pub fn ungrantable<'a>(&self, items: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
        items
            .into_iter()
            .filter(|i| {
                !matches!(self.item_share_type(i), Some(ShareType::Unconditional | ShareType::Conditional))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(name: &str, share_type: ShareType) -> InformationItem {
        InformationItem {
            name: name.into(),
            label: name.into(),
            data_type: "Utf8".into(),
            sensitivity: Sensitivity::General,
            personal: true,
            default_mask: MaskRule::None,
            share_type,
            required: false,
        }
    }

    fn resource(share_type: ShareType) -> Resource {
        Resource {
            code: "A01-0001".into(),
            version: 1,
            name: "户籍人口基本信息".into(),
            supplier: "11410000MB0000000X".into(),
            summary: String::new(),
            share_type,
            share_condition: None,
            share_methods: vec![ShareMethod::Interface],
            update_cycle: UpdateCycle::Daily,
            dataset: "household".into(),
            items: vec![
                item("id_number", ShareType::Unconditional),
                item("marital_status", ShareType::Conditional),
                item("religion", ShareType::NotShared),
            ],
            service_items: vec![],
            division_item: None,
            format: ResourceFormat::Database,
            open_type: OpenType::NotOpen,
            class: ResourceClass::Base,
            related_resources: vec![],
            legal_basis: String::new(),
        }
    }

    #[test]
    fn items_are_never_shared_more_widely_than_their_resource() {
        let open = resource(ShareType::Unconditional);
        assert_eq!(open.item_share_type("id_number"), Some(ShareType::Unconditional));
        assert_eq!(open.item_share_type("marital_status"), Some(ShareType::Conditional));
        assert_eq!(open.item_share_type("religion"), Some(ShareType::NotShared));
        assert_eq!(open.item_share_type("unknown"), None);
        let conditional = resource(ShareType::Conditional);
        assert_eq!(conditional.item_share_type("id_number"), Some(ShareType::Conditional));
        assert!(conditional.needs_supplier_review(["id_number"]));
        assert!(!open.needs_supplier_review(["id_number"]));
        assert!(open.needs_supplier_review(["id_number", "marital_status"]));
        assert_eq!(open.ungrantable(["id_number", "religion", "unknown"]), vec!["religion", "unknown"]);
        let closed = resource(ShareType::NotShared);
        assert_eq!(closed.ungrantable(["id_number"]), vec!["id_number"]);
    }
}
