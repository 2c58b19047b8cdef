//! 公民身份号码 (citizen identity number) as defined by GB 11643.
//!
//! An identity number has 18 characters: a 6-digit GB/T 2260 address code, the birth date as
//! `YYYYMMDD`, a 3-digit sequence whose parity gives the gender (odd for men), and a check
//! character computed over the first 17 digits with ISO 7064 MOD 11-2.

use std::fmt;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::division;

/// Weights of the first 17 digits, `2^(17-i) mod 11`.
const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];

/// Check characters indexed by the weighted sum modulo 11.
const CHECK_CHARS: [u8; 11] = *b"10X98765432";

/// Gender encoded by the parity of the sequence code (GB/T 2261.1 codes `1` and `2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Gender {
    Male,
    Female,
}

impl Gender {
    /// The GB/T 2261.1 code: `1` for male, `2` for female.
    pub fn code(self) -> &'static str {
        match self {
            Gender::Male => "1",
            Gender::Female => "2",
        }
    }
}

/// Why a string is not a valid identity number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdNumberError {
    #[error("an identity number has 18 characters, this one has {0}")]
    WrongLength(usize),
    #[error("character {position} must be a digit")]
    NotADigit { position: usize },
    #[error("the last character must be a digit or X")]
    BadCheckCharacter,
    #[error("address code {0} names no province")]
    UnknownProvince(String),
    #[error("birth date {0} is not a calendar date")]
    InvalidBirthDate(String),
    #[error("the sequence code 000 is never issued")]
    ZeroSequence,
    #[error("check character is {found}, expected {expected}")]
    CheckMismatch { expected: char, found: char },
}

/// A validated identity number, stored in its canonical form (upper-case `X`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IdNumber(String);

impl IdNumber {
    /// Parses and validates an identity number. A lower-case `x` check character is accepted
    /// and normalised, since many forms and scanners produce it.
    pub fn parse(input: &str) -> Result<Self, IdNumberError> {
        let bytes = input.as_bytes();
        if bytes.len() != 18 {
            return Err(IdNumberError::WrongLength(input.chars().count()));
        }
        if let Some(position) = bytes[..17].iter().position(|b| !b.is_ascii_digit()) {
            return Err(IdNumberError::NotADigit { position: position + 1 });
        }
        let found = bytes[17].to_ascii_uppercase();
        if !(found.is_ascii_digit() || found == b'X') {
            return Err(IdNumberError::BadCheckCharacter);
        }
        let province = &input[..2];
        if !division::is_province_prefix(province) {
            return Err(IdNumberError::UnknownProvince(input[..6].to_owned()));
        }
        if NaiveDate::parse_from_str(&input[6..14], "%Y%m%d").is_err() {
            return Err(IdNumberError::InvalidBirthDate(input[6..14].to_owned()));
        }
        if &input[14..17] == "000" {
            return Err(IdNumberError::ZeroSequence);
        }
        let expected = check_character(bytes[..17].try_into().expect("17 bytes"));
        if found != expected as u8 {
            return Err(IdNumberError::CheckMismatch { expected, found: found as char });
        }
        let mut canonical = input.to_owned();
        canonical.make_ascii_uppercase();
        Ok(IdNumber(canonical))
    }

    /// Builds a valid number from its parts, computing the check character. Used by data
    /// generators and tests; `sequence` must be in `1..=999`.
    pub fn compose(address_code: &str, birth: NaiveDate, sequence: u16) -> String {
        debug_assert!(address_code.len() == 6 && (1..=999).contains(&sequence));
        let mut digits = format!("{address_code}{}{sequence:03}", birth.format("%Y%m%d"));
        let first17: [u8; 17] = digits.as_bytes().try_into().expect("17 digits");
        digits.push(check_character(&first17));
        digits
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The GB/T 2260 address code of the place where the number was first issued.
    pub fn address_code(&self) -> &str {
        &self.0[..6]
    }

    pub fn birth_date(&self) -> NaiveDate {
        NaiveDate::parse_from_str(&self.0[6..14], "%Y%m%d").expect("validated on parse")
    }

    pub fn gender(&self) -> Gender {
        let sequence_last = self.0.as_bytes()[16] - b'0';
        if sequence_last % 2 == 1 { Gender::Male } else { Gender::Female }
    }
}

/// Computes the check character for the first 17 digits of an identity number.
pub fn check_character(first17: &[u8; 17]) -> char {
    let sum: u32 = first17.iter().zip(WEIGHTS).map(|(d, w)| u32::from(d - b'0') * w).sum();
    CHECK_CHARS[(sum % 11) as usize] as char
}

impl fmt::Display for IdNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for IdNumber {
    type Error = IdNumberError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        IdNumber::parse(&value)
    }
}

impl From<IdNumber> for String {
    fn from(value: IdNumber) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_known_good_numbers() {
        // The sample number printed in GB 11643-1999 and two numbers composed by hand from
        // real address codes, with check characters worked out on paper.
        for good in ["11010519491231002X", "440524188001010014", "411526199001010016"] {
            let id = IdNumber::parse(good).unwrap_or_else(|e| panic!("{good}: {e}"));
            assert_eq!(id.as_str(), good);
        }
        let id = IdNumber::parse("11010519491231002x").expect("lower-case x is normalised");
        assert_eq!(id.as_str(), "11010519491231002X");
        assert_eq!(id.gender(), Gender::Female);
        assert_eq!(id.birth_date(), NaiveDate::from_ymd_opt(1949, 12, 31).expect("date"));
        assert_eq!(id.address_code(), "110105");
    }

    #[test]
    fn refuses_known_bad_numbers() {
        let cases = [
            ("110105194912310021", IdNumberError::CheckMismatch { expected: 'X', found: '1' }),
            ("11010519491231002", IdNumberError::WrongLength(17)),
            ("1101051949123100211", IdNumberError::WrongLength(19)),
            ("11010519491A31002X", IdNumberError::NotADigit { position: 12 }),
            ("11010519491231002Y", IdNumberError::BadCheckCharacter),
            ("991051194912310021", IdNumberError::UnknownProvince("991051".into())),
            ("110105194902300021", IdNumberError::InvalidBirthDate("19490230".into())),
            ("110105194912310001", IdNumberError::ZeroSequence),
        ];
        // Each number breaks one rule. The first rule broken in reading order is the one
        // reported, so a zero sequence or an impossible date is not called a check mismatch.
        for (input, expected) in cases {
            assert_eq!(IdNumber::parse(input), Err(expected), "{input}");
        }
        assert!(matches!(
            IdNumber::parse("身份证号码一二三四五六七八九十"),
            Err(IdNumberError::WrongLength(_))
        ));
    }

    fn first17() -> impl Strategy<Value = (String, NaiveDate, u16)> {
        let codes: Vec<&'static str> = division::all().iter().map(|d| d.code).collect();
        (proptest::sample::select(codes), (1900i32..2025, 1u32..=12, 1u32..=28), 1u16..=999).prop_map(
            |(code, (y, m, d), seq)| {
                (code.to_owned(), NaiveDate::from_ymd_opt(y, m, d).expect("day 1-28"), seq)
            },
        )
    }

    proptest! {
        #[test]
        fn composed_numbers_validate_and_round_trip((code, birth, seq) in first17()) {
            let composed = IdNumber::compose(&code, birth, seq);
            let id = IdNumber::parse(&composed).expect("composed numbers are valid");
            prop_assert_eq!(id.address_code(), code.as_str());
            prop_assert_eq!(id.birth_date(), birth);
            prop_assert_eq!(id.gender(), if seq % 2 == 1 { Gender::Male } else { Gender::Female });
        }

        #[test]
        fn any_single_digit_change_is_detected(
            (code, birth, seq) in first17(), position in 0usize..17, delta in 1u8..10,
        ) {
            let composed = IdNumber::compose(&code, birth, seq);
            let mut bytes = composed.into_bytes();
            bytes[position] = b'0' + (bytes[position] - b'0' + delta) % 10;
            let altered = String::from_utf8(bytes).expect("ascii");
            // Whatever else the change breaks (province, date), it never validates.
            prop_assert!(IdNumber::parse(&altered).is_err());
        }

        #[test]
        fn adjacent_transpositions_are_detected(
            (code, birth, seq) in first17(), position in 0usize..16,
        ) {
            let composed = IdNumber::compose(&code, birth, seq);
            let mut bytes = composed.clone().into_bytes();
            prop_assume!(bytes[position] != bytes[position + 1]);
            bytes.swap(position, position + 1);
            let altered = String::from_utf8(bytes).expect("ascii");
            prop_assert!(IdNumber::parse(&altered).is_err(), "{} -> {}", composed, altered);
        }

        #[test]
        fn arbitrary_strings_never_panic(input in "\\PC{0,24}") {
            let _ = IdNumber::parse(&input);
        }
    }
}
