//! The only module that calls the proxy-wasm host. It calls `hostcalls`
//! directly (not the SDK traits' helpers, which unwrap) so that a host error
//! is logged instead of trapping the VM.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext, StreamContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType};

use crate::absolute_form::{AbsoluteFormRewriter, Fed, ABSOLUTE_FORM_ROOT_ID};
use crate::config::Config;
use crate::members::Membership;
use crate::request::{self, RequestHeaders, Verdict};
use crate::xds::{self, EdsSubscription};

/// How often the root context checks its xDS stream and reopens it.
const TICK: Duration = Duration::from_secs(1);

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

/// Which plugin a root context serves; Envoy tells it by the `root_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The HTTP filter: routing and picks, fed by the EDS stream.
    Http,
    /// The network filter that rewrites absolute-form proxy requests.
    AbsoluteForm,
}

/// One per plugin and VM, so one per Envoy worker (plus one on the main thread).
struct Root {
    role: Role,
    config: Rc<Config>,
    membership: Rc<RefCell<Membership>>,
    subscription: EdsSubscription,
    stream: Option<u32>,
    /// Log stream failures once per outage, not on every tick.
    reported_failure: bool,
}

impl Default for Root {
    fn default() -> Self {
        let config = Config::default();
        Self {
            role: Role::Http,
            subscription: EdsSubscription::new(config.node_id.clone()),
            config: Rc::new(config),
            membership: Rc::default(),
            stream: None,
            reported_failure: false,
        }
    }
}

impl Root {
    /// Opens the ADS stream if it is not open. Done from `on_tick` because
    /// during `on_configure` the `dnslb_xds` cluster may not exist yet.
    fn ensure_stream(&mut self) {
        if self.stream.is_some() {
            return;
        }
        match hostcalls::open_grpc_stream(
            &self.config.xds_cluster,
            xds::ADS_SERVICE,
            xds::ADS_METHOD,
            vec![],
        ) {
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
                "cannot open xDS stream to cluster {:?}: {status:?}",
                self.config.xds_cluster
            )),
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
            Ok(Some(b)) => b,
            Ok(None) => Vec::new(),
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
            self.membership
                .borrow_mut()
                .replace(update.version.clone(), update.clusters);
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
        match Config::from_bytes(raw.as_deref()) {
            Ok(config) => {
                self.subscription = EdsSubscription::new(config.node_id.clone());
                self.config = Rc::new(config);
            }
            Err(e) => {
                log(LogLevel::Error, &format!("{e}"));
                return false;
            }
        }
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
            config: Rc::clone(&self.config),
            membership: Rc::clone(&self.membership),
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
    config: Rc<Config>,
    membership: Rc<RefCell<Membership>>,
}

impl Context for Request {}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let mut host = HostHeaders;
        let verdict =
            request::on_request_headers(&mut host, &mut self.membership.borrow_mut(), &self.config);
        match verdict {
            Verdict::Continue => Action::Continue,
            Verdict::Stop => Action::Pause,
        }
    }
}

/// The request headers of the current HTTP context, through the host.
struct HostHeaders;

impl RequestHeaders for HostHeaders {
    fn names(&self) -> Vec<String> {
        hostcalls::get_map_bytes(MapType::HttpRequestHeaders)
            .map(|pairs| pairs.into_iter().map(|(k, _)| k).collect())
            .unwrap_or_default()
    }

    fn get(&self, name: &str) -> Option<Vec<u8>> {
        hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name)
            .ok()
            .flatten()
    }

    fn set(&mut self, name: &str, value: &str) {
        if let Err(status) =
            hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value))
        {
            log(
                LogLevel::Warn,
                &format!("setting header {name} failed: {status:?}"),
            );
        }
    }

    fn remove(&mut self, name: &str) {
        let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, None);
    }

    fn respond(&mut self, status: u32, body: &str) {
        let headers = vec![("content-type", "text/plain; charset=utf-8")];
        if let Err(e) = hostcalls::send_http_response(status, headers, Some(body.as_bytes())) {
            log(LogLevel::Warn, &format!("local reply failed: {e:?}"));
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
