//! Propagation, removal with a dead member: a member's backend process is
//! killed and its A record removed at the same instant while requests keep
//! flowing; how long until no request tries it any more, and how many did.
//!
//! Three systems side by side, each with its own control plane so that one's
//! refresh cannot help another: dnslb with `retries: 0` (the filter's forced
//! refresh needs a retry to notice the failed pick, so this is the 5 s
//! interval alone; the requests that tried the dead member fail), dnslb with
//! its default retries (the failed pick forces a re-resolution), and Envoy's
//! STRICT_DNS (5 s refresh, route retry policy). Both shims run with
//! `--interval 5s --drain 0s`.

use std::{
    net::{Ipv4Addr, SocketAddr},
    thread,
    time::{Duration, Instant},
};

use super::{
    configs::{self, DnsCluster, NativePolicy},
    fixture::{self, Proxy},
    propagation::jitter,
    Base,
};
use dnslb_tests::{
    backend::HEADER_BACKEND,
    error::Result,
    http::http_get,
    process::{ChildGuard, TempDir},
    stack::Shim,
};

/// The name of this scenario.
pub const NAME: &str = "dead.test";
/// Its members: two that live, and the one that dies.
pub const IPS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(127, 0, 0, 5),
    Ipv4Addr::new(127, 0, 0, 6),
    Ipv4Addr::new(127, 0, 0, 7),
];
/// Observation ends this long after the change at the latest.
pub const OBSERVE_MAX: Duration = Duration::from_secs(13);
/// And once no request tried the dead member for this long.
pub const QUIET: Duration = Duration::from_millis(2500);
const PROBE_GAP: Duration = Duration::from_millis(4);
/// Requests spent waiting for the member to be in rotation before a trial.
const WARM_REQUESTS: usize = 200;
const WARM_MAX: Duration = Duration::from_secs(30);
/// The shim flags of this scenario (besides upstream and addresses).
pub const SHIM_FLAGS: [&str; 2] = ["--drain", "0s"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    /// dnslb with `retries: 0`: the interval alone.
    DnslbInterval,
    /// dnslb with its default retries: forced refresh.
    DnslbForced,
    /// Envoy STRICT_DNS, 5 s refresh, route retries.
    Native,
}

impl System {
    pub const ALL: [System; 3] = [System::DnslbInterval, System::DnslbForced, System::Native];

    pub fn label(self) -> &'static str {
        match self {
            System::DnslbInterval => "dnslb, interval only (`retries: 0`)",
            System::DnslbForced => "dnslb, forced refresh (default retries)",
            System::Native => "Envoy STRICT_DNS (route retries)",
        }
    }
}

/// One request of a probe.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadObservation {
    pub at: Duration,
    pub ok: bool,
    /// `x-envoy-attempt-count` of the response (1 when absent).
    pub attempts: u32,
    pub backend: Option<SocketAddr>,
}

impl DeadObservation {
    /// Whether this request tried the dead member: it failed, needed another
    /// attempt, or (before the kill took) was answered by it.
    pub fn tried(&self, x: SocketAddr) -> bool {
        !self.ok || self.attempts > 1 || self.backend == Some(x)
    }
}

/// One trial's outcome for one system.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeadOutcome {
    /// When the last request that tried the dead member was sent (since the
    /// change); `None` when none did.
    pub last_try: Option<Duration>,
    /// Requests that tried it (retried or failed).
    pub tried: usize,
    pub failed: usize,
    pub requests: usize,
}

pub fn analyse(x: SocketAddr, obs: &[DeadObservation]) -> DeadOutcome {
    DeadOutcome {
        last_try: obs.iter().rev().find(|o| o.tried(x)).map(|o| o.at),
        tried: obs.iter().filter(|o| o.tried(x)).count(),
        failed: obs.iter().filter(|o| !o.ok).count(),
        requests: obs.len(),
    }
}

#[derive(Debug, Clone)]
pub struct DeadTrial {
    /// In the order of [`System::ALL`].
    pub outcomes: [DeadOutcome; 3],
}

#[derive(Debug, Clone)]
pub struct DeadReport {
    pub trials: Vec<DeadTrial>,
    pub shim_args: Vec<String>,
}

/// Adds `include_attempt_count_in_response: true` to the one virtual host of
/// a bootstrap (`domains: ["*"]`), so each response says how many attempts it took.
pub fn with_attempt_count(yaml: &str) -> Result<String> {
    let line = "                      domains: [\"*\"]\n";
    if yaml.matches(line).count() != 1 {
        return Err(fixture::fail(
            "bootstrap",
            "expected one virtual host with `domains: [\"*\"]`",
        ));
    }
    Ok(yaml.replacen(
        line,
        &format!("{line}                      include_attempt_count_in_response: true\n"),
        1,
    ))
}

struct Side {
    system: System,
    proxy: Proxy,
    host: String,
}

fn start_side(system: System, shim: Option<&Shim>, base: &Base, port: u16) -> Result<Side> {
    let (yaml, ports, host) = match (system, shim) {
        (System::Native, _) => {
            let ports = fixture::ports(0)?;
            let clusters = [DnsCluster {
                name: "dead".into(),
                host: NAME.into(),
                port,
            }];
            let yaml = configs::native_bootstrap(
                ports,
                base.dns.addr(),
                &clusters,
                NativePolicy::RoundRobin,
            );
            (yaml, ports, format!("{NAME}:{port}"))
        }
        (_, Some(shim)) => {
            let ports = fixture::ports(shim.xds)?;
            let config = if system == System::DnslbInterval {
                r#"{"retries": 0}"#
            } else {
                "{}"
            };
            let yaml = configs::legacy_bootstrap(ports, &fixture::wasm()?, config)?;
            (yaml, ports, format!("dns+{NAME}:{port}"))
        }
        (_, None) => return Err(fixture::fail("dead member", "a dnslb side needs a shim")),
    };
    let proxy = fixture::start_envoy(&with_attempt_count(&yaml)?, ports, 1)?;
    Ok(Side {
        system,
        proxy,
        host,
    })
}

fn observe(side: &Side, t0: Instant) -> DeadObservation {
    let response = http_get(side.proxy.listener, "/", &[("Host", &side.host)]);
    let at = t0.elapsed();
    match response {
        Ok(r) => DeadObservation {
            at,
            ok: r.status == 200,
            attempts: r
                .header("x-envoy-attempt-count")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1),
            backend: r.header(HEADER_BACKEND).and_then(|b| b.parse().ok()),
        },
        Err(_) => DeadObservation {
            at,
            ok: false,
            attempts: 1,
            backend: None,
        },
    }
}

/// Requests until `x` answers one (it is in rotation), bounded.
fn wait_in_rotation(side: &Side, x: SocketAddr) -> Result<()> {
    let t0 = Instant::now();
    for _ in 0..WARM_REQUESTS {
        if t0.elapsed() > WARM_MAX {
            break;
        }
        if observe(side, t0).backend == Some(x) {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(20));
    }
    Err(fixture::fail(
        "dead member",
        format!("{} never answered through {:?}", x, side.system),
    ))
}

/// Sequential requests (a new connection each) from `t0` until [`QUIET`]
/// after the last one that tried `x`, or [`OBSERVE_MAX`].
fn probe(side: &Side, x: SocketAddr, t0: Instant) -> Vec<DeadObservation> {
    let mut obs: Vec<DeadObservation> = Vec::new();
    while t0.elapsed() < OBSERVE_MAX {
        let o = observe(side, t0);
        obs.push(o);
        let last = obs
            .iter()
            .rev()
            .find(|o| o.tried(x))
            .map_or(Duration::ZERO, |o| o.at);
        if t0.elapsed().saturating_sub(last) >= QUIET {
            break;
        }
        thread::sleep(PROBE_GAP);
    }
    obs
}

/// `reps` trials of the three systems side by side.
pub fn run(base: &Base, reps: usize) -> Result<DeadReport> {
    let dir = TempDir::new("bench-dead")?;
    let port = fixture::port()?;
    let live: Vec<SocketAddr> = IPS[..2]
        .iter()
        .map(|ip| SocketAddr::new((*ip).into(), port))
        .collect();
    let x = SocketAddr::new(IPS[2].into(), port);
    let _live = fixture::spawn_backend(&live, dir.path(), "dead-live")?;
    let mut doomed: Option<ChildGuard> =
        Some(fixture::spawn_backend(&[x], dir.path(), "dead-doomed")?);
    base.dns.set_a(NAME, &IPS);
    let upstreams = [format!("dns+{NAME}:{port}")];
    let shim = || {
        Shim::start(
            &upstreams,
            base.dns.addr(),
            Duration::from_secs(5),
            dir.path(),
            &SHIM_FLAGS,
        )
    };
    let shim_a = shim()?;
    let shim_b = shim()?;
    let sides = [
        start_side(System::DnslbInterval, Some(&shim_a), base, port)?,
        start_side(System::DnslbForced, Some(&shim_b), base, port)?,
        start_side(System::Native, None, base, port)?,
    ];
    let mut trials = Vec::new();
    for rep in 0..reps {
        if doomed.is_none() {
            doomed = Some(fixture::spawn_backend(&[x], dir.path(), "dead-doomed")?);
        }
        base.dns.set_a(NAME, &IPS);
        for side in &sides {
            wait_in_rotation(side, x)?;
        }
        thread::sleep(jitter(0xdead + rep as u64));
        let t0 = Instant::now();
        if let Some(child) = doomed.take() {
            child.kill()?;
        }
        base.dns.set_a(NAME, &IPS[..2]);
        let observed: Vec<Vec<DeadObservation>> = thread::scope(|s| {
            let handles: Vec<_> = sides
                .iter()
                .map(|side| s.spawn(move || probe(side, x, t0)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        });
        let outcome = |i: usize| analyse(x, observed.get(i).map_or(&[][..], |o| &o[..]));
        let trial = DeadTrial {
            outcomes: [outcome(0), outcome(1), outcome(2)],
        };
        eprintln!("bench: dead member: {:?}", trial.outcomes);
        trials.push(trial);
    }
    Ok(DeadReport {
        trials,
        shim_args: shim_b.args.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tries_and_last_try() {
        let x: SocketAddr = "127.0.0.7:80".parse().unwrap();
        let y: SocketAddr = "127.0.0.5:80".parse().unwrap();
        let o = |ms, ok, attempts, backend| DeadObservation {
            at: Duration::from_millis(ms),
            ok,
            attempts,
            backend: Some(backend),
        };
        let obs = [
            o(0, true, 1, y),
            o(10, true, 2, y),
            o(20, false, 1, y),
            o(30, true, 1, y),
        ];
        let out = analyse(x, &obs);
        assert_eq!(out.last_try, Some(Duration::from_millis(20)));
        assert_eq!((out.tried, out.failed, out.requests), (2, 1, 4));
        assert_eq!(analyse(x, &obs[3..]).last_try, None);
    }

    #[test]
    fn attempt_count_is_added_once() {
        let yaml = "a\n                      domains: [\"*\"]\nb\n";
        let out = with_attempt_count(yaml).unwrap();
        assert!(out.contains("include_attempt_count_in_response: true\nb"));
        assert!(with_attempt_count("x").is_err());
    }
}
