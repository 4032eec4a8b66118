//! Connection accounting and graceful shutdown.
//!
//! Per core: [`Connections`] counts open connections (for `--max-conns` and
//! for draining) and [`Drain`] tells every task of the core that shutdown has
//! begun. Process-wide: [`Signals`] turns the first SIGTERM/SIGINT into a flag
//! the cores poll and the second into an immediate exit, and its thread
//! watches every core's heartbeat ([`Watchdog`]): a core whose main task has
//! stopped running (its accept loop with it) ends the process, so a
//! supervisor restarts it, instead of leaving a listener nobody accepts on.

use event_listener::{Event, EventListener};
use nix::sys::signal::{SigSet, Signal};
use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often a core looks at the process-wide shutdown flag. Not on the hot
/// path: one timer per core. Each look is also the core's heartbeat.
pub const SHUTDOWN_POLL: Duration = Duration::from_millis(25);
/// How often the signal thread looks at the cores' heartbeats.
pub const WATCHDOG_TICK: Duration = Duration::from_secs(1);
/// Looks in a row that find a core's heartbeat unchanged before the process
/// exits: 30 s at [`WATCHDOG_TICK`], against a beat every [`SHUTDOWN_POLL`].
/// Counted in looks, not in wall time, so a paused VM (every thread stopped
/// alike) costs one look, not a false alarm.
pub const STALLED_LOOKS: u32 = 30;
/// Exit status when a core has stopped (EX_SOFTWARE).
pub const STALLED_EXIT: i32 = 70;
/// A heartbeat no longer watched: the core has returned (or never started).
const UNWATCHED: u64 = u64::MAX;

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
    /// One per core, counted up by the core's shutdown check.
    beats: Arc<[AtomicU64]>,
}

/// Finds a core whose heartbeat has stopped, from one look at all of them
/// every [`WATCHDOG_TICK`].
#[derive(Debug)]
pub struct Watchdog {
    /// Per core: the beat count last seen, and the looks since it changed.
    seen: Vec<(u64, u32)>,
}

impl Watchdog {
    pub fn new(cores: usize) -> Self {
        Watchdog {
            seen: vec![(0, 0); cores],
        }
    }

    /// Records one look at the cores' beat counts; returns the index of a
    /// core whose count has not moved for [`STALLED_LOOKS`] looks in a row.
    /// Unwatched cores ([`UNWATCHED`]) never are.
    pub fn look(&mut self, beats: &[u64]) -> Option<usize> {
        let mut stalled = None;
        for (index, (&beat, seen)) in beats.iter().zip(&mut self.seen).enumerate() {
            if beat != seen.0 || beat == UNWATCHED {
                *seen = (beat, 0);
                continue;
            }
            seen.1 += 1;
            if seen.1 >= STALLED_LOOKS {
                stalled.get_or_insert(index);
            }
        }
        stalled
    }
}

/// Stops watching a core's heartbeat when dropped: held by the core's main
/// task, so a core that returns, or unwinds, is not taken for stalled; one
/// whose task just stops being run keeps it, and is.
pub struct Heartbeat {
    beats: Arc<[AtomicU64]>,
    core: usize,
}

impl Heartbeat {
    fn beat(&self) {
        if let Some(beat) = self.beats.get(self.core) {
            beat.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        if let Some(beat) = self.beats.get(self.core) {
            beat.store(UNWATCHED, Ordering::Relaxed);
        }
    }
}

impl Signals {
    /// Blocks SIGTERM, SIGINT, SIGUSR1 and SIGHUP in this thread (and every
    /// thread it spawns afterwards) and starts a thread that waits for them.
    /// The first SIGTERM/SIGINT sets the stop flag, the second exits the
    /// process at once; SIGUSR1 asks for the percentile tables; SIGHUP runs
    /// `on_hangup` (re-reading certificates) on the signal thread, off the cores.
    ///
    /// Between signals the thread looks at the heartbeats of the cores on
    /// `cpus` every [`WATCHDOG_TICK`] (until a stop is requested: draining
    /// cores leave their loop) and exits the process with [`STALLED_EXIT`]
    /// if one has stopped ([`Watchdog`]).
    pub fn install(cpus: &[usize], on_hangup: Box<dyn Fn() + Send>) -> nix::Result<Signals> {
        let mut set = SigSet::empty();
        set.add(Signal::SIGTERM);
        set.add(Signal::SIGINT);
        set.add(Signal::SIGUSR1);
        set.add(Signal::SIGHUP);
        set.thread_block()?;
        let signals = Signals {
            beats: cpus.iter().map(|_| AtomicU64::new(UNWATCHED)).collect(),
            ..Signals::default()
        };
        let stop = signals.stop.clone();
        let dump = signals.dump.clone();
        let beats = signals.beats.clone();
        let cpus = cpus.to_vec();
        std::thread::Builder::new()
            .name("ringcast-signals".into())
            .spawn(move || {
                let mut first = true;
                let mut watchdog = Watchdog::new(beats.len());
                loop {
                    let signal = match wait_signal(&set, WATCHDOG_TICK) {
                        Wait::Signal(signal) => signal,
                        Wait::Interrupted => continue,
                        Wait::TimedOut => {
                            if !stop.load(Ordering::Relaxed) {
                                exit_if_stalled(&mut watchdog, &beats, &cpus);
                            }
                            continue;
                        }
                    };
                    if signal == Signal::SIGUSR1 {
                        dump.store(true, Ordering::Relaxed);
                    } else if signal == Signal::SIGHUP {
                        on_hangup();
                    } else if first {
                        eprintln!("ringcast: {signal:?}: no longer accepting; draining (a second signal exits at once)");
                        stop.store(true, Ordering::Relaxed);
                        first = false;
                    } else {
                        // Named as what it is: the first may have been another signal.
                        eprintln!("ringcast: a second signal ({signal:?}) during the drain: exiting now");
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

    /// Starts watching core `core`'s heartbeat until the returned guard drops.
    pub fn heartbeat(&self, core: usize) -> Heartbeat {
        if let Some(beat) = self.beats.get(core) {
            beat.store(0, Ordering::Relaxed);
        }
        Heartbeat {
            beats: self.beats.clone(),
            core,
        }
    }

    /// Completes once a stop has been requested; polls at [`SHUTDOWN_POLL`],
    /// each poll a beat of `heartbeat`.
    pub async fn wait(&self, heartbeat: &Heartbeat) {
        while !self.stop_requested() {
            heartbeat.beat();
            glommio::timer::sleep(SHUTDOWN_POLL).await;
        }
    }
}

/// One watchdog look at the cores' heartbeats; ends the process if a core
/// has stalled.
fn exit_if_stalled(watchdog: &mut Watchdog, beats: &[AtomicU64], cpus: &[usize]) {
    let now: Vec<u64> = beats.iter().map(|b| b.load(Ordering::Relaxed)).collect();
    if let Some(core) = watchdog.look(&now) {
        eprintln!(
            "ringcast: the core on CPU {} has not run its accept loop for {}s; \
             exiting (status {STALLED_EXIT}) so a supervisor can restart the server",
            cpus[core],
            WATCHDOG_TICK.as_secs() * u64::from(STALLED_LOOKS)
        );
        std::process::exit(STALLED_EXIT);
    }
}

/// What ended a wait for a signal.
enum Wait {
    Signal(Signal),
    /// The timeout passed: a watchdog look is due.
    TimedOut,
    /// Anything else (EINTR): wait again, without a look, so looks never
    /// come faster than the timeout.
    Interrupted,
}

/// Waits up to `timeout` for one of `set`'s signals.
fn wait_signal(set: &SigSet, timeout: Duration) -> Wait {
    let timeout = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `set` is a valid signal set and `timeout` outlives the call;
    // no siginfo is asked for.
    let signo = unsafe { libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), &timeout) };
    if signo < 0 {
        return match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EAGAIN) => Wait::TimedOut,
            _ => Wait::Interrupted,
        };
    }
    Signal::try_from(signo).map_or(Wait::Interrupted, Wait::Signal)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Looks at the same counts `n` times; the last look's verdict.
    fn looks(watchdog: &mut Watchdog, beats: &[u64], n: u32) -> Option<usize> {
        (0..n).map(|_| watchdog.look(beats)).last().flatten()
    }

    #[test]
    fn a_core_whose_heartbeat_stops_is_found_after_the_stalled_looks() {
        let mut watchdog = Watchdog::new(2);
        assert_eq!(
            looks(&mut watchdog, &[5, 7], STALLED_LOOKS),
            None,
            "first sight"
        );
        assert_eq!(watchdog.look(&[5, 8]), Some(0));
    }

    #[test]
    fn any_beat_starts_the_count_again() {
        let mut watchdog = Watchdog::new(1);
        assert_eq!(looks(&mut watchdog, &[1], STALLED_LOOKS - 1), None);
        assert_eq!(watchdog.look(&[2]), None);
        assert_eq!(looks(&mut watchdog, &[2], STALLED_LOOKS - 1), None);
        assert_eq!(watchdog.look(&[2]), Some(0));
    }

    #[test]
    fn unwatched_cores_are_never_stalled() {
        let mut watchdog = Watchdog::new(2);
        let verdict = looks(&mut watchdog, &[UNWATCHED, 3], 2 * STALLED_LOOKS);
        assert_eq!(verdict, Some(1), "only the watched core");
    }

    #[test]
    fn a_heartbeat_is_watched_while_its_guard_lives() {
        let signals = Signals {
            beats: (0..2).map(|_| AtomicU64::new(UNWATCHED)).collect(),
            ..Signals::default()
        };
        let guard = signals.heartbeat(1);
        assert_eq!(signals.beats[1].load(Ordering::Relaxed), 0);
        drop(guard);
        assert_eq!(signals.beats[1].load(Ordering::Relaxed), UNWATCHED);
        assert_eq!(signals.beats[0].load(Ordering::Relaxed), UNWATCHED);
    }
}
