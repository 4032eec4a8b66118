//! The admin thread: one unpinned glommio executor, off the serving cores,
//! that collects per-core snapshots on demand and publishes them:
//! `--admin` (`/metrics`, `/stats`), `--stats-interval` lines, the
//! `--latency-log` interval log, and percentile tables on SIGUSR1.
//!
//! A collection sends one request to every core over a glommio shared
//! channel; each core answers with a copy of its metrics between two of its
//! own tasks, so a scrape costs a core only that copy.

use super::jobs::Jobs;
use super::lifecycle::Signals;
use crate::config::Observe;
use crate::http::request::{self, Method};
use crate::metrics::{self, prometheus, table, Snapshot};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::shared_channel::{
    self, ConnectedReceiver, ConnectedSender, SharedReceiver, SharedSender,
};
use glommio::net::{TcpListener, TcpStream};
use glommio::sync::Semaphore;
use glommio::{LocalExecutorBuilder, Placement};
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;
use std::io::Write;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// How often the admin loop looks for due work (stats lines, log intervals, SIGUSR1).
const TICK: Duration = Duration::from_millis(100);
/// Interval of the latency log when no --stats-interval is given.
const DEFAULT_LOG_INTERVAL: Duration = Duration::from_secs(1);
/// A core that has not answered a snapshot request by then is left out of
/// that collection (it is finishing, or stuck), so the admin listener always
/// answers.
const REPLY_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest admin request head we read.
const MAX_ADMIN_REQUEST: usize = 8 * 1024;

/// A core's ends of its snapshot channels.
pub struct CoreLink {
    requests: SharedReceiver<()>,
    replies: SharedSender<Snapshot>,
}

/// The admin's ends of one core's snapshot channels.
pub struct AdminLink {
    requests: SharedSender<()>,
    replies: SharedReceiver<Snapshot>,
}

/// One pair of links per core.
pub fn links(cores: usize) -> (Vec<CoreLink>, Vec<AdminLink>) {
    (0..cores)
        .map(|_| {
            let (request_tx, request_rx) = shared_channel::new_bounded(1);
            let (reply_tx, reply_rx) = shared_channel::new_bounded(1);
            (
                CoreLink {
                    requests: request_rx,
                    replies: reply_tx,
                },
                AdminLink {
                    requests: request_tx,
                    replies: reply_rx,
                },
            )
        })
        .unzip()
}

/// Runs on each core: answers snapshot requests until the admin goes away.
pub async fn answer_snapshots(link: CoreLink, snapshot: impl Fn() -> Snapshot) {
    let requests = link.requests.connect().await;
    let replies = link.replies.connect().await;
    while let Some(()) = requests.recv().await {
        if replies.send(snapshot()).await.is_err() {
            break;
        }
    }
}

/// Starts the admin thread. `listener` is the bound `--admin` socket, if any;
/// `final_metrics` brings the cores' last metrics once they have stopped.
pub fn spawn(
    observe: Observe,
    links: Vec<AdminLink>,
    listener: Option<std::net::TcpListener>,
    signals: Signals,
    final_metrics: std::sync::mpsc::Receiver<Snapshot>,
    jobs: Option<Arc<Jobs>>,
) -> std::io::Result<glommio::ExecutorJoinHandle<()>> {
    LocalExecutorBuilder::new(Placement::Unbound)
        .name("ringcast-admin")
        .spawn(move || run(observe, links, listener, signals, final_metrics, jobs))
        .map_err(|e| std::io::Error::other(e.to_string()))
}

/// Collects snapshots from every core, one collection at a time.
struct Collector {
    cores: Vec<(ConnectedSender<()>, ConnectedReceiver<Snapshot>)>,
    one_at_a_time: Semaphore,
    /// The `--on-publish` queue, shown beside the cores' metrics.
    jobs: Option<Arc<Jobs>>,
}

impl Collector {
    async fn collect(&self) -> (Vec<Snapshot>, Snapshot) {
        let _permit = self.one_at_a_time.acquire_permit(1).await;
        let deadline = Instant::now() + REPLY_TIMEOUT;
        let mut asked = Vec::with_capacity(self.cores.len());
        for (requests, _) in &self.cores {
            asked.push(
                until(deadline, requests.send(()))
                    .await
                    .is_some_and(|r| r.is_ok()),
            );
        }
        let mut snapshots = Vec::with_capacity(self.cores.len());
        for ((_, replies), asked) in self.cores.iter().zip(asked) {
            if asked {
                if let Some(Some(snapshot)) = until(deadline, replies.recv()).await {
                    snapshots.push(snapshot);
                }
            }
        }
        let merged = metrics::merge(&snapshots);
        (snapshots, merged)
    }
}

/// `work`, unless `deadline` passes first.
async fn until<T>(deadline: Instant, work: impl std::future::Future<Output = T>) -> Option<T> {
    let left = deadline.saturating_duration_since(Instant::now());
    glommio::timer::timeout(left, async { Ok(work.await) })
        .await
        .ok()
}

async fn run(
    observe: Observe,
    links: Vec<AdminLink>,
    listener: Option<std::net::TcpListener>,
    signals: Signals,
    final_metrics: std::sync::mpsc::Receiver<Snapshot>,
    jobs: Option<Arc<Jobs>>,
) {
    let mut cores = Vec::with_capacity(links.len());
    for link in links {
        cores.push((link.requests.connect().await, link.replies.connect().await));
    }
    let collector = Rc::new(Collector {
        cores,
        one_at_a_time: Semaphore::new(1),
        jobs,
    });
    if let Some(listener) = listener {
        // SAFETY: a bound, listening socket whose ownership moves here.
        let listener = unsafe { TcpListener::from_raw_fd(listener.into_raw_fd()) };
        let collector = collector.clone();
        glommio::spawn_local(serve_admin(listener, collector)).detach();
    }
    let mut reporter = Reporter::new(&observe);
    let mut log = observe.latency_log.as_ref().and_then(|path| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| {
                eprintln!(
                    "ringcast: cannot open the latency log {}: {e}",
                    path.display()
                )
            })
            .ok()
    });
    let log_interval = observe.stats_interval.unwrap_or(DEFAULT_LOG_INTERVAL);
    let start_time = SystemTime::now();
    let log_origin = Instant::now();
    let mut serializer = V2DeflateSerializer::new();
    let mut writer = log.as_mut().and_then(|file| {
        IntervalLogWriterBuilder::new()
            .add_comment("ringcast latency log: microsecond values; tags ttfb, request_duration, disk_wait, socket_blocked, tls_handshake")
            .with_start_time(start_time)
            .with_base_time(start_time)
            .with_max_value_divisor(1e6)
            .begin_log_with(file, &mut serializer)
            .map_err(|e| eprintln!("ringcast: cannot write the latency log: {e}"))
            .ok()
    });
    let mut log_previous = Snapshot::default();
    let mut log_due = Instant::now() + log_interval;

    while !signals.finished() {
        glommio::timer::sleep(TICK).await;
        if signals.take_dump_request() {
            let (_, merged) = collector.collect().await;
            eprint!("{}", percentile_tables(&merged));
        }
        if reporter.due() {
            let (_, merged) = collector.collect().await;
            reporter.report(merged);
        }
        if let Some(writer) = writer.as_mut() {
            if Instant::now() >= log_due {
                let (_, merged) = collector.collect().await;
                let since_base = (log_due - log_interval).duration_since(log_origin);
                write_interval(writer, &merged, &log_previous, since_base, log_interval);
                log_previous = merged;
                log_due += log_interval;
            }
        }
    }
    // The cores are gone; their final metrics close the last, partial interval.
    if let (Some(writer), Ok(last)) = (writer.as_mut(), final_metrics.try_recv()) {
        let start = log_due - log_interval;
        let since_base = start.duration_since(log_origin);
        write_interval(writer, &last, &log_previous, since_base, start.elapsed());
    }
    if let Some(file) = log.as_mut() {
        let _ = file.flush();
    }
}

/// Writes one interval of every histogram: `now` minus `previous`, tagged.
fn write_interval<W: Write, S: hdrhistogram::serialization::Serializer>(
    writer: &mut hdrhistogram::serialization::interval_log::IntervalLogWriter<'_, '_, W, S>,
    now: &Snapshot,
    previous: &Snapshot,
    since_base: Duration,
    length: Duration,
) {
    let before = previous.histograms.named();
    for (index, (name, _, histogram)) in now.histograms.named().into_iter().enumerate() {
        let mut delta = histogram.clone();
        let _ = delta.subtract(before[index].2);
        if let Err(e) = writer.write_histogram(&delta, since_base, length, Tag::new(name)) {
            eprintln!("ringcast: latency log write failed: {e:?}");
        }
    }
}

/// `--stats-interval`: one line per interval, from counter and histogram deltas.
struct Reporter {
    every: Option<Duration>,
    next: Instant,
    last: Option<(Instant, Snapshot)>,
}

impl Reporter {
    fn new(observe: &Observe) -> Reporter {
        let every = observe.stats_interval;
        // Counters start at zero, so an empty snapshot is the first baseline.
        Reporter {
            every,
            next: Instant::now() + every.unwrap_or_default(),
            last: Some((Instant::now(), Snapshot::default())),
        }
    }

    fn due(&self) -> bool {
        self.every.is_some() && Instant::now() >= self.next
    }

    fn report(&mut self, now: Snapshot) {
        let at = Instant::now();
        self.next += self.every.unwrap_or_default();
        if let Some((then, before)) = &self.last {
            let secs = at.duration_since(*then).as_secs_f64().max(1e-9);
            let requests = now.counters.requests() - before.counters.requests();
            let bytes = now.counters.response_bytes - before.counters.response_bytes;
            let mut ttfb = now.histograms.ttfb.clone();
            let _ = ttfb.subtract(&before.histograms.ttfb);
            let ms = |q: f64| ttfb.value_at_quantile(q) as f64 / 1000.0;
            eprintln!(
                "ringcast: {:.0} req/s {:.1} MB/s ttfb p50 {:.3} ms p99 {:.3} ms p99.9 {:.3} ms open {}",
                requests as f64 / secs,
                bytes as f64 / secs / 1e6,
                ms(0.5),
                ms(0.99),
                ms(0.999),
                now.open_connections
            );
        }
        self.last = Some((at, now));
    }
}

/// The full percentile tables of every histogram.
pub fn percentile_tables(merged: &Snapshot) -> String {
    let mut out = String::new();
    // An empty histogram (no TLS handshakes on a plain server, say) prints nothing.
    for (name, help, histogram) in merged.histograms.named() {
        if histogram.is_empty() {
            continue;
        }
        out.push_str(&format!("\n# {name} (milliseconds): {help}\n"));
        out.push_str(&table::percentile_distribution(histogram));
    }
    out
}

/// The admin listener: `GET /metrics`, `GET /stats`, one request per connection.
async fn serve_admin(listener: TcpListener, collector: Rc<Collector>) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                glommio::spawn_local(answer_admin(stream, collector.clone())).detach();
            }
            Err(_) => glommio::timer::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn answer_admin(mut stream: TcpStream, collector: Rc<Collector>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let mut buf = vec![0u8; MAX_ADMIN_REQUEST];
    let mut filled = 0;
    let target = loop {
        match stream.read(&mut buf[filled..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => filled += n,
        }
        match request::parse(&buf[..filled]) {
            Ok(Some((req, _))) if matches!(req.method, Method::Get | Method::Head) => {
                break Some(String::from_utf8_lossy(req.target).into_owned());
            }
            Ok(Some(_)) | Err(_) => break None,
            Ok(None) if filled == buf.len() => break None,
            Ok(None) => {}
        }
    };
    let (status, content_type, body) =
        match target.as_deref().map(|t| t.split('?').next().unwrap_or(t)) {
            Some("/metrics") => {
                let (cores, merged) = collector.collect().await;
                let mut text = prometheus::render(&cores, &merged);
                if let Some(jobs) = &collector.jobs {
                    text.push_str(&jobs_prometheus(jobs));
                }
                ("200 OK", "text/plain; version=0.0.4; charset=utf-8", text)
            }
            Some("/stats") => {
                let (cores, merged) = collector.collect().await;
                let mut json = metrics::stats_json(&cores, &merged);
                if let Some(jobs) = &collector.jobs {
                    add_jobs_json(&mut json, jobs);
                }
                ("200 OK", "application/json", json)
            }
            Some(_) => (
                "404 Not Found",
                "text/plain",
                "try /metrics or /stats\n".to_string(),
            ),
            None => ("400 Bad Request", "text/plain", "bad request\n".to_string()),
        };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(body.as_bytes());
    let _ = stream.write_all(&response).await;
    let _ = stream.close().await;
}

/// The job queue's gauges and counters, in the Prometheus text format.
fn jobs_prometheus(jobs: &Jobs) -> String {
    let counts = jobs.counts();
    format!(
        "# HELP ringcast_jobs_queued --on-publish jobs waiting for a runner.\n\
         # TYPE ringcast_jobs_queued gauge\n\
         ringcast_jobs_queued {}\n\
         # HELP ringcast_jobs_running --on-publish jobs running.\n\
         # TYPE ringcast_jobs_running gauge\n\
         ringcast_jobs_running {}\n\
         # HELP ringcast_jobs_succeeded_total Jobs that exited 0.\n\
         # TYPE ringcast_jobs_succeeded_total counter\n\
         ringcast_jobs_succeeded_total {}\n\
         # HELP ringcast_jobs_failed_total Jobs that failed, could not start or were killed.\n\
         # TYPE ringcast_jobs_failed_total counter\n\
         ringcast_jobs_failed_total {}\n",
        counts.queued, counts.running, counts.succeeded, counts.failed
    )
}

/// Adds `"jobs": {counts, recent: [...]}` to the `/stats` object.
fn add_jobs_json(json: &mut String, jobs: &Jobs) {
    let Some(end) = json.rfind('}') else {
        return;
    };
    let counts = jobs.counts();
    let recent: Vec<String> = jobs
        .recent()
        .iter()
        .map(|r| {
            format!(
                "{{\"id\":{},\"file\":{},\"state\":\"{}\",\"exit\":{},\"seconds\":{:.3}}}",
                r.id,
                json_string(&r.file),
                r.state,
                r.exit.map_or("null".to_string(), |e| e.to_string()),
                r.seconds
            )
        })
        .collect();
    let field = format!(
        ",\"jobs\":{{\"queued\":{},\"running\":{},\"succeeded\":{},\"failed\":{},\"recent\":[{}]}}",
        counts.queued,
        counts.running,
        counts.succeeded,
        counts.failed,
        recent.join(",")
    );
    json.insert_str(end, &field);
}

fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
