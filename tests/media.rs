//! What players and CDNs expect, over loopback: CORS (simple and preflight),
//! Cache-Control on 200/206/304, precompressed sidecars, the --index page with
//! hostile file names, and --limit-rate pacing.

mod common;

use common::Server;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join("clip.mp4"), common::pattern(200_000)).unwrap();
    std::fs::write(root.join("seg1.m4s"), common::pattern(1000)).unwrap();
    std::fs::write(root.join("live.m3u8"), b"#EXTM3U\n#EXT-X-VERSION:7\n").unwrap();
    std::fs::write(root.join("live.m3u8.gz"), b"GZ-BYTES").unwrap();
    std::fs::write(root.join("live.m3u8.br"), b"BR-BYTES").unwrap();
    dir
}

#[test]
fn cors_preflight_and_simple_requests_header_by_header() {
    let dir = fixture();
    let server = Server::start(dir.path(), &["--cors", "https://player.example"]);
    let preflight = server.exchange(
        b"OPTIONS /clip.mp4 HTTP/1.1\r\nHost: t\r\nOrigin: https://player.example\r\n\
Access-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: range, if-range\r\n\r\n",
    );
    assert_eq!(preflight.status, 204);
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some("https://player.example")
    );
    assert_eq!(
        preflight.header("access-control-allow-methods"),
        Some("GET, HEAD")
    );
    let allowed = preflight
        .header("access-control-allow-headers")
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        allowed.contains("range") && allowed.contains("if-range"),
        "{allowed}"
    );
    assert!(preflight.header("access-control-max-age").is_some());
    assert_eq!(preflight.header("vary"), Some("Origin"));

    let ranged = server.get(
        "/clip.mp4",
        "Origin: https://player.example\r\nRange: bytes=0-99\r\n",
    );
    assert_eq!(ranged.status, 206);
    assert_eq!(
        ranged.header("access-control-allow-origin"),
        Some("https://player.example")
    );
    let exposed = ranged.header("access-control-expose-headers").unwrap();
    for name in ["Content-Range", "Content-Length", "Accept-Ranges", "ETag"] {
        assert!(exposed.contains(name), "{name} not exposed: {exposed}");
    }

    let stranger = server.get("/clip.mp4", "Origin: https://evil.example\r\n");
    assert_eq!(stranger.status, 200);
    assert_eq!(stranger.header("access-control-allow-origin"), None);

    let without = Server::start(dir.path(), &[]);
    let options = without
        .exchange(b"OPTIONS /clip.mp4 HTTP/1.1\r\nHost: t\r\nOrigin: https://x.example\r\n\r\n");
    assert_eq!(
        options.status, 405,
        "OPTIONS keeps today's behaviour without --cors"
    );
    assert_eq!(
        without
            .get("/clip.mp4", "Origin: https://x.example\r\n")
            .header("access-control-allow-origin"),
        None
    );
}

#[test]
fn cors_star_answers_every_origin() {
    let dir = fixture();
    let server = Server::start(dir.path(), &["--cors", "*"]);
    let response = server.get("/clip.mp4", "Origin: https://anyone.example\r\n");
    assert_eq!(response.header("access-control-allow-origin"), Some("*"));
    assert_eq!(response.header("vary"), None);
}

#[test]
fn cache_control_is_identical_on_200_206_and_304() {
    let dir = fixture();
    let server = Server::start(
        dir.path(),
        &[
            "--cache-control",
            ".m3u8=no-cache",
            "--cache-control",
            ".mp4=max-age=31536000, immutable",
            "--cache-control",
            ".m4s=max-age=31536000, immutable",
        ],
    );
    for (path, expected) in [
        ("/clip.mp4", "max-age=31536000, immutable"),
        ("/seg1.m4s", "max-age=31536000, immutable"),
        ("/live.m3u8", "no-cache"),
    ] {
        let full = server.get(path, "");
        let etag = full.header("etag").unwrap().to_string();
        let partial = server.get(path, "Range: bytes=0-9\r\n");
        let not_modified = server.get(path, &format!("If-None-Match: {etag}\r\n"));
        assert_eq!(
            (full.status, partial.status, not_modified.status),
            (200, 206, 304),
            "{path}"
        );
        for response in [&full, &partial, &not_modified] {
            assert_eq!(
                response.header("cache-control"),
                Some(expected),
                "{path} {}",
                response.status
            );
            assert_eq!(response.header_count("cache-control"), 1);
        }
    }
    assert_eq!(
        server.get("/missing.mp4", "").header("cache-control"),
        None,
        "errors are not cached by rule"
    );
}

#[test]
fn precompressed_sidecars_follow_accept_encoding() {
    let dir = fixture();
    let server = Server::start(dir.path(), &[]);
    let brotli = server.get("/live.m3u8", "Accept-Encoding: gzip, deflate, br\r\n");
    assert_eq!(brotli.body, b"BR-BYTES");
    assert_eq!(brotli.header("content-encoding"), Some("br"));
    assert_eq!(
        brotli.header("content-type"),
        Some("application/vnd.apple.mpegurl")
    );
    assert_eq!(brotli.header("vary"), Some("Accept-Encoding"));
    let gzip = server.get("/live.m3u8", "Accept-Encoding: gzip\r\n");
    assert_eq!(
        (gzip.body.as_slice(), gzip.header("content-encoding")),
        (&b"GZ-BYTES"[..], Some("gzip"))
    );
    assert_ne!(
        gzip.header("etag"),
        brotli.header("etag"),
        "each representation has its own ETag"
    );
    let identity = server.get("/live.m3u8", "");
    assert_eq!(identity.body, b"#EXTM3U\n#EXT-X-VERSION:7\n");
    assert_eq!(
        (identity.header("content-encoding"), identity.header("vary")),
        (None, Some("Accept-Encoding"))
    );
    let ranged = server.get(
        "/live.m3u8",
        "Accept-Encoding: gzip\r\nRange: bytes=0-6\r\n",
    );
    assert_eq!(
        (ranged.status, ranged.body.as_slice()),
        (206, &b"#EXTM3U"[..]),
        "a 206 is never a compressed slice"
    );
    assert_eq!(ranged.header("content-encoding"), None);
    let media = server.get("/clip.mp4", "Accept-Encoding: gzip, br\r\n");
    assert_eq!(
        (media.header("content-encoding"), media.header("vary")),
        (None, None),
        "media is never compressed"
    );
    // A stale sidecar (older than its original) is not served.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(dir.path().join("live.m3u8"), b"#EXTM3U\n#NEW\n").unwrap();
    let fresh = server.get("/live.m3u8", "Accept-Encoding: br, gzip\r\n");
    assert_eq!(fresh.body, b"#EXTM3U\n#NEW\n");
}

#[test]
fn index_page_lists_media_with_hostile_names_rendered_inert() {
    let dir = fixture();
    let hostile = [
        "<script>alert(1)<script>.mp4",
        "\"><img src=x onerror=alert(1)>.webm",
        "it's a \"quote\".mp4",
        "ünïcødé 🎬 spaces.mp4",
    ];
    for name in hostile {
        std::fs::write(dir.path().join(name), b"x").unwrap();
    }
    std::fs::create_dir(dir.path().join("season 1")).unwrap();
    let server = Server::start(dir.path(), &["--index"]);
    let page = server.get("/", "");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(page
        .header("content-security-policy")
        .unwrap()
        .starts_with("default-src 'none'"));
    let html = String::from_utf8(page.body).unwrap();
    assert!(
        !html.contains("<script") && !html.contains("<img"),
        "{html}"
    );
    assert!(html.contains("&lt;script&gt;alert(1)&lt;script&gt;.mp4"));
    assert!(html.contains("ünïcødé 🎬 spaces.mp4"));
    assert!(html.contains("<a href=\"/season%201/\">season 1/</a>"));
    // Every player's src is a URL that serves that very file.
    for src in html
        .split("src=\"")
        .skip(1)
        .map(|rest| &rest[..rest.find('"').unwrap()])
    {
        assert_eq!(server.get(src, "").status, 200, "{src}");
    }
    assert_eq!(server.get("/season%201/", "").status, 200);
    let plain = Server::start(dir.path(), &[]);
    assert_eq!(plain.get("/", "").status, 403, "no listing without --index");
}

#[test]
fn limit_rate_paces_within_five_percent() {
    let dir = tempfile::tempdir().unwrap();
    let len = 8 * 1024 * 1024;
    std::fs::write(dir.path().join("big.bin"), common::pattern(len)).unwrap();
    let rate = 1_000_000u64;
    let after = 500_000u64;
    let server = Server::start(
        dir.path(),
        &[
            "--limit-rate",
            &rate.to_string(),
            "--limit-rate-after",
            &after.to_string(),
        ],
    );
    let mut stream = server.connect();
    stream
        .write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let start = Instant::now();
    let mut received = 0u64;
    let window = Duration::from_secs(4);
    let mut paced_start = None;
    while start.elapsed() < window {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0);
        received += n as u64;
        if received >= after && paced_start.is_none() {
            paced_start = Some((Instant::now(), received));
        }
    }
    let (t0, at0) = paced_start.expect("the full-speed part arrived");
    let measured = (received - at0) as f64 / t0.elapsed().as_secs_f64();
    let error = (measured - rate as f64).abs() / rate as f64;
    eprintln!(
        "paced at {measured:.0} B/s for a {rate} B/s target ({:.1}% off)",
        error * 100.0
    );
    assert!(error < 0.05, "paced at {measured:.0} B/s, target {rate}");
}

/// nginx's `limit_rate`: the unpaced prefix goes out by the ordinary
/// zero-copy path, the paced part as sendfile pieces; no byte is copied
/// through user memory for a resident file, and every byte is right.
#[test]
fn paced_responses_stay_zero_copy_and_exact() {
    if std::env::var("RINGCAST_TEST_IO").as_deref() == Ok("direct") {
        return; // --io direct copies by design
    }
    let dir = tempfile::tempdir().unwrap();
    let small = common::pattern(2_500_000);
    let paced = common::pattern(1_200_000);
    std::fs::write(dir.path().join("small.bin"), &small).unwrap();
    std::fs::write(dir.path().join("paced.bin"), &paced).unwrap();
    // The page cache holds them (sendfile is only used on resident bytes).
    let _ = std::fs::read(dir.path().join("small.bin"));
    let _ = std::fs::read(dir.path().join("paced.bin"));
    let server = Server::start(
        dir.path(),
        &[
            "--admin",
            "127.0.0.1:0",
            "--limit-rate",
            "4000000",
            "--limit-rate-after",
            "1000000",
        ],
    );
    let zero_copy = || {
        let text = server.admin_get("/metrics");
        text.lines()
            .find(|l| l.starts_with("ringcast_body_bytes_total{path=\"zero_copy\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap()
    };
    let before = zero_copy();
    for _ in 0..3 {
        // Beyond --limit-rate-after: the first MB full speed, then paced.
        assert!(server.get("/small.bin", "").body == small);
    }
    let start = Instant::now();
    let whole = server.get("/paced.bin", "");
    let took = start.elapsed();
    assert!(whole.body == paced);
    // 200 KB past the unpaced MB at 4 MB/s: at least 50 ms.
    assert!(took >= Duration::from_millis(45), "not paced: {took:?}");
    let sent = zero_copy() - before;
    assert_eq!(
        sent,
        (3 * small.len() + paced.len()) as f64,
        "every body byte went by sendfile"
    );
}
