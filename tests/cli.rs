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

#[test]
fn an_address_in_use_is_a_clear_startup_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = ringcast(&["--listen", &addr, "--cpus", "0"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("cannot listen on"), "{stderr}");
}
