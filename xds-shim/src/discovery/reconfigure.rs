//! What the configuration asks discovery to serve, and how a reload moves the state there:
//! upstreams join, removed ones drain, changed settings become new cluster versions.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use crate::discovery::{DiscoveryState, Policy};
use crate::model::upstream::Configured;

/// The upstreams to serve, each with its settings, and the state-wide settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// Distinct upstreams, in the order first given.
    pub upstreams: Vec<Configured>,
    pub policy: Policy,
    /// Trusted roots for `https://` upstreams without their own `tls.ca_file`.
    pub ca_file: String,
}

impl DiscoveryState {
    /// A state serving `wanted`, nothing resolved yet.
    pub fn from_wanted(wanted: &Wanted) -> Self {
        let upstreams = wanted.upstreams.iter().map(|c| c.upstream.clone());
        let mut state = DiscoveryState::with_policy(upstreams, wanted.policy);
        state.set_ca_file(&wanted.ca_file);
        for Configured { upstream, settings } in &wanted.upstreams {
            state.set_settings(&upstream.cluster_name(), settings.clone());
        }
        state
    }
}

/// What a reload did to the served clusters, by cluster name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    pub added: Vec<String>,
    /// Now draining (or gone, with nothing to drain).
    pub removed: Vec<String>,
    /// Kept, with other settings (or other roots, when the global CA file changed).
    pub changed: Vec<String>,
    /// Every cluster whose membership may differ: what the refresh loop publishes.
    pub touched: Vec<String>,
}

/// Applies `wanted`'s upstreams, their settings, the drain policy and the CA file to
/// `state` at `at`. Pure: the refresh loop reschedules names and publishes.
pub fn apply(state: &mut DiscoveryState, wanted: &Wanted, at: SystemTime) -> Applied {
    // (upstream, settings, TLS target) per served cluster: what its Envoy cluster is built
    // from, so "changed" means a new cluster version.
    let shapes = |state: &DiscoveryState| -> BTreeMap<String, _> {
        state
            .upstreams()
            .filter(|s| s.removed_at.is_none())
            .filter_map(|s| {
                let cluster = s.upstream.cluster_name();
                let membership = state.membership(&cluster)?;
                Some((
                    cluster,
                    (s.upstream.clone(), membership.settings, membership.tls),
                ))
            })
            .collect()
    };
    let before = shapes(state);
    let mut touched: BTreeSet<String> = state
        .upstreams()
        .map(|s| s.upstream.cluster_name())
        .collect();
    let clusters: BTreeSet<String> = wanted
        .upstreams
        .iter()
        .map(|c| c.upstream.cluster_name())
        .collect();
    let mut applied = Applied::default();

    state.set_policy(wanted.policy);
    state.set_ca_file(&wanted.ca_file);
    for cluster in before.keys().filter(|c| !clusters.contains(*c)) {
        if state.remove_upstream(cluster, at) {
            applied.removed.push(cluster.clone());
        }
    }
    for Configured { upstream, settings } in &wanted.upstreams {
        let cluster = upstream.cluster_name();
        if state.add_upstream(upstream.clone()) {
            applied.added.push(cluster.clone());
        }
        state.set_settings(&cluster, settings.clone());
    }
    let after = shapes(state);
    applied.changed = after
        .iter()
        .filter(|(cluster, shape)| before.get(*cluster).is_some_and(|old| old != *shape))
        .map(|(cluster, _)| cluster.clone())
        .collect();
    touched.extend(after.into_keys());
    applied.touched = touched.into_iter().collect();
    applied
}
