//! What this worker knows about each cluster's members, and the picks:
//! smooth weighted round robin, rendezvous hashing, and failover chains.
//!
//! Each Envoy worker has its own VM, so this state is per worker: with
//! `--concurrency 1`, k*n requests over n equal members give exactly k each.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;

/// One member of a cluster, as the control plane described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// `ip:port` (`[v6]:port`), the form Envoy's override_host matches.
    pub address: String,
    pub weight: u32,
    pub priority: u32,
    pub draining: bool,
}

impl Member {
    /// Envoy requires weights of at least 1; so does the arithmetic here.
    fn weight(&self) -> i64 {
        i64::from(self.weight.max(1))
    }
}

/// Members of one cluster in a stable order, with round-robin state.
#[derive(Debug, Clone, Default)]
pub struct ClusterMembers {
    /// Sorted by (priority, address) so every worker sees the same order.
    members: Vec<Member>,
    /// Smooth weighted round robin's running weights, parallel to `members`.
    current: Vec<i64>,
    /// Member addresses parsed and sorted, with their index in `members`:
    /// a cookie's endpoint is found in O(log n), without formatting it.
    by_addr: Vec<(SocketAddr, usize)>,
}

impl ClusterMembers {
    pub fn new(mut members: Vec<Member>) -> Self {
        members.sort_by(|a, b| (a.priority, &a.address).cmp(&(b.priority, &b.address)));
        members.dedup_by(|a, b| a.address == b.address);
        let current = vec![0; members.len()];
        let mut by_addr: Vec<_> = members
            .iter()
            .enumerate()
            .filter_map(|(i, m)| Some((m.address.parse::<SocketAddr>().ok()?, i)))
            .collect();
        by_addr.sort_unstable();
        Self {
            members,
            current,
            by_addr,
        }
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Indices new picks may go to: not draining, in the lowest priority
    /// level that has any.
    fn eligible(&self) -> Vec<usize> {
        let level = self
            .members
            .iter()
            .filter(|m| !m.draining)
            .map(|m| m.priority)
            .min();
        (0..self.members.len())
            .filter(|&i| !self.members[i].draining && Some(self.members[i].priority) == level)
            .collect()
    }

    pub fn has_eligible(&self) -> bool {
        self.members.iter().any(|m| !m.draining)
    }

    /// The member at `address`, if any.
    pub fn find(&self, address: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.address == address)
    }

    /// The member at `addr` (draining ones included), in O(log n).
    pub fn member_at(&self, addr: SocketAddr) -> Option<&Member> {
        let found = self.by_addr.binary_search_by_key(&addr, |(a, _)| *a).ok()?;
        let (_, index) = self.by_addr.get(found)?;
        self.members.get(*index)
    }

    /// Picks the next member by smooth weighted round robin (nginx's: equal
    /// weights give plain rotation, unequal ones interleave) and returns it
    /// followed by up to `failover` further distinct members; empty when no
    /// member is eligible.
    pub fn next_chain(&mut self, failover: usize) -> Vec<&str> {
        let eligible = self.eligible();
        let total: i64 = eligible.iter().map(|&i| self.members[i].weight()).sum();
        let mut best: Option<usize> = None;
        for &i in &eligible {
            self.current[i] += self.members[i].weight();
            if best.is_none_or(|b| self.current[i] > self.current[b]) {
                best = Some(i);
            }
        }
        let Some(pick) = best else {
            return Vec::new();
        };
        self.current[pick] -= total;
        self.chain_from(pick, failover)
    }

    /// `first`, then the members a retry should try next: the rest of its
    /// priority level in stable order after it, then the higher levels.
    /// Draining members never serve as failover.
    pub fn chain_from(&self, first: usize, failover: usize) -> Vec<&str> {
        let n = self.members.len();
        let level = self.members.get(first).map(|m| m.priority);
        let same_level = (1..n)
            .map(|k| (first + k) % n)
            .filter(|&i| Some(self.members[i].priority) == level);
        let others = (0..n).filter(|&i| Some(self.members[i].priority) != level);
        std::iter::once(first)
            .chain(
                same_level
                    .chain(others)
                    .filter(|&i| !self.members[i].draining),
            )
            .filter(|&i| i < n)
            .take(failover + 1)
            .map(|i| self.members[i].address.as_str())
            .collect()
    }

    /// The chain for a sticky endpoint: it first, then its failover chain.
    pub fn chain_for(&self, address: &str, failover: usize) -> Option<Vec<&str>> {
        let index = self.members.iter().position(|m| m.address == address)?;
        Some(self.chain_from(index, failover))
    }

    /// Rendezvous (highest random weight) hashing over the eligible members:
    /// the same key keeps its member while that member stays, and removing
    /// one of n members moves only the keys it had (about 1/n). The chain
    /// continues with the key's next-best members, so retries are stable too.
    pub fn hash_chain(&self, key: &[u8], failover: usize) -> Vec<&str> {
        let key_hash = fnv1a(key);
        let mut scored: Vec<(f64, usize)> = self
            .eligible()
            .into_iter()
            .map(|i| {
                let m = &self.members[i];
                let h = mix(key_hash ^ fnv1a(m.address.as_bytes()));
                // Weighted HRW: score = -w / ln(u), u uniform in (0, 1).
                let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
                (-(m.weight() as f64) / u.ln(), i)
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        scored
            .iter()
            .take(failover + 1)
            .map(|&(_, i)| self.members[i].address.as_str())
            .collect()
    }
}

/// FNV-1a, 64 bit: stable across builds and workers, unlike std's hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// splitmix64's finalizer: spreads FNV's weak low bits.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One worker's copy of the members of every cluster the control plane
/// serves, with its own round-robin state (so never shared between threads;
/// xds-shim's `model::Membership` is one upstream's canonical member set).
#[derive(Debug, Default)]
pub struct WorkerMembership {
    /// Names are shared so that a request can keep its cluster's name until
    /// the response without copying it.
    clusters: HashMap<Rc<str>, ClusterMembers>,
    /// Version of the last accepted update; empty before the first one.
    version: String,
    /// Whether any update arrived: before it, no cluster is known.
    received: bool,
}

impl WorkerMembership {
    /// Replaces the whole set (xDS state of the world). A cluster whose member
    /// list is unchanged keeps its round-robin state, so an unrelated update
    /// does not restart its rotation.
    pub fn replace(&mut self, version: String, clusters: Vec<(String, Vec<Member>)>) {
        let mut next = HashMap::with_capacity(clusters.len());
        for (name, members) in clusters {
            let fresh = ClusterMembers::new(members);
            let kept = match self.clusters.remove(name.as_str()) {
                Some(old) if old.members == fresh.members => old,
                _ => fresh,
            };
            next.insert(Rc::from(name), kept);
        }
        self.clusters = next;
        self.version = version;
        self.received = true;
    }

    pub fn get(&self, cluster: &str) -> Option<&ClusterMembers> {
        self.clusters.get(cluster)
    }

    pub fn get_mut(&mut self, cluster: &str) -> Option<&mut ClusterMembers> {
        self.clusters.get_mut(cluster)
    }

    /// The cluster's shared name with its members.
    pub fn get_shared(&self, cluster: &str) -> Option<(&Rc<str>, &ClusterMembers)> {
        self.clusters.get_key_value(cluster)
    }

    /// All clusters, sorted by name.
    pub fn clusters(&self) -> Vec<(&str, &ClusterMembers)> {
        let mut all: Vec<_> = self.clusters.iter().map(|(k, v)| (&**k, v)).collect();
        all.sort_by(|a, b| a.0.cmp(b.0));
        all
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn received(&self) -> bool {
        self.received
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
    // The same tests run natively and, under Node, compiled to wasm32.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn m(address: &str) -> Member {
        Member {
            address: address.into(),
            weight: 1,
            priority: 0,
            draining: false,
        }
    }

    fn weighted(address: &str, weight: u32) -> Member {
        Member {
            weight,
            ..m(address)
        }
    }

    fn first_picks(c: &mut ClusterMembers, n: usize) -> HashMap<String, u32> {
        let mut counts = HashMap::new();
        for _ in 0..n {
            let chain = c.next_chain(0);
            *counts.entry(chain[0].to_string()).or_insert(0) += 1;
        }
        counts
    }

    #[test]
    fn round_robin_is_exact() {
        let mut c = ClusterMembers::new(vec![m("10.0.0.3:80"), m("10.0.0.1:80"), m("10.0.0.2:80")]);
        let counts = first_picks(&mut c, 30);
        assert_eq!(counts.len(), 3);
        assert!(counts.values().all(|&n| n == 10), "{counts:?}");
    }

    #[test]
    fn equal_weights_rotate_in_order() {
        let mut c = ClusterMembers::new(vec![m("a:1"), m("b:1"), m("c:1")]);
        assert_eq!(c.next_chain(2), vec!["a:1", "b:1", "c:1"]);
        assert_eq!(c.next_chain(2), vec!["b:1", "c:1", "a:1"]);
        assert_eq!(c.next_chain(5), vec!["c:1", "a:1", "b:1"]);
        assert_eq!(c.next_chain(1), vec!["a:1", "b:1"]);
    }

    #[test]
    fn weights_are_proportional_and_smooth() {
        let mut c = ClusterMembers::new(vec![
            weighted("a:1", 5),
            weighted("b:1", 1),
            weighted("c:1", 1),
        ]);
        let seq: Vec<String> = (0..7).map(|_| c.next_chain(0)[0].to_string()).collect();
        // nginx's smooth sequence for 5:1:1 never sends b or c twice in a row.
        assert_eq!(seq, ["a:1", "a:1", "b:1", "a:1", "c:1", "a:1", "a:1"]);
        let counts = first_picks(&mut c, 700);
        assert_eq!(
            (counts["a:1"], counts["b:1"], counts["c:1"]),
            (500, 100, 100)
        );
    }

    #[test]
    fn draining_and_higher_priorities_are_skipped() {
        let mut d = m("b:1");
        d.draining = true;
        let mut backup = m("z:1");
        backup.priority = 1;
        let mut c = ClusterMembers::new(vec![m("a:1"), d, backup.clone()]);
        for _ in 0..3 {
            // Failover goes to the backup level; never to the draining member.
            assert_eq!(c.next_chain(3), vec!["a:1", "z:1"]);
        }
        assert_eq!(c.chain_for("b:1", 2).unwrap(), vec!["b:1", "a:1", "z:1"]);
        assert!(c.chain_for("q:1", 2).is_none());
        let mut only_backup = ClusterMembers::new(vec![backup]);
        assert_eq!(only_backup.next_chain(0), vec!["z:1"]);
        let mut none = ClusterMembers::new(vec![]);
        assert!(none.next_chain(2).is_empty());
        assert!(!none.has_eligible());
    }

    #[test]
    fn hash_is_stable_and_moves_about_one_nth_of_keys() {
        let names: Vec<String> = (1..=10).map(|i| format!("10.0.0.{i}:80")).collect();
        let ten = ClusterMembers::new(names.iter().map(|a| m(a)).collect());
        let nine = ClusterMembers::new(names[..9].iter().map(|a| m(a)).collect());
        let keys: Vec<String> = (0..10_000).map(|k| format!("client-{k}")).collect();
        let mut moved = 0;
        let mut per_member: HashMap<&str, u32> = HashMap::new();
        for k in &keys {
            let before = ten.hash_chain(k.as_bytes(), 0)[0];
            assert_eq!(before, ten.hash_chain(k.as_bytes(), 0)[0], "stable");
            *per_member.entry(before).or_default() += 1;
            let after = nine.hash_chain(k.as_bytes(), 0)[0];
            if before != after {
                // Only keys of the removed member move.
                assert_eq!(before, names[9]);
                moved += 1;
            }
        }
        // About 1/10 of the keys move (binomial, 10,000 draws).
        assert!((850..=1150).contains(&moved), "moved {moved}");
        assert!(
            per_member.values().all(|&n| (850..=1150).contains(&n)),
            "{per_member:?}"
        );
        // The chain lists distinct members, best first.
        let chain = ten.hash_chain(b"k", 3);
        assert_eq!(chain.len(), 4);
        assert_eq!(chain[0], ten.hash_chain(b"k", 0)[0]);
    }

    #[test]
    fn hash_respects_weights() {
        let c = ClusterMembers::new(vec![weighted("a:1", 3), weighted("b:1", 1)]);
        let a = (0..8_000)
            .filter(|k| c.hash_chain(format!("{k}").as_bytes(), 0)[0] == "a:1")
            .count();
        assert!((5_700..=6_300).contains(&a), "a got {a} of 8000");
    }

    #[test]
    fn member_at_finds_any_member_by_address() {
        let mut d = m("10.0.9.9:80");
        d.draining = true;
        let many: Vec<Member> = (1..=300)
            .map(|i| m(&format!("10.0.{}.{}:80", i / 256, i % 256)))
            .chain([d, m("[2001:db8::1]:443"), m("not an address")])
            .collect();
        let c = ClusterMembers::new(many);
        let at = |a: &str| c.member_at(a.parse().unwrap()).map(|m| m.address.as_str());
        assert_eq!(at("10.0.1.7:80"), Some("10.0.1.7:80"));
        assert_eq!(at("10.0.9.9:80"), Some("10.0.9.9:80"), "draining included");
        assert_eq!(at("[2001:db8::1]:443"), Some("[2001:db8::1]:443"));
        assert_eq!(at("10.0.1.7:81"), None);
        assert_eq!(at("10.9.9.9:80"), None);

        let mut ms = WorkerMembership::default();
        ms.replace("1".into(), vec![("y".into(), vec![m("c:1")])]);
        let (name, members) = ms.get_shared("y").unwrap();
        assert_eq!((&**name, members.members().len()), ("y", 1));
        assert!(ms.get_shared("x").is_none());
    }

    #[test]
    fn unchanged_cluster_keeps_its_rotation() {
        let mut ms = WorkerMembership::default();
        assert!(!ms.received());
        ms.replace("1".into(), vec![("x".into(), vec![m("a:1"), m("b:1")])]);
        assert!(ms.received());
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
        assert_eq!(ms.clusters()[1].0, "y");
        ms.replace("3".into(), vec![]);
        assert!(ms.get_mut("x").is_none());
    }
}
