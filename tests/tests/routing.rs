//! End to end through the real Envoy, the real xds-shim and a DNS server on
//! loopback: `dns+` requests are routed round robin over what DNS returns,
//! whichever way Envoy takes its clusters from the shim (the demo's ADS, Delta
//! ADS, plain CDS and EDS in either flavour). Filter routing (`cluster_header:
//! x-dnslb-cluster`, the snippets' configuration) runs with either build of the filter.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    time::{Duration, Instant},
};

use dnslb_tests::{
    backend::HEADER_SEEN_ENDPOINT, free_port, http_get, http_request, wait_until, BackendReport,
    Build, Stack, StackOptions,
};
use serde_yaml::Value;

const NAME: &str = "backend.test";
const POLL: Duration = Duration::from_millis(50);

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

/// Backends on 127.0.0.N for each N, all on one port (free on 127.0.0.2).
fn backends(lasts: &[u8]) -> (u16, Vec<SocketAddr>) {
    let port = free_port(ip(2).into()).unwrap();
    let addrs = lasts
        .iter()
        .map(|&l| SocketAddr::new(ip(l).into(), port))
        .collect();
    (port, addrs)
}

fn options(port: u16, backends: Vec<SocketAddr>, interval: Duration) -> StackOptions {
    StackOptions {
        interval,
        ..StackOptions::new(
            vec![format!("dns+{NAME}:{port}")],
            backends,
            PathBuf::from(env!("CARGO_BIN_EXE_fake-backend")),
        )
    }
}

fn authority(port: u16) -> String {
    format!("dns+{NAME}:{port}")
}

/// Sends 10 requests per member of `addrs` through Envoy to `cluster` and
/// asserts each member answered 10 of them: round robin, one Envoy worker.
fn assert_ten_each(stack: &Stack, cluster: &str, addrs: &[SocketAddr]) {
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    for i in 0..10 * addrs.len() {
        let report = stack.get_backend(cluster, &format!("/rr/{i}")).unwrap();
        assert_eq!(
            report.host,
            cluster.trim_start_matches("dns+"),
            "the backend must see the authority without dns+"
        );
        *counts.entry(report.backend).or_default() += 1;
    }
    let expected: BTreeMap<String, u32> = addrs.iter().map(|a| (a.to_string(), 10)).collect();
    assert_eq!(counts, expected);
}

dnslb_tests::test_each_build!(thirty_requests_over_three_a_records_give_ten_each, thirty_requests_over_three_a_records_give_ten_each_with_the_module => thirty_requests_give_ten_each);

fn thirty_requests_give_ten_each(build: Build) {
    let (port, addrs) = backends(&[2, 3, 4]);
    let stack = Stack::start_build(
        build,
        options(port, addrs.clone(), Duration::from_secs(5)),
        |dns| dns.set_a(NAME, &[ip(2), ip(3), ip(4)]),
    )
    .unwrap();
    let cluster = authority(port);
    stack.wait_serving(&cluster, &addrs).unwrap();
    assert_ten_each(&stack, &cluster, &addrs);
}

/// The demo with `dynamic` (an envoy/snippets `dynamic_resources`) in place
/// of its ADS: Envoy must hold the shim's streams named in `services` (as
/// the shim's status lists them), round robin 10/10/10 over three A records,
/// and take a fourth record within a few rounds.
fn round_robin_with_dynamic_resources(dynamic: Value, services: &[&str]) {
    let (port, addrs) = backends(&[2, 3, 4, 5]);
    let stack = Stack::start_with(
        options(port, addrs.clone(), Duration::from_secs(1)),
        |dns| dns.set_a(NAME, &[ip(2), ip(3), ip(4)]),
        |ports, wasm, filter_config| {
            support::demo_with_dynamic_resources(ports, wasm, filter_config, dynamic)
        },
    )
    .unwrap();
    let cluster = authority(port);
    stack.wait_serving(&cluster, &addrs[..3]).unwrap();
    // The demo's node; the filter's own stream is node dnslb-filter.
    assert_eq!(stack.shim_streams("dnslb-demo").unwrap(), services);
    assert_ten_each(&stack, &cluster, &addrs[..3]);

    // A 4th record reaches Envoy's cluster and the filter's members.
    stack.dns.set_a(NAME, &[ip(2), ip(3), ip(4), ip(5)]);
    let wait = Duration::from_secs(30);
    stack
        .envoy
        .wait_cluster_hosts(&cluster, &addrs, wait)
        .unwrap();
    let fourth = addrs[3].to_string();
    wait_until("the filter to list the 4th member", wait, POLL, || {
        Ok(stack.filter_member(&cluster, &fourth)?.is_some())
    })
    .unwrap();
    assert_ten_each(&stack, &cluster, &addrs);
    // Envoy accepted every update.
    let nacks = stack.shim.metric("dnslb_xds_nacks_total").unwrap();
    assert_eq!(nacks, Some(0.0));
}

#[test]
fn delta_ads_round_robins_and_follows_dns() {
    let dynamic = support::snippet("dynamic-resources-delta.yaml");
    round_robin_with_dynamic_resources(dynamic, &["ADS delta"]);
}

#[test]
fn plain_cds_and_eds_without_ads_round_robin_and_follow_dns() {
    let dynamic = support::snippet("dynamic-resources-cds.yaml");
    round_robin_with_dynamic_resources(dynamic, &["CDS", "EDS"]);
}

#[test]
fn plain_delta_cds_without_ads_round_robins_and_follows_dns() {
    let dynamic = support::delta_cds_dynamic_resources();
    round_robin_with_dynamic_resources(dynamic, &["CDS delta", "EDS delta"]);
}

/// Sends requests until `done(backend)` holds for `streak` answers in a row;
/// returns how long that took. Bounded by `limit` in time.
fn until_streak(
    stack: &Stack,
    cluster: &str,
    streak: usize,
    limit: Duration,
    done: impl Fn(&str) -> bool,
) -> Duration {
    let start = Instant::now();
    let mut run = 0;
    while start.elapsed() < limit {
        let report = stack.get_backend(cluster, "/change").unwrap();
        run = if done(&report.backend) { run + 1 } else { 0 };
        if run >= streak {
            return start.elapsed();
        }
    }
    panic!(
        "no streak of {streak} within {limit:?}; envoy log:\n{}",
        stack.envoy.log_tail(30)
    );
}

#[test]
fn added_record_takes_traffic_and_removed_one_stops() {
    let interval = Duration::from_secs(1);
    let bound = interval + Duration::from_secs(2);
    let (port, addrs) = backends(&[2, 3, 4, 5]);
    let stack = Stack::start(options(port, addrs.clone(), interval), |dns| {
        dns.set_a(NAME, &[ip(2), ip(3), ip(4)])
    })
    .unwrap();
    let cluster = authority(port);
    stack.wait_serving(&cluster, &addrs[..3]).unwrap();

    // A 4th A record: the new backend serves within interval + 2 s.
    stack.dns.set_a(NAME, &[ip(2), ip(3), ip(4), ip(5)]);
    let fourth = addrs[3].to_string();
    let took = until_streak(&stack, &cluster, 1, bound, |b| b == fourth);
    println!("added record served after {took:?}");

    // Remove the 1st: after interval + 2 s it gets nothing. A streak of
    // 2n answers without it means the filter and Envoy both dropped it.
    stack.dns.set_a(NAME, &[ip(3), ip(4), ip(5)]);
    let first = addrs[0].to_string();
    let took = until_streak(&stack, &cluster, 8, bound, |b| b != first);
    println!("removed record unused after {took:?}");
    for _ in 0..30 {
        assert_ne!(
            stack.get_backend(&cluster, "/after").unwrap().backend,
            first
        );
    }
    // It is not gone yet: the shim keeps it DRAINING (--drain, 30 s by
    // default) so sticky sessions may finish, and new picks avoid it.
    let removed = stack
        .filter_member(&cluster, &first)
        .unwrap()
        .unwrap_or_else(|| panic!("{first} is no longer listed"));
    assert_eq!(removed["draining"], true, "{removed}");
}

dnslb_tests::test_each_build!(client_sent_dnslb_headers_cannot_steer_traffic, client_sent_dnslb_headers_cannot_steer_traffic_with_the_module => client_headers_cannot_steer);

fn client_headers_cannot_steer(build: Build) {
    // 127.0.0.9 runs a backend on the same port but is not in DNS.
    let (port, addrs) = backends(&[2, 3, 9]);
    let stack = Stack::start_build(
        build,
        options(port, addrs.clone(), Duration::from_secs(5)),
        |dns| dns.set_a(NAME, &[ip(2), ip(3)]),
    )
    .unwrap();
    let cluster = authority(port);
    stack.wait_serving(&cluster, &addrs[..2]).unwrap();

    let outsider = addrs[2].to_string();
    for i in 0..20 {
        let response = http_get(
            stack.listener,
            &format!("/steer/{i}"),
            &[
                ("Host", &cluster),
                ("x-dnslb-endpoint", &outsider),
                ("X-Dnslb-Endpoint", &format!("{outsider},{outsider}")),
            ],
        )
        .unwrap();
        assert_eq!(response.status, 200, "{}", response.body);
        let report: BackendReport = response.json().unwrap();
        assert_ne!(report.backend, outsider);
        let seen = response.header(HEADER_SEEN_ENDPOINT).unwrap_or_default();
        assert!(
            !seen.contains(&outsider),
            "client header leaked upstream: {seen}"
        );
    }

    // A client cannot pick a cluster either: without a dns+ authority its
    // x-dnslb-cluster is dropped and the catch-all route answers 404.
    let response = http_get(
        stack.listener,
        "/",
        &[
            ("Host", &format!("{NAME}:{port}")),
            ("x-dnslb-cluster", &cluster),
        ],
    )
    .unwrap();
    assert_eq!(response.status, 404, "{}", response.body);
}

dnslb_tests::test_each_build!(malformed_upstreams_get_400_and_reach_no_backend, malformed_upstreams_get_400_and_reach_no_backend_with_the_module => malformed_upstreams_get_400);

fn malformed_upstreams_get_400(build: Build) {
    let (port, addrs) = backends(&[2]);
    let stack = Stack::start_build(
        build,
        options(port, addrs.clone(), Duration::from_secs(5)),
        |dns| dns.set_a(NAME, &[ip(2)]),
    )
    .unwrap();
    let cluster = authority(port);
    stack.wait_serving(&cluster, &addrs).unwrap();
    let sent_before = upstream_requests(&stack, &cluster);

    let cases = [
        (format!("dns+{NAME}:0"), "\"0\""),
        (format!("dns+{NAME}:65536"), "65536"),
        (format!("dns+{NAME}"), "missing port"),
        (format!("dns+:{port}"), "empty name"),
        (format!("dns+bad_name!.test:{port}"), "bad_name!"),
        ("srv+".to_string(), "empty name"),
    ];
    for (bad, why) in &cases {
        let response = stack.get(bad, "/").unwrap();
        assert_eq!(response.status, 400, "{bad}: {}", response.body);
        assert!(
            response.body.starts_with("dnslb: bad upstream"),
            "{bad}: {}",
            response.body
        );
        assert!(response.body.contains(why), "{bad}: {}", response.body);
    }
    assert_eq!(
        upstream_requests(&stack, &cluster),
        sent_before,
        "a bad request reached a backend"
    );
    assert!(sent_before > 0, "the warm-up requests were counted");
    // Envoy keeps serving.
    assert_eq!(
        stack.get_backend(&cluster, "/ok").unwrap().backend,
        addrs[0].to_string()
    );
}

/// Envoy's count of requests sent to the cluster.
fn upstream_requests(stack: &Stack, cluster: &str) -> u64 {
    stack
        .envoy
        .cluster_stat(cluster, "upstream_rq_total")
        .unwrap()
        .unwrap_or_else(|| panic!("no upstream_rq_total for {cluster}"))
        .parse()
        .unwrap()
}

#[test]
fn absolute_form_requests_from_http_proxy_clients_are_routed() {
    let (port, addrs) = backends(&[2, 3]);
    let stack = Stack::start(
        options(port, addrs.clone(), Duration::from_secs(5)),
        |dns| dns.set_a(NAME, &[ip(2), ip(3)]),
    )
    .unwrap();
    let cluster = authority(port);
    stack
        .envoy
        .wait_cluster_hosts(&cluster, &addrs, Duration::from_secs(30))
        .unwrap();
    // What an application with HTTP_PROXY=http://envoy sends; Go clients
    // send the same authority in Host.
    let target = format!("http://{cluster}/api/v1/write?db=1");
    let response = http_get(stack.listener, &target, &[("Host", &cluster)]).unwrap();
    assert_eq!(response.status, 200, "{}", response.body);
    let report: BackendReport = response.json().unwrap();
    assert_eq!(report.host, format!("{NAME}:{port}"));
    assert_eq!(report.path, "/api/v1/write");
    assert_eq!(report.query.as_deref(), Some("db=1"));

    // A body is forwarded untouched, even one that looks like a request.
    let body = format!(
        "GET http://dns+elsewhere.test:1/ HTTP/1.1\r\n\r\n{}",
        "x".repeat(5000)
    );
    let response = http_request(
        stack.listener,
        "POST",
        &target,
        &[("Host", "ignored.example")],
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!(response.status, 200, "{}", response.body);
    let report: BackendReport = response.json().unwrap();
    assert_eq!(report.method, "POST");
    assert_eq!(report.body_len, body.len());
    assert_eq!(
        report.host,
        format!("{NAME}:{port}"),
        "the URL's authority wins over Host"
    );
}
