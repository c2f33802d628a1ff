//! `GET /http_sd`: every member the shim serves, as Prometheus HTTP service discovery
//! (`http_sd_configs`), so Prometheus can scrape exactly the addresses dnslb balances over.
//! Pure: a function of the memberships the snapshot is built from.
//!
//! One target group per member, its details as `__meta_dnslb_*` labels: like Prometheus'
//! own discoveries, they are for relabeling and dropped unless kept, so a member that
//! starts draining does not turn into a new series.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::member::priority_levels;
use crate::model::membership::Membership;

#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct TargetGroup {
    /// `ip:port` (`[ip]:port` for IPv6), one per group.
    pub targets: Vec<String>,
    pub labels: BTreeMap<&'static str, String>,
}

/// The upstream's cluster name (`dns+backend.test:8080`).
pub const UPSTREAM: &str = "__meta_dnslb_upstream";
/// The DNS name the address came from: the host, or the SRV target.
pub const DNS_NAME: &str = "__meta_dnslb_dns_name";
/// The Envoy priority level (0 for A records; the rank of the SRV priority).
pub const PRIORITY_LEVEL: &str = "__meta_dnslb_priority_level";
/// The SRV weight; absent for A records.
pub const WEIGHT: &str = "__meta_dnslb_weight";
/// `true` while the address is gone from DNS and drains, else `false`.
pub const DRAINING: &str = "__meta_dnslb_draining";

/// The target groups of every member of every upstream, by cluster then address.
pub fn target_groups(memberships: &BTreeMap<String, Membership>) -> Vec<TargetGroup> {
    let mut groups = Vec::new();
    for (cluster, membership) in memberships {
        let levels = priority_levels(membership.members());
        for member in membership.members() {
            let mut labels = BTreeMap::from([
                (UPSTREAM, cluster.clone()),
                (DNS_NAME, member.hostname.clone()),
                (
                    PRIORITY_LEVEL,
                    levels
                        .get(&member.priority)
                        .copied()
                        .unwrap_or(0)
                        .to_string(),
                ),
                (DRAINING, member.draining.to_string()),
            ]);
            if let Some(weight) = member.weight {
                labels.insert(WEIGHT, weight.to_string());
            }
            groups.push(TargetGroup {
                targets: vec![member.addr.to_string()],
                labels,
            });
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::member::Member;
    use crate::model::settings::UpstreamSettings;

    fn member(
        addr: &str,
        host: &str,
        priority: u16,
        weight: Option<u16>,
        draining: bool,
    ) -> Member {
        Member {
            priority,
            addr: addr.parse().unwrap(),
            hostname: host.into(),
            weight,
            draining,
        }
    }

    fn membership(members: Vec<Member>) -> Membership {
        Membership::new(members, UpstreamSettings::default(), None)
    }

    #[test]
    fn one_group_per_member_with_level_weight_and_draining() {
        let memberships = BTreeMap::from([
            (
                "dns+a.test:80".to_string(),
                membership(vec![
                    member("10.0.0.1:80", "a.test", 0, None, false),
                    member("10.0.0.2:80", "a.test", 0, None, true),
                ]),
            ),
            (
                "srv+_http._tcp.b.test".to_string(),
                membership(vec![
                    member("10.0.1.1:8080", "x.b.test", 10, Some(5), false),
                    member("[::1]:8081", "y.b.test", 20, Some(0), false),
                ]),
            ),
        ]);
        let json = serde_json::to_value(target_groups(&memberships)).unwrap();
        assert_eq!(
            json,
            serde_json::json!([
                {"targets": ["10.0.0.1:80"], "labels": {
                    "__meta_dnslb_upstream": "dns+a.test:80",
                    "__meta_dnslb_dns_name": "a.test",
                    "__meta_dnslb_priority_level": "0",
                    "__meta_dnslb_draining": "false"}},
                {"targets": ["10.0.0.2:80"], "labels": {
                    "__meta_dnslb_upstream": "dns+a.test:80",
                    "__meta_dnslb_dns_name": "a.test",
                    "__meta_dnslb_priority_level": "0",
                    "__meta_dnslb_draining": "true"}},
                {"targets": ["10.0.1.1:8080"], "labels": {
                    "__meta_dnslb_upstream": "srv+_http._tcp.b.test",
                    "__meta_dnslb_dns_name": "x.b.test",
                    "__meta_dnslb_priority_level": "0",
                    "__meta_dnslb_weight": "5",
                    "__meta_dnslb_draining": "false"}},
                {"targets": ["[::1]:8081"], "labels": {
                    "__meta_dnslb_upstream": "srv+_http._tcp.b.test",
                    "__meta_dnslb_dns_name": "y.b.test",
                    "__meta_dnslb_priority_level": "1",
                    "__meta_dnslb_weight": "0",
                    "__meta_dnslb_draining": "false"}},
            ])
        );
    }

    #[test]
    fn no_upstreams_is_an_empty_list() {
        let json = serde_json::to_string(&target_groups(&BTreeMap::new())).unwrap();
        assert_eq!(json, "[]");
    }
}
