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

/// The first characters of [`COMPOUND_SURNAMES`].
const COMPOUND_FIRST_CHARACTERS: &[char] = &[
    '欧', '司', '上', '诸', '东', '皇', '尉', '公', '慕', '长', '宇', '夏', '轩', '令', '端', '西', '南',
    '独', '呼', '闻', '澹', '宗', '濮', '淳', '单', '申', '太', '钟', '万', '赫', '拓', '第',
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
            _ => {
                let mut out = String::with_capacity(value.len());
                self.apply_into(value, &mut out);
                Cow::Owned(out)
            }
        }
    }

    /// Appends the masked `value` to `out`: the same result as [`MaskRule::apply`] without an
    /// allocation per value, for masking whole columns.
    pub fn apply_into(self, value: &str, out: &mut String) {
        match self {
            MaskRule::None => out.push_str(value),
            MaskRule::Redact => out.push_str(REDACTED),
            MaskRule::IdNumber => keep_ends(value, 6, 4, 15, out),
            MaskRule::Phone => keep_ends(value, 3, 4, 11, out),
            MaskRule::Name => mask_name(value, out),
            MaskRule::Address => cut_address(value, out),
        }
    }
}

/// Appends `count` stars.
fn push_stars(out: &mut String, count: usize) {
    out.extend(std::iter::repeat_n('*', count));
}

/// Keeps the first `head` and last `tail` characters and stars the rest; values shorter than
/// `min_len` would show too much of themselves and are redacted.
fn keep_ends(value: &str, head: usize, tail: usize, min_len: usize, out: &mut String) {
    let value = value.trim();
    if value.is_ascii() {
        // Identity numbers and phones are ASCII: characters are bytes, no decoding needed.
        if value.len() < min_len {
            out.push_str(REDACTED);
            return;
        }
        out.push_str(&value[..head]);
        push_stars(out, value.len() - head - tail);
        out.push_str(&value[value.len() - tail..]);
        return;
    }
    let total = value.chars().count();
    if total < min_len {
        out.push_str(REDACTED);
        return;
    }
    let head_end = value.char_indices().nth(head).map_or(value.len(), |(i, _)| i);
    let tail_start = value.char_indices().nth(total - tail).map_or(value.len(), |(i, _)| i);
    out.push_str(&value[..head_end]);
    push_stars(out, total - head - tail);
    out.push_str(&value[tail_start..]);
}

/// Keeps the surname (one character, or two for a compound surname) and stars the rest.
fn mask_name(value: &str, out: &mut String) {
    let name = value.trim();
    let total = name.chars().count();
    if total <= 1 {
        out.push_str(REDACTED);
        return;
    }
    // Most names start with no compound surname's first character; the list is searched only
    // for those that do.
    let first = name.chars().next().unwrap_or_default();
    let surname_len = if total > 2
        && COMPOUND_FIRST_CHARACTERS.contains(&first)
        && COMPOUND_SURNAMES.iter().any(|s| name.starts_with(s))
    {
        2
    } else {
        1
    };
    let surname_end = name.char_indices().nth(surname_len).map_or(name.len(), |(i, _)| i);
    out.push_str(&name[..surname_end]);
    push_stars(out, total - surname_len);
}

/// Cuts an address after the deepest division (at most the county) its text starts with.
/// An address that starts with no known division is redacted whole: guessing where its
/// district ends could show the street.
fn cut_address(value: &str, out: &mut String) {
    let address = value.trim();
    let longest = address
        .char_indices()
        .map(|(offset, c)| offset + c.len_utf8())
        .take(LONGEST_DIVISION_NAME)
        .filter(|&end| DIVISION_NAMES.contains(&address[..end]))
        .last();
    match longest {
        Some(end) => {
            out.push_str(&address[..end]);
            if end < address.len() {
                out.push_str(REDACTED);
            }
        }
        None => out.push_str(REDACTED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn keep_ends_by_characters(value: &str, head: usize, tail: usize, min_len: usize) -> String {
        let chars: Vec<char> = value.trim().chars().collect();
        if chars.len() < min_len {
            return REDACTED.to_owned();
        }
        let stars = std::iter::repeat_n('*', chars.len() - head - tail);
        chars[..head]
            .iter()
            .copied()
            .chain(stars)
            .chain(chars[chars.len() - tail..].iter().copied())
            .collect()
    }

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
    fn compound_surnames_are_found_by_their_first_character() {
        for surname in COMPOUND_SURNAMES {
            let first = surname.chars().next().expect("not empty");
            assert!(COMPOUND_FIRST_CHARACTERS.contains(&first), "{surname}");
        }
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

        // The byte-level fast paths agree with the plain definition by characters.
        #[test]
        fn masks_agree_with_their_definition_by_characters(value in "\\PC{0,24}|[0-9]{15,18}X?| ?[０-９]{15,18} ?") {
            prop_assert_eq!(MaskRule::IdNumber.apply(&value), keep_ends_by_characters(&value, 6, 4, 15));
            prop_assert_eq!(MaskRule::Phone.apply(&value), keep_ends_by_characters(&value, 3, 4, 11));
            let name: Vec<char> = value.trim().chars().collect();
            let surname = if name.len() > 2 && COMPOUND_SURNAMES.iter().any(|s| value.trim().starts_with(s)) { 2 } else { 1 };
            let expected_name = if name.len() <= 1 {
                REDACTED.to_owned()
            } else {
                name[..surname].iter().chain(std::iter::repeat_n(&'*', name.len() - surname)).collect()
            };
            prop_assert_eq!(MaskRule::Name.apply(&value), expected_name);
            // One buffer reused across values holds each value's mask in turn.
            let mut buffer = String::from("前");
            MaskRule::Name.apply_into(&value, &mut buffer);
            prop_assert_eq!(&buffer[3..], MaskRule::Name.apply(&value).into_owned());
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
