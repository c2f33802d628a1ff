//! The whole system on loopback, for end-to-end tests: the DNS server, fake
//! backend processes, the real `xds-shim` binary and a real Envoy running the
//! filter-routing bootstrap (`envoy/filter-routing.yaml`) or the one `xds-shim
//! envoy-bootstrap` prints, with this test's ports.

use std::{
    net::SocketAddr,
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
    process::{free_port, wait_until, ChildGuard, TempDir},
};

const STARTUP: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);

pub use crate::artifacts::*;
pub use crate::shim::Shim;

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

    /// [`Stack::load`] that must lose no request: the error says how many failed and
    /// shows the first three.
    pub fn load_loses_nothing(
        &self,
        authority: &str,
        clients: usize,
        per_client: usize,
        deadline: Duration,
    ) -> Result<()> {
        let failed = self.load(authority, clients, per_client, deadline);
        if failed.is_empty() {
            return Ok(());
        }
        Err(HarnessError::Http {
            target: authority.to_string(),
            reason: format!(
                "{} requests of the load failed, e.g. {:?}",
                failed.len(),
                &failed[..failed.len().min(3)]
            ),
        })
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
