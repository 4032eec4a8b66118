//! Byte ranges (RFC 9110 §14).
//!
//! [`parse`] reads a `Range` field value; [`resolve`] applies it to a
//! representation of known length. The rules, with their sections:
//! 1. §14.1: range units are case-insensitive; a unit other than `bytes` makes
//!    the server ignore the field (§14.2), so the response is a full 200.
//! 2. §14.1.1: `first-pos "-" [ last-pos ]`, or `"-" suffix-length`. A
//!    `last-pos` below `first-pos`, or any other bad syntax, makes the whole
//!    field invalid, and an invalid field is ignored (§14.2).
//! 3. §14.1.1: numbers too large for 64 bits are still valid syntax: a huge
//!    `last-pos` or suffix is clamped to the length, a huge `first-pos` is
//!    beyond every file.
//! 4. §14.1.1: `a-b` is satisfiable iff `a < length`; its end is clamped to
//!    `length - 1`. `-n` is satisfiable iff `n > 0`; it covers the last
//!    `min(n, length)` bytes.
//! 5. §14.1.1: when no range is satisfiable the answer is 416 with
//!    `Content-Range: bytes */length` (§15.5.17).
//! 6. A zero-length representation has no byte to select; the field is
//!    ignored and the empty representation sent whole (as Go's net/http does).
//! 7. §14.6: overlapping or adjacent ranges are coalesced, and then ranges
//!    keep their request order unless coalescing merged some.
//! 8. §14.2 (a server MAY ignore abusive sets): more than [`MAX_RANGES`]
//!    range-specs are ignored (200). After rule 7 the parts never overlap, so a
//!    multipart body never carries more file bytes than the file has.
//! 9. A range of the whole file is still a 206: players probe with `bytes=0-`
//!    and expect a 206 to learn the length from Content-Range.

use super::request::{list_items, parse_decimal, trim_ows};
use smallvec::SmallVec;

/// Most range-specs in one `Range` field before we ignore it (rule 8).
pub const MAX_RANGES: usize = 64;

/// An inclusive byte range `[start, end]` of a representation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    /// The whole of a representation of `length` bytes; `None` if it is empty.
    pub fn whole(length: u64) -> Option<ByteRange> {
        length.checked_sub(1).map(|end| ByteRange { start: 0, end })
    }

    /// Number of bytes in the range (never zero).
    pub fn byte_count(&self) -> u64 {
        self.end - self.start + 1
    }
}

/// One `range-spec` as written by the client, before the length is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSpec {
    /// `first-pos "-" [ last-pos ]`; `u64::MAX` stands for "too large to count".
    From { first: u64, last: Option<u64> },
    /// `"-" suffix-length`.
    Suffix(u64),
}

/// Why a `Range` field is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeError {
    /// Not `bytes` (rule 1).
    UnknownUnit,
    /// Bad syntax or `last < first` (rule 2).
    Invalid,
    /// More than [`MAX_RANGES`] specs (rule 8).
    TooMany,
}

/// What a `Range` field selects from a representation of a given length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Send the whole representation (200).
    Full,
    /// One range (206 with Content-Range).
    Single(ByteRange),
    /// Two or more disjoint ranges (206 multipart/byteranges).
    Multiple(Vec<ByteRange>),
    /// Nothing satisfiable (416).
    Unsatisfiable,
}

/// The specs of one `Range` field. Players send one, so one or two are kept
/// inline and the common request allocates nothing.
pub type RangeSpecs = SmallVec<[RangeSpec; 2]>;

/// Parses `ranges-specifier = range-unit "=" range-set` (rules 1-3).
pub fn parse(value: &[u8]) -> Result<RangeSpecs, RangeError> {
    let eq = value
        .iter()
        .position(|&b| b == b'=')
        .ok_or(RangeError::Invalid)?;
    if !trim_ows(&value[..eq]).eq_ignore_ascii_case(b"bytes") {
        return Err(RangeError::UnknownUnit);
    }
    let mut specs = RangeSpecs::new();
    for item in list_items(&value[eq + 1..]) {
        if specs.len() == MAX_RANGES {
            return Err(RangeError::TooMany);
        }
        specs.push(parse_spec(item)?);
    }
    if specs.is_empty() {
        return Err(RangeError::Invalid);
    }
    Ok(specs)
}

fn parse_spec(item: &[u8]) -> Result<RangeSpec, RangeError> {
    let dash = item
        .iter()
        .position(|&b| b == b'-')
        .ok_or(RangeError::Invalid)?;
    let (first, last) = (&item[..dash], &item[dash + 1..]);
    if first.is_empty() {
        return Ok(RangeSpec::Suffix(parse_position(last)?));
    }
    let first = parse_position(first)?;
    let last = match last {
        b"" => None,
        digits => Some(parse_position(digits)?),
    };
    if last.is_some_and(|last| last < first) {
        return Err(RangeError::Invalid);
    }
    Ok(RangeSpec::From { first, last })
}

/// `1*DIGIT`, saturating at `u64::MAX` (rule 3).
fn parse_position(digits: &[u8]) -> Result<u64, RangeError> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(RangeError::Invalid);
    }
    Ok(parse_decimal(digits).unwrap_or(u64::MAX))
}

/// Applies parsed specs to a representation of `length` bytes (rules 4-8).
pub fn resolve(specs: &[RangeSpec], length: u64) -> Selection {
    if length == 0 {
        return Selection::Full;
    }
    let ranges: SmallVec<[ByteRange; 2]> = specs
        .iter()
        .filter_map(|spec| satisfiable(*spec, length))
        .collect();
    match ranges.as_slice() {
        [] => Selection::Unsatisfiable,
        [only] => Selection::Single(*only),
        _ => {
            let merged = coalesce(&ranges);
            match merged.as_slice() {
                [only] => Selection::Single(*only),
                _ => Selection::Multiple(merged),
            }
        }
    }
}

/// Rule 4: the bytes one spec selects, if any.
fn satisfiable(spec: RangeSpec, length: u64) -> Option<ByteRange> {
    match spec {
        RangeSpec::From { first, last } if first < length => Some(ByteRange {
            start: first,
            end: last.unwrap_or(u64::MAX).min(length - 1),
        }),
        RangeSpec::From { .. } => None,
        RangeSpec::Suffix(0) => None,
        RangeSpec::Suffix(n) => Some(ByteRange {
            start: length - n.min(length),
            end: length - 1,
        }),
    }
}

/// Rule 7: merges overlapping or adjacent ranges. If nothing merges, the
/// request order is kept, since a client may want its parts in that order.
fn coalesce(ranges: &[ByteRange]) -> Vec<ByteRange> {
    let mut sorted = ranges.to_vec();
    sorted.sort_unstable_by_key(|r| r.start);
    let mut merged: Vec<ByteRange> = Vec::with_capacity(sorted.len());
    for range in sorted {
        match merged.last_mut() {
            Some(last) if range.start <= last.end.saturating_add(1) => {
                last.end = last.end.max(range.end);
            }
            _ => merged.push(range),
        }
    }
    if merged.len() == ranges.len() {
        ranges.to_vec()
    } else {
        merged
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn select(value: &str, length: u64) -> Result<Selection, RangeError> {
        parse(value.as_bytes()).map(|specs| resolve(&specs, length))
    }

    fn single(start: u64, end: u64) -> Result<Selection, RangeError> {
        Ok(Selection::Single(ByteRange { start, end }))
    }

    #[test]
    fn rule_1_units() {
        assert_eq!(select("items=0-4", 26), Err(RangeError::UnknownUnit));
        assert_eq!(select("BYTES=0-4", 26), single(0, 4));
        assert_eq!(select("Bytes = 0-4", 26), single(0, 4));
        assert_eq!(select("0-4", 26), Err(RangeError::Invalid));
    }

    #[test]
    fn rule_2_syntax() {
        assert_eq!(select("bytes=0-4", 26), single(0, 4));
        assert_eq!(select("bytes=20-", 26), single(20, 25));
        assert_eq!(select("bytes=-3", 26), single(23, 25));
        assert_eq!(
            select("bytes= 0-0 , ,2-2", 26).map(|s| matches!(s, Selection::Multiple(_))),
            Ok(true)
        );
        for bad in [
            "bytes=5-2",
            "bytes=abc",
            "bytes=",
            "bytes=-",
            "bytes=1-2-3",
            "bytes=+1-2",
            "bytes=1 -2",
            "bytes=0-1,5-2",
            "bytes=0x1-2",
            "bytes=--1",
        ] {
            assert_eq!(select(bad, 26), Err(RangeError::Invalid), "{bad}");
        }
    }

    #[test]
    fn rule_3_overflow() {
        assert_eq!(select("bytes=0-99999999999999999999999", 26), single(0, 25));
        assert_eq!(
            select("bytes=99999999999999999999999-", 26),
            Ok(Selection::Unsatisfiable)
        );
        assert_eq!(select("bytes=-99999999999999999999999", 26), single(0, 25));
        assert_eq!(
            select("bytes=18446744073709551615-18446744073709551615", 26),
            Ok(Selection::Unsatisfiable)
        );
    }

    #[test]
    fn rule_4_satisfiable_and_clamped() {
        assert_eq!(select("bytes=10-1000", 26), single(10, 25));
        assert_eq!(select("bytes=-100", 26), single(0, 25));
        assert_eq!(select("bytes=25-25", 26), single(25, 25));
        assert_eq!(select("bytes=0-", 26), single(0, 25));
        let big = 5 * (1u64 << 30) + 10;
        assert_eq!(
            select("bytes=5368709120-5368709129", big),
            single(5368709120, 5368709129)
        );
    }

    #[test]
    fn rule_5_unsatisfiable() {
        for value in ["bytes=26-", "bytes=30-40", "bytes=-0", "bytes=26-30,-0"] {
            assert_eq!(select(value, 26), Ok(Selection::Unsatisfiable), "{value}");
        }
        // One satisfiable spec is enough.
        assert_eq!(select("bytes=30-40,0-1", 26), single(0, 1));
    }

    #[test]
    fn rule_6_empty_representation_is_sent_whole() {
        assert_eq!(select("bytes=-5", 0), Ok(Selection::Full));
        assert_eq!(select("bytes=0-0", 0), Ok(Selection::Full));
    }

    #[test]
    fn rule_7_coalescing() {
        assert_eq!(select("bytes=0-4,3-8", 26), single(0, 8));
        assert_eq!(select("bytes=0-4,5-9", 26), single(0, 9));
        assert_eq!(select("bytes=5-9,0-4", 26), single(0, 9));
        assert_eq!(select("bytes=0-25,0-25", 26), single(0, 25));
        assert_eq!(
            select("bytes=10-12,0-0,0-1", 26),
            Ok(Selection::Multiple(vec![
                ByteRange { start: 0, end: 1 },
                ByteRange { start: 10, end: 12 }
            ]))
        );
        assert_eq!(
            select("bytes=10-12,0-0", 26),
            Ok(Selection::Multiple(vec![
                ByteRange { start: 10, end: 12 },
                ByteRange { start: 0, end: 0 }
            ])),
            "request order kept when nothing merges"
        );
    }

    #[test]
    fn rule_8_too_many_ranges_are_ignored() {
        let many: Vec<String> = (0..=MAX_RANGES)
            .map(|i| format!("{}-{}", 2 * i, 2 * i))
            .collect();
        assert_eq!(
            select(&format!("bytes={}", many.join(",")), 1000),
            Err(RangeError::TooMany)
        );
        let ok: Vec<String> = (0..MAX_RANGES)
            .map(|i| format!("{}-{}", 2 * i, 2 * i))
            .collect();
        assert!(
            matches!(select(&format!("bytes={}", ok.join(",")), 1000), Ok(Selection::Multiple(v)) if v.len() == MAX_RANGES)
        );
    }

    proptest! {
        #[test]
        fn parse_never_panics(value in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse(&value);
        }

        #[test]
        fn selections_stay_inside_the_file_and_never_overlap(
            specs in prop::collection::vec((any::<Option<u16>>(), any::<Option<u16>>()), 1..8),
            length in 0u64..3000,
        ) {
            let text: Vec<String> = specs.iter().map(|(a, b)| match (a, b) {
                (Some(a), Some(b)) => format!("{}-{}", a.min(b), a.max(b)),
                (Some(a), None) => format!("{a}-"),
                (None, Some(b)) => format!("-{b}"),
                (None, None) => "0-".to_string(),
            }).collect();
            let value = format!("bytes={}", text.join(","));
            let selection = select(&value, length).unwrap();
            let ranges = match selection {
                Selection::Single(r) => vec![r],
                Selection::Multiple(v) => { prop_assert!(v.len() >= 2); v }
                Selection::Full | Selection::Unsatisfiable => vec![],
            };
            let mut total = 0;
            for r in &ranges {
                prop_assert!(r.start <= r.end && r.end < length);
                total += r.byte_count();
            }
            prop_assert!(total <= length);
            let mut sorted = ranges.clone();
            sorted.sort_by_key(|r| r.start);
            for pair in sorted.windows(2) {
                prop_assert!(pair[0].end + 1 < pair[1].start, "adjacent or overlapping survived");
            }
        }
    }
}
