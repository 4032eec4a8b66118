//! The command line as a user meets it: help, bad values, startup errors.

use std::process::{Command, Output};

fn ringcast(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ringcast"))
        .args(args)
        .output()
        .expect("ringcast runs")
}

#[test]
fn help_explains_every_flag() {
    let out = ringcast(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--root",
        "--listen",
        "--cpus",
        "--follow-symlinks",
        "--backlog",
        "--help",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
}

#[test]
fn bad_values_print_one_line_and_exit_2() {
    for args in [
        &["--listen", "not-an-address"][..],
        &["--root", "/no/such/dir"],
        &["--cpus", "9999"],
        &["--cpus", "1-0"],
        &["--backlog", "-3"],
        &["--no-such-flag"],
    ] {
        let out = ringcast(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("ringcast: "), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// Each bad value gets one line naming the flag, the value and what is accepted.
#[test]
fn bad_values_say_what_is_accepted_in_their_one_line() {
    for (args, wanted) in [
        (
            &["--limit-rate-after", "5"][..],
            &["--limit-rate-after 5", "needs --limit-rate"][..],
        ),
        (&["--io", "bogus"], &["'bogus'", "--io", "buffered, direct"]),
        (
            &["--direct-read-ahead", "8"],
            &["--direct-read-ahead", "--io direct"],
        ),
        (&["--listen", "8080"], &["\"8080\"", ":8080", "ADDR:PORT"]),
        (&["--listen", "nonsense"], &["\"nonsense\"", "ADDR:PORT"]),
        (
            &["--listen", "127.0.0.1:18999", "--admin", "127.0.0.1:18999"],
            &["--admin 127.0.0.1:18999", "clashes with --listen"],
        ),
    ] {
        let out = ringcast(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        for text in wanted {
            assert!(stderr.contains(text), "{args:?}: {text:?} not in {stderr}");
        }
    }
}

#[test]
fn listen_takes_host_names_and_bare_colon_ports() {
    for listen in ["localhost:0", ":0"] {
        let line = startup_line(&["--listen", listen, "--root", env!("CARGO_MANIFEST_DIR")]);
        assert!(
            line.contains("serving") && line.contains("http://"),
            "{listen}: {line}"
        );
    }
}

#[test]
fn an_address_in_use_is_a_clear_startup_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = ringcast(&["--listen", &addr, "--cpus", "0"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains(&format!("--listen {addr}: cannot listen")),
        "{stderr}"
    );
    let out = ringcast(&["--listen", "127.0.0.1:0", "--admin", &addr, "--cpus", "0"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains(&format!("--admin {addr}: cannot listen")),
        "{stderr}"
    );
}

#[test]
fn a_log_in_a_missing_directory_names_the_flag_the_path_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("missing").join("access.log");
    let out = ringcast(&[
        "--listen",
        "127.0.0.1:0",
        "--cpus",
        "0",
        "--access-log",
        log.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("--access-log {}", log.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "(create {} first)",
            log.parent().unwrap().display()
        )),
        "{stderr}"
    );
}

/// README's "Serve a video library" command line, with only the paths (and
/// the ports, to stay out of each other's way) changed: it serves.
#[test]
fn the_readme_recipe_serves_as_written() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let recipe = readme
        .split("./target/release/ringcast --root /srv/videos")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the recipe in README.md");
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("movie.mp4"), b"not really a movie").unwrap();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("access.log");
    let recipe = recipe
        .replace("\\\n", " ")
        .replace("/var/log/ringcast/access.log", log.to_str().unwrap())
        .replace("0.0.0.0:8080", "127.0.0.1:0")
        .replace("127.0.0.1:9090", "127.0.0.1:0");
    let mut args = vec![
        "--root".to_string(),
        root.path().to_str().unwrap().to_string(),
    ];
    args.extend(shell_words(&recipe));
    let line = startup_line(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let served = line.contains("serving") && line.contains("http://");
    assert!(served, "args {args:?}: {line}");
}

/// Starts ringcast on CPU 0 with `args`, returns its first stderr line (the
/// startup line, or the error), and stops it.
fn startup_line(args: &[&str]) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringcast"))
        .args(args)
        .args(["--cpus", "0"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    line
}

/// Splits a shell command line into words: single quotes and whitespace are
/// all the recipe uses.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    words.push(std::mem::take(&mut word));
                    any = false;
                }
            }
            c => {
                word.push(c);
                any = true;
            }
        }
    }
    if any {
        words.push(word);
    }
    words
}
