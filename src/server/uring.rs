//! A file's io_uring handle for reads that miss the page cache, made on its
//! first miss and kept as long as the open file (`fs::OpenFile::uring`);
//! the data path (`send`) reads through it.

use glommio::io::BufferedFile;
use std::cell::RefCell;
use std::io;
use std::os::fd::{FromRawFd, RawFd};
use std::rc::Rc;

/// A file's io_uring handle for reads that miss the page cache, made on the
/// first miss and kept as long as the open file (a `dup` and a close per
/// cold response otherwise).
#[derive(Default)]
pub struct UringSlot(RefCell<Option<Rc<BufferedFile>>>);

impl UringSlot {
    pub fn get(&self, fd: RawFd) -> io::Result<Rc<BufferedFile>> {
        if let Some(file) = &*self.0.borrow() {
            return Ok(file.clone());
        }
        let copy = nix::unistd::dup(fd)?;
        // SAFETY: `dup` returned a fresh descriptor that the BufferedFile now owns.
        let file = Rc::new(unsafe { BufferedFile::from_raw_fd(copy) });
        *self.0.borrow_mut() = Some(file.clone());
        Ok(file)
    }
}

impl std::fmt::Debug for UringSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.borrow().is_some() {
            "open"
        } else {
            "unopened"
        })
    }
}
