//! Masking (脱敏) of one value by an item's mask rule.
//!
//! These functions are the only place masks are defined. The data plane applies them to
//! record look-ups and, through a query function, inside every per-grant SQL view, so a
//! masked item shows the same on every path.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::LazyLock;

use crate::catalog::MaskRule;

/// What a redacted value shows.
pub const REDACTED: &str = "***";

/// Two-character surnames (复姓) that keep both characters when a name is masked.
const COMPOUND_SURNAMES: &[&str] = &[
    "欧阳", "司马", "上官", "诸葛", "东方", "皇甫", "尉迟", "公孙", "慕容", "长孙", "宇文", "司徒", "夏侯",
    "轩辕", "令狐", "端木", "西门", "南宫", "独孤", "呼延", "闻人", "澹台", "公冶", "宗政", "濮阳", "淳于",
    "单于", "申屠", "太叔", "钟离", "万俟", "赫连", "拓跋", "第五",
];

/// Full names of every division (province, prefecture and county, as `division::full_name`
/// spells them), for cutting addresses at the county.
static DIVISION_NAMES: LazyLock<HashSet<String>> = LazyLock::new(|| {
    crate::division::all().iter().filter_map(|d| crate::division::full_name(d.code)).collect()
});

/// The longest division name an address can start with, in characters.
const LONGEST_DIVISION_NAME: usize = 40;

impl MaskRule {
    /// Masks `value`. A value the rule cannot read safely (an identity number of the wrong
    /// length, an address without a county) is redacted whole rather than shown.
    pub fn apply(self, value: &str) -> Cow<'_, str> {
        match self {
            MaskRule::None => Cow::Borrowed(value),
            MaskRule::Redact => Cow::Borrowed(REDACTED),
            MaskRule::IdNumber => keep_ends(value, 6, 4, 15),
            MaskRule::Phone => keep_ends(value, 3, 4, 11),
            MaskRule::Name => Cow::Owned(mask_name(value)),
            MaskRule::Address => Cow::Owned(cut_address(value)),
        }
    }
}

/// Keeps the first `head` and last `tail` characters and stars the rest; values shorter than
/// `min_len` would show too much of themselves and are redacted.
fn keep_ends(value: &str, head: usize, tail: usize, min_len: usize) -> Cow<'_, str> {
    let chars: Vec<char> = value.trim().chars().collect();
    if chars.len() < min_len {
        return Cow::Borrowed(REDACTED);
    }
    let mut out = String::with_capacity(chars.len());
    out.extend(&chars[..head]);
    out.extend(std::iter::repeat_n('*', chars.len() - head - tail));
    out.extend(&chars[chars.len() - tail..]);
    Cow::Owned(out)
}

/// Keeps the surname (one character, or two for a compound surname) and stars the rest.
fn mask_name(value: &str) -> String {
    let name = value.trim();
    let surname_len =
        if COMPOUND_SURNAMES.iter().any(|s| name.starts_with(s)) && name.chars().count() > 2 { 2 } else { 1 };
    let total = name.chars().count();
    if total <= 1 {
        return REDACTED.to_owned();
    }
    let mut out: String = name.chars().take(surname_len).collect();
    out.extend(std::iter::repeat_n('*', total - surname_len));
    out
}

/// Cuts an address after the deepest division (at most the county) its text starts with.
/// An address that starts with no known division is redacted whole: guessing where its
/// district ends could show the street.
fn cut_address(value: &str) -> String {
    let address = value.trim();
    let longest = address
        .char_indices()
        .map(|(offset, c)| offset + c.len_utf8())
        .take(LONGEST_DIVISION_NAME)
        .filter(|&end| DIVISION_NAMES.contains(&address[..end]))
        .last();
    match longest {
        Some(end) if end < address.len() => format!("{}{REDACTED}", &address[..end]),
        Some(end) => address[..end].to_owned(),
        None => REDACTED.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn identity_numbers_keep_six_and_four() {
        assert_eq!(MaskRule::IdNumber.apply("11010519491231002X"), "110105********002X");
        assert_eq!(MaskRule::IdNumber.apply("110105491231002"), "110105*****1002");
        assert_eq!(MaskRule::IdNumber.apply("1101"), REDACTED);
    }

    #[test]
    fn phones_keep_three_and_four() {
        assert_eq!(MaskRule::Phone.apply("13812345678"), "138****5678");
        assert_eq!(MaskRule::Phone.apply("12345"), REDACTED);
    }

    #[test]
    fn names_keep_the_surname() {
        assert_eq!(MaskRule::Name.apply("张三"), "张*");
        assert_eq!(MaskRule::Name.apply("王小明"), "王**");
        assert_eq!(MaskRule::Name.apply("欧阳娜娜"), "欧阳**");
        // Two characters that look like a compound surname are a surname and a given name.
        assert_eq!(MaskRule::Name.apply("欧阳"), "欧*");
        assert_eq!(MaskRule::Name.apply("张"), REDACTED);
    }

    #[test]
    fn addresses_are_cut_after_the_county() {
        assert_eq!(MaskRule::Address.apply("河南省郑州市金水区花园路12号3单元"), "河南省郑州市金水区***");
        assert_eq!(MaskRule::Address.apply("北京市东城区东华门街道1号"), "北京市东城区***");
        assert_eq!(MaskRule::Address.apply("河南省济源市天坛街道市场路8号"), "河南省济源市***");
        // A street named like a district does not extend the cut.
        assert_eq!(MaskRule::Address.apply("河南省郑州市金水区东城区路1号"), "河南省郑州市金水区***");
        assert_eq!(MaskRule::Address.apply("广东省广州市天河区"), "广东省广州市天河区");
        assert_eq!(MaskRule::Address.apply("花园路12号"), REDACTED);
    }

    #[test]
    fn redaction_shows_nothing() {
        assert_eq!(MaskRule::Redact.apply("已婚"), REDACTED);
        assert_eq!(MaskRule::None.apply("已婚"), "已婚");
    }

    proptest! {
        // Whatever the input, a masked value never contains the hidden middle of an identity
        // number, and masking is idempotent in length.
        #[test]
        fn id_masks_hide_the_middle(id in "[0-9]{17}[0-9X]") {
            let masked = MaskRule::IdNumber.apply(&id).into_owned();
            prop_assert_eq!(masked.chars().count(), 18);
            prop_assert_eq!(&masked[..6], &id[..6]);
            prop_assert_eq!(&masked[14..], &id[14..]);
            prop_assert!(masked[6..14].chars().all(|c| c == '*'));
        }

        #[test]
        fn masks_never_panic_and_never_lengthen_names(value in "\\PC{0,40}") {
            for rule in [MaskRule::IdNumber, MaskRule::Phone, MaskRule::Name, MaskRule::Address, MaskRule::Redact] {
                let masked = rule.apply(&value);
                prop_assert!(masked.chars().count() <= value.chars().count().max(REDACTED.chars().count()) + REDACTED.chars().count());
            }
        }
    }
}
