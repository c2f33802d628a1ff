//! The TLS target of an `https://` upstream: what its Envoy cluster verifies.

use crate::model::settings::TlsSettings;
use crate::model::upstream::Upstream;

/// Trusted roots when none is configured: Debian's system bundle.
pub const SYSTEM_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// What a TLS upstream's cluster verifies: the roots, and the name sent as SNI that the
/// certificate must carry as a DNS SAN. Serialized for `xds-shim check`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TlsTarget {
    pub ca_file: String,
    pub sni: String,
}

impl TlsTarget {
    /// The effective target of `upstream`, `None` unless it is `https://`: its own `tls:`
    /// settings, else the global `ca_file` and its DNS name (for `srv+`, the SRV name).
    pub fn of(upstream: &Upstream, own: &TlsSettings, ca_file: &str) -> Option<Self> {
        upstream.tls().then(|| TlsTarget {
            ca_file: own.ca_file.as_deref().unwrap_or(ca_file).to_string(),
            sni: own.sni.as_deref().unwrap_or(upstream.host()).to_string(),
        })
    }
}
