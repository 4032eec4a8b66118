//! The data path: a planned response head and its file bytes onto the socket.
//! Callers see only [`Transfer`]; which way the bytes go is decided here:
//!
//! 1. A short single range of a cached, resident file: the head and the
//!    bytes in one `sendmsg` from the file's mapping (`server::mapped`).
//! 2. Resident stretches of at least [`ZERO_COPY_MIN`]: `sendfile` after the
//!    head (sent with MSG_MORE), corked when long (see [`CORK_MIN`]).
//!    Residency is asked of `server::residency`; `sendfile` never sees a page
//!    that is not in the page cache, so it never waits for the disk.
//!    A `sendfile` that takes fewer bytes than offered has filled the socket:
//!    the connection then parks on the socket's writability (a POLLOUT poll
//!    through glommio's ring, as nginx waits for EPOLLOUT) before the next
//!    one, instead of trying again only to be told EAGAIN.
//! 3. Everything else is read into the send buffer behind the head: inline
//!    with `preadv2(RWF_NOWAIT)` when resident (it returns what the page
//!    cache holds or EAGAIN, never blocks), else through io_uring (glommio's
//!    `BufferedFile::read_at`), which parks this connection's task and leaves
//!    the core serving others while the disk works.
//! 4. Under `--io direct`, O_DIRECT reads with read-ahead (`server::direct`)
//!    replace all three.
//!
//! Chunks of [`CHUNK`] bound memory per connection whatever the file or
//! range size.
//!
//! The transport says once whether the socket may be written around it
//! ([`Transport::raw_socket`]): plain and kernel-TLS sockets take paths 1
//! and 2; under user-space TLS every byte takes path 3 and is encrypted on
//! its way out by [`Transport::write_all`].

use super::direct::{DirectReads, DirectStream};
use super::fs::OpenFile;
use super::transport::Transport;
use crate::config::Pacing;
use crate::http::plan::Body;
use crate::http::range::ByteRange;
use glommio::io::DmaFile;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Bytes gathered before a `send`: the per-connection memory bound.
pub const CHUNK: usize = 64 * 1024;
/// Ranges (or what remains of one) at least this long go file -> socket with
/// `sendfile`, when resident; shorter ones ride in the head's write.
const ZERO_COPY_MIN: u64 = 32 * 1024;
/// Responses with more than this left to sendfile are sent corked (TCP_CORK,
/// nginx's `tcp_nopush`): only full segments leave until the end. Without
/// it every `sendfile` call ends in a short, pushed segment, and on a long
/// stream those halve what a receiver takes per CPU second (measured on
/// loopback: 1.5 GB/s uncorked, 3.2 GB/s corked). Short ranges skip the
/// two extra syscalls: their one `sendfile` pushes once, at its end.
const CORK_MIN: u64 = 256 * 1024;
/// Bytes per `sendfile` call: bounds the time one call holds the core (about
/// 0.4 ms here), as nginx's `sendfile_max_chunk` (2m) does. 1, 2, 4 and 8 MiB
/// measured the same CPU per whole-file download (docs/benchmarks.md).
const SENDFILE_MAX: u64 = 2 * 1024 * 1024;
/// A response yields the core to the others after this many bytes, so
/// streams that never fill their socket still take turns (as nginx's
/// `sendfile_max_chunk` does): fair shares, and concurrent readers of one
/// file stay close together, sharing the CPU cache.
const TURN_BYTES: u64 = 2 * 1024 * 1024;
/// When a socket that polled writable still refuses `sendfile`, this much is
/// copied through glommio's write path, which parks the task until the socket
/// takes bytes again.
const PARK_SLICE: usize = 4 * 1024;
/// Smallest paced write: below this, per-write overhead dominates.
const MIN_PACED_CHUNK: usize = 4 * 1024;
/// A paced response is sent in pieces of about this much time's worth of bytes.
const PACING_GRANULARITY: Duration = Duration::from_millis(50);

/// What can end a response early.
#[derive(Debug)]
pub enum SendError {
    /// The client went away or the socket failed.
    Socket(io::Error),
    /// The socket accepted no bytes for the send timeout.
    SendTimeout,
    /// Reading the file failed.
    File(io::Error),
    /// The file is shorter than when it was planned (truncated while being
    /// served). We stop without padding; the connection must close.
    Truncated,
}

/// One response on its way out, and what it cost.
pub struct Transfer<'a> {
    transport: &'a mut Transport,
    /// The socket for sendfile, mapped sends and corking; `None` when every
    /// byte must go through the transport (user-space TLS).
    raw: Option<RawFd>,
    file: Option<&'a OpenFile>,
    /// Set under `--io direct`: file bytes come from O_DIRECT reads.
    direct: Option<&'a DirectReads>,
    /// When the request was parsed: the origin of every latency.
    started: Instant,
    /// When the last step (a read, a send) ended: each step is timed from
    /// here, so a step costs one clock reading, not two.
    last: Instant,
    /// Time to the first byte handed to the kernel.
    pub first_byte: Option<Duration>,
    /// Time spent in writes (waiting for the socket included).
    pub socket_time: Duration,
    /// Time spent getting file data.
    pub disk_time: Duration,
    /// Bytes handed to the kernel.
    pub sent: u64,
    /// File bytes read into the send buffer.
    pub body_copied: u64,
    /// Bytes gathered per write: [`CHUNK`], or less when paced.
    chunk: usize,
    /// Bytes per paced `sendfile`: [`PACING_GRANULARITY`] of the rate, not
    /// bounded by [`CHUNK`] (no user memory holds them), at most [`SENDFILE_MAX`].
    paced_sendfile: u64,
    pacing: Option<Pacing>,
    /// When the first paced byte went out: the token bucket's origin.
    paced_since: Option<Instant>,
    /// File bytes that went file -> socket without user memory (sendfile).
    pub body_zero_copy: u64,
    /// Bytes sent since this response last let other tasks run.
    turn: u64,
    /// TCP_CORK is set on the socket (a long stream, or parked on a full
    /// socket); cleared when the response ends.
    corked: bool,
    /// Whether sendfile may be used: not under user-space TLS, and not once
    /// the kernel lacks `cachestat` (we never sendfile what might block on
    /// the disk). Paced responses use it too, in paced pieces.
    zero_copy: bool,
}

impl<'a> Transfer<'a> {
    pub fn new(
        transport: &'a mut Transport,
        file: Option<&'a OpenFile>,
        direct: Option<&'a DirectReads>,
        started: Instant,
        pacing: Option<Pacing>,
    ) -> Self {
        let per_tick = pacing.map_or(0, |p| {
            (p.bytes_per_sec as f64 * PACING_GRANULARITY.as_secs_f64()) as u64
        });
        let chunk = match pacing {
            Some(_) => (per_tick as usize).clamp(MIN_PACED_CHUNK, CHUNK),
            None => CHUNK,
        };
        let paced_sendfile = per_tick.clamp(MIN_PACED_CHUNK as u64, SENDFILE_MAX);
        let raw = transport.raw_socket();
        Transfer {
            chunk,
            paced_sendfile,
            pacing,
            paced_since: None,
            body_zero_copy: 0,
            turn: 0,
            corked: false,
            zero_copy: raw.is_some(),
            transport,
            raw,
            file,
            direct,
            started,
            last: started,
            first_byte: None,
            socket_time: Duration::ZERO,
            disk_time: Duration::ZERO,
            sent: 0,
            body_copied: 0,
        }
    }

    /// When the last step of this response ended.
    pub fn finished_at(&self) -> Instant {
        self.last
    }

    /// The time since the last step ended, which now does.
    fn lap(&mut self) -> Duration {
        let now = Instant::now();
        let step = now - self.last;
        self.last = now;
        step
    }

    /// Sends `head` and then the body the plan chose. `head` is used as the
    /// coalescing buffer and is left empty.
    pub async fn send(&mut self, head: &mut Vec<u8>, body: &Body) -> Result<(), SendError> {
        let mut result = self.send_body(head, body).await;
        if let (true, Some(socket)) = (self.corked, self.raw) {
            // Uncorking pushes out the last partial segment.
            self.corked = false;
            if let Err(e) = set_cork(socket, false) {
                result = result.and(Err(SendError::Socket(e)));
            }
        }
        result
    }

    async fn send_body(&mut self, pending: &mut Vec<u8>, body: &Body) -> Result<(), SendError> {
        match body {
            Body::None => {}
            Body::Generated(bytes) => pending.extend_from_slice(bytes),
            Body::File(range) => {
                let mut range = *range;
                let mapped = self.send_mapped(range, pending)?;
                if mapped == range.end - range.start + 1 {
                    return Ok(());
                }
                range.start += mapped;
                self.copy_range(range, pending).await?
            }
            Body::Multipart { parts, closing } => {
                for part in parts {
                    pending.extend_from_slice(&part.head);
                    self.copy_range(part.range, pending).await?;
                }
                pending.extend_from_slice(closing);
            }
        }
        self.flush(pending).await
    }

    /// The fast path for a short range of a hot file: the head in `pending`
    /// and the range's bytes in one `sendmsg` from the file's mapping (see
    /// `server::mapped`). Returns the body bytes sent, 0 when the path does
    /// not apply (the caller then sends it the ordinary way); what the
    /// socket did not take is left for the caller.
    fn send_mapped(&mut self, range: ByteRange, pending: &mut Vec<u8>) -> Result<u64, SendError> {
        let len = range.end - range.start + 1;
        let (Some(file), Some(socket)) = (self.file, self.raw) else {
            return Ok(0);
        };
        // A paced response takes this path only if it ends before pacing starts.
        let paced = self
            .pacing
            .is_some_and(|p| self.sent + pending.len() as u64 + len > p.after);
        if self.direct.is_some() || paced || len >= ZERO_COPY_MIN || !file.residency.is_kept() {
            return Ok(0);
        }
        let fd = file.fd.as_raw_fd();
        if file
            .residency
            .check(fd, range.start, len, file.meta.len, self.last)
            != Some(true)
        {
            return Ok(0);
        }
        let sent = file.mapping.send(
            &socket,
            pending,
            &file.fd,
            file.meta.len,
            range.start,
            len as usize,
        );
        let n = match sent {
            None => return Ok(0),
            Some(Ok(n)) => n,
            // A full socket, or a file that shrank: the ordinary path parks
            // or reports the truncation.
            Some(Err(e)) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EFAULT)) => {
                return Ok(0)
            }
            Some(Err(e)) => return Err(SendError::Socket(e)),
        };
        let step = self.lap();
        self.socket_time += step;
        if n == 0 {
            return Ok(0);
        }
        self.first_byte.get_or_insert(self.last - self.started);
        self.sent += n as u64;
        let head_sent = n.min(pending.len());
        pending.drain(..head_sent);
        let body_sent = (n - head_sent) as u64;
        self.body_copied += body_sent;
        Ok(body_sent)
    }

    /// Sends the bytes of `range`: resident stretches of at least
    /// [`ZERO_COPY_MIN`] by `sendfile`, the rest copied into `pending` and sent
    /// whenever a chunk's worth has gathered. What is left in `pending` shares
    /// a write with what follows.
    async fn copy_range(
        &mut self,
        range: ByteRange,
        pending: &mut Vec<u8>,
    ) -> Result<(), SendError> {
        let file = self
            .file
            .ok_or_else(|| SendError::File(io::ErrorKind::NotFound.into()))?;
        let mut offset = range.start;
        if let Some(direct) = self.direct {
            if let Some(dma) = file.direct.open(&file.fd).await {
                match self.copy_range_direct(direct, dma, range, pending).await? {
                    Direct::Done => return Ok(()),
                    Direct::Refused { at } => offset = at,
                }
            }
        }
        let end = range.end + 1;
        // The last step was a wait for writability.
        let mut woken = false;
        while offset < end {
            if self.zero_copy && end - offset >= ZERO_COPY_MIN {
                match self.send_resident(file, offset, end, pending).await? {
                    ZeroCopy::Sent { bytes, filled } => {
                        offset += bytes;
                        if filled {
                            self.wait_writable().await?;
                        }
                        woken = filled;
                        continue;
                    }
                    ZeroCopy::SocketFull if !woken => {
                        self.wait_writable().await?;
                        woken = true;
                        continue;
                    }
                    ZeroCopy::SocketFull => {
                        // Writable by poll, yet full to sendfile (TCP memory
                        // pressure can do that): a small copied write through
                        // glommio's write path parks until bytes really move.
                        // Corked, it joins the next sendfile's segments
                        // instead of going out as a small packet of its own.
                        woken = false;
                        self.cork()?;
                        offset += self
                            .copy_chunk(file, offset, end, PARK_SLICE, pending)
                            .await?;
                        self.flush(pending).await?;
                        continue;
                    }
                    ZeroCopy::NotResident => woken = false,
                }
            }
            if pending.len() >= self.chunk {
                self.flush(pending).await?;
            }
            let room = self.chunk - pending.len();
            offset += self.copy_chunk(file, offset, end, room, pending).await?;
        }
        Ok(())
    }

    /// Sends the bytes of `range` from O_DIRECT reads: small reads join
    /// `pending`, large ones go to the socket straight from the read buffer.
    async fn copy_range_direct(
        &mut self,
        direct: &DirectReads,
        file: Rc<DmaFile>,
        range: ByteRange,
        pending: &mut Vec<u8>,
    ) -> Result<Direct, SendError> {
        let end = range.end + 1;
        let mut reads = direct.stream(file, range.start, end).await;
        let result = self.send_reads(&mut reads, range.start, end, pending).await;
        reads.close().await;
        result
    }

    /// The loop of [`Self::copy_range_direct`].
    async fn send_reads(
        &mut self,
        reads: &mut DirectStream<'_>,
        mut offset: u64,
        end: u64,
        pending: &mut Vec<u8>,
    ) -> Result<Direct, SendError> {
        while offset < end {
            let data = match reads.next().await {
                Ok(data) => data,
                Err(e) if refused_direct(&e) => return Ok(Direct::Refused { at: offset }),
                Err(e) => return Err(SendError::File(e)),
            };
            let step = self.lap();
            self.disk_time += step;
            let Some(data) = data else {
                self.flush(pending).await?;
                return Err(SendError::Truncated);
            };
            offset += data.len() as u64;
            self.body_copied += data.len() as u64;
            if pending.len() + data.len() <= self.chunk {
                pending.extend_from_slice(&data);
                continue;
            }
            self.send_corked(pending).await?;
            // Straight from the read buffer: in one write when unpaced (fewer
            // system calls, and the receiver woken per write, not per
            // [`CHUNK`]); paced, in the pacer's pieces.
            if self.pacing.is_none() {
                self.write_out(&data).await?;
                continue;
            }
            for piece in data.chunks(self.chunk) {
                self.write_out(piece).await?;
            }
        }
        Ok(Direct::Done)
    }

    /// Reads up to `max` bytes at `offset` (before `end`) into `pending`:
    /// inline when resident, through io_uring when not.
    async fn copy_chunk(
        &mut self,
        file: &OpenFile,
        offset: u64,
        end: u64,
        max: usize,
        pending: &mut Vec<u8>,
    ) -> Result<u64, SendError> {
        let want = (end - offset).min(max as u64) as usize;
        let read = match read_resident(file.fd.as_raw_fd(), pending, offset, want) {
            Ok(Some(n)) => n,
            Ok(None) => read_through_uring(file, pending, offset, want).await?,
            Err(e) => return Err(SendError::File(e)),
        };
        let step = self.lap();
        self.disk_time += step;
        if read == 0 {
            self.flush(pending).await?;
            return Err(SendError::Truncated);
        }
        self.body_copied += read as u64;
        Ok(read as u64)
    }

    /// One `sendfile` of the resident bytes at `offset`, after the queued head
    /// (sent with MSG_MORE, so head and body leave in the same segment).
    async fn send_resident(
        &mut self,
        file: &OpenFile,
        offset: u64,
        end: u64,
        pending: &mut Vec<u8>,
    ) -> Result<ZeroCopy, SendError> {
        let len = self.paced_piece(end - offset, pending.len());
        let fd = file.fd.as_raw_fd();
        match file
            .residency
            .check(fd, offset, len, file.meta.len, self.last)
        {
            Some(true) => {}
            Some(false) => return Ok(ZeroCopy::NotResident),
            None => {
                self.zero_copy = false;
                return Ok(ZeroCopy::NotResident);
            }
        }
        let Some(socket) = self.raw else {
            return Ok(ZeroCopy::NotResident);
        };
        // Paced pieces go out as they are due: corked, a piece's last
        // segment would wait for the next.
        if end - offset > CORK_MIN && self.pacing.is_none() {
            self.cork()?;
        }
        self.send_corked(pending).await?;
        if self.wait_for_tokens(len as usize).await {
            self.lap(); // time spent paced is not time waiting for the socket
        }
        let mut file_offset = i64::try_from(offset).map_err(|_| SendError::Truncated)?;
        // SAFETY: plain syscall on descriptors this transfer holds open.
        let n = unsafe { libc::sendfile(socket, fd, &mut file_offset, len as usize) };
        let step = self.lap();
        self.socket_time += step;
        if n > 0 || self.sent > 0 {
            self.first_byte.get_or_insert(self.last - self.started);
        }
        if n < 0 {
            let error = io::Error::last_os_error();
            return match error.raw_os_error() {
                Some(libc::EAGAIN) => Ok(ZeroCopy::SocketFull),
                _ => Err(SendError::Socket(error)),
            };
        }
        if n == 0 {
            return Err(SendError::Truncated);
        }
        self.sent += n as u64;
        self.body_zero_copy += n as u64;
        let bytes = n as u64;
        let filled = bytes < len;
        if !filled {
            self.end_turn_after(bytes).await;
        }
        Ok(ZeroCopy::Sent { bytes, filled })
    }

    /// Sets TCP_CORK for the rest of this response (cleared in [`Self::send`]).
    fn cork(&mut self) -> Result<(), SendError> {
        if let (false, Some(socket)) = (self.corked, self.raw) {
            set_cork(socket, true).map_err(SendError::Socket)?;
            self.corked = true;
        }
        Ok(())
    }

    /// Sends `pending` with MSG_MORE so the kernel holds it for the bytes that
    /// follow; whatever the socket does not take at once goes through glommio.
    /// Untimed: the kernel holds these bytes until the next step's, and that
    /// step's lap (and first byte) covers both, for one clock reading less.
    async fn send_corked(&mut self, pending: &mut Vec<u8>) -> Result<(), SendError> {
        let Some(socket) = self.raw.filter(|_| !pending.is_empty()) else {
            return self.flush(pending).await;
        };
        let flags = libc::MSG_MORE | libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
        // SAFETY: the pointer and length describe `pending`'s initialised bytes.
        let n = unsafe { libc::send(socket, pending.as_ptr().cast(), pending.len(), flags) };
        if n > 0 {
            self.sent += n as u64;
            pending.drain(..n as usize);
        }
        self.flush(pending).await
    }

    async fn flush(&mut self, pending: &mut Vec<u8>) -> Result<(), SendError> {
        if pending.is_empty() {
            return Ok(());
        }
        self.write_out(pending).await?;
        pending.clear();
        Ok(())
    }

    /// Writes all of `bytes`, parking on the socket's writability (and on
    /// `--limit-rate`'s tokens) as needed.
    async fn write_out(&mut self, bytes: &[u8]) -> Result<(), SendError> {
        if self.wait_for_tokens(bytes.len()).await {
            self.lap(); // time spent paced is not time waiting for the socket
        }
        let result = self.transport.write_all(bytes).await;
        let step = self.lap();
        self.socket_time += step;
        result.map_err(socket_error)?;
        self.first_byte.get_or_insert(self.last - self.started);
        self.sent += bytes.len() as u64;
        self.end_turn_after(bytes.len() as u64).await;
        Ok(())
    }

    /// Parks until the socket polls writable (POLLOUT), within the send
    /// timeout. Parked, this response has let the others run, so its turn
    /// starts over.
    async fn wait_writable(&mut self) -> Result<(), SendError> {
        let result = self.transport.writable().await;
        let step = self.lap();
        self.socket_time += step;
        self.turn = 0;
        result.map_err(socket_error)
    }

    /// Counts `sent` bytes toward this response's turn and, once it has had
    /// [`TURN_BYTES`], lets the core's other tasks run first.
    async fn end_turn_after(&mut self, sent: u64) {
        self.turn += sent;
        if self.turn >= TURN_BYTES {
            self.turn = 0;
            futures_lite::future::yield_now().await;
        }
    }
}

impl Transfer<'_> {
    /// How much of the `left` bytes one `sendfile` sends: at most
    /// [`SENDFILE_MAX`]; under `--limit-rate`, all of it up to where pacing
    /// starts (`--limit-rate-after`, counted over the whole response,
    /// `queued` head bytes included), then a paced piece
    /// ([`Self::paced_sendfile`]) at a time, each after its tokens. A tail too short for sendfile
    /// joins the piece before it rather than being copied.
    fn paced_piece(&self, left: u64, queued: usize) -> u64 {
        let most = left.min(SENDFILE_MAX);
        let Some(pacing) = self.pacing else {
            return most;
        };
        let sent = self.sent + queued as u64;
        let piece = match pacing.after.saturating_sub(sent) {
            0 => most.min(self.paced_sendfile),
            unpaced => most.min(unpaced),
        };
        if left - piece < ZERO_COPY_MIN {
            most
        } else {
            piece
        }
    }

    /// Token bucket for `--limit-rate`: before sending `len` more bytes, wait
    /// until the bytes beyond `--limit-rate-after` fit the rate since pacing
    /// began. One timer per paced write, none per byte.
    /// Returns whether pacing applied.
    async fn wait_for_tokens(&mut self, len: usize) -> bool {
        let Some(pacing) = self.pacing else {
            return false;
        };
        let paced_bytes = (self.sent + len as u64).saturating_sub(pacing.after);
        if paced_bytes == 0 {
            return false;
        }
        let since = *self.paced_since.get_or_insert_with(Instant::now);
        let due = since + Duration::from_secs_f64(paced_bytes as f64 / pacing.bytes_per_sec as f64);
        let now = Instant::now();
        if due > now {
            glommio::timer::sleep(due - now).await;
        }
        true
    }
}

/// A failed or timed-out write, as a [`SendError`].
fn socket_error(error: io::Error) -> SendError {
    match error.kind() {
        io::ErrorKind::TimedOut => SendError::SendTimeout,
        _ => SendError::Socket(error),
    }
}

/// Sets or clears TCP_CORK: while set, the kernel sends only full segments.
fn set_cork(socket: RawFd, on: bool) -> io::Result<()> {
    let value: libc::c_int = on.into();
    // SAFETY: a plain setsockopt with a pointer to a live c_int.
    let rc = unsafe {
        libc::setsockopt(
            socket,
            libc::IPPROTO_TCP,
            libc::TCP_CORK,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The slow path: data not in the page cache. io_uring reads it while the
/// core serves other connections.
async fn read_through_uring(
    file: &OpenFile,
    pending: &mut Vec<u8>,
    offset: u64,
    want: usize,
) -> Result<usize, SendError> {
    let uring = file
        .uring
        .get(file.fd.as_raw_fd())
        .map_err(SendError::File)?;
    let data = uring
        .read_at(offset, want)
        .await
        .map_err(|e| SendError::File(e.into()))?;
    pending.extend_from_slice(&data);
    Ok(data.len())
}

/// How an O_DIRECT transfer ended.
enum Direct {
    Done,
    /// The kernel refused an O_DIRECT read (some filesystems do, for some
    /// extents, e.g. data not yet written back); the rest of the range, from
    /// `at`, goes through the page cache.
    Refused {
        at: u64,
    },
}

/// Errors an O_DIRECT read ends with when the page cache could still serve it.
fn refused_direct(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EOPNOTSUPP) | Some(libc::EINVAL)
    ) || error.kind() == io::ErrorKind::Unsupported
}

/// What one zero-copy attempt did.
enum ZeroCopy {
    /// `bytes` went out; `filled`: fewer than offered, so the socket's
    /// buffer is now full and the next `sendfile` would fail.
    Sent { bytes: u64, filled: bool },
    /// The socket's buffer is full: park, then try again.
    SocketFull,
    /// Not (all) in the page cache: take the copy path, which reads it
    /// through io_uring without blocking the core.
    NotResident,
}

/// Reads up to `want` bytes at `offset` into `buf`'s spare capacity if the
/// page cache holds them: `Ok(None)` means "not resident, would block".
/// `Ok(Some(0))` is end of file.
fn read_resident(
    fd: RawFd,
    buf: &mut Vec<u8>,
    offset: u64,
    want: usize,
) -> io::Result<Option<usize>> {
    buf.reserve(want);
    let spare = buf.spare_capacity_mut();
    let iov = libc::iovec {
        iov_base: spare.as_mut_ptr().cast(),
        iov_len: want.min(spare.len()),
    };
    let offset = i64::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: the iovec points into `buf`'s reserved, unused capacity.
    let n = unsafe { libc::preadv2(fd, &iov, 1, offset, libc::RWF_NOWAIT) };
    if n < 0 {
        let error = io::Error::last_os_error();
        return match error.raw_os_error() {
            Some(libc::EAGAIN) => Ok(None),
            // Kernels or filesystems without RWF_NOWAIT: take the io_uring path.
            Some(libc::EOPNOTSUPP) | Some(libc::EINVAL) => Ok(None),
            _ => Err(error),
        };
    }
    // SAFETY: the kernel initialised exactly `n` bytes of the spare capacity.
    unsafe { buf.set_len(buf.len() + n as usize) };
    Ok(Some(n as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_reads_append_and_report_end_of_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let _ = std::fs::read(&path); // make it resident
        let mut buf = b"HEAD".to_vec();
        assert_eq!(
            read_resident(file.as_raw_fd(), &mut buf, 2, 4).unwrap(),
            Some(4)
        );
        assert_eq!(buf, b"HEAD2345");
        assert_eq!(
            read_resident(file.as_raw_fd(), &mut buf, 8, 100).unwrap(),
            Some(2)
        );
        assert_eq!(
            read_resident(file.as_raw_fd(), &mut buf, 10, 100).unwrap(),
            Some(0)
        );
        assert_eq!(buf, b"HEAD234589");
    }
}
