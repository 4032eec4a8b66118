//! One run: probe the target, start one pinned load thread per CPU with its
//! share of the connections, show progress, merge the threads' stats.

use crate::args::Args;
use crate::conn::{run_core, Run};
use crate::report::Summary;
use crate::response::{parse_head, ContentRange, Framing};
use crate::stats::Stats;
use crate::tls::{describe, TlsClient};
use crate::transport::tls_error;
use crate::workload::Shape;
use ringcast::config::online_cpus;
use std::io::{IsTerminal, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Time between starting the load threads and the first scheduled request, in
/// which every connection is opened (so connects are not measured as latency).
const STARTUP: Duration = Duration::from_millis(200);
/// Interval of the progress line.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// What the probe request learned about the target.
#[derive(Debug, PartialEq, Eq)]
pub struct Probe {
    /// The resource's length, if the server said.
    pub len: Option<u64>,
    /// The server answered `Range: bytes=0-0` with 206 or 416.
    pub ranges: bool,
}

/// Runs the whole load test; `Err` is a one-line reason it could not start.
pub fn run(args: &Args) -> Result<String, String> {
    let cpus = match &args.cpus {
        Some(list) => list.0.clone(),
        None => vec![*online_cpus().last().unwrap_or(&0)],
    };
    // The main thread (probe, progress) stays on the load CPUs too.
    let _ = core_affinity::set_for_current(core_affinity::CoreId { id: cpus[0] });
    raise_fd_limit(args.connections as u64 + args.idle as u64);

    let tls = match args.tls_options()? {
        Some(options) => Some(TlsClient::new(&options, &args.url.server_name)?),
        None => None,
    };
    let probe = probe(args, tls.as_ref())
        .map_err(|e| format!("probe of {} failed: {e}", url_text(args)))?;
    let shape = match (args.range_size, args.player) {
        (Some(size), _) => Shape::Ranges { size },
        (None, Some(bitrate)) => Shape::Player {
            bitrate,
            chunk: args.chunk_size,
            seek_mean: args.seek_interval,
        },
        (None, None) => Shape::Whole,
    };
    if shape != Shape::Whole {
        if !probe.ranges {
            return Err(format!(
                "{} does not answer Range requests with 206",
                url_text(args)
            ));
        }
        if probe.len.is_none_or(|len| len == 0) {
            return Err(format!("{} has no known, non-zero length", url_text(args)));
        }
    }
    let verify = match &args.verify {
        Some(path) => {
            let bytes =
                std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            if let Some(len) = probe.len.filter(|&len| len != bytes.len() as u64) {
                eprintln!(
                    "loadgen: warning: {} has {} bytes but the server reports {len}; expect body mismatches",
                    path.display(),
                    bytes.len()
                );
            }
            Some(bytes)
        }
        None => None,
    };
    let seed = args.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let mut request_head = request_head(args);
    if args.new_conn {
        request_head.push_str("Connection: close\r\n");
    }
    let start = Instant::now() + STARTUP;
    let deadline = start + args.duration;
    let run = Arc::new(Run {
        addr: args.url.addr,
        request_head: request_head.into_bytes(),
        shape,
        len: probe.len,
        ranges: probe.ranges,
        verify,
        rate: args.rate,
        connections: args.connections,
        seed,
        start,
        deadline,
        hard_stop: deadline + args.timeout,
        timeout: args.timeout,
        tls,
        resume: args.resume,
        new_conn: args.new_conn,
        progress: Default::default(),
    });

    // Connection i goes to thread i % cpus, idle ones likewise.
    let finished = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::with_capacity(cpus.len());
    for (slot, &cpu) in cpus.iter().enumerate() {
        let active: Vec<u32> = (0..args.connections)
            .filter(|i| *i as usize % cpus.len() == slot)
            .collect();
        let idle = (0..args.idle)
            .filter(|i| *i as usize % cpus.len() == slot)
            .count() as u32;
        let (run, finished) = (run.clone(), finished.clone());
        let handle = std::thread::Builder::new()
            .name(format!("loadgen-cpu{cpu}"))
            .spawn(move || {
                let pinned = core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
                let stats = if pinned {
                    run_core(run, active, idle).map_err(|e| format!("CPU {cpu}: {e}"))
                } else {
                    Err(format!("cannot pin a load thread to CPU {cpu}"))
                };
                finished.fetch_add(1, Ordering::Release);
                stats
            })
            .map_err(|e| format!("cannot start a load thread for CPU {cpu}: {e}"))?;
        handles.push(handle);
    }

    show_progress(args, &run, &finished, cpus.len());

    let mut total = Stats::default();
    for handle in handles {
        let stats = handle
            .join()
            .map_err(|_| "a load thread panicked".to_string())??;
        total.merge(&stats);
    }
    let elapsed = total
        .finished
        .map_or(args.duration, |end| end.saturating_duration_since(start));
    let summary = Summary {
        url: &url_text(args),
        shape,
        rate: args.rate,
        connections: args.connections,
        idle: args.idle,
        cpus: &cpus,
        duration: args.duration,
        elapsed,
        tls: args.url.tls,
        stats: &total,
    };
    Ok(if args.json {
        summary.json()
    } else {
        summary.text()
    })
}

/// Raises the soft descriptor limit toward the hard one when the connections
/// would not fit (1024 is a common default; --idle 10000 needs more).
fn raise_fd_limit(connections: u64) {
    /// Descriptors beyond the connections: stdio, epoll, the --verify file.
    const SPARE: u64 = 64;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write `limit`.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0
            && limit.rlim_cur < connections + SPARE
        {
            limit.rlim_cur = (connections + SPARE).min(limit.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

fn url_text(args: &Args) -> String {
    args.url.text()
}

/// Waits for the load threads, printing one progress line a second on a terminal.
fn show_progress(args: &Args, run: &Run, finished: &AtomicUsize, threads: usize) {
    let terminal = !args.quiet && std::io::stderr().is_terminal();
    let mut last = (Instant::now(), 0u64, 0u64);
    while finished.load(Ordering::Acquire) < threads {
        std::thread::sleep(Duration::from_millis(50));
        let now = Instant::now();
        if !terminal || now < run.start || now - last.0 < PROGRESS_EVERY {
            continue;
        }
        let (responses, bytes, errors) = run.progress.read();
        let secs = (now - last.0).as_secs_f64();
        let _ = write!(
            std::io::stderr(),
            "\r  {:5.1}s  {:10.1} req/s  {:9.1} MB/s  errors {}   ",
            (now - run.start).as_secs_f64(),
            (responses - last.1) as f64 / secs,
            (bytes - last.2) as f64 / secs / 1e6,
            errors
        );
        last = (now, responses, bytes);
    }
    if terminal {
        let _ = write!(std::io::stderr(), "\r{:70}\r", "");
    }
}

/// Asks for `Range: bytes=0-0` on a fresh connection to learn the length and
/// whether ranges are served (and, for https, that the server's certificate
/// verifies: a wrong CA fails here, once, with the reason). Reads only the head.
pub fn probe(args: &Args, tls: Option<&TlsClient>) -> Result<Probe, String> {
    let tcp =
        TcpStream::connect_timeout(&args.url.addr, args.timeout).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(args.timeout))
        .map_err(|e| e.to_string())?;
    tcp.set_write_timeout(Some(args.timeout))
        .map_err(|e| e.to_string())?;
    let mut stream: Box<dyn ReadWrite> = match tls {
        Some(tls) => {
            let conn = tls.session().map_err(|e| describe(&e))?;
            Box::new(rustls::StreamOwned::new(conn, tcp))
        }
        None => Box::new(tcp),
    };
    let mut request = request_head(args);
    request.push_str("Range: bytes=0-0\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(io_text)?;
    let mut buf = vec![0u8; 8192];
    let mut filled = 0;
    loop {
        if let Some(head) = parse_head(&buf[..filled]).map_err(|e| e.to_string())? {
            return probe_result(head.status, head.content_range, head.framing);
        }
        if filled == buf.len() {
            buf.resize(filled * 2, 0);
        }
        let n = stream.read(&mut buf[filled..]).map_err(io_text)?;
        if n == 0 {
            return Err("connection closed before a response".into());
        }
        filled += n;
    }
}

/// The probe's stream: a socket, or rustls over one.
trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// An I/O error as one line, naming the TLS failure if that is what it is.
fn io_text(error: std::io::Error) -> String {
    match tls_error(&error) {
        Some(tls) => describe(tls),
        None => error.to_string(),
    }
}

fn probe_result(
    status: u16,
    range: Option<ContentRange>,
    framing: Framing,
) -> Result<Probe, String> {
    match (status, range, framing) {
        (206, Some(ContentRange::Bytes { complete, .. }), _) => Ok(Probe {
            len: complete,
            ranges: true,
        }),
        (416, Some(ContentRange::Unsatisfied { complete }), _) => Ok(Probe {
            len: Some(complete),
            ranges: true,
        }),
        (200, _, Framing::Length(len)) => Ok(Probe {
            len: Some(len),
            ranges: false,
        }),
        (200, _, _) => Ok(Probe {
            len: None,
            ranges: false,
        }),
        (206 | 416, _, _) => Err(format!("status {status} without a usable Content-Range")),
        _ => Err(format!("status {status}")),
    }
}

/// The request line, Host and the user's extra headers, each with its CRLF;
/// the caller adds Range and the blank line.
fn request_head(args: &Args) -> String {
    let mut head = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\n",
        args.url.path, args.url.host
    );
    for header in &args.headers {
        head.push_str(header);
        head.push_str("\r\n");
    }
    head
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_outcomes() {
        let bytes = |first, last, complete| {
            Some(ContentRange::Bytes {
                first,
                last,
                complete,
            })
        };
        assert_eq!(
            probe_result(206, bytes(0, 0, Some(99)), Framing::Length(1)),
            Ok(Probe {
                len: Some(99),
                ranges: true
            })
        );
        assert_eq!(
            probe_result(
                416,
                Some(ContentRange::Unsatisfied { complete: 0 }),
                Framing::Length(0)
            ),
            Ok(Probe {
                len: Some(0),
                ranges: true
            })
        );
        assert_eq!(
            probe_result(200, None, Framing::Length(5)),
            Ok(Probe {
                len: Some(5),
                ranges: false
            })
        );
        assert!(probe_result(404, None, Framing::Length(5)).is_err());
        assert!(probe_result(206, None, Framing::Length(1)).is_err());
    }
}
