//! The fake host and fixtures the request tests share: the decisions run
//! against it exactly as against Envoy through the glue.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::config::Config;
use crate::cookie;
use crate::members::{Member, WorkerMembership};
use crate::request::{
    on_response_headers, Pending, RequestContext, RequestHost, ResponseHost, Verdict,
};
use crate::stats::Counter;

pub(crate) const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
pub(crate) const NONCE: [u8; cookie::NONCE_LEN] = [7; cookie::NONCE_LEN];
pub(crate) const CLUSTER: &str = "dns+backend.test:8080";

/// A cookie of another upstream and one expired at 10 s, both naming
/// 127.0.0.3:8080 under [`keys`].
pub(crate) fn foreign_and_expired() -> (String, String) {
    let addr = "127.0.0.3:8080".parse().unwrap();
    let foreign = cookie::seal(&keys(), "dns+other.test:80", addr, 5_000, NONCE).unwrap();
    let expired = cookie::seal(&keys(), CLUSTER, addr, 10, NONCE).unwrap();
    (foreign, expired)
}

pub(crate) fn keys() -> cookie::Keyring {
    cookie::Keyring::new(KEY, &[])
}

#[derive(Default)]
pub(crate) struct FakeHost {
    pub(crate) headers: Vec<(String, Vec<u8>)>,
    pub(crate) reply: Option<(u32, String)>,
    pub(crate) source: Option<IpAddr>,
    pub(crate) counts: BTreeMap<&'static str, u32>,
    pub(crate) upstream: Option<String>,
    pub(crate) added: Vec<(String, String)>,
    pub(crate) refreshes: Vec<String>,
    pub(crate) now: u64,
    /// The header reads the code under test made through the host, in
    /// order; `*` for a read of all headers.
    pub(crate) reads: RefCell<Vec<String>>,
    /// Nonces drawn so far; each cookie gets the next.
    pub(crate) nonces: u8,
}

impl FakeHost {
    pub(crate) fn with(pairs: &[(&str, &[u8])]) -> Self {
        Self {
            headers: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_vec()))
                .collect(),
            source: Some("127.0.0.1".parse().unwrap()),
            now: 1_000,
            ..Self::default()
        }
    }
    pub(crate) fn header(&self, name: &str) -> Option<Vec<u8>> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
    pub(crate) fn text(&self, name: &str) -> Option<String> {
        self.header(name)
            .map(|v| String::from_utf8_lossy(&v).into_owned())
    }
    pub(crate) fn count_of(&self, c: Counter) -> u32 {
        self.counts.get(c.name()).copied().unwrap_or(0)
    }
}

impl RequestHost for FakeHost {
    fn headers(&self) -> Vec<(String, Vec<u8>)> {
        self.reads.borrow_mut().push("*".into());
        self.headers.clone()
    }
    fn header(&self, name: &str) -> Option<Vec<u8>> {
        self.reads.borrow_mut().push(name.into());
        FakeHost::header(self, name)
    }
    /// Recorded as one read: the batch is one host call where it matters.
    fn headers_named<const N: usize>(&self, names: [&str; N]) -> [Option<Vec<u8>>; N] {
        self.reads.borrow_mut().push(names.join("+"));
        names.map(|name| FakeHost::header(self, name))
    }
    fn set_header(&mut self, name: &str, value: &str) {
        self.remove_header(name);
        self.headers.push((name.into(), value.as_bytes().to_vec()));
    }
    fn remove_header(&mut self, name: &str) {
        self.headers.retain(|(k, _)| k != name);
    }
    fn respond(&mut self, status: u32, _content_type: &str, body: &str) {
        self.reply = Some((status, body.into()));
    }
    fn source_ip(&self) -> Option<IpAddr> {
        self.source
    }
    fn now(&self) -> u64 {
        self.now
    }
    fn count(&mut self, counter: Counter) {
        *self.counts.entry(counter.name()).or_default() += 1;
    }
}

impl ResponseHost for FakeHost {
    fn upstream_address(&self) -> Option<String> {
        self.reads.borrow_mut().push("upstream.address".into());
        self.upstream.clone()
    }
    fn add_header(&mut self, name: &str, value: &str) {
        self.added.push((name.into(), value.into()));
    }
    fn now(&self) -> u64 {
        self.now
    }
    fn request_refresh(&mut self, cluster: &str) {
        self.refreshes.push(cluster.into());
    }
    fn cookie_nonce(&mut self) -> Option<[u8; cookie::NONCE_LEN]> {
        self.nonces += 1;
        Some([self.nonces; cookie::NONCE_LEN])
    }
}

pub(crate) fn member(a: &str) -> Member {
    Member {
        address: a.into(),
        weight: 1,
        priority: 0,
        draining: false,
    }
}

pub(crate) fn membership() -> WorkerMembership {
    let mut m = WorkerMembership::default();
    m.replace(
        "v1".into(),
        vec![
            (
                CLUSTER.into(),
                vec![
                    member("127.0.0.2:8080"),
                    member("127.0.0.3:8080"),
                    member("127.0.0.4:8080"),
                ],
            ),
            ("dns+empty.test:80".into(), vec![]),
        ],
    );
    m
}

pub(crate) fn config(json: &str) -> Config {
    Config::from_bytes(Some(json.as_bytes())).unwrap()
}

pub(crate) fn run(
    config: &Config,
    membership: &mut WorkerMembership,
    host: &mut FakeHost,
) -> Verdict {
    RequestContext {
        config,
        membership,
        cookie_key: &keys(),
    }
    .on_request_headers(host)
}

pub(crate) fn get(authority: &[u8]) -> FakeHost {
    FakeHost::with(&[
        (":method", b"GET"),
        (":path", b"/x"),
        (":authority", authority),
    ])
}
pub(crate) fn cookie_config() -> Config {
    config(r#"{"affinity": {"mode": "cookie"}}"#)
}

pub(crate) fn respond(c: &Config, pending: &Pending, upstream: &str) -> Option<String> {
    let mut h = FakeHost::with(&[]);
    h.upstream = Some(upstream.into());
    on_response_headers(&mut h, pending, c, &keys());
    h.added.first().map(|(_, v)| v.clone())
}

pub(crate) fn cookie_value(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("dnslb=")
        .to_string()
}
