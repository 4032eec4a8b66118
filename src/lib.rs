//! ringcast: a thread-per-core HTTP/1.1 media server on glommio and io_uring.
//!
//! # Layout
//! - [`config`]: command-line flags into the one [`config::Config`], cloned into each core.
//! - [`http`]: the sans-io core. Request parsing, path cleaning, byte ranges,
//!   validators and preconditions, MIME types, response heads: plain functions
//!   over bytes, tested without sockets.
//! - [`metrics`]: per-core latency histograms and counters, merged on demand,
//!   rendered for Prometheus, `/stats` JSON and percentile tables.
//! - [`server`]: the per-core I/O layer. Binds one SO_REUSEPORT listener per
//!   CPU, runs one pinned glommio executor per CPU, and moves bytes between
//!   sockets and files as the `http` core decides.
//!
//! `main.rs` only parses flags, starts the server and reports errors.

pub mod config;
pub mod http;
pub mod metrics;
pub mod server;
