//! The national division table: departments, identity numbers and addresses of provinces
//! beyond the demo's five work, and a gateway can replace the table with a newer one.

use chrono::NaiveDate;
use tongban_policy::catalog::MaskRule;
use tongban_policy::division::{self, DivisionLevel, DivisionTable, DivisionTableError};
use tongban_policy::org::{Department, DepartmentRole};
use tongban_policy::{CreditCode, IdNumber};

fn department(region: &str) -> Department {
    Department {
        code: CreditCode::compose('1', '1', region, "00000001"),
        name: "省公安厅".into(),
        region: region.into(),
        roles: vec![DepartmentRole::Demander],
    }
}

#[test]
fn every_province_is_in_the_table_at_all_levels() {
    let provinces: Vec<&str> =
        division::all().iter().filter(|d| d.level == DivisionLevel::Province).map(|d| d.code).collect();
    assert_eq!(provinces.len(), 34, "{provinces:?}");
    assert!(division::all().len() > 3_300, "{} divisions", division::all().len());
    assert_eq!(division::full_name("320102").as_deref(), Some("江苏省南京市玄武区"));
    assert_eq!(division::full_name("510104").as_deref(), Some("四川省成都市锦江区"));
    assert_eq!(division::full_name("659001").as_deref(), Some("新疆维吾尔自治区石河子市"));
    assert_eq!(division::full_name("460400").as_deref(), Some("海南省儋州市"));
    assert!(division::leaf_divisions().any(|d| d.code == "460400"), "a city without counties is a leaf");
    assert!(!division::leaf_divisions().any(|d| d.code == "410171"), "development zones register no one");
}

#[test]
fn departments_identity_numbers_and_addresses_of_any_province_work() {
    for (region, address, masked) in [
        ("320000", "江苏省南京市玄武区中山路18号2单元", "江苏省南京市玄武区***"),
        ("510100", "四川省成都市锦江区红星路三段1号", "四川省成都市锦江区***"),
        ("650000", "新疆维吾尔自治区乌鲁木齐市天山区解放北路9号", "新疆维吾尔自治区乌鲁木齐市天山区***"),
        ("230000", "黑龙江省哈尔滨市道里区中央大街1号", "黑龙江省哈尔滨市道里区***"),
    ] {
        department(region).validate().unwrap_or_else(|e| panic!("{region}: {e}"));
        assert_eq!(MaskRule::Address.apply(address), masked);
        let number = IdNumber::compose(
            &format!("{}02", &region[..4]),
            NaiveDate::from_ymd_opt(1990, 5, 17).expect("date"),
            31,
        );
        let parsed = IdNumber::parse(&number).unwrap_or_else(|e| panic!("{number}: {e}"));
        assert_eq!(&parsed.address_code()[..2], &region[..2]);
    }
    assert!(department("329999").validate().is_err(), "a code no table lists is refused");
}

#[test]
fn a_table_with_errors_is_refused_with_the_line_that_has_them() {
    let refused = |text: &'static str| DivisionTable::parse(text).expect_err("refused");
    assert!(matches!(
        refused("110000\tprovince\t北京市\t\n3201\tcounty\t某区\t320100\n"),
        DivisionTableError::Line { line: 2, .. }
    ));
    assert!(matches!(refused("110000\tstate\t北京市\t\n"), DivisionTableError::Line { line: 1, .. }));
    assert!(matches!(
        refused("110000\tprovince\t北京市\t\n110101\tcounty\t东城区\t110100\n"),
        DivisionTableError::Table(_)
    ));
    assert!(matches!(
        refused("110000\tprovince\t北京市\t\n110000\tprovince\t北京\t\n"),
        DivisionTableError::Table(_)
    ));
    assert!(matches!(refused("# nothing\n"), DivisionTableError::Table(_)));
}
