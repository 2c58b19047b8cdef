//! Issued licences (电子证照 and 电子证明), one register per licence type, derived from each
//! county's generated people and employers so that every licence names a holder the other
//! datasets know: household registers for heads of household, marriage certificates for married
//! people (with the spouse where the household holds one), certificates of social insurance and
//! housing fund for a share of the insured and of fund accounts, and business licences for the
//! county's employers.
//!
//! Each register is keyed by its licence number: the issuing county's code, the type's digit
//! and a sequence in the county, so that counties written in code order give a sorted file.
//! A licence's face is written as text, as the face prints it.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Date32Builder, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Date32Type, Decimal128Type, Int32Type, Schema, SchemaRef};
use chrono::{Datelike, Days, NaiveDate};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tongban_policy::IdNumber;
use tongban_policy::credit_code::{self, CreditCode};
use tongban_policy::division::Division;
use tongban_policy::licence::{LICENCE_TYPES, LicenceType, REGISTER_COLUMNS, RecordedStatus};

use crate::SynthConfig;
use crate::people::{Employer, stream};
use crate::schema::field;

/// Share of the insured and of fund accounts holding a certificate: certificates are issued
/// on request, not to everyone.
const CERTIFICATE_SHARE: f64 = 0.2;
/// Share of licences revoked (撤销) in the register.
const REVOKED_SHARE: f64 = 0.01;

/// The Arrow schema of `licence_type`'s register.
pub fn schema(licence_type: &LicenceType) -> SchemaRef {
    let mut fields = Vec::with_capacity(REGISTER_COLUMNS.len() + licence_type.items.len());
    for (name, label) in REGISTER_COLUMNS {
        let data_type =
            if name.ends_with("_on") || *name == "valid_until" { DataType::Date32 } else { DataType::Utf8 };
        fields.push(field(name, label, data_type, *name == "valid_until"));
    }
    for item in licence_type.items {
        fields.push(field(item.name, item.label, DataType::Utf8, !item.required));
    }
    Arc::new(Schema::new(fields))
}

/// One licence as the generator makes it.
struct Issued {
    holder: String,
    holder_name: String,
    issuer_credit_code: String,
    issuer_name: String,
    issued_on: NaiveDate,
    surface: Vec<Option<String>>,
}

/// The registers of one county, in [`LICENCE_TYPES`] order.
pub(crate) fn county_licences(
    config: &SynthConfig,
    county: &'static Division,
    household: &RecordBatch,
    social_insurance: &RecordBatch,
    housing_fund: &RecordBatch,
    employers: &[Employer],
) -> Vec<RecordBatch> {
    let mut rng = stream(config.seed, county.code, 7);
    let county_name =
        tongban_policy::division::full_name(county.code).unwrap_or_else(|| county.name.to_owned());
    let authority = |rng: &mut ChaCha8Rng, suffix: &str| {
        let organisation: String =
            (0..8).map(|_| credit_code::ALPHABET[rng.random_range(0..31)] as char).collect();
        (CreditCode::compose('1', '1', county.code, &organisation), format!("{county_name}{suffix}"))
    };
    let police = authority(&mut rng, "公安局");
    let civil_affairs = authority(&mut rng, "民政局");
    let social_security = authority(&mut rng, "社会保险事业管理中心");
    let fund_centre = authority(&mut rng, "住房公积金管理中心");
    let market = authority(&mut rng, "市场监督管理局");

    let as_of = config.as_of;
    let mut registers: Vec<Vec<Issued>> = (0..LICENCE_TYPES.len()).map(|_| Vec::new()).collect();

    // Households and marriages, from the household register.
    let h = Columns(household);
    let id = h.text("id_number");
    let name = h.text("name");
    let relation = h.text("relation_to_head");
    let household_number = h.text("household_number");
    let address = h.text("address");
    let marital = h.text("marital_status");
    let authority_of = h.text("registration_authority");
    let birth = h.dates("birth_date");
    let moved_in = h.dates("moved_in_date");
    let mut members: HashMap<&str, usize> = HashMap::new();
    let mut couples: HashMap<&str, [Option<usize>; 2]> = HashMap::new();
    for row in 0..household.num_rows() {
        let Some(number) = household_number.value(row) else { continue };
        *members.entry(number).or_default() += 1;
        match relation.value(row) {
            Some("02") => couples.entry(number).or_default()[0] = Some(row),
            Some("10") => couples.entry(number).or_default()[1] = Some(row),
            _ => {}
        }
    }
    let person = |row: usize| -> Option<(String, String)> {
        let id = IdNumber::parse(id.value(row)?).ok()?;
        Some((id.to_string(), name.value(row)?.to_owned()))
    };
    for row in 0..household.num_rows() {
        let Some((holder, holder_name)) = person(row) else { continue };
        let number = household_number.value(row);
        if relation.value(row) == Some("02")
            && let Some(number) = number
        {
            let issued_on = moved_in.value(row).unwrap_or_else(|| day_between(&mut rng, as_of, 20 * 365));
            registers[0].push(Issued {
                holder: holder.clone(),
                holder_name: holder_name.clone(),
                issuer_credit_code: police.0.clone(),
                issuer_name: police.1.clone(),
                issued_on: issued_on.min(as_of),
                surface: vec![
                    Some(number.to_owned()),
                    Some(holder_name.clone()),
                    Some(holder.clone()),
                    address.value(row).map(str::to_owned),
                    Some(members.get(number).copied().unwrap_or(1).to_string()),
                    authority_of.value(row).map(str::to_owned).or_else(|| Some(police.1.clone())),
                ],
            });
        }
        if marital.value(row) == Some("20") {
            let spouse = number.and_then(|n| couples.get(n)).and_then(|pair| match relation.value(row) {
                Some("02") => pair[1],
                Some("10") => pair[0],
                _ => None,
            });
            let spouse = spouse.and_then(person);
            // Both spouses' certificates carry the day of the marriage: drawn from the pair's
            // household number, so that each draws the same day.
            let married_at = birth.value(row).map_or(as_of, |born| {
                let seed = number
                    .map_or(row as u64, |n| n.bytes().fold(0u64, |a, b| a.wrapping_mul(31) + u64::from(b)));
                let years = 22 + seed % 10;
                born.checked_add_days(Days::new(years * 365 + seed % 300)).unwrap_or(as_of)
            });
            let (spouse_name, spouse_id) = spouse.map_or((None, None), |(i, n)| (Some(n), Some(i)));
            registers[1].push(Issued {
                holder: holder.clone(),
                holder_name: holder_name.clone(),
                issuer_credit_code: civil_affairs.0.clone(),
                issuer_name: civil_affairs.1.clone(),
                issued_on: married_at.min(as_of),
                surface: vec![
                    Some(holder_name.clone()),
                    Some(holder.clone()),
                    spouse_name,
                    spouse_id,
                    Some(married_at.min(as_of).to_string()),
                    Some(civil_affairs.1.clone()),
                ],
            });
        }
    }

    // Certificates of social insurance: one for a share of the people insured here, of their
    // first insurance in the register.
    let s = Columns(social_insurance);
    let (id, name) = (s.text("id_number"), s.text("name"));
    let (insurance_type, status, employer) =
        (s.text("insurance_type"), s.text("status"), s.text("employer_name"));
    let first_insured = s.dates("first_insured_on");
    let paid_months = social_insurance.column_by_name("paid_months").map(|c| c.as_primitive::<Int32Type>());
    let mut previous: Option<&str> = None;
    for row in 0..social_insurance.num_rows() {
        let key = id.value(row);
        if key == previous {
            continue;
        }
        previous = key;
        let (Some(key), Some(holder_name)) = (key, name.value(row)) else { continue };
        let Ok(holder) = IdNumber::parse(key) else { continue };
        if !rng.random_bool(CERTIFICATE_SHARE) {
            continue;
        }
        registers[2].push(Issued {
            holder: holder.to_string(),
            holder_name: holder_name.to_owned(),
            issuer_credit_code: social_security.0.clone(),
            issuer_name: social_security.1.clone(),
            issued_on: day_between(&mut rng, as_of, 180),
            surface: vec![
                Some(holder_name.to_owned()),
                Some(holder.to_string()),
                insurance_type.value(row).map(str::to_owned),
                status.value(row).map(str::to_owned),
                first_insured.value(row).map(|d| d.to_string()),
                paid_months.and_then(|c| c.is_valid(row).then(|| c.value(row).to_string())),
                employer.value(row).map(str::to_owned),
            ],
        });
    }

    // Certificates of housing fund deposits, for a share of the accounts.
    let f = Columns(housing_fund);
    let (id, name, account) = (f.text("id_number"), f.text("name"), f.text("account_number"));
    let (employer, paid_through, account_status) =
        (f.text("employer_name"), f.text("paid_through_month"), f.text("account_status"));
    let deposit = housing_fund.column_by_name("monthly_deposit").map(|c| c.as_primitive::<Decimal128Type>());
    for row in 0..housing_fund.num_rows() {
        let (Some(key), Some(holder_name), Some(account)) =
            (id.value(row), name.value(row), account.value(row))
        else {
            continue;
        };
        let Ok(holder) = IdNumber::parse(key) else { continue };
        if !rng.random_bool(CERTIFICATE_SHARE) {
            continue;
        }
        registers[3].push(Issued {
            holder: holder.to_string(),
            holder_name: holder_name.to_owned(),
            issuer_credit_code: fund_centre.0.clone(),
            issuer_name: fund_centre.1.clone(),
            issued_on: day_between(&mut rng, as_of, 180),
            surface: vec![
                Some(holder_name.to_owned()),
                Some(holder.to_string()),
                Some(account.to_owned()),
                employer.value(row).map(str::to_owned),
                deposit.and_then(|c| c.is_valid(row).then(|| yuan(c.value(row)))),
                paid_through.value(row).map(str::to_owned),
                account_status.value(row).map(str::to_owned),
            ],
        });
    }

    // Business licences of the county's employers, each represented by one of its people.
    let names = Columns(household).text("name");
    for employer in employers {
        let representative = (household.num_rows() > 0)
            .then(|| names.value(rng.random_range(0..household.num_rows())))
            .flatten()
            .map_or_else(|| "未登记".to_owned(), str::to_owned);
        let entity_type = if employer.name.ends_with("股份有限公司") {
            "股份有限公司"
        } else if employer.name.ends_with("有限公司") {
            "有限责任公司"
        } else {
            "其他企业"
        };
        let established_on = day_between(&mut rng, as_of, 25 * 365);
        registers[4].push(Issued {
            holder: employer.credit_code.to_string(),
            holder_name: employer.name.to_string(),
            issuer_credit_code: market.0.clone(),
            issuer_name: market.1.clone(),
            issued_on: established_on,
            surface: vec![
                Some(employer.credit_code.to_string()),
                Some(employer.name.to_string()),
                Some(entity_type.to_owned()),
                Some(representative),
                Some(established_on.to_string()),
                Some(market.1.clone()),
            ],
        });
    }

    LICENCE_TYPES
        .iter()
        .zip(registers)
        .map(|(licence_type, issued)| register(licence_type, county, issued, as_of, &mut rng))
        .collect()
}

/// One type's register for a county, numbered in the order the licences were made.
fn register(
    licence_type: &'static LicenceType,
    county: &Division,
    issued: Vec<Issued>,
    as_of: NaiveDate,
    rng: &mut ChaCha8Rng,
) -> RecordBatch {
    // A register issues no licence whose face would lack a required item: the record behind
    // it is one of the defective rows the generator makes on purpose.
    let issued: Vec<Issued> = issued
        .into_iter()
        .filter(|l| {
            licence_type.items.iter().zip(&l.surface).all(|(item, value)| !item.required || value.is_some())
        })
        .collect();
    let n = issued.len();
    let mut number = StringBuilder::with_capacity(n, n * 15);
    let mut holder = StringBuilder::with_capacity(n, n * 18);
    let mut holder_name = StringBuilder::with_capacity(n, n * 12);
    let mut issuer_code = StringBuilder::with_capacity(n, n * 18);
    let mut issuer_name = StringBuilder::with_capacity(n, n * 30);
    let mut issued_on = Date32Builder::with_capacity(n);
    let mut valid_until = Date32Builder::with_capacity(n);
    let mut status = StringBuilder::with_capacity(n, n * 6);
    let mut updated_on = Date32Builder::with_capacity(n);
    let mut surface: Vec<StringBuilder> = licence_type.items.iter().map(|_| StringBuilder::new()).collect();
    for (sequence, licence) in issued.into_iter().enumerate() {
        number.append_value(format!("{}{}{:08}", county.code, licence_type.number_digit, sequence + 1));
        holder.append_value(&licence.holder);
        holder_name.append_value(&licence.holder_name);
        issuer_code.append_value(&licence.issuer_credit_code);
        issuer_name.append_value(&licence.issuer_name);
        issued_on.append_value(days_since_epoch(licence.issued_on));
        valid_until.append_option(licence_type.validity.valid_until(licence.issued_on).map(days_since_epoch));
        let recorded =
            if rng.random_bool(REVOKED_SHARE) { RecordedStatus::Revoked } else { RecordedStatus::Issued };
        status.append_value(recorded.as_str());
        updated_on.append_value(days_since_epoch(as_of));
        for (column, value) in surface.iter_mut().zip(licence.surface) {
            column.append_option(value);
        }
    }
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(number.finish()),
        Arc::new(holder.finish()),
        Arc::new(holder_name.finish()),
        Arc::new(issuer_code.finish()),
        Arc::new(issuer_name.finish()),
        Arc::new(issued_on.finish()),
        Arc::new(valid_until.finish()),
        Arc::new(status.finish()),
        Arc::new(updated_on.finish()),
    ];
    columns.extend(surface.iter_mut().map(|c| Arc::new(c.finish()) as ArrayRef));
    RecordBatch::try_new(schema(licence_type), columns).expect("columns match the register's schema")
}

/// A day in the `span` days up to `as_of`.
fn day_between(rng: &mut ChaCha8Rng, as_of: NaiveDate, span: u64) -> NaiveDate {
    as_of.checked_sub_days(Days::new(rng.random_range(0..span.max(1)))).unwrap_or(as_of)
}

fn days_since_epoch(day: NaiveDate) -> i32 {
    day.num_days_from_ce() - 719_163
}

/// An amount in fen as yuan with two decimals.
fn yuan(fen: i128) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", fen.abs() / 100, fen.abs() % 100)
}

/// A batch's columns by name; a column the batch lacks reads as null throughout.
struct Columns<'b>(&'b RecordBatch);

impl<'b> Columns<'b> {
    fn text(&self, name: &str) -> Text<'b> {
        Text(self.0.column_by_name(name).and_then(|c| c.as_string_opt::<i32>()))
    }

    fn dates(&self, name: &str) -> Dates<'b> {
        Dates(self.0.column_by_name(name).and_then(|c| c.as_primitive_opt::<Date32Type>()))
    }
}

#[derive(Clone, Copy)]
struct Text<'b>(Option<&'b arrow::array::StringArray>);

impl<'b> Text<'b> {
    fn value(&self, row: usize) -> Option<&'b str> {
        self.0.filter(|c| c.is_valid(row)).map(|c| c.value(row))
    }
}

#[derive(Clone, Copy)]
struct Dates<'b>(Option<&'b arrow::array::Date32Array>);

impl Dates<'_> {
    fn value(&self, row: usize) -> Option<NaiveDate> {
        self.0.filter(|c| c.is_valid(row)).and_then(|c| c.value_as_date(row))
    }
}
