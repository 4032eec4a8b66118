//! Running external programs from tests, bounded: tools (ffmpeg, ffprobe,
//! certutil) that must exit 0 within a limit, and the browser drivers under
//! `tools/browser` (node and the Chromium it starts), which are killed with
//! every process they started if they overrun or the test panics.

use std::io::Read;
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `command`, a browser driver under `tools/browser` (it exits when its
/// stdin closes), with stdin held open and stdout and stderr captured, for
/// up to `limit`, and returns its exit status, stdout and stderr. Chromium
/// and node are killed if it overruns or the test panics (see [`Driver`]).
pub fn run_driver(command: &mut Command, limit: Duration) -> (ExitStatus, String, String) {
    command.stdin(Stdio::piped());
    let child = spawn_captured(command);
    let mut driver = Driver {
        stdin: None,
        child: Some(child),
    };
    // The driver exits when its stdin closes: if this process dies, so does Chromium.
    driver.stdin = driver.child.as_mut().unwrap().stdin.take();
    let child = driver.child.as_mut().unwrap();
    let (stdout, stderr) = drain_output(child);
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if status.is_none() {
        drop(driver); // kills node and Chromium
        panic!(
            "the browser driver did not finish within {limit:?}:\n{}",
            stderr.join().unwrap()
        );
    }
    driver.child = None;
    (
        status.unwrap(),
        stdout.join().unwrap(),
        stderr.join().unwrap(),
    )
}

/// The node process running the driver. Dropped while it still runs (a
/// timeout, a panic), it is asked to close Chromium (SIGTERM), then node and
/// every process it started are killed.
pub struct Driver {
    stdin: Option<ChildStdin>,
    child: Option<Child>,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        let pid = child.id() as i32;
        let family = descendants(pid);
        self.stdin = None;
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let grace = Instant::now() + Duration::from_secs(6);
        while Instant::now() < grace && matches!(child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        for pid in family {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Every process below `pid`, from `/proc` (Chromium runs in its own process group).
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut parents: Vec<(i32, i32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some(after_name) = stat.rfind(')').map(|at| &stat[at + 2..]) else {
            continue;
        };
        if let Some(parent) = after_name
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
        {
            parents.push((child, parent));
        }
    }
    let mut found = vec![pid];
    let mut at = 0;
    while at < found.len() {
        let parent = found[at];
        found.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(c, _)| *c),
        );
        at += 1;
    }
    found.remove(0);
    found
}

/// Spawns with stdout and stderr piped.
pub fn spawn_captured(command: &mut Command) -> Child {
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"))
}

pub type Reader = std::thread::JoinHandle<String>;

/// Reads a child's stdout and stderr on threads, so it never blocks on a full pipe.
pub fn drain_output(child: &mut Child) -> (Reader, Reader) {
    fn reader(mut pipe: impl Read + Send + 'static) -> Reader {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    }
    (
        reader(child.stdout.take().unwrap()),
        reader(child.stderr.take().unwrap()),
    )
}

/// Waits up to `limit` for a tool and fails the test, showing its stderr,
/// unless it exits 0.
pub fn finish_ok(mut child: Child, what: &str, limit: Duration) -> Output {
    let (stdout, stderr) = drain_output(&mut child);
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = stdout.join().unwrap();
    let stderr = stderr.join().unwrap();
    assert!(status.success(), "{what} failed with {status}:\n{stderr}");
    Output {
        status,
        stdout: stdout.into_bytes(),
        stderr: stderr.into_bytes(),
    }
}
