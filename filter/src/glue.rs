//! The only module that calls the proxy-wasm host. It calls `hostcalls`
//! directly (not the SDK traits' helpers, which unwrap) so that a host error
//! is logged instead of trapping the VM.

use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext, StreamContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType, Status};

use crate::absolute_form::{AbsoluteFormRewriter, Fed, ABSOLUTE_FORM_ROOT_ID};
use crate::cookie;
use crate::request::{self, Pending, RequestContext, RequestHost, ResponseHost, Verdict};
use crate::root::{self, Level, MetricKind, RootHost, Shared, SharedDataError, TICK};
use crate::stats::Counter;

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

/// Which plugin a root context serves; Envoy tells it by the `root_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The HTTP filter: routing and picks, fed by the EDS stream.
    Http,
    /// The network filter that rewrites absolute-form proxy requests.
    AbsoluteForm,
}

/// The proxy-wasm host as the root context's logic sees it.
struct WasmHost;

fn status_text(status: Status) -> String {
    format!("{status:?}")
}

impl RootHost for WasmHost {
    fn log(&self, level: Level, message: &str) {
        log(
            match level {
                Level::Debug => LogLevel::Debug,
                Level::Info => LogLevel::Info,
                Level::Warn => LogLevel::Warn,
                Level::Error => LogLevel::Error,
            },
            message,
        );
    }

    fn now(&self) -> u64 {
        now_unix()
    }

    fn open_stream(&mut self, cluster: &str, service: &str, method: &str) -> Result<u32, String> {
        hostcalls::open_grpc_stream(cluster, service, method, vec![]).map_err(status_text)
    }

    fn send_stream(&mut self, token: u32, message: &[u8]) -> Result<(), String> {
        hostcalls::send_grpc_stream_message(token, Some(message), false).map_err(status_text)
    }

    fn cancel_stream(&mut self, token: u32) {
        let _ = hostcalls::cancel_grpc_stream(token);
    }

    fn call(
        &mut self,
        cluster: &str,
        service: &str,
        method: &str,
        message: &[u8],
        timeout: Duration,
    ) -> Result<(), String> {
        hostcalls::dispatch_grpc_call(cluster, service, method, vec![], Some(message), timeout)
            .map(|_| ())
            .map_err(status_text)
    }

    fn define_metric(&mut self, kind: MetricKind, name: &str) -> Option<u32> {
        let kind = match kind {
            MetricKind::Counter => MetricType::Counter,
            MetricKind::Gauge => MetricType::Gauge,
        };
        hostcalls::define_metric(kind, name).ok()
    }

    fn increment_metric(&mut self, id: u32, by: u64) {
        let _ = hostcalls::increment_metric(id, i64::try_from(by).unwrap_or(i64::MAX));
    }

    fn record_metric(&mut self, id: u32, value: u64) {
        let _ = hostcalls::record_metric(id, value);
    }

    fn shared_data(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), String> {
        hostcalls::get_shared_data(key).map_err(status_text)
    }

    fn set_shared_data(
        &mut self,
        key: &str,
        value: &[u8],
        cas: Option<u32>,
    ) -> Result<(), SharedDataError> {
        hostcalls::set_shared_data(key, Some(value), cas).map_err(|s| match s {
            Status::CasMismatch => SharedDataError::CasMismatch,
            s => SharedDataError::Failed(status_text(s)),
        })
    }

    fn random(&mut self, bytes: &mut [u8]) -> Result<(), String> {
        getrandom::fill(bytes).map_err(|e| e.to_string())
    }
}

/// One per plugin and VM, so one per Envoy worker (plus one on the main thread).
struct Root {
    role: Role,
    core: root::Root,
}

impl Default for Root {
    fn default() -> Self {
        Self {
            role: Role::Http,
            core: root::Root::default(),
        }
    }
}

impl Context for Root {
    fn on_grpc_stream_message(&mut self, token: u32, size: usize) {
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
        self.core.on_stream_message(&mut WasmHost, token, &bytes);
    }

    fn on_grpc_call_response(&mut self, _token: u32, status: u32, _size: usize) {
        let message = if status == 0 {
            None
        } else {
            hostcalls::get_grpc_status().ok().and_then(|(_, m)| m)
        };
        self.core
            .on_call_response(&mut WasmHost, status, &message.unwrap_or_default());
    }

    fn on_grpc_stream_close(&mut self, token: u32, status: u32) {
        self.core.on_stream_close(&mut WasmHost, token, status);
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
        if !self.core.configure(&mut WasmHost, raw.as_deref()) {
            return false;
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
        self.core.tick(&mut WasmHost);
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request {
            shared: Rc::clone(self.core.shared()),
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
        let verdict = RequestContext {
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

    /// One trip out of the VM for the whole map, rather than one per name.
    fn headers_named<const N: usize>(&self, names: [&str; N]) -> [Option<Vec<u8>>; N] {
        let mut all = self.headers();
        // The first of a repeated name, as the single read gives.
        names.map(|name| {
            let (_, value) = all.iter_mut().find(|(n, _)| n == name)?;
            Some(std::mem::take(value))
        })
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
        self.shared.count(counter);
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
        self.shared.request_refresh(cluster);
    }

    fn cookie_nonce(&mut self) -> Option<[u8; cookie::NONCE_LEN]> {
        cookie::fresh_nonce(getrandom::fill)
            .map_err(|why| log(LogLevel::Error, &why))
            .ok()
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
