//! The shim's `/status` page as a person sees it: rendered by headless Chromium (Debian's
//! `chromium`, installed by `just chromium`) while a real Envoy is connected.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    process::Command,
    time::Duration,
};

use dnslb_tests::{free_port, wait_until, Stack, StackOptions, TempDir};

const WAIT: Duration = Duration::from_secs(30);

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

/// The DOM of `url` after Chromium rendered it.
fn chromium_dump(url: &str) -> String {
    let profile = TempDir::new("chromium").unwrap();
    let output = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(url)
        .output()
        .expect("chromium must be installed (just chromium)");
    assert!(output.status.success(), "chromium failed: {output:?}");
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn status_page_shows_endpoints_draining_and_connected_envoy() {
    let port = free_port(ip(2).into()).unwrap();
    let (a, b) = (
        SocketAddr::new(ip(2).into(), port),
        SocketAddr::new(ip(3).into(), port),
    );
    let cluster = format!("dns+backend.test:{port}");
    let opts = StackOptions {
        interval: Duration::from_secs(1),
        ..StackOptions::new(
            vec![cluster.clone()],
            vec![a, b],
            PathBuf::from(env!("CARGO_BIN_EXE_fake-backend")),
        )
    };
    let stack = Stack::start(opts, |dns| dns.set_a("backend.test", &[ip(2), ip(3)])).unwrap();
    stack
        .envoy
        .wait_cluster_hosts(&cluster, &[a, b], WAIT)
        .unwrap();

    // One address leaves DNS: it is shown draining.
    stack.dns.set_a("backend.test", &[ip(2)]);
    let status = || stack.shim.status().unwrap();
    wait_until(
        "the removed address to drain",
        WAIT,
        Duration::from_millis(100),
        || {
            let s = status();
            let draining = s["upstreams"][0]["members"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["draining"] == true));
            // Envoy ACKed the assignment that carries the draining member.
            let acked = s["clients"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["acked"]["EDS"] == s["versions"]["endpoints"])
            });
            Ok(draining && acked)
        },
    )
    .unwrap();

    let eds_version = status()["versions"]["endpoints"]
        .as_str()
        .unwrap()
        .to_string();
    let dom = chromium_dump(&format!("http://{}/status", stack.shim.admin));
    for needle in [
        format!("<h3 class=\"upstream\">{cluster}</h3>"),
        format!("<td>{a}</td><td>backend.test</td><td>0</td><td>-</td><td><span class=\"ok\">serving</span>"),
        format!("<td>{b}</td><td>backend.test</td><td>0</td><td>-</td><td><span class=\"warn\">DRAINING</span>"),
        "last resolution <span class=\"ok\">ok</span>".to_string(),
        "<td>dnslb-demo</td><td>ADS</td>".to_string(),
        format!("<code>{eds_version}</code>"),
    ] {
        assert!(dom.contains(&needle), "{needle}\nnot in the rendered page:\n{dom}");
    }
}
