//! The real binary rejects bad flags with exit status 2 and names the bad value.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output};

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xds-shim"));
    command.args(args).env_remove("DNSLB_UPSTREAM");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

fn assert_rejected(output: &Output, needles: &[&str]) {
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    for needle in needles {
        assert!(stderr.contains(needle), "stderr lacks {needle:?}: {stderr}");
    }
}

#[test]
fn bad_upstream_exits_2_naming_the_value() {
    let output = run(&["--upstream", "dns+bad_host.test:80"], &[]);
    assert_rejected(&output, &["--upstream", "dns+bad_host.test:80"]);
}

#[test]
fn tls_is_not_supported_yet() {
    let output = run(&["--upstream", "https://srv+_http._tcp.api.test"], &[]);
    assert_rejected(
        &output,
        &["https://srv+_http._tcp.api.test", "not supported yet"],
    );
}

#[test]
fn bad_value_from_environment_exits_2() {
    let output = run(&[], &[("DNSLB_UPSTREAM", "dns+ok.test:80,dns+nope")]);
    assert_rejected(&output, &["dns+nope", "missing :PORT"]);
    let output = run(
        &["--upstream", "dns+ok.test:80"],
        &[("DNSLB_INTERVAL", "0s")],
    );
    assert_rejected(&output, &["--interval", "0s"]);
}

#[test]
fn missing_upstream_exits_2() {
    let output = run(&[], &[]);
    assert_rejected(&output, &["--upstream"]);
}

#[test]
fn same_listen_addresses_exit_2() {
    let output = run(
        &[
            "--upstream",
            "dns+ok.test:80",
            "--xds-listen",
            "127.0.0.1:9",
            "--admin-listen",
            "127.0.0.1:9",
        ],
        &[],
    );
    assert_rejected(&output, &["127.0.0.1:9", "must differ"]);
}
