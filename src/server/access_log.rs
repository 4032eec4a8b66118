//! `--access-log FILE`: Combined Log Format (body bytes as `%b`, `-` for
//! none) plus the request time in microseconds, one buffer per core, written
//! through io_uring.
//!
//! A request appends a line to its core's buffer (no syscall). The buffer
//! is handed to an io_uring write when it passes [`FLUSH_AT`] bytes and once a
//! second, so the core never waits on the log file. Each core opens the file
//! with `O_APPEND`, so lines from different cores never interleave mid-line.

use crate::http::error::Status;
use crate::http::request::Request;
use glommio::io::BufferedFile;
use std::cell::{Cell, RefCell};
use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Buffered bytes that trigger a write.
const FLUSH_AT: usize = 64 * 1024;
/// How often a core writes whatever it has buffered.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// One core's access log.
pub struct AccessLog {
    file: Rc<BufferedFile>,
    buffer: RefCell<Vec<u8>>,
    /// Cached `[10/Oct/2000:13:55:36 +0000]` for the current second.
    time: RefCell<(u64, String)>,
    /// Writes in flight, so shutdown can wait for them.
    writes_in_flight: Rc<Cell<usize>>,
}

impl AccessLog {
    pub fn open(path: &Path) -> std::io::Result<AccessLog> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        // SAFETY: the descriptor moves from the std File into the BufferedFile.
        let file = unsafe { BufferedFile::from_raw_fd(file.into_raw_fd()) };
        Ok(AccessLog {
            file: Rc::new(file),
            buffer: RefCell::new(Vec::with_capacity(FLUSH_AT)),
            time: RefCell::new((u64::MAX, String::new())),
            writes_in_flight: Rc::new(Cell::new(0)),
        })
    }

    /// Appends one line; starts a write if the buffer is full.
    pub fn record(
        &self,
        peer: Option<SocketAddr>,
        request: Option<&Request<'_>>,
        status: Status,
        bytes: u64,
        elapsed: Duration,
    ) {
        let mut buffer = self.buffer.borrow_mut();
        let line = request.map_or(&b"-"[..], |r| r.line);
        let _ = write!(
            buffer,
            "{} - - {} \"",
            peer.map_or("-".to_string(), |p| p.ip().to_string()),
            self.now()
        );
        escape_into(&mut buffer, line);
        // CLF's %b: body bytes, "-" for none.
        let _ = match bytes {
            0 => write!(buffer, "\" {} - \"", status.code()),
            n => write!(buffer, "\" {} {n} \"", status.code()),
        };
        escape_into(&mut buffer, request.and_then(|r| r.referer).unwrap_or(b"-"));
        buffer.extend_from_slice(b"\" \"");
        escape_into(
            &mut buffer,
            request.and_then(|r| r.user_agent).unwrap_or(b"-"),
        );
        let _ = writeln!(buffer, "\" {}", elapsed.as_micros());
        if buffer.len() >= FLUSH_AT {
            drop(buffer);
            self.flush();
        }
    }

    /// Hands the buffered lines to an io_uring write in its own task.
    pub fn flush(&self) {
        let lines = std::mem::replace(&mut *self.buffer.borrow_mut(), Vec::with_capacity(FLUSH_AT));
        if lines.is_empty() {
            return;
        }
        let file = self.file.clone();
        let in_flight = self.writes_in_flight.clone();
        in_flight.set(in_flight.get() + 1);
        glommio::spawn_local(async move {
            // O_APPEND: the offset is ignored and the kernel appends.
            if let Err(e) = file.write_at(lines, 0).await {
                eprintln!("ringcast: access log write failed: {e}");
            }
            in_flight.set(in_flight.get() - 1);
        })
        .detach();
    }

    /// Flushes and waits for every write to finish (at shutdown).
    pub async fn close(&self) {
        self.flush();
        while self.writes_in_flight.get() > 0 {
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
    }

    fn now(&self) -> String {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut cached = self.time.borrow_mut();
        if cached.0 != secs {
            *cached = (secs, clf_time(secs));
        }
        cached.1.clone()
    }
}

/// `[14/Nov/2023:22:13:20 +0000]` from epoch seconds, via the IMF-fixdate.
fn clf_time(secs: u64) -> String {
    let imf = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs));
    // "Tue, 14 Nov 2023 22:13:20 GMT"
    format!(
        "[{}/{}/{}:{} +0000]",
        &imf[5..7],
        &imf[8..11],
        &imf[12..16],
        &imf[17..25]
    )
}

/// Copies `value`, escaping `"`, `\` and non-printable bytes as `\xHH` so a
/// hostile client cannot forge log lines.
fn escape_into(out: &mut Vec<u8>, value: &[u8]) {
    for &b in value {
        match b {
            b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
            0x20..=0x7e => out.push(b),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clf_time_format() {
        assert_eq!(clf_time(1_700_000_000), "[14/Nov/2023:22:13:20 +0000]");
    }

    #[test]
    fn escaping_keeps_one_line_per_request() {
        let mut out = Vec::new();
        escape_into(&mut out, b"GET /a\"b\\c\n\xff HTTP/1.1");
        assert_eq!(out, b"GET /a\\\"b\\\\c\\x0a\\xff HTTP/1.1");
    }
}
