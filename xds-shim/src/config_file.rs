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
//!                        max_requests: 1000, max_retries: 3}
//! nameservers: [127.0.0.1:53]
//! interval: 5s
//! drain: 30s
//! ```

use std::time::Duration;

use serde::Deserialize;

use crate::duration::parse_duration;
use crate::upstream::Upstream;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Each a spec string or an [`UpstreamDto`] mapping; checked in [`upstreams`] so errors
    /// name the entry.
    #[serde(default)]
    pub upstreams: Vec<serde_yaml::Value>,
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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamDto {
    pub spec: String,
    pub interval: Option<Text>,
    pub connect_timeout: Option<Text>,
    pub circuit_breakers: Option<CircuitBreakers>,
}

/// A scalar taken as text, so `interval: 5` reaches the duration parser (and its message
/// about the missing unit) instead of failing as "not a string".
#[derive(Debug)]
pub struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Text(match serde_yaml::Value::deserialize(deserializer)? {
            serde_yaml::Value::String(s) => s,
            serde_yaml::Value::Number(n) => n.to_string(),
            serde_yaml::Value::Bool(b) => b.to_string(),
            other => format!("{other:?}"),
        }))
    }
}

/// Envoy's default-priority thresholds; unset ones keep Envoy's defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreakers {
    pub max_connections: Option<u32>,
    pub max_pending_requests: Option<u32>,
    pub max_requests: Option<u32>,
    pub max_retries: Option<u32>,
}

/// Settings one upstream may override.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct UpstreamSettings {
    /// Re-resolution interval for this upstream's name (default: the global one).
    pub interval: Option<Duration>,
    /// Envoy cluster connect timeout (default 1 s).
    pub connect_timeout: Option<Duration>,
    pub circuit_breakers: Option<CircuitBreakers>,
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
    serde_yaml::from_str(text).map_err(|e| e.to_string())
}

/// The upstreams with their settings, each checked (`upstreams[i].key`).
pub fn upstreams(file: &FileConfig) -> Result<Vec<(Upstream, UpstreamSettings)>, FileError> {
    file.upstreams
        .iter()
        .enumerate()
        .map(|(i, entry)| match entry {
            serde_yaml::Value::String(spec) => {
                Ok((parse_spec(i, spec)?, UpstreamSettings::default()))
            }
            mapping => {
                let dto: UpstreamDto = serde_yaml::from_value(mapping.clone()).map_err(|e| {
                    FileError::invalid(format!("upstreams[{i}]"), &format!("{mapping:?}"), e)
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
                Ok((
                    upstream,
                    UpstreamSettings {
                        interval: duration("interval", &dto.interval)?,
                        connect_timeout: duration("connect_timeout", &dto.connect_timeout)?,
                        circuit_breakers: dto.circuit_breakers,
                    },
                ))
            }
        })
        .collect()
}

fn parse_spec(i: usize, spec: &str) -> Result<Upstream, FileError> {
    spec.parse()
        .map_err(|e| FileError::invalid(format!("upstreams[{i}]"), spec, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_upstream_forms_and_settings() {
        let file = parse(
            "upstreams:\n  - dns+a.test:80\n  - spec: srv+_h._tcp.b.test\n    interval: 10s\n    \
             connect_timeout: 250ms\n    circuit_breakers: {max_connections: 7}\ninterval: 2s\n",
        )
        .unwrap();
        assert_eq!(file.interval.as_deref(), Some("2s"));
        let ups = upstreams(&file).unwrap();
        assert_eq!(ups[0].0.cluster_name(), "dns+a.test:80");
        assert_eq!(ups[0].1, UpstreamSettings::default());
        assert_eq!(ups[1].0.cluster_name(), "srv+_h._tcp.b.test");
        assert_eq!(ups[1].1.interval, Some(Duration::from_secs(10)));
        assert_eq!(ups[1].1.connect_timeout, Some(Duration::from_millis(250)));
        assert_eq!(ups[1].1.circuit_breakers.unwrap().max_connections, Some(7));
    }

    #[test]
    fn errors_name_key_and_value() {
        let err = parse("intervall: 5s\n").unwrap_err();
        assert!(err.contains("unknown field `intervall`"), "{err}");
        let file = parse("upstreams:\n  - spec: dns+a:80\n    colour: red\n").unwrap();
        let err = upstreams(&file).unwrap_err().to_string();
        assert!(
            err.contains("upstreams[0]") && err.contains("colour"),
            "{err}"
        );

        let file = parse("upstreams:\n  - spec: dns+a:80\n    interval: 5\n").unwrap();
        let err = upstreams(&file).unwrap_err().to_string();
        assert!(
            err.contains("upstreams[0].interval") && err.contains("\"5\""),
            "{err}"
        );
        let file = parse("upstreams: [dns+a:80, 'dns+b_c:80']\n").unwrap();
        let err = upstreams(&file).unwrap_err().to_string();
        assert!(
            err.contains("upstreams[1]") && err.contains("dns+b_c:80"),
            "{err}"
        );
    }

    #[test]
    fn empty_file_is_all_defaults() {
        let file = parse("  \n").unwrap();
        assert!(file.upstreams.is_empty() && file.interval.is_none());
    }
}
