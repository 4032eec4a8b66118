//! Upload to playback, end to end: curl PUTs an H.264/AAC MP4 to ringcast's
//! `--ingest /uploads/` with a bearer token from `--ingest-tokens`; the
//! `--on-publish` job `tools/package-hls.sh` packages it as HLS beside it
//! (`/uploads/clip/master.m3u8`, two renditions); the admin listener's
//! `/metrics` counts the job as succeeded; and headless Chromium plays the
//! master playlist with hls.js (`tools/browser/play-hls.mjs`), which must
//! see both renditions and play at least a second without a fatal error.
//!
//! Run `tools/install-test-deps.sh` first (it installs chromium, ffmpeg,
//! curl and the driver's npm packages); without them the test is skipped,
//! or fails under `RINGCAST_REQUIRE_TOOLS`.

mod common;

use common::bounded::{self, spawn_captured};
use common::{have_tool, Server};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The one line of the tokens file, sent as `Authorization: Bearer`.
const TOKEN: &str = "test-token-123";
/// The test clip: testsrc2 and a sine tone, H.264/AAC, 1280x720.
const CLIP_SECONDS: &str = "6";
const CLIP_SIZE: &str = "1280x720";
/// ffmpeg making the clip, and curl uploading it, are killed after this long.
const TOOL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the upload may take to be packaged (master.m3u8 answers 200).
const PACKAGE_WAIT: Duration = Duration::from_secs(90);
/// How long a succeeded job may take to show on /metrics once its package is there.
const METRICS_WAIT: Duration = Duration::from_secs(10);
/// play-hls.mjs's own watchdog (it allows at most 60 s).
const DRIVER_TIMEOUT: Duration = Duration::from_secs(45);

#[test]
fn an_uploaded_mp4_is_packaged_as_hls_and_plays_in_chromium() {
    if !have_tool("ffmpeg")
        || !have_tool("ffprobe")
        || !have_tool("curl")
        || !have_tool("node")
        || !have_tool("chromium")
    {
        return;
    }
    let driver_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/browser");
    for package in ["playwright-core", "hls.js"] {
        if !driver_dir
            .join("node_modules")
            .join(package)
            .join("package.json")
            .exists()
        {
            assert!(
                std::env::var_os("RINGCAST_REQUIRE_TOOLS").is_none(),
                "{package} is not installed in tools/browser (run tools/install-test-deps.sh)"
            );
            eprintln!("skipping: tools/browser/node_modules/{package} is missing (tools/install-test-deps.sh installs it)");
            return;
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("uploads")).unwrap();
    // Outside the root: the tokens are never served.
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("{TOKEN}\n")).unwrap();
    let clip = make_clip(dir.path());
    let packager = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/package-hls.sh");
    let on_publish = format!("/uploads/*.mp4={}", packager.display());
    let server = Server::start(
        &root,
        &[
            "--ingest",
            "/uploads/",
            "--ingest-tokens",
            tokens.to_str().unwrap(),
            "--on-publish",
            &on_publish,
            "--admin",
            "127.0.0.1:0",
        ],
    );

    // The upload is published: 201 Created.
    let status = upload(&clip, &server.url("/uploads/clip.mp4"));
    assert_eq!(
        status,
        "201",
        "PUT /uploads/clip.mp4; server log: {:?}",
        server.log_lines()
    );

    // The job packages it: the master playlist appears.
    let master = "/uploads/clip/master.m3u8";
    let started = Instant::now();
    while server.get(master, "").status != 200 {
        assert!(
            started.elapsed() < PACKAGE_WAIT,
            "{master} not there {PACKAGE_WAIT:?} after the upload; server log: {:?}",
            server.log_lines()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!("packaged in {:?}", started.elapsed());

    // The admin listener counts the job as succeeded.
    let started = Instant::now();
    loop {
        let metrics = server.admin_get("/metrics");
        let succeeded = sample_sum(&metrics, "ringcast_jobs_succeeded_total");
        if succeeded.is_some_and(|n| n >= 1.0) {
            break;
        }
        assert!(
            started.elapsed() < METRICS_WAIT,
            "ringcast_jobs_succeeded_total is {succeeded:?}, not at least 1, {METRICS_WAIT:?} after {master} appeared:\n{metrics}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Chromium plays it with hls.js: both renditions, a second or more, no fatal error.
    let mut command = Command::new("node");
    command
        .arg(driver_dir.join("play-hls.mjs"))
        .arg(server.url(master))
        .args(["--timeout-ms", &DRIVER_TIMEOUT.as_millis().to_string()])
        .current_dir(&driver_dir);
    let (status, stdout, stderr) =
        bounded::run_driver(&mut command, DRIVER_TIMEOUT + Duration::from_secs(10));
    let report: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!("play-hls.mjs ({status}) printed no JSON report ({e}): {stdout}\n{stderr}")
    });
    assert_eq!(
        report["ok"], true,
        "hls.js did not play {master}: {report}\n{stderr}"
    );
    assert_eq!(
        report["levels"], 2,
        "hls.js levels in {master}: {report}\n{stderr}"
    );
    assert!(
        status.success(),
        "play-hls.mjs exited {status}: {report}\n{stderr}"
    );
}

/// Encodes the test clip into `scratch`.
fn make_clip(scratch: &Path) -> PathBuf {
    let clip = scratch.join("clip.mp4");
    let mut command = Command::new("ffmpeg");
    command
        .stdin(Stdio::null())
        .args(["-nostdin", "-y", "-v", "error"])
        .args([
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc2=size={CLIP_SIZE}:rate=25"),
        ])
        .args(["-f", "lavfi", "-i", "sine=frequency=440"])
        .args(["-t", CLIP_SECONDS])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ])
        .args(["-c:a", "aac", "-movflags", "+faststart"])
        .arg(&clip);
    bounded::finish_ok(spawn_captured(&mut command), "ffmpeg (clip)", TOOL_TIMEOUT);
    clip
}

/// `curl -T` with the bearer token; returns the status code curl saw.
fn upload(clip: &Path, url: &str) -> String {
    let mut command = Command::new("curl");
    command
        .stdin(Stdio::null())
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(["--max-time", &TOOL_TIMEOUT.as_secs().to_string()])
        .arg("-T")
        .arg(clip)
        .args(["-H", &format!("Authorization: Bearer {TOKEN}")])
        .arg(url);
    let out = bounded::finish_ok(
        spawn_captured(&mut command),
        "curl (upload)",
        TOOL_TIMEOUT + Duration::from_secs(5),
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The sum of every series of `name` (with or without labels) in the
/// exposition text, or None if there is none.
fn sample_sum(metrics: &str, name: &str) -> Option<f64> {
    let values: Vec<f64> = metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}
