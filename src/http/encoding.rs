//! Precompressed sidecars (`manifest.m3u8.br`, `.gz`) for text manifests and
//! subtitles, chosen by `Accept-Encoding` (RFC 9110 §12.5.3). Media bytes are
//! never compressed, and a Range request always gets the identity bytes, so a
//! 206 is never a slice of something compressed on the fly.

use super::path::CleanPath;
use super::request::{list_items, trim_ows};

/// A content coding we serve from a sidecar file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Brotli,
    Gzip,
}

impl Encoding {
    /// The sidecar's suffix after the original name.
    pub fn suffix(self) -> &'static str {
        match self {
            Encoding::Brotli => ".br",
            Encoding::Gzip => ".gz",
        }
    }

    /// The `Content-Encoding` token.
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Brotli => "br",
            Encoding::Gzip => "gzip",
        }
    }
}

/// Whether a file may have sidecars: text manifests and subtitles only.
pub fn has_sidecars(path: &CleanPath) -> bool {
    let Some(ext) = path.extension() else {
        return false;
    };
    ["m3u8", "mpd", "vtt", "srt"]
        .iter()
        .any(|e| ext.eq_ignore_ascii_case(e.as_bytes()))
}

/// Sidecar encodings to try, best first: those the client accepts with
/// q > 0 (brotli before gzip at equal q), and none for a Range request.
pub fn candidates(
    path: &CleanPath,
    accept_encoding: Option<&[u8]>,
    range_present: bool,
) -> Vec<Encoding> {
    let Some(accept) = accept_encoding.filter(|_| has_sidecars(path) && !range_present) else {
        return Vec::new();
    };
    let mut acceptable: Vec<(u16, Encoding)> = [Encoding::Brotli, Encoding::Gzip]
        .into_iter()
        .filter_map(|encoding| {
            let q = quality(accept, encoding.token().as_bytes());
            (q > 0).then_some((q, encoding))
        })
        .collect();
    // Stable sort: equal q keeps brotli first.
    acceptable.sort_by_key(|&(q, _)| std::cmp::Reverse(q));
    acceptable.into_iter().map(|(_, e)| e).collect()
}

/// The q-value (0-1000) `accept` gives `coding`, falling back to `*`; 0 if absent.
fn quality(accept: &[u8], coding: &[u8]) -> u16 {
    let mut wildcard = None;
    for item in list_items(accept) {
        let mut params = item.split(|&b| b == b';');
        let name = trim_ows(params.next().unwrap_or_default());
        let q = params
            .filter_map(|p| {
                trim_ows(p)
                    .strip_prefix(b"q=")
                    .or_else(|| trim_ows(p).strip_prefix(b"Q="))
            })
            .map(parse_qvalue)
            .next()
            .unwrap_or(Some(1000));
        let Some(q) = q else { continue };
        if name.eq_ignore_ascii_case(coding)
            || (coding == b"gzip" && name.eq_ignore_ascii_case(b"x-gzip"))
        {
            return q;
        }
        if name == b"*" {
            wildcard = Some(q);
        }
    }
    wildcard.unwrap_or(0)
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )` as thousandths.
fn parse_qvalue(text: &[u8]) -> Option<u16> {
    let (whole, fraction) = match text.iter().position(|&b| b == b'.') {
        Some(dot) => (&text[..dot], &text[dot + 1..]),
        None => (text, &b""[..]),
    };
    if fraction.len() > 3 || !fraction.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths = 0u16;
    for i in 0..3 {
        thousandths = thousandths * 10 + fraction.get(i).map_or(0, |d| u16::from(d - b'0'));
    }
    match whole {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::path::clean;

    fn pick(target: &str, accept: &str, range: bool) -> Vec<Encoding> {
        candidates(
            &clean(target.as_bytes()).unwrap(),
            Some(accept.as_bytes()),
            range,
        )
    }

    #[test]
    fn only_manifests_and_subtitles_have_sidecars() {
        assert_eq!(
            pick("/a.m3u8", "br, gzip", false),
            vec![Encoding::Brotli, Encoding::Gzip]
        );
        assert_eq!(pick("/a.MPD", "gzip", false), vec![Encoding::Gzip]);
        assert_eq!(pick("/a.vtt", "gzip", false), vec![Encoding::Gzip]);
        assert_eq!(
            pick("/a.mp4", "br, gzip", false),
            vec![],
            "media is never compressed"
        );
        assert_eq!(pick("/a.m4s", "gzip", false), vec![]);
    }

    #[test]
    fn rfc9110_12_5_3_qvalues() {
        assert_eq!(
            pick("/a.m3u8", "gzip;q=1.0, br;q=0.5", false),
            vec![Encoding::Gzip, Encoding::Brotli]
        );
        assert_eq!(pick("/a.m3u8", "br;q=0, gzip", false), vec![Encoding::Gzip]);
        assert_eq!(
            pick("/a.m3u8", "*", false),
            vec![Encoding::Brotli, Encoding::Gzip]
        );
        assert_eq!(pick("/a.m3u8", "*;q=0, gzip", false), vec![Encoding::Gzip]);
        assert_eq!(pick("/a.m3u8", "identity", false), vec![]);
        assert_eq!(pick("/a.m3u8", "x-gzip", false), vec![Encoding::Gzip]);
        assert_eq!(
            pick("/a.m3u8", "gzip;q=2", false),
            vec![],
            "invalid q is ignored"
        );
        assert_eq!(
            pick("/a.m3u8", "GZIP; Q=0.001", false),
            vec![Encoding::Gzip]
        );
    }

    #[test]
    fn ranges_get_identity_bytes() {
        assert_eq!(pick("/a.m3u8", "br, gzip", true), vec![]);
    }

    #[test]
    fn qvalue_grammar() {
        assert_eq!(parse_qvalue(b"0"), Some(0));
        assert_eq!(parse_qvalue(b"0.5"), Some(500));
        assert_eq!(parse_qvalue(b"1.000"), Some(1000));
        assert_eq!(parse_qvalue(b"1.5"), None);
        assert_eq!(parse_qvalue(b"0.1234"), None);
    }
}
