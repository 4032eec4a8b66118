//! The per-core I/O layer: one pinned glommio executor per CPU, each with its
//! own SO_REUSEPORT listener, root directory handle and date cache. Cores share
//! nothing; the kernel spreads connections across their listeners.
//!
//! - [`listener`]: binds every core's socket up front, so a bad address fails
//!   before any thread starts.
//! - [`conn`]: one connection's read-decide-send loop.
//! - [`transport`]: the socket under it: plain, user-space TLS or kernel TLS.
//! - [`tls`]: certificates, SNI, tickets, the per-core rustls configuration, kTLS.
//! - [`fs`]: opening files strictly beneath the root.
//! - [`ingest`]: PUT and DELETE beneath `--ingest` prefixes: temporary file,
//!   spliced body, atomic rename.
//! - [`jobs`]: the `--on-publish` queue and the thread that runs its jobs.
//! - [`file_cache`]: the per-core open-file cache, kept fresh by inotify.
//! - [`send`]: the data path from file to socket.
//! - [`mapped`]: short ranges of hot files sent from a mapping.
//! - [`residency`]: whether file ranges are in the page cache, with memos.
//! - [`uring`]: a file's io_uring handle for reads that miss the page cache.
//! - [`direct`]: `--io direct`, O_DIRECT reads with read-ahead.
//! - [`clock`]: the per-core `Date` cache.
//! - [`lifecycle`]: connection accounting, `--max-conns`, graceful shutdown.
//! - [`admin`]: the admin thread: `/metrics`, `/stats`, stats lines, latency log.
//! - [`access_log`]: the per-core, non-blocking access log.

pub mod access_log;
pub mod admin;
pub mod change_bell;
pub mod clock;
pub mod conn;
pub mod direct;
pub mod file_cache;
pub mod fs;
pub mod ingest;
pub mod jobs;
pub mod lifecycle;
pub mod listener;
pub mod mapped;
pub mod residency;
pub mod send;
pub mod tls;
pub mod transport;
pub mod uring;

use crate::config::{Config, Io};
use crate::metrics::{self, ErrorKind, Metrics, Snapshot};
use futures_lite::{future, FutureExt};
use glommio::net::TcpListener;
use glommio::{LocalExecutorBuilder, Placement};
use lifecycle::{Connections, Drain, Signals};
use std::fmt;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use transport::{Offload, Transport};

/// How long a core waits before accepting again after running out of descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// While accept keeps failing, repeat the log line at most this often.
const ACCEPT_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// One core's state, shared by the tasks of that core only.
pub struct Core {
    /// The CPU this core is pinned to (the `core` label of its metrics).
    pub cpu: usize,
    pub config: Config,
    pub root: fs::Root,
    pub files: file_cache::FileCache,
    /// O_DIRECT reads and their memory budget, under `--io direct`.
    pub direct: Option<direct::DirectReads>,
    pub clock: clock::DateCache,
    pub connections: Rc<Connections>,
    pub drain: Drain,
    pub metrics: Metrics,
    pub access_log: Option<access_log::AccessLog>,
    /// This core's TLS configuration, with `--tls-listen`.
    pub tls: Option<tls::CoreTls>,
    /// Where connections and handshakes run.
    pub queues: Queues,
    /// Uploads, with `--ingest`.
    pub ingest: Option<ingest::CoreIngest>,
}

impl Core {
    /// A copy of this core's metrics, with the current connection count.
    pub fn snapshot(&self) -> Snapshot {
        self.metrics.set_open_connections(self.connections.open());
        self.metrics.snapshot(self.cpu)
    }
}

/// Why the server could not start.
#[derive(Debug)]
pub enum ServerError {
    /// Binding or listening on the address of a flag failed (in use, not local, ...).
    Listen(&'static str, SocketAddr, std::io::Error),
    /// The root directory could not be opened.
    Root(std::path::PathBuf, std::io::Error),
    /// A log file (`--access-log`, `--latency-log`) could not be opened.
    Log(&'static str, std::path::PathBuf, std::io::Error),
    /// An executor could not be created or pinned to its CPU.
    Executor(usize, String),
    /// Signal handling could not be set up.
    Signals(nix::Error),
    /// The admin thread could not start.
    Observe(std::io::Error),
    /// Certificates, keys or `--ktls require`.
    Tls(tls::TlsError),
    /// `--ingest-tokens` unreadable or empty, or the job thread.
    Ingest(String),
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::Listen(flag, addr, e) => write!(f, "{flag} {addr}: cannot listen: {e}"),
            ServerError::Root(path, e) => write!(f, "--root {}: cannot open: {e}", path.display()),
            ServerError::Log(flag, path, e) => {
                write!(
                    f,
                    "{flag} {}: cannot open for appending: {e}",
                    path.display()
                )?;
                if e.kind() == std::io::ErrorKind::NotFound {
                    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                        write!(f, " (create {} first)", dir.display())?;
                    }
                }
                Ok(())
            }
            ServerError::Executor(cpu, e) => {
                write!(f, "cannot start the executor for CPU {cpu}: {e}")
            }
            ServerError::Signals(e) => write!(f, "cannot set up signal handling: {e}"),
            ServerError::Observe(e) => write!(f, "cannot start the admin thread: {e}"),
            ServerError::Tls(e) => write!(f, "cannot serve HTTPS: {e}"),
            ServerError::Ingest(e) => write!(f, "cannot accept uploads: {e}"),
        }
    }
}

impl std::error::Error for ServerError {}

/// Serves until SIGTERM/SIGINT, then drains and returns.
pub fn run(config: Config) -> Result<(), ServerError> {
    // Check the root once here so a bad one is a clear startup error.
    drop(
        fs::Root::open(&config.root, config.follow_symlinks)
            .map_err(|e| ServerError::Root(config.root.clone(), e))?,
    );
    raise_fd_limit();
    let tls = start_tls(&config)?;
    let ingest = start_ingest(&config)?;
    let on_hangup: Box<dyn Fn() + Send> = {
        let certs = tls.as_ref().map(|start| start.shared.clone());
        let tokens = ingest.as_ref().map(|start| start.tokens.clone());
        Box::new(move || {
            if let Some(certs) = &certs {
                certs.reload();
            }
            if let Some(tokens) = &tokens {
                tokens.reload();
            }
            if certs.is_none() && tokens.is_none() {
                eprintln!(
                    "ringcast: SIGHUP: nothing to reload (no --tls-listen or --ingest-tokens)"
                );
            }
        })
    };
    // Before any thread starts, so every thread inherits the blocked mask.
    let signals = Signals::install(&config.cpus, on_hangup).map_err(ServerError::Signals)?;
    let count = config.cpus.len();
    let plain_sockets: Vec<Option<socket2::Socket>> = match config.listen {
        Some(addr) => listener::bind_all("--listen", addr, count, config.backlog)?
            .into_iter()
            .map(Some)
            .collect(),
        None => (0..count).map(|_| None).collect(),
    };
    let tls_sockets: Vec<Option<socket2::Socket>> = match &config.tls {
        Some(tls) => listener::bind_all("--tls-listen", tls.listen, count, config.backlog)?
            .into_iter()
            .map(Some)
            .collect(),
        None => (0..count).map(|_| None).collect(),
    };
    let admin_listener = match config.observe.admin {
        Some(addr) => Some(
            std::net::TcpListener::bind(addr)
                .map_err(|e| ServerError::Listen("--admin", addr, e))?,
        ),
        None => None,
    };
    // Fail at startup, not on the first request, if a log cannot be written.
    let logs = [
        ("--access-log", &config.observe.access_log),
        ("--latency-log", &config.observe.latency_log),
    ];
    for (flag, path) in logs {
        if let Some(path) = path {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| ServerError::Log(flag, path.clone(), e))?;
        }
    }
    let bound = |sockets: &[Option<socket2::Socket>], scheme: &str| {
        let addr = sockets.first()?.as_ref()?.local_addr().ok()?.as_socket()?;
        Some(format!("{scheme}://{addr}"))
    };
    let urls: Vec<String> = [bound(&plain_sockets, "http"), bound(&tls_sockets, "https")]
        .into_iter()
        .flatten()
        .collect();
    let admin_addr = admin_listener.as_ref().and_then(|l| l.local_addr().ok());
    eprintln!(
        "ringcast: serving {} on {} (CPUs {:?}){}{}",
        config.root.display(),
        urls.join(" and "),
        config.cpus,
        tls.as_ref().map_or(String::new(), |t| t.describe()),
        admin_addr.map_or(String::new(), |a| format!(", admin on http://{a}/metrics"))
    );
    // After the startup line, which scripts read for the address.
    if let Some(swept) = ingest.as_ref().map(|start| start.swept).filter(|&n| n > 0) {
        eprintln!("ringcast: removed {swept} unfinished uploads left by an earlier run");
    }
    let (core_links, admin_links) = admin::links(config.cpus.len());
    let (final_tx, final_rx) = std::sync::mpsc::channel();
    let admin = admin::spawn(
        config.observe.clone(),
        admin_links,
        admin_listener,
        signals.clone(),
        final_rx,
        ingest.as_ref().and_then(|start| start.jobs.clone()),
    )
    .map_err(ServerError::Observe)?;
    let mut executors = Vec::with_capacity(config.cpus.len());
    let sockets = plain_sockets.into_iter().zip(tls_sockets);
    let cores = config.cpus.iter().zip(sockets).zip(core_links).enumerate();
    for (index, ((&cpu, (plain, secure)), link)) in cores {
        let config = config.clone();
        let signals = signals.clone();
        let tls = tls
            .as_ref()
            .zip(secure)
            .map(|(start, socket)| (start.for_core(), socket));
        let listeners = Listeners { plain, tls };
        let ingest = ingest
            .as_ref()
            .map(|start| (start.tokens.clone(), start.jobs.clone()));
        let handle = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("ringcast-cpu{cpu}"))
            .spawn(move || serve_core(index, cpu, config, listeners, signals, link, ingest))
            .map_err(|e| ServerError::Executor(cpu, e.to_string()))?;
        executors.push((cpu, handle));
    }
    let mut finals = Vec::with_capacity(executors.len());
    for (cpu, handle) in executors {
        let last = handle
            .join()
            .map_err(|e| ServerError::Executor(cpu, e.to_string()))?;
        finals.extend(last);
    }
    if let Some(dispatcher) = ingest.and_then(|start| start.dispatcher) {
        dispatcher.finish(Instant::now() + config.limits.drain_timeout);
    }
    let merged = metrics::merge(&finals);
    let _ = final_tx.send(merged.clone());
    signals.finish();
    let _ = admin.join();
    if config.observe.metrics {
        eprint!("{}", admin::percentile_tables(&merged));
    }
    Ok(())
}

/// What `run` sets up for uploads before the cores start.
struct IngestStart {
    tokens: Arc<ingest::SharedTokens>,
    jobs: Option<Arc<jobs::Jobs>>,
    dispatcher: Option<jobs::Dispatcher>,
    /// Temporary files of earlier runs removed at start.
    swept: usize,
}

/// Reads the tokens, removes temporaries a crash left, and starts the job
/// thread if any `--on-publish` rule needs it.
fn start_ingest(config: &Config) -> Result<Option<IngestStart>, ServerError> {
    let (Some(ingest), Some(policy)) = (&config.ingest, &config.policy.ingest) else {
        return Ok(None);
    };
    let tokens =
        ingest::SharedTokens::load(ingest.tokens_file.clone()).map_err(ServerError::Ingest)?;
    let swept = ingest::sweep_temporaries(&config.root, policy.prefixes());
    let (jobs, dispatcher) = if ingest.on_publish.is_empty() {
        (None, None)
    } else {
        let (jobs, dispatcher) = jobs::Jobs::start(ingest.jobs)
            .map_err(|e| ServerError::Ingest(format!("cannot start the job thread: {e}")))?;
        (Some(jobs), Some(dispatcher))
    };
    Ok(Some(IngestStart {
        tokens: Arc::new(tokens),
        jobs,
        dispatcher,
        swept,
    }))
}

/// What `run` sets up for TLS before the cores start.
struct TlsStart {
    shared: Arc<tls::SharedCerts>,
    secret: tls::TicketSecret,
    /// Hand keys to the kernel after handshakes (`--ktls auto|require`).
    offload: bool,
    /// Whether the kernel has TLS (probed once at start).
    kernel: Result<(), String>,
}

impl TlsStart {
    fn for_core(&self) -> CoreTlsStart {
        CoreTlsStart {
            shared: self.shared.clone(),
            secret: self.secret,
            offload: self.offload,
        }
    }

    fn describe(&self) -> String {
        match (&self.kernel, self.offload) {
            (_, false) => ", TLS in user space (--ktls off)".into(),
            (Ok(()), true) => ", kernel TLS after handshakes".into(),
            (Err(why), true) => {
                format!(", TLS in user space: the kernel has no TLS ({why})")
            }
        }
    }
}

/// Reads and checks the certificates, decides on kernel TLS: every error
/// here stops the server before it listens.
fn start_tls(config: &Config) -> Result<Option<TlsStart>, ServerError> {
    let Some(tls) = &config.tls else {
        return Ok(None);
    };
    let source = tls::CertSource::read(&tls.pairs).map_err(ServerError::Tls)?;
    let kernel = match tls::kernel_has_tls() {
        Err(e) if tls.ktls == crate::config::Ktls::Require => {
            return Err(ServerError::Tls(tls::TlsError::KernelTlsMissing(e)))
        }
        probed => probed.map_err(|e| e.to_string()),
    };
    Ok(Some(TlsStart {
        shared: Arc::new(tls::SharedCerts::new(source, tls.pairs.clone())),
        secret: tls::TicketSecret::random(),
        offload: tls.ktls != crate::config::Ktls::Off,
        kernel,
    }))
}

/// What one core needs to build its own TLS configuration.
struct CoreTlsStart {
    shared: Arc<tls::SharedCerts>,
    secret: tls::TicketSecret,
    offload: bool,
}

/// One core's listening sockets.
struct Listeners {
    plain: Option<socket2::Socket>,
    tls: Option<(CoreTlsStart, socket2::Socket)>,
}

/// Which listener a connection came in on.
#[derive(Clone, Copy)]
enum Scheme {
    Http,
    Https,
}

/// One core: accept until shutdown, then drain. Each connection is its own
/// task; a panic in one is caught and ends only that connection.
/// Returns the core's final metrics.
async fn serve_core(
    index: usize,
    cpu: usize,
    config: Config,
    listeners: Listeners,
    signals: Signals,
    link: admin::CoreLink,
    ingest: Option<(Arc<ingest::SharedTokens>, Option<Arc<jobs::Jobs>>)>,
) -> Option<Snapshot> {
    // Watched from here until this function returns (see `Watchdog`).
    let heartbeat = signals.heartbeat(index);
    let root = fs::Root::open(&config.root, config.follow_symlinks)
        .map_err(|e| eprintln!("ringcast: cannot open the root directory: {e}"))
        .ok()?;
    let access_log = match &config.observe.access_log {
        Some(path) => Some(
            access_log::AccessLog::open(path)
                .map_err(|e| eprintln!("ringcast: cannot open the access log: {e}"))
                .ok()?,
        ),
        None => None,
    };
    let (tls, tls_socket) = match listeners.tls {
        Some((start, socket)) => {
            let tls = tls::CoreTls::new(start.shared, start.secret, start.offload)
                .map_err(|e| eprintln!("ringcast: cannot set up TLS: {e}"))
                .ok()?;
            (Some(tls), Some(socket))
        }
        None => (None, None),
    };
    let queues = Queues::new(tls.is_some());
    let ingest = config
        .ingest
        .clone()
        .zip(ingest)
        .map(|(settings, (tokens, jobs))| ingest::CoreIngest::new(settings, tokens, jobs, cpu));
    let core = Rc::new(Core {
        ingest,
        tls,
        queues,
        cpu,
        metrics: Metrics::new(config.observe.metrics),
        files: file_cache::FileCache::new(config.root.clone(), config.file_cache),
        direct: match config.io {
            Io::Direct(shape) => Some(direct::DirectReads::new(shape)),
            Io::Buffered => None,
        },
        config,
        root,
        clock: clock::DateCache::default(),
        connections: Rc::default(),
        drain: Drain::default(),
        access_log,
    });
    let answering = core.clone();
    // Kept, not detached: dropped when this core is done, which closes its
    // link, so the admin stops asking a core that is gone instead of
    // waiting for it (a scrape during a drain hung on it).
    let _answering = glommio::spawn_local(async move {
        admin::answer_snapshots(link, || answering.snapshot()).await;
    });
    if core.access_log.is_some() {
        let flushing = core.clone();
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(access_log::FLUSH_INTERVAL).await;
                if let Some(log) = &flushing.access_log {
                    log.flush();
                }
            }
        })
        .detach();
    }
    if core.tls.is_some() {
        let refreshing = core.clone();
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(CERT_REFRESH).await;
                if let Some(tls) = &refreshing.tls {
                    tls.refresh();
                }
            }
        })
        .detach();
    }
    // SAFETY: the sockets are bound and listening, and ownership moves here.
    let adopt = |socket: socket2::Socket| unsafe { TcpListener::from_raw_fd(socket.into_raw_fd()) };
    let plain = listeners.plain.map(adopt);
    let secure = tls_socket.map(adopt);
    let accepting = future::zip(
        accept_on(&core, plain.as_ref(), Scheme::Http),
        accept_on(&core, secure.as_ref(), Scheme::Https),
    );
    future::or(
        async {
            accepting.await;
        },
        signals.wait(&heartbeat),
    )
    .await;
    // Closing the listeners makes the kernel send new connections to nobody:
    // every core closes its own at about the same moment.
    drop(plain);
    drop(secure);
    core.drain.begin();
    let drained = async {
        while core.connections.open() > 0 {
            core.connections.below(1).await;
        }
        true
    };
    let timeout = async {
        glommio::timer::sleep(core.config.limits.drain_timeout).await;
        false
    };
    if !future::or(drained, timeout).await {
        eprintln!(
            "ringcast: drain timeout; closing {} connections",
            core.connections.open()
        );
    }
    if let Some(log) = &core.access_log {
        log.close().await;
    }
    Some(core.snapshot())
}

/// Accepts on `listener`, if there is one, for as long as the core runs.
async fn accept_on(core: &Rc<Core>, listener: Option<&TcpListener>, scheme: Scheme) {
    match listener {
        Some(listener) => accept_loop(core, listener, scheme).await,
        None => future::pending().await,
    }
}

/// Accepts connections for as long as the core runs, at most `--max-conns`
/// at once (counted across both listeners).
async fn accept_loop(core: &Rc<Core>, listener: &TcpListener, scheme: Scheme) {
    let limits = core.config.limits;
    let mut last_error_log: Option<std::time::Instant> = None;
    loop {
        core.connections.below(limits.max_conns).await;
        match listener.accept().await {
            Ok(mut stream) => {
                last_error_log = None;
                core.metrics.accepted();
                let _ = stream.set_nodelay(true);
                // glommio always sends with MSG_DONTWAIT; sendfile needs the
                // socket itself non-blocking so a full buffer is EAGAIN.
                let _ = nix::fcntl::fcntl(
                    stream.as_raw_fd(),
                    nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
                );
                let _ = stream.set_write_timeout(Some(limits.send_timeout));
                // Requests arrive through io_uring RECVs: no recv(2) per request.
                stream.set_ring_recv(true);
                let accepted_at = Instant::now();
                let slot = core.connections.register();
                match scheme {
                    Scheme::Http => {
                        let open = OpenGauge::new(core.clone(), "plain");
                        let serving = conn_task(core.clone(), async move {
                            let _slot = slot;
                            conn::serve(&open.core, Transport::plain(stream), None).await
                        });
                        glommio::spawn_local(serving).detach();
                    }
                    Scheme::Https => spawn_handshake(core, stream, slot, accepted_at),
                }
            }
            Err(e) => {
                core.metrics.error(ErrorKind::Accept);
                // EMFILE/ENFILE and friends: back off instead of spinning, and
                // say so once per episode rather than ten times a second.
                if last_error_log.is_none_or(|at| at.elapsed() >= ACCEPT_ERROR_LOG_INTERVAL) {
                    eprintln!("ringcast: accept failed: {e}; backing off {ACCEPT_BACKOFF:?} between retries");
                    last_error_log = Some(std::time::Instant::now());
                }
                glommio::timer::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// How often a core looks for certificates that SIGHUP reloaded.
const CERT_REFRESH: Duration = Duration::from_secs(1);

/// Runs one connection's future (which owns its `ConnectionSlot`), catching
/// a panic so it ends only that connection.
async fn conn_task(core: Rc<Core>, serve: impl std::future::Future<Output = ()> + 'static) {
    if AssertUnwindSafe(serve).catch_unwind().await.is_err() {
        core.metrics.error(ErrorKind::Panic);
        eprintln!("ringcast: a connection task panicked; connection dropped");
    }
}

/// A TLS connection: the handshake (and the kernel hand-off) in the core's
/// handshake task queue, then the same connection loop as plain HTTP back
/// in the serving queue. The handshake queue has a quarter of the serving
/// queue's shares, so a flood of handshakes (hundreds of µs of CPU each)
/// takes at most a fifth of a busy core from streams already flowing, while
/// an idle core gives handshakes all of it. The handshake and the first
/// request head share one deadline, `--header-timeout` from accept.
fn spawn_handshake(
    core: &Rc<Core>,
    stream: glommio::net::TcpStream,
    slot: lifecycle::ConnectionSlot,
    accepted_at: Instant,
) {
    let Some(tls) = &core.tls else { return };
    let (config, offload) = (tls.config(), tls.offload);
    let queues = core.queues;
    let deadline = accepted_at + core.config.limits.header_timeout;
    let mut open = OpenGauge::new(core.clone(), "tls");
    let handshake = conn_task(core.clone(), async move {
        let core = open.core.clone();
        let accepted = match Transport::accept_tls(stream, config, offload, deadline).await {
            Ok(accepted) => accepted,
            Err(error) => return core.metrics.handshake_failed(error.reason()),
        };
        core.metrics
            .handshake_done(accepted_at.elapsed(), accepted.resumed);
        match accepted.offload {
            Offload::Done => core.metrics.ktls(true),
            Offload::FellBack => core.metrics.ktls(false),
            Offload::NotTried => {}
        }
        open.became(accepted.transport.kind().label());
        // The slot moves on with the connection.
        let serving = conn_task(core.clone(), async move {
            let _slot = slot;
            conn::serve(&open.core, accepted.transport, Some(deadline)).await
        });
        spawn_into(serving, queues.serving, "serve a TLS connection");
    });
    let queue = queues.handshakes.unwrap_or(queues.serving);
    spawn_into(handshake, queue, "start a handshake");
}

/// Spawns a detached task into `queue`; says so if the queue is gone.
fn spawn_into(
    task: impl std::future::Future<Output = ()> + 'static,
    queue: glommio::TaskQueueHandle,
    what: &str,
) {
    match glommio::spawn_local_into(task, queue) {
        Ok(task) => {
            task.detach();
        }
        Err(e) => eprintln!("ringcast: cannot {what}: {e}"),
    }
}

/// The core's task queues: connections are served in `serving`; TLS
/// handshakes run in `handshakes`, with fewer shares. A core without
/// `--tls-listen` has the one queue, as before.
#[derive(Clone, Copy)]
pub struct Queues {
    serving: glommio::TaskQueueHandle,
    handshakes: Option<glommio::TaskQueueHandle>,
}

/// Shares of the handshake queue, against the serving queue's default 1000.
const HANDSHAKE_SHARES: usize = 250;

impl Queues {
    /// Called on the core's executor: its current queue serves.
    fn new(tls: bool) -> Queues {
        let executor = glommio::executor();
        Queues {
            serving: executor.current_task_queue(),
            handshakes: tls.then(|| {
                executor.create_task_queue(
                    glommio::Shares::Static(HANDSHAKE_SHARES),
                    glommio::Latency::NotImportant,
                    "tls-handshakes",
                )
            }),
        }
    }
}

/// Counts a connection in the open-by-transport gauge while it lives.
struct OpenGauge {
    core: Rc<Core>,
    kind: &'static str,
}

impl OpenGauge {
    fn new(core: Rc<Core>, kind: &'static str) -> Self {
        core.metrics.transport_changed(None, Some(kind));
        OpenGauge { core, kind }
    }

    fn became(&mut self, kind: &'static str) {
        self.core
            .metrics
            .transport_changed(Some(self.kind), Some(kind));
        self.kind = kind;
    }
}

impl Drop for OpenGauge {
    fn drop(&mut self) {
        self.core.metrics.transport_changed(Some(self.kind), None);
    }
}

/// Raises the soft open-files limit to the hard one: each connection and each
/// response in flight holds a descriptor.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}
