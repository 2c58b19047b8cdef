//! The demo's seed: departments of three provinces, their people and systems, the national
//! 跨省通办 service items that need household, social insurance and housing fund data, a
//! catalog entry for each dataset, and demands standing in every workflow state, all made
//! through the same operations the API uses.

use std::path::Path;

use anyhow::Context;
use chrono::{Duration, NaiveDate};
use serde::{Deserialize, Serialize};
use tongban_policy::catalog::{
    InformationItem, MaskRule, OpenType, ResourceClass, ResourceFormat, Sensitivity, ShareMethod, ShareType,
    UpdateCycle,
};
use tongban_policy::credit_code::CreditCode;
use tongban_policy::org::{Department, DepartmentRole as D, UserRole as U};
use tongban_policy::workflow::{Action, Reasoned, Terms};

use tongban_platform::auth;
use tongban_platform::store::Acting;
use tongban_platform::users::{self, NewUser};
use tongban_platform::{Caller, DemandInput, Platform, ResourceInput};

/// Where the demo writes its generated sign-in details, readable by its owner only.
/// The actor the demo seed is recorded as in the administrative history.
const SEED_ACTOR: &str = "seed";

pub const CREDENTIALS_FILE: &str = "demo-credentials.json";

/// The demo's sign-in details.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemoCredentials {
    /// Every demo account has this password.
    pub password: String,
    pub users: Vec<DemoUser>,
    pub systems: Vec<DemoSystem>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemoUser {
    pub username: String,
    pub department: String,
    pub roles: Vec<U>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemoSystem {
    pub id: String,
    pub name: String,
    pub department: String,
    pub api_key: String,
}

/// Departments: (key, organisation code, name, region, roles).
const DEPARTMENTS: &[(&str, &str, &str, &str, &[D])] = &[
    ("henan-police", "00410001", "河南省公安厅", "410000", &[D::Supplier, D::Demander]),
    ("henan-hrss", "00410002", "河南省人力资源和社会保障厅", "410000", &[D::Demander]),
    ("henan-data", "00410003", "河南省数据局", "410000", &[D::DataOffice]),
    ("henan-civil", "00410004", "河南省民政厅", "410000", &[D::Supplier]),
    ("henan-market", "00410005", "河南省市场监督管理局", "410000", &[D::Supplier]),
    ("guangdong-hrss", "00440001", "广东省人力资源和社会保障厅", "440000", &[D::Supplier, D::Demander]),
    ("guangdong-police", "00440002", "广东省公安厅", "440000", &[D::Demander]),
    ("guangdong-data", "00440003", "广东省政务服务和数据管理局", "440000", &[D::DataOffice]),
    ("guangzhou-fund", "00440004", "广州住房公积金管理中心", "440100", &[D::Demander]),
    ("anhui-housing", "00340001", "安徽省住房和城乡建设厅", "340000", &[D::Supplier]),
    ("anhui-data", "00340002", "安徽省数据资源管理局", "340000", &[D::DataOffice]),
    ("hefei-fund", "00340003", "合肥住房公积金管理中心", "340100", &[D::Demander]),
];

/// People: (username, display name, department key, roles).
const USERS: &[(&str, &str, &str, &[U])] = &[
    ("admin", "平台管理员", "henan-data", &[U::PlatformAdmin]),
    ("operator", "运行监测值班员", "henan-data", &[U::Operator]),
    ("reviewer.henan", "河南省数据局审核员", "henan-data", &[U::DataOfficeReviewer]),
    ("reviewer.guangdong", "广东省政数局审核员", "guangdong-data", &[U::DataOfficeReviewer]),
    ("reviewer.anhui", "安徽省数据资源局审核员", "anhui-data", &[U::DataOfficeReviewer]),
    ("supplier.henan-police", "河南省公安厅数据管理员", "henan-police", &[U::SupplierAdmin]),
    ("supplier.guangdong-hrss", "广东省人社厅数据管理员", "guangdong-hrss", &[U::SupplierAdmin]),
    ("supplier.anhui-housing", "安徽省住建厅数据管理员", "anhui-housing", &[U::SupplierAdmin]),
    ("supplier.henan-civil", "河南省民政厅数据管理员", "henan-civil", &[U::SupplierAdmin]),
    ("supplier.henan-market", "河南省市场监管局数据管理员", "henan-market", &[U::SupplierAdmin]),
    ("demander.guangdong-police", "广东省公安厅户政业务员", "guangdong-police", &[U::Demander]),
    ("demander.henan-hrss", "河南省人社厅社保业务员", "henan-hrss", &[U::Demander]),
    ("demander.henan-police", "河南省公安厅户政业务员", "henan-police", &[U::Demander]),
    ("demander.guangzhou-fund", "广州公积金中心业务员", "guangzhou-fund", &[U::Demander]),
    ("demander.hefei-fund", "合肥公积金中心业务员", "hefei-fund", &[U::Demander]),
];

/// Calling systems: (department key, name).
const SYSTEMS: &[(&str, &str)] = &[
    ("guangdong-police", "广东省公安厅跨省户籍业务系统"),
    ("henan-hrss", "河南省社保经办系统"),
    ("guangzhou-fund", "广州公积金业务系统"),
    ("hefei-fund", "合肥公积金业务系统"),
    ("henan-police", "河南省公安厅人口管理系统"),
    ("anhui-housing", "安徽省住房公积金电子证照系统"),
];

/// The demo's service items, as a list in the import format: the demo registers them through
/// the same import an office uses for a national or provincial list. The codes are the
/// platform's own; the names and ministries are those of the national list.
const SERVICE_ITEM_LIST: &str = include_str!("service-items.csv");

/// The demo's datasets and the seeded department that supplies each.
const DATASET_SUPPLIERS: &[(&str, &str)] = &[
    ("household", "henan-police"),
    ("social_insurance", "guangdong-hrss"),
    ("housing_fund", "anhui-housing"),
    ("licence_household_register", "henan-police"),
    ("licence_marriage_certificate", "henan-civil"),
    ("licence_social_insurance_certificate", "guangdong-hrss"),
    ("licence_housing_fund_certificate", "anhui-housing"),
    ("licence_business_licence", "henan-market"),
];

/// The demo's licence registers: (licence type, supplying department, resource code, service
/// items relying on it).
const LICENCE_RESOURCES: &[(&str, &str, &str, &[&str])] = &[
    ("household_register", "henan-police", "E01-410000-0001", &["KSTB-GA-003", "KSTB-GA-004", "KSTB-JS-002"]),
    ("marriage_certificate", "henan-civil", "E02-410000-0001", &["KSTB-GA-003", "KSTB-JS-004"]),
    ("social_insurance_certificate", "guangdong-hrss", "E03-440000-0001", &["KSTB-RS-002", "KSTB-JS-003"]),
    ("housing_fund_certificate", "anhui-housing", "E04-340000-0001", &["KSTB-JS-002", "KSTB-JS-003"]),
    ("business_licence", "henan-market", "E05-410000-0001", &["KSTB-RS-002", "KSTB-JS-001"]),
];

/// The catalog entry of a licence type's register: the licence's metadata and its face, each
/// item masked as the licence type says, offered per call (the licence check).
fn licence_resource(
    licence_type: &'static tongban_policy::licence::LicenceType,
    code: &str,
    service_items: &[&str],
) -> ResourceInput {
    use MaskRule as M;
    use Sensitivity::{General as G, Important as I};
    use tongban_policy::licence::HolderKind;
    let person = licence_type.holder == HolderKind::Person;
    let share_type = if person { ShareType::Conditional } else { ShareType::Unconditional };
    let (holder_mask, holder_name_mask) = if person { (M::IdNumber, M::Name) } else { (M::None, M::None) };
    let item =
        |name: &str, label: &str, data_type: &str, sensitivity, personal, mask, required| InformationItem {
            name: name.into(),
            label: label.into(),
            data_type: data_type.into(),
            sensitivity,
            personal,
            default_mask: mask,
            share_type,
            required,
        };
    // The register's metadata, labelled as the register's schema labels it: the holder's two
    // items are the personal ones, and the dates are dates.
    let mut items: Vec<InformationItem> = tongban_policy::licence::REGISTER_COLUMNS
        .iter()
        .map(|(name, label)| {
            let required = !matches!(*name, "valid_until" | "updated_on");
            match *name {
                "holder" => item(name, label, "Utf8", I, person, holder_mask, required),
                "holder_name" => item(name, label, "Utf8", I, person, holder_name_mask, required),
                _ if name.ends_with("_on") || *name == "valid_until" => {
                    item(name, label, "Date32", G, false, M::None, required)
                }
                _ => item(name, label, "Utf8", G, false, M::None, required),
            }
        })
        .collect();
    // The face, as text, each item masked as the licence type says.
    items.extend(licence_type.items.iter().map(|face| {
        let masked = face.mask != M::None;
        item(
            face.name,
            face.label,
            "Utf8",
            if masked { I } else { G },
            person && masked,
            face.mask,
            face.required,
        )
    }));
    ResourceInput {
        code: code.into(),
        name: format!("{}电子证照", licence_type.name),
        summary: format!(
            "{}的签发记录与照面信息，按证照编号和持证主体核验状态（有效、撤销、过期）。",
            licence_type.name
        ),
        share_type,
        share_condition: person.then(|| "仅用于办理所列跨省通办事项时核验申请人提交的证照".into()),
        share_methods: vec![ShareMethod::Interface],
        update_cycle: UpdateCycle::Daily,
        dataset: licence_type.dataset(),
        items,
        service_items: service_items.iter().map(|s| (*s).to_owned()).collect(),
        division_item: None,
        format: ResourceFormat::Database,
        open_type: OpenType::NotOpen,
        class: ResourceClass::Base,
        related_resources: vec![],
        legal_basis: "《国务院关于在线政务服务的若干规定》（国务院令第716号）；《国务院办公厅关于加快推进政务服务“跨省通办”的指导意见》（国办发〔2020〕35号）".into(),
    }
}

/// The credit code of the seeded department that supplies the demo dataset `dataset`: the
/// owner the demo's configuration names for it.
pub fn dataset_supplier(dataset: &str) -> Option<String> {
    DATASET_SUPPLIERS.iter().find(|(name, _)| *name == dataset).map(|(_, key)| code_of(key))
}

fn code_of(key: &str) -> String {
    let (_, org, _, region, _) = DEPARTMENTS.iter().find(|d| d.0 == key).expect("a seeded department");
    // 机关 (registration authority 1, category 1).
    CreditCode::compose('1', '1', region, org)
}

/// An information item: (name, label, type, sensitivity, personal, mask, share type).
type ItemSpec = (&'static str, &'static str, &'static str, Sensitivity, bool, MaskRule, ShareType);

/// Items every record of the demo's resources must have: the key, the name, and the item
/// each resource is organised by. The quality report counts records lacking one.
const REQUIRED_ITEMS: &[&str] = &["id_number", "name", "division_code", "insurance_type", "account_status"];

fn items(specs: &[ItemSpec]) -> Vec<InformationItem> {
    specs
        .iter()
        .map(|(name, label, data_type, sensitivity, personal, mask, share_type)| InformationItem {
            name: (*name).into(),
            label: (*label).into(),
            data_type: (*data_type).into(),
            sensitivity: *sensitivity,
            personal: *personal,
            default_mask: *mask,
            share_type: *share_type,
            required: REQUIRED_ITEMS.contains(name),
        })
        .collect()
}

fn resources() -> Vec<(&'static str, ResourceInput)> {
    use MaskRule as M;
    use Sensitivity::{General as G, Important as I};
    use ShareType::{Conditional as C, NotShared as N, Unconditional as O};
    let mut resources = vec![
        (
            "henan-police",
            ResourceInput {
                code: "A01-410000-0001".into(),
                name: "河南省户籍人口基本信息".into(),
                summary: "常住户口登记的人口基本信息，按公民身份号码查询、核验。".into(),
                share_type: C,
                share_condition: Some(
                    "仅用于办理户籍迁移、户籍证明等跨省通办事项，限申请人本人或其授权范围".into(),
                ),
                share_methods: vec![ShareMethod::Interface, ShareMethod::Table],
                update_cycle: UpdateCycle::Daily,
                dataset: "household".into(),
                items: items(&[
                    ("id_number", "公民身份号码", "Utf8", I, true, M::IdNumber, C),
                    ("name", "姓名", "Utf8", I, true, M::Name, C),
                    ("gender", "性别", "Utf8", G, true, M::None, C),
                    ("ethnicity", "民族", "Utf8", I, true, M::Redact, C),
                    ("birth_date", "出生日期", "Date32", G, true, M::None, C),
                    ("household_number", "户号", "Utf8", G, true, M::None, C),
                    ("relation_to_head", "与户主关系", "Utf8", G, true, M::None, C),
                    ("division_code", "户籍地址区划代码", "Utf8", G, true, M::None, C),
                    ("address", "户籍详细地址", "Utf8", I, true, M::Address, C),
                    ("registration_authority", "登记机关", "Utf8", G, false, M::None, C),
                    ("marital_status", "婚姻状况", "Utf8", I, true, M::Redact, N),
                    ("status", "户口状态", "Utf8", G, true, M::None, C),
                    ("moved_in_date", "迁入日期", "Date32", G, true, M::None, C),
                    ("updated_on", "更新日期", "Date32", G, false, M::None, C),
                ]),
                service_items: [
                    "KSTB-GA-001",
                    "KSTB-GA-002",
                    "KSTB-GA-003",
                    "KSTB-GA-004",
                    "KSTB-GA-005",
                    "KSTB-RS-001",
                    "KSTB-RS-004",
                    "KSTB-YB-001",
                ]
                .map(String::from)
                .to_vec(),
                division_item: Some("division_code".into()),
                format: ResourceFormat::Database,
                open_type: OpenType::NotOpen,
                class: ResourceClass::Base,
                related_resources: vec![],
                legal_basis: "《中华人民共和国户口登记条例》；《国务院办公厅关于加快推进政务服务“跨省通办”的指导意见》（国办发〔2020〕35号）".into(),
            },
        ),
        (
            "guangdong-hrss",
            ResourceInput {
                code: "B02-440000-0001".into(),
                name: "广东省社会保险参保信息".into(),
                summary: "各险种参保登记与缴费信息，按公民身份号码查询。".into(),
                share_type: O,
                share_condition: None,
                share_methods: vec![ShareMethod::Interface, ShareMethod::Table],
                update_cycle: UpdateCycle::Daily,
                dataset: "social_insurance".into(),
                items: items(&[
                    ("id_number", "公民身份号码(AAC002)", "Utf8", I, true, M::IdNumber, O),
                    ("name", "姓名(AAC003)", "Utf8", I, true, M::Name, O),
                    ("personal_number", "个人编号(AAC001)", "Utf8", G, true, M::None, O),
                    ("insured_division_code", "参保地区划", "Utf8", G, false, M::None, O),
                    ("insurance_type", "险种类型(AAE140)", "Utf8", G, false, M::None, O),
                    ("status", "参保状态", "Utf8", G, true, M::None, O),
                    ("first_insured_on", "首次参保日期", "Date32", G, true, M::None, O),
                    ("contribution_base", "缴费基数", "Decimal128(14,2)", I, true, M::None, C),
                    ("employer_contribution", "单位缴费", "Decimal128(14,2)", I, true, M::None, C),
                    ("personal_contribution", "个人缴费", "Decimal128(14,2)", I, true, M::None, C),
                    ("last_paid_month", "最近缴费月份", "Utf8", G, true, M::None, O),
                    ("paid_months", "累计缴费月数", "Int32", G, true, M::None, O),
                    ("employer_credit_code", "单位统一社会信用代码", "Utf8", G, false, M::None, O),
                    ("employer_name", "单位名称", "Utf8", G, false, M::None, O),
                    ("updated_on", "更新日期", "Date32", G, false, M::None, O),
                ]),
                service_items: [
                    "KSTB-RS-001",
                    "KSTB-RS-002",
                    "KSTB-RS-003",
                    "KSTB-RS-004",
                    "KSTB-JS-004",
                    "KSTB-YB-001",
                ]
                .map(String::from)
                .to_vec(),
                division_item: Some("insured_division_code".into()),
                format: ResourceFormat::Database,
                open_type: OpenType::NotOpen,
                class: ResourceClass::Theme,
                related_resources: ["A01-410000-0001"].map(String::from).to_vec(),
                legal_basis: "《中华人民共和国社会保险法》；《国务院办公厅关于加快推进政务服务“跨省通办”的指导意见》（国办发〔2020〕35号）".into(),
            },
        ),
        (
            "anhui-housing",
            ResourceInput {
                code: "C03-340000-0001".into(),
                name: "安徽省住房公积金缴存信息".into(),
                summary: "住房公积金个人账户的缴存、余额与贷款信息。".into(),
                share_type: O,
                share_condition: None,
                share_methods: vec![ShareMethod::Interface],
                update_cycle: UpdateCycle::Monthly,
                dataset: "housing_fund".into(),
                items: items(&[
                    ("id_number", "证件号码", "Utf8", I, true, M::IdNumber, O),
                    ("name", "姓名", "Utf8", I, true, M::Name, O),
                    ("account_number", "个人账号", "Utf8", G, true, M::None, O),
                    ("employer_name", "单位名称", "Utf8", G, false, M::None, O),
                    ("employer_credit_code", "单位统一社会信用代码", "Utf8", G, false, M::None, O),
                    ("contribution_base", "缴存基数", "Decimal128(14,2)", I, true, M::None, C),
                    ("employer_rate_pct", "单位缴存比例(%)", "Decimal128(5,2)", G, false, M::None, O),
                    ("personal_rate_pct", "个人缴存比例(%)", "Decimal128(5,2)", G, true, M::None, O),
                    ("monthly_deposit", "月缴存额", "Decimal128(14,2)", I, true, M::None, C),
                    ("balance", "账户余额", "Decimal128(14,2)", I, true, M::None, C),
                    ("opened_on", "开户日期", "Date32", G, true, M::None, O),
                    ("paid_through_month", "缴至年月", "Utf8", G, true, M::None, O),
                    ("account_status", "账户状态", "Utf8", G, true, M::None, O),
                    ("consecutive_months", "连续缴存月数", "Int32", G, true, M::None, O),
                    ("loan_count", "贷款笔数", "Int32", I, true, M::None, C),
                    ("loan_status", "贷款状态", "Utf8", I, true, M::None, C),
                    ("updated_on", "更新日期", "Date32", G, false, M::None, O),
                ]),
                service_items: ["KSTB-JS-001", "KSTB-JS-002", "KSTB-JS-003", "KSTB-JS-004"]
                    .map(String::from)
                    .to_vec(),
                division_item: None,
                format: ResourceFormat::Database,
                open_type: OpenType::NotOpen,
                class: ResourceClass::Department,
                related_resources: ["A01-410000-0001", "B02-440000-0001"].map(String::from).to_vec(),
                legal_basis: "《住房公积金管理条例》；《国务院办公厅关于加快推进政务服务“跨省通办”的指导意见》（国办发〔2020〕35号）".into(),
            },
        ),
    ];
    for (type_code, department, code, service_items) in LICENCE_RESOURCES {
        let licence_type = tongban_policy::licence::licence_type(type_code).expect("a known licence type");
        resources.push((*department, licence_resource(licence_type, code, service_items)));
    }
    resources
}

/// Seeds an empty store and prints how to sign in. A store that already has departments is
/// left as it is; the sign-in details are read back from the data directory.
#[allow(clippy::print_stdout)]
pub async fn demo(platform: &Platform, data_dir: &Path) -> anyhow::Result<()> {
    let path = data_dir.join(CREDENTIALS_FILE);
    let credentials = if platform.store.departments().await?.is_empty() {
        let credentials = seed(platform).await.context("seeding the demo")?;
        write_private(&path, &serde_json::to_vec_pretty(&credentials)?)?;
        credentials
    } else {
        serde_json::from_slice(&std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?)?
    };
    println!(
        "sign in with POST /api/v1/sessions {{\"username\": …, \"password\": …}}; every demo account has the password {}",
        credentials.password
    );
    for user in &credentials.users {
        println!("  {:<28} {:?} at {}", user.username, user.roles, user.department);
    }
    println!("system API keys (Authorization: Bearer …) are in {}", path.display());
    Ok(())
}

/// Makes the demo's development certificates (once) and registers a client certificate for
/// every demo system, so systems can authenticate by mutual TLS as well as by API key.
pub async fn demo_certificates(platform: &Platform, data_dir: &Path) -> anyhow::Result<()> {
    let dir = data_dir.join(super::CERTS_DIR);
    if dir.join(crate::certs::CA_FILE).is_file() {
        return Ok(());
    }
    let credentials: DemoCredentials =
        serde_json::from_slice(&std::fs::read(data_dir.join(CREDENTIALS_FILE))?)?;
    let names: Vec<String> = credentials.systems.iter().map(|s| s.name.clone()).collect();
    let hosts = ["localhost".to_owned(), "127.0.0.1".to_owned()];
    let issued = crate::certs::generate(&dir, &hosts, &names, None)?;
    for (system, files) in credentials.systems.iter().zip(&issued) {
        let seed = Acting { by: SEED_ACTOR, at: platform.now() };
        platform.store.set_system_certificate(&system.id, &files.sha256, seed).await?;
    }
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)?;
    Ok(())
}

pub(crate) async fn caller(platform: &Platform, username: &str) -> anyhow::Result<Caller> {
    let (user, _) = platform.store.user_with_password(username).await?.context("seeded user")?;
    let department = platform.store.department(&user.department_code).await?;
    Ok(Caller::User { user, department })
}

/// Seeds everything and returns the sign-in details.
pub async fn seed(platform: &Platform) -> anyhow::Result<DemoCredentials> {
    let now = platform.now();
    for (_, org, name, region, roles) in DEPARTMENTS {
        let department = Department {
            code: CreditCode::compose('1', '1', region, org),
            name: (*name).into(),
            region: (*region).into(),
            roles: roles.to_vec(),
        };
        department.validate()?;
        platform.store.create_department(&department, Acting { by: SEED_ACTOR, at: now }).await?;
    }
    let password = auth::new_password();
    let mut users = Vec::new();
    for (username, display, department, roles) in USERS {
        let user = NewUser {
            username: (*username).to_owned(),
            display_name: (*display).to_owned(),
            department_code: code_of(department),
            roles: roles.to_vec(),
            password: password.clone(),
        };
        users::create_user(platform, user, SEED_ACTOR).await?;
        users.push(DemoUser {
            username: (*username).into(),
            department: code_of(department),
            roles: roles.to_vec(),
        });
    }
    let mut systems = Vec::new();
    for (department, name) in SYSTEMS {
        let issued = auth::issue_api_key();
        let system = platform
            .store
            .create_system(
                &code_of(department),
                name,
                &issued.digest,
                &issued.prefix,
                Acting { by: SEED_ACTOR, at: now },
            )
            .await?;
        systems.push(DemoSystem {
            id: system.id,
            name: (*name).into(),
            department: code_of(department),
            api_key: issued.key,
        });
    }
    let admin = caller(platform, "admin").await?;
    platform.import_service_items(&admin, SERVICE_ITEM_LIST).await?;
    for (supplier, resource) in resources() {
        // A configuration of its own (a test's, an operator's trying the seed) may serve the
        // people's datasets without the licence registers; their resources are left out.
        if resource.code.starts_with('E') && !platform.datasets.contains_key(&resource.dataset) {
            continue;
        }
        let username = USERS
            .iter()
            .find(|u| u.0.starts_with("supplier.") && u.2 == supplier)
            .map(|u| u.0)
            .with_context(|| format!("a supplier administrator for {supplier}"))?;
        platform.create_resource(&caller(platform, username).await?, resource).await?;
    }
    seed_demands(platform, &systems).await?;
    Ok(DemoCredentials { password, users, systems })
}

fn terms(items: &[&str], prefix: &str, rate: u32, quota: u32, valid_until: NaiveDate) -> Terms {
    Terms {
        items: items.iter().map(|i| (*i).to_owned()).collect(),
        division_prefix: prefix.into(),
        rate_per_second: rate,
        daily_quota: quota,
        valid_until,
    }
}

fn refusal(reason: &str, basis: &str) -> Reasoned {
    Reasoned { reason: reason.into(), basis: basis.into() }
}

/// A scripted demand: applicant, system name, resource, service item, purpose, requested
/// terms, and the steps taken on it in order.
type Script<'a> = (&'a str, &'a str, &'a str, &'a str, &'a str, Terms, Vec<(&'a str, Action)>);

/// Files one scripted demand and takes its steps, all at `at`.
async fn run_script(
    platform: &Platform,
    systems: &[DemoSystem],
    basis: &str,
    (applicant, system_name, resource, service_item, purpose, requested, steps): Script<'_>,
    at: chrono::NaiveDateTime,
) -> anyhow::Result<()> {
    let applicant = caller(platform, applicant).await?;
    let system_id = systems.iter().find(|s| s.name == system_name).map(|s| s.id.clone());
    let mut record = platform
        .file_demand_at(
            &applicant,
            DemandInput {
                resource_code: resource.into(),
                system_id,
                service_item: service_item.into(),
                purpose: purpose.into(),
                legal_basis: basis.into(),
                terms: requested,
            },
            at,
        )
        .await?;
    for (actor, action) in steps {
        let actor = caller(platform, actor).await?;
        record = platform.act_on_demand_at(&actor, &record.id, record.version, action, at).await?;
    }
    Ok(())
}

/// Demands standing in every state, each made by its scripted steps.
async fn seed_demands(platform: &Platform, systems: &[DemoSystem]) -> anyhow::Result<()> {
    let until = platform.now().date() + Duration::days(365);
    let household = terms(
        &["id_number", "name", "gender", "division_code", "address", "status"],
        "41",
        20,
        20_000,
        until,
    );
    let household_narrow =
        terms(&["id_number", "name", "division_code", "status"], "4115", 10, 10_000, until);
    let insurance =
        terms(&["id_number", "name", "insurance_type", "status", "paid_months"], "44", 30, 50_000, until);
    let fund =
        terms(&["id_number", "name", "account_status", "balance", "loan_status"], "", 10, 5_000, until);
    let fund_narrow = terms(&["id_number", "name", "account_status", "balance"], "", 5, 2_000, until);
    let correction = |who: &str| Action::RequestCorrection {
        reason: format!("{who}：请补充法律依据原文和办件量测算（一次性告知）"),
    };
    let basis = "《国务院办公厅关于加快推进政务服务“跨省通办”的指导意见》（国办发〔2020〕35号）";

    use Action as A;
    let office_household = "reviewer.henan";
    let office_fund = "reviewer.anhui";
    let supplier_household = "supplier.henan-police";
    let supplier_fund = "supplier.anhui-housing";
    let scripts: Vec<Script<'_>> = vec![
        (
            "demander.guangdong-police",
            "广东省公安厅跨省户籍业务系统",
            "A01-410000-0001",
            "KSTB-GA-001",
            "核验迁出地户籍信息（草稿）",
            household.clone(),
            vec![],
        ),
        (
            "demander.guangdong-police",
            "广东省公安厅跨省户籍业务系统",
            "A01-410000-0001",
            "KSTB-GA-003",
            "夫妻投靠落户时核验迁出地户籍",
            household.clone(),
            vec![("demander.guangdong-police", A::Submit)],
        ),
        (
            "demander.guangdong-police",
            "广东省公安厅跨省户籍业务系统",
            "A01-410000-0001",
            "KSTB-GA-004",
            "父母投靠子女落户核验",
            household.clone(),
            vec![("demander.guangdong-police", A::Submit), (office_household, correction("河南省数据局"))],
        ),
        (
            "demander.guangdong-police",
            "广东省公安厅跨省户籍业务系统",
            "A01-410000-0001",
            "KSTB-GA-002",
            "大中专学生落户核验",
            household.clone(),
            vec![
                ("demander.guangdong-police", A::Submit),
                (office_household, A::PassConformity { terms: household.clone() }),
            ],
        ),
        (
            "demander.guangdong-police",
            "广东省公安厅跨省户籍业务系统",
            "A01-410000-0001",
            "KSTB-GA-005",
            "开具户籍证明时核验",
            household.clone(),
            vec![
                ("demander.guangdong-police", A::Submit),
                (office_household, A::PassConformity { terms: household.clone() }),
                (supplier_household, correction("河南省公安厅")),
            ],
        ),
        (
            "demander.guangdong-police",
            "广东省公安厅跨省户籍业务系统",
            "A01-410000-0001",
            "KSTB-GA-001",
            "工作调动迁入时核验迁出地户籍",
            household.clone(),
            vec![
                ("demander.guangdong-police", A::Submit),
                (office_household, A::PassConformity { terms: household.clone() }),
                (supplier_household, A::SupplierApprove { terms: household_narrow.clone() }),
            ],
        ),
        (
            "demander.henan-hrss",
            "河南省社保经办系统",
            "B02-440000-0001",
            "KSTB-RS-002",
            "养老保险关系转入时核验转出地参保信息",
            insurance.clone(),
            vec![
                ("demander.henan-hrss", A::Submit),
                ("reviewer.guangdong", A::PassConformity { terms: insurance.clone() }),
            ],
        ),
        (
            "demander.henan-hrss",
            "河南省社保经办系统",
            "B02-440000-0001",
            "KSTB-RS-003",
            "城乡居民养老保险转移（用途与事项不符）",
            insurance.clone(),
            vec![
                ("demander.henan-hrss", A::Submit),
                (
                    "reviewer.guangdong",
                    A::RefuseConformity {
                        refusal: refusal("申请用途与所列事项和信息项不对应", basis)
                    },
                ),
            ],
        ),
        (
            "demander.guangzhou-fund",
            "广州公积金业务系统",
            "C03-340000-0001",
            "KSTB-JS-002",
            "公积金转移接续时核验转出地账户",
            fund.clone(),
            vec![
                ("demander.guangzhou-fund", A::Submit),
                (office_fund, A::PassConformity { terms: fund.clone() }),
                (
                    supplier_fund,
                    A::SupplierRefuse {
                        refusal: refusal(
                            "贷款状态不属于转移接续所需信息项",
                            "《住房公积金管理条例》第十三条",
                        ),
                    },
                ),
            ],
        ),
        (
            "demander.guangzhou-fund",
            "广州公积金业务系统",
            "C03-340000-0001",
            "KSTB-JS-003",
            "出具异地贷款缴存使用证明",
            fund.clone(),
            vec![
                ("demander.guangzhou-fund", A::Submit),
                (office_fund, A::PassConformity { terms: fund.clone() }),
                (
                    supplier_fund,
                    A::SupplierRefuse {
                        refusal: refusal("余额信息需逐笔授权", "《住房公积金管理条例》")
                    },
                ),
                (
                    "demander.guangzhou-fund",
                    A::Dispute {
                        reason: "异地贷款审批须核验账户余额，依据国办发〔2020〕35号".into()
                    },
                ),
            ],
        ),
        (
            "demander.hefei-fund",
            "合肥公积金业务系统",
            "C03-340000-0001",
            "KSTB-JS-001",
            "缴存信息变更（争议后驳回）",
            fund.clone(),
            vec![
                ("demander.hefei-fund", A::Submit),
                (office_fund, A::PassConformity { terms: fund.clone() }),
                (
                    supplier_fund,
                    A::SupplierRefuse {
                        refusal: refusal("同省业务应走省内共享通道", "安徽省政务数据共享管理办法"),
                    },
                ),
                ("demander.hefei-fund", A::Dispute { reason: "本中心业务需实时核验".into() }),
                (
                    office_fund,
                    A::DecideRefuse {
                        refusal: refusal("省内数据应通过省级共享平台获取", "安徽省政务数据共享管理办法"),
                    },
                ),
            ],
        ),
        (
            "demander.guangzhou-fund",
            "广州公积金业务系统",
            "C03-340000-0001",
            "KSTB-JS-004",
            "退休提取时核验缴存信息（争议后批准）",
            fund.clone(),
            vec![
                ("demander.guangzhou-fund", A::Submit),
                (office_fund, A::PassConformity { terms: fund.clone() }),
                (
                    supplier_fund,
                    A::SupplierRefuse {
                        refusal: refusal("贷款信息不予提供", "《住房公积金管理条例》")
                    },
                ),
                ("demander.guangzhou-fund", A::Dispute { reason: "退休提取须确认无在贷".into() }),
                (office_fund, A::DecideApprove { terms: fund_narrow.clone() }),
            ],
        ),
        (
            "demander.henan-police",
            "河南省公安厅人口管理系统",
            "B02-440000-0001",
            "KSTB-RS-001",
            "社保卡申领协查（已撤回）",
            insurance.clone(),
            vec![
                ("demander.henan-police", A::Submit),
                ("demander.henan-police", A::Withdraw { reason: "改由人社部门申请".into() }),
            ],
        ),
    ];
    let now = platform.now();
    for script in scripts {
        run_script(platform, systems, basis, script, now).await?;
    }
    // One demand was submitted three weeks ago and still waits for its conformity check, so
    // the review queue and the dashboard have overdue work to show.
    let overdue: Script<'_> = (
        "demander.guangdong-police",
        "广东省公安厅跨省户籍业务系统",
        "A01-410000-0001",
        "KSTB-GA-001",
        "户口迁移核验（逾期未审）",
        household_narrow.clone(),
        vec![("demander.guangdong-police", A::Submit)],
    );
    run_script(platform, systems, basis, overdue, now - Duration::days(21)).await?;
    Ok(())
}
