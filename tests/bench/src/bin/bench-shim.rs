//! `bench-shim`: xds-shim at scale, reported, never asserted (`just bench-shim`).
//!
//! N upstreams (default 10,000) of 20 A records each, served by the in-process DNS
//! server; the release xds-shim resolves them every 5 s. Measured: CPU per refresh cycle
//! (share of one core), resident memory, and the time from the resolution that sees a
//! change to the update arriving at a connected Delta client: alone, then with 200 more
//! simulated Delta clients (each subscribed to 50 clusters, as an Envoy routing to a
//! slice of them would be), then again with a fresh shim and the 200 subscribed to every
//! cluster. The resolution is triggered with `dnslb.v1.Resolver/Refresh` so it starts at
//! a known instant. Writes its section of `docs/benchmarks.md` and prints it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    collections::BTreeSet,
    fmt::Write as _,
    fs,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    process::Command,
    time::{Duration, Instant},
};

use clap::Parser;
use dnslb_bench::{fixture, section};
use dnslb_tests::{
    free_port, http_get, stack::shim_binary, wait_until, xds::XdsStream, ChildGuard, DnsServer,
    TempDir,
};
use dnslb_wire::refresh::RefreshResponse;
use envoy_types::pb::envoy::service::discovery::v3::{
    aggregated_discovery_service_client::AggregatedDiscoveryServiceClient, DeltaDiscoveryRequest,
    DeltaDiscoveryResponse,
};

const EDS: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[derive(Debug, Parser)]
struct Args {
    /// Upstreams (DNS names), 20 addresses each.
    #[arg(long, default_value_t = 10_000)]
    upstreams: usize,
    /// Simulated xDS clients for the second measurement.
    #[arg(long, default_value_t = 200)]
    clients: usize,
    /// Clusters each of those clients subscribes to in the first run; the second run
    /// subscribes them to every cluster (`*`).
    #[arg(long, default_value_t = 50)]
    subscribe: usize,
    /// Where to write the section (into the file's marked xds-shim section, the rest kept).
    #[arg(long, default_value = "docs/benchmarks.md")]
    out: std::path::PathBuf,
    /// Seconds of CPU sampling per measurement.
    #[arg(long, default_value_t = 30)]
    sample: u64,
}

fn name(i: usize) -> String {
    format!("u{i}.bench.test")
}

fn cluster(i: usize) -> String {
    format!("dns+{}:80", name(i))
}

fn addresses(i: usize, generation: u8) -> Vec<Ipv4Addr> {
    let [_, _, hi, lo] = u32::try_from(i).unwrap().to_be_bytes();
    (1..=20)
        .map(|k| Ipv4Addr::new(10 + generation, hi, lo, k))
        .collect()
}

/// CPU seconds (user + system) the process used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let ticks = fixture::cpu_ticks(pid).unwrap();
    ticks as f64 / fixture::clock_ticks() as f64
}

/// Resident memory in MiB (0 when /proc does not say).
fn rss_mb(pid: u32) -> f64 {
    fixture::rss_kib(pid).unwrap_or(0) as f64 / 1024.0
}

/// Share of one core over `seconds`, and the resident memory at the end.
async fn sample(pid: u32, seconds: u64) -> (f64, f64) {
    let before = cpu_seconds(pid);
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let used = cpu_seconds(pid) - before;
    (100.0 * used / seconds as f64, rss_mb(pid))
}

/// A Delta ADS stream subscribed to EDS resources, ACKing every response.
struct DeltaClient(XdsStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>);

impl DeltaClient {
    async fn connect(xds: SocketAddr, subscribe: Vec<String>) -> DeltaClient {
        let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://{xds}"))
            .await
            .unwrap()
            .max_decoding_message_size(usize::MAX);
        let first = DeltaDiscoveryRequest {
            type_url: EDS.into(),
            resource_names_subscribe: subscribe,
            ..Default::default()
        };
        let stream = XdsStream::open(Some(first), |rx| async move {
            client.delta_aggregated_resources(rx).await
        });
        DeltaClient(stream.await.unwrap())
    }

    /// The next response (ACKed), bounded in time.
    async fn next(&mut self) -> DeltaDiscoveryResponse {
        let response = self.0.next(Duration::from_secs(120)).await.unwrap();
        let ack = DeltaDiscoveryRequest {
            type_url: EDS.into(),
            response_nonce: response.nonce.clone(),
            ..Default::default()
        };
        let _ = self.0.send(ack).await;
        response
    }

    /// Reads the initial push, which comes in parts of bounded size, until it has
    /// `count` resources; returns how many parts it took.
    async fn initial(&mut self, count: usize) -> usize {
        let (mut got, mut parts) = (0, 0);
        while got < count {
            got += self.next().await.resources.len();
            parts += 1;
        }
        parts
    }

    /// Waits for the push that carries `cluster`.
    async fn until(&mut self, cluster: &str) {
        for _ in 0..100 {
            if self
                .next()
                .await
                .resources
                .iter()
                .any(|r| r.name == cluster)
            {
                return;
            }
        }
        panic!("{cluster} never pushed");
    }
}

async fn force_refresh(xds: SocketAddr, cluster: String) -> RefreshResponse {
    dnslb_tests::shim::refresh(xds, &cluster).await.unwrap()
}

/// Median milliseconds from asking for a forced resolution to every listed client having
/// the update.
async fn propagation(
    xds: SocketAddr,
    dns: &DnsServer,
    clients: &mut [DeltaClient],
    rounds: usize,
    generation: &mut u8,
) -> f64 {
    let mut times = Vec::new();
    for _ in 0..rounds {
        *generation += 1;
        dns.set_a(&name(0), &addresses(0, *generation % 100));
        let start = Instant::now();
        // Not `changed` when a regular round got there first: the loop runs one round at
        // a time, so the refresh waited for it. Either way the update is on its way.
        let _ = force_refresh(xds, cluster(0)).await;
        for client in clients.iter_mut() {
            client.until(&cluster(0)).await;
        }
        times.push(start.elapsed().as_secs_f64() * 1000.0);
        // The per-name limit is one forced resolution a second.
        tokio::time::sleep(Duration::from_millis(1_100)).await;
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// What one run (a fresh shim) measured.
struct Figures {
    ready: Duration,
    initial_parts: usize,
    cpu_one: f64,
    rss_one: f64,
    alone: f64,
    cpu_many: f64,
    rss_many: f64,
    crowded: f64,
}

/// Starts a shim over `config`, measures it alone with one wildcard client, then with
/// `args.clients` more subscribed to `subscribe` clusters each (0: every cluster).
async fn run(args: &Args, dns: &DnsServer, config: &std::path::Path, subscribe: usize) -> Figures {
    let dir = TempDir::new("bench-shim-run").unwrap();
    let xds = SocketAddr::new(LOOPBACK, free_port(LOOPBACK).unwrap());
    let admin = SocketAddr::new(LOOPBACK, free_port(LOOPBACK).unwrap());
    let mut cmd = Command::new(shim_binary());
    cmd.arg("--config")
        .arg(config)
        .args(["--nameserver", &dns.addr().to_string(), "--interval", "5s"])
        .args([
            "--xds-listen",
            &xds.to_string(),
            "--admin-listen",
            &admin.to_string(),
        ])
        .env("RUST_LOG", "warn");
    let started = Instant::now();
    let shim = ChildGuard::spawn("xds-shim", cmd, dir.path()).unwrap();
    wait_until(
        "every upstream resolved",
        Duration::from_secs(300),
        Duration::from_millis(100),
        || {
            shim.ensure_running()?;
            Ok(http_get(admin, "/readyz", &[]).is_ok_and(|r| r.status == 200))
        },
    )
    .unwrap();
    let ready = started.elapsed();

    let mut one = vec![DeltaClient::connect(xds, vec!["*".into()]).await];
    let initial_parts = one[0].initial(args.upstreams).await;
    let (cpu_one, rss_one) = sample(shim.pid(), args.sample).await;
    let mut generation = 0;
    let alone = propagation(xds, dns, &mut one, 5, &mut generation).await;

    let mut many = Vec::with_capacity(args.clients);
    for c in 0..args.clients {
        let names: BTreeSet<String> = if subscribe == 0 {
            BTreeSet::from(["*".to_string()])
        } else {
            (0..subscribe)
                .map(|k| cluster((c * subscribe + k) % args.upstreams))
                .chain([cluster(0)])
                .collect()
        };
        let count = if subscribe == 0 {
            args.upstreams
        } else {
            names.len()
        };
        let mut client = DeltaClient::connect(xds, names.into_iter().collect()).await;
        client.initial(count).await;
        many.push(client);
    }
    let (cpu_many, rss_many) = sample(shim.pid(), args.sample).await;
    many.append(&mut one);
    let crowded = propagation(xds, dns, &mut many, 5, &mut generation).await;
    Figures {
        ready,
        initial_parts,
        cpu_one,
        rss_one,
        alone,
        cpu_many,
        rss_many,
        crowded,
    }
}

/// "met" or "missed", against an upper bound.
fn verdict(value: f64, target: f64) -> &'static str {
    if value < target {
        "met"
    } else {
        "**missed**"
    }
}

fn report(args: &Args, slice: &Figures, all: &Figures) -> String {
    let mut out = String::new();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let n = args.clients;
    let _ = writeln!(out, "## xds-shim at scale (`just bench-shim`)\n");
    let _ = writeln!(
        out,
        "{} upstreams (`dns+uN.bench.test:80`) of 20 A records each, from the in-process \
         DNS server; the release xds-shim with `--interval 5s`, on this machine ({cpus} \
         CPUs). Two runs, each with a fresh shim: first one Delta client subscribed to \
         everything (`*`), then {n} more subscribed to {} clusters each (plus the one \
         that changes), as Envoys routing to a slice of the upstreams would be; in the \
         second run those {n} subscribe to every cluster. Reported, never asserted; \
         targets from issue 3 in brackets.\n",
        args.upstreams, args.subscribe
    );
    let _ = writeln!(
        out,
        "| measure [target] | run 1: {n} clients × {} clusters | run 2: {n} clients × all |\n|---|---|---|",
        args.subscribe
    );
    let row = |out: &mut String, what: &str, a: String, b: String| {
        let _ = writeln!(out, "| {what} | {a} | {b} |");
    };
    let secs = |d: Duration| format!("{:.1} s", d.as_secs_f64());
    let pct = |v: f64| format!("{v:.1} % ({})", verdict(v, 25.0));
    let mb = |v: f64| format!("{v:.0} MB ({})", verdict(v, 300.0));
    let ms = |v: f64| format!("{v:.1} ms ({})", verdict(v, 100.0));
    row(
        &mut out,
        "first full resolution until `/readyz`",
        secs(slice.ready),
        secs(all.ready),
    );
    row(
        &mut out,
        "responses in the initial Delta push of all assignments",
        slice.initial_parts.to_string(),
        all.initial_parts.to_string(),
    );
    row(
        &mut out,
        "CPU, 1 client, share of one core [< 25 %]",
        pct(slice.cpu_one),
        pct(all.cpu_one),
    );
    row(
        &mut out,
        "resident memory, 1 client [< 300 MB]",
        mb(slice.rss_one),
        mb(all.rss_one),
    );
    row(
        &mut out,
        "resolution → update at that client, median of 5 [< 100 ms]",
        ms(slice.alone),
        ms(all.alone),
    );
    row(
        &mut out,
        &format!("CPU with the {n} more [< 25 %]"),
        pct(slice.cpu_many),
        pct(all.cpu_many),
    );
    row(
        &mut out,
        &format!("resident memory with the {n} more [< 300 MB]"),
        mb(slice.rss_many),
        mb(all.rss_many),
    );
    row(
        &mut out,
        &format!(
            "resolution → update at all {} clients, median of 5 [< 100 ms]",
            n + 1
        ),
        ms(slice.crowded),
        ms(all.crowded),
    );
    let _ = writeln!(
        out,
        "\nHow it is measured: CPU is the shim's user + system time from `/proc/PID/stat` \
         over {} s (several 5 s refresh cycles; nothing changes in DNS meanwhile), as a \
         share of one core; memory is `VmRSS` at the end of that window. Latency starts \
         when the bench changes the name's 20 addresses in the DNS server and asks \
         `dnslb.v1.Resolver/Refresh` for that cluster (a new gRPC connection each time), \
         and ends when every client has received the new assignment: one resolution, one \
         snapshot update, one push per client. One change a second (the per-name limit), \
         median of 5. One run on shared cores: the figures are noisy.\n",
        args.sample
    );
    let _ = writeln!(
        out,
        "Why it costs what it does: each cycle the shim sends {} DNS queries through \
         hickory and folds the answers in; names due within 100 ms of each other share a \
         round. A round compares only the clusters it touched with the served snapshot, \
         and a change re-encodes and re-hashes only the changed cluster's resources \
         (resources are shared between snapshots); each type's version hashes the \
         per-resource digests. A Delta stream that is up to date checks only the \
         resources changed since the snapshot it last saw, so one changed cluster costs \
         each of the {} streams a lookup, not a walk over {} resources. Delta responses \
         come in parts of about 64 KiB, because the gRPC encoder keeps a buffer the size \
         of a stream's largest message for the stream's life.\n",
        args.upstreams,
        n + 1,
        args.upstreams
    );
    let _ = writeln!(
        out,
        "What is left: the CPU is mostly the DNS work itself ({} queries every 5 s \
         through hickory: {:.1} % of a core with one client in run 1); the {n} idle \
         streams add {:+.1} points there. A stream in sync keeps what its client has as \
         the snapshot's own (shared) resource map, so a client subscribed to every \
         cluster costs the shim about {:.2} MB (run 2), HTTP/2 and encoder buffers \
         mostly. State-of-the-world streams are not split (the protocol sends each type \
         whole), so each keeps a buffer the size of its last full response.\n",
        args.upstreams,
        slice.cpu_one,
        slice.cpu_many - slice.cpu_one,
        (all.rss_many - all.rss_one) / n.max(1) as f64,
    );
    let _ = writeln!(
        out,
        "Command: `just bench-shim` (builds the release shim and `bench-shim`, then runs \
         `target/release/bench-shim --out docs/benchmarks.md`, which replaces this \
         section and keeps the rest; source `tests/bench/src/bin/bench-shim.rs`). Flags: \
         `--upstreams`, `--clients`, `--subscribe`, `--sample` (seconds of CPU sampling)."
    );
    out
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let dir = TempDir::new("bench-shim").unwrap();
    let dns = DnsServer::start().unwrap();
    for i in 0..args.upstreams {
        dns.set_a(&name(i), &addresses(i, 0));
    }
    let mut yaml = String::from("upstreams:\n");
    for i in 0..args.upstreams {
        let _ = writeln!(yaml, "  - {}", cluster(i));
    }
    let config = dir.path().join("bench.yaml");
    fs::write(&config, yaml).unwrap();

    let slice = run(&args, &dns, &config, args.subscribe.max(1)).await;
    let all = run(&args, &dns, &config, 0).await;
    let section = report(&args, &slice, &all);
    let doc = fs::read_to_string(&args.out).unwrap_or_default();
    fs::write(&args.out, section::splice(&doc, &section)).unwrap();
    print!("{section}");
}
