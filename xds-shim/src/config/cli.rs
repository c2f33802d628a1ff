//! Command-line flags. Every flag also reads a `DNSLB_*` environment variable; values are
//! checked as they are parsed, so clap reports the flag and the value and exits with 2.
//! A `--config` file fills in what neither a flag nor a variable set.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::bootstrap::{ClientCert, XdsTlsClient};
use crate::config::file::{self, FileConfig, FileError};
use crate::config::{Config, ConfigError};
use crate::discovery::resolve::Settings;
use crate::discovery::Policy;
use crate::duration::{parse_duration, DurationError};
use crate::logging::LogFormat;
use crate::model::upstream::Configured;
use crate::model::upstream::Upstream;
use crate::xds::server_tls::XdsTls;

#[derive(Debug, Parser)]
#[command(
    name = "xds-shim",
    version = crate::VERSION,
    about = "xDS control plane that turns dns+ upstreams into Envoy EDS clusters"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// YAML file with any of the settings below (same names, `_` for `-`) and per-upstream
    /// settings. Flags and DNSLB_* variables win over it.
    #[arg(global = true, long, value_name = "FILE", env = "DNSLB_CONFIG")]
    pub config: Option<String>,

    /// Upstream to discover, e.g. dns+backend.test:8080 or srv+_http._tcp.api.test.
    /// Repeatable; the env var takes a comma-separated list. Added to the file's.
    #[arg(
        global = true,
        long = "upstream",
        value_name = "SPEC",
        env = "DNSLB_UPSTREAM",
        value_delimiter = ','
    )]
    pub upstreams: Vec<Upstream>,

    /// DNS server to query, IP:PORT (a bare IP means port 53). Repeatable. Default: the
    /// system resolver (/etc/resolv.conf, its search list, and /etc/hosts).
    #[arg(
        global = true,
        long = "nameserver",
        value_name = "IP:PORT",
        env = "DNSLB_NAMESERVER",
        value_delimiter = ',',
        value_parser = parse_nameserver
    )]
    pub nameservers: Vec<SocketAddr>,

    /// How often to re-resolve every upstream: 500ms, 5s, 1m, 1h.
    #[arg(
        global = true,
        long,
        value_name = "DUR",
        env = "DNSLB_INTERVAL",
        default_value = "5s",
        value_parser = parse_interval
    )]
    pub interval: Duration,

    /// Address for the ADS gRPC server (plaintext HTTP/2 unless --xds-tls-cert is given).
    #[arg(
        global = true,
        long,
        value_name = "ADDR",
        env = "DNSLB_XDS_LISTEN",
        default_value = "127.0.0.1:18000"
    )]
    pub xds_listen: SocketAddr,

    /// Serve the xDS port (ADS, CDS, EDS, Refresh) over TLS with this certificate chain
    /// (PEM). Needs --xds-tls-key.
    #[arg(global = true, long, value_name = "FILE", env = "DNSLB_XDS_TLS_CERT")]
    pub xds_tls_cert: Option<String>,

    /// The private key (PEM) of --xds-tls-cert.
    #[arg(global = true, long, value_name = "FILE", env = "DNSLB_XDS_TLS_KEY")]
    pub xds_tls_key: Option<String>,

    /// Also require xDS clients to present a certificate signed by this CA (PEM): mutual
    /// TLS. Needs --xds-tls-cert and --xds-tls-key.
    #[arg(
        global = true,
        long,
        value_name = "FILE",
        env = "DNSLB_XDS_TLS_CLIENT_CA"
    )]
    pub xds_tls_client_ca: Option<String>,

    /// Address for the admin HTTP server (/healthz, /status.json).
    #[arg(
        global = true,
        long,
        value_name = "ADDR",
        env = "DNSLB_ADMIN_LISTEN",
        default_value = "127.0.0.1:18001"
    )]
    pub admin_listen: SocketAddr,

    /// How long an address gone from DNS is still served, as DRAINING (0s: drop at once).
    #[arg(
        global = true,
        long,
        value_name = "DUR",
        env = "DNSLB_DRAIN",
        default_value = "30s",
        value_parser = parse_drain
    )]
    pub drain: Duration,

    /// NXDOMAIN or empty answers in a row before an upstream's members are dropped.
    #[arg(
        global = true,
        long,
        value_name = "N",
        env = "DNSLB_EMPTY_AFTER",
        default_value_t = 3,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub empty_after: u32,

    /// How long SERVFAIL/REFUSED/timeouts may keep the last good members (default: for
    /// ever).
    #[arg(global = true, long, value_name = "DUR", env = "DNSLB_MAX_STALE", value_parser = parse_interval)]
    pub max_stale: Option<Duration>,

    /// Most endpoints one DNS answer may yield; beyond, the cut is logged and shown.
    #[arg(global = true, long, value_name = "N", env = "DNSLB_MAX_RECORDS", default_value_t = 1_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_records: u32,

    /// Resolve AAAA records as well as A (off by default, as in VictoriaMetrics).
    #[arg(global = true, long, env = "DNSLB_IPV6")]
    pub ipv6: bool,

    /// Timeout of one DNS query attempt (two attempts per question).
    #[arg(global = true, long, value_name = "DUR", env = "DNSLB_DNS_TIMEOUT", default_value = "2s",
          value_parser = parse_interval)]
    pub dns_timeout: Duration,

    /// DNS queries in flight at once.
    #[arg(global = true, long, value_name = "N", env = "DNSLB_MAX_IN_FLIGHT", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_in_flight: u32,

    /// TTL-aware refresh: re-resolve each name when its records' TTL is up, but not more
    /// often than this floor (e.g. 1s). Default: off, every --interval.
    #[arg(global = true, long, value_name = "DUR", env = "DNSLB_TTL_FLOOR", value_parser = parse_interval)]
    pub ttl_floor: Option<Duration>,

    /// CA bundle (PEM) that https:// upstreams' certificates are verified against, unless
    /// the upstream has its own `tls.ca_file` in --config. Read by Envoy, not by the shim.
    #[arg(global = true, long, value_name = "FILE", env = "DNSLB_CA_FILE",
          default_value = crate::model::tls::SYSTEM_CA_FILE, value_parser = file::parse_ca_file)]
    pub ca_file: String,

    /// Log line format; the level comes from RUST_LOG (default info).
    #[arg(global = true, long, value_enum, env = "DNSLB_LOG_FORMAT", default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the configuration (every flag below, its DNSLB_* variable, --config) and
    /// print the effective one. Flags go before or after `check`.
    Check,
    /// Print the recommended Envoy bootstrap (YAML) for an Envoy next to this shim: Envoy
    /// routes, rewrites, balances and retries natively; the dnslb filter runs only where it
    /// adds something (cookie affinity, its status path).
    EnvoyBootstrap(Box<BootstrapArgs>),
    /// GET URL (http:// only) and exit 0 on a 2xx answer, else 1 with one line saying why:
    /// a health check for images with no shell (the shim's /readyz, Envoy's /ready).
    Probe(ProbeArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct ProbeArgs {
    /// `http://HOST[:PORT][/PATH]`.
    #[arg(value_name = "URL")]
    pub url: crate::admin::probe::ProbeUrl,
    /// Send an empty POST instead of a GET (Envoy's admin `/drain_listeners`, from a
    /// preStop hook).
    #[arg(long)]
    pub post: bool,
    /// How long connecting, sending and reading may each take.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_interval)]
    pub timeout: Duration,
}

#[derive(Debug, Clone, clap::Args)]
pub struct BootstrapArgs {
    /// Envoy's HTTP listener.
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:10000")]
    pub listen: SocketAddr,
    /// Envoy's admin interface.
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:9901")]
    pub admin: SocketAddr,
    /// Where Envoy reaches this shim's xDS port (--xds-listen).
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:18000")]
    pub xds: SocketAddr,
    /// The dnslb filter (.wasm) as Envoy sees the path. Needed for cookie affinity, the
    /// status path and --absolute-form; without it round robin and hash affinity run with
    /// no filter at all.
    #[arg(long, value_name = "FILE", conflicts_with = "module")]
    pub wasm: Option<String>,
    /// The dnslb filter as a native Envoy dynamic module (libdnslb_module.so, built for
    /// this Envoy's ABI), instead of --wasm; loaded by this path as Envoy sees it.
    #[arg(long, value_name = "FILE")]
    pub module: Option<String>,
    /// The dnslb filter configuration (JSON, as in the README): affinity, retries, aliases.
    #[arg(long, value_name = "JSON", default_value = "{}")]
    pub filter_config: String,
    /// Add the network filter for clients that use Envoy as their HTTP proxy
    /// (`GET http://dns+NAME:PORT/...`). Needs --wasm (the network filter is wasm only).
    #[arg(long)]
    pub absolute_form: bool,
    /// Reach the shim over TLS (its --xds-tls-cert), verified against this CA (PEM, as
    /// Envoy sees the path). The shim's certificate must carry the --xds IP as an IP SAN,
    /// or the --xds-sni name as a DNS SAN.
    #[arg(long, value_name = "FILE", value_parser = file::parse_ca_file)]
    pub xds_ca: Option<String>,
    /// Send NAME as SNI to the shim and require it as a DNS SAN of the shim's certificate,
    /// instead of the --xds IP. Needs --xds-ca.
    #[arg(long, value_name = "NAME", requires = "xds_ca", value_parser = parse_xds_sni)]
    pub xds_sni: Option<String>,
    /// Certificate (PEM) Envoy presents to a shim that requires one (--xds-tls-client-ca).
    /// Needs --xds-ca and --xds-client-key.
    #[arg(long, value_name = "FILE", requires_all = ["xds_ca", "xds_client_key"],
          value_parser = parse_file)]
    pub xds_client_cert: Option<String>,
    /// The private key (PEM) of --xds-client-cert.
    #[arg(long, value_name = "FILE", requires = "xds_client_cert", value_parser = parse_file)]
    pub xds_client_key: Option<String>,
}

impl BootstrapArgs {
    /// The TLS settings for the `dnslb_xds` cluster; clap has checked that they go together.
    pub fn xds_tls(&self) -> Option<XdsTlsClient> {
        let client_cert = match (&self.xds_client_cert, &self.xds_client_key) {
            (Some(cert), Some(key)) => Some(ClientCert {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        };
        self.xds_ca.as_ref().map(|ca| XdsTlsClient {
            ca: ca.clone(),
            sni: self.xds_sni.clone(),
            client_cert,
        })
    }
}

impl Cli {
    /// The configuration from flags and variables alone.
    pub fn to_config(&self) -> Result<Config, ConfigError> {
        self.to_config_with(&FileConfig::default(), |_| true)
    }

    /// Flags and variables, with `file` filling in every setting for which `explicit(id)`
    /// (the clap argument id) is false, i.e. that came from a default.
    pub fn to_config_with(
        &self,
        file: &FileConfig,
        explicit: impl Fn(&str) -> bool,
    ) -> Result<Config, ConfigError> {
        let pick = |id: &'static str| (id, explicit(id));
        let duration = |v: &str| parse_duration(v).map_err(|e| e.to_string());
        let addr = |v: &str| v.parse::<SocketAddr>().map_err(|e| e.to_string());
        let interval = from_file(pick("interval"), self.interval, &file.interval, duration)?;
        let ttl_floor = from_file(pick("ttl_floor"), self.ttl_floor, &file.ttl_floor, |v| {
            duration(v).map(Some)
        })?;
        let ca_file = from_file(pick("ca_file"), self.ca_file.clone(), &file.ca_file, |v| {
            file::parse_ca_file(v).map_err(|e| e.to_string())
        })?;
        let drain = from_file(pick("drain"), self.drain, &file.drain, |v| {
            parse_drain(v).map_err(|e| e.to_string())
        })?;
        let dns_timeout = from_file(
            pick("dns_timeout"),
            self.dns_timeout,
            &file.dns_timeout,
            duration,
        )?;
        let max_stale = from_file(pick("max_stale"), self.max_stale, &file.max_stale, |v| {
            duration(v).map(Some)
        })?;
        let xds_listen = from_file(pick("xds_listen"), self.xds_listen, &file.xds_listen, addr)?;
        let path = |v: &str| Ok(Some(v.to_string()));
        let xds_tls_cert = from_file(
            pick("xds_tls_cert"),
            self.xds_tls_cert.clone(),
            &file.xds_tls_cert,
            path,
        )?;
        let xds_tls_key = from_file(
            pick("xds_tls_key"),
            self.xds_tls_key.clone(),
            &file.xds_tls_key,
            path,
        )?;
        let xds_tls_client_ca = from_file(
            pick("xds_tls_client_ca"),
            self.xds_tls_client_ca.clone(),
            &file.xds_tls_client_ca,
            path,
        )?;
        let xds_tls = XdsTls::load(
            xds_tls_cert.as_deref(),
            xds_tls_key.as_deref(),
            xds_tls_client_ca.as_deref(),
        )?;
        let admin_listen = from_file(
            pick("admin_listen"),
            self.admin_listen,
            &file.admin_listen,
            addr,
        )?;
        let log_format =
            from_file(
                pick("log_format"),
                self.log_format,
                &file.log_format,
                |v| match v {
                    "text" => Ok(LogFormat::Text),
                    "json" => Ok(LogFormat::Json),
                    _ => Err("expected text or json".to_string()),
                },
            )?;
        let number =
            |id: &str, from_cli: u32, from_file: Option<u32>| -> Result<u32, ConfigError> {
                match from_file {
                    Some(0) if !explicit(id) => {
                        Err(FileError::invalid(id, "0", "must be at least 1").into())
                    }
                    Some(n) if !explicit(id) => Ok(n),
                    _ => Ok(from_cli),
                }
            };
        let empty_after = number("empty_after", self.empty_after, file.empty_after)?;
        let max_records = number("max_records", self.max_records, file.max_records)?;
        let max_in_flight = number("max_in_flight", self.max_in_flight, file.max_in_flight)?;
        let ipv6 = match file.ipv6 {
            Some(on) if !explicit("ipv6") => on,
            _ => self.ipv6,
        };
        let nameservers = match &file.nameservers {
            Some(list) if !explicit("nameservers") => list
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    parse_nameserver(v)
                        .map_err(|e| FileError::invalid(format!("nameservers[{i}]"), v, e))
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => self.nameservers.clone(),
        };

        let mut upstreams: Vec<Configured> = Vec::new();
        let from_file = file::upstreams(file)?;
        let from_flags = self
            .upstreams
            .iter()
            .map(|u| (u.clone(), Default::default()));
        for (upstream, settings) in from_file.into_iter().chain(from_flags) {
            if upstreams.iter().any(|c| c.upstream == upstream) {
                continue;
            }
            upstreams.push(Configured { upstream, settings });
        }
        Config {
            upstreams,
            nameservers,
            interval,
            xds_listen,
            xds_tls,
            admin_listen,
            policy: Policy {
                drain,
                empty_after,
                max_stale,
                max_records: max_records as usize,
            },
            resolver: Settings {
                timeout: dns_timeout,
                ipv6,
                max_in_flight: max_in_flight as usize,
            },
            log_format,
            ca_file,
            ttl_floor,
        }
        .validate()
    }
}

/// The file's value for a setting no flag or variable set (`explicit` false), else the
/// command line's (or the default).
fn from_file<T>(
    (key, explicit): (&str, bool),
    from_cli: T,
    value: &Option<String>,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<T, FileError> {
    match value {
        Some(value) if !explicit => parse(value).map_err(|why| FileError::invalid(key, value, why)),
        _ => Ok(from_cli),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected IP:PORT, e.g. 127.0.0.1:53 or [::1]:53")]
pub struct NameserverError;

fn parse_nameserver(text: &str) -> Result<SocketAddr, NameserverError> {
    let addr = match text.parse::<SocketAddr>() {
        Ok(addr) => addr,
        Err(_) => SocketAddr::new(text.parse::<IpAddr>().map_err(|_| NameserverError)?, 53),
    };
    if addr.port() == 0 {
        return Err(NameserverError);
    }
    Ok(addr)
}

/// The name the shim's certificate carries, normalized as upstream hosts are.
fn parse_xds_sni(text: &str) -> Result<String, file::SniError> {
    file::parse_sni(text)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("empty: name a file")]
pub struct EmptyPath;

fn parse_file(text: &str) -> Result<String, EmptyPath> {
    if text.is_empty() {
        return Err(EmptyPath);
    }
    Ok(text.to_string())
}

fn parse_interval(text: &str) -> Result<Duration, DurationError> {
    parse_duration(text)
}

/// As an interval, but zero is meaningful (no draining).
fn parse_drain(text: &str) -> Result<Duration, DurationError> {
    match parse_duration(text) {
        Err(DurationError::Zero(_)) => Ok(Duration::ZERO),
        other => other,
    }
}

#[cfg(test)]
mod tests;
