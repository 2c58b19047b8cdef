//! Synthetic people, households, insurance records and fund accounts for one county.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, Date32Builder, Decimal128Builder, Int32Builder, StringBuilder};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use chrono::{Datelike, Months, NaiveDate};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tongban_policy::Gender;
use tongban_policy::credit_code::{self, CreditCode};
use tongban_policy::division::{self, Division};
use tongban_policy::id_number::IdNumber;

use super::names::{self, SURNAMES};
use super::{SynthConfig, schema};

/// Days from 0001-01-01 to 1970-01-01, where Arrow's `Date32` counts from.
const EPOCH_DAYS_FROM_CE: i32 = 719_163;

fn date32(d: NaiveDate) -> i32 {
    d.num_days_from_ce() - EPOCH_DAYS_FROM_CE
}

/// A random stream for one purpose in one county, independent of every other stream.
pub(super) fn stream(seed: u64, code: &str, purpose: u64) -> ChaCha8Rng {
    let code: u64 = code.parse().unwrap_or(0);
    ChaCha8Rng::seed_from_u64(
        seed ^ code.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ purpose.wrapping_mul(0xD1B5_4A32_D192_ED03),
    )
}

fn pick<'a, T>(rng: &mut ChaCha8Rng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

fn pick_weighted<T: Copy>(rng: &mut ChaCha8Rng, items: &[(T, u32)]) -> T {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut roll = rng.random_range(0..total);
    for (item, weight) in items {
        if roll < *weight {
            return *item;
        }
        roll -= weight;
    }
    items[items.len() - 1].0
}

/// Splits `rows` people over the leaf divisions, in code order, in proportion to province
/// populations and a per-county weight drawn from the seed.
pub(super) fn allocate(rows: u64, seed: u64) -> Vec<(&'static Division, u64)> {
    // People are generated in the demo's provinces only, whatever the division table lists.
    let leaves: Vec<&'static Division> =
        division::leaf_divisions().filter(|d| names::is_demo_province(&d.code[..2])).collect();
    let per_province: HashMap<&str, usize> = leaves.iter().fold(HashMap::new(), |mut m, d| {
        *m.entry(&d.code[..2]).or_default() += 1;
        m
    });
    let weights: Vec<f64> = leaves
        .iter()
        .map(|d| {
            let mut rng = stream(seed, d.code, 1);
            let urban = d.name.ends_with('区') || d.name.ends_with('市');
            let county_weight = rng.random_range(0.5..1.5) * if urban { 1.4 } else { 1.0 };
            names::province_weight(&d.code[..2]) / per_province[&d.code[..2]] as f64 * county_weight
        })
        .collect();
    let total: f64 = weights.iter().sum();
    // Largest remainder, so the counts add up to exactly `rows`.
    let exact: Vec<f64> = weights.iter().map(|w| w / total * rows as f64).collect();
    let mut counts: Vec<u64> = exact.iter().map(|e| e.floor() as u64).collect();
    let mut short = rows - counts.iter().sum::<u64>();
    let mut order: Vec<usize> = (0..leaves.len()).collect();
    order.sort_by(|&a, &b| {
        (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())).then(a.cmp(&b))
    });
    for i in order.into_iter().cycle() {
        if short == 0 {
            break;
        }
        counts[i] += 1;
        short -= 1;
    }
    leaves.into_iter().zip(counts).collect()
}

#[derive(Debug, Clone)]
pub(super) struct Employer {
    pub(super) name: Arc<str>,
    pub(super) credit_code: Arc<str>,
}

/// Employers of each county, generated on first use from the seed and the county code alone,
/// so a county's employers are the same whichever county asks first.
#[derive(Debug)]
pub(super) struct EmployerDirectory {
    seed: u64,
    by_county: HashMap<&'static str, Arc<Vec<Employer>>>,
}

impl EmployerDirectory {
    pub(super) fn new(seed: u64) -> Self {
        EmployerDirectory { seed, by_county: HashMap::new() }
    }

    pub(super) fn of(&mut self, county: &'static Division) -> Arc<Vec<Employer>> {
        let seed = self.seed;
        Arc::clone(self.by_county.entry(county.code).or_insert_with(|| {
            let mut rng = stream(seed, county.code, 2);
            let short_name = county.name.trim_end_matches(['县', '区', '市']);
            let count = rng.random_range(40..160);
            let employers = (0..count)
                .map(|_| {
                    let brand = format!("{}{}", pick(&mut rng, names::PLACE), pick(&mut rng, names::PLACE));
                    let name = format!(
                        "{short_name}{brand}{}{}",
                        pick(&mut rng, names::INDUSTRIES),
                        pick(&mut rng, names::COMPANY_FORMS)
                    );
                    let organisation: String =
                        (0..8).map(|_| credit_code::ALPHABET[rng.random_range(0..31)] as char).collect();
                    let code = CreditCode::compose('9', '1', county.code, &organisation);
                    Employer { name: name.into(), credit_code: code.into() }
                })
                .collect();
            Arc::new(employers)
        }))
    }
}

/// A row made defective on purpose, as recorded in the sidecar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defect {
    pub dataset: &'static str,
    /// The key as written to the dataset.
    pub key: String,
    /// The key the row would have had without the defect.
    pub original_key: String,
    /// `bad_check_digit`, `missing_required` or `stale_update`.
    pub kind: &'static str,
    /// The column the defect is in.
    pub column: &'static str,
}

#[derive(Debug, Clone, Copy)]
enum Work {
    /// Under working age.
    Child,
    /// Working age, living off the land or informal work: resident insurance schemes.
    Resident,
    Employee {
        civil_servant: bool,
        employer: usize,
        insured_in: &'static Division,
        base: i64,
        since: NaiveDate,
    },
    Retired {
        urban: bool,
        since: NaiveDate,
    },
    Deceased,
}

#[derive(Debug)]
struct Person {
    id: String,
    name: String,
    gender: Gender,
    ethnicity: &'static str,
    birth: NaiveDate,
    household_number: Arc<str>,
    relation: &'static str,
    address: Arc<str>,
    authority: Arc<str>,
    marital: &'static str,
    status: &'static str,
    moved_in: Option<NaiveDate>,
    work: Work,
}

/// A household member before an identity number is issued.
struct Member {
    age: i32,
    gender: Gender,
    relation: &'static str,
    marital: &'static str,
    name: String,
    moved_in: Option<NaiveDate>,
}

/// One county's generated rows, sorted by identity number, and the defects made in them.
pub(super) struct County {
    pub(super) household: RecordBatch,
    pub(super) social_insurance: RecordBatch,
    pub(super) housing_fund: RecordBatch,
    pub(super) defects: Vec<Defect>,
}

fn age_at(birth: NaiveDate, day: NaiveDate) -> i32 {
    let mut age = day.year() - birth.year();
    if (day.month(), day.day()) < (birth.month(), birth.day()) {
        age -= 1;
    }
    age
}

fn birth_for_age(rng: &mut ChaCha8Rng, as_of: NaiveDate, age: i32) -> NaiveDate {
    let latest = as_of.checked_sub_months(Months::new(12 * age as u32)).unwrap_or(as_of);
    latest - chrono::Duration::days(rng.random_range(1..365))
}

fn month_string(d: NaiveDate) -> String {
    format!("{:04}{:02}", d.year(), d.month())
}

fn months_between(from: NaiveDate, to: NaiveDate) -> i32 {
    ((to.year() - from.year()) * 12 + to.month() as i32 - from.month() as i32).max(0)
}

struct Generator<'a> {
    config: &'a SynthConfig,
    county: &'static Division,
    rng: ChaCha8Rng,
    full_name: String,
    urban: bool,
    /// Next sequence numbers by birth date: (men, odd; women, even).
    sequences: HashMap<NaiveDate, (u16, u16)>,
    households: u32,
    employers: Arc<Vec<Employer>>,
}

impl Generator<'_> {
    fn surname(&mut self) -> &'static str {
        pick_weighted(&mut self.rng, SURNAMES)
    }

    fn given_name(&mut self, gender: Gender) -> String {
        let pool = match gender {
            Gender::Male => names::MALE_GIVEN,
            Gender::Female => names::FEMALE_GIVEN,
        };
        let first = *pick(&mut self.rng, pool);
        if self.rng.random_bool(0.75) {
            format!("{first}{}", pick(&mut self.rng, pool))
        } else {
            first.to_owned()
        }
    }

    /// Issues an identity number for someone born in this county, moving the birth date by a
    /// day in the rare case that day's sequence numbers are used up.
    fn issue_id(&mut self, mut birth: NaiveDate, gender: Gender) -> (String, NaiveDate) {
        loop {
            let (men, women) = self.sequences.entry(birth).or_insert((0, 0));
            let sequence = match gender {
                Gender::Male if *men < 500 => {
                    *men += 1;
                    *men * 2 - 1
                }
                Gender::Female if *women < 499 => {
                    *women += 1;
                    *women * 2
                }
                _ => {
                    birth = birth.pred_opt().expect("dates after year 1");
                    continue;
                }
            };
            return (IdNumber::compose(self.county.code, birth, sequence), birth);
        }
    }

    fn marital_status(&mut self, age: i32) -> &'static str {
        match age {
            ..22 => "10",
            22..30 => pick_weighted(&mut self.rng, &[("10", 45), ("20", 53), ("40", 2)]),
            30..70 => pick_weighted(&mut self.rng, &[("10", 6), ("20", 85), ("30", 3), ("40", 6)]),
            _ => pick_weighted(&mut self.rng, &[("20", 62), ("30", 35), ("40", 3)]),
        }
    }

    fn work(
        &mut self,
        age: i32,
        gender: Gender,
        status: &str,
        as_of: NaiveDate,
        employers: &mut EmployerDirectory,
    ) -> Work {
        if status == "死亡注销" {
            return Work::Deceased;
        }
        let retirement_age = if gender == Gender::Male { 60 } else { 55 };
        if age < 16 {
            return Work::Child;
        }
        if age >= retirement_age {
            let since = birth_years_after(as_of, age, retirement_age);
            return Work::Retired { urban: self.urban && self.rng.random_bool(0.7), since };
        }
        let employed = self.rng.random_bool(if self.urban { 0.72 } else { 0.38 }) && age >= 18;
        if !employed {
            return Work::Resident;
        }
        let civil_servant = self.rng.random_bool(0.07);
        let moves_away = !civil_servant && self.rng.random_bool(0.15);
        // A replaced division table may lack a destination; the person then works at home.
        let destination =
            moves_away.then(|| *pick(&mut self.rng, names::WORK_DESTINATIONS)).and_then(division::find);
        let (insured_in, employer) = if let Some(destination) = destination {
            let count = employers.of(destination).len();
            (destination, self.rng.random_range(0..count))
        } else {
            (self.county, self.rng.random_range(0..self.employers.len()))
        };
        let start_age = self.rng.random_range(18..=age.clamp(18, 30));
        let since =
            birth_years_after(as_of, age, start_age).max(NaiveDate::from_ymd_opt(1993, 1, 1).expect("date"));
        let base = if self.urban {
            self.rng.random_range(4_000..26_000)
        } else {
            self.rng.random_range(3_500..12_000)
        };
        Work::Employee { civil_servant, employer, insured_in, base, since }
    }
}

/// The day someone aged `age` on `as_of` turned `at`.
fn birth_years_after(as_of: NaiveDate, age: i32, at: i32) -> NaiveDate {
    as_of.checked_sub_months(Months::new(12 * (age - at).max(0) as u32)).unwrap_or(as_of)
}

impl County {
    pub(super) fn generate(
        config: &SynthConfig,
        county: &'static Division,
        count: u64,
        employers: &mut EmployerDirectory,
    ) -> County {
        let full_name = division::full_name(county.code).unwrap_or_else(|| county.name.to_owned());
        let urban =
            county.code.starts_with("11") || county.name.ends_with('区') || county.name.ends_with('市');
        let county_employers = employers.of(county);
        let mut g = Generator {
            config,
            county,
            rng: stream(config.seed, county.code, 3),
            full_name,
            urban,
            sequences: HashMap::new(),
            households: 0,
            employers: county_employers,
        };
        let ethnicities = names::ethnicities(&county.code[..2]);
        let as_of = config.as_of;
        let mut people: Vec<Person> = Vec::with_capacity(count as usize);

        while (people.len() as u64) < count {
            g.households += 1;
            let household_number: Arc<str> = format!("{}{:06}", county.code, g.households).into();
            let station = format!("{}{}", pick(&mut g.rng, names::PLACE), pick(&mut g.rng, names::PLACE));
            let address: Arc<str> = if urban {
                format!(
                    "{}{station}{}{}号{}{}{}栋{}单元{}{:02}室",
                    g.full_name,
                    pick(&mut g.rng, names::STREET_SUFFIX),
                    g.rng.random_range(1..400),
                    pick(&mut g.rng, names::PLACE),
                    pick(&mut g.rng, names::COMPOUND_SUFFIX),
                    g.rng.random_range(1..30),
                    g.rng.random_range(1..6),
                    g.rng.random_range(1..33),
                    g.rng.random_range(1..5),
                )
            } else {
                format!(
                    "{}{station}{}{}{}村{}组{}号",
                    g.full_name,
                    pick(&mut g.rng, names::TOWN_SUFFIX),
                    pick(&mut g.rng, names::PLACE),
                    pick(&mut g.rng, names::PLACE),
                    g.rng.random_range(1..12),
                    g.rng.random_range(1..120),
                )
            }
            .into();
            let authority: Arc<str> = format!("{}公安局{station}派出所", g.full_name).into();
            let ethnicity = pick_weighted(&mut g.rng, ethnicities);

            // The household: a head, perhaps a spouse, children, perhaps a parent of the head.
            let head_age = g.rng.random_range(22..88);
            let head_gender = if g.rng.random_bool(0.8) { Gender::Male } else { Gender::Female };
            let head_marital = g.marital_status(head_age);
            let family_name = g.surname();
            let mut members: Vec<Member> = Vec::new();
            let head_name = format!("{family_name}{}", g.given_name(head_gender));
            members.push(Member {
                age: head_age,
                gender: head_gender,
                relation: "02",
                marital: head_marital,
                name: head_name,
                moved_in: None,
            });
            if head_marital == "20" {
                let spouse_age = (head_age + g.rng.random_range(-5..=5)).max(20);
                let spouse_gender = if head_gender == Gender::Male { Gender::Female } else { Gender::Male };
                let spouse_name = format!("{}{}", g.surname(), g.given_name(spouse_gender));
                let married_at = g.rng.random_range(20..=spouse_age.clamp(20, 35));
                let moved_in = Some(birth_years_after(as_of, spouse_age, married_at));
                members.push(Member {
                    age: spouse_age,
                    gender: spouse_gender,
                    relation: "10",
                    marital: "20",
                    name: spouse_name,
                    moved_in,
                });
            }
            if head_marital != "10" {
                let children = pick_weighted(&mut g.rng, &[(0usize, 20), (1, 40), (2, 30), (3, 10)]);
                for _ in 0..children {
                    let age = head_age - g.rng.random_range(22..36);
                    if age < 0 {
                        continue;
                    }
                    let gender = if g.rng.random_bool(0.52) { Gender::Male } else { Gender::Female };
                    let relation = if gender == Gender::Male { "20" } else { "30" };
                    let marital = if age >= 22 && g.rng.random_bool(0.3) { "20" } else { "10" };
                    let name = format!("{family_name}{}", g.given_name(gender));
                    members.push(Member { age, gender, relation, marital, name, moved_in: None });
                }
            }
            if head_age < 60 && g.rng.random_bool(0.15) {
                let age = (head_age + g.rng.random_range(22..34)).min(100);
                let gender = if g.rng.random_bool(0.6) { Gender::Female } else { Gender::Male };
                let name = format!(
                    "{}{}",
                    if gender == Gender::Male { family_name } else { g.surname() },
                    g.given_name(gender)
                );
                members.push(Member { age, gender, relation: "50", marital: "30", name, moved_in: None });
            }

            for Member { age, gender, relation, marital, name, moved_in } in members {
                if people.len() as u64 >= count {
                    break;
                }
                let birth = birth_for_age(&mut g.rng, as_of, age);
                let (id, birth) = g.issue_id(birth, gender);
                let age = age_at(birth, as_of);
                let status = match g.rng.random_range(0..1000) {
                    n if n < (age / 10).max(1) => "死亡注销",
                    n if n < 25 => "迁出",
                    _ => "正常",
                };
                let work = g.work(age, gender, status, as_of, employers);
                let ethnicity = if relation == "10" && g.rng.random_bool(0.1) {
                    pick_weighted(&mut g.rng, ethnicities)
                } else {
                    ethnicity
                };
                people.push(Person {
                    id,
                    name,
                    gender,
                    ethnicity,
                    birth,
                    household_number: Arc::clone(&household_number),
                    relation,
                    address: Arc::clone(&address),
                    authority: Arc::clone(&authority),
                    marital,
                    status,
                    moved_in,
                    work,
                });
            }
        }
        people.sort_unstable_by(|a, b| a.id.cmp(&b.id));

        let mut defects = Vec::new();
        let mut defect_rng = stream(config.seed, county.code, 4);
        let household = household_batch(&people, config, &mut defect_rng, &mut defects);
        let mut records_rng = stream(config.seed, county.code, 5);
        let (social_insurance, housing_fund) =
            insurance_batches(&people, &g, employers, &mut records_rng, &mut defect_rng, &mut defects);
        County { household, social_insurance, housing_fund, defects }
    }
}

/// Decides which defect, if any, a row gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DefectKind {
    BadCheckDigit,
    MissingRequired,
    StaleUpdate,
}

fn roll_defect(rng: &mut ChaCha8Rng, rate: f64) -> Option<DefectKind> {
    if !rng.random_bool(rate.clamp(0.0, 1.0)) {
        return None;
    }
    Some(match rng.random_range(0..3) {
        0 => DefectKind::BadCheckDigit,
        1 => DefectKind::MissingRequired,
        _ => DefectKind::StaleUpdate,
    })
}

/// A person's key as a dependent dataset (social insurance, housing fund) writes it. A wrong
/// check character is a defect of the person, so it is on all of the person's rows there, which
/// keeps the dataset sorted by key.
fn dependent_key(id: &str, config: &SynthConfig, rng: &mut ChaCha8Rng) -> (String, bool) {
    let defective = rng.random_bool((config.defect_rate / 3.0).clamp(0.0, 1.0));
    let key = if defective { corrupt_check_digit(id, rng) } else { id.to_owned() };
    (key, defective)
}

/// The defect of one row of a dependent dataset, and the required column it empties.
#[derive(Debug, Clone, Copy)]
struct RowDefect {
    kind: Option<DefectKind>,
    missing: &'static str,
}

impl RowDefect {
    /// Draws the row's defect; `required` are the two columns a missing item may be in.
    fn roll(config: &SynthConfig, rng: &mut ChaCha8Rng, required: [&'static str; 2]) -> Self {
        let kind = match roll_defect(rng, config.defect_rate * 2.0 / 3.0) {
            Some(DefectKind::BadCheckDigit) | None => None,
            other => other,
        };
        let missing = if kind == Some(DefectKind::MissingRequired) {
            if rng.random_bool(0.5) { required[0] } else { required[1] }
        } else {
            ""
        };
        RowDefect { kind, missing }
    }

    fn stale(self) -> bool {
        self.kind == Some(DefectKind::StaleUpdate)
    }

    /// Lists the row's defects, and the person's key defect, in the sidecar.
    fn record(
        self,
        defects: &mut Vec<Defect>,
        dataset: &'static str,
        key: &str,
        original: &str,
        key_defect: bool,
    ) {
        let defect = |kind, column| Defect {
            dataset,
            key: key.to_owned(),
            original_key: original.to_owned(),
            kind,
            column,
        };
        if key_defect {
            defects.push(defect("bad_check_digit", "id_number"));
        }
        if let Some(kind) = self.kind {
            defects.push(defect(kind.label(), if self.stale() { "updated_on" } else { self.missing }));
        }
    }
}

/// The same number with a check character that is wrong.
fn corrupt_check_digit(id: &str, rng: &mut ChaCha8Rng) -> String {
    let current = id.as_bytes()[17];
    let candidates: Vec<u8> = b"0123456789X".iter().copied().filter(|&c| c != current).collect();
    format!("{}{}", &id[..17], *pick(rng, &candidates) as char)
}

fn updated_on(config: &SynthConfig, rng: &mut ChaCha8Rng, stale: bool) -> i32 {
    let days_ago = if stale { rng.random_range(3 * 365..8 * 365) } else { rng.random_range(0..7) };
    date32(config.as_of - chrono::Duration::days(days_ago))
}

fn finish(schema: SchemaRef, columns: Vec<ArrayRef>) -> RecordBatch {
    RecordBatch::try_new(schema, columns).expect("columns are built to the schema")
}

fn household_batch(
    people: &[Person],
    config: &SynthConfig,
    rng: &mut ChaCha8Rng,
    defects: &mut Vec<Defect>,
) -> RecordBatch {
    let n = people.len();
    let mut id = StringBuilder::with_capacity(n, n * 18);
    let mut name = StringBuilder::with_capacity(n, n * 9);
    let mut gender = StringBuilder::with_capacity(n, n);
    let mut ethnicity = StringBuilder::with_capacity(n, n * 2);
    let mut birth = Date32Builder::with_capacity(n);
    let mut household_number = StringBuilder::with_capacity(n, n * 12);
    let mut relation = StringBuilder::with_capacity(n, n * 2);
    let mut division_code = StringBuilder::with_capacity(n, n * 6);
    let mut address = StringBuilder::with_capacity(n, n * 60);
    let mut authority = StringBuilder::with_capacity(n, n * 40);
    let mut marital = StringBuilder::with_capacity(n, n * 2);
    let mut status = StringBuilder::with_capacity(n, n * 6);
    let mut moved_in = Date32Builder::with_capacity(n);
    let mut updated = Date32Builder::with_capacity(n);

    let county_code = people.first().map(|p| p.id[..6].to_owned()).unwrap_or_default();
    for p in people {
        let defect = roll_defect(rng, config.defect_rate);
        let mut key = p.id.clone();
        let mut defect_column = "";
        match defect {
            Some(DefectKind::BadCheckDigit) => {
                key = corrupt_check_digit(&p.id, rng);
                defect_column = "id_number";
            }
            Some(DefectKind::MissingRequired) => {
                defect_column = if rng.random_bool(0.5) { "name" } else { "division_code" };
            }
            Some(DefectKind::StaleUpdate) => defect_column = "updated_on",
            None => {}
        }
        id.append_value(&key);
        if defect_column == "name" {
            name.append_null()
        } else {
            name.append_value(&p.name)
        }
        gender.append_value(p.gender.code());
        ethnicity.append_value(p.ethnicity);
        birth.append_value(date32(p.birth));
        household_number.append_value(&*p.household_number);
        relation.append_value(p.relation);
        if defect_column == "division_code" {
            division_code.append_null()
        } else {
            division_code.append_value(&county_code)
        }
        address.append_value(&*p.address);
        authority.append_value(&*p.authority);
        marital.append_value(p.marital);
        status.append_value(p.status);
        moved_in.append_option(p.moved_in.map(date32));
        updated.append_value(updated_on(config, rng, defect == Some(DefectKind::StaleUpdate)));
        if let Some(kind) = defect {
            defects.push(Defect {
                dataset: "household",
                key,
                original_key: p.id.clone(),
                kind: kind.label(),
                column: defect_column,
            });
        }
    }
    finish(
        schema::household(),
        vec![
            Arc::new(id.finish()),
            Arc::new(name.finish()),
            Arc::new(gender.finish()),
            Arc::new(ethnicity.finish()),
            Arc::new(birth.finish()),
            Arc::new(household_number.finish()),
            Arc::new(relation.finish()),
            Arc::new(division_code.finish()),
            Arc::new(address.finish()),
            Arc::new(authority.finish()),
            Arc::new(marital.finish()),
            Arc::new(status.finish()),
            Arc::new(moved_in.finish()),
            Arc::new(updated.finish()),
        ],
    )
}

impl DefectKind {
    fn label(self) -> &'static str {
        match self {
            DefectKind::BadCheckDigit => "bad_check_digit",
            DefectKind::MissingRequired => "missing_required",
            DefectKind::StaleUpdate => "stale_update",
        }
    }
}

/// Money in fen (hundredths of a yuan), as `Decimal128(14, 2)` stores it.
fn fen(yuan: f64) -> i128 {
    (yuan * 100.0).round() as i128
}

struct Money(Decimal128Builder);

impl Money {
    fn new(n: usize, precision: u8) -> Self {
        Money(
            Decimal128Builder::with_capacity(n)
                .with_precision_and_scale(precision, 2)
                .expect("valid decimal"),
        )
    }
    fn push(&mut self, value: Option<i128>) {
        self.0.append_option(value);
    }
    fn finish(mut self) -> ArrayRef {
        Arc::new(self.0.finish())
    }
}

struct SocialColumns {
    id: StringBuilder,
    name: StringBuilder,
    personal_number: StringBuilder,
    insured_division: StringBuilder,
    insurance_type: StringBuilder,
    status: StringBuilder,
    first_insured: Date32Builder,
    base: Money,
    employer_part: Money,
    personal_part: Money,
    last_paid: StringBuilder,
    paid_months: Int32Builder,
    employer_code: StringBuilder,
    employer_name: StringBuilder,
    updated: Date32Builder,
}

struct FundColumns {
    id: StringBuilder,
    name: StringBuilder,
    account: StringBuilder,
    employer_name: StringBuilder,
    employer_code: StringBuilder,
    base: Money,
    employer_rate: Money,
    personal_rate: Money,
    deposit: Money,
    balance: Money,
    opened: Date32Builder,
    paid_through: StringBuilder,
    status: StringBuilder,
    consecutive: Int32Builder,
    loans: Int32Builder,
    loan_status: StringBuilder,
    updated: Date32Builder,
}

/// One social insurance row before it is appended.
struct Policy {
    insurance_type: &'static str,
    status: &'static str,
    first: NaiveDate,
    base: Option<i64>,
    employer_rate: f64,
    personal_rate: f64,
    /// Annual flat contribution for resident schemes, in yuan.
    flat: Option<f64>,
    last_paid: NaiveDate,
}

fn insurance_batches(
    people: &[Person],
    g: &Generator<'_>,
    employers: &mut EmployerDirectory,
    rng: &mut ChaCha8Rng,
    defect_rng: &mut ChaCha8Rng,
    defects: &mut Vec<Defect>,
) -> (RecordBatch, RecordBatch) {
    let config = g.config;
    let as_of = config.as_of;
    let last_month = as_of.checked_sub_months(Months::new(1)).unwrap_or(as_of);
    let n = people.len() * 3;
    let mut s = SocialColumns {
        id: StringBuilder::with_capacity(n, n * 18),
        name: StringBuilder::with_capacity(n, n * 9),
        personal_number: StringBuilder::with_capacity(n, n * 12),
        insured_division: StringBuilder::with_capacity(n, n * 6),
        insurance_type: StringBuilder::with_capacity(n, n * 3),
        status: StringBuilder::with_capacity(n, n * 12),
        first_insured: Date32Builder::with_capacity(n),
        base: Money::new(n, 14),
        employer_part: Money::new(n, 14),
        personal_part: Money::new(n, 14),
        last_paid: StringBuilder::with_capacity(n, n * 6),
        paid_months: Int32Builder::with_capacity(n),
        employer_code: StringBuilder::with_capacity(n, n * 18),
        employer_name: StringBuilder::with_capacity(n, n * 30),
        updated: Date32Builder::with_capacity(n),
    };
    let m = people.len() / 2;
    let mut f = FundColumns {
        id: StringBuilder::with_capacity(m, m * 18),
        name: StringBuilder::with_capacity(m, m * 9),
        account: StringBuilder::with_capacity(m, m * 14),
        employer_name: StringBuilder::with_capacity(m, m * 30),
        employer_code: StringBuilder::with_capacity(m, m * 18),
        base: Money::new(m, 14),
        employer_rate: Money::new(m, 5),
        personal_rate: Money::new(m, 5),
        deposit: Money::new(m, 14),
        balance: Money::new(m, 14),
        opened: Date32Builder::with_capacity(m),
        paid_through: StringBuilder::with_capacity(m, m * 6),
        status: StringBuilder::with_capacity(m, m * 6),
        consecutive: Int32Builder::with_capacity(m),
        loans: Int32Builder::with_capacity(m),
        loan_status: StringBuilder::with_capacity(m, m * 12),
        updated: Date32Builder::with_capacity(m),
    };

    let mut insured = 0u32;
    let mut accounts = 0u32;
    for p in people {
        let age = age_at(p.birth, as_of);
        let resident_start = |from: NaiveDate, rng: &mut ChaCha8Rng| {
            from.max(p.birth) + chrono::Duration::days(rng.random_range(0..400))
        };
        let mut policies: Vec<Policy> = Vec::new();
        let mut employer: Option<Employer> = None;
        let mut insured_in = g.county;
        match p.work {
            Work::Child => {
                if rng.random_bool(0.92) {
                    let first = resident_start(NaiveDate::from_ymd_opt(2017, 1, 1).expect("date"), rng);
                    policies.push(Policy {
                        insurance_type: "390",
                        status: "参保缴费",
                        first,
                        base: None,
                        employer_rate: 0.0,
                        personal_rate: 0.0,
                        flat: Some(380.0),
                        last_paid: last_month,
                    });
                }
            }
            Work::Resident => {
                if rng.random_bool(0.85) {
                    let first = resident_start(
                        birth_years_after(as_of, age, 16)
                            .max(NaiveDate::from_ymd_opt(2012, 7, 1).expect("date")),
                        rng,
                    );
                    let flat = *pick(rng, &[200.0, 300.0, 500.0, 1000.0, 2000.0]);
                    policies.push(Policy {
                        insurance_type: "170",
                        status: "参保缴费",
                        first,
                        base: None,
                        employer_rate: 0.0,
                        personal_rate: 0.0,
                        flat: Some(flat),
                        last_paid: last_month,
                    });
                }
                if rng.random_bool(0.95) {
                    let first = resident_start(NaiveDate::from_ymd_opt(2017, 1, 1).expect("date"), rng);
                    policies.push(Policy {
                        insurance_type: "390",
                        status: "参保缴费",
                        first,
                        base: None,
                        employer_rate: 0.0,
                        personal_rate: 0.0,
                        flat: Some(380.0),
                        last_paid: last_month,
                    });
                }
            }
            Work::Employee { civil_servant, employer: index, insured_in: place, base, since } => {
                insured_in = place;
                employer = Some(employers.of(place)[index].clone());
                let suspended = rng.random_bool(0.08);
                let (status, last_paid) = if suspended {
                    (
                        "暂停缴费",
                        as_of
                            .checked_sub_months(Months::new(rng.random_range(3..36)))
                            .unwrap_or(as_of)
                            .max(since),
                    )
                } else {
                    ("参保缴费", last_month)
                };
                let pension = if civil_servant {
                    ("120", NaiveDate::from_ymd_opt(2014, 10, 1).expect("date").max(since))
                } else {
                    ("110", since)
                };
                for (kind, first, er, pr) in [
                    (pension.0, pension.1, 0.16, 0.08),
                    ("310", since.max(NaiveDate::from_ymd_opt(1999, 1, 1).expect("date")), 0.07, 0.02),
                    ("210", since, 0.005, 0.005),
                    ("410", since, 0.004, 0.0),
                    ("510", since, 0.008, 0.0),
                ] {
                    policies.push(Policy {
                        insurance_type: kind,
                        status,
                        first,
                        base: Some(base),
                        employer_rate: er,
                        personal_rate: pr,
                        flat: None,
                        last_paid,
                    });
                }
            }
            Work::Retired { urban, since } => {
                if urban {
                    let first = birth_years_after(as_of, age, 22)
                        .max(NaiveDate::from_ymd_opt(1993, 1, 1).expect("date"));
                    policies.push(Policy {
                        insurance_type: "110",
                        status: "待遇领取",
                        first,
                        base: None,
                        employer_rate: 0.0,
                        personal_rate: 0.0,
                        flat: None,
                        last_paid: since,
                    });
                    policies.push(Policy {
                        insurance_type: "310",
                        status: "待遇领取",
                        first: first.max(NaiveDate::from_ymd_opt(1999, 1, 1).expect("date")),
                        base: None,
                        employer_rate: 0.0,
                        personal_rate: 0.0,
                        flat: None,
                        last_paid: since,
                    });
                } else {
                    let first = resident_start(NaiveDate::from_ymd_opt(2012, 7, 1).expect("date"), rng);
                    policies.push(Policy {
                        insurance_type: "170",
                        status: "待遇领取",
                        first,
                        base: None,
                        employer_rate: 0.0,
                        personal_rate: 0.0,
                        flat: None,
                        last_paid: first,
                    });
                    policies.push(Policy {
                        insurance_type: "390",
                        status: "参保缴费",
                        first: resident_start(NaiveDate::from_ymd_opt(2017, 1, 1).expect("date"), rng),
                        base: None,
                        employer_rate: 0.0,
                        personal_rate: 0.0,
                        flat: Some(380.0),
                        last_paid: last_month,
                    });
                }
            }
            Work::Deceased => {
                if age > 30 && rng.random_bool(0.5) {
                    let first = NaiveDate::from_ymd_opt(2012, 7, 1).expect("date").max(p.birth);
                    let ended = as_of
                        .checked_sub_months(Months::new(rng.random_range(1..60)))
                        .unwrap_or(as_of)
                        .max(first);
                    policies.push(Policy {
                        insurance_type: "170",
                        status: "终止参保",
                        first,
                        base: None,
                        employer_rate: 0.0,
                        personal_rate: 0.0,
                        flat: None,
                        last_paid: ended,
                    });
                }
            }
        }

        if !policies.is_empty() {
            insured += 1;
            let personal_number = format!("{}{:06}", &g.county.code, insured);
            let (key, key_defect) = dependent_key(&p.id, config, defect_rng);
            for policy in policies {
                let row_defect = RowDefect::roll(config, defect_rng, ["name", "insurance_type"]);
                s.id.append_value(&key);
                if row_defect.missing == "name" {
                    s.name.append_null()
                } else {
                    s.name.append_value(&p.name)
                }
                s.personal_number.append_value(&personal_number);
                s.insured_division.append_value(insured_in.code);
                if row_defect.missing == "insurance_type" {
                    s.insurance_type.append_null()
                } else {
                    s.insurance_type.append_value(policy.insurance_type)
                }
                s.status.append_value(policy.status);
                s.first_insured.append_value(date32(policy.first));
                s.base.push(policy.base.map(|b| fen(b as f64)));
                match (policy.base, policy.flat) {
                    (Some(base), _) => {
                        s.employer_part.push(Some(fen(base as f64 * policy.employer_rate)));
                        s.personal_part.push(Some(fen(base as f64 * policy.personal_rate)));
                    }
                    (None, Some(flat)) => {
                        s.employer_part.push(None);
                        s.personal_part.push(Some(fen(flat)));
                    }
                    (None, None) => {
                        s.employer_part.push(None);
                        s.personal_part.push(None);
                    }
                }
                s.last_paid.append_value(month_string(policy.last_paid));
                s.paid_months.append_value(months_between(policy.first, policy.last_paid) + 1);
                match &employer {
                    Some(e) => {
                        s.employer_code.append_value(&*e.credit_code);
                        s.employer_name.append_value(&*e.name);
                    }
                    None => {
                        s.employer_code.append_null();
                        s.employer_name.append_null();
                    }
                }
                s.updated.append_value(updated_on(config, defect_rng, row_defect.stale()));
                row_defect.record(defects, "social_insurance", &key, &p.id, key_defect);
            }
        }

        // Housing fund accounts: every civil servant, most employees.
        if let (Work::Employee { civil_servant, base, since, .. }, Some(employer)) = (p.work, &employer)
            && (civil_servant || rng.random_bool(0.62))
        {
            accounts += 1;
            let (key, key_defect) = dependent_key(&p.id, config, defect_rng);
            let row_defect = RowDefect::roll(config, defect_rng, ["name", "account_status"]);
            let rate = *pick(rng, &[5.0, 7.0, 8.0, 10.0, 12.0]);
            let deposit = base as f64 * rate * 2.0 / 100.0;
            let opened = since.max(NaiveDate::from_ymd_opt(1999, 4, 3).expect("date"))
                + chrono::Duration::days(rng.random_range(0..90));
            let status = pick_weighted(rng, &[("正常", 85), ("封存", 12), ("销户", 3)]);
            let paid_through = if status == "正常" {
                last_month
            } else {
                as_of.checked_sub_months(Months::new(rng.random_range(2..48))).unwrap_or(as_of).max(opened)
            };
            let months = months_between(opened, paid_through) + 1;
            let consecutive = if status == "正常" { rng.random_range(1..=months.max(1)) } else { 0 };
            let balance =
                if status == "销户" { 0.0 } else { deposit * months as f64 * rng.random_range(0.15..0.9) };
            let loans = pick_weighted(rng, &[(0, 70), (1, 25), (2, 5)]);
            let loan_status = if loans == 0 {
                "无贷款"
            } else {
                pick_weighted(rng, &[("正常还款", 80), ("已结清", 15), ("逾期", 5)])
            };

            f.id.append_value(&key);
            if row_defect.missing == "name" {
                f.name.append_null()
            } else {
                f.name.append_value(&p.name)
            }
            f.account.append_value(format!("{}{:08}", &g.county.code, accounts));
            f.employer_name.append_value(&*employer.name);
            f.employer_code.append_value(&*employer.credit_code);
            f.base.push(Some(fen(base as f64)));
            f.employer_rate.push(Some(fen(rate)));
            f.personal_rate.push(Some(fen(rate)));
            f.deposit.push(Some(fen(deposit)));
            f.balance.push(Some(fen(balance)));
            f.opened.append_value(date32(opened));
            f.paid_through.append_value(month_string(paid_through));
            if row_defect.missing == "account_status" {
                f.status.append_null()
            } else {
                f.status.append_value(status)
            }
            f.consecutive.append_value(consecutive);
            f.loans.append_value(loans);
            f.loan_status.append_value(loan_status);
            f.updated.append_value(updated_on(config, defect_rng, row_defect.stale()));
            row_defect.record(defects, "housing_fund", &key, &p.id, key_defect);
        }
    }

    let social = finish(
        schema::social_insurance(),
        vec![
            Arc::new(s.id.finish()),
            Arc::new(s.name.finish()),
            Arc::new(s.personal_number.finish()),
            Arc::new(s.insured_division.finish()),
            Arc::new(s.insurance_type.finish()),
            Arc::new(s.status.finish()),
            Arc::new(s.first_insured.finish()),
            s.base.finish(),
            s.employer_part.finish(),
            s.personal_part.finish(),
            Arc::new(s.last_paid.finish()),
            Arc::new(s.paid_months.finish()),
            Arc::new(s.employer_code.finish()),
            Arc::new(s.employer_name.finish()),
            Arc::new(s.updated.finish()),
        ],
    );
    let fund = finish(
        schema::housing_fund(),
        vec![
            Arc::new(f.id.finish()),
            Arc::new(f.name.finish()),
            Arc::new(f.account.finish()),
            Arc::new(f.employer_name.finish()),
            Arc::new(f.employer_code.finish()),
            f.base.finish(),
            f.employer_rate.finish(),
            f.personal_rate.finish(),
            f.deposit.finish(),
            f.balance.finish(),
            Arc::new(f.opened.finish()),
            Arc::new(f.paid_through.finish()),
            Arc::new(f.status.finish()),
            Arc::new(f.consecutive.finish()),
            Arc::new(f.loans.finish()),
            Arc::new(f.loan_status.finish()),
            Arc::new(f.updated.finish()),
        ],
    );
    (social, fund)
}
