//! How one upstream's answer is folded into its state under the [`Policy`]: a new set
//! replaces the old (leavers drain), failures keep the last good members, "nothing there"
//! empties the set only once confirmed.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::SystemTime;

use super::{Draining, Event, Outcome, Policy, RoundResults, UpstreamState};
use crate::discovery::resolve::ResolveError;
use crate::model::member::{self, Member};
use crate::model::upstream::Upstream;

/// This round's answer for one upstream, or `None` when its name was not resolved.
/// A `srv+` answer fails as a whole when any target's question went unanswered: a partial
/// set would drain healthy targets because of one slow lookup.
pub(super) fn answer(
    upstream: &Upstream,
    results: &RoundResults,
) -> Option<Result<Vec<Member>, ResolveError>> {
    match upstream {
        Upstream::Dns { host, port, .. } => {
            let result = results.a.get(host)?;
            Some(
                result
                    .as_ref()
                    .map(|ips| member::from_a(host, *port, ips))
                    .map_err(Clone::clone),
            )
        }
        Upstream::Srv { name, .. } => {
            let records = match results.srv.get(name)? {
                Ok(records) => records,
                Err(error) => return Some(Err(error.clone())),
            };
            let mut targets = BTreeMap::new();
            for record in records {
                match results.a.get(&record.target) {
                    Some(Ok(ips)) => {
                        targets.insert(record.target.clone(), ips.clone());
                    }
                    Some(Err(ResolveError::NxDomain | ResolveError::NoRecords)) => {}
                    Some(Err(error)) => return Some(Err(error.clone())),
                    None => {
                        return Some(Err(ResolveError::Other(format!(
                            "target {} was not resolved",
                            record.target
                        ))))
                    }
                }
            }
            Some(Ok(member::from_srv(records, &targets)))
        }
    }
}

pub(super) fn fold(
    cluster: &str,
    state: &mut UpstreamState,
    answer: Result<Vec<Member>, ResolveError>,
    at: SystemTime,
    policy: &Policy,
    events: &mut Vec<Event>,
) -> Outcome {
    match answer {
        Ok(members) if !members.is_empty() => {
            state.empty_answers = 0;
            state.stale_since = None;
            state.last_success = Some(at);
            replace(cluster, state, members, at, policy, events);
            Outcome::Resolved
        }
        Ok(_) | Err(ResolveError::NxDomain | ResolveError::NoRecords) => {
            let error = match answer {
                Err(error) => error,
                Ok(_) => ResolveError::NoRecords,
            };
            state.stale_since = None;
            state.empty_answers = state.empty_answers.saturating_add(1);
            if state.empty_answers >= policy.empty_after.max(1) {
                // Confirmed: an empty set is a good answer too.
                state.last_success = Some(at);
                if !state.members.is_empty() {
                    events.push(Event::Emptied {
                        cluster: cluster.to_string(),
                        answers: state.empty_answers,
                    });
                    replace(cluster, state, Vec::new(), at, policy, events);
                }
            } else {
                kept(cluster, state, &error, events);
            }
            Outcome::Failed(error)
        }
        Err(error) => {
            let since = *state.stale_since.get_or_insert(at);
            let expired = policy
                .max_stale
                .is_some_and(|max| at.duration_since(since).unwrap_or_default() >= max);
            if expired && !state.members.is_empty() {
                events.push(Event::StaleExpired {
                    cluster: cluster.to_string(),
                    since,
                });
                replace(cluster, state, Vec::new(), at, policy, events);
            } else {
                kept(cluster, state, &error, events);
            }
            Outcome::Failed(error)
        }
    }
}

fn kept(cluster: &str, state: &UpstreamState, error: &ResolveError, events: &mut Vec<Event>) {
    events.push(Event::KeptLastGood {
        cluster: cluster.to_string(),
        host: state.upstream.host().to_string(),
        error: error.clone(),
        kept: state.members.len(),
    });
}

/// Installs `new`; addresses that left start draining, addresses that came back stop.
fn replace(
    cluster: &str,
    state: &mut UpstreamState,
    new: Vec<Member>,
    at: SystemTime,
    policy: &Policy,
    events: &mut Vec<Event>,
) {
    if new == state.members {
        return;
    }
    let new_addrs: BTreeSet<SocketAddr> = new.iter().map(|m| m.addr).collect();
    let old_addrs: BTreeSet<SocketAddr> = state.members.iter().map(|m| m.addr).collect();
    state
        .draining
        .retain(|d| !new_addrs.contains(&d.member.addr));
    if !policy.drain.is_zero() {
        let until = at + policy.drain;
        for gone in state
            .members
            .iter()
            .filter(|m| !new_addrs.contains(&m.addr))
        {
            state.draining.push(Draining {
                member: gone.clone(),
                until,
            });
        }
    }
    events.push(Event::MembersChanged {
        cluster: cluster.to_string(),
        added: new_addrs.difference(&old_addrs).copied().collect(),
        removed: old_addrs.difference(&new_addrs).copied().collect(),
    });
    state.members = new;
}
