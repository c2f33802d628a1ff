//! The parts of `/etc/resolv.conf` the shim honours: `nameserver`, `search`/`domain` and
//! `options ndots:N`.
//!
//! hickory can read resolv.conf itself, but only behind its `system-config` feature, which
//! drags in platform crates (Windows registry, Apple frameworks, JNI). These few directives
//! are all a discovery daemon needs; timeouts and attempts are the shim's own choice.

use std::net::{IpAddr, Ipv4Addr};

pub const PATH: &str = "/etc/resolv.conf";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvConf {
    pub nameservers: Vec<IpAddr>,
    pub search: Vec<String>,
    pub ndots: Option<usize>,
}

impl Default for ResolvConf {
    /// What glibc assumes when resolv.conf is missing: the local resolver, no search list.
    fn default() -> Self {
        ResolvConf {
            nameservers: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            search: Vec::new(),
            ndots: None,
        }
    }
}

/// Parses resolv.conf leniently, as libc does: unknown or malformed lines are skipped.
pub fn parse(text: &str) -> ResolvConf {
    let mut nameservers = Vec::new();
    let mut search = Vec::new();
    let mut ndots = None;
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or_default();
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                // Link-local IPv6 servers carry a zone (`fe80::1%eth0`) that IpAddr rejects;
                // dropping such a server beats failing to start.
                if let Some(ip) = words.next().and_then(|w| w.parse::<IpAddr>().ok()) {
                    nameservers.push(ip);
                }
            }
            // The last of `domain` and `search` wins, as in glibc.
            Some("domain") => search = words.take(1).map(str::to_string).collect(),
            Some("search") => search = words.filter(|w| *w != "--").map(str::to_string).collect(),
            Some("options") => {
                for option in words {
                    if let Some(n) = option.strip_prefix("ndots:").and_then(|n| n.parse().ok()) {
                        ndots = Some(std::cmp::min(n, 15));
                    }
                }
            }
            _ => {}
        }
    }
    if nameservers.is_empty() {
        nameservers = ResolvConf::default().nameservers;
    }
    ResolvConf {
        nameservers,
        search,
        ndots,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_usual_directives() {
        let conf = parse(
            "# generated\n\
             nameserver 10.0.0.1\n\
             nameserver 2001:db8::53 # v6\n\
             nameserver fe80::1%eth0\n\
             search svc.cluster.local cluster.local\n\
             options ndots:5 timeout:1 edns0\n",
        );
        assert_eq!(
            conf.nameservers,
            vec![
                "10.0.0.1".parse::<IpAddr>().unwrap(),
                "2001:db8::53".parse::<IpAddr>().unwrap()
            ]
        );
        assert_eq!(conf.search, vec!["svc.cluster.local", "cluster.local"]);
        assert_eq!(conf.ndots, Some(5));
    }

    #[test]
    fn last_of_domain_and_search_wins() {
        assert_eq!(parse("search a b\ndomain c\n").search, vec!["c"]);
        assert_eq!(parse("domain c\nsearch a b\n").search, vec!["a", "b"]);
    }

    #[test]
    fn falls_back_to_localhost_and_caps_ndots() {
        let conf = parse("options ndots:99\n; nothing else\n");
        assert_eq!(conf.nameservers, vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]);
        assert_eq!(conf.ndots, Some(15));
        assert_eq!(parse(""), ResolvConf::default());
    }
}
