//! The Prometheus text exposition format (version 0.0.4): merged series
//! without a `core` label, then each core's with one.

use super::{seconds, ErrorKind, Snapshot, HANDSHAKE_FAILURES, QUANTILES, STATUSES, TRANSPORTS};
use std::fmt::Write;

/// Renders `/metrics`.
pub fn render(cores: &[Snapshot], merged: &Snapshot) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let all = || std::iter::once(merged).chain(cores);

    family(
        &mut out,
        "ringcast_requests_total",
        "counter",
        "Responses sent, by status.",
    );
    for s in all() {
        for (status, count) in STATUSES.iter().zip(&s.counters.requests_by_status) {
            let status = status.code().to_string();
            sample(
                &mut out,
                "ringcast_requests_total",
                s,
                &[("status", &status)],
                *count as f64,
            );
        }
    }
    family(
        &mut out,
        "ringcast_response_bytes_total",
        "counter",
        "Response bytes handed to the kernel, heads included.",
    );
    for s in all() {
        sample(
            &mut out,
            "ringcast_response_bytes_total",
            s,
            &[],
            s.counters.response_bytes as f64,
        );
    }
    family(
        &mut out,
        "ringcast_body_bytes_total",
        "counter",
        "File bytes sent, by how they reached the socket.",
    );
    for s in all() {
        sample(
            &mut out,
            "ringcast_body_bytes_total",
            s,
            &[("path", "zero_copy")],
            s.counters.zero_copy_bytes as f64,
        );
        sample(
            &mut out,
            "ringcast_body_bytes_total",
            s,
            &[("path", "copied")],
            s.counters.copied_bytes as f64,
        );
    }
    family(
        &mut out,
        "ringcast_open_connections",
        "gauge",
        "Client connections open now.",
    );
    for s in all() {
        sample(
            &mut out,
            "ringcast_open_connections",
            s,
            &[],
            s.open_connections as f64,
        );
    }
    family(
        &mut out,
        "ringcast_accepted_connections_total",
        "counter",
        "Client connections accepted.",
    );
    for s in all() {
        sample(
            &mut out,
            "ringcast_accepted_connections_total",
            s,
            &[],
            s.counters.accepted_connections as f64,
        );
    }
    family(
        &mut out,
        "ringcast_errors_total",
        "counter",
        "Failures, by kind.",
    );
    for s in all() {
        for (kind, count) in ErrorKind::ALL.iter().zip(&s.counters.errors) {
            sample(
                &mut out,
                "ringcast_errors_total",
                s,
                &[("kind", kind.label())],
                *count as f64,
            );
        }
    }
    render_tls(&mut out, merged, cores);
    for (index, (name, help, _)) in merged.histograms.named().into_iter().enumerate() {
        let metric = format!("ringcast_{name}_seconds");
        family(&mut out, &metric, "summary", help);
        for s in all() {
            let histogram = s.histograms.named()[index].2;
            for quantile in QUANTILES {
                let q = quantile.to_string();
                let value = seconds(histogram.value_at_quantile(quantile));
                sample(&mut out, &metric, s, &[("quantile", &q)], value);
            }
            let sum = histogram.mean() * histogram.len() as f64 / 1e6;
            sample(&mut out, &format!("{metric}_sum"), s, &[], sum);
            sample(
                &mut out,
                &format!("{metric}_count"),
                s,
                &[],
                histogram.len() as f64,
            );
        }
    }
    out
}

/// Handshakes, transports and kernel TLS.
fn render_tls(out: &mut String, merged: &Snapshot, cores: &[Snapshot]) {
    let all = || std::iter::once(merged).chain(cores);
    let counters: [(&str, &str, fn(&Snapshot) -> u64); 5] = [
        (
            "ringcast_tls_handshakes_total",
            "TLS handshakes completed.",
            |s| s.counters.tls_handshakes,
        ),
        (
            "ringcast_tls_resumed_handshakes_total",
            "TLS handshakes that resumed a session (ticket or session id).",
            |s| s.counters.tls_resumed,
        ),
        (
            "ringcast_tls_encrypted_bytes_total",
            "Application bytes encrypted in user space (kernel TLS not counted).",
            |s| s.counters.tls_encrypted_bytes,
        ),
        (
            "ringcast_ktls_connections_total",
            "TLS connections whose record keys went to the kernel.",
            |s| s.counters.ktls_connections,
        ),
        (
            "ringcast_ktls_fallbacks_total",
            "TLS connections that asked for kernel TLS and stayed in user space.",
            |s| s.counters.ktls_fallbacks,
        ),
    ];
    for (name, help, value) in counters {
        family(out, name, "counter", help);
        for s in all() {
            sample(out, name, s, &[], value(s) as f64);
        }
    }
    let name = "ringcast_tls_handshake_failures_total";
    family(out, name, "counter", "TLS handshakes that failed, by reason.");
    for s in all() {
        for (reason, count) in HANDSHAKE_FAILURES
            .iter()
            .zip(&s.counters.tls_handshake_failures)
        {
            sample(out, name, s, &[("reason", reason)], *count as f64);
        }
    }
    let name = "ringcast_open_connections_by_transport";
    family(out, name, "gauge", "Client connections open now, by transport.");
    for s in all() {
        for (kind, open) in TRANSPORTS.iter().zip(s.open_by_transport) {
            sample(out, name, s, &[("transport", kind)], open as f64);
        }
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, s: &Snapshot, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    let core = s.cpu.map(|cpu| cpu.to_string());
    let all: Vec<(&str, &str)> = core
        .as_deref()
        .map(|c| ("core", c))
        .into_iter()
        .chain(labels.iter().copied())
        .collect();
    if !all.is_empty() {
        out.push('{');
        for (i, (key, value)) in all.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{key}=\"{value}\"");
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::error::Status;
    use crate::metrics::{merge, Metrics, RequestTimes};
    use std::time::Duration;

    fn parse(text: &str) -> Vec<(String, f64)> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let (series, value) = l.rsplit_once(' ').unwrap();
                (series.to_string(), value.parse().unwrap())
            })
            .collect()
    }

    #[test]
    fn exposition_has_merged_and_per_core_series() {
        let metrics = Metrics::new(true);
        metrics.response(Status::PartialContent);
        metrics.sent(1000, 900, 0);
        metrics.record(&RequestTimes {
            ttfb: Duration::from_micros(250),
            duration: Duration::from_micros(900),
            disk_wait: Some(Duration::from_micros(5)),
            socket_blocked: Duration::from_micros(2),
        });
        let cores = vec![metrics.snapshot(2)];
        let text = render(&cores, &merge(&cores));
        let samples = parse(&text);
        let get = |series: &str| samples.iter().find(|(s, _)| s == series).map(|(_, v)| *v);
        assert_eq!(get("ringcast_requests_total{status=\"206\"}"), Some(1.0));
        assert_eq!(
            get("ringcast_requests_total{core=\"2\",status=\"206\"}"),
            Some(1.0)
        );
        assert_eq!(get("ringcast_requests_total{status=\"404\"}"), Some(0.0));
        assert_eq!(get("ringcast_response_bytes_total"), Some(1000.0));
        assert_eq!(get("ringcast_open_connections{core=\"2\"}"), Some(0.0));
        let p50 = get("ringcast_ttfb_seconds{quantile=\"0.5\"}").unwrap();
        let p99 = get("ringcast_ttfb_seconds{quantile=\"0.99\"}").unwrap();
        let max = get("ringcast_ttfb_seconds{quantile=\"1\"}").unwrap();
        assert!(
            0.0 < p50 && p50 <= p99 && p99 <= max && max < 0.001,
            "{p50} {p99} {max}"
        );
        assert_eq!(get("ringcast_request_duration_seconds_count"), Some(1.0));
        assert!(text.contains("# TYPE ringcast_disk_wait_seconds summary\n"));
        assert!(text.contains("# TYPE ringcast_socket_blocked_seconds summary\n"));
    }
}
