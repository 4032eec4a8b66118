//! Per-core latency histograms and counters, merged only when someone asks.
//!
//! Each core owns one [`Metrics`] (plain `Cell`/`RefCell` state: no atomics,
//! nothing shared). A scrape, a stats line or a dump asks every core for a
//! [`Snapshot`] (a copy), then [`merge`]s them. Rendering lives beside:
//! [`prometheus`], [`stats_json`], [`table`].
//!
//! Histograms record microseconds, 3 significant digits, up to one hour:
//! - `ttfb`: request parsed -> first response byte handed to the kernel;
//! - `duration`: request parsed -> last byte handed to the kernel;
//! - `disk_wait`: per request with a file body, the time spent getting file
//!   data (page-cache hits cost microseconds; reads that go to the disk show in
//!   the tail);
//! - `socket_blocked`: per request, the time spent handing bytes to the socket
//!   (microseconds for a reading client; a slow or stalled client shows in the tail);
//! - `tls_handshake`: per completed TLS handshake, accept to the handshake's end.

pub mod prometheus;
pub mod table;

use crate::http::error::Status;
use hdrhistogram::Histogram;
use std::cell::{Cell, RefCell};
use std::time::Duration;

/// Largest recordable latency: one hour, in microseconds.
const MAX_MICROS: u64 = 3_600_000_000;
/// Significant digits kept by every histogram.
const SIGFIG: u8 = 3;

/// Statuses we count, in exposition order.
pub const STATUSES: [Status; 17] = [
    Status::Ok,
    Status::NoContent,
    Status::PartialContent,
    Status::NotModified,
    Status::BadRequest,
    Status::Forbidden,
    Status::NotFound,
    Status::MethodNotAllowed,
    Status::RequestTimeout,
    Status::PreconditionFailed,
    Status::UriTooLong,
    Status::RangeNotSatisfiable,
    Status::HeaderFieldsTooLarge,
    Status::InternalServerError,
    Status::NotImplemented,
    Status::ServiceUnavailable,
    Status::VersionNotSupported,
];

fn status_index(status: Status) -> usize {
    STATUSES.iter().position(|&s| s == status).unwrap_or(0)
}

/// What carries a connection's bytes (`server::transport::Kind`'s labels).
pub const TRANSPORTS: [&str; 3] = ["plain", "tls", "ktls"];

/// Why TLS handshakes fail (`server::transport::HandshakeError::reason`).
pub const HANDSHAKE_FAILURES: [&str; 8] = [
    "timeout",
    "closed",
    "plain_http",
    "version",
    "incompatible",
    "malformed",
    "alert_received",
    "io",
];

fn label_index(labels: &[&str], label: &str) -> usize {
    labels.iter().position(|&l| l == label).unwrap_or(0)
}

/// Failures worth counting, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A request head we could not parse (400/414/431/505).
    BadRequest,
    /// A head that did not arrive by the header deadline (408).
    HeaderTimeout,
    /// A client whose socket took no bytes for the send timeout.
    SendTimeout,
    /// The client reset or closed mid-response.
    ClientGone,
    /// Reading a file failed.
    FileRead,
    /// A file shrank while being sent.
    Truncated,
    /// `accept` failed (out of descriptors, ...).
    Accept,
    /// A connection task panicked.
    Panic,
    /// A PUT or DELETE refused or cut off (401, 405, 408, 411, 413, 507, ...).
    Upload,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 9] = [
        ErrorKind::BadRequest,
        ErrorKind::HeaderTimeout,
        ErrorKind::SendTimeout,
        ErrorKind::ClientGone,
        ErrorKind::FileRead,
        ErrorKind::Truncated,
        ErrorKind::Accept,
        ErrorKind::Panic,
        ErrorKind::Upload,
    ];

    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::HeaderTimeout => "header_timeout",
            ErrorKind::SendTimeout => "send_timeout",
            ErrorKind::ClientGone => "client_gone",
            ErrorKind::FileRead => "file_read",
            ErrorKind::Truncated => "truncated",
            ErrorKind::Accept => "accept",
            ErrorKind::Panic => "panic",
            ErrorKind::Upload => "upload_refused",
        }
    }
}

/// Monotonic counters of one core (or merged).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub requests_by_status: [u64; STATUSES.len()],
    pub response_bytes: u64,
    pub accepted_connections: u64,
    pub errors: [u64; ErrorKind::ALL.len()],
    /// Body bytes that went file -> socket without passing through user memory.
    pub zero_copy_bytes: u64,
    /// Body bytes copied through a user-space buffer.
    pub copied_bytes: u64,
    /// Application bytes encrypted in user space (rustls); kernel TLS and
    /// handshakes are not counted.
    pub tls_encrypted_bytes: u64,
    /// TLS handshakes completed, and how many of them resumed a session.
    pub tls_handshakes: u64,
    pub tls_resumed: u64,
    /// Failed handshakes, by [`HANDSHAKE_FAILURES`].
    pub tls_handshake_failures: [u64; HANDSHAKE_FAILURES.len()],
    /// Connections whose record keys went to the kernel.
    pub ktls_connections: u64,
    /// Connections that asked for kernel TLS and stayed in user space.
    pub ktls_fallbacks: u64,
}

impl Counters {
    pub fn requests(&self) -> u64 {
        self.requests_by_status.iter().sum()
    }

    fn add(&mut self, other: &Counters) {
        for (a, b) in self
            .requests_by_status
            .iter_mut()
            .zip(&other.requests_by_status)
        {
            *a += b;
        }
        for (a, b) in self.errors.iter_mut().zip(&other.errors) {
            *a += b;
        }
        self.response_bytes += other.response_bytes;
        self.accepted_connections += other.accepted_connections;
        self.zero_copy_bytes += other.zero_copy_bytes;
        self.copied_bytes += other.copied_bytes;
        self.tls_encrypted_bytes += other.tls_encrypted_bytes;
        self.tls_handshakes += other.tls_handshakes;
        self.tls_resumed += other.tls_resumed;
        for (a, b) in self
            .tls_handshake_failures
            .iter_mut()
            .zip(&other.tls_handshake_failures)
        {
            *a += b;
        }
        self.ktls_connections += other.ktls_connections;
        self.ktls_fallbacks += other.ktls_fallbacks;
    }
}

/// The four latency distributions.
#[derive(Debug, Clone)]
pub struct Histograms {
    pub ttfb: Histogram<u64>,
    pub duration: Histogram<u64>,
    pub disk_wait: Histogram<u64>,
    pub socket_blocked: Histogram<u64>,
    pub tls_handshake: Histogram<u64>,
}

impl Default for Histograms {
    fn default() -> Self {
        Histograms {
            ttfb: new_histogram(),
            duration: new_histogram(),
            disk_wait: new_histogram(),
            socket_blocked: new_histogram(),
            tls_handshake: new_histogram(),
        }
    }
}

impl Histograms {
    /// Name, help text and histogram, in exposition order.
    pub fn named(&self) -> [(&'static str, &'static str, &Histogram<u64>); 5] {
        [
            (
                "ttfb",
                "Request parsed to first response byte handed to the kernel.",
                &self.ttfb,
            ),
            (
                "request_duration",
                "Request parsed to last response byte handed to the kernel.",
                &self.duration,
            ),
            (
                "disk_wait",
                "Per request with a file body: time spent getting file data.",
                &self.disk_wait,
            ),
            (
                "socket_blocked",
                "Per request: time spent handing bytes to the client's socket.",
                &self.socket_blocked,
            ),
            (
                "tls_handshake",
                "Per completed TLS handshake: accept to the handshake's end.",
                &self.tls_handshake,
            ),
        ]
    }

    fn add(&mut self, other: &Histograms) {
        // Same bounds everywhere, so addition cannot fail.
        let _ = self.ttfb.add(&other.ttfb);
        let _ = self.duration.add(&other.duration);
        let _ = self.disk_wait.add(&other.disk_wait);
        let _ = self.socket_blocked.add(&other.socket_blocked);
        let _ = self.tls_handshake.add(&other.tls_handshake);
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, SIGFIG).expect("valid histogram bounds")
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// What one finished request contributes to the histograms.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestTimes {
    pub ttfb: Duration,
    pub duration: Duration,
    /// `None` when the response had no file body.
    pub disk_wait: Option<Duration>,
    pub socket_blocked: Duration,
}

/// One core's live metrics. Not `Sync`: only its own core touches it.
#[derive(Debug)]
pub struct Metrics {
    /// False with `--no-metrics`: nothing is recorded (for overhead comparisons).
    enabled: bool,
    counters: RefCell<Counters>,
    histograms: RefCell<Histograms>,
    open_connections: Cell<u64>,
    /// Open connections by transport, in [`TRANSPORTS`] order.
    open_by_transport: Cell<[u64; TRANSPORTS.len()]>,
}

impl Metrics {
    pub fn new(enabled: bool) -> Metrics {
        Metrics {
            enabled,
            counters: RefCell::default(),
            histograms: RefCell::default(),
            open_connections: Cell::new(0),
            open_by_transport: Cell::new([0; 3]),
        }
    }

    fn count(&self, update: impl FnOnce(&mut Counters)) {
        if self.enabled {
            update(&mut self.counters.borrow_mut());
        }
    }

    pub fn response(&self, status: Status) {
        self.count(|c| c.requests_by_status[status_index(status)] += 1);
    }

    /// Bytes handed to the kernel; `body_copied` of them were file bytes copied
    /// through user memory, `body_zero_copy` went without.
    pub fn sent(&self, total: u64, body_copied: u64, body_zero_copy: u64) {
        self.count(|c| {
            c.response_bytes += total;
            c.copied_bytes += body_copied;
            c.zero_copy_bytes += body_zero_copy;
        });
    }

    pub fn accepted(&self) {
        self.count(|c| c.accepted_connections += 1);
    }

    pub fn error(&self, kind: ErrorKind) {
        let index = ErrorKind::ALL.iter().position(|&k| k == kind).unwrap_or(0);
        self.count(|c| c.errors[index] += 1);
    }

    /// Application bytes rustls encrypted.
    pub fn tls_encrypted(&self, bytes: u64) {
        if bytes > 0 {
            self.count(|c| c.tls_encrypted_bytes += bytes);
        }
    }

    /// A completed handshake, and how long it took from accept.
    pub fn handshake_done(&self, took: Duration, resumed: bool) {
        self.count(|c| {
            c.tls_handshakes += 1;
            c.tls_resumed += u64::from(resumed);
        });
        if self.enabled {
            let mut h = self.histograms.borrow_mut();
            h.tls_handshake.saturating_record(micros(took).max(1));
        }
    }

    /// A failed handshake, by one of [`HANDSHAKE_FAILURES`].
    pub fn handshake_failed(&self, reason: &str) {
        let index = label_index(&HANDSHAKE_FAILURES, reason);
        self.count(|c| c.tls_handshake_failures[index] += 1);
    }

    /// Kernel TLS: taken (`true`) or fallen back from.
    pub fn ktls(&self, offloaded: bool) {
        self.count(|c| {
            if offloaded {
                c.ktls_connections += 1
            } else {
                c.ktls_fallbacks += 1
            }
        });
    }

    /// A connection now carried by `now` (one of [`TRANSPORTS`]) and no
    /// longer by `was`.
    pub fn transport_changed(&self, was: Option<&str>, now: Option<&str>) {
        let mut open = self.open_by_transport.get();
        if let Some(was) = was {
            let index = label_index(&TRANSPORTS, was);
            open[index] = open[index].saturating_sub(1);
        }
        if let Some(now) = now {
            open[label_index(&TRANSPORTS, now)] += 1;
        }
        self.open_by_transport.set(open);
    }

    pub fn set_open_connections(&self, open: usize) {
        self.open_connections.set(open as u64);
    }

    pub fn record(&self, times: &RequestTimes) {
        if !self.enabled {
            return;
        }
        let mut h = self.histograms.borrow_mut();
        h.ttfb.saturating_record(micros(times.ttfb).max(1));
        h.duration.saturating_record(micros(times.duration).max(1));
        h.socket_blocked
            .saturating_record(micros(times.socket_blocked).max(1));
        if let Some(wait) = times.disk_wait {
            h.disk_wait.saturating_record(micros(wait).max(1));
        }
    }

    /// A copy of everything, labelled with this core's CPU.
    pub fn snapshot(&self, cpu: usize) -> Snapshot {
        Snapshot {
            cpu: Some(cpu),
            counters: self.counters.borrow().clone(),
            histograms: self.histograms.borrow().clone(),
            open_connections: self.open_connections.get(),
            open_by_transport: self.open_by_transport.get(),
        }
    }
}

/// One core's metrics at one moment, or several cores merged (`cpu: None`).
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub cpu: Option<usize>,
    pub counters: Counters,
    pub histograms: Histograms,
    pub open_connections: u64,
    /// Open connections by transport, in [`TRANSPORTS`] order.
    pub open_by_transport: [u64; TRANSPORTS.len()],
}

/// Adds snapshots of several cores into one.
pub fn merge(snapshots: &[Snapshot]) -> Snapshot {
    let mut merged = Snapshot::default();
    for snapshot in snapshots {
        merged.counters.add(&snapshot.counters);
        merged.histograms.add(&snapshot.histograms);
        merged.open_connections += snapshot.open_connections;
        for (a, b) in merged
            .open_by_transport
            .iter_mut()
            .zip(snapshot.open_by_transport)
        {
            *a += b;
        }
    }
    merged
}

/// Quantiles reported everywhere.
pub const QUANTILES: [f64; 5] = [0.5, 0.9, 0.99, 0.999, 1.0];

/// A histogram value in seconds.
pub fn seconds(micros: u64) -> f64 {
    micros as f64 / 1e6
}

/// `/stats`: JSON with one object per core and the merged view.
pub fn stats_json(cores: &[Snapshot], merged: &Snapshot) -> String {
    let view = |s: &Snapshot| {
        let mut statuses = serde_json::Map::new();
        for (status, count) in STATUSES.iter().zip(&s.counters.requests_by_status) {
            if *count > 0 {
                statuses.insert(status.code().to_string(), (*count).into());
            }
        }
        let mut errors = serde_json::Map::new();
        for (kind, count) in ErrorKind::ALL.iter().zip(&s.counters.errors) {
            errors.insert(kind.label().to_string(), (*count).into());
        }
        let mut latencies = serde_json::Map::new();
        for (name, _, histogram) in s.histograms.named() {
            let mut q = serde_json::Map::new();
            q.insert("count".into(), histogram.len().into());
            for quantile in QUANTILES {
                q.insert(
                    format!("p{}", quantile * 100.0),
                    seconds(histogram.value_at_quantile(quantile)).into(),
                );
            }
            q.insert("mean".into(), (histogram.mean() / 1e6).into());
            latencies.insert(format!("{name}_seconds"), q.into());
        }
        serde_json::json!({
            "cpu": s.cpu,
            "requests": s.counters.requests(),
            "requests_by_status": statuses,
            "response_bytes": s.counters.response_bytes,
            "accepted_connections": s.counters.accepted_connections,
            "open_connections": s.open_connections,
            "zero_copy_bytes": s.counters.zero_copy_bytes,
            "copied_bytes": s.counters.copied_bytes,
            "errors": errors,
            "latency": latencies,
        })
    };
    let json = serde_json::json!({
        "cores": cores.iter().map(view).collect::<Vec<_>>(),
        "merged": view(merged),
    });
    json.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn core_with(cpu: usize, statuses: &[Status], ttfb_us: u64) -> Snapshot {
        let metrics = Metrics::new(true);
        for &status in statuses {
            metrics.response(status);
            metrics.sent(100, 60, 0);
            metrics.record(&RequestTimes {
                ttfb: Duration::from_micros(ttfb_us),
                duration: Duration::from_micros(ttfb_us * 2),
                disk_wait: Some(Duration::from_micros(3)),
                socket_blocked: Duration::ZERO,
            });
        }
        metrics.set_open_connections(2);
        metrics.snapshot(cpu)
    }

    #[test]
    fn merging_adds_counters_and_histograms() {
        let a = core_with(0, &[Status::Ok, Status::PartialContent], 100);
        let b = core_with(1, &[Status::Ok], 300);
        let merged = merge(&[a, b]);
        assert_eq!(merged.cpu, None);
        assert_eq!(merged.counters.requests(), 3);
        assert_eq!(
            merged.counters.requests_by_status[status_index(Status::Ok)],
            2
        );
        assert_eq!(merged.counters.response_bytes, 300);
        assert_eq!(merged.counters.copied_bytes, 180);
        assert_eq!(merged.open_connections, 4);
        assert_eq!(merged.histograms.ttfb.len(), 3);
        assert!(merged.histograms.ttfb.max() >= 299);
        assert_eq!(
            merged.histograms.socket_blocked.min(),
            1,
            "zero is recorded as 1 µs"
        );
    }

    #[test]
    fn disabled_metrics_record_nothing() {
        let metrics = Metrics::new(false);
        metrics.response(Status::Ok);
        metrics.record(&RequestTimes::default());
        let snapshot = metrics.snapshot(0);
        assert_eq!(snapshot.counters.requests(), 0);
        assert_eq!(snapshot.histograms.ttfb.len(), 0);
    }

    #[test]
    fn stats_json_has_cores_and_merged() {
        let cores = vec![
            core_with(0, &[Status::Ok], 100),
            core_with(3, &[Status::NotFound], 50),
        ];
        let merged = merge(&cores);
        let json: serde_json::Value = serde_json::from_str(&stats_json(&cores, &merged)).unwrap();
        assert_eq!(json["cores"].as_array().unwrap().len(), 2);
        assert_eq!(json["cores"][1]["cpu"], 3);
        assert_eq!(json["merged"]["requests"], 2);
        assert_eq!(json["merged"]["requests_by_status"]["404"], 1);
        assert!(
            json["merged"]["latency"]["ttfb_seconds"]["p99"]
                .as_f64()
                .unwrap()
                > 0.0
        );
    }
}
