//! Per-request decisions, written against a small header trait so that the
//! glue is the only code that talks to the host.

use crate::authority;
use crate::config::Config;
use crate::members::Membership;

/// Headers the filter owns; anything a client sends under this prefix is
/// dropped before the filter looks at the request.
pub const HEADER_PREFIX: &str = "x-dnslb-";
/// Route header: `cluster_header` picks the cluster named here.
pub const CLUSTER_HEADER: &str = "x-dnslb-cluster";
/// override_host header: the pick, then the failover chain.
pub const ENDPOINT_HEADER: &str = "x-dnslb-endpoint";
pub const AUTHORITY: &str = ":authority";

/// The request-header view the decision needs from the host.
pub trait RequestHeaders {
    fn names(&self) -> Vec<String>;
    fn get(&self, name: &str) -> Option<Vec<u8>>;
    fn set(&mut self, name: &str, value: &str);
    fn remove(&mut self, name: &str);
    /// Answers locally; the request never reaches a backend.
    fn respond(&mut self, status: u32, body: &str);
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Continue,
    /// A local reply was sent.
    Stop,
}

/// Handles request headers: strips client-sent `x-dnslb-*`, and for a
/// `dns+`/`srv+` authority sets the cluster, rewrites the authority and
/// writes the round-robin pick with its failover chain.
pub fn on_request_headers(
    headers: &mut impl RequestHeaders,
    membership: &mut Membership,
    config: &Config,
) -> Verdict {
    for name in headers.names() {
        if name.to_ascii_lowercase().starts_with(HEADER_PREFIX) {
            headers.remove(&name);
        }
    }
    let Some(raw) = headers.get(AUTHORITY) else {
        return Verdict::Continue;
    };
    let Ok(text) = std::str::from_utf8(&raw) else {
        headers.respond(400, "dnslb: authority is not valid UTF-8\n");
        return Verdict::Stop;
    };
    let upstream = match authority::parse(text) {
        Ok(Some(u)) => u,
        Ok(None) => return Verdict::Continue,
        Err(e) => {
            headers.respond(400, &format!("dnslb: bad upstream: {e}\n"));
            return Verdict::Stop;
        }
    };
    headers.set(CLUSTER_HEADER, &upstream.cluster);
    headers.set(AUTHORITY, &upstream.authority);
    // Until members are known, the cluster's fallback round robin picks.
    if let Some(members) = membership.get_mut(&upstream.cluster) {
        let chain = members.next_chain(config.failover);
        if !chain.is_empty() {
            headers.set(ENDPOINT_HEADER, &chain.join(","));
        }
    }
    Verdict::Continue
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::members::Member;
    use std::collections::BTreeMap;

    #[derive(Default)]
    struct FakeHeaders {
        map: BTreeMap<String, Vec<u8>>,
        reply: Option<(u32, String)>,
    }

    impl FakeHeaders {
        fn with(pairs: &[(&str, &[u8])]) -> Self {
            Self {
                map: pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_vec()))
                    .collect(),
                reply: None,
            }
        }
        fn text(&self, name: &str) -> Option<String> {
            self.map
                .get(name)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        }
    }

    impl RequestHeaders for FakeHeaders {
        fn names(&self) -> Vec<String> {
            self.map.keys().cloned().collect()
        }
        fn get(&self, name: &str) -> Option<Vec<u8>> {
            self.map.get(name).cloned()
        }
        fn set(&mut self, name: &str, value: &str) {
            self.map.insert(name.into(), value.as_bytes().to_vec());
        }
        fn remove(&mut self, name: &str) {
            self.map.remove(name);
        }
        fn respond(&mut self, status: u32, body: &str) {
            self.reply = Some((status, body.into()));
        }
    }

    fn membership() -> Membership {
        let member = |a: &str| Member {
            address: a.into(),
            weight: 1,
            priority: 0,
            draining: false,
        };
        let mut m = Membership::default();
        m.replace(
            "v1".into(),
            vec![(
                "dns+backend.test:8080".into(),
                vec![
                    member("127.0.0.2:8080"),
                    member("127.0.0.3:8080"),
                    member("127.0.0.4:8080"),
                ],
            )],
        );
        m
    }

    fn config() -> Config {
        Config::from_bytes(None).unwrap()
    }

    #[test]
    fn dns_authority_is_routed_and_rewritten() {
        let mut h = FakeHeaders::with(&[(":authority", b"dns+backend.test:8080")]);
        let mut m = membership();
        assert_eq!(
            on_request_headers(&mut h, &mut m, &config()),
            Verdict::Continue
        );
        assert_eq!(h.text(CLUSTER_HEADER).unwrap(), "dns+backend.test:8080");
        assert_eq!(h.text(AUTHORITY).unwrap(), "backend.test:8080");
        assert_eq!(
            h.text(ENDPOINT_HEADER).unwrap(),
            "127.0.0.2:8080,127.0.0.3:8080,127.0.0.4:8080"
        );
        let mut h = FakeHeaders::with(&[(":authority", b"dns+backend.test:8080")]);
        on_request_headers(&mut h, &mut m, &config());
        assert!(h
            .text(ENDPOINT_HEADER)
            .unwrap()
            .starts_with("127.0.0.3:8080,"));
    }

    #[test]
    fn client_dnslb_headers_are_dropped() {
        let mut h = FakeHeaders::with(&[
            (":authority", b"plain.test"),
            ("x-dnslb-endpoint", b"10.9.9.9:80"),
            ("X-Dnslb-Cluster", b"evil"),
            ("x-other", b"kept"),
        ]);
        let mut m = membership();
        assert_eq!(
            on_request_headers(&mut h, &mut m, &config()),
            Verdict::Continue
        );
        assert_eq!(h.names(), vec![":authority", "x-other"]);
    }

    #[test]
    fn unknown_members_leave_the_pick_to_envoy() {
        let mut h = FakeHeaders::with(&[(":authority", b"dns+other.test:80")]);
        let mut m = membership();
        on_request_headers(&mut h, &mut m, &config());
        assert_eq!(h.text(CLUSTER_HEADER).unwrap(), "dns+other.test:80");
        assert!(h.text(ENDPOINT_HEADER).is_none());
    }

    #[test]
    fn bad_authority_gets_400_naming_the_value() {
        for bad in [
            &b"dns+backend.test:0"[..],
            b"dns+:80",
            b"srv+",
            b"dns+a\xffb:80",
        ] {
            let mut h = FakeHeaders::with(&[(":authority", bad)]);
            let mut m = membership();
            assert_eq!(on_request_headers(&mut h, &mut m, &config()), Verdict::Stop);
            let (status, body) = h.reply.clone().unwrap();
            assert_eq!(status, 400);
            assert!(body.starts_with("dnslb: "), "{body}");
            assert!(h.text(CLUSTER_HEADER).is_none());
        }
        let mut h = FakeHeaders::with(&[(":authority", b"dns+backend.test:0")]);
        on_request_headers(&mut h, &mut membership(), &config());
        assert!(h.reply.unwrap().1.contains("\"0\""));
    }
}
