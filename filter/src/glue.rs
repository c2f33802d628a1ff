//! The only module that calls the proxy-wasm host. It calls `hostcalls`
//! directly (not the SDK traits' helpers, which unwrap) so that a host error
//! is logged instead of trapping the VM.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType};

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

/// One per VM, so one per Envoy worker (plus one on the main thread).
struct Root {
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

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
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
