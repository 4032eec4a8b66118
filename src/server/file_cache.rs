//! A bounded per-core cache of open files, keyed by cleaned path, so a hot
//! file costs no `openat2` + `fstat` per request.
//!
//! Freshness: each cached file is watched with inotify (writes, truncation,
//! attribute changes, deletion), and so is its directory (a rename or create
//! over its name). Before a cached entry is used, the core drains the inotify
//! queue with one non-blocking `read` (EAGAIN when nothing changed), so any
//! change that happened before the request arrived is seen by it: an atomic
//! replace is served to the very next request. The read is skipped while a
//! [`ChangeBell`] on the queue is quiet, which is exact too (see its module).
//! An overflowed queue (events lost) empties the cache. Entries also expire after
//! [`MAX_AGE`], which bounds staleness for what inotify does not report
//! (a rename of a grandparent directory); an expired entry whose path still
//! opens the same file is kept, so its mapping and residency memos survive
//! (dropping a mapping of a large, hot file costs milliseconds of `munmap`).
//! In-flight responses hold their own `Rc` of the open file, so invalidation
//! never closes a file being sent.

use super::change_bell::ChangeBell;
use super::fs::{OpenFile, Root};
use crate::http::error::FileError;
use crate::http::path::CleanPath;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use std::cell::RefCell;
use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Open files kept per core.
pub const CAPACITY: usize = 1024;
/// Longest time an entry is trusted without reopening its path.
pub const MAX_AGE: Duration = Duration::from_secs(2);

/// Events on a cached file that change what it serves.
const FILE_EVENTS: AddWatchFlags = AddWatchFlags::IN_MODIFY
    .union(AddWatchFlags::IN_ATTRIB)
    .union(AddWatchFlags::IN_DELETE_SELF)
    .union(AddWatchFlags::IN_MOVE_SELF);
/// Events on a directory that change what a name in it refers to.
const DIR_EVENTS: AddWatchFlags = AddWatchFlags::IN_MOVED_TO
    .union(AddWatchFlags::IN_MOVED_FROM)
    .union(AddWatchFlags::IN_CREATE)
    .union(AddWatchFlags::IN_DELETE)
    .union(AddWatchFlags::IN_DELETE_SELF)
    .union(AddWatchFlags::IN_MOVE_SELF);

struct Entry {
    file: Rc<OpenFile>,
    opened: Instant,
    file_watch: WatchDescriptor,
}

/// What a watch descriptor stands for.
#[derive(Default)]
struct Watched {
    /// Cache keys of files watched through this descriptor (hard links share one).
    files: Vec<Vec<u8>>,
    /// Set when this descriptor watches a directory: its relative path.
    dir: Option<Vec<u8>>,
}

/// One core's open-file cache.
pub struct FileCache {
    root: PathBuf,
    inotify: Option<Inotify>,
    /// Rings when `inotify` may hold events; `None` means read it every time.
    bell: Option<ChangeBell>,
    entries: RefCell<HashMap<Vec<u8>, Entry>>,
    watches: RefCell<HashMap<WatchDescriptor, Watched>>,
}

impl FileCache {
    /// A cache for files under `root`; disabled (every open goes to the
    /// kernel) if inotify is unavailable.
    pub fn new(root: PathBuf, enabled: bool) -> FileCache {
        let inotify = enabled
            .then(|| Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).ok())
            .flatten();
        let bell = inotify
            .as_ref()
            .and_then(|inotify| ChangeBell::new(inotify.as_fd().as_raw_fd()));
        FileCache {
            root,
            inotify,
            bell,
            entries: RefCell::default(),
            watches: RefCell::default(),
        }
    }

    /// The open file at `path`, from the cache when it is still current.
    pub fn open(
        &self,
        root: &Root,
        path: &CleanPath,
        now: Instant,
    ) -> Result<Rc<OpenFile>, FileError> {
        let Some(inotify) = &self.inotify else {
            return root.open_file(path).map(Rc::new);
        };
        self.catch_up(inotify);
        if let Some(file) = self.fresh(&path.relative, now) {
            return Ok(file);
        }
        let opened = root.open_file(path)?;
        if let Some(file) = self.revalidate(&path.relative, &opened, now) {
            return Ok(file);
        }
        let file = Rc::new(opened);
        self.insert(inotify, &path.relative, file.clone());
        Ok(file)
    }

    /// An expired entry whose path still opens the very same file (inode,
    /// size, modification time) is kept, with its mapping and residency
    /// memos, and trusted for another [`MAX_AGE`]; `opened` is then closed.
    fn revalidate(&self, key: &[u8], opened: &OpenFile, now: Instant) -> Option<Rc<OpenFile>> {
        let mut entries = self.entries.borrow_mut();
        let entry = entries.get_mut(key)?;
        if entry.file.meta != opened.meta {
            return None;
        }
        entry.opened = now;
        Some(entry.file.clone())
    }

    fn fresh(&self, key: &[u8], now: Instant) -> Option<Rc<OpenFile>> {
        let entries = self.entries.borrow();
        let entry = entries.get(key)?;
        (now.saturating_duration_since(entry.opened) < MAX_AGE).then(|| entry.file.clone())
    }

    /// Applies what changed since the last call: drains the inotify queue
    /// when the bell rang (or there is none), then arms the bell again.
    fn catch_up(&self, inotify: &Inotify) {
        match &self.bell {
            Some(bell) if !bell.rang() => {}
            Some(bell) => {
                self.apply_changes(inotify);
                bell.arm();
            }
            None => self.apply_changes(inotify),
        }
    }

    /// Drains the inotify queue (one non-blocking read when nothing changed)
    /// and drops every entry an event concerns.
    fn apply_changes(&self, inotify: &Inotify) {
        while let Ok(events) = inotify.read_events() {
            if events.is_empty() {
                break;
            }
            for event in events {
                if event.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                    self.clear(inotify);
                    continue;
                }
                if event.mask.contains(AddWatchFlags::IN_IGNORED) {
                    self.forget_watch(event.wd);
                    continue;
                }
                let stale: Vec<Vec<u8>> = {
                    let watches = self.watches.borrow();
                    let Some(watched) = watches.get(&event.wd) else {
                        continue;
                    };
                    let mut stale = watched.files.clone();
                    if let (Some(dir), Some(name)) = (&watched.dir, &event.name) {
                        stale.push(join(dir, name.as_bytes()));
                    }
                    if event
                        .mask
                        .intersects(AddWatchFlags::IN_DELETE_SELF | AddWatchFlags::IN_MOVE_SELF)
                    {
                        if let Some(dir) = &watched.dir {
                            let prefix = join(dir, b"");
                            stale.extend(
                                self.entries
                                    .borrow()
                                    .keys()
                                    .filter(|k| k.starts_with(&prefix))
                                    .cloned(),
                            );
                        }
                    }
                    stale
                };
                for key in stale {
                    self.remove(inotify, &key);
                }
            }
        }
    }

    fn insert(&self, inotify: &Inotify, key: &[u8], file: Rc<OpenFile>) {
        if self.entries.borrow().len() >= CAPACITY {
            self.evict_oldest(inotify);
        }
        let absolute = self.root.join(std::ffi::OsStr::from_bytes(key));
        let Ok(file_watch) = inotify.add_watch(&absolute, FILE_EVENTS) else {
            return;
        };
        let dir = parent(key);
        let dir_absolute = self.root.join(std::ffi::OsStr::from_bytes(&dir));
        let Ok(dir_watch) = inotify.add_watch(&dir_absolute, DIR_EVENTS) else {
            return;
        };
        let mut watches = self.watches.borrow_mut();
        watches
            .entry(file_watch)
            .or_default()
            .files
            .push(key.to_vec());
        watches.entry(dir_watch).or_default().dir = Some(dir);
        drop(watches);
        // Watched and kept: worth remembering which parts are resident.
        file.residency.enable_memos();
        let previous = self.entries.borrow_mut().insert(
            key.to_vec(),
            Entry {
                file,
                opened: Instant::now(),
                file_watch,
            },
        );
        if let Some(previous) = previous {
            self.unlink(inotify, key, previous.file_watch);
        }
    }

    fn remove(&self, inotify: &Inotify, key: &[u8]) {
        let removed = self.entries.borrow_mut().remove(key);
        if let Some(entry) = removed {
            self.unlink(inotify, key, entry.file_watch);
        }
    }

    /// Detaches `key` from its file watch, removing the watch when unused.
    fn unlink(&self, inotify: &Inotify, key: &[u8], wd: WatchDescriptor) {
        let mut watches = self.watches.borrow_mut();
        if let Some(watched) = watches.get_mut(&wd) {
            if let Some(at) = watched.files.iter().position(|k| k == key) {
                watched.files.swap_remove(at);
            }
            if watched.files.is_empty() && watched.dir.is_none() {
                watches.remove(&wd);
                let _ = inotify.rm_watch(wd);
            }
        }
    }

    fn forget_watch(&self, wd: WatchDescriptor) {
        let watched = self.watches.borrow_mut().remove(&wd);
        if let Some(watched) = watched {
            let mut entries = self.entries.borrow_mut();
            for key in watched.files {
                entries.remove(&key);
            }
        }
    }

    /// Drops every entry: after an overflow the queue no longer says which
    /// files changed.
    fn clear(&self, inotify: &Inotify) {
        let keys: Vec<Vec<u8>> = self.entries.borrow().keys().cloned().collect();
        for key in keys {
            self.remove(inotify, &key);
        }
    }

    fn evict_oldest(&self, inotify: &Inotify) {
        let oldest = self
            .entries
            .borrow()
            .iter()
            .min_by_key(|(_, e)| e.opened)
            .map(|(k, _)| k.clone());
        if let Some(key) = oldest {
            self.remove(inotify, &key);
        }
    }

    pub fn len(&self) -> usize {
        self.entries.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn parent(key: &[u8]) -> Vec<u8> {
    match key.iter().rposition(|&b| b == b'/') {
        Some(slash) => key[..slash].to_vec(),
        None => Vec::new(),
    }
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        return name.to_vec();
    }
    let mut key = dir.to_vec();
    key.push(b'/');
    key.extend_from_slice(name);
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::path::clean;

    fn setup() -> (tempfile::TempDir, Root, FileCache) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/a.mp4"), b"old").unwrap();
        let root = Root::open(dir.path(), false).unwrap();
        let cache = FileCache::new(dir.path().to_path_buf(), true);
        (dir, root, cache)
    }

    fn open(cache: &FileCache, root: &Root, target: &str) -> Rc<OpenFile> {
        cache
            .open(root, &clean(target.as_bytes()).unwrap(), Instant::now())
            .unwrap()
    }

    #[test]
    fn a_hot_file_is_opened_once() {
        let (_dir, root, cache) = setup();
        let first = open(&cache, &root, "/sub/a.mp4");
        let second = open(&cache, &root, "/sub/a.mp4");
        assert!(Rc::ptr_eq(&first, &second));
        assert_eq!(cache.len(), 1);
    }

    /// Makes every entry look older than MAX_AGE.
    fn expire_all(cache: &FileCache) {
        for entry in cache.entries.borrow_mut().values_mut() {
            entry.opened -= MAX_AGE;
        }
    }

    #[test]
    fn an_expired_entry_for_the_same_file_is_kept_a_changed_one_replaced() {
        let (dir, root, cache) = setup();
        let first = open(&cache, &root, "/sub/a.mp4");
        expire_all(&cache);
        // Same inode, size and mtime: the same open file (mapping, memos) comes back.
        assert!(Rc::ptr_eq(&first, &open(&cache, &root, "/sub/a.mp4")));
        // A grandparent-style change inotify would not report: swap the
        // directory under the path; once expired, the new file is served.
        std::fs::rename(dir.path().join("sub"), dir.path().join("old")).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/a.mp4"), b"other").unwrap();
        expire_all(&cache);
        let replaced = open(&cache, &root, "/sub/a.mp4");
        assert_eq!(replaced.meta.len, 5);
        assert!(!Rc::ptr_eq(&first, &replaced));
    }

    #[test]
    fn an_atomic_replace_is_seen_by_the_next_open() {
        let (dir, root, cache) = setup();
        let old = open(&cache, &root, "/sub/a.mp4");
        std::fs::write(dir.path().join("sub/new.tmp"), b"new bytes").unwrap();
        std::fs::rename(dir.path().join("sub/new.tmp"), dir.path().join("sub/a.mp4")).unwrap();
        let new = open(&cache, &root, "/sub/a.mp4");
        assert_eq!(new.meta.len, 9);
        assert_ne!(new.meta.inode, old.meta.inode);
        // The old file stays readable for whoever still holds it.
        let mut buf = [0u8; 3];
        assert_eq!(nix::sys::uio::pread(&old.fd, &mut buf, 0).unwrap(), 3);
        assert_eq!(&buf, b"old");
    }

    #[test]
    fn writes_truncation_and_deletion_invalidate() {
        let (dir, root, cache) = setup();
        let path = dir.path().join("sub/a.mp4");
        open(&cache, &root, "/sub/a.mp4");
        std::fs::write(&path, b"longer content").unwrap();
        assert_eq!(open(&cache, &root, "/sub/a.mp4").meta.len, 14);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(2)
            .unwrap();
        assert_eq!(open(&cache, &root, "/sub/a.mp4").meta.len, 2);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            cache
                .open(&root, &clean(b"/sub/a.mp4").unwrap(), Instant::now())
                .err(),
            Some(FileError::NotFound)
        );
    }

    #[test]
    fn capacity_is_bounded() {
        let (dir, root, cache) = setup();
        for i in 0..CAPACITY + 10 {
            std::fs::write(dir.path().join(format!("f{i}")), b"x").unwrap();
            open(&cache, &root, &format!("/f{i}"));
        }
        assert_eq!(cache.len(), CAPACITY);
    }
}
