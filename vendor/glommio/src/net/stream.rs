// Unless explicitly stated otherwise all files in this repository are licensed
// under the MIT/Apache-2.0 License, at your convenience
//
// This product includes software developed at Datadog (https://www.datadoghq.com/). Copyright 2020 Datadog, Inc.
//
use crate::{
    reactor::Reactor,
    sys::{self, Source, SourceType},
};
use futures_lite::ready;
use nix::sys::socket::MsgFlags;
use std::{
    cell::Cell,
    io,
    net::Shutdown,
    os::unix::io::{AsRawFd, FromRawFd, RawFd},
    rc::{Rc, Weak},
    task::{Context, Poll, RawWakerVTable, Waker},
    time::{Duration, Instant},
};

type Result<T> = crate::Result<T, ()>;

/// Root trait for socket stream receive buffer
pub trait RxBuf {
    fn read(&mut self, buf: &mut [u8]) -> usize;
    fn peek(&self, buf: &mut [u8]) -> usize;
    fn is_empty(&self) -> bool;
    fn as_bytes(&self) -> &[u8];
    fn consume(&mut self, amt: usize);
    fn buffer_size(&self) -> usize;
    fn handle_result(&mut self, result: usize);
    fn unfilled(&mut self) -> &mut [u8];
}

#[derive(Debug, Default)]
pub struct NonBuffered;

impl RxBuf for NonBuffered {
    fn read(&mut self, _buf: &mut [u8]) -> usize {
        0
    }

    fn peek(&self, _buf: &mut [u8]) -> usize {
        0
    }

    fn is_empty(&self) -> bool {
        true
    }

    fn as_bytes(&self) -> &[u8] {
        &[]
    }

    fn consume(&mut self, _amt: usize) {}

    fn buffer_size(&self) -> usize {
        0
    }

    fn handle_result(&mut self, _result: usize) {}

    fn unfilled(&mut self) -> &mut [u8] {
        &mut []
    }
}

/// Trait for receive buffer implementations
pub trait Buffered: RxBuf {}

/// Non-shared fixed sized receive buffer allocated
/// when buffered stream is created
#[derive(Debug)]
pub struct Preallocated {
    buf: Vec<u8>,
    head: usize,
    tail: usize,
    cap: usize,
}

impl Preallocated {
    const DEFAULT_BUFFER_SIZE: usize = 8192;

    /// Creates a fixed sized receive buffer
    pub fn new(size: usize) -> Self {
        Self {
            buf: vec![0; size],
            tail: 0,
            head: 0,
            cap: size,
        }
    }
}

impl Default for Preallocated {
    fn default() -> Self {
        Self::new(Self::DEFAULT_BUFFER_SIZE)
    }
}

impl Preallocated {
    fn len(&self) -> usize {
        self.tail - self.head
    }
}

impl Buffered for Preallocated {}

impl RxBuf for Preallocated {
    fn read(&mut self, buf: &mut [u8]) -> usize {
        let sz = std::cmp::min(self.len(), buf.len());
        if sz > 0 {
            buf[..sz].copy_from_slice(&self.buf[self.head..self.head + sz]);
            self.head += sz;
        }
        sz
    }

    fn peek(&self, buf: &mut [u8]) -> usize {
        let sz = std::cmp::min(self.len(), buf.len());
        if sz > 0 {
            buf[..sz].copy_from_slice(&self.buf[self.head..self.head + sz]);
        }
        sz
    }

    fn is_empty(&self) -> bool {
        self.head >= self.tail
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[self.head..self.tail]
    }

    fn consume(&mut self, amt: usize) {
        self.head += std::cmp::min(self.len(), amt);
    }

    fn buffer_size(&self) -> usize {
        self.cap
    }

    fn handle_result(&mut self, result: usize) {
        self.tail += result;
    }

    fn unfilled(&mut self) -> &mut [u8] {
        if self.len() == 0 {
            self.head = 0;
            self.tail = 0;
        }
        &mut self.buf[self.tail..]
    }
}

/// What `Waker::will_wake` compares: the data and vtable pointers.
type WakerIdentity = (*const (), *const RawWakerVTable);

fn waker_identity(waker: &Waker) -> WakerIdentity {
    (waker.data(), waker.vtable())
}

/// A stream's read or write timeout.
///
/// ringcast patch (PATCHES.md change 11): the reactor timer is lazy. Upstream
/// inserted a timer when an operation went pending and removed it when the
/// operation completed: two ordered-map and three hash-map operations per
/// read, on every request of a keep-alive connection. Now a completed
/// operation only forgets its deadline, and its timer stays registered. The
/// next operation keeps that timer when it fires no later than its own
/// deadline and wakes the same task: when it fires early, the task's next
/// poll sees it gone ([`Timeout::check`]) and registers the real deadline. A
/// connection's timer is thus touched about once per timeout period, not per
/// request. Dropping the stream removes it ([`NonBufferedStream`]'s `Drop`).
#[derive(Debug)]
struct Timeout {
    id: u64,
    timeout: Cell<Option<Duration>>,
    /// When the operation now pending times out; `None` when none is.
    deadline: Cell<Option<Instant>>,
    /// When the timer registered with the reactor fires, if one is: this
    /// operation's deadline, or an earlier one left from a completed
    /// operation.
    registered: Cell<Option<Instant>>,
    /// Which waker the registered timer wakes (its identity, not a clone:
    /// a clone here would keep the task alive as long as the stream).
    waker: Cell<Option<WakerIdentity>>,
}

impl Timeout {
    fn new(id: u64) -> Self {
        Self {
            id,
            timeout: Cell::new(None),
            deadline: Cell::new(None),
            registered: Cell::new(None),
            waker: Cell::new(None),
        }
    }

    fn get(&self) -> Option<Duration> {
        self.timeout.get()
    }

    fn set(&self, dur: Option<Duration>) -> Result<()> {
        if let Some(dur) = dur.as_ref() {
            if dur.as_nanos() == 0 {
                return Err(io::Error::from_raw_os_error(libc::EINVAL).into());
            }
        }
        self.timeout.set(dur);
        Ok(())
    }

    /// Called when an operation goes pending: gives it a deadline, if it has
    /// none yet, and makes sure a timer that wakes `waker` fires no later.
    fn maybe_set_timer(&self, reactor: &Reactor, waker: &Waker) {
        let deadline = match self.deadline.get() {
            // Keeps the deadline's timer even if the timeout was unset since.
            Some(deadline) => deadline,
            None => {
                let Some(timeout) = self.timeout.get() else {
                    return;
                };
                let now = Instant::now();
                let deadline = now + timeout;
                self.deadline.set(Some(deadline));
                // A kept timer must still be pending (one due by now may
                // have fired unseen), fire first, and wake this task. While
                // it is pending the reactor holds its waker, so the identity
                // below cannot belong to another task.
                let keep = self.registered.get().is_some_and(|at| {
                    at > now && at <= deadline && self.waker.get() == Some(waker_identity(waker))
                });
                if !keep {
                    self.registered.set(None);
                }
                deadline
            }
        };
        if self.registered.get().is_none() {
            // Replaces any timer this id still has.
            reactor.insert_timer(self.id, deadline, waker.clone());
            self.registered.set(Some(deadline));
            self.waker.set(Some(waker_identity(waker)));
        }
    }

    /// The operation completed: it no longer times out. Its timer is kept
    /// for the next one (see the type's docs), so the reactor is not touched.
    fn cancel_timer(&self) {
        self.deadline.set(None);
    }

    /// Whether the pending operation timed out. A registered timer that fired
    /// before this operation's deadline was an earlier operation's: it is
    /// forgotten, and the caller's `maybe_set_timer` registers the real one.
    fn check(&self, reactor: &Reactor) -> io::Result<()> {
        let (Some(deadline), Some(registered)) = (self.deadline.get(), self.registered.get())
        else {
            return Ok(());
        };
        if reactor.timer_exists(&(registered, self.id)) {
            return Ok(());
        }
        reactor.remove_timer(self.id);
        self.registered.set(None);
        self.waker.set(None);
        if registered < deadline {
            return Ok(());
        }
        self.deadline.set(None);
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "Operation timed out",
        ))
    }

    /// Removes the registered timer, if any (the stream is going away).
    fn unregister(&self, reactor: &Reactor) {
        if self.registered.take().is_some() {
            reactor.remove_timer(self.id);
        }
    }
}

#[derive(Debug)]
pub(crate) struct NonBufferedStream<S> {
    reactor: Weak<Reactor>,
    stream: S,
    source_tx: Option<Source>,
    source_rx: Option<Source>,
    write_timeout: Timeout,
    read_timeout: Timeout,
    /// Reads go through io_uring RECVs instead of a readiness poll and a
    /// `recv(2)` (see `poll_read_ring`). (ringcast patch.)
    ring_recv: bool,
    /// What a ring RECV brought beyond the caller's buffer: (data, from, to).
    rx_stash: Option<(sys::DmaBuffer, usize, usize)>,
    /// The last RECV's buffer, for the next one.
    rx_spare: Option<sys::DmaBuffer>,
}

/// Copies as much of `src` as fits into `buf`; returns how much.
/// (ringcast patch.)
fn copy_prefix(src: &[u8], buf: &mut [u8]) -> usize {
    let n = src.len().min(buf.len());
    buf[..n].copy_from_slice(&src[..n]);
    n
}

impl<S: AsRawFd> NonBufferedStream<S> {
    /// Bytes a ring RECV asks for when armed ahead of a read.
    const RING_RECV_SIZE: usize = 4096;

    pub(crate) fn set_ring_recv(&mut self, on: bool) {
        self.ring_recv = on;
    }

    /// `poll_read` through the ring: each read that drains the socket arms a
    /// RECV for the next, which the kernel completes when bytes arrive, so a
    /// request costs no `recv(2)` and no separate readiness completion.
    /// (ringcast patch.)
    fn poll_read_ring(&mut self, cx: &Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        if let Some((data, from, to)) = self.rx_stash.as_mut() {
            let n = copy_prefix(&data.as_bytes()[*from..*to], buf);
            *from += n;
            if *from == *to {
                self.rx_spare = self.rx_stash.take().map(|(data, _, _)| data);
            }
            return Poll::Ready(Ok(n));
        }
        let reactor = self.reactor.upgrade().unwrap();
        let reactor = reactor.as_ref();
        if let Some(source) = self.source_rx.as_ref() {
            let Some(result) = source.result() else {
                poll_err!(self.read_timeout.check(reactor));
                source.add_waiter_single(cx.waker());
                self.read_timeout.maybe_set_timer(reactor, cx.waker());
                return Poll::Pending;
            };
            let source = self.source_rx.take().unwrap();
            self.read_timeout.cancel_timer();
            let received = poll_err!(result);
            // Anything else is the readiness poll armed at creation: it says
            // the socket is readable, and the `recv` below reads it.
            if let SourceType::StreamRecv(Some(data)) = source.extract_source_type() {
                let n = copy_prefix(&data.as_bytes()[..received], buf);
                if n < received {
                    self.rx_stash = Some((data, n, received));
                } else {
                    self.rx_spare = Some(data);
                    if received > 0 {
                        self.arm_ring_recv(reactor);
                    }
                }
                return Poll::Ready(Ok(n));
            }
        }
        if let Some(result) = super::yolo_recv(self.stream.as_raw_fd(), buf) {
            let n = poll_err!(result);
            if n > 0 && n < buf.len() {
                self.arm_ring_recv(reactor);
            }
            return Poll::Ready(Ok(n));
        }
        poll_err!(self.read_timeout.check(reactor));
        self.arm_ring_recv(reactor);
        let source = self.source_rx.as_ref().unwrap();
        source.add_waiter_single(cx.waker());
        self.read_timeout.maybe_set_timer(reactor, cx.waker());
        Poll::Pending
    }

    /// Ends ring reads, handing over into `out` what RECVs brought that no
    /// read took yet, after waiting for an in-flight RECV (it completes when
    /// bytes arrive). From then on the socket's own queue holds the rest of
    /// the stream, for a caller that takes it by other means (splice).
    /// (ringcast patch.)
    pub(crate) fn poll_stop_ring_recv(
        &mut self,
        cx: &Context<'_>,
        out: &mut Vec<u8>,
    ) -> Poll<io::Result<()>> {
        self.ring_recv = false;
        if let Some((data, from, to)) = self.rx_stash.take() {
            out.extend_from_slice(&data.as_bytes()[from..to]);
            self.rx_spare = Some(data);
        }
        let Some(source) = self.source_rx.as_ref() else {
            return Poll::Ready(Ok(()));
        };
        if !matches!(*source.source_type(), SourceType::StreamRecv(_)) {
            // A readiness poll consumes nothing: dropping it loses no byte.
            self.source_rx = None;
            return Poll::Ready(Ok(()));
        }
        let Some(result) = source.result() else {
            source.add_waiter_single(cx.waker());
            return Poll::Pending;
        };
        let source = self.source_rx.take().unwrap();
        let received = poll_err!(result);
        if let SourceType::StreamRecv(Some(data)) = source.extract_source_type() {
            out.extend_from_slice(&data.as_bytes()[..received]);
            self.rx_spare = Some(data);
        }
        Poll::Ready(Ok(()))
    }

    /// Waits until the socket polls readable (POLLIN), without reading and
    /// without a timeout: callers that need one race a timer. Only for a
    /// stream whose reads are not in flight (after `poll_stop_ring_recv`).
    /// (ringcast patch.)
    pub(crate) async fn readable(&self) -> io::Result<()> {
        let reactor = self.reactor.upgrade().unwrap();
        let source = reactor.poll_read_ready(self.stream.as_raw_fd());
        source.collect_rw().await.map(|_| ())
    }

    fn arm_ring_recv(&mut self, reactor: &Reactor) {
        let spare = self.rx_spare.take();
        let fd = self.stream.as_raw_fd();
        self.source_rx = Some(reactor.stream_recv(fd, Self::RING_RECV_SIZE, spare));
    }

    fn init(&mut self) {
        let reactor = self.reactor.upgrade().unwrap();
        let stream_fd = self.stream.as_raw_fd();
        self.source_rx = Some(reactor.poll_read_ready(stream_fd));
    }

    pub(crate) fn try_peek(&self, buf: &mut [u8]) -> Option<io::Result<usize>> {
        super::yolo_peek(self.stream.as_raw_fd(), buf)
    }

    pub(crate) async fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        let source = self.reactor.upgrade().unwrap().recv(
            self.stream.as_raw_fd(),
            buf.len(),
            MsgFlags::MSG_PEEK,
        );

        let sz = source.collect_rw().await?;
        match source.extract_source_type() {
            SourceType::SockRecv(mut src) => {
                buf[0..sz].copy_from_slice(&src.take().unwrap().as_bytes()[0..sz]);
            }
            _ => unreachable!(),
        }
        Ok(sz)
    }

    pub(crate) fn poll_read(
        &mut self,
        cx: &Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if self.ring_recv {
            return self.poll_read_ring(cx, buf);
        }
        let reactor = self.reactor.upgrade().unwrap();
        let reactor = reactor.as_ref();

        let no_pending_poll = self
            .source_rx
            .as_ref()
            .map(|src| src.result().is_some())
            .unwrap_or(true);

        if no_pending_poll {
            if let Some(result) = super::yolo_recv(self.stream.as_raw_fd(), buf) {
                self.source_rx.take();
                self.read_timeout.cancel_timer();
                let result = poll_err!(result);
                // Start an early poll if the buffer is not fully filled. So when
                // the next time `poll_read` is called, it will be known immediately
                // whether the underlying stream is ready for reading.
                if result > 0 && result < buf.len() {
                    self.source_rx = Some(reactor.poll_read_ready(self.stream.as_raw_fd()));
                    // The `rush_dispatch`s here and after could be removed to
                    // improve performance if #458 is handled appropriately.
                    // reactor.rush_dispatch(self.source_rx.as_ref().unwrap());
                }
                return Poll::Ready(Ok(result));
            }
        }

        poll_err!(self.read_timeout.check(reactor));

        if no_pending_poll {
            self.source_rx = Some(reactor.poll_read_ready(self.stream.as_raw_fd()));
            // reactor.rush_dispatch(self.source_rx.as_ref().unwrap());
        }

        let source = self.source_rx.as_ref().unwrap();
        source.add_waiter_single(cx.waker());
        self.read_timeout.maybe_set_timer(reactor, cx.waker());
        Poll::Pending
    }

    /// Ready once the socket polls writable (POLLOUT), within the write
    /// timeout. For callers that write by other means (`sendfile`) and need
    /// to park until the socket has room, which `poll_write` cannot do: it
    /// sends whenever any room at all exists. (ringcast patch.)
    pub(crate) fn poll_writable(&mut self, cx: &Context<'_>) -> Poll<io::Result<()>> {
        let reactor = self.reactor.upgrade().unwrap();
        let reactor = reactor.as_ref();
        if let Some(result) = self.source_tx.as_ref().and_then(|src| src.result()) {
            self.source_tx.take();
            self.write_timeout.cancel_timer();
            return Poll::Ready(result.map(|_| ()));
        }
        poll_err!(self.write_timeout.check(reactor));
        if self.source_tx.is_none() {
            self.source_tx = Some(reactor.poll_write_ready(self.stream.as_raw_fd()));
        }
        let source = self.source_tx.as_ref().unwrap();
        source.add_waiter_single(cx.waker());
        self.write_timeout.maybe_set_timer(reactor, cx.waker());
        Poll::Pending
    }

    pub(crate) fn poll_write(&mut self, cx: &Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        // On the write path, we always start with calling `yolo_send`, because
        // it is very likely to success. It could be a waste if it already timed
        // out since the last `poll_write`, but it would not cost much more to
        // give it one last chance in this case.
        if let Some(result) = super::yolo_send(self.stream.as_raw_fd(), buf) {
            self.write_timeout.cancel_timer();
            self.source_tx.take();
            return Poll::Ready(result);
        }

        let reactor = self.reactor.upgrade().unwrap();
        let reactor = reactor.as_ref();
        poll_err!(self.write_timeout.check(reactor));

        let no_pending_poll = self
            .source_tx
            .as_ref()
            .map(|src| src.result().is_some())
            .unwrap_or(true);

        if no_pending_poll {
            self.source_tx = Some(reactor.poll_write_ready(self.stream.as_raw_fd()));
        }

        let source = self.source_tx.as_ref().unwrap();
        source.add_waiter_single(cx.waker());
        self.write_timeout.maybe_set_timer(reactor, cx.waker());
        Poll::Pending
    }

    pub(crate) fn poll_close(&mut self, _: &Context<'_>) -> Poll<io::Result<()>> {
        self.source_tx.take();
        Poll::Ready(sys::shutdown(self.stream.as_raw_fd(), Shutdown::Write))
    }

    /// io_uring has support for shutdown now, but it is not in any released
    /// kernel. Even with my "let's use latest" policy it would be crazy to
    /// mandate a kernel that doesn't even exist. So in preparation for that
    /// we'll sync-emulate this but already on an async wrapper
    pub(crate) fn poll_shutdown(
        &self,
        _cx: &mut Context<'_>,
        how: Shutdown,
    ) -> Poll<io::Result<()>> {
        Poll::Ready(sys::shutdown(self.stream.as_raw_fd(), how))
    }
}

impl<S> Drop for NonBufferedStream<S> {
    /// Removes the stream's lazily kept timers (ringcast patch, change 11):
    /// left registered, each would hold its task until it fired.
    fn drop(&mut self) {
        if let Some(reactor) = self.reactor.upgrade() {
            self.read_timeout.unregister(&reactor);
            self.write_timeout.unregister(&reactor);
        }
    }
}

#[derive(Debug)]
pub(crate) struct GlommioStream<S, B> {
    stream: NonBufferedStream<S>,
    rx_buf: B,
    rx_done: Cell<bool>,
}

impl<S> From<socket2::Socket> for GlommioStream<S, NonBuffered>
where
    S: AsRawFd + From<socket2::Socket> + Unpin,
{
    fn from(socket: socket2::Socket) -> Self {
        let reactor = crate::executor().reactor();
        let mut stream = NonBufferedStream {
            reactor: Rc::downgrade(&reactor),
            stream: socket.into(),
            source_tx: None,
            source_rx: None,
            write_timeout: Timeout::new(reactor.register_timer()),
            read_timeout: Timeout::new(reactor.register_timer()),
            ring_recv: false,
            rx_stash: None,
            rx_spare: None,
        };
        stream.init();
        GlommioStream {
            stream,
            rx_buf: NonBuffered,
            rx_done: Cell::new(false),
        }
    }
}

impl<S: AsRawFd> AsRawFd for GlommioStream<S, NonBuffered> {
    fn as_raw_fd(&self) -> RawFd {
        self.stream.stream.as_raw_fd()
    }
}

impl<S> FromRawFd for GlommioStream<S, NonBuffered>
where
    S: AsRawFd + FromRawFd + From<socket2::Socket> + Unpin,
{
    unsafe fn from_raw_fd(fd: RawFd) -> Self {
        let socket = socket2::Socket::from_raw_fd(fd);
        GlommioStream::from(socket)
    }
}

impl<S> GlommioStream<S, NonBuffered> {
    pub(crate) fn buffered_with<B: Buffered>(self, rx_buf: B) -> GlommioStream<S, B> {
        GlommioStream {
            stream: self.stream,
            rx_buf,
            rx_done: self.rx_done,
        }
    }
}

impl<S: AsRawFd, B: RxBuf> GlommioStream<S, B> {
    /// Receives data on the socket from the remote address to which it is
    /// connected, without removing that data from the queue.
    ///
    /// On success, returns the number of bytes peeked.
    /// Successive calls return the same data. This is accomplished by passing
    /// `MSG_PEEK` as a flag to the underlying `recv` system call.
    pub(crate) async fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut pos = self.rx_buf.peek(buf);
        if pos < buf.len() && !self.rx_done.get() {
            if let Some(result) = self.stream.try_peek(&mut buf[pos..]) {
                match result {
                    Err(e) => return Err(e),
                    Ok(len) => {
                        pos += len;
                        if len == 0 {
                            self.rx_done.set(true);
                        }
                    }
                }
            }
        }
        if pos > 0 || self.rx_done.get() {
            return Ok(pos);
        }
        self.stream.peek(buf).await
    }

    pub(crate) fn poll_read(
        &mut self,
        cx: &Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if self.rx_buf.is_empty() {
            if buf.len() >= self.rx_buf.buffer_size() {
                return self.stream.poll_read(cx, buf);
            }
            if !self.rx_done.get() {
                poll_err!(ready!(self.poll_replenish_buffer(cx)));
            }
        }
        Poll::Ready(Ok(self.rx_buf.read(buf)))
    }

    fn poll_replenish_buffer(&mut self, cx: &Context<'_>) -> Poll<io::Result<usize>> {
        let result = poll_err!(ready!(self.stream.poll_read(cx, self.rx_buf.unfilled())));
        self.rx_buf.handle_result(result);
        if result == 0 {
            self.rx_done.set(true);
        }
        Poll::Ready(Ok(result))
    }

    pub(crate) fn poll_write(&mut self, cx: &Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.stream.poll_write(cx, buf)
    }

    pub(crate) fn poll_writable(&mut self, cx: &Context<'_>) -> Poll<io::Result<()>> {
        self.stream.poll_writable(cx)
    }

    pub(crate) fn poll_flush(&self, _cx: &Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    pub(crate) fn poll_close(&mut self, cx: &Context<'_>) -> Poll<io::Result<()>> {
        self.stream.poll_close(cx)
    }

    pub(crate) fn poll_shutdown(
        &self,
        cx: &mut Context<'_>,
        how: Shutdown,
    ) -> Poll<io::Result<()>> {
        self.stream.poll_shutdown(cx, how)
    }

    pub(crate) fn set_write_timeout(&self, dur: Option<Duration>) -> Result<()> {
        self.stream.write_timeout.set(dur)
    }

    pub(crate) fn set_ring_recv(&mut self, on: bool) {
        self.stream.set_ring_recv(on)
    }

    /// See `NonBufferedStream::poll_stop_ring_recv`; what a buffered
    /// stream holds comes first. (ringcast patch.)
    pub(crate) fn poll_stop_ring_recv(
        &mut self,
        cx: &Context<'_>,
        out: &mut Vec<u8>,
    ) -> Poll<io::Result<()>> {
        let mut chunk = [0u8; 4096];
        while !self.rx_buf.is_empty() {
            let n = self.rx_buf.read(&mut chunk);
            out.extend_from_slice(&chunk[..n]);
        }
        self.stream.poll_stop_ring_recv(cx, out)
    }

    /// See `NonBufferedStream::readable`. (ringcast patch.)
    pub(crate) async fn readable(&self) -> io::Result<()> {
        self.stream.readable().await
    }

    pub(crate) fn set_read_timeout(&self, dur: Option<Duration>) -> Result<()> {
        self.stream.read_timeout.set(dur)
    }

    pub(crate) fn write_timeout(&self) -> Option<Duration> {
        self.stream.write_timeout.get()
    }

    pub(crate) fn read_timeout(&self) -> Option<Duration> {
        self.stream.read_timeout.get()
    }

    pub(crate) fn stream(&self) -> &S {
        &self.stream.stream
    }
}

impl<S: AsRawFd, B: Buffered> GlommioStream<S, B> {
    pub(crate) fn poll_fill_buf(&mut self, cx: &Context<'_>) -> Poll<io::Result<&[u8]>> {
        if self.rx_buf.is_empty() {
            poll_err!(ready!(self.poll_replenish_buffer(cx)));
        }
        Poll::Ready(Ok(self.rx_buf.as_bytes()))
    }

    pub(crate) fn consume(&mut self, amt: usize) {
        self.rx_buf.consume(amt);
    }
}
