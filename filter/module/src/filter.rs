//! The filter on one Envoy (its configuration, shared by every worker
//! thread) and on one stream. The per-request decisions are the filter
//! crate's, the same as in the wasm build; this binds them to a [`Stream`].

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use dnslb_filter::config::{Config, ConfigError as FilterConfigError, XdsTls};
use dnslb_filter::cookie::{self, Keyring};
use dnslb_filter::request::{self, Pending, RequestContext, RequestHost, ResponseHost, Verdict};
use dnslb_filter::root::{cookie_keyring, COOKIE_KEY_LEN};
use dnslb_filter::stats::Counter;
use thiserror::Error;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use crate::feed::Feed;
use crate::gauges::{self, MemberGauges, Notify, SetGauges};
use crate::log::{log, LogLevel};
use crate::xds_client::XdsClient;

/// One stream in Envoy, during one hook.
pub trait Stream {
    /// The first request header of that (lowercase) name.
    fn request_header(&self, name: &str) -> Option<Vec<u8>>;
    /// Every request header, in order.
    fn request_headers(&self) -> Vec<(String, Vec<u8>)>;
    /// The first request header of each name.
    fn request_headers_named<const N: usize>(&self, names: [&str; N]) -> [Option<Vec<u8>>; N] {
        names.map(|name| self.request_header(name))
    }
    fn set_request_header(&mut self, name: &str, value: &str) -> bool;
    fn remove_request_header(&mut self, name: &str) -> bool;
    fn add_response_header(&mut self, name: &str, value: &str) -> bool;
    /// Answers locally; the request goes no further.
    fn send_response(&mut self, status: u32, headers: &[(&str, &str)], body: &str);
    /// Sends the request to `host` (`ip:port`) when it is a member of the
    /// routed cluster; retries fall back to the cluster's load balancer.
    fn set_upstream_override_host(&mut self, host: &str) -> bool;
    /// Makes Envoy pick the route again: header changes alone do not.
    fn clear_route_cache(&mut self);
    /// `ip:port` of the downstream peer.
    fn source_address(&self) -> Option<String>;
    /// `ip:port` of the upstream host that answered.
    fn upstream_address(&self) -> Option<String>;
    fn increment_counter(&mut self, id: usize, by: u64);
}

/// Envoy's filter configuration while it is being created: metrics are
/// defined only then.
pub trait DefineMetrics {
    fn define_counter(&mut self, name: &str) -> Option<usize>;
    /// A gauge with one label.
    fn define_gauge(&mut self, name: &str, label: &str) -> Option<usize>;
    /// What wakes the main thread for [`FilterConfig::on_scheduled`].
    fn scheduler(&mut self) -> Option<Arc<dyn Notify>>;
}

/// What the hook tells Envoy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Continue,
    /// A local reply was sent.
    Stop,
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error(transparent)]
    Config(#[from] FilterConfigError),
    #[error("{0}")]
    CookieKey(String),
    #[error("cannot start the xDS client thread: {0}")]
    Thread(#[from] std::io::Error),
    #[error("xds_tls: cannot read {file}: {error}")]
    TlsFile { file: String, error: std::io::Error },
}

/// The filter configuration of one Envoy filter chain entry.
pub struct FilterConfig {
    config: Config,
    cookie_key: Keyring,
    /// Envoy's counter ids, by [`Counter::index`].
    counters: Vec<Option<usize>>,
    feed: Arc<Feed>,
    /// Dropping it stops the xDS thread.
    client: Option<XdsClient>,
    /// Set on the main thread after each update the xDS thread announces.
    member_gauges: Option<MemberGauges>,
    scheduler: Option<Arc<dyn Notify>>,
}

impl FilterConfig {
    /// Reads the configuration JSON (empty means `{}`), defines the
    /// counters, and starts the xDS client when `xds_address` is set.
    pub fn new(
        envoy: &mut impl DefineMetrics,
        _name: &[u8],
        raw: &[u8],
    ) -> Result<Self, ConfigError> {
        let config = Config::from_bytes((!raw.is_empty()).then_some(raw))?;
        let cookie_key =
            cookie_keyring(&config, process_cookie_key).map_err(ConfigError::CookieKey)?;
        let counters = Counter::ALL
            .iter()
            .map(|c| envoy.define_counter(&format!("dnslb.{}", c.name())))
            .collect();
        let feed = Arc::new(Feed::default());
        let member_gauges = envoy
            .define_gauge(gauges::NAME, gauges::LABEL)
            .map(MemberGauges::new);
        if member_gauges.is_none() {
            log(LogLevel::Warn, "cannot define the member gauge");
        }
        let scheduler = envoy.scheduler();
        let client = match config.xds_address {
            Some(addr) => Some(XdsClient::start(
                addr,
                config
                    .xds_tls
                    .as_ref()
                    .map(|t| tls_config(t, addr))
                    .transpose()?,
                config.node_id.clone(),
                Arc::clone(&feed),
                scheduler.clone(),
            )?),
            None => {
                log(
                    LogLevel::Info,
                    "no xds_address: running without membership (valid cookies are trusted)",
                );
                None
            }
        };
        Ok(Self {
            config,
            cookie_key,
            counters,
            feed,
            client,
            member_gauges,
            scheduler,
        })
    }

    /// On Envoy's main thread, after the xDS thread announced an update:
    /// the member gauges. The main thread keeps its own copy of the
    /// membership, like a worker.
    pub fn on_scheduled(&self, envoy: &mut impl SetGauges) {
        if let Some(gauges) = &self.member_gauges {
            self.feed
                .with_membership(|membership| gauges.record(membership, envoy));
        }
    }

    /// Envoy is destroying the configuration: no more scheduled events.
    pub fn close(&self) {
        if let Some(scheduler) = &self.scheduler {
            scheduler.close();
        }
    }

    fn count(&self, stream: &mut impl Stream, counter: Counter) {
        if let Some(Some(id)) = self.counters.get(counter.index()) {
            stream.increment_counter(*id, 1);
        }
    }
}

// Envoy shares one configuration among its worker threads.
const _: fn() = || {
    fn shared_by_threads<T: Send + Sync>() {}
    shared_by_threads::<FilterConfig>();
};

/// The xDS client's TLS from the configuration's files, read now so that a
/// missing file refuses the configuration.
fn tls_config(tls: &XdsTls, server: SocketAddr) -> Result<ClientTlsConfig, ConfigError> {
    let read = |file: &str| {
        std::fs::read(file).map_err(|error| ConfigError::TlsFile {
            file: file.into(),
            error,
        })
    };
    let name = tls
        .server_name
        .clone()
        .unwrap_or_else(|| server.ip().to_string());
    let mut config = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(&tls.ca_file)?))
        .domain_name(name);
    if let Some((cert, key)) = &tls.client_identity {
        config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
    }
    Ok(config)
}

/// This Envoy's random cookie key: one per process, so every worker and
/// every configuration reload seals and opens with the same key.
fn process_cookie_key() -> Result<Vec<u8>, String> {
    static KEY: OnceLock<Result<[u8; COOKIE_KEY_LEN], String>> = OnceLock::new();
    KEY.get_or_init(|| {
        let mut key = [0u8; COOKIE_KEY_LEN];
        getrandom::fill(&mut key)
            .map(|()| key)
            .map_err(|e| format!("no randomness for the cookie key: {e}"))
    })
    .clone()
    .map(|key| key.to_vec())
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One stream's filter.
pub struct Filter {
    config: Arc<FilterConfig>,
    pending: Pending,
}

impl Filter {
    pub fn new(config: Arc<FilterConfig>) -> Self {
        Self {
            config,
            pending: Pending::default(),
        }
    }

    pub fn on_request_headers(&mut self, stream: &mut impl Stream) -> Next {
        let shared = &*self.config;
        let mut host = Host {
            shared,
            stream,
            rewritten: false,
        };
        let verdict = shared.feed.with_membership(|membership| {
            RequestContext {
                config: &shared.config,
                membership,
                cookie_key: &shared.cookie_key,
            }
            .on_request_headers(&mut host)
        });
        match verdict {
            Verdict::Continue(pending) => {
                // Filter routing rewrote `:authority` and set the cluster
                // header the route matches on.
                if host.rewritten {
                    host.stream.clear_route_cache();
                }
                self.pending = pending;
                Next::Continue
            }
            Verdict::Stop => Next::Stop,
        }
    }

    pub fn on_response_headers(&mut self, stream: &mut impl Stream) {
        let shared = &*self.config;
        request::on_response_headers(
            &mut Host {
                shared,
                stream,
                rewritten: false,
            },
            &self.pending,
            &shared.config,
            &shared.cookie_key,
        );
    }
}

/// The filter crate's host traits over one stream.
struct Host<'a, S> {
    shared: &'a FilterConfig,
    stream: &'a mut S,
    /// A request header was set or removed: the route must be picked again.
    rewritten: bool,
}

impl<S: Stream> RequestHost for Host<'_, S> {
    fn headers(&self) -> Vec<(String, Vec<u8>)> {
        self.stream.request_headers()
    }

    fn header(&self, name: &str) -> Option<Vec<u8>> {
        self.stream.request_header(name)
    }

    fn headers_named<const N: usize>(&self, names: [&str; N]) -> [Option<Vec<u8>>; N] {
        self.stream.request_headers_named(names)
    }

    fn set_header(&mut self, name: &str, value: &str) {
        self.rewritten = true;
        if !self.stream.set_request_header(name, value) {
            log(LogLevel::Warn, &format!("setting header {name} failed"));
        }
    }

    fn remove_header(&mut self, name: &str) {
        self.rewritten = true;
        self.stream.remove_request_header(name);
    }

    /// Envoy's override host directly, which saves a header; the header is
    /// the fallback (read when the host is picked: the route stays).
    fn override_host(&mut self, header: &str, address: &str) {
        if !self.stream.set_upstream_override_host(address)
            && !self.stream.set_request_header(header, address)
        {
            log(LogLevel::Warn, &format!("setting header {header} failed"));
        }
    }

    fn respond(&mut self, status: u32, content_type: &str, body: &str) {
        self.stream
            .send_response(status, &[("content-type", content_type)], body);
    }

    fn source_ip(&self) -> Option<IpAddr> {
        let text = self.stream.source_address()?;
        text.parse::<SocketAddr>()
            .map(|a| a.ip())
            .or_else(|_| text.parse::<IpAddr>())
            .ok()
    }

    fn now(&self) -> u64 {
        now_unix()
    }

    fn count(&mut self, counter: Counter) {
        self.shared.count(self.stream, counter);
    }
}

impl<S: Stream> ResponseHost for Host<'_, S> {
    fn upstream_address(&self) -> Option<String> {
        self.stream.upstream_address()
    }

    fn add_header(&mut self, name: &str, value: &str) {
        if !self.stream.add_response_header(name, value) {
            log(LogLevel::Warn, &format!("adding header {name} failed"));
        }
    }

    fn now(&self) -> u64 {
        now_unix()
    }

    fn request_refresh(&mut self, cluster: &str) {
        if let Some(client) = &self.shared.client {
            if client.refresh(cluster) {
                self.shared.count(self.stream, Counter::ForcedRefreshes);
            }
        }
    }

    fn cookie_nonce(&mut self) -> Option<[u8; cookie::NONCE_LEN]> {
        cookie::fresh_nonce(getrandom::fill)
            .map_err(|why| log(LogLevel::Error, &why))
            .ok()
    }
}

#[cfg(test)]
mod tests;
