//! The recommended path end to end: a real Envoy started from what `xds-shim
//! envoy-bootstrap` prints, the real xds-shim and a DNS server on loopback. Envoy routes,
//! rewrites, balances, retries and ejects natively; the dnslb filter runs only for cookie
//! affinity and its status path. The scenarios where the filter takes part run against both
//! of its builds (the `.wasm` and the dynamic module `.so`): same JSON, same behaviour.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use dnslb_tests::{
    dns::ipv4s, free_port, http_get, shim_bootstrap_build, wait_until, BackendReport, Build,
    ChildGuard, Srv, Stack, StackOptions, TempDir,
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

/// A stack whose Envoy runs the bootstrap the shim prints, with `build` of the filter
/// (`None`: no filter at all); the wasm one also takes absolute-form requests.
fn start_build(
    build: Option<Build>,
    opts: StackOptions,
    seed: impl FnOnce(&dnslb_tests::DnsServer),
) -> Stack {
    Stack::start_with(opts, seed, |ports, _, config| {
        shim_bootstrap_build(ports, build, config, build == Some(Build::Wasm))
    })
    .unwrap()
}

/// [`start_build`] with the wasm filter.
fn start(opts: StackOptions, seed: impl FnOnce(&dnslb_tests::DnsServer)) -> Stack {
    start_build(Some(Build::Wasm), opts, seed)
}

/// The LB policy Envoy runs for `cluster`: the shim serves `override_host` (reading
/// `x-dnslb-endpoint`) only to Envoys whose bootstrap has routes that write it.
fn lb_policy(stack: &Stack, cluster: &str) -> String {
    let cluster = stack.envoy_cluster(cluster).unwrap().unwrap();
    let policy = &cluster["load_balancing_policy"]["policies"][0]["typed_extension_config"];
    policy["name"].as_str().unwrap().to_string()
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

dnslb_tests::test_each_build!(envoy_routes_round_robin_and_answers_bad_names_itself, envoy_routes_round_robin_and_answers_bad_names_itself_with_the_module => round_robin_and_bad_names);

fn round_robin_and_bad_names(build: Build) {
    let port = free_port(ip(2).into()).unwrap();
    let backends = addrs(port, &[2, 3, 4]);
    let cluster = format!("dns+{NAME}:{port}");
    let opts = options(cluster.clone(), backends.clone(), "{}");
    let stack = start_build(Some(build), opts, |dns| {
        dns.set_a(NAME, &[ip(2), ip(3), ip(4)])
    });
    stack.wait_serving_native(&cluster, &backends).unwrap();
    assert_eq!(
        lb_policy(&stack, &cluster),
        "envoy.load_balancing_policies.round_robin"
    );

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
    // own EDS stream (the module: its xDS client thread) has the members.
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
    let requests = format!("{}dnslb.requests", build.stats_prefix());
    wait_until(
        "the filter's counters to reach Envoy",
        patience,
        poll,
        || Ok(stack.envoy.stat(&requests)?.as_deref() == Some(want.as_str())),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", stack.envoy.stats().unwrap_or_default()));
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

    stack
        .load_loses_nothing(&cluster, 16, 100, Duration::from_secs(60))
        .unwrap();

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

dnslb_tests::test_each_build!(cookie_affinity_sticks_and_fails_over, cookie_affinity_sticks_and_fails_over_with_the_module => cookie_affinity);

fn cookie_affinity(build: Build) {
    let port = free_port(ip(2).into()).unwrap();
    let backends = addrs(port, &[2, 3, 4]);
    let cluster = format!("dns+{NAME}:{port}");
    let mut opts = options(
        cluster.clone(),
        backends.clone(),
        r#"{"affinity":{"mode":"cookie"}}"#,
    );
    opts.interval = Duration::from_millis(500);
    // Two workers: sessions hold whichever worker (and its copy of the members) serves them.
    opts.concurrency = 2;
    let stack = start_build(Some(build), opts, |dns| {
        dns.set_a(NAME, &[ip(2), ip(3), ip(4)])
    });
    stack.wait_serving_native(&cluster, &backends).unwrap();
    // The wasm filter names the member in a header the override_host policy reads; the
    // module hands it to Envoy's own override, which every policy honours.
    let policy = match build {
        Build::Wasm => "envoy.load_balancing_policies.override_host",
        Build::Module => "envoy.load_balancing_policies.round_robin",
    };
    assert_eq!(lb_policy(&stack, &cluster), policy);

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
    assert_eq!(seen, BTreeMap::from([(new_backend.clone(), 6)]));

    // Its member leaves DNS: draining (the shim's 30 s), it keeps its sessions.
    let staying = ipv4s(backends.iter().filter(|b| b.to_string() != new_backend));
    stack.dns.set_a(NAME, &staying);
    wait_until(
        "the filter to see the member draining",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            Ok(stack
                .filter_member(&cluster, &new_backend)?
                .is_some_and(|m| m["draining"] == true))
        },
    )
    .unwrap();
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

dnslb_tests::test_each_build!(a_dead_sticky_member_forces_a_re_resolution, a_dead_sticky_member_forces_a_re_resolution_with_the_module => dead_sticky_member_forces_a_re_resolution);

/// The session's member dies and leaves DNS while the shim would not look for two minutes:
/// the request that failed over makes the filter ask the shim to re-resolve the name now.
fn dead_sticky_member_forces_a_re_resolution(build: Build) {
    let port = free_port(ip(2).into()).unwrap();
    let backends = addrs(port, &[2, 3]);
    let cluster = format!("dns+{NAME}:{port}");
    let mut opts = options(
        cluster.clone(),
        backends.clone(),
        r#"{"affinity":{"mode":"cookie"}}"#,
    );
    opts.interval = Duration::from_secs(120);
    opts.shim_args = vec!["--drain".into(), "0s".into()];
    let stack = start_build(Some(build), opts, |dns| dns.set_a(NAME, &[ip(2), ip(3)]));
    stack.wait_serving_native(&cluster, &backends).unwrap();
    let first = stack.get(&cluster, "/login").unwrap();
    let cookie = cookie_of(&first).expect("a new session gets a cookie");
    let sticky = first.json::<BackendReport>().unwrap().backend;
    let index = backends
        .iter()
        .position(|b| b.to_string() == sticky)
        .unwrap();
    stack.backends[index].kill().unwrap();
    let other = backends[1 - index];
    stack.dns.set_a(NAME, &[ip(if index == 0 { 3 } else { 2 })]);
    let moved = http_get(
        stack.listener,
        "/",
        &[("Host", &cluster), ("Cookie", &cookie)],
    )
    .unwrap();
    assert_eq!(moved.status, 200, "{}", moved.body);
    assert_eq!(
        moved.json::<BackendReport>().unwrap().backend,
        other.to_string()
    );
    stack
        .envoy
        .wait_cluster_hosts(&cluster, &[other], Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}\n{}", stack.envoy.log_tail(20)));
    let refreshes = format!("{}dnslb.forced_refreshes", build.stats_prefix());
    wait_until(
        "the forced refresh to be counted",
        Duration::from_secs(5),
        Duration::from_millis(100),
        || Ok(stack.envoy.stat(&refreshes)?.is_some_and(|n| n != "0")),
    )
    .unwrap();
}

#[test]
fn hash_affinity_is_envoys_maglev_and_moves_only_the_removed_members_keys() {
    // No filter at all: hash affinity needs none.
    hash_affinity(None);
}

/// The module in the chain but off on the upstream routes changes nothing.
#[test]
fn hash_affinity_is_envoys_maglev_with_the_module_in_the_chain() {
    hash_affinity(Some(Build::Module));
}

fn hash_affinity(build: Option<Build>) {
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
    let stack = start_build(build, opts, |dns| {
        dns.set_a(NAME, &[ip(2), ip(3), ip(4), ip(5)])
    });
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
