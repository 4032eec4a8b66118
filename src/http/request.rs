//! Request-head parsing (RFC 9112 §2-§3, §6-§7; RFC 9110 §7.2).
//!
//! [`parse`] reads one request head from the front of a byte buffer and borrows
//! every field it keeps from that buffer; it never allocates for a request with
//! no list-valued conditional headers. `Ok(None)` means "need more bytes".
//!
//! The request line is parsed here by hand (httparse only knows HTTP/1.0 and 1.1,
//! and we must tell a 505 from a 400 and a 414 from a 431); header fields go
//! through `httparse::parse_headers`, which already refuses obs-fold, whitespace
//! before the colon, and control bytes in values.

use std::fmt;

/// Longest request line we accept, method and version included. Longer is 414.
pub const MAX_REQUEST_LINE: usize = 8 * 1024;
/// Largest whole request head (request line plus header block). Larger is 431.
pub const MAX_HEAD: usize = 16 * 1024;
/// Most header fields in one request. More is 431.
pub const MAX_HEADERS: usize = 100;
/// Fields the first parse attempt has room for (browsers send about 10-15).
const COMMON_HEADERS: usize = 24;

/// Request methods. GET and HEAD are served; PUT and DELETE beneath an
/// `--ingest` prefix; the other registered methods get 405, anything else
/// 501 (RFC 9110 §9.1, §15.5.6, §15.6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    /// Writes a file beneath an ingest prefix (RFC 9110 §9.3.4).
    Put,
    /// Removes a file beneath an ingest prefix (RFC 9110 §9.3.5).
    Delete,
    /// Answered only as a CORS preflight when `--cors` is on; 405 otherwise.
    Options,
    /// A method RFC 9110 or RFC 5789 defines that we do not allow on files.
    NotAllowed,
    /// A syntactically valid method token nobody here knows.
    Unknown,
}

impl Method {
    /// PUT and DELETE: the methods that change the tree.
    pub fn writes(self) -> bool {
        matches!(self, Method::Put | Method::Delete)
    }
}

/// The protocol version, after RFC 9110 §2.5: a higher 1.x minor is handled as 1.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// How the request's own content is framed (RFC 9112 §6.3), so that it can be
/// skipped and the next pipelined request found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    None,
    Length(u64),
    Chunked,
}

/// A header that must appear at most once: a second copy makes it unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Single<'a> {
    #[default]
    Absent,
    One(&'a [u8]),
    /// Sent more than once; treated as invalid by whoever reads it.
    Repeated,
}

impl<'a> Single<'a> {
    fn add(&mut self, value: &'a [u8]) {
        *self = match *self {
            Single::Absent => Single::One(value),
            _ => Single::Repeated,
        };
    }

    /// The value if the field was sent exactly once.
    pub fn get(&self) -> Option<&'a [u8]> {
        match *self {
            Single::One(v) => Some(v),
            _ => None,
        }
    }

    pub fn is_present(&self) -> bool {
        !matches!(self, Single::Absent)
    }
}

/// The conditional header fields of RFC 9110 §13.1, as raw values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conditionals<'a> {
    /// List-valued: every field line, in order (RFC 9110 §5.3 allows splitting).
    pub if_match: Vec<&'a [u8]>,
    pub if_none_match: Vec<&'a [u8]>,
    pub if_modified_since: Single<'a>,
    pub if_unmodified_since: Single<'a>,
    pub if_range: Single<'a>,
}

/// One parsed request head. Fields borrow from the read buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    pub method: Method,
    /// The raw request-target: origin-form, absolute-form, `*` or authority-form.
    pub target: &'a [u8],
    pub version: Version,
    pub host: Option<&'a [u8]>,
    pub range: Single<'a>,
    pub conditionals: Conditionals<'a>,
    /// Whether the client allows the connection to stay open (RFC 9112 §9.3).
    pub keep_alive: bool,
    pub body: BodyFraming,
    /// `Content-Length: 0` was sent (framing `None` either way): a PUT of
    /// an empty file says so.
    pub declares_empty_body: bool,
    /// `Expect: 100-continue` with a body. An upload we accept gets
    /// `100 Continue` first; any other request is answered and closed rather
    /// than waiting for a body the client may hold back.
    pub expects_continue: bool,
    /// `Authorization`, for the ingest tokens.
    pub authorization: Single<'a>,
    /// The request line without its line ending, for the access log.
    pub line: &'a [u8],
    /// `Referer` and `User-Agent`, for the access log.
    pub referer: Option<&'a [u8]>,
    pub user_agent: Option<&'a [u8]>,
    /// `Origin`, and the CORS preflight's `Access-Control-Request-Method`.
    pub origin: Option<&'a [u8]>,
    pub cors_request_method: Option<&'a [u8]>,
    /// `Accept-Encoding`, for precompressed sidecars.
    pub accept_encoding: Option<&'a [u8]>,
}

impl Request<'static> {
    /// Stands in for a head that could not be parsed, to answer its error.
    pub fn unparsed() -> Self {
        Request {
            method: Method::Unknown,
            target: b"",
            version: Version::Http11,
            host: None,
            range: Single::Absent,
            conditionals: Conditionals::default(),
            keep_alive: false,
            body: BodyFraming::None,
            declares_empty_body: false,
            expects_continue: false,
            authorization: Single::Absent,
            line: b"",
            referer: None,
            user_agent: None,
            origin: None,
            cors_request_method: None,
            accept_encoding: None,
        }
    }
}

/// Why a request head was refused. Mapped to a status in [`super::error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseError {
    /// The request line is longer than [`MAX_REQUEST_LINE`].
    RequestLineTooLong,
    /// The head is larger than [`MAX_HEAD`] or has more than [`MAX_HEADERS`] fields.
    HeadTooLarge,
    /// The request line is not `method SP target SP HTTP/x.y`.
    BadRequestLine,
    /// A version we cannot speak (`HTTP/2.0`, `HTTP/0.9` in a request line).
    UnsupportedVersion,
    /// A header line httparse refused: obs-fold, no colon, space before the
    /// colon, control bytes or NUL in a value, bad field name.
    BadHeader,
    /// HTTP/1.1 without Host, or more than one Host, or a Host with bad bytes.
    BadHost,
    /// Content-Length unparseable, or copies that disagree.
    BadContentLength,
    /// Transfer-Encoding together with Content-Length, on HTTP/1.0, or whose
    /// final coding is not chunked (RFC 9112 §6.1, §6.3).
    BadTransferEncoding,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            ParseError::RequestLineTooLong => "request line too long",
            ParseError::HeadTooLarge => "request header fields too large",
            ParseError::BadRequestLine => "malformed request line",
            ParseError::UnsupportedVersion => "unsupported HTTP version",
            ParseError::BadHeader => "malformed header field",
            ParseError::BadHost => "missing, repeated or malformed Host",
            ParseError::BadContentLength => "bad Content-Length",
            ParseError::BadTransferEncoding => "bad Transfer-Encoding framing",
        };
        f.write_str(text)
    }
}

impl std::error::Error for ParseError {}

/// Parses one request head from the start of `buf`.
///
/// Returns the request and the number of bytes its head used, `Ok(None)` if the
/// head is not complete yet, or the reason it can never be valid.
pub fn parse(buf: &[u8]) -> Result<Option<(Request<'_>, usize)>, ParseError> {
    // RFC 9112 §2.2: ignore empty lines received before the request line,
    // but not without bound: a flood of them is refused like a long line.
    let skipped = buf
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    if skipped > MAX_REQUEST_LINE {
        return Err(ParseError::RequestLineTooLong);
    }
    // The skipped lines count towards MAX_HEAD like the head itself: the
    // connection stops growing its read buffer at MAX_HEAD (conn.rs `fill`), so
    // "need more bytes" must never be the answer once that much is buffered.
    let input_len = buf.len();
    let buf = &buf[skipped..];
    let Some(line) = parse_request_line(buf)? else {
        if input_len >= MAX_HEAD {
            return Err(ParseError::HeadTooLarge);
        }
        return Ok(None);
    };
    let header_bytes = &buf[line.len..];
    // Most heads have a handful of fields: try a small table first, so the
    // common case does not initialise room for MAX_HEADERS.
    let mut few = [httparse::EMPTY_HEADER; COMMON_HEADERS];
    let mut many;
    let parsed = match httparse::parse_headers(header_bytes, &mut few) {
        Err(httparse::Error::TooManyHeaders) => {
            many = [httparse::EMPTY_HEADER; MAX_HEADERS];
            httparse::parse_headers(header_bytes, &mut many)
        }
        other => other,
    };
    let (used, fields) = match parsed {
        Ok(httparse::Status::Complete((used, fields))) => (used, fields),
        Ok(httparse::Status::Partial) if input_len >= MAX_HEAD => {
            return Err(ParseError::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(ParseError::HeadTooLarge),
        Err(_) if input_len >= MAX_HEAD => return Err(ParseError::HeadTooLarge),
        Err(_) => return Err(ParseError::BadHeader),
    };
    let head_len = skipped + line.len + used;
    if head_len > MAX_HEAD {
        return Err(ParseError::HeadTooLarge);
    }
    let request = interpret_fields(line, fields)?;
    Ok(Some((request, head_len)))
}

struct RequestLine<'a> {
    text: &'a [u8],
    method: Method,
    target: &'a [u8],
    version: Version,
    /// Bytes used, line ending included.
    len: usize,
}

/// `request-line = method SP request-target SP HTTP-version CRLF` (RFC 9112 §3).
fn parse_request_line(buf: &[u8]) -> Result<Option<RequestLine<'_>>, ParseError> {
    let Some(lf) = buf.iter().position(|&b| b == b'\n') else {
        if buf.len() > MAX_REQUEST_LINE {
            return Err(ParseError::RequestLineTooLong);
        }
        return Ok(None);
    };
    if lf > MAX_REQUEST_LINE {
        return Err(ParseError::RequestLineTooLong);
    }
    // RFC 9112 §2.2: a bare LF may end a line; a bare CR elsewhere is invalid.
    let line = buf[..lf].strip_suffix(b"\r").unwrap_or(&buf[..lf]);
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ParseError::BadRequestLine);
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(ParseError::BadRequestLine);
    }
    if target.is_empty() || !target.iter().all(|&b| b.is_ascii_graphic()) {
        return Err(ParseError::BadRequestLine);
    }
    Ok(Some(RequestLine {
        text: line,
        method: classify_method(method),
        target,
        version: parse_version(version)?,
        len: lf + 1,
    }))
}

fn classify_method(token: &[u8]) -> Method {
    // Methods are case-sensitive (RFC 9110 §9.1).
    match token {
        b"GET" => Method::Get,
        b"HEAD" => Method::Head,
        b"OPTIONS" => Method::Options,
        b"PUT" => Method::Put,
        b"DELETE" => Method::Delete,
        b"POST" | b"CONNECT" | b"TRACE" | b"PATCH" => Method::NotAllowed,
        _ => Method::Unknown,
    }
}

/// `HTTP-version = "HTTP" "/" DIGIT "." DIGIT` (RFC 9112 §2.3).
fn parse_version(token: &[u8]) -> Result<Version, ParseError> {
    let &[b'H', b'T', b'T', b'P', b'/', major, b'.', minor] = token else {
        return Err(ParseError::BadRequestLine);
    };
    if !major.is_ascii_digit() || !minor.is_ascii_digit() {
        return Err(ParseError::BadRequestLine);
    }
    match (major, minor) {
        (b'1', b'0') => Ok(Version::Http10),
        // RFC 9110 §2.5: a higher minor version is processed as the highest we know.
        (b'1', _) => Ok(Version::Http11),
        _ => Err(ParseError::UnsupportedVersion),
    }
}

/// Reads the header fields we act on and checks framing (RFC 9112 §6.3).
fn interpret_fields<'a>(
    line: RequestLine<'a>,
    fields: &[httparse::Header<'a>],
) -> Result<Request<'a>, ParseError> {
    let mut host = Single::Absent;
    let mut range = Single::Absent;
    let mut conditionals = Conditionals::default();
    let mut content_length: Option<u64> = None;
    let mut transfer_encoding = Single::Absent;
    let mut connection_close = false;
    let mut connection_keep_alive = false;
    let mut expects_continue = false;
    let mut referer = None;
    let mut user_agent = None;
    let mut origin = None;
    let mut cors_request_method = None;
    let mut accept_encoding = None;
    let mut authorization = Single::Absent;

    for field in fields {
        let value = trim_ows(field.value);
        let name = field.name;
        if name.eq_ignore_ascii_case("host") {
            host.add(value);
        } else if name.eq_ignore_ascii_case("range") {
            range.add(value);
        } else if name.eq_ignore_ascii_case("if-match") {
            conditionals.if_match.push(value);
        } else if name.eq_ignore_ascii_case("if-none-match") {
            conditionals.if_none_match.push(value);
        } else if name.eq_ignore_ascii_case("if-modified-since") {
            conditionals.if_modified_since.add(value);
        } else if name.eq_ignore_ascii_case("if-unmodified-since") {
            conditionals.if_unmodified_since.add(value);
        } else if name.eq_ignore_ascii_case("if-range") {
            conditionals.if_range.add(value);
        } else if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(merge_content_length(content_length, value)?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding.add(value);
        } else if name.eq_ignore_ascii_case("connection") {
            for token in list_items(value) {
                connection_close |= token.eq_ignore_ascii_case(b"close");
                connection_keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("expect") {
            expects_continue |= value.eq_ignore_ascii_case(b"100-continue");
        } else if name.eq_ignore_ascii_case("user-agent") {
            user_agent = Some(value);
        } else if name.eq_ignore_ascii_case("referer") {
            referer = Some(value);
        } else if name.eq_ignore_ascii_case("origin") {
            origin = Some(value);
        } else if name.eq_ignore_ascii_case("access-control-request-method") {
            cors_request_method = Some(value);
        } else if name.eq_ignore_ascii_case("accept-encoding") {
            accept_encoding = Some(value);
        } else if name.eq_ignore_ascii_case("authorization") {
            authorization.add(value);
        }
    }

    let host = match (host, line.version) {
        (Single::One(h), _) if is_valid_host(h) => Some(h),
        (Single::Absent, Version::Http10) => None,
        _ => return Err(ParseError::BadHost),
    };
    let body = body_framing(line.version, content_length, transfer_encoding)?;
    let keep_alive = match line.version {
        Version::Http11 => !connection_close,
        Version::Http10 => connection_keep_alive && !connection_close,
    };
    Ok(Request {
        method: line.method,
        target: line.target,
        version: line.version,
        host,
        range,
        conditionals,
        keep_alive,
        body,
        declares_empty_body: content_length == Some(0),
        expects_continue: expects_continue && body != BodyFraming::None,
        authorization,
        line: line.text,
        referer,
        user_agent,
        origin,
        cors_request_method,
        accept_encoding,
    })
}

/// RFC 9112 §6.3 rules 3-5 for requests.
fn body_framing(
    version: Version,
    content_length: Option<u64>,
    transfer_encoding: Single<'_>,
) -> Result<BodyFraming, ParseError> {
    match (transfer_encoding, content_length) {
        (Single::Absent, None) => Ok(BodyFraming::None),
        (Single::Absent, Some(0)) => Ok(BodyFraming::None),
        (Single::Absent, Some(n)) => Ok(BodyFraming::Length(n)),
        // Rule 3: both present is a smuggling attempt; HTTP/1.0 has no chunking.
        (_, Some(_)) => Err(ParseError::BadTransferEncoding),
        (_, None) if version == Version::Http10 => Err(ParseError::BadTransferEncoding),
        (Single::One(te), None)
            if list_items(te)
                .last()
                .is_some_and(|c| c.eq_ignore_ascii_case(b"chunked")) =>
        {
            Ok(BodyFraming::Chunked)
        }
        // Rule 4: chunked is not the final coding, or the field repeats.
        _ => Err(ParseError::BadTransferEncoding),
    }
}

/// Content-Length may repeat only with one value, possibly as a list
/// (`5, 5`); anything else is unrecoverable framing (RFC 9112 §6.3 rule 5).
fn merge_content_length(seen: Option<u64>, value: &[u8]) -> Result<u64, ParseError> {
    let mut merged = seen;
    let mut any = false;
    for item in list_items(value) {
        let n = parse_decimal(item).ok_or(ParseError::BadContentLength)?;
        if merged.is_some_and(|m| m != n) {
            return Err(ParseError::BadContentLength);
        }
        merged = Some(n);
        any = true;
    }
    match merged {
        Some(n) if any => Ok(n),
        _ => Err(ParseError::BadContentLength),
    }
}

/// `1*DIGIT` without sign or overflow.
pub(crate) fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Splits a `#rule` list on commas, trimming OWS and dropping empty elements
/// (RFC 9110 §5.6.1.2).
pub(crate) fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|item| !item.is_empty())
}

pub(crate) fn trim_ows(mut value: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = value {
        value = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = value {
        value = rest;
    }
    value
}

/// `tchar` of RFC 9110 §5.6.2.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `Host = uri-host [ ":" port ]` (RFC 9110 §7.2): reg-name, IPv4 or an
/// IP-literal in brackets. An empty value is allowed for targets with no authority.
fn is_valid_host(host: &[u8]) -> bool {
    host.iter()
        .all(|&b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:[]%".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &[u8]) -> (Request<'_>, usize) {
        parse(raw).expect("valid").expect("complete")
    }

    fn err(raw: &[u8]) -> ParseError {
        parse(raw).expect_err("invalid")
    }

    #[test]
    fn parses_a_simple_get() {
        let raw = b"GET /a.mp4 HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1\r\n\r\nrest";
        let (req, used) = ok(raw);
        assert_eq!(used, raw.len() - 4);
        assert_eq!(req.method, Method::Get);
        assert_eq!(req.target, b"/a.mp4");
        assert_eq!(req.version, Version::Http11);
        assert_eq!(req.host, Some(&b"x"[..]));
        assert_eq!(req.range, Single::One(b"bytes=0-1"));
        assert!(req.keep_alive);
        assert_eq!(req.body, BodyFraming::None);
        assert_eq!(req.line, b"GET /a.mp4 HTTP/1.1");
    }

    #[test]
    fn incomplete_heads_ask_for_more() {
        let raw = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
        for cut in 0..raw.len() {
            assert_eq!(parse(&raw[..cut]), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn rfc9112_2_2_leading_empty_lines_are_ignored_and_bare_lf_ends_lines() {
        let raw = b"\r\n\nGET / HTTP/1.1\nHost: x\n\n";
        let (req, used) = ok(raw);
        assert_eq!(used, raw.len());
        assert_eq!(req.target, b"/");
    }

    #[test]
    fn a_flood_of_empty_lines_is_refused() {
        let flood = b"\r\n".repeat(MAX_REQUEST_LINE);
        assert_eq!(err(&flood), ParseError::RequestLineTooLong);
        let mut then_get = b"\r\n".repeat(MAX_REQUEST_LINE / 2 - 1);
        then_get.extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(ok(&then_get).1, then_get.len());
        // Fewer empty lines than that still count towards the head limit.
        let mut padded = b"\r\n".repeat(MAX_REQUEST_LINE / 2);
        padded.extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\nX: ");
        padded.resize(MAX_HEAD, b'a');
        assert_eq!(
            err(&padded),
            ParseError::HeadTooLarge,
            "no Ok(None) past MAX_HEAD"
        );
        padded.truncate(MAX_REQUEST_LINE + 40);
        padded.extend_from_slice(&b"a".repeat(MAX_HEAD - MAX_REQUEST_LINE));
        padded.extend_from_slice(b"\r\n\r\n");
        assert_eq!(
            err(&padded),
            ParseError::HeadTooLarge,
            "empty lines + head > MAX_HEAD"
        );
    }

    #[test]
    fn rfc9110_9_1_methods_are_classified() {
        let head = |m: &str| format!("{m} / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(ok(head("HEAD").as_bytes()).0.method, Method::Head);
        assert_eq!(ok(head("OPTIONS").as_bytes()).0.method, Method::Options);
        assert_eq!(ok(head("PUT").as_bytes()).0.method, Method::Put);
        assert_eq!(ok(head("DELETE").as_bytes()).0.method, Method::Delete);
        for m in ["POST", "TRACE", "PATCH", "CONNECT"] {
            assert_eq!(ok(head(m).as_bytes()).0.method, Method::NotAllowed, "{m}");
        }
        assert_eq!(ok(head("FOO").as_bytes()).0.method, Method::Unknown);
        assert_eq!(ok(head("get").as_bytes()).0.method, Method::Unknown);
        assert_eq!(err(head("G(T").as_bytes()), ParseError::BadRequestLine);
    }

    #[test]
    fn rfc9112_2_3_versions() {
        let head = |v: &str| format!("GET / {v}\r\nHost: x\r\n\r\n");
        assert_eq!(ok(head("HTTP/1.0").as_bytes()).0.version, Version::Http10);
        assert_eq!(ok(head("HTTP/1.1").as_bytes()).0.version, Version::Http11);
        assert_eq!(ok(head("HTTP/1.9").as_bytes()).0.version, Version::Http11);
        assert_eq!(
            err(head("HTTP/2.0").as_bytes()),
            ParseError::UnsupportedVersion
        );
        assert_eq!(
            err(head("HTTP/0.9").as_bytes()),
            ParseError::UnsupportedVersion
        );
        for bad in ["HTTX/1.1", "HTTP/1.1 ", "HTTP/11", "http/1.1", "HTTP/a.b"] {
            assert_eq!(
                err(head(bad).as_bytes()),
                ParseError::BadRequestLine,
                "{bad}"
            );
        }
        assert_eq!(err(b"GET /\r\n\r\n"), ParseError::BadRequestLine);
    }

    #[test]
    fn request_line_shape_is_strict() {
        assert_eq!(
            err(b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n"),
            ParseError::BadRequestLine
        );
        assert_eq!(
            err(b"GET /a\0b HTTP/1.1\r\nHost: x\r\n\r\n"),
            ParseError::BadRequestLine
        );
        assert_eq!(
            err(b"GET /a\tb HTTP/1.1\r\nHost: x\r\n\r\n"),
            ParseError::BadRequestLine
        );
        assert_eq!(err(b"garbage\r\n\r\n"), ParseError::BadRequestLine);
    }

    #[test]
    fn limits_give_414_and_431_kinds() {
        let long_target = format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX_REQUEST_LINE));
        assert_eq!(err(long_target.as_bytes()), ParseError::RequestLineTooLong);
        // Even before the line ends.
        assert_eq!(
            err(&long_target.as_bytes()[..MAX_REQUEST_LINE + 1]),
            ParseError::RequestLineTooLong
        );

        let big = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_HEAD)
        );
        assert_eq!(err(big.as_bytes()), ParseError::HeadTooLarge);
        assert_eq!(
            err(&big.as_bytes()[..MAX_HEAD + 10]),
            ParseError::HeadTooLarge
        );

        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
        let raw = format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n");
        assert_eq!(err(raw.as_bytes()), ParseError::HeadTooLarge);

        // More than the first attempt's table, fewer than the limit: parsed,
        // complete or partial.
        let some: String = (0..COMMON_HEADERS * 2)
            .map(|i| format!("X-{i}: v\r\n"))
            .collect();
        let raw = format!("GET / HTTP/1.1\r\nHost: x\r\n{some}Range: bytes=0-1\r\n\r\n");
        let (request, used) = parse(raw.as_bytes()).unwrap().unwrap();
        assert_eq!(used, raw.len());
        assert!(request.range.is_present());
        assert!(parse(&raw.as_bytes()[..raw.len() - 3]).unwrap().is_none());
    }

    #[test]
    fn rfc9112_5_malformed_field_lines_are_400() {
        for raw in [
            &b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n folded\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: x\r\nno colon\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nX: a\0b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x01b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n",
        ] {
            assert_eq!(
                err(raw),
                ParseError::BadHeader,
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn rfc9112_3_2_host_is_required_once_on_1_1() {
        assert_eq!(err(b"GET / HTTP/1.1\r\n\r\n"), ParseError::BadHost);
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"),
            ParseError::BadHost
        );
        assert_eq!(
            err(b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"),
            ParseError::BadHost
        );
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n"),
            ParseError::BadHost
        );
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"),
            ParseError::BadHost
        );
        assert_eq!(ok(b"GET / HTTP/1.0\r\n\r\n").0.host, None);
        assert_eq!(
            ok(b"GET / HTTP/1.1\r\nHost:\r\n\r\n").0.host,
            Some(&b""[..])
        );
        assert_eq!(
            ok(b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n").0.host,
            Some(&b"[::1]:80"[..])
        );
    }

    #[test]
    fn rfc9112_6_3_body_framing() {
        let body = |extra: &str| {
            let raw = format!("GET / HTTP/1.1\r\nHost: x\r\n{extra}\r\n");
            parse(raw.as_bytes()).map(|r| r.map(|(req, _)| req.body))
        };
        assert_eq!(
            body("Content-Length: 5\r\n"),
            Ok(Some(BodyFraming::Length(5)))
        );
        assert_eq!(body("Content-Length: 0\r\n"), Ok(Some(BodyFraming::None)));
        assert_eq!(
            body("Content-Length: 5, 5\r\n"),
            Ok(Some(BodyFraming::Length(5)))
        );
        assert_eq!(
            body("Content-Length: 5\r\nContent-Length: 5\r\n"),
            Ok(Some(BodyFraming::Length(5)))
        );
        assert_eq!(
            body("Transfer-Encoding: chunked\r\n"),
            Ok(Some(BodyFraming::Chunked))
        );
        assert_eq!(
            body("Transfer-Encoding: gzip, Chunked\r\n"),
            Ok(Some(BodyFraming::Chunked))
        );
        for bad in [
            "Content-Length: 5\r\nContent-Length: 6\r\n",
            "Content-Length: 5, 6\r\n",
            "Content-Length: -1\r\n",
            "Content-Length: +5\r\n",
            "Content-Length: abc\r\n",
            "Content-Length:\r\n",
            "Content-Length: 99999999999999999999999\r\n",
        ] {
            assert_eq!(body(bad), Err(ParseError::BadContentLength), "{bad}");
        }
        for bad in [
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
            "Transfer-Encoding: chunked, gzip\r\n",
            "Transfer-Encoding: gzip\r\n",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        ] {
            assert_eq!(body(bad), Err(ParseError::BadTransferEncoding), "{bad}");
        }
        assert_eq!(
            err(b"GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            ParseError::BadTransferEncoding
        );
    }

    #[test]
    fn rfc9112_9_3_persistence() {
        let alive = |raw: &[u8]| ok(raw).0.keep_alive;
        assert!(alive(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(!alive(
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        ));
        assert!(!alive(
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: foo, Close\r\n\r\n"
        ));
        assert!(!alive(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(alive(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
        assert!(!alive(
            b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"
        ));
    }

    #[test]
    fn conditional_fields_are_collected() {
        let raw = b"GET / HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"a\"\r\nif-none-match: \"b\"\r\n\
If-Modified-Since: d1\r\nIf-Modified-Since: d2\r\nIf-Range: \"a\"\r\nIf-Match: *\r\n\r\n";
        let (req, _) = ok(raw);
        let c = &req.conditionals;
        assert_eq!(c.if_none_match, vec![&b"\"a\""[..], b"\"b\""]);
        assert_eq!(c.if_match, vec![&b"*"[..]]);
        assert_eq!(c.if_modified_since, Single::Repeated);
        assert_eq!(c.if_range, Single::One(b"\"a\""));
        assert_eq!(c.if_unmodified_since, Single::Absent);
    }

    #[test]
    fn expect_continue_only_matters_with_a_body() {
        assert!(
            !ok(b"GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n")
                .0
                .expects_continue
        );
        let raw = b"GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n";
        assert!(ok(raw).0.expects_continue);
    }

    #[test]
    fn decimal_parsing_rejects_overflow_and_signs() {
        assert_eq!(parse_decimal(b"0"), Some(0));
        assert_eq!(parse_decimal(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_decimal(b"18446744073709551616"), None);
        assert_eq!(parse_decimal(b""), None);
        assert_eq!(parse_decimal(b"+1"), None);
    }
}
