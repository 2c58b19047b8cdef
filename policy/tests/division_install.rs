//! Replacing the division table: in a file of its own, since the table is the process's.

use tongban_policy::CreditCode;
use tongban_policy::catalog::MaskRule;
use tongban_policy::division::{self, DivisionTableError};
use tongban_policy::org::{Department, DepartmentRole};

fn department(region: &str) -> Department {
    Department {
        code: CreditCode::compose('1', '1', region, "00000001"),
        name: "新设市公安局".into(),
        region: region.into(),
        roles: vec![DepartmentRole::Demander],
    }
}

/// The only test in its file, since the table is the process's and this test replaces it: a newer table with a
/// division the shipped one lacks replaces it once, and only before it is read.
#[test]
fn a_newer_table_replaces_the_shipped_one_once() {
    let shipped = include_str!("../data/divisions.tsv");
    let newer = format!("{shipped}329800\tprefecture\t新设市\t320000\n329801\tcounty\t新设区\t329800\n");
    let installed = division::install(newer).expect("installed");
    assert!(installed.find("329801").is_some());
    assert_eq!(division::full_name("329801").as_deref(), Some("江苏省新设市新设区"));
    department("329801").validate().expect("a department in the new division");
    assert_eq!(MaskRule::Address.apply("江苏省新设市新设区人民路1号"), "江苏省新设市新设区***");
    assert_eq!(division::install(shipped.to_owned()).map(|_| ()), Err(DivisionTableError::AlreadyInUse));
}
