//! Request-target to a path relative to the served root (RFC 9112 §3.2,
//! RFC 3986 §5.2.4), refusing anything that could leave the root.
//!
//! Rules, applied in order:
//! 1. The target is origin-form (`/path?query`) or absolute-form
//!    (`http://host/path`, RFC 9112 §3.2.2); `*` and authority-form are refused.
//! 2. The query and any fragment are dropped: files have no query.
//! 3. Percent-escapes are decoded once; a malformed escape is refused. An
//!    encoded slash (`%2F`) separates segments exactly as `/` does.
//! 4. A decoded NUL, control byte or backslash is refused: no file we serve
//!    has one, and backslashes are path separators to some clients.
//! 5. Empty and `.` segments are dropped; `..` removes the previous segment,
//!    and a `..` with nothing left to remove is refused (it aims above the root).
//! 6. A segment starting with `.` is hidden: dotfiles are never served.
//!
//! The result never contains `..`, `.`, an empty segment or a leading `/`,
//! so joining it to the root cannot climb out lexically; symlinks are the I/O
//! layer's job (openat2 with `RESOLVE_BENEATH`).

use std::fmt;

/// A cleaned path, relative to the root: segments joined by `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanPath {
    /// Empty for the root itself.
    pub relative: Vec<u8>,
}

impl CleanPath {
    /// The last segment's extension, for the MIME lookup.
    pub fn extension(&self) -> Option<&[u8]> {
        let name = self.relative.rsplit(|&b| b == b'/').next()?;
        let dot = name.iter().rposition(|&b| b == b'.')?;
        Some(&name[dot + 1..])
    }
}

/// Why a target cannot name a file under the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PathError {
    /// `*`, authority-form, or an absolute-form with a scheme we do not serve.
    NotAPath,
    /// `%` not followed by two hex digits.
    BadEscape,
    /// NUL, a control byte or a backslash after decoding.
    ForbiddenByte,
    /// A `..` that would climb above the root.
    EscapesRoot,
    /// A dotfile or dot-directory.
    Hidden,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::NotAPath => "request target is not a path",
            PathError::BadEscape => "malformed percent-escape",
            PathError::ForbiddenByte => "forbidden byte in path",
            PathError::EscapesRoot => "path climbs above the root",
            PathError::Hidden => "hidden path",
        })
    }
}

impl std::error::Error for PathError {}

/// Turns a raw request-target into a path under the root (rules in the module doc).
/// Two passes over the path and one allocation, the result: the first pass
/// finds any malformed escape or forbidden byte (an escape error wins, as if
/// the whole path were decoded first), the second decodes and applies the
/// segment rules straight into the result.
pub fn clean(target: &[u8]) -> Result<CleanPath, PathError> {
    let path = path_of_target(target)?;
    let path = &path[..path
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .unwrap_or(path.len())];
    check_bytes(path)?;
    // Kept segments, each followed by a `/` (the last one is popped at the end).
    let mut relative = Vec::with_capacity(path.len() + 1);
    let mut segment_start = 0;
    let mut bytes = path.iter();
    loop {
        let next = bytes.next().map(|&b| match b {
            b'%' => decode_escape(&mut bytes),
            b => b,
        });
        if next.is_some_and(|b| b != b'/') {
            relative.extend(next);
            continue;
        }
        end_segment(&mut relative, segment_start)?;
        segment_start = relative.len();
        if next.is_none() {
            break;
        }
    }
    relative.pop();
    let hidden = relative
        .split(|&b| b == b'/')
        .any(|segment| segment.starts_with(b"."));
    if hidden {
        return Err(PathError::Hidden);
    }
    Ok(CleanPath { relative })
}

/// Rules 3 and 4 without decoding into memory: a malformed escape anywhere,
/// else a forbidden byte anywhere once decoded.
fn check_bytes(path: &[u8]) -> Result<(), PathError> {
    let mut forbidden = false;
    let mut bytes = path.iter();
    while let Some(&b) = bytes.next() {
        let decoded = if b == b'%' {
            escape_value(&mut bytes).ok_or(PathError::BadEscape)?
        } else {
            b
        };
        forbidden |= decoded < 0x20 || decoded == 0x7f || decoded == b'\\';
    }
    if forbidden {
        return Err(PathError::ForbiddenByte);
    }
    Ok(())
}

/// The byte an escape `%XY` stands for, the `%` already taken; `None` if
/// the two hex digits are not there. Both digits are consumed either way.
fn escape_value(bytes: &mut std::slice::Iter<'_, u8>) -> Option<u8> {
    let hi = bytes.next().and_then(|&h| hex_value(h));
    let lo = bytes.next().and_then(|&l| hex_value(l));
    Some(hi? << 4 | lo?)
}

/// [`escape_value`] for an escape known to be well formed ([`check_bytes`]).
fn decode_escape(bytes: &mut std::slice::Iter<'_, u8>) -> u8 {
    escape_value(bytes).unwrap_or(0)
}

/// Rule 5 for the segment `relative[segment_start..]`, just decoded: an empty
/// or `.` segment is dropped, `..` drops itself and the kept segment before
/// it (refused when there is none), any other is kept and followed by `/`.
fn end_segment(relative: &mut Vec<u8>, segment_start: usize) -> Result<(), PathError> {
    match &relative[segment_start..] {
        b"" | b"." => relative.truncate(segment_start),
        b".." => {
            // The previous segment ends with the `/` at segment_start - 1.
            let Some(before) = segment_start.checked_sub(1) else {
                return Err(PathError::EscapesRoot);
            };
            let previous = relative[..before]
                .iter()
                .rposition(|&b| b == b'/')
                .map_or(0, |i| i + 1);
            relative.truncate(previous);
        }
        _ => relative.push(b'/'),
    }
    Ok(())
}

/// Rule 1: the path part of an origin-form or absolute-form target.
fn path_of_target(target: &[u8]) -> Result<&[u8], PathError> {
    if target.starts_with(b"/") {
        return Ok(target);
    }
    let rest = strip_prefix_ignore_case(target, b"http://")
        .or_else(|| strip_prefix_ignore_case(target, b"https://"))
        .ok_or(PathError::NotAPath)?;
    // The authority ends at the first `/`, `?` or `#`; an absent path is `/`.
    match rest.iter().position(|&b| matches!(b, b'/' | b'?' | b'#')) {
        Some(i) if rest[i] == b'/' => Ok(&rest[i..]),
        _ => Ok(b"/"),
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    fn rel(target: &str) -> Result<String, PathError> {
        clean(target.as_bytes()).map(|p| String::from_utf8(p.relative).unwrap())
    }

    #[test]
    fn rule_1_target_forms() {
        assert_eq!(rel("/a/b.mp4"), Ok("a/b.mp4".into()));
        assert_eq!(rel("http://example.com/a.mp4"), Ok("a.mp4".into()));
        assert_eq!(rel("HTTP://example.com:8080/a.mp4?x"), Ok("a.mp4".into()));
        assert_eq!(rel("https://example.com"), Ok("".into()));
        assert_eq!(rel("http://example.com?x=/etc"), Ok("".into()));
        assert_eq!(rel("*"), Err(PathError::NotAPath));
        assert_eq!(rel("example.com:443"), Err(PathError::NotAPath));
        assert_eq!(rel("ftp://x/a"), Err(PathError::NotAPath));
    }

    #[test]
    fn rule_2_query_and_fragment_are_dropped() {
        assert_eq!(rel("/a.mp4?x=1&y=/../../"), Ok("a.mp4".into()));
        assert_eq!(rel("/a.mp4#frag"), Ok("a.mp4".into()));
        assert_eq!(rel("/a%3Fb"), Ok("a?b".into()));
    }

    #[test]
    fn rule_3_percent_decoding() {
        assert_eq!(rel("/%73mall.txt"), Ok("small.txt".into()));
        assert_eq!(rel("/a%20b%20%C3%A9.txt"), Ok("a b é.txt".into()));
        assert_eq!(rel("/a%2Fb"), Ok("a/b".into()));
        assert_eq!(rel("/%25"), Ok("%".into()));
        assert_eq!(rel("/%252e%252e"), Ok("%2e%2e".into()), "decoded once only");
        for bad in ["/%zz", "/%2", "/%", "/a%g0"] {
            assert_eq!(rel(bad), Err(PathError::BadEscape), "{bad}");
        }
    }

    #[test]
    fn rule_4_forbidden_bytes() {
        for bad in [
            "/a%00.mp4",
            "/a%0a",
            "/a%7f",
            "/..%5c..%5cetc",
            "/a\\b",
            "/%5c",
        ] {
            assert_eq!(rel(bad), Err(PathError::ForbiddenByte), "{bad}");
        }
    }

    #[test]
    fn rule_5_dot_segments() {
        assert_eq!(rel("/a/./b//c/"), Ok("a/b/c".into()));
        assert_eq!(rel("/a/../b"), Ok("b".into()));
        assert_eq!(rel("/"), Ok("".into()));
        for bad in [
            "/..",
            "/../etc/passwd",
            "/a/../../b",
            "/%2e%2e/x",
            "/%2E%2E%2F%2E%2E%2Fetc",
            "/..%2f..%2fetc/passwd",
            "//..//x",
        ] {
            assert_eq!(rel(bad), Err(PathError::EscapesRoot), "{bad}");
        }
    }

    #[test]
    fn rule_6_dotfiles_are_hidden() {
        for bad in [
            "/.hidden",
            "/a/.git/config",
            "/%2ehidden",
            "/.well-known/x",
            "/a/..b",
        ] {
            assert_eq!(rel(bad), Err(PathError::Hidden), "{bad}");
        }
        assert_eq!(rel("/a.b/c.d"), Ok("a.b/c.d".into()));
    }

    #[test]
    fn extension_is_the_last_segments() {
        let ext = |t: &str| clean(t.as_bytes()).unwrap().extension().map(|e| e.to_vec());
        assert_eq!(ext("/v/a.MP4"), Some(b"MP4".to_vec()));
        assert_eq!(ext("/v.d/a"), None);
        assert_eq!(ext("/"), None);
    }

    /// Pieces that traversal attacks are made of.
    fn hostile_piece() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "/", "..", ".", "%2e", "%2E", "%2f", "%2F", "%5c", "\\", "%00", "%", "a", "b.mp4",
            "%252e", "?", "#", "//", "%c0%af", "..;", "~", ":", "http://h",
        ])
        .prop_map(str::to_owned)
    }

    proptest! {
        #[test]
        fn no_target_escapes_the_root(pieces in prop::collection::vec(hostile_piece(), 0..24),
                                      tail in ".{0,16}") {
            let target = format!("/{}{}", pieces.concat(), tail);
            if let Ok(path) = clean(target.as_bytes()) {
                let root = std::path::Path::new("/srv/root");
                let joined = root.join(OsStr::from_bytes(&path.relative));
                prop_assert!(joined.starts_with(root));
                for segment in path.relative.split(|&b| b == b'/') {
                    prop_assert!(segment != b".." && segment != b"." );
                    prop_assert!(path.relative.is_empty() || !segment.is_empty());
                    prop_assert!(!segment.starts_with(b"."));
                }
                prop_assert!(!path.relative.contains(&0) && !path.relative.contains(&b'\\'));
                let components_ok = joined.components().all(|c| !matches!(c,
                    std::path::Component::ParentDir | std::path::Component::CurDir));
                prop_assert!(components_ok);
            }
        }

        /// The one-pass cleaner gives what decoding the whole path, then
        /// splitting it into segments, gives (the obvious algorithm, kept
        /// here as the model), error kinds included.
        #[test]
        fn cleaning_matches_the_decode_then_split_model(
            pieces in prop::collection::vec(hostile_piece(), 0..24),
            tail in ".{0,16}",
        ) {
            let target = format!("/{}{}", pieces.concat(), tail);
            prop_assert_eq!(clean(target.as_bytes()), model_clean(target.as_bytes()));
        }

        #[test]
        fn arbitrary_bytes_never_panic(target in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = clean(&target);
        }
    }

    /// Rules 2-6 the obvious way: decode everything, check, split, join.
    fn model_clean(target: &[u8]) -> Result<CleanPath, PathError> {
        let path = path_of_target(target)?;
        let end = path
            .iter()
            .position(|&b| b == b'?' || b == b'#')
            .unwrap_or(path.len());
        let mut decoded = Vec::new();
        let mut bytes = path[..end].iter();
        while let Some(&b) = bytes.next() {
            if b != b'%' {
                decoded.push(b);
                continue;
            }
            let hi = bytes.next().and_then(|&h| hex_value(h));
            let lo = bytes.next().and_then(|&l| hex_value(l));
            match (hi, lo) {
                (Some(hi), Some(lo)) => decoded.push(hi << 4 | lo),
                _ => return Err(PathError::BadEscape),
            }
        }
        if decoded.iter().any(|&b| b < 0x20 || b == 0x7f || b == b'\\') {
            return Err(PathError::ForbiddenByte);
        }
        let mut segments: Vec<&[u8]> = Vec::new();
        for segment in decoded.split(|&b| b == b'/') {
            match segment {
                b"" | b"." => {}
                b".." => {
                    segments.pop().ok_or(PathError::EscapesRoot)?;
                }
                _ => segments.push(segment),
            }
        }
        if segments.iter().any(|s| s.starts_with(b".")) {
            return Err(PathError::Hidden);
        }
        Ok(CleanPath {
            relative: segments.join(&b'/'),
        })
    }
}
