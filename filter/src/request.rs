//! Per-request decisions, written against small host traits so that the
//! glue is the only code that talks to Envoy. This module routes in the
//! filter (`routing: "filter"`); [`crate::envoy_routing`] is the lean path
//! for `routing: "envoy"`. Both share the traits, the status path and the
//! cookie handling here.

use std::net::{IpAddr, SocketAddr};

use serde_json::json;

use crate::authority::{self, Upstream};
use crate::config::{Affinity, Config, CookieAffinity, HashKey, Routing};
use crate::cookie::{self, CookieError};
use crate::envoy_routing::CookieSession;
use crate::members::{ClusterMembers, Membership};
use crate::stats::Counter;

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

/// The request view the decisions need from the host.
pub trait RequestHost {
    /// Every request header, in order, repeated names included. Read once
    /// per request: each host call costs a trip out of the VM.
    fn headers(&self) -> Vec<(String, Vec<u8>)>;
    /// One request header by its lowercase name (the first, if repeated):
    /// one host call, for paths that need only a few headers.
    fn header(&self, name: &str) -> Option<Vec<u8>>;
    /// A few request headers by their lowercase names, in the fewest host
    /// calls: one each by default, which suits a native host; the wasm host
    /// reads the whole map once, since each call is a trip out of the VM
    /// and back in for the copy (callgrind: 15k instructions a request
    /// fewer than three single reads).
    fn headers_named<const N: usize>(&self, names: [&str; N]) -> [Option<Vec<u8>>; N] {
        names.map(|name| self.header(name))
    }
    fn set_header(&mut self, name: &str, value: &str);
    fn remove_header(&mut self, name: &str);
    /// Sends the request to the member at `address` (`ip:port`) through
    /// the cluster's override_host: the header `header` names it, unless the
    /// host can set the override directly (the dynamic module can).
    fn override_host(&mut self, header: &str, address: &str) {
        self.set_header(header, address);
    }
    /// Answers locally; the request never reaches a backend.
    fn respond(&mut self, status: u32, content_type: &str, body: &str);
    fn source_ip(&self) -> Option<IpAddr>;
    /// Seconds since the Unix epoch.
    fn now(&self) -> u64;
    fn count(&mut self, counter: Counter);
}

/// The response view: where the request went, and a header to add.
pub trait ResponseHost {
    /// `ip:port` of the backend that answered (after retries, the last one).
    fn upstream_address(&self) -> Option<String>;
    fn add_header(&mut self, name: &str, value: &str);
    fn now(&self) -> u64;
    /// Asks the control plane to re-resolve `cluster` soon.
    fn request_refresh(&mut self, cluster: &str);
    /// Fresh random bytes for a cookie's nonce; `None` without randomness.
    fn cookie_nonce(&mut self) -> Option<[u8; cookie::NONCE_LEN]>;
}

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

/// What a request's headers are checked against.
pub struct Worker<'a> {
    pub config: &'a Config,
    pub membership: &'a mut Membership,
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

impl Worker<'_> {
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

/// JSON of what one worker knows: every upstream with its members.
pub fn status_json(membership: &Membership) -> String {
    let upstreams: Vec<_> = membership
        .clusters()
        .into_iter()
        .map(|(name, c)| {
            let members: Vec<_> = c
                .members()
                .iter()
                .map(|m| {
                    json!({"address": m.address, "weight": m.weight, "priority": m.priority, "draining": m.draining})
                })
                .collect();
            json!({"cluster": name, "members": members})
        })
        .collect();
    let body = json!({
        "eds_version": membership.version(),
        "eds_received": membership.received(),
        "upstreams": upstreams,
    });
    format!("{body}\n")
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
mod tests {
    use super::*;
    use crate::test_support::*;
    // The same tests run natively and, under Node, compiled to wasm32.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn dns_authority_is_routed_rewritten_and_retried() {
        let c = config("{}");
        let mut m = membership();
        let mut h = get(CLUSTER.as_bytes());
        assert!(matches!(run(&c, &mut m, &mut h), Verdict::Continue(_)));
        assert_eq!(h.text("x-dnslb-cluster").unwrap(), CLUSTER);
        assert_eq!(h.text(AUTHORITY).unwrap(), "backend.test:8080");
        assert_eq!(
            h.text("x-dnslb-endpoint").unwrap(),
            "127.0.0.2:8080,127.0.0.3:8080,127.0.0.4:8080"
        );
        assert_eq!(h.text(MAX_RETRIES).unwrap(), "2");
        assert_eq!(h.text(RETRY_ON).unwrap(), RETRY_ON_IDEMPOTENT);
        assert_eq!(h.count_of(Counter::Rewrites), 1);
        let mut h = get(CLUSTER.as_bytes());
        run(&c, &mut m, &mut h);
        assert!(h
            .text("x-dnslb-endpoint")
            .unwrap()
            .starts_with("127.0.0.3:8080,"));
    }

    #[test]
    fn a_retried_request_asks_for_a_refresh() {
        let c = config("{}");
        let mut m = membership();
        let mut h = get(CLUSTER.as_bytes());
        let Verdict::Continue(pending) = run(&c, &mut m, &mut h) else {
            panic!()
        };
        let answered = |upstream: &str| {
            let mut r = FakeHost::with(&[]);
            r.upstream = Some(upstream.into());
            on_response_headers(&mut r, &pending, &c, &keys());
            r.refreshes
        };
        assert!(answered("127.0.0.2:8080").is_empty());
        assert_eq!(answered("127.0.0.3:8080"), [CLUSTER]);
        // Without a pick (plain authority) there is nothing to refresh.
        let mut h = get(b"plain.test");
        let Verdict::Continue(pending) = run(&c, &mut m, &mut h) else {
            panic!()
        };
        let mut r = FakeHost::with(&[]);
        r.upstream = Some("10.0.0.1:80".into());
        on_response_headers(&mut r, &pending, &c, &keys());
        assert!(r.refreshes.is_empty());
    }

    #[test]
    fn post_retries_only_when_the_request_was_not_sent() {
        let mut h = FakeHost::with(&[(":method", b"POST"), (":authority", CLUSTER.as_bytes())]);
        run(&config("{}"), &mut membership(), &mut h);
        assert_eq!(h.text(RETRY_ON).unwrap(), RETRY_ON_ANY);
        let mut h = get(CLUSTER.as_bytes());
        run(&config(r#"{"retries": 0}"#), &mut membership(), &mut h);
        assert!(h.text(RETRY_ON).is_none());
        assert_eq!(h.text("x-dnslb-endpoint").unwrap(), "127.0.0.2:8080");
    }

    #[test]
    fn client_headers_cannot_steer() {
        let mut h = FakeHost::with(&[
            (":authority", b"plain.test"),
            ("x-dnslb-endpoint", b"10.9.9.9:80"),
            ("X-Dnslb-Cluster", b"evil"),
            ("x-other", b"kept"),
            ("x-envoy-max-retries", b"9"),
        ]);
        run(&config("{}"), &mut membership(), &mut h);
        let names: Vec<_> = h.headers.iter().map(|(k, _)| k.as_str()).collect();
        // Retry headers of a request dnslb does not route are Envoy's business.
        assert_eq!(names, [":authority", "x-other", "x-envoy-max-retries"]);

        let mut h = get(CLUSTER.as_bytes());
        h.headers
            .push(("x-envoy-max-retries".into(), b"9".to_vec()));
        h.headers.push(("x-envoy-retry-on".into(), b"5xx".to_vec()));
        h.headers
            .push(("x-dnslb-endpoint".into(), b"10.9.9.9:80".to_vec()));
        run(&config(r#"{"retries": 1}"#), &mut membership(), &mut h);
        assert_eq!(h.text(MAX_RETRIES).unwrap(), "1");
        assert!(!h.text("x-dnslb-endpoint").unwrap().contains("10.9.9.9"));
    }

    #[test]
    fn aliases_route_plain_authorities() {
        let c = config(r#"{"aliases": {"backend:8080": "dns+backend.test:8080"}}"#);
        let mut h = get(b"Backend:8080");
        run(&c, &mut membership(), &mut h);
        assert_eq!(h.text("x-dnslb-cluster").unwrap(), CLUSTER);
        assert_eq!(h.text(AUTHORITY).unwrap(), "Backend:8080");
    }

    #[test]
    fn bad_input_gets_a_short_4xx() {
        let c = config("{}");
        for (authority, status, why) in [
            (&b"dns+backend.test:0"[..], 400, "\"0\""),
            (b"dns+:80", 400, "empty name"),
            (b"srv+", 400, "empty name"),
            (b"dns+a\xffb:80", 400, "UTF-8"),
            (
                b"dns+unknown.test:80",
                404,
                "unknown upstream dns+unknown.test:80",
            ),
            (
                b"dns+empty.test:80",
                503,
                "no members for dns+empty.test:80",
            ),
        ] {
            let mut h = get(authority);
            assert_eq!(run(&c, &mut membership(), &mut h), Verdict::Stop);
            let (got, body) = h.reply.clone().unwrap();
            assert_eq!(got, status, "{body}");
            assert!(body.starts_with("dnslb: ") && body.contains(why), "{body}");
            assert!(h.text("x-dnslb-endpoint").is_none());
        }
        // Before the first EDS update an unknown upstream is Envoy's to route.
        let mut h = get(b"dns+unknown.test:80");
        assert!(matches!(
            run(&c, &mut Membership::default(), &mut h),
            Verdict::Continue(_)
        ));
        assert!(h.text("x-dnslb-endpoint").is_none());
    }

    #[test]
    fn hash_affinity_is_sticky_per_key() {
        let c = config(r#"{"affinity": {"mode": "hash", "key": "header:x-user"}}"#);
        let mut m = membership();
        let pick = |m: &mut Membership, user: &[u8]| {
            let mut h = get(CLUSTER.as_bytes());
            h.headers.push(("x-user".into(), user.to_vec()));
            run(&c, m, &mut h);
            h.text("x-dnslb-endpoint").unwrap()
        };
        let first = pick(&mut m, b"alice");
        for _ in 0..5 {
            assert_eq!(pick(&mut m, b"alice"), first);
        }
        let users: std::collections::HashSet<String> = (0..50)
            .map(|i| pick(&mut m, format!("u{i}").as_bytes())[..14].to_string())
            .collect();
        assert_eq!(users.len(), 3, "keys spread over all members");
        let c = config(r#"{"affinity": {"mode": "hash"}}"#);
        let mut h = get(CLUSTER.as_bytes());
        run(&c, &mut m, &mut h);
        assert_eq!(h.count_of(Counter::PicksHash), 1);
    }

    #[test]
    fn cookie_affinity_sticks_and_fails_over() {
        let c = cookie_config();
        let mut m = membership();
        // No cookie: a round-robin pick and a cookie for whoever answered.
        let mut h = get(CLUSTER.as_bytes());
        let Verdict::Continue(pending) = run(&c, &mut m, &mut h) else {
            panic!()
        };
        assert_eq!(h.count_of(Counter::AffinityMisses), 1);
        let set = respond(&c, &pending, "127.0.0.3:8080").unwrap();
        assert!(set.contains("HttpOnly; SameSite=Lax"), "{set}");
        let value = cookie_value(&set);

        // With it: that endpoint first, then its failover chain; no new cookie.
        for _ in 0..3 {
            let mut h = get(CLUSTER.as_bytes());
            h.headers
                .push(("cookie".into(), format!("a=b; dnslb={value}").into_bytes()));
            let Verdict::Continue(pending) = run(&c, &mut m, &mut h) else {
                panic!()
            };
            assert!(h
                .text("x-dnslb-endpoint")
                .unwrap()
                .starts_with("127.0.0.3:8080,"));
            assert_eq!(h.count_of(Counter::AffinityHits), 1);
            assert!(respond(&c, &pending, "127.0.0.3:8080").is_none());
            // The retry landed elsewhere: the cookie follows it.
            assert!(respond(&c, &pending, "127.0.0.4:8080").is_some());
        }

        // Its endpoint leaves: a new pick, counted as a failover.
        m.replace(
            "v2".into(),
            vec![(
                CLUSTER.into(),
                vec![member("127.0.0.2:8080"), member("127.0.0.4:8080")],
            )],
        );
        let mut h = get(CLUSTER.as_bytes());
        h.headers
            .push(("cookie".into(), format!("dnslb={value}").into_bytes()));
        let Verdict::Continue(_) = run(&c, &mut m, &mut h) else {
            panic!()
        };
        assert_eq!(h.count_of(Counter::AffinityFailovers), 1);
        assert!(!h.text("x-dnslb-endpoint").unwrap().contains("127.0.0.3"));

        // Strict mode answers 503 instead.
        let strict = config(r#"{"affinity": {"mode": "cookie", "strict": true}}"#);
        let mut h = get(CLUSTER.as_bytes());
        h.headers
            .push(("cookie".into(), format!("dnslb={value}").into_bytes()));
        assert_eq!(run(&strict, &mut m, &mut h), Verdict::Stop);
        assert_eq!(h.reply.unwrap().0, 503);
    }

    #[test]
    fn bad_cookies_are_ignored_or_refused() {
        let c = cookie_config();
        let mut m = membership();
        let foreign = cookie::seal(
            &keys(),
            "dns+other.test:80",
            "127.0.0.3:8080".parse().unwrap(),
            5_000,
            NONCE,
        )
        .unwrap();
        let expired = cookie::seal(
            &keys(),
            CLUSTER,
            "127.0.0.3:8080".parse().unwrap(),
            10,
            NONCE,
        )
        .unwrap();
        // Sealed by the version-1 codec for 127.0.0.2:8080 of CLUSTER, expiry 5000.
        let v1 = "AQAAAAAAABOIBoCJD3I1biKfpxyi6w1HcSYZ2TIHqr4";
        for bad in ["garbage", foreign.as_str(), expired.as_str(), v1] {
            let mut h = get(CLUSTER.as_bytes());
            h.headers
                .push(("cookie".into(), format!("dnslb={bad}").into_bytes()));
            let Verdict::Continue(pending) = run(&c, &mut m, &mut h) else {
                panic!("{bad}")
            };
            assert_eq!(h.count_of(Counter::CookiesRejected), 1, "{bad}");
            // A new pick, and a new cookie even from the endpoint it named.
            assert_eq!(h.count_of(Counter::PicksRoundRobin), 1, "{bad}");
            assert!(respond(&c, &pending, "127.0.0.2:8080").is_some(), "{bad}");
        }
        // Two cookies of our name (in one header or two): which one? 400.
        let mut h = get(CLUSTER.as_bytes());
        h.headers.push(("cookie".into(), b"dnslb=a".to_vec()));
        h.headers.push(("cookie".into(), b"dnslb=b".to_vec()));
        assert_eq!(run(&c, &mut m, &mut h), Verdict::Stop);
        assert!(h.reply.unwrap().1.contains("more than once"));
        let mut h = get(CLUSTER.as_bytes());
        h.headers.push((
            "cookie".into(),
            format!("dnslb={}", "A".repeat(2000)).into_bytes(),
        ));
        assert_eq!(run(&c, &mut m, &mut h), Verdict::Stop);
        assert!(h.reply.unwrap().1.contains("oversized"));
    }

    #[test]
    fn status_path_answers_allowed_sources_only() {
        let c = config("{}");
        let mut m = membership();
        let mut h = FakeHost::with(&[(":path", b"/dnslb/status?x=1"), (":authority", b"any")]);
        assert_eq!(run(&c, &mut m, &mut h), Verdict::Stop);
        let (status, body) = h.reply.clone().unwrap();
        assert_eq!(status, 200);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["eds_version"], "v1");
        assert_eq!(v["upstreams"][0]["cluster"], CLUSTER);
        assert_eq!(v["upstreams"][0]["members"][1]["address"], "127.0.0.3:8080");
        let mut h = FakeHost::with(&[(":path", b"/dnslb/status")]);
        h.source = Some("10.1.1.1".parse().unwrap());
        assert_eq!(run(&c, &mut m, &mut h), Verdict::Stop);
        assert_eq!(h.reply.unwrap().0, 403);
    }
}
