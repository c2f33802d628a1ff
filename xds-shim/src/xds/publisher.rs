//! Where each round's results go: a new snapshot for the xDS streams when (and only when)
//! a version moved, and the discovery state for the admin pages.

use std::sync::Arc;

use tokio::sync::watch;
use tracing::info;

use crate::discovery::refresh::{Published, Sink};
use crate::discovery::DiscoveryState;
use crate::metrics::Metrics;
use crate::xds::snapshot::{ResourceType, Snapshot};

/// Where each round's results go: the snapshot for ADS streams, the discovery state for
/// the status page.
pub struct Publisher {
    snapshots: watch::Sender<Arc<Snapshot>>,
    discovery: watch::Sender<Arc<DiscoveryState>>,
    metrics: Arc<Metrics>,
}

impl Publisher {
    /// Channels seeded with `state` as it is now (no resolution yet).
    pub fn new(state: &DiscoveryState) -> Self {
        let snapshot = Snapshot::build(state.members());
        Publisher {
            snapshots: watch::channel(Arc::new(snapshot)).0,
            discovery: watch::channel(Arc::new(state.clone())).0,
            metrics: Arc::default(),
        }
    }

    /// The snapshots published from now on, starting with the current one.
    pub fn snapshots(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.snapshots.subscribe()
    }

    /// The discovery state after each round.
    pub fn discovery(&self) -> watch::Receiver<Arc<DiscoveryState>> {
        self.discovery.subscribe()
    }

    /// The counters publishing bumps, shared with whoever renders or bumps them too.
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.metrics)
    }
}

impl Sink for Publisher {
    fn count_resolution(&self, kind: &'static str) {
        self.metrics.resolution(kind);
    }

    /// Publishes a new snapshot only if the `touched` clusters' memberships moved a
    /// version, so streams wake only for news; the discovery state (times, errors) always.
    fn publish(&self, state: &DiscoveryState, touched: &[String]) -> Published {
        // Only the touched clusters are compared, and only changed ones encoded: with
        // 10,000 upstreams a round that changes one cluster stays cheap. A touched cluster
        // the state no longer has was removed by a reload and has drained: withdrawn.
        let mut changes = Vec::new();
        let mut withdrawn = Vec::new();
        for cluster in touched {
            match state.membership(cluster) {
                Some(membership) => changes.push((cluster.clone(), membership)),
                None => withdrawn.push(cluster.clone()),
            }
        }
        let before = self.endpoint_version();
        let next = self
            .snapshots
            .borrow()
            .updated_withdrawing(changes, &withdrawn);
        // The refresh loop is the only writer, so the check and the send cannot race.
        let news = next.filter(|snapshot| self.snapshots.borrow().versions_differ(snapshot));
        let mut endpoint_version = before.clone();
        if let Some(snapshot) = news {
            info!(
                cds_version = snapshot.version(ResourceType::Cluster),
                eds_version = snapshot.version(ResourceType::Endpoint),
                clusters = snapshot.members().len(),
                "snapshot published"
            );
            endpoint_version = snapshot.version(ResourceType::Endpoint).to_string();
            // Timestamped before streams can push it, so push latency counts from here.
            self.metrics.snapshot_published();
            self.snapshots.send_replace(Arc::new(snapshot));
        }
        self.discovery.send_replace(Arc::new(state.clone()));
        Published {
            endpoints_changed: endpoint_version != before,
            endpoint_version,
        }
    }

    fn endpoint_version(&self) -> String {
        self.snapshots
            .borrow()
            .version(ResourceType::Endpoint)
            .to_string()
    }
}
