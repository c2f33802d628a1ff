//! The whole system on loopback, for end-to-end tests: the DNS server, fake
//! backend processes, the real `xds-shim` binary and a real Envoy running the
//! filter-routing bootstrap (`envoy/filter-routing.yaml`) or the one `xds-shim
//! envoy-bootstrap` prints, with this test's ports.

use std::{
    fs,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use crate::{
    backend::{BackendReport, HEADER_SEEN_ENDPOINT},
    dns::DnsServer,
    envoy::{Envoy, EnvoyOptions},
    error::{format_log_tail, HarnessError, Result},
    http::{http_get, HttpResponse},
    process::{free_port, wait_until, workspace_root, ChildGuard, TempDir},
};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const STARTUP: Duration = Duration::from_secs(30);
const SHIM_STARTUP: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);

/// Where `just build` puts the artifacts the tests run.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

pub fn shim_binary() -> PathBuf {
    target_dir().join("release").join("xds-shim")
}

pub fn filter_wasm() -> PathBuf {
    target_dir()
        .join("wasm32-wasip1")
        .join("release-wasm")
        .join("dnslb_filter.wasm")
}

/// The filter as an Envoy dynamic module (`just build-module`).
pub fn filter_module() -> PathBuf {
    target_dir().join("release").join("libdnslb_module.so")
}

/// Which build of the dnslb filter Envoy loads: the same JSON, the same behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Build {
    /// `dnslb_filter.wasm` (proxy-wasm, V8).
    Wasm,
    /// `libdnslb_module.so` (native dynamic module).
    Module,
}

impl Build {
    /// The built artifact; an error says to build it when missing.
    pub fn artifact(self) -> Result<PathBuf> {
        built(match self {
            Build::Wasm => filter_wasm(),
            Build::Module => filter_module(),
        })
    }

    /// The `envoy-bootstrap` flag that loads it.
    pub fn flag(self) -> &'static str {
        match self {
            Build::Wasm => "--wasm",
            Build::Module => "--module",
        }
    }

    /// Where its counters show in Envoy's stats: `<prefix>dnslb.requests`.
    pub fn stats_prefix(self) -> &'static str {
        match self {
            Build::Wasm => "wasmcustom.",
            Build::Module => "dynamicmodulescustom.",
        }
    }
}

/// [`shim_bootstrap`] loading `build` (or no filter at all).
pub fn shim_bootstrap_build(
    ports: EnvoyPorts,
    build: Option<Build>,
    filter_config: &str,
    absolute_form: bool,
) -> Result<String> {
    let Some(build) = build else {
        return shim_bootstrap_with(ports, None, filter_config, absolute_form, &[]);
    };
    let artifact = build.artifact()?.display().to_string();
    let extra = [build.flag(), artifact.as_str()];
    shim_bootstrap_with(ports, None, filter_config, absolute_form, &extra)
}

fn built(path: PathBuf) -> Result<PathBuf> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(HarnessError::Process {
            name: path.display().to_string(),
            reason: "not built: run `just build` first".into(),
            log_tail: String::new(),
        })
    }
}

/// Ports one Envoy uses; the demo bootstrap's are replaced by these.
#[derive(Debug, Clone, Copy)]
pub struct EnvoyPorts {
    pub admin: u16,
    pub listener: u16,
    pub xds: u16,
}

/// `envoy/filter-routing.yaml` (the snippets' configuration, filter routing) with the given
/// ports, wasm path and filter configuration (JSON), so the file cannot drift from what
/// the tests run.
/// Each value replaced must occur exactly once, so an edit of the demo that
/// moves them fails loudly here.
pub fn filter_routing_bootstrap(
    ports: EnvoyPorts,
    wasm: &Path,
    filter_config: &str,
) -> Result<String> {
    let path = workspace_root().join("envoy").join("filter-routing.yaml");
    let mut text =
        fs::read_to_string(&path).map_err(HarnessError::io(format!("read {}", path.display())))?;
    let replacements = [
        (
            "port_value: 9901 ".to_string(),
            format!("port_value: {} ", ports.admin),
        ),
        (
            "port_value: 10000 ".to_string(),
            format!("port_value: {} ", ports.listener),
        ),
        (
            "port_value: 18000 ".to_string(),
            format!("port_value: {} ", ports.xds),
        ),
        (
            "filename: target/wasm32-wasip1/release-wasm/dnslb_filter.wasm".to_string(),
            format!("filename: {}", wasm.display()),
        ),
        (
            r#"value: '{"affinity": {"mode": "cookie"}}'"#.to_string(),
            format!("value: {}", yaml_string(filter_config)),
        ),
    ];
    for (from, to) in replacements {
        let count = text.matches(&from).count();
        if count != 1 {
            return Err(HarnessError::Process {
                name: path.display().to_string(),
                reason: format!("expected {from:?} exactly once, found it {count} times"),
                log_tail: String::new(),
            });
        }
        text = text.replace(&from, &to);
    }
    Ok(text)
}

/// [`filter_routing_bootstrap`] with the dynamic module as the HTTP filter (the
/// absolute-form network filter stays wasm) and `xds_address` (the shim) in its JSON.
pub fn filter_routing_bootstrap_module(
    ports: EnvoyPorts,
    wasm: &Path,
    filter_config: &str,
) -> Result<String> {
    let text = filter_routing_bootstrap(ports, wasm, filter_config)?;
    let bad = |reason: &str| HarnessError::Process {
        name: "envoy/filter-routing.yaml".into(),
        reason: reason.into(),
        log_tail: String::new(),
    };
    let mut json: serde_json::Value = serde_json::from_str(filter_config)
        .map_err(|e| bad(&format!("filter configuration: {e}")))?;
    json["xds_address"] = SocketAddr::new(LOOPBACK, ports.xds).to_string().into();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.contains("envoy.extensions.filters.http.wasm.v3.Wasm"))
        .ok_or_else(|| bad("no wasm HTTP filter"))?;
    let end = lines
        .iter()
        .skip(start)
        .position(|l| l.trim_start().starts_with("value: "))
        .map(|i| start + i)
        .ok_or_else(|| bad("no filter configuration value"))?;
    let indent = " ".repeat(lines[start].len() - lines[start].trim_start().len());
    let module = filter_module();
    let typed_config = [
        "\"@type\": type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter".to_string(),
        format!("dynamic_module_config: {{ module: {{ local: {{ filename: {} }} }} }}", yaml_string(&module.display().to_string())),
        "filter_name: dnslb".to_string(),
        "filter_config:".to_string(),
        "  \"@type\": type.googleapis.com/google.protobuf.StringValue".to_string(),
        format!("  value: {}", yaml_string(&json.to_string())),
    ];
    let mut out: Vec<String> = lines[..start].iter().map(|l| l.to_string()).collect();
    out.extend(typed_config.iter().map(|l| format!("{indent}{l}")));
    out.extend(lines[end + 1..].iter().map(|l| l.to_string()));
    Ok(out.join("\n") + "\n")
}

/// What `xds-shim envoy-bootstrap` prints for these ports, the wasm filter and its
/// configuration: the recommended native path. `absolute_form` adds the network filter.
pub fn shim_bootstrap(
    ports: EnvoyPorts,
    wasm: Option<&Path>,
    filter_config: &str,
    absolute_form: bool,
) -> Result<String> {
    shim_bootstrap_with(ports, wasm, filter_config, absolute_form, &[])
}

/// [`shim_bootstrap`] with further `envoy-bootstrap` flags (`--xds-ca FILE`, ...).
pub fn shim_bootstrap_with(
    ports: EnvoyPorts,
    wasm: Option<&Path>,
    filter_config: &str,
    absolute_form: bool,
    extra: &[&str],
) -> Result<String> {
    let at = |port: u16| SocketAddr::new(LOOPBACK, port).to_string();
    let mut cmd = Command::new(built(shim_binary())?);
    cmd.args(["envoy-bootstrap", "--listen", &at(ports.listener)])
        .args(["--admin", &at(ports.admin), "--xds", &at(ports.xds)])
        .args(["--filter-config", filter_config]);
    if let Some(wasm) = wasm {
        cmd.arg("--wasm").arg(wasm);
    }
    if absolute_form {
        cmd.arg("--absolute-form");
    }
    cmd.args(extra);
    let output = cmd
        .output()
        .map_err(HarnessError::io("run xds-shim envoy-bootstrap"))?;
    if !output.status.success() {
        return Err(HarnessError::Process {
            name: "xds-shim envoy-bootstrap".into(),
            reason: format!("exit {}", output.status),
            log_tail: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    String::from_utf8(output.stdout).map_err(|e| HarnessError::Process {
        name: "xds-shim envoy-bootstrap".into(),
        reason: format!("output is not UTF-8: {e}"),
        log_tail: String::new(),
    })
}

/// GET `path` from `addr`, parsed as JSON.
/// A double-quoted YAML scalar (JSON string syntax is valid YAML).
fn yaml_string(text: &str) -> String {
    serde_json::Value::String(text.to_string()).to_string()
}

/// What to start.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// `--upstream` specs for the shim.
    pub upstreams: Vec<String>,
    /// Backend addresses; one fake-backend process each.
    pub backends: Vec<SocketAddr>,
    /// The `fake-backend` binary (`env!("CARGO_BIN_EXE_fake-backend")`).
    pub backend_bin: PathBuf,
    /// The shim's `--interval`.
    pub interval: Duration,
    pub concurrency: u32,
    /// Further xds-shim flags.
    pub shim_args: Vec<String>,
    /// The dnslb HTTP filter's configuration (JSON), `{}` by default.
    pub filter_config: String,
}

impl StackOptions {
    /// One Envoy worker, the shim's default interval, `{}` filter config.
    pub fn new(upstreams: Vec<String>, backends: Vec<SocketAddr>, backend_bin: PathBuf) -> Self {
        Self {
            upstreams,
            backends,
            backend_bin,
            interval: Duration::from_secs(5),
            concurrency: 1,
            shim_args: Vec::new(),
            filter_config: "{}".into(),
        }
    }
}

/// A running system; dropping it stops every process.
pub struct Stack {
    // Envoy first: it goes before the shim and the backends it talks to.
    pub envoy: Envoy,
    pub shim: Shim,
    pub backends: Vec<ChildGuard>,
    pub dns: DnsServer,
    /// Envoy's listener.
    pub listener: SocketAddr,
    _dir: TempDir,
}

impl Stack {
    /// Starts everything and waits until Envoy is ready. The DNS server is
    /// started first and handed to `seed` so the records exist before the shim
    /// first resolves.
    pub fn start(opts: StackOptions, seed: impl FnOnce(&DnsServer)) -> Result<Stack> {
        Self::start_with(opts, seed, filter_routing_bootstrap)
    }

    /// [`Stack::start`] (filter routing) with `build` of the filter.
    pub fn start_build(
        build: Build,
        opts: StackOptions,
        seed: impl FnOnce(&DnsServer),
    ) -> Result<Stack> {
        match build {
            Build::Wasm => Self::start(opts, seed),
            Build::Module => Self::start_with(opts, seed, filter_routing_bootstrap_module),
        }
    }

    /// [`Stack::start`] with another Envoy bootstrap: `bootstrap(ports, wasm,
    /// filter_config)` returns the YAML, as [`filter_routing_bootstrap`] does.
    pub fn start_with(
        opts: StackOptions,
        seed: impl FnOnce(&DnsServer),
        bootstrap: impl FnOnce(EnvoyPorts, &Path, &str) -> Result<String>,
    ) -> Result<Stack> {
        let dir = TempDir::new("stack")?;
        let dns = DnsServer::start()?;
        seed(&dns);
        let backends = opts
            .backends
            .iter()
            .map(|addr| {
                let mut cmd = Command::new(&opts.backend_bin);
                cmd.arg("--listen").arg(addr.to_string());
                let child = ChildGuard::spawn(&format!("backend-{}", addr.ip()), cmd, dir.path())?;
                child.wait_for_log("listening on", STARTUP)?;
                Ok(child)
            })
            .collect::<Result<Vec<_>>>()?;

        let extra: Vec<&str> = opts.shim_args.iter().map(String::as_str).collect();
        let shim = Shim::start(
            &opts.upstreams,
            dns.addr(),
            opts.interval,
            dir.path(),
            &extra,
        )?;

        let ports = EnvoyPorts {
            admin: free_port(LOOPBACK)?,
            listener: free_port(LOOPBACK)?,
            xds: shim.xds,
        };
        let yaml = bootstrap(ports, &built(filter_wasm())?, &opts.filter_config)?;
        let envoy = Envoy::start(
            &yaml,
            EnvoyOptions {
                admin: SocketAddr::new(LOOPBACK, ports.admin),
                concurrency: opts.concurrency,
            },
        )?;
        envoy.wait_ready(STARTUP)?;
        Ok(Stack {
            envoy,
            shim,
            backends,
            dns,
            listener: SocketAddr::new(LOOPBACK, ports.listener),
            _dir: dir,
        })
    }

    /// One request through Envoy with `authority` as the Host header.
    pub fn get(&self, authority: &str, path: &str) -> Result<HttpResponse> {
        http_get(self.listener, path, &[("Host", authority)])
    }

    /// `clients` threads each sending up to `per_client` GETs to `authority` one after
    /// another (bounded by `deadline` too); returns every failure (status and body, or
    /// error). The load of the reliability issue: many clients at once.
    pub fn load(
        &self,
        authority: &str,
        clients: usize,
        per_client: usize,
        deadline: Duration,
    ) -> Vec<String> {
        let end = std::time::Instant::now() + deadline;
        let listener = self.listener;
        let workers: Vec<_> = (0..clients)
            .map(|w| {
                let authority = authority.to_string();
                std::thread::spawn(move || {
                    let mut failed = Vec::new();
                    for i in 0..per_client {
                        if std::time::Instant::now() > end {
                            break;
                        }
                        let target = format!("/load/{w}/{i}");
                        match http_get(listener, &target, &[("Host", &authority)]) {
                            Ok(r) if r.status == 200 => {}
                            Ok(r) => failed.push(format!("{} {}", r.status, r.body)),
                            Err(e) => failed.push(e.to_string()),
                        }
                    }
                    failed
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| {
                w.join()
                    .unwrap_or_else(|_| vec!["a load thread panicked".into()])
            })
            .collect()
    }

    /// One request through Envoy that a fake backend must have answered.
    pub fn get_backend(&self, authority: &str, path: &str) -> Result<BackendReport> {
        let response = self.get(authority, path)?;
        if response.status != 200 {
            return Err(HarnessError::Http {
                target: format!("{authority}{path} via Envoy"),
                reason: format!("status {}: {}", response.status, response.body),
            });
        }
        response.json()
    }

    /// Waits until Envoy has exactly `hosts` in `cluster` and the filter
    /// picks among them: the state every routing test starts from.
    pub fn wait_serving(&self, cluster: &str, hosts: &[SocketAddr]) -> Result<()> {
        self.envoy.wait_cluster_hosts(cluster, hosts, STARTUP)?;
        self.wait_filter_members(cluster)
    }

    /// The filter's view (its status path) of the member `address` of
    /// `cluster`: weight, priority, draining; `None` when not listed.
    pub fn filter_member(&self, cluster: &str, address: &str) -> Result<Option<serde_json::Value>> {
        let json: serde_json::Value = http_get(self.listener, "/dnslb/status", &[])?.json()?;
        let member = json["upstreams"]
            .as_array()
            .and_then(|u| u.iter().find(|u| u["cluster"] == cluster))
            .and_then(|u| u["members"].as_array())
            .and_then(|m| m.iter().find(|m| m["address"] == address))
            .cloned();
        Ok(member)
    }

    /// The services (`ADS`, `CDS delta`, ...) of the shim's open streams from
    /// the xDS node `node`, sorted, as the shim's `/status.json` lists them.
    pub fn shim_streams(&self, node: &str) -> Result<Vec<String>> {
        let json = self.shim.status()?;
        let mut services: Vec<String> = json["clients"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["node"] == node)
            .filter_map(|c| c["service"].as_str().map(str::to_owned))
            .collect();
        services.sort();
        Ok(services)
    }

    /// `cluster` as Envoy runs it (admin `/config_dump`), `None` while it has none.
    pub fn envoy_cluster(&self, cluster: &str) -> Result<Option<serde_json::Value>> {
        let path = "/config_dump?resource=dynamic_active_clusters";
        let dump: serde_json::Value = http_get(self.envoy.admin(), path, &[])?.json()?;
        Ok(dump["configs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| &c["cluster"])
            .find(|c| c["name"] == cluster)
            .cloned())
    }

    /// [`Stack::wait_serving`] for the native path, where no filter picks: Envoy has exactly
    /// `hosts` in `cluster` and a request to it is answered by a backend.
    pub fn wait_serving_native(&self, cluster: &str, hosts: &[SocketAddr]) -> Result<()> {
        self.envoy.wait_cluster_hosts(cluster, hosts, STARTUP)?;
        wait_until(&format!("Envoy to serve {cluster}"), STARTUP, POLL, || {
            Ok(self.get(cluster, "/warmup")?.status == 200)
        })
        .map_err(|e| e.with_detail(&format_log_tail("envoy", &self.envoy.log_tail(40))))
    }

    /// Waits until the filter knows the members of `authority`'s cluster:
    /// its pick then shows in the `x-dnslb-endpoint` header a backend echoes.
    pub fn wait_filter_members(&self, authority: &str) -> Result<()> {
        wait_until(
            &format!("the filter to pick members for {authority}"),
            STARTUP,
            POLL,
            || {
                let response = self.get(authority, "/warmup")?;
                Ok(response.status == 200
                    && response
                        .header(HEADER_SEEN_ENDPOINT)
                        .is_some_and(|v| !v.is_empty()))
            },
        )
        .map_err(|e| e.with_detail(&format_log_tail("envoy", &self.envoy.log_tail(40))))
    }
}

/// The real `xds-shim` binary on free loopback ports; dropping it kills it.
pub struct Shim {
    pub process: ChildGuard,
    pub xds: u16,
    pub admin: SocketAddr,
    /// Every flag it was started with, to start another like it.
    pub args: Vec<String>,
}

impl Shim {
    /// Starts the shim on `upstreams`, asking only `nameserver`, re-resolving every
    /// `interval`, with `extra` flags; its log goes to `dir`. Waits for `/healthz`.
    pub fn start(
        upstreams: &[String],
        nameserver: SocketAddr,
        interval: Duration,
        dir: &Path,
        extra: &[&str],
    ) -> Result<Shim> {
        Self::start_binary(
            &built(shim_binary())?,
            upstreams,
            nameserver,
            interval,
            dir,
            extra,
        )
    }

    /// [`Shim::start`] with the binary at `binary` (the shim's own tests run the one
    /// cargo built for them).
    pub fn start_binary(
        binary: &Path,
        upstreams: &[String],
        nameserver: SocketAddr,
        interval: Duration,
        dir: &Path,
        extra: &[&str],
    ) -> Result<Shim> {
        let xds = free_port(LOOPBACK)?;
        let admin = SocketAddr::new(LOOPBACK, free_port(LOOPBACK)?);
        let mut args = Vec::new();
        for upstream in upstreams {
            args.extend(["--upstream".to_string(), upstream.clone()]);
        }
        args.extend([
            "--nameserver".to_string(),
            nameserver.to_string(),
            "--interval".into(),
            format!("{}ms", interval.as_millis()),
            "--xds-listen".into(),
            SocketAddr::new(LOOPBACK, xds).to_string(),
            "--admin-listen".into(),
            admin.to_string(),
        ]);
        args.extend(extra.iter().map(|a| a.to_string()));
        let mut cmd = Command::new(binary);
        cmd.args(&args);
        let process = ChildGuard::spawn("xds-shim", cmd, dir)?;
        let shim = Shim {
            process,
            xds,
            admin,
            args,
        };
        // The admin port answers after the first round, which thousands of names make long.
        wait_until("xds-shim /healthz", SHIM_STARTUP, POLL, || {
            shim.process.ensure_running()?;
            Ok(http_get(admin, "/healthz", &[]).is_ok_and(|r| r.status == 200))
        })
        .map_err(|e| e.with_detail(&shim.log_tail()))?;
        Ok(shim)
    }

    /// `/status.json`, parsed.
    pub fn status(&self) -> Result<serde_json::Value> {
        http_get(self.admin, "/status.json", &[])?.json()
    }

    /// The `/metrics` exposition text.
    pub fn metrics(&self) -> Result<String> {
        Ok(http_get(self.admin, "/metrics", &[])?.body)
    }

    /// The value of the sample `series` (name and labels as exposed), if there is one.
    pub fn metric(&self, series: &str) -> Result<Option<f64>> {
        Ok(self.metrics()?.lines().find_map(|line| {
            line.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|value| value.trim().parse().ok())
        }))
    }

    /// Polls `/status.json` until `check` holds and returns that status; on timeout the
    /// error carries the last status seen and the log tail. Stops if the shim exits.
    pub fn wait_status(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&serde_json::Value) -> bool,
    ) -> Result<serde_json::Value> {
        let mut last = serde_json::Value::Null;
        wait_until(what, timeout, POLL, || {
            self.process.ensure_running()?;
            last = self.status()?;
            Ok(check(&last))
        })
        .map_err(|e| e.with_detail(&format!("\nlast status: {last}{}", self.log_tail())))?;
        Ok(last)
    }

    fn log_tail(&self) -> String {
        format_log_tail("xds-shim", &self.process.log_tail(40))
    }
}
