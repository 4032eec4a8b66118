//! HTTPS over loopback with a real TLS client (rustls), trusting a test CA
//! that `tools/test-ca.sh` makes: what plain HTTP does works the same over
//! TLS, certificates are chosen by SNI and reloaded on SIGHUP, sessions
//! resume on any core, and bad input (garbage, plain HTTP, cut or old
//! ClientHellos, silence) ends in a closed connection that touches no other.

mod common;

use common::{pattern, read_response, Response, Server, IO_TIMEOUT};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

const BIG: usize = 3 * 1024 * 1024;

/// A served directory and a CA with its certificates.
struct Fixture {
    root: tempfile::TempDir,
    certs: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("big.bin"), pattern(BIG)).unwrap();
        std::fs::write(root.path().join("small.txt"), b"hello over tls\n").unwrap();
        let certs = common::test_ca();
        Fixture { root, certs }
    }

    fn cert(&self, name: &str) -> PathBuf {
        self.certs.path().join(name)
    }

    /// ringcast with the default (ECDSA) pair and the RSA one for `rsa.test`.
    fn start(&self, extra: &[&str]) -> Server {
        let (server_pem, server_key) = (self.cert("server.pem"), self.cert("server.key"));
        let (rsa_pem, rsa_key) = (self.cert("rsa.pem"), self.cert("rsa.key"));
        let mut flags = common::tls_flags(&[(&server_pem, &server_key), (&rsa_pem, &rsa_key)]);
        flags.extend(["--admin".to_string(), "127.0.0.1:0".to_string()]);
        let mut args: Vec<&str> = flags.iter().map(String::as_str).collect();
        args.extend_from_slice(extra);
        let server = Server::start(self.root.path(), &args);
        assert!(server.tls_addr.is_some(), "no https:// in the startup line");
        server
    }

    fn client_config(&self) -> Arc<ClientConfig> {
        client_config_with(
            &self.cert("ca.pem"),
            &[&rustls::version::TLS13, &rustls::version::TLS12],
        )
    }
}

fn client_config_with(
    ca: &Path,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// A TLS connection to `addr` for `name`, handshake done.
fn connect(addr: SocketAddr, config: &Arc<ClientConfig>, name: &str) -> Tls {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    tcp.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let name = ServerName::try_from(name.to_string()).unwrap();
    let conn = ClientConnection::new(config.clone(), name).unwrap();
    let mut tls = StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).expect("handshake");
    }
    tls
}

fn get(tls: &mut Tls, path: &str, headers: &str) -> Response {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n");
    tls.write_all(request.as_bytes()).unwrap();
    read_response(tls, false)
}

fn metric(server: &Server, line_start: &str) -> f64 {
    let text = server.admin_get("/metrics");
    text.lines()
        .find(|l| l.starts_with(line_start) && !l.contains("core="))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {line_start} in /metrics"))
}

/// Reads until the server closes; returns what came (alerts, a 400).
fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("the server did not close: {e}"),
        }
    }
}

#[test]
fn ranges_validators_keep_alive_and_pipelining_work_over_tls() {
    let fixture = Fixture::new();
    let server = fixture.start(&[]);
    let config = fixture.client_config();
    let mut tls = connect(server.tls_addr.unwrap(), &config, "localhost");
    assert_eq!(tls.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    let expected = pattern(BIG);

    let whole = get(&mut tls, "/big.bin", "");
    assert_eq!(whole.status, 200);
    assert!(whole.body == expected, "whole file differs");
    let etag = whole.header("etag").unwrap().to_string();

    // A sendfile-sized range and a short one (mapped when plain), on the same connection.
    let long = get(&mut tls, "/big.bin", "Range: bytes=1000000-2048575\r\n");
    assert_eq!(long.status, 206);
    assert!(long.body == expected[1_000_000..2_048_576]);
    for _ in 0..3 {
        let short = get(&mut tls, "/big.bin", "Range: bytes=5-1028\r\n");
        assert_eq!(short.status, 206);
        assert_eq!(short.body, &expected[5..1029]);
    }
    let suffix = get(&mut tls, "/big.bin", "Range: bytes=-100\r\n");
    assert_eq!(suffix.body, &expected[BIG - 100..]);
    let not_modified = get(&mut tls, "/big.bin", &format!("If-None-Match: {etag}\r\n"));
    assert_eq!(not_modified.status, 304);
    let if_range = get(
        &mut tls,
        "/big.bin",
        &format!("Range: bytes=0-9\r\nIf-Range: {etag}\r\n"),
    );
    assert_eq!(if_range.status, 206);
    let unsatisfiable = get(&mut tls, "/big.bin", &format!("Range: bytes={BIG}-\r\n"));
    assert_eq!(unsatisfiable.status, 416);
    assert_eq!(get(&mut tls, "/missing", "").status, 404);

    // Two requests in one write: answered in order.
    tls.write_all(
        b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\nGET /big.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=0-3\r\n\r\n",
    )
    .unwrap();
    assert_eq!(read_response(&mut tls, false).body, b"hello over tls\n");
    assert_eq!(read_response(&mut tls, false).body, &expected[..4]);

    assert_eq!(
        metric(
            &server,
            "ringcast_open_connections_by_transport{transport=\"tls\"}"
        ),
        1.0
    );
    assert!(metric(&server, "ringcast_tls_encrypted_bytes_total") >= (BIG + 1_048_576) as f64);
    assert_eq!(metric(&server, "ringcast_tls_handshakes_total"), 1.0);
}

#[test]
fn an_http10_client_offering_only_http10_in_alpn_is_served() {
    let fixture = Fixture::new();
    let server = fixture.start(&[]);
    let mut config = (*fixture.client_config()).clone();
    config.alpn_protocols = vec![b"http/1.0".to_vec()];
    let mut tls = connect(server.tls_addr.unwrap(), &Arc::new(config), "localhost");
    assert_eq!(tls.conn.alpn_protocol(), Some(&b"http/1.0"[..]));
    tls.write_all(b"GET /small.txt HTTP/1.0\r\n\r\n").unwrap();
    let response = read_response(&mut tls, false);
    assert_eq!(response.body, b"hello over tls\n");
}

#[test]
fn tls_12_and_13_are_both_spoken_with_aead_suites() {
    let fixture = Fixture::new();
    let server = fixture.start(&[]);
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let config = client_config_with(&fixture.cert("ca.pem"), &[version]);
        let mut tls = connect(server.tls_addr.unwrap(), &config, "localhost");
        assert_eq!(tls.conn.protocol_version(), Some(version.version));
        let suite = tls.conn.negotiated_cipher_suite().unwrap();
        let name = format!("{:?}", suite.suite());
        assert!(
            name.contains("GCM") || name.contains("CHACHA20_POLY1305"),
            "{name}"
        );
        assert_eq!(get(&mut tls, "/small.txt", "").status, 200);
    }
}

#[test]
fn sni_picks_the_certificate_and_unknown_names_get_the_default() {
    let fixture = Fixture::new();
    let server = fixture.start(&[]);
    let config = fixture.client_config();
    let addr = server.tls_addr.unwrap();
    let subject = |tls: &Tls| {
        let der = tls.conn.peer_certificates().unwrap()[0].to_vec();
        String::from_utf8_lossy(&der).to_string()
    };
    let rsa = connect(addr, &config, "rsa.test");
    assert!(subject(&rsa).contains("rsa.test"));
    let default = connect(addr, &config, "localhost");
    assert!(subject(&default).contains("localhost"));
    // An IP address carries no SNI: the default pair, valid for 127.0.0.1.
    let by_ip = connect(addr, &config, "127.0.0.1");
    assert!(subject(&by_ip).contains("localhost"));
}

#[test]
fn sessions_resume_whichever_core_the_client_lands_on() {
    let fixture = Fixture::new();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpus = if cores >= 2 { "0-1" } else { "0" };
    let server = fixture.start(&["--cpus", cpus]);
    let config = fixture.client_config();
    let addr = server.tls_addr.unwrap();
    // The first connection gets a ticket (TLS 1.3 sends it after the handshake).
    let mut first = connect(addr, &config, "localhost");
    assert_eq!(get(&mut first, "/small.txt", "").status, 200);
    drop(first);
    let mut resumed = 0;
    for _ in 0..40 {
        let mut tls = connect(addr, &config, "localhost");
        assert_eq!(get(&mut tls, "/small.txt", "").status, 200);
        if tls.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
            resumed += 1;
        }
    }
    assert_eq!(resumed, 40, "every later connection resumes");
    if cores >= 2 {
        // SO_REUSEPORT spread the 40 over both cores; each resumed some.
        let text = server.admin_get("/metrics");
        let per_core: Vec<f64> = text
            .lines()
            .filter(|l| l.starts_with("ringcast_tls_resumed_handshakes_total{core="))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(per_core.len(), 2, "{per_core:?}");
        assert!(per_core.iter().all(|&n| n > 0.0), "{per_core:?}");
    }
}

#[test]
fn garbage_plain_http_cut_and_old_hellos_are_closed_and_counted() {
    let fixture = Fixture::new();
    let server = fixture.start(&["--header-timeout", "1s"]);
    let addr = server.tls_addr.unwrap();
    let config = fixture.client_config();
    // A healthy connection, mid-stream, for the whole test (its first
    // request within the header timeout, which also bounds the handshake).
    let mut bystander = connect(addr, &config, "localhost");
    let expected = pattern(BIG);
    assert_eq!(get(&mut bystander, "/small.txt", "").status, 200);

    let raw = || {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream
    };
    // Garbage: a fatal alert (record type 21), then close.
    let mut garbage = raw();
    garbage.write_all(&pattern(3000)).unwrap();
    let reply = read_until_closed(&mut garbage);
    assert_eq!(reply.first(), Some(&21), "an alert: {reply:?}");

    // Plain HTTP to the TLS port: told so in plain text, then closed.
    let mut plain = raw();
    plain
        .write_all(b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let reply = String::from_utf8(read_until_closed(&mut plain)).unwrap();
    assert!(reply.starts_with("HTTP/1.1 400 "), "{reply}");
    assert!(reply.contains("https://"), "{reply}");

    // A TLS 1.1 ClientHello (no supported_versions): protocol_version alert.
    let mut old = raw();
    old.write_all(&old_client_hello(0x0302)).unwrap();
    let reply = read_until_closed(&mut old);
    assert_eq!(reply.first(), Some(&21), "an alert: {reply:?}");

    // A ClientHello cut off halfway, and a silent client: closed at the header timeout.
    let mut cut = raw();
    cut.write_all(&old_client_hello(0x0303)[..20]).unwrap();
    let mut silent = raw();
    assert!(read_until_closed(&mut cut).is_empty());
    assert!(read_until_closed(&mut silent).is_empty());

    // The bystander never noticed.
    let whole = get(&mut bystander, "/big.bin", "");
    assert!(whole.body == expected);

    let failed = |reason: &str| {
        metric(
            &server,
            &format!("ringcast_tls_handshake_failures_total{{reason=\"{reason}\"}}"),
        )
    };
    assert_eq!(failed("malformed"), 1.0);
    assert_eq!(failed("plain_http"), 1.0);
    assert_eq!(failed("version"), 1.0);
    assert_eq!(failed("timeout"), 2.0);
    assert!(!server.log_lines().iter().any(|l| l.contains("panicked")));
}

/// A ClientHello of `version` with one suite and no extensions, as an old
/// client sends it (RFC 5246 §7.4.1.2).
fn old_client_hello(version: u16) -> Vec<u8> {
    let mut body = version.to_be_bytes().to_vec();
    body.extend_from_slice(&[7; 32]); // random
    body.push(0); // no session id
    body.extend_from_slice(&[0, 2, 0x00, 0x2f]); // TLS_RSA_WITH_AES_128_CBC_SHA
    body.extend_from_slice(&[1, 0]); // null compression
    let mut handshake = vec![1, 0, (body.len() >> 8) as u8, body.len() as u8];
    handshake.extend_from_slice(&body);
    let mut record = vec![
        22,
        3,
        1,
        (handshake.len() >> 8) as u8,
        handshake.len() as u8,
    ];
    record.extend_from_slice(&handshake);
    record
}

#[test]
fn a_handshake_flood_does_not_stop_a_flowing_download() {
    let fixture = Fixture::new();
    let server = fixture.start(&[]);
    let addr = server.tls_addr.unwrap();
    let config = fixture.client_config();
    let flood: Vec<_> = (0..4)
        .map(|_| {
            let config = config.clone();
            std::thread::spawn(move || {
                for _ in 0..50 {
                    let mut tls = connect(addr, &config, "localhost");
                    let _ = tls.write_all(
                        b"GET /small.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                    );
                }
            })
        })
        .collect();
    let mut download = connect(addr, &config, "localhost");
    let expected = pattern(BIG);
    for _ in 0..5 {
        assert!(get(&mut download, "/big.bin", "").body == expected);
    }
    for thread in flood {
        thread.join().unwrap();
    }
}

#[test]
fn sighup_swaps_certificates_for_new_handshakes_and_keeps_old_ones_on_bad_files() {
    let fixture = Fixture::new();
    // The served pair lives in files we replace.
    let dir = tempfile::tempdir().unwrap();
    let (pem, key) = (dir.path().join("live.pem"), dir.path().join("live.key"));
    std::fs::copy(fixture.cert("server.pem"), &pem).unwrap();
    std::fs::copy(fixture.cert("server.key"), &key).unwrap();
    let flags = common::tls_flags(&[(&pem, &key)]);
    let args: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut server = Server::start(fixture.root.path(), &args);
    let addr = server.tls_addr.unwrap();
    let config = fixture.client_config();
    let mut kept = connect(addr, &config, "localhost");
    assert_eq!(get(&mut kept, "/small.txt", "").status, 200);

    // A broken key: the old pair stays, one line says why.
    std::fs::write(&key, b"not a key").unwrap();
    unsafe { libc::kill(server.pid() as i32, libc::SIGHUP) };
    wait_for_log(&server, "keeping the old certificates");
    assert_eq!(
        get(&mut connect(addr, &config, "localhost"), "/small.txt", "").status,
        200
    );

    // The RSA pair (for rsa.test): new handshakes get it, the old connection goes on.
    std::fs::copy(fixture.cert("rsa.pem"), &pem).unwrap();
    std::fs::copy(fixture.cert("rsa.key"), &key).unwrap();
    unsafe { libc::kill(server.pid() as i32, libc::SIGHUP) };
    wait_for_log(&server, "reloaded 1 certificate");
    std::thread::sleep(Duration::from_millis(1500)); // each core looks once a second
    let mut fresh = connect(addr, &config, "rsa.test");
    assert_eq!(get(&mut fresh, "/small.txt", "").status, 200);
    assert_eq!(get(&mut kept, "/small.txt", "").status, 200);
    assert_eq!(server.signal_and_wait(libc::SIGTERM, None), Some(0));
}

fn wait_for_log(server: &Server, text: &str) {
    for _ in 0..100 {
        if server.log_lines().iter().any(|l| l.contains(text)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no log line with {text:?}: {:?}", server.log_lines());
}

#[test]
fn ktls_auto_falls_back_where_the_kernel_has_none_and_require_refuses_to_start() {
    let kernel_has_tls = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_available_ulp")
        .is_ok_and(|ulps| ulps.split_whitespace().any(|u| u == "tls"));
    let fixture = Fixture::new();
    let server = fixture.start(&["--ktls", "auto", "--listen", "off"]);
    let config = fixture.client_config();
    let mut tls = connect(server.tls_addr.unwrap(), &config, "localhost");
    assert!(get(&mut tls, "/big.bin", "").body == pattern(BIG));
    if kernel_has_tls {
        assert_eq!(metric(&server, "ringcast_ktls_connections_total"), 1.0);
        return;
    }
    assert_eq!(metric(&server, "ringcast_ktls_fallbacks_total"), 1.0);
    assert_eq!(metric(&server, "ringcast_ktls_connections_total"), 0.0);
    assert_eq!(
        metric(
            &server,
            "ringcast_open_connections_by_transport{transport=\"tls\"}"
        ),
        1.0
    );

    let output = Command::new(env!("CARGO_BIN_EXE_ringcast"))
        .args([
            "--root",
            fixture.root.path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--tls-listen", "127.0.0.1:0", "--ktls", "require"])
        .arg("--tls-cert")
        .arg(fixture.cert("server.pem"))
        .arg("--tls-key")
        .arg(fixture.cert("server.key"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--ktls require"), "{stderr}");
}

#[test]
fn startup_refuses_missing_or_mismatched_certificates_naming_the_file() {
    let fixture = Fixture::new();
    let start = |cert: &Path, key: &Path| {
        Command::new(env!("CARGO_BIN_EXE_ringcast"))
            .args(["--root", fixture.root.path().to_str().unwrap()])
            .args(["--listen", "127.0.0.1:0", "--tls-listen", "127.0.0.1:0"])
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .output()
            .unwrap()
    };
    let missing = fixture.cert("nope.pem");
    let output = start(&missing, &fixture.cert("server.key"));
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("nope.pem"));
    let output = start(&fixture.cert("server.pem"), &fixture.cert("rsa.key"));
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("rsa.key") && stderr.contains("is not the key of"),
        "{stderr}"
    );
}

#[test]
fn drain_and_the_access_log_work_the_same_over_tls() {
    let fixture = Fixture::new();
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("access.log");
    let mut server = fixture.start(&[
        "--access-log",
        log.to_str().unwrap(),
        "--limit-rate",
        "1000000",
    ]);
    let config = fixture.client_config();
    let addr = server.tls_addr.unwrap();
    let mut idle = connect(addr, &config, "localhost");
    assert_eq!(get(&mut idle, "/small.txt", "").status, 200);
    // A paced download, in flight when the drain begins, finishes whole.
    let mut busy = connect(addr, &config, "localhost");
    busy.write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    unsafe { libc::kill(server.pid() as i32, libc::SIGTERM) };
    let whole = read_response(&mut busy, false);
    assert!(
        whole.body == pattern(BIG),
        "the in-flight response completes"
    );
    // The idle keep-alive connection is closed by the drain.
    let mut byte = [0; 1];
    assert!(matches!(idle.read(&mut byte), Ok(0) | Err(_)));
    assert_eq!(server.wait_exit(Duration::from_secs(10)), Some(0));
    let lines = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = lines.lines().collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with("127.0.0.1 ")
            && lines[0].contains("\"GET /small.txt HTTP/1.1\" 200 15 ")
    );
    assert!(lines[1].contains(&format!("\"GET /big.bin HTTP/1.1\" 200 {BIG} ")));
}
