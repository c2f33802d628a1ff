//! The validated runtime configuration. Flags (and later a YAML file) compile into this;
//! nothing downstream parses strings.

use std::net::SocketAddr;
use std::time::Duration;

use crate::discovery::Policy;
use crate::resolve::Settings;
use crate::upstream::Upstream;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Distinct upstreams, in the order first given.
    pub upstreams: Vec<Upstream>,
    /// Empty: use the system resolver configuration.
    pub nameservers: Vec<SocketAddr>,
    pub interval: Duration,
    pub xds_listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// Draining, confirmation of empty answers, maximum staleness.
    pub policy: Policy,
    /// Query timeout, IPv6, concurrency.
    pub resolver: Settings,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("--xds-listen and --admin-listen must differ (both are {0})")]
    SameListenAddress(SocketAddr),
}

impl Config {
    pub fn validate(self) -> Result<Self, ConfigError> {
        if self.xds_listen == self.admin_listen {
            return Err(ConfigError::SameListenAddress(self.xds_listen));
        }
        Ok(self)
    }
}
