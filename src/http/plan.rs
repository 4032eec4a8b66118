//! Every HTTP decision for one request, as plain data.
//!
//! The I/O layer calls [`route`] to learn which file to open, then
//! [`plan_file`] (or [`plan_error`]) with what it found. The plan's head is
//! written into the caller's buffer; [`Plan::body`] says which file bytes follow.

use super::error::{keeps_connection, status_of, RequestError, Status};
use super::mime;
use super::path::{self, CleanPath};
use super::range::{self, ByteRange, Selection};
use super::request::{Method, Request, Version};
use super::validators::{self, FileMeta, Precondition, Validators};
use std::io::Write;

/// The time as a core sees it: epoch seconds and the matching IMF-fixdate,
/// formatted once per second per core.
#[derive(Debug, Clone, Copy)]
pub struct Clock<'a> {
    pub now: u64,
    pub date: &'a [u8],
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
}

/// The outcome of planning: the head is in the caller's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub status: Status,
    pub body: Body,
    /// Whether to read another request on this connection afterwards.
    pub keep_alive: bool,
}

/// Decides what a request asks for before any file is touched: the method
/// (405/501 come before any lookup, RFC 9110 §15.5.6) and the path.
pub fn route(request: &Request<'_>) -> Result<CleanPath, RequestError> {
    match request.method {
        Method::Get | Method::Head => {}
        Method::NotAllowed => return Err(RequestError::MethodNotAllowed),
        Method::Unknown => return Err(RequestError::MethodUnknown),
    }
    path::clean(request.target).map_err(RequestError::Path)
}

/// Plans the response for an open regular file.
///
/// Order (RFC 9110 §13.2.2 then §14): preconditions may answer 412 or 304;
/// then Range, only on GET and only if If-Range holds, selects 206, 416 or
/// the full 200.
pub fn plan_file(
    request: &Request<'_>,
    path: &CleanPath,
    file: &FileMeta,
    clock: &Clock<'_>,
    head: &mut Vec<u8>,
) -> Plan {
    let etag = file.etag();
    let last_modified = file.last_modified_secs();
    let validators = Validators {
        etag: etag.as_bytes(),
        last_modified,
        now: clock.now,
    };
    let range_field = match request.method {
        Method::Get => request.range,
        _ => Default::default(),
    };
    let keep_alive = request.keep_alive && !request.expects_continue;
    let mut out = HeadWriter {
        head,
        request,
        keep_alive,
    };

    let use_range =
        match validators::evaluate(&request.conditionals, range_field.is_present(), &validators) {
            Precondition::Failed => {
                return out.error(Status::PreconditionFailed, clock, &[]);
            }
            Precondition::NotModified => {
                out.start(Status::NotModified, clock);
                out.validators(&etag, last_modified);
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
            out.start(Status::Ok, clock);
            out.representation(content_type, file.len, &etag, last_modified);
            out.end();
            let body = body_unless_head(request, ByteRange::whole(file.len));
            out.finish(Status::Ok, body)
        }
        Selection::Single(range) => {
            out.start(Status::PartialContent, clock);
            out.representation(content_type, range.byte_count(), &etag, last_modified);
            out.content_range(range, file.len);
            out.end();
            out.finish(Status::PartialContent, Body::File(range))
        }
        Selection::Multiple(ranges) => {
            let boundary = boundary_for(&etag);
            let (parts, closing) = multipart(&ranges, content_type, file.len, &boundary);
            let length = parts
                .iter()
                .map(|p| p.head.len() as u64 + p.range.byte_count())
                .sum::<u64>()
                + closing.len() as u64;
            let media_type = format!("multipart/byteranges; boundary={boundary}");
            out.start(Status::PartialContent, clock);
            out.representation(&media_type, length, &etag, last_modified);
            out.end();
            out.finish(Status::PartialContent, Body::Multipart { parts, closing })
        }
        Selection::Unsatisfiable => {
            let content_range = format!("bytes */{}", file.len);
            out.error(
                Status::RangeNotSatisfiable,
                clock,
                &[("Content-Range", content_range.as_bytes())],
            )
        }
    }
}

/// Plans an error response. `request` is `None` when the head could not be parsed.
pub fn plan_error(
    error: RequestError,
    request: Option<&Request<'_>>,
    clock: &Clock<'_>,
    head: &mut Vec<u8>,
) -> Plan {
    let status = status_of(error);
    let mut extra: &[(&str, &[u8])] = &[];
    if status == Status::MethodNotAllowed {
        extra = &[("Allow", b"GET, HEAD")];
    }
    match request {
        Some(request) => HeadWriter {
            head,
            request,
            keep_alive: request.keep_alive && !request.expects_continue && keeps_connection(error),
        }
        .error(status, clock, extra),
        None => {
            // No usable request: answer as HTTP/1.1 and close.
            let request = Request::unparsed();
            HeadWriter {
                head,
                request: &request,
                keep_alive: false,
            }
            .error(status, clock, extra)
        }
    }
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

/// Writes a response head field by field.
struct HeadWriter<'h, 'r, 'b> {
    head: &'h mut Vec<u8>,
    request: &'r Request<'b>,
    keep_alive: bool,
}

impl HeadWriter<'_, '_, '_> {
    fn start(&mut self, status: Status, clock: &Clock<'_>) {
        self.head.extend_from_slice(status.status_line());
        self.head.extend_from_slice(b"Server: ringcast\r\nDate: ");
        self.head.extend_from_slice(clock.date);
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
        self.head
            .extend_from_slice(itoa::Buffer::new().format(length).as_bytes());
        self.head.extend_from_slice(b"\r\n");
    }

    fn validators(&mut self, etag: &str, last_modified: u64) {
        self.field("ETag", etag.as_bytes());
        self.field(
            "Last-Modified",
            validators::http_date(last_modified).as_bytes(),
        );
    }

    /// The fields every 200 and 206 carries.
    fn representation(&mut self, content_type: &str, length: u64, etag: &str, last_modified: u64) {
        self.field("Content-Type", content_type.as_bytes());
        self.content_length(length);
        self.head.extend_from_slice(b"Accept-Ranges: bytes\r\n");
        self.validators(etag, last_modified);
    }

    fn content_range(&mut self, range: ByteRange, length: u64) {
        let _ = write!(
            self.head,
            "Content-Range: bytes {}-{}/{}\r\n",
            range.start, range.end, length
        );
    }

    /// RFC 9112 §9.3: say `close` when closing; a 1.0 client must be told the
    /// connection persists.
    fn end(&mut self) {
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
    fn error(mut self, status: Status, clock: &Clock<'_>, extra: &[(&str, &[u8])]) -> Plan {
        let text = status.code_and_reason();
        self.start(status, clock);
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
    use crate::http::request::parse;

    const CLOCK: Clock<'static> = Clock {
        now: 1_700_000_100,
        date: b"Tue, 14 Nov 2023 22:15:00 GMT",
    };
    const FILE: FileMeta = FileMeta {
        len: 26,
        inode: 1,
        mtime_nanos: 1_700_000_000_000_000_000,
    };
    const ETAG: &str = "\"1-1a-17979cfe362a0000\"";

    /// Plans `raw` against FILE, returning the plan and the head as text.
    fn run(raw: &str) -> (Plan, String) {
        let (request, _) = parse(raw.as_bytes()).unwrap().unwrap();
        let mut head = Vec::new();
        let plan = match route(&request) {
            Ok(path) => plan_file(&request, &path, &FILE, &CLOCK, &mut head),
            Err(e) => plan_error(e, Some(&request), &CLOCK, &mut head),
        };
        (plan, String::from_utf8(head).unwrap())
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
        let plan = plan_error(error, None, &CLOCK, &mut head);
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
        let path = route(&request).unwrap();
        let plan = plan_file(&request, &path, &empty, &CLOCK, &mut head);
        assert_eq!(plan.status, Status::Ok);
        assert_eq!(plan.body, Body::None);
        assert!(String::from_utf8(head)
            .unwrap()
            .contains("Content-Length: 0\r\n"));
    }
}
