//! Shared harness for the loopback tests: start the real `ringcast` binary on
//! a free port, talk raw HTTP/1.1 to it, and parse what comes back.
#![allow(dead_code)]

pub mod bounded;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Socket timeouts: a hung server fails a test instead of hanging it.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A running server, killed on drop.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    /// The `--tls-listen` address, when the server was started with one.
    pub tls_addr: Option<SocketAddr>,
    /// The `--admin` address, when the server was started with one.
    pub admin: Option<SocketAddr>,
    /// Lines the server wrote to stderr after its startup line.
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts ringcast on `root` with extra flags, on port 0, CPU 0 unless
    /// `--cpus` is given, in the I/O mode `RINGCAST_TEST_IO` names (`direct`
    /// or `buffered`, the default) unless `--io` is given.
    pub fn start(root: &Path, extra: &[&str]) -> Server {
        Self::start_with(root, extra, |_| {})
    }

    /// Like [`Server::start`], with a hook to adjust the command (rlimits, ...).
    pub fn start_with(root: &Path, extra: &[&str], adjust: impl FnOnce(&mut Command)) -> Server {
        let mut args = vec!["--root", root.to_str().unwrap(), "--listen", "127.0.0.1:0"];
        if !extra.contains(&"--cpus") {
            args.extend(["--cpus", "0"]);
        }
        let io_mode = std::env::var("RINGCAST_TEST_IO").unwrap_or_default();
        if !io_mode.is_empty() && !extra.contains(&"--io") {
            args.extend(["--io", io_mode.as_str()]);
        }
        args.extend(extra);
        let mut command = Command::new(env!("CARGO_BIN_EXE_ringcast"));
        command
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        adjust(&mut command);
        let mut child = command.spawn().expect("ringcast starts");
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
        let address_after = |scheme: &str| -> Option<SocketAddr> {
            line.split(scheme)
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|a| a.parse().ok())
        };
        let tls_addr = address_after(" https://");
        let addr = address_after(" http://")
            .or(tls_addr)
            .unwrap_or_else(|| panic!("no address in startup line {line:?}"));
        // Keep draining stderr so the server never blocks on a full pipe.
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let admin = line
            .split("admin on http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|a| a.parse().ok());
        Server {
            child,
            addr,
            tls_addr,
            admin,
            log,
        }
    }

    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).unwrap();
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream
    }

    /// Sends one raw request on a new connection and reads one response.
    pub fn exchange(&self, raw: &[u8]) -> Response {
        let mut stream = self.connect();
        stream.write_all(raw).unwrap();
        read_response(&mut stream, raw.starts_with(b"HEAD "))
    }

    /// `GET path` with extra header lines (each ending in CRLF).
    pub fn get(&self, path: &str, headers: &str) -> Response {
        self.exchange(format!("GET {path} HTTP/1.1\r\nHost: t\r\n{headers}\r\n").as_bytes())
    }

    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the server process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// CPU time (user + system) the server has used, in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }

    /// Sends a signal and waits for the process to exit, returning its exit code.
    pub fn signal_and_wait(&mut self, signal: i32, again: Option<i32>) -> Option<i32> {
        unsafe { libc::kill(self.pid() as i32, signal) };
        if let Some(second) = again {
            std::thread::sleep(Duration::from_millis(200));
            unsafe { libc::kill(self.pid() as i32, second) };
        }
        self.child.wait().unwrap().code()
    }

    /// Waits for the process to exit on its own, up to `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let start = std::time::Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// `GET path` on the admin listener; returns the body.
    pub fn admin_get(&self, path: &str) -> String {
        let mut stream = TcpStream::connect(self.admin.expect("started with --admin")).unwrap();
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: admin\r\n\r\n").as_bytes())
            .unwrap();
        let response = read_response(&mut stream, false);
        assert_eq!(response.status, 200, "{path}");
        String::from_utf8(response.body).unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header fields in order, names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn header_count(&self, name: &str) -> usize {
        self.headers.iter().filter(|(n, _)| n == name).count()
    }
}

/// Reads one response: head, then a body framed by Content-Length (none for
/// HEAD, 304, or when `head_only`), or up to EOF if there is no length.
pub fn read_response(stream: &mut impl Read, head_only: bool) -> Response {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            other => panic!(
                "response head cut short after {:?}: {other:?}",
                String::from_utf8_lossy(&head)
            ),
        }
    }
    let text = String::from_utf8(head).unwrap();
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap();
    assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
    let status = status_line[9..12].parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    let mut response = Response {
        status,
        headers,
        body: Vec::new(),
    };
    // RFC 9112 §6.3: HEAD, 204 and 304 responses never have content.
    if head_only || status == 204 || status == 304 {
        return response;
    }
    match response.header("content-length") {
        Some(len) => {
            let mut body = vec![0; len.parse().unwrap()];
            stream.read_exact(&mut body).unwrap();
            response.body = body;
        }
        None => {
            stream.read_to_end(&mut response.body).unwrap();
        }
    }
    response
}

/// True if the peer has closed: a read returns EOF (or a reset) promptly.
pub fn is_closed(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = [0u8; 1];
    matches!(stream.read(&mut buf), Ok(0) | Err(_))
}

/// Deterministic pseudo-random bytes, so expected bodies are easy to compute.
pub fn pattern(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// Splits a multipart/byteranges body into (Content-Range, bytes) parts.
pub fn multipart_parts(response: &Response) -> Vec<(String, Vec<u8>)> {
    let content_type = response.header("content-type").unwrap();
    let boundary = content_type.split("boundary=").nth(1).unwrap().to_string();
    let delimiter = format!("--{boundary}");
    let body = &response.body;
    let mut parts = Vec::new();
    let mut at = find(body, delimiter.as_bytes(), 0).expect("first delimiter");
    loop {
        at += delimiter.len();
        if body[at..].starts_with(b"--") {
            break;
        }
        let head_end = find(body, b"\r\n\r\n", at).unwrap() + 4;
        let head = String::from_utf8_lossy(&body[at..head_end]).to_string();
        let range = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Range: "))
            .unwrap()
            .to_string();
        let next = find(body, format!("\r\n{delimiter}").as_bytes(), head_end).unwrap();
        parts.push((range, body[head_end..next].to_vec()));
        at = next + 2;
    }
    parts
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// A fresh test CA from `tools/test-ca.sh`: `ca.pem` for clients to trust,
/// `server.pem`/`server.key` (ECDSA, localhost, 127.0.0.1, ::1) and
/// `rsa.pem`/`rsa.key` (RSA, rsa.test).
pub fn test_ca() -> tempfile::TempDir {
    let certs = tempfile::tempdir().unwrap();
    let status = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tools/test-ca.sh"))
        .arg(certs.path())
        .status()
        .expect("tools/test-ca.sh runs (needs openssl)");
    assert!(status.success(), "tools/test-ca.sh failed");
    certs
}

/// `--tls-listen 127.0.0.1:0` and a `--tls-cert`/`--tls-key` pair per
/// `(certificate, key)`, for [`Server::start`].
pub fn tls_flags(pairs: &[(&Path, &Path)]) -> Vec<String> {
    let mut flags = vec!["--tls-listen".to_string(), "127.0.0.1:0".to_string()];
    for (cert, key) in pairs {
        flags.push("--tls-cert".into());
        flags.push(cert.to_str().unwrap().into());
        flags.push("--tls-key".into());
        flags.push(key.to_str().unwrap().into());
    }
    flags
}

/// Whether an external tool is installed. When `RINGCAST_REQUIRE_TOOLS` is
/// set (as `.ci/run` does) a missing tool fails the test instead of skipping it.
pub fn have_tool(name: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("RINGCAST_REQUIRE_TOOLS").is_none(),
            "{name} is required (run tools/install-test-deps.sh)"
        );
        eprintln!("skipping: {name} is not installed (tools/install-test-deps.sh installs it)");
    }
    found
}
