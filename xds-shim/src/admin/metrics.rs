//! `/metrics`: the process's counters ([`Metrics`]) and the discovery state in the
//! Prometheus text format 0.0.4.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::Duration;

use crate::discovery::{DiscoveryState, UpstreamState};
use crate::metrics::{Metrics, LATENCY_BUCKETS};

impl Metrics {
    /// The exposition text.
    pub fn render(&self, discovery: &DiscoveryState, connected: usize) -> String {
        let mut out = String::new();
        header(
            &mut out,
            "dnslb_build_info",
            "gauge",
            "Always 1; the labels say which build of xds-shim runs.",
        );
        let _ = writeln!(
            out,
            "dnslb_build_info{{version=\"{}\",commit=\"{}\"}} 1",
            escape(env!("CARGO_PKG_VERSION")),
            escape(crate::COMMIT)
        );
        let lock = |m: &Mutex<BTreeMap<&'static str, u64>>| {
            m.lock().unwrap_or_else(|e| e.into_inner()).clone()
        };
        header(
            &mut out,
            "dnslb_resolutions_total",
            "counter",
            "DNS resolutions of upstream names by result.",
        );
        for (result, n) in lock(&self.resolutions) {
            let _ = writeln!(out, "dnslb_resolutions_total{{result=\"{result}\"}} {n}");
        }
        // Each family's samples follow its own header, as the text format asks.
        header(
            &mut out,
            "dnslb_endpoints",
            "gauge",
            "Endpoints served per upstream, live or draining.",
        );
        for state in discovery.upstreams() {
            let cluster = escape(&state.upstream.cluster_name());
            for (kind, n) in [
                ("live", state.members.len()),
                ("draining", state.draining.len()),
            ] {
                let _ = writeln!(
                    out,
                    "dnslb_endpoints{{cluster=\"{cluster}\",state=\"{kind}\"}} {n}"
                );
            }
        }
        per_upstream(
            &mut out,
            discovery,
            ("dnslb_upstream_stale", "gauge"),
            "1 while an upstream keeps stale members.",
            |state| u64::from(state.stale_since.is_some()),
        );
        per_upstream(
            &mut out,
            discovery,
            ("dnslb_capped_answers_total", "counter"),
            "DNS answers cut to --max-records, per upstream.",
            |state| state.capped_answers,
        );
        header(
            &mut out,
            "dnslb_xds_pushes_total",
            "counter",
            "xDS responses sent, by type.",
        );
        for (kind, n) in lock(&self.pushes) {
            let _ = writeln!(out, "dnslb_xds_pushes_total{{type=\"{kind}\"}} {n}");
        }
        header(
            &mut out,
            "dnslb_xds_push_latency_seconds",
            "histogram",
            "From snapshot publication to the push leaving the shim.",
        );
        for (bucket, bound) in self.latency_buckets.iter().zip(LATENCY_BUCKETS) {
            let _ = writeln!(
                out,
                "dnslb_xds_push_latency_seconds_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let sum =
            Duration::from_nanos(self.latency_sum_nanos.load(Ordering::Relaxed)).as_secs_f64();
        let _ = writeln!(
            out,
            "dnslb_xds_push_latency_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(out, "dnslb_xds_push_latency_seconds_sum {sum}");
        let _ = writeln!(out, "dnslb_xds_push_latency_seconds_count {count}");
        header(
            &mut out,
            "dnslb_xds_connected_streams",
            "gauge",
            "Open xDS streams (Envoys and filter root contexts).",
        );
        let _ = writeln!(out, "dnslb_xds_connected_streams {connected}");
        header(
            &mut out,
            "dnslb_xds_nacks_total",
            "counter",
            "Responses rejected by clients.",
        );
        let _ = writeln!(
            out,
            "dnslb_xds_nacks_total {}",
            self.nacks.load(Ordering::Relaxed)
        );
        header(
            &mut out,
            "dnslb_snapshots_total",
            "counter",
            "Snapshots published (a version moved).",
        );
        let _ = writeln!(
            out,
            "dnslb_snapshots_total {}",
            self.snapshots.load(Ordering::Relaxed)
        );
        header(
            &mut out,
            "dnslb_config_reloads_total",
            "counter",
            "Configuration reloads (SIGHUP) by result; an error keeps the running one.",
        );
        let (ok, error) = {
            let reloads = self.reloads.lock().unwrap_or_else(|e| e.into_inner());
            (reloads.ok, reloads.error)
        };
        for (result, n) in [("ok", ok), ("error", error)] {
            let _ = writeln!(out, "dnslb_config_reloads_total{{result=\"{result}\"}} {n}");
        }
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// One family with a sample per upstream, labelled by cluster.
fn per_upstream(
    out: &mut String,
    discovery: &DiscoveryState,
    (name, kind): (&str, &str),
    help: &str,
    value: impl Fn(&UpstreamState) -> u64,
) {
    header(out, name, kind, help);
    for state in discovery.upstreams() {
        let cluster = escape(&state.upstream.cluster_name());
        let _ = writeln!(out, "{name}{{cluster=\"{cluster}\"}} {}", value(state));
    }
}

/// Label values: backslash, quote and newline escaped (cluster names have none today).
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::metrics::LastReload;

    #[test]
    fn renders_counters_gauges_and_histogram() {
        let metrics = Metrics::default();
        metrics.resolution("ok");
        metrics.resolution("ok");
        metrics.resolution("servfail");
        metrics.snapshot_published();
        metrics.push("EDS", true);
        metrics.push("CDS", false);
        metrics.nack();
        let reload = |error: Option<&str>| LastReload {
            at: SystemTime::UNIX_EPOCH,
            error: error.map(str::to_string),
            restart_required: Vec::new(),
        };
        metrics.config_reload(reload(None));
        metrics.config_reload(reload(Some("bad")));
        metrics.config_reload(reload(None));
        assert_eq!(metrics.last_reload(), Some(reload(None)));
        let state = DiscoveryState::new(["dns+a.test:80".parse().unwrap()]);
        let text = metrics.render(&state, 3);
        for line in [
            "dnslb_resolutions_total{result=\"ok\"} 2",
            "dnslb_resolutions_total{result=\"servfail\"} 1",
            "dnslb_endpoints{cluster=\"dns+a.test:80\",state=\"live\"} 0",
            "dnslb_upstream_stale{cluster=\"dns+a.test:80\"} 0",
            "dnslb_capped_answers_total{cluster=\"dns+a.test:80\"} 0",
            "dnslb_xds_pushes_total{type=\"EDS\"} 1",
            "dnslb_xds_pushes_total{type=\"CDS\"} 1",
            "dnslb_xds_push_latency_seconds_count 1",
            "dnslb_xds_push_latency_seconds_bucket{le=\"+Inf\"} 1",
            "dnslb_xds_connected_streams 3",
            "dnslb_xds_nacks_total 1",
            "dnslb_snapshots_total 1",
            "dnslb_config_reloads_total{result=\"ok\"} 2",
            "dnslb_config_reloads_total{result=\"error\"} 1",
            "# TYPE dnslb_xds_push_latency_seconds histogram",
            &format!(
                "dnslb_build_info{{version=\"{}\",commit=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION"),
                crate::COMMIT
            ),
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }

    #[test]
    fn each_family_is_one_group_under_its_header() {
        let state = DiscoveryState::new([
            "dns+a.test:80".parse().unwrap(),
            "dns+b.test:80".parse().unwrap(),
        ]);
        let text = Metrics::default().render(&state, 0);
        let mut family = "";
        let mut seen = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                family = rest.split(' ').next().unwrap();
                assert!(!seen.contains(&family), "{family} twice in\n{text}");
                seen.push(family);
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .filter(|base| *base == family)
                    .unwrap_or(name);
                assert_eq!(base, family, "{line:?} outside its group in\n{text}");
            }
        }
    }
}
