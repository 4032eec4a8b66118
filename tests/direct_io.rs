//! `--io direct`: byte-exact responses from O_DIRECT reads, the page cache
//! left alone, and a per-core read budget that makes streams share rather
//! than fail. (The whole loopback suite also runs in this mode: tools/test.sh
//! sets RINGCAST_TEST_IO=direct for a second pass.)

mod common;

use common::Server;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::Path;

const PAGE: usize = 4096;

/// Bytes that differ at every offset, so a misplaced read shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0] ^ (i % 251) as u8)
        .collect()
}

/// Writes `data` to `path` durably and drops it from the page cache; returns
/// whether the cache really let go (not on tmpfs, for instance).
fn write_cold(path: &Path, data: &[u8]) -> bool {
    let mut file = File::create(path).unwrap();
    file.write_all(data).unwrap();
    file.sync_all().unwrap();
    // SAFETY: plain advice on a descriptor we own.
    unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    resident_pages(path) == 0
}

/// Pages of the file in the page cache, by mincore(2) over a mapping.
fn resident_pages(path: &Path) -> usize {
    let file = File::open(path).unwrap();
    let len = file.metadata().unwrap().len() as usize;
    let pages = len.div_ceil(PAGE);
    let mut vec = vec![0u8; pages];
    // SAFETY: a private read-only mapping of a file we hold open, used only
    // for mincore and unmapped before returning.
    unsafe {
        let map = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        );
        assert_ne!(map, libc::MAP_FAILED);
        assert_eq!(libc::mincore(map, len, vec.as_mut_ptr()), 0);
        libc::munmap(map, len);
    }
    vec.iter().filter(|&&b| b & 1 == 1).count()
}

#[test]
fn direct_reads_leave_the_page_cache_alone_buffered_reads_fill_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(4 << 20);
    let path = dir.path().join("cold.mp4");
    if !write_cold(&path, &data) {
        eprintln!("this filesystem keeps the file cached; nothing to compare");
        return;
    }
    let direct = Server::start(dir.path(), &["--io", "direct"]);
    assert_eq!(direct.get("/cold.mp4", "").body, data);
    let range = direct.get("/cold.mp4", "Range: bytes=1000-300000\r\n");
    assert_eq!(range.status, 206);
    assert_eq!(range.body, &data[1000..=300000]);
    assert_eq!(
        resident_pages(&path),
        0,
        "O_DIRECT reads populated the cache"
    );

    let buffered = Server::start(dir.path(), &["--io", "buffered"]);
    assert_eq!(buffered.get("/cold.mp4", "").body, data);
    assert!(
        resident_pages(&path) > 0,
        "buffered reads should go through the page cache"
    );
}

#[test]
fn ranges_across_read_boundaries_are_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let len = 3 * 16384 + 123;
    let data = pattern(len);
    write_cold(&dir.path().join("v.mp4"), &data);
    // Reads of 16 KiB, two ahead: ranges start and end on every side of a
    // read's and a page's boundaries.
    let server = Server::start(
        dir.path(),
        &[
            "--io",
            "direct",
            "--direct-read-size",
            "16384",
            "--direct-read-ahead",
            "2",
        ],
    );
    for (start, end) in [
        (0, 0),
        (1, 1),
        (4095, 4096),
        (4095, 16385),
        (16383, 16384),
        (100, 40000),
        (16384, 3 * 16384 - 1),
        (len - 1, len - 1),
        (len - 5000, len - 1),
        (0, len - 1),
    ] {
        let response = server.get("/v.mp4", &format!("Range: bytes={start}-{end}\r\n"));
        assert_eq!(response.status, 206, "{start}-{end}");
        assert_eq!(response.body, &data[start..=end], "{start}-{end}");
    }
    let multi = server.get("/v.mp4", "Range: bytes=0-9,20000-20009,-7\r\n");
    assert_eq!(multi.status, 206);
    let body = String::from_utf8_lossy(&multi.body).into_owned();
    assert!(body.contains("Content-Range: bytes 20000-20009/"));
    let tail = &data[len - 7..];
    assert!(multi.body.windows(7).any(|w| w == tail));
}

#[test]
fn a_tight_read_budget_makes_streams_share_not_fail() {
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(1 << 20);
    write_cold(&dir.path().join("v.mp4"), &data);
    // Two 4 KiB buffers for the whole core, eight streams wanting four each.
    let server = Server::start(
        dir.path(),
        &[
            "--io",
            "direct",
            "--direct-read-size",
            "4096",
            "--direct-read-ahead",
            "4",
            "--direct-memory",
            "8192",
        ],
    );
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let (server, data) = (&server, &data);
                scope.spawn(move || {
                    if i % 2 == 0 {
                        assert_eq!(server.get("/v.mp4", "").body, *data);
                    } else {
                        let start = i * 70_001;
                        let response = server.get("/v.mp4", &format!("Range: bytes={start}-\r\n"));
                        assert_eq!(response.body, &data[start..]);
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
    });
}

#[test]
fn files_the_kernel_will_not_read_direct_fall_back_to_the_page_cache() {
    // Freshly written, not yet written back, with a hole: ext4 refuses some
    // O_DIRECT reads of such extents (EOPNOTSUPP); the bytes must still come.
    let dir = tempfile::tempdir().unwrap();
    let file = File::create(dir.path().join("sparse.bin")).unwrap();
    let offset = 5u64 << 30;
    file.set_len(offset + 10).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, b"0123456789", offset).unwrap();
    let server = Server::start(dir.path(), &["--io", "direct"]);
    let response = server.get("/sparse.bin", &format!("Range: bytes={offset}-\r\n"));
    assert_eq!(response.status, 206);
    assert_eq!(response.body, b"0123456789");
    let response = server.get("/sparse.bin", &format!("Range: bytes={}-\r\n", offset - 5));
    assert_eq!(response.body, b"\0\0\0\0\x000123456789");
}
