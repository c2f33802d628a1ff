//! `routing: "envoy"`: Envoy does the per-request work natively. The route
//! picks the cluster by `:authority` (`cluster_header`), answers 400/404 for
//! bad or unknown names, rewrites the host from the endpoint's hostname,
//! balances, retries on other hosts (`previous_hosts`) and strips
//! client-sent `x-dnslb-*` headers before routing. The filter adds only what
//! Envoy lacks: the status path, and for cookie affinity the opaque signed
//! cookie (it names the cookie's endpoint for `override_host` and sets the
//! cookie on the response).
//!
//! Lean by design, since every host call costs a trip out of the VM: it
//! reads `:path` (in cookie mode with `:authority` and `cookie`, in one
//! host call where the host prefers that), writes at most one header, and
//! allocates nothing of its own for a request carrying a valid cookie (the
//! host's copies of the headers aside).

use std::fmt::{self, Write as _};
use std::net::SocketAddr;
use std::rc::Rc;

use crate::config::{Affinity, Config};
use crate::cookie;
use crate::members::ClusterMembers;
use crate::request::{
    self, Pending, RequestContext, RequestHost, ResponseHost, Verdict, AUTHORITY, COOKIE, PATH,
};
use crate::stats::Counter;

/// What the response of a cookie-affinity request completes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieSession {
    /// The cluster the cookie is bound to; shared with the membership.
    cluster: Rc<str>,
    /// The endpoint the request's valid cookie named and the filter sent
    /// the request to (through `override_host`).
    sticky: Option<SocketAddr>,
}

impl CookieSession {
    /// Lets the request go on, with this session for the response.
    fn proceed(cluster: Rc<str>, sticky: Option<SocketAddr>) -> Verdict {
        Verdict::Continue(Pending::session(Self { cluster, sticky }))
    }

    /// Sets the cookie when the request had no valid one, or when another
    /// endpoint answered (Envoy retried elsewhere: that is how a session
    /// fails over); then the sticky endpoint failed, so asks the control
    /// plane to re-resolve the cluster, since DNS may already know it is gone.
    pub(crate) fn on_response_headers(
        &self,
        host: &mut impl ResponseHost,
        config: &Config,
        key: &cookie::Keyring,
    ) {
        let Affinity::Cookie(settings) = &config.affinity else {
            return;
        };
        let Some(upstream) = host.upstream_address() else {
            return;
        };
        let answered = upstream.parse::<SocketAddr>().ok();
        if self.sticky == answered {
            return;
        }
        if self.sticky.is_some() {
            host.request_refresh(&self.cluster);
        }
        if let Some(addr) = answered {
            request::add_cookie(host, settings, key, &self.cluster, addr);
        }
    }
}

impl RequestContext<'_> {
    /// Request headers under `routing: "envoy"`: the status path, and in
    /// cookie mode the endpoint of a valid cookie. It sets no cluster header,
    /// rewrites no authority, sets no retry headers and removes nothing:
    /// Envoy's route does all that.
    pub(crate) fn on_request_headers_envoy(&mut self, host: &mut impl RequestHost) -> Verdict {
        host.count(Counter::Requests);
        let Affinity::Cookie(settings) = &self.config.affinity else {
            // Round robin and hash affinity are Envoy's alone: only the
            // status path is the filter's.
            if let Some(path) = host.header(PATH) {
                if let Some(verdict) = self.status_reply(host, &path) {
                    return verdict;
                }
            }
            return Verdict::Continue(Pending::default());
        };
        let [path, authority, cookie_header] = host.headers_named([PATH, AUTHORITY, COOKIE]);
        if let Some(path) = path {
            if let Some(verdict) = self.status_reply(host, &path) {
                return verdict;
            }
        }
        let Some(authority) = authority else {
            return Verdict::Continue(Pending::default());
        };
        let Some((cluster, members)) = self.routed_cluster(&authority) else {
            return Verdict::Continue(Pending::default());
        };
        let sticky = match cookie_header {
            None => None,
            Some(header) => {
                // Checked as UTF-8 first: the lossy conversion walks the
                // value chunk by chunk even when it is valid.
                let header = match std::str::from_utf8(&header) {
                    Ok(text) => std::borrow::Cow::Borrowed(text),
                    Err(_) => String::from_utf8_lossy(&header),
                };
                match request::read_cookie(host, &header, &cluster, settings, self.cookie_key) {
                    Ok(sticky) => sticky,
                    Err(replied) => return replied.into(),
                }
            }
        };
        let Some(addr) = sticky else {
            // Envoy picks; the response names the endpoint that answered.
            host.count(Counter::AffinityMisses);
            return CookieSession::proceed(cluster, None);
        };
        let endpoint = &self.config.endpoint_header;
        match members.map(|m| m.member_at(addr)) {
            // A member, draining ones too, so sessions finish where they are.
            Some(Some(member)) => host.override_host(endpoint, &member.address),
            // It left DNS and its drain period: a new pick, or 503 if strict.
            Some(None) => {
                host.count(Counter::AffinityFailovers);
                if settings.strict {
                    let why = format!(
                        "the affinity endpoint of {cluster} is gone; retry without the cookie"
                    );
                    return request::reply(host, Counter::NoMembers, 503, why).into();
                }
                return CookieSession::proceed(cluster, None);
            }
            // Members not known yet: trust the signed cookie; override_host
            // skips an address that is not a member.
            None => {
                let mut text = AddressText::new();
                if write!(text, "{addr}").is_err() {
                    return CookieSession::proceed(cluster, None);
                }
                host.override_host(endpoint, text.as_str());
            }
        }
        host.count(Counter::AffinityHits);
        host.count(Counter::PicksCookie);
        CookieSession::proceed(cluster, Some(addr))
    }

    /// The cluster Envoy routed the request to, with its members when known:
    /// a `dns+`/`srv+` authority is the cluster's name (`cluster_header`
    /// matches it exactly); another authority counts only if it is an alias.
    fn routed_cluster(&self, authority: &[u8]) -> Option<(Rc<str>, Option<&ClusterMembers>)> {
        let text = std::str::from_utf8(authority).ok()?;
        let name = if text.starts_with("dns+") || text.starts_with("srv+") {
            text
        } else if text.bytes().any(|b| b.is_ascii_uppercase()) {
            self.config.aliases.get(&text.to_ascii_lowercase())?
        } else {
            self.config.aliases.get(text)?
        };
        Some(match self.membership.get_shared(name) {
            Some((shared, members)) => (Rc::clone(shared), Some(members)),
            // Before the first EDS update, or a cluster the update lacks.
            None => (Rc::from(name), None),
        })
    }
}

/// `ip:port` formatted on the stack: `[v6]:port` takes at most 47 bytes.
struct AddressText {
    bytes: [u8; 64],
    len: usize,
}

impl AddressText {
    fn new() -> Self {
        Self {
            bytes: [0; 64],
            len: 0,
        }
    }

    fn as_str(&self) -> &str {
        self.bytes
            .get(..self.len)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or_default()
    }
}

impl fmt::Write for AddressText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let room = self.bytes.get_mut(self.len..end).ok_or(fmt::Error)?;
        room.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::members::WorkerMembership;
    use crate::request::on_response_headers;
    use crate::test_support::*;
    // The same tests run natively and, under Node, compiled to wasm32.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const ENVOY_COOKIE: &str = r#"{"routing": "envoy", "affinity": {"mode": "cookie"}}"#;

    fn reads(h: &FakeHost) -> Vec<String> {
        h.reads.borrow().clone()
    }

    fn with_cookie(authority: &str, value: &str) -> FakeHost {
        let mut h = get(authority.as_bytes());
        h.headers
            .push(("cookie".into(), format!("a=b; dnslb={value}").into_bytes()));
        h
    }

    fn sealed(address: &str) -> String {
        cookie::seal(&keys(), CLUSTER, address.parse().unwrap(), 5_000, NONCE).unwrap()
    }

    #[test]
    fn round_robin_and_hash_leave_the_request_to_envoy() {
        for json in [
            r#"{"routing": "envoy"}"#,
            r#"{"routing": "envoy", "affinity": {"mode": "hash", "key": "header:x-user"}}"#,
        ] {
            let c = config(json);
            let mut h = get(CLUSTER.as_bytes());
            h.headers.push(("x-user".into(), b"alice".to_vec()));
            let before = h.headers.clone();
            let Verdict::Continue(pending) = run(&c, &mut membership(), &mut h) else {
                panic!("{json}")
            };
            assert_eq!(h.headers, before, "{json}: nothing set or removed");
            assert_eq!(reads(&h), [":path"], "{json}");
            assert_eq!(h.counts.len(), 1, "{json}: {:?}", h.counts);
            assert_eq!(h.count_of(Counter::Requests), 1);
            // Nothing for the response either: not even the upstream is read.
            let mut r = FakeHost::with(&[]);
            on_response_headers(&mut r, &pending, &c, &keys());
            assert!(r.added.is_empty() && r.refreshes.is_empty());
            assert!(reads(&r).is_empty(), "{:?}", reads(&r));
        }
    }

    #[test]
    fn status_path_is_answered_in_every_mode() {
        for json in [r#"{"routing": "envoy"}"#, ENVOY_COOKIE] {
            let c = config(json);
            let mut h = FakeHost::with(&[(":path", b"/dnslb/status"), (":authority", b"any")]);
            assert_eq!(run(&c, &mut membership(), &mut h), Verdict::Stop);
            let (status, body) = h.reply.clone().unwrap();
            assert_eq!(status, 200, "{json}");
            assert!(body.contains(CLUSTER), "{body}");
            // Cookie mode reads the headers it may need in one batch.
            let read = if json == ENVOY_COOKIE {
                ":path+:authority+cookie"
            } else {
                ":path"
            };
            assert_eq!(reads(&h), [read]);
            let mut h = FakeHost::with(&[(":path", b"/dnslb/status?pretty")]);
            h.source = Some("10.1.1.1".parse().unwrap());
            assert_eq!(run(&c, &mut membership(), &mut h), Verdict::Stop);
            assert_eq!(h.reply.unwrap().0, 403);
        }
    }

    #[test]
    fn a_valid_cookie_names_just_its_endpoint() {
        let c = config(ENVOY_COOKIE);
        let mut m = membership();
        // No cookie: Envoy picks, the response names whoever answered.
        let mut h = get(CLUSTER.as_bytes());
        let before = h.headers.clone();
        let Verdict::Continue(pending) = run(&c, &mut m, &mut h) else {
            panic!()
        };
        assert_eq!(h.headers, before);
        assert_eq!(reads(&h), [":path+:authority+cookie"]);
        assert_eq!(h.count_of(Counter::AffinityMisses), 1);
        let set = respond(&c, &pending, "127.0.0.3:8080").unwrap();
        assert!(set.contains("HttpOnly; SameSite=Lax"), "{set}");
        let value = cookie_value(&set);

        for _ in 0..3 {
            let mut h = with_cookie(CLUSTER, &value);
            let Verdict::Continue(pending) = run(&c, &mut m, &mut h) else {
                panic!()
            };
            // One endpoint, no chain; nothing else written.
            assert_eq!(h.text("x-dnslb-endpoint").unwrap(), "127.0.0.3:8080");
            assert_eq!(h.headers.len(), 5, "{:?}", h.headers);
            assert_eq!(h.text("x-dnslb-cluster"), None);
            assert_eq!(h.text(AUTHORITY).unwrap(), CLUSTER);
            assert_eq!(reads(&h), [":path+:authority+cookie"]);
            assert_eq!(h.count_of(Counter::AffinityHits), 1);
            assert_eq!(h.count_of(Counter::PicksCookie), 1);
            assert_eq!(h.count_of(Counter::Rewrites), 0);
            // The sticky endpoint answered: no new cookie, no refresh.
            let mut r = FakeHost::with(&[]);
            r.upstream = Some("127.0.0.3:8080".into());
            on_response_headers(&mut r, &pending, &c, &keys());
            assert!(r.added.is_empty() && r.refreshes.is_empty());
            // Envoy retried on another host: the cookie follows it, and the
            // cluster is re-resolved.
            let mut r = FakeHost::with(&[]);
            r.upstream = Some("127.0.0.4:8080".into());
            on_response_headers(&mut r, &pending, &c, &keys());
            assert_eq!(r.refreshes, [CLUSTER]);
            let moved = cookie_value(&r.added[0].1);
            assert_eq!(
                cookie::open(&keys(), CLUSTER, &moved, 1_000),
                Ok("127.0.0.4:8080".parse().unwrap())
            );
        }
    }

    #[test]
    fn draining_members_keep_sessions_and_gone_ones_fail_over() {
        let c = config(ENVOY_COOKIE);
        let mut draining = member("127.0.0.3:8080");
        draining.draining = true;
        let mut m = WorkerMembership::default();
        m.replace(
            "v2".into(),
            vec![(CLUSTER.into(), vec![member("127.0.0.2:8080"), draining])],
        );
        let mut h = with_cookie(CLUSTER, &sealed("127.0.0.3:8080"));
        run(&c, &mut m, &mut h);
        assert_eq!(h.text("x-dnslb-endpoint").unwrap(), "127.0.0.3:8080");

        // Gone: nothing named, counted; the response sets a new cookie.
        let mut h = with_cookie(CLUSTER, &sealed("127.0.0.9:8080"));
        let Verdict::Continue(pending) = run(&c, &mut m, &mut h) else {
            panic!()
        };
        assert_eq!(h.text("x-dnslb-endpoint"), None);
        assert_eq!(h.count_of(Counter::AffinityFailovers), 1);
        assert_eq!(h.count_of(Counter::AffinityHits), 0);
        assert!(respond(&c, &pending, "127.0.0.2:8080").is_some());

        let strict =
            config(r#"{"routing": "envoy", "affinity": {"mode": "cookie", "strict": true}}"#);
        let mut h = with_cookie(CLUSTER, &sealed("127.0.0.9:8080"));
        assert_eq!(run(&strict, &mut m, &mut h), Verdict::Stop);
        let (status, body) = h.reply.unwrap();
        assert_eq!(status, 503);
        assert!(body.contains("retry without the cookie"), "{body}");
        // Strict, but still a member: served.
        let mut h = with_cookie(CLUSTER, &sealed("127.0.0.2:8080"));
        assert!(matches!(run(&strict, &mut m, &mut h), Verdict::Continue(_)));
    }

    #[test]
    fn before_membership_is_known_the_cookie_is_trusted() {
        let c = config(
            r#"{"routing": "envoy", "headers": {"endpoint": "x-pick"},
                "affinity": {"mode": "cookie", "strict": true}}"#,
        );
        for address in ["127.0.0.9:8080", "[2001:db8::1]:8080"] {
            let value = sealed(address);
            // No EDS update yet, or one without this cluster.
            for mut m in [WorkerMembership::default(), membership()] {
                let authority = "dns+new.test:8080";
                let value = if m.received() {
                    cookie::seal(&keys(), authority, address.parse().unwrap(), 5_000, NONCE)
                        .unwrap()
                } else {
                    value.clone()
                };
                let name = if m.received() { authority } else { CLUSTER };
                let mut h = with_cookie(name, &value);
                assert!(matches!(run(&c, &mut m, &mut h), Verdict::Continue(_)));
                assert_eq!(h.text("x-pick").unwrap(), address);
                assert_eq!(h.count_of(Counter::AffinityHits), 1);
            }
        }
    }

    #[test]
    fn aliases_bind_the_cookie_to_their_upstream() {
        let c = config(
            r#"{"routing": "envoy", "aliases": {"backend:8080": "dns+backend.test:8080"},
                "affinity": {"mode": "cookie"}}"#,
        );
        let mut m = membership();
        for authority in ["backend:8080", "Backend:8080"] {
            let mut h = with_cookie(authority, &sealed("127.0.0.4:8080"));
            run(&c, &mut m, &mut h);
            assert_eq!(h.text("x-dnslb-endpoint").unwrap(), "127.0.0.4:8080");
            assert_eq!(h.text(AUTHORITY).unwrap(), authority, "not rewritten");
        }
        // Another plain authority is not dnslb's: the cookie is not read.
        let mut h = with_cookie("plain.test", &sealed("127.0.0.4:8080"));
        let Verdict::Continue(pending) = run(&c, &mut m, &mut h) else {
            panic!()
        };
        assert_eq!(pending, Pending::default());
        // Read in the one batch, but not opened.
        assert_eq!(reads(&h), [":path+:authority+cookie"]);
        assert_eq!(h.count_of(Counter::AffinityMisses), 0);
        assert_eq!(h.text("x-dnslb-endpoint"), None);
    }

    #[test]
    fn bad_cookies_are_ignored_or_refused_as_in_filter_routing() {
        let c = config(ENVOY_COOKIE);
        let mut m = membership();
        let (foreign, expired) = foreign_and_expired();
        for bad in ["garbage", foreign.as_str(), expired.as_str()] {
            let mut h = with_cookie(CLUSTER, bad);
            let Verdict::Continue(pending) = run(&c, &mut m, &mut h) else {
                panic!("{bad}")
            };
            assert_eq!(h.text("x-dnslb-endpoint"), None, "{bad}");
            assert_eq!(h.count_of(Counter::CookiesRejected), 1, "{bad}");
            assert_eq!(h.count_of(Counter::AffinityMisses), 1, "{bad}");
            assert!(respond(&c, &pending, "127.0.0.2:8080").is_some(), "{bad}");
        }
        let mut h = with_cookie(CLUSTER, "a; dnslb=b");
        assert_eq!(run(&c, &mut m, &mut h), Verdict::Stop);
        assert!(h.reply.unwrap().1.contains("more than once"));
        let mut h = with_cookie(CLUSTER, &"A".repeat(2000));
        assert_eq!(run(&c, &mut m, &mut h), Verdict::Stop);
        let (status, body) = h.reply.unwrap();
        assert!(status == 400 && body.contains("oversized"), "{body}");
        // A cookie header that is not UTF-8 is read leniently, as before.
        let mut h = get(CLUSTER.as_bytes());
        let mut raw = format!("dnslb={}; x=", sealed("127.0.0.2:8080")).into_bytes();
        raw.push(0xff);
        h.headers.push(("cookie".into(), raw));
        run(&c, &mut m, &mut h);
        assert_eq!(h.text("x-dnslb-endpoint").unwrap(), "127.0.0.2:8080");
    }

    #[test]
    fn address_text_fits_any_socket_address() {
        for a in [
            "1.2.3.4:5",
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
        ] {
            let addr: SocketAddr = a.parse().unwrap();
            let mut text = AddressText::new();
            write!(text, "{addr}").unwrap();
            assert_eq!(text.as_str(), a);
        }
        let mut text = AddressText::new();
        assert!(text.write_str(&"x".repeat(65)).is_err());
    }
}
