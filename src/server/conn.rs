//! One connection, from accept to close: read bytes, let the `http` core
//! decide, send what it planned, repeat while the connection stays alive.
//! Pipelined requests are answered in order because each is answered before
//! the next is parsed; what the client sent ahead waits in the read buffer.
//!
//! Timeouts: an idle connection waits at most `--idle-timeout` for a request
//! to start; once its first byte is here the whole head must arrive by
//! `--header-timeout` (a fixed deadline, so trickling does not extend it), or
//! the client gets 408; every send may wait at most `--send-timeout` for the
//! socket to take bytes (set on the stream at accept).

use super::fs::{read_entries, OpenFile};
use super::ingest;
use super::send::{SendError, Transfer};
use super::transport::Transport;
use super::Core;
use crate::http::body::BodyDecoder;
use crate::http::encoding::Encoding;
use crate::http::error::{FileError, RequestError, Status};
use crate::http::index::Entry;
use crate::http::path::CleanPath;
use crate::http::plan::{
    plan_error, plan_file, plan_index, plan_preflight, plan_written, route, sidecar_candidates,
    Body, Context, Route, CONTINUE,
};
use crate::http::request::{self, BodyFraming, Method, Request, MAX_HEAD};
use crate::http::upload::{plan_write, Write, WriteError};
use crate::metrics::{ErrorKind, RequestTimes};
use event_listener::EventListener;
use futures_lite::future;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Read buffer size for a new connection; grows up to [`MAX_HEAD`] for big heads.
const INITIAL_READ_BUFFER: usize = 2 * 1024;
/// Buffers larger than this are released once a response is done, so idle
/// keep-alive connections stay small.
const RETAINED_BUFFER: usize = 4 * 1024;

/// Serves `stream` until the client closes, an error, or `Connection: close`.
/// `first_head_by`, for TLS, bounds the first request's head by the same
/// deadline as the handshake before it (`--header-timeout` from accept).
pub async fn serve(core: &Core, mut stream: Transport, first_head_by: Option<Instant>) {
    let mut conn = Connection {
        read: ReadBuffer::default(),
        head: Vec::new(),
        served: 0,
        peer: core.access_log.as_ref().and_then(|_| stream.peer_addr()),
        drain: None,
        first_head_by,
    };
    let _ = conn.run(core, &mut stream).await;
    stream.close().await;
}

struct Connection {
    /// Bytes received and not yet consumed: the start of the next request(s).
    read: ReadBuffer,
    /// The response head being built, then the coalescing send buffer.
    head: Vec<u8>,
    /// Requests answered so far, for `--max-requests-per-conn`.
    served: u64,
    /// The client's address, looked up only for the access log.
    peer: Option<SocketAddr>,
    /// Kept across idle waits (see `Drain::wait`).
    drain: Option<EventListener>,
    /// The first head's deadline when it began before the connection
    /// could read requests (a TLS handshake).
    first_head_by: Option<Instant>,
}

/// How a request's exchange ended.
enum Next {
    KeepAlive(BodyFraming),
    Close,
}

impl Connection {
    async fn run(&mut self, core: &Core, stream: &mut Transport) -> io::Result<()> {
        let limits = core.config.limits;
        // Set once a started head needs more bytes (a whole head in one read,
        // the common case, never reads the clock for it).
        let mut head_deadline: Option<Instant> = self.first_head_by.take();
        loop {
            if self.read.is_empty() && self.served > 0 {
                head_deadline = None;
            }
            let next = match request::parse(self.read.data()) {
                Ok(Some((request, used))) if request.method.writes() => {
                    // The body follows the head in the read buffer: keep a
                    // copy of the head (small, and uploads are rare) so the
                    // buffer can be read into while the request is in use.
                    let head_bytes = self.read.data()[..used].to_vec();
                    self.read.consume(used);
                    self.served += 1;
                    // Boxed: the upload path's state would otherwise enlarge
                    // every connection's future, idle ones included.
                    let next = Box::pin(self.write(core, stream, &head_bytes)).await?;
                    head_deadline = None;
                    next
                }
                Ok(Some((mut request, used))) => {
                    let parsed_at = Instant::now();
                    self.served += 1;
                    let last = limits.max_requests_per_conn != 0
                        && self.served >= limits.max_requests_per_conn;
                    if last || core.drain.started() {
                        request.keep_alive = false;
                    }
                    let exchange = Exchange {
                        request: Some(&request),
                        started: parsed_at,
                        peer: self.peer,
                    };
                    let next = respond(core, stream, &exchange, &mut self.head).await?;
                    self.read.consume(used);
                    head_deadline = None;
                    next
                }
                Ok(None) => {
                    let more = if self.read.is_empty() && head_deadline.is_none() {
                        self.fill_while_idle(core, stream).await?
                    } else {
                        let deadline = *head_deadline
                            .get_or_insert_with(|| Instant::now() + limits.header_timeout);
                        self.fill_head(core, stream, deadline).await?
                    };
                    if more == 0 {
                        return Ok(());
                    }
                    continue;
                }
                Err(error) => {
                    core.metrics.error(ErrorKind::BadRequest);
                    return self.refuse(core, stream, RequestError::Parse(error)).await;
                }
            };
            self.release_excess();
            match next {
                Next::KeepAlive(framing) if !core.drain.started() => {
                    self.skip_body(stream, framing, limits.idle_timeout).await?
                }
                _ => return Ok(()),
            }
        }
    }

    /// Waits for the first byte of a request, up to the idle timeout, and
    /// gives up at once if the core starts draining. Returns 0 to close.
    async fn fill_while_idle(&mut self, core: &Core, stream: &mut Transport) -> io::Result<usize> {
        stream.set_read_timeout(Some(core.config.limits.idle_timeout))?;
        let read = async { self.read.fill(stream).await.map(Some) };
        let drained = async {
            core.drain.wait(&mut self.drain).await;
            Ok(None)
        };
        match future::or(read, drained).await {
            Ok(Some(n)) => Ok(n),
            Ok(None) => Ok(0),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Reads more of a started head, answering 408 when its deadline passes.
    async fn fill_head(
        &mut self,
        core: &Core,
        stream: &mut Transport,
        deadline: Instant,
    ) -> io::Result<usize> {
        let left = deadline.saturating_duration_since(Instant::now());
        if !left.is_zero() {
            stream.set_read_timeout(Some(left))?;
            match self.read.fill(stream).await {
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
                other => return other,
            }
        }
        core.metrics.error(ErrorKind::HeaderTimeout);
        self.refuse(core, stream, RequestError::HeadTimeout).await?;
        Ok(0)
    }

    /// Answers a request that cannot be served and closes.
    async fn refuse(
        &mut self,
        core: &Core,
        stream: &mut Transport,
        error: RequestError,
    ) -> io::Result<()> {
        let exchange = Exchange {
            request: None,
            started: Instant::now(),
            peer: self.peer,
        };
        let reading = core.clock.now(exchange.started);
        let ctx = Context {
            clock: super::clock::clock(&reading),
            policy: &core.config.policy,
        };
        self.head.clear();
        let plan = plan_error(error, None, &ctx, &mut self.head);
        deliver(
            core,
            stream,
            &exchange,
            &mut self.head,
            &Body::None,
            plan.status,
            None,
        )
        .await
    }

    /// Drops the request's own content before the next request is parsed;
    /// each read may wait up to `timeout`.
    async fn skip_body(
        &mut self,
        stream: &mut Transport,
        framing: BodyFraming,
        timeout: Duration,
    ) -> io::Result<()> {
        let mut skipper = BodyDecoder::new(framing);
        loop {
            let used = skipper
                .skip(self.read.data())
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunked body"))?;
            self.read.consume(used);
            if skipper.is_done() {
                return Ok(());
            }
            stream.set_read_timeout(Some(timeout))?;
            if self.read.fill(stream).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Answers a PUT or DELETE, whose head is `head_bytes` and whose body
    /// (if any) comes next in the read buffer and the socket.
    async fn write(
        &mut self,
        core: &Core,
        stream: &mut Transport,
        head_bytes: &[u8],
    ) -> io::Result<Next> {
        let Ok(Some((mut request, _))) = request::parse(head_bytes) else {
            return Ok(Next::Close); // parsed once already: cannot happen
        };
        let limits = core.config.limits;
        let last = limits.max_requests_per_conn != 0 && self.served >= limits.max_requests_per_conn;
        if last || core.drain.started() {
            request.keep_alive = false;
        }
        let started = Instant::now();
        let outcome = self.carry_out(core, stream, &mut request).await;
        if matches!(
            outcome,
            Written::Refused {
                body_left: true,
                ..
            }
        ) {
            // The body will not be read: the connection cannot go on.
            request.keep_alive = false;
        }
        let exchange = Exchange {
            request: Some(&request),
            started,
            peer: self.peer,
        };
        let reading = core.clock.now(Instant::now());
        let ctx = Context {
            clock: super::clock::clock(&reading),
            policy: &core.config.policy,
        };
        self.head.clear();
        let (plan, body_left) = match outcome {
            Written::Done(status) => (plan_written(&request, status, &ctx, &mut self.head), false),
            Written::Refused { error, body_left } => {
                core.metrics.error(ErrorKind::Upload);
                (
                    plan_error(error, Some(&request), &ctx, &mut self.head),
                    body_left,
                )
            }
            Written::ClientGone => {
                core.metrics.error(ErrorKind::ClientGone);
                return Ok(Next::Close);
            }
        };
        deliver(
            core,
            stream,
            &exchange,
            &mut self.head,
            &Body::None,
            plan.status,
            None,
        )
        .await?;
        if body_left {
            self.discard_unread(stream).await;
            return Ok(Next::Close);
        }
        Ok(if plan.keep_alive {
            // A DELETE's body (rare, and meaningless) is skipped; a PUT's
            // was read whole.
            Next::KeepAlive(match request.method {
                Method::Delete => request.body,
                _ => BodyFraming::None,
            })
        } else {
            Next::Close
        })
    }

    /// Admits the write, then carries it out.
    async fn carry_out(
        &mut self,
        core: &Core,
        stream: &mut Transport,
        request: &mut Request<'_>,
    ) -> Written {
        let refused = |error| Written::Refused {
            error,
            body_left: request.body != BodyFraming::None,
        };
        let (Some(ingest), Some(policy)) = (&core.ingest, &core.config.policy.ingest) else {
            return refused(RequestError::MethodNotAllowed);
        };
        let path = match route(request, &core.config.policy) {
            Ok(Route::Write(path)) => path,
            Ok(_) => return refused(RequestError::MethodNotAllowed),
            Err(error) => return refused(error),
        };
        let write = match plan_write(request, path, policy, &ingest.tokens()) {
            Ok(write) => write,
            Err(error) => return refused(error),
        };
        let (path, framing) = match write {
            Write::Delete { path } => {
                return match ingest::delete(&core.root, &path).await {
                    Ok(status) => Written::Done(status),
                    Err(error) => Written::Refused {
                        error,
                        body_left: false,
                    },
                }
            }
            Write::Put { path, framing } => (path, framing),
        };
        let ticket = match ingest.reserve_job(&path) {
            Ok(ticket) => ticket,
            Err(error) => return refused(error),
        };
        let expected = match framing {
            BodyFraming::Length(n) => n,
            _ => 0,
        };
        let mut upload = match ingest::begin(&core.root, ingest, &path, expected).await {
            Ok(upload) => upload,
            Err(error) => return refused(error),
        };
        upload.ticket = ticket;
        if request.expects_continue {
            if stream.write_all(CONTINUE).await.is_err() {
                return Written::ClientGone;
            }
            // Answered: the final response may keep the connection.
            request.expects_continue = false;
        }
        if let Err(gone_or_refused) = self
            .receive_body(stream, &mut upload, framing, ingest, policy.max_upload)
            .await
        {
            return gone_or_refused;
        }
        match upload.publish(&core.root, &path.relative).await {
            Ok(status) => Written::Done(status),
            Err(error) => Written::Refused {
                error,
                body_left: false,
            },
        }
    }

    /// Reads the whole body into `upload`: Content-Length bodies on plain
    /// sockets are spliced, anything else is decoded here and written by
    /// io_uring. Io_uring RECVs are off meanwhile (see `stop_ring_recv`).
    async fn receive_body(
        &mut self,
        stream: &mut Transport,
        upload: &mut ingest::Upload,
        framing: BodyFraming,
        ingest: &ingest::CoreIngest,
        max_upload: u64,
    ) -> Result<(), Written> {
        let timeout = ingest.config.upload_timeout;
        let mut decoder = BodyDecoder::new(framing);
        let mut pending = Vec::new();
        self.take_body(&mut decoder, &mut pending, upload, max_upload)?;
        if decoder.is_done() {
            return flush(upload, &mut pending, true).await;
        }
        // The rest is still in the socket: take it with large reads or
        // splices rather than the ring's small RECVs.
        let stopped = future::or(async { Some(stream.stop_ring_recv().await) }, async {
            glommio::timer::sleep(timeout).await;
            None
        })
        .await;
        let result = match stopped {
            Some(Ok(early)) => {
                self.read.push(&early);
                self.receive_rest(
                    stream,
                    upload,
                    &mut decoder,
                    &mut pending,
                    timeout,
                    max_upload,
                )
                .await
            }
            Some(Err(_)) => Err(Written::ClientGone),
            None => Err(stalled()),
        };
        stream.resume_ring_recv();
        result
    }

    async fn receive_rest(
        &mut self,
        stream: &mut Transport,
        upload: &mut ingest::Upload,
        decoder: &mut BodyDecoder,
        pending: &mut Vec<u8>,
        timeout: Duration,
        max_upload: u64,
    ) -> Result<(), Written> {
        loop {
            self.take_body(decoder, pending, upload, max_upload)?;
            if decoder.is_done() {
                return flush(upload, pending, true).await;
            }
            flush(upload, pending, false).await?;
            let left = decoder.remaining_length();
            if let (true, Some(socket)) = (left >= SPLICE_AT_LEAST, stream.splice_socket()) {
                flush(upload, pending, true).await?;
                let spliced = upload
                    .splice_from(socket, left, timeout, || stream.readable())
                    .await;
                return match spliced {
                    Ok(()) => {
                        decoder.consume_length(left);
                        Ok(())
                    }
                    Err(ingest::SpliceError::Closed) => Err(Written::ClientGone),
                    Err(ingest::SpliceError::Stalled) => Err(stalled()),
                    Err(ingest::SpliceError::Write(error)) => Err(Written::Refused {
                        error,
                        body_left: true,
                    }),
                };
            }
            if stream.set_read_timeout(Some(timeout)).is_err() {
                return Err(Written::ClientGone);
            }
            match self.read.fill_body(stream).await {
                Ok(0) => return Err(Written::ClientGone),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => return Err(stalled()),
                Err(_) => return Err(Written::ClientGone),
            }
        }
    }

    /// Decodes what the read buffer holds of the body into `pending`,
    /// refusing a body that grows past `--max-upload`.
    fn take_body(
        &mut self,
        decoder: &mut BodyDecoder,
        pending: &mut Vec<u8>,
        upload: &ingest::Upload,
        max_upload: u64,
    ) -> Result<(), Written> {
        let used = decoder
            .decode(self.read.data(), pending)
            .map_err(|_| Written::Refused {
                error: RequestError::Write(WriteError::BadBody),
                body_left: true,
            })?;
        self.read.consume(used);
        if upload.written + pending.len() as u64 > max_upload {
            return Err(Written::Refused {
                error: RequestError::Write(WriteError::TooLarge),
                body_left: true,
            });
        }
        Ok(())
    }

    /// After refusing a body, reads and drops what the client still sends
    /// for a moment, so that closing does not reset the connection before
    /// the client has read the refusal (RFC 9112 §9.6).
    async fn discard_unread(&mut self, stream: &mut Transport) {
        let until = Instant::now() + LINGER;
        let mut dropped = 0;
        while dropped < LINGER_BYTES {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
                return;
            }
            self.read.consume(self.read.data().len());
            match self.read.fill(stream).await {
                Ok(0) | Err(_) => return,
                Ok(n) => dropped += n,
            }
        }
    }

    fn release_excess(&mut self) {
        if self.head.capacity() > RETAINED_BUFFER {
            self.head = Vec::new();
        }
        self.read.shrink();
    }
}

/// Bytes received and not yet consumed. The storage is zeroed once when it
/// is allocated, never per read, and consuming a request moves no bytes:
/// only the window `start..end` does.
#[derive(Default)]
struct ReadBuffer {
    bytes: Vec<u8>,
    start: usize,
    end: usize,
}

impl ReadBuffer {
    fn data(&self) -> &[u8] {
        &self.bytes[self.start..self.end]
    }

    fn is_empty(&self) -> bool {
        self.start == self.end
    }

    fn consume(&mut self, used: usize) {
        self.start = (self.start + used).min(self.end);
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        }
    }

    /// Appends bytes received by other means (a RECV in flight when the
    /// ring was stopped).
    fn push(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.compact();
        let needed = self.end + bytes.len();
        if self.bytes.len() < needed {
            self.bytes.resize(needed, 0);
        }
        self.bytes[self.end..needed].copy_from_slice(bytes);
        self.end = needed;
    }

    /// Like [`ReadBuffer::fill`] with room for [`BODY_READ`] bytes: an
    /// upload's body is read in large pieces ([`ReadBuffer::shrink`] gives
    /// the room back afterwards).
    async fn fill_body(&mut self, stream: &mut Transport) -> io::Result<usize> {
        self.compact();
        if self.bytes.len() < self.end + BODY_READ {
            self.bytes.resize(self.end + BODY_READ, 0);
        }
        let n = stream.read(&mut self.bytes[self.end..]).await?;
        self.end += n;
        Ok(n)
    }

    /// Reads more bytes after the unconsumed ones; returns 0 at end of stream.
    async fn fill(&mut self, stream: &mut Transport) -> io::Result<usize> {
        self.make_room();
        let n = stream.read(&mut self.bytes[self.end..]).await?;
        self.end += n;
        Ok(n)
    }

    /// Ensures free space after `end`: first by moving a partial request to
    /// the front, else by doubling, never past what `parse` accepts (a head
    /// over [`MAX_HEAD`] is refused, so more is never needed).
    fn make_room(&mut self) {
        if self.end < self.bytes.len() {
            return;
        }
        if self.start > 0 {
            self.compact();
            return;
        }
        let size = (self.bytes.len() * 2)
            .clamp(INITIAL_READ_BUFFER, MAX_HEAD + 1)
            .max(self.end + 1);
        self.bytes.resize(size, 0);
    }

    /// Moves the unconsumed bytes to the front of the storage.
    fn compact(&mut self) {
        if self.start > 0 {
            self.bytes.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
        }
    }

    /// Gives back a buffer a big head made large, keeping what is unconsumed.
    fn shrink(&mut self) {
        let pending = self.end - self.start;
        if self.bytes.len() > RETAINED_BUFFER && pending <= INITIAL_READ_BUFFER {
            let mut smaller = vec![0; INITIAL_READ_BUFFER];
            smaller[..pending].copy_from_slice(self.data());
            *self = ReadBuffer {
                bytes: smaller,
                start: 0,
                end: pending,
            };
        }
    }
}

/// Content-Length bodies with at least this much left in the socket are
/// spliced; shorter ones are read (a splice costs two io_uring round trips).
const SPLICE_AT_LEAST: u64 = 64 * 1024;
/// Decoded body bytes gathered before an io_uring write.
const WRITE_BATCH: usize = 256 * 1024;
/// Read size while an upload's body is read.
const BODY_READ: usize = 64 * 1024;
/// How long, and how much, a refused body is drained before closing.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 4 << 20;

/// How a PUT or DELETE ended.
enum Written {
    Done(Status),
    /// Answered with an error; `body_left` if the body was not read whole.
    Refused {
        error: RequestError,
        body_left: bool,
    },
    /// The client went away: nobody to answer.
    ClientGone,
}

fn stalled() -> Written {
    Written::Refused {
        error: RequestError::Write(WriteError::Stalled),
        body_left: true,
    }
}

/// Writes `pending` out once it is a batch, or whatever it holds if `all`.
async fn flush(
    upload: &mut ingest::Upload,
    pending: &mut Vec<u8>,
    all: bool,
) -> Result<(), Written> {
    if pending.is_empty() || (!all && pending.len() < WRITE_BATCH) {
        return Ok(());
    }
    let bytes = std::mem::take(pending);
    upload.write(bytes).await.map_err(|error| Written::Refused {
        error,
        body_left: !all,
    })
}

/// One request and what the access log and latencies need to know about it.
struct Exchange<'r, 'b> {
    /// `None` when the head could not be parsed.
    request: Option<&'r Request<'b>>,
    /// When the head was parsed (or refused): the origin of every latency.
    started: Instant,
    peer: Option<SocketAddr>,
}

/// Answers one parsed request completely.
async fn respond(
    core: &Core,
    stream: &mut Transport,
    exchange: &Exchange<'_, '_>,
    head: &mut Vec<u8>,
) -> io::Result<Next> {
    let request = exchange
        .request
        .expect("respond is only called with a parsed request");
    head.clear();
    let reading = core.clock.now(exchange.started);
    let ctx = Context {
        clock: super::clock::clock(&reading),
        policy: &core.config.policy,
    };
    let (plan, file) = match route(request, ctx.policy) {
        Err(error) => {
            let plan = plan_error(error, Some(request), &ctx, head);
            if plan.status == Status::BadRequest {
                // A parsed head with a target we refuse (traversal, NUL,
                // bad escapes): as much a bad request as an unparseable one.
                core.metrics.error(ErrorKind::BadRequest);
            }
            (plan, None)
        }
        Ok(Route::Preflight) => (plan_preflight(request, &ctx, head), None),
        // `run` sends writes to `Connection::write`.
        Ok(Route::Write(_)) => (
            plan_error(RequestError::MethodNotAllowed, Some(request), &ctx, head),
            None,
        ),
        Ok(Route::File(path)) => match core.files.open(&core.root, &path, exchange.started) {
            Ok(file) => {
                let (file, encoding) = choose_sidecar(core, request, &path, file);
                (
                    plan_file(request, &path, &file.meta, encoding, &ctx, head),
                    Some(file),
                )
            }
            Err(FileError::IsDirectory) if ctx.policy.index => {
                let plan = match list_directory(core, &path).await {
                    Ok(entries) => plan_index(request, &path, &entries, &ctx, head),
                    Err(error) => plan_error(RequestError::File(error), Some(request), &ctx, head),
                };
                (plan, None)
            }
            Err(error) => (
                plan_error(RequestError::File(error), Some(request), &ctx, head),
                None,
            ),
        },
    };
    deliver(
        core,
        stream,
        exchange,
        head,
        &plan.body,
        plan.status,
        file.as_deref(),
    )
    .await?;
    Ok(if plan.keep_alive {
        Next::KeepAlive(request.body)
    } else {
        Next::Close
    })
}

/// A precompressed sidecar the client accepts, if one exists; else the file.
fn choose_sidecar(
    core: &Core,
    request: &Request<'_>,
    path: &CleanPath,
    file: Rc<OpenFile>,
) -> (Rc<OpenFile>, Option<Encoding>) {
    for encoding in sidecar_candidates(request, path) {
        if let Some(sidecar) = core.root.open_sidecar(path, encoding.suffix(), &file.meta) {
            return (Rc::new(sidecar), Some(encoding));
        }
    }
    (file, None)
}

/// Reads a directory in the executor's blocking pool, so a cold directory
/// never stalls the core.
async fn list_directory(core: &Core, path: &CleanPath) -> Result<Vec<Entry>, FileError> {
    let dir = core.root.open_dir(path)?;
    glommio::executor()
        .spawn_blocking(move || read_entries(dir))
        .await
}

/// Length of the header section at the front of `head` (an error's short
/// text body may follow it in the same buffer).
fn header_length(head: &[u8]) -> u64 {
    head.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(head.len(), |at| at + 4) as u64
}

/// Sends a planned response and records what it cost. Errors that end the
/// connection come back as `Err`.
async fn deliver(
    core: &Core,
    stream: &mut Transport,
    exchange: &Exchange<'_, '_>,
    head: &mut Vec<u8>,
    body: &Body,
    status: Status,
    file: Option<&OpenFile>,
) -> io::Result<()> {
    let metrics = &core.metrics;
    metrics.response(status);
    let started = exchange.started;
    // For the access log, which counts body bytes only (CLF's %b); the scan
    // is skipped when there is no log.
    let head_len = core.access_log.as_ref().map(|_| header_length(head));
    let mut transfer = Transfer::new(
        &mut *stream,
        file,
        core.direct.as_ref(),
        started,
        core.config.pacing,
    );
    let result = transfer.send(head, body).await;
    // Recorded before anything else can run on this core, so a scrape that
    // follows the client's last byte sees this response counted.
    metrics.sent(transfer.sent, transfer.body_copied, transfer.body_zero_copy);
    let elapsed = transfer.finished_at() - started;
    metrics.record(&RequestTimes {
        ttfb: transfer.first_byte.unwrap_or(elapsed),
        duration: elapsed,
        disk_wait: (!matches!(body, Body::None)).then_some(transfer.disk_time),
        socket_blocked: transfer.socket_time,
    });
    if let (Some(log), Some(head_len)) = (&core.access_log, head_len) {
        let body_bytes = transfer.sent.saturating_sub(head_len);
        log.record(exchange.peer, exchange.request, status, body_bytes, elapsed);
    }
    // After the transfer's last use: it borrows the transport.
    metrics.tls_encrypted(stream.take_encrypted());
    match result {
        Ok(()) => Ok(()),
        Err(SendError::Socket(e)) => {
            metrics.error(ErrorKind::ClientGone);
            Err(e)
        }
        Err(SendError::SendTimeout) => {
            metrics.error(ErrorKind::SendTimeout);
            Err(io::ErrorKind::TimedOut.into())
        }
        Err(SendError::File(e)) => {
            metrics.error(ErrorKind::FileRead);
            Err(e)
        }
        Err(SendError::Truncated) => {
            metrics.error(ErrorKind::Truncated);
            Err(io::ErrorKind::UnexpectedEof.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(bytes: &[u8], capacity: usize) -> ReadBuffer {
        let mut buffer = ReadBuffer {
            bytes: vec![0; capacity],
            start: 0,
            end: bytes.len(),
        };
        buffer.bytes[..bytes.len()].copy_from_slice(bytes);
        buffer
    }

    #[test]
    fn consuming_moves_the_window_and_resets_when_empty() {
        let mut buffer = filled(b"GET /a\r\n\r\nGET", 16);
        buffer.consume(10);
        assert_eq!(buffer.data(), b"GET");
        buffer.consume(3);
        assert!(buffer.is_empty());
        assert_eq!((buffer.start, buffer.end), (0, 0));
    }

    #[test]
    fn room_comes_from_compacting_first_then_doubling_up_to_the_head_limit() {
        let mut buffer = filled(b"0123456789abcdef", 16);
        buffer.consume(10);
        buffer.make_room();
        assert_eq!(buffer.data(), b"abcdef");
        assert_eq!(buffer.bytes.len(), 16);

        let mut full = filled(&[b'x'; INITIAL_READ_BUFFER], INITIAL_READ_BUFFER);
        full.make_room();
        assert_eq!(full.bytes.len(), 2 * INITIAL_READ_BUFFER);
        assert_eq!(full.data().len(), INITIAL_READ_BUFFER);
        for _ in 0..20 {
            full.end = full.bytes.len();
            full.make_room();
        }
        assert!(full.bytes.len() <= MAX_HEAD + 64);
    }

    #[test]
    fn shrinking_keeps_unconsumed_bytes() {
        let mut buffer = filled(b"GET / HTTP/1.1\r\n", MAX_HEAD);
        buffer.shrink();
        assert_eq!(buffer.bytes.len(), INITIAL_READ_BUFFER);
        assert_eq!(buffer.data(), b"GET / HTTP/1.1\r\n");
    }
}
