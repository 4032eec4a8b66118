//! Byte-level tests of the running server over loopback: raw requests in,
//! raw responses checked field by field and byte by byte.

mod common;

use common::{is_closed, multipart_parts, pattern, read_response, Server};
use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Duration;

const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
const VIDEO_LEN: usize = 3 * 1024 * 1024 + 17;

fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join("small.txt"), ALPHABET).unwrap();
    std::fs::write(root.join("video.mp4"), pattern(VIDEO_LEN)).unwrap();
    std::fs::write(root.join("empty.bin"), b"").unwrap();
    std::fs::write(root.join(".hidden"), b"secret").unwrap();
    std::fs::create_dir(root.join("sub")).unwrap();
    std::fs::write(root.join("sub/clip.webm"), b"webm").unwrap();
    symlink("small.txt", root.join("inside_link")).unwrap();
    symlink("/etc/passwd", root.join("outside_link")).unwrap();
    symlink("/etc", root.join("outdir")).unwrap();
    dir
}

fn server(root: &Path) -> Server {
    Server::start(root, &[])
}

#[test]
fn whole_file_arrives_byte_exact_with_every_validator() {
    let dir = fixture();
    let server = server(dir.path());
    let response = server.get("/video.mp4", "");
    assert_eq!(response.status, 200);
    assert_eq!(response.body, pattern(VIDEO_LEN));
    assert_eq!(response.header("content-type"), Some("video/mp4"));
    assert_eq!(
        response.header("content-length"),
        Some(VIDEO_LEN.to_string().as_str())
    );
    assert_eq!(response.header("accept-ranges"), Some("bytes"));
    let etag = response.header("etag").unwrap();
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "strong ETag: {etag}"
    );
    assert!(response.header("last-modified").unwrap().ends_with(" GMT"));
    assert!(response.header("date").unwrap().ends_with(" GMT"));
}

#[test]
fn head_sends_the_get_fields_without_a_body() {
    let dir = fixture();
    let server = server(dir.path());
    let mut stream = server.connect();
    stream
        .write_all(b"HEAD /video.mp4 HTTP/1.1\r\nHost: t\r\nRange: bytes=0-9\r\n\r\nGET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let head = read_response(&mut stream, true);
    assert_eq!(head.status, 200, "Range is ignored on HEAD");
    assert_eq!(
        head.header("content-length"),
        Some(VIDEO_LEN.to_string().as_str())
    );
    assert_eq!(head.header("content-range"), None);
    // The next response starts right after the head: no body bytes leaked.
    let next = read_response(&mut stream, false);
    assert_eq!(next.body, ALPHABET);
}

#[test]
fn single_ranges_rfc9110_14_1_2() {
    let dir = fixture();
    let server = server(dir.path());
    let cases = [
        ("bytes=0-4", "bytes 0-4/26", &ALPHABET[0..5]),
        ("bytes=20-", "bytes 20-25/26", &ALPHABET[20..]),
        ("bytes=-3", "bytes 23-25/26", &ALPHABET[23..]),
        ("bytes=-100", "bytes 0-25/26", ALPHABET),
        ("bytes=10-1000", "bytes 10-25/26", &ALPHABET[10..]),
        ("BYTES=0-0", "bytes 0-0/26", &ALPHABET[0..1]),
        ("bytes=0-99999999999999999999999", "bytes 0-25/26", ALPHABET),
    ];
    for (range, content_range, body) in cases {
        let response = server.get("/small.txt", &format!("Range: {range}\r\n"));
        assert_eq!(response.status, 206, "{range}");
        assert_eq!(
            response.header("content-range"),
            Some(content_range),
            "{range}"
        );
        assert_eq!(response.body, body, "{range}");
        assert_eq!(response.header("accept-ranges"), Some("bytes"));
    }
    let video = pattern(VIDEO_LEN);
    let response = server.get("/video.mp4", "Range: bytes=1000000-2999999\r\n");
    assert_eq!(response.body, &video[1_000_000..3_000_000]);
}

#[test]
fn unsatisfiable_and_ignored_ranges() {
    let dir = fixture();
    let server = server(dir.path());
    for range in [
        "bytes=26-",
        "bytes=30-40",
        "bytes=-0",
        "bytes=99999999999999999999999-",
    ] {
        let response = server.get("/small.txt", &format!("Range: {range}\r\n"));
        assert_eq!(response.status, 416, "{range}");
        assert_eq!(
            response.header("content-range"),
            Some("bytes */26"),
            "{range}"
        );
    }
    for range in ["bytes=5-2", "items=0-4", "bytes=abc", "bytes=0-1,x"] {
        let response = server.get("/small.txt", &format!("Range: {range}\r\n"));
        assert_eq!(response.status, 200, "{range}");
        assert_eq!(response.body, ALPHABET, "{range}");
    }
    let empty = server.get("/empty.bin", "Range: bytes=-5\r\n");
    assert_eq!((empty.status, empty.body.len()), (200, 0));
}

#[test]
fn multiple_ranges_are_multipart_byteranges() {
    let dir = fixture();
    let server = server(dir.path());
    let response = server.get("/video.mp4", "Range: bytes=0-9, 2000000-2065535,-5\r\n");
    assert_eq!(response.status, 206);
    assert!(response
        .header("content-type")
        .unwrap()
        .starts_with("multipart/byteranges; boundary="));
    assert_eq!(response.header("content-range"), None);
    let video = pattern(VIDEO_LEN);
    let len = VIDEO_LEN;
    let parts = multipart_parts(&response);
    assert_eq!(
        parts,
        vec![
            (format!("bytes 0-9/{len}"), video[..10].to_vec()),
            (
                format!("bytes 2000000-2065535/{len}"),
                video[2_000_000..2_065_536].to_vec()
            ),
            (
                format!("bytes {}-{}/{len}", len - 5, len - 1),
                video[len - 5..].to_vec()
            ),
        ]
    );
    // Overlapping and adjacent ranges coalesce into one plain 206.
    let merged = server.get("/small.txt", "Range: bytes=0-4,3-8,9-9\r\n");
    assert_eq!(merged.header("content-range"), Some("bytes 0-9/26"));
    assert_eq!(merged.body, &ALPHABET[..10]);
    // Many overlapping ranges never amplify the file.
    let many: Vec<String> = (0..60).map(|i| format!("{i}-25")).collect();
    let amplified = server.get(
        "/small.txt",
        &format!("Range: bytes={}\r\n", many.join(",")),
    );
    assert_eq!(amplified.body, ALPHABET);
}

#[test]
fn files_beyond_4_gib_are_ranged_correctly() {
    let dir = fixture();
    let big = dir.path().join("big.bin");
    let file = std::fs::File::create(&big).unwrap();
    let offset = 5u64 << 30;
    file.set_len(offset + 10).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, b"0123456789", offset).unwrap();
    let server = server(dir.path());
    let response = server.get("/big.bin", "Range: bytes=5368709120-\r\n");
    assert_eq!(response.status, 206);
    assert_eq!(
        response.header("content-range"),
        Some("bytes 5368709120-5368709129/5368709130")
    );
    assert_eq!(response.body, b"0123456789");
    let head = server.exchange(b"HEAD /big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(head.header("content-length"), Some("5368709130"));
}

#[test]
fn conditional_requests_rfc9110_13_2_2() {
    let dir = fixture();
    let server = server(dir.path());
    let first = server.get("/small.txt", "");
    let etag = first.header("etag").unwrap().to_string();
    let last_modified = first.header("last-modified").unwrap().to_string();
    let status = |headers: String| server.get("/small.txt", &headers).status;

    let not_modified = server.get("/small.txt", &format!("If-None-Match: {etag}\r\n"));
    assert_eq!(not_modified.status, 304);
    assert_eq!(not_modified.header("etag"), Some(etag.as_str()));
    assert_eq!(not_modified.header("content-type"), None);
    assert_eq!(not_modified.header("content-length"), None);
    assert_eq!(status(format!("If-None-Match: W/{etag}\r\n")), 304);
    assert_eq!(status("If-None-Match: *\r\n".into()), 304);
    assert_eq!(
        status(format!("If-Modified-Since: {last_modified}\r\n")),
        304
    );
    assert_eq!(
        status(format!(
            "If-None-Match: \"x\"\r\nIf-Modified-Since: {last_modified}\r\n"
        )),
        200
    );
    assert_eq!(status("If-Match: \"x\"\r\n".into()), 412);
    assert_eq!(status(format!("If-Match: W/{etag}\r\n")), 412);
    assert_eq!(status(format!("If-Match: {etag}\r\n")), 200);
    assert_eq!(
        status("If-Unmodified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n".into()),
        412
    );
    assert_eq!(server.get("/missing", "If-Match: \"x\"\r\n").status, 404);

    let ranged = |if_range: &str| {
        server.get(
            "/small.txt",
            &format!("Range: bytes=0-4\r\nIf-Range: {if_range}\r\n"),
        )
    };
    assert_eq!(ranged(&etag).status, 206);
    assert_eq!(ranged("\"stale\"").status, 200);
    assert_eq!(ranged(&format!("W/{etag}")).status, 200);
    assert_eq!(ranged("Thu, 01 Jan 1970 00:00:00 GMT").body, ALPHABET);
}

#[test]
fn if_range_with_a_strong_date_keeps_the_range() {
    let dir = fixture();
    let file = std::fs::File::options()
        .write(true)
        .open(dir.path().join("small.txt"))
        .unwrap();
    file.set_modified(std::time::SystemTime::now() - Duration::from_secs(60))
        .unwrap();
    let server = server(dir.path());
    let last_modified = server
        .get("/small.txt", "")
        .header("last-modified")
        .unwrap()
        .to_string();
    let response = server.get(
        "/small.txt",
        &format!("Range: bytes=0-4\r\nIf-Range: {last_modified}\r\n"),
    );
    assert_eq!(
        (response.status, response.body.as_slice()),
        (206, &ALPHABET[..5])
    );
}

#[test]
fn replacing_a_file_changes_its_etag() {
    let dir = fixture();
    let server = server(dir.path());
    let before = server
        .get("/small.txt", "")
        .header("etag")
        .unwrap()
        .to_string();
    let tmp = dir.path().join("small.tmp");
    std::fs::write(&tmp, b"new content").unwrap();
    std::fs::rename(&tmp, dir.path().join("small.txt")).unwrap();
    let after = server.get("/small.txt", &format!("If-None-Match: {before}\r\n"));
    assert_eq!(after.status, 200);
    assert_eq!(after.body, b"new content");
    assert_ne!(after.header("etag").unwrap(), before);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let dir = fixture();
    let server = server(dir.path());
    let mut stream = server.connect();
    stream
        .write_all(
            b"GET /small.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=0-1\r\n\r\n\
GET /missing HTTP/1.1\r\nHost: t\r\n\r\n\
GET /video.mp4 HTTP/1.1\r\nHost: t\r\n\r\n\
GET /small.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=-2\r\n\r\n",
        )
        .unwrap();
    assert_eq!(read_response(&mut stream, false).body, b"ab");
    assert_eq!(read_response(&mut stream, false).status, 404);
    assert_eq!(read_response(&mut stream, false).body.len(), VIDEO_LEN);
    assert_eq!(read_response(&mut stream, false).body, b"yz");
}

/// The server reads through io_uring RECVs armed while it answers; a burst
/// larger than its read buffer must come through whole, in order, however
/// the RECVs split it (the excess of one RECV is kept for the next read).
#[test]
fn a_pipelined_burst_after_an_idle_turn_loses_no_request() {
    let dir = fixture();
    let server = server(dir.path());
    let mut stream = server.connect();
    for round in 0..3 {
        // Each burst arrives while the connection waits, after a response.
        let mut burst = Vec::new();
        for i in 0..120 {
            let from = (i + round) % 26;
            let request =
                format!("GET /small.txt HTTP/1.1\r\nHost: t\r\nRange: bytes={from}-{from}\r\n\r\n");
            burst.extend_from_slice(request.as_bytes());
        }
        assert!(
            burst.len() > 6 * 1024,
            "larger than a RECV and the read buffer"
        );
        std::thread::sleep(Duration::from_millis(20));
        stream.write_all(&burst).unwrap();
        for i in 0..120 {
            let from = (i + round) % 26;
            let response = read_response(&mut stream, false);
            assert_eq!(response.status, 206, "round {round}, request {i}");
            assert_eq!(
                response.body,
                [b'a' + from as u8],
                "round {round}, request {i}"
            );
        }
    }
}

#[test]
fn a_request_split_into_single_bytes_is_answered() {
    let dir = fixture();
    let server = server(dir.path());
    let mut stream = server.connect();
    stream.set_nodelay(true).unwrap();
    for byte in b"GET /small.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=1-2\r\n\r\n" {
        stream.write_all(&[*byte]).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(read_response(&mut stream, false).body, b"bc");
}

#[test]
fn request_bodies_are_skipped_so_the_next_request_parses() {
    let dir = fixture();
    let server = server(dir.path());
    let mut stream = server.connect();
    stream
        .write_all(
            b"GET /small.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello\
GET /small.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
GET /small.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=0-0\r\n\r\n",
        )
        .unwrap();
    assert_eq!(read_response(&mut stream, false).body, ALPHABET);
    assert_eq!(read_response(&mut stream, false).body, ALPHABET);
    assert_eq!(read_response(&mut stream, false).body, b"a");
}

#[test]
fn connection_persistence_rfc9112_9_3() {
    let dir = fixture();
    let server = server(dir.path());

    let mut stream = server.connect();
    stream
        .write_all(b"GET /small.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let response = read_response(&mut stream, false);
    assert_eq!(response.header("connection"), Some("close"));
    assert!(is_closed(&mut stream));

    let mut stream = server.connect();
    stream
        .write_all(b"GET /small.txt HTTP/1.0\r\n\r\n")
        .unwrap();
    read_response(&mut stream, false);
    assert!(is_closed(&mut stream), "HTTP/1.0 closes by default");

    let mut stream = server.connect();
    let keep = b"GET /small.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    stream.write_all(keep).unwrap();
    assert_eq!(
        read_response(&mut stream, false).header("connection"),
        Some("keep-alive")
    );
    stream.write_all(keep).unwrap();
    assert_eq!(read_response(&mut stream, false).body, ALPHABET);

    // Errors that leave framing intact keep the connection.
    let mut stream = server.connect();
    stream
        .write_all(b"DELETE /small.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let refused = read_response(&mut stream, false);
    assert_eq!(
        (refused.status, refused.header("allow")),
        (405, Some("GET, HEAD"))
    );
    stream
        .write_all(b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut stream, false).status, 200);
}

#[test]
fn malformed_requests_get_400_and_close() {
    let dir = fixture();
    let server = server(dir.path());
    let cases: &[&[u8]] = &[
        b"GET /small.txt HTTP/1.1\r\n\r\n",
        b"GET /small.txt HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET /small.txt HTTP/1.1\r\nHost: t\r\nX: a\r\n folded\r\n\r\n",
        b"GET /small.txt HTTP/1.1\r\nHost: t\r\nno-colon\r\n\r\n",
        b"GET /small.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET /small.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"GET /small.txt HTTP/1.1\r\nHost: t\r\nX: a\x00b\r\n\r\n",
        b"GET /sm\x01all.txt HTTP/1.1\r\nHost: t\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
    ];
    for raw in cases {
        let mut stream = server.connect();
        stream.write_all(raw).unwrap();
        let response = read_response(&mut stream, false);
        assert_eq!(response.status, 400, "{:?}", String::from_utf8_lossy(raw));
        assert_eq!(response.header("connection"), Some("close"));
        assert!(is_closed(&mut stream));
    }
}

#[test]
fn methods_versions_and_limits() {
    let dir = fixture();
    let server = server(dir.path());
    let status = |raw: &str| server.exchange(raw.as_bytes()).status;
    assert_eq!(
        status("POST /small.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"),
        405
    );
    assert_eq!(status("OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n"), 405);
    assert_eq!(status("BREW /small.txt HTTP/1.1\r\nHost: t\r\n\r\n"), 501);
    assert_eq!(status("GET /small.txt HTTP/2.0\r\nHost: t\r\n\r\n"), 505);
    assert_eq!(status("GET /small.txt HTTX/1.1\r\nHost: t\r\n\r\n"), 400);
    let long = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(9000));
    assert_eq!(status(&long), 414);
    let big = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX: {}\r\n\r\n",
        "a".repeat(17000)
    );
    assert_eq!(status(&big), 431);
    let many: String = (0..150).map(|i| format!("X-{i}: v\r\n")).collect();
    assert_eq!(
        status(&format!("GET / HTTP/1.1\r\nHost: t\r\n{many}\r\n")),
        431
    );
}

#[test]
fn nothing_outside_the_root_is_served() {
    let dir = fixture();
    let server = server(dir.path());
    let attacks = [
        "/../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
        "/sub/../../etc/passwd",
        "/..%2f..%2fetc/passwd",
        "/..\\..\\etc\\passwd",
        "/%5c..%5c..%5cetc%5cpasswd",
        "/small.txt%00.mp4",
        "/etc/passwd",
        "/outside_link",
        "/outdir/passwd",
        "//etc/passwd",
        "/.hidden",
        "/%2ehidden",
        "/sub",
        "/sub/",
        "/",
    ];
    for target in attacks {
        let response = server.get(target, "");
        assert!(
            matches!(response.status, 400 | 403 | 404),
            "{target}: {}",
            response.status
        );
        assert!(
            !String::from_utf8_lossy(&response.body).contains("root:"),
            "{target}"
        );
        assert!(
            !String::from_utf8_lossy(&response.body).contains("clip.webm"),
            "{target}"
        );
    }
    assert_eq!(server.get("/inside_link", "").body, ALPHABET);
    assert_eq!(server.get("/%73mall.txt?x=/../..", "").body, ALPHABET);
    let absolute =
        server.exchange(b"GET http://elsewhere/sub/clip.webm HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(
        (absolute.status, absolute.header("content-type")),
        (200, Some("video/webm"))
    );
}

#[test]
fn follow_symlinks_flag_allows_outside_targets() {
    let dir = fixture();
    let server = Server::start(dir.path(), &["--follow-symlinks"]);
    assert_eq!(server.get("/outside_link", "").status, 200);
    assert_eq!(
        server.get("/.hidden", "").status,
        404,
        "dotfiles stay hidden"
    );
}

#[test]
fn every_core_serves_its_own_connections() {
    let dir = fixture();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let cpus = format!("0-{}", cores - 1);
    let server = Server::start(dir.path(), &["--cpus", &cpus]);
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let addr = server.addr;
            std::thread::spawn(move || {
                for _ in 0..25 {
                    let mut stream = std::net::TcpStream::connect(addr).unwrap();
                    stream.set_read_timeout(Some(common::IO_TIMEOUT)).unwrap();
                    stream
                        .write_all(b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n")
                        .unwrap();
                    assert_eq!(read_response(&mut stream, false).body, ALPHABET);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
}

#[test]
fn long_responses_are_uncorked_at_their_end() {
    // Long sendfile responses go out under TCP_CORK; if a response ended
    // still corked, its last partial segment (and the next small response)
    // would wait for the kernel's 200 ms cork timer.
    let dir = fixture();
    let server = server(dir.path());
    let _ = server.get("/video.mp4", ""); // resident, so it takes the sendfile path
    let mut stream = server.connect();
    let started = std::time::Instant::now();
    for _ in 0..5 {
        stream
            .write_all(b"GET /video.mp4 HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        assert_eq!(read_response(&mut stream, false).body.len(), VIDEO_LEN);
        stream
            .write_all(b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        assert_eq!(read_response(&mut stream, false).body, ALPHABET);
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_millis(900),
        "10 exchanges took {elapsed:?}: a cork was left on"
    );
}
