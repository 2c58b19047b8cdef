//! Decisions, tested against the cases in `cases/decisions.tsv` and with property tests that
//! narrowing a grant never lets through a call the wider grant refused.

use chrono::NaiveDate;
use proptest::prelude::*;
use tongban_policy::catalog::{
    InformationItem, MaskRule, Resource, Sensitivity, ShareMethod, ShareType, UpdateCycle,
};
use tongban_policy::decision::{AccessRequest, Operation, Purpose, Reason, decide};
use tongban_policy::grant::{Grant, GrantChange, GrantSet, GrantStatus, GrantedItem};
use tongban_policy::workflow::Terms;

fn date(s: &str) -> NaiveDate {
    s.parse().expect("date")
}

fn today() -> NaiveDate {
    date("2026-11-23")
}

fn resource(
    code: &str,
    items: &[(&str, MaskRule, ShareType)],
    methods: &[ShareMethod],
    division: bool,
) -> Resource {
    Resource {
        code: code.into(),
        version: 2,
        name: code.into(),
        supplier: "11410000MB0000000X".into(),
        summary: String::new(),
        share_type: ShareType::Unconditional,
        share_condition: None,
        share_methods: methods.to_vec(),
        update_cycle: UpdateCycle::Daily,
        dataset: code.to_lowercase(),
        items: items
            .iter()
            .map(|(name, mask, share_type)| InformationItem {
                name: (*name).into(),
                label: (*name).into(),
                data_type: "Utf8".into(),
                sensitivity: Sensitivity::Important,
                personal: true,
                default_mask: *mask,
                share_type: *share_type,
                required: false,
            })
            .collect(),
        service_items: vec![],
        division_item: division.then(|| "division_code".into()),
        format: Default::default(),
        open_type: Default::default(),
        class: Default::default(),
        related_resources: vec![],
        legal_basis: String::new(),
    }
}

fn resources() -> Vec<Resource> {
    use MaskRule as M;
    use ShareType::{Conditional as C, NotShared as N};
    vec![
        resource(
            "A01",
            &[
                ("id_number", M::IdNumber, C),
                ("name", M::Name, C),
                ("status", M::None, C),
                ("ethnicity", M::Redact, C),
                ("household_number", M::None, C),
                ("division_code", M::None, C),
                // Shared when g-withdrawn was approved; the current version withdrew it.
                ("address", M::Address, N),
                ("marital_status", M::Redact, N),
            ],
            &[ShareMethod::Interface, ShareMethod::Table],
            true,
        ),
        resource(
            "C03",
            &[("id_number", M::IdNumber, C), ("balance", M::None, C), ("loan_status", M::None, C)],
            &[ShareMethod::Interface],
            false,
        ),
    ]
}

#[allow(clippy::too_many_arguments)]
fn grant(
    id: &str,
    department: &str,
    system: Option<&str>,
    resource: &str,
    service_item: &str,
    items: &[&str],
    prefix: &str,
    (from, until): (&str, &str),
    status: GrantStatus,
) -> Grant {
    let masks = resources();
    let resource_entry = masks.iter().find(|r| r.code == resource).expect("fixture resource");
    Grant {
        id: id.into(),
        version: 1,
        demand_id: format!("demand-{id}"),
        consumer_department: department.into(),
        consumer_system: system.map(str::to_owned),
        resource_code: resource.into(),
        resource_version: 1,
        dataset: resource_entry.dataset.clone(),
        service_item: service_item.into(),
        purpose: "测试".into(),
        items: items
            .iter()
            .map(|name| GrantedItem {
                name: (*name).into(),
                mask: resource_entry
                    .items
                    .iter()
                    .find(|i| i.name == *name)
                    .map_or(MaskRule::None, |i| i.default_mask),
            })
            .collect(),
        division_prefix: prefix.into(),
        rate_per_second: 10,
        daily_quota: 1000,
        valid_from: date(from),
        valid_until: date(until),
        status,
        superseded_by: None,
    }
}

fn grants() -> GrantSet {
    use GrantStatus::{Active, Revoked, Superseded, Suspended};
    let year = ("2026-01-01", "2026-12-31");
    let household = ["id_number", "name", "status", "ethnicity"];
    GrantSet::new([
        grant("g-active", "dept-a", Some("s1"), "A01", "KSTB-GA-001", &household, "41", year, Active),
        // A department's grant for any of its systems, and one system's own, for one purpose.
        grant(
            "g-dept",
            "dept-a",
            None,
            "A01",
            "KSTB-GA-006",
            &["id_number", "household_number"],
            "41",
            year,
            Active,
        ),
        grant("g-own", "dept-a", Some("s1"), "A01", "KSTB-GA-006", &["id_number"], "41", year, Active),
        // Grants replaced by later approvals for the same purpose.
        Grant {
            superseded_by: Some("g-new".into()),
            ..grant("g-old", "dept-a", Some("s1"), "A01", "KSTB-GA-007", &household, "41", year, Superseded)
        },
        grant("g-new", "dept-a", Some("s1"), "A01", "KSTB-GA-007", &["id_number"], "41", year, Active),
        Grant {
            superseded_by: Some("g-new-revoked".into()),
            ..grant("g-old2", "dept-a", Some("s1"), "A01", "KSTB-GA-008", &household, "41", year, Superseded)
        },
        grant("g-new-revoked", "dept-a", Some("s1"), "A01", "KSTB-GA-008", &household, "41", year, Revoked),
        Grant {
            superseded_by: Some("g-elsewhere".into()),
            ..grant("g-old3", "dept-a", Some("s1"), "A01", "KSTB-GA-009", &household, "41", year, Superseded)
        },
        grant("g-anysys", "dept-a", None, "A01", "KSTB-GA-002", &["id_number", "status"], "", year, Active),
        grant("g-susp", "dept-a", Some("s1"), "A01", "KSTB-GA-003", &household, "41", year, Suspended),
        grant("g-rev", "dept-a", Some("s1"), "A01", "KSTB-GA-004", &household, "41", year, Revoked),
        grant(
            "g-exp",
            "dept-a",
            Some("s1"),
            "A01",
            "KSTB-GA-005",
            &household,
            "41",
            ("2026-01-01", "2026-06-30"),
            Active,
        ),
        grant(
            "g-future",
            "dept-a",
            Some("s1"),
            "A01",
            "KSTB-RS-001",
            &household,
            "41",
            ("2026-12-01", "2027-12-31"),
            Active,
        ),
        grant(
            "g-withdrawn",
            "dept-a",
            Some("s1"),
            "A01",
            "KSTB-YB-001",
            &["id_number", "address"],
            "",
            year,
            Active,
        ),
        grant(
            "g-fund",
            "dept-a",
            Some("s1"),
            "C03",
            "KSTB-JS-001",
            &["id_number", "balance"],
            "",
            year,
            Active,
        ),
        grant(
            "g-fund-scoped",
            "dept-a",
            Some("s1"),
            "C03",
            "KSTB-JS-002",
            &["id_number"],
            "34",
            year,
            Active,
        ),
        grant("g-other", "dept-b", Some("s9"), "A01", "KSTB-GA-001", &["id_number"], "", year, Active),
    ])
}

fn purpose(service_item: &str) -> Purpose {
    Purpose::parse(Some(service_item), Some("BJ-2026-000123"), Some("王五")).expect("purpose")
}

fn code(reason: &Reason) -> String {
    serde_json::to_value(reason).expect("serialises")["code"].as_str().expect("code").to_owned()
}

#[test]
fn decisions_follow_the_case_table() {
    let grants = grants();
    let resources = resources();
    let mut checked = 0;
    for line in include_str!("cases/decisions.tsv").lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let fields: Vec<&str> = line.split('\t').collect();
        let [name, department, system, resource_code, operation, items, service_item, expect] = fields[..]
        else {
            panic!("malformed case: {line}");
        };
        let resource = resources.iter().find(|r| r.code == resource_code).expect("fixture resource");
        let operation: Operation = serde_json::from_value(serde_json::json!(operation)).expect("operation");
        let items: Vec<String> =
            if items == "-" { vec![] } else { items.split(',').map(str::to_owned).collect() };
        let purpose = purpose(service_item);
        let request = AccessRequest {
            department,
            system,
            resource,
            dataset_supplier: Some(resource.supplier.as_str()),
            operation,
            items: &items,
            purpose: &purpose,
            today: today(),
        };
        let outcome = decide(&grants, &request);
        match expect.split_once(':') {
            Some(("permit", rest)) => {
                let permit = outcome.unwrap_or_else(|d| panic!("{name}: refused {:?}", d.reasons));
                let mut parts = rest.splitn(2, ':');
                assert_eq!(permit.grant.id, parts.next().expect("grant id"), "{name}");
                if let Some(expected_items) = parts.next() {
                    let served: Vec<&str> = permit.items.iter().map(|i| i.name.as_str()).collect();
                    assert_eq!(served.join(","), expected_items, "{name}");
                }
                if permit.grant.division_prefix.is_empty() {
                    assert_eq!(permit.scope, None, "{name}");
                } else {
                    let scope = permit.scope.expect("a scoped grant has a row scope");
                    assert_eq!(
                        (scope.item.as_str(), scope.prefix.as_str()),
                        ("division_code", "41"),
                        "{name}"
                    );
                }
            }
            Some(("deny", codes)) => {
                let denial = outcome.err().unwrap_or_else(|| panic!("{name}: permitted"));
                let got: Vec<String> = denial.reasons.iter().map(code).collect();
                assert_eq!(got.join(","), codes, "{name}");
            }
            _ => panic!("malformed expectation: {line}"),
        }
        checked += 1;
    }
    assert!(checked >= 25, "only {checked} cases read");
}

/// A resource over a dataset its supplier does not own is served under no grant: the call
/// that the same grant permits over an owned dataset is refused when the dataset is another
/// department's, or has no supplier configured.
#[test]
fn nothing_is_served_from_a_dataset_its_supplier_does_not_own() {
    let grants = grants();
    let resources = resources();
    let items = vec!["id_number".to_owned()];
    let purpose = purpose("KSTB-GA-001");
    let ask = |dataset_supplier| {
        decide(
            &grants,
            &AccessRequest {
                department: "dept-a",
                system: "s1",
                resource: &resources[0],
                dataset_supplier,
                operation: Operation::Lookup,
                items: &items,
                purpose: &purpose,
                today: today(),
            },
        )
        .map(|_| ())
    };
    assert_eq!(ask(Some(resources[0].supplier.as_str())), Ok(()));
    for owner in [Some("another-department"), None] {
        let denial = ask(owner).expect_err("refused");
        assert_eq!(
            denial.reasons,
            [Reason::DatasetNotOwned { dataset: resources[0].dataset.clone() }],
            "{owner:?}"
        );
    }
}

#[test]
fn masks_come_from_the_grant() {
    let grants = grants();
    let resources = resources();
    let items = vec!["id_number".to_owned(), "ethnicity".to_owned()];
    let purpose = purpose("KSTB-GA-001");
    let permit = decide(
        &grants,
        &AccessRequest {
            department: "dept-a",
            system: "s1",
            resource: &resources[0],
            dataset_supplier: Some(resources[0].supplier.as_str()),
            operation: Operation::Lookup,
            items: &items,
            purpose: &purpose,
            today: today(),
        },
    )
    .expect("permitted");
    let masks: Vec<MaskRule> = permit.items.iter().map(|i| i.mask).collect();
    assert_eq!(masks, [MaskRule::IdNumber, MaskRule::Redact]);
}

#[test]
fn purpose_fields_are_required_and_checked() {
    let codes = |r: Result<Purpose, Vec<Reason>>| -> Vec<String> {
        r.err().unwrap_or_default().iter().map(code).collect()
    };
    assert_eq!(
        codes(Purpose::parse(None, Some(""), Some("  "))),
        ["purpose_missing", "purpose_missing", "purpose_missing"]
    );
    assert_eq!(codes(Purpose::parse(Some("KSTB GA"), Some("1"), Some("x"))), ["purpose_invalid"]);
    assert_eq!(codes(Purpose::parse(Some("KSTB"), Some(&"9".repeat(65)), Some("x"))), ["purpose_invalid"]);
    assert_eq!(codes(Purpose::parse(Some("KSTB"), Some("1"), Some("a\u{0}b"))), ["purpose_invalid"]);
    let purpose = Purpose::parse(Some(" KSTB-GA-001 "), Some("BJ-1"), Some("张三")).expect("valid");
    assert_eq!(purpose.service_item, "KSTB-GA-001");
}

const ITEMS: [&str; 4] = ["id_number", "name", "status", "ethnicity"];

fn subset(mask: u8) -> Vec<String> {
    ITEMS.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, s)| (*s).to_owned()).collect()
}

proptest! {
    // Narrowing composes with deciding: whatever a narrowed grant permits, the grant it was
    // narrowed from permitted too, with the same masks, and rows no wider. Calls name their
    // items: "every granted item" is a different set under each grant, so it is not compared.
    #[test]
    fn narrowing_never_permits_more(
        kept in 1u8..16,
        asked in 1u8..16,
        prefix in prop::sample::select(vec!["41", "4101", "410102"]),
        operation in prop::sample::select(vec![Operation::Lookup, Operation::Verify, Operation::Sql]),
    ) {
        let resources = resources();
        let wide = grant("g", "d", Some("s"), "A01", "KSTB-GA-001", &ITEMS, "41", ("2026-01-01", "2026-12-31"), GrantStatus::Active);
        let narrowed = wide
            .change(&GrantChange::Narrow {
                terms: Terms {
                    items: subset(kept),
                    division_prefix: prefix.into(),
                    rate_per_second: 5,
                    daily_quota: 500,
                    valid_until: date("2026-12-31"),
                },
            })
            .expect("a narrowing");
        let (wide_set, narrow_set) = (GrantSet::new([wide]), GrantSet::new([narrowed]));
        let items = subset(asked);
        let purpose = purpose("KSTB-GA-001");
        let request = AccessRequest {
            department: "d",
            system: "s",
            resource: &resources[0],
            dataset_supplier: Some(resources[0].supplier.as_str()),
            operation,
            items: &items,
            purpose: &purpose,
            today: today(),
        };
        if let Ok(narrow) = decide(&narrow_set, &request) {
            let wide = decide(&wide_set, &request);
            prop_assert!(wide.is_ok(), "the wide grant refused what the narrowed one permitted");
            let wide = wide.expect("checked");
            for item in &narrow.items {
                prop_assert!(wide.items.contains(item) || request.items.is_empty());
            }
            let narrow_scope = narrow.scope.expect("scoped").prefix;
            prop_assert!(narrow_scope.starts_with(&wide.scope.expect("scoped").prefix));
        }
    }
}

#[test]
fn documents_pass_only_when_granted_whole_and_unscoped() {
    let grants = grants();
    let resources = resources();
    let permit_for = |service_item: &str| {
        let purpose = purpose(service_item);
        decide(
            &grants,
            &AccessRequest {
                department: "dept-a",
                system: "s1",
                resource: &resources[0],
                dataset_supplier: Some(resources[0].supplier.as_str()),
                operation: Operation::Proxy,
                items: &[],
                purpose: &purpose,
                today: today(),
            },
        )
        .expect("permitted")
    };
    let reasons = |permit: &tongban_policy::decision::Permit<'_>, items: &[&str]| -> Vec<String> {
        let items: Vec<String> = items.iter().map(|s| (*s).to_owned()).collect();
        permit.admits_document(&items).err().map(|d| d.reasons.iter().map(code).collect()).unwrap_or_default()
    };
    // g-anysys: id_number (masked) and status, no row scope.
    let unscoped = permit_for("KSTB-GA-002");
    assert!(reasons(&unscoped, &["status"]).is_empty());
    assert_eq!(reasons(&unscoped, &["status", "id_number"]), ["document_unmaskable"]);
    assert_eq!(reasons(&unscoped, &["status", "household_number"]), ["items_not_granted"]);
    // g-active limits rows to division 41: no document can be scoped.
    let scoped = permit_for("KSTB-GA-001");
    assert_eq!(reasons(&scoped, &["status"]), ["scope_unenforceable"]);
}
