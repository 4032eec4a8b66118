//! The per-core I/O layer: one pinned glommio executor per CPU, each with its
//! own SO_REUSEPORT listener, root directory handle and date cache. Cores share
//! nothing; the kernel spreads connections across their listeners.
//!
//! - [`listener`]: binds every core's socket up front, so a bad address fails
//!   before any thread starts.
//! - [`conn`]: one connection's read-decide-send loop.
//! - [`fs`]: opening files strictly beneath the root.
//! - [`send`]: the data path from file to socket.
//! - [`clock`]: the per-core `Date` cache.

pub mod clock;
pub mod conn;
pub mod fs;
pub mod listener;
pub mod send;

use crate::config::Config;
use futures_lite::FutureExt;
use glommio::net::TcpListener;
use glommio::{LocalExecutorBuilder, Placement};
use std::fmt;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::time::Duration;

/// How long a core waits before accepting again after running out of descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// One core's state, shared by the tasks of that core only.
pub struct Core {
    pub config: Config,
    pub root: fs::Root,
    pub clock: clock::DateCache,
}

/// Why the server could not start.
#[derive(Debug)]
pub enum ServerError {
    /// Binding or listening on the address failed (in use, not local, ...).
    Listen(SocketAddr, std::io::Error),
    /// The root directory could not be opened.
    Root(std::io::Error),
    /// An executor could not be created or pinned to its CPU.
    Executor(usize, String),
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::Listen(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
            ServerError::Root(e) => write!(f, "cannot open the root directory: {e}"),
            ServerError::Executor(cpu, e) => {
                write!(f, "cannot start the executor for CPU {cpu}: {e}")
            }
        }
    }
}

impl std::error::Error for ServerError {}

/// Serves until every core stops (today: until the process is killed).
pub fn run(config: Config) -> Result<(), ServerError> {
    // Check the root once here so a bad one is a clear startup error.
    drop(fs::Root::open(&config.root, config.follow_symlinks).map_err(ServerError::Root)?);
    let sockets = listener::bind_all(config.listen, config.cpus.len(), config.backlog)?;
    let addr = sockets[0]
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .unwrap_or(config.listen);
    eprintln!(
        "ringcast: serving {} on http://{addr} (CPUs {:?})",
        config.root.display(),
        config.cpus
    );
    let mut executors = Vec::with_capacity(config.cpus.len());
    for (&cpu, socket) in config.cpus.iter().zip(sockets) {
        let config = config.clone();
        let handle = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("ringcast-cpu{cpu}"))
            .spawn(move || serve_core(config, socket))
            .map_err(|e| ServerError::Executor(cpu, e.to_string()))?;
        executors.push((cpu, handle));
    }
    for (cpu, handle) in executors {
        handle
            .join()
            .map_err(|e| ServerError::Executor(cpu, e.to_string()))?;
    }
    Ok(())
}

/// One core's accept loop. Each connection is its own task; a panic in one is
/// caught and ends only that connection.
async fn serve_core(config: Config, socket: socket2::Socket) {
    let root = match fs::Root::open(&config.root, config.follow_symlinks) {
        Ok(root) => root,
        Err(e) => {
            eprintln!("ringcast: cannot open the root directory: {e}");
            return;
        }
    };
    let core = Rc::new(Core {
        config,
        root,
        clock: clock::DateCache::default(),
    });
    // SAFETY: the socket is bound and listening, and ownership moves here.
    let listener = unsafe { TcpListener::from_raw_fd(socket.into_raw_fd()) };
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                let core = core.clone();
                glommio::spawn_local(async move {
                    let served = AssertUnwindSafe(conn::serve(&core, stream)).catch_unwind();
                    if served.await.is_err() {
                        eprintln!("ringcast: a connection task panicked; connection dropped");
                    }
                })
                .detach();
            }
            Err(e) => {
                // EMFILE/ENFILE and friends: back off instead of spinning.
                eprintln!("ringcast: accept failed: {e}; retrying in {ACCEPT_BACKOFF:?}");
                glommio::timer::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}
