//! Processes the benchmarks start (fake backends, xds-shim, Envoys) and what
//! they read from /proc about them.

use std::{
    fs,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use crate::{
    backend::{HEADER_BACKEND, HEADER_SEEN_ENDPOINT},
    envoy::{cluster_host_set, Envoy, EnvoyOptions},
    error::{HarnessError, Result},
    http::http_get,
    process::{free_port, wait_until, ChildGuard},
    stack::{filter_wasm, EnvoyPorts},
};

pub const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
pub const STARTUP: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);

pub fn fail(name: &str, reason: impl Into<String>) -> HarnessError {
    HarnessError::Process {
        name: name.into(),
        reason: reason.into(),
        log_tail: String::new(),
    }
}

/// A sibling binary of the running one (`fake-backend` next to `bench`).
pub fn sibling_binary(name: &str) -> Result<PathBuf> {
    let me = std::env::current_exe().map_err(HarnessError::io("find the bench binary"))?;
    let path = me.with_file_name(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(fail(name, format!("not found at {}", path.display())))
    }
}

pub fn built(path: PathBuf) -> Result<PathBuf> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(fail(
            &path.display().to_string(),
            "not built: run `just build` first",
        ))
    }
}

pub fn wasm() -> Result<PathBuf> {
    built(filter_wasm())
}

/// `127.1.x.y`, the i-th of a block of distinct loopback addresses.
pub fn member_ip(block: u8, i: usize) -> Ipv4Addr {
    let i = u32::try_from(i).unwrap_or(u32::MAX);
    Ipv4Addr::new(127, block, ((i / 250) % 256) as u8, (i % 250 + 1) as u8)
}

/// One fake-backend process listening on every address in `addrs`.
pub fn spawn_backend(addrs: &[SocketAddr], dir: &Path, name: &str) -> Result<ChildGuard> {
    let mut cmd = Command::new(sibling_binary("fake-backend")?);
    for addr in addrs {
        cmd.arg("--listen").arg(addr.to_string());
    }
    let child = ChildGuard::spawn(name, cmd, dir)?;
    let want = addrs.len();
    wait_until(
        &format!("{name} to listen on {want} addresses"),
        STARTUP,
        POLL,
        || {
            child.ensure_running()?;
            Ok(child.log().matches("listening on").count() >= want)
        },
    )?;
    Ok(child)
}

/// A port free on 127.0.0.1 (and, on Linux, on the rest of 127/8 as a rule).
pub fn port() -> Result<u16> {
    free_port(LOOPBACK)
}

/// A started Envoy with its listener.
pub struct Proxy {
    pub envoy: Envoy,
    pub listener: SocketAddr,
}

/// Fresh admin and listener ports for an Envoy that talks to `xds`.
pub fn ports(xds: u16) -> Result<EnvoyPorts> {
    Ok(EnvoyPorts {
        admin: port()?,
        listener: port()?,
        xds,
    })
}

/// How the bench runs an Envoy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launch {
    /// As it is (on its own CPU when the run pins).
    Plain,
    /// Under valgrind's callgrind with instrumentation off until
    /// [`super::instructions`] turns it on for its runs.
    Callgrind,
}

/// valgrind's command for [`Launch::Callgrind`]; its output lands in the Envoy's dir.
pub const CALLGRIND: &str = "valgrind --tool=callgrind --instr-atstart=no";

pub fn start_envoy(yaml: &str, ports: EnvoyPorts, concurrency: u32) -> Result<Proxy> {
    launch_envoy(yaml, ports, concurrency, Launch::Plain)
}

pub fn launch_envoy(
    yaml: &str,
    ports: EnvoyPorts,
    concurrency: u32,
    launch: Launch,
) -> Result<Proxy> {
    let opts = EnvoyOptions {
        admin: SocketAddr::new(LOOPBACK, ports.admin),
        concurrency,
    };
    let envoy = match launch {
        Launch::Plain => Envoy::start(yaml, opts)?,
        Launch::Callgrind => Envoy::start_under(yaml, opts, CALLGRIND)?,
    };
    if launch == Launch::Plain {
        super::pin::envoy(envoy.process().pid())?;
    }
    envoy.wait_ready(STARTUP)?;
    Ok(Proxy {
        envoy,
        listener: SocketAddr::new(LOOPBACK, ports.listener),
    })
}

/// Waits until a request with `host` is answered by a backend and, for dnslb,
/// carries the filter's pick (the filter knows the members).
pub fn wait_serving(proxy: &Proxy, host: &str, dnslb: bool) -> Result<()> {
    wait_until(&format!("{host} to be served"), STARTUP, POLL, || {
        proxy.envoy.process().ensure_running()?;
        let Ok(response) = http_get(proxy.listener, "/", &[("Host", host)]) else {
            return Ok(false);
        };
        Ok(response.status == 200
            && response.header(HEADER_BACKEND).is_some()
            && (!dnslb
                || response
                    .header(HEADER_SEEN_ENDPOINT)
                    .is_some_and(|v| !v.is_empty())))
    })
    .map_err(|e| {
        fail(
            "envoy",
            format!("{e}\n--- envoy log tail ---\n{}", proxy.envoy.log_tail(20)),
        )
    })
}

/// Waits until the dnslb filter's status path lists `cluster`: the filter's
/// own membership stream has delivered it (needed for its cookie picks).
pub fn wait_filter_knows(proxy: &Proxy, cluster: &str) -> Result<()> {
    wait_until(
        &format!("the filter to know {cluster}"),
        STARTUP,
        POLL,
        || {
            proxy.envoy.process().ensure_running()?;
            let Ok(response) = http_get(proxy.listener, "/dnslb/status", &[]) else {
                return Ok(false);
            };
            Ok(response.status == 200 && response.body.contains(cluster))
        },
    )
}

/// The value of the Envoy counter `name`; `None` when Envoy has no such stat.
pub fn envoy_counter(proxy: &Proxy, name: &str) -> Option<u64> {
    proxy
        .envoy
        .stat(name)
        .ok()
        .flatten()
        .and_then(|v| v.trim().parse().ok())
}

/// Waits until Envoy's `cluster` has `n` hosts.
pub fn wait_host_count(proxy: &Proxy, cluster: &str, n: usize) -> Result<()> {
    wait_until(
        &format!("{cluster} to have {n} hosts"),
        STARTUP,
        Duration::from_millis(200),
        || {
            proxy.envoy.process().ensure_running()?;
            let Ok(text) = proxy.envoy.clusters() else {
                return Ok(false);
            };
            Ok(cluster_host_set(&text, cluster).len() == n)
        },
    )
}

/// The first `Set-Cookie` value named `name` (`name=value`) of a response to `host`.
pub fn fetch_cookie(proxy: &Proxy, host: &str, name: &str) -> Result<String> {
    let response = http_get(proxy.listener, "/", &[("Host", host)])?;
    response
        .header_all("set-cookie")
        .iter()
        .filter_map(|v| v.split(';').next())
        .find(|pair| pair.starts_with(&format!("{name}=")))
        .map(str::to_owned)
        .ok_or_else(|| {
            fail(
                "cookie",
                format!(
                    "no {name} cookie from {host} (status {}, headers {:?})",
                    response.status, response.headers
                ),
            )
        })
}

/// Resident memory of a process in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// User plus system CPU time of a process, in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at state (3).
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 when unknown).
pub fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// Envoy admin `/memory`: bytes allocated by Envoy's allocator (tcmalloc).
/// V8's wasm linear memory is mapped outside it; RSS covers both.
pub fn envoy_allocated(proxy: &Proxy) -> Option<u64> {
    let response = http_get(proxy.envoy.admin(), "/memory", &[]).ok()?;
    let json: serde_json::Value = serde_json::from_str(&response.body).ok()?;
    match &json["allocated"] {
        serde_json::Value::String(s) => s.parse().ok(),
        serde_json::Value::Number(n) => n.as_u64(),
        _ => None,
    }
}
