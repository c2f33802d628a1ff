//! Per-request cost: every variant runs at once (idle between its turns), and
//! the load generator visits them in rotating order, round after round.

use std::time::Instant;

use super::{
    configs::{self, DnsCluster, NativePolicy, NATIVE_COOKIE},
    fixture::{self, Proxy},
    stats::median,
    wrk::{self, Load, WrkRun},
    Base, Budget,
};
use crate::error::Result;

/// One variant under load.
pub struct Variant {
    pub key: &'static str,
    pub label: &'static str,
    /// `key` of its native twin, for the ratio.
    pub twin: Option<&'static str>,
    pub proxy: Proxy,
    pub headers: Vec<(String, String)>,
}

/// What one variant measured.
#[derive(Debug, Clone)]
pub struct VariantResult {
    pub key: &'static str,
    pub label: &'static str,
    pub twin: Option<&'static str>,
    pub runs: Vec<WrkRun>,
    pub rss_kib: Option<u64>,
    pub command: String,
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

/// Starts every variant against `base`'s three backends.
pub fn start_variants(base: &Base) -> Result<Vec<Variant>> {
    let host = format!("backend.test:{}", base.port);
    let dnslb_host = format!("dns+{host}");
    let clusters = [DnsCluster {
        name: "backend".into(),
        host: "backend.test".into(),
        port: base.port,
    }];
    let wasm = fixture::wasm()?;
    let mut variants = Vec::new();
    let hdr = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    };

    let native = |policy| -> Result<Proxy> {
        let ports = fixture::ports(0)?;
        let yaml = configs::native_bootstrap(ports, base.dns.addr(), &clusters, policy);
        let proxy = fixture::start_envoy(&yaml, ports, 1)?;
        fixture::wait_host_count(&proxy, "backend", 3)?;
        fixture::wait_serving(&proxy, &host, false)?;
        Ok(proxy)
    };
    let dnslb = |config: &str, absolute_form: bool| -> Result<Proxy> {
        let ports = fixture::ports(base.shim.xds)?;
        let yaml = configs::dnslb_bootstrap(ports, &wasm, config, absolute_form)?;
        let proxy = fixture::start_envoy(&yaml, ports, 1)?;
        fixture::wait_serving(&proxy, &dnslb_host, true)?;
        Ok(proxy)
    };

    let proxy = native(NativePolicy::RoundRobin)?;
    variants.push(Variant {
        key: "native-rr",
        label: "native STRICT_DNS, round robin",
        twin: None,
        headers: hdr(&[("Host", &host)]),
        proxy,
    });
    let proxy = native(NativePolicy::Cookie)?;
    let cookie = fixture::fetch_cookie(&proxy, &host, NATIVE_COOKIE)?;
    variants.push(Variant {
        key: "native-cookie",
        label: "native + stateful_session cookie",
        twin: None,
        headers: hdr(&[("Host", &host), ("Cookie", &cookie)]),
        proxy,
    });
    let proxy = native(NativePolicy::Hash)?;
    variants.push(Variant {
        key: "native-hash",
        label: "native MAGLEV, hash on x-user",
        twin: None,
        headers: hdr(&[("Host", &host), ("x-user", "alice")]),
        proxy,
    });
    let proxy = dnslb("{}", true)?;
    variants.push(Variant {
        key: "dnslb-rr",
        label: "dnslb round robin (demo bootstrap)",
        twin: Some("native-rr"),
        headers: hdr(&[("Host", &dnslb_host)]),
        proxy,
    });
    let proxy = dnslb("{}", false)?;
    variants.push(Variant {
        key: "dnslb-rr-noabs",
        label: "dnslb round robin, no absolute-form filter",
        twin: Some("native-rr"),
        headers: hdr(&[("Host", &dnslb_host)]),
        proxy,
    });
    let proxy = dnslb(r#"{"affinity":{"mode":"cookie"}}"#, true)?;
    let cookie = fixture::fetch_cookie(&proxy, &dnslb_host, "dnslb")?;
    variants.push(Variant {
        key: "dnslb-cookie",
        label: "dnslb cookie affinity",
        twin: Some("native-cookie"),
        headers: hdr(&[("Host", &dnslb_host), ("Cookie", &cookie)]),
        proxy,
    });
    let proxy = dnslb(
        r#"{"affinity":{"mode":"hash","key":"header:x-user"}}"#,
        true,
    )?;
    variants.push(Variant {
        key: "dnslb-hash",
        label: "dnslb hash affinity (header x-user)",
        twin: Some("native-hash"),
        headers: hdr(&[("Host", &dnslb_host), ("x-user", "alice")]),
        proxy,
    });
    let ports = fixture::ports(0)?;
    let proxy = fixture::start_envoy(
        &configs::direct_response_bootstrap(ports.admin, ports.listener),
        ports,
        1,
    )?;
    variants.push(Variant {
        key: "direct",
        label: "Envoy direct_response (ceiling)",
        twin: None,
        headers: hdr(&[("Host", &host)]),
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
    for v in variants {
        wrk::run(warmup, v.proxy.listener, &v.headers)?;
    }
    let mut runs: Vec<Vec<WrkRun>> = vec![Vec::new(); variants.len()];
    let round_cost = load.duration * variants.len() as u32;
    for round in 0..rounds {
        if round >= 3 && !budget.allows(round_cost) {
            eprintln!("bench: cost: stopping after {round} rounds (time budget)");
            break;
        }
        let started = Instant::now();
        for i in 0..variants.len() {
            let v = &variants[(i + round) % variants.len()];
            let run = wrk::run(load, v.proxy.listener, &v.headers)?;
            runs[(i + round) % variants.len()].push(run);
        }
        eprintln!(
            "bench: cost round {}/{rounds} in {:.1}s",
            round + 1,
            started.elapsed().as_secs_f64()
        );
    }
    let results = variants
        .iter()
        .zip(runs)
        .map(|(v, runs)| VariantResult {
            key: v.key,
            label: v.label,
            twin: v.twin,
            rss_kib: fixture::rss_kib(v.proxy.envoy.process().pid()),
            command: wrk::shell_line(&wrk::args(load, v.proxy.listener, &v.headers)),
            runs,
        })
        .collect();
    Ok(CostReport {
        load,
        rounds,
        order: variants.iter().map(|v| v.key).collect(),
        results,
    })
}
