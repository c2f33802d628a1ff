//! `just soak`: a bounded chaos run through a real Envoy (the bootstrap `xds-shim
//! envoy-bootstrap` prints) and the real shim, under steady load from `wrk`, while DNS
//! changes the members every second, a member is killed and restarted, DNS answers
//! SERVFAIL for a while and the shim restarts. A failed GET fails the run: that is
//! correctness, not timing. Writes a report (requests, failures, p99, memory).

use std::{
    fmt::Write as _,
    fs,
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use crate::{fixture, machine, wrk};
use dnslb_tests::{
    error::{HarnessError, Result},
    http::http_get,
    process::{free_port, wait_until, ChildGuard, TempDir},
    stack::{shim_binary, shim_bootstrap, Stack, StackOptions},
};

const NAME: &str = "soak.test";
/// Members 127.0.0.2-6: .2 and .3 stay in DNS, .4-.6 come and go.
const MEMBERS: [u8; 5] = [2, 3, 4, 5, 6];
/// The member that is killed and restarted (stays in DNS meanwhile).
const VICTIM: usize = 1;

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub duration: Duration,
    pub connections: u32,
    pub out: PathBuf,
    pub backend_bin: PathBuf,
}

/// One chaos action, at a fraction of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    KillMember,
    RestartMember,
    ServfailOn,
    ServfailOff,
    RestartShim,
}

/// The schedule, as fractions of the run (pure, so the report can print it).
const SCHEDULE: [(f64, Action); 5] = [
    (0.20, Action::KillMember),
    (0.35, Action::RestartMember),
    (0.45, Action::ServfailOn),
    (0.60, Action::ServfailOff),
    (0.75, Action::RestartShim),
];

/// The members DNS answers with in second `tick`: the two fixed ones and a rotating
/// subset of the other three (one of them out at a time, and every third second all in).
pub fn members_at(tick: u64) -> Vec<Ipv4Addr> {
    MEMBERS
        .iter()
        .enumerate()
        .filter(|(i, _)| *i < 2 || tick.is_multiple_of(3) || !(tick as usize + i).is_multiple_of(3))
        .map(|(_, last)| Ipv4Addr::new(127, 0, 0, *last))
        .collect()
}

/// What the run measured.
#[derive(Debug, Clone)]
pub struct SoakReport {
    pub wrk: wrk::WrkRun,
    pub events: Vec<(Duration, String)>,
    pub envoy_rss_kib: (Option<u64>, Option<u64>),
    pub shim_rss_kib: (Option<u64>, Option<u64>),
    pub load: (String, String),
    pub dns_changes: u64,
}

impl SoakReport {
    pub fn failed(&self) -> u64 {
        self.wrk.non_2xx + self.wrk.socket_errors
    }
}

fn fail(reason: impl Into<String>) -> HarnessError {
    HarnessError::Process {
        name: "soak".into(),
        reason: reason.into(),
        log_tail: String::new(),
    }
}

/// Runs the soak and writes the report; `Ok` even when requests failed (the caller
/// decides the exit status from [`SoakReport::failed`]).
pub fn run(options: &Options) -> Result<SoakReport> {
    let load_before = machine::loadavg();
    let port = free_port(Ipv4Addr::new(127, 0, 0, 2).into())?;
    let addr = |last: u8| SocketAddr::new(Ipv4Addr::new(127, 0, 0, last).into(), port);
    let cluster = format!("dns+{NAME}:{port}");
    let mut stack_options = StackOptions::new(
        vec![cluster.clone()],
        MEMBERS.iter().map(|&l| addr(l)).collect(),
        options.backend_bin.clone(),
    );
    stack_options.interval = Duration::from_secs(1);
    stack_options.concurrency = 2;
    stack_options.shim_args = vec!["--drain".into(), "2s".into()];
    let stack = Stack::start_with(
        stack_options,
        |dns| dns.set_a(NAME, &members_at(0)),
        |ports, wasm, config| shim_bootstrap(ports, Some(wasm), config, false),
    )?;
    let initial: Vec<SocketAddr> = members_at(0)
        .iter()
        .map(|ip| SocketAddr::new((*ip).into(), port))
        .collect();
    stack.wait_serving_native(&cluster, &initial)?;
    let envoy_pid = stack.envoy.process().pid();
    let envoy_rss_start = fixture::rss_kib(envoy_pid);
    let shim_rss_start = fixture::rss_kib(stack.shim.process.pid());

    let load = wrk::Load {
        threads: 2,
        connections: options.connections,
        duration: options.duration,
    };
    let listener = stack.listener;
    let headers = vec![("Host".to_string(), cluster.clone())];
    let generator = thread::spawn(move || wrk::run(load, listener, &headers));

    let dir = TempDir::new("soak")?;
    let started = Instant::now();
    let mut events = Vec::new();
    let mut schedule = SCHEDULE.iter().peekable();
    let mut restarted_member: Option<ChildGuard> = None;
    let mut new_shim: Option<ChildGuard> = None;
    let mut dns_changes = 0;
    let mut tick = 0;
    while started.elapsed() < options.duration {
        tick += 1;
        stack.dns.set_a(NAME, &members_at(tick));
        dns_changes += 1;
        let fraction = started.elapsed().as_secs_f64() / options.duration.as_secs_f64();
        while let Some((_, action)) = schedule.next_if(|(at, _)| *at <= fraction) {
            let what = match action {
                Action::KillMember => {
                    stack.backends[VICTIM].kill()?;
                    format!("killed member {}", addr(MEMBERS[VICTIM]))
                }
                Action::RestartMember => {
                    restarted_member =
                        Some(restart_member(options, addr(MEMBERS[VICTIM]), dir.path())?);
                    format!("restarted member {}", addr(MEMBERS[VICTIM]))
                }
                Action::ServfailOn => {
                    stack.dns.set_servfail(true);
                    "DNS answers SERVFAIL".to_string()
                }
                Action::ServfailOff => {
                    stack.dns.set_servfail(false);
                    "DNS answers again".to_string()
                }
                Action::RestartShim => {
                    stack.shim.process.kill()?;
                    new_shim = Some(restart_shim(
                        &stack.shim.args,
                        stack.shim.admin,
                        dir.path(),
                    )?);
                    "restarted xds-shim (killed, started with the same flags)".to_string()
                }
            };
            eprintln!("soak: {:>5.1}s {what}", started.elapsed().as_secs_f64());
            events.push((started.elapsed(), what));
        }
        thread::sleep(Duration::from_secs(1).saturating_sub(Duration::from_millis(
            (started.elapsed().as_millis() % 1000) as u64,
        )));
    }
    let run = generator
        .join()
        .map_err(|_| fail("the load generator thread panicked"))??;
    let shim_pid = new_shim
        .as_ref()
        .map_or(stack.shim.process.pid(), ChildGuard::pid);
    let report = SoakReport {
        wrk: run,
        events,
        envoy_rss_kib: (envoy_rss_start, fixture::rss_kib(envoy_pid)),
        shim_rss_kib: (shim_rss_start, fixture::rss_kib(shim_pid)),
        load: (load_before, machine::loadavg()),
        dns_changes,
    };
    drop(restarted_member);
    write(&options.out, options, &report)?;
    Ok(report)
}

fn restart_member(options: &Options, addr: SocketAddr, dir: &Path) -> Result<ChildGuard> {
    let mut cmd = Command::new(&options.backend_bin);
    cmd.arg("--listen").arg(addr.to_string());
    let child = ChildGuard::spawn("backend-restarted", cmd, dir)?;
    child.wait_for_log("listening on", Duration::from_secs(30))?;
    Ok(child)
}

/// The shim again with the flags it had (same ports), once its admin answers.
fn restart_shim(args: &[String], admin: SocketAddr, dir: &Path) -> Result<ChildGuard> {
    let mut cmd = Command::new(shim_binary());
    cmd.args(args);
    let child = ChildGuard::spawn("xds-shim-restarted", cmd, dir)?;
    wait_until(
        "the restarted xds-shim",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || {
            child.ensure_running()?;
            Ok(http_get(admin, "/healthz", &[]).is_ok_and(|r| r.status == 200))
        },
    )?;
    Ok(child)
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("n/a".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

/// The report as Markdown.
pub fn render(options: &Options, report: &SoakReport) -> String {
    let mut out = String::from("# Soak run (`just soak`)\n\n");
    let w = &report.wrk;
    let verdict = if report.failed() == 0 {
        "passed"
    } else {
        "FAILED"
    };
    let _ = writeln!(
        out,
        "Generated by `target/release/soak` (source: `tests/bench/src/soak.rs`). A real Envoy \
         (the bootstrap `xds-shim envoy-bootstrap` prints, `{{}}`, `--concurrency 2`) and the \
         real xds-shim (`--interval 1s --drain 2s`) in front of five fake backends on \
         127.0.0.2-6, under `wrk -t2 -c{} -d{}s` of GET requests, while DNS changes the \
         members every second ({} changes) and the schedule below runs. Any failed GET \
         fails the run.\n",
        options.connections,
        options.duration.as_secs(),
        report.dns_changes,
    );
    let _ = writeln!(out, "| measure | value |\n|---|---|");
    let _ = writeln!(out, "| result | **{verdict}** |");
    let _ = writeln!(out, "| requests | {} |", w.requests);
    let _ = writeln!(
        out,
        "| failed requests (non-2xx + socket errors) | {} |",
        report.failed()
    );
    let _ = writeln!(out, "| requests per second | {:.0} |", w.rps);
    let _ = writeln!(
        out,
        "| p50 / p99 latency | {:.2} ms / {:.2} ms |",
        w.p50_ms, w.p99_ms
    );
    let _ = writeln!(
        out,
        "| Envoy RSS start / end | {} / {} |",
        mib(report.envoy_rss_kib.0),
        mib(report.envoy_rss_kib.1)
    );
    let _ = writeln!(
        out,
        "| xds-shim RSS start / end | {} / {} (the end is the restarted process) |",
        mib(report.shim_rss_kib.0),
        mib(report.shim_rss_kib.1)
    );
    let _ = writeln!(
        out,
        "| load average before / after | {} / {} (2 cores, shared) |\n",
        report.load.0, report.load.1
    );
    let _ = writeln!(out, "Events:\n");
    for (at, what) in &report.events {
        let _ = writeln!(out, "- {:.1} s: {what}", at.as_secs_f64());
    }
    out
}

fn write(path: &Path, options: &Options, report: &SoakReport) -> Result<()> {
    fs::write(path, render(options, report))
        .map_err(HarnessError::io(format!("write {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_members_always_stay_and_the_others_rotate() {
        let fixed = [Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3)];
        let mut seen_sizes = std::collections::BTreeSet::new();
        for tick in 0..9 {
            let members = members_at(tick);
            assert!(
                fixed.iter().all(|f| members.contains(f)),
                "{tick}: {members:?}"
            );
            seen_sizes.insert(members.len());
        }
        assert_eq!(seen_sizes, [4, 5].into_iter().collect());
        assert_ne!(members_at(1), members_at(2));
    }

    #[test]
    fn the_schedule_is_in_order_and_ends_before_the_run() {
        assert!(SCHEDULE.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(SCHEDULE.iter().all(|(at, _)| *at > 0.0 && *at < 1.0));
    }
}
