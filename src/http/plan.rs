//! Every HTTP decision for one request, as plain data.
//!
//! The I/O layer calls [`route`] to learn what the request is for, then
//! [`plan_file`], [`plan_index`], [`plan_preflight`], [`plan_written`] or
//! [`plan_error`] with what it found. The plan's head is written into the caller's buffer;
//! [`Plan::body`] says what follows it.

use super::encoding::{self, Encoding};
use super::error::{keeps_connection, status_of, RequestError, Status};
use super::index::{self, Entry};
use super::mime;
use super::path::{self, CleanPath};
use super::policy::Policy;
use super::range::{self, ByteRange, Selection};
use super::request::{Method, Request, Version};
use super::upload::WriteError;
use super::validators::{self, FileMeta, Precondition, Validators};

/// The time as a core sees it: epoch seconds and the matching IMF-fixdate,
/// formatted once per second per core.
#[derive(Debug, Clone, Copy)]
pub struct Clock<'a> {
    pub now: u64,
    pub date: &'a [u8],
}

/// What every planner reads besides the request: the time and the policy.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub clock: Clock<'a>,
    pub policy: &'a Policy,
}

/// One part of a `multipart/byteranges` body: its delimiter and headers, then its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub head: Vec<u8>,
    pub range: ByteRange,
}

/// What follows the response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Nothing, or a short text already appended to the head.
    None,
    /// One range of the file.
    File(ByteRange),
    /// Parts of the file, then the closing delimiter.
    Multipart { parts: Vec<Part>, closing: Vec<u8> },
    /// A generated page (the `--index` listing).
    Generated(Vec<u8>),
}

/// The outcome of planning: the head is in the caller's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub status: Status,
    pub body: Body,
    /// Whether to read another request on this connection afterwards.
    pub keep_alive: bool,
}

/// What a request is for, decided before any file is touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// A file (or, with `--index`, a directory) under the root.
    File(CleanPath),
    /// A CORS preflight (`OPTIONS` with `--cors`).
    Preflight,
    /// A PUT or DELETE beneath an `--ingest` prefix, for
    /// [`super::upload::plan_write`] to admit or refuse.
    Write(CleanPath),
}

/// Decides what a request asks for: the method (405/501 come before any
/// lookup, RFC 9110 §15.5.6) and the path. A write is routed only beneath
/// an `--ingest` prefix, after its path is cleaned exactly as a GET's.
pub fn route(request: &Request<'_>, policy: &Policy) -> Result<Route, RequestError> {
    match request.method {
        Method::Get | Method::Head => {}
        Method::Options if policy.cors.is_some() => return Ok(Route::Preflight),
        Method::Put | Method::Delete | Method::NotAllowed if policy.ingest.is_some() => {
            return route_write(request, policy)
        }
        Method::Options | Method::NotAllowed | Method::Put | Method::Delete => {
            return Err(RequestError::MethodNotAllowed)
        }
        Method::Unknown => return Err(RequestError::MethodUnknown),
    }
    path::clean(request.target)
        .map(Route::File)
        .map_err(RequestError::Path)
}

fn route_write(request: &Request<'_>, policy: &Policy) -> Result<Route, RequestError> {
    let path = path::clean(request.target).map_err(RequestError::Path)?;
    let inside = policy.ingest.as_ref().is_some_and(|i| i.covers(&path));
    match (inside, request.method) {
        (true, Method::Put | Method::Delete) => Ok(Route::Write(path)),
        (true, _) => Err(RequestError::Write(WriteError::NotAllowedHere)),
        (false, _) => Err(RequestError::MethodNotAllowed),
    }
}

/// The interim response that invites an admitted upload's body
/// (RFC 9110 §10.1.1, §15.2.1).
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Plans the answer to a completed write: 201 for a new file (RFC 9110
/// §9.3.4, with `Content-Length: 0`), 204 for a replaced or deleted one.
pub fn plan_written(
    request: &Request<'_>,
    status: Status,
    ctx: &Context<'_>,
    head: &mut Vec<u8>,
) -> Plan {
    let mut out = HeadWriter::new(head, request, ctx);
    out.start(status);
    if status != Status::NoContent {
        out.content_length(0);
    }
    out.end();
    out.finish(status, Body::None)
}

/// Sidecar encodings worth trying for this request, best first.
pub fn sidecar_candidates(request: &Request<'_>, path: &CleanPath) -> Vec<Encoding> {
    let range = request.method == Method::Get && request.range.is_present();
    encoding::candidates(path, request.accept_encoding, range)
}

/// Plans the response for an open regular file. `encoding` is set when `file`
/// is a precompressed sidecar of `path`.
///
/// Order (RFC 9110 §13.2.2 then §14): preconditions may answer 412 or 304;
/// then Range, only on GET and only if If-Range holds, selects 206, 416 or
/// the full 200.
pub fn plan_file(
    request: &Request<'_>,
    path: &CleanPath,
    file: &FileMeta,
    encoding: Option<Encoding>,
    ctx: &Context<'_>,
    head: &mut Vec<u8>,
) -> Plan {
    let etag = file.etag();
    let last_modified = file.last_modified_secs();
    let validators = Validators {
        etag: etag.as_bytes(),
        last_modified,
        now: ctx.clock.now,
    };
    let range_field = match request.method {
        Method::Get => request.range,
        _ => Default::default(),
    };
    let mut out = HeadWriter::new(head, request, ctx);
    let representation = Representation {
        etag: etag.as_str(),
        last_modified,
        cache_control: ctx.policy.cache_control(path),
        encoding,
        varies_by_encoding: encoding::has_sidecars(path),
    };

    let use_range =
        match validators::evaluate(&request.conditionals, range_field.is_present(), &validators) {
            Precondition::Failed => {
                return out.error(Status::PreconditionFailed, &[]);
            }
            Precondition::NotModified => {
                out.start(Status::NotModified);
                out.validators(&representation);
                out.end();
                return out.finish(Status::NotModified, Body::None);
            }
            Precondition::Proceed { use_range } => use_range,
        };

    // A Range field sent twice is as unusable as a malformed one (§14.2).
    let selection = match range_field.get().filter(|_| use_range) {
        Some(value) => range::parse(value)
            .map(|specs| range::resolve(&specs, file.len))
            .unwrap_or(Selection::Full),
        None => Selection::Full,
    };
    let content_type = mime::content_type(path.extension());
    match selection {
        Selection::Full => {
            out.start(Status::Ok);
            out.representation(content_type, file.len, &representation);
            out.end();
            let body = body_unless_head(request, ByteRange::whole(file.len));
            out.finish(Status::Ok, body)
        }
        Selection::Single(range) => {
            out.start(Status::PartialContent);
            out.representation(content_type, range.byte_count(), &representation);
            out.content_range(range, file.len);
            out.end();
            out.finish(Status::PartialContent, Body::File(range))
        }
        Selection::Multiple(ranges) => {
            let boundary = boundary_for(etag.as_str());
            let (parts, closing) = multipart(&ranges, content_type, file.len, &boundary);
            // Saturating: a fuzzer's 2^64-byte "file" must not overflow.
            let length = parts
                .iter()
                .map(|p| (p.head.len() as u64).saturating_add(p.range.byte_count()))
                .fold(closing.len() as u64, u64::saturating_add);
            let media_type = format!("multipart/byteranges; boundary={boundary}");
            out.start(Status::PartialContent);
            out.representation(&media_type, length, &representation);
            out.end();
            out.finish(Status::PartialContent, Body::Multipart { parts, closing })
        }
        Selection::Unsatisfiable => {
            let content_range = format!("bytes */{}", file.len);
            out.error(
                Status::RangeNotSatisfiable,
                &[("Content-Range", content_range.as_bytes())],
            )
        }
    }
}

/// Plans the `--index` page of a directory.
pub fn plan_index(
    request: &Request<'_>,
    dir: &CleanPath,
    entries: &[Entry],
    ctx: &Context<'_>,
    head: &mut Vec<u8>,
) -> Plan {
    let page = index::render(dir, entries).into_bytes();
    let mut out = HeadWriter::new(head, request, ctx);
    out.start(Status::Ok);
    out.field("Content-Type", b"text/html; charset=utf-8");
    out.content_length(page.len() as u64);
    out.field(
        "Content-Security-Policy",
        index::CONTENT_SECURITY_POLICY.as_bytes(),
    );
    out.field("Cache-Control", b"no-cache");
    out.end();
    let body = match request.method {
        Method::Head => Body::None,
        _ => Body::Generated(page),
    };
    out.finish(Status::Ok, body)
}

/// Plans the answer to `OPTIONS` under `--cors` (Fetch standard, CORS-preflight):
/// 204 with the methods and request headers a player needs, for an allowed origin.
pub fn plan_preflight(request: &Request<'_>, ctx: &Context<'_>, head: &mut Vec<u8>) -> Plan {
    let mut out = HeadWriter::new(head, request, ctx);
    out.start(Status::NoContent);
    out.field("Allow", b"GET, HEAD, OPTIONS");
    let allowed = ctx
        .policy
        .cors
        .as_ref()
        .and_then(|cors| cors.allow_origin(request.origin))
        .is_some();
    let method_ok = request
        .cors_request_method
        .is_some_and(|m| m == b"GET" || m == b"HEAD");
    if allowed && method_ok {
        out.field("Access-Control-Allow-Methods", b"GET, HEAD");
        out.field("Access-Control-Allow-Headers", CORS_ALLOW_HEADERS);
        out.field("Access-Control-Max-Age", b"86400");
    }
    out.end();
    out.finish(Status::NoContent, Body::None)
}

/// Request headers a cross-origin player may send.
const CORS_ALLOW_HEADERS: &[u8] = b"Range, If-Range, If-None-Match, If-Modified-Since";
/// Response headers scripts may read.
const CORS_EXPOSE_HEADERS: &[u8] =
    b"Content-Range, Content-Length, Accept-Ranges, ETag, Last-Modified";

/// Plans an error response. `request` is `None` when the head could not be parsed.
pub fn plan_error(
    error: RequestError,
    request: Option<&Request<'_>>,
    ctx: &Context<'_>,
    head: &mut Vec<u8>,
) -> Plan {
    let status = status_of(error);
    let extra: &[(&str, &[u8])] = match (error, &ctx.policy.cors) {
        (RequestError::Write(WriteError::NotAllowedHere), Some(_)) => {
            &[("Allow", b"GET, HEAD, OPTIONS, PUT, DELETE")]
        }
        (RequestError::Write(WriteError::NotAllowedHere), None) => {
            &[("Allow", b"GET, HEAD, PUT, DELETE")]
        }
        // The same methods a preflight names: OPTIONS is answered under --cors.
        (RequestError::MethodNotAllowed, Some(_)) => &[("Allow", b"GET, HEAD, OPTIONS")],
        (RequestError::MethodNotAllowed, None) => &[("Allow", b"GET, HEAD")],
        // RFC 9110 §11.6.1: one challenge per scheme we accept.
        (RequestError::Write(WriteError::Unauthorized), _) => &[
            ("WWW-Authenticate", b"Bearer realm=\"ringcast\""),
            ("WWW-Authenticate", b"Basic realm=\"ringcast\""),
        ],
        // Jobs take seconds to minutes; a retry sooner would find it full.
        (RequestError::Write(WriteError::QueueFull), _) => &[("Retry-After", b"10")],
        _ => &[],
    };
    let unparsed = Request::unparsed();
    let mut out = HeadWriter::new(head, request.unwrap_or(&unparsed), ctx);
    out.keep_alive &= keeps_connection(error);
    out.error(status, extra)
}

fn body_unless_head(request: &Request<'_>, range: Option<ByteRange>) -> Body {
    match (request.method, range) {
        (Method::Get, Some(range)) => Body::File(range),
        _ => Body::None,
    }
}

/// A boundary that cannot be confused across files: derived from the ETag.
fn boundary_for(etag: &str) -> String {
    // FNV-1a: cheap, stable, and good enough to make the delimiter unique.
    let hash = etag.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("ringcast-{hash:016x}")
}

/// The part heads and closing delimiter of RFC 9110 §14.6 (and RFC 2046 §5.1).
fn multipart(
    ranges: &[ByteRange],
    content_type: &str,
    length: u64,
    boundary: &str,
) -> (Vec<Part>, Vec<u8>) {
    let parts = ranges
        .iter()
        .enumerate()
        .map(|(i, range)| {
            let delimiter = if i == 0 { "" } else { "\r\n" };
            let head = format!(
                "{delimiter}--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: bytes {}-{}/{length}\r\n\r\n",
                range.start, range.end
            );
            Part {
                head: head.into_bytes(),
                range: *range,
            }
        })
        .collect();
    (parts, format!("\r\n--{boundary}--\r\n").into_bytes())
}

/// The validator and caching fields of one representation.
struct Representation<'a> {
    etag: &'a str,
    last_modified: u64,
    cache_control: Option<&'a str>,
    /// Set when the bytes are a precompressed sidecar.
    encoding: Option<Encoding>,
    /// The file has sidecars, so caches must key on Accept-Encoding.
    varies_by_encoding: bool,
}

/// Writes a response head field by field.
struct HeadWriter<'h, 'r, 'b, 'c> {
    head: &'h mut Vec<u8>,
    request: &'r Request<'b>,
    ctx: &'c Context<'c>,
    keep_alive: bool,
}

impl<'h, 'r, 'b, 'c> HeadWriter<'h, 'r, 'b, 'c> {
    fn new(head: &'h mut Vec<u8>, request: &'r Request<'b>, ctx: &'c Context<'c>) -> Self {
        HeadWriter {
            head,
            request,
            ctx,
            keep_alive: request.keep_alive && !request.expects_continue,
        }
    }

    fn start(&mut self, status: Status) {
        self.head.extend_from_slice(status.status_line());
        self.head.extend_from_slice(b"Server: ringcast\r\nDate: ");
        self.head.extend_from_slice(self.ctx.clock.date);
        self.head.extend_from_slice(b"\r\n");
    }

    fn field(&mut self, name: &str, value: &[u8]) {
        self.head.extend_from_slice(name.as_bytes());
        self.head.extend_from_slice(b": ");
        self.head.extend_from_slice(value);
        self.head.extend_from_slice(b"\r\n");
    }

    fn content_length(&mut self, length: u64) {
        self.head.extend_from_slice(b"Content-Length: ");
        self.number(length);
        self.head.extend_from_slice(b"\r\n");
    }

    /// A decimal number, formatted without allocating.
    fn number(&mut self, n: u64) {
        self.head
            .extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    }

    /// ETag, Last-Modified, and the fields a 304 must repeat (RFC 9110 §15.4.5):
    /// Cache-Control and Vary, so 200, 206 and 304 agree.
    fn validators(&mut self, r: &Representation<'_>) {
        self.field("ETag", r.etag.as_bytes());
        self.field("Last-Modified", &validators::imf_fixdate(r.last_modified));
        if let Some(value) = r.cache_control {
            self.field("Cache-Control", value.as_bytes());
        }
        if r.varies_by_encoding {
            self.field("Vary", b"Accept-Encoding");
        }
    }

    /// The fields every 200 and 206 carries.
    fn representation(&mut self, content_type: &str, length: u64, r: &Representation<'_>) {
        self.field("Content-Type", content_type.as_bytes());
        if let Some(encoding) = r.encoding {
            self.field("Content-Encoding", encoding.token().as_bytes());
        }
        self.content_length(length);
        self.head.extend_from_slice(b"Accept-Ranges: bytes\r\n");
        self.validators(r);
    }

    fn content_range(&mut self, range: ByteRange, length: u64) {
        self.head.extend_from_slice(b"Content-Range: bytes ");
        self.number(range.start);
        self.head.push(b'-');
        self.number(range.end);
        self.head.push(b'/');
        self.number(length);
        self.head.extend_from_slice(b"\r\n");
    }

    /// CORS fields for an allowed origin (Fetch standard, HTTP responses).
    fn cors(&mut self) {
        let Some(cors) = &self.ctx.policy.cors else {
            return;
        };
        if let Some(origin) = cors.allow_origin(self.request.origin) {
            self.field("Access-Control-Allow-Origin", origin);
            self.field("Access-Control-Expose-Headers", CORS_EXPOSE_HEADERS);
        }
        if cors.varies() {
            self.field("Vary", b"Origin");
        }
    }

    /// CORS, then RFC 9112 §9.3: say `close` when closing; a 1.0 client must
    /// be told the connection persists.
    fn end(&mut self) {
        self.cors();
        if !self.keep_alive {
            self.head.extend_from_slice(b"Connection: close\r\n");
        } else if self.request.version == Version::Http10 {
            self.head.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        self.head.extend_from_slice(b"\r\n");
    }

    fn finish(self, status: Status, body: Body) -> Plan {
        Plan {
            status,
            body,
            keep_alive: self.keep_alive,
        }
    }

    /// A short text/plain error; its body is appended to the head (none for HEAD).
    fn error(mut self, status: Status, extra: &[(&str, &[u8])]) -> Plan {
        let text = status.code_and_reason();
        self.start(status);
        for (name, value) in extra {
            self.field(name, value);
        }
        self.field("Content-Type", b"text/plain; charset=utf-8");
        self.content_length(text.len() as u64 + 1);
        self.end();
        if self.request.method != Method::Head {
            self.head.extend_from_slice(text);
            self.head.push(b'\n');
        }
        self.finish(status, Body::None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::policy::{CacheRule, Cors};
    use crate::http::request::parse;

    const CLOCK: Clock<'static> = Clock {
        now: 1_700_000_100,
        date: b"Tue, 14 Nov 2023 22:15:00 GMT",
    };

    fn ctx(policy: &Policy) -> Context<'_> {
        Context {
            clock: CLOCK,
            policy,
        }
    }
    const FILE: FileMeta = FileMeta {
        len: 26,
        inode: 1,
        mtime_nanos: 1_700_000_000_000_000_000,
    };
    const ETAG: &str = "\"1-1a-17979cfe362a0000\"";

    /// Plans `raw` against FILE, returning the plan and the head as text.
    fn run(raw: &str) -> (Plan, String) {
        run_with(raw, &Policy::default())
    }

    fn run_with(raw: &str, policy: &Policy) -> (Plan, String) {
        let (request, _) = parse(raw.as_bytes()).unwrap().unwrap();
        let mut head = Vec::new();
        let ctx = ctx(policy);
        let plan = match route(&request, policy) {
            Ok(Route::File(path)) => plan_file(&request, &path, &FILE, None, &ctx, &mut head),
            Ok(Route::Preflight) => plan_preflight(&request, &ctx, &mut head),
            Ok(Route::Write(_)) => plan_written(&request, Status::Created, &ctx, &mut head),
            Err(e) => plan_error(e, Some(&request), &ctx, &mut head),
        };
        (plan, String::from_utf8(head).unwrap())
    }

    fn ingest_policy() -> Policy {
        Policy {
            ingest: Some(crate::http::upload::Ingest::new(&["/live/".into()], 100).unwrap()),
            ..Policy::default()
        }
    }

    #[test]
    fn writes_route_only_beneath_an_ingest_prefix() {
        let policy = ingest_policy();
        let route_of = |raw: &str| {
            let (request, _) = parse(raw.as_bytes()).unwrap().unwrap();
            route(&request, &policy).map_err(|e| status_of(e).code())
        };
        assert_eq!(
            route_of("PUT /live/a.ts HTTP/1.1\r\nHost: x\r\n\r\n"),
            Ok(Route::Write(path::clean(b"/live/a.ts").unwrap()))
        );
        assert_eq!(
            route_of("DELETE /live/x/../a.ts HTTP/1.1\r\nHost: x\r\n\r\n"),
            Ok(Route::Write(path::clean(b"/live/a.ts").unwrap()))
        );
        assert_eq!(
            route_of("PUT /vod/a.ts HTTP/1.1\r\nHost: x\r\n\r\n"),
            Err(405)
        );
        assert_eq!(route_of("PUT /live/ HTTP/1.1\r\nHost: x\r\n\r\n"), Err(405));
        assert_eq!(
            route_of("PUT /live/../a HTTP/1.1\r\nHost: x\r\n\r\n"),
            Err(405)
        );
        assert_eq!(route_of("PUT /../a HTTP/1.1\r\nHost: x\r\n\r\n"), Err(400));
        assert_eq!(
            route_of("PUT /live/%2e%2e/%2e%2e/a HTTP/1.1\r\nHost: x\r\n\r\n"),
            Err(400)
        );
        assert_eq!(
            route_of("PUT /live/.a.ts HTTP/1.1\r\nHost: x\r\n\r\n"),
            Err(404)
        );
        assert_eq!(
            route_of("PUT /live/a%00 HTTP/1.1\r\nHost: x\r\n\r\n"),
            Err(400)
        );
        // Without --ingest nothing is writable.
        let (request, _) = parse(b"PUT /live/a.ts HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            route(&request, &Policy::default()),
            Err(RequestError::MethodNotAllowed)
        );
    }

    #[test]
    fn rfc9110_15_5_6_a_405_says_what_is_allowed_there() {
        let policy = ingest_policy();
        let (_, head) = run_with("PUT /vod/a.ts HTTP/1.1\r\nHost: x\r\n\r\n", &policy);
        assert!(head.contains("Allow: GET, HEAD\r\n"), "{head}");
        let (_, head) = run_with("POST /live/a.ts HTTP/1.1\r\nHost: x\r\n\r\n", &policy);
        assert!(head.contains("Allow: GET, HEAD, PUT, DELETE\r\n"), "{head}");
    }

    #[test]
    fn refusals_carry_their_fields_and_written_answers_are_empty() {
        let policy = Policy::default();
        let ctx = ctx(&policy);
        let (request, _) = parse(b"PUT /live/a HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap()
            .unwrap();
        let mut head = Vec::new();
        let error = RequestError::Write(WriteError::Unauthorized);
        assert_eq!(
            plan_error(error, Some(&request), &ctx, &mut head)
                .status
                .code(),
            401
        );
        let text = String::from_utf8(head).unwrap();
        assert!(text.contains("WWW-Authenticate: Bearer"), "{text}");
        assert!(text.contains("Connection: close\r\n"), "{text}");
        let mut head = Vec::new();
        let error = RequestError::Write(WriteError::QueueFull);
        plan_error(error, Some(&request), &ctx, &mut head);
        assert!(String::from_utf8(head).unwrap().contains("Retry-After: "));

        let mut head = Vec::new();
        let plan = plan_written(&request, Status::Created, &ctx, &mut head);
        let text = String::from_utf8(head).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 201 Created\r\n") && text.contains("Content-Length: 0\r\n")
        );
        assert!(plan.keep_alive);
        let mut head = Vec::new();
        plan_written(&request, Status::NoContent, &ctx, &mut head);
        let text = String::from_utf8(head).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 204 No Content\r\n") && !text.contains("Content-Length")
        );
    }

    fn get(extra: &str) -> (Plan, String) {
        run(&format!("GET /a.mp4 HTTP/1.1\r\nHost: x\r\n{extra}\r\n"))
    }

    #[test]
    fn full_get_carries_every_validator() {
        let (plan, head) = get("");
        assert_eq!(plan.status, Status::Ok);
        assert_eq!(plan.body, Body::File(ByteRange { start: 0, end: 25 }));
        assert!(plan.keep_alive);
        assert_eq!(
            head,
            format!(
                "HTTP/1.1 200 OK\r\nServer: ringcast\r\nDate: Tue, 14 Nov 2023 22:15:00 GMT\r\n\
Content-Type: video/mp4\r\nContent-Length: 26\r\nAccept-Ranges: bytes\r\nETag: {ETAG}\r\n\
Last-Modified: Tue, 14 Nov 2023 22:13:20 GMT\r\n\r\n"
            )
        );
    }

    #[test]
    fn head_has_the_same_fields_and_no_body() {
        let (plan, head) = run("HEAD /a.mp4 HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1\r\n\r\n");
        assert_eq!(
            plan.status,
            Status::Ok,
            "Range applies to GET only (RFC 9110 §14.2)"
        );
        assert_eq!(plan.body, Body::None);
        assert!(head.contains("Content-Length: 26\r\n") && !head.contains("Content-Range"));
    }

    #[test]
    fn single_range_is_206_with_content_range() {
        let (plan, head) = get("Range: bytes=-3\r\n");
        assert_eq!(plan.status, Status::PartialContent);
        assert_eq!(plan.body, Body::File(ByteRange { start: 23, end: 25 }));
        assert!(head.contains("Content-Length: 3\r\nAccept-Ranges: bytes\r\n"));
        assert!(head.contains("Content-Range: bytes 23-25/26\r\n"));
    }

    #[test]
    fn unsatisfiable_is_416_with_star_range() {
        let (plan, head) = get("Range: bytes=26-\r\n");
        assert_eq!(plan.status, Status::RangeNotSatisfiable);
        assert!(head.contains("Content-Range: bytes */26\r\n"));
        assert!(head.ends_with("\r\n\r\n416 Range Not Satisfiable\n"));
        assert!(plan.keep_alive);
    }

    #[test]
    fn ignored_ranges_give_200() {
        for value in ["items=0-1", "bytes=5-2", "bytes=x"] {
            assert_eq!(
                get(&format!("Range: {value}\r\n")).0.status,
                Status::Ok,
                "{value}"
            );
        }
        let twice = get("Range: bytes=0-1\r\nRange: bytes=0-1\r\n");
        assert_eq!(twice.0.status, Status::Ok);
    }

    #[test]
    fn multiple_ranges_are_multipart_with_exact_length() {
        let (plan, head) = get("Range: bytes=0-0,2-2\r\n");
        assert_eq!(plan.status, Status::PartialContent);
        let Body::Multipart { parts, closing } = &plan.body else {
            panic!("{:?}", plan.body)
        };
        let boundary = boundary_for(ETAG);
        assert!(head.contains(&format!(
            "Content-Type: multipart/byteranges; boundary={boundary}\r\n"
        )));
        assert_eq!(
            String::from_utf8(parts[0].head.clone()).unwrap(),
            format!(
                "--{boundary}\r\nContent-Type: video/mp4\r\nContent-Range: bytes 0-0/26\r\n\r\n"
            )
        );
        assert!(parts[1]
            .head
            .starts_with(format!("\r\n--{boundary}\r\n").as_bytes()));
        assert_eq!(closing, format!("\r\n--{boundary}--\r\n").as_bytes());
        let total: usize = parts.iter().map(|p| p.head.len() + 1).sum::<usize>() + closing.len();
        assert!(head.contains(&format!("Content-Length: {total}\r\n")));
        assert!(
            !head.contains("Content-Range"),
            "no top-level Content-Range on multipart"
        );
    }

    #[test]
    fn rfc9110_13_2_2_precondition_outcomes() {
        let (plan, head) = get(&format!("If-None-Match: {ETAG}\r\n"));
        assert_eq!(plan.status, Status::NotModified);
        assert_eq!(plan.body, Body::None);
        assert!(head.contains(&format!("ETag: {ETAG}\r\n")));
        assert!(!head.contains("Content-Type") && !head.contains("Content-Length"));

        let (plan, head) = get("If-Match: \"nope\"\r\nRange: bytes=0-1\r\n");
        assert_eq!(plan.status, Status::PreconditionFailed);
        assert!(head.ends_with("412 Precondition Failed\n"));

        let (plan, _) = get(&format!("If-Range: {ETAG}\r\nRange: bytes=0-1\r\n"));
        assert_eq!(plan.status, Status::PartialContent);
        let (plan, _) = get("If-Range: \"old\"\r\nRange: bytes=0-1\r\n");
        assert_eq!(plan.status, Status::Ok);
    }

    #[test]
    fn rfc9110_13_2_1_errors_ignore_preconditions() {
        let (plan, _) = run("POST /a.mp4 HTTP/1.1\r\nHost: x\r\nIf-Match: \"nope\"\r\n\r\n");
        assert_eq!(plan.status, Status::MethodNotAllowed);
    }

    #[test]
    fn method_errors() {
        let (plan, head) = run("DELETE /a.mp4 HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(plan.status, Status::MethodNotAllowed);
        assert!(head.contains("Allow: GET, HEAD\r\n"));
        assert!(plan.keep_alive);
        assert_eq!(
            run("BREW /a HTTP/1.1\r\nHost: x\r\n\r\n").0.status,
            Status::NotImplemented
        );
    }

    #[test]
    fn rfc9112_9_3_connection_field() {
        let (plan, head) = run("GET /a.mp4 HTTP/1.0\r\n\r\n");
        assert!(!plan.keep_alive && head.contains("Connection: close\r\n"));
        let (plan, head) = run("GET /a.mp4 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert!(plan.keep_alive && head.contains("Connection: keep-alive\r\n"));
        let (plan, head) = get("Connection: close\r\n");
        assert!(!plan.keep_alive && head.contains("Connection: close\r\n"));
    }

    #[test]
    fn unparsable_requests_close() {
        let mut head = Vec::new();
        let error = RequestError::Parse(crate::http::request::ParseError::BadHost);
        let plan = plan_error(error, None, &ctx(&Policy::default()), &mut head);
        assert_eq!(plan.status, Status::BadRequest);
        assert!(!plan.keep_alive);
        let head = String::from_utf8(head).unwrap();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(
            head.contains("Connection: close\r\n") && head.ends_with("\r\n\r\n400 Bad Request\n")
        );
    }

    #[test]
    fn empty_file_is_sent_whole_even_with_a_range() {
        let (request, _) = parse(b"GET /e HTTP/1.1\r\nHost: x\r\nRange: bytes=-5\r\n\r\n")
            .unwrap()
            .unwrap();
        let empty = FileMeta { len: 0, ..FILE };
        let mut head = Vec::new();
        let Ok(Route::File(path)) = route(&request, &Policy::default()) else {
            panic!()
        };
        let plan = plan_file(
            &request,
            &path,
            &empty,
            None,
            &ctx(&Policy::default()),
            &mut head,
        );
        assert_eq!(plan.status, Status::Ok);
        assert_eq!(plan.body, Body::None);
        assert!(String::from_utf8(head)
            .unwrap()
            .contains("Content-Length: 0\r\n"));
    }

    fn cors_policy(origins: &str) -> Policy {
        Policy {
            cors: Some(Cors::parse(origins).unwrap()),
            ..Policy::default()
        }
    }

    #[test]
    fn options_is_405_without_cors() {
        let (plan, head) = run("OPTIONS /a.mp4 HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(plan.status, Status::MethodNotAllowed);
        assert!(head.contains("Allow: GET, HEAD\r\n"));
    }

    #[test]
    fn a_405_under_cors_allows_what_the_preflight_allows() {
        let policy = cors_policy("*");
        let (plan, head) = run_with("DELETE /a.mp4 HTTP/1.1\r\nHost: x\r\n\r\n", &policy);
        assert_eq!(plan.status, Status::MethodNotAllowed);
        assert!(head.contains("Allow: GET, HEAD, OPTIONS\r\n"), "{head}");
        let (_, head) = run_with("OPTIONS /a.mp4 HTTP/1.1\r\nHost: x\r\n\r\n", &policy);
        assert!(head.contains("Allow: GET, HEAD, OPTIONS\r\n"), "{head}");
    }

    #[test]
    fn cors_preflight_allows_range_requests() {
        let policy = cors_policy("https://player.example");
        let preflight = "OPTIONS /a.mp4 HTTP/1.1\r\nHost: x\r\nOrigin: https://player.example\r\n\
Access-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: range\r\n\r\n";
        let (plan, head) = run_with(preflight, &policy);
        assert_eq!(plan.status, Status::NoContent);
        assert!(plan.keep_alive);
        for field in [
            "Access-Control-Allow-Origin: https://player.example\r\n",
            "Access-Control-Allow-Methods: GET, HEAD\r\n",
            "Access-Control-Allow-Headers: Range, If-Range, If-None-Match, If-Modified-Since\r\n",
            "Access-Control-Max-Age: 86400\r\n",
            "Vary: Origin\r\n",
        ] {
            assert!(head.contains(field), "{field} missing from {head}");
        }
        let stranger = preflight.replace("https://player.example", "https://evil.example");
        let (plan, head) = run_with(&stranger, &policy);
        assert_eq!(plan.status, Status::NoContent);
        assert!(!head.contains("Access-Control-Allow"), "{head}");
        let post = preflight.replace("Request-Method: GET", "Request-Method: POST");
        assert!(!run_with(&post, &policy)
            .1
            .contains("Access-Control-Allow-Methods"));
    }

    #[test]
    fn cors_simple_requests_expose_range_headers() {
        let policy = cors_policy("*");
        for extra in [
            "",
            "Range: bytes=0-1\r\n",
            &format!("If-None-Match: {ETAG}\r\n"),
            "Range: bytes=99-\r\n",
        ] {
            let raw = format!(
                "GET /a.mp4 HTTP/1.1\r\nHost: x\r\nOrigin: https://any.example\r\n{extra}\r\n"
            );
            let (_, head) = run_with(&raw, &policy);
            assert!(
                head.contains("Access-Control-Allow-Origin: *\r\n"),
                "{head}"
            );
            assert!(head.contains("Access-Control-Expose-Headers: Content-Range, Content-Length, Accept-Ranges, ETag, Last-Modified\r\n"));
            assert!(!head.contains("Vary: Origin"));
        }
        let (_, head) = run_with(
            "GET /missing HTTP/1.1\r\nHost: x\r\n\r\n",
            &cors_policy("https://a.example"),
        );
        assert!(!head.contains("Access-Control-Allow-Origin") && head.contains("Vary: Origin\r\n"));
    }

    #[test]
    fn cache_control_is_identical_on_200_206_and_304() {
        let policy = Policy {
            cache_rules: vec![CacheRule::parse(".mp4=max-age=31536000, immutable").unwrap()],
            ..Policy::default()
        };
        let field = "Cache-Control: max-age=31536000, immutable\r\n";
        for extra in [
            "",
            "Range: bytes=0-1\r\n",
            &format!("If-None-Match: {ETAG}\r\n"),
        ] {
            let raw = format!("GET /a.mp4 HTTP/1.1\r\nHost: x\r\n{extra}\r\n");
            let (plan, head) = run_with(&raw, &policy);
            assert!(head.contains(field), "{:?}: {head}", plan.status);
        }
        let (_, head) = run_with("GET /a.m3u8 HTTP/1.1\r\nHost: x\r\n\r\n", &policy);
        assert!(!head.contains("Cache-Control"));
    }

    #[test]
    fn sidecars_carry_content_encoding_and_vary() {
        let (request, _) =
            parse(b"GET /a.m3u8 HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip, br\r\n\r\n")
                .unwrap()
                .unwrap();
        let Ok(Route::File(path)) = route(&request, &Policy::default()) else {
            panic!()
        };
        assert_eq!(
            sidecar_candidates(&request, &path),
            vec![Encoding::Brotli, Encoding::Gzip]
        );
        let mut head = Vec::new();
        let plan = plan_file(
            &request,
            &path,
            &FILE,
            Some(Encoding::Gzip),
            &ctx(&Policy::default()),
            &mut head,
        );
        let head = String::from_utf8(head).unwrap();
        assert_eq!(plan.status, Status::Ok);
        assert!(
            head.contains(
                "Content-Type: application/vnd.apple.mpegurl\r\nContent-Encoding: gzip\r\n"
            ),
            "{head}"
        );
        assert!(head.contains("Vary: Accept-Encoding\r\n"));
        let (_, identity) = run("GET /a.m3u8 HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(
            identity.contains("Vary: Accept-Encoding\r\n")
                && !identity.contains("Content-Encoding")
        );
        let (_, media) = run("GET /a.mp4 HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n");
        assert!(!media.contains("Vary"));
    }

    #[test]
    fn index_pages_are_html_with_a_strict_policy() {
        let (request, _) = parse(b"GET /shows/ HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap()
            .unwrap();
        let Ok(Route::File(dir)) = route(&request, &Policy::default()) else {
            panic!()
        };
        let entries = [Entry {
            name: b"a.mp4".to_vec(),
            is_dir: false,
        }];
        let mut head = Vec::new();
        let plan = plan_index(
            &request,
            &dir,
            &entries,
            &ctx(&Policy::default()),
            &mut head,
        );
        let head = String::from_utf8(head).unwrap();
        assert!(head.contains("Content-Type: text/html; charset=utf-8\r\n"));
        assert!(head.contains("Content-Security-Policy: default-src 'none'"));
        let Body::Generated(page) = plan.body else {
            panic!()
        };
        assert!(head.contains(&format!("Content-Length: {}\r\n", page.len())));
    }
}
