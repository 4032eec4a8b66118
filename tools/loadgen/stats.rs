//! Counters and the latency histogram. Each load thread keeps its own [`Stats`]
//! (no sharing on the request path) and they are merged once at the end; the
//! few [`Progress`] atomics exist only for the live progress line.

use crate::tls::{Handshake, Session};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Highest latency the histogram holds exactly (1 hour, in microseconds);
/// larger values are clamped, never dropped.
const MAX_LATENCY_US: u64 = 3_600_000_000;
/// Significant decimal digits kept per latency (0.1% resolution).
const LATENCY_DIGITS: u8 = 3;

/// Errors by cause. A response can count under several causes (wrong status
/// is checked first; a wrong status skips the range, length and byte checks).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Errors {
    /// Connecting failed (refused, unreachable, timed out).
    pub connect: u64,
    /// Reading or writing failed (reset, broken pipe).
    pub io: u64,
    /// No byte of a response for --timeout.
    pub timeout: u64,
    /// The server closed the connection before the response was complete.
    pub closed: u64,
    /// The response could not be parsed (bad head, bad chunking, extra bytes).
    pub malformed: u64,
    /// A status other than the one asked for (206 for a range, 200 for a whole GET).
    pub status: u64,
    /// Content-Range missing or not the range asked for.
    pub content_range: u64,
    /// Body length not the one asked for (Content-Length or bytes received).
    pub length: u64,
    /// Body bytes differ from the --verify file.
    pub body: u64,
    /// An idle connection the server closed (or broke) before the end.
    pub idle_closed: u64,
    /// A TLS handshake failed (certificate, protocol, alert), or a record
    /// did not decrypt.
    pub tls: u64,
}

impl Errors {
    /// Every cause with its name, in report order.
    pub fn named(&self) -> [(&'static str, u64); 11] {
        [
            ("connect", self.connect),
            ("tls", self.tls),
            ("io", self.io),
            ("timeout", self.timeout),
            ("closed", self.closed),
            ("malformed", self.malformed),
            ("status", self.status),
            ("content_range", self.content_range),
            ("length", self.length),
            ("body_mismatch", self.body),
            ("idle_closed", self.idle_closed),
        ]
    }

    pub fn total(&self) -> u64 {
        self.named().iter().map(|(_, n)| n).sum()
    }

    pub fn add(&mut self, other: &Errors) {
        self.connect += other.connect;
        self.io += other.io;
        self.timeout += other.timeout;
        self.closed += other.closed;
        self.malformed += other.malformed;
        self.status += other.status;
        self.content_range += other.content_range;
        self.length += other.length;
        self.body += other.body;
        self.idle_closed += other.idle_closed;
        self.tls += other.tls;
    }
}

/// One load thread's results (and, after [`Stats::merge`], the whole run's).
#[derive(Debug, Clone)]
pub struct Stats {
    /// Complete responses, whatever their status (errors are counted apart).
    pub responses: u64,
    /// Body bytes received, including those of responses cut short.
    pub body_bytes: u64,
    /// Latency of every complete response, in microseconds: from the send in
    /// closed loop, from the scheduled send time in open loop and player mode.
    pub latency: Histogram<u64>,
    pub errors: Errors,
    /// Complete responses by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// Responses with at least one error (status, range, length or bytes).
    pub bad_responses: u64,
    /// Open loop: scheduled requests never sent because the run ended while
    /// the connection was behind schedule.
    pub missed: u64,
    /// Player: chunks that took longer to arrive than they take to play.
    pub late_chunks: u64,
    /// Player: seeks made.
    pub seeks: u64,
    /// Idle connections that stayed open until the end.
    pub idle_held: u64,
    /// Requests still in flight when the run was cut off (deadline + timeout).
    pub unfinished: u64,
    /// TLS handshakes completed, and what they negotiated.
    pub handshakes: Handshakes,
    /// When this thread's last connection finished.
    pub finished: Option<Instant>,
}

/// Completed TLS handshakes: full and resumed, and how many negotiated each
/// (version, suite, group), so a benchmark can check that two servers
/// were measured on the same terms.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Handshakes {
    pub full: u64,
    pub resumed: u64,
    /// Handshakes by what they negotiated; a run has one or two entries,
    /// so a short list searched in order beats a map.
    pub sessions: Vec<(Session, u64)>,
}

impl Handshakes {
    pub fn record(&mut self, handshake: &Handshake) {
        if handshake.resumed {
            self.resumed += 1;
        } else {
            self.full += 1;
        }
        self.count(handshake.session, 1);
    }

    pub fn total(&self) -> u64 {
        self.full + self.resumed
    }

    /// The session most handshakes negotiated.
    pub fn usual(&self) -> Option<Session> {
        self.sessions
            .iter()
            .max_by_key(|(session, n)| (*n, std::cmp::Reverse(*session)))
            .map(|(session, _)| *session)
    }

    pub fn merge(&mut self, other: &Handshakes) {
        self.full += other.full;
        self.resumed += other.resumed;
        for (session, n) in &other.sessions {
            self.count(*session, *n);
        }
    }

    fn count(&mut self, session: Session, n: u64) {
        match self.sessions.iter_mut().find(|(s, _)| *s == session) {
            Some((_, count)) => *count += n,
            None => {
                self.sessions.push((session, n));
                self.sessions.sort();
            }
        }
    }
}

impl Default for Stats {
    fn default() -> Stats {
        Stats {
            responses: 0,
            body_bytes: 0,
            latency: Histogram::new_with_bounds(1, MAX_LATENCY_US, LATENCY_DIGITS)
                .expect("valid histogram bounds"),
            errors: Errors::default(),
            statuses: BTreeMap::new(),
            bad_responses: 0,
            missed: 0,
            late_chunks: 0,
            seeks: 0,
            idle_held: 0,
            unfinished: 0,
            handshakes: Handshakes::default(),
            finished: None,
        }
    }
}

impl Stats {
    pub fn record_latency(&mut self, latency: Duration) {
        let us = (latency.as_micros() as u64).clamp(1, MAX_LATENCY_US);
        self.latency.saturating_record(us);
    }

    pub fn merge(&mut self, other: &Stats) {
        self.responses += other.responses;
        self.body_bytes += other.body_bytes;
        self.latency
            .add(&other.latency)
            .expect("histograms share bounds");
        self.errors.add(&other.errors);
        for (status, n) in &other.statuses {
            *self.statuses.entry(*status).or_default() += n;
        }
        self.bad_responses += other.bad_responses;
        self.missed += other.missed;
        self.late_chunks += other.late_chunks;
        self.seeks += other.seeks;
        self.idle_held += other.idle_held;
        self.unfinished += other.unfinished;
        self.handshakes.merge(&other.handshakes);
        self.finished = self.finished.max(other.finished);
    }
}

/// Live totals for the progress line, updated with relaxed atomics.
#[derive(Debug, Default)]
pub struct Progress {
    pub responses: AtomicU64,
    pub body_bytes: AtomicU64,
    pub errors: AtomicU64,
}

impl Progress {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn read(&self) -> (u64, u64, u64) {
        (
            self.responses.load(Ordering::Relaxed),
            self.body_bytes.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_everything() {
        let mut a = Stats::default();
        let mut b = Stats::default();
        a.responses = 2;
        a.record_latency(Duration::from_millis(1));
        a.record_latency(Duration::from_millis(2));
        b.responses = 1;
        b.record_latency(Duration::from_secs(1));
        b.errors.body = 1;
        *b.statuses.entry(206).or_default() += 1;
        a.merge(&b);
        assert_eq!(a.responses, 3);
        assert_eq!(a.latency.len(), 3);
        assert!(a.latency.max() >= 999_000);
        assert_eq!(a.errors.total(), 1);
        assert_eq!(a.statuses[&206], 1);
    }

    #[test]
    fn handshakes_count_by_kind_and_session() {
        let tls13 = Session {
            version: "TLSv1.3",
            cipher: "TLS13_AES_128_GCM_SHA256",
            group: "X25519",
        };
        let tls12 = Session {
            version: "TLSv1.2",
            cipher: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            group: "none",
        };
        let mut a = Handshakes::default();
        a.record(&Handshake {
            resumed: false,
            session: tls13,
        });
        a.record(&Handshake {
            resumed: true,
            session: tls13,
        });
        let mut b = Handshakes::default();
        b.record(&Handshake {
            resumed: true,
            session: tls12,
        });
        a.merge(&b);
        assert_eq!((a.full, a.resumed, a.total()), (1, 2, 3));
        assert_eq!(a.sessions.len(), 2);
        assert_eq!(a.usual(), Some(tls13));
        assert_eq!(Handshakes::default().usual(), None);
    }

    #[test]
    fn huge_and_zero_latencies_are_clamped_not_dropped() {
        let mut s = Stats::default();
        s.record_latency(Duration::ZERO);
        s.record_latency(Duration::from_secs(100_000));
        assert_eq!(s.latency.len(), 2);
    }
}
