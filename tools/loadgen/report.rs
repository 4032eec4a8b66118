//! The result, for people (text) and for scripts (`--json`, one line). MB is
//! 10^6 bytes of response bodies; latencies are in microseconds in JSON.

use crate::stats::Stats;
use crate::workload::Shape;
use serde_json::json;
use std::fmt::Write as _;
use std::time::Duration;

/// Percentiles reported, as (label, quantile).
pub const PERCENTILES: [(&str, f64); 5] = [
    ("p50", 0.50),
    ("p90", 0.90),
    ("p99", 0.99),
    ("p99.9", 0.999),
    ("p99.99", 0.9999),
];

/// The run's settings and merged results.
pub struct Summary<'a> {
    pub url: &'a str,
    pub shape: Shape,
    pub rate: Option<f64>,
    pub connections: u32,
    pub idle: u32,
    pub cpus: &'a [usize],
    pub duration: Duration,
    /// From the first scheduled request until the last connection finished.
    pub elapsed: Duration,
    /// An https:// run: report the handshakes and what they negotiated.
    pub tls: bool,
    pub stats: &'a Stats,
}

impl Summary<'_> {
    fn per_second(&self, n: u64) -> f64 {
        n as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn workload(&self) -> String {
        match self.shape {
            Shape::Whole => "whole".into(),
            Shape::Ranges { size } => format!("ranges of {size} bytes"),
            Shape::Player { bitrate, chunk, .. } => {
                format!("player at {bitrate} bit/s, {chunk}-byte chunks")
            }
        }
    }

    fn mode(&self) -> &'static str {
        match (self.rate, self.shape) {
            (Some(_), _) => "open loop",
            (None, Shape::Player { .. }) => "player (paced)",
            (None, _) => "closed loop",
        }
    }

    /// The `tls` object of the JSON report (`null` for http://).
    /// `negotiated` is the usual session as one string, for scripts that
    /// compare servers; `sessions` lists every one seen, with its count.
    fn tls_json(&self) -> serde_json::Value {
        if !self.tls {
            return serde_json::Value::Null;
        }
        let h = &self.stats.handshakes;
        let sessions: Vec<serde_json::Value> = h
            .sessions
            .iter()
            .map(|(s, n)| json!({"version": s.version, "cipher": s.cipher, "group": s.group, "count": n}))
            .collect();
        json!({
            "handshakes": h.total(),
            "handshakes_per_sec": (self.per_second(h.total()) * 10.0).round() / 10.0,
            "full": h.full,
            "resumed": h.resumed,
            "negotiated": h.usual().map(|s| format!("{} {} {}", s.version, s.cipher, s.group)),
            "sessions": sessions,
        })
    }

    /// The report's TLS lines (none for http://).
    fn tls_text(&self, out: &mut String) {
        if !self.tls {
            return;
        }
        let h = &self.stats.handshakes;
        let _ = writeln!(
            out,
            "  handshakes {:>12}  {:>12.1} /s     ({} full, {} resumed)",
            h.total(),
            self.per_second(h.total()),
            h.full,
            h.resumed
        );
        for (s, n) in &h.sessions {
            let _ = writeln!(
                out,
                "  tls        {} {} {} ({n})",
                s.version, s.cipher, s.group
            );
        }
    }

    pub fn json(&self) -> String {
        let s = self.stats;
        let mut latency = serde_json::Map::new();
        for (label, q) in PERCENTILES {
            latency.insert(label.into(), json!(s.latency.value_at_quantile(q)));
        }
        latency.insert("max".into(), json!(s.latency.max()));
        latency.insert(
            "mean".into(),
            json!((s.latency.mean() * 10.0).round() / 10.0),
        );
        let mut errors = serde_json::Map::new();
        errors.insert("total".into(), json!(s.errors.total()));
        for (name, n) in s.errors.named() {
            errors.insert(name.into(), json!(n));
        }
        let statuses: serde_json::Map<String, serde_json::Value> = s
            .statuses
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        let value = json!({
            "url": self.url,
            "workload": self.workload(),
            "mode": self.mode(),
            "rate_target": self.rate,
            "connections": self.connections,
            "idle_connections": self.idle,
            "cpus": self.cpus,
            "duration_s": self.duration.as_secs_f64(),
            "elapsed_s": (self.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
            "requests": s.responses,
            "requests_per_sec": (self.per_second(s.responses) * 10.0).round() / 10.0,
            "body_bytes": s.body_bytes,
            "mb_per_sec": (self.per_second(s.body_bytes) / 1e4).round() / 100.0,
            "errors": errors,
            "bad_responses": s.bad_responses,
            "statuses": statuses,
            "latency_us": latency,
            "missed": s.missed,
            "unfinished": s.unfinished,
            "late_chunks": s.late_chunks,
            "seeks": s.seeks,
            "idle_held": s.idle_held,
            "tls": self.tls_json(),
        });
        value.to_string()
    }

    pub fn text(&self) -> String {
        let s = self.stats;
        let mut out = String::new();
        let cpus = self
            .cpus
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let _ = writeln!(
            out,
            "loadgen {} | {} | {} | {} connections on CPU {} | {:?}",
            self.url,
            self.workload(),
            self.mode(),
            self.connections,
            cpus,
            self.duration
        );
        let _ = writeln!(
            out,
            "  requests   {:>12}  {:>12.1} req/s  (in {:.2} s)",
            s.responses,
            self.per_second(s.responses),
            self.elapsed.as_secs_f64()
        );
        let _ = writeln!(
            out,
            "  body       {:>12.1} MB {:>10.1} MB/s",
            s.body_bytes as f64 / 1e6,
            self.per_second(s.body_bytes) / 1e6
        );
        let causes: Vec<String> = s
            .errors
            .named()
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(name, n)| format!("{name} {n}"))
            .collect();
        if causes.is_empty() {
            let _ = writeln!(out, "  errors     {:>12}", 0);
        } else {
            let _ = writeln!(
                out,
                "  errors     {:>12}  ({}; {} responses with errors)",
                s.errors.total(),
                causes.join(", "),
                s.bad_responses
            );
        }
        let mut line = String::from("  latency   ");
        for (label, q) in PERCENTILES {
            let _ = write!(
                line,
                " {label} {}",
                human_us(s.latency.value_at_quantile(q))
            );
        }
        let _ = write!(line, " max {}", human_us(s.latency.max()));
        let _ = writeln!(out, "{line}");
        let statuses: Vec<String> = s
            .statuses
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        let _ = writeln!(out, "  statuses   {}", statuses.join(", "));
        self.tls_text(&mut out);
        if let Some(rate) = self.rate {
            let _ = writeln!(
                out,
                "  rate       target {rate:.1} req/s, achieved {:.1} req/s, {} scheduled requests never sent (behind schedule)",
                self.per_second(s.responses),
                s.missed
            );
        }
        if let Shape::Player { .. } = self.shape {
            let _ = writeln!(
                out,
                "  player     {} seeks, {} chunks arrived slower than they play",
                s.seeks, s.late_chunks
            );
        }
        if self.idle > 0 {
            let _ = writeln!(
                out,
                "  idle       {} of {} held open to the end",
                s.idle_held, self.idle
            );
        }
        if s.unfinished > 0 {
            let _ = writeln!(
                out,
                "  unfinished {} requests still in flight when the run was cut off",
                s.unfinished
            );
        }
        out
    }
}

/// `850us`, `1.25ms`, `1.002s`.
pub fn human_us(us: u64) -> String {
    if us < 1000 {
        format!("{us}us")
    } else if us < 1_000_000 {
        format!("{:.2}ms", us as f64 / 1e3)
    } else {
        format!("{:.3}s", us as f64 / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(stats: &Stats) -> Summary<'_> {
        Summary {
            url: "http://127.0.0.1:1/f",
            shape: Shape::Ranges { size: 65536 },
            rate: Some(100.0),
            connections: 2,
            idle: 0,
            cpus: &[1],
            duration: Duration::from_secs(2),
            elapsed: Duration::from_secs(2),
            tls: false,
            stats,
        }
    }

    #[test]
    fn json_has_the_numbers_scripts_read() {
        let mut stats = Stats {
            responses: 200,
            body_bytes: 2_000_000,
            ..Default::default()
        };
        stats.errors.body = 3;
        stats.record_latency(Duration::from_millis(5));
        let text = summary(&stats).json();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(!text.contains('\n'), "one line");
        assert_eq!(v["requests"], 200);
        assert_eq!(v["requests_per_sec"], 100.0);
        assert_eq!(v["mb_per_sec"], 1.0);
        assert_eq!(v["errors"]["total"], 3);
        assert_eq!(v["errors"]["body_mismatch"], 3);
        assert!(v["latency_us"]["p99"].as_u64().unwrap() >= 4990);
        assert!(v["latency_us"]["p99.99"].is_u64());
    }

    #[test]
    fn tls_runs_report_handshakes_and_the_negotiated_suite() {
        let mut stats = Stats::default();
        let session = crate::tls::Session {
            version: "TLSv1.3",
            cipher: "TLS13_AES_128_GCM_SHA256",
            group: "X25519",
        };
        for resumed in [false, true, true, true] {
            stats
                .handshakes
                .record(&crate::tls::Handshake { resumed, session });
        }
        let plain = summary(&stats);
        assert!(!plain.text().contains("handshakes"));
        assert!(plain.json().contains("\"tls\":null"));
        let tls = Summary {
            tls: true,
            ..summary(&stats)
        };
        let v: serde_json::Value = serde_json::from_str(&tls.json()).unwrap();
        assert_eq!(v["tls"]["handshakes"], 4);
        assert_eq!(v["tls"]["handshakes_per_sec"], 2.0);
        assert_eq!(v["tls"]["resumed"], 3);
        assert_eq!(v["tls"]["full"], 1);
        assert_eq!(
            v["tls"]["negotiated"],
            "TLSv1.3 TLS13_AES_128_GCM_SHA256 X25519"
        );
        let text = tls.text();
        assert!(text.contains("(1 full, 3 resumed)"), "{text}");
        assert!(
            text.contains("TLS13_AES_128_GCM_SHA256 X25519 (4)"),
            "{text}"
        );
    }

    #[test]
    fn text_names_every_error_cause() {
        let mut stats = Stats::default();
        stats.errors.status = 1;
        stats.errors.timeout = 2;
        let text = summary(&stats).text();
        assert!(text.contains("timeout 2"), "{text}");
        assert!(text.contains("status 1"), "{text}");
        assert_eq!(human_us(999), "999us");
        assert_eq!(human_us(1500), "1.50ms");
        assert_eq!(human_us(1_002_000), "1.002s");
    }
}
