//! What discovery knows about each upstream, and the v0 policy for folding a round of DNS
//! answers into it. Pure: the refresh loop does the I/O and hands results in.
//!
//! v0 policy: a successful answer replaces the members; any failure (NXDOMAIN and empty
//! answers included) keeps the last good members. Confirmation and staleness rules are a
//! later issue and belong in `apply`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::SystemTime;

use crate::resolve::ResolveError;
use crate::snapshot::Membership;
use crate::upstream::Upstream;

/// Result of resolving one host in one round.
pub type HostResult = Result<Vec<Ipv4Addr>, ResolveError>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Resolved,
    Failed(ResolveError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub at: SystemTime,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamState {
    pub upstream: Upstream,
    /// The last good members; empty until the first successful resolution.
    pub addresses: Vec<SocketAddr>,
    pub last_attempt: Option<Attempt>,
    pub last_success: Option<SystemTime>,
}

/// Something worth logging that `apply` noticed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    MembersChanged {
        cluster: String,
        added: Vec<SocketAddr>,
        removed: Vec<SocketAddr>,
    },
    KeptLastGood {
        cluster: String,
        host: String,
        error: ResolveError,
        kept: usize,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryState {
    /// Keyed by cluster name; duplicates of one spec collapse into one entry.
    upstreams: BTreeMap<String, UpstreamState>,
}

impl DiscoveryState {
    pub fn new(upstreams: impl IntoIterator<Item = Upstream>) -> Self {
        let upstreams = upstreams
            .into_iter()
            .map(|upstream| {
                let state = UpstreamState {
                    upstream: upstream.clone(),
                    addresses: Vec::new(),
                    last_attempt: None,
                    last_success: None,
                };
                (upstream.cluster_name(), state)
            })
            .collect();
        DiscoveryState { upstreams }
    }

    /// Every distinct name to resolve this round: upstreams sharing a host (different
    /// ports) cost one query.
    pub fn hosts(&self) -> BTreeSet<String> {
        self.upstreams
            .values()
            .map(|s| s.upstream.host().to_string())
            .collect()
    }

    pub fn upstreams(&self) -> impl Iterator<Item = &UpstreamState> {
        self.upstreams.values()
    }

    /// Folds one round of answers in. Hosts missing from `results` (not resolved this
    /// round) leave their upstreams untouched.
    pub fn apply(&mut self, results: &HashMap<String, HostResult>, at: SystemTime) -> Vec<Event> {
        let mut events = Vec::new();
        for (cluster, state) in &mut self.upstreams {
            let Some(result) = results.get(state.upstream.host()) else {
                continue;
            };
            let outcome = match result {
                Ok(ips) if !ips.is_empty() => {
                    let new = socket_addrs(ips, port_of(&state.upstream));
                    if new != state.addresses {
                        events.push(Event::MembersChanged {
                            cluster: cluster.clone(),
                            added: difference(&new, &state.addresses),
                            removed: difference(&state.addresses, &new),
                        });
                        state.addresses = new;
                    }
                    state.last_success = Some(at);
                    Outcome::Resolved
                }
                Ok(_) => failed(&mut events, cluster, state, ResolveError::NoRecords),
                Err(error) => failed(&mut events, cluster, state, error.clone()),
            };
            state.last_attempt = Some(Attempt { at, outcome });
        }
        events
    }

    /// The membership view the snapshot is built from.
    pub fn members(&self) -> BTreeMap<String, Membership> {
        self.upstreams
            .iter()
            .map(|(cluster, state)| {
                let membership = Membership {
                    hostname: state.upstream.host().to_string(),
                    addresses: state.addresses.clone(),
                };
                (cluster.clone(), membership)
            })
            .collect()
    }
}

fn failed(
    events: &mut Vec<Event>,
    cluster: &str,
    state: &UpstreamState,
    error: ResolveError,
) -> Outcome {
    events.push(Event::KeptLastGood {
        cluster: cluster.to_string(),
        host: state.upstream.host().to_string(),
        error: error.clone(),
        kept: state.addresses.len(),
    });
    Outcome::Failed(error)
}

fn port_of(upstream: &Upstream) -> u16 {
    match upstream {
        Upstream::Dns { port, .. } => *port,
    }
}

fn socket_addrs(ips: &[Ipv4Addr], port: u16) -> Vec<SocketAddr> {
    let mut addrs: Vec<SocketAddr> = ips
        .iter()
        .map(|ip| SocketAddr::V4(SocketAddrV4::new(*ip, port)))
        .collect();
    addrs.sort_unstable();
    addrs.dedup();
    addrs
}

fn difference(a: &[SocketAddr], b: &[SocketAddr]) -> Vec<SocketAddr> {
    a.iter().filter(|x| !b.contains(x)).copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn up(spec: &str) -> Upstream {
        spec.parse().unwrap()
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn results(entries: &[(&str, HostResult)]) -> HashMap<String, HostResult> {
        entries
            .iter()
            .map(|(h, r)| (h.to_string(), r.clone()))
            .collect()
    }

    fn addrs(state: &DiscoveryState, cluster: &str) -> Vec<String> {
        state.members()[cluster]
            .addresses
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn dedupes_hosts_and_specs() {
        let state = DiscoveryState::new([
            up("dns+a.test:80"),
            up("dns+a.test:81"),
            up("dns+A.test.:80"),
            up("dns+b.test:80"),
        ]);
        assert_eq!(state.upstreams().count(), 3);
        assert_eq!(
            state.hosts().into_iter().collect::<Vec<_>>(),
            ["a.test", "b.test"]
        );
    }

    #[test]
    fn success_replaces_members_per_port() {
        let mut state = DiscoveryState::new([up("dns+a.test:80"), up("dns+a.test:81")]);
        let t0 = SystemTime::UNIX_EPOCH;
        let events = state.apply(
            &results(&[("a.test", Ok(vec![ip("10.0.0.2"), ip("10.0.0.1")]))]),
            t0,
        );
        assert_eq!(
            addrs(&state, "dns+a.test:80"),
            ["10.0.0.1:80", "10.0.0.2:80"]
        );
        assert_eq!(
            addrs(&state, "dns+a.test:81"),
            ["10.0.0.1:81", "10.0.0.2:81"]
        );
        assert_eq!(events.len(), 2);

        // Same answer again: nothing to report.
        let t1 = t0 + Duration::from_secs(5);
        let events = state.apply(
            &results(&[("a.test", Ok(vec![ip("10.0.0.1"), ip("10.0.0.2")]))]),
            t1,
        );
        assert!(events.is_empty());
        let s = state.upstreams().next().unwrap();
        assert_eq!(s.last_success, Some(t1));

        let events = state.apply(&results(&[("a.test", Ok(vec![ip("10.0.0.3")]))]), t1);
        assert_eq!(
            events[0],
            Event::MembersChanged {
                cluster: "dns+a.test:80".into(),
                added: vec!["10.0.0.3:80".parse().unwrap()],
                removed: vec![
                    "10.0.0.1:80".parse().unwrap(),
                    "10.0.0.2:80".parse().unwrap()
                ],
            }
        );
    }

    #[test]
    fn failures_keep_last_good() {
        let mut state = DiscoveryState::new([up("dns+a.test:80")]);
        let t0 = SystemTime::UNIX_EPOCH;
        state.apply(&results(&[("a.test", Ok(vec![ip("10.0.0.1")]))]), t0);
        let t1 = t0 + Duration::from_secs(5);
        for error in [
            Err(ResolveError::NxDomain),
            Err(ResolveError::Timeout),
            Err(ResolveError::ServFail),
            Ok(vec![]),
        ] {
            let events = state.apply(&results(&[("a.test", error)]), t1);
            assert!(matches!(&events[..], [Event::KeptLastGood { kept: 1, .. }]));
            assert_eq!(addrs(&state, "dns+a.test:80"), ["10.0.0.1:80"]);
            let s = state.upstreams().next().unwrap();
            assert_eq!(s.last_success, Some(t0));
            assert!(matches!(
                s.last_attempt,
                Some(Attempt { outcome: Outcome::Failed(_), at }) if at == t1
            ));
        }
    }

    #[test]
    fn never_resolved_upstream_has_no_members_but_exists() {
        let mut state = DiscoveryState::new([up("dns+a.test:80")]);
        state.apply(
            &results(&[("a.test", Err(ResolveError::NxDomain))]),
            SystemTime::UNIX_EPOCH,
        );
        assert!(state.members()["dns+a.test:80"].addresses.is_empty());
    }

    #[test]
    fn hosts_missing_from_results_are_untouched() {
        let mut state = DiscoveryState::new([up("dns+a.test:80")]);
        let before = state.clone();
        assert!(state
            .apply(&HashMap::new(), SystemTime::UNIX_EPOCH)
            .is_empty());
        assert_eq!(state, before);
    }
}
