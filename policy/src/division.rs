//! GB/T 2260 administrative divisions: the table Tongban uses and look-ups over it.
//!
//! The table shipped with Tongban lists every province, prefecture and county of the country,
//! from the National Bureau of Statistics' 2023 division codes (`policy/data/divisions.tsv`).
//! Codes change every year, so a gateway may replace it with a newer table of the same format
//! ([`install`], from the configuration's `reference.divisions`). Identity numbers keep the
//! address code they were issued with, including codes since retired, so validation checks
//! only the province prefix.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Serialize;

/// The level of a division.
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
    /// The enclosing division's code, as the table gives it.
    #[serde(skip)]
    parent: Option<&'static str>,
}

impl Division {
    /// The code of the enclosing division, if any.
    pub fn parent_code(&self) -> Option<String> {
        self.parent.map(str::to_owned)
    }

    /// A county-level code the statistics bureau gives a development zone (last two digits 71
    /// to 79). GB/T 2260 does not list them and no identity number carries one, so no one is
    /// registered there.
    pub fn is_statistical(&self) -> bool {
        self.level == DivisionLevel::County && matches!(&self.code.as_bytes()[4..], [b'7', b'1'..=b'9'])
    }
}

/// A division table: every division, sorted by code.
#[derive(Debug)]
pub struct DivisionTable {
    divisions: Vec<Division>,
    by_code: HashMap<&'static str, usize>,
}

/// Why a division table cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DivisionTableError {
    #[error("line {line}: {reason}")]
    Line { line: usize, reason: String },
    #[error("{0}")]
    Table(String),
    #[error("the division table is already in use; it is replaced once, at start, before it is read")]
    AlreadyInUse,
}

impl DivisionTable {
    /// Reads a table in the shipped format: tab-separated `code`, `level` (`province`,
    /// `prefecture` or `county`), `name` and `parent` (empty for provinces), with a header line
    /// and `#` comments. Every code is six digits in a province-level prefix, appears once,
    /// and names a parent in the table one level up (a prefecture-level city listed again as
    /// its own county is taken once).
    pub fn parse(text: &'static str) -> Result<DivisionTable, DivisionTableError> {
        let mut divisions = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line_error = |reason: String| DivisionTableError::Line { line: n + 1, reason };
            if line.starts_with('#') || line.trim().is_empty() || line.starts_with("code\t") {
                continue;
            }
            let fields: Vec<&'static str> = line.split('\t').collect();
            let [code, level, name, parent] = fields[..] else {
                return Err(line_error(format!(
                    "{} columns, not code, level, name and parent",
                    fields.len()
                )));
            };
            if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) || !is_province_prefix(&code[..2])
            {
                return Err(line_error(format!("{code:?} is not a division code")));
            }
            let level = match level {
                "province" => DivisionLevel::Province,
                "prefecture" => DivisionLevel::Prefecture,
                "county" => DivisionLevel::County,
                other => {
                    return Err(line_error(format!("level {other:?} is not province, prefecture or county")));
                }
            };
            if name.trim().is_empty() {
                return Err(line_error(format!("{code} has no name")));
            }
            // A prefecture-level city without counties (东莞市, 中山市, 儋州市) is listed again
            // as a county under itself; the prefecture stands for both.
            if level == DivisionLevel::County && parent == code {
                continue;
            }
            let parent = (!parent.is_empty()).then_some(parent);
            if (level == DivisionLevel::Province) != parent.is_none() {
                return Err(line_error(format!("{code}: provinces, and only provinces, have no parent")));
            }
            divisions.push(Division { code, name, level, parent });
        }
        divisions.sort_by_key(|d| d.code);
        let by_code: HashMap<&'static str, usize> =
            divisions.iter().enumerate().map(|(i, d)| (d.code, i)).collect();
        if by_code.len() != divisions.len() {
            return Err(DivisionTableError::Table("a code appears more than once".into()));
        }
        for division in &divisions {
            let Some(parent) = division.parent else { continue };
            let expected = match division.level {
                DivisionLevel::County => DivisionLevel::Prefecture,
                _ => DivisionLevel::Province,
            };
            if by_code.get(parent).map(|&i| divisions[i].level) != Some(expected) {
                return Err(DivisionTableError::Table(format!(
                    "{} names {parent} as its parent, which is not a {expected:?} in the table",
                    division.code
                )));
            }
        }
        if divisions.is_empty() {
            return Err(DivisionTableError::Table("the table lists no division".into()));
        }
        Ok(DivisionTable { divisions, by_code })
    }

    /// Every division, sorted by code.
    pub fn all(&self) -> &[Division] {
        &self.divisions
    }

    /// Looks a division up by its 6-digit code.
    pub fn find(&self, code: &str) -> Option<&Division> {
        self.by_code.get(code).map(|&i| &self.divisions[i])
    }
}

static TABLE: OnceLock<DivisionTable> = OnceLock::new();

/// The table in use: the one installed at start, or the shipped one.
fn table() -> &'static DivisionTable {
    TABLE.get_or_init(|| {
        DivisionTable::parse(include_str!("../data/divisions.tsv")).expect("the shipped table is valid")
    })
}

/// Replaces the shipped table with `text` (the same format) for the rest of the process. It
/// must come before anything reads the table, since codes already checked against one table
/// are not checked again; the gateway does it first thing at start. The text is kept for the
/// process's life, as the shipped table is.
pub fn install(text: String) -> Result<&'static DivisionTable, DivisionTableError> {
    let text: &'static str = Box::leak(text.into_boxed_str());
    let parsed = DivisionTable::parse(text)?;
    TABLE.set(parsed).map_err(|_| DivisionTableError::AlreadyInUse)?;
    Ok(table())
}

/// Province-level codes issued since 1980, including Hong Kong, Macao and Taiwan, whose
/// residents can hold identity-number-shaped permits. Kept separate from the shipped table so
/// that any resident's number validates even where Tongban ships no county table.
const PROVINCE_PREFIXES: [&str; 34] = [
    "11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37", "41", "42",
    "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64", "65", "71", "81", "82",
];

/// Every division in the table in use, sorted by code.
pub fn all() -> &'static [Division] {
    table().all()
}

/// Looks a division up by its 6-digit code.
pub fn find(code: &str) -> Option<&'static Division> {
    table().find(code)
}

/// Whether a two-digit prefix is a province-level code.
pub fn is_province_prefix(prefix: &str) -> bool {
    PROVINCE_PREFIXES.contains(&prefix)
}

/// Divisions where people are registered: counties (development zones' statistical codes
/// aside), and prefecture-level cities that have no counties (such as 东莞市 and 中山市), in
/// code order.
pub fn leaf_divisions() -> impl Iterator<Item = &'static Division> {
    let all = all();
    all.iter().filter(move |d| match d.level {
        DivisionLevel::County => !d.is_statistical(),
        DivisionLevel::Prefecture => !all.iter().any(|c| c.parent == Some(d.code)),
        DivisionLevel::Province => false,
    })
}

/// The full name of a division with its enclosing divisions, such as `河南省信阳市潢川县`.
/// Placeholder prefecture names (`市辖区`, `省直辖县级行政区划`) are left out, as on documents.
pub fn full_name(code: &str) -> Option<String> {
    let division = find(code)?;
    let mut parts = Vec::with_capacity(3);
    let mut enclosing = division.parent.and_then(find);
    while let Some(parent) = enclosing {
        if !matches!(parent.name, "市辖区" | "省直辖县级行政区划" | "自治区直辖县级行政区划")
        {
            parts.push(parent.name);
        }
        enclosing = parent.parent.and_then(find);
    }
    parts.reverse();
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
