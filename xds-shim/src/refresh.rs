//! The refresh loop: every interval, resolve each distinct host, fold the answers into the
//! discovery state, and publish a new snapshot when (and only when) its versions moved.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{info, warn};

use crate::discovery::{DiscoveryState, Event, HostResult};
use crate::resolve::AddressResolver;
use crate::shutdown::Shutdown;
use crate::snapshot::{ResourceType, Snapshot};

/// Queries in flight at once; enough for large configs without flooding the resolver.
const MAX_IN_FLIGHT: usize = 64;

/// Where each round's results go: the snapshot for ADS streams, the discovery state for
/// the status page.
pub struct Publisher {
    pub snapshots: watch::Sender<Arc<Snapshot>>,
    pub discovery: watch::Sender<Arc<DiscoveryState>>,
}

impl Publisher {
    /// Channels seeded with `state` as it is now (no resolution yet).
    pub fn new(state: &DiscoveryState) -> Self {
        let snapshot = Snapshot::build(state.members());
        Publisher {
            snapshots: watch::channel(Arc::new(snapshot)).0,
            discovery: watch::channel(Arc::new(state.clone())).0,
        }
    }

    /// Publishes the snapshot only if a version changed, so streams wake only for news;
    /// the discovery state (times, errors) always.
    pub fn publish(&self, state: &DiscoveryState) {
        let snapshot = Snapshot::build(state.members());
        let published = self.snapshots.send_if_modified(|current| {
            if current.versions_differ(&snapshot) {
                *current = Arc::new(snapshot);
                true
            } else {
                false
            }
        });
        if published {
            let current = self.snapshots.borrow();
            info!(
                cds_version = current.version(ResourceType::Cluster),
                eds_version = current.version(ResourceType::Endpoint),
                clusters = current.members().len(),
                "snapshot published"
            );
        }
        self.discovery.send_replace(Arc::new(state.clone()));
    }
}

/// Resolves every host once, at most [`MAX_IN_FLIGHT`] at a time.
pub async fn resolve_all<R: AddressResolver>(
    resolver: &R,
    hosts: BTreeSet<String>,
) -> HashMap<String, HostResult> {
    futures::stream::iter(hosts)
        .map(|host| async move {
            let result = resolver.resolve_a(&host).await;
            (host, result)
        })
        .buffer_unordered(MAX_IN_FLIGHT)
        .collect()
        .await
}

/// One full round: resolve, fold in, log, publish.
pub async fn round<R: AddressResolver>(
    resolver: &R,
    state: &mut DiscoveryState,
    publisher: &Publisher,
) {
    let results = resolve_all(resolver, state.hosts()).await;
    for event in state.apply(&results, SystemTime::now()) {
        log_event(&event);
    }
    publisher.publish(state);
}

/// Runs rounds every `interval` (the first one `interval` from now: the caller has done the
/// initial round) until shutdown. A slow round delays the next instead of bunching up.
pub async fn run<R: AddressResolver>(
    resolver: R,
    mut state: DiscoveryState,
    interval: Duration,
    publisher: Publisher,
    mut shutdown: Shutdown,
) {
    let mut ticker = tokio::time::interval_at(Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = ticker.tick() => {}
        }
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = round(&resolver, &mut state, &publisher) => {}
        }
    }
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::ResolveError;
    use std::net::Ipv4Addr;
    use std::sync::Mutex;

    /// Answers from a table that the test can change between rounds.
    struct FakeResolver(Mutex<HashMap<String, HostResult>>);

    impl FakeResolver {
        fn set(&self, host: &str, result: HostResult) {
            self.0.lock().unwrap().insert(host.to_string(), result);
        }
    }

    impl AddressResolver for FakeResolver {
        async fn resolve_a(&self, host: &str) -> Result<Vec<Ipv4Addr>, ResolveError> {
            let answer = self.0.lock().unwrap().get(host).cloned();
            answer.unwrap_or(Err(ResolveError::NxDomain))
        }
    }

    #[tokio::test]
    async fn publishes_only_when_versions_move() {
        let resolver = FakeResolver(Mutex::default());
        resolver.set("a.test", Ok(vec![Ipv4Addr::new(10, 0, 0, 1)]));
        let mut state = DiscoveryState::new(["dns+a.test:80".parse().unwrap()]);
        let publisher = Publisher::new(&state);
        let mut snapshots = publisher.snapshots.subscribe();
        let mut discovery = publisher.discovery.subscribe();
        snapshots.mark_unchanged();
        discovery.mark_unchanged();

        round(&resolver, &mut state, &publisher).await;
        assert!(snapshots.has_changed().unwrap());
        let first = Arc::clone(&snapshots.borrow_and_update());
        assert_eq!(
            first.members()["dns+a.test:80"].addresses,
            ["10.0.0.1:80".parse().unwrap()]
        );

        // Same answer: the status moves, the snapshot does not.
        discovery.mark_unchanged();
        round(&resolver, &mut state, &publisher).await;
        assert!(!snapshots.has_changed().unwrap());
        assert!(discovery.has_changed().unwrap());

        // A failure keeps the last good members: still no new snapshot.
        resolver.set("a.test", Err(ResolveError::ServFail));
        round(&resolver, &mut state, &publisher).await;
        assert!(!snapshots.has_changed().unwrap());

        resolver.set("a.test", Ok(vec![Ipv4Addr::new(10, 0, 0, 2)]));
        round(&resolver, &mut state, &publisher).await;
        assert!(snapshots.has_changed().unwrap());
    }
}
