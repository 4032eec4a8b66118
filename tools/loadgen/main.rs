//! `loadgen`: a media-aware HTTP/1.1 (and HTTPS) load generator with honest latency.
//!
//! # Layout
//! - [`args`]: flags and their units (sizes, durations, bitrates, CPU lists, the URL).
//! - [`workload`]: what each connection asks for and when (whole GETs, random
//!   aligned ranges, a paced video player with seeks; closed or open loop).
//!   Pure logic, tested without sockets.
//! - [`response`]: sans-io parsing of response heads, Content-Range and chunked bodies.
//! - [`rt`]: a small single-threaded async runtime over edge-triggered epoll
//!   (tasks, timers, non-blocking TCP), one per load thread.
//! - [`tls`]: the rustls client configuration (trusted CAs, SNI, versions,
//!   suites, session resumption) and the names of what a handshake negotiated.
//! - [`transport`]: a connection's byte stream, plain TCP or rustls driven
//!   over the non-blocking socket; the one place that knows about TLS.
//! - [`conn`]: the connection tasks of one load thread.
//!   Checks status, Content-Range, length and (with `--verify`) every body byte.
//! - [`stats`]: per-thread counters and the hdrhistogram of latencies, merged at the end.
//! - [`report`]: text and `--json` output.
//! - [`run`]: probe the target, start one load thread pinned (core_affinity)
//!   to each `--cpus` entry, each with its share of the connections; merge.
//!
//! `main` only parses flags, runs, and prints: the report on stdout, a
//! startup failure as one line on stderr with exit code 1.

mod args;
mod conn;
mod report;
mod response;
mod rt;
mod run;
mod stats;
mod tls;
mod transport;
mod workload;

use clap::Parser;

fn main() {
    let args = args::Args::parse();
    match run::run(&args) {
        Ok(report) => println!("{}", report.trim_end()),
        Err(error) => {
            eprintln!("loadgen: {error}");
            std::process::exit(1);
        }
    }
}
