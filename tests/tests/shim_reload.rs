//! Live reload end to end: the real xds-shim started with `--config FILE`, a real Envoy
//! running what `xds-shim envoy-bootstrap` prints on its ADS stream, and the loopback DNS
//! server. The file is rewritten and the shim sent SIGHUP: an added upstream is served
//! through Envoy, a changed connect timeout reaches Envoy's cluster, a bad file changes
//! nothing, and a removed upstream drains and leaves, all over the one xDS stream.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    fs,
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use dnslb_tests::{free_port, shim_bootstrap, wait_until, Stack, StackOptions, TempDir};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);
const ERRORS: &str = "dnslb_config_reloads_total{result=\"error\"}";
const OKS: &str = "dnslb_config_reloads_total{result=\"ok\"}";

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

fn write(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
}

/// `connect_timeout` of `cluster` as Envoy has it (`/config_dump`), e.g. `"3s"`.
fn envoy_connect_timeout(stack: &Stack, cluster: &str) -> Option<String> {
    let cluster = stack.envoy_cluster(cluster).ok()??;
    cluster["connect_timeout"].as_str().map(str::to_owned)
}

/// The shim's ADS clients as (node, peer, connected at): the same triple before and
/// after means the same stream.
fn ads_streams(stack: &Stack) -> Vec<(String, String, u64)> {
    let status = stack.shim.status().unwrap();
    let clients = status["clients"].as_array().cloned().unwrap_or_default();
    clients
        .iter()
        .filter(|c| c["service"] == "ADS")
        .map(|c| {
            (
                c["node"].as_str().unwrap_or_default().to_owned(),
                c["peer"].as_str().unwrap_or_default().to_owned(),
                c["connected_at_unix_ms"].as_u64().unwrap_or_default(),
            )
        })
        .collect()
}

/// The counters that show a reconnect: Envoy's connections to the shim and its
/// control-plane state (1: connected).
fn envoy_xds_connection(stack: &Stack) -> (Option<String>, Option<String>) {
    let envoy = &stack.envoy;
    (
        envoy.stat("cluster.dnslb_xds.upstream_cx_total").unwrap(),
        envoy.stat("control_plane.connected_state").unwrap(),
    )
}

fn reload(stack: &Stack, config: &Path, text: &str) {
    write(config, text);
    stack.shim.process.signal("HUP").unwrap();
}

/// Waits until the shim's counter `series` reads `n`.
fn wait_metric(stack: &Stack, series: &str, n: f64) {
    wait_until(&format!("{series} to be {n}"), WAIT, POLL, || {
        stack.shim.process.ensure_running()?;
        Ok(stack.shim.metric(series)? == Some(n))
    })
    .unwrap();
}

/// The log lines containing every one of `needles`.
fn log_lines(stack: &Stack, needles: &[&str]) -> Vec<String> {
    let log = stack.shim.process.log();
    let lines = log
        .lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)));
    lines.map(str::to_owned).collect()
}

#[test]
fn sighup_adds_changes_and_removes_upstreams_over_the_open_stream() {
    let port = free_port(ip(2).into()).unwrap();
    let (a, b) = (
        SocketAddr::new(ip(2).into(), port),
        SocketAddr::new(ip(3).into(), port),
    );
    let first = format!("dns+first.test:{port}");
    let second = format!("dns+second.test:{port}");
    let dir = TempDir::new("reload").unwrap();
    let config = dir.path().join("xds-shim.yaml");
    write(
        &config,
        &format!("upstreams:\n  - {{spec: '{first}', connect_timeout: 1s}}\ndrain: 3s\n"),
    );
    let opts = StackOptions {
        // Upstreams from the file only: flags would be added to the file's for good.
        shim_args: vec!["--config".into(), config.display().to_string()],
        interval: Duration::from_secs(1),
        ..StackOptions::new(
            Vec::new(),
            vec![a, b],
            PathBuf::from(env!("CARGO_BIN_EXE_fake-backend")),
        )
    };
    let seed = |dns: &dnslb_tests::DnsServer| {
        dns.set_a("first.test", &[ip(2)]);
        dns.set_a("second.test", &[ip(3)]);
    };
    let stack = Stack::start_with(opts, seed, |ports, _wasm, filter_config| {
        shim_bootstrap(ports, None, filter_config, false)
    })
    .unwrap();
    stack.wait_serving_native(&first, &[a]).unwrap();
    assert_eq!(envoy_connect_timeout(&stack, &first).as_deref(), Some("1s"));
    assert_eq!(
        stack.get(&second, "/").unwrap().status,
        404,
        "not yet an upstream"
    );
    let streams = ads_streams(&stack);
    assert_eq!(streams.len(), 1, "{streams:?}");
    let connection = envoy_xds_connection(&stack);
    assert_eq!(connection.1.as_deref(), Some("1"));
    assert_eq!(stack.shim.metric(OKS).unwrap(), Some(0.0));

    // Add an upstream, change the first one's connect timeout.
    reload(
        &stack,
        &config,
        &format!(
            "upstreams:\n  - {{spec: '{first}', connect_timeout: 3s}}\n  - '{second}'\n\
             drain: 3s\n"
        ),
    );
    stack.wait_serving_native(&second, &[b]).unwrap();
    let report = stack.get_backend(&second, "/added").unwrap();
    assert_eq!(report.backend, b.to_string());
    wait_until("Envoy's cluster to get the new timeout", WAIT, POLL, || {
        Ok(envoy_connect_timeout(&stack, &first).as_deref() == Some("3s"))
    })
    .unwrap();
    wait_metric(&stack, OKS, 1.0);
    let status = stack.shim.status().unwrap();
    assert_eq!(status["last_reload"]["result"], "ok", "{status}");
    assert_eq!(
        status["last_reload"]["restart_required"],
        serde_json::json!([])
    );
    assert_eq!(ads_streams(&stack), streams, "the ADS stream stayed open");
    assert_eq!(
        envoy_xds_connection(&stack),
        connection,
        "Envoy did not reconnect"
    );

    // A file that does not validate: nothing changes, one error names key and value.
    reload(
        &stack,
        &config,
        &format!("upstreams:\n  - {{spec: '{first}', interval: soon}}\n  - '{second}'\n"),
    );
    wait_metric(&stack, ERRORS, 1.0);
    stack.shim.process.ensure_running().unwrap();
    let errors = log_lines(
        &stack,
        &["reload failed", "upstreams[0].interval", "\"soon\""],
    );
    assert_eq!(errors.len(), 1, "{}", stack.shim.process.log_tail(20));
    let status = stack.shim.status().unwrap();
    assert_eq!(status["last_reload"]["result"], "error");
    let error = status["last_reload"]["error"].as_str().unwrap();
    assert!(
        error.contains("upstreams[0].interval") && error.contains("soon"),
        "{error}"
    );
    for (cluster, backend) in [(&first, a), (&second, b)] {
        let report = stack.get_backend(cluster, "/after-bad-file").unwrap();
        assert_eq!(report.backend, backend.to_string());
    }
    assert_eq!(envoy_connect_timeout(&stack, &first).as_deref(), Some("3s"));
    assert_eq!(stack.shim.metric(OKS).unwrap(), Some(1.0));

    // Remove the first upstream (and ask for a log format only a restart applies): its
    // member drains for the 3 s the file says, then its cluster leaves Envoy.
    reload(
        &stack,
        &config,
        &format!("upstreams: ['{second}']\ndrain: 3s\nlog_format: json\n"),
    );
    let draining = stack
        .shim
        .wait_status("the removed upstream to drain", WAIT, |s| {
            // The reload is recorded once applied, a moment after the state shows it.
            s["last_reload"]["result"] == "ok"
                && s["upstreams"].as_array().is_some_and(|ups| {
                    ups.iter().any(|u| {
                        u["cluster"] == first.as_str()
                            && u["removed_at_unix_ms"].is_u64()
                            && u["members"][0]["draining"] == true
                    })
                })
        })
        .unwrap();
    assert_eq!(
        draining["last_reload"]["restart_required"],
        serde_json::json!(["log_format"])
    );
    assert_eq!(
        log_lines(&stack, &["only a restart applies", "log_format"]).len(),
        1
    );
    wait_until("Envoy to drop the removed cluster", WAIT, POLL, || {
        Ok(!stack.envoy.clusters()?.contains(&format!("{first}::")))
    })
    .unwrap();
    let status = stack.shim.status().unwrap();
    let clusters: Vec<&Value> = status["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| &u["cluster"])
        .collect();
    assert_eq!(clusters, [second.as_str()]);
    assert_eq!(stack.get(&first, "/gone").unwrap().status, 404);
    assert_eq!(
        stack.get_backend(&second, "/kept").unwrap().backend,
        b.to_string()
    );
    assert_eq!(stack.shim.metric(OKS).unwrap(), Some(2.0));
    assert_eq!(ads_streams(&stack), streams, "the ADS stream stayed open");
    assert_eq!(
        envoy_xds_connection(&stack),
        connection,
        "Envoy did not reconnect"
    );
    let log = stack.shim.process.log();
    assert!(
        log.lines()
            .any(|l| l.contains("cluster withdrawn") && l.contains(&first)),
        "{log}"
    );
}
