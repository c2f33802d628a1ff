//! What a worker's root context does, apart from the host: keep the EDS
//! stream open and apply what it brings, send queued forced refreshes, batch
//! counters and publish member gauges, and agree on this Envoy's cookie key.
//! The bindings implement [`RootHost`] with their host calls; the tests with
//! a fake.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;
use std::time::Duration;

use prost::Message;

use crate::config::{Affinity, Config};
use crate::cookie::Keyring;
use crate::members::WorkerMembership;
use crate::stats::Counter;
use crate::xds::{self, EdsSubscription, RefreshRequest};

/// How often the root context checks its xDS stream and reopens it.
pub const TICK: Duration = Duration::from_secs(1);
/// How long a forced refresh may take before Envoy gives up on it.
pub const REFRESH_TIMEOUT: Duration = Duration::from_secs(2);
/// Shared by all workers (VMs) of one Envoy: the random cookie key.
pub const SHARED_COOKIE_KEY: &str = "dnslb.cookie_key.v1";
/// The cookie key's length (ChaCha20-Poly1305 after HKDF).
pub const COOKIE_KEY_LEN: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
}

/// Why storing shared data failed.
#[derive(Debug, PartialEq, Eq)]
pub enum SharedDataError {
    /// Another worker stored first.
    CasMismatch,
    Failed(String),
}

/// The host calls the root context needs.
pub trait RootHost {
    fn log(&self, level: Level, message: &str);
    /// Seconds since the Unix epoch.
    fn now(&self) -> u64;
    /// Opens a gRPC stream to `cluster`; its token.
    fn open_stream(&mut self, cluster: &str, service: &str, method: &str) -> Result<u32, String>;
    fn send_stream(&mut self, token: u32, message: &[u8]) -> Result<(), String>;
    fn cancel_stream(&mut self, token: u32);
    /// Starts a unary gRPC call; its answer comes to [`Root::on_call_response`].
    fn call(
        &mut self,
        cluster: &str,
        service: &str,
        method: &str,
        message: &[u8],
        timeout: Duration,
    ) -> Result<(), String>;
    fn define_metric(&mut self, kind: MetricKind, name: &str) -> Option<u32>;
    fn increment_metric(&mut self, id: u32, by: u64);
    fn record_metric(&mut self, id: u32, value: u64);
    /// Data shared by every worker of this Envoy, with its CAS token.
    fn shared_data(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), String>;
    fn set_shared_data(
        &mut self,
        key: &str,
        value: &[u8],
        cas: Option<u32>,
    ) -> Result<(), SharedDataError>;
    fn random(&mut self, bytes: &mut [u8]) -> Result<(), String>;
}

/// Envoy metric ids for the counters, defined once per VM. Requests add to
/// `pending`; the root context flushes it to Envoy on every tick, which
/// saves a host call per counter per request (stats lag by ≤ 1 s).
#[derive(Default)]
pub struct Metrics {
    counters: Vec<Option<u32>>,
    pending: Vec<u64>,
    /// `dnslb.upstream_members.<cluster>` gauges, by cluster name.
    members: HashMap<String, u32>,
}

impl Metrics {
    fn define(host: &mut impl RootHost) -> Self {
        let counters = Counter::ALL
            .iter()
            .map(|c| host.define_metric(MetricKind::Counter, &format!("dnslb.{}", c.name())))
            .collect();
        Self {
            counters,
            pending: vec![0; Counter::ALL.len()],
            members: HashMap::new(),
        }
    }

    pub fn count(&mut self, counter: Counter) {
        if let Some(n) = self.pending.get_mut(counter.index()) {
            *n += 1;
        }
    }

    /// Hands the counts gathered since the last tick to Envoy.
    fn flush(&mut self, host: &mut impl RootHost) {
        for (n, id) in self.pending.iter_mut().zip(&self.counters) {
            if *n > 0 {
                if let Some(id) = id {
                    host.increment_metric(*id, *n);
                }
                *n = 0;
            }
        }
    }

    /// Members per upstream; upstreams that left are set to 0.
    fn record_members(&mut self, host: &mut impl RootHost, membership: &WorkerMembership) {
        let mut seen = BTreeSet::new();
        for (cluster, members) in membership.clusters() {
            let id = match self.members.get(cluster) {
                Some(id) => Some(*id),
                None => {
                    let id = host
                        .define_metric(MetricKind::Gauge, &crate::stats::members_gauge(cluster));
                    if let Some(id) = id {
                        self.members.insert(cluster.to_string(), id);
                    }
                    id
                }
            };
            if let Some(id) = id {
                host.record_metric(id, members.members().len() as u64);
            }
            seen.insert(cluster);
        }
        for (cluster, id) in &self.members {
            if !seen.contains(cluster.as_str()) {
                host.record_metric(*id, 0);
            }
        }
    }
}

/// What the root context shares with its HTTP contexts (same worker VM).
pub struct Shared {
    pub config: Config,
    pub cookie_key: Keyring,
    pub membership: RefCell<WorkerMembership>,
    pub metrics: RefCell<Metrics>,
    /// Clusters to re-resolve, sent by the root context on its next tick
    /// (at most once a second per cluster and worker).
    pub refreshes: RefCell<BTreeSet<String>>,
    /// Unix seconds as of the last tick: cookie expiries need no finer
    /// clock, and reading it saves a host call per cookie.
    clock: Cell<u64>,
}

impl Shared {
    fn new(config: Config, cookie_key: Keyring, metrics: Metrics, now: u64) -> Self {
        Self {
            config,
            cookie_key,
            membership: RefCell::default(),
            metrics: RefCell::new(metrics),
            refreshes: RefCell::default(),
            clock: Cell::new(now),
        }
    }

    pub fn now(&self) -> u64 {
        self.clock.get()
    }

    pub fn count(&self, counter: Counter) {
        self.metrics.borrow_mut().count(counter);
    }

    /// Queues a forced refresh of `cluster` for the next tick.
    pub fn request_refresh(&self, cluster: &str) {
        let mut refreshes = self.refreshes.borrow_mut();
        if !refreshes.contains(cluster) {
            refreshes.insert(cluster.to_string());
        }
    }
}

/// The cookie keys for `config`: the configured secrets, or this Envoy's
/// random key from `random_key` (never called without cookie affinity).
pub fn cookie_keyring(
    config: &Config,
    random_key: impl FnOnce() -> Result<Vec<u8>, String>,
) -> Result<Keyring, String> {
    Ok(match &config.affinity {
        Affinity::Cookie(c) => match &c.secret {
            Some(secret) => Keyring::new(secret, &c.previous_secrets),
            None => Keyring::new(&random_key()?, &[]),
        },
        // Never used: without cookie affinity no cookie is sealed or opened.
        _ => Keyring::new(&[], &[]),
    })
}

/// This Envoy's cookie key: the first worker draws it, the others read it.
pub fn shared_cookie_key(host: &mut impl RootHost) -> Result<Vec<u8>, String> {
    for _ in 0..4 {
        let (current, cas) = host
            .shared_data(SHARED_COOKIE_KEY)
            .map_err(|s| format!("reading shared data failed: {s}"))?;
        if let Some(key) = current.filter(|k| k.len() == COOKIE_KEY_LEN) {
            return Ok(key);
        }
        let mut key = [0u8; COOKIE_KEY_LEN];
        host.random(&mut key)
            .map_err(|e| format!("no randomness for the cookie key: {e}"))?;
        match host.set_shared_data(SHARED_COOKIE_KEY, &key, cas) {
            Ok(()) => return Ok(key.to_vec()),
            // Another worker won the race: read its key.
            Err(SharedDataError::CasMismatch) => continue,
            Err(SharedDataError::Failed(s)) => {
                return Err(format!("storing the cookie key failed: {s}"))
            }
        }
    }
    Err("the shared cookie key kept changing".into())
}

/// One per plugin and VM, so one per Envoy worker (plus one on the main thread).
pub struct Root {
    shared: Rc<Shared>,
    subscription: EdsSubscription,
    stream: Option<u32>,
    /// Log stream failures once per outage, not on every tick.
    reported_failure: bool,
    /// Log a failing forced refresh once, not on every retried request.
    reported_refresh_failure: bool,
}

impl Default for Root {
    fn default() -> Self {
        let config = Config::default();
        Self {
            subscription: EdsSubscription::new(config.node_id.clone()),
            // Never used: requests arrive only after `configure`, which sets
            // the real keys when cookie affinity is on.
            shared: Rc::new(Shared::new(
                config,
                Keyring::new(&[], &[]),
                Metrics::default(),
                0,
            )),
            stream: None,
            reported_failure: false,
            reported_refresh_failure: false,
        }
    }
}

impl Root {
    pub fn shared(&self) -> &Rc<Shared> {
        &self.shared
    }

    /// Reads the plugin configuration; false (after logging why) refuses it.
    pub fn configure(&mut self, host: &mut impl RootHost, raw: Option<&[u8]>) -> bool {
        let config = match Config::from_bytes(raw) {
            Ok(config) => config,
            Err(e) => {
                host.log(Level::Error, &e.to_string());
                return false;
            }
        };
        let cookie_key = match cookie_keyring(&config, || shared_cookie_key(host)) {
            Ok(key) => key,
            Err(e) => {
                host.log(Level::Error, &e);
                return false;
            }
        };
        self.subscription = EdsSubscription::new(config.node_id.clone());
        let metrics = Metrics::define(host);
        self.shared = Rc::new(Shared::new(config, cookie_key, metrics, host.now()));
        true
    }

    /// Every [`TICK`]: the clock, queued refreshes, counters, and the
    /// stream if it is closed.
    pub fn tick(&mut self, host: &mut impl RootHost) {
        self.shared.clock.set(host.now());
        self.send_refreshes(host);
        self.shared.metrics.borrow_mut().flush(host);
        if self.stream.is_none() {
            self.ensure_stream(host);
            if self.stream.is_some() && self.reported_failure {
                host.log(Level::Info, "xDS stream reopened");
                self.reported_failure = false;
            }
        }
    }

    /// Opens the ADS stream if it is not open. Done from the tick because
    /// while configuring, the `dnslb_xds` cluster may not exist yet.
    fn ensure_stream(&mut self, host: &mut impl RootHost) {
        if self.stream.is_some() {
            return;
        }
        let cluster = self.shared.config.xds_cluster.clone();
        match host.open_stream(&cluster, xds::ADS_SERVICE, xds::ADS_METHOD) {
            Ok(token) => {
                let request = self.subscription.initial_request();
                match host.send_stream(token, &request) {
                    Ok(()) => self.stream = Some(token),
                    Err(status) => {
                        self.report_failure(
                            host,
                            &format!("sending the EDS subscription failed: {status}"),
                        );
                        host.cancel_stream(token);
                    }
                }
            }
            Err(status) => self.report_failure(
                host,
                &format!("cannot open xDS stream to cluster {cluster:?}: {status}"),
            ),
        }
    }

    /// Sends the queued forced refreshes. Calls go from the root context so
    /// that they outlive the request that asked for them.
    fn send_refreshes(&mut self, host: &mut impl RootHost) {
        let clusters = std::mem::take(&mut *self.shared.refreshes.borrow_mut());
        for cluster in clusters {
            let message = RefreshRequest {
                cluster: cluster.clone(),
            }
            .encode_to_vec();
            let sent = host.call(
                &self.shared.config.xds_cluster,
                xds::REFRESH_SERVICE,
                xds::REFRESH_METHOD,
                &message,
                REFRESH_TIMEOUT,
            );
            match sent {
                Ok(()) => self.shared.count(Counter::ForcedRefreshes),
                Err(status) => host.log(
                    Level::Warn,
                    &format!("forced refresh of {cluster} not sent: {status}"),
                ),
            }
        }
    }

    fn report_failure(&mut self, host: &impl RootHost, message: &str) {
        if !self.reported_failure {
            host.log(
                Level::Warn,
                &format!("{message}; retrying every {}s", TICK.as_secs()),
            );
            self.reported_failure = true;
        }
    }

    /// A message on a gRPC stream: an EDS response on ours is applied and
    /// answered (ACK or NACK).
    pub fn on_stream_message(&mut self, host: &mut impl RootHost, token: u32, bytes: &[u8]) {
        if self.stream != Some(token) {
            return;
        }
        let outcome = self.subscription.on_response(bytes);
        if let Some(update) = outcome.update {
            let clusters = update.clusters.len();
            let mut membership = self.shared.membership.borrow_mut();
            membership.replace(update.version.clone(), update.clusters);
            self.shared
                .metrics
                .borrow_mut()
                .record_members(host, &membership);
            host.log(
                Level::Debug,
                &format!("EDS version {} with {clusters} clusters", update.version),
            );
        }
        if let Some(error) = outcome.rejected {
            host.log(Level::Warn, &format!("rejected EDS update: {error}"));
        }
        if let Err(status) = host.send_stream(token, &outcome.reply) {
            host.log(Level::Warn, &format!("sending xDS ACK failed: {status}"));
        }
    }

    /// A stream closed; ours is reopened on a later tick.
    pub fn on_stream_close(&mut self, host: &mut impl RootHost, token: u32, status: u32) {
        if self.stream == Some(token) {
            self.stream = None;
            // Members stay as they were: keep routing while the server is away.
            self.report_failure(
                host,
                &format!("xDS stream closed with gRPC status {status}"),
            );
        }
    }

    /// A forced refresh answered. Its effect arrives over EDS; only a
    /// failure is news.
    pub fn on_call_response(&mut self, host: &mut impl RootHost, status: u32, message: &str) {
        if status != 0 && !self.reported_refresh_failure {
            host.log(
                Level::Warn,
                &format!(
                    "forced refresh failed with gRPC status {status} ({message}); is the xDS server xds-shim?"
                ),
            );
            self.reported_refresh_failure = true;
        }
    }
}

#[cfg(test)]
mod tests;
