//! Metrics and logs as an operator reads them: exact counter deltas on
//! /metrics, ordered quantiles, /stats JSON, the HdrHistogram interval log
//! (read back with the hdrhistogram crate's own reader), the access log, and
//! percentile tables on SIGUSR1 and at shutdown.

mod common;

use common::{read_response, Server};
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use hdrhistogram::serialization::Deserializer;
use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("small.txt"), b"abcdefghijklmnopqrstuvwxyz").unwrap();
    std::fs::write(dir.path().join("video.mp4"), common::pattern(300_000)).unwrap();
    dir
}

/// Parses the exposition text into series -> value.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_string(), value.parse().unwrap())
        })
        .collect()
}

fn requests_with_status(all: &HashMap<String, f64>, status: u16) -> f64 {
    all[&format!("ringcast_requests_total{{status=\"{status}\"}}")]
}

/// Sends `count` requests for `path` with `headers`, on fresh connections so
/// that both cores see traffic.
fn send(server: &Server, count: usize, path: &str, headers: &str) -> u16 {
    let mut status = 0;
    for _ in 0..count {
        status = server.get(path, headers).status;
    }
    status
}

#[test]
fn counter_deltas_are_exact_and_quantiles_ordered() {
    let dir = fixture();
    let cpus = if std::thread::available_parallelism().map_or(1, |n| n.get()) > 1 {
        "0-1"
    } else {
        "0"
    };
    let server = Server::start(dir.path(), &["--cpus", cpus, "--admin", "127.0.0.1:0"]);
    let before = samples(&server.admin_get("/metrics"));
    let etag = server
        .get("/small.txt", "")
        .header("etag")
        .unwrap()
        .to_string();
    assert_eq!(send(&server, 6, "/small.txt", ""), 200);
    assert_eq!(send(&server, 5, "/missing", ""), 404);
    assert_eq!(
        send(&server, 4, "/video.mp4", "Range: bytes=0-999\r\n"),
        206
    );
    assert_eq!(
        send(
            &server,
            3,
            "/small.txt",
            &format!("If-None-Match: {etag}\r\n")
        ),
        304
    );
    assert_eq!(send(&server, 2, "/small.txt", "Range: bytes=99-\r\n"), 416);
    // Refused targets and unparseable heads are both bad requests.
    assert_eq!(send(&server, 3, "/../etc/passwd", ""), 400);
    let garbage = server.exchange(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n");
    assert_eq!(garbage.status, 400);
    // Pipelined and keep-alive requests count one each too.
    let mut stream = server.connect();
    stream.write_all(b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\nHEAD /small.txt HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    read_response(&mut stream, false);
    read_response(&mut stream, true);
    let after = samples(&server.admin_get("/metrics"));

    let delta =
        |status| requests_with_status(&after, status) - requests_with_status(&before, status);
    assert_eq!(delta(200), 1.0 + 6.0 + 2.0);
    assert_eq!(delta(404), 5.0);
    assert_eq!(delta(206), 4.0);
    assert_eq!(delta(304), 3.0);
    assert_eq!(delta(416), 2.0);
    assert_eq!(delta(400), 4.0);
    let errors = |kind: &str| {
        let series = format!("ringcast_errors_total{{kind=\"{kind}\"}}");
        after[&series] - before[&series]
    };
    assert_eq!(errors("bad_request"), 4.0, "every 400 is counted");
    // The merged series is the sum of the per-core ones.
    let per_core: f64 = after
        .iter()
        .filter(|(k, _)| {
            k.starts_with("ringcast_requests_total{core=") && k.ends_with("status=\"200\"}")
        })
        .map(|(_, v)| v)
        .sum();
    assert_eq!(per_core, requests_with_status(&after, 200));
    assert!(after["ringcast_response_bytes_total"] > before["ringcast_response_bytes_total"]);
    assert!(after.contains_key("ringcast_open_connections"));

    for summary in ["ttfb", "request_duration", "disk_wait", "socket_blocked"] {
        let q = |quantile: &str| {
            after[&format!("ringcast_{summary}_seconds{{quantile=\"{quantile}\"}}")]
        };
        let (p50, p99, p999, max) = (q("0.5"), q("0.99"), q("0.999"), q("1"));
        assert!(
            0.0 < p50 && p50 <= p99 && p99 <= p999 && p999 <= max && max < 10.0,
            "{summary}: {p50} {p99} {p999} {max}"
        );
        assert!(after[&format!("ringcast_{summary}_seconds_count")] > 0.0);
        assert!(after.contains_key(&format!("ringcast_{summary}_seconds_sum")));
    }
}

#[test]
fn stats_is_json_with_a_core_per_cpu() {
    let dir = fixture();
    let server = Server::start(dir.path(), &["--admin", "127.0.0.1:0"]);
    send(&server, 3, "/small.txt", "");
    let stats: serde_json::Value = serde_json::from_str(&server.admin_get("/stats")).unwrap();
    let cores = stats["cores"].as_array().unwrap();
    assert_eq!(cores.len(), 1);
    assert_eq!(cores[0]["cpu"], 0);
    assert_eq!(stats["merged"]["requests_by_status"]["200"], 3);
    assert!(
        stats["merged"]["latency"]["ttfb_seconds"]["p99"]
            .as_f64()
            .unwrap()
            > 0.0
    );
}

#[test]
fn the_admin_listener_is_separate_and_the_public_one_has_no_metrics() {
    let dir = fixture();
    let server = Server::start(dir.path(), &["--admin", "127.0.0.1:0"]);
    assert_ne!(server.admin, Some(server.addr));
    assert_eq!(server.get("/metrics", "").status, 404);
}

#[test]
fn the_latency_log_loads_in_hdrhistograms_own_reader() {
    let dir = fixture();
    let log = dir.path().join("latency.hlog");
    let mut server = Server::start(
        dir.path(),
        &[
            "--latency-log",
            log.to_str().unwrap(),
            "--stats-interval",
            "500ms",
        ],
    );
    send(&server, 20, "/small.txt", "");
    std::thread::sleep(Duration::from_millis(1300));
    // Requests just before shutdown land in the last, partial interval.
    send(&server, 5, "/small.txt", "");
    assert_eq!(server.signal_and_wait(libc::SIGTERM, None), Some(0));
    let bytes = std::fs::read(&log).unwrap();
    let mut deserializer = Deserializer::new();
    let mut ttfb_count = 0;
    let mut tags = std::collections::HashSet::new();
    for entry in IntervalLogIterator::new(&bytes) {
        if let LogEntry::Interval(interval) = entry.expect("a well-formed log") {
            let encoded = base64_decode(interval.encoded_histogram());
            let histogram: hdrhistogram::Histogram<u64> = deserializer
                .deserialize(&mut encoded.as_slice())
                .expect("a decodable histogram");
            let tag = interval
                .tag()
                .map(|t| t.as_str().to_string())
                .unwrap_or_default();
            if tag == "ttfb" {
                ttfb_count += histogram.len();
            }
            tags.insert(tag);
        }
    }
    assert_eq!(
        ttfb_count, 25,
        "every request lands in exactly one interval"
    );
    for tag in ["ttfb", "request_duration", "disk_wait", "socket_blocked"] {
        assert!(tags.contains(tag), "{tag} missing from {tags:?}");
    }
    let stats_lines = server
        .log_lines()
        .iter()
        .filter(|l| l.contains("req/s"))
        .count();
    assert!(stats_lines >= 1, "no --stats-interval line");
}

#[test]
fn access_log_has_one_combined_line_per_request() {
    let dir = fixture();
    let log = dir.path().join("access.log");
    let mut server = Server::start(dir.path(), &["--access-log", log.to_str().unwrap()]);
    send(
        &server,
        3,
        "/small.txt",
        "Referer: http://example.com/page\r\nUser-Agent: test\"agent\r\n",
    );
    send(&server, 1, "/missing", "");
    assert_eq!(server.signal_and_wait(libc::SIGTERM, None), Some(0));
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    let first = lines[0];
    assert!(first.starts_with("127.0.0.1 - - ["), "{first}");
    assert!(
        first.contains(" +0000] \"GET /small.txt HTTP/1.1\" 200 26 "),
        "{first}"
    );
    assert!(
        first.contains("\"http://example.com/page\" \"test\\\"agent\" "),
        "{first}"
    );
    let micros: u64 = first.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(micros < 10_000_000);
    assert!(
        lines[3].contains("\"GET /missing HTTP/1.1\" 404 "),
        "{}",
        lines[3]
    );
}

#[test]
fn sigusr1_and_shutdown_print_percentile_tables() {
    let dir = fixture();
    let mut server = Server::start(dir.path(), &[]);
    send(&server, 5, "/small.txt", "");
    unsafe { libc::kill(server.pid() as i32, libc::SIGUSR1) };
    std::thread::sleep(Duration::from_millis(500));
    let tables = server
        .log_lines()
        .iter()
        .filter(|l| l.contains("1/(1-Percentile)"))
        .count();
    assert_eq!(tables, 4, "one table per histogram on SIGUSR1");
    assert_eq!(server.signal_and_wait(libc::SIGTERM, None), Some(0));
    std::thread::sleep(Duration::from_millis(100));
    let tables = server
        .log_lines()
        .iter()
        .filter(|l| l.contains("1/(1-Percentile)"))
        .count();
    assert_eq!(tables, 8, "and again at shutdown");
}

/// The log's histograms are base64; decode without another dependency.
fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut buffer = 0u32;
    let mut bits = 0;
    for &c in text.as_bytes() {
        let Some(value) = ALPHABET.iter().position(|&a| a == c) else {
            continue;
        };
        buffer = buffer << 6 | value as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    out
}

#[test]
fn the_admin_port_answers_while_a_drain_waits_for_paced_downloads() {
    let dir = fixture();
    std::fs::write(dir.path().join("long.bin"), common::pattern(4 << 20)).unwrap();
    let cpus = if std::thread::available_parallelism().map_or(1, |n| n.get()) > 1 {
        "0-1"
    } else {
        "0"
    };
    let mut server = Server::start(
        dir.path(),
        &[
            "--cpus",
            cpus,
            "--admin",
            "127.0.0.1:0",
            "--limit-rate",
            "200000",
            "--drain-timeout",
            "20s",
        ],
    );
    // One paced download: on two cores, the other core has no connection
    // and finishes its drain at once while this one waits.
    let mut downloads: Vec<_> = (0..1)
        .map(|_| {
            let mut stream = server.connect();
            stream
                .write_all(b"GET /long.bin HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap();
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    unsafe { libc::kill(server.pid() as i32, libc::SIGTERM) };
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..3 {
        // Within 1.5 s: a core that is gone must be skipped at once, not
        // waited for up to the admin's 2 s per-core fallback.
        let mut admin = std::net::TcpStream::connect(server.admin.unwrap()).unwrap();
        admin
            .set_read_timeout(Some(Duration::from_millis(1500)))
            .unwrap();
        admin
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: admin\r\n\r\n")
            .unwrap();
        let response = read_response(&mut admin, false);
        assert_eq!(response.status, 200);
        let all = samples(&String::from_utf8(response.body).unwrap());
        assert_eq!(
            all["ringcast_open_connections"], 1.0,
            "the drain waits for it"
        );
    }
    drop(downloads.drain(..));
    assert_eq!(server.wait_exit(Duration::from_secs(10)), Some(0));
}
