//! The Grafana dashboard (`envoy/grafana/dnslb.json`) asks for what exists: every query
//! parses as PromQL (`promtool check rules`, Debian's `prometheus`), and every metric and
//! label it names is in what a real xds-shim (`/metrics`) and a real Envoy with the dnslb
//! filter (`/stats/prometheus`) export after some traffic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    process::Command,
};

use dnslb_tests::{
    free_port, http_get, shim_bootstrap, workspace_root, Stack, StackOptions, TempDir,
};

const DASHBOARD: &str = "envoy/grafana/dnslb.json";

/// Every query of every panel, with Grafana's `$__rate_interval` made a duration.
fn queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(workspace_root().join(DASHBOARD)).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap_or("?");
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            out.push((title.to_owned(), expr.replace("$__rate_interval", "1m")));
        }
    }
    out
}

/// Metric name → the label names its samples carry, from an exposition text.
fn exported(exposition: &str, into: &mut BTreeMap<String, BTreeSet<String>>) {
    for line in exposition.lines().filter(|l| !l.starts_with('#')) {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = into.entry(line[..name_end].to_owned()).or_default();
        let Some(rest) = line[name_end..].strip_prefix('{') else {
            continue;
        };
        // key="value" pairs; values may hold escaped quotes.
        let mut chars = rest.chars().peekable();
        while chars.peek().is_some_and(|c| *c != '}') {
            let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
            labels.insert(key.trim_start_matches(',').to_owned());
            chars.next(); // the opening quote
            let mut escaped = false;
            for c in chars.by_ref() {
                match (escaped, c) {
                    (false, '\\') => escaped = true,
                    (false, '"') => break,
                    _ => escaped = false,
                }
            }
            if chars.peek() == Some(&',') {
                chars.next();
            }
        }
    }
}

/// The metric names and the label names a PromQL expression uses (names of the
/// `dnslb_`/`envoy_` families; label names: in matchers and `by (...)`).
fn names(expr: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    // String literals hold no names.
    let mut code = String::new();
    let mut in_string = false;
    for c in expr.chars() {
        if c == '"' {
            in_string = !in_string;
        } else if !in_string {
            code.push(c);
        }
    }
    let token = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let (mut metrics, mut labels) = (BTreeSet::new(), BTreeSet::new());
    let mut at = 0;
    while let Some(found) = code[at..].find(token) {
        let start = at + found;
        let end = code[start..]
            .find(|c| !token(c))
            .map_or(code.len(), |e| start + e);
        let word = &code[start..end];
        let after = code[end..].trim_start();
        let before = code[..start].trim_end();
        let matcher = after.starts_with(['=', '!']);
        let grouped = before.ends_with('(') && is_grouping(before)
            || before.ends_with(',') && labels.contains(last_word(before));
        if matcher || grouped {
            labels.insert(word.to_owned());
        } else if word.starts_with("dnslb_") || word.starts_with("envoy_") {
            metrics.insert(word.to_owned());
        }
        at = end;
    }
    labels.remove("le");
    (metrics, labels)
}

/// `... by (` or `... without (`.
fn is_grouping(before: &str) -> bool {
    let head = before.trim_end_matches('(').trim_end();
    head.ends_with(" by") || head.ends_with(" without")
}

fn last_word(before: &str) -> &str {
    let trimmed = before.trim_end_matches(',').trim_end();
    trimmed
        .rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .next()
        .unwrap_or("")
}

#[test]
fn every_query_parses_and_names_what_the_shim_and_envoy_export() {
    let queries = queries();
    assert!(queries.len() > 20, "{queries:?}");

    // promtool parses them as recording rules.
    let dir = TempDir::new("grafana").unwrap();
    let rules: Vec<serde_json::Value> = queries
        .iter()
        .enumerate()
        .map(|(i, (_, expr))| serde_json::json!({ "record": format!("dashboard:query_{i}"), "expr": expr }))
        .collect();
    let file = dir.path().join("rules.json");
    let groups = serde_json::json!({ "groups": [{ "name": "dashboard", "rules": rules }] });
    std::fs::write(&file, groups.to_string()).unwrap();
    let output = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("promtool must be installed (just prometheus)");
    assert!(
        output.status.success(),
        "promtool check rules:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    // A dnslb cluster with traffic behind an Envoy running the filter.
    let ip = |last| Ipv4Addr::new(127, 0, 0, last);
    let port = free_port(ip(2).into()).unwrap();
    let backends: Vec<SocketAddr> = [2, 3]
        .iter()
        .map(|&l| SocketAddr::new(ip(l).into(), port))
        .collect();
    let cluster = format!("dns+backend.test:{port}");
    let opts = StackOptions::new(
        vec![cluster.clone()],
        backends.clone(),
        PathBuf::from(env!("CARGO_BIN_EXE_fake-backend")),
    );
    let stack = Stack::start_with(
        opts,
        |dns| dns.set_a("backend.test", &[ip(2), ip(3)]),
        |ports, wasm, config| shim_bootstrap(ports, Some(wasm), config, false),
    )
    .unwrap();
    stack.wait_serving_native(&cluster, &backends).unwrap();
    for i in 0..10 {
        assert_eq!(stack.get(&cluster, &format!("/{i}")).unwrap().status, 200);
    }
    let mut have = BTreeMap::new();
    exported(&stack.shim.metrics().unwrap(), &mut have);
    let envoy = http_get(stack.envoy.admin(), "/stats/prometheus", &[]).unwrap();
    exported(&envoy.body, &mut have);

    for (title, expr) in &queries {
        let (metrics, labels) = names(expr);
        assert!(
            !metrics.is_empty(),
            "{title}: no dnslb or Envoy metric in {expr}"
        );
        for metric in &metrics {
            assert!(
                have.contains_key(metric),
                "{title}: {metric} is exported by neither the shim nor Envoy ({expr})"
            );
        }
        for label in &labels {
            assert!(
                metrics.iter().any(|m| have[m].contains(label)),
                "{title}: no sample of {metrics:?} carries the label {label} ({expr})"
            );
        }
    }
}

#[test]
fn names_finds_metrics_and_labels() {
    let (metrics, labels) = names(
        "histogram_quantile(0.99, sum by (envoy_cluster_name, le) \
         (rate(envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=~\"dns\\\\+.*\"}[1m])))",
    );
    assert_eq!(
        metrics.into_iter().collect::<Vec<_>>(),
        ["envoy_cluster_upstream_rq_time_bucket"]
    );
    assert_eq!(
        labels.into_iter().collect::<Vec<_>>(),
        ["envoy_cluster_name"]
    );
    let mut have = BTreeMap::new();
    exported(
        "# TYPE x counter\nx{a=\"1,\\\"2\",b=\"\"} 3\ny 4\n",
        &mut have,
    );
    assert_eq!(have["x"], BTreeSet::from(["a".to_owned(), "b".to_owned()]));
    assert!(have["y"].is_empty());
}
