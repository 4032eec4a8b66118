//! `--io direct`: file bytes read with O_DIRECT through io_uring, bypassing
//! the page cache, for libraries much larger than RAM.
//!
//! Each file gets a glommio [`DmaFile`] beside its ordinary descriptor, opened
//! once per core (it lives as long as the file's entry in the open-file
//! cache). A range no longer than one read is a single aligned read; a longer
//! one streams through a [`DmaStreamReader`] that keeps `--direct-read-ahead`
//! reads in flight ahead of the socket. Every buffer in flight costs one
//! permit of the core's budget (`--direct-memory`): when it runs short a
//! response gets less read-ahead, and when it is gone a response waits for one
//! buffer, so a core's read memory stays bounded whatever the number of streams.

use crate::config::DirectIo;
use glommio::io::{DmaFile, DmaStreamReader, DmaStreamReaderBuilder, OpenOptions, ReadResult};
use glommio::sync::{Permit, Semaphore};
use std::cell::RefCell;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;

/// O_DIRECT alignment every read is rounded to (a page: at least the
/// logical block size of any device we serve from).
const ALIGN: u64 = 4096;

/// One core's O_DIRECT reader: the read shape and its memory budget.
pub struct DirectReads {
    shape: DirectIo,
    buffers: Semaphore,
}

/// A file's O_DIRECT handle, opened on first use.
#[derive(Default)]
pub struct DirectSlot(RefCell<SlotState>);

#[derive(Default)]
enum SlotState {
    #[default]
    Unopened,
    Open(Rc<DmaFile>),
    /// The filesystem refused O_DIRECT: this file is read through the page cache.
    Unsupported,
}

impl fmt::Debug for DirectSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &*self.0.borrow() {
            SlotState::Unopened => "unopened",
            SlotState::Open(_) => "open",
            SlotState::Unsupported => "unsupported",
        };
        f.write_str(state)
    }
}

impl DirectSlot {
    /// The O_DIRECT handle on the file behind `fd`, or `None` if its
    /// filesystem cannot do O_DIRECT (the caller then reads through the page
    /// cache). The file is reopened through `/proc/self/fd`, which names the
    /// very file already opened beneath the root: no path is resolved again.
    pub async fn open(&self, fd: &OwnedFd) -> Option<Rc<DmaFile>> {
        match &*self.0.borrow() {
            SlotState::Open(file) => return Some(file.clone()),
            SlotState::Unsupported => return None,
            SlotState::Unopened => {}
        }
        let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let opened = OpenOptions::new().read(true).dma_open(&path).await;
        let mut state = self.0.borrow_mut();
        // Another response may have opened it while this one waited.
        if let SlotState::Open(file) = &*state {
            return Some(file.clone());
        }
        match opened {
            Ok(file) => {
                let file = Rc::new(file);
                *state = SlotState::Open(file.clone());
                Some(file)
            }
            Err(_) => {
                *state = SlotState::Unsupported;
                None
            }
        }
    }
}

impl DirectReads {
    pub fn new(shape: DirectIo) -> DirectReads {
        DirectReads {
            shape,
            buffers: Semaphore::new(shape.buffers_per_core as u64),
        }
    }

    /// Starts reading `[start, end)` of `file`, with as much read-ahead as the
    /// range needs and the core's budget allows (waiting for one buffer if
    /// none is free).
    pub async fn stream(&self, file: Rc<DmaFile>, start: u64, end: u64) -> DirectStream<'_> {
        let read_size = self.shape.read_size as u64;
        let wanted = buffers_spanned(start, end, read_size).min(self.shape.read_ahead as u64);
        let (permit, granted) = self.reserve(wanted.max(1)).await;
        let source = if end - start <= read_size - ALIGN {
            // One aligned read covers it (`read_at` aligns the span itself).
            Source::Single(Some(file))
        } else {
            Source::Stream(
                DmaStreamReaderBuilder::from_rc(file)
                    .with_start_pos(start)
                    .with_end_pos(end)
                    .with_buffer_size(self.shape.read_size)
                    .with_read_ahead(granted as usize)
                    .build(),
            )
        };
        DirectStream {
            source,
            next: start,
            end,
            _permit: permit,
        }
    }

    /// Up to `wanted` buffers of the budget, at least one.
    async fn reserve(&self, wanted: u64) -> (Option<Permit<'_>>, u64) {
        for units in (1..=wanted).rev() {
            if let Ok(permit) = self.buffers.try_acquire_permit(units) {
                return (Some(permit), units);
            }
        }
        // The semaphore is never closed, so this only fails if it were; then
        // read anyway with a single buffer rather than fail the response.
        (self.buffers.acquire_permit(1).await.ok(), 1)
    }
}

/// `[start, start + len)` of `file` in one aligned read. Only bytes the
/// read really returned are kept: past the end of a file that shrank, the
/// buffer holds no data (glommio's own `read_at` can slice past it).
async fn read_span(
    file: &DmaFile,
    start: u64,
    len: u64,
) -> glommio::Result<Option<ReadResult>, ()> {
    let aligned_start = start - start % ALIGN;
    let skip = (start - aligned_start) as usize;
    let aligned_len = (skip as u64 + len).div_ceil(ALIGN) * ALIGN;
    let data = file
        .read_at_aligned(aligned_start, aligned_len as usize)
        .await?;
    let valid = data.len().saturating_sub(skip).min(len as usize);
    Ok((valid > 0)
        .then(|| ReadResult::slice(&data, skip, valid))
        .flatten())
}

/// How many `read_size`-aligned buffers `[start, end)` touches.
fn buffers_spanned(start: u64, end: u64, read_size: u64) -> u64 {
    if end <= start {
        return 0;
    }
    (end - 1) / read_size - start / read_size + 1
}

enum Source {
    /// One read; taken when it is issued.
    Single(Option<Rc<DmaFile>>),
    Stream(DmaStreamReader),
}

/// One response's O_DIRECT reads, in order.
pub struct DirectStream<'a> {
    source: Source,
    next: u64,
    end: u64,
    _permit: Option<Permit<'a>>,
}

impl DirectStream<'_> {
    /// The next bytes of the range, at most one read's worth. `None` before
    /// the end means the file is shorter than planned.
    pub async fn next(&mut self) -> io::Result<Option<ReadResult>> {
        let left = self.end - self.next;
        let data = match &mut self.source {
            Source::Single(file) => match file.take() {
                Some(file) => read_span(&file, self.next, left).await,
                None => return Ok(None),
            },
            Source::Stream(reader) => reader
                .get_buffer_aligned(left)
                .await
                .map(|data| (!data.is_empty()).then_some(data)),
        }
        .map_err(io::Error::from)?;
        self.next += data.as_ref().map_or(0, |d| d.len() as u64);
        Ok(data)
    }

    /// Cancels the reads still in flight.
    pub async fn close(self) {
        if let Source::Stream(reader) = self.source {
            let _ = reader.close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_spanned_counts_aligned_buffers_touched() {
        assert_eq!(buffers_spanned(0, 0, 4096), 0);
        assert_eq!(buffers_spanned(0, 1, 4096), 1);
        assert_eq!(buffers_spanned(0, 4096, 4096), 1);
        assert_eq!(buffers_spanned(0, 4097, 4096), 2);
        assert_eq!(buffers_spanned(4095, 4097, 4096), 2);
        assert_eq!(buffers_spanned(10, 3 * 4096, 4096), 3);
    }
}
