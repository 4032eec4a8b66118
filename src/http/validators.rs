//! Validators (RFC 9110 §8.8) and conditional requests (§13).
//!
//! The ETag is strong and derived from the file's identity: inode, size and
//! modification time in nanoseconds, so any replacement or in-place write
//! changes it. Last-Modified is the modification time in whole seconds.

use super::request::{Conditionals, Single};
use std::time::SystemTime;

/// What the I/O layer learned about a file from `fstat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMeta {
    pub len: u64,
    pub inode: u64,
    /// Modification time since the epoch, in nanoseconds (negative before 1970).
    pub mtime_nanos: i128,
}

impl FileMeta {
    /// Last-Modified in whole seconds since the epoch; files dated before 1970
    /// are reported as the epoch, after 9999 as its last second.
    pub fn last_modified_secs(&self) -> u64 {
        u64::try_from(self.mtime_nanos.div_euclid(1_000_000_000))
            .unwrap_or(0)
            .min(MAX_HTTP_DATE)
    }

    /// The strong entity-tag, quotes included (RFC 9110 §8.8.3):
    /// `"inode-size-mtime_ns"` in hex, formatted without allocating.
    pub fn etag(&self) -> Etag {
        let mut etag = Etag {
            bytes: [0; ETAG_MAX],
            len: 0,
        };
        etag.push(b'"');
        etag.push_hex(self.inode);
        etag.push(b'-');
        etag.push_hex(self.len);
        etag.push(b'-');
        etag.push_hex(self.mtime_nanos as u128 as u64);
        etag.push(b'"');
        etag
    }
}

/// Longest entity-tag: three 16-digit hex numbers, two dashes, two quotes.
const ETAG_MAX: usize = 3 * 16 + 4;

/// An entity-tag's text, on the stack.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Etag {
    bytes: [u8; ETAG_MAX],
    len: usize,
}

impl Etag {
    pub fn as_str(&self) -> &str {
        // Only ASCII quotes, dashes and hex digits are ever pushed.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    fn push(&mut self, byte: u8) {
        self.bytes[self.len] = byte;
        self.len += 1;
    }

    /// Lowercase hex without leading zeros (`0` for zero).
    fn push_hex(&mut self, value: u64) {
        let digits = (64 - value.leading_zeros()).div_ceil(4).max(1);
        for shift in (0..digits).rev() {
            self.push(b"0123456789abcdef"[(value >> (shift * 4)) as usize & 0xf]);
        }
    }
}

impl std::fmt::Debug for Etag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The last second an IMF-fixdate can express: 9999-12-31T23:59:59Z.
const MAX_HTTP_DATE: u64 = 253_402_300_799;

/// Length of an IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
pub const IMF_FIXDATE_LEN: usize = 29;

/// `Last-Modified` as an IMF-fixdate (RFC 9110 §5.6.7), on the stack: times
/// past year 9999 (a file touched with a far-future mtime) are clamped to the
/// last expressible second. Computed without formatting machinery: it is
/// written into every response head.
pub fn imf_fixdate(secs: u64) -> [u8; IMF_FIXDATE_LEN] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let secs = secs.min(MAX_HTTP_DATE);
    let days = secs / 86_400;
    let of_day = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    out[..3].copy_from_slice(DAYS[(days % 7) as usize]);
    put_two(&mut out[5..7], day);
    out[8..11].copy_from_slice(MONTHS[month as usize - 1]);
    put_two(&mut out[12..14], year / 100);
    put_two(&mut out[14..16], year % 100);
    put_two(&mut out[17..19], of_day / 3600);
    put_two(&mut out[20..22], of_day / 60 % 60);
    put_two(&mut out[23..25], of_day % 60);
    out
}

fn put_two(out: &mut [u8], value: u64) {
    out[0] = b'0' + (value / 10 % 10) as u8;
    out[1] = b'0' + (value % 10) as u8;
}

/// (year, month 1-12, day 1-31) of a count of days since 1970-01-01, by
/// Howard Hinnant's `civil_from_days` (proleptic Gregorian calendar).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Parses any of the three HTTP-date formats (RFC 9110 §5.6.7) to epoch seconds.
pub fn parse_http_date(value: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(value).ok()?;
    let time = httpdate::parse_http_date(text).ok()?;
    time.duration_since(SystemTime::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

/// One element of an entity-tag list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntityTag<'a> {
    pub weak: bool,
    /// The opaque-tag with its quotes.
    pub tag: &'a [u8],
}

impl EntityTag<'_> {
    /// Strong comparison (§8.8.3.2): both strong and identical.
    pub fn strong_eq(&self, other: &EntityTag<'_>) -> bool {
        !self.weak && !other.weak && self.tag == other.tag
    }

    /// Weak comparison (§8.8.3.2): identical opaque-tags, weakness ignored.
    pub fn weak_eq(&self, other: &EntityTag<'_>) -> bool {
        self.tag == other.tag
    }
}

/// Parses `entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE` at the start of `s`,
/// returning the tag and the rest.
fn parse_entity_tag(s: &[u8]) -> Option<(EntityTag<'_>, &[u8])> {
    let (weak, s) = match s.strip_prefix(b"W/") {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let body = s.strip_prefix(b"\"")?;
    let close = body.iter().position(|&b| b == b'"')?;
    let is_etagc = |b: &u8| *b == 0x21 || (0x23..=0x7e).contains(b) || *b >= 0x80;
    if !body[..close].iter().all(is_etagc) {
        return None;
    }
    Some((
        EntityTag {
            weak,
            tag: &s[..close + 2],
        },
        &body[close + 1..],
    ))
}

/// A parsed `If-Match` / `If-None-Match` value.
enum TagList<'a> {
    Any,
    Tags(Vec<EntityTag<'a>>),
}

/// `If-Match = "*" / #entity-tag` over all field lines. Elements that are not
/// entity-tags make the rest of that line unusable; they match nothing.
fn parse_tag_list<'a>(lines: &[&'a [u8]]) -> TagList<'a> {
    let mut tags = Vec::new();
    for &line in lines {
        if line == b"*" {
            return TagList::Any;
        }
        let mut rest = line;
        loop {
            rest = skip_list_separators(rest);
            if rest.is_empty() {
                break;
            }
            match parse_entity_tag(rest) {
                Some((tag, after)) => {
                    tags.push(tag);
                    rest = after;
                }
                None => break,
            }
        }
    }
    TagList::Tags(tags)
}

fn skip_list_separators(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t' | b',', rest @ ..] = s {
        s = rest;
    }
    s
}

/// The outcome of §13.2.2 for a GET or HEAD on an existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// Serve the file; `use_range` says whether a Range field still applies.
    Proceed { use_range: bool },
    /// 304 Not Modified.
    NotModified,
    /// 412 Precondition Failed.
    Failed,
}

/// The validators of the selected representation.
#[derive(Debug, Clone, Copy)]
pub struct Validators<'a> {
    pub etag: &'a [u8],
    pub last_modified: u64,
    /// The current time in epoch seconds, to judge whether Last-Modified is strong.
    pub now: u64,
}

impl Validators<'_> {
    fn current_tag(&self) -> EntityTag<'_> {
        EntityTag {
            weak: false,
            tag: self.etag,
        }
    }

    /// §8.8.2.2: a modification date is a strong validator only if the file
    /// could not have changed twice within that second, i.e. the second is over.
    fn last_modified_is_strong(&self) -> bool {
        self.last_modified < self.now
    }
}

/// Evaluates preconditions in the order of RFC 9110 §13.2.2, for GET/HEAD:
/// 1. If-Match is present: false (no strong match, §13.1.1) -> 412.
/// 2. Else If-Unmodified-Since is a valid date: Last-Modified later -> 412 (§13.1.4).
/// 3. If-None-Match is present: true (a weak match, or `*`, §13.1.2) -> 304.
/// 4. Else If-Modified-Since is a valid date: Last-Modified not later -> 304 (§13.1.3).
/// 5. If-Range (only with Range, §13.1.5): a strong ETag match, or an exact
///    match of a strong Last-Modified date, keeps the range; otherwise the
///    full representation is sent.
///
/// Invalid dates and repeated date fields are ignored (§13.1.3, §13.1.4).
/// The caller applies this only when the response would otherwise be 2xx (§13.2.1).
pub fn evaluate(
    conditionals: &Conditionals<'_>,
    range_present: bool,
    v: &Validators<'_>,
) -> Precondition {
    let current = v.current_tag();
    if !conditionals.if_match.is_empty() {
        let matches = match parse_tag_list(&conditionals.if_match) {
            TagList::Any => true,
            TagList::Tags(tags) => tags.iter().any(|t| t.strong_eq(&current)),
        };
        if !matches {
            return Precondition::Failed;
        }
    } else if let Some(date) = conditionals
        .if_unmodified_since
        .get()
        .and_then(parse_http_date)
    {
        if v.last_modified > date {
            return Precondition::Failed;
        }
    }

    if !conditionals.if_none_match.is_empty() {
        let matches = match parse_tag_list(&conditionals.if_none_match) {
            TagList::Any => true,
            TagList::Tags(tags) => tags.iter().any(|t| t.weak_eq(&current)),
        };
        if matches {
            return Precondition::NotModified;
        }
    } else if let Some(date) = conditionals
        .if_modified_since
        .get()
        .and_then(parse_http_date)
    {
        if v.last_modified <= date {
            return Precondition::NotModified;
        }
    }

    let use_range = range_present && if_range_holds(conditionals.if_range, v);
    Precondition::Proceed { use_range }
}

/// §13.1.5: whether the Range field may be used given If-Range.
fn if_range_holds(if_range: Single<'_>, v: &Validators<'_>) -> bool {
    let value = match if_range {
        Single::Absent => return true,
        Single::Repeated => return false,
        Single::One(value) => value,
    };
    if value.starts_with(b"\"") || value.starts_with(b"W/") {
        return match parse_entity_tag(value) {
            Some((tag, [])) => tag.strong_eq(&v.current_tag()),
            _ => false,
        };
    }
    parse_http_date(value)
        .is_some_and(|date| date == v.last_modified && v.last_modified_is_strong())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ETAG: &[u8] = b"\"1-1a-5\"";
    const LM: u64 = 1_700_000_000;
    const LM_TEXT: &str = "Tue, 14 Nov 2023 22:13:20 GMT";
    const BEFORE: &str = "Thu, 01 Jan 1970 00:00:00 GMT";
    const AFTER: &str = "Wed, 15 Nov 2023 22:13:20 GMT";

    fn v() -> Validators<'static> {
        Validators {
            etag: ETAG,
            last_modified: LM,
            now: LM + 100,
        }
    }

    fn eval(fields: &[(&str, &'static str)], range: bool) -> Precondition {
        let mut c = Conditionals::default();
        for &(name, value) in fields {
            let value = value.as_bytes();
            match name {
                "if-match" => c.if_match.push(value),
                "if-none-match" => c.if_none_match.push(value),
                "ims" => c.if_modified_since = Single::One(value),
                "ius" => c.if_unmodified_since = Single::One(value),
                "if-range" => c.if_range = Single::One(value),
                _ => unreachable!(),
            }
        }
        evaluate(&c, range, &v())
    }

    const GO: Precondition = Precondition::Proceed { use_range: false };
    const GO_RANGE: Precondition = Precondition::Proceed { use_range: true };

    #[test]
    fn dates_round_trip_in_all_three_formats() {
        assert_eq!(&imf_fixdate(LM)[..], LM_TEXT.as_bytes());
        assert_eq!(parse_http_date(LM_TEXT.as_bytes()), Some(LM));
        assert_eq!(
            parse_http_date(b"Tuesday, 14-Nov-23 22:13:20 GMT"),
            Some(LM)
        );
        assert_eq!(parse_http_date(b"Tue Nov 14 22:13:20 2023"), Some(LM));
        assert_eq!(parse_http_date(b"yesterday"), None);
        assert_eq!(parse_http_date(b"Tue, 14 Nov 2023 22:13:20 GMT\xff"), None);
    }

    #[test]
    fn etag_comes_from_inode_size_and_nanosecond_mtime() {
        let meta = FileMeta {
            len: 26,
            inode: 1,
            mtime_nanos: 5,
        };
        assert_eq!(meta.etag().as_bytes(), ETAG);
        let touched = FileMeta {
            mtime_nanos: 6,
            ..meta
        };
        assert_ne!(touched.etag(), meta.etag());
        let old = FileMeta {
            mtime_nanos: -1_500_000_000,
            ..meta
        };
        assert_eq!(old.last_modified_secs(), 0);
    }

    #[test]
    fn rfc9110_8_8_3_2_comparison_functions() {
        let strong = EntityTag {
            weak: false,
            tag: b"\"1\"",
        };
        let weak = EntityTag {
            weak: true,
            tag: b"\"1\"",
        };
        let other = EntityTag {
            weak: false,
            tag: b"\"2\"",
        };
        assert!(strong.strong_eq(&strong) && !strong.strong_eq(&weak) && !weak.strong_eq(&weak));
        assert!(strong.weak_eq(&weak) && weak.weak_eq(&weak) && !strong.weak_eq(&other));
    }

    #[test]
    fn entity_tag_lists_parse_commas_inside_quotes() {
        let TagList::Tags(tags) = parse_tag_list(&[b"\"a,b\", W/\"c\" ,,\"d\""]) else {
            panic!()
        };
        let texts: Vec<_> = tags.iter().map(|t| (t.weak, t.tag)).collect();
        assert_eq!(
            texts,
            vec![
                (false, &b"\"a,b\""[..]),
                (true, b"\"c\""),
                (false, b"\"d\"")
            ]
        );
        let TagList::Tags(tags) = parse_tag_list(&[b"\"a\", bogus, \"b\""]) else {
            panic!()
        };
        assert_eq!(tags.len(), 1, "parsing stops at the first non-tag");
        assert!(matches!(parse_tag_list(&[b"\"a\"", b"*"]), TagList::Any));
    }

    #[test]
    fn step_1_if_match_uses_strong_comparison() {
        assert_eq!(eval(&[("if-match", "\"1-1a-5\"")], false), GO);
        assert_eq!(eval(&[("if-match", "\"x\", \"1-1a-5\"")], false), GO);
        assert_eq!(eval(&[("if-match", "*")], false), GO);
        assert_eq!(
            eval(&[("if-match", "\"nope\"")], false),
            Precondition::Failed
        );
        assert_eq!(
            eval(&[("if-match", "W/\"1-1a-5\"")], false),
            Precondition::Failed
        );
        assert_eq!(
            eval(&[("if-match", "garbage")], false),
            Precondition::Failed
        );
    }

    #[test]
    fn step_2_if_unmodified_since_only_without_if_match() {
        assert_eq!(eval(&[("ius", BEFORE)], false), Precondition::Failed);
        assert_eq!(eval(&[("ius", LM_TEXT)], false), GO);
        assert_eq!(eval(&[("ius", AFTER)], false), GO);
        assert_eq!(eval(&[("ius", "not a date")], false), GO);
        assert_eq!(
            eval(&[("if-match", "\"1-1a-5\""), ("ius", BEFORE)], false),
            GO
        );
    }

    #[test]
    fn step_3_if_none_match_uses_weak_comparison() {
        assert_eq!(
            eval(&[("if-none-match", "\"1-1a-5\"")], false),
            Precondition::NotModified
        );
        assert_eq!(
            eval(&[("if-none-match", "W/\"1-1a-5\"")], false),
            Precondition::NotModified
        );
        assert_eq!(
            eval(&[("if-none-match", "\"x\", \"1-1a-5\"")], false),
            Precondition::NotModified
        );
        assert_eq!(
            eval(&[("if-none-match", "*")], false),
            Precondition::NotModified
        );
        assert_eq!(eval(&[("if-none-match", "\"nope\"")], false), GO);
        assert_eq!(
            eval(&[("if-none-match", "\"1-1a-5\"")], true),
            Precondition::NotModified
        );
    }

    #[test]
    fn step_4_if_modified_since_only_without_if_none_match() {
        assert_eq!(eval(&[("ims", LM_TEXT)], false), Precondition::NotModified);
        assert_eq!(eval(&[("ims", AFTER)], false), Precondition::NotModified);
        assert_eq!(eval(&[("ims", BEFORE)], false), GO);
        assert_eq!(eval(&[("ims", "garbage")], false), GO);
        assert_eq!(
            eval(&[("if-none-match", "\"nope\""), ("ims", LM_TEXT)], false),
            GO
        );
        let c = Conditionals {
            if_modified_since: Single::Repeated,
            ..Default::default()
        };
        assert_eq!(evaluate(&c, false, &v()), GO, "repeated IMS is ignored");
    }

    #[test]
    fn failures_come_before_not_modified() {
        assert_eq!(
            eval(
                &[("if-match", "\"nope\""), ("if-none-match", "\"1-1a-5\"")],
                false
            ),
            Precondition::Failed
        );
    }

    #[test]
    fn step_5_if_range() {
        assert_eq!(eval(&[], true), GO_RANGE);
        assert_eq!(eval(&[("if-range", "\"1-1a-5\"")], true), GO_RANGE);
        assert_eq!(eval(&[("if-range", "\"other\"")], true), GO);
        assert_eq!(eval(&[("if-range", "W/\"1-1a-5\"")], true), GO);
        assert_eq!(eval(&[("if-range", "\"1-1a-5\" junk")], true), GO);
        assert_eq!(eval(&[("if-range", LM_TEXT)], true), GO_RANGE);
        assert_eq!(eval(&[("if-range", AFTER)], true), GO);
        assert_eq!(eval(&[("if-range", "garbage")], true), GO);
        let mut c = Conditionals {
            if_range: Single::One(LM_TEXT.as_bytes()),
            ..Default::default()
        };
        let fresh = Validators { now: LM, ..v() };
        assert_eq!(
            evaluate(&c, true, &fresh),
            GO,
            "a date from the current second is weak"
        );
        c.if_range = Single::Repeated;
        assert_eq!(evaluate(&c, true, &v()), GO);
    }
}

#[cfg(test)]
mod formatting {
    use super::*;
    use proptest::prelude::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn etags_are_quoted_lowercase_hex_without_leading_zeros() {
        let meta = FileMeta {
            len: 0,
            inode: 0xab,
            mtime_nanos: -1,
        };
        assert_eq!(meta.etag().as_str(), "\"ab-0-ffffffffffffffff\"");
    }

    #[test]
    fn imf_fixdate_edges() {
        assert_eq!(&imf_fixdate(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(&imf_fixdate(784_111_777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(&imf_fixdate(951_782_400), b"Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(&imf_fixdate(u64::MAX), b"Fri, 31 Dec 9999 23:59:59 GMT");
    }

    proptest! {
        #[test]
        fn imf_fixdate_agrees_with_httpdate(secs in 0..=MAX_HTTP_DATE) {
            let expected = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs));
            prop_assert_eq!(&imf_fixdate(secs)[..], expected.as_bytes());
        }

        #[test]
        fn etags_agree_with_format(inode: u64, len: u64, mtime: i64) {
            let meta = FileMeta { len, inode, mtime_nanos: i128::from(mtime) };
            let expected = format!("\"{:x}-{:x}-{:x}\"", inode, len, mtime as u64);
            let etag = meta.etag();
            prop_assert_eq!(etag.as_str(), expected);
        }
    }
}
