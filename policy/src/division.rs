//! GB/T 2260 administrative divisions: the table shipped with Tongban and look-ups over it.
//!
//! The table covers the province, prefecture and county levels of the provinces the demo and
//! tests exercise. Identity numbers keep the address code they were issued with, including
//! codes since retired, so validation checks only the province prefix against this list.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde::Serialize;

/// The level of a division, read from the shape of its code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum DivisionLevel {
    Province,
    Prefecture,
    County,
}

/// One administrative division.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Division {
    pub code: &'static str,
    pub name: &'static str,
    pub level: DivisionLevel,
}

impl Division {
    /// The code of the enclosing division, if any.
    pub fn parent_code(&self) -> Option<String> {
        match self.level {
            DivisionLevel::Province => None,
            DivisionLevel::Prefecture => Some(format!("{}0000", &self.code[..2])),
            DivisionLevel::County => Some(format!("{}00", &self.code[..4])),
        }
    }
}

static TABLE: LazyLock<Vec<Division>> = LazyLock::new(|| {
    include_str!("../data/divisions.tsv")
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (code, name) = line.split_once('\t').expect("divisions.tsv: code<TAB>name");
            let level = if code.ends_with("0000") {
                DivisionLevel::Province
            } else if code.ends_with("00") {
                DivisionLevel::Prefecture
            } else {
                DivisionLevel::County
            };
            Division { code, name, level }
        })
        .collect()
});

static BY_CODE: LazyLock<HashMap<&'static str, usize>> =
    LazyLock::new(|| TABLE.iter().enumerate().map(|(i, d)| (d.code, i)).collect());

/// Province-level codes issued since 1980, including Hong Kong, Macao and Taiwan, whose
/// residents can hold identity-number-shaped permits. Kept separate from the shipped table so
/// that any resident's number validates even where Tongban ships no county table.
const PROVINCE_PREFIXES: [&str; 34] = [
    "11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37", "41", "42",
    "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64", "65", "71", "81", "82",
];

/// Every division in the shipped table, sorted by code.
pub fn all() -> &'static [Division] {
    &TABLE
}

/// Looks a division up by its 6-digit code.
pub fn find(code: &str) -> Option<&'static Division> {
    BY_CODE.get(code).map(|&i| &TABLE[i])
}

/// Whether a two-digit prefix is a province-level code.
pub fn is_province_prefix(prefix: &str) -> bool {
    PROVINCE_PREFIXES.contains(&prefix)
}

/// Divisions where people are registered: counties, and prefecture-level cities that have
/// no counties (such as 东莞市 and 中山市), in code order.
pub fn leaf_divisions() -> impl Iterator<Item = &'static Division> {
    TABLE.iter().filter(|d| match d.level {
        DivisionLevel::County => true,
        DivisionLevel::Prefecture => {
            !TABLE.iter().any(|c| c.level == DivisionLevel::County && c.code[..4] == d.code[..4])
        }
        DivisionLevel::Province => false,
    })
}

/// The full name of a division with its enclosing divisions, such as `河南省信阳市潢川县`.
/// Placeholder prefecture names (`市辖区`, `省直辖县级行政区划`) are left out, as on documents.
pub fn full_name(code: &str) -> Option<String> {
    let division = find(code)?;
    let mut parts = Vec::with_capacity(3);
    if division.level != DivisionLevel::Province {
        parts.push(find(&format!("{}0000", &code[..2]))?.name);
    }
    if division.level == DivisionLevel::County
        && let Some(prefecture) = find(&format!("{}00", &code[..4]))
        && !matches!(prefecture.name, "市辖区" | "省直辖县级行政区划")
    {
        parts.push(prefecture.name);
    }
    parts.push(division.name);
    Some(parts.concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_the_five_provinces_at_all_levels() {
        for (province, name) in [
            ("110000", "北京市"),
            ("340000", "安徽省"),
            ("410000", "河南省"),
            ("440000", "广东省"),
            ("630000", "青海省"),
        ] {
            assert_eq!(find(province).map(|d| d.name), Some(name));
            let prefix = &province[..2];
            let prefectures = all()
                .iter()
                .filter(|d| d.level == DivisionLevel::Prefecture && d.code.starts_with(prefix))
                .count();
            let counties = all()
                .iter()
                .filter(|d| d.level == DivisionLevel::County && d.code.starts_with(prefix))
                .count();
            assert!(
                prefectures >= 1 && counties >= 7,
                "{name}: {prefectures} prefectures, {counties} counties"
            );
        }
        assert_eq!(find("411500").map(|d| d.name), Some("信阳市"));
        assert_eq!(find("411526").map(|d| d.name), Some("潢川县"));
        assert_eq!(find("341723").map(|d| d.name), Some("青阳县"));
    }

    #[test]
    fn codes_are_sorted_unique_and_every_division_has_a_parent() {
        let codes: Vec<&str> = all().iter().map(|d| d.code).collect();
        assert!(codes.windows(2).all(|w| w[0] < w[1]), "sorted and unique");
        for d in all() {
            assert!(d.code.len() == 6 && d.code.bytes().all(|b| b.is_ascii_digit()));
            assert!(is_province_prefix(&d.code[..2]), "{}", d.code);
            if let Some(parent) = d.parent_code() {
                assert!(find(&parent).is_some(), "{} has no parent {parent}", d.code);
            }
        }
    }

    #[test]
    fn leaves_include_cities_without_counties() {
        let leaves: Vec<&str> = leaf_divisions().map(|d| d.code).collect();
        assert!(leaves.contains(&"441900") && leaves.contains(&"442000"));
        assert!(leaves.contains(&"419001"));
        assert!(!leaves.contains(&"411500"));
        assert_eq!(full_name("411526").as_deref(), Some("河南省信阳市潢川县"));
        assert_eq!(full_name("110105").as_deref(), Some("北京市朝阳区"));
        assert_eq!(full_name("441900").as_deref(), Some("广东省东莞市"));
    }
}
