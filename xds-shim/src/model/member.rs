//! Members: the endpoints one DNS answer yields, before they become Envoy resources. Pure.
//!
//! `dns+HOST:PORT`: each A (and with `--ipv6` AAAA) record on PORT, priority 0, no weight.
//! `srv+NAME`: each SRV record's target resolved to its addresses, each on the record's
//! port, carrying the record's priority and weight. An address reached through several
//! records keeps the one with the lowest priority (then the highest weight), so Envoy sees
//! each address once.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

/// One SRV record's data (RFC 2782); `target` lowercased, without the root dot.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SrvRecord {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    pub target: String,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Member {
    /// The SRV priority value (0 for A records). Envoy priority levels are the ranks of the
    /// distinct values, computed when the resources are built.
    pub priority: u16,
    pub addr: SocketAddr,
    /// The DNS name the address came from: the host, or the SRV target.
    pub hostname: String,
    /// The SRV weight; `None` for A records (Envoy's default weight).
    pub weight: Option<u16>,
    /// Gone from DNS, kept for a while so sticky sessions can finish.
    pub draining: bool,
}

/// Members of a `dns+` upstream from its A records.
pub fn from_a(host: &str, port: u16, ips: &[IpAddr]) -> Vec<Member> {
    canonical(ips.iter().map(|ip| Member {
        priority: 0,
        addr: SocketAddr::new(*ip, port),
        hostname: host.to_string(),
        weight: None,
        draining: false,
    }))
}

/// Members of a `srv+` upstream: `targets` holds the addresses of each target that
/// resolved (targets without addresses contribute nothing).
pub fn from_srv(records: &[SrvRecord], targets: &BTreeMap<String, Vec<IpAddr>>) -> Vec<Member> {
    canonical(records.iter().flat_map(|record| {
        let ips = targets.get(&record.target).map_or(&[][..], Vec::as_slice);
        ips.iter().map(move |ip| Member {
            priority: record.priority,
            addr: SocketAddr::new(*ip, record.port),
            hostname: record.target.clone(),
            weight: Some(record.weight),
            draining: false,
        })
    }))
}

/// Envoy priority levels by SRV priority value: the ranks of the distinct values (lowest
/// value = level 0), so `10, 20` and `0, 1` give the same levels. What the cluster's
/// localities, `/status` and `/http_sd` show.
pub fn priority_levels<'a>(members: impl IntoIterator<Item = &'a Member>) -> BTreeMap<u16, u32> {
    let priorities: std::collections::BTreeSet<u16> =
        members.into_iter().map(|m| m.priority).collect();
    priorities.into_iter().zip(0u32..).collect()
}

/// One member per address (lowest priority, then highest weight wins), sorted by
/// (priority, address) so equal answers give equal bytes.
pub fn canonical(members: impl Iterator<Item = Member>) -> Vec<Member> {
    let mut by_addr: BTreeMap<SocketAddr, Member> = BTreeMap::new();
    for member in members {
        match by_addr.get(&member.addr) {
            Some(kept)
                if (kept.priority, std::cmp::Reverse(kept.weight))
                    <= (member.priority, std::cmp::Reverse(member.weight)) => {}
            _ => {
                by_addr.insert(member.addr, member);
            }
        }
    }
    let mut members: Vec<Member> = by_addr.into_values().collect();
    members.sort_unstable();
    members
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srv(priority: u16, weight: u16, port: u16, target: &str) -> SrvRecord {
        SrvRecord {
            priority,
            weight,
            port,
            target: target.into(),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_records_become_sorted_members_on_the_port() {
        let members = from_a("b.test", 80, &[ip("10.0.0.2"), ip("10.0.0.1")]);
        let addrs: Vec<String> = members.iter().map(|m| m.addr.to_string()).collect();
        assert_eq!(addrs, ["10.0.0.1:80", "10.0.0.2:80"]);
        assert!(members
            .iter()
            .all(|m| m.hostname == "b.test" && m.weight.is_none()));
    }

    #[test]
    fn srv_pairs_each_target_address_with_the_record_port() {
        let records = [
            srv(10, 5, 8080, "a.test"),
            srv(10, 5, 8081, "a.test"), // same target, second port (Consul style)
            srv(20, 0, 9090, "b.test"),
            srv(10, 1, 7070, "gone.test"), // target without addresses
        ];
        let targets = BTreeMap::from([
            ("a.test".to_string(), vec![ip("10.0.0.1"), ip("10.0.0.2")]),
            ("b.test".to_string(), vec![ip("10.0.0.3")]),
        ]);
        let members = from_srv(&records, &targets);
        let got: Vec<(u16, String, &str, Option<u16>)> = members
            .iter()
            .map(|m| {
                (
                    m.priority,
                    m.addr.to_string(),
                    m.hostname.as_str(),
                    m.weight,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (10, "10.0.0.1:8080".into(), "a.test", Some(5)),
                (10, "10.0.0.1:8081".into(), "a.test", Some(5)),
                (10, "10.0.0.2:8080".into(), "a.test", Some(5)),
                (10, "10.0.0.2:8081".into(), "a.test", Some(5)),
                (20, "10.0.0.3:9090".into(), "b.test", Some(0)),
            ]
        );
    }

    #[test]
    fn one_member_per_address_lowest_priority_first() {
        let records = [srv(20, 9, 80, "x.test"), srv(10, 1, 80, "y.test")];
        let targets = BTreeMap::from([
            ("x.test".to_string(), vec![ip("10.0.0.1")]),
            ("y.test".to_string(), vec![ip("10.0.0.1")]),
        ]);
        let members = from_srv(&records, &targets);
        assert_eq!(members.len(), 1);
        assert_eq!((members[0].priority, members[0].weight), (10, Some(1)));
        assert_eq!(members[0].hostname, "y.test");
    }
}
