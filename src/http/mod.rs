//! The sans-io HTTP core: everything ringcast decides, as functions over bytes
//! and values. Nothing here touches a socket, a file or the clock.
//!
//! A request flows: [`request::parse`] -> [`plan::route`] (method, [`path`]) ->
//! the I/O layer opens the file (or a precompressed sidecar, [`encoding`]) ->
//! [`plan::plan_file`] ([`validators`], [`range`], [`mime`], [`policy`]: CORS
//! and Cache-Control) -> a head plus a [`plan::Body`] for the I/O layer to send.
//! Directories under `--index` get [`index`] pages. PUT and DELETE beneath
//! `--ingest` prefixes are routed to [`upload`], which decides whether and
//! how the I/O layer writes; their chunked bodies are decoded by [`body`].

pub mod body;
pub mod encoding;
pub mod error;
pub mod index;
pub mod mime;
pub mod path;
pub mod plan;
pub mod policy;
pub mod range;
pub mod request;
pub mod upload;
pub mod validators;
