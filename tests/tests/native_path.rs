//! The recommended path end to end: a real Envoy started from what `xds-shim
//! envoy-bootstrap` prints, the real xds-shim and a DNS server on loopback. Envoy routes,
//! rewrites, balances, retries and ejects natively; the wasm filter runs only for cookie
//! affinity and its status path.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use dnslb_tests::{
    free_port, http_get, shim_bootstrap, stack::filter_wasm, wait_until, BackendReport, ChildGuard,
    Srv, Stack, StackOptions, TempDir,
};

const NAME: &str = "backend.test";

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

/// Addresses 127.0.0.N on one port that is free on 127.0.0.2.
fn addrs(port: u16, lasts: &[u8]) -> Vec<SocketAddr> {
    lasts
        .iter()
        .map(|&l| SocketAddr::new(ip(l).into(), port))
        .collect()
}

fn options(upstream: String, backends: Vec<SocketAddr>, filter_config: &str) -> StackOptions {
    StackOptions {
        filter_config: filter_config.into(),
        ..StackOptions::new(
            vec![upstream],
            backends,
            PathBuf::from(env!("CARGO_BIN_EXE_fake-backend")),
        )
    }
}

/// A stack whose Envoy runs the bootstrap the shim prints, with the wasm filter.
fn start(opts: StackOptions, seed: impl FnOnce(&dnslb_tests::DnsServer)) -> Stack {
    Stack::start_with(opts, seed, |ports, wasm, config| {
        shim_bootstrap(ports, Some(wasm), config, true)
    })
    .unwrap()
}

fn counts(
    stack: &Stack,
    authority: &str,
    n: usize,
    headers: &[(&str, &str)],
) -> BTreeMap<String, u32> {
    let mut counts = BTreeMap::new();
    for i in 0..n {
        let mut all = vec![("Host", authority)];
        all.extend_from_slice(headers);
        let response = http_get(stack.listener, &format!("/n/{i}"), &all).unwrap();
        assert_eq!(response.status, 200, "{}", response.body);
        let report: BackendReport = response.json().unwrap();
        *counts.entry(report.backend).or_default() += 1;
    }
    counts
}

#[test]
fn envoy_routes_round_robin_and_answers_bad_names_itself() {
    let port = free_port(ip(2).into()).unwrap();
    let backends = addrs(port, &[2, 3, 4]);
    let cluster = format!("dns+{NAME}:{port}");
    let stack = start(options(cluster.clone(), backends.clone(), "{}"), |dns| {
        dns.set_a(NAME, &[ip(2), ip(3), ip(4)])
    });
    stack.wait_serving_native(&cluster, &backends).unwrap();

    // Exact round robin per worker; a client naming a member is not obeyed.
    let steer = backends[0].to_string();
    let seen = counts(&stack, &cluster, 30, &[("x-dnslb-endpoint", &steer)]);
    let want: BTreeMap<String, u32> = backends.iter().map(|a| (a.to_string(), 10)).collect();
    assert_eq!(seen, want);

    // The backend sees the authority without dns+ (auto_host_rewrite from the endpoint).
    let report = stack.get_backend(&cluster, "/host").unwrap();
    assert_eq!(report.host, format!("{NAME}:{port}"));

    for (authority, status) in [
        ("dns+bad..name:80", 400),
        ("dns+backend.test", 400),
        ("dns+backend.test:0", 400),
        ("dns+Backend.test:80", 400),
        ("srv+_http._tcp.api.test:80", 400),
        ("dns+unknown.test:80", 404),
        ("dnslb_xds", 404),
        ("example.test", 404),
    ] {
        let response = stack.get(authority, "/").unwrap();
        assert_eq!(response.status, status, "{authority}: {}", response.body);
    }
    let malformed = stack.get("dns+bad..name:80", "/").unwrap();
    assert!(
        malformed.body.contains("malformed upstream"),
        "{}",
        malformed.body
    );

    // The filter still answers its status path (enabled on that route only), once its
    // own EDS stream has the members.
    let mut status_requests = 0;
    let patience = Duration::from_secs(30);
    let poll = Duration::from_millis(100);
    wait_until(
        "the filter's status to list the cluster",
        patience,
        poll,
        || {
            status_requests += 1;
            let status = http_get(stack.listener, "/dnslb/status", &[])?;
            Ok(status.status == 200 && status.body.contains(&cluster))
        },
    )
    .unwrap();
    // Requests on the native routes never entered the filter: it counted only its own.
    let want = status_requests.to_string();
    wait_until(
        "the filter's counters to reach Envoy",
        patience,
        poll,
        || Ok(stack.envoy.stat("wasmcustom.dnslb.requests")?.as_deref() == Some(want.as_str())),
    )
    .unwrap();
}

/// The load scenario of the reliability issue: one of three members refuses connections,
/// 16 clients at once. Default settings lose nothing (retry budget), and the dead member is
/// ejected (outlier detection) so it stops taking first attempts.
#[test]
fn a_dead_member_under_load_loses_no_request_and_is_ejected() {
    let port = free_port(ip(2).into()).unwrap();
    let live = addrs(port, &[2, 3]);
    let dead = SocketAddr::new(ip(9).into(), port);
    let cluster = format!("dns+{NAME}:{port}");
    let stack = start(options(cluster.clone(), live.clone(), "{}"), |dns| {
        dns.set_a(NAME, &[ip(2), ip(3), ip(9)])
    });
    let mut all = live.clone();
    all.push(dead);
    stack
        .envoy
        .wait_cluster_hosts(&cluster, &all, Duration::from_secs(30))
        .unwrap();

    let failed = stack.load(&cluster, 16, 100, Duration::from_secs(60));
    assert!(
        failed.is_empty(),
        "{} failed, e.g. {:?}",
        failed.len(),
        &failed[..failed.len().min(3)]
    );

    let stat = |name: &str| -> u64 {
        stack
            .envoy
            .cluster_stat(&cluster, name)
            .unwrap()
            .map_or(0, |v| v.parse().unwrap())
    };
    assert_eq!(stat("upstream_rq_retry_overflow"), 0);
    assert!(stat("outlier_detection.ejections_enforced_consecutive_local_origin_failure") >= 1);
    // Ejected: the next requests all go to the live members on their first attempt.
    let before = stat("upstream_rq_retry");
    let seen = counts(&stack, &cluster, 20, &[]);
    assert!(seen.keys().all(|b| b != &dead.to_string()), "{seen:?}");
    assert_eq!(
        stat("upstream_rq_retry"),
        before,
        "retries after the ejection"
    );
}

#[test]
fn srv_levels_fail_over_natively() {
    let port = free_port(ip(2).into()).unwrap();
    let backup = SocketAddr::new(ip(3).into(), port);
    let srv = "_http._tcp.api.test";
    let cluster = format!("srv+{srv}");
    let stack = start(options(cluster.clone(), vec![backup], "{}"), |dns| {
        dns.set_a("primary.test", &[ip(9)]);
        dns.set_a("backup.test", &[ip(3)]);
        dns.set_srv(
            srv,
            &[
                Srv {
                    priority: 10,
                    weight: 1,
                    port,
                    target: "primary.test".into(),
                },
                Srv {
                    priority: 20,
                    weight: 1,
                    port,
                    target: "backup.test".into(),
                },
            ],
        );
    });
    let dead = SocketAddr::new(ip(9).into(), port);
    stack
        .envoy
        .wait_cluster_hosts(&cluster, &[dead, backup], Duration::from_secs(30))
        .unwrap();
    // The only level-0 member refuses: every request is served by level 1, although the
    // client asks Envoy for no retries (its x-envoy-* retry headers are not trusted).
    for i in 0..10 {
        let headers = [
            ("Host", cluster.as_str()),
            ("x-envoy-max-retries", "0"),
            ("x-envoy-retry-on", "retriable-status-codes"),
        ];
        let response = http_get(stack.listener, &format!("/srv/{i}"), &headers).unwrap();
        assert_eq!(response.status, 200, "request {i}: {}", response.body);
        let report: BackendReport = response.json().unwrap();
        assert_eq!(report.backend, backup.to_string());
        assert_eq!(report.host, srv, "the backend sees the SRV name");
    }
}

fn cookie_of(response: &dnslb_tests::HttpResponse) -> Option<String> {
    response
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .map(str::to_owned)
}

#[test]
fn cookie_affinity_sticks_and_fails_over() {
    let port = free_port(ip(2).into()).unwrap();
    let backends = addrs(port, &[2, 3, 4]);
    let cluster = format!("dns+{NAME}:{port}");
    let stack = start(
        options(
            cluster.clone(),
            backends.clone(),
            r#"{"affinity":{"mode":"cookie"}}"#,
        ),
        |dns| dns.set_a(NAME, &[ip(2), ip(3), ip(4)]),
    );
    stack.wait_serving_native(&cluster, &backends).unwrap();

    let first = stack.get(&cluster, "/login").unwrap();
    assert_eq!(first.status, 200);
    let cookie = cookie_of(&first).expect("a new session gets a cookie");
    let sticky = first.json::<BackendReport>().unwrap().backend;
    let seen = counts(&stack, &cluster, 12, &[("Cookie", &cookie)]);
    assert_eq!(seen, BTreeMap::from([(sticky.clone(), 12)]));

    // Its member dies: the next request is served elsewhere and moves the session.
    let index = backends
        .iter()
        .position(|b| b.to_string() == sticky)
        .unwrap();
    stack.backends[index].kill().unwrap();
    let moved = http_get(
        stack.listener,
        "/after",
        &[("Host", &cluster), ("Cookie", &cookie)],
    )
    .unwrap();
    assert_eq!(moved.status, 200, "{}", moved.body);
    let new_backend = moved.json::<BackendReport>().unwrap().backend;
    assert_ne!(new_backend, sticky);
    let new_cookie = cookie_of(&moved).expect("the session moves with a new cookie");
    let seen = counts(&stack, &cluster, 6, &[("Cookie", &new_cookie)]);
    assert_eq!(seen, BTreeMap::from([(new_backend, 6)]));

    // A tampered cookie is a new session, not an error.
    let tampered = format!("{}x", new_cookie);
    let response = http_get(
        stack.listener,
        "/",
        &[("Host", &cluster), ("Cookie", &tampered)],
    )
    .unwrap();
    assert_eq!(response.status, 200);
    assert!(cookie_of(&response).is_some());
}

#[test]
fn hash_affinity_is_envoys_maglev_and_moves_only_the_removed_members_keys() {
    let port = free_port(ip(2).into()).unwrap();
    let backends = addrs(port, &[2, 3, 4, 5]);
    let cluster = format!("dns+{NAME}:{port}");
    let dir = TempDir::new("hash").unwrap();
    let config = dir.path().join("shim.yaml");
    std::fs::write(
        &config,
        format!("upstreams:\n  - spec: {cluster}\n    lb_policy: maglev\n"),
    )
    .unwrap();
    let mut opts = options(
        cluster.clone(),
        backends.clone(),
        r#"{"affinity":{"mode":"hash","key":"header:x-user"}}"#,
    );
    opts.interval = Duration::from_millis(500);
    opts.shim_args = vec![
        "--config".into(),
        config.display().to_string(),
        "--drain".into(),
        "0s".into(),
    ];
    // No wasm at all: hash affinity needs no filter.
    let stack = Stack::start_with(
        opts,
        |dns| dns.set_a(NAME, &[ip(2), ip(3), ip(4), ip(5)]),
        |ports, _, config| shim_bootstrap(ports, None, config, false),
    )
    .unwrap();
    stack.wait_serving_native(&cluster, &backends).unwrap();

    let users: Vec<String> = (0..60).map(|i| format!("user-{i}")).collect();
    let place = |stack: &Stack| -> BTreeMap<String, String> {
        users
            .iter()
            .map(|u| {
                let r =
                    http_get(stack.listener, "/", &[("Host", &cluster), ("x-user", u)]).unwrap();
                assert_eq!(r.status, 200, "{}", r.body);
                (u.clone(), r.json::<BackendReport>().unwrap().backend)
            })
            .collect()
    };
    let before = place(&stack);
    assert_eq!(place(&stack), before, "a key keeps its member");
    let used: BTreeSet<&String> = before.values().collect();
    assert!(used.len() >= 3, "keys spread: {used:?}");

    // One member leaves DNS: only its keys move (Maglev: a small disruption allowed).
    stack.dns.set_a(NAME, &[ip(2), ip(3), ip(4)]);
    stack
        .envoy
        .wait_cluster_hosts(&cluster, &backends[..3], Duration::from_secs(30))
        .unwrap();
    let after = place(&stack);
    let removed = backends[3].to_string();
    let stayed: Vec<&String> = users.iter().filter(|u| before[*u] != removed).collect();
    let moved = stayed.iter().filter(|u| after[**u] != before[**u]).count();
    assert!(
        moved * 10 <= stayed.len(),
        "{moved} of {} keys on staying members moved",
        stayed.len()
    );
    assert!(after.values().all(|b| *b != removed));
}

#[test]
fn absolute_form_requests_take_the_native_path() {
    let port = free_port(ip(2).into()).unwrap();
    let backends = addrs(port, &[2]);
    let cluster = format!("dns+{NAME}:{port}");
    let stack = start(options(cluster.clone(), backends.clone(), "{}"), |dns| {
        dns.set_a(NAME, &[ip(2)])
    });
    stack.wait_serving_native(&cluster, &backends).unwrap();
    let target = format!("http://{cluster}/api/v1/write?db=1");
    let response = http_get(stack.listener, &target, &[("Host", &cluster)]).unwrap();
    assert_eq!(response.status, 200, "{}", response.body);
    let report: BackendReport = response.json().unwrap();
    assert_eq!(report.host, format!("{NAME}:{port}"));
    assert_eq!(report.path, "/api/v1/write");
}

/// Every mode the bootstrap offers passes `envoy --mode validate`.
#[test]
fn every_bootstrap_mode_validates() {
    let ports = dnslb_tests::stack::EnvoyPorts {
        admin: 9901,
        listener: 10000,
        xds: 18000,
    };
    let wasm = filter_wasm();
    let dir = TempDir::new("bootstrap").unwrap();
    for (i, (config, with_wasm, absolute_form)) in [
        ("{}", true, true),
        ("{}", false, false),
        (r#"{"affinity":{"mode":"cookie","strict":true}}"#, true, false),
        (r#"{"affinity":{"mode":"hash"}}"#, false, false),
        (r#"{"affinity":{"mode":"hash","key":"header:x-user"},"aliases":{"vm:8480":"dns+vm.svc:8480"}}"#, true, true),
    ]
    .into_iter()
    .enumerate()
    {
        let yaml = shim_bootstrap(ports, with_wasm.then_some(wasm.as_path()), config, absolute_form).unwrap();
        let path = dir.path().join(format!("bootstrap-{i}.yaml"));
        std::fs::write(&path, &yaml).unwrap();
        dnslb_tests::Envoy::validate(&path).unwrap_or_else(|e| panic!("{config}: {e}\n{yaml}"));
    }
}

/// A member that accepts connections but fails its health check takes no traffic once
/// Envoy's active health check (`health_check:` in the shim's `--config`) marks it.
#[test]
fn a_member_failing_its_health_check_takes_no_traffic() {
    let port = free_port(ip(2).into()).unwrap();
    let healthy = addrs(port, &[2, 3]);
    let sick = SocketAddr::new(ip(4).into(), port);
    let cluster = format!("dns+{NAME}:{port}");
    let dir = TempDir::new("health").unwrap();
    let mut sick_cmd = std::process::Command::new(env!("CARGO_BIN_EXE_fake-backend"));
    sick_cmd.args(["--listen", &sick.to_string(), "--fail-path", "/healthz"]);
    let sick_backend = ChildGuard::spawn("sick-backend", sick_cmd, dir.path()).unwrap();
    sick_backend
        .wait_for_log("listening on", Duration::from_secs(30))
        .unwrap();
    let config = dir.path().join("shim.yaml");
    std::fs::write(
        &config,
        format!(
            "upstreams:\n  - spec: {cluster}\n    health_check: {{path: /healthz, interval: 500ms, \
             timeout: 250ms, healthy_threshold: 1, unhealthy_threshold: 1}}\n"
        ),
    )
    .unwrap();
    let mut opts = options(cluster.clone(), healthy.clone(), "{}");
    opts.shim_args = vec!["--config".into(), config.display().to_string()];
    let stack = start(opts, |dns| dns.set_a(NAME, &[ip(2), ip(3), ip(4)]));
    let mut all = healthy.clone();
    all.push(sick);
    stack
        .envoy
        .wait_cluster_hosts(&cluster, &all, Duration::from_secs(30))
        .unwrap();
    let flag = format!("{cluster}::{sick}::health_flags::/failed_active_hc");
    wait_until(
        "Envoy's health check to fail the sick member",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || Ok(stack.envoy.clusters()?.contains(&flag)),
    )
    .unwrap();
    let seen = counts(&stack, &cluster, 20, &[]);
    assert_eq!(
        seen.keys().cloned().collect::<Vec<_>>(),
        healthy.iter().map(ToString::to_string).collect::<Vec<_>>()
    );
}
