//! The per-upstream member gauges, as the wasm build keeps them: members per
//! upstream, 0 for an upstream that left. The wasm build defines one gauge
//! per upstream as it appears; the module ABI defines metrics only while
//! configuring, so the module defines one gauge with the label
//! `envoy_cluster_name` and sets it per upstream. Prometheus sees one series
//! per upstream from both builds, `dnslb_upstream_members{envoy_cluster_name="…"}`,
//! the module's under `envoy_dynamicmodulescustom_` (Envoy 1.40 strips only
//! the wasm namespace there).
//!
//! Gauges are set on Envoy's main thread: the xDS thread asks for it through
//! the configuration's scheduler after each update ([`Notify`]).

use std::collections::BTreeSet;
use std::sync::{Mutex, PoisonError};

use dnslb_filter::members::WorkerMembership;
use dnslb_wire::names::stat_name;

/// The gauge's name; Envoy adds its `dynamicmodulescustom.` namespace.
pub const NAME: &str = "dnslb.upstream_members";
/// The label holding the upstream's stat name (its cluster `alt_stat_name`),
/// the label Envoy's own cluster stats carry.
pub const LABEL: &str = "envoy_cluster_name";

/// Envoy's configuration during a scheduled event on the main thread.
pub trait SetGauges {
    /// Sets gauge `id` for the label value `label`; false if Envoy refused.
    fn set_gauge(&mut self, id: usize, label: &str, value: u64) -> bool;
}

/// Wakes the main thread to record the gauges; callable from any thread.
pub trait Notify: Send + Sync {
    fn notify(&self);
    /// No more wake-ups: the configuration is going away.
    fn close(&self);
}

/// The member gauge of one filter configuration.
#[derive(Debug)]
pub struct MemberGauges {
    id: usize,
    /// Label values set so far, so that one that left is set to 0 once.
    set: Mutex<BTreeSet<String>>,
}

impl MemberGauges {
    pub fn new(id: usize) -> Self {
        Self {
            id,
            set: Mutex::new(BTreeSet::new()),
        }
    }

    /// Sets every upstream's member count, and 0 for upstreams that left.
    pub fn record(&self, membership: &WorkerMembership, envoy: &mut impl SetGauges) {
        let mut set = self.set.lock().unwrap_or_else(PoisonError::into_inner);
        let mut now = BTreeSet::new();
        for (cluster, members) in membership.clusters() {
            let label = stat_name(cluster);
            envoy.set_gauge(self.id, &label, members.members().len() as u64);
            now.insert(label);
        }
        for gone in set.difference(&now) {
            envoy.set_gauge(self.id, gone, 0);
        }
        *set = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{member, FakeGauges};

    #[test]
    fn counts_members_per_upstream_and_zeroes_the_ones_that_left() {
        let gauges = MemberGauges::new(7);
        let mut membership = WorkerMembership::default();
        membership.replace(
            "v1".into(),
            vec![
                (
                    "dns+a.test:80".into(),
                    vec![member("127.0.0.2:80"), member("127.0.0.3:80")],
                ),
                ("srv+_h._tcp.b.test".into(), vec![member("127.0.0.4:80")]),
            ],
        );
        let mut envoy = FakeGauges::default();
        gauges.record(&membership, &mut envoy);
        envoy.0.sort();
        assert_eq!(
            envoy.0,
            [
                (7, "dns+a~test_80".to_string(), 2),
                (7, "srv+_h~_tcp~b~test".to_string(), 1)
            ]
        );
        membership.replace(
            "v2".into(),
            vec![("dns+a.test:80".into(), vec![member("127.0.0.2:80")])],
        );
        let mut envoy = FakeGauges::default();
        gauges.record(&membership, &mut envoy);
        envoy.0.sort();
        assert_eq!(
            envoy.0,
            [
                (7, "dns+a~test_80".to_string(), 1),
                (7, "srv+_h~_tcp~b~test".to_string(), 0)
            ]
        );
        // Zeroed once: it is no longer tracked.
        let mut envoy = FakeGauges::default();
        gauges.record(&membership, &mut envoy);
        assert_eq!(envoy.0, [(7, "dns+a~test_80".to_string(), 1)]);
    }
}
