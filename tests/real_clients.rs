//! Real clients against the real server: ffprobe, ffmpeg and curl fetch media
//! generated on the spot by ffmpeg, and every answer is checked against the
//! same tool run on the local file, so wrong bytes or statuses fail the test.
//!
//! ffmpeg's http protocol logs each request it sends (`request: GET ...`
//! followed by the raw header lines) and each response header it receives
//! (`header='HTTP/1.1 206 Partial Content'`) at `-v trace`; the seek tests
//! parse that log to prove the seeks were served as byte ranges.
//!
//! The range, seek and resume tests run over plain HTTP and over HTTPS
//! ([`Scheme`]). Over HTTPS every client verifies the server against a test
//! CA made by `tools/test-ca.sh`: curl with `--cacert`, ffmpeg and ffprobe
//! with `-tls_verify 1 -ca_file` (their tls protocol does not verify unless
//! told to). [`https_clients_refuse_a_server_signed_by_a_ca_they_do_not_trust`]
//! proves that those options are in force.

mod common;

use common::Server;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Length of every generated clip, in seconds.
const CLIP_SECONDS: f64 = 20.0;
/// Where the seek tests jump to, in seconds.
const SEEK_SECONDS: f64 = 15.0;
/// ffmpeg/ffprobe give up on a stalled socket after this many microseconds,
/// so a hung server fails a test instead of hanging it.
const RW_TIMEOUT_US: &str = "10000000";
/// curl's limit for a whole transfer, in seconds.
const CURL_MAX_TIME: &str = "20";

// ---------------------------------------------------------------------------
// Fixtures

#[derive(Clone, Copy, Debug)]
enum Clip {
    /// H.264/AAC MP4 with the `moov` index after `mdat`, as ffmpeg writes it
    /// without `+faststart`: a player has to range-request the end first.
    Mp4MoovAtEnd,
    /// The same with `-movflags +faststart`: the index comes first.
    Mp4FastStart,
    /// VP9/Opus WebM.
    Webm,
}

impl Clip {
    fn file_name(self) -> &'static str {
        match self {
            Clip::Mp4MoovAtEnd => "moov-at-end.mp4",
            Clip::Mp4FastStart => "faststart.mp4",
            Clip::Webm => "clip.webm",
        }
    }
}

/// Generates `clip` in `dir` with ffmpeg (well under a second each) and returns its path.
fn make_clip(dir: &Path, clip: Clip) -> PathBuf {
    let out = dir.join(clip.file_name());
    let duration = CLIP_SECONDS.to_string();
    let mut args: Vec<&str> = vec![
        "-nostdin",
        "-y",
        "-v",
        "error",
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=320x240:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine",
        "-t",
        &duration,
    ];
    match clip {
        Clip::Mp4MoovAtEnd | Clip::Mp4FastStart => {
            args.extend([
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-g",
                "50",
                "-c:a",
                "aac",
            ]);
            if let Clip::Mp4FastStart = clip {
                args.extend(["-movflags", "+faststart"]);
            }
        }
        Clip::Webm => args.extend([
            "-c:v",
            "libvpx-vp9",
            "-deadline",
            "realtime",
            "-cpu-used",
            "8",
            "-b:v",
            "200k",
            "-c:a",
            "libopus",
        ]),
    }
    args.push(out.to_str().unwrap());
    run_ok(Command::new("ffmpeg").args(&args));
    // The layout is what the test relies on, so check it rather than trust flags.
    if let Clip::Mp4MoovAtEnd | Clip::Mp4FastStart = clip {
        let data = std::fs::read(&out).unwrap();
        let moov = top_level_box(&data, b"moov").expect("moov box");
        let mdat = top_level_box(&data, b"mdat").expect("mdat box");
        match clip {
            Clip::Mp4MoovAtEnd => {
                assert!(moov > mdat, "moov at {moov} should follow mdat at {mdat}")
            }
            _ => assert!(
                moov < mdat,
                "faststart: moov at {moov} should precede mdat at {mdat}"
            ),
        }
    }
    out
}

/// Offset of the first top-level ISO-BMFF box of type `kind`.
fn top_level_box(data: &[u8], kind: &[u8; 4]) -> Option<u64> {
    let mut at = 0usize;
    while at + 8 <= data.len() {
        let size32 = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as u64;
        if &data[at + 4..at + 8] == kind {
            return Some(at as u64);
        }
        let size = match size32 {
            0 => return None, // extends to end of file
            1 => u64::from_be_bytes(data.get(at + 8..at + 16)?.try_into().unwrap()),
            n => n,
        };
        if size < 8 {
            return None;
        }
        at = at.checked_add(usize::try_from(size).ok()?)?;
    }
    None
}

/// Byte offset of the last video keyframe at or before `seconds`, per local ffprobe.
fn keyframe_offset_before(path: &Path, seconds: f64) -> u64 {
    let out = run_ok(Command::new("ffprobe").args([
        "-v",
        "error",
        "-select_streams",
        "v:0",
        "-show_entries",
        "packet=pts_time,pos,flags",
        "-of",
        "csv=p=0",
        path.to_str().unwrap(),
    ]));
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(',');
            let pts: f64 = fields.next()?.parse().ok()?;
            let pos: u64 = fields.next()?.parse().ok()?;
            let flags = fields.next()?;
            (flags.starts_with('K') && pts <= seconds).then_some(pos)
        })
        .next_back()
        .unwrap_or_else(|| panic!("no keyframe before {seconds}s in {text}"))
}

// ---------------------------------------------------------------------------
// The server, over HTTP or HTTPS

/// How the clients reach the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scheme {
    Http,
    /// TLS on `--tls-listen`, with the test CA's ECDSA certificate for 127.0.0.1.
    Https,
}

/// A running server and what its clients need to trust it.
struct Served {
    server: Server,
    scheme: Scheme,
    /// `tools/test-ca.sh`'s output (HTTPS only): `ca.pem` is what clients
    /// trust. Held so the files outlive the server.
    certs: Option<tempfile::TempDir>,
}

impl Served {
    /// ringcast on `root`; over HTTPS it also serves TLS with a fresh test CA's certificate.
    fn start(root: &Path, scheme: Scheme) -> Served {
        let certs = match scheme {
            Scheme::Http => None,
            Scheme::Https => Some(common::test_ca()),
        };
        let server = match &certs {
            None => Server::start(root, &[]),
            Some(certs) => {
                let cert = certs.path().join("server.pem");
                let key = certs.path().join("server.key");
                let flags = common::tls_flags(&[(&cert, &key)]);
                let args: Vec<&str> = flags.iter().map(String::as_str).collect();
                let server = Server::start(root, &args);
                assert!(server.tls_addr.is_some(), "no https:// in the startup line");
                server
            }
        };
        Served {
            server,
            scheme,
            certs,
        }
    }

    fn url(&self, path: &str) -> String {
        match self.scheme {
            Scheme::Http => self.server.url(path),
            Scheme::Https => format!("https://{}{path}", self.server.tls_addr.unwrap()),
        }
    }

    /// The CA certificate the clients trust (HTTPS only).
    fn ca(&self) -> Option<PathBuf> {
        self.certs.as_ref().map(|c| c.path().join("ca.pem"))
    }

    /// Input options for ffmpeg/ffprobe, placed before `-i URL`: over HTTPS,
    /// verify the server's chain and name against the test CA.
    fn ffmpeg_input_options(&self) -> Vec<String> {
        self.ca().map_or_else(Vec::new, |ca| ffmpeg_trusting(&ca))
    }

    /// [`curl`], trusting the test CA over HTTPS.
    fn curl(&self) -> Command {
        let mut command = curl();
        if let Some(ca) = self.ca() {
            command.arg("--cacert").arg(ca);
        }
        command
    }
}

/// ffmpeg's tls protocol options to verify the peer against `ca`: without
/// `-tls_verify 1` it accepts any certificate.
fn ffmpeg_trusting(ca: &Path) -> Vec<String> {
    vec![
        "-tls_verify".into(),
        "1".into(),
        "-ca_file".into(),
        ca.to_str().unwrap().into(),
    ]
}

// ---------------------------------------------------------------------------
// Running tools

/// Runs a command with stdin closed and output captured.
fn run(command: &mut Command) -> Output {
    command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"))
}

/// Runs a command and fails the test, showing its stderr, unless it exits 0.
fn run_ok(command: &mut Command) -> Output {
    let out = run(command);
    assert!(
        out.status.success(),
        "{command:?} failed with {}:\n{}",
        out.status,
        tail(&String::from_utf8_lossy(&out.stderr), 60)
    );
    out
}

/// The last `n` lines of a log, enough to diagnose without drowning the report.
fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `ffprobe -show_entries format=duration:stream=codec_name -of json` on `input`
/// (after `input_options`), returning (codec names, duration) and the trace log on stderr.
fn probe(input: &str, input_options: &[String], trace: bool) -> (Vec<String>, f64, String) {
    let out = run_ok(
        Command::new("ffprobe")
            .args([
                "-v",
                if trace { "trace" } else { "error" },
                "-rw_timeout",
                RW_TIMEOUT_US,
                "-show_entries",
                "format=duration:stream=codec_name",
                "-of",
                "json",
            ])
            .args(input_options)
            .arg(input),
    );
    let json = String::from_utf8(out.stdout).unwrap();
    let codecs = json_string_values(&json, "codec_name");
    let durations = json_string_values(&json, "duration");
    assert_eq!(durations.len(), 1, "one format duration in {json}");
    let duration = durations[0]
        .parse()
        .unwrap_or_else(|_| panic!("duration in {json}"));
    (
        codecs,
        duration,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every string value of `"key": "value"` in ffprobe's JSON, in order.
fn json_string_values(json: &str, key: &str) -> Vec<String> {
    let needle = format!("\"{key}\":");
    json.match_indices(&needle)
        .filter_map(|(at, _)| {
            let rest = json[at + needle.len()..].trim_start().strip_prefix('"')?;
            Some(rest[..rest.find('"')?].to_string())
        })
        .collect()
}

/// Runs ffmpeg at `-v trace` with `args` after the global options; returns the trace.
fn ffmpeg_traced<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> String {
    let mut command = Command::new("ffmpeg");
    command.args([
        "-nostdin",
        "-y",
        "-v",
        "trace",
        "-rw_timeout",
        RW_TIMEOUT_US,
    ]);
    command.args(args);
    let out = run_ok(&mut command);
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// curl with the common options: silent but showing errors, bounded time.
fn curl() -> Command {
    let mut command = Command::new("curl");
    command.args(["-sS", "--max-time", CURL_MAX_TIME]);
    command
}

/// `-w '%{http_code}'` output parsed.
fn status_of(out: &Output) -> u16 {
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("no status in curl output {text:?}"))
}

fn curl_supports(option: &str) -> bool {
    let help = run(Command::new("curl").args(["--help", "all"]));
    String::from_utf8_lossy(&help.stdout).contains(option)
}

// ---------------------------------------------------------------------------
// ffmpeg's http trace

/// One request ffmpeg's http protocol sent, and what it logged of the response.
#[derive(Debug, Default)]
struct Exchange {
    request_line: String,
    /// The value of the `Range:` request header.
    range: Option<String>,
    status: Option<u16>,
    /// The value of the `Content-Range:` response header.
    content_range: Option<String>,
}

/// Parses the `-v trace` log of ffmpeg's http protocol:
/// `[http @ 0x..] request: GET /x HTTP/1.1` followed by raw header lines, then
/// one `[http @ 0x..] header='...'` line per response header.
fn http_exchanges(log: &str) -> Vec<Exchange> {
    let mut exchanges: Vec<Exchange> = Vec::new();
    for line in log.lines() {
        if let Some((_, request_line)) = line.split_once("] request: ") {
            exchanges.push(Exchange {
                request_line: request_line.trim().to_string(),
                ..Default::default()
            });
            continue;
        }
        let Some(current) = exchanges.last_mut() else {
            continue;
        };
        if let Some((_, header)) = line.split_once("] header='") {
            let header = header.strip_suffix('\'').unwrap_or(header);
            if let Some(status_line) = header.strip_prefix("HTTP/1.1 ") {
                current.status = status_line.get(..3).and_then(|s| s.parse().ok());
            } else if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-range") {
                    current.content_range = Some(value.trim().to_string());
                }
            }
        } else if current.status.is_none() {
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("range") {
                    current.range = Some(value.trim().to_string());
                }
            }
        }
    }
    exchanges
}

/// `bytes=N-` or `bytes=N-M` as (N, M).
fn parse_range_request(value: &str) -> (u64, Option<u64>) {
    let spec = value
        .strip_prefix("bytes=")
        .unwrap_or_else(|| panic!("range {value:?}"));
    let (first, last) = spec
        .split_once('-')
        .unwrap_or_else(|| panic!("range {value:?}"));
    let last = (!last.is_empty()).then(|| last.parse().unwrap());
    (
        first.parse().unwrap_or_else(|_| panic!("range {value:?}")),
        last,
    )
}

/// `bytes A-B/T` as (A, B, T).
fn parse_content_range(value: &str) -> (u64, u64, u64) {
    let parsed = (|| {
        let (span, total) = value.strip_prefix("bytes ")?.split_once('/')?;
        let (first, last) = span.split_once('-')?;
        Some((first.parse().ok()?, last.parse().ok()?, total.parse().ok()?))
    })();
    parsed.unwrap_or_else(|| panic!("Content-Range {value:?}"))
}

/// Checks that every ranged request for `path` in the trace was answered 206
/// with exactly the range asked for, and returns the first byte of each.
fn ranged_request_starts(log: &str, path: &str, file_len: u64) -> Vec<u64> {
    let exchanges = http_exchanges(log);
    let ours: Vec<&Exchange> = exchanges
        .iter()
        .filter(|e| e.request_line.starts_with(&format!("GET {path} ")))
        .collect();
    assert!(
        !ours.is_empty(),
        "no request for {path} in trace:\n{}",
        tail(log, 80)
    );
    let mut starts = Vec::new();
    for exchange in ours {
        let Some(range) = &exchange.range else {
            assert_eq!(exchange.status, Some(200), "{exchange:?}");
            continue;
        };
        let (first, last) = parse_range_request(range);
        assert_eq!(
            exchange.status,
            Some(206),
            "ranged request not answered 206: {exchange:?}"
        );
        let content_range = exchange
            .content_range
            .as_deref()
            .unwrap_or_else(|| panic!("206 without Content-Range: {exchange:?}"));
        let expected_last = last.unwrap_or(file_len - 1).min(file_len - 1);
        assert_eq!(
            parse_content_range(content_range),
            (first, expected_last, file_len),
            "wrong Content-Range for {exchange:?}"
        );
        starts.push(first);
    }
    starts
}

// ---------------------------------------------------------------------------
// ffprobe

#[test]
fn ffprobe_reads_h264_aac_and_duration_from_mp4_with_moov_at_end_via_tail_range() {
    assert_probe_reads_moov_at_end_via_tail_range(Scheme::Http);
}

#[test]
fn ffprobe_reads_h264_aac_and_duration_from_mp4_with_moov_at_end_via_tail_range_over_https() {
    assert_probe_reads_moov_at_end_via_tail_range(Scheme::Https);
}

/// ffprobe finds the codecs and duration of an MP4 whose index is at the
/// end, the same as from the local file, and fetched that index with a
/// Range request from the `moov` box, answered 206.
fn assert_probe_reads_moov_at_end_via_tail_range(scheme: Scheme) {
    if !common::have_tool("ffprobe") || !common::have_tool("ffmpeg") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = make_clip(dir.path(), Clip::Mp4MoovAtEnd);
    let data = std::fs::read(&path).unwrap();
    let moov = top_level_box(&data, b"moov").unwrap();
    let served = Served::start(dir.path(), scheme);

    let (codecs, duration, log) = probe(
        &served.url("/moov-at-end.mp4"),
        &served.ffmpeg_input_options(),
        true,
    );
    assert_eq!(codecs, ["h264", "aac"]);
    assert!((duration - CLIP_SECONDS).abs() < 0.5, "duration {duration}");
    let (local_codecs, local_duration, _) = probe(path.to_str().unwrap(), &[], false);
    assert_eq!((codecs, duration), (local_codecs, local_duration));

    // The index is at the end: ffprobe must have fetched it with a Range
    // request starting exactly at the moov box, answered 206.
    let starts = ranged_request_starts(&log, "/moov-at-end.mp4", data.len() as u64);
    assert!(
        starts.contains(&moov),
        "no Range request at the moov box (offset {moov}); ranged starts {starts:?}"
    );
}

#[test]
fn ffprobe_reads_h264_aac_and_duration_from_faststart_mp4() {
    if !common::have_tool("ffprobe") || !common::have_tool("ffmpeg") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = make_clip(dir.path(), Clip::Mp4FastStart);
    let server = Server::start(dir.path(), &[]);

    let (codecs, duration, _) = probe(&server.url("/faststart.mp4"), &[], false);
    assert_eq!(codecs, ["h264", "aac"]);
    assert!((duration - CLIP_SECONDS).abs() < 0.5, "duration {duration}");
    let (local_codecs, local_duration, _) = probe(path.to_str().unwrap(), &[], false);
    assert_eq!((codecs, duration), (local_codecs, local_duration));
}

#[test]
fn ffprobe_reads_vp9_opus_and_duration_from_webm() {
    if !common::have_tool("ffprobe") || !common::have_tool("ffmpeg") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = make_clip(dir.path(), Clip::Webm);
    let server = Server::start(dir.path(), &[]);

    let (codecs, duration, _) = probe(&server.url("/clip.webm"), &[], false);
    assert_eq!(codecs, ["vp9", "opus"]);
    assert!((duration - CLIP_SECONDS).abs() < 0.5, "duration {duration}");
    let (local_codecs, local_duration, _) = probe(path.to_str().unwrap(), &[], false);
    assert_eq!((codecs, duration), (local_codecs, local_duration));
}

// ---------------------------------------------------------------------------
// ffmpeg seeking

/// `ffmpeg -ss 15 -i URL -frames:v 1 out.png` over `scheme`: it must exit 0,
/// the frame must equal the one decoded from the local file, and the trace
/// must show the seek as a Range request at the keyframe before 15 s,
/// answered 206. Returns the ranged request starts for clip-specific checks.
fn assert_seek_decodes_frame_via_range(clip: Clip, scheme: Scheme) -> (Vec<u64>, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let path = make_clip(dir.path(), clip);
    let data = std::fs::read(&path).unwrap();
    let keyframe = keyframe_offset_before(&path, SEEK_SECONDS);
    let served = Served::start(dir.path(), scheme);
    let url_path = format!("/{}", clip.file_name());
    let seek = SEEK_SECONDS.to_string();

    let out_dir = tempfile::tempdir().unwrap();
    let remote_png = out_dir.path().join("remote.png");
    let mut args: Vec<String> = vec!["-ss".into(), seek.clone()];
    args.extend(served.ffmpeg_input_options());
    args.extend([
        "-i".into(),
        served.url(&url_path),
        "-frames:v".into(),
        "1".into(),
        "-f".into(),
        "image2".into(),
        remote_png.to_str().unwrap().into(),
    ]);
    let log = ffmpeg_traced(&args);
    let remote = std::fs::read(&remote_png).expect("ffmpeg wrote the frame");
    assert!(remote.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");

    let local_png = out_dir.path().join("local.png");
    run_ok(Command::new("ffmpeg").args([
        "-nostdin",
        "-y",
        "-v",
        "error",
        "-ss",
        &seek,
        "-i",
        path.to_str().unwrap(),
        "-frames:v",
        "1",
        "-f",
        "image2",
        local_png.to_str().unwrap(),
    ]));
    assert!(
        remote == std::fs::read(&local_png).unwrap(),
        "frame at {seek}s over {scheme:?} differs from the local decode"
    );

    let starts = ranged_request_starts(&log, &url_path, data.len() as u64);
    // Containers may start the read a little before the keyframe (a WebM
    // cluster header, an interleaved audio packet), never after it.
    const SLACK: u64 = 32 * 1024;
    assert!(
        starts
            .iter()
            .any(|&n| n > 0 && n <= keyframe && keyframe - n <= SLACK),
        "no Range request at the keyframe before {seek}s (offset {keyframe}); \
         ranged starts {starts:?}\n{}",
        tail(&log, 80)
    );
    (starts, data)
}

#[test]
fn ffmpeg_seeks_mp4_with_moov_at_end_by_ranges_and_decodes_same_frame() {
    assert_seeks_mp4_with_moov_at_end(Scheme::Http);
}

#[test]
fn ffmpeg_seeks_mp4_with_moov_at_end_by_ranges_and_decodes_same_frame_over_https() {
    assert_seeks_mp4_with_moov_at_end(Scheme::Https);
}

/// The seek check, plus the tail range for the index that comes first.
fn assert_seeks_mp4_with_moov_at_end(scheme: Scheme) {
    if !common::have_tool("ffmpeg") || !common::have_tool("ffprobe") {
        return;
    }
    let (starts, data) = assert_seek_decodes_frame_via_range(Clip::Mp4MoovAtEnd, scheme);
    let moov = top_level_box(&data, b"moov").unwrap();
    assert!(
        starts.contains(&moov),
        "no Range request at the moov box {moov}: {starts:?}"
    );
}

#[test]
fn ffmpeg_seeks_faststart_mp4_by_ranges_and_decodes_same_frame() {
    if !common::have_tool("ffmpeg") || !common::have_tool("ffprobe") {
        return;
    }
    assert_seek_decodes_frame_via_range(Clip::Mp4FastStart, Scheme::Http);
}

#[test]
fn ffmpeg_seeks_webm_by_ranges_and_decodes_same_frame() {
    if !common::have_tool("ffmpeg") || !common::have_tool("ffprobe") {
        return;
    }
    assert_seek_decodes_frame_via_range(Clip::Webm, Scheme::Http);
}

#[test]
fn ffmpeg_seeks_webm_by_ranges_and_decodes_same_frame_over_https() {
    if !common::have_tool("ffmpeg") || !common::have_tool("ffprobe") {
        return;
    }
    assert_seek_decodes_frame_via_range(Clip::Webm, Scheme::Https);
}

// ---------------------------------------------------------------------------
// ffmpeg reading a whole file

#[test]
fn ffmpeg_copies_whole_webm_over_http_with_identical_packets() {
    assert_copies_whole_webm_with_identical_packets(Scheme::Http);
}

#[test]
fn ffmpeg_copies_whole_webm_over_https_with_identical_packets() {
    assert_copies_whole_webm_with_identical_packets(Scheme::Https);
}

/// ffmpeg reads the whole clip over `scheme`, every byte of it, and every
/// packet's checksum matches the local file's.
fn assert_copies_whole_webm_with_identical_packets(scheme: Scheme) {
    if !common::have_tool("ffmpeg") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = make_clip(dir.path(), Clip::Webm);
    let len = std::fs::metadata(&path).unwrap().len();
    let served = Served::start(dir.path(), scheme);
    let url = served.url("/clip.webm");
    let tls = served.ffmpeg_input_options();

    let mut args = tls.clone();
    args.extend(["-i", &url, "-c", "copy", "-f", "null", "-"].map(String::from));
    let log = ffmpeg_traced(&args);
    ranged_request_starts(&log, "/clip.webm", len);
    assert!(
        log.contains(&format!("Statistics: {len} bytes read")),
        "ffmpeg did not read all {len} bytes:\n{}",
        tail(&log, 40)
    );

    // Every packet's checksum matches the local file's.
    let framemd5 = |input: &str, input_options: &[String]| {
        let out = run_ok(
            Command::new("ffmpeg")
                .args(["-nostdin", "-v", "error", "-rw_timeout", RW_TIMEOUT_US])
                .args(input_options)
                .args(["-i", input, "-c", "copy", "-f", "framemd5", "-"]),
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let remote = framemd5(&url, &tls);
    let local = framemd5(path.to_str().unwrap(), &[]);
    assert!(remote.lines().count() > 500, "too few packets:\n{remote}");
    assert!(
        remote == local,
        "packets over {scheme:?} differ from the local file"
    );
}

// ---------------------------------------------------------------------------
// curl

#[test]
fn curl_resumes_partial_download_with_continue_at() {
    assert_curl_resumes_partial_download(Scheme::Http);
}

#[test]
fn curl_resumes_partial_download_with_continue_at_over_https() {
    assert_curl_resumes_partial_download(Scheme::Https);
}

/// `curl -C -` on a file cut at 100000 bytes asks for the rest, gets a 206
/// with the matching Content-Range, and ends with the original bytes.
fn assert_curl_resumes_partial_download(scheme: Scheme) {
    if !common::have_tool("curl") || !common::have_tool("ffmpeg") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = make_clip(dir.path(), Clip::Mp4MoovAtEnd);
    let original = std::fs::read(&path).unwrap();
    let len = original.len();
    let served = Served::start(dir.path(), scheme);

    let out_dir = tempfile::tempdir().unwrap();
    let partial = out_dir.path().join("partial.mp4");
    std::fs::write(&partial, &original[..100_000]).unwrap();
    let out = run_ok(served.curl().args([
        "-v",
        "-C",
        "-",
        "-o",
        partial.to_str().unwrap(),
        "-w",
        "%{http_code}",
        &served.url("/moov-at-end.mp4"),
    ]));
    let verbose = String::from_utf8_lossy(&out.stderr);
    assert!(verbose.contains("> Range: bytes=100000-"), "{verbose}");
    assert_eq!(status_of(&out), 206, "{verbose}");
    assert!(
        verbose.contains(&format!("< Content-Range: bytes 100000-{}/{len}", len - 1)),
        "{verbose}"
    );
    let resumed = std::fs::read(&partial).unwrap();
    assert_eq!(resumed.len(), len);
    assert!(
        resumed == original,
        "resumed file differs from the original"
    );
}

#[test]
fn curl_byte_range_returns_exactly_those_bytes() {
    assert_curl_byte_range_returns_exactly_those_bytes(Scheme::Http);
}

#[test]
fn curl_byte_range_returns_exactly_those_bytes_over_https() {
    assert_curl_byte_range_returns_exactly_those_bytes(Scheme::Https);
}

/// `curl -r 1000-1999` gets a 206 with that Content-Range and exactly those bytes.
fn assert_curl_byte_range_returns_exactly_those_bytes(scheme: Scheme) {
    if !common::have_tool("curl") || !common::have_tool("ffmpeg") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = make_clip(dir.path(), Clip::Mp4MoovAtEnd);
    let original = std::fs::read(&path).unwrap();
    let served = Served::start(dir.path(), scheme);

    let out_dir = tempfile::tempdir().unwrap();
    let body = out_dir.path().join("range.bin");
    let headers = out_dir.path().join("headers.txt");
    let out = run_ok(served.curl().args([
        "-r",
        "1000-1999",
        "-o",
        body.to_str().unwrap(),
        "-D",
        headers.to_str().unwrap(),
        "-w",
        "%{http_code}",
        &served.url("/moov-at-end.mp4"),
    ]));
    assert_eq!(status_of(&out), 206);
    let headers = std::fs::read_to_string(&headers).unwrap();
    let expected_range = format!("content-range: bytes 1000-1999/{}", original.len());
    assert!(
        headers
            .lines()
            .any(|l| l.trim().eq_ignore_ascii_case(&expected_range)),
        "{headers}"
    );
    let got = std::fs::read(&body).unwrap();
    assert_eq!(got.len(), 1000);
    assert!(
        got == original[1000..2000],
        "range body differs from bytes 1000-1999"
    );
}

// ---------------------------------------------------------------------------
// Verification is on

/// The trust the HTTPS tests set up is the only reason they pass: with
/// another CA, or a name the certificate does not carry, curl and ffprobe
/// refuse the server, and with the test CA the same commands succeed.
#[test]
fn https_clients_refuse_a_server_signed_by_a_ca_they_do_not_trust() {
    if !common::have_tool("curl") || !common::have_tool("ffprobe") || !common::have_tool("ffmpeg") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    make_clip(dir.path(), Clip::Mp4FastStart);
    let served = Served::start(dir.path(), Scheme::Https);
    let url = served.url("/faststart.mp4");
    let other_ca = common::test_ca();
    let other_ca = other_ca.path().join("ca.pem");

    // curl: exit 60 is "peer certificate cannot be authenticated".
    let curl_status = |trust: &Path, extra: &[&str], url: &str| {
        let out = run(curl()
            .arg("--cacert")
            .arg(trust)
            .args(extra)
            .args(["-o", "/dev/null", url]));
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(curl_status(&served.ca().unwrap(), &[], &url).0, Some(0));
    let (code, stderr) = curl_status(&other_ca, &[], &url);
    assert_eq!(code, Some(60), "curl trusting another CA: {stderr}");
    let port = served.server.tls_addr.unwrap().port();
    let resolve = format!("wrong.test:{port}:127.0.0.1");
    let (code, stderr) = curl_status(
        &served.ca().unwrap(),
        &["--resolve", &resolve],
        &format!("https://wrong.test:{port}/faststart.mp4"),
    );
    assert_eq!(
        code,
        Some(60),
        "curl to a name not in the certificate: {stderr}"
    );

    // ffprobe: the tls protocol's own messages name the cause.
    let ffprobe_error = |options: &[String]| {
        let out = run(Command::new("ffprobe")
            .args(["-v", "error", "-rw_timeout", RW_TIMEOUT_US])
            .args(options)
            .arg(&url));
        (!out.status.success()).then(|| String::from_utf8_lossy(&out.stderr).into_owned())
    };
    assert_eq!(ffprobe_error(&served.ffmpeg_input_options()), None);
    let stderr = ffprobe_error(&ffmpeg_trusting(&other_ca)).expect("ffprobe trusting another CA");
    assert!(stderr.contains("failed verification"), "{stderr}");
    let mut wrong_name = served.ffmpeg_input_options();
    wrong_name.extend(["-verifyhost".into(), "wrong.test".into()]);
    let stderr = ffprobe_error(&wrong_name).expect("ffprobe checking another name");
    assert!(stderr.contains("does not match hostname"), "{stderr}");
}

#[test]
fn curl_etag_compare_gets_304_when_unchanged_and_200_when_tag_differs() {
    if !common::have_tool("curl") || !common::have_tool("ffmpeg") {
        return;
    }
    if !curl_supports("--etag-compare") {
        eprintln!("skipping: this curl has no --etag-compare (curl >= 7.68 does)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = make_clip(dir.path(), Clip::Webm);
    let original = std::fs::read(&path).unwrap();
    let server = Server::start(dir.path(), &[]);
    let url = server.url("/clip.webm");

    let out_dir = tempfile::tempdir().unwrap();
    let etag_file = out_dir.path().join("etag.txt");
    let body = out_dir.path().join("body");
    let fetch = |option: &str| {
        let _ = std::fs::remove_file(&body);
        let out = run_ok(curl().args([
            option,
            etag_file.to_str().unwrap(),
            "-o",
            body.to_str().unwrap(),
            "-w",
            "%{http_code}",
            &url,
        ]));
        status_of(&out)
    };

    assert_eq!(fetch("--etag-save"), 200);
    assert!(
        std::fs::read(&body).unwrap() == original,
        "first body differs"
    );
    let etag = std::fs::read_to_string(&etag_file).unwrap();
    assert!(etag.trim().starts_with('"'), "saved ETag {etag:?}");

    assert_eq!(fetch("--etag-compare"), 304, "If-None-Match: {etag}");
    assert!(
        !body.exists() || std::fs::read(&body).unwrap().is_empty(),
        "304 with a body"
    );

    // A different tag must not match: the full file comes back.
    std::fs::write(&etag_file, "\"not-the-current-tag\"\n").unwrap();
    assert_eq!(fetch("--etag-compare"), 200);
    assert!(
        std::fs::read(&body).unwrap() == original,
        "body after tag mismatch differs"
    );
}

#[test]
fn curl_if_modified_since_gets_304_when_unchanged_and_200_when_older() {
    if !common::have_tool("curl") || !common::have_tool("ffmpeg") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = make_clip(dir.path(), Clip::Webm);
    let original = std::fs::read(&path).unwrap();
    let server = Server::start(dir.path(), &[]);
    let url = server.url("/clip.webm");

    let out_dir = tempfile::tempdir().unwrap();
    let body = out_dir.path().join("body");
    let fetch = |condition: &str| {
        let _ = std::fs::remove_file(&body);
        let out = run_ok(curl().args([
            "-v",
            "-z",
            condition,
            "-o",
            body.to_str().unwrap(),
            "-w",
            "%{http_code}",
            &url,
        ]));
        let verbose = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(verbose.contains("> If-Modified-Since: "), "{verbose}");
        (status_of(&out), verbose)
    };

    // `-z FILE` sends the served file's own mtime: not modified since.
    let (status, verbose) = fetch(path.to_str().unwrap());
    assert_eq!(status, 304, "{verbose}");

    // A date long before the file was written: modified since, full body.
    let (status, verbose) = fetch("Thu, 01 Jan 2004 00:00:00 GMT");
    assert_eq!(status, 200, "{verbose}");
    assert!(std::fs::read(&body).unwrap() == original, "body differs");
}
