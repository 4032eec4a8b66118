//! Connection accounting and graceful shutdown.
//!
//! Per core: [`Connections`] counts open connections (for `--max-conns` and
//! for draining) and [`Drain`] tells every task of the core that shutdown has
//! begun. Process-wide: [`Signals`] turns the first SIGTERM/SIGINT into a flag
//! the cores poll and the second into an immediate exit.

use event_listener::{Event, EventListener};
use nix::sys::signal::{SigSet, Signal};
use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often a core looks at the process-wide shutdown flag. Not on the hot
/// path: one timer per core.
pub const SHUTDOWN_POLL: Duration = Duration::from_millis(25);

/// Open connections on one core.
#[derive(Debug, Default)]
pub struct Connections {
    open: Cell<usize>,
    closed: Event,
}

/// Held by a connection's task; its drop counts the connection closed.
pub struct ConnectionSlot {
    connections: Rc<Connections>,
}

impl Connections {
    pub fn open(&self) -> usize {
        self.open.get()
    }

    /// Counts a new connection open until the returned slot is dropped.
    pub fn register(self: &Rc<Self>) -> ConnectionSlot {
        self.open.set(self.open.get() + 1);
        ConnectionSlot {
            connections: self.clone(),
        }
    }

    /// Waits until fewer than `limit` connections are open.
    pub async fn below(&self, limit: usize) {
        while self.open.get() >= limit {
            let listener = self.closed.listen();
            if self.open.get() < limit {
                break;
            }
            listener.await;
        }
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let connections = &self.connections;
        connections.open.set(connections.open.get() - 1);
        connections.closed.notify(usize::MAX);
    }
}

/// One core's "shutdown has begun" latch.
#[derive(Debug, Default)]
pub struct Drain {
    started: Cell<bool>,
    event: Event,
}

impl Drain {
    pub fn begin(&self) {
        self.started.set(true);
        self.event.notify(usize::MAX);
    }

    pub fn started(&self) -> bool {
        self.started.get()
    }

    /// Completes once draining has begun. `listener` is the caller's to keep
    /// between waits: a connection waits for drain beside every read of a
    /// request, and one listener for its life costs less than one registered
    /// per request.
    pub async fn wait(&self, listener: &mut Option<EventListener>) {
        while !self.started.get() {
            match listener {
                // Notified: draining has begun (checked by the loop).
                Some(waiting) => {
                    waiting.await;
                    *listener = None;
                }
                // Listen first, then check: a `begin` in between is not lost.
                None => *listener = Some(self.event.listen()),
            }
        }
    }
}

/// Process-wide flags set by the signal thread (and by `main` when the cores
/// are done), polled by the cores and the admin thread.
#[derive(Debug, Clone, Default)]
pub struct Signals {
    stop: Arc<AtomicBool>,
    dump: Arc<AtomicBool>,
    finished: Arc<AtomicBool>,
}

impl Signals {
    /// Blocks SIGTERM, SIGINT and SIGUSR1 in this thread (and every thread it
    /// spawns afterwards) and starts a thread that waits for them. The first
    /// SIGTERM/SIGINT sets the stop flag, the second exits the process at
    /// once; SIGUSR1 asks for the percentile tables.
    pub fn install() -> nix::Result<Signals> {
        let mut set = SigSet::empty();
        set.add(Signal::SIGTERM);
        set.add(Signal::SIGINT);
        set.add(Signal::SIGUSR1);
        set.thread_block()?;
        let signals = Signals::default();
        let stop = signals.stop.clone();
        let dump = signals.dump.clone();
        std::thread::Builder::new()
            .name("ringcast-signals".into())
            .spawn(move || {
                let mut first = true;
                while let Ok(signal) = set.wait() {
                    if signal == Signal::SIGUSR1 {
                        dump.store(true, Ordering::Relaxed);
                    } else if first {
                        eprintln!("ringcast: {signal:?}: no longer accepting; draining (a second signal exits at once)");
                        stop.store(true, Ordering::Relaxed);
                        first = false;
                    } else {
                        eprintln!("ringcast: {signal:?} again: exiting now");
                        std::process::exit(130);
                    }
                }
            })
            .map_err(|_| nix::errno::Errno::EAGAIN)?;
        Ok(signals)
    }

    /// True once after each SIGUSR1.
    pub fn take_dump_request(&self) -> bool {
        self.dump.swap(false, Ordering::Relaxed)
    }

    /// Called by `main` once every core has stopped.
    pub fn finish(&self) {
        self.finished.store(true, Ordering::Relaxed);
    }

    pub fn finished(&self) -> bool {
        self.finished.load(Ordering::Relaxed)
    }

    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Completes once a stop has been requested; polls at [`SHUTDOWN_POLL`].
    pub async fn wait(&self) {
        while !self.stop_requested() {
            glommio::timer::sleep(SHUTDOWN_POLL).await;
        }
    }
}
