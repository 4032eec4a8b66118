//! A real browser against the built-in player page: headless Chromium (Debian's
//! `chromium`, driven by `tools/browser/play-seek.mjs` through playwright-core)
//! loads ringcast's `--index` page, plays an H.264/AAC MP4 and a VP9/Opus
//! WebM clip from it, seeks each to the middle, and reports the playback state
//! and every media request it sent.
//!
//! The driver puts the phase it is in (`load`, then `seek-0`, `seek-1`, one
//! per clip) into Chromium's User-Agent, and ringcast's access log records
//! the User-Agent, so the log tells which responses served each seek. The
//! test asserts, per clip: playback advances from the middle after the seek
//! without a media error; the seek made Chromium send a Range request from
//! the middle of the file that ringcast answered 206; and the access log has
//! the matching 206 lines, tagged with that seek's phase.
//!
//! The clips are 60 s of noisy video at 2-3 Mbit/s (about 20 MB each). When
//! the seek happens Chromium has buffered the first 15-17 s, so the middle
//! (30 s) is never in its buffer and must be fetched with a new request.
//!
//! The same runs over HTTPS ([`Scheme::Https`]): ringcast serves a
//! certificate from a fresh test CA (`tools/test-ca.sh`), and Chromium
//! verifies it for real. Chromium on Linux trusts the CAs in the NSS
//! database `$HOME/.pki/nssdb`, so the driver runs with a private HOME whose
//! database `certutil` made, holding the test CA as a trusted CA (`-t C,,`).
//! The page's TLS details must name that CA as the issuer, and the same
//! driver with a HOME without the CA must fail on ERR_CERT_AUTHORITY_INVALID,
//! so nothing but that database makes the certificate trusted.
//!
//! Run `tools/install-test-deps.sh` first (it installs chromium, ffmpeg,
//! certutil and the driver's npm package); without them the tests are
//! skipped, or fail under `RINGCAST_REQUIRE_TOOLS`.

mod common;

use common::bounded::{self, spawn_captured};
use common::{have_tool, Server};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Each clip is a short encoded segment repeated (stream copy, no re-encoding)
/// to `SEGMENT_SECONDS * LOOPS` seconds, which keeps generation under a second.
const SEGMENT_SECONDS: u32 = 4;
const LOOPS: u32 = 15;
const CLIP_SECONDS: f64 = (SEGMENT_SECONDS * LOOPS) as f64;
/// The driver's own watchdog: it closes Chromium and exits after this long.
const DRIVER_TIMEOUT: Duration = Duration::from_secs(40);
/// Every external command (ffmpeg, ffprobe) is killed after this long.
const TOOL_TIMEOUT: Duration = Duration::from_secs(20);
/// The whole test, clip generation included.
const TEST_BUDGET: Duration = Duration::from_secs(60);
/// The NSS nickname of the test CA in the private HOME's database.
const CA_NICKNAME: &str = "ringcast-test";
/// The test CA's subject CN, as `tools/test-ca.sh` writes it.
const CA_NAME: &str = "ringcast test CA";

/// One browser test at a time: two Chromiums decoding 2-3 Mbit/s video on
/// two cores would make playback timing, which the checks rely on, flaky.
static ONE_BROWSER: Mutex<()> = Mutex::new(());

/// The clips, in the order the index page lists them (by name).
const CLIPS: [(&str, &[&str]); 2] = [
    (
        "h264.mp4",
        &[
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "50",
            "-b:v",
            "2M",
            "-c:a",
            "aac",
        ],
    ),
    (
        "vp9.webm",
        &[
            "-c:v",
            "libvpx-vp9",
            "-deadline",
            "realtime",
            "-cpu-used",
            "8",
            "-g",
            "50",
            "-b:v",
            "2M",
            "-c:a",
            "libopus",
        ],
    ),
];

/// How Chromium reaches the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scheme {
    Http,
    /// TLS on `--tls-listen`, the certificate trusted through the NSS database.
    Https,
}

#[test]
fn chromium_plays_and_seeks_both_clips_of_the_index_page() {
    plays_and_seeks_both_clips(Scheme::Http);
}

#[test]
fn chromium_plays_and_seeks_both_clips_of_the_index_page_over_https() {
    plays_and_seeks_both_clips(Scheme::Https);
}

fn plays_and_seeks_both_clips(scheme: Scheme) {
    if !have_tool("ffmpeg") || !have_tool("ffprobe") || !have_tool("node") || !have_tool("chromium")
    {
        return;
    }
    if scheme == Scheme::Https && (!have_tool("certutil") || !have_tool("openssl")) {
        return;
    }
    let driver_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/browser");
    if !driver_dir
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        assert!(
            std::env::var_os("RINGCAST_REQUIRE_TOOLS").is_none(),
            "playwright-core is not installed in tools/browser (run tools/install-test-deps.sh)"
        );
        eprintln!("skipping: tools/browser/node_modules is missing (tools/install-test-deps.sh installs it)");
        return;
    }

    let _one_at_a_time = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let clips = make_clips(dir.path(), &root);
    let log_path = dir.path().join("access.log");
    let trust = (scheme == Scheme::Https).then(|| Trust::new(dir.path()));
    let tls_flags = trust.as_ref().map(Trust::server_flags).unwrap_or_default();
    let mut flags = vec!["--index", "--access-log", log_path.to_str().unwrap()];
    flags.extend(["--drain-timeout", "2s"]);
    flags.extend(tls_flags.iter().map(String::as_str));
    let mut server = Server::start(&root, &flags);
    let url = match scheme {
        Scheme::Http => server.url("/"),
        Scheme::Https => format!("https://{}/", server.tls_addr.expect("https:// listener")),
    };

    if let Some(trust) = &trust {
        // Without the CA in its database, the same browser refuses the server.
        let bare_home = dir.path().join("home-without-ca");
        std::fs::create_dir(&bare_home).unwrap();
        let (status, _, stderr) = run_driver(&driver_dir, &url, Some(&bare_home));
        assert!(
            !status.success() && stderr.contains("net::ERR_CERT_AUTHORITY_INVALID"),
            "Chromium without the test CA did not refuse the server ({status}):\n{stderr}"
        );
        assert!(
            trust.home.join(".pki/nssdb/cert9.db").exists(),
            "no NSS database in the private HOME"
        );
    }
    let report = driver_report(&driver_dir, &url, trust.as_ref().map(|t| t.home.as_path()));

    // SIGTERM: the server drains, flushes the access log and exits.
    unsafe { libc::kill(server.pid() as i32, libc::SIGTERM) };
    assert_eq!(
        server.wait_exit(Duration::from_secs(10)),
        Some(0),
        "ringcast did not exit cleanly on SIGTERM; stderr: {:?}",
        server.log_lines()
    );
    let log = parse_access_log(&std::fs::read_to_string(&log_path).unwrap());

    // The page is the real index page, with its script-free policy.
    let page = &report["page"];
    assert_eq!(page["status"], 200, "index page: {page}");
    // Over HTTPS, the certificate Chromium verified is the test CA's.
    let security = &page["security"];
    match scheme {
        Scheme::Http => assert!(security.is_null(), "TLS details over plain HTTP: {page}"),
        Scheme::Https => {
            assert_eq!(security["issuer"], CA_NAME, "index page: {page}");
            // The subject's CN.
            let subject = security["subjectName"].as_str().unwrap_or("");
            assert!(subject.ends_with("localhost"), "index page: {page}");
            let protocol = security["protocol"].as_str().unwrap_or("");
            assert!(protocol.starts_with("TLS 1."), "index page: {page}");
        }
    }
    assert!(
        !log.iter().any(|l| l.path == "/favicon.ico"),
        "the index page's inline icon spares a /favicon.ico 404"
    );
    let policy = page["content_security_policy"].as_str().unwrap_or("");
    assert!(
        policy.contains("default-src 'none'") && policy.contains("media-src 'self'"),
        "index page policy: {policy:?}"
    );
    let videos = report["videos"].as_array().expect("videos in report");
    let sources: Vec<&str> = videos.iter().map(|v| v["src"].as_str().unwrap()).collect();
    let expected: Vec<String> = clips.iter().map(|c| format!("/{}", c.name)).collect();
    assert_eq!(sources, expected, "the page's <video> elements");

    let requests = report["requests"].as_array().expect("requests in report");
    let media_lines: Vec<&LogLine> = log.iter().filter(|l| expected.contains(&l.path)).collect();
    // Chromium sends Range on every media request, so a 200 means a Range was ignored.
    for line in &media_lines {
        assert!(
            line.status == 206 || line.status == 304,
            "media answered {} (Chromium always sends Range): {line:?}",
            line.status
        );
    }
    for request in requests {
        assert!(
            request["status"].is_null() || request["status"] == 206,
            "media request answered without 206: {request}"
        );
    }

    for (i, (video, clip)) in videos.iter().zip(&clips).enumerate() {
        check_clip(i, video, clip, requests, &log);
    }
    eprintln!(
        "browser test over {scheme:?}: driver {} ms, whole test {} ms",
        report["elapsed_ms"],
        started.elapsed().as_millis()
    );
    assert!(
        started.elapsed() < TEST_BUDGET,
        "took {:?}, over the {TEST_BUDGET:?} budget",
        started.elapsed()
    );
}

/// Checks one clip's playback, its seek requests, and the access log lines for them.
fn check_clip(i: usize, video: &Value, clip: &Clip, requests: &[Value], log: &[LogLine]) {
    let src = format!("/{}", clip.name);
    let ctx = format!("{src}: {video}");

    // It played from the start.
    let before = &video["before_seek"];
    assert!(before["play_error"].is_null(), "play() failed: {ctx}");
    assert!(
        before["error"].is_null(),
        "media error before the seek: {ctx}"
    );
    assert!(
        before["current_time"].as_f64().unwrap() > 0.0 && before["paused"] == false,
        "not playing before the seek: {ctx}"
    );
    let duration = video["duration"].as_f64().unwrap();
    assert!(
        (duration - CLIP_SECONDS).abs() < 1.0,
        "duration {duration}, expected about {CLIP_SECONDS}: {ctx}"
    );

    // It seeked to the middle and plays on from there.
    let middle = duration / 2.0;
    assert_eq!(video["seeked"], true, "no `seeked` event: {ctx}");
    assert!(
        video["error"].is_null(),
        "media error after the seek: {ctx}"
    );
    let at_seeked = video["at_seeked"]["t"].as_f64().unwrap();
    assert!(
        at_seeked >= middle - 0.25 && at_seeked <= middle + 2.0,
        "position {at_seeked} at `seeked`, expected just after {middle}: {ctx}"
    );
    let now = video["current_time"].as_f64().unwrap();
    assert!(
        now >= at_seeked + 0.5 && now <= middle + 3.0,
        "position {now} a second after `seeked` at {at_seeked}: not advancing from the middle: {ctx}"
    );
    assert_eq!(video["paused"], false, "paused after the seek: {ctx}");
    assert!(
        video["ready_state"].as_u64().unwrap() >= 3,
        "readyState below HAVE_FUTURE_DATA after the seek: {ctx}"
    );

    // The browser's view: the seek sent a Range request into the middle of the
    // file, covering the keyframe the decoder restarts from, answered 206.
    let phase = video["phase"].as_str().unwrap().to_string();
    assert_eq!(phase, format!("seek-{i}"));
    let seek_requests: Vec<&Value> = requests
        .iter()
        .filter(|r| r["path"] == src.as_str() && r["phase"] == phase.as_str())
        .collect();
    let summary = format!("{src} requests during {phase}: {seek_requests:?}");
    assert!(
        !seek_requests.is_empty(),
        "the seek sent no request: {summary}"
    );
    // Keyframes the decoder may restart from: the one before the middle, or
    // one a little earlier (WebM seeks start before the target for audio preroll).
    let near_middle: Vec<u64> = clip
        .keyframes
        .iter()
        .filter(|(pts, _)| *pts >= middle - 3.0 && *pts <= middle + 0.5)
        .map(|(_, pos)| *pos)
        .collect();
    assert!(
        !near_middle.is_empty(),
        "no keyframe near {middle}s in {src}"
    );
    let covers_middle = seek_requests.iter().any(|r| {
        let Some((start, end)) = r["range"].as_str().and_then(parse_range) else {
            return false;
        };
        let end = end.unwrap_or(clip.size - 1);
        r["status"] == 206
            && start >= clip.size / 4
            && near_middle.iter().any(|pos| (start..=end).contains(pos))
    });
    assert!(
        covers_middle,
        "no 206 for a Range from the middle (keyframes near {middle}s at bytes {near_middle:?} of {}): {summary}",
        clip.size
    );

    // The server's view: the access log has 206 lines for the file sent with
    // this seek's User-Agent, one of them with real media data.
    let tag = format!("ringcast-phase/{phase}");
    let lines: Vec<&LogLine> = log
        .iter()
        .filter(|l| l.path == src && l.user_agent.ends_with(&tag))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l.status == 206 && l.bytes >= 256 * 1024),
        "access log has no 206 with media data for {src} during {phase}: {lines:?}"
    );
    assert!(
        lines.iter().all(|l| l.status == 206 || l.status == 304),
        "access log has other statuses for {src} during {phase}: {lines:?}"
    );
}

// ---------------------------------------------------------------------------
// Fixtures

struct Clip {
    name: &'static str,
    size: u64,
    /// (pts in seconds, byte offset) of every video keyframe, per ffprobe.
    keyframes: Vec<(f64, u64)>,
}

/// Encodes a noisy `SEGMENT_SECONDS` segment per codec (both at once), then
/// repeats each into `root` with stream copy.
fn make_clips(scratch: &Path, root: &Path) -> Vec<Clip> {
    let segment_seconds = SEGMENT_SECONDS.to_string();
    let encoders: Vec<(PathBuf, Child)> = CLIPS
        .iter()
        .map(|(name, codec)| {
            let segment = scratch.join(format!("segment-{name}"));
            let mut command = Command::new("ffmpeg");
            command
                .stdin(Stdio::null())
                .args(["-nostdin", "-y", "-v", "error"])
                .args(["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"])
                .args(["-f", "lavfi", "-i", "sine"])
                .args(["-t", &segment_seconds])
                // Noise keeps the bitrate up, so Chromium cannot buffer to the middle.
                .args(["-vf", "noise=alls=60:allf=t"])
                .args(*codec)
                .arg(&segment);
            (segment, spawn_captured(&mut command))
        })
        .collect();
    let segments: Vec<PathBuf> = encoders
        .into_iter()
        .map(|(segment, child)| {
            finish_ok(child, "ffmpeg (segment)");
            segment
        })
        .collect();
    CLIPS
        .iter()
        .zip(segments)
        .map(|((name, _), segment)| {
            let out = root.join(name);
            let loops = (LOOPS - 1).to_string();
            let mut command = Command::new("ffmpeg");
            command
                .stdin(Stdio::null())
                .args([
                    "-nostdin",
                    "-y",
                    "-v",
                    "error",
                    "-stream_loop",
                    &loops,
                    "-i",
                ])
                .arg(&segment)
                .args(["-c", "copy"])
                .arg(&out);
            finish_ok(spawn_captured(&mut command), "ffmpeg (loop)");
            let size = std::fs::metadata(&out).unwrap().len();
            let keyframes = keyframes(&out);
            Clip {
                name,
                size,
                keyframes,
            }
        })
        .collect()
}

/// (pts in seconds, byte offset) of every video keyframe of `path`, per ffprobe.
fn keyframes(path: &Path) -> Vec<(f64, u64)> {
    let mut command = Command::new("ffprobe");
    command
        .stdin(Stdio::null())
        .args(["-v", "error", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "packet=pts_time,pos,flags",
            "-of",
            "csv=p=0",
        ])
        .arg(path);
    let out = finish_ok(spawn_captured(&mut command), "ffprobe");
    let text = String::from_utf8(out.stdout).unwrap();
    let keyframes: Vec<(f64, u64)> = text
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(',');
            let pts: f64 = fields.next()?.parse().ok()?;
            let pos: u64 = fields.next()?.parse().ok()?;
            let flags = fields.next()?;
            flags.starts_with('K').then_some((pts, pos))
        })
        .collect();
    assert!(
        keyframes.len() > 2,
        "keyframes of {}: {text}",
        path.display()
    );
    keyframes
}

/// `bytes=a-b` or `bytes=a-` as (a, b).
fn parse_range(value: &str) -> Option<(u64, Option<u64>)> {
    let (start, end) = value.strip_prefix("bytes=")?.split_once('-')?;
    let end = if end.is_empty() {
        None
    } else {
        Some(end.parse().ok()?)
    };
    Some((start.parse().ok()?, end))
}

/// What HTTPS needs on both sides: a test CA with ringcast's certificate,
/// and a private HOME whose NSS database trusts that CA.
struct Trust {
    /// `tools/test-ca.sh`'s output: `ca.pem`, `server.pem`, `server.key`.
    certs: PathBuf,
    /// The driver's HOME: Chromium reads `$HOME/.pki/nssdb`.
    home: PathBuf,
}

impl Trust {
    /// Makes the CA and the database under `scratch`.
    fn new(scratch: &Path) -> Trust {
        let certs = scratch.join("certs");
        let mut command = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tools/test-ca.sh"));
        command.stdin(Stdio::null()).arg(&certs);
        finish_ok(spawn_captured(&mut command), "tools/test-ca.sh");

        let home = scratch.join("home");
        let nssdb = home.join(".pki/nssdb");
        std::fs::create_dir_all(&nssdb).unwrap();
        let db = format!("sql:{}", nssdb.display());
        let certutil = |args: &[&str], what: &str| {
            let mut command = Command::new("certutil");
            command.stdin(Stdio::null()).args(["-d", &db]).args(args);
            finish_ok(spawn_captured(&mut command), what)
        };
        certutil(&["-N", "--empty-password"], "certutil -N (new database)");
        let ca = certs.join("ca.pem");
        certutil(
            &[
                "-A",
                "-t",
                "C,,",
                "-n",
                CA_NICKNAME,
                "-i",
                ca.to_str().unwrap(),
            ],
            "certutil -A (add the test CA)",
        );
        // The CA is in, trusted for TLS servers (C in the SSL column).
        let listed = certutil(&["-L"], "certutil -L");
        let listed = String::from_utf8_lossy(&listed.stdout);
        assert!(
            listed
                .lines()
                .any(|l| l.starts_with(CA_NICKNAME) && l.trim_end().ends_with("C,,")),
            "the test CA is not trusted in {db}:\n{listed}"
        );
        Trust { certs, home }
    }

    /// ringcast's flags to serve HTTPS with the test CA's certificate.
    fn server_flags(&self) -> Vec<String> {
        let file = |name: &str| self.certs.join(name).to_str().unwrap().to_string();
        vec![
            "--tls-listen".into(),
            "127.0.0.1:0".into(),
            "--tls-cert".into(),
            file("server.pem"),
            "--tls-key".into(),
            file("server.key"),
        ]
    }
}

// ---------------------------------------------------------------------------
// The access log

#[derive(Debug)]
struct LogLine {
    path: String,
    status: u16,
    bytes: u64,
    user_agent: String,
}

/// Combined Log Format: `IP - - [time] "GET /p HTTP/1.1" status bytes "referer" "agent" micros`.
/// ringcast escapes quotes inside fields, so splitting on `"` is exact.
fn parse_access_log(text: &str) -> Vec<LogLine> {
    text.lines()
        .map(|line| {
            let fields: Vec<&str> = line.split('"').collect();
            assert!(fields.len() >= 7, "access log line {line:?}");
            let mut numbers = fields[2].split_whitespace();
            LogLine {
                path: fields[1].split(' ').nth(1).unwrap_or("").to_string(),
                status: numbers.next().unwrap().parse().unwrap(),
                // CLF's %b: "-" when no body was sent (a 304).
                bytes: match numbers.next().unwrap() {
                    "-" => 0,
                    n => n.parse().unwrap(),
                },
                user_agent: fields[5].to_string(),
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Running the driver and tools, bounded

/// Runs the driver against `url` (with `home` as HOME, if given) and returns
/// its JSON report, failing the test unless it succeeded.
fn driver_report(driver_dir: &Path, url: &str, home: Option<&Path>) -> Value {
    let (status, stdout, stderr) = run_driver(driver_dir, url, home);
    assert!(
        status.success(),
        "the browser driver failed with {status}:\n{stderr}"
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("driver report is not JSON ({e}): {stdout}\n{stderr}"))
}

/// Runs the driver against `url`, with `home` as HOME (where Chromium finds
/// its NSS database) if given, and returns its exit status, stdout and
/// stderr. Chromium and node are killed if it overruns or the test panics.
fn run_driver(driver_dir: &Path, url: &str, home: Option<&Path>) -> (ExitStatus, String, String) {
    let mut command = Command::new("node");
    command
        .arg(driver_dir.join("play-seek.mjs"))
        .arg(url)
        .args(["--timeout-ms", &DRIVER_TIMEOUT.as_millis().to_string()])
        .current_dir(driver_dir);
    if let Some(home) = home {
        command.env("HOME", home);
    }
    bounded::run_driver(&mut command, DRIVER_TIMEOUT + Duration::from_secs(10))
}

/// Waits up to `TOOL_TIMEOUT` for a tool and fails the test, showing its
/// stderr, unless it exits 0.
fn finish_ok(child: Child, what: &str) -> Output {
    bounded::finish_ok(child, what, TOOL_TIMEOUT)
}
