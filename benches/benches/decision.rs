//! How long one policy decision takes, against a grant set the size of a province's: 500
//! consuming departments with 10 grants each.

use std::hint::black_box;

use chrono::NaiveDate;
use criterion::{Criterion, criterion_group, criterion_main};
use tongban_policy::catalog::{
    InformationItem, MaskRule, Resource, Sensitivity, ShareMethod, ShareType, UpdateCycle,
};
use tongban_policy::decision::{AccessRequest, Operation, Purpose, decide};
use tongban_policy::grant::{Grant, GrantSet, GrantStatus, GrantedItem};

const ITEMS: [&str; 8] =
    ["id_number", "name", "gender", "division_code", "address", "status", "birth_date", "household_number"];

fn resource(code: &str) -> Resource {
    Resource {
        code: code.into(),
        version: 1,
        name: code.into(),
        supplier: "11410000MB0000000X".into(),
        summary: String::new(),
        share_type: ShareType::Conditional,
        share_condition: None,
        share_methods: vec![ShareMethod::Interface, ShareMethod::Table],
        update_cycle: UpdateCycle::Daily,
        dataset: "household".into(),
        items: ITEMS
            .iter()
            .map(|name| InformationItem {
                name: (*name).into(),
                label: (*name).into(),
                data_type: "Utf8".into(),
                sensitivity: Sensitivity::Important,
                personal: true,
                default_mask: MaskRule::None,
                share_type: ShareType::Conditional,
                required: false,
            })
            .collect(),
        service_items: vec![],
        division_item: Some("division_code".into()),
        format: Default::default(),
        open_type: Default::default(),
        class: Default::default(),
        related_resources: vec![],
        legal_basis: String::new(),
    }
}

fn grants() -> GrantSet {
    let day = |s: &str| s.parse::<NaiveDate>().expect("date");
    let mut grants = Vec::new();
    for department in 0..500 {
        for n in 0..10 {
            grants.push(Grant {
                id: format!("g-{department}-{n}"),
                version: 1,
                demand_id: format!("d-{department}-{n}"),
                consumer_department: format!("dept-{department}"),
                consumer_system: Some(format!("sys-{department}")),
                resource_code: format!("R{:02}", n % 5),
                resource_version: 1,
                dataset: "household".into(),
                service_item: format!("KSTB-{n:03}"),
                purpose: String::new(),
                items: ITEMS[..6]
                    .iter()
                    .map(|i| GrantedItem { name: (*i).into(), mask: MaskRule::IdNumber })
                    .collect(),
                division_prefix: "41".into(),
                rate_per_second: 10,
                daily_quota: 1000,
                valid_from: day("2026-01-01"),
                valid_until: day("2026-12-31"),
                status: GrantStatus::Active,
                superseded_by: None,
            });
        }
    }
    GrantSet::new(grants)
}

fn decisions(c: &mut Criterion) {
    let grants = grants();
    let resource = resource("R03");
    let today: NaiveDate = "2026-11-23".parse().expect("date");
    let purpose = Purpose::parse(Some("KSTB-003"), Some("CASE-1"), Some("op-7")).expect("purpose");
    let asked: Vec<String> = ["id_number", "name", "status"].map(String::from).to_vec();
    let denied: Vec<String> = ["id_number", "birth_date"].map(String::from).to_vec();
    let request = |items| AccessRequest {
        department: "dept-250",
        system: "sys-250",
        resource: &resource,
        dataset_supplier: Some(resource.supplier.as_str()),
        operation: Operation::Verify,
        items,
        purpose: &purpose,
        today,
    };
    c.bench_function("decide: permitted verification of 3 items", |b| {
        b.iter(|| decide(black_box(&grants), black_box(&request(&asked))).is_ok())
    });
    c.bench_function("decide: refused, an item not granted", |b| {
        b.iter(|| decide(black_box(&grants), black_box(&request(&denied))).is_err())
    });
    c.bench_function("purpose: parse and check three fields", |b| {
        b.iter(|| {
            Purpose::parse(
                black_box(Some("KSTB-003")),
                black_box(Some("BJ-2026-000123")),
                black_box(Some("王五")),
            )
        })
    });
}

criterion_group!(benches, decisions);
criterion_main!(benches);
