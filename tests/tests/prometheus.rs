//! What Prometheus sees: a real Envoy's `/stats/prometheus` keeps each dnslb cluster whole
//! in its `envoy_cluster_name` label, and Debian's `promtool` (installed by `just
//! prometheus`) accepts the shim's `/metrics`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    io::Write,
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

use dnslb_tests::{free_port, http_get, shim_bootstrap, wait_until, Srv, Stack, StackOptions};

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

fn srv_record(port: u16, target: &str) -> Srv {
    Srv {
        priority: 0,
        weight: 1,
        port,
        target: target.into(),
    }
}

/// A native-path stack (the bootstrap `xds-shim envoy-bootstrap` prints) serving
/// `dns+backend.test:PORT` (127.0.0.2 and .3) and `srv+_http._tcp.api.test` (.4 and .5).
fn start() -> (Stack, String, String, Vec<SocketAddr>) {
    let port = free_port(ip(2).into()).unwrap();
    let backends: Vec<SocketAddr> = [2, 3, 4, 5]
        .iter()
        .map(|&l| SocketAddr::new(ip(l).into(), port))
        .collect();
    let dns = format!("dns+backend.test:{port}");
    let srv = "srv+_http._tcp.api.test".to_string();
    let opts = StackOptions {
        interval: Duration::from_secs(1),
        ..StackOptions::new(
            vec![dns.clone(), srv.clone()],
            backends.clone(),
            PathBuf::from(env!("CARGO_BIN_EXE_fake-backend")),
        )
    };
    let stack = Stack::start_with(
        opts,
        |dns_server| {
            dns_server.set_a("backend.test", &[ip(2), ip(3)]);
            dns_server.set_a("a.api.test", &[ip(4)]);
            dns_server.set_a("b.api.test", &[ip(5)]);
            dns_server.set_srv(
                "_http._tcp.api.test",
                &[
                    srv_record(port, "a.api.test"),
                    srv_record(port, "b.api.test"),
                ],
            );
        },
        |ports, wasm, config| shim_bootstrap(ports, Some(wasm), config, false),
    )
    .unwrap();
    stack.wait_serving_native(&dns, &backends[..2]).unwrap();
    stack.wait_serving_native(&srv, &backends[2..]).unwrap();
    (stack, dns, srv, backends)
}

/// The value of the sample `series` (name and labels exactly as exposed).
fn sample(exposition: &str, series: &str) -> Option<u64> {
    exposition.lines().find_map(|line| {
        line.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[test]
fn envoy_exports_each_dnslb_cluster_under_its_whole_name() {
    let (stack, dns, srv, _) = start();
    for cluster in [&dns, &srv] {
        for i in 0..5 {
            let response = stack.get(cluster, &format!("/n/{i}")).unwrap();
            assert_eq!(response.status, 200, "{cluster}: {}", response.body);
        }
    }
    // The documented mapping, spelled out: `.` → `~`, `:` → `_`.
    let port = dns.rsplit(':').next().unwrap();
    let want = [
        format!("dns+backend~test_{port}"),
        "srv+_http~_tcp~api~test".to_string(),
    ];
    let mut body = String::new();
    wait_until(
        "both clusters' upstream_rq_total to reach 5",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            body = http_get(stack.envoy.admin(), "/stats/prometheus", &[])?.body;
            Ok(want.iter().all(|name| {
                let series =
                    format!("envoy_cluster_upstream_rq_total{{envoy_cluster_name=\"{name}\"}}");
                sample(&body, &series) >= Some(5)
            }))
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{body}"));
    // No part of a cluster's name leaked into a metric name (the mangling Envoy's default
    // tags do to names with dots).
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let metric = line.split(['{', ' ']).next().unwrap();
        for fragment in ["backend", "api_test", "_tcp"] {
            assert!(!metric.contains(fragment), "{line}");
        }
    }
}

#[test]
fn promtool_accepts_the_shims_metrics() {
    let (stack, _, _, _) = start();
    let metrics = stack.shim.metrics().unwrap();
    assert!(metrics.contains("dnslb_build_info"), "{metrics}");
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool must be installed (just prometheus)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let output = promtool.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}\n--- /metrics:\n{metrics}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}
