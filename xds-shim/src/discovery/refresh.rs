//! The refresh loop: each name is resolved when its interval (or TTL) is up, the answers
//! are folded into the discovery state, and the result is published (a new snapshot only
//! when its versions moved). Forced refreshes and reloads arrive as messages.
//!
//! Its jobs live in their own files: the DNS fan-out (`fan_out.rs`), retry backoff
//! (`retry.rs`), forced refreshes ([`forced`]), publishing (`publish.rs`) and event logging
//! (`events.rs`); when names are due is [`Schedule`]'s business.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::discovery::reconfigure::{self, Applied, Wanted};
use crate::discovery::resolve::AddressResolver;
use crate::discovery::schedule::Schedule;
use crate::discovery::{DiscoveryState, RoundResults};
use crate::shutdown::Shutdown;

mod events;
mod fan_out;
pub mod forced;
mod publish;
mod retry;

pub use crate::discovery::names::Names;
pub use fan_out::{resolve_all, unanswered, Round};
pub use forced::{Ask, NotServed, Refreshed};
pub use publish::{round, Published, Sink};

use forced::{coalesce, forced_round, RateLimit};
use publish::fold_in;
use retry::Retry;

/// Names due this soon join the round that starts now. Jitter spreads 10,000 names
/// over half a second; without this every millisecond would be a round of its own, each
/// folding in and publishing.
const ROUND_SLACK: Duration = Duration::from_millis(100);

/// How often names are resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// The default interval (upstreams may set their own).
    pub interval: Duration,
    /// TTL-aware mode: after an answer, re-resolve when its smallest TTL is up, but never
    /// sooner than this floor. `None`: fixed intervals.
    pub ttl_floor: Option<Duration>,
}

/// A reload for the refresh loop, and where it answers once applied and published.
#[derive(Debug)]
pub struct Reload {
    pub wanted: Wanted,
    pub timing: Timing,
    pub reply: oneshot::Sender<Applied>,
}

/// What reaches the loop besides the clock: forced refreshes (from the filter) and
/// configuration reloads (SIGHUP).
pub struct Inbox {
    pub asks: mpsc::Receiver<Ask>,
    pub reloads: mpsc::Receiver<Reload>,
}

enum Wake {
    Clock,
    Forced(Ask),
    Reload(Box<Reload>),
}

/// The refresh loop, before it runs: what it resolves with, folds into and publishes to.
pub struct Refresher<R, S> {
    resolver: R,
    state: DiscoveryState,
    timing: Timing,
    sink: S,
    retry: Retry,
    /// The TTLs the first round's answers carried, followed once the loop starts.
    first_ttls: BTreeMap<(bool, String), Duration>,
}

impl<R: AddressResolver, S: Sink> Refresher<R, S> {
    pub fn new(resolver: R, state: DiscoveryState, timing: Timing, sink: S) -> Self {
        Refresher {
            resolver,
            state,
            timing,
            sink,
            retry: Retry::default(),
            first_ttls: BTreeMap::new(),
        }
    }

    /// One round over every name, before serving, so the first CDS/EDS answers already
    /// carry members; the loop retries what it left unanswered.
    pub async fn first_round(&mut self) {
        let names = Names::all(&self.state);
        let round = resolve_all(&self.resolver, &names).await;
        let folded = fold_in(&round.results, &mut self.state, &self.sink);
        self.retry.update(folded.unanswered, self.timing.interval);
        self.first_ttls = round.ttls;
    }

    /// Runs rounds until shutdown: each name when its interval (or TTL) is up, and names
    /// whose question went unanswered again after a backoff. A reload waits for the round
    /// in progress, if any.
    pub async fn run(self, mut shutdown: Shutdown, mut inbox: Inbox) {
        let Refresher {
            resolver,
            mut state,
            mut timing,
            sink,
            mut retry,
            first_ttls,
        } = self;
        let mut limit = RateLimit::default();
        let mut schedule = Schedule::new(state.name_intervals(timing.interval), Instant::now());
        if let Some(floor) = timing.ttl_floor {
            // The first round counts too.
            let all = Names::all(&state);
            schedule.follow_ttls(&first_ttls, &all, &retry.names, floor, Instant::now());
        }
        let mut retry_at = Instant::now() + retry.delay;
        loop {
            let regular = schedule
                .next()
                .unwrap_or_else(|| Instant::now() + timing.interval);
            let wake = if retry.names.is_empty() {
                regular
            } else {
                regular.min(retry_at)
            };
            // Draining addresses leave when their time is up, not at their name's next
            // resolution (which a long interval or TTL may put far later).
            let drain_end = state.next_drain_end().map(|at| {
                let left = at.duration_since(SystemTime::now()).unwrap_or_default();
                Instant::now() + left
            });
            let wake = drain_end.map_or(wake, |end| wake.min(end));
            let woke = tokio::select! {
                _ = shutdown.wait() => return,
                _ = tokio::time::sleep_until(wake) => Wake::Clock,
                Some(ask) = inbox.asks.recv() => Wake::Forced(ask),
                Some(request) = inbox.reloads.recv() => Wake::Reload(Box::new(request)),
            };
            match woke {
                Wake::Clock => {}
                Wake::Forced(first) => {
                    let batch = coalesce(first, &mut inbox.asks);
                    tokio::select! {
                        _ = shutdown.wait() => return,
                        _ = forced_round(&resolver, batch, &mut state, &sink, &mut limit) => {}
                    }
                    continue;
                }
                Wake::Reload(request) => {
                    timing = reloaded(*request, &mut state, &mut schedule, &mut retry, &sink);
                    continue;
                }
            }
            let now = Instant::now();
            let mut names = schedule.take_due(now + ROUND_SLACK);
            let retrying = !retry.names.is_empty() && retry_at <= now;
            if retrying {
                names.extend(retry.names.clone());
            }
            if names.is_empty() {
                if drain_end.is_some_and(|end| end <= now) {
                    // No answers, only the clock: expires the drains that are due.
                    fold_in(&RoundResults::default(), &mut state, &sink);
                }
                continue;
            }
            // A forced refresh does not wait for this round (10,000 names take
            // seconds): it resolves its names meanwhile and publishes at once.
            let mut resolving = std::pin::pin!(resolve_all(&resolver, &names));
            let mut forced_meanwhile = Names::default();
            let mut periodic: Option<Round> = None;
            // Both rounds are polled together: the resolver's in-flight limit is
            // shared, so a forced round may need the permits the periodic one holds.
            while periodic.is_none() {
                tokio::select! {
                    _ = shutdown.wait() => return,
                    round = &mut resolving => periodic = Some(round),
                    Some(first) = inbox.asks.recv() => {
                        let batch = coalesce(first, &mut inbox.asks);
                        let forced = forced_round(&resolver, batch, &mut state, &sink, &mut limit);
                        let mut forced = std::pin::pin!(forced);
                        let done = loop {
                            tokio::select! {
                                _ = shutdown.wait() => return,
                                done = &mut forced => break done,
                                round = &mut resolving, if periodic.is_none() => periodic = Some(round),
                            }
                        };
                        forced_meanwhile.extend(done);
                    }
                }
            }
            let Some(Round { mut results, ttls }) = periodic else {
                continue;
            };
            // Those names' forced answers are newer than this round's.
            results
                .a
                .retain(|host, _| !forced_meanwhile.hosts.contains(host));
            results
                .srv
                .retain(|name, _| !forced_meanwhile.srv.contains(name));
            let unanswered = fold_in(&results, &mut state, &sink).unanswered;
            if let Some(floor) = timing.ttl_floor {
                schedule.follow_ttls(&ttls, &names, &unanswered, floor, Instant::now());
            }
            if retrying || retry.names.is_empty() {
                retry.update(unanswered, timing.interval);
                retry_at = Instant::now() + retry.delay;
            } else {
                retry.settle(&names, unanswered, timing.interval);
            }
        }
    }
}

/// Applies a reload between rounds: the state changes, names are rescheduled (new ones
/// due at once), retries of names no longer resolved stop, and the touched clusters are
/// published before the reload is answered. Returns the new timing.
fn reloaded<S: Sink>(
    request: Reload,
    state: &mut DiscoveryState,
    schedule: &mut Schedule,
    retry: &mut Retry,
    sink: &S,
) -> Timing {
    let applied = reconfigure::apply(state, &request.wanted, SystemTime::now());
    let timing = request.timing;
    schedule.reconcile(state.name_intervals(timing.interval), Instant::now());
    retry.keep_only(&Names::all(state));
    sink.publish(state, &applied.touched);
    let _ = request.reply.send(applied);
    timing
}

#[cfg(test)]
mod tests;
