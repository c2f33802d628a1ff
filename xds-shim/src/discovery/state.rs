//! What discovery knows about each upstream, and the policy for folding a round of DNS
//! answers into it. Pure: the refresh loop does the I/O and hands results in.
//!
//! Policy (see [`Policy`]):
//! - An answer with members replaces the set. Addresses that left are kept for
//!   `drain` marked draining (sticky sessions finish, new picks go elsewhere).
//! - SERVFAIL, REFUSED, timeouts ("the question went unanswered"): keep the last good
//!   members, mark them stale since the first failure; after `max_stale` (if set) they go
//!   to draining.
//! - NXDOMAIN or no records ("nothing there"): the set empties only after `empty_after`
//!   such answers in a row, so one bad answer from a flapping server changes nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::discovery::resolve::{ResolveError, SrvRecord};
use crate::model::member::Member;
use crate::model::membership::Membership;
use crate::model::settings::UpstreamSettings;
use crate::model::tls::{TlsTarget, SYSTEM_CA_FILE};
use crate::model::upstream::Upstream;

mod fold;
mod roster;

use fold::{answer, fold};

/// Result of resolving one name in one round.
pub type HostResult = Result<Vec<IpAddr>, ResolveError>;
pub type SrvResult = Result<Vec<SrvRecord>, ResolveError>;

/// Everything resolved in one round: A answers by host (SRV targets included), SRV answers
/// by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoundResults {
    pub a: HashMap<String, HostResult>,
    pub srv: HashMap<String, SrvResult>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// How long an address gone from DNS stays, draining. Zero: dropped at once.
    pub drain: Duration,
    /// Consecutive NXDOMAIN / empty answers before the set empties (at least 1).
    pub empty_after: u32,
    /// How long unanswered questions may keep stale members. `None`: for ever.
    pub max_stale: Option<Duration>,
    /// Most members one answer may yield; beyond, the first ones (by SRV priority, then
    /// address) are kept, and the cut is logged, shown in the status and counted.
    pub max_records: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            drain: Duration::from_secs(30),
            empty_after: 3,
            max_stale: None,
            max_records: 1_000,
        }
    }
}

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
pub struct Draining {
    pub member: Member,
    pub until: SystemTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamState {
    pub upstream: Upstream,
    /// The last good members; empty until the first successful resolution.
    pub members: Vec<Member>,
    /// Addresses gone from DNS, served as DRAINING until their time is up.
    pub draining: Vec<Draining>,
    pub last_attempt: Option<Attempt>,
    pub last_success: Option<SystemTime>,
    /// Set while questions go unanswered: since the first such failure.
    pub stale_since: Option<SystemTime>,
    /// NXDOMAIN / empty answers in a row.
    pub empty_answers: u32,
    /// How many members the last answer had when it was over the cap.
    pub capped_from: Option<usize>,
    /// Answers cut to the cap so far (for `/metrics`).
    pub capped_answers: u64,
    pub settings: UpstreamSettings,
    /// Set when a reload removed the upstream: no longer resolved, its members drain,
    /// then the cluster is withdrawn.
    pub removed_at: Option<SystemTime>,
}

impl UpstreamState {
    /// When its first draining address is due to leave.
    fn drain_end(&self) -> Option<SystemTime> {
        self.draining.iter().map(|d| d.until).min()
    }

    fn new(upstream: Upstream) -> Self {
        UpstreamState {
            upstream,
            members: Vec::new(),
            draining: Vec::new(),
            last_attempt: None,
            last_success: None,
            stale_since: None,
            empty_answers: 0,
            capped_from: None,
            capped_answers: 0,
            settings: UpstreamSettings::default(),
            removed_at: None,
        }
    }
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
    /// NXDOMAIN / empty confirmed: every member went to draining.
    Emptied { cluster: String, answers: u32 },
    /// The answer had more members than allowed; only `kept` are served.
    Capped {
        cluster: String,
        answered: usize,
        kept: usize,
    },
    /// Stale longer than allowed: every member went to draining.
    StaleExpired { cluster: String, since: SystemTime },
    DrainEnded {
        cluster: String,
        addrs: Vec<SocketAddr>,
    },
    /// A removed upstream has nothing left to drain: its cluster is no longer served.
    Withdrawn { cluster: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryState {
    policy: Policy,
    /// Trusted roots for `https://` upstreams.
    ca_file: String,
    /// Keyed by cluster name; duplicates of one spec collapse into one entry. Shared with
    /// the copies published to the status page, and copied on write: a round copies only
    /// the upstreams it touched.
    /// `Arc<str>` keys: the status page gets a copy every round, and 10,000 string
    /// allocations a round showed in profiles.
    upstreams: BTreeMap<Arc<str>, Arc<UpstreamState>>,
    /// Which clusters each name serves, so a round of a few names finds its clusters
    /// without looking every upstream up in its answers.
    clusters_of: Arc<NameIndex>,
    /// Each draining cluster's earliest drain end, ordered by (end, cluster) as mini-redis
    /// orders expiries: due drains and the next wake-up are found without a scan.
    drain_ends: BTreeSet<(SystemTime, Arc<str>)>,
}

#[derive(Debug, Default, PartialEq, Eq)]
struct NameIndex {
    hosts: BTreeMap<String, Vec<String>>,
    srv: BTreeMap<String, Vec<String>>,
}

impl NameIndex {
    fn new(upstreams: &BTreeMap<Arc<str>, Arc<UpstreamState>>) -> Self {
        let mut index = NameIndex::default();
        // Removed upstreams are not resolved any more, nor folded into.
        let resolved = upstreams.iter().filter(|(_, s)| s.removed_at.is_none());
        for (cluster, state) in resolved {
            let names = match state.upstream {
                Upstream::Srv { .. } => &mut index.srv,
                Upstream::Dns { .. } => &mut index.hosts,
            };
            let host = state.upstream.host().to_string();
            names.entry(host).or_default().push(cluster.to_string());
        }
        index
    }

    /// The clusters whose own name (A host or SRV name) was resolved in `results`.
    fn answered<'a>(&'a self, results: &RoundResults) -> BTreeSet<&'a str> {
        let hosts = results.a.keys().filter_map(|h| self.hosts.get(h));
        let srv = results.srv.keys().filter_map(|n| self.srv.get(n));
        hosts.chain(srv).flatten().map(String::as_str).collect()
    }
}

impl DiscoveryState {
    pub fn new(upstreams: impl IntoIterator<Item = Upstream>) -> Self {
        Self::with_policy(upstreams, Policy::default())
    }

    pub fn with_policy(upstreams: impl IntoIterator<Item = Upstream>, policy: Policy) -> Self {
        let upstreams = upstreams
            .into_iter()
            .map(|upstream| {
                let cluster = Arc::from(upstream.cluster_name());
                (cluster, Arc::new(UpstreamState::new(upstream)))
            })
            .collect();
        DiscoveryState {
            policy,
            ca_file: SYSTEM_CA_FILE.to_string(),
            clusters_of: Arc::new(NameIndex::new(&upstreams)),
            upstreams,
            drain_ends: BTreeSet::new(),
        }
    }

    /// Every distinct A name to resolve this round: upstreams sharing a host (different
    /// ports) cost one query.
    pub fn hosts(&self) -> BTreeSet<String> {
        self.names(|u| matches!(u, Upstream::Dns { .. }))
    }

    /// Every distinct SRV name to resolve this round.
    pub fn srv_names(&self) -> BTreeSet<String> {
        self.names(|u| matches!(u, Upstream::Srv { .. }))
    }

    fn names(&self, keep: impl Fn(&Upstream) -> bool) -> BTreeSet<String> {
        self.upstreams
            .values()
            .filter(|s| s.removed_at.is_none() && keep(&s.upstream))
            .map(|s| s.upstream.host().to_string())
            .collect()
    }

    /// The CA bundle `https://` upstreams are verified against.
    pub fn set_ca_file(&mut self, path: &str) {
        self.ca_file = path.to_string();
    }

    /// Applies per-upstream settings (by cluster name; unknown names are ignored).
    pub fn set_settings(&mut self, cluster: &str, settings: UpstreamSettings) {
        if let Some(state) = self.upstreams.get_mut(cluster) {
            Arc::make_mut(state).settings = settings;
        }
    }

    /// Each distinct name, keyed (is SRV, name), with how often to resolve it: the
    /// smallest interval of the upstreams using it (`global` unless they set their own).
    pub fn name_intervals(&self, global: Duration) -> BTreeMap<(bool, String), Duration> {
        let mut intervals: BTreeMap<(bool, String), Duration> = BTreeMap::new();
        for state in self.upstreams.values().filter(|s| s.removed_at.is_none()) {
            let srv = matches!(state.upstream, Upstream::Srv { .. });
            let every = state.settings.interval.unwrap_or(global);
            intervals
                .entry((srv, state.upstream.host().to_string()))
                .and_modify(|d| *d = (*d).min(every))
                .or_insert(every);
        }
        intervals
    }

    pub fn upstreams(&self) -> impl Iterator<Item = &UpstreamState> {
        self.upstreams.values().map(|s| &**s)
    }

    /// True once every upstream has had an answer (members or a confirmed nothing).
    pub fn all_resolved_once(&self) -> bool {
        self.upstreams.values().all(|s| s.last_success.is_some())
    }

    /// When the next draining address is due to leave, if any drains.
    pub fn next_drain_end(&self) -> Option<SystemTime> {
        self.drain_ends.first().map(|(end, _)| *end)
    }

    /// Moves `cluster`'s entry in `drain_ends` from `before`, its earliest drain end
    /// before a change, to the one it has now (none once it drains no more, or is gone).
    fn track_drains(&mut self, cluster: &str, before: Option<SystemTime>) {
        let now = self.upstreams.get(cluster).and_then(|s| s.drain_end());
        if now == before {
            return;
        }
        if let Some(end) = before {
            self.drain_ends.remove(&(end, Arc::from(cluster)));
        }
        if let (Some(end), Some((key, _))) = (now, self.upstreams.get_key_value(cluster)) {
            self.drain_ends.insert((end, Arc::clone(key)));
        }
    }

    /// Folds one round of answers in. Upstreams whose name was not resolved this round are
    /// untouched, apart from draining members whose time is up.
    pub fn apply(&mut self, results: &RoundResults, at: SystemTime) -> Vec<Event> {
        self.apply_tracked(results, at).0
    }

    /// [`apply`](Self::apply), also naming the clusters it touched: only their membership
    /// can have changed.
    pub fn apply_tracked(
        &mut self,
        results: &RoundResults,
        at: SystemTime,
    ) -> (Vec<Event>, Vec<String>) {
        let policy = self.policy;
        let mut events = Vec::new();
        let mut touched = Vec::new();
        // Only the clusters answered this round, and those with a drain due, can change:
        // with 10,000 upstreams a round of a few names stays small.
        let mut due: BTreeSet<&str> = self.clusters_of.answered(results);
        let drains = self.drain_ends.iter().take_while(|(end, _)| *end <= at);
        due.extend(drains.map(|(_, cluster)| &**cluster));
        let due: Vec<String> = due.into_iter().map(str::to_owned).collect();
        let mut withdrawn = Vec::new();
        // (cluster, its earliest drain end before this round) where that may move.
        let mut drains_before = Vec::new();
        for cluster in due {
            let Some(shared) = self.upstreams.get_mut(cluster.as_str()) else {
                continue;
            };
            // A removed upstream only drains, even when an upstream kept shares its name.
            let answer = match shared.removed_at {
                Some(_) => None,
                None => answer(&shared.upstream, results),
            };
            let drain_ends = shared.draining.iter().any(|d| d.until <= at);
            if answer.is_none() && !drain_ends {
                continue;
            }
            touched.push(cluster.clone());
            drains_before.push((cluster.clone(), shared.drain_end()));
            let state = Arc::make_mut(shared);
            if let Some(mut answer) = answer {
                if let Ok(members) = &mut answer {
                    let answered = members.len();
                    state.capped_from = (answered > policy.max_records).then_some(answered);
                    if state.capped_from.is_some() {
                        state.capped_answers = state.capped_answers.saturating_add(1);
                        events.push(Event::Capped {
                            cluster: cluster.clone(),
                            answered,
                            kept: policy.max_records,
                        });
                        members.truncate(policy.max_records);
                    }
                }
                let outcome = fold(&cluster, state, answer, at, &policy, &mut events);
                state.last_attempt = Some(Attempt { at, outcome });
            }
            let (ended, kept): (Vec<Draining>, Vec<Draining>) =
                state.draining.drain(..).partition(|d| d.until <= at);
            state.draining = kept;
            if !ended.is_empty() {
                events.push(Event::DrainEnded {
                    cluster: cluster.clone(),
                    addrs: ended.iter().map(|d| d.member.addr).collect(),
                });
            }
            if state.removed_at.is_some() && state.draining.is_empty() {
                withdrawn.push(cluster);
            }
        }
        for cluster in withdrawn {
            self.upstreams.remove(cluster.as_str());
            events.push(Event::Withdrawn { cluster });
        }
        for (cluster, before) in drains_before {
            self.track_drains(&cluster, before);
        }
        (events, touched)
    }

    /// The membership view the snapshot is built from: live members and draining ones.
    pub fn members(&self) -> BTreeMap<String, Membership> {
        self.upstreams
            .keys()
            .filter_map(|cluster| Some((cluster.to_string(), self.membership(cluster)?)))
            .collect()
    }

    /// One cluster's membership, as [`members`](Self::members) has it.
    pub fn membership(&self, cluster: &str) -> Option<Membership> {
        let state = self.upstreams.get(cluster)?;
        let draining = state.draining.iter().map(|d| Member {
            draining: true,
            ..d.member.clone()
        });
        let members = state.members.iter().cloned().chain(draining);
        let tls = TlsTarget::of(&state.upstream, &state.settings.tls, &self.ca_file);
        Some(Membership::new(members, state.settings.clone(), tls))
    }
}

#[cfg(test)]
mod tests;
