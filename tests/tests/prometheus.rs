//! What Prometheus sees: a real Envoy's `/stats/prometheus` keeps each dnslb cluster whole
//! in its `envoy_cluster_name` label, Debian's `promtool` (installed by `just prometheus`)
//! accepts the shim's `/metrics`, and Debian's Prometheus finds every member through the
//! shim's `/http_sd`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    collections::BTreeSet,
    io::Write,
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

use dnslb_tests::{
    free_port, http_get, shim_bootstrap_build, wait_until, Build, ChildGuard, DnsServer, Shim, Srv,
    Stack, StackOptions, TempDir,
};

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
    start_build(Build::Wasm)
}

/// [`start`] with `build` of the filter.
fn start_build(build: Build) -> (Stack, String, String, Vec<SocketAddr>) {
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
        |ports, _, config| shim_bootstrap_build(ports, Some(build), config, false),
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

dnslb_tests::test_each_build!(the_filters_member_gauge_is_labelled_with_the_upstream, the_filters_member_gauge_is_labelled_with_the_upstream_with_the_module => member_gauge);

/// Both builds expose one series per upstream, labelled like Envoy's cluster stats:
/// `dnslb_upstream_members{envoy_cluster_name="<stat name>"}` (the module's under Envoy's
/// `envoy_dynamicmodulescustom_` prefix).
fn member_gauge(build: Build) {
    let (stack, dns, _, _) = start_build(build);
    let port = dns.rsplit(':').next().unwrap();
    let name = format!("{}dnslb_upstream_members", build.prometheus_prefix());
    let series = [
        format!("{name}{{envoy_cluster_name=\"dns+backend~test_{port}\"}}"),
        format!("{name}{{envoy_cluster_name=\"srv+_http~_tcp~api~test\"}}"),
    ];
    let mut body = String::new();
    wait_until(
        "both upstreams' member gauges to read 2",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            body = http_get(stack.envoy.admin(), "/stats/prometheus", &[])?.body;
            Ok(series.iter().all(|s| sample(&body, s) == Some(2)))
        },
    )
    .unwrap_or_else(|e| panic!("{build:?}: {e}\n{body}"));
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

/// Debian's Prometheus server on a free loopback port with `config` (YAML), its data in
/// `dir`; ready once `/-/ready` answers 200.
fn prometheus(config: &str, dir: &TempDir) -> (ChildGuard, SocketAddr) {
    let addr = SocketAddr::new(ip(1).into(), free_port(ip(1).into()).unwrap());
    let file = dir.path().join("prometheus.yml");
    std::fs::write(&file, config).unwrap();
    let mut cmd = Command::new("prometheus");
    cmd.arg(format!("--config.file={}", file.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"));
    let process = ChildGuard::spawn("prometheus", cmd, dir.path())
        .expect("prometheus must be installed (just prometheus)");
    wait_until(
        "prometheus /-/ready",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            process.ensure_running()?;
            Ok(http_get(addr, "/-/ready", &[]).is_ok_and(|r| r.status == 200))
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", process.log_tail(20)));
    (process, addr)
}

#[test]
fn prometheus_discovers_every_member_through_http_sd() {
    let port = free_port(ip(2).into()).unwrap();
    let dns = DnsServer::start().unwrap();
    dns.set_a("backend.test", &[ip(2), ip(3)]);
    dns.set_a("a.api.test", &[ip(4)]);
    dns.set_a("b.api.test", &[ip(5)]);
    dns.set_srv(
        "_http._tcp.api.test",
        &[
            Srv {
                priority: 10,
                ..srv_record(port, "a.api.test")
            },
            Srv {
                priority: 20,
                weight: 7,
                ..srv_record(port, "b.api.test")
            },
        ],
    );
    let dir = TempDir::new("http-sd").unwrap();
    let upstreams = [
        format!("dns+backend.test:{port}"),
        "srv+_http._tcp.api.test".to_string(),
    ];
    let shim = Shim::start(
        &upstreams,
        dns.addr(),
        Duration::from_secs(1),
        dir.path(),
        &[],
    )
    .unwrap();
    // What README suggests: keep the upstream and the level as target labels.
    let config = format!(
        "global: {{ scrape_interval: 1m }}\n\
         scrape_configs:\n\
         - job_name: dnslb-members\n\
         \x20 http_sd_configs: [{{ url: 'http://{}/http_sd', refresh_interval: 1s }}]\n\
         \x20 relabel_configs:\n\
         \x20 - {{ source_labels: [__meta_dnslb_upstream], target_label: upstream }}\n\
         \x20 - {{ source_labels: [__meta_dnslb_priority_level], target_label: priority_level }}\n",
        shim.admin
    );
    let (_prometheus, api) = prometheus(&config, &dir);

    let want: BTreeSet<(String, String, String, String)> = [
        (2, &upstreams[0], "backend.test", "0"),
        (3, &upstreams[0], "backend.test", "0"),
        (4, &upstreams[1], "a.api.test", "0"),
        (5, &upstreams[1], "b.api.test", "1"),
    ]
    .into_iter()
    .map(|(last, upstream, name, level)| {
        (
            SocketAddr::new(ip(last).into(), port).to_string(),
            upstream.to_string(),
            name.to_string(),
            level.to_string(),
        )
    })
    .collect();
    let mut targets = serde_json::Value::Null;
    let mut seen = BTreeSet::new();
    wait_until(
        "Prometheus to list the four members",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            targets = http_get(api, "/api/v1/targets?state=active", &[])?.json()?;
            seen = targets["data"]["activeTargets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| {
                    let label = |key: &str| t["labels"][key].as_str().unwrap_or("").to_string();
                    let meta = |key: &str| {
                        t["discoveredLabels"][key]
                            .as_str()
                            .unwrap_or("")
                            .to_string()
                    };
                    (
                        label("instance"),
                        label("upstream"),
                        meta("__meta_dnslb_dns_name"),
                        label("priority_level"),
                    )
                })
                .collect();
            Ok(seen == want)
        },
    )
    .unwrap_or_else(|e| panic!("{e}\nseen {seen:?}\n{targets:#}"));
    // Weight and draining come along for relabeling.
    let b = targets["data"]["activeTargets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["labels"]["priority_level"] == "1")
        .unwrap();
    assert_eq!(b["discoveredLabels"]["__meta_dnslb_weight"], "7");
    assert_eq!(b["discoveredLabels"]["__meta_dnslb_draining"], "false");
}
