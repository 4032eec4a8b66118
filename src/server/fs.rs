//! Opening files under the root without ever leaving it.
//!
//! `openat2(2)` with `RESOLVE_BENEATH` makes the kernel refuse any resolution
//! that would leave the root directory, symlinks included, with no race between
//! a check and the open. `--follow-symlinks` drops that restriction (the path
//! itself is already free of `..`). Magic links (`/proc/self/fd/N`) are never
//! followed, and `O_NONBLOCK` keeps a FIFO under the root from blocking the core.

use super::direct::DirectSlot;
use super::mapped::MapSlot;
use super::residency::Residency;
use super::uring::UringSlot;
use crate::http::error::FileError;
use crate::http::index::Entry;
use crate::http::path::CleanPath;
use crate::http::validators::FileMeta;
use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, SFlag};
use std::ffi::OsStr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The served directory, opened once per core.
#[derive(Debug)]
pub struct Root {
    dir: OwnedFd,
    /// The root's canonical path, for the check without `openat2`.
    path: std::path::PathBuf,
    follow_symlinks: bool,
}

/// A regular file opened for reading, with what `fstat` said about it.
#[derive(Debug)]
pub struct OpenFile {
    pub fd: OwnedFd,
    pub meta: FileMeta,
    /// Its O_DIRECT handle, opened on first use under `--io direct`.
    pub direct: DirectSlot,
    /// Which parts were lately found in the page cache.
    pub residency: Residency,
    /// A read-only mapping, for short ranges sent straight from it.
    pub mapping: MapSlot,
    /// Its io_uring handle, for reads that miss the page cache.
    pub uring: UringSlot,
}

impl Root {
    pub fn open(path: &Path, follow_symlinks: bool) -> std::io::Result<Root> {
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let fd = nix::fcntl::open(path, flags, nix::sys::stat::Mode::empty())?;
        // SAFETY: `open` just returned this descriptor and nothing else owns it.
        let dir = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Root {
            dir,
            path: path.canonicalize()?,
            follow_symlinks,
        })
    }

    /// A descriptor of the root directory, for work done off the core.
    pub fn dir_clone(&self) -> std::io::Result<OwnedFd> {
        self.dir.try_clone()
    }

    /// The root's canonical path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens `path` for reading if it is a regular file under the root.
    pub fn open_file(&self, path: &CleanPath) -> Result<OpenFile, FileError> {
        self.open_relative(&path.relative)
    }

    /// Opens the precompressed sidecar `path` + `suffix` (`.br`, `.gz`), if it
    /// is a regular file at least as new as the original.
    pub fn open_sidecar(
        &self,
        path: &CleanPath,
        suffix: &str,
        original: &FileMeta,
    ) -> Option<OpenFile> {
        let mut relative = path.relative.clone();
        relative.extend_from_slice(suffix.as_bytes());
        self.open_relative(&relative)
            .ok()
            .filter(|sidecar| sidecar.meta.mtime_nanos >= original.mtime_nanos)
    }

    /// Opens a directory under the root for listing (`--index`).
    pub fn open_dir(&self, path: &CleanPath) -> Result<OwnedFd, FileError> {
        self.open_beneath(&path.relative, OFlag::O_DIRECTORY)
    }

    fn open_beneath(&self, relative: &[u8], extra: OFlag) -> Result<OwnedFd, FileError> {
        let relative = match relative {
            b"" => OsStr::new("."),
            bytes => OsStr::from_bytes(bytes),
        };
        let mut resolve = ResolveFlag::RESOLVE_NO_MAGICLINKS;
        if !self.follow_symlinks {
            resolve |= ResolveFlag::RESOLVE_BENEATH;
        }
        let flags =
            OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | extra;
        let how = OpenHow::new().flags(flags).resolve(resolve);
        match openat2(self.dir.as_raw_fd(), relative, how) {
            // SAFETY: `openat2` just returned this descriptor and nothing else owns it.
            Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
            Err(Errno::ENOSYS) => self.open_checked(relative, flags),
            Err(errno) => Err(file_error(errno)),
        }
    }

    /// For kernels before 5.6 (and valgrind), which lack `openat2`: open
    /// normally, then ask the kernel where the descriptor really points
    /// (`/proc/self/fd`) and refuse it if that is outside the root. Checking
    /// the opened descriptor, not the path, leaves no race to exploit.
    fn open_checked(&self, relative: &OsStr, flags: OFlag) -> Result<OwnedFd, FileError> {
        let fd = nix::fcntl::openat(
            Some(self.dir.as_raw_fd()),
            relative,
            flags,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(file_error)?;
        // SAFETY: `openat` just returned this descriptor and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        if !self.follow_symlinks {
            let real = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
                .map_err(|_| FileError::Io)?;
            if !real.starts_with(&self.path) {
                return Err(FileError::OutsideRoot);
            }
        }
        Ok(fd)
    }

    fn open_relative(&self, relative: &[u8]) -> Result<OpenFile, FileError> {
        let fd = self.open_beneath(relative, OFlag::empty())?;
        let stat = fstat(fd.as_raw_fd()).map_err(file_error)?;
        match SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT {
            SFlag::S_IFREG => {}
            SFlag::S_IFDIR => return Err(FileError::IsDirectory),
            _ => return Err(FileError::Forbidden),
        }
        let meta = FileMeta {
            len: stat.st_size as u64,
            inode: stat.st_ino,
            mtime_nanos: i128::from(stat.st_mtime) * 1_000_000_000 + i128::from(stat.st_mtime_nsec),
        };
        Ok(OpenFile {
            fd,
            meta,
            direct: DirectSlot::default(),
            residency: Residency::default(),
            mapping: MapSlot::default(),
            uring: UringSlot::default(),
        })
    }
}

/// Reads a directory's entries (blocking: run it off the core, in the
/// executor's blocking pool).
pub fn read_entries(dir: OwnedFd) -> Result<Vec<Entry>, FileError> {
    let mut dir = nix::dir::Dir::from_fd(dir.into_raw_fd()).map_err(file_error)?;
    let dir_fd = dir.as_raw_fd();
    let mut entries = Vec::new();
    for entry in dir.iter() {
        let entry = entry.map_err(file_error)?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let is_dir = match entry.file_type() {
            Some(nix::dir::Type::Directory) => true,
            Some(nix::dir::Type::File) => false,
            // Symlinks and unknown types: ask what they lead to.
            _ => nix::sys::stat::fstatat(
                Some(dir_fd),
                entry.file_name(),
                nix::fcntl::AtFlags::empty(),
            )
            .is_ok_and(|st| {
                SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR
            }),
        };
        entries.push(Entry {
            name: name.to_vec(),
            is_dir,
        });
    }
    Ok(entries)
}

fn file_error(errno: Errno) -> FileError {
    match errno {
        Errno::ENOENT | Errno::ENOTDIR | Errno::ENAMETOOLONG | Errno::ELOOP => FileError::NotFound,
        Errno::EXDEV => FileError::OutsideRoot,
        Errno::EACCES | Errno::EPERM | Errno::ENXIO | Errno::ENODEV => FileError::Forbidden,
        Errno::EMFILE | Errno::ENFILE | Errno::ENOMEM => FileError::Exhausted,
        _ => FileError::Io,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::path::clean;
    use std::os::unix::fs::symlink;

    fn fixture() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), b"hello").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        symlink("a.txt", dir.path().join("inside")).unwrap();
        symlink("../a.txt", dir.path().join("sub/up")).unwrap();
        symlink("/etc/hostname", dir.path().join("outside")).unwrap();
        symlink("../../../../../../etc", dir.path().join("sub/etc")).unwrap();
        nix::unistd::mkfifo(&dir.path().join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        dir
    }

    fn open(root: &Root, target: &str) -> Result<u64, FileError> {
        root.open_file(&clean(target.as_bytes()).unwrap())
            .map(|f| f.meta.len)
    }

    #[test]
    fn opens_regular_files_and_inside_symlinks() {
        let dir = fixture();
        let root = Root::open(dir.path(), false).unwrap();
        assert_eq!(open(&root, "/a.txt"), Ok(5));
        assert_eq!(open(&root, "/inside"), Ok(5));
        assert_eq!(open(&root, "/sub/up"), Ok(5));
    }

    #[test]
    fn refuses_what_is_not_a_file_under_the_root() {
        let dir = fixture();
        let root = Root::open(dir.path(), false).unwrap();
        assert_eq!(open(&root, "/outside"), Err(FileError::OutsideRoot));
        assert_eq!(
            open(&root, "/sub/etc/hostname"),
            Err(FileError::OutsideRoot)
        );
        assert_eq!(open(&root, "/missing"), Err(FileError::NotFound));
        assert_eq!(open(&root, "/a.txt/x"), Err(FileError::NotFound));
        assert_eq!(open(&root, "/sub"), Err(FileError::IsDirectory));
        assert_eq!(open(&root, "/"), Err(FileError::IsDirectory));
        assert_eq!(
            open(&root, "/fifo"),
            Err(FileError::Forbidden),
            "and it did not block"
        );
    }

    #[test]
    fn sidecars_must_be_regular_and_not_older() {
        let dir = fixture();
        std::fs::write(dir.path().join("a.txt.gz"), b"gz").unwrap();
        let root = Root::open(dir.path(), false).unwrap();
        let path = clean(b"/a.txt").unwrap();
        let original = root.open_file(&path).unwrap().meta;
        assert_eq!(
            root.open_sidecar(&path, ".gz", &original)
                .map(|f| f.meta.len),
            Some(2)
        );
        assert!(root.open_sidecar(&path, ".br", &original).is_none());
        let newer = FileMeta {
            mtime_nanos: original.mtime_nanos + 1_000_000_000_000,
            ..original
        };
        assert!(
            root.open_sidecar(&path, ".gz", &newer).is_none(),
            "a stale sidecar is ignored"
        );
    }

    #[test]
    fn directories_list_their_entries() {
        let dir = fixture();
        let root = Root::open(dir.path(), false).unwrap();
        let fd = root.open_dir(&clean(b"/").unwrap()).unwrap();
        let mut entries = read_entries(fd).unwrap();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        let names: Vec<(&[u8], bool)> = entries
            .iter()
            .map(|e| (e.name.as_slice(), e.is_dir))
            .collect();
        assert!(names.contains(&(&b"sub"[..], true)));
        assert!(names.contains(&(&b"a.txt"[..], false)));
        assert!(names.contains(&(&b"inside"[..], false)));
        assert!(root.open_dir(&clean(b"/a.txt").unwrap()).is_err());
    }

    #[test]
    fn without_openat2_the_opened_descriptor_is_checked() {
        let dir = fixture();
        let root = Root::open(dir.path(), false).unwrap();
        let flags = OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
        assert!(root.open_checked(OsStr::new("a.txt"), flags).is_ok());
        assert!(root.open_checked(OsStr::new("inside"), flags).is_ok());
        assert_eq!(
            root.open_checked(OsStr::new("outside"), flags).err(),
            Some(FileError::OutsideRoot)
        );
        assert_eq!(
            root.open_checked(OsStr::new("sub/etc/hostname"), flags)
                .err(),
            Some(FileError::OutsideRoot)
        );
    }

    #[test]
    fn follow_symlinks_allows_outside_targets() {
        let dir = fixture();
        let root = Root::open(dir.path(), true).unwrap();
        assert!(open(&root, "/outside").is_ok());
    }
}
