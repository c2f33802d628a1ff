use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::Mutex;

use super::*;
use crate::discovery::resolve::{Answer, ResolveError, SrvRecord};
use crate::discovery::HostResult;
use crate::xds::publisher::Publisher;
use crate::xds::snapshot::Snapshot;

/// Answers from a table that the test can change between rounds.
struct FakeResolver(Mutex<HashMap<String, HostResult>>);

impl FakeResolver {
    fn set(&self, host: &str, result: HostResult) {
        self.0.lock().unwrap().insert(host.to_string(), result);
    }
}

impl AddressResolver for FakeResolver {
    async fn resolve_host(&self, host: &str) -> Answer<Vec<IpAddr>> {
        let answer = self.0.lock().unwrap().get(host).cloned();
        answer.unwrap_or(Err(ResolveError::NxDomain)).into()
    }

    async fn resolve_srv(&self, name: &str) -> Answer<Vec<SrvRecord>> {
        if name == "_h._tcp.api.test" {
            let record = |port| SrvRecord {
                priority: 0,
                weight: 1,
                port,
                target: "a.test".into(),
            };
            return Ok(vec![record(80), record(81)]).into();
        }
        Err(ResolveError::NxDomain).into()
    }
}

#[tokio::test]
async fn publishes_only_when_versions_move() {
    let resolver = FakeResolver(Mutex::default());
    resolver.set("a.test", Ok(vec![Ipv4Addr::new(10, 0, 0, 1).into()]));
    let mut state = DiscoveryState::new(["dns+a.test:80".parse().unwrap()]);
    let publisher = Publisher::new(&state);
    let mut snapshots = publisher.snapshots();
    let mut discovery = publisher.discovery();
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
    let results = resolve_all(&resolver, &names).await.results;
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
    async fn resolve_host(&self, host: &str) -> Answer<Vec<IpAddr>> {
        let _permit = self.permits.acquire().await;
        if host == "slow.test" {
            self.slow_started.notify_one();
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Ok(vec![Ipv4Addr::new(10, 0, 0, 9).into()]).into()
    }

    async fn resolve_srv(&self, _name: &str) -> Answer<Vec<SrvRecord>> {
        Err(ResolveError::NxDomain).into()
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
    let mut snapshots = publisher.snapshots();
    let (service, asks) = crate::xds::refresh_service::channel();
    let (_trigger, shutdown) = crate::shutdown::channel();
    let resolver = LimitedResolver {
        permits: tokio::sync::Semaphore::new(1),
        slow_started: Arc::clone(&slow_started),
    };
    let timing = Timing {
        interval: Duration::from_millis(10),
        ttl_floor: None,
    };
    let refresher = Refresher::new(resolver, state, timing, publisher);
    tokio::spawn(refresher.run(shutdown, inbox(asks)));
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
    let mut snapshots = publisher.snapshots();
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
    let refresher = Refresher::new(resolver, state, timing, publisher);
    tokio::spawn(refresher.run(shutdown, inbox(asks)));
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
    let mut state = DiscoveryState::from_wanted(&first.wanted());
    let publisher = Publisher::new(&state);
    round(&resolver, &mut state, &publisher).await;
    let mut snapshots = publisher.snapshots();

    let (_trigger, shutdown) = crate::shutdown::channel();
    let (_service, asks) = crate::xds::refresh_service::channel();
    let (reloads, requests) = mpsc::channel(1);
    let inbox = Inbox {
        asks,
        reloads: requests,
    };
    let refresher = Refresher::new(resolver, state, first.timing(), publisher);
    tokio::spawn(refresher.run(shutdown, inbox));
    let (reply, applied) = tokio::sync::oneshot::channel();
    let config = config(&["dns+b.test:80"]);
    let (wanted, timing) = (config.wanted(), config.timing());
    reloads
        .send(Reload {
            wanted,
            timing,
            reply,
        })
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
