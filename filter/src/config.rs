//! Filter configuration: a serde DTO (unknown fields denied) compiled into
//! the runtime [`Config`]. The empty configuration `{}` is valid.

use serde::Deserialize;
use thiserror::Error;

/// Default Envoy cluster that reaches the EDS server (xds-shim).
pub const DEFAULT_XDS_CLUSTER: &str = "dnslb_xds";
/// Default number of members listed after the pick, for retries.
pub const DEFAULT_FAILOVER: u32 = 2;
/// Default xDS node id the filter presents.
pub const DEFAULT_NODE_ID: &str = "dnslb-filter";
/// More alternates than this only lengthens a header Envoy cuts anyway.
const MAX_FAILOVER: u32 = 16;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigDto {
    /// Envoy cluster (HTTP/2) reaching the xDS server that serves EDS.
    xds_cluster: Option<String>,
    /// xDS node id this filter presents.
    node_id: Option<String>,
    /// How many further members follow the pick in `x-dnslb-endpoint`.
    failover: Option<u32>,
}

/// The runtime configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub xds_cluster: String,
    pub node_id: String,
    pub failover: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            xds_cluster: DEFAULT_XDS_CLUSTER.into(),
            node_id: DEFAULT_NODE_ID.into(),
            failover: DEFAULT_FAILOVER as usize,
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("configuration is not UTF-8")]
    NotUtf8,
    #[error("invalid configuration: {0}")]
    Json(String),
    #[error("invalid {field}: {value:?} ({why})")]
    Value {
        field: &'static str,
        value: String,
        why: &'static str,
    },
}

impl Config {
    /// Parses the plugin configuration; absent or blank means `{}`.
    pub fn from_bytes(bytes: Option<&[u8]>) -> Result<Self, ConfigError> {
        let text =
            std::str::from_utf8(bytes.unwrap_or_default()).map_err(|_| ConfigError::NotUtf8)?;
        let dto: ConfigDto = if text.trim().is_empty() {
            ConfigDto::default()
        } else {
            serde_json::from_str(text).map_err(|e| ConfigError::Json(e.to_string()))?
        };
        Self::try_from(dto)
    }
}

impl TryFrom<ConfigDto> for Config {
    type Error = ConfigError;

    fn try_from(dto: ConfigDto) -> Result<Self, Self::Error> {
        let xds_cluster = dto
            .xds_cluster
            .unwrap_or_else(|| DEFAULT_XDS_CLUSTER.into());
        if xds_cluster.trim().is_empty() {
            return Err(ConfigError::Value {
                field: "xds_cluster",
                value: xds_cluster,
                why: "must name an Envoy cluster",
            });
        }
        let node_id = dto.node_id.unwrap_or_else(|| DEFAULT_NODE_ID.into());
        let failover = dto.failover.unwrap_or(DEFAULT_FAILOVER);
        if failover > MAX_FAILOVER {
            return Err(ConfigError::Value {
                field: "failover",
                value: failover.to_string(),
                why: "at most 16",
            });
        }
        Ok(Config {
            xds_cluster,
            node_id,
            failover: failover as usize,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_gives_defaults() {
        for raw in [None, Some(&b""[..]), Some(&b"{}"[..]), Some(&b"  "[..])] {
            let c = Config::from_bytes(raw).unwrap();
            assert_eq!(c, Config::default());
            assert_eq!(c.xds_cluster, "dnslb_xds");
            assert_eq!(c.failover, 2);
        }
    }

    #[test]
    fn settings_are_read() {
        let c = Config::from_bytes(Some(
            br#"{"xds_cluster":"shim","failover":0,"node_id":"edge-1"}"#,
        ))
        .unwrap();
        assert_eq!(c.xds_cluster, "shim");
        assert_eq!(c.failover, 0);
        assert_eq!(c.node_id, "edge-1");
    }

    #[test]
    fn bad_config_names_the_problem() {
        let e = Config::from_bytes(Some(br#"{"retries": 3}"#))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `retries`"), "{e}");
        let e = Config::from_bytes(Some(br#"{"failover": 99}"#))
            .unwrap_err()
            .to_string();
        assert!(e.contains("failover") && e.contains("99"), "{e}");
        let e = Config::from_bytes(Some(br#"{"xds_cluster": ""}"#))
            .unwrap_err()
            .to_string();
        assert!(e.contains("xds_cluster"), "{e}");
        assert_eq!(Config::from_bytes(Some(&[0xff])), Err(ConfigError::NotUtf8));
        assert!(Config::from_bytes(Some(b"{")).is_err());
    }
}
