//! xds-shim against the real Envoy: `srv+` upstreams (ports from the records, SRV priority
//! as Envoy priority levels), draining of addresses gone from DNS, and the DNS failure
//! policy (SERVFAIL keeps serving the last good members).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    time::{Duration, Instant},
};

use dnslb_tests::{free_port, wait_until, Srv, Stack, StackOptions};

const SRV_NAME: &str = "_http._tcp.api.test";
const INTERVAL: Duration = Duration::from_secs(1);
const WAIT: Duration = Duration::from_secs(30);

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

fn srv(priority: u16, port: u16, target: &str) -> Srv {
    Srv {
        priority,
        weight: 1,
        port,
        target: target.into(),
    }
}

fn options(upstream: &str, backends: Vec<SocketAddr>, shim_args: &[&str]) -> StackOptions {
    StackOptions {
        interval: INTERVAL,
        shim_args: shim_args.iter().map(|a| a.to_string()).collect(),
        ..StackOptions::new(
            vec![upstream.to_string()],
            backends,
            PathBuf::from(env!("CARGO_BIN_EXE_fake-backend")),
        )
    }
}

/// Which backend answered each of `n` requests.
fn tally(stack: &Stack, authority: &str, n: usize) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for i in 0..n {
        let report = stack.get_backend(authority, &format!("/n/{i}")).unwrap();
        *counts.entry(report.backend).or_default() += 1;
    }
    counts
}

/// Sends requests until `streak` answers in a row come from `want`; bounded by `limit`.
fn until_only(stack: &Stack, authority: &str, want: &str, streak: usize, limit: Duration) {
    let start = Instant::now();
    let mut run = 0;
    while start.elapsed() < limit {
        let report = stack.get_backend(authority, "/wait").unwrap();
        run = if report.backend == want { run + 1 } else { 0 };
        if run >= streak {
            println!("only {want} after {:?}", start.elapsed());
            return;
        }
    }
    panic!(
        "no streak of {streak} from {want} within {limit:?}; envoy log:\n{}",
        stack.envoy.log_tail(30)
    );
}

#[test]
fn srv_backends_on_different_ports_all_serve() {
    let p1 = free_port(ip(2).into()).unwrap();
    let p2 = free_port(ip(2).into()).unwrap();
    // a.test twice (two ports, as Consul answers), b.test once.
    let backends = vec![
        SocketAddr::new(ip(2).into(), p1),
        SocketAddr::new(ip(2).into(), p2),
        SocketAddr::new(ip(3).into(), p1),
    ];
    let cluster = format!("srv+{SRV_NAME}");
    let stack = Stack::start(options(&cluster, backends.clone(), &[]), |dns| {
        dns.set_a("a.test", &[ip(2)]);
        dns.set_a("b.test", &[ip(3)]);
        dns.set_srv(
            SRV_NAME,
            &[
                srv(10, p1, "a.test"),
                srv(10, p2, "a.test"),
                srv(10, p1, "b.test"),
            ],
        );
    })
    .unwrap();
    stack
        .envoy
        .wait_cluster_hosts(&cluster, &backends, WAIT)
        .unwrap();
    stack.wait_filter_members(&cluster).unwrap();

    let counts = tally(&stack, &cluster, 30);
    let served: Vec<&String> = counts.keys().collect();
    let want: Vec<String> = {
        let mut w: Vec<String> = backends.iter().map(ToString::to_string).collect();
        w.sort();
        w
    };
    assert_eq!(served, want.iter().collect::<Vec<_>>(), "{counts:?}");
    assert!(counts.values().all(|&n| n >= 5), "{counts:?}");

    // The backend sees the SRV name as the authority, and the endpoints carry it as their
    // hostname (what Envoy's auto_host_rewrite writes).
    let report = stack.get_backend(&cluster, "/host").unwrap();
    assert_eq!(report.host, SRV_NAME);
    let clusters = stack.envoy.clusters().unwrap();
    assert!(
        clusters.contains(&format!("{cluster}::127.0.0.3:{p1}::hostname::{SRV_NAME}")),
        "{clusters}"
    );
}

#[test]
fn lower_priority_serves_only_when_first_level_is_gone() {
    let port = free_port(ip(2).into()).unwrap();
    let primary = SocketAddr::new(ip(2).into(), port);
    let backup = SocketAddr::new(ip(3).into(), port);
    let cluster = format!("srv+{SRV_NAME}");
    let stack = Stack::start(
        options(&cluster, vec![primary, backup], &["--drain", "30s"]),
        |dns| {
            dns.set_a("primary.test", &[ip(2)]);
            dns.set_a("backup.test", &[ip(3)]);
            dns.set_srv(
                SRV_NAME,
                &[srv(10, port, "primary.test"), srv(20, port, "backup.test")],
            );
        },
    )
    .unwrap();
    stack
        .envoy
        .wait_cluster_hosts(&cluster, &[primary, backup], WAIT)
        .unwrap();
    stack.wait_filter_members(&cluster).unwrap();
    let counts = tally(&stack, &cluster, 20);
    assert_eq!(counts.get(&primary.to_string()), Some(&20), "{counts:?}");

    // Level 0 leaves DNS: the backup level takes over; the primary stays in the cluster,
    // draining, for --drain.
    stack.dns.set_srv(SRV_NAME, &[srv(20, port, "backup.test")]);
    until_only(&stack, &cluster, &backup.to_string(), 10, INTERVAL * 5);
    let counts = tally(&stack, &cluster, 20);
    assert_eq!(counts.get(&backup.to_string()), Some(&20), "{counts:?}");
    let clusters = stack.envoy.clusters().unwrap();
    assert!(
        clusters.contains(&format!(
            "{cluster}::{primary}::health_flags::/eds_status_draining"
        )),
        "the gone primary must still be listed, draining:\n{clusters}"
    );
    let status = stack.shim.status().unwrap();
    let members = &status["upstreams"][0]["members"];
    let draining: Vec<&serde_json::Value> = members
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["draining"] == true)
        .collect();
    assert_eq!(draining.len(), 1, "{members}");
    assert_eq!(draining[0]["address"], primary.to_string());
}

#[test]
fn servfail_keeps_serving_the_last_good_members() {
    let port = free_port(ip(2).into()).unwrap();
    let backend = SocketAddr::new(ip(2).into(), port);
    let cluster = format!("dns+backend.test:{port}");
    let stack = Stack::start(options(&cluster, vec![backend], &[]), |dns| {
        dns.set_a("backend.test", &[ip(2)])
    })
    .unwrap();
    stack
        .envoy
        .wait_cluster_hosts(&cluster, &[backend], WAIT)
        .unwrap();
    stack.wait_filter_members(&cluster).unwrap();

    stack.dns.set_servfail(true);
    wait_until(
        "the shim to mark the upstream stale",
        WAIT,
        INTERVAL / 10,
        || Ok(!stack.shim.status().unwrap()["upstreams"][0]["stale_since_unix_ms"].is_null()),
    )
    .unwrap();
    // Several failed rounds (and retries) later, still served by the last good member.
    let queries = stack.dns.queries();
    wait_until("more failed queries", WAIT, INTERVAL / 10, || {
        Ok(stack.dns.queries() >= queries + 3)
    })
    .unwrap();
    let upstream = &stack.shim.status().unwrap()["upstreams"][0];
    assert_eq!(upstream["last_resolution"]["result"], "servfail");
    assert_eq!(
        upstream["endpoints"],
        serde_json::json!([backend.to_string()])
    );
    assert_eq!(
        tally(&stack, &cluster, 5).get(&backend.to_string()),
        Some(&5)
    );

    stack.dns.set_servfail(false);
    wait_until("the stale mark to clear", WAIT, INTERVAL / 10, || {
        Ok(stack.shim.status().unwrap()["upstreams"][0]["stale_since_unix_ms"].is_null())
    })
    .unwrap();
}

#[test]
fn ipv6_adds_aaaa_members() {
    let port = free_port(ip(2).into()).unwrap();
    let v4 = SocketAddr::new(ip(2).into(), port);
    let v6: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    let cluster = format!("dns+dual.test:{port}");
    let stack = Stack::start(options(&cluster, vec![v4, v6], &["--ipv6"]), |dns| {
        dns.set_a("dual.test", &[ip(2)]);
        dns.set_aaaa("dual.test", &["::1".parse().unwrap()]);
    })
    .unwrap();
    stack
        .envoy
        .wait_cluster_hosts(&cluster, &[v4, v6], WAIT)
        .unwrap();
    stack.wait_filter_members(&cluster).unwrap();
    let counts = tally(&stack, &cluster, 10);
    assert_eq!(counts.len(), 2, "both families serve: {counts:?}");
}
