//! The validated runtime configuration. Flags ([`cli`]), `DNSLB_*` variables and the YAML
//! file ([`file`](mod@file)) compile into this; nothing downstream parses strings. [`reload`] rereads
//! them on SIGHUP.

pub mod cli;
pub mod file;
pub mod reload;

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

use crate::config::file::FileError;
use crate::discovery::reconfigure::Wanted;
use crate::discovery::refresh::Timing;
use crate::discovery::resolve::Settings;
use crate::discovery::Policy;
use crate::duration::human;
use crate::logging::LogFormat;
use crate::model::settings::{CircuitBreakers, Ejection, HealthCheck, LbPolicy};
use crate::model::tls::TlsTarget;
use crate::model::upstream::Configured;
use crate::xds::server_tls::{EffectiveXdsTls, XdsTls, XdsTlsError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Distinct upstreams with their settings, in the order first given.
    pub upstreams: Vec<Configured>,
    /// Empty: use the system resolver configuration.
    pub nameservers: Vec<SocketAddr>,
    pub interval: Duration,
    pub xds_listen: SocketAddr,
    /// `None`: the xDS port speaks plaintext HTTP/2.
    pub xds_tls: Option<XdsTls>,
    pub admin_listen: SocketAddr,
    /// Draining, confirmation of empty answers, maximum staleness.
    pub policy: Policy,
    /// Query timeout, IPv6, concurrency.
    pub resolver: Settings,
    pub log_format: LogFormat,
    /// Trusted roots for `https://` upstreams without their own `tls.ca_file`.
    pub ca_file: String,
    /// TTL-aware refresh with this floor; `None`: fixed intervals.
    pub ttl_floor: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("--xds-listen and --admin-listen must differ (both are {0})")]
    SameListenAddress(SocketAddr),
    #[error("no upstreams: give --upstream or `upstreams:` in --config")]
    NoUpstreams,
    #[error("upstream {0} is given both with and without https://")]
    MixedTls(String),
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    XdsTls(#[from] XdsTlsError),
}

impl Config {
    pub fn validate(self) -> Result<Self, ConfigError> {
        if self.xds_listen == self.admin_listen {
            return Err(ConfigError::SameListenAddress(self.xds_listen));
        }
        if self.upstreams.is_empty() {
            return Err(ConfigError::NoUpstreams);
        }
        // Both spellings would be one Envoy cluster (the name has no scheme).
        let mut seen = std::collections::BTreeSet::new();
        for Configured { upstream, .. } in &self.upstreams {
            if !seen.insert(upstream.cluster_name()) {
                return Err(ConfigError::MixedTls(upstream.cluster_name()));
            }
        }
        Ok(self)
    }

    /// What discovery is to serve: each upstream with its settings, the drain policy and
    /// the CA file.
    pub fn wanted(&self) -> Wanted {
        Wanted {
            upstreams: self.upstreams.clone(),
            policy: self.policy,
            ca_file: self.ca_file.clone(),
        }
    }

    /// How often names are resolved.
    pub fn timing(&self) -> Timing {
        Timing {
            interval: self.interval,
            ttl_floor: self.ttl_floor,
        }
    }

    /// The effective configuration as YAML in the `--config` file's own syntax, for
    /// `xds-shim check`.
    pub fn to_yaml(&self) -> String {
        let upstreams = self
            .upstreams
            .iter()
            .map(
                |Configured {
                     upstream: u,
                     settings: s,
                 }| {
                    EffectiveUpstream {
                        spec: u.spec(),
                        interval: human(s.interval.unwrap_or(self.interval)),
                        connect_timeout: human(
                            s.connect_timeout
                                .unwrap_or(crate::xds::resources::DEFAULT_CONNECT_TIMEOUT),
                        ),
                        circuit_breakers: crate::xds::resources::effective_limits(
                            s.circuit_breakers,
                        ),
                        outlier_detection: s.outlier_detection.unwrap_or(Ejection::DEFAULT),
                        lb_policy: s.lb_policy,
                        health_check: s.health_check.clone(),
                        tls: TlsTarget::of(u, &s.tls, &self.ca_file),
                    }
                },
            )
            .collect();
        let effective = Effective {
            upstreams,
            nameservers: self.nameservers.iter().map(ToString::to_string).collect(),
            interval: human(self.interval),
            drain: human(self.policy.drain),
            empty_after: self.policy.empty_after,
            max_stale: self.policy.max_stale.map(human),
            max_records: self.policy.max_records,
            ipv6: self.resolver.ipv6,
            dns_timeout: human(self.resolver.timeout),
            max_in_flight: self.resolver.max_in_flight,
            xds_listen: self.xds_listen.to_string(),
            xds_tls: self.xds_tls.as_ref().map(XdsTls::effective),
            admin_listen: self.admin_listen.to_string(),
            ca_file: self.ca_file.clone(),
            ttl_floor: self.ttl_floor.map(human),
            log_format: match self.log_format {
                LogFormat::Text => "text",
                LogFormat::Json => "json",
            },
        };
        serde_norway::to_string(&effective).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

#[derive(Serialize)]
struct Effective {
    upstreams: Vec<EffectiveUpstream>,
    nameservers: Vec<String>,
    interval: String,
    drain: String,
    empty_after: u32,
    max_stale: Option<String>,
    max_records: usize,
    ipv6: bool,
    dns_timeout: String,
    max_in_flight: usize,
    xds_listen: String,
    /// `null`: plaintext.
    xds_tls: Option<EffectiveXdsTls>,
    admin_listen: String,
    ca_file: String,
    ttl_floor: Option<String>,
    log_format: &'static str,
}

#[derive(Serialize)]
struct EffectiveUpstream {
    spec: String,
    interval: String,
    connect_timeout: String,
    /// `https://` upstreams only: the effective roots and SNI, defaults filled in.
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<TlsTarget>,
    circuit_breakers: CircuitBreakers,
    outlier_detection: Ejection,
    lb_policy: LbPolicy,
    #[serde(skip_serializing_if = "Option::is_none")]
    health_check: Option<HealthCheck>,
}
