//! Masking (脱敏) of one value by an item's mask rule.
//!
//! These functions are the only place masks are defined. The data plane applies them to
//! record look-ups and, through a query function, inside every per-grant SQL view, so a
//! masked item shows the same on every path.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
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

/// The first characters of [`COMPOUND_SURNAMES`], all in the CJK unified ideographs block.
const COMPOUND_FIRST_CHARACTERS: &[char] = &[
    '万', '上', '东', '令', '公', '单', '南', '司', '呼', '夏', '太', '宇', '宗', '尉', '慕', '拓', '欧',
    '淳', '澹', '濮', '独', '申', '皇', '端', '第', '西', '诸', '赫', '轩', '钟', '长', '闻',
];

/// Full names of every division (province, prefecture and county, as `division::full_name`
/// spells them), for cutting addresses at the county.
static DIVISION_NAMES: LazyLock<HashSet<String>> = LazyLock::new(|| {
    crate::division::all().iter().filter_map(|d| crate::division::full_name(d.code)).collect()
});

/// The longest division name an address can start with, in characters: 25 in the shipped
/// table, and whatever a table that replaces it holds.
static LONGEST_DIVISION_NAME: LazyLock<usize> =
    LazyLock::new(|| DIVISION_NAMES.iter().map(|name| name.chars().count()).max().unwrap_or(0));

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
    /// allocation per value.
    pub fn apply_into(self, value: &str, out: &mut String) {
        // Writing to a `String` cannot fail.
        let _ = self.write_to(value, out);
    }

    /// Writes the masked `value` to `out`, piece by piece: for masking whole columns straight
    /// into a column's buffer, without a copy per value. Fails only when `out` does. Inlined,
    /// so that a column's loop masks each value without a call.
    #[inline(always)]
    pub fn write_to<W: fmt::Write + ?Sized>(self, value: &str, out: &mut W) -> fmt::Result {
        match self {
            MaskRule::None => out.write_str(value),
            MaskRule::Redact => out.write_str(REDACTED),
            MaskRule::IdNumber => keep_ends::<6, 4, 15, 18, W>(value, out),
            MaskRule::Phone => keep_ends::<3, 4, 11, 11, W>(value, out),
            MaskRule::Name => mask_name(value, out),
            MaskRule::Address => cut_address(value, out),
        }
    }
}

/// Writes `count` stars. The counts masks need most (one to eight) are written as pieces of
/// constant length, which compile to a store each where `out` appends inline (a `String`);
/// a call to copy memory per piece was most of the cost of masking a column of identity
/// numbers.
#[inline(always)]
fn write_stars<W: fmt::Write + ?Sized>(out: &mut W, count: usize) -> fmt::Result {
    const STARS: &str = "********************************";
    match count {
        0 => Ok(()),
        1 => out.write_str(&STARS[..1]),
        2 => out.write_str(&STARS[..2]),
        3 => out.write_str(&STARS[..3]),
        4 => out.write_str(&STARS[..4]),
        5 => out.write_str(&STARS[..5]),
        6 => out.write_str(&STARS[..6]),
        7 => out.write_str(&STARS[..7]),
        8 => out.write_str(&STARS[..8]),
        _ => {
            let mut left = count;
            while left > 0 {
                let run = left.min(STARS.len());
                out.write_str(&STARS[..run])?;
                left -= run;
            }
            Ok(())
        }
    }
}

/// Whether `c` is the first character of a compound surname, looked up in a bit per
/// character of the CJK unified ideographs block: names' first characters vary too much for
/// a search with branches to be predicted.
#[inline]
fn begins_compound_surname(c: char) -> bool {
    const BASE: u32 = 0x4E00;
    const WORDS: usize = (0xA000 - BASE as usize) / 64;
    const BITS: [u64; WORDS] = {
        let mut bits = [0u64; WORDS];
        let mut i = 0;
        while i < COMPOUND_FIRST_CHARACTERS.len() {
            let at = COMPOUND_FIRST_CHARACTERS[i] as u32 - BASE;
            bits[(at / 64) as usize] |= 1 << (at % 64);
            i += 1;
        }
        bits
    };
    let Some(at) = (c as u32).checked_sub(BASE) else { return false };
    BITS.get((at / 64) as usize).is_some_and(|word| word & (1 << (at % 64)) != 0)
}

/// `value` without the whitespace around it. Most values have none, which their first and
/// last bytes show without decoding a character: an ASCII byte that is not a space, or a
/// character at or above U+4000 (a lead byte of 0xE4 or more), which no whitespace is.
#[inline]
fn trimmed(value: &str) -> &str {
    let plain_ascii = |b: u8| b.is_ascii() && !(b.is_ascii_whitespace() || b == 0x0B);
    let bytes = value.as_bytes();
    let Some((&first, &last)) = bytes.first().zip(bytes.last()) else { return value };
    let plain_start = plain_ascii(first) || first >= 0xE4;
    let plain_end = plain_ascii(last) || (bytes.len() >= 3 && bytes[bytes.len() - 3] >= 0xE4);
    if plain_start && plain_end { value } else { value.trim() }
}

/// The number of characters in `value`, counted as the bytes that begin one (every byte but
/// UTF-8's continuation bytes). The standard library's count is built for long text and
/// spends most of its time, on a name of a few characters, in its set-up.
#[inline]
fn char_count(value: &str) -> usize {
    value.bytes().filter(|&b| (b as i8) >= -0x40).count()
}

/// Keeps the first `HEAD` and last `TAIL` characters and stars the rest; values shorter than
/// `MIN_LEN` would show too much of themselves and are redacted. The counts are constants so
/// that the kept ends of an ASCII value are copied with stores of known length, as are the
/// stars of a value of the usual length, `LEN` ASCII characters.
#[inline(always)]
fn keep_ends<const HEAD: usize, const TAIL: usize, const MIN_LEN: usize, const LEN: usize, W>(
    value: &str,
    out: &mut W,
) -> fmt::Result
where
    W: fmt::Write + ?Sized,
{
    // The usual length is never redacted and always has stars between its ends.
    const { assert!(LEN >= MIN_LEN && LEN > HEAD + TAIL) };
    // A value of the usual length without surrounding whitespace: every piece's length is
    // a constant.
    let bytes = value.as_bytes();
    if bytes.len() == LEN
        && bytes[0].is_ascii_graphic()
        && bytes[LEN - 1].is_ascii_graphic()
        && bytes.is_ascii()
    {
        out.write_str(&value[..HEAD])?;
        write_stars(out, LEN - HEAD - TAIL)?;
        return out.write_str(&value[LEN - TAIL..]);
    }
    let value = trimmed(value);
    if value.is_ascii() {
        // Identity numbers and phones are ASCII: characters are bytes, no decoding needed.
        let len = value.len();
        if len < MIN_LEN {
            return out.write_str(REDACTED);
        }
        out.write_str(&value[..HEAD])?;
        write_stars(out, len - HEAD - TAIL)?;
        return out.write_str(&value[len - TAIL..]);
    }
    let total = char_count(value);
    if total < MIN_LEN {
        return out.write_str(REDACTED);
    }
    let head_end = value.char_indices().nth(HEAD).map_or(value.len(), |(i, _)| i);
    let tail_start = value.char_indices().nth(total - TAIL).map_or(value.len(), |(i, _)| i);
    out.write_str(&value[..head_end])?;
    write_stars(out, total - HEAD - TAIL)?;
    out.write_str(&value[tail_start..])
}

/// Keeps the surname (one character, or two for a compound surname) and stars the rest.
#[inline(always)]
fn mask_name<W: fmt::Write + ?Sized>(value: &str, out: &mut W) -> fmt::Result {
    // Most names are two to four characters at or above U+4000: three bytes each, each lead
    // byte 0xE4 to 0xEF. No such character is whitespace, so these names need no trimming,
    // and their length in bytes gives their length in characters without decoding them.
    let bytes = value.as_bytes();
    if matches!(bytes.len(), 6 | 9 | 12) && bytes.iter().step_by(3).all(|b| (0xE4..0xF0).contains(b)) {
        let total = bytes.len() / 3;
        let (first, _) = value.split_at(3);
        if total == 2 || !first.chars().next().is_some_and(begins_compound_surname) {
            out.write_str(first)?;
            return write_stars(out, total - 1);
        }
    }
    let name = trimmed(value);
    let total = char_count(name);
    if total <= 1 {
        return out.write_str(REDACTED);
    }
    // Most names start with no compound surname's first character; the list is searched only
    // for those that do.
    let first = name.chars().next().unwrap_or_default();
    let surname_len = if total > 2
        && begins_compound_surname(first)
        && COMPOUND_SURNAMES.iter().any(|s| name.starts_with(s))
    {
        2
    } else {
        1
    };
    let surname_end = if surname_len == 1 {
        first.len_utf8()
    } else {
        name.char_indices().nth(surname_len).map_or(name.len(), |(i, _)| i)
    };
    out.write_str(&name[..surname_end])?;
    write_stars(out, total - surname_len)
}

/// Cuts an address after the deepest division (at most the county) its text starts with.
/// An address that starts with no known division is redacted whole: guessing where its
/// district ends could show the street.
fn cut_address<W: fmt::Write + ?Sized>(value: &str, out: &mut W) -> fmt::Result {
    let address = value.trim();
    let longest = address
        .char_indices()
        .map(|(offset, c)| offset + c.len_utf8())
        .take(*LONGEST_DIVISION_NAME)
        .filter(|&end| DIVISION_NAMES.contains(&address[..end]))
        .last();
    match longest {
        Some(end) => {
            out.write_str(&address[..end])?;
            if end < address.len() {
                out.write_str(REDACTED)?;
            }
            Ok(())
        }
        None => out.write_str(REDACTED),
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
            assert!(begins_compound_surname(first), "{surname}");
        }
        // And no other character is taken for one.
        for c in ('\u{4DFF}'..='\u{A000}').chain(['张', 'a', '\u{10000}']) {
            assert_eq!(begins_compound_surname(c), COMPOUND_FIRST_CHARACTERS.contains(&c), "{c}");
        }
    }

    #[test]
    fn values_are_trimmed_of_every_kind_of_space() {
        for value in [
            "张三",
            " 张三",
            "张三\t",
            "\u{3000}张三",
            "张三\u{3000}",
            "张三\u{A0}",
            "\u{2029}张三\u{85}",
            "\u{0B}41",
        ] {
            assert_eq!(trimmed(value), value.trim(), "{value:?}");
        }
        // A last character of four bytes, or outside the CJK block, is checked the long way.
        for value in ["张\u{20000}", "张\u{1680}", "a", "", " "] {
            assert_eq!(trimmed(value), value.trim(), "{value:?}");
        }
        assert_eq!(MaskRule::Name.apply("王小明\u{3000}"), "王**");
        assert_eq!(MaskRule::IdNumber.apply(" 11010519491231002X\n"), "110105********002X");
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
        fn masks_agree_with_their_definition_by_characters(
            value in "\\PC{0,24}|[0-9]{15,18}X?| ?[０-９]{15,18} ?| ?[0-9]{17}[0-9X] ?| ?1[0-9]{10}\t?\
                |[一-龥]{1,5}|[欧司上张][阳马官海小]{1,3}|[㐀-䶵][一-龥]{1,3}"
        ) {
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
