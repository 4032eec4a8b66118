//! The seam under the connection loop: one [`Transport`] owns a client's
//! socket and offers "read bytes", "send these bytes" and, where the bytes
//! may go file -> socket without passing through us, the raw socket for the
//! zero-copy paths. Three kinds sit behind it:
//!
//! - **plain**: the TCP socket itself;
//! - **kernel TLS**: after a rustls handshake the record keys went to the
//!   kernel, which encrypts what we send and decrypts what we read, so it
//!   is driven exactly like plain (sendfile, the mapped `sendmsg`, corking);
//! - **user-space TLS**: rustls encrypts; bytes must pass through it, so no
//!   zero-copy path is offered.
//!
//! The data path asks once ([`Transport::raw_socket`]) and never branches on
//! TLS otherwise.

use super::tls::{self, RecordCursor};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use rustls::ServerConnection;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Instant;

/// Ciphertext read per socket read in user-space TLS.
const CIPHER_READ: usize = 4 * 1024;

/// What carries a connection's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Plain,
    Tls,
    Ktls,
}

impl Kind {
    /// One of `metrics::TRANSPORTS`.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Plain => "plain",
            Kind::Tls => "tls",
            Kind::Ktls => "ktls",
        }
    }
}

/// A client connection's socket, plain or TLS.
pub struct Transport {
    stream: TcpStream,
    /// Set while rustls encrypts in user space.
    tls: Option<Box<UserTls>>,
    kind: Kind,
    /// Plaintext that arrived before the keys went to the kernel (a request
    /// sent with the client's Finished): read before the socket.
    early: Vec<u8>,
    /// Application bytes encrypted in user space since last taken.
    encrypted: u64,
}

struct UserTls {
    conn: ServerConnection,
    /// Follows the ciphertext fed to rustls, for the kernel hand-off.
    records: RecordCursor,
    cipher: Box<[u8]>,
}

/// Why a TLS handshake did not complete.
#[derive(Debug)]
pub enum HandshakeError {
    /// The handshake and the first request head took longer than `--header-timeout`.
    Timeout,
    /// The client closed or reset before finishing.
    Closed,
    /// Plain HTTP sent to the TLS port (answered with a 400 in plain text).
    PlainHttp,
    /// The client asked for a protocol version we do not speak (SSLv3, TLS 1.0/1.1).
    Version,
    /// No common cipher suite, key exchange or signature scheme, or no ALPN match.
    Incompatible,
    /// Bytes that are not a well-formed TLS handshake.
    Malformed,
    /// The client sent a fatal alert (for example, it does not trust our certificate).
    AlertReceived,
    /// The socket failed.
    Io(io::Error),
}

impl HandshakeError {
    /// The `reason` label of the failure counter (one of `metrics::HANDSHAKE_FAILURES`).
    pub fn reason(&self) -> &'static str {
        match self {
            HandshakeError::Timeout => "timeout",
            HandshakeError::Closed => "closed",
            HandshakeError::PlainHttp => "plain_http",
            HandshakeError::Version => "version",
            HandshakeError::Incompatible => "incompatible",
            HandshakeError::Malformed => "malformed",
            HandshakeError::AlertReceived => "alert_received",
            HandshakeError::Io(_) => "io",
        }
    }

    fn from_rustls(error: &rustls::Error) -> HandshakeError {
        use rustls::{Error, PeerIncompatible};
        match error {
            Error::PeerIncompatible(
                PeerIncompatible::Tls12NotOffered
                | PeerIncompatible::Tls12NotOfferedOrEnabled
                | PeerIncompatible::Tls13RequiredForQuic
                | PeerIncompatible::SupportedVersionsExtensionRequired,
            ) => HandshakeError::Version,
            Error::PeerIncompatible(_) | Error::NoApplicationProtocol => {
                HandshakeError::Incompatible
            }
            Error::AlertReceived(_) => HandshakeError::AlertReceived,
            _ => HandshakeError::Malformed,
        }
    }
}

/// A finished handshake.
pub struct Accepted {
    pub transport: Transport,
    pub offload: Offload,
    /// The client resumed a session (a ticket or a TLS 1.2 session id).
    pub resumed: bool,
}

/// What the kernel hand-off did, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offload {
    /// Not asked for (`--ktls off`, or the kernel has no TLS).
    NotTried,
    Done,
    /// Asked for but not possible for this connection; it goes on in user space.
    FellBack,
}

impl Transport {
    pub fn plain(stream: TcpStream) -> Transport {
        Transport {
            stream,
            tls: None,
            kind: Kind::Plain,
            early: Vec::new(),
            encrypted: 0,
        }
    }

    /// Runs a server handshake on `stream` until `deadline`; then, if
    /// `offload`, moves the keys to the kernel.
    pub async fn accept_tls(
        stream: TcpStream,
        config: Arc<rustls::ServerConfig>,
        offload: bool,
        deadline: Instant,
    ) -> Result<Accepted, HandshakeError> {
        let conn = ServerConnection::new(config).map_err(|_| HandshakeError::Incompatible)?;
        let mut transport = Transport {
            stream,
            tls: Some(Box::new(UserTls {
                conn,
                records: RecordCursor::default(),
                cipher: vec![0; CIPHER_READ].into_boxed_slice(),
            })),
            kind: Kind::Tls,
            early: Vec::new(),
            encrypted: 0,
        };
        transport.handshake(deadline).await?;
        let resumed = transport
            .tls
            .as_ref()
            .is_some_and(|tls| tls.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed));
        let offload = if offload {
            transport.offload()?
        } else {
            Offload::NotTried
        };
        Ok(Accepted {
            transport,
            offload,
            resumed,
        })
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.stream.peer_addr().ok()
    }

    /// The socket, for sending file bytes around user space (sendfile, a
    /// mapped `sendmsg`, corking), or `None` where every byte must pass
    /// through user-space encryption.
    pub fn raw_socket(&self) -> Option<RawFd> {
        match self.kind {
            Kind::Plain | Kind::Ktls => Some(self.stream.as_raw_fd()),
            Kind::Tls => None,
        }
    }

    /// The plain socket, for splicing request bodies to a file; `None`
    /// under TLS, whose bytes must be decrypted first.
    pub fn splice_socket(&self) -> Option<RawFd> {
        (self.kind == Kind::Plain).then(|| self.stream.as_raw_fd())
    }

    /// Stops reading through io_uring RECVs before a long body, so that
    /// reads are as large as the caller's buffer or go around user space
    /// (splice), and returns the bytes a RECV already took. Plain sockets
    /// only; a no-op under TLS.
    pub async fn stop_ring_recv(&mut self) -> io::Result<Vec<u8>> {
        match self.kind {
            Kind::Plain => self.stream.stop_ring_recv().await,
            Kind::Tls | Kind::Ktls => Ok(Vec::new()),
        }
    }

    /// Turns io_uring RECVs back on after [`Transport::stop_ring_recv`].
    pub fn resume_ring_recv(&mut self) {
        if self.kind == Kind::Plain {
            self.stream.set_ring_recv(true);
        }
    }

    /// Waits until the socket has bytes to read (no timeout: race one).
    pub async fn readable(&self) -> io::Result<()> {
        self.stream.readable().await
    }

    /// Application bytes rustls encrypted since the last call.
    pub fn take_encrypted(&mut self) -> u64 {
        std::mem::take(&mut self.encrypted)
    }

    pub fn set_read_timeout(&self, timeout: Option<std::time::Duration>) -> io::Result<()> {
        self.stream
            .set_read_timeout(timeout)
            .map_err(io::Error::from)
    }

    /// Reads application bytes; 0 at the end of the stream.
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.early.is_empty() {
            let n = buf.len().min(self.early.len());
            buf[..n].copy_from_slice(&self.early[..n]);
            self.early.drain(..n);
            return Ok(n);
        }
        let Some(tls) = self.tls.as_deref_mut() else {
            return self.stream.read(buf).await;
        };
        loop {
            match tls.conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The peer closed without close_notify: the end of the stream.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            let n = self.stream.read(&mut tls.cipher).await?;
            if n == 0 {
                return Ok(0);
            }
            let fed = feed(tls, n);
            flush_tls(&mut self.stream, &mut tls.conn).await?;
            fed.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        }
    }

    /// Sends all of `bytes`, waiting (within the send timeout) for the socket.
    pub async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        let Some(tls) = self.tls.as_deref_mut() else {
            return self.stream.write_all(bytes).await;
        };
        let mut rest = bytes;
        while !rest.is_empty() {
            let n = tls.conn.writer().write(rest)?;
            rest = &rest[n..];
            self.encrypted += n as u64;
            flush_tls(&mut self.stream, &mut tls.conn).await?;
        }
        Ok(())
    }

    /// Waits until the socket polls writable, within the send timeout.
    pub async fn writable(&mut self) -> io::Result<()> {
        self.stream.writable().await
    }

    /// Closes the connection; TLS says close_notify first (RFC 8446 §6.1).
    pub async fn close(mut self) {
        if let Some(tls) = self.tls.as_deref_mut() {
            tls.conn.send_close_notify();
            let _ = flush_tls(&mut self.stream, &mut tls.conn).await;
        } else if self.kind == Kind::Ktls {
            send_kernel_close_notify(self.stream.as_raw_fd());
        }
        let _ = self.stream.close().await;
    }

    /// Drives the handshake to its end, within `deadline`.
    async fn handshake(&mut self, deadline: Instant) -> Result<(), HandshakeError> {
        let Some(tls) = self.tls.as_deref_mut() else {
            return Ok(()); // a plain transport has no handshake
        };
        let mut first = true;
        while tls.conn.is_handshaking() {
            flush_tls(&mut self.stream, &mut tls.conn)
                .await
                .map_err(HandshakeError::Io)?;
            if !tls.conn.is_handshaking() {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(HandshakeError::Timeout);
            }
            self.stream
                .set_read_timeout(Some(left))
                .map_err(|e| HandshakeError::Io(e.into()))?;
            let n = match self.stream.read(&mut tls.cipher).await {
                Ok(0) => return Err(HandshakeError::Closed),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    return Err(HandshakeError::Timeout)
                }
                Err(e) if is_reset(&e) => return Err(HandshakeError::Closed),
                Err(e) => return Err(HandshakeError::Io(e)),
            };
            if first && tls::looks_like_plain_http(&tls.cipher[..n]) {
                let _ = self.stream.write_all(PLAIN_HTTP_ANSWER).await;
                return Err(HandshakeError::PlainHttp);
            }
            let old_version = first && tls::offers_only_old_versions(&tls.cipher[..n]);
            first = false;
            if let Err(e) = feed(tls, n) {
                // rustls has queued the alert that says why; send it.
                let _ = flush_tls(&mut self.stream, &mut tls.conn).await;
                return Err(match old_version {
                    true => HandshakeError::Version,
                    false => HandshakeError::from_rustls(&e),
                });
            }
        }
        // TLS 1.3 session tickets follow the handshake.
        flush_tls(&mut self.stream, &mut tls.conn)
            .await
            .map_err(HandshakeError::Io)
    }

    /// Moves the keys into the kernel, where it can take them. Bytes of a
    /// record rustls has only partly seen cannot be handed over, so then the
    /// connection stays in user space.
    fn offload(&mut self) -> Result<Offload, HandshakeError> {
        let Some(mut tls) = self.tls.take() else {
            return Ok(Offload::NotTried);
        };
        if !tls.records.at_boundary() || tls.conn.wants_write() {
            self.tls = Some(tls);
            return Ok(Offload::FellBack);
        }
        // What the client sent with its Finished is already decrypted.
        let mut early = Vec::new();
        if let Err(e) = tls.conn.reader().read_to_end(&mut early) {
            if e.kind() != io::ErrorKind::WouldBlock {
                self.tls = Some(tls);
                return Ok(Offload::FellBack);
            }
        }
        if tls::set_tls_ulp(self.stream.as_raw_fd()).is_err() {
            self.tls = Some(tls);
            self.early = early;
            return Ok(Offload::FellBack);
        }
        match tls::offload_keys(self.stream.as_raw_fd(), tls.conn) {
            Ok(()) => {
                self.kind = Kind::Ktls;
                self.early = early;
                Ok(Offload::Done)
            }
            Err(why) => Err(HandshakeError::Io(io::Error::other(format!(
                "kernel TLS setup failed: {why}"
            )))),
        }
    }
}

/// What a client that spoke plain HTTP to the TLS port is told, as nginx does.
const PLAIN_HTTP_ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n\
Content-Length: 45\r\nConnection: close\r\n\r\nThis port speaks HTTPS: use an https:// URL.\n";

/// Gives `tls.cipher[..n]` to rustls and processes the records it completes.
fn feed(tls: &mut UserTls, n: usize) -> Result<(), rustls::Error> {
    tls::feed(&mut tls.conn, &mut tls.records, &tls.cipher[..n])
}

/// Writes every record rustls has queued, parking on POLLOUT when the
/// socket is full.
async fn flush_tls(stream: &mut TcpStream, conn: &mut ServerConnection) -> io::Result<()> {
    while conn.wants_write() {
        let mut socket = SocketWriter(stream.as_raw_fd());
        match conn.write_tls(&mut socket) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => stream.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn is_reset(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
    )
}

/// Non-blocking writes of TLS records straight to the socket: one
/// `sendmsg` for all the records rustls has queued.
struct SocketWriter(RawFd);

impl Write for SocketWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[io::IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        // SAFETY: an all-zero msghdr is valid; the iovec array is `bufs`
        // (IoSlice is ABI-compatible with iovec) and outlives the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = bufs.len();
        let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
        // SAFETY: `msg` describes live, initialised buffers.
        let n = unsafe { libc::sendmsg(self.0, &msg, flags) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A close_notify alert through kernel TLS: a record of type alert (21)
/// set by a control message (Documentation/networking/tls.rst).
fn send_kernel_close_notify(fd: RawFd) {
    const SOL_TLS: libc::c_int = 282;
    const TLS_SET_RECORD_TYPE: libc::c_int = 1;
    const ALERT: u8 = 21;
    let alert = [1u8, 0]; // warning, close_notify
                          // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(1) } as usize;
    let mut control = vec![0u8; space];
    let mut iov = libc::iovec {
        iov_base: alert.as_ptr() as *mut libc::c_void,
        iov_len: alert.len(),
    };
    // SAFETY: the msghdr points at `iov` and `control`, both alive for the
    // call; the control message is written inside `control`'s bounds.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = SOL_TLS;
        (*cmsg).cmsg_type = TLS_SET_RECORD_TYPE;
        (*cmsg).cmsg_len = libc::CMSG_LEN(1) as usize;
        *libc::CMSG_DATA(cmsg) = ALERT;
        libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL);
    }
}
