//! The load generator against small in-test servers (std::net, a thread per
//! connection) that misbehave on purpose: a 1 s stall must show in the
//! open-loop p99, wrong bytes, statuses, ranges and cut-off bodies must be
//! counted, and a correct server must give zero errors.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Size of the served file: big enough for many distinct ranges.
const FILE_LEN: usize = 1 << 20;

/// How a test server answers.
#[derive(Clone, Copy, PartialEq)]
enum Behavior {
    Correct,
    /// Whole-file answers with `Transfer-Encoding: chunked`.
    Chunked,
    /// Flips one body byte in every 4th response.
    WrongBytes,
    /// Every 3rd response carries a Content-Range one byte off.
    WrongContentRange,
    /// Every 5th response is a 503.
    Status503,
    /// Every 5th response stops halfway through the body and closes.
    CutOff,
    /// Response number 100 stalls the whole server for 1 s.
    StallOnce,
}

struct TestServer {
    addr: SocketAddr,
    /// Responses sent, probe included.
    responses: Arc<AtomicU64>,
}

fn file_bytes() -> Arc<Vec<u8>> {
    let mut x = 0x1234_5678_u32;
    Arc::new(
        (0..FILE_LEN)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect(),
    )
}

fn start(behavior: Behavior) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let responses = Arc::new(AtomicU64::new(0));
    let stall_until: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let data = file_bytes();
    let counter = responses.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let (data, counter, stall_until) = (data.clone(), counter.clone(), stall_until.clone());
            std::thread::spawn(move || {
                let _ = serve(stream, behavior, &data, &counter, &stall_until);
            });
        }
    });
    TestServer { addr, responses }
}

/// Serves one connection: keep-alive GETs of the one file, with or without Range.
fn serve(
    stream: TcpStream,
    behavior: Behavior,
    data: &[u8],
    counter: &AtomicU64,
    stall_until: &Mutex<Option<Instant>>,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    loop {
        let mut range = None;
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        loop {
            let mut field = String::new();
            reader.read_line(&mut field)?;
            if field == "\r\n" || field.is_empty() {
                break;
            }
            if let Some(value) = field.strip_prefix("Range: bytes=") {
                let (a, b) = value.trim().split_once('-').unwrap();
                range = Some((a.parse::<usize>().unwrap(), b.parse::<usize>().unwrap()));
            }
        }
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        if behavior == Behavior::StallOnce && n == 100 {
            *stall_until.lock().unwrap() = Some(Instant::now() + Duration::from_secs(1));
        }
        let until = *stall_until.lock().unwrap();
        if let Some(until) = until {
            if let Some(wait) = until.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        // The probe (response 1) is always answered correctly.
        let nth = |k: u64| n > 1 && n % k == 0;
        if behavior == Behavior::Status503 && nth(5) {
            out.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy")?;
            continue;
        }
        let (status, first, last) = match range {
            Some((a, b)) => ("206 Partial Content", a, b.min(data.len() - 1)),
            None => ("200 OK", 0, data.len() - 1),
        };
        let mut body = data[first..=last].to_vec();
        if behavior == Behavior::WrongBytes && nth(4) {
            let middle = body.len() / 2;
            body[middle] ^= 0x55;
        }
        let mut head = format!("HTTP/1.1 {status}\r\n");
        if range.is_some() {
            let shown = if behavior == Behavior::WrongContentRange && nth(3) {
                first + 1
            } else {
                first
            };
            head += &format!("Content-Range: bytes {shown}-{last}/{}\r\n", data.len());
        }
        if behavior == Behavior::Chunked && range.is_none() {
            head += "Transfer-Encoding: chunked\r\n\r\n";
            out.write_all(head.as_bytes())?;
            for piece in body.chunks(10_000) {
                out.write_all(format!("{:x}\r\n", piece.len()).as_bytes())?;
                out.write_all(piece)?;
                out.write_all(b"\r\n")?;
            }
            out.write_all(b"0\r\n\r\n")?;
            continue;
        }
        head += &format!("Content-Length: {}\r\n\r\n", body.len());
        out.write_all(head.as_bytes())?;
        if behavior == Behavior::CutOff && nth(5) {
            out.write_all(&body[..body.len() / 2])?;
            return Ok(());
        }
        out.write_all(&body)?;
    }
}

/// The file the servers serve, written once for --verify.
fn verify_file() -> std::path::PathBuf {
    static WRITTEN: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    WRITTEN
        .get_or_init(|| {
            let path =
                std::env::temp_dir().join(format!("loadgen-test-{}.bin", std::process::id()));
            std::fs::write(&path, &*file_bytes()).unwrap();
            path
        })
        .clone()
}

/// Runs loadgen with `--json` and returns the parsed report.
fn loadgen(server: &TestServer, args: &[&str]) -> serde_json::Value {
    let url = format!("http://{}/media.mp4", server.addr);
    let output = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .arg(&url)
        .args(["--json", "--seed", "42"])
        .args(args)
        .output()
        .expect("loadgen runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "loadgen failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("bad JSON ({e}): {stdout}"))
}

fn errors(report: &serde_json::Value, cause: &str) -> u64 {
    report["errors"][cause].as_u64().unwrap()
}

#[test]
fn a_correct_server_gives_zero_errors_with_verified_ranges() {
    let server = start(Behavior::Correct);
    let verify = verify_file();
    let report = loadgen(
        &server,
        &[
            "--range-size",
            "4KiB",
            "-c",
            "4",
            "-d",
            "700ms",
            "--verify",
            verify.to_str().unwrap(),
        ],
    );
    assert_eq!(errors(&report, "total"), 0, "{report}");
    let requests = report["requests"].as_u64().unwrap();
    assert!(requests > 50, "{report}");
    assert_eq!(report["statuses"]["206"].as_u64(), Some(requests));
    assert_eq!(report["body_bytes"].as_u64(), Some(requests * 4096));
    assert!(report["requests_per_sec"].as_f64().unwrap() > 0.0);
}

#[test]
fn whole_and_chunked_bodies_verify_cleanly() {
    let verify = verify_file();
    for behavior in [Behavior::Correct, Behavior::Chunked] {
        let server = start(behavior);
        let report = loadgen(
            &server,
            &[
                "-c",
                "2",
                "-d",
                "500ms",
                "--verify",
                verify.to_str().unwrap(),
            ],
        );
        assert_eq!(errors(&report, "total"), 0, "{report}");
        let requests = report["requests"].as_u64().unwrap();
        assert!(requests > 5, "{report}");
        assert_eq!(report["statuses"]["200"].as_u64(), Some(requests));
    }
}

#[test]
fn wrong_bytes_are_counted_as_mismatches() {
    let server = start(Behavior::WrongBytes);
    let verify = verify_file();
    let report = loadgen(
        &server,
        &[
            "--range-size",
            "64KiB",
            "-c",
            "2",
            "-d",
            "700ms",
            "--verify",
            verify.to_str().unwrap(),
        ],
    );
    let requests = report["requests"].as_u64().unwrap();
    let mismatches = errors(&report, "body_mismatch");
    // Every 4th response of the server (the probe is its first) is wrong.
    let served = server.responses.load(Ordering::SeqCst);
    assert!(mismatches > 0, "{report}");
    assert_eq!(mismatches, served / 4, "{report}");
    assert_eq!(errors(&report, "total"), mismatches, "{report}");
    assert_eq!(report["bad_responses"].as_u64(), Some(mismatches));
    assert!(requests >= mismatches * 3);
}

#[test]
fn wrong_content_range_status_and_cut_off_bodies_are_counted() {
    let server = start(Behavior::WrongContentRange);
    let report = loadgen(&server, &["--range-size", "1KiB", "-c", "2", "-d", "500ms"]);
    assert!(errors(&report, "content_range") > 0, "{report}");
    assert_eq!(
        errors(&report, "total"),
        errors(&report, "content_range"),
        "{report}"
    );

    let server = start(Behavior::Status503);
    let report = loadgen(&server, &["--range-size", "1KiB", "-c", "2", "-d", "500ms"]);
    let bad = errors(&report, "status");
    assert!(bad > 0, "{report}");
    assert_eq!(report["statuses"]["503"].as_u64(), Some(bad), "{report}");

    let server = start(Behavior::CutOff);
    let report = loadgen(
        &server,
        &["--range-size", "16KiB", "-c", "2", "-d", "500ms"],
    );
    assert!(errors(&report, "closed") > 0, "{report}");
    assert_eq!(
        errors(&report, "total"),
        errors(&report, "closed"),
        "{report}"
    );
    assert!(report["requests"].as_u64().unwrap() > 10, "{report}");
}

#[test]
fn a_one_second_stall_shows_in_the_open_loop_p99() {
    let server = start(Behavior::StallOnce);
    // 200 requests/s for 3 s; the stall (at response 100, about 0.5 s in)
    // holds back every request scheduled in the following second.
    let report = loadgen(&server, &["--rate", "200", "-c", "4", "-d", "3s"]);
    assert_eq!(errors(&report, "total"), 0, "{report}");
    let p99 = report["latency_us"]["p99"].as_u64().unwrap();
    let p50 = report["latency_us"]["p50"].as_u64().unwrap();
    let max = report["latency_us"]["max"].as_u64().unwrap();
    assert!(p99 >= 500_000, "p99 {p99} us hides the stall: {report}");
    assert!(max >= 900_000, "{report}");
    assert!(p50 < 500_000, "{report}");
    let requests = report["requests"].as_u64().unwrap();
    assert!((500..=620).contains(&requests), "{report}");
}

#[test]
fn players_and_idle_connections() {
    let server = start(Behavior::Correct);
    let verify = verify_file();
    let report = loadgen(
        &server,
        &[
            "--player",
            "40M",
            "--chunk-size",
            "64KiB",
            "--seek-interval",
            "200ms",
            "-c",
            "3",
            "--idle",
            "5",
            "-d",
            "1s",
            "--verify",
            verify.to_str().unwrap(),
        ],
    );
    assert_eq!(errors(&report, "total"), 0, "{report}");
    assert_eq!(report["idle_held"].as_u64(), Some(5), "{report}");
    assert!(report["seeks"].as_u64().unwrap() > 0, "{report}");
    // 40 Mbit/s is 5 MB/s per player: about 76 chunks/s each, plus start-up bursts.
    let requests = report["requests"].as_u64().unwrap();
    assert!((150..=400).contains(&requests), "{report}");
}

#[test]
fn an_unreachable_target_fails_at_startup() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .arg(format!("http://127.0.0.1:{port}/x"))
        .args(["-d", "1s", "--timeout", "1s"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("probe"));
}
