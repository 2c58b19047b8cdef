//! Licence types, statuses and the sealed document's canonical form.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use proptest::prelude::*;
use tongban_policy::IdNumber;
use tongban_policy::credit_code::CreditCode;
use tongban_policy::licence::{
    DocumentError, LICENCE_TYPES, LicenceDocument, LicenceStatus, REGISTER_COLUMNS, RecordedStatus, Validity,
    licence_type, status, type_of_number,
};

fn day(text: &str) -> NaiveDate {
    text.parse().expect("a date")
}

fn fund_certificate() -> LicenceDocument {
    let holder = IdNumber::compose("410105", day("1988-03-14"), 123);
    let surface = [
        ("name", "张三"),
        ("id_number", holder.as_str()),
        ("account_number", "4101050012345678"),
        ("employer_name", "郑州示例科技有限公司"),
        ("account_status", "正常"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    LicenceDocument {
        licence_type: "housing_fund_certificate".into(),
        number: "410105400000042".into(),
        holder,
        holder_name: "张三".into(),
        issuer: CreditCode::compose('1', '1', "410100", "00410100"),
        issuer_name: "郑州住房公积金管理中心".into(),
        issued_on: day("2026-11-02"),
        valid_until: Some(day("2027-02-01")),
        surface,
    }
}

#[test]
fn every_type_has_a_distinct_code_digit_and_dataset_and_masks_its_identifiers() {
    let mut digits: Vec<char> = LICENCE_TYPES.iter().map(|t| t.number_digit).collect();
    digits.sort_unstable();
    digits.dedup();
    assert_eq!(digits.len(), LICENCE_TYPES.len());
    for t in LICENCE_TYPES {
        assert_eq!(licence_type(t.code), Some(t));
        assert!(t.dataset().starts_with("licence_"));
        assert!(t.items.iter().any(|i| i.required), "{} has no required item", t.code);
        // An identity number on a face is never returned whole by default.
        for item in t.items.iter().filter(|i| i.name.ends_with("id_number")) {
            assert_eq!(item.mask, tongban_policy::catalog::MaskRule::IdNumber, "{}.{}", t.code, item.name);
        }
    }
    for t in LICENCE_TYPES {
        let mut names: Vec<&str> = REGISTER_COLUMNS.iter().map(|(name, _)| *name).collect();
        names.extend(t.items.iter().map(|i| i.name));
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "{}: a face item shares a name with another column", t.code);
    }
    assert_eq!(type_of_number("410105400000042").map(|t| t.code), Some("housing_fund_certificate"));
    assert_eq!(type_of_number("41010"), None);
}

#[test]
fn validity_rules_give_the_last_valid_day() {
    assert_eq!(Validity::Permanent.valid_until(day("2026-01-31")), None);
    assert_eq!(Validity::Months(3).valid_until(day("2026-11-02")), Some(day("2027-02-01")));
    // A month end clamps, as a calendar month does.
    assert_eq!(Validity::Months(1).valid_until(day("2026-01-31")), Some(day("2026-02-27")));
}

#[test]
fn status_puts_revocation_before_expiry() {
    let issued = day("2026-01-01");
    let until = Some(day("2026-03-31"));
    assert_eq!(status(RecordedStatus::Issued, issued, until, day("2026-03-31")), LicenceStatus::Valid);
    assert_eq!(status(RecordedStatus::Issued, issued, until, day("2026-04-01")), LicenceStatus::Expired);
    assert_eq!(status(RecordedStatus::Revoked, issued, until, day("2026-04-01")), LicenceStatus::Revoked);
    assert_eq!(status(RecordedStatus::Issued, issued, None, day("2025-12-31")), LicenceStatus::NotYetValid);
    assert_eq!(status(RecordedStatus::Issued, issued, None, day("2099-01-01")), LicenceStatus::Valid);
    assert_eq!(RecordedStatus::parse(RecordedStatus::Revoked.as_str()), Some(RecordedStatus::Revoked));
    assert_eq!(RecordedStatus::parse("Revoked"), None);
}

#[test]
fn a_well_formed_document_passes_and_each_fault_is_named() {
    let good = fund_certificate();
    assert_eq!(good.check_form().map(|t| t.code), Ok("housing_fund_certificate"));

    let mut wrong_number = good.clone();
    wrong_number.number = "410105100000042".into();
    assert!(matches!(wrong_number.check_form(), Err(DocumentError::NumberOfAnotherType { .. })));

    let mut bad_holder = good.clone();
    bad_holder.holder = "410105198803141230".into();
    assert!(matches!(bad_holder.check_form(), Err(DocumentError::HolderIdNumber(_))));

    let mut missing = good.clone();
    missing.surface.remove("account_status");
    assert_eq!(missing.check_form(), Err(DocumentError::MissingItem("account_status")));

    let mut extra = good.clone();
    extra.surface.insert("balance".into(), "100000.00".into());
    assert!(matches!(extra.check_form(), Err(DocumentError::UnknownItem(name, _)) if name == "balance"));

    let mut stretched = good.clone();
    stretched.valid_until = Some(day("2030-01-01"));
    assert!(matches!(stretched.check_form(), Err(DocumentError::Validity { .. })));

    let mut unknown = good;
    unknown.licence_type = "passport".into();
    assert!(matches!(unknown.check_form(), Err(DocumentError::UnknownType(_))));
}

#[test]
fn differences_name_the_altered_fields_and_items() {
    let registered = fund_certificate();
    assert!(registered.differences(&registered).is_empty());
    let mut altered = registered.clone();
    altered.surface.insert("account_status".into(), "封存".into());
    altered.valid_until = None;
    altered.surface.insert("monthly_deposit".into(), "9999.00".into());
    assert_eq!(
        altered.differences(&registered),
        vec!["valid_until", "surface.account_status", "surface.monthly_deposit"]
    );
}

#[test]
fn the_verification_code_is_stable_and_depends_on_number_and_day() {
    let document = fund_certificate();
    let code = document.verification_code();
    assert_eq!(code.len(), 12);
    assert_eq!(code, fund_certificate().verification_code());
    let mut other = fund_certificate();
    other.issued_on = day("2026-11-03");
    assert_ne!(other.verification_code(), code);
}

proptest! {
    /// The canonical form is what a generic JSON library writes for the same content with
    /// sorted keys and no whitespace (RFC 8785 for an all-string document), whatever the
    /// text holds: quotes, backslashes, control characters, any script.
    #[test]
    fn canonical_bytes_are_sorted_compact_json(
        number in "\\PC{0,20}",
        holder_name in "[\\u{0}-\\u{7f}\\u{4e00}-\\u{4e20}\"\\\\]{0,12}",
        surface in proptest::collection::btree_map("[a-z_]{1,12}", "\\PC{0,16}|[\\u{0}-\\u{1f}\"\\\\]{0,4}", 0..8),
        expires in proptest::bool::ANY,
    ) {
        let mut document = fund_certificate();
        document.number = number;
        document.holder_name = holder_name;
        document.surface = surface;
        document.valid_until = expires.then(|| day("2027-02-01"));
        let generic: serde_json::Value = serde_json::to_value(&document).expect("value");
        let expected = serde_json::to_vec(&generic).expect("json");
        prop_assert_eq!(String::from_utf8(document.canonical_bytes()).expect("utf-8"), String::from_utf8(expected).expect("utf-8"));
        // And it reads back as the same document.
        let read: LicenceDocument = serde_json::from_slice(&document.canonical_bytes()).expect("reads back");
        prop_assert_eq!(read, document);
    }
}

#[test]
fn a_canonical_document_in_full() {
    let mut document = fund_certificate();
    document.surface = BTreeMap::from([("name".to_owned(), "张\"三\n".to_owned())]);
    assert_eq!(
        String::from_utf8(document.canonical_bytes()).expect("utf-8"),
        format!(
            "{{\"holder\":\"{}\",\"holder_name\":\"张三\",\"issued_on\":\"2026-11-02\",\"issuer\":\"{}\",\
             \"issuer_name\":\"郑州住房公积金管理中心\",\"licence_type\":\"housing_fund_certificate\",\
             \"number\":\"410105400000042\",\"surface\":{{\"name\":\"张\\\"三\\n\"}},\"valid_until\":\"2027-02-01\"}}",
            document.holder, document.issuer
        )
    );
}
