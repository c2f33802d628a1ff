//! Envoy as an RAII process: start it on a config, wait on the admin API, kill on drop.

mod admin;
pub mod bootstrap;

use std::{
    collections::BTreeSet,
    fs,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

pub use self::admin::{cluster_host_set, parse_cluster_hosts, parse_stats};
use crate::{
    error::{format_log_tail, HarnessError, Result},
    http::http_get,
    process::{wait_until, workspace_root, ChildGuard, TempDir},
};

/// Overrides the Envoy launcher script (default `<workspace>/envoy/envoy.sh`).
pub const ENVOY_SCRIPT_ENV: &str = "DNSLB_ENVOY_SCRIPT";

/// What `envoy/envoy.sh` runs Envoy under, if set.
const PREFIX_ENV: &str = "DNSLB_ENVOY_PREFIX";
const POLL: Duration = Duration::from_millis(50);
const LOG_TAIL_LINES: usize = 40;

/// What the harness needs to know about an Envoy it starts. The caller picks the admin
/// address and embeds it, and every listener, in the YAML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvoyOptions {
    pub admin: SocketAddr,
    pub concurrency: u32,
}

/// A running Envoy; dropping it kills it.
#[derive(Debug)]
pub struct Envoy {
    // Declared before `dir`, so the process dies before its config and log are removed.
    process: ChildGuard,
    admin: SocketAddr,
    config_path: PathBuf,
    dir: TempDir,
}

impl Envoy {
    /// The launcher script: `$DNSLB_ENVOY_SCRIPT`, else `<workspace>/envoy/envoy.sh`.
    pub fn script() -> PathBuf {
        std::env::var_os(ENVOY_SCRIPT_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("envoy").join("envoy.sh"))
    }

    /// Writes `config_yaml` to a fresh temp dir and starts Envoy on it. Does not wait.
    pub fn start(config_yaml: &str, opts: EnvoyOptions) -> Result<Self> {
        Self::start_under(config_yaml, opts, "")
    }

    /// [`Envoy::start`] under `prefix` (e.g. `valgrind --tool=callgrind`), run in
    /// [`Envoy::dir`] so what the tool writes lands there.
    pub fn start_under(config_yaml: &str, opts: EnvoyOptions, prefix: &str) -> Result<Self> {
        let dir = TempDir::new("envoy")?;
        let config_path = dir.path().join("envoy.yaml");
        fs::write(&config_path, config_yaml)
            .map_err(HarnessError::io(format!("write {}", config_path.display())))?;
        let mut command = Command::new(Self::script());
        command
            .arg("-c")
            .arg(&config_path)
            .args(["--concurrency", &opts.concurrency.to_string()])
            .args(["--disable-hot-restart", "--drain-time-s", "1"])
            .args(["--log-level", "info"])
            // Unused without hot restart, but keeps shared-memory names apart if it is on.
            .args(["--base-id", &unique_base_id().to_string()]);
        if !prefix.is_empty() {
            command.env(PREFIX_ENV, prefix).current_dir(dir.path());
        }
        let process = ChildGuard::spawn("envoy", command, dir.path())?;
        Ok(Self {
            process,
            admin: opts.admin,
            config_path,
            dir,
        })
    }

    /// Runs `envoy --mode validate -c config_path`; the error carries Envoy's output.
    pub fn validate(config_path: &Path) -> Result<()> {
        let output = Command::new(Self::script())
            .args(["--mode", "validate", "-c"])
            .arg(config_path)
            .output()
            .map_err(HarnessError::io(format!(
                "run {} --mode validate",
                Self::script().display()
            )))?;
        if output.status.success() {
            return Ok(());
        }
        Err(HarnessError::EnvoyValidate {
            config: config_path.to_path_buf(),
            output: format!(
                "{}{}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        })
    }

    pub fn admin(&self) -> SocketAddr {
        self.admin
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Directory holding the config and `envoy.log`; tests may put other files here.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn process(&self) -> &ChildGuard {
        &self.process
    }

    pub fn log_tail(&self, n: usize) -> String {
        self.process.log_tail(n)
    }

    /// Polls admin `/ready` until it answers 200 `LIVE`.
    pub fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let mut last = String::from("no answer yet");
        wait_until("envoy /ready to say LIVE", timeout, POLL, || {
            self.process.ensure_running()?;
            match http_get(self.admin, "/ready", &[]) {
                Ok(response) if response.status == 200 && response.body.trim() == "LIVE" => {
                    Ok(true)
                }
                Ok(response) => {
                    last = format!("{} {}", response.status, response.body.trim());
                    Ok(false)
                }
                Err(error) => {
                    last = error.to_string();
                    Ok(false)
                }
            }
        })
        .map_err(|e| self.explain(e, &format!("last /ready: {last}")))
    }

    /// Admin `/clusters` text.
    pub fn clusters(&self) -> Result<String> {
        self.admin_get("/clusters")
    }

    /// Admin `/stats` text.
    pub fn stats(&self) -> Result<String> {
        self.admin_get("/stats")
    }

    /// One stat's value, `None` when Envoy does not have it (yet).
    pub fn stat(&self, name: &str) -> Result<Option<String>> {
        let regex = format!("^{}$", escape_regex(name));
        let filter = format!("/stats?filter={}", percent_encode(&regex));
        Ok(parse_stats(&self.admin_get(&filter)?).remove(name))
    }

    /// The stat `name` of the dnslb cluster `cluster` (`cluster.<stat name>.<name>`, the
    /// stat name being the cluster's `alt_stat_name`).
    pub fn cluster_stat(&self, cluster: &str, name: &str) -> Result<Option<String>> {
        let stat = dnslb_wire::names::stat_name(cluster);
        self.stat(&format!("cluster.{stat}.{name}"))
    }

    /// Polls `/clusters` until `cluster` has exactly the hosts `expected` (in any order).
    pub fn wait_cluster_hosts(
        &self,
        cluster: &str,
        expected: &[SocketAddr],
        timeout: Duration,
    ) -> Result<()> {
        let want: BTreeSet<SocketAddr> = expected.iter().copied().collect();
        let mut last: Option<BTreeSet<SocketAddr>> = None;
        wait_until(
            &format!("cluster {cluster} to have hosts {want:?}"),
            timeout,
            POLL,
            || {
                self.process.ensure_running()?;
                let Ok(text) = self.clusters() else {
                    return Ok(false);
                };
                let hosts = cluster_host_set(&text, cluster);
                let done = hosts == want;
                last = Some(hosts);
                Ok(done)
            },
        )
        .map_err(|e| {
            let seen = match &last {
                Some(hosts) => format!("last seen hosts: {hosts:?}"),
                None => "admin /clusters never answered".to_owned(),
            };
            self.explain(e, &seen)
        })
    }

    fn admin_get(&self, path: &str) -> Result<String> {
        let response = http_get(self.admin, path, &[])?;
        if response.status != 200 {
            return Err(HarnessError::Http {
                target: format!("envoy admin {path}"),
                reason: format!("status {}: {}", response.status, response.body),
            });
        }
        Ok(response.body)
    }

    /// Adds the last observation and the Envoy log tail to a wait error.
    fn explain(&self, error: HarnessError, observation: &str) -> HarnessError {
        let log = format_log_tail("envoy", &self.log_tail(LOG_TAIL_LINES));
        error.with_detail(&format!("\n{observation}{log}"))
    }
}

fn unique_base_id() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    (std::process::id() % 100_000) * 100 + NEXT.fetch_add(1, Ordering::Relaxed) % 100
}

/// Escapes a stat name for Envoy's RE2 `filter` (names contain `.` and `+`).
fn escape_regex(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Percent-encodes everything but unreserved characters, for a query-string value.
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_filter_is_escaped_and_encoded() {
        let regex = format!("^{}$", escape_regex("cluster.dns+a:80.rq"));
        assert_eq!(regex, r"^cluster\.dns\+a:80\.rq$");
        assert_eq!(percent_encode("a+b\\.c"), "a%2Bb%5C.c");
    }
}
