//! Section 1 of the report, per-request cost: each variant next to its native
//! twin, the goals of issue 11 with a verdict computed from this run's
//! figures, and what a request does on each path.

use std::fmt::Write as _;

use super::{fmt_mib, fmt_ms, fmt_rps};
use crate::{
    cost::{CostReport, Family, Goal, VariantResult, FILTER_REQUESTS, HASH_NAME},
    machine::Machine,
    stats::{max, min},
    svg::{self, Bar},
    wrk::WrkRun,
};

pub(super) fn find<'a>(cost: &'a CostReport, key: &str) -> Option<&'a VariantResult> {
    cost.results.iter().find(|v| v.spec.key == key)
}

/// (throughput ratio, p99 ratio) of a variant to its native twin.
fn ratios(cost: &CostReport, v: &VariantResult) -> Option<(f64, f64)> {
    let twin = find(cost, v.spec.twin?)?;
    Some((v.rps() / twin.rps(), v.p99() / twin.p99()))
}

/// The goal in words: `≥ 0.95× req/s, p99 ≤ 1.10×`.
fn goal_text(goal: Goal) -> String {
    let rps = format!("≥ {:.2}× req/s", goal.min_rps_ratio);
    match goal.max_p99_ratio {
        Some(p99) => format!("{rps}, p99 ≤ {p99:.2}×"),
        None => rps,
    }
}

/// Met or missed, and what was missed; `None` when a figure is missing.
fn verdict(goal: Goal, rps_ratio: f64, p99_ratio: f64) -> Option<String> {
    let checks_p99 = goal.max_p99_ratio.is_some();
    if !rps_ratio.is_finite() || (checks_p99 && !p99_ratio.is_finite()) {
        return None;
    }
    let rps_ok = rps_ratio >= goal.min_rps_ratio;
    let p99_ok = goal.max_p99_ratio.is_none_or(|max| p99_ratio <= max);
    Some(
        match (rps_ok, p99_ok) {
            (true, true) => "met",
            (false, true) => "**missed** (throughput)",
            (true, false) => "**missed** (p99)",
            (false, false) => "**missed** (throughput and p99)",
        }
        .to_string(),
    )
}

/// The variant's verdict against its goal, in words.
fn verdict_of(cost: &CostReport, v: &VariantResult) -> String {
    match (v.spec.goal, ratios(cost, v)) {
        (Some(goal), Some((rr, pr))) => verdict(goal, rr, pr).unwrap_or_else(|| "n/a".into()),
        (Some(_), None) => "n/a (twin not measured)".into(),
        (None, _) => "—".into(),
    }
}

fn met(cost: &CostReport, v: &VariantResult) -> bool {
    verdict_of(cost, v) == "met"
}

/// The summary's lines for the per-request cost.
pub(super) fn summary(md: &mut String, cost: &CostReport, machine: &Machine) {
    let with_goal: Vec<&VariantResult> = cost
        .results
        .iter()
        .filter(|v| v.spec.goal.is_some())
        .collect();
    let _ = writeln!(
        md,
        "- Goals of issue 11 met in this run: **{} of {}** (load average {} at the start, {} at \
         the end; the goals are for a quiet machine).",
        with_goal.iter().filter(|v| met(cost, v)).count(),
        with_goal.len(),
        machine.load_before,
        machine.load_after
    );
    for v in cost.results.iter().filter(|v| v.spec.twin.is_some()) {
        let (Some((rr, pr)), Some(twin)) =
            (ratios(cost, v), v.spec.twin.and_then(|t| find(cost, t)))
        else {
            continue;
        };
        let figures = format!(
            "{rr:.2}× the throughput of {} ({} vs {} req/s), p99 {pr:.2}× ({} vs {})",
            twin.spec.label,
            fmt_rps(v.rps()),
            fmt_rps(twin.rps()),
            fmt_ms(v.p99()),
            fmt_ms(twin.p99()),
        );
        let _ = match v.spec.goal {
            Some(goal) => writeln!(
                md,
                "- **{}**: {figures}; goal {}: {}.",
                v.spec.label,
                goal_text(goal),
                verdict_of(cost, v)
            ),
            None => writeln!(md, "- Before ({}): {figures}.", v.spec.label),
        };
    }
    if let (Some(direct), Some(native)) = (find(cost, "direct"), find(cost, "native-rr")) {
        let _ = writeln!(
            md,
            "- Ceiling: Envoy's `direct_response` does {} req/s; proxying to a backend (native \
             round robin) is {:.2}× of that on this machine (the backends share its {} cores).",
            fmt_rps(direct.rps()),
            native.rps() / direct.rps(),
            machine.nproc
        );
    }
}

fn family_text(family: Family) -> &'static str {
    match family {
        Family::Native => "native",
        Family::Dnslb => "dnslb (recommended)",
        Family::Legacy => "legacy (filter routing)",
        Family::Ceiling => "ceiling",
    }
}

pub(super) fn section(
    md: &mut String,
    charts: &mut Vec<(String, String)>,
    cost: &CostReport,
    machine: &Machine,
) {
    let runs = cost.results.first().map_or(0, |v| v.runs.len());
    let _ = writeln!(
        md,
        "## 1. Per-request cost\n\n\
         Every variant is its own Envoy (`--concurrency 1`), all started before the first \
         run and idle between their turns, in front of the same three fake backends \
         (`fake-backend`, hyper, one process each on `127.0.0.2-4`). wrk visits the \
         variants in turn, {runs} round(s), each round starting one variant further \
         (after a 1 s warm-up run each); every run is `{} threads, {} connections, {} s` \
         keep-alive HTTP/1.1, closed loop. {} Numbers are medians over the rounds; the \
         req/s column also gives min–max. Load average: {} at the start of the run, {} at \
         its end.\n",
        cost.load.threads,
        cost.load.connections,
        cost.load.duration.as_secs(),
        machine.pinning.as_ref().map_or_else(
            || "No CPU pinning: every process shares every CPU.".to_string(),
            |p| format!("CPU pinning: {}.", p.describe()),
        ),
        machine.load_before,
        machine.load_after
    );
    variants_table(md, cost);
    results_table(md, cost);
    goals_table(md, cost);
    charts.push((
        "cost-rps.svg".into(),
        svg::bar_chart(
            "Requests/s, Envoy --concurrency 1 (higher is better)",
            "requests per second",
            &variant_bars(cost, VariantResult::rps, |r| r.rps),
            fmt_rps,
        ),
    ));
    charts.push((
        "cost-p99.svg".into(),
        svg::bar_chart(
            "p99 latency (lower is better)",
            "milliseconds",
            &variant_bars(cost, VariantResult::p99, |r| r.p99_ms),
            fmt_ms,
        ),
    ));
    let _ = writeln!(md, "![requests per second](benchmarks/cost-rps.svg)\n");
    let _ = writeln!(md, "![p99 latency](benchmarks/cost-p99.svg)\n");
    paths_text(md, cost);
    let _ = writeln!(md, "Command lines (ports are picked per run):\n\n```sh");
    for v in &cost.results {
        let _ = writeln!(md, "# {}\n{}", v.spec.label, v.command);
    }
    let _ = writeln!(md, "```\n");
}

fn variants_table(md: &mut String, cost: &CostReport) {
    let _ = writeln!(
        md,
        "| variant | path | Envoy configuration | native twin |\n|---|---|---|---|"
    );
    for v in &cost.results {
        let twin = v
            .spec
            .twin
            .and_then(|t| find(cost, t))
            .map_or("—", |t| t.spec.label);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {twin} |",
            v.spec.label,
            family_text(v.spec.family),
            v.spec.setup.replace('|', "\\|")
        );
    }
    let _ = writeln!(
        md,
        "\nThe dnslb and legacy variants reach the bench's xds-shim over ADS; it serves \
         `dns+backend.test:PORT` and `dns+{HASH_NAME}:PORT` (the same three addresses), the \
         latter with `lb_policy: maglev` from its `--config` file, which hash affinity on the \
         recommended path needs. Every native route carries the retry policy of the dnslb \
         route for idempotent methods (`retry_on: connect-failure,refused-stream,\
         reset-before-request,reset,5xx`, `num_retries: 2`, `retry_host_predicate` \
         `previous_hosts` with `host_selection_retry_max_attempts: 5`, `retry_priority` \
         `previous_priorities` with `update_frequency: 2`), so both do the same work. The \
         cookie variants send the cookie their Envoy set on a first request, so every measured \
         request carries its session; before the runs, three such requests must reach one \
         backend (the hash variants likewise with `x-user: alice`).\n"
    );
}

fn results_table(md: &mut String, cost: &CostReport) {
    let _ = writeln!(
        md,
        "| variant | req/s median (min–max) | p50 | p99 | Envoy CPU per request | Envoy busy | errors | retries | requests in the filter / sent | Envoy RSS |\n|---|---|---|---|---|---|---|---|---|---|"
    );
    for v in &cost.results {
        let rps: Vec<f64> = v.runs.iter().map(|r| r.rps).collect();
        let _ = writeln!(
            md,
            "| {} | {} ({}–{}) | {} | {} | {} | {} | {} | {} | {} | {} |",
            v.spec.label,
            fmt_rps(v.rps()),
            fmt_rps(min(&rps)),
            fmt_rps(max(&rps)),
            fmt_ms(v.p50()),
            fmt_ms(v.p99()),
            v.cpu_us_per_request
                .map_or("n/a".into(), |us| format!("{us:.1} µs")),
            v.envoy_busy(cost.load.duration)
                .map_or("n/a".into(), |b| format!("{:.0} %", b * 100.0)),
            v.errors(),
            v.retries.map_or("—".into(), |n| n.to_string()),
            filter_cell(v),
            fmt_mib(v.rss_kib),
        );
    }
    let _ = writeln!(
        md,
        "\n\"errors\" counts non-2xx responses and socket errors over all runs; \"retries\" is \
         Envoy's `upstream_rq_retry` of the variant's cluster after the runs; \"requests in \
         the filter\" is the dnslb filter's own counter (`{FILTER_REQUESTS}`, read from \
         Envoy's admin `/stats` after the runs) next to the requests wrk sent (warm-up \
         included): requests that entered the wasm VM, a few more than wrk sent where the \
         harness's readiness and stickiness probes entered it too. \"Envoy CPU per request\" \
         is the Envoy process's CPU time (user + system, all threads, from `/proc`) over the \
         measured runs divided by their requests: the cost of a request to Envoy, much less \
         sensitive than req/s to how the shared cores were scheduled between wrk, Envoy \
         and the backends. \"Envoy busy\" is that CPU time over the runs' wall time, in \
         percent of one CPU: near 100 % Envoy set the pace and req/s measures its cost; well \
         below, something else did. Envoy RSS is the process's resident \
         memory after the runs (with a filter, it includes the V8 VMs).\n"
    );
}

fn filter_cell(v: &VariantResult) -> String {
    match (v.spec.filter, v.filter_requests) {
        (None, _) => "no filter".into(),
        (Some(_), Some(n)) => format!("{n} / {}", v.sent),
        (Some(_), None) => format!("n/a / {}", v.sent),
    }
}

fn goals_table(md: &mut String, cost: &CostReport) {
    let _ = writeln!(
        md,
        "Goals (issue 11), against the native twin measured in the same run; the legacy rows \
         are the path before it, for comparison:\n\n\
         | variant | native twin | req/s ratio | p99 ratio | Envoy CPU per request, ratio | goal | verdict |\n|---|---|---|---|---|---|---|"
    );
    for v in cost.results.iter().filter(|v| v.spec.twin.is_some()) {
        let twin = v
            .spec
            .twin
            .and_then(|t| find(cost, t))
            .map_or("—", |t| t.spec.label);
        let (rr, pr) = ratios(cost, v).map_or(("n/a".into(), "n/a".into()), |(a, b)| {
            (format!("{a:.2}"), format!("{b:.2}"))
        });
        let goal = v.spec.goal.map_or("— (before)".into(), goal_text);
        let cpu = v
            .spec
            .twin
            .and_then(|t| find(cost, t))
            .and_then(|t| Some(v.cpu_us_per_request? / t.cpu_us_per_request?))
            .map_or("n/a".into(), |r| format!("{r:.2}"));
        let _ = writeln!(
            md,
            "| {} | {twin} | {rr} | {pr} | {cpu} | {goal} | {} |",
            v.spec.label,
            verdict_of(cost, v)
        );
    }
    let _ = writeln!(
        md,
        "\nThe cookie goal is for the wasm build; the dynamic-module build aims at ≥ 0.95×. \
         The goal for 300 and 3000 members is in section 3.\n"
    );
}

/// One bar per variant: the median and the min–max of `per_run`.
fn variant_bars(
    cost: &CostReport,
    median_of: fn(&VariantResult) -> f64,
    per_run: fn(&WrkRun) -> f64,
) -> Vec<Bar> {
    cost.results
        .iter()
        .map(|v| {
            let values: Vec<f64> = v.runs.iter().map(per_run).collect();
            Bar {
                label: v.spec.label.to_string(),
                value: median_of(v),
                range: Some((min(&values), max(&values))),
                color: match v.spec.family {
                    Family::Dnslb => svg::DNSLB,
                    Family::Legacy => svg::LEGACY,
                    Family::Ceiling => svg::CEILING,
                    Family::Native => svg::NATIVE,
                },
            }
        })
        .collect()
}

/// "the filter counted N of the M requests wrk sent" for `key`, when measured.
fn entered(cost: &CostReport, key: &str) -> String {
    match find(cost, key) {
        Some(v) => match v.filter_requests {
            Some(n) => format!(
                "in this run the filter of the *{}* Envoy counted {n} requests; wrk sent it {}",
                v.spec.label, v.sent
            ),
            None => format!(
                "the filter's counter of the *{}* Envoy could not be read in this run",
                v.spec.label
            ),
        },
        None => format!("`{key}` did not run"),
    }
}

fn paths_text(md: &mut String, cost: &CostReport) {
    let _ = writeln!(md, "### What a request does on each path\n");
    let missed: Vec<&str> = cost
        .results
        .iter()
        .filter(|v| v.spec.goal.is_some() && !met(cost, v))
        .map(|v| v.spec.label)
        .collect();
    if missed.is_empty() {
        let _ = writeln!(md, "Every dnslb variant met its goal in this run.\n");
    } else {
        let _ = writeln!(md, "Goals missed in this run: {}.\n", missed.join("; "));
    }
    let vm = match find(cost, "dnslb-rr").and_then(|v| v.filter_requests) {
        Some(0) => "**on the round-robin and hash routes no request enters the wasm VM**",
        _ => {
            "the round-robin and hash routes are configured so that no request enters the \
              wasm VM"
        }
    };
    let _ = writeln!(
        md,
        "**dnslb (recommended)**: the bootstrap `xds-shim envoy-bootstrap` prints \
         (`xds-shim/src/bootstrap.rs`), its clusters and endpoints over ADS. Per request Envoy \
         removes client-sent `x-dnslb-*` headers (an early header mutation), matches the \
         route (virtual host `dns+*`/`srv+*`, an RE2 match of `:authority`, and of `:method` \
         on the idempotent-methods route), takes the cluster named by `:authority` \
         (`cluster_header`), picks the host with the cluster's `override_host` policy, which \
         falls back to round robin (Maglev over the route's `hash_policy` for `{HASH_NAME}`) \
         when no `x-dnslb-endpoint` names a member, and rewrites the authority from the \
         endpoint's `hostname` (`auto_host_rewrite`). All of it is Envoy's C++: {vm}. Round \
         robin has the filter in the chain but turned off in the route's \
         `typed_per_filter_config` (`disabled: true`); {}. Hash affinity runs with no filter \
         at all. What the native twin skips is the header removal, the regex matches, the \
         cluster lookup by name and the override-host check.\n",
        entered(cost, "dnslb-rr")
    );
    let _ = writeln!(
        md,
        "Cookie affinity is the one route where the filter runs, because Envoy has no \
         opaque, signed, expiring cookie: it reads `:path`, `:authority` and `cookie` (the \
         wasm build in one host call, the module one call each), opens the cookie \
         (ChaCha20-Poly1305; a worker remembers the cookies it opened, so a session's later \
         requests skip the cipher), and names that endpoint for `override_host` (the wasm \
         build in `x-dnslb-endpoint`, the module through Envoy's override call); on the \
         response it reads the upstream address and sets a cookie only when another \
         endpoint answered (`filter/src/envoy_routing.rs`); {}. Its twin, \
         `stateful_session`, reads a base64 cookie that holds the endpoint's `ip:port` in \
         clear, in C++.\n",
        entered(cost, "dnslb-cookie")
    );
    let _ = writeln!(
        md,
        "**legacy** (`envoy/filter-routing.yaml`, the filter routing): every request enters the VM ({}). \
         The filter reads all request headers (one host call), writes `x-dnslb-cluster` and \
         `:authority`, which make Envoy recompute the route (`cluster_header: \
         x-dnslb-cluster`), picks the failover chain itself (smooth weighted round robin, a \
         pass over every member per pick in `filter/src/members.rs` `next_chain`, or the \
         cookie's member) and writes it into `x-dnslb-endpoint`, sets `x-envoy-retry-on` and \
         `x-envoy-max-retries`, and on the response reads the upstream address. That \
         bootstrap also runs the absolute-form network filter, which copies each request's \
         bytes into the VM and is entered for upstream data too (the Rust SDK exports every \
         callback).\n",
        entered(cost, "legacy-rr")
    );
    let _ = writeln!(md, "Retries: {}.\n", retries_text(cost));
}

/// Which variants retried, from Envoy's `upstream_rq_retry` of their cluster.
fn retries_text(cost: &CostReport) -> String {
    let with_cluster = || {
        cost.results
            .iter()
            .filter(|v| v.spec.stat_cluster.is_some())
    };
    let retried: Vec<String> = with_cluster()
        .filter_map(|v| Some((v.spec.label, v.retries.filter(|&n| n > 0)?)))
        .map(|(label, n)| format!("{label} {n}"))
        .collect();
    let unread: Vec<&str> = with_cluster()
        .filter(|v| v.retries.is_none())
        .map(|v| v.spec.label)
        .collect();
    let mut text = if retried.is_empty() {
        "no variant retried a request in this run (`upstream_rq_retry` 0)".to_string()
    } else {
        format!("{} (`upstream_rq_retry`)", retried.join(", "))
    };
    if !unread.is_empty() {
        text.push_str(&format!("; not read for {}", unread.join(", ")));
    }
    text
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::cost::{Spec, GOAL_COOKIE_WASM, GOAL_NATIVE_WORK};
    use crate::report::assert_contains;
    use crate::wrk::Load;
    use dnslb_tests::stack::Build;
    use std::time::Duration;

    fn run(rps: f64, p99_ms: f64) -> WrkRun {
        WrkRun {
            rps,
            p50_ms: p99_ms / 2.0,
            p99_ms,
            requests: 1000,
            non_2xx: 0,
            socket_errors: 0,
        }
    }

    fn variant(
        key: &'static str,
        family: Family,
        twin: Option<&'static str>,
        goal: Option<Goal>,
        rps: f64,
        p99: f64,
    ) -> VariantResult {
        VariantResult {
            spec: Spec {
                key,
                label: key,
                family,
                twin,
                goal,
                setup: format!("setup of {key}"),
                stat_cluster: None,
                filter: (family != Family::Native).then_some(Build::Wasm),
            },
            runs: vec![run(rps, p99)],
            rss_kib: Some(2048),
            command: format!("wrk {key}"),
            sent: 1000,
            filter_requests: (family == Family::Legacy).then_some(1000),
            retries: Some(0),
            cpu_us_per_request: Some(1e6 / rps),
        }
    }

    /// Two twins, two dnslb variants (one meets its goal) and a legacy one.
    pub(in crate::report) fn report() -> CostReport {
        let results = vec![
            variant("native-rr", Family::Native, None, None, 1000.0, 1.0),
            variant("native-cookie", Family::Native, None, None, 1000.0, 1.0),
            variant(
                "dnslb-rr",
                Family::Dnslb,
                Some("native-rr"),
                Some(GOAL_NATIVE_WORK),
                960.0,
                1.05,
            ),
            variant(
                "dnslb-cookie",
                Family::Dnslb,
                Some("native-cookie"),
                Some(GOAL_COOKIE_WASM),
                700.0,
                2.0,
            ),
            variant(
                "legacy-rr",
                Family::Legacy,
                Some("native-rr"),
                None,
                450.0,
                1.9,
            ),
        ];
        CostReport {
            load: Load {
                threads: 1,
                connections: 8,
                duration: Duration::from_secs(3),
            },
            rounds: 1,
            order: results.iter().map(|v| v.spec.key).collect(),
            results,
        }
    }

    #[test]
    fn verdicts_follow_the_goal() {
        for (goal, rps_ratio, p99_ratio, want) in [
            (GOAL_NATIVE_WORK, 0.95, 1.10, "met"),
            (GOAL_NATIVE_WORK, 0.94, 1.0, "**missed** (throughput)"),
            (GOAL_NATIVE_WORK, 0.99, 1.2, "**missed** (p99)"),
            (
                GOAL_NATIVE_WORK,
                0.5,
                2.0,
                "**missed** (throughput and p99)",
            ),
            // The cookie goal has no p99 bound.
            (GOAL_COOKIE_WASM, 0.8, 5.0, "met"),
            (GOAL_COOKIE_WASM, 0.8, f64::NAN, "met"),
        ] {
            assert_eq!(
                verdict(goal, rps_ratio, p99_ratio).as_deref(),
                Some(want),
                "{rps_ratio} {p99_ratio}"
            );
        }
        assert_eq!(verdict(GOAL_NATIVE_WORK, f64::NAN, 1.0), None);
        assert_eq!(goal_text(GOAL_NATIVE_WORK), "≥ 0.95× req/s, p99 ≤ 1.10×");
        assert_eq!(goal_text(GOAL_COOKIE_WASM), "≥ 0.80× req/s");
    }

    #[test]
    fn summary_and_section_give_verdicts_and_counts_from_the_figures() {
        let cost = report();
        let machine = Machine {
            nproc: 2,
            load_before: "0.10 0.20 0.30".into(),
            load_after: "0.40 0.50 0.60".into(),
            ..Machine::default()
        };
        let mut md = String::new();
        summary(&mut md, &cost, &machine);
        assert_contains(
            &md,
            &[
                "met in this run: **1 of 2**",
                "0.10 0.20 0.30 at the start, 0.40 0.50 0.60 at the end",
                "- **dnslb-rr**: 0.96× the throughput of native-rr",
                "goal ≥ 0.95× req/s, p99 ≤ 1.10×: met.",
                "- **dnslb-cookie**: 0.70×",
                "goal ≥ 0.80× req/s: **missed** (throughput).",
                "- Before (legacy-rr): 0.45×",
            ],
        );

        let (mut md, mut charts) = (String::new(), Vec::new());
        section(&mut md, &mut charts, &cost, &machine);
        assert_eq!(charts.len(), 2);
        assert_contains(
            &md,
            &[
                "| legacy-rr | native-rr | 0.45 | 1.90 | 2.22 | — (before) | — |",
                "| dnslb-rr | native-rr | 0.96 | 1.05 | 1.04 | ≥ 0.95× req/s, p99 ≤ 1.10× | met |",
                "Goals missed in this run: dnslb-cookie.",
                "| legacy-rr | 450 (450–450) |",
                "| 1000 / 1000 |",
                "| native-rr | 1000 (1000–1000) | 0.50 ms | 1.00 ms | 1000.0 µs | 33 % | 0 | 0 | no filter |",
                "the filter's counter of the *dnslb-rr* Envoy could not be read",
                "are configured so that no request enters",
                "the filter of the *legacy-rr* Envoy counted 1000 requests; wrk sent it 1000",
                "Retries: no variant retried",
                "| dnslb-rr | 960 (960–960) | 0.53 ms | 1.05 ms | 1041.7 µs | 35 % | 0 | 0 | n/a / 1000 |",
            ],
        );
    }
}
