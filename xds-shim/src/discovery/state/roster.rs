//! Which upstreams discovery covers, and with what policy: what a configuration reload
//! changes. Upstreams join (members come with their first answer), take new settings, or
//! leave: a removed upstream is no longer resolved, its members drain as addresses gone
//! from DNS do, and its cluster is withdrawn once nothing is left to drain.

use std::sync::Arc;
use std::time::SystemTime;

use super::{DiscoveryState, Draining, NameIndex, Policy, UpstreamState};
use crate::model::upstream::Upstream;

impl DiscoveryState {
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Takes effect from the next answer; members already draining keep their end.
    pub fn set_policy(&mut self, policy: Policy) {
        self.policy = policy;
    }

    pub fn ca_file(&self) -> &str {
        &self.ca_file
    }

    /// Starts (or resumes) discovering `upstream`; true when its cluster was not served
    /// or was leaving. A leaving one keeps its draining members until its next answer.
    /// The same cluster with or without `https://` replaces the upstream it had.
    pub fn add_upstream(&mut self, upstream: Upstream) -> bool {
        let cluster: Arc<str> = Arc::from(upstream.cluster_name());
        let added = match self.upstreams.get_mut(&cluster) {
            Some(shared) => {
                let returning = shared.removed_at.is_some();
                if returning || shared.upstream != upstream {
                    let state = Arc::make_mut(shared);
                    state.removed_at = None;
                    state.upstream = upstream;
                }
                returning
            }
            None => {
                self.upstreams
                    .insert(cluster, Arc::new(UpstreamState::new(upstream)));
                true
            }
        };
        self.reindex();
        added
    }

    /// Stops resolving `cluster`: its members drain from `at` for the policy's `drain`,
    /// then it goes (at once when nothing drains). False when it was not served or was
    /// already leaving.
    pub fn remove_upstream(&mut self, cluster: &str, at: SystemTime) -> bool {
        let drain = self.policy.drain;
        let Some(shared) = self.upstreams.get_mut(cluster) else {
            return false;
        };
        if shared.removed_at.is_some() {
            return false;
        }
        let drains_before = shared.drain_end();
        let state = Arc::make_mut(shared);
        state.removed_at = Some(at);
        let members = std::mem::take(&mut state.members);
        if drain.is_zero() {
            state.draining.clear();
        } else {
            let until = at + drain;
            let draining = members.into_iter().map(|member| Draining { member, until });
            state.draining.extend(draining);
        }
        if state.draining.is_empty() {
            self.upstreams.remove(cluster);
        }
        self.track_drains(cluster, drains_before);
        self.reindex();
        true
    }

    fn reindex(&mut self) {
        self.clusters_of = Arc::new(NameIndex::new(&self.upstreams));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::IpAddr;
    use std::time::Duration;

    use super::*;
    use crate::discovery::{Event, RoundResults};

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn answer(host: &str, ips: &[&str]) -> RoundResults {
        let ips: Vec<IpAddr> = ips.iter().map(|ip| ip.parse().unwrap()).collect();
        RoundResults {
            a: HashMap::from([(host.to_string(), Ok(ips))]),
            srv: HashMap::new(),
        }
    }

    /// The served addresses of `cluster`, draining ones marked; `None`: not served.
    fn served(state: &DiscoveryState, cluster: &str) -> Option<Vec<String>> {
        let membership = state.membership(cluster)?;
        let addrs = membership.members().iter().map(|m| {
            let mark = if m.draining { " (draining)" } else { "" };
            format!("{}{mark}", m.addr)
        });
        Some(addrs.collect())
    }

    fn drain(secs: u64) -> Policy {
        Policy {
            drain: Duration::from_secs(secs),
            ..Policy::default()
        }
    }

    #[test]
    fn an_added_upstream_is_resolved_and_served() {
        let mut state = DiscoveryState::new(["dns+a.test:80".parse().unwrap()]);
        assert!(state.add_upstream("dns+b.test:80".parse().unwrap()));
        assert!(!state.add_upstream("dns+b.test:80".parse().unwrap()));
        assert!(state.hosts().contains("b.test"));
        assert_eq!(served(&state, "dns+b.test:80"), Some(vec![]));
        let (_, touched) = state.apply_tracked(&answer("b.test", &["10.0.0.2"]), t(0));
        assert_eq!(touched, ["dns+b.test:80"]);
        assert_eq!(served(&state, "dns+b.test:80").unwrap(), ["10.0.0.2:80"]);
    }

    #[test]
    fn a_removed_upstream_drains_then_is_withdrawn() {
        let ups = [
            "dns+a.test:80".parse().unwrap(),
            "dns+a.test:81".parse().unwrap(),
        ];
        let mut state = DiscoveryState::with_policy(ups, drain(30));
        state.apply(&answer("a.test", &["10.0.0.1"]), t(0));
        assert!(state.remove_upstream("dns+a.test:81", t(10)));
        assert!(
            !state.remove_upstream("dns+a.test:81", t(11)),
            "already leaving"
        );
        assert_eq!(
            served(&state, "dns+a.test:81").unwrap(),
            ["10.0.0.1:81 (draining)"]
        );
        // Its name is still resolved for the upstream kept, but it is not folded into.
        assert!(state.hosts().contains("a.test"));
        state.apply(&answer("a.test", &["10.0.0.1", "10.0.0.2"]), t(20));
        assert_eq!(
            served(&state, "dns+a.test:81").unwrap(),
            ["10.0.0.1:81 (draining)"]
        );
        assert_eq!(state.next_drain_end(), Some(t(40)));
        let (events, touched) = state.apply_tracked(&RoundResults::default(), t(40));
        assert!(events.contains(&Event::Withdrawn {
            cluster: "dns+a.test:81".into()
        }));
        assert_eq!(touched, ["dns+a.test:81"]);
        assert_eq!(served(&state, "dns+a.test:81"), None);
        assert_eq!(state.upstreams().count(), 1);
    }

    #[test]
    fn without_drain_or_members_a_removed_upstream_goes_at_once() {
        let mut state = DiscoveryState::with_policy(["dns+a.test:80".parse().unwrap()], drain(0));
        state.apply(&answer("a.test", &["10.0.0.1"]), t(0));
        assert!(state.remove_upstream("dns+a.test:80", t(1)));
        assert_eq!(served(&state, "dns+a.test:80"), None);
        assert!(state.hosts().is_empty());

        let mut state = DiscoveryState::new(["dns+b.test:80".parse().unwrap()]);
        assert!(
            state.remove_upstream("dns+b.test:80", t(1)),
            "never resolved"
        );
        assert_eq!(state.upstreams().count(), 0);
        assert!(!state.remove_upstream("dns+b.test:80", t(2)));
    }

    #[test]
    fn an_upstream_added_back_while_leaving_is_resolved_again() {
        let mut state = DiscoveryState::with_policy(["dns+a.test:80".parse().unwrap()], drain(30));
        state.apply(&answer("a.test", &["10.0.0.1"]), t(0));
        state.remove_upstream("dns+a.test:80", t(1));
        assert!(state.add_upstream("dns+a.test:80".parse().unwrap()));
        assert!(state.hosts().contains("a.test"));
        state.apply(&answer("a.test", &["10.0.0.1"]), t(2));
        assert_eq!(served(&state, "dns+a.test:80").unwrap(), ["10.0.0.1:80"]);
        assert_eq!(state.next_drain_end(), None);
    }

    #[test]
    fn https_toggles_replace_the_upstream_of_the_cluster() {
        let mut state = DiscoveryState::new(["dns+a.test:443".parse().unwrap()]);
        let tls: Upstream = "https://dns+a.test:443".parse().unwrap();
        assert!(!state.add_upstream(tls.clone()), "same cluster: not new");
        assert_eq!(state.upstreams().next().map(|s| &s.upstream), Some(&tls));
        assert!(state.membership("dns+a.test:443").unwrap().tls.is_some());
    }
}
