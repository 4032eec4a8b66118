//! `--on-publish` jobs: a bounded queue of child processes, started by one
//! thread ("ringcast-jobs") that serves no connections, so serving cores
//! never fork.
//!
//! A core reserves a place ([`Jobs::reserve`]) before it accepts an upload
//! that matches a rule: when `--jobs` run and `--job-queue` wait, the upload
//! gets 503 and nothing is published. The reservation becomes a job when the
//! file is published ([`Ticket::submit`]) and is given back if the upload
//! fails. The job runs COMMAND with the file's absolute path as its one
//! argument: no shell, nothing from the request on a command line.

use crate::config::Jobs as Limits;
use std::collections::VecDeque;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the dispatcher looks at its children.
const POLL: Duration = Duration::from_millis(50);
/// Bytes of a job's output kept for the log line.
const OUTPUT_TAIL: u64 = 2048;
/// Lines of that tail shown.
const TAIL_LINES: usize = 5;
/// Finished jobs listed in `/stats`.
const RECENT: usize = 32;

/// The queue, shared by the cores, the dispatcher and the admin thread.
pub struct Jobs {
    limits: Limits,
    /// Jobs queued or running plus places reserved by uploads in progress.
    reserved: AtomicUsize,
    queued: AtomicUsize,
    running: AtomicUsize,
    succeeded: AtomicU64,
    failed: AtomicU64,
    next_id: AtomicU64,
    submit: Mutex<Sender<Job>>,
    /// The latest jobs, newest last, for `/stats`.
    recent: Mutex<VecDeque<Record>>,
}

/// One place in the queue, held by an upload until it publishes.
pub struct Ticket {
    jobs: Arc<Jobs>,
    command: PathBuf,
    submitted: bool,
}

struct Job {
    id: u64,
    command: PathBuf,
    file: PathBuf,
}

/// What `/stats` shows of a job.
#[derive(Debug, Clone)]
pub struct Record {
    pub id: u64,
    pub file: String,
    pub state: &'static str,
    /// The exit code, or the signal as a negative number.
    pub exit: Option<i32>,
    pub seconds: f64,
}

/// The counters `/metrics` shows.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub queued: usize,
    pub running: usize,
    pub succeeded: u64,
    pub failed: u64,
}

impl Jobs {
    /// Starts the dispatcher thread.
    pub fn start(limits: Limits) -> std::io::Result<(Arc<Jobs>, Dispatcher)> {
        let (submit, receive) = mpsc::channel();
        let jobs = Arc::new(Jobs {
            limits,
            reserved: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            succeeded: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            next_id: AtomicU64::new(1),
            submit: Mutex::new(submit),
            recent: Mutex::new(VecDeque::new()),
        });
        let stop = Arc::new(Mutex::new(None));
        let thread = {
            let jobs = jobs.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("ringcast-jobs".into())
                .spawn(move || dispatch(&jobs, &receive, &stop))?
        };
        Ok((
            jobs,
            Dispatcher {
                thread: Some(thread),
                stop,
            },
        ))
    }

    /// A place for one job of `command`, or `None` when the queue is full.
    pub fn reserve(self: &Arc<Self>, command: PathBuf) -> Option<Ticket> {
        let capacity = self.limits.running + self.limits.queued;
        self.reserved
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < capacity).then_some(n + 1)
            })
            .ok()?;
        Some(Ticket {
            jobs: self.clone(),
            command,
            submitted: false,
        })
    }

    pub fn counts(&self) -> Counts {
        Counts {
            queued: self.queued.load(Ordering::Relaxed),
            running: self.running.load(Ordering::Relaxed),
            succeeded: self.succeeded.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }

    pub fn recent(&self) -> Vec<Record> {
        lock(&self.recent).iter().cloned().collect()
    }

    fn remember(&self, record: Record) {
        let mut recent = lock(&self.recent);
        if let Some(old) = recent.iter_mut().find(|r| r.id == record.id) {
            *old = record;
            return;
        }
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(record);
    }
}

impl Record {
    fn of(job: &Job, state: &'static str, exit: Option<i32>, seconds: f64) -> Record {
        Record {
            id: job.id,
            file: job.file.display().to_string(),
            state,
            exit,
            seconds,
        }
    }
}

impl Ticket {
    /// Queues the job for the published `file` (absolute).
    pub fn submit(mut self, file: PathBuf) {
        self.submitted = true;
        let jobs = &self.jobs;
        let job = Job {
            id: jobs.next_id.fetch_add(1, Ordering::Relaxed),
            command: self.command.clone(),
            file,
        };
        jobs.queued.fetch_add(1, Ordering::Relaxed);
        jobs.remember(Record::of(&job, "queued", None, 0.0));
        if lock(&jobs.submit).send(job).is_err() {
            // The dispatcher is gone (shutting down): the job never runs.
            jobs.queued.fetch_sub(1, Ordering::Relaxed);
            jobs.reserved.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.submitted {
            self.jobs.reserved.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Owns the dispatcher thread; [`Dispatcher::finish`] stops it.
pub struct Dispatcher {
    thread: Option<std::thread::JoinHandle<()>>,
    stop: Arc<Mutex<Option<Instant>>>,
}

impl Dispatcher {
    /// Starts no more jobs, lets running ones finish until `deadline`,
    /// kills what is left, and joins the thread.
    pub fn finish(mut self, deadline: Instant) {
        *lock(&self.stop) = Some(deadline);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A poisoned lock still guards consistent data here (counters, lists).
pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct Running {
    job: Job,
    child: Child,
    output: std::fs::File,
    started: Instant,
}

fn dispatch(jobs: &Jobs, receive: &Receiver<Job>, stop: &Mutex<Option<Instant>>) {
    let mut waiting: VecDeque<Job> = VecDeque::new();
    let mut running: Vec<Running> = Vec::new();
    loop {
        let stopping = *lock(stop);
        if stopping.is_none() {
            match receive.recv_timeout(POLL) {
                Ok(job) => waiting.push_back(job),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => std::thread::sleep(POLL),
            }
            while let Ok(job) = receive.try_recv() {
                waiting.push_back(job);
            }
            while running.len() < jobs.limits.running {
                let Some(job) = waiting.pop_front() else {
                    break;
                };
                jobs.queued.fetch_sub(1, Ordering::Relaxed);
                if let Some(started) = start(jobs, job) {
                    running.push(started);
                }
            }
        } else {
            std::thread::sleep(POLL);
        }
        running.retain_mut(|job| !reap(jobs, job, stopping));
        if let Some(deadline) = stopping {
            for job in waiting.drain(..) {
                jobs.queued.fetch_sub(1, Ordering::Relaxed);
                eprintln!(
                    "ringcast: job {} for {}: not started, shutting down",
                    job.id,
                    job.file.display()
                );
            }
            if running.is_empty() || Instant::now() >= deadline + POLL {
                return;
            }
        }
    }
}

/// Spawns the job's process in a group of its own, so a timeout kills
/// whatever it started too.
fn start(jobs: &Jobs, job: Job) -> Option<Running> {
    let output = match output_file() {
        Ok(file) => file,
        Err(e) => {
            fail(
                jobs,
                &job,
                &format!("cannot make its output file: {e}"),
                0.0,
            );
            return None;
        }
    };
    let spawned = output
        .try_clone()
        .and_then(|out| Ok((out.try_clone()?, out)))
        .and_then(|(stdout, stderr)| {
            Command::new(&job.command)
                .arg(&job.file)
                .stdin(Stdio::null())
                .stdout(Stdio::from(stdout))
                .stderr(Stdio::from(stderr))
                .process_group(0)
                .spawn()
        });
    match spawned {
        Ok(child) => {
            jobs.running.fetch_add(1, Ordering::Relaxed);
            jobs.remember(Record::of(&job, "running", None, 0.0));
            Some(Running {
                job,
                child,
                output,
                started: Instant::now(),
            })
        }
        Err(e) => {
            fail(
                jobs,
                &job,
                &format!("cannot start {}: {e}", job.command.display()),
                0.0,
            );
            None
        }
    }
}

/// An anonymous file for the job's stdout and stderr.
fn output_file() -> std::io::Result<std::fs::File> {
    let fd: OwnedFd = nix::sys::memfd::memfd_create(
        c"ringcast-job",
        nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
    )?;
    Ok(std::fs::File::from(fd))
}

/// Checks on a running job; returns true once it is done.
fn reap(jobs: &Jobs, job: &mut Running, stopping: Option<Instant>) -> bool {
    let elapsed = job.started.elapsed();
    let shutdown = stopping.is_some_and(|deadline| Instant::now() >= deadline);
    let (status, killed) = match job.child.try_wait() {
        Ok(Some(status)) => (status, None),
        Ok(None) if elapsed >= jobs.limits.timeout || shutdown => {
            kill_group(&job.child);
            let why = if shutdown {
                "killed at shutdown".to_string()
            } else {
                format!("killed after --job-timeout {:?}", jobs.limits.timeout)
            };
            match job.child.wait() {
                Ok(status) => (status, Some(why)),
                Err(_) => return false,
            }
        }
        Ok(None) => return false,
        Err(e) => {
            eprintln!("ringcast: job {}: cannot wait for it: {e}", job.job.id);
            return false;
        }
    };
    jobs.running.fetch_sub(1, Ordering::Relaxed);
    jobs.reserved.fetch_sub(1, Ordering::AcqRel);
    let seconds = elapsed.as_secs_f64();
    let tail = output_tail(&mut job.output);
    let exit = status
        .code()
        .or_else(|| std::os::unix::process::ExitStatusExt::signal(&status).map(|s| -s));
    let ok = status.success() && killed.is_none();
    if ok {
        jobs.succeeded.fetch_add(1, Ordering::Relaxed);
    } else {
        jobs.failed.fetch_add(1, Ordering::Relaxed);
    }
    eprintln!(
        "ringcast: job {} {} {}: {} in {seconds:.1}s{}",
        job.job.id,
        job.job.command.display(),
        job.job.file.display(),
        killed.unwrap_or_else(|| status.to_string()),
        if tail.is_empty() {
            String::new()
        } else {
            format!("; output: {tail}")
        }
    );
    let state = if ok { "succeeded" } else { "failed" };
    jobs.remember(Record::of(&job.job, state, exit, seconds));
    true
}

fn fail(jobs: &Jobs, job: &Job, why: &str, seconds: f64) {
    jobs.reserved.fetch_sub(1, Ordering::AcqRel);
    jobs.failed.fetch_add(1, Ordering::Relaxed);
    eprintln!("ringcast: job {} for {}: {why}", job.id, job.file.display());
    jobs.remember(Record::of(job, "failed", None, seconds));
}

fn kill_group(child: &Child) {
    let Ok(pid) = i32::try_from(child.id()) else {
        return;
    };
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
}

/// The last lines of the job's output, joined with ` | ` for one log line.
fn output_tail(output: &mut std::fs::File) -> String {
    let len = output.seek(SeekFrom::End(0)).unwrap_or(0);
    let from = len.saturating_sub(OUTPUT_TAIL);
    let mut bytes = Vec::new();
    if output.seek(SeekFrom::Start(from)).is_err() || output.read_to_end(&mut bytes).is_err() {
        return String::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(running: usize, queued: usize, timeout: Duration) -> Limits {
        Limits {
            running,
            queued,
            timeout,
        }
    }

    fn script(dir: &std::path::Path, name: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn wait_for(jobs: &Jobs, done: u64) -> Counts {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let counts = jobs.counts();
            if counts.succeeded + counts.failed >= done || Instant::now() > deadline {
                return counts;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn reservations_bound_the_queue_and_are_given_back() {
        let (jobs, dispatcher) = Jobs::start(limits(1, 1, Duration::from_secs(5))).unwrap();
        let a = jobs.reserve("/bin/true".into()).unwrap();
        let b = jobs.reserve("/bin/true".into()).unwrap();
        assert!(jobs.reserve("/bin/true".into()).is_none(), "full");
        drop(b);
        let c = jobs
            .reserve("/bin/true".into())
            .expect("a dropped ticket frees its place");
        drop((a, c));
        dispatcher.finish(Instant::now());
    }

    #[test]
    fn jobs_run_with_the_file_as_their_one_argument() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let command = script(
            dir.path(),
            "job",
            &format!(
                "printf '%s|%s' \"$#\" \"$1\" > {}; echo done >&2",
                out.display()
            ),
        );
        let (jobs, dispatcher) = Jobs::start(limits(1, 4, Duration::from_secs(5))).unwrap();
        let odd = dir.path().join("a b;$(x).mp4");
        jobs.reserve(command).unwrap().submit(odd.clone());
        let counts = wait_for(&jobs, 1);
        assert_eq!((counts.succeeded, counts.failed), (1, 0));
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            format!("1|{}", odd.display())
        );
        let recent = jobs.recent();
        assert_eq!(recent.len(), 1);
        assert_eq!((recent[0].state, recent[0].exit), ("succeeded", Some(0)));
        dispatcher.finish(Instant::now());
        assert_eq!(jobs.reserved.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn failures_and_timeouts_are_counted_and_free_their_place() {
        let dir = tempfile::tempdir().unwrap();
        let failing = script(dir.path(), "fail", "echo oops >&2; exit 3");
        let hanging = script(dir.path(), "hang", "sleep 30 & sleep 30");
        let (jobs, dispatcher) = Jobs::start(limits(2, 0, Duration::from_millis(300))).unwrap();
        jobs.reserve(failing).unwrap().submit("/x".into());
        jobs.reserve(hanging).unwrap().submit("/y".into());
        let started = Instant::now();
        let counts = wait_for(&jobs, 2);
        assert_eq!((counts.succeeded, counts.failed), (0, 2));
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(counts.running, 0);
        let exits: Vec<Option<i32>> = jobs.recent().iter().map(|r| r.exit).collect();
        assert!(
            exits.contains(&Some(3)) && exits.contains(&Some(-9)),
            "{exits:?}"
        );
        assert!(jobs.reserve("/bin/true".into()).is_some());
        dispatcher.finish(Instant::now());
    }
}
