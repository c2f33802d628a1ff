//! Per-request decisions, written against small host traits so that the
//! glue is the only code that talks to Envoy. This module routes in the
//! filter (`routing: "filter"`); [`crate::envoy_routing`] is the lean path
//! for `routing: "envoy"`. Both share the traits, the status path and the
//! cookie handling here.

use std::net::SocketAddr;

use crate::authority::{self, Upstream};
use crate::config::{Affinity, Config, CookieAffinity, HashKey, Routing};
use crate::cookie::{self, CookieError};
use crate::envoy_routing::CookieSession;
use crate::members::{ClusterMembers, WorkerMembership};
use crate::stats::Counter;

mod host;
mod status;

pub use host::{RequestHost, ResponseHost};
pub use status::status_json;

/// Headers the filter owns; anything a client sends under this prefix is
/// dropped before the filter looks at the request.
pub use dnslb_wire::names::HEADER_PREFIX;
pub const AUTHORITY: &str = ":authority";
pub const PATH: &str = ":path";
pub const METHOD: &str = ":method";
pub const COOKIE: &str = "cookie";
const RETRY_ON: &str = "x-envoy-retry-on";
const MAX_RETRIES: &str = "x-envoy-max-retries";
/// Retry headers a client might send to steer Envoy; the filter decides.
const CLIENT_RETRY_HEADERS: [&str; 5] = [
    RETRY_ON,
    MAX_RETRIES,
    "x-envoy-retry-grpc-on",
    "x-envoy-retriable-status-codes",
    "x-envoy-retriable-header-names",
];
/// A request never sent (or refused before processing) is safe to retry
/// whatever its method.
const RETRY_ON_ANY: &str = "connect-failure,refused-stream,reset-before-request";
/// Idempotent methods may also retry after the backend saw the request.
const RETRY_ON_IDEMPOTENT: &str = "connect-failure,refused-stream,reset-before-request,reset,5xx";
/// An affinity cookie longer than this is an attack or a bug, not a token.
const MAX_COOKIE_VALUE: usize = 1024;

/// What the response phase must do.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pending {
    cookie: Option<PendingCookie>,
    /// The cluster and the member the filter picked first.
    picked: Option<(String, String)>,
    /// `routing: "envoy"`, cookie affinity: what the response completes.
    session: Option<CookieSession>,
}

impl Pending {
    pub(crate) fn session(session: CookieSession) -> Self {
        Self {
            session: Some(session),
            ..Self::default()
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
struct PendingCookie {
    cluster: String,
    /// The endpoint the request's valid cookie named, if any.
    sticky: Option<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Continue(Pending),
    /// A local reply was sent.
    Stop,
}

/// What one request's decisions read, borrowed for its hooks: the
/// configuration, this worker's membership (with its round-robin state) and
/// the cookie keys.
pub struct RequestContext<'a> {
    pub config: &'a Config,
    pub membership: &'a mut WorkerMembership,
    /// The affinity cookie keys (configured or this Envoy's random one).
    pub cookie_key: &'a cookie::Keyring,
}

/// A local reply was sent: the request goes no further.
#[derive(Debug)]
pub(crate) struct Replied;

impl From<Replied> for Verdict {
    fn from(_: Replied) -> Self {
        Verdict::Stop
    }
}

/// Answers with a short plain-text error and counts it.
pub(crate) fn reply(
    host: &mut impl RequestHost,
    counter: Counter,
    status: u32,
    body: String,
) -> Replied {
    host.count(counter);
    host.respond(
        status,
        "text/plain; charset=utf-8",
        &format!("dnslb: {body}\n"),
    );
    Replied
}

fn stop(host: &mut impl RequestHost, counter: Counter, status: u32, body: String) -> Verdict {
    reply(host, counter, status, body).into()
}

fn is_idempotent(method: &[u8]) -> bool {
    matches!(
        method,
        b"GET" | b"HEAD" | b"OPTIONS" | b"TRACE" | b"PUT" | b"DELETE"
    )
}

/// The request headers as read once from the host. Envoy hands them over
/// with lowercase names.
struct Headers(Vec<(String, Vec<u8>)>);

impl Headers {
    fn get(&self, name: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

impl RequestContext<'_> {
    /// Handles request headers: strips client-sent `x-dnslb-*` and retry
    /// headers, answers the status path, and for a dnslb upstream sets the
    /// cluster, rewrites the authority, writes the pick with its failover
    /// chain and the retry policy. Bad input gets a short 4xx.
    pub fn on_request_headers(&mut self, host: &mut impl RequestHost) -> Verdict {
        if self.config.routing == Routing::Envoy {
            return self.on_request_headers_envoy(host);
        }
        host.count(Counter::Requests);
        let headers = Headers(host.headers());
        let config = self.config;
        for (name, _) in &headers.0 {
            let lower = name.to_ascii_lowercase();
            if lower.starts_with(HEADER_PREFIX)
                || lower == config.cluster_header
                || lower == config.endpoint_header
            {
                host.remove_header(name);
            }
        }
        if let Some(verdict) = self.status(host, &headers) {
            return verdict;
        }
        let Some(raw) = headers.get(AUTHORITY) else {
            return Verdict::Continue(Pending::default());
        };
        let Ok(text) = std::str::from_utf8(raw) else {
            return stop(
                host,
                Counter::BadRequests,
                400,
                "authority is not valid UTF-8".into(),
            );
        };
        let upstream = match authority::parse(text) {
            Ok(Some(u)) => u,
            Ok(None) => match config.aliases.get(&text.to_ascii_lowercase()) {
                Some(cluster) => Upstream {
                    cluster: cluster.clone(),
                    authority: text.to_string(),
                },
                None => return Verdict::Continue(Pending::default()),
            },
            Err(e) => {
                return stop(
                    host,
                    Counter::BadRequests,
                    400,
                    format!("bad upstream: {e}"),
                )
            }
        };
        // Before the first EDS update nothing is known: Envoy decides alone.
        let known = self.membership.get(&upstream.cluster).is_some();
        if self.membership.received() && !known {
            let why = format!(
                "unknown upstream {}: the xDS server does not serve it",
                upstream.cluster
            );
            return stop(host, Counter::UnknownUpstreams, 404, why);
        }
        for name in CLIENT_RETRY_HEADERS {
            if headers.has(name) {
                host.remove_header(name);
            }
        }
        host.set_header(&config.cluster_header, &upstream.cluster);
        host.set_header(AUTHORITY, &upstream.authority);
        host.count(Counter::Rewrites);
        let mut pending = Pending::default();
        if let Some(members) = self.membership.get_mut(&upstream.cluster) {
            let chain = match &config.affinity {
                Affinity::None => {
                    host.count(Counter::PicksRoundRobin);
                    members.next_chain(config.retries as usize)
                }
                Affinity::Hash(key) => {
                    hash_pick(host, &headers, members, key, config.retries as usize)
                }
                Affinity::Cookie(cookie) => {
                    match cookie_pick(
                        host,
                        &headers,
                        members,
                        &upstream.cluster,
                        cookie,
                        self.cookie_key,
                        config.retries as usize,
                    ) {
                        Ok((chain, sticky)) => {
                            pending.cookie = Some(PendingCookie {
                                cluster: upstream.cluster.clone(),
                                sticky,
                            });
                            chain
                        }
                        Err(replied) => return replied.into(),
                    }
                }
            };
            if chain.is_empty() {
                let why = format!("no members for {}", upstream.cluster);
                return stop(host, Counter::NoMembers, 503, why);
            }
            host.set_header(&config.endpoint_header, &chain.join(","));
            pending.picked = Some((upstream.cluster.clone(), chain[0].to_string()));
        }
        if config.retries > 0 {
            let method = headers.get(METHOD).unwrap_or_default();
            let on = if is_idempotent(method) {
                RETRY_ON_IDEMPOTENT
            } else {
                RETRY_ON_ANY
            };
            host.set_header(RETRY_ON, on);
            host.set_header(MAX_RETRIES, &config.retries.to_string());
        }
        Verdict::Continue(pending)
    }

    /// The status path, if this request asks for it.
    fn status(&self, host: &mut impl RequestHost, headers: &Headers) -> Option<Verdict> {
        self.status_reply(host, headers.get(PATH)?)
    }

    /// The status path: what this worker knows, for allowed sources only;
    /// `None` for any other path.
    pub(crate) fn status_reply(&self, host: &mut impl RequestHost, path: &[u8]) -> Option<Verdict> {
        let path = path.split(|&b| b == b'?').next().unwrap_or_default();
        if path != self.config.status_path.as_bytes() {
            return None;
        }
        let allowed = host
            .source_ip()
            .is_some_and(|ip| self.config.status_sources.iter().any(|c| c.contains(ip)));
        if !allowed {
            return Some(stop(
                host,
                Counter::StatusRequests,
                403,
                "status is not served to this address".into(),
            ));
        }
        host.count(Counter::StatusRequests);
        host.respond(200, "application/json", &status_json(self.membership));
        Some(Verdict::Stop)
    }
}

fn hash_pick<'m>(
    host: &mut impl RequestHost,
    headers: &Headers,
    members: &'m mut ClusterMembers,
    key: &HashKey,
    failover: usize,
) -> Vec<&'m str> {
    let value = match key {
        HashKey::SourceIp => host.source_ip().map(|ip| ip.to_string().into_bytes()),
        HashKey::Header(name) => headers.get(name).map(<[u8]>::to_vec),
    };
    match value {
        Some(v) => {
            host.count(Counter::PicksHash);
            members.hash_chain(&v, failover)
        }
        // No key to hash (the header is absent): spread like round robin.
        None => {
            host.count(Counter::PicksRoundRobin);
            members.next_chain(failover)
        }
    }
}

/// The chain for cookie affinity and the endpoint the valid cookie named.
/// Bad cookies are ignored and counted; only a repeated or huge cookie, or
/// a gone endpoint in strict mode, ends the request.
fn cookie_pick<'m>(
    host: &mut impl RequestHost,
    headers: &Headers,
    members: &'m mut ClusterMembers,
    cluster: &str,
    settings: &CookieAffinity,
    key: &cookie::Keyring,
    failover: usize,
) -> Result<(Vec<&'m str>, Option<String>), Replied> {
    let joined = headers
        .0
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("cookie"))
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        .collect::<Vec<_>>()
        .join(";");
    let sticky = read_cookie(host, &joined, cluster, settings, key)?;
    let Some(addr) = sticky else {
        host.count(Counter::AffinityMisses);
        host.count(Counter::PicksRoundRobin);
        return Ok((members.next_chain(failover), None));
    };
    let address = addr.to_string();
    if members.find(&address).is_some() {
        host.count(Counter::AffinityHits);
        host.count(Counter::PicksCookie);
        let chain = members.chain_for(&address, failover).unwrap_or_default();
        return Ok((chain, Some(address)));
    }
    // Its endpoint left DNS (and its drain period): a new pick and cookie.
    host.count(Counter::AffinityFailovers);
    if settings.strict {
        let why = format!("the affinity endpoint of {cluster} is gone; retry without the cookie");
        return Err(reply(host, Counter::NoMembers, 503, why));
    }
    host.count(Counter::PicksRoundRobin);
    Ok((members.next_chain(failover), None))
}

/// The endpoint the request's affinity cookie names, if the cookie is
/// genuine, of this cluster and not expired (others are counted and
/// ignored). A repeated or huge cookie ends the request with a 400.
pub(crate) fn read_cookie(
    host: &mut impl RequestHost,
    header: &str,
    cluster: &str,
    settings: &CookieAffinity,
    key: &cookie::Keyring,
) -> Result<Option<SocketAddr>, Replied> {
    let value = match cookie::find(header, &settings.name) {
        Ok(v) => v,
        Err(e) => return Err(reply(host, Counter::BadRequests, 400, e.to_string())),
    };
    match value {
        None => Ok(None),
        Some(v) if v.len() > MAX_COOKIE_VALUE => Err(reply(
            host,
            Counter::BadRequests,
            400,
            "oversized affinity cookie".into(),
        )),
        Some(v) => match cookie::open(key, cluster, v, host.now()) {
            Ok(addr) => Ok(Some(addr)),
            Err(
                CookieError::Malformed
                | CookieError::Version(_)
                | CookieError::Forged
                | CookieError::Expired,
            ) => {
                host.count(Counter::CookiesRejected);
                Ok(None)
            }
        },
    }
}

/// After the response headers: when the member picked first did not answer
/// (Envoy retried elsewhere: it refused, reset or failed), asks the control
/// plane to re-resolve the cluster, since DNS may already know it is gone;
/// and sets the affinity cookie when the answering backend is not the one
/// the request's cookie named.
pub fn on_response_headers(
    host: &mut impl ResponseHost,
    pending: &Pending,
    config: &Config,
    key: &cookie::Keyring,
) {
    if let Some(session) = &pending.session {
        session.on_response_headers(host, config, key);
        return;
    }
    // Nothing picked, no cookie to set: spare the host call.
    if pending.picked.is_none() && pending.cookie.is_none() {
        return;
    }
    let Some(upstream) = host.upstream_address() else {
        return;
    };
    if let Some((cluster, first)) = &pending.picked {
        if *first != upstream {
            host.request_refresh(cluster);
        }
    }
    let (Some(pc), Affinity::Cookie(settings)) = (&pending.cookie, &config.affinity) else {
        return;
    };
    if pc.sticky.as_deref() == Some(upstream.as_str()) {
        return;
    }
    let Ok(addr) = upstream.parse::<SocketAddr>() else {
        return;
    };
    add_cookie(host, settings, key, &pc.cluster, addr);
}

/// Sets the affinity cookie naming `addr` of `cluster` (none when the host has no
/// randomness for its nonce).
pub(crate) fn add_cookie(
    host: &mut impl ResponseHost,
    settings: &CookieAffinity,
    key: &cookie::Keyring,
    cluster: &str,
    addr: SocketAddr,
) {
    let Some(nonce) = host.cookie_nonce() else {
        return;
    };
    let expiry = host.now().saturating_add(settings.max_age);
    let Ok(value) = cookie::seal(key, cluster, addr, expiry, nonce) else {
        return;
    };
    host.add_header(
        "set-cookie",
        &cookie::set_cookie(&settings.name, &value, settings.max_age, settings.secure),
    );
}

#[cfg(test)]
mod tests;
