//! Propagation: how long after a DNS change requests reflect it, for dnslb
//! (xds-shim interval 5 s) and Envoy's STRICT_DNS (refresh 5 s), probed side
//! by side through the same DNS server.

use std::{
    net::{Ipv4Addr, SocketAddr},
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use super::{
    configs::{self, DnsCluster, NativePolicy},
    fixture::{self, Proxy},
    Base,
};
use dnslb_tests::{backend::HEADER_BACKEND, error::Result, http::http_get};

/// The name the propagation trials change.
pub const NAME: &str = "prop.test";
/// Observation ends this long after a trial's change at the latest.
const OBSERVE_MAX: Duration = Duration::from_secs(13);
/// And this long after the change took full effect.
const SETTLE: Duration = Duration::from_millis(1500);
const PROBE_GAP: Duration = Duration::from_millis(4);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Add,
    Remove,
}

/// One request of a probe: when (since the change) and which backend answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub at: Duration,
    pub backend: Option<SocketAddr>,
}

/// One trial's outcome for one system; `None` when not seen within the window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    pub first: Option<Duration>,
    pub last: Option<Duration>,
    pub requests: usize,
    pub failed: usize,
}

#[derive(Debug, Clone)]
pub struct Trial {
    pub change: Change,
    pub dnslb: Outcome,
    pub native: Outcome,
}

pub struct PropagationReport {
    pub trials: Vec<Trial>,
    pub shim_args: Vec<String>,
    /// Removal with a dead member (see [`super::dead`]).
    pub dead: std::result::Result<super::dead::DeadReport, String>,
}

/// For an add: `first` = the first request answered by `x`; `last` = the
/// first `x` hit after which no run of `2n` consecutive requests misses `x`
/// (n = members after the change), i.e. steady rotation.
/// For a remove: `first` = the first request ending a run of `n` requests
/// without `x` (n = members before the change: `x` missed its turn); `last` =
/// the request after the last one `x` answered.
pub fn analyse(change: Change, x: SocketAddr, n: usize, obs: &[Observation]) -> Outcome {
    let hit = |o: &Observation| o.backend == Some(x);
    let failed = obs.iter().filter(|o| o.backend.is_none()).count();
    let (first, last) = match change {
        Change::Add => {
            let first = obs.iter().find(|o| hit(o)).map(|o| o.at);
            let mut last_violation = None;
            let mut since_hit = 0usize;
            for (i, o) in obs.iter().enumerate() {
                if hit(o) {
                    since_hit = 0;
                } else {
                    since_hit += 1;
                    if since_hit >= 2 * n {
                        last_violation = Some(i);
                    }
                }
            }
            let last = match last_violation {
                None => first,
                Some(v) => obs[v..].iter().find(|o| hit(o)).map(|o| o.at),
            };
            (first, last)
        }
        Change::Remove => {
            let mut first = None;
            let mut run = 0usize;
            for o in obs {
                if hit(o) {
                    run = 0;
                } else {
                    run += 1;
                    if run >= n && first.is_none() {
                        first = Some(o.at);
                    }
                }
            }
            let last = match obs.iter().rposition(hit) {
                None => obs.first().map(|o| o.at),
                Some(i) => obs.get(i + 1).map(|o| o.at),
            };
            // Fully gone before a turn was visibly missed: that is the first too.
            let first = match (first, last) {
                (Some(f), Some(l)) => Some(f.min(l)),
                (f, l) => f.or(l),
            };
            (first, last)
        }
    };
    Outcome {
        first,
        last,
        requests: obs.len(),
        failed,
    }
}

/// Sequential requests through `proxy` (a new connection each) until `done`
/// says the change is complete plus [`SETTLE`], or [`OBSERVE_MAX`].
fn probe(
    proxy: &Proxy,
    host: &str,
    t0: Instant,
    done: impl Fn(&[Observation]) -> bool,
) -> Vec<Observation> {
    let mut obs = Vec::new();
    let mut done_at: Option<Instant> = None;
    while t0.elapsed() < OBSERVE_MAX {
        let response = http_get(proxy.listener, "/", &[("Host", host)]);
        let backend = response
            .ok()
            .filter(|r| r.status == 200)
            .and_then(|r| r.header(HEADER_BACKEND).and_then(|b| b.parse().ok()));
        obs.push(Observation {
            at: t0.elapsed(),
            backend,
        });
        match done_at {
            Some(at) if at.elapsed() >= SETTLE => break,
            None if done(&obs) => done_at = Some(Instant::now()),
            _ => {}
        }
        thread::sleep(PROBE_GAP);
    }
    obs
}

/// A pseudo-random delay in [0, 5 s), so changes land at random phases of
/// the refresh timers.
pub(super) fn jitter(salt: u64) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    let mixed =
        (nanos ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    Duration::from_millis((mixed >> 33) % 5000)
}

/// Starts a dnslb Envoy and a native one for [`NAME`], then runs `reps`
/// add/remove pairs (add `ips[2]` to `ips[0..2]`, then remove it).
pub fn run(base: &Base, ips: [Ipv4Addr; 3], reps: usize) -> Result<PropagationReport> {
    let port = base.port;
    let x = SocketAddr::new(ips[2].into(), port);
    base.dns.set_a(NAME, &ips[..2]);
    let wasm = fixture::wasm()?;
    let ports = fixture::ports(base.shim.xds)?;
    let dnslb = fixture::start_envoy(&configs::legacy_bootstrap(ports, &wasm, "{}")?, ports, 1)?;
    let ports = fixture::ports(0)?;
    let clusters = [DnsCluster {
        name: "prop".into(),
        host: NAME.into(),
        port,
    }];
    let yaml =
        configs::native_bootstrap(ports, base.dns.addr(), &clusters, NativePolicy::RoundRobin);
    let native = fixture::start_envoy(&yaml, ports, 1)?;
    let dnslb_host = format!("dns+{NAME}:{port}");
    let native_host = format!("{NAME}:{port}");
    fixture::wait_serving(&dnslb, &dnslb_host, true)?;
    fixture::wait_host_count(&native, "prop", 2)?;

    let mut trials = Vec::new();
    for rep in 0..reps {
        for change in [Change::Add, Change::Remove] {
            thread::sleep(jitter(rep as u64 * 2 + (change == Change::Add) as u64));
            let (set, n) = match change {
                Change::Add => (&ips[..], 3),
                Change::Remove => (&ips[..2], 3),
            };
            let t0 = Instant::now();
            base.dns.set_a(NAME, set);
            let done = |obs: &[Observation]| {
                let o = analyse(change, x, n, obs);
                // Complete once the change is in and `x` was (not) seen for a while.
                o.first.is_some()
                    && obs.len() > 8 * n
                    && o.last.is_some_and(|last| last < obs[obs.len() - 8 * n].at)
            };
            let (d, nv) = thread::scope(|s| {
                let d = s.spawn(|| probe(&dnslb, &dnslb_host, t0, done));
                let nv = probe(&native, &native_host, t0, done);
                (d.join().unwrap_or_default(), nv)
            });
            let trial = Trial {
                change,
                dnslb: analyse(change, x, n, &d),
                native: analyse(change, x, n, &nv),
            };
            eprintln!(
                "bench: propagation {change:?}: dnslb {:?} native {:?}",
                trial.dnslb, trial.native
            );
            trials.push(trial);
        }
    }
    drop((dnslb, native));
    eprintln!("bench: propagation: removal with a dead member ...");
    let dead = super::dead::run(base, reps).map_err(|e| e.to_string());
    if let Err(e) = &dead {
        eprintln!("bench: dead member: {e}");
    }
    Ok(PropagationReport {
        trials,
        shim_args: base.shim.args.clone(),
        dead,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(seq: &[u8]) -> Vec<Observation> {
        seq.iter()
            .enumerate()
            .map(|(i, b)| Observation {
                at: Duration::from_millis(i as u64 * 10),
                backend: Some(SocketAddr::from(([127, 0, 0, *b], 80))),
            })
            .collect()
    }

    #[test]
    fn add_first_and_steady() {
        let x = SocketAddr::from(([127, 0, 0, 4], 80));
        let seq = obs(&[2, 3, 2, 3, 4, 2, 3, 2, 3, 2, 3, 2, 4, 2, 3, 4, 2, 3, 4]);
        let o = analyse(Change::Add, x, 3, &seq);
        assert_eq!(o.first, Some(Duration::from_millis(40)));
        // The gap after the first hit is 7 >= 6, so steady from the hit at 12.
        assert_eq!(o.last, Some(Duration::from_millis(120)));
    }

    #[test]
    fn remove_first_and_last() {
        let x = SocketAddr::from(([127, 0, 0, 4], 80));
        let seq = obs(&[2, 3, 4, 2, 3, 2, 3, 4, 2, 3, 2, 3]);
        let o = analyse(Change::Remove, x, 3, &seq);
        // 2,3,2 after the 4 at index 2 is the first missed turn (index 5).
        assert_eq!(o.first, Some(Duration::from_millis(50)));
        assert_eq!(o.last, Some(Duration::from_millis(80)));
    }

    #[test]
    fn not_seen_is_none() {
        let x = SocketAddr::from(([127, 0, 0, 4], 80));
        let o = analyse(Change::Add, x, 3, &obs(&[2, 3, 2]));
        assert_eq!((o.first, o.last), (None, None));
    }
}
