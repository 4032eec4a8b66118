//! Command-line flags, parsed once into the [`Config`] every core gets a copy of.

use crate::http::policy::{CacheRule, Cors, Policy};
use crate::http::upload::{Ingest as IngestPolicy, PublishPattern};
use clap::{CommandFactory, FromArgMatches, Parser};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything a core needs to know about how to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The directory served; absolute, so cores do not depend on the cwd.
    pub root: PathBuf,
    /// Where every core's plain-HTTP listener binds (port 0 picks one port
    /// for all); `None` with `--listen off` (HTTPS only).
    pub listen: Option<SocketAddr>,
    /// HTTPS: where, with which certificates, and whether keys go to the kernel.
    pub tls: Option<Tls>,
    /// The CPUs to run one pinned executor on, in ascending order.
    pub cpus: Vec<usize>,
    /// Serve symlinks that lead outside the root.
    pub follow_symlinks: bool,
    /// Keep hot files open per core (inotify keeps them fresh).
    pub file_cache: bool,
    /// Listen backlog per core's socket.
    pub backlog: u32,
    /// Limits and timeouts against slow, stuck or hostile clients.
    pub limits: Limits,
    /// Where latency histograms and counters go.
    pub observe: Observe,
    /// CORS, Cache-Control rules and index pages, as the HTTP core applies them.
    pub policy: Policy,
    /// Per-response bandwidth limit.
    pub pacing: Option<Pacing>,
    /// How file bytes reach the socket: through the page cache or O_DIRECT.
    pub io: Io,
    /// Uploads and the jobs they start, with `--ingest` (the prefixes and
    /// `--max-upload` are in `policy.ingest`).
    pub ingest: Option<IngestConfig>,
}

/// The I/O side of `--ingest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestConfig {
    /// `--ingest-tokens`: read at start and on SIGHUP.
    pub tokens_file: PathBuf,
    /// An upload whose body makes no progress for this long is dropped.
    pub upload_timeout: Duration,
    /// fsync the file and its directory before answering.
    pub fsync: bool,
    /// Refuse uploads (507) that would leave less free space than this.
    pub min_free: u64,
    /// `--on-publish` rules, first match wins.
    pub on_publish: Vec<PublishRule>,
    pub jobs: Jobs,
}

/// `--on-publish PATTERN=COMMAND`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishRule {
    pub pattern: PublishPattern,
    /// Absolute, checked executable at start.
    pub command: PathBuf,
}

/// How many jobs run and wait, and for how long one may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Jobs {
    pub running: usize,
    pub queued: usize,
    pub timeout: Duration,
}

/// `--tls-listen`, `--tls-cert`/`--tls-key` and `--ktls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    /// Where every core's TLS listener binds (SO_REUSEPORT, like `listen`).
    pub listen: SocketAddr,
    /// Certificate chains and their keys; the first is the default, SNI
    /// picks the others by the names their certificates carry.
    pub pairs: Vec<CertPair>,
    pub ktls: Ktls,
}

/// One `--tls-cert FILE --tls-key FILE` pair (PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `--ktls`: whether record encryption moves into the kernel after the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Ktls {
    /// Where the kernel offers TLS; else encrypt in user space (counted as a fallback).
    Auto,
    /// Always encrypt in user space.
    Off,
    /// Refuse to start where the kernel cannot.
    Require,
}

/// `--io`: where file bytes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Io {
    /// Through the page cache: resident bytes go file -> socket by
    /// `sendfile`, cold ones are read by io_uring without blocking the core.
    Buffered,
    /// O_DIRECT reads through io_uring into aligned per-core buffers, with
    /// read-ahead: for libraries much larger than RAM, where the page cache
    /// only thrashes.
    Direct(DirectIo),
}

/// The shape of `--io direct` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectIo {
    /// Bytes per read (a power of two, at least 4 KiB).
    pub read_size: usize,
    /// Reads kept in flight ahead of the socket, per response.
    pub read_ahead: usize,
    /// Read buffers one core may hold at once, across all its responses:
    /// beyond it, responses get less read-ahead (never less than one read).
    pub buffers_per_core: usize,
}

/// The `--io` flag's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum IoFlag {
    Buffered,
    Direct,
}

/// `--limit-rate` with `--limit-rate-after`, as nginx's `limit_rate` and
/// `limit_rate_after`: each response's first `after` bytes go at full speed,
/// the rest at `bytes_per_sec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    pub bytes_per_sec: u64,
    pub after: u64,
}

/// Metrics, their outlets, and the access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observe {
    /// Record metrics at all (`--no-metrics` turns it off to measure the cost).
    pub metrics: bool,
    /// The admin listener for `/metrics` and `/stats`; never the public one.
    pub admin: Option<SocketAddr>,
    /// Print a one-line summary on stderr at this interval.
    pub stats_interval: Option<Duration>,
    /// Write an HdrHistogram interval log here.
    pub latency_log: Option<PathBuf>,
    /// Write a Combined Log Format access log here.
    pub access_log: Option<PathBuf>,
}

/// How long and how much one client may take, per connection or per core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A request head must arrive whole within this time of its first byte.
    pub header_timeout: Duration,
    /// An idle keep-alive connection (no request started) is closed after this.
    pub idle_timeout: Duration,
    /// A connection whose socket accepts no bytes for this long is closed.
    pub send_timeout: Duration,
    /// Connections per core; beyond it the core stops accepting until one closes.
    pub max_conns: usize,
    /// Requests served on one connection before it is closed (0: no limit).
    pub max_requests_per_conn: u64,
    /// On SIGTERM/SIGINT, how long in-flight responses may take to finish.
    pub drain_timeout: Duration,
}

/// ringcast: a thread-per-core HTTP/1.1 media server (GET and HEAD of files,
/// byte ranges, validators) on glommio and io_uring.
#[derive(Debug, Parser)]
#[command(name = "ringcast", version, about, long_about = None, args_override_self = true)]
struct Flags {
    /// Directory to serve. Nothing outside it is ever sent.
    #[arg(long, value_name = "DIR", default_value = ".", value_parser = parse_root)]
    root: PathBuf,

    /// Address and port every core listens on for plain HTTP (SO_REUSEPORT).
    /// Port 0 picks a free port, shared by all cores and printed at startup.
    /// `off`: no plain listener (HTTPS only, with --tls-listen).
    #[arg(long, value_name = "ADDR:PORT|off", default_value = "127.0.0.1:8080", value_parser = parse_listen)]
    listen: Listen,

    /// Address and port every core listens on for HTTPS, beside --listen.
    /// Needs --tls-cert and --tls-key.
    #[arg(long, value_name = "ADDR:PORT", requires = "tls_cert", value_parser = parse_address)]
    tls_listen: Option<SocketAddr>,

    /// A PEM certificate chain (RSA or ECDSA), paired in order with a
    /// --tls-key; repeatable. The first pair is the default; SNI picks the
    /// others by their certificates' names. SIGHUP re-reads them all.
    #[arg(long, value_name = "FILE", requires = "tls_listen")]
    tls_cert: Vec<PathBuf>,

    /// The PEM private key of the --tls-cert at the same position.
    #[arg(long, value_name = "FILE", requires = "tls_listen")]
    tls_key: Vec<PathBuf>,

    /// Kernel TLS after the handshake: `auto` where the kernel has it (else
    /// user space, counted as a fallback), `off`, or `require` (refuse to
    /// start without it).
    #[arg(long, value_enum, default_value = "auto")]
    ktls: Ktls,

    /// CPUs to serve on, one pinned executor each: a list like `0,2-3`.
    /// Default: every CPU this process may run on.
    #[arg(long, value_name = "LIST", value_parser = parse_cpu_list)]
    cpus: Option<CpuList>,

    /// Serve symlinks whose targets lie outside the root (refused by default).
    #[arg(long)]
    follow_symlinks: bool,

    /// Open every file anew per request instead of keeping hot files open
    /// (by default each core keeps up to 1024 open, refreshed by inotify).
    #[arg(long)]
    no_file_cache: bool,

    /// Pending-connection backlog of each core's listening socket.
    #[arg(long, value_name = "N", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    backlog: u32,

    /// A request head must arrive whole within this time of its first byte,
    /// or the connection gets 408 and is closed. Trickling does not extend it.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    header_timeout: Duration,

    /// Close a keep-alive connection that starts no request for this long.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    idle_timeout: Duration,

    /// Close a connection whose socket accepts no bytes for this long (a
    /// stalled player). Slow but moving downloads are never cut.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    send_timeout: Duration,

    /// Most open connections per core; beyond it the core stops accepting (the
    /// kernel backlog holds new ones) until a connection closes.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    max_conns: u64,

    /// Close a connection after this many requests (0: no limit).
    #[arg(long, value_name = "N", default_value_t = 0)]
    max_requests_per_conn: u64,

    /// On SIGTERM or SIGINT, stop accepting at once and give in-flight
    /// responses this long to finish before exiting. A second signal exits at once.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    drain_timeout: Duration,

    /// Serve /metrics (Prometheus) and /stats (JSON) on this address. Off by
    /// default; never served on the public listener.
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_address)]
    admin: Option<SocketAddr>,

    /// Print a one-line summary (req/s, MB/s, TTFB percentiles, open
    /// connections) on stderr every SECS seconds.
    #[arg(long, value_name = "SECS", value_parser = parse_duration)]
    stats_interval: Option<Duration>,

    /// Append an HdrHistogram interval log of TTFB, request duration, disk
    /// wait and socket time (one interval per --stats-interval, else per second).
    #[arg(long, value_name = "FILE")]
    latency_log: Option<PathBuf>,

    /// Append a Combined Log Format access log, plus the request time in
    /// microseconds. Buffered per core and written without blocking.
    #[arg(long, value_name = "FILE")]
    access_log: Option<PathBuf>,

    /// Record no metrics (to measure what recording costs).
    #[arg(long)]
    no_metrics: bool,

    /// Let web players on other origins read responses: `*`, or a
    /// comma-separated list of origins (https://player.example.com). Answers
    /// CORS preflights (OPTIONS) for GET/HEAD with Range and If-Range.
    #[arg(long, value_name = "ORIGIN|*", value_parser = Cors::parse)]
    cors: Option<Cors>,

    /// A Cache-Control rule, PATTERN=VALUE, where PATTERN is `.ext`, `/prefix`
    /// or `*`; repeatable, the first match wins. Sent alike on 200, 206 and 304.
    /// Example: --cache-control '.m3u8=no-cache' --cache-control '.m4s=max-age=31536000, immutable'
    #[arg(long, value_name = "PATTERN=VALUE", value_parser = CacheRule::parse)]
    cache_control: Vec<CacheRule>,

    /// Answer directories with a page of <video>/<audio> players for their
    /// media files (off: directories are 403).
    #[arg(long)]
    index: bool,

    /// Pace each response to this many bytes per second (after
    /// --limit-rate-after bytes at full speed), like nginx's limit_rate.
    #[arg(long, value_name = "BYTES_PER_SEC", value_parser = clap::value_parser!(u64).range(1..))]
    limit_rate: Option<u64>,

    /// Bytes of each response sent at full speed before --limit-rate applies.
    #[arg(long, value_name = "BYTES", default_value_t = 0)]
    limit_rate_after: u64,

    /// How files are read. `buffered`: through the page cache, resident
    /// bytes sent with sendfile (best when the hot set fits in RAM).
    /// `direct`: O_DIRECT reads with read-ahead, bypassing the page cache
    /// (for libraries much larger than RAM, mostly long sequential streams).
    #[arg(long, value_enum, default_value = "buffered")]
    io: IoFlag,

    /// With --io direct: bytes per disk read (a power of two, 4096..=16777216).
    #[arg(long, value_name = "BYTES", default_value_t = 512 * 1024, value_parser = parse_read_size)]
    direct_read_size: usize,

    /// With --io direct: reads kept in flight ahead of each response's socket.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    direct_read_ahead: u16,

    /// With --io direct: memory for read buffers per core, shared by its
    /// responses; when it runs short, responses read with less read-ahead.
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(4096..))]
    direct_memory: u64,

    /// Allow authenticated PUT and DELETE beneath this URL prefix (e.g.
    /// /live/); repeatable. Bodies are written to a hidden temporary file
    /// and renamed over the target when complete. Needs --ingest-tokens.
    #[arg(long, value_name = "PREFIX", requires = "ingest_tokens")]
    ingest: Vec<String>,

    /// File of upload secrets, one per line; a write needs
    /// `Authorization: Bearer SECRET`. Re-read on SIGHUP.
    #[arg(long, value_name = "FILE", requires = "ingest")]
    ingest_tokens: Option<PathBuf>,

    /// Largest upload body in bytes: a larger Content-Length gets 413 before
    /// anything is written; a longer chunked body is cut off unpublished.
    #[arg(long, value_name = "BYTES", default_value_t = 4 << 30)]
    max_upload: u64,

    /// Drop an upload whose body makes no progress for this long (408);
    /// nothing is published.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    upload_timeout: Duration,

    /// Make each publish durable (fsync of the file and its directory)
    /// before the response.
    #[arg(long)]
    ingest_fsync: bool,

    /// Refuse uploads (507) that would leave less than this many bytes free
    /// on the ingest filesystem (0: only a full disk refuses).
    #[arg(long, value_name = "BYTES", default_value_t = 0)]
    ingest_min_free: u64,

    /// After a PUT publishes a file matching PATTERN (`*` within a path
    /// segment, `**` across), run COMMAND with the file's absolute path as
    /// its one argument, from a job queue; repeatable, the first match wins.
    /// Example: --on-publish '/uploads/*.mp4=tools/package-hls.sh'
    #[arg(long, value_name = "PATTERN=COMMAND", requires = "ingest")]
    on_publish: Vec<String>,

    /// Jobs run at once.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    jobs: u32,

    /// Jobs that may wait for a free runner; a matching upload beyond that
    /// gets 503 with Retry-After and publishes nothing.
    #[arg(long, value_name = "N", default_value_t = 16)]
    job_queue: u32,

    /// Kill a job (and its process group) that runs longer than this.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    job_timeout: Duration,
}

impl Config {
    /// Parses the process arguments. Help and version print and exit 0; any
    /// bad value prints one line on stderr and exits with code 2.
    pub fn from_args() -> Config {
        Self::try_from_iter(std::env::args_os()).unwrap_or_else(|error| {
            use clap::error::ErrorKind;
            if matches!(
                error.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
            ) {
                error.exit();
            }
            eprintln!("ringcast: {}", one_line(&error.render().to_string()));
            std::process::exit(2);
        })
    }

    /// Parses an argument list (the first item is the program name).
    pub fn try_from_iter<I, T>(args: I) -> Result<Config, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let matches = Flags::command().try_get_matches_from(args)?;
        let flags = Flags::from_arg_matches(&matches)?;
        check_direct_flags(&flags, &matches)?;
        if flags.limit_rate.is_none()
            && matches.value_source("limit_rate_after")
                == Some(clap::parser::ValueSource::CommandLine)
        {
            return Err(Flags::command().error(
                clap::error::ErrorKind::MissingRequiredArgument,
                format!(
                    "--limit-rate-after {} needs --limit-rate BYTES_PER_SEC (the rate it starts)",
                    flags.limit_rate_after
                ),
            ));
        }
        let tls = tls_from(&flags)?;
        check_admin_clash(&flags)?;
        let listen = match flags.listen {
            Listen::Off if tls.is_none() => {
                return Err(Flags::command().error(
                    clap::error::ErrorKind::MissingRequiredArgument,
                    "--listen off needs --tls-listen: nothing would be served",
                ))
            }
            Listen::Off => None,
            Listen::On(addr) => Some(addr),
        };
        let (ingest_policy, ingest) = ingest_from(&flags)?;
        let cpus = match flags.cpus {
            Some(CpuList(cpus)) => cpus,
            None => online_cpus(),
        };
        Ok(Config {
            root: flags.root,
            listen,
            tls,
            cpus,
            follow_symlinks: flags.follow_symlinks,
            file_cache: !flags.no_file_cache,
            backlog: flags.backlog,
            limits: Limits {
                header_timeout: flags.header_timeout,
                idle_timeout: flags.idle_timeout,
                send_timeout: flags.send_timeout,
                max_conns: usize::try_from(flags.max_conns).unwrap_or(usize::MAX),
                max_requests_per_conn: flags.max_requests_per_conn,
                drain_timeout: flags.drain_timeout,
            },
            observe: Observe {
                metrics: !flags.no_metrics,
                admin: flags.admin,
                stats_interval: flags.stats_interval,
                latency_log: flags.latency_log,
                access_log: flags.access_log,
            },
            policy: Policy {
                cors: flags.cors,
                cache_rules: flags.cache_control,
                index: flags.index,
                ingest: ingest_policy,
            },
            pacing: flags.limit_rate.map(|bytes_per_sec| Pacing {
                bytes_per_sec,
                after: flags.limit_rate_after,
            }),
            io: match flags.io {
                IoFlag::Buffered => Io::Buffered,
                IoFlag::Direct => Io::Direct(DirectIo {
                    read_size: flags.direct_read_size,
                    read_ahead: usize::from(flags.direct_read_ahead),
                    buffers_per_core: usize::try_from(
                        flags.direct_memory / flags.direct_read_size as u64,
                    )
                    .unwrap_or(usize::MAX)
                    .max(1),
                }),
            },
            ingest,
        })
    }
}

/// The `--ingest` flags, checked: prefixes are paths GET would serve, and
/// every `--on-publish` pattern lies beneath one and names a program that
/// can run.
fn ingest_from(flags: &Flags) -> Result<(Option<IngestPolicy>, Option<IngestConfig>), clap::Error> {
    let Some(tokens_file) = &flags.ingest_tokens else {
        return Ok((None, None));
    };
    let invalid =
        |message: String| Flags::command().error(clap::error::ErrorKind::ValueValidation, message);
    let policy = IngestPolicy::new(&flags.ingest, flags.max_upload)
        .map_err(|e| invalid(format!("--ingest {e}")))?;
    let on_publish = flags
        .on_publish
        .iter()
        .map(|rule| parse_publish_rule(rule, &policy))
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(format!("--on-publish {e}")))?;
    let config = IngestConfig {
        tokens_file: tokens_file.clone(),
        upload_timeout: flags.upload_timeout,
        fsync: flags.ingest_fsync,
        min_free: flags.ingest_min_free,
        on_publish,
        jobs: Jobs {
            running: flags.jobs as usize,
            queued: flags.job_queue as usize,
            timeout: flags.job_timeout,
        },
    };
    Ok((Some(policy), Some(config)))
}

/// `PATTERN=COMMAND`, the command made absolute (a bare name is looked up
/// in PATH) and checked to be an executable file now rather than at the
/// first upload.
fn parse_publish_rule(value: &str, ingest: &IngestPolicy) -> Result<PublishRule, String> {
    let (pattern, command) = value.split_once('=').ok_or_else(|| {
        format!("{value:?}: expected PATTERN=COMMAND, like '/uploads/*.mp4=tools/package-hls.sh'")
    })?;
    let pattern = PublishPattern::parse(pattern.trim())?;
    if !pattern.is_within(ingest) {
        let prefixes: Vec<String> = ingest.prefixes().collect();
        return Err(format!(
            "{value:?}: the pattern must lie beneath an --ingest prefix ({})",
            prefixes.join(", ")
        ));
    }
    let command = resolve_command(command.trim()).map_err(|e| format!("{value:?}: {e}"))?;
    Ok(PublishRule { pattern, command })
}

fn resolve_command(command: &str) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    if command.is_empty() {
        return Err("no command".into());
    }
    let candidates: Vec<PathBuf> = if command.contains('/') {
        vec![PathBuf::from(command)]
    } else {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|dir| dir.join(command))
            .collect()
    };
    for candidate in &candidates {
        let Ok(meta) = std::fs::metadata(candidate) else {
            continue;
        };
        if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
            return candidate
                .canonicalize()
                .map_err(|e| format!("{command}: {e}"));
        }
        return Err(format!("{command} is not an executable file"));
    }
    Err(format!("{command}: no such program"))
}

/// clap's message as one line: what is wrong and what is accepted (the
/// missing flag, the possible values), without the usage and help tip.
fn one_line(text: &str) -> String {
    let message: Vec<&str> = text
        .lines()
        .map(str::trim)
        .take_while(|line| !line.starts_with("Usage:") && !line.starts_with("For more information"))
        .filter(|line| !line.is_empty() && !line.starts_with("tip:"))
        .collect();
    let joined = message.join(" ");
    let joined = joined.trim_start_matches("error: ");
    if joined.is_empty() {
        "invalid arguments".into()
    } else {
        joined.into()
    }
}

/// `--listen`'s value.
#[derive(Debug, Clone, Copy)]
enum Listen {
    On(SocketAddr),
    Off,
}

fn parse_listen(value: &str) -> Result<Listen, String> {
    if value == "off" {
        return Ok(Listen::Off);
    }
    parse_address(value).map(Listen::On)
}

/// `ADDR:PORT`, `[V6]:PORT`, `HOST:PORT` (the first address the name
/// resolves to) or `:PORT` (every IPv4 address).
fn parse_address(value: &str) -> Result<SocketAddr, String> {
    let expected =
        "expected ADDR:PORT, HOST:PORT or :PORT, e.g. 0.0.0.0:8080, [::]:8080, localhost:8080";
    if let Ok(addr) = value.parse() {
        return Ok(addr);
    }
    if let Some(port) = value.strip_prefix(':') {
        let port: u16 = port.parse().map_err(|_| format!("{value:?}: {expected}"))?;
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    if value.parse::<u16>().is_ok() {
        return Err(format!(
            "{value:?} is a bare port: write :{value} ({expected})"
        ));
    }
    if !value.contains(':') {
        return Err(format!("{value:?} has no port: {expected}"));
    }
    use std::net::ToSocketAddrs;
    match value.to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| format!("{value:?} resolves to no address: {expected}")),
        Err(e) => Err(format!("{value:?}: {e}; {expected}")),
    }
}

/// The TLS part of the flags, checked: certificates and keys come in pairs.
fn tls_from(flags: &Flags) -> Result<Option<Tls>, clap::Error> {
    let Some(listen) = flags.tls_listen else {
        return Ok(None);
    };
    if flags.tls_cert.len() != flags.tls_key.len() {
        return Err(Flags::command().error(
            clap::error::ErrorKind::WrongNumberOfValues,
            format!(
                "--tls-cert and --tls-key come in pairs: {} certificates, {} keys",
                flags.tls_cert.len(),
                flags.tls_key.len()
            ),
        ));
    }
    if flags.listen_addr() == Some(listen) {
        return Err(Flags::command().error(
            clap::error::ErrorKind::ArgumentConflict,
            format!("--tls-listen {listen} is also --listen's address"),
        ));
    }
    let pairs = flags
        .tls_cert
        .iter()
        .zip(&flags.tls_key)
        .map(|(cert, key)| CertPair {
            cert: cert.clone(),
            key: key.clone(),
        })
        .collect();
    Ok(Some(Tls {
        listen,
        pairs,
        ktls: flags.ktls,
    }))
}

/// `--direct-*` flags shape `--io direct` reads: given without it, they
/// would silently do nothing.
fn check_direct_flags(flags: &Flags, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
    if flags.io == IoFlag::Direct {
        return Ok(());
    }
    for (id, flag) in [
        ("direct_read_size", "--direct-read-size"),
        ("direct_read_ahead", "--direct-read-ahead"),
        ("direct_memory", "--direct-memory"),
    ] {
        if matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine) {
            return Err(Flags::command().error(
                clap::error::ErrorKind::MissingRequiredArgument,
                format!("{flag} applies only with --io direct"),
            ));
        }
    }
    Ok(())
}

/// `--admin` on the public listener's address would serve neither well.
fn check_admin_clash(flags: &Flags) -> Result<(), clap::Error> {
    let Some(admin) = flags.admin.filter(|a| a.port() != 0) else {
        return Ok(());
    };
    let clash = |flag: &str| {
        Flags::command().error(
            clap::error::ErrorKind::ArgumentConflict,
            format!("--admin {admin} clashes with {flag}: the admin listener needs an address of its own"),
        )
    };
    if flags.listen_addr() == Some(admin) {
        return Err(clash("--listen"));
    }
    if flags.tls_listen == Some(admin) {
        return Err(clash("--tls-listen"));
    }
    Ok(())
}

impl Flags {
    fn listen_addr(&self) -> Option<SocketAddr> {
        match self.listen {
            Listen::On(addr) if addr.port() != 0 => Some(addr),
            _ => None,
        }
    }
}

/// The CPUs this process may run on.
pub fn online_cpus() -> Vec<usize> {
    let mut cpus: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|core| core.id)
        .collect();
    if cpus.is_empty() {
        cpus.push(0);
    }
    cpus.sort_unstable();
    cpus
}

fn parse_root(value: &str) -> Result<PathBuf, String> {
    let path = std::fs::canonicalize(value).map_err(|e| format!("cannot use {value:?}: {e}"))?;
    if !path.is_dir() {
        return Err(format!("{value:?} is not a directory"));
    }
    Ok(path)
}

/// A read size for `--io direct`: a power of two between 4 KiB and 16 MiB,
/// so every read is aligned for O_DIRECT.
fn parse_read_size(value: &str) -> Result<usize, String> {
    let size: usize = value
        .trim()
        .parse()
        .map_err(|_| format!("{value:?} is not a number of bytes"))?;
    if !size.is_power_of_two() || !(4096..=16 << 20).contains(&size) {
        return Err(format!(
            "{value:?} must be a power of two from 4096 to 16777216"
        ));
    }
    Ok(size)
}

/// `500ms`, `2s`, `1m`, `1h 30m` (humantime), or a bare number of seconds.
/// Zero is refused: every timeout must be able to fire.
fn parse_duration(value: &str) -> Result<Duration, String> {
    let duration = match value.trim().parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(value).map_err(|e| format!("{value:?}: {e}"))?,
    };
    if duration.is_zero() {
        return Err(format!("{value:?} must be longer than zero"));
    }
    Ok(duration)
}

/// A parsed `--cpus` value (a newtype so clap takes it as one value).
#[derive(Debug, Clone)]
struct CpuList(Vec<usize>);

/// Parses `0,2-3` into `[0, 2, 3]`, checking each CPU is one we may run on.
fn parse_cpu_list(value: &str) -> Result<CpuList, String> {
    parse_cpu_set(value).map(CpuList)
}

/// `0,2-3` -> `[0, 2, 3]`: sorted, no duplicates, each a CPU this process may
/// run on. Shared with the load generator's `--cpus`.
pub fn parse_cpu_set(value: &str) -> Result<Vec<usize>, String> {
    let cpus = expand_cpu_list(value)?;
    let online = online_cpus();
    if let Some(cpu) = cpus.iter().find(|cpu| !online.contains(cpu)) {
        return Err(format!(
            "CPU {cpu} is not available (available: {online:?})"
        ));
    }
    Ok(cpus)
}

/// The syntax half of [`parse_cpu_list`]: ranges and singles, no duplicates.
fn expand_cpu_list(value: &str) -> Result<Vec<usize>, String> {
    /// More CPUs than any machine we would run on; bounds `0-999999999`.
    const MAX_CPU: usize = 4096;
    let number = |s: &str| -> Result<usize, String> {
        match s.trim().parse::<usize>() {
            Ok(n) if n < MAX_CPU => Ok(n),
            _ => Err(format!("{s:?} is not a CPU number")),
        }
    };
    let mut cpus = Vec::new();
    for item in value.split(',') {
        let (first, last) = match item.split_once('-') {
            Some((a, b)) => (number(a)?, number(b)?),
            None => (number(item)?, number(item)?),
        };
        if first > last {
            return Err(format!("{item:?} is a backwards range"));
        }
        cpus.extend(first..=last);
    }
    cpus.sort_unstable();
    let before = cpus.len();
    cpus.dedup();
    if cpus.len() != before {
        return Err(format!("{value:?} lists a CPU twice"));
    }
    Ok(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_serve_the_current_directory_on_8080() {
        let config = Config::try_from_iter(["ringcast"]).unwrap();
        assert_eq!(
            config.root,
            std::env::current_dir().unwrap().canonicalize().unwrap()
        );
        assert_eq!(config.listen, Some("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(config.tls, None);
        assert!(!config.cpus.is_empty());
        assert!(!config.follow_symlinks);
    }

    #[test]
    fn tls_flags_pair_certificates_with_keys_in_order() {
        let config = Config::try_from_iter([
            "ringcast",
            "--listen",
            "off",
            "--tls-listen",
            "127.0.0.1:8443",
            "--tls-cert",
            "a.pem",
            "--tls-key",
            "a.key",
            "--tls-cert",
            "b.pem",
            "--tls-key",
            "b.key",
            "--ktls",
            "off",
        ])
        .unwrap();
        assert_eq!(config.listen, None);
        let tls = config.tls.unwrap();
        assert_eq!(tls.listen, "127.0.0.1:8443".parse().unwrap());
        assert_eq!(tls.ktls, Ktls::Off);
        assert_eq!(tls.pairs.len(), 2);
        assert_eq!(tls.pairs[1].cert, PathBuf::from("b.pem"));
        assert_eq!(tls.pairs[1].key, PathBuf::from("b.key"));
    }

    #[test]
    fn tls_flags_that_cannot_work_are_errors() {
        let cert = ["--tls-cert", "a.pem", "--tls-key", "a.key"];
        let with = |extra: &[&'static str]| {
            let mut args = vec!["ringcast"];
            args.extend_from_slice(extra);
            Config::try_from_iter(args)
        };
        assert!(with(&["--listen", "off"]).is_err(), "nothing to serve");
        assert!(
            with(&["--tls-listen", "127.0.0.1:8443"]).is_err(),
            "no certificate"
        );
        assert!(with(&cert).is_err(), "certificates without --tls-listen");
        let mut unpaired = vec!["--tls-listen", "127.0.0.1:8443"];
        unpaired.extend_from_slice(&cert);
        unpaired.extend_from_slice(&["--tls-cert", "b.pem"]);
        assert!(with(&unpaired).is_err(), "a certificate without a key");
        let mut same = vec![
            "--listen",
            "127.0.0.1:8443",
            "--tls-listen",
            "127.0.0.1:8443",
        ];
        same.extend_from_slice(&cert);
        assert!(with(&same).is_err(), "one address for both");
        let mut bad = vec!["--tls-listen", "127.0.0.1:8443", "--ktls", "maybe"];
        bad.extend_from_slice(&cert);
        assert!(with(&bad).is_err());
    }

    #[test]
    fn cpus_flag_reaches_the_config() {
        let config = Config::try_from_iter(["ringcast", "--cpus", "0"]).unwrap();
        assert_eq!(config.cpus, vec![0]);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        for bad in ["", "0", "0s", "-1s", "2 parsecs", "abc"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn limits_reach_the_config() {
        let config = Config::try_from_iter([
            "ringcast",
            "--header-timeout",
            "2s",
            "--idle-timeout",
            "3s",
            "--send-timeout",
            "3s",
            "--max-conns",
            "4000",
            "--max-requests-per-conn",
            "7",
            "--drain-timeout",
            "1500ms",
        ])
        .unwrap();
        assert_eq!(
            config.limits,
            Limits {
                header_timeout: Duration::from_secs(2),
                idle_timeout: Duration::from_secs(3),
                send_timeout: Duration::from_secs(3),
                max_conns: 4000,
                max_requests_per_conn: 7,
                drain_timeout: Duration::from_millis(1500),
            }
        );
    }

    #[test]
    fn io_modes() {
        let config = Config::try_from_iter(["ringcast"]).unwrap();
        assert_eq!(config.io, Io::Buffered);
        let config = Config::try_from_iter([
            "ringcast",
            "--io",
            "direct",
            "--direct-read-size",
            "262144",
            "--direct-read-ahead",
            "8",
            "--direct-memory",
            "16777216",
        ])
        .unwrap();
        assert_eq!(
            config.io,
            Io::Direct(DirectIo {
                read_size: 256 * 1024,
                read_ahead: 8,
                buffers_per_core: 64,
            })
        );
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(expand_cpu_list("0"), Ok(vec![0]));
        assert_eq!(expand_cpu_list("0,2-3"), Ok(vec![0, 2, 3]));
        assert_eq!(expand_cpu_list("3,1"), Ok(vec![1, 3]));
        for bad in [
            "",
            "a",
            "1-",
            "-1",
            "3-1",
            "0,0",
            "0-2,1",
            "99999999999999999999",
            "5000",
        ] {
            assert!(expand_cpu_list(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bad_values_are_errors_not_panics() {
        for args in [
            &["ringcast", "--listen", "nonsense"][..],
            &["ringcast", "--root", "/definitely/not/here"],
            &["ringcast", "--root", "/etc/hostname"],
            &["ringcast", "--cpus", "100000"],
            &["ringcast", "--backlog", "0"],
            &["ringcast", "--bogus"],
            &["ringcast", "--cpus", "0-"],
            &["ringcast", "--header-timeout", "0s"],
            &["ringcast", "--max-conns", "0"],
            &["ringcast", "--cors", "example.com"],
            &["ringcast", "--cache-control", "m3u8"],
            &["ringcast", "--limit-rate", "0"],
            &["ringcast", "--limit-rate-after", "100"],
            &["ringcast", "--io", "mmap"],
            &["ringcast", "--io", "direct", "--direct-read-size", "3000"],
            &["ringcast", "--io", "direct", "--direct-read-size", "2048"],
            &["ringcast", "--io", "direct", "--direct-read-ahead", "0"],
        ] {
            assert!(Config::try_from_iter(args).is_err(), "{args:?}");
        }
    }
}
