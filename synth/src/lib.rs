//! Synthetic shared datasets for the demo, the tests and the benchmarks.
//!
//! `generate` writes three Parquet files, household registration (户籍), social insurance
//! (社保) and housing fund (公积金), one register of issued licences per licence type (电子证照,
//! see `licences`), plus a sidecar listing the rows that were made defective
//! on purpose and a manifest. Output is a pure function of [`SynthConfig`]: every county draws
//! from its own random stream seeded by the run's seed and the county code.
//!
//! People are generated one county at a time, in division-code order. An identity number
//! starts with its county code, so sorting each county's people in memory and writing counties
//! in order yields files sorted by identity number, while memory holds one county at a time
//! (the largest county, and so the peak, still grows with the row count; see
//! docs/benchmarks.md).

pub mod error;
pub mod inspect;
pub mod licences;
mod names;
mod people;
pub mod schema;
mod writer;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

pub use error::{Result, SynthError};

pub use people::Defect;

pub const HOUSEHOLD_FILE: &str = "household.parquet";
pub const SOCIAL_INSURANCE_FILE: &str = "social_insurance.parquet";
pub const HOUSING_FUND_FILE: &str = "housing_fund.parquet";
pub const DEFECTS_FILE: &str = "defects.csv";
pub const MANIFEST_FILE: &str = "manifest.json";

/// The file of a licence type's register: its dataset name as a Parquet file.
pub fn licence_file(licence_type: &tongban_policy::licence::LicenceType) -> String {
    format!("{}.parquet", licence_type.dataset())
}

/// What to generate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthConfig {
    /// People in household registration.
    pub rows: u64,
    pub seed: u64,
    /// The day the data describes: ages, payment months and update dates are relative to it.
    pub as_of: NaiveDate,
    /// Fraction of rows in each dataset made defective on purpose (bad check digit, missing
    /// required item, stale update), recorded in the sidecar.
    pub defect_rate: f64,
    /// Rows per Parquet row group.
    pub row_group_rows: usize,
    /// Rows per Parquet data page; small pages let a key look-up decode little.
    pub page_rows: usize,
}

impl SynthConfig {
    pub fn new(rows: u64, seed: u64, as_of: NaiveDate) -> Self {
        SynthConfig { rows, seed, as_of, defect_rate: 0.002, row_group_rows: 131_072, page_rows: 2048 }
    }
}

/// What was generated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthReport {
    pub config: SynthConfig,
    pub household_rows: u64,
    pub social_insurance_rows: u64,
    pub housing_fund_rows: u64,
    /// Licences issued, by licence type code.
    #[serde(default)]
    pub licence_rows: std::collections::BTreeMap<String, u64>,
    pub defects: u64,
    #[serde(with = "seconds")]
    pub elapsed: Duration,
}

mod seconds {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        f64::deserialize(d).map(Duration::from_secs_f64)
    }
}

/// Whether `dir` holds a complete generated dataset (the manifest is written last) with every
/// file this release generates: a directory from a release before the licence registers is
/// generated again.
pub fn is_generated(dir: &Path) -> bool {
    dir.join(MANIFEST_FILE).is_file()
        && tongban_policy::licence::LICENCE_TYPES.iter().all(|t| dir.join(licence_file(t)).is_file())
}

/// Generates the datasets into `out`, calling `progress` with the number of household rows
/// written so far after each county. Files appear under their final names only when complete.
pub fn generate(config: &SynthConfig, out: &Path, progress: &(dyn Fn(u64) + Sync)) -> Result<SynthReport> {
    let started = Instant::now();
    fs::create_dir_all(out)?;
    let _ = fs::remove_file(out.join(MANIFEST_FILE));

    let writers = writer::Writers::start(out, config)?;
    let mut defects = std::io::BufWriter::new(fs::File::create(out.join(format!("{DEFECTS_FILE}.partial")))?);
    writeln!(defects, "dataset,key,original_key,kind,column")?;

    let mut household_rows = 0u64;
    let mut social_insurance_rows = 0u64;
    let mut housing_fund_rows = 0u64;
    let mut defect_count = 0u64;
    let mut licence_rows = std::collections::BTreeMap::new();
    let mut employers = people::EmployerDirectory::new(config.seed);

    for (division, count) in people::allocate(config.rows, config.seed) {
        if count == 0 {
            continue;
        }
        let county = people::County::generate(config, division, count, &mut employers);
        for defect in &county.defects {
            writeln!(
                defects,
                "{},{},{},{},{}",
                defect.dataset, defect.key, defect.original_key, defect.kind, defect.column
            )?;
        }
        defect_count += county.defects.len() as u64;
        household_rows += county.household.num_rows() as u64;
        social_insurance_rows += county.social_insurance.num_rows() as u64;
        housing_fund_rows += county.housing_fund.num_rows() as u64;
        let licences = licences::county_licences(
            config,
            division,
            &county.household,
            &county.social_insurance,
            &county.housing_fund,
            &employers.of(division),
        );
        for (licence_type, batch) in tongban_policy::licence::LICENCE_TYPES.iter().zip(&licences) {
            *licence_rows.entry(licence_type.code.to_owned()).or_default() += batch.num_rows() as u64;
        }
        writers.send(county.household, county.social_insurance, county.housing_fund, licences)?;
        progress(household_rows);
    }

    writers.finish(out)?;
    defects.flush()?;
    drop(defects);
    fs::rename(out.join(format!("{DEFECTS_FILE}.partial")), out.join(DEFECTS_FILE))?;

    let report = SynthReport {
        config: config.clone(),
        household_rows,
        social_insurance_rows,
        housing_fund_rows,
        licence_rows,
        defects: defect_count,
        elapsed: started.elapsed(),
    };
    fs::write(out.join(MANIFEST_FILE), serde_json::to_vec_pretty(&report)?)?;
    Ok(report)
}
