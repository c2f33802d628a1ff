//! Cost curve: throughput and memory as members per upstream grow, and as
//! upstreams grow; dnslb and its native twin side by side at every point.

use std::{
    net::{Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use super::{
    configs::{self, DnsCluster, NativePolicy},
    fixture::{self, Proxy},
    stats::median,
    wrk::{self, Load},
    Base, Budget,
};
use dnslb_tests::{
    dns::DnsServer,
    error::Result,
    process::TempDir,
    stack::{Build, Shim},
};

/// The filter configuration of the dnslb side: round robin, the filter off on
/// the route.
pub const DNSLB_CONFIG: &str = "{}";

/// One point of the curve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    pub upstreams: usize,
    pub members: usize,
}

/// What one side (dnslb or native) measured at a point.
#[derive(Debug, Clone, Default)]
pub struct Side {
    pub rps: Vec<f64>,
    pub p99: Vec<f64>,
    pub errors: u64,
    pub rss_kib: Option<u64>,
    pub allocated: Option<u64>,
    pub startup: Duration,
}

impl Side {
    pub fn rps_median(&self) -> f64 {
        median(&self.rps)
    }
    pub fn p99_median(&self) -> f64 {
        median(&self.p99)
    }
}

#[derive(Debug, Clone)]
pub struct PointResult {
    pub point: Point,
    pub dnslb: Side,
    pub native: Option<Side>,
    pub shim_rss_kib: Option<u64>,
    /// Shim CPU over the point's whole life, percent of one core.
    pub shim_cpu_percent: Option<f64>,
    pub note: String,
}

/// Issue 11: with more members of one name, the dnslb/native throughput ratio
/// stays within this of its 3-member ratio (no O(n) work per request).
pub const MAX_RATIO_DROP: f64 = 0.05;

impl PointResult {
    /// dnslb's median throughput over native's, when both were measured.
    pub fn ratio(&self) -> Option<f64> {
        let ratio = self.dnslb.rps_median() / self.native.as_ref()?.rps_median();
        ratio.is_finite().then_some(ratio)
    }
}

pub struct CurveReport {
    pub load: Load,
    pub rounds: usize,
    pub results: Vec<PointResult>,
    pub skipped: Vec<Point>,
}

impl CurveReport {
    /// Every measured one-upstream point above 3 members with its ratio, next
    /// to the 3-member ratio it is held to.
    pub fn member_goals(&self) -> Vec<(Point, f64, f64)> {
        let ratio_at = |members| {
            self.results
                .iter()
                .find(|r| r.point.upstreams == 1 && r.point.members == members)
                .and_then(PointResult::ratio)
        };
        let Some(base) = ratio_at(3) else {
            return Vec::new();
        };
        self.results
            .iter()
            .filter(|r| r.point.upstreams == 1 && r.point.members > 3)
            .filter_map(|r| Some((r.point, r.ratio()?, base)))
            .collect()
    }
}

fn upstream_name(point: Point, i: usize) -> String {
    if point.upstreams == 1 {
        // Short: the harness DNS server does not compress names, so 3000
        // A records of a long name overflow a DNS message (64 KiB) even over
        // TCP; `m3.t` keeps the answer near 60 KB.
        format!("m{}.t", point.members.max(1).ilog10())
    } else {
        format!("u{i}.n{}.curve.test", point.upstreams)
    }
}

/// Runs `points` in order while the budget allows one more.
pub fn run(
    base: &Base,
    backend_ips: &[Ipv4Addr],
    points: &[Point],
    load: Load,
    warmup: Load,
    rounds: usize,
    budget: &Budget,
) -> Result<CurveReport> {
    let mut results = Vec::new();
    let mut skipped = Vec::new();
    let per_point =
        load.duration * (2 * rounds as u32) + warmup.duration * 2 + Duration::from_secs(12);
    for &point in points {
        if !budget.allows(per_point) {
            eprintln!("bench: curve: skipping {point:?} (time budget)");
            skipped.push(point);
            continue;
        }
        let started = Instant::now();
        match run_point(base, backend_ips, point, load, warmup, rounds) {
            Ok(result) => results.push(result),
            Err(error) => {
                eprintln!("bench: curve point {point:?} failed: {error}");
                results.push(PointResult {
                    point,
                    dnslb: Side::default(),
                    native: None,
                    shim_rss_kib: None,
                    shim_cpu_percent: None,
                    note: format!("failed: {}", first_line(&error.to_string())),
                });
            }
        }
        eprintln!(
            "bench: curve {point:?} in {:.1}s",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(CurveReport {
        load,
        rounds,
        results,
        skipped,
    })
}

fn first_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(160)
        .collect()
}

fn seed(dns: &DnsServer, point: Point, ips: &[Ipv4Addr]) {
    for i in 0..point.upstreams {
        dns.set_a(&upstream_name(point, i), &ips[..point.members]);
    }
}

fn run_point(
    base: &Base,
    ips: &[Ipv4Addr],
    point: Point,
    load: Load,
    warmup: Load,
    rounds: usize,
) -> Result<PointResult> {
    let dir = TempDir::new("bench-curve")?;
    let port = base.curve_port;
    seed(&base.dns, point, ips);
    let upstreams: Vec<String> = (0..point.upstreams)
        .map(|i| format!("dns+{}:{port}", upstream_name(point, i)))
        .collect();
    // The shim caps one answer at 1000 records by default; the largest point
    // has 3000.
    let shim = Shim::start(
        &upstreams,
        base.dns.addr(),
        Duration::from_secs(5),
        dir.path(),
        &["--max-records", "5000"],
    )?;
    let shim_pid = shim.process.pid();
    let cpu0 = fixture::cpu_ticks(shim_pid);
    let life = Instant::now();

    fixture::wasm()?;
    let target = upstream_name(point, 0);
    let dnslb_host = format!("dns+{target}:{port}");
    let t = Instant::now();
    let ports = fixture::ports(shim.xds)?;
    // The recommended bootstrap with `{}`: the filter is in the chain but off on the
    // route, so Envoy alone picks (no filter pick to wait for).
    let dnslb = fixture::start_envoy(
        &configs::recommended_bootstrap(ports, Some(Build::Wasm), DNSLB_CONFIG)?,
        ports,
        1,
    )?;
    fixture::wait_host_count(&dnslb, &dnslb_host, point.members)?;
    fixture::wait_serving(&dnslb, &dnslb_host, false)?;
    let dnslb_startup = t.elapsed();

    let t = Instant::now();
    let clusters: Vec<DnsCluster> = (0..point.upstreams)
        .map(|i| DnsCluster {
            name: format!("c{i}"),
            host: upstream_name(point, i),
            port,
        })
        .collect();
    let ports = fixture::ports(0)?;
    let yaml =
        configs::native_bootstrap(ports, base.dns.addr(), &clusters, NativePolicy::RoundRobin);
    let mut note = String::new();
    let native = match fixture::start_envoy(&yaml, ports, 1).and_then(|p| {
        fixture::wait_host_count(&p, "c0", point.members)?;
        fixture::wait_serving(&p, &format!("{target}:{port}"), false)?;
        Ok(p)
    }) {
        Ok(p) => Some(p),
        Err(error) => {
            note = format!("native failed: {}", first_line(&error.to_string()));
            None
        }
    };
    let native_startup = t.elapsed();

    let sides: Vec<(&Proxy, String)> = std::iter::once((&dnslb, dnslb_host.clone()))
        .chain(native.iter().map(|p| (p, format!("{target}:{port}"))))
        .collect();
    for (proxy, host) in &sides {
        wrk::run(warmup, proxy.listener, &[("Host".into(), host.clone())])?;
    }
    let mut measured = vec![Side::default(); sides.len()];
    for round in 0..rounds {
        for i in 0..sides.len() {
            let k = (i + round) % sides.len();
            let (proxy, host) = &sides[k];
            let run = wrk::run(load, proxy.listener, &[("Host".into(), host.clone())])?;
            measured[k].rps.push(run.rps);
            measured[k].p99.push(run.p99_ms);
            measured[k].errors += run.non_2xx + run.socket_errors;
        }
    }
    for (k, (proxy, _)) in sides.iter().enumerate() {
        measured[k].rss_kib = fixture::rss_kib(proxy.envoy.process().pid());
        measured[k].allocated = fixture::envoy_allocated(proxy);
        measured[k].startup = if k == 0 {
            dnslb_startup
        } else {
            native_startup
        };
    }
    let shim_cpu_percent = match (cpu0, fixture::cpu_ticks(shim_pid)) {
        (Some(a), Some(b)) => Some(
            (b.saturating_sub(a)) as f64
                / fixture::clock_ticks() as f64
                / life.elapsed().as_secs_f64()
                * 100.0,
        ),
        _ => None,
    };
    let shim_rss_kib = fixture::rss_kib(shim_pid);
    let mut measured = measured.into_iter();
    let dnslb_side = measured.next().unwrap_or_default();
    let native_side = measured.next();
    Ok(PointResult {
        point,
        dnslb: dnslb_side,
        native: native_side,
        shim_rss_kib,
        shim_cpu_percent,
        note,
    })
}

/// The addresses the curve's backend process listens on.
pub fn backend_addrs(ips: &[Ipv4Addr], port: u16) -> Vec<SocketAddr> {
    ips.iter()
        .map(|ip| SocketAddr::new((*ip).into(), port))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(upstreams: usize, members: usize, dnslb: f64, native: Option<f64>) -> PointResult {
        let side = |rps| Side {
            rps: vec![rps],
            ..Side::default()
        };
        PointResult {
            point: Point { upstreams, members },
            dnslb: side(dnslb),
            native: native.map(side),
            shim_rss_kib: None,
            shim_cpu_percent: None,
            note: String::new(),
        }
    }

    fn report(results: Vec<PointResult>) -> CurveReport {
        CurveReport {
            load: Load {
                threads: 1,
                connections: 8,
                duration: Duration::from_secs(1),
            },
            rounds: 1,
            results,
            skipped: Vec::new(),
        }
    }

    #[test]
    fn member_goals_hold_one_upstream_points_to_the_three_member_ratio() {
        let c = report(vec![
            result(1, 3, 90.0, Some(100.0)),
            result(1, 300, 80.0, Some(100.0)),
            result(1, 3000, 50.0, None),
            result(100, 3, 10.0, Some(100.0)),
        ]);
        let goals = c.member_goals();
        assert_eq!(goals.len(), 1);
        let (point, ratio, base) = goals[0];
        assert_eq!(
            point,
            Point {
                upstreams: 1,
                members: 300
            }
        );
        assert!((ratio - 0.8).abs() < 1e-9 && (base - 0.9).abs() < 1e-9);
        assert!(report(vec![result(1, 300, 1.0, Some(1.0))])
            .member_goals()
            .is_empty());
        assert_eq!(result(1, 3, 1.0, Some(0.0)).ratio(), None);
    }
}
