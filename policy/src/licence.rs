//! Electronic licences and certificates (电子证照, 电子证明): the licence types the platform
//! knows, the items on each one's face (照面) with their masks, how long each stays valid, and
//! the rules every check of one applies: its status on a day, and whether a document's face
//! is the one the register holds.
//!
//! A licence is a record the issuer keeps in its register (the issued-licence dataset) and, on
//! request, a sealed document: the face and metadata in one canonical JSON form
//! ([`LicenceDocument::canonical_bytes`]), signed with the issuing department's SM2 key. This
//! module decides what that form is and what a check concludes; signing and serving are the
//! gateway's.

use std::collections::BTreeMap;

use chrono::{Datelike, Months, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::catalog::MaskRule;
use crate::credit_code::CreditCode;
use crate::id_number::IdNumber;

/// Who a licence is issued to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum HolderKind {
    /// A person, named by the identity number.
    Person,
    /// An organisation, named by the unified social credit code.
    Organisation,
}

/// Whether a type is a licence (证照, issued once and held) or a certificate (证明, issued for
/// a purpose and valid for a short time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DocumentKind {
    Licence,
    Certificate,
}

/// How long a licence of a type stays valid from its issue date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case", tag = "kind", content = "months")]
pub enum Validity {
    /// 长期有效: valid until revoked.
    Permanent,
    /// Valid for this many months from the issue date.
    Months(u32),
}

impl Validity {
    /// The last day a licence issued on `issued_on` is valid, or `None` when it does not expire.
    pub fn valid_until(self, issued_on: NaiveDate) -> Option<NaiveDate> {
        match self {
            Validity::Permanent => None,
            Validity::Months(months) => {
                issued_on.checked_add_months(Months::new(months)).and_then(|d| d.pred_opt())
            }
        }
    }
}

/// One item on a licence's face (照面项).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SurfaceItem {
    /// The item's name as the register's column and the document's key spell it.
    pub name: &'static str,
    /// The item's label as the face prints it.
    pub label: &'static str,
    /// How the item is masked when a check returns it, unless a grant says otherwise.
    pub mask: MaskRule,
    /// Whether every licence of the type must carry the item.
    pub required: bool,
}

/// A licence type (证照类型).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LicenceType {
    /// The platform's stable code of the type; also the stem of its register's dataset name.
    pub code: &'static str,
    pub name: &'static str,
    /// One digit that licence numbers of the type carry after the issuing county's code, so a
    /// number names its type.
    pub number_digit: char,
    pub kind: DocumentKind,
    /// The kind of authority that issues it (发证机关类型).
    pub issuer_kind: &'static str,
    pub holder: HolderKind,
    pub validity: Validity,
    /// The face's items, in the order the face prints them.
    pub items: &'static [SurfaceItem],
}

impl LicenceType {
    /// The dataset holding the type's issued licences.
    pub fn dataset(&self) -> String {
        format!("licence_{}", self.code)
    }

    pub fn item(&self, name: &str) -> Option<&'static SurfaceItem> {
        self.items.iter().find(|item| item.name == name)
    }
}

const fn item(name: &'static str, label: &'static str, mask: MaskRule) -> SurfaceItem {
    SurfaceItem { name, label, mask, required: true }
}

const fn optional(name: &'static str, label: &'static str, mask: MaskRule) -> SurfaceItem {
    SurfaceItem { name, label, mask, required: false }
}

/// The licence types the platform knows: the high-frequency ones the cross-province service
/// items need first.
pub static LICENCE_TYPES: &[LicenceType] = &[
    LicenceType {
        code: "household_register",
        name: "居民户口簿",
        number_digit: '1',
        kind: DocumentKind::Licence,
        issuer_kind: "公安机关户籍管理部门",
        holder: HolderKind::Person,
        validity: Validity::Permanent,
        items: &[
            item("household_number", "户号", MaskRule::None),
            item("head_name", "户主姓名", MaskRule::Name),
            item("head_id_number", "户主公民身份号码", MaskRule::IdNumber),
            item("address", "住址", MaskRule::Address),
            item("members", "户内人数", MaskRule::None),
            item("registration_authority", "登记机关", MaskRule::None),
        ],
    },
    LicenceType {
        code: "marriage_certificate",
        name: "结婚证",
        number_digit: '2',
        kind: DocumentKind::Licence,
        issuer_kind: "民政部门婚姻登记机关",
        holder: HolderKind::Person,
        validity: Validity::Permanent,
        items: &[
            item("name", "持证人", MaskRule::Name),
            item("id_number", "持证人身份证件号", MaskRule::IdNumber),
            optional("spouse_name", "配偶姓名", MaskRule::Name),
            optional("spouse_id_number", "配偶身份证件号", MaskRule::IdNumber),
            item("registered_on", "登记日期", MaskRule::None),
            item("registration_authority", "登记机关", MaskRule::None),
        ],
    },
    LicenceType {
        code: "social_insurance_certificate",
        name: "社会保险参保缴费证明",
        number_digit: '3',
        kind: DocumentKind::Certificate,
        issuer_kind: "社会保险经办机构",
        holder: HolderKind::Person,
        validity: Validity::Months(3),
        items: &[
            item("name", "姓名", MaskRule::Name),
            item("id_number", "公民身份号码", MaskRule::IdNumber),
            item("insurance_type", "险种", MaskRule::None),
            item("insured_status", "参保状态", MaskRule::None),
            optional("first_insured_on", "首次参保日期", MaskRule::None),
            optional("paid_months", "累计缴费月数", MaskRule::None),
            optional("employer_name", "参保单位", MaskRule::None),
        ],
    },
    LicenceType {
        code: "housing_fund_certificate",
        name: "住房公积金缴存证明",
        number_digit: '4',
        kind: DocumentKind::Certificate,
        issuer_kind: "住房公积金管理中心",
        holder: HolderKind::Person,
        validity: Validity::Months(3),
        items: &[
            item("name", "姓名", MaskRule::Name),
            item("id_number", "证件号码", MaskRule::IdNumber),
            item("account_number", "个人账号", MaskRule::Redact),
            item("employer_name", "单位名称", MaskRule::None),
            optional("monthly_deposit", "月缴存额", MaskRule::None),
            optional("paid_through_month", "缴至年月", MaskRule::None),
            item("account_status", "账户状态", MaskRule::None),
        ],
    },
    LicenceType {
        code: "business_licence",
        name: "营业执照",
        number_digit: '5',
        kind: DocumentKind::Licence,
        issuer_kind: "市场监督管理部门",
        holder: HolderKind::Organisation,
        validity: Validity::Permanent,
        items: &[
            item("credit_code", "统一社会信用代码", MaskRule::None),
            item("name", "名称", MaskRule::None),
            item("entity_type", "类型", MaskRule::None),
            item("legal_representative", "法定代表人", MaskRule::Name),
            item("established_on", "成立日期", MaskRule::None),
            item("registration_authority", "登记机关", MaskRule::None),
        ],
    },
];

/// The columns every licence register has before its face's items: the licence's metadata,
/// with their labels. No face item shares a name with one of them.
pub const REGISTER_COLUMNS: &[(&str, &str)] = &[
    ("licence_number", "证照编号"),
    ("holder", "持证主体代码"),
    ("holder_name", "持证主体名称"),
    ("issuer_credit_code", "发证机关统一社会信用代码"),
    ("issuer_name", "发证机关"),
    ("issued_on", "发证日期"),
    ("valid_until", "有效期至"),
    ("status", "证照状态"),
    ("updated_on", "更新日期"),
];

/// The licence type with `code`.
pub fn licence_type(code: &str) -> Option<&'static LicenceType> {
    LICENCE_TYPES.iter().find(|t| t.code == code)
}

/// The licence type a licence number names: its seventh character.
pub fn type_of_number(number: &str) -> Option<&'static LicenceType> {
    let digit = number.chars().nth(6)?;
    LICENCE_TYPES.iter().find(|t| t.number_digit == digit)
}

/// Whether a licence stands as the register records it (有效) or was revoked (撤销, 注销).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RecordedStatus {
    Issued,
    Revoked,
}

impl RecordedStatus {
    /// The register's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordedStatus::Issued => "issued",
            RecordedStatus::Revoked => "revoked",
        }
    }

    pub fn parse(text: &str) -> Option<RecordedStatus> {
        match text {
            "issued" => Some(RecordedStatus::Issued),
            "revoked" => Some(RecordedStatus::Revoked),
            _ => None,
        }
    }
}

/// What a check says of a licence on a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum LicenceStatus {
    Valid,
    Revoked,
    Expired,
    /// Issued with a date after the day of the check: the register or the document is wrong.
    NotYetValid,
}

/// The status of a licence on `today`. A revocation wins over an expiry, since it is the
/// stronger statement and the one a relying department must see.
pub fn status(
    recorded: RecordedStatus,
    issued_on: NaiveDate,
    valid_until: Option<NaiveDate>,
    today: NaiveDate,
) -> LicenceStatus {
    if recorded == RecordedStatus::Revoked {
        LicenceStatus::Revoked
    } else if today < issued_on {
        LicenceStatus::NotYetValid
    } else if valid_until.is_some_and(|last| today > last) {
        LicenceStatus::Expired
    } else {
        LicenceStatus::Valid
    }
}

/// Why a document's content is not a well-formed licence of its type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    #[error("there is no licence type {0}")]
    UnknownType(String),
    #[error("the licence number {number} is not a {type_name} number")]
    NumberOfAnotherType { number: String, type_name: &'static str },
    #[error("the holder {0} is not a valid identity number")]
    HolderIdNumber(String),
    #[error("the holder {0} is not a valid unified social credit code")]
    HolderCreditCode(String),
    #[error("the issuer {0} is not a valid unified social credit code")]
    IssuerCreditCode(String),
    #[error("the face lacks the required item {0}")]
    MissingItem(&'static str),
    #[error("the face has an item {0} that a {1} does not carry")]
    UnknownItem(String, &'static str),
    #[error("the document is valid until {valid_until}, which a {type_name} issued on {issued_on} is not")]
    Validity { valid_until: String, issued_on: NaiveDate, type_name: &'static str },
}

/// A licence's content as a sealed document carries it: what the issuer signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LicenceDocument {
    /// The licence type's code.
    pub licence_type: String,
    /// 证照编号.
    pub number: String,
    /// The holder's identity number or credit code.
    pub holder: String,
    pub holder_name: String,
    /// The unified social credit code of the department whose seal is on the document.
    pub issuer: String,
    pub issuer_name: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Date))]
    pub issued_on: NaiveDate,
    /// The last valid day; absent for a licence valid until revoked.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = Date))]
    pub valid_until: Option<NaiveDate>,
    /// The face's items by name, as text.
    pub surface: BTreeMap<String, String>,
}

impl LicenceDocument {
    /// The bytes a seal signs: JSON with every object's keys in code-point order, no
    /// whitespace, dates as `YYYY-MM-DD`, an absent expiry as `null`. Every value is a string
    /// (or `null`), so the form is RFC 8785's canonical JSON for this shape, which any
    /// implementation can rebuild to check a seal.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        // The fields are written in code-point order by hand rather than through a derive, so
        // that reordering the struct can never change what was signed.
        let mut out = String::with_capacity(256);
        out.push('{');
        push_pair(&mut out, "holder", &self.holder);
        out.push(',');
        push_pair(&mut out, "holder_name", &self.holder_name);
        out.push(',');
        push_pair(&mut out, "issued_on", &self.issued_on.format("%Y-%m-%d").to_string());
        out.push(',');
        push_pair(&mut out, "issuer", &self.issuer);
        out.push(',');
        push_pair(&mut out, "issuer_name", &self.issuer_name);
        out.push(',');
        push_pair(&mut out, "licence_type", &self.licence_type);
        out.push(',');
        push_pair(&mut out, "number", &self.number);
        out.push(',');
        push_string(&mut out, "surface");
        out.push_str(":{");
        for (index, (name, value)) in self.surface.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            push_pair(&mut out, name, value);
        }
        out.push_str("},");
        push_string(&mut out, "valid_until");
        out.push(':');
        match self.valid_until {
            Some(day) => push_string(&mut out, &day.format("%Y-%m-%d").to_string()),
            None => out.push_str("null"),
        }
        out.push('}');
        out.into_bytes()
    }

    /// Checks that the content is a well-formed licence of its type: a number of the type, a
    /// valid holder and issuer, every required face item and no other, and an expiry the
    /// type's validity rule gives.
    pub fn check_form(&self) -> Result<&'static LicenceType, DocumentError> {
        let licence_type = licence_type(&self.licence_type)
            .ok_or_else(|| DocumentError::UnknownType(self.licence_type.clone()))?;
        if type_of_number(&self.number).map(|t| t.code) != Some(licence_type.code) {
            return Err(DocumentError::NumberOfAnotherType {
                number: self.number.clone(),
                type_name: licence_type.name,
            });
        }
        match licence_type.holder {
            HolderKind::Person => {
                IdNumber::parse(&self.holder)
                    .map_err(|_| DocumentError::HolderIdNumber(self.holder.clone()))?;
            }
            HolderKind::Organisation => {
                CreditCode::parse(&self.holder)
                    .map_err(|_| DocumentError::HolderCreditCode(self.holder.clone()))?;
            }
        }
        CreditCode::parse(&self.issuer).map_err(|_| DocumentError::IssuerCreditCode(self.issuer.clone()))?;
        if let Some(missing) =
            licence_type.items.iter().find(|i| i.required && !self.surface.contains_key(i.name))
        {
            return Err(DocumentError::MissingItem(missing.name));
        }
        if let Some(unknown) = self.surface.keys().find(|name| licence_type.item(name).is_none()) {
            return Err(DocumentError::UnknownItem(unknown.clone(), licence_type.name));
        }
        if licence_type.validity.valid_until(self.issued_on) != self.valid_until {
            return Err(DocumentError::Validity {
                valid_until: self.valid_until.map_or_else(|| "长期".to_owned(), |d| d.to_string()),
                issued_on: self.issued_on,
                type_name: licence_type.name,
            });
        }
        Ok(licence_type)
    }

    /// The names of what differs between this content and `registered`, the register's: the
    /// metadata fields by name, then the face items. Empty when they are the same licence.
    pub fn differences(&self, registered: &LicenceDocument) -> Vec<String> {
        let mut differing = Vec::new();
        let fields: [(&str, bool); 8] = [
            ("licence_type", self.licence_type != registered.licence_type),
            ("number", self.number != registered.number),
            ("holder", self.holder != registered.holder),
            ("holder_name", self.holder_name != registered.holder_name),
            ("issuer", self.issuer != registered.issuer),
            ("issuer_name", self.issuer_name != registered.issuer_name),
            ("issued_on", self.issued_on != registered.issued_on),
            ("valid_until", self.valid_until != registered.valid_until),
        ];
        differing.extend(fields.iter().filter(|(_, differs)| *differs).map(|(name, _)| (*name).to_owned()));
        let names: std::collections::BTreeSet<&String> =
            self.surface.keys().chain(registered.surface.keys()).collect();
        differing.extend(
            names
                .into_iter()
                .filter(|name| self.surface.get(*name) != registered.surface.get(*name))
                .map(|name| format!("surface.{name}")),
        );
        differing
    }

    /// The document's verification code (核验码): twelve characters a reader types to check a
    /// printed copy, derived from the licence number and issue date so that it needs no
    /// register of its own. It is a look-up aid, not a secret: the seal is what proves.
    pub fn verification_code(&self) -> String {
        let day = self.issued_on.num_days_from_ce() as u64;
        let mut state = 0xcbf2_9ce4_8422_2325u64 ^ day;
        for byte in self.number.bytes() {
            state ^= u64::from(byte);
            state = state.wrapping_mul(0x0100_0000_01b3);
        }
        const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
        (0..12)
            .map(|i| {
                let index = (state >> (i * 5)) as usize % ALPHABET.len();
                ALPHABET[index] as char
            })
            .collect()
    }
}

fn push_pair(out: &mut String, name: &str, value: &str) {
    push_string(out, name);
    out.push(':');
    push_string(out, value);
}

/// Writes `value` as a JSON string the way RFC 8785 does: `"` and `\` escaped, control
/// characters as `\b \t \n \f \r` or `\u00xx`, everything else as itself in UTF-8.
fn push_string(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}
