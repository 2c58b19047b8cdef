//! 统一社会信用代码 (unified social credit code) as defined by GB 32100.
//!
//! Eighteen characters over a 31-symbol alphabet (digits and upper-case letters without
//! I, O, Z, S and V): registration authority (1), organisation category (1), GB/T 2260 division
//! code (6), the organisation's GB 11714 code (9, itself carrying a check character) and a
//! final check character, ISO 7064 MOD 31-3 style.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The code's alphabet; a character's value is its index.
pub const ALPHABET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";

/// Weights of the first 17 characters, `3^i mod 31`.
const WEIGHTS: [u32; 17] = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28];

/// Weights of the first 8 characters of a GB 11714 organisation code.
const ORGANISATION_WEIGHTS: [u32; 8] = [3, 7, 9, 10, 5, 8, 4, 2];

/// Why a string is not a valid unified social credit code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreditCodeError {
    #[error("a unified social credit code has 18 characters, this one has {0}")]
    WrongLength(usize),
    #[error("character {position} is not in the code's alphabet")]
    BadCharacter { position: usize },
    #[error("characters 3 to 8 must be a division code")]
    BadDivisionCode,
    #[error("check character is {found}, expected {expected}")]
    CheckMismatch { expected: char, found: char },
}

/// A validated unified social credit code.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CreditCode(String);

fn value_of(symbol: u8) -> Option<u32> {
    ALPHABET.iter().position(|&a| a == symbol).map(|p| p as u32)
}

impl CreditCode {
    pub fn parse(input: &str) -> Result<Self, CreditCodeError> {
        let bytes = input.as_bytes();
        if bytes.len() != 18 {
            return Err(CreditCodeError::WrongLength(input.chars().count()));
        }
        let mut values = [0u32; 18];
        for (position, &symbol) in bytes.iter().enumerate() {
            values[position] =
                value_of(symbol).ok_or(CreditCodeError::BadCharacter { position: position + 1 })?;
        }
        if !bytes[2..8].iter().all(u8::is_ascii_digit) {
            return Err(CreditCodeError::BadDivisionCode);
        }
        let expected = check_character(bytes[..17].try_into().expect("17 bytes"))
            .ok_or(CreditCodeError::BadCharacter { position: 1 })?;
        if bytes[17] != expected as u8 {
            return Err(CreditCodeError::CheckMismatch { expected, found: bytes[17] as char });
        }
        Ok(CreditCode(input.to_owned()))
    }

    /// Builds a valid code from its parts: registration authority and category characters, a
    /// 6-digit division code and an 8-character organisation code body, whose GB 11714 check
    /// character and the final check character are computed here.
    pub fn compose(authority: char, category: char, division: &str, organisation8: &str) -> String {
        let organisation = format!("{organisation8}{}", organisation_check_character(organisation8));
        let mut code = format!("{authority}{category}{division}{organisation}");
        let first17: [u8; 17] = code.as_bytes().try_into().expect("17 characters");
        code.push(check_character(&first17).expect("composed from the alphabet"));
        code
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn division_code(&self) -> &str {
        &self.0[2..8]
    }
}

/// Computes the final check character over the first 17 characters, or `None` when one of
/// them is outside the alphabet.
pub fn check_character(first17: &[u8; 17]) -> Option<char> {
    let mut sum = 0;
    for (&symbol, weight) in first17.iter().zip(WEIGHTS) {
        sum += value_of(symbol)? * weight;
    }
    let check = (31 - sum % 31) % 31;
    Some(ALPHABET[check as usize] as char)
}

/// The GB 11714 check character of an organisation code's first 8 characters (digits or
/// upper-case letters, letters valued from 10): `11 - (Σ mod 11)`, with 10 written `X` and 11
/// written `0`.
pub fn organisation_check_character(first8: &str) -> char {
    let sum: u32 = first8
        .bytes()
        .zip(ORGANISATION_WEIGHTS)
        .map(|(c, w)| {
            let v = if c.is_ascii_digit() { u32::from(c - b'0') } else { u32::from(c - b'A') + 10 };
            v * w
        })
        .sum();
    match 11 - sum % 11 {
        10 => 'X',
        11 => '0',
        d => char::from(b'0' + d as u8),
    }
}

impl fmt::Display for CreditCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for CreditCode {
    type Error = CreditCodeError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        CreditCode::parse(&value)
    }
}

impl From<CreditCode> for String {
    fn from(value: CreditCode) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_known_good_codes() {
        // Two codes in wide public use as examples, whose check characters were verified
        // independently, and a code composed from parts.
        for good in ["91350100M000100Y43", "91110000802100433B"] {
            CreditCode::parse(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        let composed = CreditCode::compose('9', '1', "411526", "MA9K3T7L");
        let code = CreditCode::parse(&composed).expect("composed codes are valid");
        assert_eq!(code.division_code(), "411526");
    }

    #[test]
    fn refuses_known_bad_codes() {
        assert_eq!(
            CreditCode::parse("91350100M000100Y44"),
            Err(CreditCodeError::CheckMismatch { expected: '3', found: '4' })
        );
        assert_eq!(CreditCode::parse("91350100M000100Y4"), Err(CreditCodeError::WrongLength(17)));
        assert_eq!(
            CreditCode::parse("91350100I000100Y43"),
            Err(CreditCodeError::BadCharacter { position: 9 })
        );
        assert_eq!(
            CreditCode::parse("9135O100M000100Y43"),
            Err(CreditCodeError::BadCharacter { position: 5 })
        );
        assert_eq!(CreditCode::parse("91A50100M000100Y43"), Err(CreditCodeError::BadDivisionCode));
    }

    #[test]
    fn organisation_check_matches_the_specimens() {
        // The organisation codes inside both specimens carry their own GB 11714 check.
        assert_eq!(organisation_check_character("M000100Y"), '4');
        assert_eq!(organisation_check_character("80210043"), '3');
        assert_eq!(organisation_check_character("D2143569"), 'X');
    }

    fn parts() -> impl Strategy<Value = String> {
        let symbol = proptest::sample::select(ALPHABET.to_vec());
        let org_symbol = proptest::sample::select(b"0123456789ABCDEFGHJKLMNPQRTUWXY".to_vec());
        (
            proptest::sample::select(b"123456789ANY".to_vec()),
            symbol,
            100000u32..=659999,
            proptest::collection::vec(org_symbol, 8),
        )
            .prop_map(|(authority, category, division, org)| {
                CreditCode::compose(
                    authority as char,
                    category as char,
                    &format!("{division:06}"),
                    std::str::from_utf8(&org).expect("ascii"),
                )
            })
    }

    proptest! {
        #[test]
        fn composed_codes_validate(code in parts()) {
            prop_assert!(CreditCode::parse(&code).is_ok(), "{}", code);
        }

        #[test]
        fn any_single_substitution_is_detected(code in parts(), position in 0usize..17, shift in 1usize..31) {
            let mut bytes = code.into_bytes();
            let current = ALPHABET.iter().position(|&a| a == bytes[position]).expect("alphabet");
            bytes[position] = ALPHABET[(current + shift) % 31];
            let altered = String::from_utf8(bytes).expect("ascii");
            prop_assert!(CreditCode::parse(&altered).is_err(), "{}", altered);
        }

        #[test]
        fn arbitrary_strings_never_panic(input in "\\PC{0,24}") {
            let _ = CreditCode::parse(&input);
        }
    }
}
