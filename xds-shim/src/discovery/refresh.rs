//! The refresh loop: every interval, resolve each distinct host, fold the answers into the
//! discovery state, and publish a new snapshot when (and only when) its versions moved.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::config::reload;
use crate::config::Config;
use crate::discovery::resolve::AddressResolver;
use crate::discovery::schedule::Schedule;
use crate::discovery::{DiscoveryState, Event, HostResult, RoundResults, SrvResult};
use crate::model::upstream::Upstream;
use crate::shutdown::Shutdown;
use crate::xds::refresh_service::{Ask, RateLimit, RefreshResponse};
use crate::xds::snapshot::ResourceType;

pub use crate::xds::publisher::Publisher;

/// Lookups polled at once. The resolver's own limit (`--max-in-flight`) bounds the queries
/// on the wire; this only bounds the futures a round keeps around.
const MAX_IN_FLIGHT: usize = 1_024;
/// Names due this soon join the round that starts now. Jitter spreads 10,000 names
/// over half a second; without this every millisecond would be a round of its own, each
/// folding in and publishing.
const ROUND_SLACK: Duration = Duration::from_millis(100);
/// First retry of an unanswered name; doubles up to the interval.
const RETRY_FIRST: Duration = Duration::from_millis(250);

/// Names to resolve in one round.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    pub hosts: BTreeSet<String>,
    pub srv: BTreeSet<String>,
}

impl Names {
    pub fn all(state: &DiscoveryState) -> Self {
        Names {
            hosts: state.hosts(),
            srv: state.srv_names(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty() && self.srv.is_empty()
    }
}

enum Query {
    A(String),
    Srv(String),
}

enum Answer {
    A(String, HostResult),
    Srv(String, SrvResult),
}

/// Resolves each name once: first the A hosts and SRV
/// names, then the SRV targets not already resolved as hosts.
pub async fn resolve_all<R: AddressResolver>(resolver: &R, names: &Names) -> RoundResults {
    let queries = names
        .hosts
        .iter()
        .cloned()
        .map(Query::A)
        .chain(names.srv.iter().cloned().map(Query::Srv));
    let mut results = RoundResults::default();
    for answer in run_queries(resolver, queries).await {
        match answer {
            Answer::A(host, result) => {
                results.a.insert(host, result);
            }
            Answer::Srv(name, result) => {
                results.srv.insert(name, result);
            }
        }
    }
    let targets: BTreeSet<String> = results
        .srv
        .values()
        .flat_map(|r| r.iter().flatten())
        .map(|record| record.target.clone())
        .filter(|target| !results.a.contains_key(target))
        .collect();
    for answer in run_queries(resolver, targets.into_iter().map(Query::A)).await {
        if let Answer::A(host, result) = answer {
            results.a.insert(host, result);
        }
    }
    results
}

async fn run_queries<R: AddressResolver>(
    resolver: &R,
    queries: impl Iterator<Item = Query>,
) -> Vec<Answer> {
    futures::stream::iter(queries)
        .map(|query| async move {
            match query {
                Query::A(host) => {
                    let result = resolver.resolve_host(&host).await;
                    Answer::A(host, result)
                }
                Query::Srv(name) => {
                    let result = resolver.resolve_srv(&name).await;
                    Answer::Srv(name, result)
                }
            }
        })
        .buffer_unordered(MAX_IN_FLIGHT)
        .collect()
        .await
}

/// One round over `names`: resolve, fold in, log, publish. Returns the names whose
/// question went unanswered (to retry soon).
pub async fn round_of<R: AddressResolver>(
    resolver: &R,
    names: &Names,
    state: &mut DiscoveryState,
    publisher: &Publisher,
) -> Names {
    let results = resolve_all(resolver, names).await;
    fold_in(&results, state, publisher)
}

/// Folds a round's answers into the state, logs, publishes; returns the names
/// whose question went unanswered.
fn fold_in(results: &RoundResults, state: &mut DiscoveryState, publisher: &Publisher) -> Names {
    let kinds = results.a.values().map(|r| r.as_ref().map(|_| ()));
    let kinds = kinds.chain(results.srv.values().map(|r| r.as_ref().map(|_| ())));
    for kind in kinds {
        publisher
            .metrics
            .resolution(kind.map_or_else(|e| e.kind(), |()| "ok"));
    }
    let (events, touched) = state.apply_tracked(results, SystemTime::now());
    for event in &events {
        log_event(event);
    }
    publisher.publish(state, &touched);
    unanswered(results)
}

/// One full round over every name.
pub async fn round<R: AddressResolver>(
    resolver: &R,
    state: &mut DiscoveryState,
    publisher: &Publisher,
) -> Names {
    let names = Names::all(state);
    round_of(resolver, &names, state, publisher).await
}

/// Primary names (hosts, SRV names) whose answer, or one of whose SRV targets' answer,
/// was a failure rather than "nothing there".
fn unanswered(results: &RoundResults) -> Names {
    let failed = |r: &HostResult| r.as_ref().is_err_and(|e| !e.is_answer());
    let srv = results
        .srv
        .iter()
        .filter(|(_, result)| match result {
            Err(e) => !e.is_answer(),
            Ok(records) => records
                .iter()
                .any(|rec| results.a.get(&rec.target).is_some_and(failed)),
        })
        .map(|(name, _)| name.clone())
        .collect();
    let hosts = results
        .a
        .iter()
        .filter(|(_, r)| failed(r))
        .map(|(host, _)| host.clone())
        .collect();
    Names { hosts, srv }
}

/// Retries of unanswered names between full rounds: first after [`RETRY_FIRST`], then
/// doubling, never later than the next full round anyway.
#[derive(Debug, Default)]
struct Retry {
    names: Names,
    delay: Duration,
}

impl Retry {
    fn update(&mut self, unanswered: Names, cap: Duration) {
        self.delay = if unanswered.is_empty() {
            Duration::ZERO
        } else if self.delay.is_zero() {
            RETRY_FIRST.min(cap)
        } else {
            (self.delay * 2).min(cap)
        };
        self.names = unanswered;
    }
}

/// How often names are resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// The default interval (upstreams may set their own).
    pub interval: Duration,
    /// TTL-aware mode: after an answer, re-resolve when its smallest TTL is up, but never
    /// sooner than this floor. `None`: fixed intervals.
    pub ttl_floor: Option<Duration>,
}

impl Timing {
    pub fn of(config: &Config) -> Self {
        Timing {
            interval: config.interval,
            ttl_floor: config.ttl_floor,
        }
    }
}

/// What reaches the loop besides the clock: forced refreshes (from the filter) and
/// configuration reloads (SIGHUP).
pub struct Inbox {
    pub asks: mpsc::Receiver<Ask>,
    pub reloads: mpsc::Receiver<reload::Request>,
}

enum Wake {
    Clock,
    Forced(Ask),
    Reload(Box<reload::Request>),
}

/// Runs rounds until shutdown (the caller has done the initial one): each name when its
/// interval (or TTL) is up, and names whose question went unanswered again after a
/// backoff. A reload waits for the round in progress, if any.
pub async fn run<R: AddressResolver>(
    resolver: R,
    mut state: DiscoveryState,
    mut timing: Timing,
    publisher: Publisher,
    mut shutdown: Shutdown,
    initial_unanswered: Names,
    mut inbox: Inbox,
) {
    let mut limit = RateLimit::default();
    let mut retry = Retry::default();
    retry.update(initial_unanswered, timing.interval);
    let mut schedule = Schedule::new(state.name_intervals(timing.interval), Instant::now());
    if let Some(floor) = timing.ttl_floor {
        // The caller's initial round counts too.
        let all = Names::all(&state);
        follow_ttls(&mut schedule, &resolver, &all, &retry.names, floor);
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
                    _ = forced_round(&resolver, batch, &mut state, &publisher, &mut limit) => {}
                }
                continue;
            }
            Wake::Reload(request) => {
                timing = reloaded(*request, &mut state, &mut schedule, &mut retry, &publisher);
                continue;
            }
        }
        let now = Instant::now();
        let mut names = schedule.take_due(now + ROUND_SLACK);
        let retrying = !retry.names.is_empty() && retry_at <= now;
        if retrying {
            names.hosts.extend(retry.names.hosts.iter().cloned());
            names.srv.extend(retry.names.srv.iter().cloned());
        }
        if names.is_empty() {
            if drain_end.is_some_and(|end| end <= now) {
                // No answers, only the clock: expires the drains that are due.
                fold_in(&RoundResults::default(), &mut state, &publisher);
            }
            continue;
        }
        // A forced refresh does not wait for this round (10,000 names take
        // seconds): it resolves its names meanwhile and publishes at once.
        let mut resolving = std::pin::pin!(resolve_all(&resolver, &names));
        let mut forced_meanwhile = Names::default();
        let mut periodic: Option<RoundResults> = None;
        // Both rounds are polled together: the resolver's in-flight limit is
        // shared, so a forced round may need the permits the periodic one holds.
        while periodic.is_none() {
            tokio::select! {
                _ = shutdown.wait() => return,
                results = &mut resolving => periodic = Some(results),
                Some(first) = inbox.asks.recv() => {
                    let batch = coalesce(first, &mut inbox.asks);
                    let forced = forced_round(&resolver, batch, &mut state, &publisher, &mut limit);
                    let mut forced = std::pin::pin!(forced);
                    let done = loop {
                        tokio::select! {
                            _ = shutdown.wait() => return,
                            done = &mut forced => break done,
                            results = &mut resolving, if periodic.is_none() => periodic = Some(results),
                        }
                    };
                    forced_meanwhile.hosts.extend(done.hosts);
                    forced_meanwhile.srv.extend(done.srv);
                }
            }
        }
        let Some(mut results) = periodic else {
            continue;
        };
        // Those names' forced answers are newer than this round's.
        results
            .a
            .retain(|host, _| !forced_meanwhile.hosts.contains(host));
        results
            .srv
            .retain(|name, _| !forced_meanwhile.srv.contains(name));
        let unanswered = fold_in(&results, &mut state, &publisher);
        if let Some(floor) = timing.ttl_floor {
            follow_ttls(&mut schedule, &resolver, &names, &unanswered, floor);
        }
        if retrying || retry.names.is_empty() {
            retry.update(unanswered, timing.interval);
            retry_at = Instant::now() + retry.delay;
        } else {
            // A regular round while retries wait: it settled the names it covered; the
            // others keep their retry time.
            retry.names.hosts.retain(|h| !names.hosts.contains(h));
            retry.names.srv.retain(|n| !names.srv.contains(n));
            retry.names.hosts.extend(unanswered.hosts);
            retry.names.srv.extend(unanswered.srv);
            if retry.names.is_empty() {
                retry.update(Names::default(), timing.interval);
            }
        }
    }
}

/// Applies a reload between rounds: the state changes, names are rescheduled (new ones
/// due at once), retries of names no longer resolved stop, and the touched clusters are
/// published before the reload is answered. Returns the new timing.
fn reloaded(
    request: reload::Request,
    state: &mut DiscoveryState,
    schedule: &mut Schedule,
    retry: &mut Retry,
    publisher: &Publisher,
) -> Timing {
    let applied = reload::apply(state, &request.config, SystemTime::now());
    let timing = Timing::of(&request.config);
    schedule.reconcile(state.name_intervals(timing.interval), Instant::now());
    let resolved = Names::all(state);
    retry.names.hosts.retain(|h| resolved.hosts.contains(h));
    retry.names.srv.retain(|n| resolved.srv.contains(n));
    publisher.publish(state, &applied.touched);
    let _ = request.reply.send(applied);
    timing
}

/// TTL-aware mode: each name answered this round is next due when its TTL is up (floored).
fn follow_ttls<R: AddressResolver>(
    schedule: &mut Schedule,
    resolver: &R,
    names: &Names,
    unanswered: &Names,
    floor: Duration,
) {
    let now = Instant::now();
    let keyed = names
        .hosts
        .iter()
        .filter(|h| !unanswered.hosts.contains(*h))
        .map(|h| (false, h))
        .chain(
            names
                .srv
                .iter()
                .filter(|n| !unanswered.srv.contains(*n))
                .map(|n| (true, n)),
        );
    for (srv, name) in keyed {
        if let Some(ttl) = resolver.last_ttl(name) {
            schedule.set_next((srv, name.clone()), now + ttl.max(floor));
        }
    }
}

/// The names behind one cluster, if the shim serves it.
fn names_of(state: &DiscoveryState, cluster: &str) -> Option<Names> {
    let upstream = state
        .upstreams()
        .filter(|s| s.removed_at.is_none())
        .map(|s| &s.upstream)
        .find(|u| u.cluster_name() == cluster)?;
    let mut names = Names::default();
    let host = upstream.host().to_string();
    if matches!(upstream, Upstream::Srv { .. }) {
        names.srv.insert(host);
    } else {
        names.hosts.insert(host);
    }
    Some(names)
}

/// Re-resolves the names behind the asked clusters now (those not forced
/// in the last second), publishes, and answers each ask with whether the
/// served endpoints changed.
async fn forced_round<R: AddressResolver>(
    resolver: &R,
    asks: Vec<Ask>,
    state: &mut DiscoveryState,
    publisher: &Publisher,
    limit: &mut RateLimit,
) -> Names {
    let before = publisher
        .snapshots
        .borrow()
        .version(ResourceType::Endpoint)
        .to_string();
    let now = Instant::now();
    let mut names = Names::default();
    let mut waiting = Vec::with_capacity(asks.len());
    for ask in asks {
        let Some(wanted) = names_of(state, &ask.cluster) else {
            let status =
                tonic::Status::not_found(format!("xds-shim does not serve {}", ask.cluster));
            let _ = ask.reply.send(Err(status));
            continue;
        };
        for host in wanted.hosts {
            if names.hosts.contains(&host) || limit.allow(&host, now) {
                names.hosts.insert(host);
            }
        }
        for srv in wanted.srv {
            if names.srv.contains(&srv) || limit.allow(&srv, now) {
                names.srv.insert(srv);
            }
        }
        waiting.push(ask);
    }
    if !names.is_empty() {
        info!(hosts = ?names.hosts, srv = ?names.srv, "forced refresh");
        round_of(resolver, &names, state, publisher).await;
    }
    let after = publisher
        .snapshots
        .borrow()
        .version(ResourceType::Endpoint)
        .to_string();
    for ask in waiting {
        let _ = ask.reply.send(Ok(RefreshResponse {
            changed: before != after,
            version: after.clone(),
        }));
    }
    names
}

/// `first` and every ask already waiting: they share one forced round.
fn coalesce(first: Ask, asks: &mut mpsc::Receiver<Ask>) -> Vec<Ask> {
    let mut batch = vec![first];
    while let Ok(ask) = asks.try_recv() {
        batch.push(ask);
    }
    batch
}

fn log_event(event: &Event) {
    match event {
        Event::MembersChanged {
            cluster,
            added,
            removed,
        } => info!(%cluster, ?added, ?removed, "members changed"),
        Event::KeptLastGood {
            cluster,
            host,
            error,
            kept,
        } => warn!(
            %cluster,
            %host,
            error = %error,
            kind = error.kind(),
            kept,
            "resolution failed; keeping last good members"
        ),
        Event::Emptied { cluster, answers } => warn!(
            %cluster,
            answers,
            "nothing there, confirmed; members now draining"
        ),
        Event::StaleExpired { cluster, since } => warn!(
            %cluster,
            stale_since = ?since,
            "stale longer than allowed; members now draining"
        ),
        Event::DrainEnded { cluster, addrs } => info!(%cluster, ?addrs, "drain ended"),
        Event::Withdrawn { cluster } => {
            info!(%cluster, "removed upstream drained; cluster withdrawn")
        }
        Event::Capped {
            cluster,
            answered,
            kept,
        } => warn!(
            %cluster,
            answered,
            kept,
            "answer over --max-records; serving only the first (by SRV priority, then address)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::resolve::{ResolveError, SrvRecord};
    use crate::xds::snapshot::Snapshot;
    use std::collections::HashMap;
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::Arc;
    use std::sync::Mutex;

    /// Answers from a table that the test can change between rounds.
    struct FakeResolver(Mutex<HashMap<String, HostResult>>);

    impl FakeResolver {
        fn set(&self, host: &str, result: HostResult) {
            self.0.lock().unwrap().insert(host.to_string(), result);
        }
    }

    impl AddressResolver for FakeResolver {
        async fn resolve_host(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
            let answer = self.0.lock().unwrap().get(host).cloned();
            answer.unwrap_or(Err(ResolveError::NxDomain))
        }

        async fn resolve_srv(&self, name: &str) -> Result<Vec<SrvRecord>, ResolveError> {
            if name == "_h._tcp.api.test" {
                let record = |port| SrvRecord {
                    priority: 0,
                    weight: 1,
                    port,
                    target: "a.test".into(),
                };
                return Ok(vec![record(80), record(81)]);
            }
            Err(ResolveError::NxDomain)
        }
    }

    #[tokio::test]
    async fn publishes_only_when_versions_move() {
        let resolver = FakeResolver(Mutex::default());
        resolver.set("a.test", Ok(vec![Ipv4Addr::new(10, 0, 0, 1).into()]));
        let mut state = DiscoveryState::new(["dns+a.test:80".parse().unwrap()]);
        let publisher = Publisher::new(&state);
        let mut snapshots = publisher.snapshots.subscribe();
        let mut discovery = publisher.discovery.subscribe();
        snapshots.mark_unchanged();
        discovery.mark_unchanged();

        round(&resolver, &mut state, &publisher).await;
        assert!(snapshots.has_changed().unwrap());
        let first = Arc::clone(&snapshots.borrow_and_update());
        let addrs: Vec<std::net::SocketAddr> = first.members()["dns+a.test:80"]
            .members()
            .iter()
            .map(|m| m.addr)
            .collect();
        assert_eq!(addrs, ["10.0.0.1:80".parse().unwrap()]);

        // Same answer: the status moves, the snapshot does not.
        discovery.mark_unchanged();
        round(&resolver, &mut state, &publisher).await;
        assert!(!snapshots.has_changed().unwrap());
        assert!(discovery.has_changed().unwrap());

        // A failure keeps the last good members: still no new snapshot, and a retry is due.
        resolver.set("a.test", Err(ResolveError::ServFail));
        let unanswered = round(&resolver, &mut state, &publisher).await;
        assert!(!snapshots.has_changed().unwrap());
        assert_eq!(unanswered.hosts.iter().collect::<Vec<_>>(), ["a.test"]);

        resolver.set("a.test", Ok(vec![Ipv4Addr::new(10, 0, 0, 2).into()]));
        round(&resolver, &mut state, &publisher).await;
        assert!(snapshots.has_changed().unwrap());
    }

    #[tokio::test]
    async fn srv_targets_are_resolved_once_each() {
        let resolver = FakeResolver(Mutex::default());
        resolver.set("a.test", Ok(vec![Ipv4Addr::new(10, 0, 0, 1).into()]));
        let names = Names {
            hosts: BTreeSet::from(["a.test".to_string()]),
            srv: BTreeSet::from(["_h._tcp.api.test".to_string()]),
        };
        let results = resolve_all(&resolver, &names).await;
        assert_eq!(results.a.len(), 1);
        assert_eq!(results.srv["_h._tcp.api.test"].as_ref().unwrap().len(), 2);
        assert!(unanswered(&results).is_empty());
    }

    /// One query at a time, like `--max-in-flight 1`; `slow.test` holds its
    /// permit for a while, so a forced round needs the periodic one polled.
    struct LimitedResolver {
        permits: tokio::sync::Semaphore,
        slow_started: Arc<tokio::sync::Notify>,
    }

    impl AddressResolver for LimitedResolver {
        async fn resolve_host(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
            let _permit = self.permits.acquire().await;
            if host == "slow.test" {
                self.slow_started.notify_one();
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Ok(vec![Ipv4Addr::new(10, 0, 0, 9).into()])
        }

        async fn resolve_srv(&self, _name: &str) -> Result<Vec<SrvRecord>, ResolveError> {
            Err(ResolveError::NxDomain)
        }
    }

    #[tokio::test]
    async fn a_forced_refresh_does_not_wait_for_the_round_in_progress() {
        let slow_started = Arc::new(tokio::sync::Notify::new());
        let state = DiscoveryState::new([
            "dns+slow.test:80".parse().unwrap(),
            "dns+fast.test:80".parse().unwrap(),
        ]);
        let publisher = Publisher::new(&state);
        let mut snapshots = publisher.snapshots.subscribe();
        let (service, asks) = crate::xds::refresh_service::channel();
        let (_trigger, shutdown) = crate::shutdown::channel();
        let resolver = LimitedResolver {
            permits: tokio::sync::Semaphore::new(1),
            slow_started: Arc::clone(&slow_started),
        };
        tokio::spawn(run(
            resolver,
            state,
            Timing {
                interval: Duration::from_millis(10),
                ttl_floor: None,
            },
            publisher,
            shutdown,
            Names::default(),
            inbox(asks),
        ));
        // The periodic round is now on slow.test, holding the only permit.
        slow_started.notified().await;
        snapshots.mark_unchanged();
        let answer = tokio::time::timeout(
            Duration::from_secs(10),
            service.refresh(tonic::Request::new(
                crate::xds::refresh_service::RefreshRequest {
                    cluster: "dns+fast.test:80".into(),
                },
            )),
        )
        .await
        .expect("the forced refresh never got a permit: the periodic round was not polled")
        .unwrap()
        .into_inner();
        assert!(answer.changed);
        assert!(snapshots.has_changed().unwrap());
        let current = Arc::clone(&snapshots.borrow_and_update());
        assert_eq!(current.members()["dns+fast.test:80"].members().len(), 1);
    }

    #[tokio::test]
    async fn a_drain_ends_on_time_whatever_the_interval() {
        let resolver = FakeResolver(Mutex::default());
        let ip = |last| IpAddr::from(Ipv4Addr::new(10, 0, 0, last));
        resolver.set("a.test", Ok(vec![ip(1), ip(2)]));
        let policy = crate::discovery::Policy {
            drain: Duration::from_millis(300),
            ..Default::default()
        };
        let mut state = DiscoveryState::with_policy(["dns+a.test:80".parse().unwrap()], policy);
        let publisher = Publisher::new(&state);
        round(&resolver, &mut state, &publisher).await;
        resolver.set("a.test", Ok(vec![ip(1)]));
        round(&resolver, &mut state, &publisher).await;
        let mut snapshots = publisher.snapshots.subscribe();
        let served = |s: &Snapshot| s.members()["dns+a.test:80"].members().len();
        assert_eq!(
            served(&snapshots.borrow_and_update()),
            2,
            "one live, one draining"
        );

        let (_trigger, shutdown) = crate::shutdown::channel();
        let (_service, asks) = crate::xds::refresh_service::channel();
        // An hour between resolutions: only the drain's own deadline can wake the loop.
        let timing = Timing {
            interval: Duration::from_secs(3_600),
            ttl_floor: None,
        };
        tokio::spawn(run(
            resolver,
            state,
            timing,
            publisher,
            shutdown,
            Names::default(),
            inbox(asks),
        ));
        tokio::time::timeout(Duration::from_secs(10), snapshots.changed())
            .await
            .expect("the draining address outlived --drain")
            .unwrap();
        assert_eq!(served(&snapshots.borrow_and_update()), 1);
    }

    /// An inbox with no reloads coming.
    fn inbox(asks: mpsc::Receiver<Ask>) -> Inbox {
        Inbox {
            asks,
            reloads: mpsc::channel(1).1,
        }
    }

    #[tokio::test]
    async fn a_reload_publishes_at_once_and_resolves_new_names_without_waiting() {
        let resolver = FakeResolver(Mutex::default());
        let ip = |last| IpAddr::from(Ipv4Addr::new(10, 0, 0, last));
        resolver.set("a.test", Ok(vec![ip(1)]));
        resolver.set("b.test", Ok(vec![ip(2)]));
        let config = |ups: &[&str]| {
            let mut args = vec!["xds-shim", "--drain", "0s", "--interval", "1h"];
            args.extend(ups.iter().flat_map(|u| ["--upstream", u]));
            <crate::config::cli::Cli as clap::Parser>::try_parse_from(args)
                .unwrap()
                .to_config()
                .unwrap()
        };
        let first = config(&["dns+a.test:80"]);
        let mut state = DiscoveryState::with_policy(first.upstreams.clone(), first.policy);
        let publisher = Publisher::new(&state);
        round(&resolver, &mut state, &publisher).await;
        let mut snapshots = publisher.snapshots.subscribe();

        let (_trigger, shutdown) = crate::shutdown::channel();
        let (_service, asks) = crate::xds::refresh_service::channel();
        let (reloads, requests) = mpsc::channel(1);
        let inbox = Inbox {
            asks,
            reloads: requests,
        };
        let timing = Timing::of(&first);
        let names = Names::default();
        tokio::spawn(run(
            resolver, state, timing, publisher, shutdown, names, inbox,
        ));
        let (reply, applied) = tokio::sync::oneshot::channel();
        let config = config(&["dns+b.test:80"]);
        reloads
            .send(reload::Request { config, reply })
            .await
            .unwrap();
        let applied = applied.await.unwrap();
        assert_eq!(
            (applied.added, applied.removed),
            (vec!["dns+b.test:80".into()], vec!["dns+a.test:80".into()])
        );
        // Published before the answer: a is gone (no drain), b is served, still empty.
        let members = |s: &Snapshot| {
            let clusters = s.members().iter();
            let sizes = clusters.map(|(name, m)| (name.clone(), m.members().len()));
            sizes.collect::<Vec<_>>()
        };
        let now = members(&snapshots.borrow_and_update());
        assert_eq!(now, [("dns+b.test:80".to_string(), 0)]);
        // An hour's interval, yet b is resolved at once.
        tokio::time::timeout(Duration::from_secs(10), snapshots.changed())
            .await
            .expect("the new upstream was not resolved at once")
            .unwrap();
        let now = members(&snapshots.borrow_and_update());
        assert_eq!(now, [("dns+b.test:80".to_string(), 1)]);
    }

    #[test]
    fn retry_delay_doubles_up_to_the_interval() {
        let mut retry = Retry::default();
        let failing = Names {
            hosts: BTreeSet::from(["a.test".to_string()]),
            srv: BTreeSet::new(),
        };
        let cap = Duration::from_secs(1);
        let delays: Vec<Duration> = (0..4)
            .map(|_| {
                retry.update(failing.clone(), cap);
                retry.delay
            })
            .collect();
        assert_eq!(
            delays,
            [250, 500, 1000, 1000].map(Duration::from_millis).to_vec()
        );
        retry.update(Names::default(), cap);
        assert!(retry.names.is_empty() && retry.delay.is_zero());
    }
}
