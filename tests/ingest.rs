//! Uploads over loopback: PUT and DELETE beneath `--ingest` prefixes, with
//! every way an upload can go wrong leaving the tree exactly as it was,
//! atomic replacement under concurrent GETs, and `--on-publish` jobs.

mod common;

use common::{pattern, read_response, Response, Server};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const TOKEN: &str = "test-token-123";

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("root/live/old")).unwrap();
        std::fs::write(dir.path().join("root/live/old/keep.ts"), b"old bytes").unwrap();
        std::fs::create_dir_all(dir.path().join("root/vod")).unwrap();
        std::fs::write(dir.path().join("root/vod/movie.mp4"), b"movie").unwrap();
        std::fs::write(dir.path().join("tokens"), format!("# uploaders\n{TOKEN}\n")).unwrap();
        Fixture { dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn tokens(&self) -> PathBuf {
        self.dir.path().join("tokens")
    }

    fn server(&self, extra: &[&str]) -> Server {
        let tokens = self.tokens();
        let mut flags = vec![
            "--ingest",
            "/live/",
            "--ingest",
            "/uploads/",
            "--ingest-tokens",
            tokens.to_str().unwrap(),
            "--upload-timeout",
            "1s",
            "--max-upload",
            "4000000",
        ];
        flags.extend(extra);
        Server::start(&self.root(), &flags)
    }
}

/// Every path under `root` with its bytes (directories as `None`).
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let relative = path.strip_prefix(root).unwrap().to_path_buf();
            if entry.file_type().unwrap().is_dir() {
                out.insert(relative, None);
                stack.push(path);
            } else {
                out.insert(relative, Some(std::fs::read(&path).unwrap()));
            }
        }
    }
    out
}

/// Waits (briefly: temporaries are removed off the serving core) for the
/// tree to equal `before`, and fails with the difference if it does not.
fn assert_untouched(root: &Path, before: &BTreeMap<PathBuf, Option<Vec<u8>>>, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = snapshot(root);
        if now == *before {
            return;
        }
        if Instant::now() > deadline {
            let added: Vec<_> = now.keys().filter(|k| !before.contains_key(*k)).collect();
            let changed: Vec<_> = before
                .iter()
                .filter(|(k, v)| now.get(*k) != Some(v))
                .map(|(k, _)| k)
                .collect();
            panic!("{what}: the tree changed: added {added:?}, changed or removed {changed:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn auth() -> String {
    format!("Authorization: Bearer {TOKEN}\r\n")
}

fn put(server: &Server, path: &str, body: &[u8], headers: &str) -> Response {
    let mut raw = format!(
        "PUT {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n{headers}\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    server.exchange(&raw)
}

fn chunked(body: &[u8], piece: usize) -> Vec<u8> {
    let mut framed = Vec::new();
    for chunk in body.chunks(piece) {
        framed.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        framed.extend_from_slice(chunk);
        framed.extend_from_slice(b"\r\n");
    }
    framed.extend_from_slice(b"0\r\n\r\n");
    framed
}

#[test]
fn put_creates_replaces_and_delete_removes() {
    let fixture = Fixture::new();
    let server = fixture.server(&[]);
    let small = b"#EXTM3U\n".to_vec();
    let response = put(&server, "/live/new/deep/index.m3u8", &small, &auth());
    assert_eq!(response.status, 201, "{:?}", response.headers);
    assert_eq!(response.header("content-length"), Some("0"));
    assert_eq!(
        std::fs::read(fixture.root().join("live/new/deep/index.m3u8")).unwrap(),
        small
    );
    assert_eq!(server.get("/live/new/deep/index.m3u8", "").body, small);

    // A body big enough to be spliced, replacing the first.
    let big = pattern(3_000_000);
    let response = put(&server, "/live/new/deep/index.m3u8", &big, &auth());
    assert_eq!(response.status, 204);
    assert_eq!(
        std::fs::read(fixture.root().join("live/new/deep/index.m3u8")).unwrap(),
        big
    );
    let got = server.get("/live/new/deep/index.m3u8", "");
    assert!(got.body == big, "GET after a replace serves the new file");

    // Chunked, as ffmpeg sends.
    let mut raw = format!(
        "PUT /uploads/c.bin HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n{}\r\n",
        auth()
    )
    .into_bytes();
    raw.extend_from_slice(&chunked(&big, 70_001));
    assert_eq!(server.exchange(&raw).status, 201);
    assert!(std::fs::read(fixture.root().join("uploads/c.bin")).unwrap() == big);

    // An empty file needs Content-Length: 0.
    assert_eq!(put(&server, "/live/empty", b"", &auth()).status, 201);
    assert_eq!(
        std::fs::metadata(fixture.root().join("live/empty"))
            .unwrap()
            .len(),
        0
    );

    let delete = |path: &str| {
        server
            .exchange(format!("DELETE {path} HTTP/1.1\r\nHost: t\r\n{}\r\n", auth()).as_bytes())
            .status
    };
    assert_eq!(delete("/live/new/deep/index.m3u8"), 204);
    assert!(!fixture.root().join("live/new/deep/index.m3u8").exists());
    assert_eq!(delete("/live/new/deep/index.m3u8"), 404);
    assert_eq!(delete("/live/nothing/here.ts"), 404);
    assert_eq!(delete("/live/new"), 409, "a directory is never removed");
    assert!(fixture.root().join("live/new/deep").is_dir());
}

#[test]
fn refused_and_broken_uploads_leave_the_tree_untouched() {
    let fixture = Fixture::new();
    let server = fixture.server(&[]);
    let root = fixture.root();
    let before = snapshot(&root);
    let body = pattern(200_000);
    let refusals: &[(&str, &str, u16, &str)] = &[
        ("/live/a.ts", "", 401, "no token"),
        (
            "/live/a.ts",
            "Authorization: Bearer wrong\r\n",
            401,
            "a wrong token",
        ),
        (
            "/live/a.ts",
            "Authorization: Basic dTp3cm9uZw==\r\n",
            401,
            "a wrong Basic password",
        ),
        (
            "/live/a.ts",
            "Authorization: Digest x\r\n",
            401,
            "another scheme",
        ),
        ("/vod/a.ts", &auth(), 405, "outside the prefixes"),
        ("/live", &auth(), 405, "the prefix itself"),
        (
            "/live/../vod/movie.mp4",
            &auth(),
            405,
            "a .. that leaves the prefix",
        ),
        ("/../outside.ts", &auth(), 400, "a .. above the root"),
        (
            "/live/%2e%2e/%2e%2e/outside.ts",
            &auth(),
            400,
            "an encoded .. above the root",
        ),
        (
            "/live/..%2f..%2foutside.ts",
            &auth(),
            400,
            "encoded slashes",
        ),
        ("/live/.hidden.ts", &auth(), 404, "a dotfile"),
        (
            "/live/.ringcast-upload.1.0-0",
            &auth(),
            404,
            "a temporary file's name",
        ),
        ("/live/a%00.ts", &auth(), 400, "a NUL"),
        ("/live/old", &auth(), 409, "a directory"),
    ];
    for (path, headers, status, what) in refusals {
        let response = put(&server, path, &body, headers);
        assert_eq!(response.status, *status, "{what}");
        if *status == 401 {
            assert!(response
                .header("www-authenticate")
                .is_some_and(|v| v.starts_with("Bearer")));
        }
        if *status == 405 {
            assert!(
                response.header("allow").is_some(),
                "{what}: 405 needs Allow"
            );
        }
        assert_untouched(&root, &before, what);
    }

    // Too large by Content-Length: refused before a byte of the body.
    let mut stream = server.connect();
    write!(
        stream,
        "PUT /live/big.ts HTTP/1.1\r\nHost: t\r\nContent-Length: 4000001\r\n{}\r\n",
        auth()
    )
    .unwrap();
    let response = read_response(&mut stream, false);
    assert_eq!(response.status, 413);
    assert_untouched(&root, &before, "Content-Length over --max-upload");

    // Too large, chunked: cut off when it passes the limit.
    let mut stream = server.connect();
    write!(
        stream,
        "PUT /live/big.ts HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n{}\r\n",
        auth()
    )
    .unwrap();
    let framed = chunked(&pattern(5_000_000), 100_000);
    let _ = stream.write_all(&framed);
    let response = read_response(&mut stream, false);
    assert_eq!(response.status, 413);
    assert_untouched(&root, &before, "a chunked body over --max-upload");

    // Without framing: 411.
    let response =
        server.exchange(format!("PUT /live/x.ts HTTP/1.1\r\nHost: t\r\n{}\r\n", auth()).as_bytes());
    assert_eq!(response.status, 411);

    // Bad chunked framing: 400.
    let mut raw = format!(
        "PUT /live/x.ts HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n{}\r\n",
        auth()
    )
    .into_bytes();
    raw.extend_from_slice(b"zz\r\nhello\r\n0\r\n\r\n");
    assert_eq!(server.exchange(&raw).status, 400);
    assert_untouched(&root, &before, "bad chunked framing");

    // Replacing an existing file, then vanishing mid-body, small and
    // spliced, by Content-Length and chunked: the old file stays whole.
    for (len, is_chunked) in [(100_000, false), (3_000_000, false), (3_000_000, true)] {
        let mut stream = server.connect();
        let framing = if is_chunked {
            "Transfer-Encoding: chunked".to_string()
        } else {
            format!("Content-Length: {len}")
        };
        write!(
            stream,
            "PUT /live/old/keep.ts HTTP/1.1\r\nHost: t\r\n{framing}\r\n{}\r\n",
            auth()
        )
        .unwrap();
        let payload = if is_chunked {
            chunked(&pattern(len), 65_536)
        } else {
            pattern(len)
        };
        stream.write_all(&payload[..payload.len() / 2]).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        stream.shutdown(Shutdown::Both).unwrap();
        drop(stream);
        assert_untouched(
            &root,
            &before,
            &format!("a client gone mid-body ({len}, chunked {is_chunked})"),
        );
    }

    // Stalling mid-body: --upload-timeout (1s) ends it with 408.
    for is_chunked in [false, true] {
        let mut stream = server.connect();
        let framing = if is_chunked {
            "Transfer-Encoding: chunked"
        } else {
            "Content-Length: 3000000"
        };
        write!(
            stream,
            "PUT /live/old/keep.ts HTTP/1.1\r\nHost: t\r\n{framing}\r\n{}\r\n",
            auth()
        )
        .unwrap();
        let payload = if is_chunked {
            let mut framed = chunked(&pattern(500_000), 65_536);
            framed.truncate(framed.len() - b"0\r\n\r\n".len());
            framed
        } else {
            pattern(500_000)
        };
        stream.write_all(&payload).unwrap();
        let started = Instant::now();
        let response = read_response(&mut stream, false);
        assert_eq!(response.status, 408, "stalled, chunked {is_chunked}");
        assert!(started.elapsed() < Duration::from_secs(4));
        assert_untouched(
            &root,
            &before,
            &format!("a stalled upload (chunked {is_chunked})"),
        );
    }
    // The server is still serving, and nothing was left behind.
    assert_eq!(server.get("/live/old/keep.ts", "").body, b"old bytes");
}

#[test]
fn expect_100_continue_and_keep_alive() {
    let fixture = Fixture::new();
    let server = fixture.server(&[]);
    let mut stream = server.connect();
    let body = pattern(300_000);
    write!(
        stream,
        "PUT /live/e.ts HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nExpect: 100-continue\r\n{}\r\n",
        body.len(),
        auth()
    )
    .unwrap();
    let interim = read_response(&mut stream, true);
    assert_eq!(interim.status, 100);
    stream.write_all(&body).unwrap();
    // The next request pipelined right behind the body.
    stream
        .write_all(b"GET /live/e.ts HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let response = read_response(&mut stream, false);
    assert_eq!(response.status, 201);
    assert!(response.header("connection").is_none());
    let response = read_response(&mut stream, false);
    assert_eq!(response.status, 200);
    assert!(response.body == body);

    // A refused upload with Expect gets its refusal without 100, and no
    // body is waited for.
    let mut stream = server.connect();
    write!(
        stream,
        "PUT /live/e.ts HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n"
    )
    .unwrap();
    assert_eq!(read_response(&mut stream, false).status, 401);
}

#[test]
fn free_space_limits_give_507_and_publish_nothing() {
    let fixture = Fixture::new();
    let server = fixture.server(&["--ingest-min-free", "1000000000000000"]);
    let before = snapshot(&fixture.root());
    assert_eq!(put(&server, "/live/a.ts", b"data", &auth()).status, 507);
    assert_untouched(&fixture.root(), &before, "--ingest-min-free");
}

#[test]
fn a_full_disk_gives_507_and_publishes_nothing() {
    let fixture = Fixture::new();
    let root = fixture.root();
    let disk = root.join("live/small");
    std::fs::create_dir_all(&disk).unwrap();
    let mounted = std::process::Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "size=1m",
            "tmpfs",
            disk.to_str().unwrap(),
        ])
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipping: cannot mount a small tmpfs (needs root)");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(disk.clone());
    let server = fixture.server(&[]);
    let before = snapshot(&root);
    // Chunked, so the free-space check cannot refuse it ahead.
    for len in [3_000_000, 1_200_000] {
        let mut raw = format!(
            "PUT /live/small/a.bin HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n{}\r\n",
            auth()
        )
        .into_bytes();
        raw.extend_from_slice(&chunked(&pattern(len), 65_536));
        let mut stream = server.connect();
        let _ = stream.write_all(&raw);
        assert_eq!(read_response(&mut stream, false).status, 507);
        assert_untouched(&root, &before, "ENOSPC");
    }
    // By Content-Length it is refused before writing.
    assert_eq!(
        put(&server, "/live/small/b.bin", &pattern(2_000_000), &auth()).status,
        507
    );
    assert_untouched(&root, &before, "Content-Length above the free space");
}

#[test]
fn concurrent_gets_see_a_whole_old_or_new_file_during_replaces() {
    let fixture = Fixture::new();
    let server = fixture.server(&["--cpus", "0,1"]);
    let old = pattern(1 << 20);
    let new: Vec<u8> = pattern((3 << 20) / 2).iter().map(|b| b ^ 0x5a).collect();
    assert_eq!(put(&server, "/live/one.bin", &old, &auth()).status, 201);
    let addr = server.addr;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (old, new, stop) = (old.clone(), new.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut seen = 0;
                while seen < 25 || !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let mut stream = TcpStream::connect(addr).unwrap();
                    stream
                        .set_read_timeout(Some(Duration::from_secs(5)))
                        .unwrap();
                    stream
                        .write_all(b"GET /live/one.bin HTTP/1.1\r\nHost: t\r\n\r\n")
                        .unwrap();
                    let response = read_response(&mut stream, false);
                    assert_eq!(response.status, 200);
                    assert!(
                        response.body == old || response.body == new,
                        "a GET saw {} bytes that are neither whole file",
                        response.body.len()
                    );
                    seen += 1;
                }
                seen
            })
        })
        .collect();
    for i in 0..100 {
        let body = if i % 2 == 0 { &new } else { &old };
        assert_eq!(put(&server, "/live/one.bin", body, &auth()).status, 204);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let gets: usize = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert!(gets >= 100, "{gets} GETs");
    let names: Vec<_> = std::fs::read_dir(fixture.root().join("live"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| !n.to_string_lossy().starts_with(".ringcast-upload")),
        "{names:?}"
    );
}

#[test]
fn tokens_are_reread_on_sighup_and_leftovers_swept_at_start() {
    let fixture = Fixture::new();
    // A temporary file of a process that no longer exists.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = gone.id();
    gone.wait().unwrap();
    let stale = fixture
        .root()
        .join(format!("live/old/.ringcast-upload.{dead_pid}.0-7"));
    std::fs::write(&stale, b"half").unwrap();
    let server = fixture.server(&[]);
    assert!(
        !stale.exists(),
        "a crashed upload's temporary file is removed at start"
    );

    std::fs::write(fixture.tokens(), "rotated-token\n").unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.pid() as i32),
        nix::sys::signal::SIGHUP,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while put(
        &server,
        "/live/r.ts",
        b"x",
        "Authorization: Bearer rotated-token\r\n",
    )
    .status
        != 201
    {
        assert!(Instant::now() < deadline, "the new token never worked");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(put(&server, "/live/r.ts", b"x", &auth()).status, 401);
    // A broken file keeps the tokens in force.
    std::fs::write(fixture.tokens(), "\n\n").unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.pid() as i32),
        nix::sys::signal::SIGHUP,
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        put(
            &server,
            "/live/r.ts",
            b"y",
            "Authorization: Bearer rotated-token\r\n"
        )
        .status,
        204
    );
    assert!(
        !server.log_lines().join("\n").contains("rotated-token"),
        "a secret was logged"
    );
}

fn script(dir: &Path, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("job.sh");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn metric(server: &Server, name: &str) -> u64 {
    server
        .admin_get("/metrics")
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

#[test]
fn publishing_runs_bounded_jobs_with_the_file_as_argument() {
    let fixture = Fixture::new();
    let marks = fixture.dir.path().join("marks");
    std::fs::create_dir(&marks).unwrap();
    let job = script(
        fixture.dir.path(),
        &format!(
            "sleep 1; echo \"$1\" >> {}/ran; echo 'packaged it' >&2",
            marks.display()
        ),
    );
    let rule = format!("/uploads/*.mp4={}", job.display());
    let server = fixture.server(&[
        "--on-publish",
        &rule,
        "--jobs",
        "1",
        "--job-queue",
        "1",
        "--admin",
        "127.0.0.1:0",
    ]);
    assert_eq!(put(&server, "/uploads/a.mp4", b"a", &auth()).status, 201);
    assert_eq!(put(&server, "/uploads/b.mp4", b"b", &auth()).status, 201);
    let before = snapshot(&fixture.root());
    let refused = put(&server, "/uploads/c.mp4", b"c", &auth());
    assert_eq!(refused.status, 503, "one running and one queued fill it");
    assert!(refused.header("retry-after").is_some());
    assert_untouched(
        &fixture.root(),
        &before,
        "an upload refused for a full job queue",
    );
    // Not matching the pattern: no job, no limit.
    assert_eq!(
        put(&server, "/uploads/notes.txt", b"n", &auth()).status,
        201
    );
    assert_eq!(metric(&server, "ringcast_jobs_running"), 1);
    assert_eq!(metric(&server, "ringcast_jobs_queued"), 1);

    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(&server, "ringcast_jobs_succeeded_total") < 2 {
        assert!(Instant::now() < deadline, "the jobs never finished");
        std::thread::sleep(Duration::from_millis(200));
    }
    let ran = std::fs::read_to_string(marks.join("ran")).unwrap();
    let root = fixture.root().canonicalize().unwrap();
    assert_eq!(
        ran,
        format!(
            "{}\n{}\n",
            root.join("uploads/a.mp4").display(),
            root.join("uploads/b.mp4").display()
        )
    );
    assert_eq!(metric(&server, "ringcast_jobs_failed_total"), 0);
    let stats = server.admin_get("/stats");
    assert!(stats.contains("\"state\":\"succeeded\""), "{stats}");
    assert!(
        server.log_lines().iter().any(|l| l.contains("packaged it")),
        "the job's stderr reaches the log"
    );
    assert_eq!(put(&server, "/uploads/c.mp4", b"c", &auth()).status, 201);
}

#[test]
fn bad_ingest_flags_are_refused_at_start() {
    let fixture = Fixture::new();
    let run = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_ringcast"))
            .args([
                "--root",
                fixture.root().to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
            ])
            .args(args)
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let tokens = fixture.tokens();
    let tokens = tokens.to_str().unwrap();
    let (code, err) = run(&["--ingest", "/live/"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--ingest-tokens"), "{err}");
    let (code, err) = run(&[
        "--ingest",
        "/live/",
        "--ingest-tokens",
        "/nonexistent/tokens",
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--ingest-tokens /nonexistent/tokens"), "{err}");
    let (code, err) = run(&[
        "--ingest",
        "/live/",
        "--ingest-tokens",
        tokens,
        "--on-publish",
        "/vod/*.mp4=/bin/true",
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("beneath an --ingest prefix"), "{err}");
    let (code, err) = run(&[
        "--ingest",
        "/live/",
        "--ingest-tokens",
        tokens,
        "--on-publish",
        "/live/*.mp4=/no/such/tool",
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no such program"), "{err}");
    let (code, err) = run(&["--ingest", "live", "--ingest-tokens", tokens]);
    assert_eq!(code, Some(2), "{err}");
}

#[test]
fn a_refusal_is_read_by_a_client_still_sending() {
    let fixture = Fixture::new();
    let server = fixture.server(&[]);
    // No token and a big body the client sends without waiting: the 401
    // must arrive intact, not be lost to a reset.
    let mut stream = server.connect();
    write!(
        stream,
        "PUT /live/x.ts HTTP/1.1\r\nHost: t\r\nContent-Length: 3000000\r\n\r\n"
    )
    .unwrap();
    let body = pattern(3_000_000);
    let writer = {
        let mut stream = stream.try_clone().unwrap();
        std::thread::spawn(move || {
            let _ = stream.write_all(&body);
        })
    };
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 401");
    let _ = writer.join();
}
