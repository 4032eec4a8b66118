//! The seam under `conn`: a connection's bytes go through a [`Transport`],
//! plain TCP or TLS, and `conn` never asks which. TLS is rustls's buffered
//! client driven by hand over the runtime's non-blocking socket: ciphertext
//! is read with one `recv` per readiness edge into a staging buffer and fed
//! to rustls from there (rustls alone would `recv` 4 KiB at a time), and
//! queued records leave in one `sendmsg`.
//!
//! WouldBlock both ways: a write waits for the socket to take the records
//! (`flush`); a read that finds no plaintext feeds rustls more ciphertext,
//! waiting for the socket only when the staging buffer is used up, since one
//! record can span several reads and one read can hold many records.

use crate::rt::TcpStream;
use crate::tls::{Handshake, TlsClient};
use rustls::ClientConnection;
use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

/// Ciphertext staged per TLS connection: as much as one `recv` takes, like
/// the plain path's read buffer, so a large body costs the same syscalls.
const STAGING: usize = 128 * 1024;
/// Staging buffers kept for reuse by this thread's next connections, so
/// `--new-conn` does not allocate (and fault in) one per request.
const SPARE_STAGING: usize = 64;

thread_local! {
    static SPARES: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

/// Why a connection could not be opened.
#[derive(Debug)]
pub enum ConnectError {
    /// The TCP connect failed (refused, unreachable, timed out).
    Tcp(io::Error),
    /// The TLS handshake failed (certificate, protocol, alert, or the server
    /// closed or stalled during it).
    Tls(io::Error),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Tcp(e) => write!(f, "connect: {e}"),
            ConnectError::Tls(e) => match tls_error(e) {
                Some(tls) => write!(f, "{}", crate::tls::describe(tls)),
                None => write!(f, "TLS handshake: {e}"),
            },
        }
    }
}

/// The rustls error inside an I/O error, if that is what it carries.
pub fn tls_error(error: &io::Error) -> Option<&rustls::Error> {
    error.get_ref().and_then(|inner| inner.downcast_ref())
}

/// One connection's byte stream.
pub enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

impl Transport {
    /// Connects, and with `tls` completes the handshake, all within `timeout`
    /// per wait.
    pub async fn connect(
        addr: SocketAddr,
        timeout: Duration,
        tls: Option<&TlsClient>,
    ) -> Result<Transport, ConnectError> {
        let mut tcp = TcpStream::connect(addr, timeout)
            .await
            .map_err(ConnectError::Tcp)?;
        tcp.timeout = Some(timeout);
        let Some(tls) = tls else {
            return Ok(Transport::Plain(tcp));
        };
        let conn = tls.session().map_err(|e| ConnectError::Tls(invalid(e)))?;
        let mut stream = Box::new(TlsStream::new(tcp, conn));
        stream.handshake().await.map_err(ConnectError::Tls)?;
        Ok(Transport::Tls(stream))
    }

    /// Longest wait for readiness before an operation fails with `TimedOut`.
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        match self {
            Transport::Plain(tcp) => tcp.timeout = timeout,
            Transport::Tls(tls) => tls.tcp.timeout = timeout,
        }
    }

    /// What the TLS handshake negotiated; `None` for plain TCP.
    pub fn handshake(&self) -> Option<Handshake> {
        match self {
            Transport::Plain(_) => None,
            Transport::Tls(tls) => Some(Handshake::of(&tls.conn)),
        }
    }

    /// Reads what has arrived, waiting for at least one byte; 0 at the end.
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(tcp) => tcp.read(buf).await,
            Transport::Tls(tls) => tls.read(buf).await,
        }
    }

    /// Writes all of `buf`, waiting for room as needed.
    pub async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Transport::Plain(tcp) => tcp.write_all(buf).await,
            Transport::Tls(tls) => tls.write_all(buf).await,
        }
    }

    /// Waits (within the timeout) for the server to end a connection it said
    /// it would close, then drops it. Closing first ourselves would leave
    /// unread bytes (TLS's close_notify) that turn our close into a reset,
    /// and would put TIME_WAIT on our side, where ports run out.
    pub async fn finish(mut self) {
        let mut scrap = [0u8; 512];
        while let Ok(1..) = self.read(&mut scrap).await {}
    }
}

/// A TLS session over a non-blocking socket.
pub struct TlsStream {
    tcp: TcpStream,
    conn: ClientConnection,
    /// Ciphertext read from the socket; `staged.0..staged.1` not yet given to rustls.
    staging: Box<[u8]>,
    staged: (usize, usize),
}

impl TlsStream {
    fn new(tcp: TcpStream, conn: ClientConnection) -> TlsStream {
        let staging = SPARES
            .with(|s| s.borrow_mut().pop())
            .unwrap_or_else(|| vec![0u8; STAGING].into_boxed_slice());
        TlsStream {
            tcp,
            conn,
            staging,
            staged: (0, 0),
        }
    }

    /// Runs the handshake to its end. The client's last flight is left
    /// queued: the first request's write sends it in the same `sendmsg`.
    async fn handshake(&mut self) -> io::Result<()> {
        while self.conn.is_handshaking() {
            if self.conn.wants_write() {
                self.flush().await?;
            } else if !self.receive().await? {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection during the handshake",
                ));
            }
        }
        Ok(())
    }

    /// Reads plaintext, waiting for at least one byte; 0 once the server has
    /// closed (with close_notify or without: a cut-off body is caught by
    /// the length checks, as on plain TCP).
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            if !self.receive().await? {
                return Ok(0);
            }
        }
    }

    /// Encrypts and sends all of `buf`.
    async fn write_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let n = self.conn.writer().write(buf)?;
            buf = &buf[n..];
            self.flush().await?;
        }
        self.flush().await
    }

    /// Sends every queued record, waiting for the socket as needed.
    async fn flush(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut Socket(&self.tcp)) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.tcp.writable().await?,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Gives rustls more ciphertext and processes it, until that changed
    /// something the caller waits for: plaintext to read, records to send,
    /// the handshake's end. `false`: the server closed. Reads the socket
    /// only when nothing is staged; records without data (session tickets)
    /// just make it read on.
    async fn receive(&mut self) -> io::Result<bool> {
        let was_handshaking = self.conn.is_handshaking();
        loop {
            let (start, end) = self.staged;
            if start == end {
                // Anything rustls wants sent (a key update's answer) goes first.
                self.flush().await?;
                let n = self.tcp.read(&mut self.staging).await?;
                if n == 0 {
                    self.conn.read_tls(&mut io::empty())?;
                    self.process()?;
                    return Ok(false);
                }
                self.staged = (0, n);
                continue;
            }
            let used = self.conn.read_tls(&mut &self.staging[start..end])?;
            if used == 0 {
                return Ok(false); // after close_notify rustls takes nothing more
            }
            self.staged.0 += used;
            let state = self.process()?;
            if state.plaintext_bytes_to_read() > 0
                || state.peer_has_closed()
                || self.conn.wants_write()
                || self.conn.is_handshaking() != was_handshaking
            {
                return Ok(true);
            }
        }
    }

    /// `process_new_packets`, sending rustls's alert (best effort, never
    /// waiting) when it refuses what the server sent.
    fn process(&mut self) -> io::Result<rustls::IoState> {
        self.conn.process_new_packets().map_err(|error| {
            let _ = self.conn.write_tls(&mut Socket(&self.tcp));
            invalid(error)
        })
    }
}

impl Drop for TlsStream {
    fn drop(&mut self) {
        let staging = std::mem::take(&mut self.staging);
        let _ = SPARES.try_with(|s| {
            let mut spares = s.borrow_mut();
            if spares.len() < SPARE_STAGING && !staging.is_empty() {
                spares.push(staging);
            }
        });
    }
}

/// rustls's view of the socket for `write_tls`: never waits.
struct Socket<'a>(&'a TcpStream);

impl Write for Socket<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write_vectored(&[io::IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A rustls error as an I/O error (the rustls error stays inside, for
/// [`tls_error`] and the error counts).
fn invalid(error: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}
