//! The YAML `--config` file: a serde DTO (unknown keys rejected) checked key by key, so an
//! error names the key and the value. Every global key has a flag of the same name
//! (`max_stale` ↔ `--max-stale`); flags and `DNSLB_*` variables win over the file.
//!
//! ```yaml
//! upstreams:
//!   - dns+backend.test:8080              # a spec alone
//!   - spec: srv+_http._tcp.api.test      # or a spec with its own settings
//!     interval: 10s
//!     connect_timeout: 2s
//!     circuit_breakers: {max_connections: 100, max_pending_requests: 100,
//!                        max_requests: 1000,
//!                        retry_budget: {budget_percent: 50, min_retry_concurrency: 32}}
//!     outlier_detection: {consecutive_local_origin_failures: 3, base_ejection_time: 10s,
//!                         max_ejection_percent: 50, interval: 1s}
//!     lb_policy: maglev                  # round_robin (default), maglev or ring_hash
//!     health_check: {path: /healthz, interval: 5s, timeout: 1s,
//!                    healthy_threshold: 2, unhealthy_threshold: 3}
//!   - spec: https://dns+api.internal:8443  # TLS settings: https:// upstreams only
//!     tls:
//!       ca_file: /etc/ssl/internal-ca.pem  # instead of the global ca_file
//!       sni: api.internal                  # SNI and the DNS SAN required (default: the name)
//! nameservers: [127.0.0.1:53]
//! interval: 5s
//! drain: 30s
//! ca_file: /etc/ssl/certs/ca-certificates.crt
//! xds_tls_cert: /etc/dnslb/xds.pem         # the xDS port over TLS (read by the shim)
//! xds_tls_key: /etc/dnslb/xds.key
//! xds_tls_client_ca: /etc/dnslb/envoy-ca.pem  # and client certificates required
//! ```
//!
//! The `xds_tls_*` files are the shim's own and are read and checked at start. The
//! upstreams' CA paths are opened by Envoy, not by the shim (they often run in different containers),
//! so the shim does not check that they exist: Envoy rejects a cluster whose file it cannot
//! read, and the shim logs that NACK with Envoy's message and shows it in `/status`.

use std::net::IpAddr;
use std::sync::Arc;

use serde::Deserialize;

use crate::duration::parse_duration;

mod cluster;

use crate::model::settings::{CircuitBreakers, LbPolicy, TlsSettings, UpstreamSettings};
use crate::model::upstream::{normalize_host, HostError, Upstream};
pub use cluster::{HealthCheckDto, OutlierDto};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Each a spec string or an [`UpstreamDto`] mapping; checked in [`upstreams`] so errors
    /// name the entry.
    #[serde(default)]
    pub upstreams: Vec<serde_norway::Value>,
    pub nameservers: Option<Vec<String>>,
    pub interval: Option<String>,
    pub drain: Option<String>,
    pub empty_after: Option<u32>,
    pub max_stale: Option<String>,
    pub max_records: Option<u32>,
    pub ipv6: Option<bool>,
    pub dns_timeout: Option<String>,
    pub max_in_flight: Option<u32>,
    pub xds_listen: Option<String>,
    pub admin_listen: Option<String>,
    pub log_format: Option<String>,
    pub ca_file: Option<String>,
    pub ttl_floor: Option<String>,
    pub xds_tls_cert: Option<String>,
    pub xds_tls_key: Option<String>,
    pub xds_tls_client_ca: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamDto {
    pub spec: String,
    pub interval: Option<Text>,
    pub connect_timeout: Option<Text>,
    pub circuit_breakers: Option<CircuitBreakers>,
    pub outlier_detection: Option<OutlierDto>,
    pub lb_policy: Option<LbPolicy>,
    pub health_check: Option<HealthCheckDto>,
    /// A [`TlsDto`], checked on its own so errors name `upstreams[i].tls`.
    pub tls: Option<serde_norway::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with ca_file and/or sni")]
pub struct TlsDto {
    pub ca_file: Option<String>,
    pub sni: Option<String>,
}

/// A scalar taken as text, so `interval: 5` reaches the duration parser (and its message
/// about the missing unit) instead of failing as "not a string".
#[derive(Debug)]
pub struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Text(
            match serde_norway::Value::deserialize(deserializer)? {
                serde_norway::Value::String(s) => s,
                serde_norway::Value::Number(n) => n.to_string(),
                serde_norway::Value::Bool(b) => b.to_string(),
                other => format!("{other:?}"),
            },
        ))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    #[error("cannot read config file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("config file {path}: {reason}")]
    Syntax { path: String, reason: String },
    #[error("config key {key}: invalid value {value:?}: {why}")]
    Invalid {
        key: String,
        value: String,
        why: String,
    },
}

impl FileError {
    pub fn invalid(key: impl Into<String>, value: &str, why: impl ToString) -> Self {
        FileError::Invalid {
            key: key.into(),
            value: value.to_string(),
            why: why.to_string(),
        }
    }
}

/// Reads and parses the file. Not UTF-8, unknown keys and wrong types are reported with
/// serde's location (line, column, key).
pub fn load(path: &str) -> Result<FileConfig, FileError> {
    let bytes = std::fs::read(path).map_err(|e| FileError::Read {
        path: path.to_string(),
        reason: e.to_string(),
    })?;
    let text = String::from_utf8(bytes).map_err(|e| FileError::Syntax {
        path: path.to_string(),
        reason: format!("not UTF-8 (byte {})", e.utf8_error().valid_up_to()),
    })?;
    parse(&text).map_err(|reason| FileError::Syntax {
        path: path.to_string(),
        reason,
    })
}

pub fn parse(text: &str) -> Result<FileConfig, String> {
    if text.trim().is_empty() {
        return Ok(FileConfig::default());
    }
    serde_norway::from_str(text).map_err(|e| e.to_string())
}

/// The upstreams with their settings, each checked (`upstreams[i].key`).
pub fn upstreams(file: &FileConfig) -> Result<Vec<(Upstream, UpstreamSettings)>, FileError> {
    file.upstreams
        .iter()
        .enumerate()
        .map(|(i, entry)| match entry {
            serde_norway::Value::String(spec) => {
                Ok((parse_spec(i, spec)?, UpstreamSettings::default()))
            }
            mapping => {
                let dto: UpstreamDto = serde_norway::from_value(mapping.clone()).map_err(|e| {
                    FileError::invalid(format!("upstreams[{i}]"), &one_line(mapping), e)
                })?;
                let upstream = parse_spec(i, &dto.spec)?;
                let duration = |key: &str, value: &Option<Text>| {
                    value
                        .as_ref()
                        .map(|Text(v)| {
                            parse_duration(v).map_err(|e| {
                                FileError::invalid(format!("upstreams[{i}].{key}"), v, e)
                            })
                        })
                        .transpose()
                };
                let tls = match &dto.tls {
                    Some(tls) => tls_settings(i, &upstream, tls)?,
                    None => TlsSettings::default(),
                };
                Ok((
                    upstream,
                    UpstreamSettings {
                        interval: duration("interval", &dto.interval)?,
                        connect_timeout: duration("connect_timeout", &dto.connect_timeout)?,
                        circuit_breakers: match dto.circuit_breakers {
                            Some(limits) => Some(cluster::circuit_breakers(i, limits)?),
                            None => None,
                        },
                        outlier_detection: match &dto.outlier_detection {
                            Some(outlier) => Some(cluster::ejection(i, outlier)?),
                            None => None,
                        },
                        lb_policy: dto.lb_policy.unwrap_or_default(),
                        health_check: match &dto.health_check {
                            Some(check) => Some(cluster::health_check(i, check)?),
                            None => None,
                        },
                        tls,
                    },
                ))
            }
        })
        .collect()
}

/// `upstreams[i].tls`. Only an `https://` upstream has a TLS context to change: on a plain
/// one the settings would silently do nothing, so they are refused.
fn tls_settings(
    i: usize,
    upstream: &Upstream,
    value: &serde_norway::Value,
) -> Result<TlsSettings, FileError> {
    let key = format!("upstreams[{i}].tls");
    if !upstream.tls() {
        let why =
            format!("TLS settings need an https:// upstream; did you mean https://{upstream}?");
        return Err(FileError::invalid(key, &one_line(value), why));
    }
    let dto: TlsDto = serde_norway::from_value(value.clone())
        .map_err(|e| FileError::invalid(&key, &one_line(value), e))?;
    Ok(TlsSettings {
        ca_file: optional(&format!("{key}.ca_file"), dto.ca_file, parse_ca_file)?,
        sni: optional(&format!("{key}.sni"), dto.sni, parse_sni)?,
    })
}

/// An optional text setting through `parse`; errors name `key` and the value.
fn optional<E: ToString>(
    key: &str,
    value: Option<String>,
    parse: impl Fn(&str) -> Result<String, E>,
) -> Result<Option<Arc<str>>, FileError> {
    value
        .map(|v| {
            parse(&v)
                .map(Arc::from)
                .map_err(|e| FileError::invalid(key, &v, e))
        })
        .transpose()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("empty: name a PEM file of trusted roots")]
pub struct EmptyCaFile;

/// A CA path (global or per upstream) may be anything but empty. Existence is not
/// checked: Envoy opens it, on its own file system.
pub fn parse_ca_file(path: &str) -> Result<String, EmptyCaFile> {
    if path.is_empty() {
        return Err(EmptyCaFile);
    }
    Ok(path.to_string())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SniError {
    #[error("not a DNS name: {0}")]
    Host(#[from] HostError),
    #[error("an IP address cannot be sent as SNI (RFC 6066)")]
    Ip,
}

/// A host name, normalized as upstream hosts are (the certificate must name it too).
pub fn parse_sni(name: &str) -> Result<String, SniError> {
    if name.parse::<IpAddr>().is_ok() {
        return Err(SniError::Ip);
    }
    Ok(normalize_host(name)?)
}

/// A YAML value on one line, for error messages: `{ca_file: /x, sni: a}`.
fn one_line(value: &serde_norway::Value) -> String {
    use serde_norway::Value;
    let join = |items: Vec<String>| items.join(", ");
    match value {
        Value::Null => "~".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) if s.is_empty() => "''".to_string(),
        Value::String(s) => s.clone(),
        Value::Sequence(items) => format!("[{}]", join(items.iter().map(one_line).collect())),
        Value::Mapping(map) => {
            let entries = map
                .iter()
                .map(|(k, v)| format!("{}: {}", one_line(k), one_line(v)))
                .collect();
            format!("{{{}}}", join(entries))
        }
        Value::Tagged(tagged) => format!("{} {}", tagged.tag, one_line(&tagged.value)),
    }
}

fn parse_spec(i: usize, spec: &str) -> Result<Upstream, FileError> {
    spec.parse()
        .map_err(|e| FileError::invalid(format!("upstreams[{i}]"), spec, e))
}

#[cfg(test)]
mod tests;
