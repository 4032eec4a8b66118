//! Is a file range in the page cache? `sendfile` must only ever see resident
//! pages (a miss would block the core on the disk), and `cachestat(2)` tells,
//! but it walks the page cache page by page: on a long stream, checking each
//! 1 MiB before sending it cost 6% of the core.
//!
//! So each open file keeps a memo per aligned window (at least
//! [`MIN_WINDOW`], and at most [`MAX_WINDOWS`] windows per file) of what one
//! `cachestat` of the whole window found, trusted for [`TRUST`]; ranges
//! inside a window found wholly resident are sent without another check. The cost of the trade: a
//! page evicted within [`TRUST`] of the check can make one `sendfile` wait for
//! the disk. Eviction of a file that was wholly resident a moment ago takes
//! memory pressure heavy enough to be visible elsewhere; outside one, this
//! never happens. A window not wholly resident is never trusted: then the
//! exact range is checked, every time.

use std::cell::{Cell, RefCell};
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// Smallest window: a check of it walks 2,048 pages, about as much as a few
/// `sendfile` calls of 64 KiB cost.
pub const MIN_WINDOW: u64 = 8 * 1024 * 1024;
/// Most windows per file: bigger files get bigger windows, so a file's memos
/// stay a few KiB.
pub const MAX_WINDOWS: u64 = 1024;
/// How long a memo is trusted without a new check.
pub const TRUST: Duration = Duration::from_secs(2);

/// The memos of one open file (per core: the file cache is per core).
#[derive(Debug, Default)]
pub struct Residency {
    /// Off until the file is in the open-file cache: a memo on a file opened
    /// for one request would never be used again, so its window check would
    /// be pure cost.
    enabled: Cell<bool>,
    /// One slot per window, allocated on the first check.
    memos: RefCell<Vec<Option<Memo>>>,
}

/// What one window check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Memo {
    at: Instant,
    /// Wholly resident; when not, the window is not checked again until the
    /// memo expires (each check walks the whole window).
    resident: bool,
}

impl Residency {
    /// Whether `[offset, offset + len)` of the file (`file_len` bytes long)
    /// is resident; `None` if the kernel cannot tell (no `cachestat`).
    /// `now` is a recent clock reading.
    pub fn check(
        &self,
        fd: RawFd,
        offset: u64,
        len: u64,
        file_len: u64,
        now: Instant,
    ) -> Option<bool> {
        let size = window_size(file_len);
        // A range no longer than a window touches at most two; longer ones,
        // and ranges covering the whole file, are checked exactly.
        if !self.enabled.get() || len == 0 || len > size || len >= file_len {
            return cachestat_resident(fd, offset, len);
        }
        let first = offset / size;
        let last = (offset + len - 1) / size;
        for window in first..=last {
            if !self.window_resident(fd, window, size, file_len, now)? {
                return cachestat_resident(fd, offset, len);
            }
        }
        Some(true)
    }

    /// Whether all of `window` is resident, from its memo or a fresh check.
    fn window_resident(
        &self,
        fd: RawFd,
        window: u64,
        size: u64,
        file_len: u64,
        now: Instant,
    ) -> Option<bool> {
        if let Some(resident) = self.recall(window, now) {
            return Some(resident);
        }
        let start = window * size;
        let resident = cachestat_resident(fd, start, size.min(file_len - start))?;
        self.remember(window, now, resident);
        Some(resident)
    }

    /// Lets this file keep memos (it is cached and will be used again).
    pub fn enable_memos(&self) {
        self.enabled.set(true);
    }

    /// Whether the file is cached (memos enabled).
    pub fn is_kept(&self) -> bool {
        self.enabled.get()
    }

    /// What a live memo says of `window`, if there is one.
    fn recall(&self, window: u64, now: Instant) -> Option<bool> {
        let memos = self.memos.borrow();
        match memos.get(window as usize).copied().flatten() {
            Some(m) if now.saturating_duration_since(m.at) < TRUST => Some(m.resident),
            _ => None,
        }
    }

    fn remember(&self, window: u64, at: Instant, resident: bool) {
        let mut memos = self.memos.borrow_mut();
        let index = window as usize;
        if index >= memos.len() {
            memos.resize(index + 1, None);
        }
        memos[index] = Some(Memo { at, resident });
    }
}

/// The window size for a file of `file_len` bytes: a power of two, at
/// least [`MIN_WINDOW`], large enough for at most [`MAX_WINDOWS`] windows.
fn window_size(file_len: u64) -> u64 {
    file_len
        .div_ceil(MAX_WINDOWS)
        .next_power_of_two()
        .max(MIN_WINDOW)
}

/// Whether `[offset, offset + len)` of the file is entirely in the page cache,
/// by `cachestat(2)` (Linux 6.5); `None` if the kernel cannot tell.
pub fn cachestat_resident(fd: RawFd, offset: u64, len: u64) -> Option<bool> {
    #[repr(C)]
    struct CachestatRange {
        off: u64,
        len: u64,
    }
    #[repr(C)]
    #[derive(Default)]
    struct Cachestat {
        nr_cache: u64,
        nr_dirty: u64,
        nr_writeback: u64,
        nr_evicted: u64,
        nr_recently_evicted: u64,
    }
    const SYS_CACHESTAT: libc::c_long = 451;
    const PAGE: u64 = 4096;
    let range = CachestatRange { off: offset, len };
    let mut stat = Cachestat::default();
    // SAFETY: both structs match the kernel's layout and outlive the call.
    let rc = unsafe { libc::syscall(SYS_CACHESTAT, fd, &range, &mut stat, 0) };
    if rc != 0 {
        return None;
    }
    let pages = (offset + len).div_ceil(PAGE) - offset / PAGE;
    Some(stat.nr_cache >= pages)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn cachestat_sees_a_file_just_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![7u8; 64 * 1024]).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        match cachestat_resident(file.as_raw_fd(), 0, 64 * 1024) {
            Some(resident) => {
                assert!(resident);
                // Pages past the end of the file are never resident.
                assert_eq!(
                    cachestat_resident(file.as_raw_fd(), 0, 1 << 30),
                    Some(false)
                );
            }
            None => eprintln!("kernel without cachestat: zero-copy stays off"),
        }
    }

    #[test]
    fn a_resident_window_is_trusted_for_a_while_and_a_cold_one_never() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let len = 3 * 1024 * 1024;
        std::fs::write(&path, vec![7u8; len]).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let fd = file.as_raw_fd();
        let memo = Residency::default();
        let now = Instant::now();
        if memo.check(fd, 4096, 4096, len as u64, now).is_none() {
            return; // no cachestat here
        }
        // Not in the file cache: no memos.
        assert_eq!(memo.check(fd, 0, 65536, len as u64, now), Some(true));
        assert_eq!(memo.recall(0, now), None);
        memo.enable_memos();
        assert_eq!(memo.check(fd, 0, 65536, len as u64, now), Some(true));
        assert_eq!(memo.recall(0, now), Some(true));
        assert_eq!(memo.recall(0, now + TRUST / 2), Some(true));
        assert_eq!(memo.recall(0, now + TRUST), None);
        // Drop the pages: once the memo expires, the window is found cold,
        // and remembered as such.
        // SAFETY: plain advice on a descriptor we own.
        unsafe { libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_DONTNEED) };
        if cachestat_resident(fd, 0, len as u64) == Some(false) {
            let later = now + TRUST;
            assert_eq!(memo.check(fd, 0, 65536, len as u64, later), Some(false));
            assert_eq!(memo.recall(0, later), Some(false));
        }
    }

    #[test]
    fn a_range_across_a_window_boundary_uses_both_memos() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let len = 2 * MIN_WINDOW + 4096;
        std::fs::write(&path, vec![7u8; len as usize]).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let memo = Residency::default();
        memo.enable_memos();
        let now = Instant::now();
        let across = memo.check(file.as_raw_fd(), MIN_WINDOW - 4096, 8192, len, now);
        if across.is_none() {
            return; // no cachestat here
        }
        assert_eq!(across, Some(true));
        assert_eq!(memo.recall(0, now), Some(true));
        assert_eq!(memo.recall(1, now), Some(true));
        assert_eq!(memo.recall(2, now), None);
    }

    #[test]
    fn every_window_has_its_own_memo() {
        let memo = Residency::default();
        let now = Instant::now();
        for window in 0..MAX_WINDOWS {
            memo.remember(window, now, window % 2 == 0);
        }
        assert!((0..MAX_WINDOWS).all(|w| memo.recall(w, now) == Some(w % 2 == 0)));
        memo.remember(5, now, true);
        assert_eq!(memo.recall(5, now), Some(true));
    }

    #[test]
    fn windows_grow_with_the_file_and_stay_few() {
        assert_eq!(window_size(0), MIN_WINDOW);
        assert_eq!(window_size(512 << 20), MIN_WINDOW);
        assert_eq!(window_size(100 << 30), 128 << 20);
        for len in [1u64, 8 << 20, (8 << 30) + 1, 1 << 50] {
            assert!(len.div_ceil(window_size(len)) <= MAX_WINDOWS, "{len}");
        }
    }
}
