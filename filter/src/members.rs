//! What this worker knows about each cluster's members, and round-robin picks.
//!
//! Each Envoy worker has its own VM, so this state is per worker: with
//! `--concurrency 1`, k*n requests over n members give exactly k to each.

use std::collections::HashMap;

/// One member of a cluster, as the control plane described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// `ip:port` (`[v6]:port`), the form Envoy's override_host matches.
    pub address: String,
    pub weight: u32,
    pub priority: u32,
    pub draining: bool,
}

/// Members of one cluster, in a stable order, plus the round-robin cursor.
#[derive(Debug, Clone, Default)]
pub struct ClusterMembers {
    /// Sorted by (priority, address) so every worker sees the same order.
    members: Vec<Member>,
    cursor: usize,
}

impl ClusterMembers {
    pub fn new(mut members: Vec<Member>) -> Self {
        members.sort_by(|a, b| (a.priority, &a.address).cmp(&(b.priority, &b.address)));
        members.dedup_by(|a, b| a.address == b.address);
        Self { members, cursor: 0 }
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Picks the next member in round-robin order and returns it followed by
    /// up to `failover` further distinct members (the retry chain), or an
    /// empty list when no member is eligible.
    pub fn next_chain(&mut self, failover: usize) -> Vec<&str> {
        let eligible = eligible(&self.members);
        if eligible.is_empty() {
            return Vec::new();
        }
        let start = self.cursor % eligible.len();
        self.cursor = (start + 1) % eligible.len();
        eligible
            .iter()
            .cycle()
            .skip(start)
            .take(eligible.len().min(failover + 1))
            .map(|m| m.address.as_str())
            .collect()
    }
}

/// The members new picks may go to: not draining, in the lowest priority
/// level that has any.
fn eligible(members: &[Member]) -> Vec<&Member> {
    let level = members
        .iter()
        .filter(|m| !m.draining)
        .map(|m| m.priority)
        .min();
    members
        .iter()
        .filter(|m| !m.draining && Some(m.priority) == level)
        .collect()
}

/// Members of every cluster the control plane serves.
#[derive(Debug, Default)]
pub struct Membership {
    clusters: HashMap<String, ClusterMembers>,
    /// Version of the last accepted update; empty before the first one.
    version: String,
}

impl Membership {
    /// Replaces the whole set (xDS state of the world). A cluster whose member
    /// list is unchanged keeps its cursor, so an unrelated update does not
    /// restart its rotation.
    pub fn replace(&mut self, version: String, clusters: Vec<(String, Vec<Member>)>) {
        let mut next = HashMap::with_capacity(clusters.len());
        for (name, members) in clusters {
            let fresh = ClusterMembers::new(members);
            let kept = match self.clusters.remove(&name) {
                Some(old) if old.members == fresh.members => old,
                _ => fresh,
            };
            next.insert(name, kept);
        }
        self.clusters = next;
        self.version = version;
    }

    pub fn get_mut(&mut self, cluster: &str) -> Option<&mut ClusterMembers> {
        self.clusters.get_mut(cluster)
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn len(&self) -> usize {
        self.clusters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clusters.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(address: &str) -> Member {
        Member {
            address: address.into(),
            weight: 1,
            priority: 0,
            draining: false,
        }
    }

    #[test]
    fn round_robin_is_exact() {
        let mut c = ClusterMembers::new(vec![m("10.0.0.3:80"), m("10.0.0.1:80"), m("10.0.0.2:80")]);
        let mut counts = HashMap::new();
        for _ in 0..30 {
            let chain = c.next_chain(0);
            *counts.entry(chain[0].to_string()).or_insert(0) += 1;
        }
        assert_eq!(counts.len(), 3);
        assert!(counts.values().all(|&n| n == 10), "{counts:?}");
    }

    #[test]
    fn chain_lists_next_distinct_members() {
        let mut c = ClusterMembers::new(vec![m("a:1"), m("b:1"), m("c:1")]);
        assert_eq!(c.next_chain(2), vec!["a:1", "b:1", "c:1"]);
        assert_eq!(c.next_chain(2), vec!["b:1", "c:1", "a:1"]);
        assert_eq!(c.next_chain(5), vec!["c:1", "a:1", "b:1"]);
        assert_eq!(c.next_chain(1), vec!["a:1", "b:1"]);
    }

    #[test]
    fn draining_and_higher_priorities_are_skipped() {
        let mut d = m("b:1");
        d.draining = true;
        let mut backup = m("z:1");
        backup.priority = 1;
        let mut c = ClusterMembers::new(vec![m("a:1"), d, backup.clone()]);
        for _ in 0..3 {
            assert_eq!(c.next_chain(3), vec!["a:1"]);
        }
        let mut only_backup = ClusterMembers::new(vec![backup]);
        assert_eq!(only_backup.next_chain(0), vec!["z:1"]);
        let mut none = ClusterMembers::new(vec![]);
        assert!(none.next_chain(2).is_empty());
    }

    #[test]
    fn unchanged_cluster_keeps_its_cursor() {
        let mut ms = Membership::default();
        ms.replace("1".into(), vec![("x".into(), vec![m("a:1"), m("b:1")])]);
        assert_eq!(ms.get_mut("x").unwrap().next_chain(0), vec!["a:1"]);
        ms.replace(
            "2".into(),
            vec![
                ("x".into(), vec![m("b:1"), m("a:1")]),
                ("y".into(), vec![m("c:1")]),
            ],
        );
        assert_eq!(ms.get_mut("x").unwrap().next_chain(0), vec!["b:1"]);
        assert_eq!(ms.version(), "2");
        assert_eq!(ms.len(), 2);
        ms.replace("3".into(), vec![]);
        assert!(ms.get_mut("x").is_none());
    }
}
