//! Flags, and the parsers for the units they take: sizes (`64KiB`, `2M`),
//! durations (`10s`, `500ms`, `2m`), bitrates (`5M`, `800k`, `5Mbit`), CPU
//! lists (`0,2-3`) and the target URL.

use crate::tls::{parse_tls_version, TlsOptions, TlsVersion};
use clap::Parser;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

/// A media-aware HTTP/1.1 load generator with honest latency, over plain
/// TCP (http://) or TLS (https://, rustls; the server's certificate is always
/// verified, against the system's CAs and any --cacert).
///
/// Closed loop by default: each connection sends its next request as soon as
/// the previous response is complete. With --rate, open loop: requests follow
/// a fixed schedule and latency is measured from each request's scheduled
/// time, so a stalled server shows up in the percentiles (coordinated
/// omission corrected, as wrk2 does). With --new-conn every request opens
/// its own connection, so handshakes per second (full, or resumed with
/// --resume) can be measured.
#[derive(Parser, Debug, Clone)]
#[command(name = "loadgen", version)]
pub struct Args {
    /// Target, http://HOST[:PORT]/PATH or https://HOST[:PORT]/PATH (HTTP/1.1;
    /// ALPN offers http/1.1).
    #[arg(value_parser = parse_url)]
    pub url: Url,
    /// Active connections, spread evenly over the --cpus load threads.
    #[arg(short = 'c', long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub connections: u32,
    /// How long to send requests (e.g. 10s, 500ms, 2m). Responses still in
    /// flight at the end are awaited for at most --timeout.
    #[arg(short = 'd', long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// CPUs to generate load on, one pinned load thread each (e.g. 1 or 2-3).
    /// Default: the last CPU this process may use, so a server started on CPU 0 runs apart.
    #[arg(long, value_parser = parse_cpu_list)]
    pub cpus: Option<CpuList>,
    /// Request random ranges of this many bytes at offsets aligned to the size
    /// (e.g. 64KiB). Default: whole-resource GETs.
    #[arg(long, value_name = "BYTES", value_parser = parse_size, conflicts_with = "player")]
    pub range_size: Option<u64>,
    /// Each connection is a video player at this bitrate (e.g. 5M = 5 Mbit/s):
    /// sequential --chunk-size ranges paced at the bitrate, seeking at random times.
    #[arg(long, value_name = "BITRATE", value_parser = parse_bitrate, conflicts_with = "rate")]
    pub player: Option<u64>,
    /// Player mode: bytes per range request.
    #[arg(long, value_name = "BYTES", default_value = "2MiB", value_parser = parse_size)]
    pub chunk_size: u64,
    /// Player mode: mean time between seeks (exponentially distributed).
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub seek_interval: Duration,
    /// Extra idle keep-alive connections: each makes one request, then stays
    /// open until the end. One the server closes early counts as an error.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub idle: u32,
    /// Open loop: this many requests per second in total, on a fixed schedule;
    /// latencies are measured from the scheduled send time.
    #[arg(long, value_name = "R", value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Compare every received body byte with this file (the served file).
    #[arg(long, value_name = "FILE")]
    pub verify: Option<PathBuf>,
    /// Longest wait for any byte of a response before it counts as a timeout.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Extra request header, "Name: value" (repeatable).
    #[arg(short = 'H', long = "header", value_name = "HEADER", value_parser = parse_header)]
    pub headers: Vec<String>,
    /// Print the result as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress line, even on a terminal.
    #[arg(short, long)]
    pub quiet: bool,
    /// Seed for offsets and seek times (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Every request on a fresh connection: connect, (TLS handshake,) one
    /// request with `Connection: close`, close. Latency includes the connect
    /// and handshake; the report counts handshakes per second.
    #[arg(long)]
    pub new_conn: bool,
    /// https with --new-conn: resume TLS sessions (1.3 tickets, 1.2 session
    /// ids or tickets) from a cache each load thread shares among its
    /// connections, to measure resumed handshakes instead of full ones.
    #[arg(long, requires = "new_conn")]
    pub resume: bool,
    /// https: also trust this CA certificate (PEM; repeatable).
    #[arg(long, value_name = "FILE")]
    pub cacert: Vec<PathBuf>,
    /// https: the server name to send (SNI) and verify, instead of the URL's
    /// host (to test certificate selection).
    #[arg(long, value_name = "NAME")]
    pub sni: Option<String>,
    /// https: offer only this TLS version (1.2 or 1.3). Default: both.
    #[arg(long, value_name = "VERSION", value_parser = parse_tls_version)]
    pub tls_version: Option<TlsVersion>,
    /// https: offer only this cipher suite, by its IANA name as rustls spells
    /// it (e.g. TLS13_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256).
    #[arg(long, value_name = "SUITE")]
    pub cipher: Option<String>,
}

impl Args {
    /// The TLS flags, or an error if they are given for an http:// URL.
    pub fn tls_options(&self) -> Result<Option<TlsOptions>, String> {
        let options = TlsOptions {
            cacerts: self.cacert.clone(),
            sni: self.sni.clone(),
            version: self.tls_version,
            cipher: self.cipher.clone(),
        };
        if self.url.tls {
            return Ok(Some(options));
        }
        let given = !options.cacerts.is_empty()
            || options.sni.is_some()
            || options.version.is_some()
            || options.cipher.is_some()
            || self.resume;
        match given {
            true => Err(
                "--cacert, --sni, --tls-version, --cipher and --resume need an https:// URL".into(),
            ),
            false => Ok(None),
        }
    }
}

/// A parsed `http://` or `https://` URL: where to connect and what to send.
#[derive(Debug, Clone)]
pub struct Url {
    /// `https://`: speak TLS.
    pub tls: bool,
    /// The host without port or brackets: the TLS server name by default.
    pub server_name: String,
    /// The address connected to (the first the host resolves to).
    pub addr: SocketAddr,
    /// The `Host` field value, as written in the URL.
    pub host: String,
    /// The request-target, `/` when the URL has no path.
    pub path: String,
}

/// A parsed `--cpus` value (a newtype so clap takes it as one value).
#[derive(Debug, Clone)]
pub struct CpuList(pub Vec<usize>);

/// Multipliers for size suffixes; K/M/G are binary, as byte ranges usually are.
const SIZE_SUFFIXES: &[(&str, u64)] = &[
    ("kib", 1 << 10),
    ("mib", 1 << 20),
    ("gib", 1 << 30),
    ("kb", 1000),
    ("mb", 1_000_000),
    ("gb", 1_000_000_000),
    ("k", 1 << 10),
    ("m", 1 << 20),
    ("g", 1 << 30),
    ("b", 1),
    ("", 1),
];

/// `64KiB`, `64K`, `2M`, `1000` -> bytes (K/M/G and KiB/MiB/GiB are binary; kB/MB/GB decimal).
pub fn parse_size(value: &str) -> Result<u64, String> {
    let lower = value.trim().to_ascii_lowercase();
    for (suffix, unit) in SIZE_SUFFIXES {
        if let Some(number) = lower.strip_suffix(suffix) {
            if let Ok(n) = number.trim().parse::<u64>() {
                return match n.checked_mul(*unit) {
                    Some(0) | None => Err(format!("{value:?} is not a positive size")),
                    Some(bytes) => Ok(bytes),
                };
            }
        }
    }
    Err(format!("{value:?} is not a size (e.g. 65536, 64KiB, 2M)"))
}

/// `10s`, `500ms`, `2m`, `1.5s`, `10` (seconds) -> a positive duration.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let v = value.trim();
    let (number, scale) = if let Some(n) = v.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = v.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = v.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (v, 1.0)
    };
    match number.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 && n * scale < 1e7 => {
            Ok(Duration::from_secs_f64(n * scale))
        }
        _ => Err(format!("{value:?} is not a duration (e.g. 10s, 500ms, 2m)")),
    }
}

/// `5M`, `5Mbit`, `5mbps`, `800k`, `2500000` -> bits per second (decimal units, as bitrates are).
pub fn parse_bitrate(value: &str) -> Result<u64, String> {
    let lower = value.trim().to_ascii_lowercase();
    let stripped = ["bit/s", "bps", "bit", "b"]
        .iter()
        .find_map(|s| lower.strip_suffix(s))
        .unwrap_or(&lower);
    let (number, unit) = match stripped.chars().last() {
        Some('k') => (&stripped[..stripped.len() - 1], 1e3),
        Some('m') => (&stripped[..stripped.len() - 1], 1e6),
        Some('g') => (&stripped[..stripped.len() - 1], 1e9),
        _ => (stripped, 1.0),
    };
    match number.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && n * unit >= 1.0 && n * unit < 1e12 => Ok((n * unit) as u64),
        _ => Err(format!("{value:?} is not a bitrate (e.g. 5M for 5 Mbit/s)")),
    }
}

fn parse_rate(value: &str) -> Result<f64, String> {
    match value.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 && r <= 1e8 => Ok(r),
        _ => Err(format!(
            "{value:?} is not a request rate (requests per second)"
        )),
    }
}

fn parse_header(value: &str) -> Result<String, String> {
    if value
        .split_once(':')
        .is_some_and(|(name, _)| name.trim().eq_ignore_ascii_case("range"))
    {
        return Err("Range is chosen by loadgen; use --range-size or --player".into());
    }
    match value.split_once(':') {
        Some((name, _))
            if !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_graphic())
                && !value.contains(['\r', '\n']) =>
        {
            Ok(value.to_string())
        }
        _ => Err(format!("{value:?} is not a header field (Name: value)")),
    }
}

impl Url {
    /// The URL as given (scheme, authority, path), for messages and reports.
    pub fn text(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{}", self.host, self.path)
    }
}

/// `http[s]://host[:port][/path]` -> address, Host value, TLS name and request-target.
pub fn parse_url(value: &str) -> Result<Url, String> {
    let (tls, rest) = match (
        value.strip_prefix("http://"),
        value.strip_prefix("https://"),
    ) {
        (Some(rest), _) => (false, rest),
        (_, Some(rest)) => (true, rest),
        _ => {
            return Err(format!(
                "{value:?}: only http:// and https:// URLs are supported"
            ))
        }
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(format!(
            "{value:?}: no host (or userinfo, which is not supported)"
        ));
    }
    if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(format!(
            "{value:?}: the path has spaces or control characters"
        ));
    }
    let has_port = !authority.ends_with(']') && authority.contains(':');
    let with_port = match (has_port, tls) {
        (true, _) => authority.to_string(),
        (false, false) => format!("{authority}:80"),
        (false, true) => format!("{authority}:443"),
    };
    let bare_host = match has_port {
        true => &authority[..authority.rfind(':').unwrap_or(authority.len())],
        false => authority,
    };
    let server_name = bare_host.trim_start_matches('[').trim_end_matches(']');
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| format!("{value:?}: cannot resolve {authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("{value:?}: {authority} resolves to no address"))?;
    Ok(Url {
        tls,
        server_name: server_name.to_string(),
        addr,
        host: authority.to_string(),
        path,
    })
}

/// `0,2-3` -> `[0, 2, 3]`, each a CPU we may run on (the server's own parser).
pub fn parse_cpu_list(value: &str) -> Result<CpuList, String> {
    ringcast::config::parse_cpu_set(value).map(CpuList)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("64k"), Ok(65536));
        assert_eq!(parse_size("2M"), Ok(2 << 20));
        assert_eq!(parse_size("1kB"), Ok(1000));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert!(parse_size("0").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999G").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("inf").is_err());
    }

    #[test]
    fn bitrates() {
        assert_eq!(parse_bitrate("5M"), Ok(5_000_000));
        assert_eq!(parse_bitrate("5Mbit"), Ok(5_000_000));
        assert_eq!(parse_bitrate("2.5mbps"), Ok(2_500_000));
        assert_eq!(parse_bitrate("800k"), Ok(800_000));
        assert_eq!(parse_bitrate("128000"), Ok(128_000));
        assert!(parse_bitrate("0").is_err());
        assert!(parse_bitrate("fast").is_err());
    }

    #[test]
    fn urls() {
        let url = parse_url("http://127.0.0.1:8080/file.mp4").unwrap();
        assert_eq!(url.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(url.host, "127.0.0.1:8080");
        assert_eq!(url.path, "/file.mp4");
        let url = parse_url("http://127.0.0.1").unwrap();
        assert_eq!(url.addr.port(), 80);
        assert_eq!(url.path, "/");
        assert_eq!(parse_url("http://127.0.0.1:1?x=1").unwrap().path, "/?x=1");
        assert_eq!(parse_url("http://[::1]:81/a").unwrap().addr.port(), 81);
        assert!(!url.tls);
        assert!(parse_url("ftp://127.0.0.1/").is_err());
        assert!(parse_url("http:///x").is_err());
        assert!(parse_url("http://127.0.0.1/a b").is_err());
    }

    #[test]
    fn https_urls() {
        let url = parse_url("https://127.0.0.1:8443/a.mp4").unwrap();
        assert!(url.tls);
        assert_eq!(url.server_name, "127.0.0.1");
        assert_eq!(url.host, "127.0.0.1:8443");
        assert_eq!(url.text(), "https://127.0.0.1:8443/a.mp4");
        let url = parse_url("https://localhost/").unwrap();
        assert_eq!(url.addr.port(), 443);
        assert_eq!(url.server_name, "localhost");
        let url = parse_url("https://[::1]:9/").unwrap();
        assert_eq!(url.server_name, "::1");
        assert_eq!(parse_url("https://[::1]/").unwrap().server_name, "::1");
    }

    #[test]
    fn tls_flags_need_https() {
        let args = |list: &[&str]| Args::try_parse_from(list).unwrap();
        assert!(args(&["loadgen", "http://127.0.0.1:1/"])
            .tls_options()
            .unwrap()
            .is_none());
        assert!(args(&["loadgen", "http://127.0.0.1:1/", "--sni", "x"])
            .tls_options()
            .is_err());
        let tls = args(&["loadgen", "https://127.0.0.1:1/", "--tls-version", "1.3"]);
        let options = tls.tls_options().unwrap().unwrap();
        assert_eq!(options.version, Some(TlsVersion::Tls13));
        assert!(Args::try_parse_from(["loadgen", "https://127.0.0.1:1/", "--resume"]).is_err());
    }

    #[test]
    fn headers_and_cpus() {
        assert!(parse_header("X-Test: 1").is_ok());
        assert!(parse_header("no colon").is_err());
        assert!(parse_header("X: a\r\nInjected: b").is_err());
        assert!(parse_header("range: bytes=0-1").is_err());
        assert!(parse_cpu_list("0").is_ok());
        assert!(parse_cpu_list("1-0").is_err());
        assert!(parse_cpu_list("4095").is_err());
    }
}
