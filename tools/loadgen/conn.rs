//! The connections of one load thread: each active connection is a task that
//! plans, sends, reads and checks requests until the deadline; each idle one
//! makes one request and then holds the connection open. This is the only
//! module that opens connections; their bytes go through a `Transport`
//! (plain or TLS), which it never looks inside.

use crate::response::{parse_head, Chunk, ChunkedDecoder, ContentRange, Framing, ParseError};
use crate::rt::{self, sleep_until};
use crate::stats::{Errors, Progress, Stats};
use crate::tls::TlsClient;
use crate::transport::{tls_error, ConnectError, Transport};
use crate::workload::{Planned, Planner, Shape};
use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Receive buffer per connection. Large enough that a big body takes few
/// reads; it also bounds a response head (see `response::MAX_HEAD`).
const READ_BUFFER: usize = 128 * 1024;
/// Pause after a failed connect, so a server that is down is not hammered in
/// a tight loop (the failures are still counted).
const CONNECT_BACKOFF: Duration = Duration::from_millis(10);

/// Everything the connections of every load thread share, read-only.
#[derive(Debug)]
pub struct Run {
    pub addr: SocketAddr,
    /// `GET <path> HTTP/1.1`, `Host` and any -H fields, each ending in CRLF;
    /// a request adds its Range field and the final CRLF.
    pub request_head: Vec<u8>,
    pub shape: Shape,
    /// Length of the resource, from the probe.
    pub len: Option<u64>,
    /// Whether the server answered the probe's Range with 206/416.
    pub ranges: bool,
    /// The --verify file's bytes.
    pub verify: Option<Vec<u8>>,
    pub rate: Option<f64>,
    pub connections: u32,
    pub seed: u64,
    /// When the first requests are due (connections are opened before).
    pub start: Instant,
    /// No request is started at or after this.
    pub deadline: Instant,
    /// Requests still in flight are abandoned here (deadline + timeout).
    pub hard_stop: Instant,
    pub timeout: Duration,
    /// For `https://`: the client configuration, without a session cache.
    pub tls: Option<TlsClient>,
    /// Each load thread keeps a session cache and resumes from it (--resume).
    pub resume: bool,
    /// Every request on a connection of its own (--new-conn): connect,
    /// handshake, one request with `Connection: close`, close.
    pub new_conn: bool,
    pub progress: Progress,
}

/// Runs one thread's connections to the end and returns their stats.
pub fn run_core(run: Arc<Run>, active: Vec<u32>, idle: u32) -> io::Result<Stats> {
    let stats = Rc::new(RefCell::new(Stats::default()));
    let tls = Rc::new(run.tls.as_ref().map(|tls| tls.for_thread(run.resume)));
    for index in active {
        let (run, stats, tls) = (run.clone(), stats.clone(), tls.clone());
        rt::spawn(async move {
            let in_flight = Cell::new(false);
            let finished = futures_lite::future::or(
                async {
                    let tls = tls.as_ref().as_ref();
                    active_connection(&run, tls, index, &stats, &in_flight).await;
                    true
                },
                async {
                    sleep_until(run.hard_stop).await;
                    false
                },
            )
            .await;
            if !finished && in_flight.get() {
                stats.borrow_mut().unfinished += 1;
            }
        });
    }
    for _ in 0..idle {
        let (run, stats, tls) = (run.clone(), stats.clone(), tls.clone());
        rt::spawn(async move {
            idle_connection(&run, tls.as_ref().as_ref(), &stats).await;
        });
    }
    rt::run()?;
    let mut stats = stats.take();
    stats.finished = Some(Instant::now());
    Ok(stats)
}

/// One active connection: plan, (wait,) send, read, check, record; reconnect
/// after errors and `Connection: close`; stop at the deadline. With
/// --new-conn, the connect and handshake are part of each request's latency.
async fn active_connection(
    run: &Run,
    tls: Option<&TlsClient>,
    index: u32,
    stats: &RefCell<Stats>,
    in_flight: &Cell<bool>,
) {
    let mut planner = Planner::new(
        run.shape,
        run.len,
        run.seed,
        index,
        run.connections,
        run.rate,
        run.start,
        run.deadline,
    );
    let mut buf = vec![0u8; READ_BUFFER];
    let mut request = Vec::with_capacity(run.request_head.len() + 64);
    let mut stream = match run.new_conn {
        true => None,
        false => connect(run, tls, stats).await,
    };
    sleep_until(run.start).await;
    let mut seeks = 0;
    while let Some(plan) = planner.next(Instant::now()) {
        if planner.seeks != seeks {
            stats.borrow_mut().seeks += planner.seeks - seeks;
            seeks = planner.seeks;
        }
        if let Some(at) = plan.intended {
            sleep_until(at).await;
        }
        let now = Instant::now();
        if now >= run.deadline {
            // Behind schedule when time ran out: say how far, do not hide it.
            stats.borrow_mut().missed += planner.missed_from(plan.intended.unwrap_or(now));
            break;
        }
        let sent = Instant::now();
        in_flight.set(true);
        if run.new_conn {
            stream = connect(run, tls, stats).await;
        }
        let Some(live) = stream.as_mut() else {
            in_flight.set(false);
            if !run.new_conn {
                stream = connect(run, tls, stats).await;
            }
            if stream.is_none() {
                sleep_until(Instant::now() + CONNECT_BACKOFF).await;
            }
            continue;
        };
        build_request(&mut request, &run.request_head, plan.range);
        let expect = Expect::for_plan(run, &plan);
        let mut received = 0;
        let result = exchange(
            live,
            &mut buf,
            &request,
            &expect,
            &run.progress,
            &mut received,
        )
        .await;
        in_flight.set(false);
        let latency = Instant::now() - plan.intended.unwrap_or(sent);
        let outcome = record(
            run,
            &mut stats.borrow_mut(),
            &plan,
            latency,
            received,
            result,
        );
        match outcome {
            After::KeepAlive => {}
            After::Close => {
                if let Some(closing) = stream.take() {
                    closing.finish().await;
                }
            }
            After::Drop => stream = None,
        }
    }
}

/// What to do with the connection after an exchange.
enum After {
    KeepAlive,
    /// The server said it closes: let it, then drop ours.
    Close,
    /// The exchange failed: the connection is of no further use.
    Drop,
}

/// Counts one exchange's result and says what becomes of the connection.
fn record(
    run: &Run,
    stats: &mut Stats,
    plan: &Planned,
    latency: Duration,
    received: u64,
    result: Result<Answer, Failure>,
) -> After {
    stats.body_bytes += received;
    let answer = match result {
        Ok(answer) => answer,
        Err(failure) => {
            failure.count(&mut stats.errors);
            Progress::add(&run.progress.errors, 1);
            return After::Drop;
        }
    };
    stats.responses += 1;
    Progress::add(&run.progress.responses, 1);
    *stats.statuses.entry(answer.status).or_default() += 1;
    stats.record_latency(latency);
    if plan.play_time.is_some_and(|play| latency > play) {
        stats.late_chunks += 1;
    }
    let problems = answer.problems.total();
    if problems > 0 {
        stats.bad_responses += 1;
        stats.errors.add(&answer.problems);
        Progress::add(&run.progress.errors, problems);
    }
    match answer.keep_alive {
        true => After::KeepAlive,
        false => After::Close,
    }
}

/// One idle keep-alive connection: one small request, then silence until the
/// deadline. The server closing it before then is an error.
async fn idle_connection(run: &Run, tls: Option<&TlsClient>, stats: &RefCell<Stats>) {
    let Some(mut stream) = connect(run, tls, stats).await else {
        return;
    };
    sleep_until(run.start).await;
    let range = if run.ranges { Some((0, 0)) } else { None };
    let plan = Planned {
        intended: None,
        range,
        play_time: None,
    };
    let mut request = Vec::new();
    build_request(&mut request, &run.request_head, range);
    let mut buf = vec![0u8; READ_BUFFER];
    let mut received = 0;
    let expect = Expect::for_plan(run, &plan);
    let result = exchange(
        &mut stream,
        &mut buf,
        &request,
        &expect,
        &run.progress,
        &mut received,
    )
    .await;
    let mut errors = Errors::default();
    match result {
        Ok(answer) if answer.keep_alive => errors.add(&answer.problems),
        Ok(answer) => {
            errors.add(&answer.problems);
            errors.idle_closed += 1;
        }
        Err(failure) => failure.count(&mut errors),
    }
    if errors.total() == 0 {
        stream.set_timeout(None);
        let mut byte = [0u8; 1];
        let closed_early = futures_lite::future::or(
            async {
                let _ = stream.read(&mut byte).await;
                true
            },
            async {
                sleep_until(run.deadline).await;
                false
            },
        )
        .await;
        if closed_early {
            errors.idle_closed += 1;
        }
    }
    let mut stats = stats.borrow_mut();
    stats.body_bytes += received;
    if errors.total() == 0 {
        stats.idle_held += 1;
    }
    Progress::add(&run.progress.errors, errors.total());
    stats.errors.add(&errors);
}

/// Opens a connection (counting a failure, or the handshake it made).
async fn connect(run: &Run, tls: Option<&TlsClient>, stats: &RefCell<Stats>) -> Option<Transport> {
    let result = Transport::connect(run.addr, run.timeout, tls).await;
    let mut stats = stats.borrow_mut();
    match result {
        Ok(stream) => {
            if let Some(handshake) = stream.handshake() {
                stats.handshakes.record(&handshake);
            }
            Some(stream)
        }
        Err(error) => {
            match error {
                ConnectError::Tcp(_) => stats.errors.connect += 1,
                ConnectError::Tls(e) if e.kind() == io::ErrorKind::TimedOut => {
                    stats.errors.timeout += 1
                }
                ConnectError::Tls(_) => stats.errors.tls += 1,
            }
            Progress::add(&run.progress.errors, 1);
            None
        }
    }
}

/// `request_head` + `Range: bytes=a-b` (if any) + the final CRLF.
fn build_request(out: &mut Vec<u8>, head: &[u8], range: Option<(u64, u64)>) {
    out.clear();
    out.extend_from_slice(head);
    if let Some((first, last)) = range {
        let mut num = itoa::Buffer::new();
        out.extend_from_slice(b"Range: bytes=");
        out.extend_from_slice(num.format(first).as_bytes());
        out.push(b'-');
        out.extend_from_slice(num.format(last).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// What a correct answer to one request looks like.
#[derive(Debug)]
struct Expect<'a> {
    /// 206 for a range, 200 for the whole resource.
    status: u16,
    /// The exact Content-Range a 206 must carry: first, last, complete length.
    range: Option<(u64, u64, Option<u64>)>,
    /// Body length, when known.
    body_len: Option<u64>,
    /// The bytes the body must equal (--verify), already cut to the range.
    bytes: Option<&'a [u8]>,
}

impl<'a> Expect<'a> {
    fn for_plan(run: &'a Run, plan: &Planned) -> Expect<'a> {
        let slice = |first: u64, last: u64| {
            run.verify.as_deref().map(|file| {
                let end = (last as usize).saturating_add(1).min(file.len());
                file.get(first as usize..end).unwrap_or(&[])
            })
        };
        match plan.range {
            Some((first, last)) => Expect {
                status: 206,
                range: Some((first, last, run.len)),
                body_len: Some(last - first + 1),
                bytes: slice(first, last),
            },
            None => Expect {
                status: 200,
                range: None,
                body_len: run.len,
                bytes: run
                    .len
                    .and_then(|len| slice(0, len.saturating_sub(1)))
                    .or(run.verify.as_deref()),
            },
        }
    }
}

/// A complete response and what was wrong with it.
struct Answer {
    status: u16,
    keep_alive: bool,
    /// Only the status, content_range, length and body causes are ever set.
    problems: Errors,
}

/// Why an exchange did not produce a complete response.
enum Failure {
    Io(io::Error),
    Closed,
    Malformed,
}

impl Failure {
    fn count(&self, errors: &mut Errors) {
        match self {
            Failure::Io(e) if e.kind() == io::ErrorKind::TimedOut => errors.timeout += 1,
            Failure::Io(e) if tls_error(e).is_some() => errors.tls += 1,
            Failure::Io(_) => errors.io += 1,
            Failure::Closed => errors.closed += 1,
            Failure::Malformed => errors.malformed += 1,
        }
    }
}

impl From<ParseError> for Failure {
    fn from(_: ParseError) -> Failure {
        Failure::Malformed
    }
}

/// Compares body bytes with the expected ones as they arrive.
struct BodyCheck<'a> {
    expected: Option<&'a [u8]>,
    /// Body bytes seen so far.
    offset: u64,
    mismatch: bool,
}

impl BodyCheck<'_> {
    fn feed(&mut self, data: &[u8], progress: &Progress) {
        if let Some(expected) = self.expected {
            if !self.mismatch {
                let start = self.offset as usize;
                let same = expected
                    .get(start..start.saturating_add(data.len()))
                    .is_some_and(|want| want == data);
                self.mismatch = !same;
            }
        }
        self.offset += data.len() as u64;
        Progress::add(&progress.body_bytes, data.len() as u64);
    }
}

/// Sends `request` and reads one whole response into `buf`, checking it.
/// `received` counts body bytes even when the exchange fails.
async fn exchange(
    stream: &mut Transport,
    buf: &mut [u8],
    request: &[u8],
    expect: &Expect<'_>,
    progress: &Progress,
    received: &mut u64,
) -> Result<Answer, Failure> {
    stream.write_all(request).await.map_err(Failure::Io)?;
    let mut filled = 0;
    let head = loop {
        match parse_head(&buf[..filled])? {
            // Interim responses (100 Continue, 103 Early Hints) precede the real one.
            Some(head) if (100..200).contains(&head.status) && head.status != 101 => {
                buf.copy_within(head.len..filled, 0);
                filled -= head.len;
                continue;
            }
            Some(head) => break head,
            None => {}
        }
        let n = stream.read(&mut buf[filled..]).await.map_err(Failure::Io)?;
        if n == 0 {
            return Err(Failure::Closed);
        }
        filled += n;
    };
    let mut body = BodyCheck {
        expected: expect.bytes,
        offset: 0,
        mismatch: false,
    };
    let result = read_body(
        stream,
        buf,
        head.len,
        filled,
        head.framing,
        &mut body,
        progress,
    )
    .await;
    *received = body.offset;
    result?;

    let mut problems = Errors::default();
    if head.status != expect.status {
        problems.status = 1;
    } else {
        if let Some((first, last, complete)) = expect.range {
            let right = matches!(head.content_range,
                Some(ContentRange::Bytes { first: f, last: l, complete: c })
                    if f == first && l == last && (complete.is_none() || c == complete));
            if !right {
                problems.content_range = 1;
            }
        }
        if expect.body_len.is_some_and(|len| len != body.offset) {
            problems.length = 1;
        }
        if body.mismatch {
            problems.body = 1;
        }
    }
    Ok(Answer {
        status: head.status,
        keep_alive: head.keep_alive,
        problems,
    })
}

/// Reads the body framed by `framing`; `buf[start..filled]` already holds its
/// first bytes. Bytes beyond the body are a protocol error: we never pipeline.
async fn read_body(
    stream: &mut Transport,
    buf: &mut [u8],
    start: usize,
    filled: usize,
    framing: Framing,
    body: &mut BodyCheck<'_>,
    progress: &Progress,
) -> Result<(), Failure> {
    match framing {
        Framing::Empty => {
            if filled > start {
                return Err(Failure::Malformed);
            }
        }
        Framing::Length(len) => {
            let have = (filled - start) as u64;
            if have > len {
                return Err(Failure::Malformed);
            }
            body.feed(&buf[start..filled], progress);
            let mut left = len - have;
            while left > 0 {
                let want = left.min(buf.len() as u64) as usize;
                let n = stream.read(&mut buf[..want]).await.map_err(Failure::Io)?;
                if n == 0 {
                    return Err(Failure::Closed);
                }
                body.feed(&buf[..n], progress);
                left -= n as u64;
            }
        }
        Framing::UntilClose => {
            body.feed(&buf[start..filled], progress);
            loop {
                let n = stream.read(buf).await.map_err(Failure::Io)?;
                if n == 0 {
                    break;
                }
                body.feed(&buf[..n], progress);
            }
        }
        Framing::Chunked => {
            let mut decoder = ChunkedDecoder::default();
            let (mut pos, mut end) = (start, filled);
            loop {
                let (chunk, used) = decoder.feed(&buf[pos..end])?;
                if let Chunk::Data(len) = chunk {
                    body.feed(&buf[pos..pos + len], progress);
                }
                pos += used;
                match chunk {
                    Chunk::Done if pos < end => return Err(Failure::Malformed),
                    Chunk::Done => return Ok(()),
                    Chunk::More => {
                        buf.copy_within(pos..end, 0);
                        end -= pos;
                        pos = 0;
                        if end == buf.len() {
                            return Err(Failure::Malformed);
                        }
                        let n = stream.read(&mut buf[end..]).await.map_err(Failure::Io)?;
                        if n == 0 {
                            return Err(Failure::Closed);
                        }
                        end += n;
                    }
                    Chunk::Data(_) | Chunk::Framing => {}
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_minimal_http11() {
        let mut out = Vec::new();
        let head = b"GET /f HTTP/1.1\r\nHost: h\r\n";
        build_request(&mut out, head, Some((65536, 131071)));
        assert_eq!(
            out,
            b"GET /f HTTP/1.1\r\nHost: h\r\nRange: bytes=65536-131071\r\n\r\n"
        );
        build_request(&mut out, head, None);
        assert_eq!(out, b"GET /f HTTP/1.1\r\nHost: h\r\n\r\n");
    }
}
