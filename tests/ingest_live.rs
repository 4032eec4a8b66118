//! Live pushes from a real encoder: ffmpeg sends HLS (Bearer token in
//! `-headers`) and DASH (Basic credentials in the URL, since its DASH muxer
//! drops `-headers`) with PUT, chunked, while ffprobe and ffmpeg read the
//! live playlist back through ringcast.

mod common;

use common::{bounded, have_tool, Server};
use std::process::Command;
use std::time::{Duration, Instant};

const TOKEN: &str = "live-token-42";

fn server(dir: &std::path::Path) -> Server {
    std::fs::create_dir_all(dir.join("root/live")).unwrap();
    std::fs::write(dir.join("tokens"), format!("{TOKEN}\n")).unwrap();
    let tokens = dir.join("tokens");
    Server::start(
        &dir.join("root"),
        &[
            "--ingest",
            "/live/",
            "--ingest-tokens",
            tokens.to_str().unwrap(),
            "--access-log",
            dir.join("access.log").to_str().unwrap(),
        ],
    )
}

/// ffmpeg encoding a test pattern in real time for `seconds`, then `args`.
fn encoder(seconds: u32, args: &[&str]) -> std::process::Child {
    bounded::spawn_captured(
        Command::new("ffmpeg")
            .args([
                "-nostdin",
                "-v",
                "error",
                "-re",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=320x240:rate=25",
            ])
            .args([
                "-t",
                &seconds.to_string(),
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-g",
                "25",
            ])
            .args(args),
    )
}

fn wait_for(path: &std::path::Path, limit: Duration) {
    let deadline = Instant::now() + limit;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Decodes `frames` video frames from `url` through ringcast.
fn decodes(url: &str, frames: u32) -> bool {
    Command::new("timeout")
        .args(["20", "ffmpeg", "-nostdin", "-v", "error", "-i", url])
        .args(["-frames:v", &frames.to_string(), "-f", "null", "-"])
        .status()
        .is_ok_and(|s| s.success())
}

fn probes_h264(url: &str) -> bool {
    Command::new("timeout")
        .args([
            "20",
            "ffprobe",
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name",
            url,
        ])
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("h264"))
}

#[test]
fn ffmpeg_pushes_live_hls_that_plays_while_old_segments_are_deleted() {
    if !have_tool("ffmpeg") || !have_tool("ffprobe") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let playlist = server.url("/live/hls/index.m3u8");
    let child = encoder(
        10,
        &[
            "-f",
            "hls",
            "-method",
            "PUT",
            "-headers",
            &format!("Authorization: Bearer {TOKEN}\r\n"),
            "-hls_time",
            "1",
            "-hls_list_size",
            "3",
            "-hls_flags",
            "delete_segments",
            &playlist,
        ],
    );
    let live = dir.path().join("root/live/hls");
    wait_for(&live.join("index.m3u8"), Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(2));
    assert!(probes_h264(&playlist), "ffprobe reads the live playlist");
    assert!(decodes(&playlist, 10), "ffmpeg decodes the live stream");
    bounded::finish_ok(child, "the encoder", Duration::from_secs(60));
    let segments: Vec<String> = std::fs::read_dir(&live)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".ts"))
        .collect();
    assert!(!segments.is_empty());
    assert!(
        segments.len() <= 5,
        "old segments were deleted: {segments:?}"
    );
    assert!(!segments.contains(&"index0.ts".to_string()), "{segments:?}");
    let log = std::fs::read_to_string(dir.path().join("access.log")).unwrap_or_default();
    assert!(
        log.contains("\"DELETE /live/hls/index0.ts HTTP/1.1\" 204"),
        "{log}"
    );
    let names: Vec<_> = std::fs::read_dir(&live)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        names.iter().all(|n| !n.to_string_lossy().starts_with('.')),
        "{names:?}"
    );
}

#[test]
fn ffmpeg_pushes_live_dash_that_probes() {
    if !have_tool("ffmpeg") || !have_tool("ffprobe") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let url = format!(
        "http://ffmpeg:{TOKEN}@{}/live/dash/manifest.mpd",
        server.addr
    );
    let child = encoder(
        6,
        &[
            "-f",
            "dash",
            "-method",
            "PUT",
            "-seg_duration",
            "1",
            "-window_size",
            "3",
            &url,
        ],
    );
    let live = dir.path().join("root/live/dash");
    wait_for(&live.join("manifest.mpd"), Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(1));
    assert!(probes_h264(&server.url("/live/dash/manifest.mpd")));
    bounded::finish_ok(child, "the encoder", Duration::from_secs(60));
    assert!(live.join("init-stream0.m4s").exists());
    assert!(decodes(&server.url("/live/dash/manifest.mpd"), 10));
}
