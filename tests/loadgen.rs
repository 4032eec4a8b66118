//! The load generator against small in-test servers (std::net, a thread per
//! connection) that misbehave on purpose: a 1 s stall must show in the
//! open-loop p99, wrong bytes, statuses, ranges and cut-off bodies must be
//! counted, and a correct server must give zero errors. The same servers
//! also speak TLS (rustls, certificates from tools/test-ca.sh): bytes must
//! verify over https, a wrong CA must fail with its reason, and --new-conn
//! --resume must resume sessions.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
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
    /// `http` or `https`.
    scheme: &'static str,
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
    start_with(behavior, None)
}

/// A server that answers over TLS (every version and suite rustls has,
/// session resumption on, as rustls' defaults have it).
fn start_tls(behavior: Behavior) -> TestServer {
    start_with(behavior, Some(tls_config()))
}

fn start_with(behavior: Behavior, tls: Option<Arc<rustls::ServerConfig>>) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let responses = Arc::new(AtomicU64::new(0));
    let stall_until: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let data = file_bytes();
    let counter = responses.clone();
    let scheme = if tls.is_some() { "https" } else { "http" };
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let (data, counter, stall_until) = (data.clone(), counter.clone(), stall_until.clone());
            let tls = tls.clone();
            std::thread::spawn(move || {
                let _ = stream.set_nodelay(true);
                let _ = match tls {
                    None => serve(stream, behavior, &data, &counter, &stall_until),
                    Some(config) => {
                        let Ok(conn) = rustls::ServerConnection::new(config) else {
                            return;
                        };
                        let mut tls = rustls::StreamOwned::new(conn, stream);
                        let served = serve(&mut tls, behavior, &data, &counter, &stall_until);
                        tls.conn.send_close_notify();
                        let _ = tls.flush();
                        served
                    }
                };
            });
        }
    });
    TestServer {
        addr,
        scheme,
        responses,
    }
}

/// The test CA's files (tools/test-ca.sh), made once per test run.
fn certificates() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| make_ca(&format!("loadgen-ca-{}", std::process::id())))
}

/// Runs tools/test-ca.sh into a fresh directory under the temp dir.
fn make_ca(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(name);
    let status = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tools/test-ca.sh"))
        .arg(&dir)
        .status()
        .expect("tools/test-ca.sh runs");
    assert!(status.success(), "tools/test-ca.sh failed");
    dir
}

fn certified_key(dir: &Path, name: &str) -> Arc<CertifiedKey> {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(dir.join(format!("{name}.pem")))
            .unwrap()
            .map(Result::unwrap)
            .collect();
    let key = PrivateKeyDer::from_pem_file(dir.join(format!("{name}.key"))).unwrap();
    let signer = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key).unwrap();
    Arc::new(CertifiedKey::new(certs, signer))
}

/// Picks the RSA certificate for SNI `rsa.test`, the ECDSA one otherwise
/// (also when there is no SNI, as for an IP address).
#[derive(Debug)]
struct BySni {
    ecdsa: Arc<CertifiedKey>,
    rsa: Arc<CertifiedKey>,
}

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        match hello.server_name() {
            Some("rsa.test") => Some(self.rsa.clone()),
            _ => Some(self.ecdsa.clone()),
        }
    }
}

fn tls_config() -> Arc<rustls::ServerConfig> {
    let dir = certificates();
    let resolver = BySni {
        ecdsa: certified_key(dir, "server"),
        rsa: certified_key(dir, "rsa"),
    };
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(rustls::ALL_VERSIONS)
    .unwrap()
    .with_no_client_auth()
    .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Serves one connection: keep-alive GETs of the one file, with or without
/// Range, until the client closes or asks for `Connection: close`.
fn serve(
    stream: impl Read + Write,
    behavior: Behavior,
    data: &[u8],
    counter: &AtomicU64,
    stall_until: &Mutex<Option<Instant>>,
) -> std::io::Result<()> {
    // Reads go through the buffer; writes straight to the stream (the client
    // never pipelines, so nothing is left in the buffer between requests).
    let mut reader = BufReader::new(stream);
    loop {
        let mut close = false;
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
            close |= field.eq_ignore_ascii_case("connection: close\r\n");
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
            reader
                .get_mut()
                .write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy")?;
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
            reader.get_mut().write_all(head.as_bytes())?;
            for piece in body.chunks(10_000) {
                reader
                    .get_mut()
                    .write_all(format!("{:x}\r\n", piece.len()).as_bytes())?;
                reader.get_mut().write_all(piece)?;
                reader.get_mut().write_all(b"\r\n")?;
            }
            reader.get_mut().write_all(b"0\r\n\r\n")?;
            continue;
        }
        if close {
            head += "Connection: close\r\n";
        }
        head += &format!("Content-Length: {}\r\n\r\n", body.len());
        reader.get_mut().write_all(head.as_bytes())?;
        if behavior == Behavior::CutOff && nth(5) {
            reader.get_mut().write_all(&body[..body.len() / 2])?;
            return Ok(());
        }
        reader.get_mut().write_all(&body)?;
        if close {
            return reader.get_mut().flush();
        }
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
    let output = run_loadgen(server, args);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "loadgen failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("bad JSON ({e}): {stdout}"))
}

/// Runs loadgen with `--json` against the server's file; https runs trust
/// the test CA.
fn run_loadgen(server: &TestServer, args: &[&str]) -> std::process::Output {
    let url = format!("{}://{}/media.mp4", server.scheme, server.addr);
    let mut command = Command::new(env!("CARGO_BIN_EXE_loadgen"));
    command.arg(&url).args(["--json", "--seed", "42"]);
    if server.scheme == "https" && !args.contains(&"--cacert") {
        command.arg("--cacert").arg(certificates().join("ca.pem"));
    }
    command.args(args).output().expect("loadgen runs")
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

fn tls_field<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    &report["tls"][name]
}

#[test]
fn https_ranges_and_whole_bodies_verify_cleanly() {
    let server = start_tls(Behavior::Correct);
    let verify = verify_file();
    let verify = verify.to_str().unwrap();
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
            verify,
        ],
    );
    assert_eq!(errors(&report, "total"), 0, "{report}");
    let requests = report["requests"].as_u64().unwrap();
    assert!(requests > 50, "{report}");
    assert_eq!(report["body_bytes"].as_u64(), Some(requests * 4096));
    // Keep-alive: one handshake per connection, all full (no --resume).
    assert_eq!(tls_field(&report, "handshakes"), 4, "{report}");
    assert_eq!(tls_field(&report, "resumed"), 0, "{report}");
    let negotiated = tls_field(&report, "negotiated").as_str().unwrap();
    assert!(negotiated.starts_with("TLSv1.3 TLS13_"), "{report}");

    // Whole 1 MiB bodies: many records per response, and chunked framing.
    for behavior in [Behavior::Correct, Behavior::Chunked] {
        let server = start_tls(behavior);
        let report = loadgen(&server, &["-c", "2", "-d", "500ms", "--verify", verify]);
        assert_eq!(errors(&report, "total"), 0, "{report}");
        assert!(report["requests"].as_u64().unwrap() > 5, "{report}");
    }
}

#[test]
fn https_counts_wrong_bytes_and_cut_off_bodies() {
    let server = start_tls(Behavior::WrongBytes);
    let verify = verify_file();
    let report = loadgen(
        &server,
        &[
            "--range-size",
            "64KiB",
            "-c",
            "2",
            "-d",
            "500ms",
            "--verify",
            verify.to_str().unwrap(),
        ],
    );
    let mismatches = errors(&report, "body_mismatch");
    assert!(mismatches > 0, "{report}");
    assert_eq!(errors(&report, "total"), mismatches, "{report}");

    let server = start_tls(Behavior::CutOff);
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
}

#[test]
fn a_wrong_ca_fails_at_startup_with_the_reason() {
    let server = start_tls(Behavior::Correct);
    let other = make_ca(&format!("loadgen-other-ca-{}", std::process::id()));
    let output = run_loadgen(
        &server,
        &[
            "--cacert",
            other.join("ca.pem").to_str().unwrap(),
            "-d",
            "1s",
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("probe"), "{stderr}");
    assert!(stderr.contains("invalid peer certificate"), "{stderr}");
    // Both CAs are named alike, so rustls says BadSignature, not UnknownIssuer.
    assert!(
        stderr.contains("--cacert"),
        "the hint names the flag: {stderr}"
    );
    assert_eq!(server.responses.load(Ordering::SeqCst), 0);
}

#[test]
fn new_conn_makes_full_handshakes_and_resume_resumes_them() {
    let server = start_tls(Behavior::Correct);
    let short = [
        "--range-size",
        "1KiB",
        "-c",
        "2",
        "-d",
        "500ms",
        "--new-conn",
    ];
    let full = loadgen(&server, &short);
    assert_eq!(errors(&full, "total"), 0, "{full}");
    let requests = full["requests"].as_u64().unwrap();
    assert!(requests > 20, "{full}");
    // One connection per request, none resumed.
    assert_eq!(
        tls_field(&full, "handshakes").as_u64(),
        Some(requests),
        "{full}"
    );
    assert_eq!(tls_field(&full, "resumed"), 0, "{full}");

    for version in ["1.3", "1.2"] {
        let mut args = short.to_vec();
        args.extend(["--resume", "--tls-version", version]);
        let resumed = loadgen(&server, &args);
        assert_eq!(errors(&resumed, "total"), 0, "{resumed}");
        let handshakes = tls_field(&resumed, "handshakes").as_u64().unwrap();
        let resumed_count = tls_field(&resumed, "resumed").as_u64().unwrap();
        assert_eq!(handshakes, resumed["requests"].as_u64().unwrap());
        // Only each connection's first handshake (empty cache) is full.
        assert!(resumed_count + 2 >= handshakes, "{resumed}");
        assert!(resumed_count > 10, "{resumed}");
        let negotiated = tls_field(&resumed, "negotiated").as_str().unwrap();
        assert!(
            negotiated.starts_with(&format!("TLSv{version} ")),
            "{resumed}"
        );
    }
}

#[test]
fn sni_and_cipher_pin_what_is_negotiated() {
    let server = start_tls(Behavior::Correct);
    // rsa.test selects the RSA certificate: a TLS 1.2 suite shows it.
    let report = loadgen(
        &server,
        &[
            "--sni",
            "rsa.test",
            "--tls-version",
            "1.2",
            "--cipher",
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            "-c",
            "1",
            "-d",
            "300ms",
        ],
    );
    assert_eq!(errors(&report, "total"), 0, "{report}");
    assert_eq!(
        tls_field(&report, "negotiated"),
        "TLSv1.2 TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 X25519",
        "{report}"
    );
    let report = loadgen(
        &server,
        &[
            "--cipher",
            "TLS13_CHACHA20_POLY1305_SHA256",
            "-c",
            "1",
            "-d",
            "300ms",
        ],
    );
    let negotiated = tls_field(&report, "negotiated").as_str().unwrap();
    assert!(
        negotiated.contains("TLS13_CHACHA20_POLY1305_SHA256"),
        "{report}"
    );
}

#[test]
fn players_idle_connections_and_open_loop_over_https() {
    let server = start_tls(Behavior::Correct);
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
    assert_eq!(tls_field(&report, "handshakes"), 8, "{report}");

    let report = loadgen(
        &server,
        &[
            "--rate",
            "200",
            "-c",
            "4",
            "-d",
            "1s",
            "--range-size",
            "4KiB",
        ],
    );
    assert_eq!(errors(&report, "total"), 0, "{report}");
    let requests = report["requests"].as_u64().unwrap();
    assert!((180..=220).contains(&requests), "{report}");
    assert_eq!(report["missed"], 0, "{report}");
}
