//! `just bench`: dnslb side by side with Envoy's own load balancing, on this
//! machine, in one run; writes `docs/benchmarks.md`. Benchmarks report: no
//! number fails anything. Entry point: [`run`] (the `bench` binary).

pub mod configs;
pub mod cost;
pub mod curve;
pub mod dead;
pub mod fixture;
pub mod instructions;
pub mod machine;
pub mod pin;
pub mod propagation;
pub mod report;
pub mod section;
pub mod soak;
pub mod spec;
pub mod stats;
pub mod svg;
pub mod wrk;

use std::{
    fs,
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use dnslb_tests::{
    dns::DnsServer,
    error::{HarnessError, Result},
    process::{wait_until, workspace_root, ChildGuard, TempDir},
    stack::{filter_wasm, shim_binary, Shim},
};

/// Wall-clock budget of the whole run.
pub struct Budget {
    start: Instant,
    total: Duration,
}

impl Budget {
    pub fn new(total: Duration) -> Self {
        Self {
            start: Instant::now(),
            total,
        }
    }
    /// Whether `more` still fits.
    pub fn allows(&self, more: Duration) -> bool {
        self.start.elapsed() + more <= self.total
    }
    pub fn remaining(&self) -> Duration {
        self.total.saturating_sub(self.start.elapsed())
    }
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

/// What to run; [`Options::quick`] is a smoke test of the harness.
#[derive(Debug, Clone)]
pub struct Options {
    pub out: PathBuf,
    pub budget: Duration,
    pub rounds: usize,
    pub run: Duration,
    pub connections: u32,
    pub propagation_reps: usize,
    pub curve_rounds: usize,
    pub curve_run: Duration,
    pub curve_points: Vec<curve::Point>,
    /// Seconds `just build` took before this run (measured by the recipe).
    pub build_seconds: Option<f64>,
    pub clean_build: bool,
    /// Run only this phase (the others are reported as not run).
    pub only: Option<Phase>,
    /// Give Envoy a CPU of its own ([`pin`]).
    pub pin: bool,
}

/// A measuring phase, for [`Options::only`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Phase {
    Cost,
    /// Instructions per request under callgrind.
    Instructions,
    Propagation,
    Curve,
}

impl Options {
    pub fn full(out: PathBuf, budget: Duration) -> Self {
        let p = |upstreams, members| curve::Point { upstreams, members };
        Self {
            out,
            budget,
            rounds: 5,
            run: Duration::from_secs(3),
            connections: 8,
            propagation_reps: 3,
            curve_rounds: 2,
            curve_run: Duration::from_secs(2),
            curve_points: vec![
                p(1, 3),
                p(1, 30),
                p(1, 300),
                p(1, 3000),
                p(100, 3),
                p(1000, 3),
            ],
            build_seconds: None,
            clean_build: true,
            only: None,
            pin: true,
        }
    }

    pub fn quick(out: PathBuf, budget: Duration) -> Self {
        let p = |upstreams, members| curve::Point { upstreams, members };
        Self {
            rounds: 1,
            run: Duration::from_secs(1),
            propagation_reps: 1,
            curve_rounds: 1,
            curve_run: Duration::from_secs(1),
            curve_points: vec![p(1, 3), p(1, 300), p(100, 3)],
            clean_build: false,
            ..Self::full(out, budget)
        }
    }
}

/// What every phase shares: the DNS server, three backends on
/// `127.0.0.2-4:port`, the curve's backend process and one xds-shim for
/// `backend.test`, [`cost::HASH_NAME`] (the same three addresses, served with
/// `lb_policy: maglev` from a `--config` file) and the propagation name.
pub struct Base {
    pub shim: Shim,
    _backends: Vec<ChildGuard>,
    _curve_backend: ChildGuard,
    pub dns: DnsServer,
    pub port: u16,
    pub curve_port: u16,
    _dir: TempDir,
}

pub const BACKENDS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(127, 0, 0, 2),
    Ipv4Addr::new(127, 0, 0, 3),
    Ipv4Addr::new(127, 0, 0, 4),
];

fn curve_ips(points: &[curve::Point]) -> Vec<Ipv4Addr> {
    let n = points.iter().map(|p| p.members).max().unwrap_or(3);
    (0..n).map(|i| fixture::member_ip(1, i)).collect()
}

impl Base {
    fn start(points: &[curve::Point]) -> Result<Self> {
        let dir = TempDir::new("bench")?;
        let dns = DnsServer::start()?;
        let port = fixture::port()?;
        let curve_port = fixture::port()?;
        dns.set_a("backend.test", &BACKENDS);
        dns.set_a(cost::HASH_NAME, &BACKENDS);
        dns.set_a(propagation::NAME, &BACKENDS[..2]);
        let backends = BACKENDS
            .iter()
            .map(|ip| {
                let addr = SocketAddr::new((*ip).into(), port);
                fixture::spawn_backend(&[addr], dir.path(), &format!("backend-{ip}"))
            })
            .collect::<Result<Vec<_>>>()?;
        let curve_backend = fixture::spawn_backend(
            &curve::backend_addrs(&curve_ips(points), curve_port),
            dir.path(),
            "curve-backend",
        )?;
        let upstreams = vec![
            format!("dns+backend.test:{port}"),
            format!("dns+{}:{port}", propagation::NAME),
        ];
        let config = dir.path().join("shim.yaml");
        fs::write(&config, cost::shim_config(port))
            .map_err(io_error(format!("write {}", config.display())))?;
        let config = config.display().to_string();
        let shim = Shim::start(
            &upstreams,
            dns.addr(),
            Duration::from_secs(5),
            dir.path(),
            &["--config", &config],
        )?;
        Ok(Self {
            shim,
            _backends: backends,
            _curve_backend: curve_backend,
            dns,
            port,
            curve_port,
            _dir: dir,
        })
    }
}

/// Sizes of the artifacts and build times.
#[derive(Debug, Clone)]
pub struct Build {
    pub wasm_bytes: Option<u64>,
    pub shim_bytes: Option<u64>,
    pub just_build_seconds: Option<f64>,
    /// Clean build of the filter crate alone, or why there is none.
    pub clean_filter: std::result::Result<f64, String>,
    pub clean_command: String,
}

const CLEAN_DIR: &str = "target/bench-clean";

fn clean_filter_build(
    budget: &Budget,
    enabled: bool,
) -> (std::result::Result<f64, String>, String) {
    let command = format!(
        "rm -rf {CLEAN_DIR} && CARGO_TARGET_DIR={CLEAN_DIR} cargo build -p dnslb-filter --target wasm32-wasip1 --profile release-wasm"
    );
    if !enabled {
        return (Err("not run (disabled for this run)".into()), command);
    }
    let limit = budget.remaining().saturating_sub(Duration::from_secs(15));
    if limit < Duration::from_secs(60) {
        return (
            Err(format!(
                "not run: {:.0} s of the time budget left",
                budget.remaining().as_secs_f64()
            )),
            command,
        );
    }
    let root = workspace_root();
    let dir = root.join(CLEAN_DIR);
    let _ = fs::remove_dir_all(&dir);
    let Ok(log_dir) = TempDir::new("bench-clean") else {
        return (Err("cannot create a log directory".into()), command);
    };
    let mut cmd = Command::new("cargo");
    cmd.current_dir(&root).env("CARGO_TARGET_DIR", &dir).args([
        "build",
        "-p",
        "dnslb-filter",
        "--target",
        "wasm32-wasip1",
        "--profile",
        "release-wasm",
    ]);
    let started = Instant::now();
    let child = match ChildGuard::spawn("cargo-clean-build", cmd, log_dir.path()) {
        Ok(child) => child,
        Err(error) => return (Err(error.to_string()), command),
    };
    let waited = wait_until("clean build", limit, Duration::from_millis(200), || {
        Ok(child.exit_status()?.is_some())
    });
    let outcome = match (waited, child.exit_status()) {
        (Ok(()), Ok(Some(status))) if status.success() => Ok(started.elapsed().as_secs_f64()),
        (Ok(()), _) => Err(format!("failed: {}", child.log_tail(3))),
        (Err(_), _) => Err(format!(
            "stopped after {:.0} s (time budget)",
            started.elapsed().as_secs_f64()
        )),
    };
    drop(child);
    (outcome, command)
}

/// Everything the report shows.
pub struct Results {
    pub options: Options,
    pub machine: machine::Machine,
    pub cost: std::result::Result<cost::CostReport, String>,
    pub instructions: std::result::Result<Vec<instructions::Count>, String>,
    pub propagation: std::result::Result<propagation::PropagationReport, String>,
    pub curve: std::result::Result<curve::CurveReport, String>,
    pub build: Build,
    pub shim_args: Vec<String>,
    pub elapsed: Duration,
}

impl Results {
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        let only = self.options.only;
        let ran = |p: Phase| only.is_none_or(|o| o == p);
        if let (true, Err(e)) = (ran(Phase::Cost), &self.cost) {
            out.push(format!("per-request cost: {e}"));
        }
        if let (true, Err(e)) = (ran(Phase::Instructions), &self.instructions) {
            out.push(format!("instructions per request: {e}"));
        }
        if let (true, Err(e)) = (ran(Phase::Propagation), &self.propagation) {
            out.push(format!("propagation: {e}"));
        }
        if let (true, Ok(p)) = (ran(Phase::Propagation), &self.propagation) {
            if let Err(e) = &p.dead {
                out.push(format!("propagation (dead member): {e}"));
            }
        }
        if let (true, Err(e)) = (ran(Phase::Curve), &self.curve) {
            out.push(format!("cost curve: {e}"));
        }
        out
    }
}

fn file_size(path: PathBuf) -> Option<u64> {
    fs::metadata(path).ok().map(|m| m.len())
}

fn phase<T>(
    name: &str,
    enabled: bool,
    f: impl FnOnce() -> Result<T>,
) -> std::result::Result<T, String> {
    if !enabled {
        return Err("not run (`--only` named another phase)".into());
    }
    let started = Instant::now();
    eprintln!("bench: {name} ...");
    let result = f().map_err(|e| e.to_string());
    eprintln!(
        "bench: {name} {} in {:.1}s",
        if result.is_ok() { "done" } else { "FAILED" },
        started.elapsed().as_secs_f64()
    );
    if let Err(e) = &result {
        eprintln!("{e}");
    }
    result
}

/// Runs every phase and writes the report; a phase that cannot run is
/// reported in the document (and in the result), the others still run.
pub fn run(options: Options) -> Result<Results> {
    let budget = Budget::new(options.budget);
    let mut machine = machine::collect();
    machine.pinning = options
        .pin
        .then(|| pin::Pinning::plan(machine.nproc))
        .flatten();
    pin::start(machine.pinning.clone())?;
    let base = Base::start(&options.curve_points)?;
    let load = wrk::Load {
        threads: 1,
        connections: options.connections,
        duration: options.run,
    };
    let warmup = wrk::Load {
        duration: Duration::from_secs(1),
        ..load
    };
    let on = |p: Phase| options.only.is_none_or(|o| o == p);
    let cost = phase("per-request cost", on(Phase::Cost), || {
        let variants = cost::start_variants(&base, fixture::Launch::Plain)?;
        cost::measure(&variants, load, warmup, options.rounds, &budget)
    });
    let instructions = phase("instructions", on(Phase::Instructions), || {
        if !instructions::available() {
            return Err(fixture::fail(
                "valgrind",
                "not installed (apt-get install valgrind)",
            ));
        }
        let variants = cost::start_variants(&base, fixture::Launch::Callgrind)?;
        instructions::measure(&variants)
    });
    let propagation = phase("propagation", on(Phase::Propagation), || {
        propagation::run(&base, BACKENDS, options.propagation_reps)
    });
    let curve = phase("cost curve", on(Phase::Curve), || {
        let curve_load = wrk::Load {
            duration: options.curve_run,
            ..load
        };
        curve::run(
            &base,
            &curve_ips(&options.curve_points),
            &options.curve_points,
            curve_load,
            warmup,
            options.curve_rounds,
            &budget,
        )
    });
    let shim_args = base.shim.args.clone();
    drop(base);
    machine.load_after = machine::loadavg();
    let (clean_filter, clean_command) =
        clean_filter_build(&budget, options.clean_build && options.only.is_none());
    let build = Build {
        wasm_bytes: file_size(filter_wasm()),
        shim_bytes: file_size(shim_binary()),
        just_build_seconds: options.build_seconds,
        clean_filter,
        clean_command,
    };
    let results = Results {
        machine,
        cost,
        instructions,
        propagation,
        curve,
        build,
        shim_args,
        elapsed: budget.elapsed(),
        options,
    };
    report::write(&results)?;
    Ok(results)
}

pub(crate) fn io_error(context: String) -> impl FnOnce(std::io::Error) -> HarnessError {
    HarnessError::io(context)
}
