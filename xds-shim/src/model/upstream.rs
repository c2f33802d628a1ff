//! Upstream specs as written by operators (`dns+HOST:PORT`), parsed and normalized.
//!
//! The normalized spec doubles as the Envoy cluster name: the filter derives the cluster
//! from the request authority, so both sides must agree on one canonical spelling.

use std::fmt;
use std::str::FromStr;

use crate::model::settings::UpstreamSettings;

/// A validated upstream. `tls` marks an `https://` prefix: Envoy connects with TLS, SNI =
/// the DNS name, the certificate verified against it.
/// An upstream with its own settings: what the configuration gives and discovery serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Configured {
    pub upstream: Upstream,
    pub settings: UpstreamSettings,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Upstream {
    /// `dns+HOST:PORT`: every A record of HOST, each on PORT.
    Dns { host: String, port: u16, tls: bool },
    /// `srv+NAME`: every SRV record of NAME, each target's addresses on the record's port.
    Srv { name: String, tls: bool },
}

impl Upstream {
    /// The Envoy cluster name: the normalized spec without any transport scheme.
    pub fn cluster_name(&self) -> String {
        self.to_string()
    }

    /// The DNS name this upstream resolves (A for `dns+`, SRV for `srv+`).
    pub fn host(&self) -> &str {
        match self {
            Upstream::Dns { host, .. } => host,
            Upstream::Srv { name, .. } => name,
        }
    }

    /// Given as `https://...`.
    pub fn tls(&self) -> bool {
        match self {
            Upstream::Dns { tls, .. } | Upstream::Srv { tls, .. } => *tls,
        }
    }

    /// The spec as written back: `https://` prefix for TLS upstreams.
    pub fn spec(&self) -> String {
        if self.tls() {
            format!("https://{self}")
        } else {
            self.to_string()
        }
    }
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Upstream::Dns { host, port, .. } => write!(f, "dns+{host}:{port}"),
            Upstream::Srv { name, .. } => write!(f, "srv+{name}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("upstream {spec:?}: {what} is not supported (only dns+HOST:PORT and srv+NAME, optionally after https://)")]
    Unsupported { spec: String, what: &'static str },
    #[error("upstream {spec:?}: expected dns+HOST:PORT or srv+NAME")]
    UnknownScheme { spec: String },
    #[error("upstream {spec:?}: missing :PORT (expected dns+HOST:PORT)")]
    MissingPort { spec: String },
    #[error("upstream {spec:?}: port must be a number from 1 to 65535")]
    BadPort { spec: String },
    #[error("upstream {spec:?}: host {host:?} is not a valid DNS name: {why}")]
    BadHost {
        spec: String,
        host: String,
        why: HostError,
    },
}

/// Why a host is not a valid DNS name: the filter's, so both accept the same names.
pub use dnslb_wire::authority::NameError as HostError;

impl FromStr for Upstream {
    type Err = SpecError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let owned = || spec.to_string();
        let lower = spec.to_ascii_lowercase();
        let (tls, lower) = match lower.strip_prefix("https://") {
            Some(rest) => (true, rest.to_string()),
            None => (false, lower),
        };
        if let Some(name) = lower.strip_prefix("srv+") {
            let name = normalize_host(name).map_err(|why| SpecError::BadHost {
                spec: owned(),
                host: name.to_string(),
                why,
            })?;
            return Ok(Upstream::Srv { name, tls });
        }
        if lower.contains("://") {
            return Err(SpecError::Unsupported {
                spec: owned(),
                what: "a URL scheme other than https://",
            });
        }
        let Some(rest) = lower.strip_prefix("dns+") else {
            return Err(SpecError::UnknownScheme { spec: owned() });
        };
        let Some((host, port)) = rest.rsplit_once(':') else {
            return Err(SpecError::MissingPort { spec: owned() });
        };
        let port = parse_port(port).ok_or_else(|| SpecError::BadPort { spec: owned() })?;
        let host = normalize_host(host).map_err(|why| SpecError::BadHost {
            spec: owned(),
            host: host.to_string(),
            why,
        })?;
        Ok(Upstream::Dns { host, port, tls })
    }
}

fn parse_port(port: &str) -> Option<u16> {
    // u16::from_str accepts a leading '+'; ports are plain digits only.
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    port.parse::<u16>().ok().filter(|p| *p != 0)
}

/// Validates a DNS host name and returns it lowercased without the trailing root dot, so
/// `Backend.Test.` and `backend.test` name the same cluster. The filter's check
/// ([`dnslb_wire::authority::normalize_name`]): an upstream the shim accepts is one the
/// filter and the bootstrap's authority regex accept, and the other way round.
pub fn normalize_host(host: &str) -> Result<String, HostError> {
    dnslb_wire::authority::normalize_name(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dns(host: &str, port: u16) -> Upstream {
        Upstream::Dns {
            host: host.to_string(),
            port,
            tls: false,
        }
    }

    #[test]
    fn parses_and_normalizes() {
        assert_eq!(
            "dns+backend.test:8080".parse::<Upstream>(),
            Ok(dns("backend.test", 8080))
        );
        assert_eq!(
            "DNS+Backend.TEST.:8080".parse::<Upstream>(),
            Ok(dns("backend.test", 8080))
        );
        assert_eq!(
            "dns+vminsert:8480".parse::<Upstream>(),
            Ok(dns("vminsert", 8480))
        );
        assert_eq!("dns+a-1.b2:1".parse::<Upstream>(), Ok(dns("a-1.b2", 1)));
        assert_eq!("dns+x:65535".parse::<Upstream>(), Ok(dns("x", 65535)));
        // '_' as the filter allows it (compose service names have it).
        assert_eq!(
            "dns+a_b.test:80".parse::<Upstream>(),
            Ok(dns("a_b.test", 80))
        );
    }

    #[test]
    fn cluster_name_is_normalized_spec() {
        let upstream: Upstream = "dns+Backend.Test.:08080".parse().unwrap();
        assert_eq!(upstream.cluster_name(), "dns+backend.test:8080");
        assert_eq!(upstream.host(), "backend.test");
    }

    #[test]
    fn parses_srv_names() {
        let upstream: Upstream = "SRV+_HTTP._tcp.Api.Test.".parse().unwrap();
        assert_eq!(
            upstream,
            Upstream::Srv {
                name: "_http._tcp.api.test".into(),
                tls: false,
            }
        );
        assert_eq!(upstream.cluster_name(), "srv+_http._tcp.api.test");
        assert_eq!(upstream.host(), "_http._tcp.api.test");
        assert!("srv+api.test".parse::<Upstream>().is_ok());
        for bad in ["srv+", "srv+a..b", "srv+a b", "srv+_http._tcp.api.test:80"] {
            let msg = bad.parse::<Upstream>().unwrap_err().to_string();
            assert!(msg.contains(&format!("{bad:?}")), "{bad}: {msg}");
        }
    }

    #[test]
    fn rejects_later_features_clearly() {
        let err = "http://dns+backend.test:443"
            .parse::<Upstream>()
            .unwrap_err();
        assert!(matches!(err, SpecError::Unsupported { .. }));
        let tls: Upstream = "HTTPS://dns+Backend.test:443".parse().unwrap();
        assert!(tls.tls());
        assert_eq!(tls.cluster_name(), "dns+backend.test:443");
        assert_eq!(tls.spec(), "https://dns+backend.test:443");
        let srv: Upstream = "https://srv+_h._tcp.a.test".parse().unwrap();
        assert!(srv.tls() && srv.cluster_name() == "srv+_h._tcp.a.test");
    }

    #[test]
    fn rejects_bad_specs_naming_the_value() {
        for (spec, want) in [
            ("backend.test:8080", "expected dns+HOST:PORT"),
            ("dns+backend.test", "missing :PORT"),
            ("dns+backend.test:", "port must be"),
            ("dns+backend.test:0", "port must be"),
            ("dns+backend.test:65536", "port must be"),
            ("dns+backend.test:+80", "port must be"),
            ("dns+backend.test:http", "port must be"),
            ("dns+:80", "it is empty"),
            ("dns+.:80", "it is empty"),
            ("dns+a..b:80", "empty label"),
            ("dns+-a.b:80", "starts or ends with '-'"),
            ("dns+a-.b:80", "starts or ends with '-'"),
            ("dns+[::1]:80", "only letters"),
            ("dns+a b:80", "only letters"),
        ] {
            let msg = spec.parse::<Upstream>().unwrap_err().to_string();
            assert!(msg.contains(&format!("{spec:?}")), "{spec}: {msg}");
            assert!(msg.contains(want), "{spec}: {msg}");
        }
    }

    #[test]
    fn enforces_length_limits() {
        let label63 = "a".repeat(63);
        assert!(normalize_host(&label63).is_ok());
        assert_eq!(
            normalize_host(&"a".repeat(64)),
            Err(HostError::LabelTooLong)
        );
        // 4 * 63 + 3 dots = 255 > 253
        let long = [label63.as_str(); 4].join(".");
        assert_eq!(normalize_host(&long), Err(HostError::TooLong));
        // Exactly 253 is fine: 3 * 63 + 61 + 3 dots.
        let ok = format!("{label63}.{label63}.{label63}.{}", "b".repeat(61));
        assert_eq!(ok.len(), 253);
        assert!(normalize_host(&ok).is_ok());
    }
}
