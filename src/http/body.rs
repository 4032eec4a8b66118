//! A request's own content (RFC 9112 §6, §7.1): decoded for an upload, or
//! skipped so that the next pipelined request can be parsed (we never need
//! the bytes of a GET body).

use super::request::BodyFraming;

/// Largest chunk-size line (size plus extensions) we accept.
const MAX_CHUNK_LINE: usize = 1024;

/// Why a chunked body cannot be framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkError {
    /// Not hex, overflowing, or a line without its CRLF in time.
    BadChunkLine,
    /// Chunk data not followed by CRLF.
    MissingCrlf,
}

/// Consumes request content from a stream of buffers, yielding its data
/// bytes without the chunked framing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyDecoder {
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Raw bytes still to drop.
    Remaining(u64),
    /// Reading a chunk-size line; `seen` bytes of it so far.
    ChunkLine {
        size: Option<u64>,
        in_ext: bool,
        seen: usize,
    },
    /// Dropping chunk data, then its CRLF.
    ChunkData(u64),
    ChunkCr,
    ChunkLf,
    /// In the trailer section; `line_empty` while the current line has no bytes.
    Trailer {
        line_empty: bool,
        seen: usize,
    },
    Done,
}

impl BodyDecoder {
    pub fn new(framing: BodyFraming) -> Self {
        let state = match framing {
            BodyFraming::None | BodyFraming::Length(0) => State::Done,
            BodyFraming::Length(n) => State::Remaining(n),
            BodyFraming::Chunked => State::ChunkLine {
                size: None,
                in_ext: false,
                seen: 0,
            },
        };
        BodyDecoder { state }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Drops as much of `buf` as belongs to the body; returns how many bytes.
    pub fn skip(&mut self, buf: &[u8]) -> Result<usize, ChunkError> {
        self.each_data(buf, |_| {})
    }

    /// Consumes as much of `buf` as belongs to the body, appending its data
    /// bytes (the content, unframed) to `out`; returns how many bytes of
    /// `buf` it used.
    pub fn decode(&mut self, buf: &[u8], out: &mut Vec<u8>) -> Result<usize, ChunkError> {
        self.each_data(buf, |data| out.extend_from_slice(data))
    }

    /// Data bytes still owed by a Content-Length body (0 for chunked ones,
    /// whose length is not known ahead).
    pub fn remaining_length(&self) -> u64 {
        match self.state {
            State::Remaining(n) => n,
            _ => 0,
        }
    }

    /// Consumes the Content-Length body's next `n` bytes without seeing
    /// them: they went around user space (spliced to a file).
    pub fn consume_length(&mut self, n: u64) {
        if let State::Remaining(left) = self.state {
            let left = left.saturating_sub(n);
            self.state = if left == 0 {
                State::Done
            } else {
                State::Remaining(left)
            };
        }
    }

    fn each_data(&mut self, buf: &[u8], mut data: impl FnMut(&[u8])) -> Result<usize, ChunkError> {
        let mut used = 0;
        while used < buf.len() && !self.is_done() {
            let (n, is_data) = self.step(&buf[used..])?;
            if is_data {
                data(&buf[used..used + n]);
            }
            used += n;
        }
        Ok(used)
    }

    /// Advances over a prefix of `buf` (non-empty); returns its length and
    /// whether it is content.
    fn step(&mut self, buf: &[u8]) -> Result<(usize, bool), ChunkError> {
        let b = buf[0];
        match self.state {
            State::Remaining(n) | State::ChunkData(n) => {
                let take = n.min(buf.len() as u64);
                let left = n - take;
                self.state = match (self.state, left) {
                    (State::Remaining(_), 0) => State::Done,
                    (State::Remaining(_), _) => State::Remaining(left),
                    (_, 0) => State::ChunkCr,
                    _ => State::ChunkData(left),
                };
                return Ok((take as usize, true));
            }
            State::ChunkLine { size, in_ext, seen } => {
                if seen >= MAX_CHUNK_LINE {
                    return Err(ChunkError::BadChunkLine);
                }
                self.state = match (b, size, in_ext) {
                    (b'\n', Some(0), _) => State::Trailer {
                        line_empty: true,
                        seen: 0,
                    },
                    (b'\n', Some(n), _) => State::ChunkData(n),
                    (b'\r', Some(_), _) | (_, Some(_), true) => State::ChunkLine {
                        size,
                        in_ext: true,
                        seen: seen + 1,
                    },
                    (b';' | b' ' | b'\t', Some(_), false) => State::ChunkLine {
                        size,
                        in_ext: true,
                        seen: seen + 1,
                    },
                    (digit, size, false) => {
                        let d = (digit as char)
                            .to_digit(16)
                            .ok_or(ChunkError::BadChunkLine)?;
                        let n = size
                            .unwrap_or(0)
                            .checked_mul(16)
                            .and_then(|n| n.checked_add(u64::from(d)))
                            .ok_or(ChunkError::BadChunkLine)?;
                        State::ChunkLine {
                            size: Some(n),
                            in_ext: false,
                            seen: seen + 1,
                        }
                    }
                    _ => return Err(ChunkError::BadChunkLine),
                };
            }
            State::ChunkCr => {
                self.state = match b {
                    b'\r' => State::ChunkLf,
                    b'\n' => State::ChunkLine {
                        size: None,
                        in_ext: false,
                        seen: 0,
                    },
                    _ => return Err(ChunkError::MissingCrlf),
                };
            }
            State::ChunkLf => {
                if b != b'\n' {
                    return Err(ChunkError::MissingCrlf);
                }
                self.state = State::ChunkLine {
                    size: None,
                    in_ext: false,
                    seen: 0,
                };
            }
            State::Trailer { line_empty, seen } => {
                if seen >= MAX_CHUNK_LINE * 8 {
                    return Err(ChunkError::BadChunkLine);
                }
                self.state = match b {
                    b'\n' if line_empty => State::Done,
                    b'\n' => State::Trailer {
                        line_empty: true,
                        seen: seen + 1,
                    },
                    b'\r' => State::Trailer {
                        line_empty,
                        seen: seen + 1,
                    },
                    _ => State::Trailer {
                        line_empty: false,
                        seen: seen + 1,
                    },
                };
            }
            State::Done => return Ok((0, false)),
        }
        Ok((1, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn skip_all(framing: BodyFraming, input: &[u8]) -> Result<(usize, bool), ChunkError> {
        let mut skipper = BodyDecoder::new(framing);
        let used = skipper.skip(input)?;
        Ok((used, skipper.is_done()))
    }

    #[test]
    fn content_length_bodies() {
        assert_eq!(skip_all(BodyFraming::Length(5), b"helloGET"), Ok((5, true)));
        assert_eq!(skip_all(BodyFraming::Length(5), b"hel"), Ok((3, false)));
        assert_eq!(skip_all(BodyFraming::None, b"GET"), Ok((0, true)));
    }

    #[test]
    fn rfc9112_7_1_chunked_bodies() {
        let body = b"5\r\nhello\r\n1;ext=\"x\"\r\n!\r\n0\r\nTrailer: v\r\n\r\nGET";
        assert_eq!(
            skip_all(BodyFraming::Chunked, body),
            Ok((body.len() - 3, true))
        );
        assert_eq!(skip_all(BodyFraming::Chunked, b"0\r\n\r\n"), Ok((5, true)));
        assert_eq!(
            skip_all(BodyFraming::Chunked, b"A\nabcdefghij\n0\n\n"),
            Ok((16, true))
        );
    }

    #[test]
    fn chunked_bodies_may_arrive_byte_by_byte() {
        let body = b"3\r\nabc\r\n0\r\n\r\n";
        let mut skipper = BodyDecoder::new(BodyFraming::Chunked);
        for (i, b) in body.iter().enumerate() {
            assert!(!skipper.is_done(), "done early at {i}");
            assert_eq!(skipper.skip(std::slice::from_ref(b)), Ok(1));
        }
        assert!(skipper.is_done());
    }

    #[test]
    fn malformed_chunks_are_errors() {
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"3\r\nabcX",
            b"ffffffffffffffffff\r\n",
        ] {
            assert!(
                skip_all(BodyFraming::Chunked, bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long_ext = format!("1;{}", "a".repeat(MAX_CHUNK_LINE + 1));
        assert!(skip_all(BodyFraming::Chunked, long_ext.as_bytes()).is_err());
    }

    #[test]
    fn decoding_yields_the_content_without_framing() {
        let body = b"5\r\nhello\r\n1;ext=\"x\"\r\n!\r\n0\r\nTrailer: v\r\n\r\nGET";
        let mut decoder = BodyDecoder::new(BodyFraming::Chunked);
        let mut out = Vec::new();
        assert_eq!(decoder.decode(body, &mut out), Ok(body.len() - 3));
        assert_eq!(out, b"hello!");
        assert!(decoder.is_done());

        let mut decoder = BodyDecoder::new(BodyFraming::Length(4));
        let mut out = Vec::new();
        assert_eq!(decoder.decode(b"ab", &mut out), Ok(2));
        assert_eq!(decoder.remaining_length(), 2);
        decoder.consume_length(2);
        assert!(decoder.is_done());
        assert_eq!(out, b"ab");
    }

    /// `data` framed as chunks of the given sizes (cycled), with a last chunk.
    fn chunked(data: &[u8], sizes: &[usize]) -> Vec<u8> {
        let mut framed = Vec::new();
        let mut rest = data;
        let mut i = 0;
        while !rest.is_empty() {
            let n = sizes[i % sizes.len()].clamp(1, rest.len());
            framed.extend_from_slice(format!("{n:x}\r\n").as_bytes());
            framed.extend_from_slice(&rest[..n]);
            framed.extend_from_slice(b"\r\n");
            rest = &rest[n..];
            i += 1;
        }
        framed.extend_from_slice(b"0\r\n\r\n");
        framed
    }

    proptest! {
        #[test]
        fn never_panics_and_never_overconsumes(input in prop::collection::vec(any::<u8>(), 0..256)) {
            let mut skipper = BodyDecoder::new(BodyFraming::Chunked);
            if let Ok(used) = skipper.skip(&input) {
                prop_assert!(used <= input.len());
            }
        }

        #[test]
        fn decoding_any_split_gives_back_the_data(
            data in prop::collection::vec(any::<u8>(), 0..2048),
            sizes in prop::collection::vec(1usize..300, 1..8),
            cut in 1usize..64,
        ) {
            let framed = chunked(&data, &sizes);
            let mut decoder = BodyDecoder::new(BodyFraming::Chunked);
            let mut out = Vec::new();
            for piece in framed.chunks(cut) {
                prop_assert_eq!(decoder.decode(piece, &mut out), Ok(piece.len()));
            }
            prop_assert!(decoder.is_done());
            prop_assert_eq!(out, data);
        }
    }
}
