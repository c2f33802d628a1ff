//! Live reload: `SIGHUP` rereads `--config` and merges it with the flags and `DNSLB_*`
//! variables given at start exactly as the start did (they still win over the file).
//!
//! A file that fails to load or validate changes nothing: one error line names the key and
//! the value. Otherwise the refresh loop gets the new configuration as a message (as it
//! gets forced refreshes) and applies it with [`apply`](crate::discovery::reconfigure::apply): upstreams join and are resolved
//! at once, removed ones drain and are withdrawn, changed settings become new cluster
//! versions. Streams stay open. Settings bound at start (listen addresses, the resolver,
//! the log format) keep their running values; the log names the ones the file changed.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::SystemTime;

use clap::parser::ValueSource;
use clap::ArgMatches;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use crate::config::cli::Cli;
use crate::config::file::{self, FileConfig};
use crate::config::{Config, ConfigError};
use crate::discovery::reconfigure::Applied;
use crate::discovery::refresh::Reload;
use crate::metrics::{LastReload, Metrics};
use crate::shutdown::Shutdown;

/// Where the configuration comes from: the flags and variables parsed at start (with
/// which of them were given, rather than defaulted) and the `--config` file.
#[derive(Debug)]
pub struct Source {
    cli: Cli,
    explicit: BTreeSet<String>,
}

impl Source {
    pub fn new(cli: Cli, matches: &ArgMatches) -> Self {
        let explicit = matches
            .ids()
            .filter(|id| {
                matches!(
                    matches.value_source(id.as_str()),
                    Some(ValueSource::CommandLine | ValueSource::EnvVariable)
                )
            })
            .map(|id| id.to_string())
            .collect();
        Source { cli, explicit }
    }

    pub fn path(&self) -> Option<&str> {
        self.cli.config.as_deref()
    }

    /// Reads the file (if any) and merges it under the flags and variables.
    pub fn load(&self) -> Result<Config, ConfigError> {
        let file = match self.path() {
            Some(path) => file::load(path)?,
            None => FileConfig::default(),
        };
        self.cli
            .to_config_with(&file, |id| self.explicit.contains(id))
    }
}

/// The configuration a reload applies, and what it leaves for a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub config: Config,
    /// Keys the file changed that only a restart applies; their running values stay.
    pub restart_required: Vec<String>,
}

/// `loaded`'s upstreams, per-upstream settings, intervals, drain policy and CA file; the
/// running values of everything bound at start: sockets, the resolver, logging. A
/// setting added to [`Config`] later is bound at start unless it is listed here.
pub fn plan(running: &Config, loaded: &Config) -> Plan {
    let config = Config {
        upstreams: loaded.upstreams.clone(),
        interval: loaded.interval,
        policy: loaded.policy,
        ca_file: loaded.ca_file.clone(),
        ttl_floor: loaded.ttl_floor,
        ..running.clone()
    };
    // Named as `xds-shim check` prints them, which is the file's syntax; whatever else
    // differs is kept all the same.
    let mut restart_required = differing_keys(&config, loaded);
    if restart_required.is_empty() && config != *loaded {
        restart_required.push("settings bound at start".to_string());
    }
    Plan {
        config,
        restart_required,
    }
}

/// The top-level keys whose effective values differ between `a` and `b`.
fn differing_keys(a: &Config, b: &Config) -> Vec<String> {
    let keys = |c: &Config| {
        serde_norway::from_str::<serde_norway::Mapping>(&c.to_yaml()).unwrap_or_default()
    };
    let (a, b) = (keys(a), keys(b));
    a.iter()
        .filter(|(key, value)| b.get(*key) != Some(*value))
        .filter_map(|(key, _)| key.as_str().map(str::to_owned))
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("the refresh loop has stopped")]
    LoopGone,
}

/// Listens for SIGHUP. Installed before the first round: until then SIGHUP terminates.
pub fn hangups() -> std::io::Result<Signal> {
    signal(SignalKind::hangup())
}

/// Reloads on every SIGHUP until shutdown, one at a time (signals that arrive during a
/// reload coalesce into the next one).
pub async fn serve(
    mut hangups: Signal,
    source: Source,
    mut running: Config,
    refresh: mpsc::Sender<Reload>,
    metrics: Arc<Metrics>,
    mut shutdown: Shutdown,
) {
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            signal = hangups.recv() => if signal.is_none() { return },
        }
        info!(
            config = source.path(),
            "SIGHUP: reloading the configuration"
        );
        if let Err(ReloadError::LoopGone) = reload(&source, &mut running, &refresh, &metrics).await
        {
            return;
        }
    }
}

/// One reload: load, keep what needs a restart, have the refresh loop apply the rest, then
/// log and count the outcome. `running` becomes what was applied.
pub async fn reload(
    source: &Source,
    running: &mut Config,
    refresh: &mpsc::Sender<Reload>,
    metrics: &Metrics,
) -> Result<Applied, ReloadError> {
    let loaded = match source.load() {
        Ok(config) => config,
        Err(err) => {
            error!(error = %err, "configuration reload failed; keeping the running configuration");
            metrics.config_reload(LastReload {
                at: SystemTime::now(),
                error: Some(err.to_string()),
                restart_required: Vec::new(),
            });
            return Err(err.into());
        }
    };
    let plan = plan(running, &loaded);
    if !plan.restart_required.is_empty() {
        warn!(
            settings = ?plan.restart_required,
            "changed in the configuration, but only a restart applies them; keeping the running values"
        );
    }
    let (reply, applied) = oneshot::channel();
    let request = Reload {
        wanted: plan.config.wanted(),
        timing: plan.config.timing(),
        reply,
    };
    refresh
        .send(request)
        .await
        .map_err(|_| ReloadError::LoopGone)?;
    let applied = applied.await.map_err(|_| ReloadError::LoopGone)?;
    info!(
        added = ?applied.added,
        removed = ?applied.removed,
        changed = ?applied.changed,
        "configuration reloaded"
    );
    metrics.config_reload(LastReload {
        at: SystemTime::now(),
        error: None,
        restart_required: plan.restart_required,
    });
    *running = plan.config;
    Ok(applied)
}

#[cfg(test)]
mod tests;
