//! The filesystem side of uploads (`--ingest`): what `http::upload` admitted,
//! carried out beneath the root without ever leaving it.
//!
//! A PUT's body goes to a temporary file `.ringcast-upload.PID.N` in the
//! target's directory (a dotfile, so GET never serves it), and is renamed
//! over the target only when complete: readers see the whole old file or the
//! whole new one. Every failure unlinks the temporary file. Anything that
//! may wait on the disk (directories, statvfs, rename, fsync, unlink) runs
//! in the executor's blocking pool; body bytes are written by io_uring, and
//! Content-Length bodies are spliced socket -> pipe -> file in io_uring's
//! workers, never passing through user memory.

use super::fs::Root;
use super::jobs::{lock, Jobs, Ticket};
use crate::config::IngestConfig;
use crate::http::error::{FileError, RequestError, Status};
use crate::http::path::CleanPath;
use crate::http::upload::{Tokens, WriteError};
use glommio::io::BufferedFile;
use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;
use std::cell::{Cell, RefCell};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Temporary files start with this (then the pid and a counter).
pub const TEMP_PREFIX: &str = ".ringcast-upload.";
/// The pipe an upload splices through.
const PIPE_SIZE: usize = 1 << 20;

/// `--ingest-tokens`, shared by the cores and re-read on SIGHUP.
pub struct SharedTokens {
    path: PathBuf,
    generation: AtomicU64,
    current: Mutex<Arc<Tokens>>,
}

impl SharedTokens {
    /// Reads the file; an unreadable or empty one stops the server.
    pub fn load(path: PathBuf) -> Result<SharedTokens, String> {
        let tokens = read_tokens(&path)?;
        Ok(SharedTokens {
            path,
            generation: AtomicU64::new(0),
            current: Mutex::new(Arc::new(tokens)),
        })
    }

    /// Re-reads the file (SIGHUP); on any error the old tokens stay.
    pub fn reload(&self) {
        match read_tokens(&self.path) {
            Ok(tokens) => {
                let count = tokens.len();
                *lock(&self.current) = Arc::new(tokens);
                self.generation.fetch_add(1, Ordering::Release);
                eprintln!(
                    "ringcast: SIGHUP: --ingest-tokens {}: {count} tokens",
                    self.path.display()
                );
            }
            Err(e) => eprintln!("ringcast: SIGHUP: {e}; the old tokens stay"),
        }
    }
}

fn read_tokens(path: &std::path::Path) -> Result<Tokens, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("--ingest-tokens {}: cannot read: {e}", path.display()))?;
    Tokens::parse(&text).map_err(|e| format!("--ingest-tokens {}: {e}", path.display()))
}

/// One core's view of uploads: the configuration, its copy of the tokens
/// (taken again only after a reload), and the job queue.
pub struct CoreIngest {
    pub config: IngestConfig,
    shared: Arc<SharedTokens>,
    seen: Cell<u64>,
    tokens: RefCell<Arc<Tokens>>,
    pub jobs: Option<Arc<Jobs>>,
    /// Numbers this core's temporary files.
    next_temp: Cell<u64>,
    cpu: usize,
}

impl CoreIngest {
    pub fn new(
        config: IngestConfig,
        shared: Arc<SharedTokens>,
        jobs: Option<Arc<Jobs>>,
        cpu: usize,
    ) -> CoreIngest {
        let tokens = lock(&shared.current).clone();
        CoreIngest {
            seen: Cell::new(shared.generation.load(Ordering::Acquire)),
            tokens: RefCell::new(tokens),
            config,
            shared,
            jobs,
            next_temp: Cell::new(0),
            cpu,
        }
    }

    /// The tokens in force: one atomic load unless a reload happened.
    pub fn tokens(&self) -> Arc<Tokens> {
        let generation = self.shared.generation.load(Ordering::Acquire);
        if generation != self.seen.get() {
            *self.tokens.borrow_mut() = lock(&self.shared.current).clone();
            self.seen.set(generation);
        }
        self.tokens.borrow().clone()
    }

    /// A place in the job queue if `path` matches an `--on-publish` rule:
    /// `Ok(None)` if none does, an error if the queue is full.
    pub fn reserve_job(&self, path: &CleanPath) -> Result<Option<Ticket>, RequestError> {
        let (Some(jobs), Some(rule)) = (
            &self.jobs,
            self.config
                .on_publish
                .iter()
                .find(|rule| rule.pattern.matches(path)),
        ) else {
            return Ok(None);
        };
        jobs.reserve(rule.command.clone())
            .map(Some)
            .ok_or(RequestError::Write(WriteError::QueueFull))
    }

    fn temp_name(&self) -> OsString {
        let n = self.next_temp.get();
        self.next_temp.set(n + 1);
        OsString::from(format!(
            "{TEMP_PREFIX}{}.{}-{n}",
            std::process::id(),
            self.cpu
        ))
    }
}

/// A PUT in progress: its temporary file, unlinked unless published.
pub struct Upload {
    dir: Arc<OwnedFd>,
    name: OsString,
    temp: OsString,
    file: Option<BufferedFile>,
    fd: RawFd,
    /// Bytes written so far, the offset of the next write.
    pub written: u64,
    pub ticket: Option<Ticket>,
    fsync: bool,
    published: bool,
}

/// Creates the target's directory (and any missing parents) beneath the
/// root and a temporary file in it. `expected` is the Content-Length, if
/// known, for the free-space check.
pub async fn begin(
    root: &Root,
    ingest: &CoreIngest,
    path: &CleanPath,
    expected: u64,
) -> Result<Upload, RequestError> {
    let root_dir = root.dir_clone().map_err(|_| file_error(Errno::EMFILE))?;
    let relative = path.relative.clone();
    let temp = ingest.temp_name();
    let min_free = ingest.config.min_free;
    let fsync = ingest.config.fsync;
    let prepared = {
        let temp = temp.clone();
        glommio::executor()
            .spawn_blocking(move || prepare(&root_dir, &relative, &temp, expected, min_free))
            .await
    };
    let (dir, name, file) = prepared?;
    let fd = file.as_raw_fd();
    // SAFETY: the descriptor was just opened and the BufferedFile now owns it.
    let file = unsafe { BufferedFile::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(file)) };
    Ok(Upload {
        dir: Arc::new(dir),
        name,
        temp,
        file: Some(file),
        fd,
        written: 0,
        ticket: None,
        fsync,
        published: false,
    })
}

/// The blocking part of [`begin`].
fn prepare(
    root: &OwnedFd,
    relative: &[u8],
    temp: &OsStr,
    expected: u64,
    min_free: u64,
) -> Result<(OwnedFd, OsString, OwnedFd), RequestError> {
    let (parents, name) = match relative.iter().rposition(|&b| b == b'/') {
        Some(slash) => (&relative[..slash], &relative[slash + 1..]),
        None => (&b""[..], relative),
    };
    let dir = make_dirs(root, parents)?;
    match nix::sys::stat::fstatat(
        Some(dir.as_raw_fd()),
        OsStr::from_bytes(name),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    ) {
        Ok(stat) if stat.st_mode & libc::S_IFMT == libc::S_IFDIR => {
            return Err(RequestError::Write(WriteError::IsDirectory))
        }
        Ok(_) | Err(Errno::ENOENT) => {}
        Err(errno) => return Err(file_error(errno)),
    }
    let stat = nix::sys::statvfs::fstatvfs(&dir).map_err(file_error)?;
    let free = stat.blocks_available().saturating_mul(stat.fragment_size());
    if free < expected.saturating_add(min_free) {
        return Err(RequestError::Write(WriteError::NoSpace));
    }
    let fd = nix::fcntl::openat(
        Some(dir.as_raw_fd()),
        temp,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    )
    .map_err(write_error)?;
    // SAFETY: `openat` just returned this descriptor and nothing else owns it.
    let file = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok((dir, OsStr::from_bytes(name).to_os_string(), file))
}

/// Opens `parents` beneath `root`, creating what is missing one component
/// at a time, each resolved beneath its parent (no symlink leads out).
fn make_dirs(root: &OwnedFd, parents: &[u8]) -> Result<OwnedFd, RequestError> {
    let mut dir = open_dir_beneath(root, OsStr::new("."))?;
    for component in parents.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
        let component = OsStr::from_bytes(component);
        dir = match open_dir_beneath(&dir, component) {
            Err(RequestError::File(FileError::NotFound)) => {
                match nix::sys::stat::mkdirat(
                    Some(dir.as_raw_fd()),
                    component,
                    Mode::from_bits_truncate(0o755),
                ) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(errno) => return Err(write_error(errno)),
                }
                open_dir_beneath(&dir, component)?
            }
            other => other?,
        };
    }
    Ok(dir)
}

fn open_dir_beneath(dir: &OwnedFd, name: &OsStr) -> Result<OwnedFd, RequestError> {
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    match openat2(dir.as_raw_fd(), name, how) {
        // SAFETY: `openat2` just returned this descriptor and nothing else owns it.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
        // A file where a directory should be: the target cannot exist.
        Err(Errno::ENOTDIR) => Err(RequestError::Write(WriteError::IsDirectory)),
        Err(errno) => Err(file_error(errno)),
    }
}

fn file_error(errno: Errno) -> RequestError {
    RequestError::File(match errno {
        Errno::ENOENT => FileError::NotFound,
        Errno::EXDEV | Errno::ELOOP => FileError::OutsideRoot,
        Errno::EACCES | Errno::EPERM | Errno::EROFS => FileError::Forbidden,
        Errno::EMFILE | Errno::ENFILE => FileError::Exhausted,
        _ => FileError::Io,
    })
}

/// Like [`file_error`], with a full disk as 507.
fn write_error(errno: Errno) -> RequestError {
    match errno {
        Errno::ENOSPC | Errno::EDQUOT => RequestError::Write(WriteError::NoSpace),
        errno => file_error(errno),
    }
}

fn io_write_error(e: &io::Error) -> RequestError {
    write_error(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
}

impl Upload {
    /// Appends `bytes` with an io_uring write.
    pub async fn write(&mut self, bytes: Vec<u8>) -> Result<(), RequestError> {
        let Some(file) = &self.file else {
            return Err(RequestError::File(FileError::Io));
        };
        if bytes.is_empty() {
            return Ok(());
        }
        let len = bytes.len();
        let n = file
            .write_at(bytes, self.written)
            .await
            .map_err(|e| io_write_error(&e.into()))?;
        self.written += n as u64;
        // A regular file takes a whole write unless the disk is full.
        if n < len {
            return Err(RequestError::Write(WriteError::NoSpace));
        }
        Ok(())
    }

    /// Moves `len` body bytes from `socket` to the file by io_uring splices
    /// through a pipe. Waits for the socket at most `timeout` at a time.
    /// `readable` waits until the socket has bytes.
    pub async fn splice_from<F, R>(
        &mut self,
        socket: RawFd,
        len: u64,
        timeout: Duration,
        readable: F,
    ) -> Result<(), SpliceError>
    where
        F: Fn() -> R,
        R: std::future::Future<Output = io::Result<()>>,
    {
        let pipe = Pipe::new().map_err(|e| SpliceError::Write(io_write_error(&e)))?;
        let mut left = len;
        while left > 0 {
            let want = left.min(pipe.size as u64) as usize;
            let moved =
                match glommio::io::splice(socket, None, pipe.write.as_raw_fd(), None, want).await {
                    Ok(0) => return Err(SpliceError::Closed),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        let waited =
                            futures_lite::future::or(async { Some(readable().await) }, async {
                                glommio::timer::sleep(timeout).await;
                                None
                            })
                            .await;
                        match waited {
                            Some(Ok(())) => continue,
                            Some(Err(_)) => return Err(SpliceError::Closed),
                            None => return Err(SpliceError::Stalled),
                        }
                    }
                    Err(_) => return Err(SpliceError::Closed),
                };
            self.drain_pipe(&pipe, moved).await?;
            left -= moved as u64;
        }
        Ok(())
    }

    /// Moves `n` bytes waiting in `pipe` to the file.
    async fn drain_pipe(&mut self, pipe: &Pipe, mut n: usize) -> Result<(), SpliceError> {
        while n > 0 {
            let moved =
                glommio::io::splice(pipe.read.as_raw_fd(), None, self.fd, Some(self.written), n)
                    .await
                    .map_err(|e| SpliceError::Write(io_write_error(&e)))?;
            if moved == 0 {
                return Err(SpliceError::Write(RequestError::Write(WriteError::NoSpace)));
            }
            self.written += moved as u64;
            n -= moved;
        }
        Ok(())
    }

    /// Renames the complete file over the target: 201 if it is new, 204 if
    /// it replaced one. Queues the upload's job, if it has one.
    pub async fn publish(mut self, root: &Root, relative: &[u8]) -> Result<Status, RequestError> {
        if let Some(file) = self.file.take() {
            // Closing through glommio also waits for writes in flight.
            file.close().await.map_err(|e| io_write_error(&e.into()))?;
        }
        let (dir, temp, name, fsync) = (
            self.dir.clone(),
            self.temp.clone(),
            self.name.clone(),
            self.fsync,
        );
        let status = glommio::executor()
            .spawn_blocking(move || rename_into_place(&dir, &temp, &name, fsync))
            .await?;
        self.published = true;
        if let Some(ticket) = self.ticket.take() {
            ticket.submit(root.path().join(OsStr::from_bytes(relative)));
        }
        Ok(status)
    }
}

/// Why a splice stopped.
#[derive(Debug)]
pub enum SpliceError {
    /// The client closed or reset.
    Closed,
    /// No byte for `--upload-timeout`.
    Stalled,
    /// The file side failed.
    Write(RequestError),
}

fn rename_into_place(
    dir: &OwnedFd,
    temp: &OsStr,
    name: &OsStr,
    fsync: bool,
) -> Result<Status, RequestError> {
    let dirfd = Some(dir.as_raw_fd());
    if fsync {
        let fd = nix::fcntl::openat(
            dirfd,
            temp,
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(write_error)?;
        // SAFETY: `openat` just returned this descriptor and nothing else owns it.
        let file = unsafe { OwnedFd::from_raw_fd(fd) };
        nix::unistd::fsync(file.as_raw_fd()).map_err(write_error)?;
    }
    let status = match nix::fcntl::renameat2(
        dirfd,
        temp,
        dirfd,
        name,
        nix::fcntl::RenameFlags::RENAME_NOREPLACE,
    ) {
        Ok(()) => Status::Created,
        Err(Errno::EEXIST) => {
            nix::fcntl::renameat(dirfd, temp, dirfd, name).map_err(rename_error)?;
            Status::NoContent
        }
        // Filesystems without RENAME_NOREPLACE: tell new from replaced first.
        Err(Errno::EINVAL) => {
            let existed =
                nix::sys::stat::fstatat(dirfd, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
                    .is_ok();
            nix::fcntl::renameat(dirfd, temp, dirfd, name).map_err(rename_error)?;
            if existed {
                Status::NoContent
            } else {
                Status::Created
            }
        }
        Err(errno) => return Err(rename_error(errno)),
    };
    if fsync {
        nix::unistd::fsync(dir.as_raw_fd()).map_err(write_error)?;
    }
    Ok(status)
}

fn rename_error(errno: Errno) -> RequestError {
    match errno {
        Errno::EISDIR | Errno::ENOTEMPTY | Errno::EEXIST => {
            RequestError::Write(WriteError::IsDirectory)
        }
        errno => write_error(errno),
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if self.published {
            return;
        }
        // Unlinking may wait on the disk: off the core, detached.
        let (dir, temp) = (self.dir.clone(), std::mem::take(&mut self.temp));
        let file = self.file.take();
        glommio::spawn_local(async move {
            if let Some(file) = file {
                let _ = file.close().await;
            }
            glommio::executor()
                .spawn_blocking(move || {
                    let _ = nix::unistd::unlinkat(
                        Some(dir.as_raw_fd()),
                        temp.as_os_str(),
                        nix::unistd::UnlinkatFlags::NoRemoveDir,
                    );
                })
                .await;
        })
        .detach();
    }
}

/// A pipe for splicing, as large as the kernel allows up to [`PIPE_SIZE`].
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    size: usize,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        // SAFETY: F_SETPIPE_SZ on a pipe we own; failure leaves the default.
        let size = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE as i32) };
        let size = if size > 0 { size as usize } else { 64 * 1024 };
        Ok(Pipe { read, write, size })
    }
}

/// Removes `path` (a file or symlink, never a directory) beneath the root:
/// 204, or 404 when there is nothing, 409 for a directory.
pub async fn delete(root: &Root, path: &CleanPath) -> Result<Status, RequestError> {
    let root_dir = root.dir_clone().map_err(|_| file_error(Errno::EMFILE))?;
    let relative = path.relative.clone();
    glommio::executor()
        .spawn_blocking(move || {
            let (parents, name) = match relative.iter().rposition(|&b| b == b'/') {
                Some(slash) => (&relative[..slash], &relative[slash + 1..]),
                None => (&b""[..], &relative[..]),
            };
            let dir = match open_dir_beneath(&root_dir, OsStr::from_bytes(parents_or_dot(parents)))
            {
                Err(RequestError::Write(WriteError::IsDirectory)) => {
                    return Err(RequestError::File(FileError::NotFound))
                }
                other => other?,
            };
            match nix::unistd::unlinkat(
                Some(dir.as_raw_fd()),
                OsStr::from_bytes(name),
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            ) {
                Ok(()) => Ok(Status::NoContent),
                Err(Errno::EISDIR) => Err(RequestError::Write(WriteError::IsDirectory)),
                Err(errno) => Err(file_error(errno)),
            }
        })
        .await
}

fn parents_or_dot(parents: &[u8]) -> &[u8] {
    if parents.is_empty() {
        b"."
    } else {
        parents
    }
}

/// Removes temporary files a crash left beneath the ingest prefixes: those
/// of processes that no longer run (and this one's, from before it
/// started). Runs once at startup; returns how many it removed.
pub fn sweep_temporaries(root: &std::path::Path, prefixes: impl Iterator<Item = String>) -> usize {
    let mut removed = 0;
    let mut seen = std::collections::HashSet::new();
    for prefix in prefixes {
        let start = root.join(prefix.trim_start_matches('/'));
        if seen.insert(start.clone()) {
            removed += sweep_dir(&start, 0);
        }
    }
    removed
}

fn sweep_dir(dir: &std::path::Path, depth: usize) -> usize {
    const MAX_DEPTH: usize = 32;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let name = entry.file_name();
        if kind.is_dir() && depth < MAX_DEPTH {
            removed += sweep_dir(&entry.path(), depth + 1);
        } else if kind.is_file() && is_stale_temporary(name.as_bytes()) {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) => eprintln!(
                    "ringcast: cannot remove the stale upload {}: {e}",
                    entry.path().display()
                ),
            }
        }
    }
    removed
}

/// `.ringcast-upload.PID.…` whose PID is gone or is this process.
fn is_stale_temporary(name: &[u8]) -> bool {
    let Some(rest) = name.strip_prefix(TEMP_PREFIX.as_bytes()) else {
        return false;
    };
    let pid = rest.split(|&b| b == b'.').next().unwrap_or_default();
    let Some(pid) = std::str::from_utf8(pid)
        .ok()
        .and_then(|p| p.parse::<i32>().ok())
    else {
        return true;
    };
    pid == std::process::id() as i32
        || matches!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
            Err(Errno::ESRCH)
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_temporaries_are_those_of_dead_processes() {
        let me = std::process::id();
        assert!(is_stale_temporary(
            format!("{TEMP_PREFIX}{me}.0-1").as_bytes()
        ));
        // PID 1 always runs.
        assert!(!is_stale_temporary(
            format!("{TEMP_PREFIX}1.0-1").as_bytes()
        ));
        assert!(is_stale_temporary(format!("{TEMP_PREFIX}x.0-1").as_bytes()));
        assert!(!is_stale_temporary(b"segment.ts"));
        assert!(!is_stale_temporary(b".ringcast-uploadx"));
    }

    #[test]
    fn directories_are_made_beneath_the_root_only() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("out")).unwrap();
        let fd = nix::fcntl::open(
            root.path(),
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        // SAFETY: just opened.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        make_dirs(&fd, b"live/a/b").unwrap();
        assert!(root.path().join("live/a/b").is_dir());
        assert!(make_dirs(&fd, b"out/x").is_err());
        assert!(!outside.path().join("x").exists());
        std::fs::write(root.path().join("file"), b"x").unwrap();
        assert_eq!(
            make_dirs(&fd, b"file/x").err(),
            Some(RequestError::Write(WriteError::IsDirectory))
        );
    }
}
