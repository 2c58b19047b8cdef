//! The licence registers: every licence names a holder the other datasets know, reads back as
//! a well-formed sealed document's content, and is numbered, dated and marked as its type says.

mod common;

use std::collections::{BTreeMap, HashSet};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Date32Type;
use tongban_policy::licence::{LICENCE_TYPES, LicenceDocument, RecordedStatus, type_of_number};
use tongban_synth::{HOUSEHOLD_FILE, HOUSING_FUND_FILE, SOCIAL_INSURANCE_FILE, licence_file};

use common::{keys, read, strings};

/// The content of the register's row `row` as a sealed document would carry it.
fn document(batch: &RecordBatch, licence_type: &str, row: usize) -> LicenceDocument {
    let text = |name: &str| {
        let column = batch.column_by_name(name).expect(name).as_string::<i32>();
        column.is_valid(row).then(|| column.value(row).to_owned())
    };
    let day = |name: &str| {
        let column = batch.column_by_name(name).expect(name).as_primitive::<Date32Type>();
        column.is_valid(row).then(|| column.value_as_date(row).expect("a date"))
    };
    let t = tongban_policy::licence::licence_type(licence_type).expect("a type");
    LicenceDocument {
        licence_type: licence_type.to_owned(),
        number: text("licence_number").expect("number"),
        holder: text("holder").expect("holder"),
        holder_name: text("holder_name").expect("holder name"),
        issuer: text("issuer_credit_code").expect("issuer"),
        issuer_name: text("issuer_name").expect("issuer name"),
        issued_on: day("issued_on").expect("issue date"),
        valid_until: day("valid_until"),
        surface: t.items.iter().filter_map(|i| text(i.name).map(|v| (i.name.to_owned(), v))).collect(),
    }
}

#[test]
fn every_licence_is_a_well_formed_document_of_a_known_holder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let report = common::generate(dir.path(), 20_000, 7, 0.01);
    let as_of = common::as_of();
    let household = read(&dir.path().join(HOUSEHOLD_FILE));
    let people: HashSet<String> = keys(&household, "id_number").into_iter().collect();
    let insured: HashSet<String> =
        keys(&read(&dir.path().join(SOCIAL_INSURANCE_FILE)), "id_number").into_iter().collect();
    let fund = read(&dir.path().join(HOUSING_FUND_FILE));
    let accounts: HashSet<String> = keys(&fund, "id_number").into_iter().collect();
    let heads: HashSet<String> = keys(&household, "id_number")
        .into_iter()
        .zip(strings(&household, "relation_to_head"))
        .filter(|(_, relation)| relation.as_deref() == Some("02"))
        .map(|(id, _)| id)
        .collect();
    let employers: HashSet<String> = strings(&fund, "employer_credit_code").into_iter().flatten().collect();

    let mut revoked = 0;
    let mut expired = 0;
    for licence_type in LICENCE_TYPES {
        let batch = read(&dir.path().join(licence_file(licence_type)));
        assert_eq!(
            report.licence_rows.get(licence_type.code).copied(),
            Some(batch.num_rows() as u64),
            "{}",
            licence_type.code
        );
        assert!(batch.num_rows() > 0, "{} has licences", licence_type.code);
        let numbers = keys(&batch, "licence_number");
        assert!(
            numbers.windows(2).all(|w| w[0] < w[1]),
            "{} is sorted by a unique number",
            licence_type.code
        );
        let statuses = strings(&batch, "status");
        for (row, status) in statuses.iter().enumerate() {
            let document = document(&batch, licence_type.code, row);
            assert_eq!(document.check_form().map(|t| t.code), Ok(licence_type.code), "{document:?}");
            assert_eq!(type_of_number(&document.number).map(|t| t.code), Some(licence_type.code));
            assert!(document.issued_on <= as_of, "{document:?}");
            match RecordedStatus::parse(status.as_deref().expect("a status")).expect("a known status") {
                RecordedStatus::Revoked => revoked += 1,
                RecordedStatus::Issued => {}
            }
            if document.valid_until.is_some_and(|last| last < as_of) {
                expired += 1;
            }
            let known = match licence_type.code {
                "household_register" => heads.contains(&document.holder),
                "marriage_certificate" => people.contains(&document.holder),
                "social_insurance_certificate" => insured.contains(&document.holder),
                "housing_fund_certificate" => accounts.contains(&document.holder),
                "business_licence" => true,
                other => panic!("a type the test does not know: {other}"),
            };
            assert!(known, "{} of {} names an unknown holder", document.number, licence_type.code);
        }
        if licence_type.code == "business_licence" {
            // Every employer the fund register names where it has people holds a licence,
            // and every licence holder is such an employer or one of the county's others.
            let holders: HashSet<String> = keys(&batch, "holder").into_iter().collect();
            let covered = employers.iter().filter(|e| holders.contains(*e)).count();
            assert!(
                covered * 10 >= employers.len() * 9,
                "{covered} of {} employers licensed",
                employers.len()
            );
        }
    }
    assert!(revoked > 0, "some licences are revoked");
    assert!(expired > 0, "some certificates have expired");

    // Spouses' marriage certificates name each other.
    let marriages = read(&dir.path().join(licence_file(&LICENCE_TYPES[1])));
    let by_holder: BTreeMap<String, Option<String>> =
        keys(&marriages, "holder").into_iter().zip(strings(&marriages, "spouse_id_number")).collect();
    let paired = by_holder
        .iter()
        .filter_map(|(holder, spouse)| spouse.as_ref().map(|s| (holder, s)))
        .inspect(|(holder, spouse)| {
            assert_eq!(
                by_holder.get(*spouse).and_then(Option::as_ref),
                Some(*holder),
                "{holder} and {spouse}"
            );
        })
        .count();
    assert!(paired > 0, "some couples hold certificates naming each other");
}
