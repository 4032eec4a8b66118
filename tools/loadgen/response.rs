//! Sans-io parsing of a response head (RFC 9112 §4-§6): status, framing,
//! Content-Range and whether the connection stays open. Works on a byte slice
//! and never touches a socket; "need more bytes" is `Ok(None)`.

use std::fmt;

/// Most header fields accepted in one response head.
const MAX_HEADERS: usize = 64;
/// Largest response head accepted; anything bigger is treated as malformed.
pub const MAX_HEAD: usize = 64 * 1024;

/// What the head says about the response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    /// Bytes of the head, including the final CRLF CRLF.
    pub len: usize,
    pub framing: Framing,
    /// The Content-Range field, if the response has one.
    pub content_range: Option<ContentRange>,
    /// False when the server will close after this response (RFC 9112 §9.3).
    pub keep_alive: bool,
}

/// How the body is delimited (RFC 9112 §6.3), for a response to GET.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body: 1xx, 204 and 304 responses.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Everything until the server closes the connection.
    UntilClose,
}

/// A parsed Content-Range value (RFC 9110 §14.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentRange {
    /// `bytes first-last/complete` (complete is `None` for `*`).
    Bytes {
        first: u64,
        last: u64,
        complete: Option<u64>,
    },
    /// `bytes */complete`, as sent with 416.
    Unsatisfied { complete: u64 },
    /// Present but not parseable.
    Invalid,
}

/// Why a response head cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseError {
    /// httparse refused the status line or a field (a non-HTTP peer, garbage).
    Syntax(httparse::Error),
    /// More than [`MAX_HEAD`] bytes without the end of the head.
    TooLarge,
    /// Content-Length is not a number, or two of them disagree.
    BadContentLength,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Syntax(e) => write!(f, "malformed response head: {e}"),
            ParseError::TooLarge => write!(f, "response head larger than {MAX_HEAD} bytes"),
            ParseError::BadContentLength => write!(f, "invalid Content-Length"),
        }
    }
}

/// Parses the head at the start of `buf`. `Ok(None)`: not all of it is here yet.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, ParseError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut fields);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => return Err(ParseError::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(ParseError::Syntax(e)),
    };
    let status = response.code.unwrap_or(0);
    let http11 = response.version == Some(1);
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut content_range = None;
    let mut close = false;
    let mut keep_alive_token = false;
    for field in response.headers.iter() {
        let name = field.name;
        if name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(field.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or(ParseError::BadContentLength)?;
            if content_length.is_some_and(|old| old != n) {
                return Err(ParseError::BadContentLength);
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // RFC 9112 §6.3: chunked as the final coding frames the body.
            chunked = tokens(field.value)
                .last()
                .is_some_and(|t| t.eq_ignore_ascii_case("chunked"));
        } else if name.eq_ignore_ascii_case("content-range") {
            content_range = Some(parse_content_range(field.value));
        } else if name.eq_ignore_ascii_case("connection") {
            for token in tokens(field.value) {
                close |= token.eq_ignore_ascii_case("close");
                keep_alive_token |= token.eq_ignore_ascii_case("keep-alive");
            }
        }
    }
    let framing = if (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::Empty
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = content_length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    let keep_alive = !close && (http11 || keep_alive_token) && framing != Framing::UntilClose;
    Ok(Some(Head {
        status,
        len,
        framing,
        content_range,
        keep_alive,
    }))
}

/// The comma-separated tokens of a field value, trimmed.
fn tokens(value: &[u8]) -> impl Iterator<Item = &str> {
    std::str::from_utf8(value)
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// `bytes 0-99/1000`, `bytes 0-99/*`, `bytes */1000`.
pub fn parse_content_range(value: &[u8]) -> ContentRange {
    let parse = || -> Option<ContentRange> {
        let text = std::str::from_utf8(value).ok()?.trim();
        let (unit, rest) = text.split_once(' ')?;
        if !unit.eq_ignore_ascii_case("bytes") {
            return None;
        }
        let (range, complete) = rest.trim().split_once('/')?;
        let number = |s: &str| -> Option<u64> {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse().ok()
        };
        if range == "*" {
            return Some(ContentRange::Unsatisfied {
                complete: number(complete)?,
            });
        }
        let (first, last) = range.split_once('-')?;
        let (first, last) = (number(first)?, number(last)?);
        let complete = if complete == "*" {
            None
        } else {
            Some(number(complete)?)
        };
        if last < first || complete.is_some_and(|c| last >= c) {
            return None;
        }
        Some(ContentRange::Bytes {
            first,
            last,
            complete,
        })
    };
    parse().unwrap_or(ContentRange::Invalid)
}

/// Sans-io decoder of a chunked body (RFC 9112 §7.1): feed bytes, get the
/// spans of data they hold, learn when the body (and its trailers) ended.
#[derive(Debug, Default)]
pub struct ChunkedDecoder {
    state: ChunkState,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Reading a chunk-size line (with optional extensions) up to LF.
    #[default]
    Size,
    /// Inside chunk data; this many bytes left.
    Data(u64),
    /// Expecting the CRLF after chunk data.
    DataEnd,
    /// Reading trailer lines; true when the current line is empty so far.
    Trailer(bool),
    Done,
}

/// What one [`ChunkedDecoder::feed`] step found.
#[derive(Debug, PartialEq, Eq)]
pub enum Chunk {
    /// The first this-many bytes of the input are body data.
    Data(usize),
    /// Framing bytes consumed without data (sizes, CRLFs, trailers).
    Framing,
    /// The body is complete.
    Done,
    /// Needs more input.
    More,
}

impl ChunkedDecoder {
    #[cfg(test)]
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Consumes a prefix of `input`; returns what it was and how many bytes were used.
    pub fn feed(&mut self, input: &[u8]) -> Result<(Chunk, usize), ParseError> {
        let bad = || ParseError::Syntax(httparse::Error::Token);
        match self.state {
            ChunkState::Done => Ok((Chunk::Done, 0)),
            ChunkState::Size => {
                let Some(lf) = input.iter().position(|&b| b == b'\n') else {
                    if input.len() > 1024 {
                        return Err(bad());
                    }
                    return Ok((Chunk::More, 0));
                };
                let line = &input[..lf];
                let hex_end = line
                    .iter()
                    .position(|b| !b.is_ascii_hexdigit())
                    .unwrap_or(line.len());
                if hex_end == 0 || hex_end > 15 {
                    return Err(bad());
                }
                let hex = std::str::from_utf8(&line[..hex_end]).map_err(|_| bad())?;
                let size = u64::from_str_radix(hex, 16).map_err(|_| bad())?;
                self.state = if size == 0 {
                    ChunkState::Trailer(true)
                } else {
                    ChunkState::Data(size)
                };
                Ok((Chunk::Framing, lf + 1))
            }
            ChunkState::Data(left) => {
                if input.is_empty() {
                    return Ok((Chunk::More, 0));
                }
                let take = (input.len() as u64).min(left) as usize;
                self.state = if take as u64 == left {
                    ChunkState::DataEnd
                } else {
                    ChunkState::Data(left - take as u64)
                };
                Ok((Chunk::Data(take), take))
            }
            ChunkState::DataEnd => match input {
                [] | [b'\r'] => Ok((Chunk::More, 0)),
                [b'\r', b'\n', ..] => {
                    self.state = ChunkState::Size;
                    Ok((Chunk::Framing, 2))
                }
                [b'\n', ..] => {
                    self.state = ChunkState::Size;
                    Ok((Chunk::Framing, 1))
                }
                _ => Err(bad()),
            },
            ChunkState::Trailer(empty_line) => {
                let Some(&b) = input.first() else {
                    return Ok((Chunk::More, 0));
                };
                match b {
                    b'\n' if empty_line => {
                        self.state = ChunkState::Done;
                        Ok((Chunk::Done, 1))
                    }
                    b'\n' => {
                        self.state = ChunkState::Trailer(true);
                        Ok((Chunk::Framing, 1))
                    }
                    b'\r' => Ok((Chunk::Framing, 1)),
                    _ => {
                        self.state = ChunkState::Trailer(false);
                        Ok((Chunk::Framing, 1))
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Head {
        parse_head(raw.as_bytes()).unwrap().unwrap()
    }

    #[test]
    fn partial_heads_need_more_bytes() {
        assert_eq!(parse_head(b""), Ok(None));
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Len"), Ok(None));
        assert_eq!(
            parse_head(&[b'X'; 10]),
            Err(ParseError::Syntax(httparse::Error::Version))
        );
    }

    #[test]
    fn range_response() {
        let raw = "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-99/1000\r\nContent-Length: 100\r\n\r\nbody";
        let h = head(raw);
        assert_eq!(h.status, 206);
        assert_eq!(h.len, raw.len() - 4);
        assert_eq!(h.framing, Framing::Length(100));
        assert_eq!(
            h.content_range,
            Some(ContentRange::Bytes {
                first: 0,
                last: 99,
                complete: Some(1000)
            })
        );
        assert!(h.keep_alive);
    }

    #[test]
    fn keep_alive_rules() {
        assert!(
            !head("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").keep_alive
        );
        assert!(!head("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").keep_alive);
        assert!(
            head("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n")
                .keep_alive
        );
        let until_close = head("HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(until_close.framing, Framing::UntilClose);
        assert!(!until_close.keep_alive);
    }

    #[test]
    fn framing_rules() {
        assert_eq!(
            head("HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n").framing,
            Framing::Empty
        );
        assert_eq!(
            head(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 9\r\n\r\n"
            )
            .framing,
            Framing::Chunked
        );
        assert_eq!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            Err(ParseError::BadContentLength)
        );
        assert_eq!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"),
            Err(ParseError::BadContentLength)
        );
    }

    #[test]
    fn content_ranges() {
        assert_eq!(
            parse_content_range(b"bytes */1000"),
            ContentRange::Unsatisfied { complete: 1000 }
        );
        assert_eq!(
            parse_content_range(b"bytes 5-5/*"),
            ContentRange::Bytes {
                first: 5,
                last: 5,
                complete: None
            }
        );
        for bad in [
            "bytes 5-4/10",
            "bytes 0-10/10",
            "items 0-1/2",
            "bytes 0-1",
            "bytes -1-2/3",
            "bytes +1-2/3",
        ] {
            assert_eq!(
                parse_content_range(bad.as_bytes()),
                ContentRange::Invalid,
                "{bad}"
            );
        }
    }

    /// Decodes `body` fed in pieces of `step` bytes.
    fn dechunk(body: &[u8], step: usize) -> Result<(Vec<u8>, usize), ParseError> {
        let mut decoder = ChunkedDecoder::default();
        let mut out = Vec::new();
        let mut pending: Vec<u8> = Vec::new();
        let mut consumed = 0;
        for piece in body.chunks(step) {
            pending.extend_from_slice(piece);
            loop {
                let (chunk, used) = decoder.feed(&pending)?;
                if let Chunk::Data(len) = chunk {
                    out.extend_from_slice(&pending[..len]);
                }
                pending.drain(..used);
                consumed += used;
                if matches!(chunk, Chunk::More | Chunk::Done) {
                    break;
                }
            }
            if decoder.is_done() {
                break;
            }
        }
        assert!(decoder.is_done());
        Ok((out, consumed))
    }

    #[test]
    fn chunked_bodies_in_any_pieces() {
        let body = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";
        for step in 1..body.len() {
            let (out, consumed) = dechunk(body, step).unwrap();
            assert_eq!(out, b"hello world");
            assert_eq!(consumed, body.len() - 4, "step {step}");
        }
        assert!(dechunk(b"zz\r\n", 4).is_err());
        assert!(dechunk(b"1\r\nab\r\n", 7).is_err());
    }
}
