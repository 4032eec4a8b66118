//! A small single-threaded async runtime over edge-triggered epoll: one per
//! load thread, each thread pinned to its CPU. Tasks are the connections;
//! the reactor knows sockets (read/write readiness) and timers, nothing else.
//!
//! Why not glommio, which the server uses: measured against nginx, glommio's
//! io_uring poll per response cost about 60% more kernel time per request
//! than wrk's epoll loop, so the generator ran out of CPU before the server.
//! Here a socket is registered once (edge-triggered) and a request costs one
//! `send`, one `recv` and a share of one `epoll_pwait2`, as in wrk.
//!
//! Nothing here is `Send`: wakers only ever run on the thread that owns the
//! runtime (they push a task id onto that thread's ready queue).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

/// Most readiness events taken from the kernel per wait.
const MAX_EVENTS: usize = 512;

type Task = Pin<Box<dyn Future<Output = ()>>>;

thread_local! {
    static REACTOR: Reactor = Reactor::new().expect("epoll_create1 succeeds");
}

/// One thread's tasks, sockets and timers.
struct Reactor {
    epoll: OwnedFd,
    /// Ids of tasks to poll, in wake order.
    ready: RefCell<VecDeque<usize>>,
    /// Task slots; `None` while the task is being polled or once it finished.
    tasks: RefCell<Vec<Option<Task>>>,
    /// One waker per task slot, made once.
    wakers: RefCell<Vec<Arc<TaskWaker>>>,
    free: RefCell<Vec<usize>>,
    /// Tasks spawned and not yet finished.
    live: Cell<usize>,
    /// Pending timers, by deadline; the u64 makes keys unique.
    timers: RefCell<BTreeMap<(Instant, u64), Waker>>,
    next_timer: Cell<u64>,
    /// Registered sockets, by the slot number epoll hands back.
    sources: RefCell<Vec<Option<Rc<Source>>>>,
    free_sources: RefCell<Vec<usize>>,
    /// Whether `epoll_pwait2` (nanosecond timeouts, Linux 5.11) is available.
    pwait2: Cell<bool>,
}

/// Wakes a task by queueing its id on the owning thread's reactor.
struct TaskWaker {
    id: usize,
    /// Already queued: a second wake before the poll adds nothing.
    queued: AtomicBool,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::Relaxed) {
            REACTOR.with(|r| r.ready.borrow_mut().push_back(self.id));
        }
    }
}

/// A socket's readiness, as the last epoll events left it.
#[derive(Default)]
struct Source {
    readable: Cell<bool>,
    /// The peer closed or the socket broke: reads never block again, so a
    /// short read must not clear `readable` (the EOF edge may be past).
    hup: Cell<bool>,
    writable: Cell<bool>,
    reader: RefCell<Option<Waker>>,
    writer: RefCell<Option<Waker>>,
}

impl Reactor {
    fn new() -> io::Result<Reactor> {
        // SAFETY: plain syscall; the result is checked before use.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Reactor {
            // SAFETY: fd is a new descriptor we own.
            epoll: unsafe { OwnedFd::from_raw_fd(fd) },
            ready: RefCell::default(),
            tasks: RefCell::default(),
            wakers: RefCell::default(),
            free: RefCell::default(),
            live: Cell::new(0),
            timers: RefCell::default(),
            next_timer: Cell::new(0),
            sources: RefCell::default(),
            free_sources: RefCell::default(),
            pwait2: Cell::new(true),
        })
    }

    fn poll_task(&self, id: usize) {
        let Some(mut task) = self.tasks.borrow_mut().get_mut(id).and_then(Option::take) else {
            return; // finished, or a stale wake
        };
        let waker_arc = self.wakers.borrow()[id].clone();
        waker_arc.queued.store(false, Ordering::Relaxed);
        let waker = Waker::from(waker_arc);
        let mut cx = Context::from_waker(&waker);
        match task.as_mut().poll(&mut cx) {
            Poll::Ready(()) => {
                self.free.borrow_mut().push(id);
                self.live.set(self.live.get() - 1);
            }
            Poll::Pending => self.tasks.borrow_mut()[id] = Some(task),
        }
    }

    /// Wakes due timers; returns how long until the next one.
    fn fire_timers(&self, now: Instant) -> Option<Duration> {
        let mut timers = self.timers.borrow_mut();
        while let Some(entry) = timers.first_entry() {
            if entry.key().0 > now {
                return Some(entry.key().0 - now);
            }
            entry.remove().wake();
        }
        None
    }

    /// Waits for socket events (at most `timeout`) and wakes their tasks.
    fn wait(&self, timeout: Option<Duration>) -> io::Result<()> {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; MAX_EVENTS];
        let n = loop {
            let n = if self.pwait2.get() {
                let ts = timeout.map(|t| libc::timespec {
                    tv_sec: t.as_secs() as libc::time_t,
                    tv_nsec: t.subsec_nanos() as libc::c_long,
                });
                let ts_ptr = ts
                    .as_ref()
                    .map_or(std::ptr::null(), |t| t as *const libc::timespec);
                // SAFETY: events and ts outlive the call; no signal mask.
                unsafe {
                    libc::syscall(
                        libc::SYS_epoll_pwait2,
                        self.epoll.as_raw_fd(),
                        events.as_mut_ptr(),
                        MAX_EVENTS as libc::c_int,
                        ts_ptr,
                        std::ptr::null::<libc::sigset_t>(),
                        0usize,
                    ) as libc::c_int
                }
            } else {
                // Millisecond timeouts, rounded up so timers never fire early.
                let ms = timeout.map_or(-1, |t| {
                    t.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
                });
                // SAFETY: events outlives the call.
                unsafe {
                    libc::epoll_wait(
                        self.epoll.as_raw_fd(),
                        events.as_mut_ptr(),
                        MAX_EVENTS as libc::c_int,
                        ms,
                    )
                }
            };
            if n >= 0 {
                break n as usize;
            }
            let error = io::Error::last_os_error();
            match error.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ENOSYS) if self.pwait2.get() => self.pwait2.set(false),
                _ => return Err(error),
            }
        };
        let sources = self.sources.borrow();
        for event in &events[..n] {
            let Some(Some(source)) = sources.get(event.u64 as usize) else {
                continue;
            };
            let bits = event.events as libc::c_int;
            let broken = libc::EPOLLERR | libc::EPOLLHUP;
            if bits & (libc::EPOLLRDHUP | broken) != 0 {
                source.hup.set(true);
            }
            if bits & (libc::EPOLLIN | libc::EPOLLRDHUP | broken) != 0 {
                source.readable.set(true);
                if let Some(w) = source.reader.borrow_mut().take() {
                    w.wake();
                }
            }
            if bits & (libc::EPOLLOUT | broken) != 0 {
                source.writable.set(true);
                if let Some(w) = source.writer.borrow_mut().take() {
                    w.wake();
                }
            }
        }
        Ok(())
    }

    fn add_timer(&self, at: Instant, waker: Waker) -> (Instant, u64) {
        let key = (at, self.next_timer.get());
        self.next_timer.set(key.1 + 1);
        self.timers.borrow_mut().insert(key, waker);
        key
    }
}

/// Adds a task to this thread's runtime.
pub fn spawn(future: impl Future<Output = ()> + 'static) {
    REACTOR.with(|r| {
        let id = match r.free.borrow_mut().pop() {
            Some(id) => id,
            None => {
                let mut tasks = r.tasks.borrow_mut();
                tasks.push(None);
                let id = tasks.len() - 1;
                r.wakers.borrow_mut().push(Arc::new(TaskWaker {
                    id,
                    queued: AtomicBool::new(false),
                }));
                id
            }
        };
        r.tasks.borrow_mut()[id] = Some(Box::pin(future));
        r.live.set(r.live.get() + 1);
        r.wakers.borrow()[id].wake_by_ref();
    });
}

/// Runs this thread's tasks until every one has finished.
pub fn run() -> io::Result<()> {
    REACTOR.with(|r| loop {
        loop {
            let next = r.ready.borrow_mut().pop_front();
            match next {
                Some(id) => r.poll_task(id),
                None => break,
            }
        }
        if r.live.get() == 0 {
            return Ok(());
        }
        let until_timer = r.fire_timers(Instant::now());
        let timeout = if r.ready.borrow().is_empty() {
            until_timer
        } else {
            Some(Duration::ZERO)
        };
        r.wait(timeout)?;
    })
}

/// Completes at `at` (at once if that has passed).
pub fn sleep_until(at: Instant) -> Sleep {
    Sleep { at, key: None }
}

pub struct Sleep {
    at: Instant,
    key: Option<(Instant, u64)>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.at {
            if let Some(key) = self.key.take() {
                REACTOR.with(|r| r.timers.borrow_mut().remove(&key));
            }
            return Poll::Ready(());
        }
        if let Some(key) = self.key {
            REACTOR.with(|r| r.timers.borrow_mut().insert(key, cx.waker().clone()));
        } else {
            let at = self.at;
            self.key = Some(REACTOR.with(|r| r.add_timer(at, cx.waker().clone())));
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let _ = REACTOR.try_with(|r| r.timers.borrow_mut().remove(&key));
        }
    }
}

/// Waits until `source` is readable (or writable), or `deadline` passes.
struct Readiness<'a> {
    source: &'a Source,
    write: bool,
    deadline: Option<Instant>,
    timer: Option<(Instant, u64)>,
}

impl Future for Readiness<'_> {
    type Output = io::Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let (flag, slot) = if self.write {
            (&self.source.writable, &self.source.writer)
        } else {
            (&self.source.readable, &self.source.reader)
        };
        if flag.get() {
            return Poll::Ready(Ok(()));
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
        }
        *slot.borrow_mut() = Some(cx.waker().clone());
        if let (Some(deadline), None) = (self.deadline, self.timer) {
            self.timer = Some(REACTOR.with(|r| r.add_timer(deadline, cx.waker().clone())));
        }
        Poll::Pending
    }
}

impl Drop for Readiness<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.timer.take() {
            let _ = REACTOR.try_with(|r| r.timers.borrow_mut().remove(&key));
        }
    }
}

/// A non-blocking TCP connection registered with this thread's epoll.
pub struct TcpStream {
    fd: OwnedFd,
    source: Rc<Source>,
    slot: usize,
    /// Longest wait for readiness before an operation fails with `TimedOut`.
    pub timeout: Option<Duration>,
}

impl TcpStream {
    /// Connects within `timeout`; TCP_NODELAY is set.
    pub async fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM.nonblocking().cloexec(),
            Some(socket2::Protocol::TCP),
        )?;
        socket.set_nodelay(true)?;
        let stream = TcpStream::register(OwnedFd::from(socket), Some(timeout))?;
        let socket = socket2::SockRef::from(&stream.fd);
        match socket.connect(&addr.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {
                stream.source.writable.set(false);
                stream.ready(true).await?;
                if let Some(e) = socket.take_error()? {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
        Ok(stream)
    }

    fn register(fd: OwnedFd, timeout: Option<Duration>) -> io::Result<TcpStream> {
        let source = Rc::new(Source::default());
        source.writable.set(true);
        let slot = REACTOR.with(|r| {
            let mut sources = r.sources.borrow_mut();
            match r.free_sources.borrow_mut().pop() {
                Some(slot) => {
                    sources[slot] = Some(source.clone());
                    slot
                }
                None => {
                    sources.push(Some(source.clone()));
                    sources.len() - 1
                }
            }
        });
        let stream = TcpStream {
            fd,
            source,
            slot,
            timeout,
        };
        let mut event = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
            u64: slot as u64,
        };
        // SAFETY: both descriptors are open; event outlives the call.
        let rc = REACTOR.with(|r| unsafe {
            libc::epoll_ctl(
                r.epoll.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                stream.fd.as_raw_fd(),
                &mut event,
            )
        });
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stream)
    }

    fn ready(&self, write: bool) -> Readiness<'_> {
        Readiness {
            source: &self.source,
            write,
            deadline: self.timeout.map(|t| Instant::now() + t),
            timer: None,
        }
    }

    /// Waits until the socket may be readable (or `timeout` passes).
    pub async fn readable(&self) -> io::Result<()> {
        self.ready(false).await
    }

    /// Waits until the socket may take more bytes (or `timeout` passes).
    pub async fn writable(&self) -> io::Result<()> {
        self.ready(true).await
    }

    /// Reads what has arrived without waiting: `WouldBlock` when nothing has
    /// (known from the last edge, so no syscall is spent on it); 0 at end of stream.
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if !self.source.readable.get() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            // SAFETY: buf is valid for writes of buf.len() bytes.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n >= 0 {
                let n = n as usize;
                if n < buf.len() && n > 0 && !self.source.hup.get() {
                    // A short read drained the socket: wait for the next edge
                    // instead of paying for a recv that says EAGAIN.
                    self.source.readable.set(false);
                }
                return Ok(n);
            }
            let error = io::Error::last_os_error();
            match error.kind() {
                io::ErrorKind::WouldBlock => self.source.readable.set(false),
                io::ErrorKind::Interrupted => continue,
                _ => return Err(error),
            }
        }
    }

    /// Sends as much of `bufs` as fits, in one `sendmsg`, without waiting:
    /// `WouldBlock` when the socket is full. One syscall for several
    /// buffers is what lets TLS send its queued records together.
    pub fn try_write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        loop {
            if !self.source.writable.get() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let socket = socket2::SockRef::from(&self.fd);
            match socket.send_vectored_with_flags(bufs, libc::MSG_NOSIGNAL) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.source.writable.set(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads what has arrived, waiting for at least one byte; 0 at end of stream.
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.try_read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.readable().await?,
                result => return result,
            }
        }
    }

    /// Writes all of `buf`, waiting for room as needed.
    pub async fn write_all(&self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            match self.try_write_vectored(&[io::IoSlice::new(buf)]) {
                Ok(n) => buf = &buf[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable().await?,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        // Closing the descriptor removes it from epoll; free the slot for reuse.
        let _ = REACTOR.try_with(|r| {
            r.sources.borrow_mut()[self.slot] = None;
            r.free_sources.borrow_mut().push(self.slot);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn timers_fire_in_order_and_not_early() {
        let order = Rc::new(RefCell::new(Vec::new()));
        let start = Instant::now();
        for (i, ms) in [(0, 30u64), (1, 10), (2, 20)] {
            let order = order.clone();
            spawn(async move {
                sleep_until(start + Duration::from_millis(ms)).await;
                assert!(start.elapsed() >= Duration::from_millis(ms));
                order.borrow_mut().push(i);
            });
        }
        run().unwrap();
        assert_eq!(*order.borrow(), vec![1, 2, 0]);
    }

    #[test]
    fn echo_over_loopback_and_read_timeout() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).unwrap();
            s.write_all(&buf).unwrap();
            std::thread::sleep(Duration::from_millis(300));
        });
        let result = Rc::new(RefCell::new(None));
        let out = result.clone();
        spawn(async move {
            let mut stream = TcpStream::connect(addr, Duration::from_secs(2))
                .await
                .unwrap();
            stream.write_all(b"hello").await.unwrap();
            let mut buf = [0u8; 16];
            let n = stream.read(&mut buf).await.unwrap();
            stream.timeout = Some(Duration::from_millis(50));
            let timed_out = stream.read(&mut buf).await.unwrap_err().kind();
            *out.borrow_mut() = Some((buf[..n].to_vec(), timed_out));
        });
        run().unwrap();
        server.join().unwrap();
        let (echo, timed_out) = result.borrow_mut().take().unwrap();
        assert_eq!(echo, b"hello");
        assert_eq!(timed_out, io::ErrorKind::TimedOut);
    }

    #[test]
    fn connect_refused_is_an_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let failed = Rc::new(Cell::new(false));
        let out = failed.clone();
        spawn(async move {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            out.set(
                TcpStream::connect(addr, Duration::from_secs(1))
                    .await
                    .is_err(),
            );
        });
        run().unwrap();
        assert!(failed.get());
    }
}
