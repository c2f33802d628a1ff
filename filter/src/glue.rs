//! The only module that calls the proxy-wasm host. It calls `hostcalls`
//! directly (not the SDK traits' helpers, which unwrap) so that a host error
//! is logged instead of trapping the VM.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext, StreamContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType, Status};

use crate::absolute_form::{AbsoluteFormRewriter, Fed, ABSOLUTE_FORM_ROOT_ID};
use crate::config::{Affinity, Config};
use crate::cookie::{self, Keyring};
use crate::members::Membership;
use crate::request::{self, Pending, RequestHost, ResponseHost, Verdict, Worker};
use crate::stats::Counter;
use crate::xds::{self, EdsSubscription, RefreshRequest};

use prost::Message;

/// How often the root context checks its xDS stream and reopens it.
const TICK: Duration = Duration::from_secs(1);
/// How long a forced refresh may take before Envoy gives up on it.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(2);
/// Shared by all workers (VMs) of one Envoy: the random cookie key.
const SHARED_COOKIE_KEY: &str = "dnslb.cookie_key.v1";

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    std::panic::set_hook(Box::new(|info| {
        log(LogLevel::Critical, &format!("panic: {info}"));
    }));
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

fn log(level: LogLevel, message: &str) {
    // Nothing sensible is left to do if logging itself fails.
    let _ = hostcalls::log(level, message);
}

fn now_unix() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

/// Envoy metric ids for the counters, defined once per VM. Requests add to
/// `pending` in the VM; the root context flushes it to Envoy on every tick,
/// which saves a host call per counter per request (stats lag by ≤ 1 s).
#[derive(Default)]
struct Metrics {
    counters: Vec<Option<u32>>,
    pending: Vec<u64>,
    /// `dnslb.upstream_members.<cluster>` gauges, by cluster name.
    members: HashMap<String, u32>,
}

impl Metrics {
    fn define() -> Self {
        let counters = Counter::ALL
            .iter()
            .map(|c| {
                hostcalls::define_metric(MetricType::Counter, &format!("dnslb.{}", c.name())).ok()
            })
            .collect();
        Self {
            counters,
            pending: vec![0; Counter::ALL.len()],
            members: HashMap::new(),
        }
    }

    fn count(&mut self, counter: Counter) {
        if let Some(n) = self.pending.get_mut(counter.index()) {
            *n += 1;
        }
    }

    /// Hands the counts gathered since the last tick to Envoy.
    fn flush(&mut self) {
        for (n, id) in self.pending.iter_mut().zip(&self.counters) {
            if *n > 0 {
                if let Some(id) = id {
                    let _ = hostcalls::increment_metric(*id, i64::try_from(*n).unwrap_or(i64::MAX));
                }
                *n = 0;
            }
        }
    }

    /// Members per upstream; upstreams that left are set to 0.
    fn record_members(&mut self, membership: &Membership) {
        let mut seen = Vec::new();
        for (cluster, members) in membership.clusters() {
            let id = match self.members.get(cluster) {
                Some(id) => Some(*id),
                None => {
                    // Stat names take dots as separators: keep the name flat.
                    let flat: String = cluster
                        .chars()
                        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                        .collect();
                    let id = hostcalls::define_metric(
                        MetricType::Gauge,
                        &format!("dnslb.upstream_members.{flat}"),
                    )
                    .ok();
                    if let Some(id) = id {
                        self.members.insert(cluster.to_string(), id);
                    }
                    id
                }
            };
            if let Some(id) = id {
                let _ = hostcalls::record_metric(id, members.members().len() as u64);
            }
            seen.push(cluster.to_string());
        }
        for (cluster, id) in &self.members {
            if !seen.contains(cluster) {
                let _ = hostcalls::record_metric(*id, 0);
            }
        }
    }
}

/// Which plugin a root context serves; Envoy tells it by the `root_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The HTTP filter: routing and picks, fed by the EDS stream.
    Http,
    /// The network filter that rewrites absolute-form proxy requests.
    AbsoluteForm,
}

/// What the root context shares with its HTTP contexts (same worker VM).
struct Shared {
    config: Config,
    cookie_key: Keyring,
    membership: RefCell<Membership>,
    metrics: RefCell<Metrics>,
    /// Clusters to re-resolve, sent by the root context on its next tick
    /// (at most once a second per cluster and worker).
    refreshes: RefCell<BTreeSet<String>>,
    /// Unix seconds as of the last tick: cookie expiries need no finer
    /// clock, and reading it saves a host call per cookie.
    clock: Cell<u64>,
}

impl Shared {
    fn now(&self) -> u64 {
        match self.clock.get() {
            0 => now_unix(),
            t => t,
        }
    }
}

/// One per plugin and VM, so one per Envoy worker (plus one on the main thread).
struct Root {
    role: Role,
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
            role: Role::Http,
            subscription: EdsSubscription::new(config.node_id.clone()),
            shared: Rc::new(Shared {
                config,
                // Never used: requests arrive only after `on_configure`,
                // which sets the real keys when cookie affinity is on.
                cookie_key: Keyring::new(&[], &[]),
                membership: RefCell::default(),
                metrics: RefCell::default(),
                refreshes: RefCell::default(),
                clock: Cell::default(),
            }),
            stream: None,
            reported_failure: false,
            reported_refresh_failure: false,
        }
    }
}

/// This Envoy's cookie key: the first worker draws it, the others read it.
fn shared_cookie_key() -> Result<Vec<u8>, String> {
    for _ in 0..4 {
        let (current, cas) = hostcalls::get_shared_data(SHARED_COOKIE_KEY)
            .map_err(|s| format!("reading shared data failed: {s:?}"))?;
        if let Some(key) = current.filter(|k| k.len() == 32) {
            return Ok(key);
        }
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| format!("no randomness for the cookie key: {e}"))?;
        match hostcalls::set_shared_data(SHARED_COOKIE_KEY, Some(&key), cas) {
            Ok(()) => return Ok(key.to_vec()),
            // Another worker won the race: read its key.
            Err(Status::CasMismatch) => continue,
            Err(s) => return Err(format!("storing the cookie key failed: {s:?}")),
        }
    }
    Err("the shared cookie key kept changing".into())
}

impl Root {
    /// Opens the ADS stream if it is not open. Done from `on_tick` because
    /// during `on_configure` the `dnslb_xds` cluster may not exist yet.
    fn ensure_stream(&mut self) {
        if self.stream.is_some() {
            return;
        }
        let cluster = &self.shared.config.xds_cluster;
        match hostcalls::open_grpc_stream(cluster, xds::ADS_SERVICE, xds::ADS_METHOD, vec![]) {
            Ok(token) => {
                let request = self.subscription.initial_request();
                match hostcalls::send_grpc_stream_message(token, Some(&request), false) {
                    Ok(()) => self.stream = Some(token),
                    Err(status) => {
                        self.report_failure(&format!(
                            "sending the EDS subscription failed: {status:?}"
                        ));
                        let _ = hostcalls::cancel_grpc_stream(token);
                    }
                }
            }
            Err(status) => self.report_failure(&format!(
                "cannot open xDS stream to cluster {cluster:?}: {status:?}"
            )),
        }
    }

    /// Sends the queued forced refreshes. Calls go from the root context so
    /// that they outlive the request that asked for them.
    fn send_refreshes(&mut self) {
        let clusters = std::mem::take(&mut *self.shared.refreshes.borrow_mut());
        for cluster in clusters {
            let message = RefreshRequest {
                cluster: cluster.clone(),
            }
            .encode_to_vec();
            let sent = hostcalls::dispatch_grpc_call(
                &self.shared.config.xds_cluster,
                xds::REFRESH_SERVICE,
                xds::REFRESH_METHOD,
                vec![],
                Some(&message),
                REFRESH_TIMEOUT,
            );
            match sent {
                Ok(_) => self
                    .shared
                    .metrics
                    .borrow_mut()
                    .count(Counter::ForcedRefreshes),
                Err(status) => log(
                    LogLevel::Warn,
                    &format!("forced refresh of {cluster} not sent: {status:?}"),
                ),
            }
        }
    }

    fn report_failure(&mut self, message: &str) {
        if !self.reported_failure {
            log(
                LogLevel::Warn,
                &format!("{message}; retrying every {}s", TICK.as_secs()),
            );
            self.reported_failure = true;
        }
    }
}

impl Context for Root {
    fn on_grpc_stream_message(&mut self, token: u32, size: usize) {
        if self.stream != Some(token) {
            return;
        }
        let bytes = match hostcalls::get_buffer(BufferType::GrpcReceiveBuffer, 0, size) {
            Ok(b) => b.unwrap_or_default(),
            Err(status) => {
                log(
                    LogLevel::Warn,
                    &format!("reading xDS message failed: {status:?}"),
                );
                return;
            }
        };
        let outcome = self.subscription.on_response(&bytes);
        if let Some(update) = outcome.update {
            let clusters = update.clusters.len();
            let mut membership = self.shared.membership.borrow_mut();
            membership.replace(update.version.clone(), update.clusters);
            self.shared.metrics.borrow_mut().record_members(&membership);
            log(
                LogLevel::Debug,
                &format!("EDS version {} with {clusters} clusters", update.version),
            );
        }
        if let Some(error) = outcome.rejected {
            log(LogLevel::Warn, &format!("rejected EDS update: {error}"));
        }
        if let Err(status) = hostcalls::send_grpc_stream_message(token, Some(&outcome.reply), false)
        {
            log(
                LogLevel::Warn,
                &format!("sending xDS ACK failed: {status:?}"),
            );
        }
    }

    fn on_grpc_call_response(&mut self, _token: u32, status: u32, _size: usize) {
        // The refresh's effect arrives over EDS; only a failure is news.
        if status != 0 && !self.reported_refresh_failure {
            let (_, message) = hostcalls::get_grpc_status().unwrap_or((status, None));
            log(
                LogLevel::Warn,
                &format!(
                    "forced refresh failed with gRPC status {status} ({}); is the xDS server xds-shim?",
                    message.unwrap_or_default()
                ),
            );
            self.reported_refresh_failure = true;
        }
    }

    fn on_grpc_stream_close(&mut self, token: u32, status: u32) {
        if self.stream == Some(token) {
            self.stream = None;
            // Members stay as they were: keep routing while the server is away.
            self.report_failure(&format!("xDS stream closed with gRPC status {status}"));
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, size: usize) -> bool {
        let root_id = hostcalls::get_property(vec!["plugin_root_id"])
            .ok()
            .flatten();
        if root_id.as_deref() == Some(ABSOLUTE_FORM_ROOT_ID.as_bytes()) {
            // Stateless per connection: no configuration, no xDS stream.
            self.role = Role::AbsoluteForm;
            return true;
        }
        let raw = if size == 0 {
            None
        } else {
            hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size)
                .ok()
                .flatten()
        };
        let config = match Config::from_bytes(raw.as_deref()) {
            Ok(config) => config,
            Err(e) => {
                log(LogLevel::Error, &e.to_string());
                return false;
            }
        };
        let cookie_key = match &config.affinity {
            Affinity::Cookie(c) => match &c.secret {
                Some(secret) => Keyring::new(secret, &c.previous_secrets),
                None => match shared_cookie_key() {
                    Ok(key) => Keyring::new(&key, &[]),
                    Err(e) => {
                        log(LogLevel::Error, &e);
                        return false;
                    }
                },
            },
            // Never used: without cookie affinity no cookie is sealed or opened.
            _ => Keyring::new(&[], &[]),
        };
        self.subscription = EdsSubscription::new(config.node_id.clone());
        self.shared = Rc::new(Shared {
            config,
            cookie_key,
            membership: RefCell::default(),
            metrics: RefCell::new(Metrics::define()),
            refreshes: RefCell::default(),
            clock: Cell::new(now_unix()),
        });
        if let Err(status) = hostcalls::set_tick_period(TICK) {
            log(
                LogLevel::Error,
                &format!("cannot set tick period: {status:?}"),
            );
            return false;
        }
        true
    }

    fn on_tick(&mut self) {
        self.shared.clock.set(now_unix());
        self.send_refreshes();
        self.shared.metrics.borrow_mut().flush();
        if self.stream.is_none() {
            self.ensure_stream();
            if self.stream.is_some() && self.reported_failure {
                log(LogLevel::Info, "xDS stream reopened");
                self.reported_failure = false;
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request {
            shared: Rc::clone(&self.shared),
            pending: Pending::default(),
        }))
    }

    fn create_stream_context(&self, _context_id: u32) -> Option<Box<dyn StreamContext>> {
        Some(Box::new(ProxyConnection::default()))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(match self.role {
            Role::Http => ContextType::HttpContext,
            Role::AbsoluteForm => ContextType::StreamContext,
        })
    }
}

struct Request {
    shared: Rc<Shared>,
    pending: Pending,
}

impl Context for Request {}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let shared = &self.shared;
        let mut host = HostRequest { shared };
        let verdict = Worker {
            config: &shared.config,
            membership: &mut shared.membership.borrow_mut(),
            cookie_key: &shared.cookie_key,
        }
        .on_request_headers(&mut host);
        match verdict {
            Verdict::Continue(pending) => {
                self.pending = pending;
                Action::Continue
            }
            Verdict::Stop => Action::Pause,
        }
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        request::on_response_headers(
            &mut HostResponse {
                shared: &self.shared,
            },
            &self.pending,
            &self.shared.config,
            &self.shared.cookie_key,
        );
        Action::Continue
    }
}

fn property_text(path: Vec<&str>) -> Option<String> {
    hostcalls::get_property(path)
        .ok()
        .flatten()
        .and_then(|b| String::from_utf8(b).ok())
}

/// The current request, through the host.
struct HostRequest<'a> {
    shared: &'a Shared,
}

impl RequestHost for HostRequest<'_> {
    fn headers(&self) -> Vec<(String, Vec<u8>)> {
        hostcalls::get_map_bytes(MapType::HttpRequestHeaders).unwrap_or_default()
    }

    /// The host call behind the SDK's `get_http_request_header`, as bytes:
    /// that helper unwraps, and panics on a value that is not UTF-8.
    fn header(&self, name: &str) -> Option<Vec<u8>> {
        hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name)
            .ok()
            .flatten()
    }

    fn set_header(&mut self, name: &str, value: &str) {
        if let Err(status) =
            hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value))
        {
            log(
                LogLevel::Warn,
                &format!("setting header {name} failed: {status:?}"),
            );
        }
    }

    fn remove_header(&mut self, name: &str) {
        let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, None);
    }

    fn respond(&mut self, status: u32, content_type: &str, body: &str) {
        let headers = vec![("content-type", content_type)];
        if let Err(e) = hostcalls::send_http_response(status, headers, Some(body.as_bytes())) {
            log(LogLevel::Warn, &format!("local reply failed: {e:?}"));
        }
    }

    fn source_ip(&self) -> Option<IpAddr> {
        let text = property_text(vec!["source", "address"])?;
        text.parse::<SocketAddr>()
            .map(|a| a.ip())
            .or_else(|_| text.parse::<IpAddr>())
            .ok()
    }

    fn now(&self) -> u64 {
        self.shared.now()
    }

    fn count(&mut self, counter: Counter) {
        self.shared.metrics.borrow_mut().count(counter);
    }
}

/// The current response, through the host.
struct HostResponse<'a> {
    shared: &'a Shared,
}

impl ResponseHost for HostResponse<'_> {
    fn upstream_address(&self) -> Option<String> {
        property_text(vec!["upstream", "address"])
    }

    fn add_header(&mut self, name: &str, value: &str) {
        if let Err(status) = hostcalls::add_map_value(MapType::HttpResponseHeaders, name, value) {
            log(
                LogLevel::Warn,
                &format!("adding header {name} failed: {status:?}"),
            );
        }
    }

    fn now(&self) -> u64 {
        self.shared.now()
    }

    fn request_refresh(&mut self, cluster: &str) {
        let mut refreshes = self.shared.refreshes.borrow_mut();
        if !refreshes.contains(cluster) {
            refreshes.insert(cluster.to_string());
        }
    }

    fn cookie_nonce(&mut self) -> Option<[u8; cookie::NONCE_LEN]> {
        let mut nonce = [0u8; cookie::NONCE_LEN];
        match getrandom::fill(&mut nonce) {
            Ok(()) => Some(nonce),
            Err(e) => {
                log(
                    LogLevel::Error,
                    &format!("no randomness for a cookie nonce, no cookie set: {e}"),
                );
                None
            }
        }
    }
}

/// One downstream connection through the absolute-form network filter.
#[derive(Default)]
struct ProxyConnection {
    rewriter: AbsoluteFormRewriter,
}

impl Context for ProxyConnection {}

impl StreamContext for ProxyConnection {
    fn on_downstream_data(&mut self, size: usize, end_of_stream: bool) -> Action {
        let data = match hostcalls::get_buffer(BufferType::DownstreamData, 0, size) {
            Ok(data) => data.unwrap_or_default(),
            Err(status) => {
                log(
                    LogLevel::Warn,
                    &format!("reading downstream data failed: {status:?}"),
                );
                return Action::Continue;
            }
        };
        if let Fed::Replaced(bytes) = self.rewriter.feed(&data, end_of_stream) {
            if let Err(status) = hostcalls::set_buffer(BufferType::DownstreamData, 0, size, &bytes)
            {
                log(
                    LogLevel::Warn,
                    &format!("rewriting downstream data failed: {status:?}"),
                );
            }
        }
        Action::Continue
    }
}
