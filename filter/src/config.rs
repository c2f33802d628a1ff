//! Filter configuration: a serde DTO (unknown fields denied) compiled into
//! the runtime [`Config`]. The empty configuration `{}` is valid.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use serde::Deserialize;
use thiserror::Error;

use crate::authority;

mod cidr;
mod xds_tls;

pub use cidr::Cidr;
use cidr::{loopback, parse_cidr};
pub use xds_tls::XdsTls;
use xds_tls::{xds_tls, XdsTlsDto};

/// Default Envoy cluster that reaches the EDS server (xds-shim).
pub const DEFAULT_XDS_CLUSTER: &str = dnslb_wire::names::XDS_CLUSTER;
/// Default xDS node id the filter presents.
pub const DEFAULT_NODE_ID: &str = "dnslb-filter";
/// Default retries after the first attempt.
pub const DEFAULT_RETRIES: u32 = 2;
pub const DEFAULT_CLUSTER_HEADER: &str = dnslb_wire::names::CLUSTER_HEADER;
pub const DEFAULT_ENDPOINT_HEADER: &str = dnslb_wire::names::ENDPOINT_HEADER;
pub const DEFAULT_COOKIE_NAME: &str = "dnslb";
pub const DEFAULT_STATUS_PATH: &str = "/dnslb/status";
/// Default lifetime of an affinity cookie: one day.
pub const DEFAULT_COOKIE_MAX_AGE: u64 = 86_400;
/// More retries than this only lengthens a header Envoy cuts anyway.
const MAX_RETRIES: u32 = 10;
/// Cookie secrets are keys, not passwords: shorter ones are guessable.
const MIN_SECRET_LEN: usize = 16;
/// A cookie no key opens costs one decryption per key; rotation needs one
/// or two previous secrets, so this bounds the cost of foreign cookies.
const MAX_PREVIOUS_SECRETS: usize = 4;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigDto {
    /// Envoy cluster (HTTP/2) reaching the xDS server that serves EDS.
    xds_cluster: Option<String>,
    /// `IP:PORT` of that xDS server, for the dynamic-module build: its own
    /// xDS client runs outside Envoy's clusters. The wasm build ignores it.
    xds_address: Option<String>,
    /// TLS to that server, for the module's client too.
    xds_tls: Option<XdsTlsDto>,
    /// xDS node id this filter presents.
    node_id: Option<String>,
    /// Plain authorities served by an upstream: `{"vminsert:8480": "dns+vminsert:8480"}`.
    #[serde(default)]
    aliases: BTreeMap<String, String>,
    /// Retries after the first attempt, each on the next member of the chain.
    retries: Option<u32>,
    #[serde(default)]
    headers: HeadersDto,
    affinity: Option<AffinityDto>,
    #[serde(default)]
    status: StatusDto,
    /// `filter` (the filter routes, picks and retries) or `envoy`.
    routing: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeadersDto {
    /// Must match the route's `cluster_header`.
    cluster: Option<String>,
    /// Must match the shim's override_host header.
    endpoint: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AffinityDto {
    mode: Option<String>,
    /// Hash mode: `source-ip` or `header:NAME`.
    key: Option<String>,
    cookie_name: Option<String>,
    /// Cookie lifetime in seconds.
    max_age: Option<u64>,
    secure: Option<bool>,
    /// Cookie key secret; without one, a random key per Envoy.
    secret: Option<String>,
    /// Secrets `secret` replaced: their cookies are still read.
    previous_secrets: Option<Vec<String>>,
    /// When the sticky endpoint is gone: 503 instead of a new pick.
    strict: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusDto {
    path: Option<String>,
    /// Addresses or CIDRs allowed to read the status path.
    allowed_sources: Option<Vec<String>>,
}

/// The runtime configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub xds_cluster: String,
    /// Where the dynamic module's xDS client connects; without it the
    /// module runs without membership (it trusts signed cookies).
    pub xds_address: Option<SocketAddr>,
    /// TLS for that connection; plaintext without it.
    pub xds_tls: Option<XdsTls>,
    pub node_id: String,
    /// Lowercased plain authority → upstream spec (`dns+...`/`srv+...`).
    pub aliases: HashMap<String, String>,
    pub retries: u32,
    pub cluster_header: String,
    pub endpoint_header: String,
    pub affinity: Affinity,
    pub status_path: String,
    pub status_sources: Vec<Cidr>,
    pub routing: Routing,
}

/// Who does the per-request routing work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Routing {
    /// The filter sets the cluster header, rewrites the authority, picks the
    /// endpoint with its failover chain and sets the retry headers: what the
    /// snippets with `cluster_header: x-dnslb-cluster` rely on.
    #[default]
    Filter,
    /// Envoy routes by `:authority`, rewrites the host, picks and retries
    /// natively; the filter only serves the status path and, in cookie mode,
    /// names the cookie's endpoint. `retries` and `headers.cluster` have no
    /// effect.
    Envoy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Affinity {
    /// Plain round robin.
    None,
    Cookie(CookieAffinity),
    Hash(HashKey),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieAffinity {
    pub name: String,
    pub max_age: u64,
    pub secure: bool,
    /// Configured secret; `None` means a random key shared by one Envoy's workers.
    pub secret: Option<Vec<u8>>,
    /// Secrets cookies are still opened with (never sealed); empty without `secret`.
    pub previous_secrets: Vec<Vec<u8>>,
    pub strict: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    SourceIp,
    /// Lowercased header name.
    Header(String),
}

impl Default for Config {
    fn default() -> Self {
        // The DTO's defaults are the one source of the default values.
        Config::try_from(ConfigDto::default()).unwrap_or_else(|_| unreachable_defaults())
    }
}

/// Only reached if the built-in defaults stopped validating, which the
/// unit tests rule out; keeps `Default` free of panics.
fn unreachable_defaults() -> Config {
    Config {
        xds_cluster: DEFAULT_XDS_CLUSTER.into(),
        xds_address: None,
        xds_tls: None,
        node_id: DEFAULT_NODE_ID.into(),
        aliases: HashMap::new(),
        retries: DEFAULT_RETRIES,
        cluster_header: DEFAULT_CLUSTER_HEADER.into(),
        endpoint_header: DEFAULT_ENDPOINT_HEADER.into(),
        affinity: Affinity::None,
        status_path: DEFAULT_STATUS_PATH.into(),
        status_sources: loopback(),
        routing: Routing::Filter,
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
        why: String,
    },
}

fn invalid(field: &'static str, value: impl Into<String>, why: impl Into<String>) -> ConfigError {
    ConfigError::Value {
        field,
        value: value.into(),
        why: why.into(),
    }
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

/// HTTP header names are tokens; Envoy wants them lowercase.
fn header_name(field: &'static str, value: String) -> Result<String, ConfigError> {
    let ok = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(value)
    } else {
        Err(invalid(field, value, "a lowercase header name"))
    }
}

/// Checks `affinity.previous_secrets`; errors name the entry, never its value.
fn previous_secrets(
    list: Option<Vec<String>>,
    has_secret: bool,
) -> Result<Vec<Vec<u8>>, ConfigError> {
    let field = "affinity.previous_secrets";
    let Some(list) = list else {
        return Ok(Vec::new());
    };
    if !has_secret {
        return Err(invalid(
            field,
            "(hidden)",
            "needs affinity.secret: new cookies are sealed with it",
        ));
    }
    if list.len() > MAX_PREVIOUS_SECRETS {
        return Err(invalid(
            field,
            format!("{} entries", list.len()),
            format!("at most {MAX_PREVIOUS_SECRETS}"),
        ));
    }
    let total = list.len();
    list.into_iter()
        .enumerate()
        .map(|(i, s)| {
            if s.len() < MIN_SECRET_LEN {
                let entry = format!("entry {} of {total} (hidden)", i + 1);
                Err(invalid(
                    field,
                    entry,
                    format!("at least {MIN_SECRET_LEN} bytes"),
                ))
            } else {
                Ok(s.into_bytes())
            }
        })
        .collect()
}

fn affinity(dto: Option<AffinityDto>) -> Result<Affinity, ConfigError> {
    let Some(dto) = dto else {
        return Ok(Affinity::None);
    };
    let mode = dto.mode.unwrap_or_else(|| "none".into());
    let cookie_only = [
        ("affinity.cookie_name", dto.cookie_name.is_some()),
        ("affinity.max_age", dto.max_age.is_some()),
        ("affinity.secure", dto.secure.is_some()),
        ("affinity.secret", dto.secret.is_some()),
        ("affinity.previous_secrets", dto.previous_secrets.is_some()),
        ("affinity.strict", dto.strict.is_some()),
    ];
    let key_set = [("affinity.key", dto.key.is_some())];
    let misplaced = |allowed: &[&str]| {
        let stray = cookie_only
            .iter()
            .chain(key_set.iter())
            .find(|(name, set)| *set && !allowed.contains(name));
        match stray {
            Some((name, _)) => Err(invalid(
                "affinity.mode",
                mode.clone(),
                format!("{name} does not apply to it"),
            )),
            None => Ok(()),
        }
    };
    match mode.as_str() {
        "none" => {
            misplaced(&[])?;
            Ok(Affinity::None)
        }
        "cookie" => {
            misplaced(&cookie_only.map(|(n, _)| n))?;
            let name = dto
                .cookie_name
                .unwrap_or_else(|| DEFAULT_COOKIE_NAME.into());
            let token = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !token {
                return Err(invalid(
                    "affinity.cookie_name",
                    name,
                    "letters, digits, '-', '_' or '.'",
                ));
            }
            let max_age = dto.max_age.unwrap_or(DEFAULT_COOKIE_MAX_AGE);
            if max_age == 0 {
                return Err(invalid(
                    "affinity.max_age",
                    "0",
                    "must be at least 1 second",
                ));
            }
            let secret = match dto.secret {
                Some(s) if s.len() < MIN_SECRET_LEN => {
                    return Err(invalid(
                        "affinity.secret",
                        "(hidden)",
                        format!("at least {MIN_SECRET_LEN} bytes"),
                    ))
                }
                s => s.map(String::into_bytes),
            };
            let previous_secrets = previous_secrets(dto.previous_secrets, secret.is_some())?;
            Ok(Affinity::Cookie(CookieAffinity {
                name,
                max_age,
                secure: dto.secure.unwrap_or(false),
                secret,
                previous_secrets,
                strict: dto.strict.unwrap_or(false),
            }))
        }
        "hash" => {
            misplaced(&["affinity.key"])?;
            let key = dto.key.unwrap_or_else(|| "source-ip".into());
            let parsed = if key == "source-ip" {
                HashKey::SourceIp
            } else if let Some(name) = key.strip_prefix("header:") {
                HashKey::Header(header_name("affinity.key", name.to_ascii_lowercase())?)
            } else {
                return Err(invalid("affinity.key", key, "source-ip or header:NAME"));
            };
            Ok(Affinity::Hash(parsed))
        }
        _ => Err(invalid("affinity.mode", mode, "none, cookie or hash")),
    }
}

fn routing(value: Option<String>) -> Result<Routing, ConfigError> {
    match value.as_deref() {
        None | Some("filter") => Ok(Routing::Filter),
        Some("envoy") => Ok(Routing::Envoy),
        Some(other) => Err(invalid("routing", other, "filter or envoy")),
    }
}

impl TryFrom<ConfigDto> for Config {
    type Error = ConfigError;

    fn try_from(dto: ConfigDto) -> Result<Self, Self::Error> {
        let xds_cluster = dto
            .xds_cluster
            .unwrap_or_else(|| DEFAULT_XDS_CLUSTER.into());
        if xds_cluster.trim().is_empty() {
            return Err(invalid(
                "xds_cluster",
                xds_cluster,
                "must name an Envoy cluster",
            ));
        }
        let retries = dto.retries.unwrap_or(DEFAULT_RETRIES);
        if retries > MAX_RETRIES {
            return Err(invalid(
                "retries",
                retries.to_string(),
                format!("at most {MAX_RETRIES}"),
            ));
        }
        let mut aliases = HashMap::with_capacity(dto.aliases.len());
        for (from, to) in dto.aliases {
            match authority::parse(&to) {
                Ok(Some(upstream)) => {
                    aliases.insert(from.to_ascii_lowercase(), upstream.cluster);
                }
                Ok(None) => return Err(invalid("aliases", to, "must be a dns+ or srv+ upstream")),
                Err(e) => return Err(invalid("aliases", to, e.to_string())),
            }
        }
        let status_path = dto
            .status
            .path
            .unwrap_or_else(|| DEFAULT_STATUS_PATH.into());
        if !status_path.starts_with('/') {
            return Err(invalid("status.path", status_path, "must start with '/'"));
        }
        let status_sources = match dto.status.allowed_sources {
            None => loopback(),
            Some(list) => list
                .iter()
                .map(|s| parse_cidr(s))
                .collect::<Result<_, _>>()?,
        };
        let xds_address = match dto.xds_address {
            None => None,
            Some(text) => match text.parse::<SocketAddr>() {
                Ok(addr) => Some(addr),
                Err(_) => return Err(invalid("xds_address", text, "must be IP:PORT")),
            },
        };
        let xds_tls = match dto.xds_tls {
            None => None,
            Some(_) if xds_address.is_none() => {
                return Err(invalid("xds_tls", "{..}", "needs xds_address"))
            }
            Some(tls) => Some(xds_tls(tls)?),
        };
        Ok(Config {
            xds_cluster,
            xds_address,
            xds_tls,
            node_id: dto.node_id.unwrap_or_else(|| DEFAULT_NODE_ID.into()),
            aliases,
            retries,
            cluster_header: header_name(
                "headers.cluster",
                dto.headers
                    .cluster
                    .unwrap_or_else(|| DEFAULT_CLUSTER_HEADER.into()),
            )?,
            endpoint_header: header_name(
                "headers.endpoint",
                dto.headers
                    .endpoint
                    .unwrap_or_else(|| DEFAULT_ENDPOINT_HEADER.into()),
            )?,
            affinity: affinity(dto.affinity)?,
            status_path,
            status_sources,
            routing: routing(dto.routing)?,
        })
    }
}

#[cfg(test)]
mod tests;
