//! Per-request cost: every variant runs at once (idle between its turns), and
//! the load generator visits them in rotating order, round after round.
//!
//! Three paths to the same three backends: Envoy's own (the native twins), the
//! recommended dnslb path (`xds-shim envoy-bootstrap`: Envoy routes and
//! balances, the filter runs only on the cookie route) and the legacy dnslb
//! path (`envoy/filter-routing.yaml`: the filter routes and picks), plus Envoy answering
//! by itself as the ceiling.

use std::{thread, time::Duration, time::Instant};

use super::{
    configs::{self, DnsCluster, NativePolicy, NATIVE_COOKIE},
    fixture::{self, Launch, Proxy},
    stats::median,
    wrk::{self, Load, WrkRun},
    Base, Budget,
};
use dnslb_tests::{backend::HEADER_BACKEND, error::Result, http::http_get, stack::Build};

/// The second upstream of the Base shim: the same three addresses as
/// `backend.test`, balanced by Maglev (what hash affinity needs on the
/// recommended path).
pub const HASH_NAME: &str = "hash.test";
/// The dnslb filter's counter of the requests that entered it (the wasm build's).
pub const FILTER_REQUESTS: &str = "wasmcustom.dnslb.requests";
/// The same counter of the dynamic module.
pub const MODULE_FILTER_REQUESTS: &str = "dynamicmodulescustom.dnslb.requests";

/// The counter of the requests that entered `build` of the filter.
pub fn filter_requests_counter(build: Build) -> &'static str {
    match build {
        Build::Wasm => FILTER_REQUESTS,
        Build::Module => MODULE_FILTER_REQUESTS,
    }
}
const COOKIE_CONFIG: &str = r#"{"affinity":{"mode":"cookie"}}"#;
const HASH_CONFIG: &str = r#"{"affinity":{"mode":"hash","key":"header:x-user"}}"#;
/// The filter hands its counters to Envoy once a second per worker.
const COUNTER_FLUSH: Duration = Duration::from_millis(1500);

/// The Base shim's `--config` file: [`HASH_NAME`] with `lb_policy: maglev`.
pub fn shim_config(port: u16) -> String {
    format!("upstreams:\n  - spec: dns+{HASH_NAME}:{port}\n    lb_policy: maglev\n")
}

pub use crate::spec::{Family, Goal, Spec, GOAL_COOKIE_MODULE, GOAL_COOKIE_WASM, GOAL_NATIVE_WORK};

/// One variant under load.
pub struct Variant {
    pub spec: Spec,
    pub proxy: Proxy,
    pub headers: Vec<(String, String)>,
}

/// What one variant measured.
#[derive(Debug, Clone)]
pub struct VariantResult {
    pub spec: Spec,
    pub runs: Vec<WrkRun>,
    pub rss_kib: Option<u64>,
    pub command: String,
    /// Requests wrk sent it (warm-up and every run).
    pub sent: u64,
    /// [`FILTER_REQUESTS`] after the runs: requests that entered the VM.
    pub filter_requests: Option<u64>,
    /// Envoy's `upstream_rq_retry` of its cluster after the runs.
    pub retries: Option<u64>,
    /// Envoy's CPU time (user + system, every thread) over the measured runs, divided by
    /// the requests of those runs: what a request costs Envoy, whatever the throughput the
    /// shared cores allowed.
    pub cpu_us_per_request: Option<f64>,
}

impl VariantResult {
    pub fn rps(&self) -> f64 {
        median(&self.runs.iter().map(|r| r.rps).collect::<Vec<_>>())
    }
    pub fn p50(&self) -> f64 {
        median(&self.runs.iter().map(|r| r.p50_ms).collect::<Vec<_>>())
    }
    pub fn p99(&self) -> f64 {
        median(&self.runs.iter().map(|r| r.p99_ms).collect::<Vec<_>>())
    }
    /// Share of one CPU Envoy used over the measured runs of `run` each: near
    /// 100 % when Envoy, not wrk or the backends, set the pace.
    pub fn envoy_busy(&self, run: Duration) -> Option<f64> {
        let requests: u64 = self.runs.iter().map(|r| r.requests).sum();
        let wall = run.as_secs_f64() * self.runs.len() as f64;
        let us = self.cpu_us_per_request?;
        (wall > 0.0).then(|| us * 1e-6 * requests as f64 / wall)
    }
    pub fn errors(&self) -> u64 {
        self.runs.iter().map(|r| r.non_2xx + r.socket_errors).sum()
    }
}

pub struct CostReport {
    pub load: Load,
    pub rounds: usize,
    pub results: Vec<VariantResult>,
    /// The order of the first round (each later round starts one further).
    pub order: Vec<&'static str>,
}

fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// `xds-shim envoy-bootstrap` as the variant runs it (ports left out).
fn shim_command(build: Option<Build>, config: &str) -> String {
    format!(
        "`xds-shim envoy-bootstrap{} --filter-config '{config}'`",
        match build {
            Some(Build::Wasm) => " --wasm dnslb_filter.wasm",
            Some(Build::Module) => " --module libdnslb_module.so",
            None => "",
        }
    )
}

/// A request with `headers` answered three times by one backend: the
/// variant's affinity holds for what wrk will send.
fn check_sticky(proxy: &Proxy, key: &str, headers: &[(String, String)]) -> Result<()> {
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let response = http_get(proxy.listener, "/", &pairs)?;
        seen.push((
            response.status,
            response.header(HEADER_BACKEND).map(str::to_owned),
        ));
    }
    let first = seen.first().cloned();
    if seen
        .iter()
        .all(|s| s.0 == 200 && s.1.is_some() && Some(s) == first.as_ref())
    {
        Ok(())
    } else {
        Err(fixture::fail(
            key,
            format!("requests with {headers:?} do not stick to one backend: {seen:?}"),
        ))
    }
}

/// The cookie goal of a build: the module is held to Envoy's own cost.
fn pick_goal(module: bool) -> Goal {
    if module {
        GOAL_COOKIE_MODULE
    } else {
        GOAL_COOKIE_WASM
    }
}

/// Starts every variant against `base`'s three backends, each Envoy as `launch` says.
pub fn start_variants(base: &Base, launch: Launch) -> Result<Vec<Variant>> {
    let port = base.port;
    let host = format!("backend.test:{port}");
    let dnslb_host = format!("dns+{host}");
    let hash_host = format!("dns+{HASH_NAME}:{port}");
    let clusters = [DnsCluster {
        name: "backend".into(),
        host: "backend.test".into(),
        port,
    }];
    let wasm = fixture::wasm()?;
    let mut variants = Vec::new();

    let native = |policy: NativePolicy| -> Result<(Proxy, String)> {
        let ports = fixture::ports(0)?;
        let yaml = configs::native_bootstrap(ports, base.dns.addr(), &clusters, policy);
        let proxy = fixture::launch_envoy(&yaml, ports, 1, launch)?;
        fixture::wait_host_count(&proxy, "backend", 3)?;
        fixture::wait_serving(&proxy, &host, false)?;
        let setup = format!(
            "`configs::native_bootstrap`: {}, route with the dnslb retry policy",
            policy.describe()
        );
        Ok((proxy, setup))
    };
    // The recommended path: Envoy picks, so no request shows a filter's pick.
    let recommended =
        |build: Option<Build>, config: &str, cluster: &str| -> Result<(Proxy, String)> {
            let ports = fixture::ports(base.shim.xds)?;
            let yaml = configs::recommended_bootstrap(ports, build, config)?;
            let proxy = fixture::launch_envoy(&yaml, ports, 1, launch)?;
            fixture::wait_host_count(&proxy, cluster, 3)?;
            fixture::wait_serving(&proxy, cluster, false)?;
            Ok((proxy, shim_command(build, config)))
        };
    // The legacy path: ready when the filter's pick shows.
    let legacy = |config: &str| -> Result<(Proxy, String)> {
        let ports = fixture::ports(base.shim.xds)?;
        let yaml = configs::legacy_bootstrap(ports, &wasm, config)?;
        let proxy = fixture::launch_envoy(&yaml, ports, 1, launch)?;
        fixture::wait_serving(&proxy, &dnslb_host, true)?;
        let setup = format!(
            "`envoy/filter-routing.yaml` with filter configuration `{config}` (absolute-form network \
             filter included)"
        );
        Ok((proxy, setup))
    };
    let (proxy, setup) = native(NativePolicy::RoundRobin)?;
    variants.push(Variant {
        spec: Spec::new(
            "native-rr",
            "native STRICT_DNS, round robin",
            Family::Native,
            setup,
        )
        .cluster("backend"),
        headers: headers(&[("Host", &host)]),
        proxy,
    });
    let (proxy, setup) = native(NativePolicy::Cookie)?;
    let cookie = fixture::fetch_cookie(&proxy, &host, NATIVE_COOKIE)?;
    let hdrs = headers(&[("Host", &host), ("Cookie", &cookie)]);
    check_sticky(&proxy, "native-cookie", &hdrs)?;
    variants.push(Variant {
        spec: Spec::new(
            "native-cookie",
            "native + stateful_session cookie",
            Family::Native,
            setup,
        )
        .cluster("backend"),
        headers: hdrs,
        proxy,
    });
    let (proxy, setup) = native(NativePolicy::Hash)?;
    let hdrs = headers(&[("Host", &host), ("x-user", "alice")]);
    check_sticky(&proxy, "native-hash", &hdrs)?;
    variants.push(Variant {
        spec: Spec::new(
            "native-hash",
            "native MAGLEV, hash on x-user",
            Family::Native,
            setup,
        )
        .cluster("backend"),
        headers: hdrs,
        proxy,
    });

    // The recommended path with either build of the filter; the wasm build's hash
    // variant runs without a filter, the module's with it loaded (off on that route).
    for build in [Build::Wasm, Build::Module] {
        let module = build == Build::Module;
        let pick =
            |wasm: &'static str, module_key: &'static str| if module { module_key } else { wasm };
        let (proxy, setup) = recommended(Some(build), "{}", &dnslb_host)?;
        variants.push(Variant {
            spec: Spec::new(
                pick("dnslb-rr", "module-rr"),
                pick("dnslb round robin", "dnslb module, round robin"),
                Family::Dnslb,
                setup,
            )
            .twin("native-rr", Some(GOAL_NATIVE_WORK))
            .cluster(&dnslb_host)
            .with_filter(Some(build)),
            headers: headers(&[("Host", &dnslb_host)]),
            proxy,
        });
        let (proxy, setup) = recommended(Some(build), COOKIE_CONFIG, &dnslb_host)?;
        // The filter picks by cookie from its own membership stream.
        fixture::wait_filter_knows(&proxy, &dnslb_host)?;
        let cookie = fixture::fetch_cookie(&proxy, &dnslb_host, "dnslb")?;
        let hdrs = headers(&[("Host", &dnslb_host), ("Cookie", &cookie)]);
        let key = pick("dnslb-cookie", "module-cookie");
        check_sticky(&proxy, key, &hdrs)?;
        let goal = pick_goal(module);
        variants.push(Variant {
            spec: Spec::new(
                key,
                pick("dnslb cookie affinity", "dnslb module, cookie affinity"),
                Family::Dnslb,
                setup,
            )
            .twin("native-cookie", Some(goal))
            .cluster(&dnslb_host)
            .with_filter(Some(build)),
            headers: hdrs,
            proxy,
        });
        let filter = module.then_some(build);
        let (proxy, setup) = recommended(filter, HASH_CONFIG, &hash_host)?;
        let hdrs = headers(&[("Host", &hash_host), ("x-user", "alice")]);
        let key = pick("dnslb-hash", "module-hash");
        check_sticky(&proxy, key, &hdrs)?;
        variants.push(Variant {
            spec: Spec::new(
                key,
                pick(
                    "dnslb hash affinity (header x-user)",
                    "dnslb module, hash affinity (header x-user)",
                ),
                Family::Dnslb,
                format!("{setup}, cluster `dns+{HASH_NAME}:PORT` with `lb_policy: maglev`"),
            )
            .twin("native-hash", Some(GOAL_NATIVE_WORK))
            .cluster(&hash_host)
            .with_filter(filter),
            headers: hdrs,
            proxy,
        });
    }

    let (proxy, setup) = legacy("{}")?;
    variants.push(Variant {
        spec: Spec::new(
            "legacy-rr",
            "legacy filter routing, round robin",
            Family::Legacy,
            setup,
        )
        .twin("native-rr", None)
        .cluster(&dnslb_host)
        .with_filter(Some(Build::Wasm)),
        headers: headers(&[("Host", &dnslb_host)]),
        proxy,
    });
    let (proxy, setup) = legacy(COOKIE_CONFIG)?;
    let cookie = fixture::fetch_cookie(&proxy, &dnslb_host, "dnslb")?;
    let hdrs = headers(&[("Host", &dnslb_host), ("Cookie", &cookie)]);
    check_sticky(&proxy, "legacy-cookie", &hdrs)?;
    variants.push(Variant {
        spec: Spec::new(
            "legacy-cookie",
            "legacy filter routing, cookie affinity",
            Family::Legacy,
            setup,
        )
        .twin("native-cookie", None)
        .cluster(&dnslb_host)
        .with_filter(Some(Build::Wasm)),
        headers: hdrs,
        proxy,
    });

    let ports = fixture::ports(0)?;
    let proxy = fixture::launch_envoy(
        &configs::direct_response_bootstrap(ports.admin, ports.listener),
        ports,
        1,
        launch,
    )?;
    variants.push(Variant {
        spec: Spec::new(
            "direct",
            "Envoy direct_response (ceiling)",
            Family::Ceiling,
            "`configs::direct_response_bootstrap`: Envoy answers 200 itself".into(),
        ),
        headers: headers(&[("Host", &host)]),
        proxy,
    });
    Ok(variants)
}

/// Warm-up once per variant, then `rounds` rounds in rotating order. Stops
/// early (fewer rounds) when the budget says so.
pub fn measure(
    variants: &[Variant],
    load: Load,
    warmup: Load,
    rounds: usize,
    budget: &Budget,
) -> Result<CostReport> {
    let mut sent = vec![0; variants.len()];
    for (v, sent) in variants.iter().zip(&mut sent) {
        *sent += wrk::run(warmup, v.proxy.listener, &v.headers)?.requests;
    }
    let mut runs: Vec<Vec<WrkRun>> = vec![Vec::new(); variants.len()];
    // (CPU ticks, requests) of the measured runs, or None once a reading failed.
    let mut cpu: Vec<Option<(u64, u64)>> = vec![Some((0, 0)); variants.len()];
    let round_cost = load.duration * variants.len() as u32;
    for round in 0..rounds {
        if round >= 3 && !budget.allows(round_cost) {
            eprintln!("bench: cost: stopping after {round} rounds (time budget)");
            break;
        }
        let started = Instant::now();
        for i in 0..variants.len() {
            let k = (i + round) % variants.len();
            let v = &variants[k];
            let pid = v.proxy.envoy.process().pid();
            let before = fixture::cpu_ticks(pid);
            let run = wrk::run(load, v.proxy.listener, &v.headers)?;
            cpu[k] = match (cpu[k], before, fixture::cpu_ticks(pid)) {
                (Some((ticks, requests)), Some(a), Some(b)) => {
                    Some((ticks + b.saturating_sub(a), requests + run.requests))
                }
                _ => None,
            };
            sent[k] += run.requests;
            runs[k].push(run);
        }
        eprintln!(
            "bench: cost round {}/{rounds} in {:.1}s",
            round + 1,
            started.elapsed().as_secs_f64()
        );
    }
    thread::sleep(COUNTER_FLUSH);
    let results = variants
        .iter()
        .zip(runs)
        .zip(sent)
        .zip(cpu)
        .map(|(((v, runs), sent), cpu)| VariantResult {
            cpu_us_per_request: cpu.filter(|(_, requests)| *requests > 0).map(
                |(ticks, requests)| {
                    ticks as f64 / fixture::clock_ticks() as f64 * 1e6 / requests as f64
                },
            ),
            spec: v.spec.clone(),
            rss_kib: fixture::rss_kib(v.proxy.envoy.process().pid()),
            command: wrk::shell_line(&wrk::args(load, v.proxy.listener, &v.headers)),
            sent,
            filter_requests: v
                .spec
                .filter
                .and_then(|b| fixture::envoy_counter(&v.proxy, filter_requests_counter(b))),
            retries: v.spec.stat_cluster.as_ref().and_then(|c| {
                fixture::envoy_counter(&v.proxy, &format!("cluster.{c}.upstream_rq_retry"))
            }),
            runs,
        })
        .collect();
    Ok(CostReport {
        load,
        rounds,
        order: variants.iter().map(|v| v.spec.key).collect(),
        results,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shim_config_serves_the_hash_name_with_maglev() {
        assert_eq!(
            shim_config(8080),
            "upstreams:\n  - spec: dns+hash.test:8080\n    lb_policy: maglev\n"
        );
    }

    #[test]
    fn shim_command_names_wasm_only_when_given() {
        assert_eq!(
            shim_command(Some(Build::Wasm), "{}"),
            "`xds-shim envoy-bootstrap --wasm dnslb_filter.wasm --filter-config '{}'`"
        );
        assert!(shim_command(Some(Build::Module), "{}").contains("--module libdnslb_module.so"));
        assert!(!shim_command(None, HASH_CONFIG).contains("--wasm"));
    }
}
