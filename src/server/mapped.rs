//! Short ranges of hot files sent straight from a shared, read-only mapping
//! of the file: one `sendmsg` of the response head and the mapped bytes,
//! where reading them first would cost a `preadv2` and a copy.
//!
//! Only the kernel ever touches the mapping (as the source of `sendmsg`), and
//! only for ranges the residency check found in the page cache, so the copy
//! never waits for the disk. If the file shrank since it was mapped, the
//! kernel's copy faults past the end and `sendmsg` stops short with EFAULT
//! (a fault taken inside the kernel is fixed up, never a SIGBUS); the caller
//! then goes the ordinary way, which detects the truncation.
//!
//! Mappings belong to cached open files only (per core, dropped with the
//! file's cache entry): mapping a file for one request would cost more than
//! it saves.

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::NonNull;

/// A read-only shared mapping of a whole file.
struct Mapping {
    base: NonNull<libc::c_void>,
    len: usize,
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `base` and `len` describe a mapping this value created and
        // nothing else unmaps.
        unsafe { libc::munmap(self.base.as_ptr(), self.len) };
    }
}

/// A file's mapping, made on first use.
#[derive(Default)]
pub struct MapSlot(RefCell<MapState>);

#[derive(Default)]
enum MapState {
    #[default]
    Unmapped,
    Mapped(Mapping),
    /// mmap failed (address space, a filesystem without mmap): never retried.
    Refused,
}

impl fmt::Debug for MapSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match &*self.0.borrow() {
            MapState::Unmapped => "unmapped",
            MapState::Mapped(_) => "mapped",
            MapState::Refused => "refused",
        })
    }
}

impl MapSlot {
    /// Sends `head` then `len` bytes of the file at `offset` with one
    /// non-blocking `sendmsg`, mapping the file
    /// (`file_len` bytes, behind `fd`) first if needed. Returns the bytes the
    /// socket took, or `None` if the file cannot be mapped. The range must be
    /// within `file_len` and resident.
    pub fn send(
        &self,
        socket: &impl AsRawFd,
        head: &[u8],
        fd: &OwnedFd,
        file_len: u64,
        offset: u64,
        len: usize,
    ) -> Option<io::Result<usize>> {
        let mut state = self.0.borrow_mut();
        if let MapState::Unmapped = *state {
            *state = match map(fd, file_len) {
                Some(mapping) => MapState::Mapped(mapping),
                None => MapState::Refused,
            };
        }
        let MapState::Mapped(mapping) = &*state else {
            return None;
        };
        let start = usize::try_from(offset).ok()?;
        if start.checked_add(len)? > mapping.len {
            return None;
        }
        let iov = [
            libc::iovec {
                iov_base: head.as_ptr() as *mut libc::c_void,
                iov_len: head.len(),
            },
            libc::iovec {
                // SAFETY: `start + len` is within the mapping (checked above).
                iov_base: unsafe { mapping.base.as_ptr().cast::<u8>().add(start) }.cast(),
                iov_len: len,
            },
        ];
        // SAFETY: msghdr is plain data; zeroed is a valid empty header.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = iov.len();
        let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
        // SAFETY: the iovecs point at `head` and into the live mapping, both
        // outliving the call; the kernel only reads them.
        let n = unsafe { libc::sendmsg(socket.as_raw_fd(), &msg, flags) };
        Some(if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        })
    }
}

fn map(fd: &OwnedFd, file_len: u64) -> Option<Mapping> {
    let len = usize::try_from(file_len).ok().filter(|&len| len > 0)?;
    // SAFETY: a new shared read-only mapping of an open file; the pointer is
    // only handed to the kernel, never dereferenced here.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return None;
    }
    Some(Mapping {
        base: NonNull::new(base)?,
        len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};

    /// A temporary file holding `bytes`, open for reading.
    fn file_with(bytes: &[u8]) -> (tempfile::TempDir, std::path::PathBuf, OwnedFd) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, bytes).unwrap();
        let fd = OwnedFd::from(std::fs::File::open(&path).unwrap());
        (dir, path, fd)
    }

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (server, client)
    }

    #[test]
    fn sends_head_and_mapped_bytes_in_one_message() {
        let (_dir, _, fd) = file_with(b"0123456789");
        let slot = MapSlot::default();
        let (server, mut client) = pair();
        let sent = slot
            .send(&server, b"HEAD:", &fd, 10, 3, 4)
            .unwrap()
            .unwrap();
        assert_eq!(sent, 9);
        let mut got = [0u8; 9];
        client.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"HEAD:3456");
        // Out of the mapping: refused, not sent.
        assert!(slot.send(&server, b"", &fd, 10, 8, 4).is_none());
    }

    #[test]
    fn a_file_that_shrank_gives_efault_not_a_signal() {
        let (_dir, path, fd) = file_with(&vec![1u8; 64 * 1024]);
        let slot = MapSlot::default();
        let (server, _client) = pair();
        assert!(slot.send(&server, b"", &fd, 64 * 1024, 0, 1).is_some());
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        let result = slot
            .send(&server, b"", &fd, 64 * 1024, 32 * 1024, 1024)
            .unwrap();
        assert_eq!(result.unwrap_err().raw_os_error(), Some(libc::EFAULT));
    }

    #[test]
    fn empty_files_are_never_mapped() {
        let (_dir, _, fd) = file_with(b"");
        let (server, _client) = pair();
        assert!(MapSlot::default()
            .send(&server, b"", &fd, 0, 0, 0)
            .is_none());
    }
}
