//! The synthetic datasets: deterministic for a seed, and realistic where it matters to the
//! gateway (valid identity numbers and credit codes, linked people, recorded defects).

mod common;

use std::collections::{HashMap, HashSet};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Date32Type, Decimal128Type, Int32Type};
use chrono::NaiveDate;
use tongban_policy::{CreditCode, IdNumber, IdNumberError, division};
use tongban_synth::{self as synth, HOUSEHOLD_FILE, HOUSING_FUND_FILE, SOCIAL_INSURANCE_FILE};

use common::{count_by, defects, keys, read, strings};

fn date(days: i32) -> NaiveDate {
    NaiveDate::from_num_days_from_ce_opt(719_163 + days).expect("date")
}

#[test]
fn generation_is_deterministic_for_a_seed() {
    let a = tempfile::tempdir().expect("tempdir");
    let b = tempfile::tempdir().expect("tempdir");
    let c = tempfile::tempdir().expect("tempdir");
    common::generate(a.path(), 20_000, 7, 0.01);
    common::generate(b.path(), 20_000, 7, 0.01);
    common::generate(c.path(), 20_000, 8, 0.01);
    for file in [HOUSEHOLD_FILE, SOCIAL_INSURANCE_FILE, HOUSING_FUND_FILE, synth::DEFECTS_FILE] {
        let left = std::fs::read(a.path().join(file)).expect("read");
        let right = std::fs::read(b.path().join(file)).expect("read");
        assert!(left == right, "{file} differs between two runs with the same seed");
    }
    let other = std::fs::read(c.path().join(HOUSEHOLD_FILE)).expect("read");
    assert!(other != std::fs::read(a.path().join(HOUSEHOLD_FILE)).expect("read"), "another seed, other data");
    // No partial files are left behind.
    for entry in std::fs::read_dir(a.path()).expect("dir") {
        let name = entry.expect("entry").file_name().into_string().expect("utf-8");
        assert!(!name.ends_with(".partial"), "{name}");
    }
    assert!(synth::is_generated(a.path()));
}

#[test]
fn datasets_hold_their_invariants_at_100k_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rate = 0.01;
    let report = common::generate(dir.path(), 100_000, 2026, rate);
    let as_of = common::as_of();

    let household = read(&dir.path().join(HOUSEHOLD_FILE));
    let social = read(&dir.path().join(SOCIAL_INSURANCE_FILE));
    let fund = read(&dir.path().join(HOUSING_FUND_FILE));
    assert_eq!(household.num_rows(), 100_000);
    assert_eq!(report.household_rows, 100_000);
    assert_eq!(report.social_insurance_rows as usize, social.num_rows());
    assert_eq!(report.housing_fund_rows as usize, fund.num_rows());

    let defects = defects(dir.path());
    assert_eq!(defects.len() as u64, report.defects);
    let in_dataset = |name: &'static str| defects.iter().filter(move |d| d[0] == name);

    // Household registration: sorted, unique, valid identity numbers except the recorded ones.
    let ids = keys(&household, "id_number");
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "household is sorted by a unique key");
    let bad_household_keys: HashMap<&str, &str> = in_dataset("household")
        .filter(|d| d[3] == "bad_check_digit")
        .map(|d| (d[1].as_str(), d[2].as_str()))
        .collect();
    let genders = keys(&household, "gender");
    let births = household.column_by_name("birth_date").expect("birth_date").as_primitive::<Date32Type>();
    let divisions = strings(&household, "division_code");
    for (row, id) in ids.iter().enumerate() {
        match IdNumber::parse(id) {
            Ok(parsed) => {
                assert!(
                    !bad_household_keys.contains_key(id.as_str()),
                    "{id} is recorded as defective but valid"
                );
                assert_eq!(parsed.gender().code(), genders[row], "{id}: gender follows the sequence parity");
                assert_eq!(parsed.birth_date(), date(births.value(row)), "{id}: birth date");
                assert!(division::find(parsed.address_code()).is_some(), "{id}: real division code");
                if let Some(code) = &divisions[row] {
                    assert_eq!(code, parsed.address_code());
                }
            }
            Err(IdNumberError::CheckMismatch { .. }) => {
                let original = bad_household_keys
                    .get(id.as_str())
                    .unwrap_or_else(|| panic!("{id} invalid but unrecorded"));
                assert!(IdNumber::parse(original).is_ok());
            }
            Err(e) => panic!("{id}: {e}"),
        }
    }

    // Households: exactly one head each, at most one spouse.
    let households = keys(&household, "household_number");
    let relations = keys(&household, "relation_to_head");
    let mut heads: HashMap<&str, usize> = HashMap::new();
    let mut spouses: HashMap<&str, usize> = HashMap::new();
    for (h, r) in households.iter().zip(&relations) {
        match r.as_str() {
            "02" => *heads.entry(h).or_default() += 1,
            "10" => *spouses.entry(h).or_default() += 1,
            "20" | "30" | "50" => {}
            other => panic!("unexpected relation code {other}"),
        }
    }
    let distinct: HashSet<&str> = households.iter().map(String::as_str).collect();
    assert!(distinct.iter().all(|h| heads.get(h) == Some(&1)), "every household has one head");
    assert!(spouses.values().all(|&n| n == 1));
    assert!(distinct.len() > 25_000 && distinct.len() < 60_000, "{} households", distinct.len());
    let status_column = keys(&household, "status");
    let statuses = count_by(status_column.iter().map(String::as_str));
    assert!(statuses["正常"] > 95_000 && statuses.contains_key("迁出") && statuses.contains_key("死亡注销"));
    let provinces: HashSet<String> = ids.iter().map(|id| id[..2].to_owned()).collect();
    assert_eq!(provinces, ["11", "34", "41", "44", "63"].map(String::from).into_iter().collect());

    // Every insured person and fund account holder is a registered person.
    let registered: HashSet<&str> =
        ids.iter().map(String::as_str).chain(bad_household_keys.values().copied()).collect();
    for (dataset, batch) in [("social_insurance", &social), ("housing_fund", &fund)] {
        let bad_keys: HashMap<&str, &str> = in_dataset(dataset)
            .filter(|d| d[3] == "bad_check_digit")
            .map(|d| (d[1].as_str(), d[2].as_str()))
            .collect();
        let rows = keys(batch, "id_number");
        assert!(rows.windows(2).all(|w| w[0] <= w[1]), "{dataset} is sorted by key");
        for key in &rows {
            let person = bad_keys.get(key.as_str()).copied().unwrap_or(key);
            assert!(registered.contains(person), "{dataset} row {key} names no registered person");
            if !bad_keys.contains_key(key.as_str()) {
                assert!(IdNumber::parse(key).is_ok() || bad_household_keys.values().any(|o| o == key));
            }
        }
        for code in strings(batch, "employer_credit_code").into_iter().flatten() {
            CreditCode::parse(&code).unwrap_or_else(|e| panic!("{dataset}: {code}: {e}"));
        }
    }

    // Subsets of realistic size, several insurance types per person.
    let insured: HashSet<String> = keys(&social, "id_number").into_iter().collect();
    let holders: HashSet<String> = keys(&fund, "id_number").into_iter().collect();
    assert!(insured.len() > 50_000 && insured.len() < 100_000, "{} insured", insured.len());
    assert!(holders.len() > 10_000 && holders.len() < insured.len(), "{} fund holders", holders.len());
    assert!(social.num_rows() as f64 / insured.len() as f64 > 2.0, "several insurance types per person");
    let types: HashSet<String> = strings(&social, "insurance_type").into_iter().flatten().collect();
    for code in ["110", "120", "170", "210", "310", "390", "410", "510"] {
        assert!(types.contains(code), "insurance type {code} appears");
    }
    let rates = fund.column_by_name("employer_rate_pct").expect("rate").as_primitive::<Decimal128Type>();
    assert!(rates.iter().flatten().all(|r| (500..=1200).contains(&r)), "fund rates are 5-12%");
    let months = social.column_by_name("paid_months").expect("months").as_primitive::<Int32Type>();
    assert!(months.iter().flatten().all(|m| m >= 1));

    // Defects: the configured fraction of each dataset, and each one really there.
    for (dataset, batch) in
        [("household", &household), ("social_insurance", &social), ("housing_fund", &fund)]
    {
        let count = in_dataset(dataset).count() as f64;
        let fraction = count / batch.num_rows() as f64;
        assert!((fraction - rate).abs() < rate * 0.3, "{dataset}: defect fraction {fraction:.4} vs {rate}");
        let kinds = count_by(in_dataset(dataset).map(|d| d[3].as_str()));
        for kind in ["bad_check_digit", "missing_required", "stale_update"] {
            assert!(kinds.get(kind).copied().unwrap_or(0) > 0, "{dataset}: {kind}");
        }
    }
    assert_defects_are_real(&household, in_dataset("household"), as_of);
    assert_defects_are_real(&social, in_dataset("social_insurance"), as_of);
    assert_defects_are_real(&fund, in_dataset("housing_fund"), as_of);
}

/// Every recorded defect is visible in the row it names.
fn assert_defects_are_real<'a>(
    batch: &RecordBatch,
    defects: impl Iterator<Item = &'a [String; 5]>,
    as_of: NaiveDate,
) {
    let keys = keys(batch, "id_number");
    let updated = batch.column_by_name("updated_on").expect("updated_on").as_primitive::<Date32Type>();
    let stale_before = as_of - chrono::Duration::days(365);
    for [dataset, key, _, kind, column] in defects {
        let rows: Vec<usize> = keys.iter().enumerate().filter(|(_, k)| *k == key).map(|(i, _)| i).collect();
        assert!(!rows.is_empty(), "{dataset}: defect on missing key {key}");
        match kind.as_str() {
            "bad_check_digit" => {
                assert!(matches!(IdNumber::parse(key), Err(IdNumberError::CheckMismatch { .. })))
            }
            "missing_required" => {
                let values = batch.column_by_name(column).unwrap_or_else(|| panic!("{column}"));
                assert!(rows.iter().any(|&r| values.is_null(r)), "{dataset} {key}: {column} is null");
            }
            "stale_update" => {
                assert!(rows.iter().any(|&r| date(updated.value(r)) < stale_before), "{dataset} {key} stale")
            }
            other => panic!("unknown defect kind {other}"),
        }
    }
}
