//! The data path: a planned response head and its file bytes onto the socket.
//!
//! Today file bytes are read through the page cache with io_uring (glommio's
//! `BufferedFile::read_at`, so a cold read parks only this connection's task)
//! in chunks of [`CHUNK`], which bounds memory per connection whatever the file
//! or range size. The head rides in the same `send` as the first chunk, so a
//! small range costs one write. This module is the seam where the zero-copy
//! path (splice/sendfile) plugs in: callers see only [`send_response`].

use crate::http::plan::Body;
use crate::http::range::ByteRange;
use futures_lite::AsyncWriteExt;
use glommio::io::BufferedFile;
use glommio::net::TcpStream;
use std::io;

/// Bytes read from the file per step: the per-connection memory bound.
pub const CHUNK: usize = 64 * 1024;

/// What can end a response early.
#[derive(Debug)]
pub enum SendError {
    /// The client went away or the socket failed.
    Socket(io::Error),
    /// Reading the file failed.
    File(io::Error),
    /// The file is shorter than when it was planned (truncated while being
    /// served). We stop without padding; the connection must close.
    Truncated,
}

/// Sends `head` and then the body the plan chose. `head` is used as the
/// coalescing buffer and is left empty.
pub async fn send_response(
    stream: &mut TcpStream,
    file: Option<&BufferedFile>,
    head: &mut Vec<u8>,
    body: &Body,
) -> Result<(), SendError> {
    match (body, file) {
        (Body::None, _) => {}
        (Body::File(range), Some(file)) => copy_range(stream, file, *range, head).await?,
        (Body::Multipart { parts, closing }, Some(file)) => {
            for part in parts {
                head.extend_from_slice(&part.head);
                copy_range(stream, file, part.range, head).await?;
            }
            head.extend_from_slice(closing);
        }
        (_, None) => unreachable!("a file body is only planned for an open file"),
    }
    flush(stream, head).await
}

/// Appends the bytes of `range` to `pending`, writing whenever a chunk's worth
/// has gathered. Small ranges stay in `pending` to share a write with what follows.
async fn copy_range(
    stream: &mut TcpStream,
    file: &BufferedFile,
    range: ByteRange,
    pending: &mut Vec<u8>,
) -> Result<(), SendError> {
    let mut offset = range.start;
    let end = range.end + 1;
    while offset < end {
        let want = (end - offset).min(CHUNK as u64) as usize;
        let data = file
            .read_at(offset, want)
            .await
            .map_err(|e| SendError::File(e.into()))?;
        if data.is_empty() {
            flush(stream, pending).await?;
            return Err(SendError::Truncated);
        }
        offset += data.len() as u64;
        if pending.is_empty() && data.len() == CHUNK {
            // A full chunk with nothing queued goes out without a copy.
            stream.write_all(&data).await.map_err(SendError::Socket)?;
        } else {
            pending.extend_from_slice(&data);
            if pending.len() >= CHUNK {
                flush(stream, pending).await?;
            }
        }
    }
    Ok(())
}

async fn flush(stream: &mut TcpStream, pending: &mut Vec<u8>) -> Result<(), SendError> {
    if !pending.is_empty() {
        stream.write_all(pending).await.map_err(SendError::Socket)?;
        pending.clear();
    }
    Ok(())
}
