//! `xds-shim probe URL`, the compose health check (and, with `--post`, the Kubernetes
//! preStop drain), against the real shim: exit 0 on a 2xx answer, 1 with one line naming
//! the URL and the reason otherwise, 2 for a bad URL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{net::Ipv4Addr, process::Command, time::Duration};

use dnslb_tests::{free_port, stack::shim_binary, DnsServer, Shim, TempDir};

fn probe(url: &str) -> (Option<i32>, String) {
    probe_with(url, &[])
}

fn probe_with(url: &str, flags: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(shim_binary())
        .args(["probe", url, "--timeout", "2s"])
        .args(flags)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn probe_exits_by_the_answer() {
    let dns = DnsServer::start().unwrap();
    dns.set_a("backend.test", &[Ipv4Addr::new(127, 0, 0, 2)]);
    let dir = TempDir::new("probe").unwrap();
    let shim = Shim::start(
        &["dns+backend.test:8080".to_string()],
        dns.addr(),
        Duration::from_secs(1),
        dir.path(),
        &[],
    )
    .unwrap();
    let admin = shim.admin;
    assert_eq!(
        probe(&format!("http://{admin}/healthz")),
        (Some(0), String::new())
    );

    // --post sends a POST, which the shim's admin does not serve.
    let healthz = format!("http://{admin}/healthz");
    assert_eq!(
        probe_with(&healthz, &["--post"]),
        (
            Some(1),
            format!("probe failed: {healthz}: answered 404 Not Found\n")
        )
    );

    let url = format!("http://{admin}/nope");
    let (code, stderr) = probe(&url);
    assert_eq!(code, Some(1));
    assert_eq!(
        stderr,
        format!("probe failed: {url}: answered 404 Not Found\n")
    );

    let closed = format!(
        "http://127.0.0.1:{}/readyz",
        free_port(Ipv4Addr::LOCALHOST.into()).unwrap()
    );
    let (code, stderr) = probe(&closed);
    assert_eq!(code, Some(1));
    assert!(
        stderr.starts_with(&format!("probe failed: {closed}: ")),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    let (code, stderr) = probe("https://xds-shim:18001/readyz");
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("\"https://xds-shim:18001/readyz\""),
        "{stderr}"
    );
}
