//! What a cost variant is, apart from its run: its path, its twin and the goal its
//! ratios to the twin are held to.

use dnslb_tests::stack::Build;

/// What a variant's ratios to its twin are held to (issue 11); reported, never
/// asserted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Goal {
    /// Throughput at least this share of the twin's.
    pub min_rps_ratio: f64,
    /// p99 at most this multiple of the twin's, when the goal has one.
    pub max_p99_ratio: Option<f64>,
}

/// Round robin and hash affinity on the recommended path: Envoy's own work.
pub const GOAL_NATIVE_WORK: Goal = Goal {
    min_rps_ratio: 0.95,
    max_p99_ratio: Some(1.10),
};
/// Cookie affinity, with the wasm filter on its route.
pub const GOAL_COOKIE_WASM: Goal = Goal {
    min_rps_ratio: 0.80,
    max_p99_ratio: None,
};
/// Cookie affinity with the dynamic module on its route (issue 12).
pub const GOAL_COOKIE_MODULE: Goal = Goal {
    min_rps_ratio: 0.95,
    max_p99_ratio: Some(1.10),
};

/// Which path a variant takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Envoy's own STRICT_DNS clusters.
    Native,
    /// The recommended bootstrap (`xds-shim envoy-bootstrap`).
    Dnslb,
    /// `envoy/filter-routing.yaml`: the filter routes and picks.
    Legacy,
    /// `direct_response`: no upstream.
    Ceiling,
}

/// What a variant is, independent of its run.
#[derive(Debug, Clone)]
pub struct Spec {
    pub key: &'static str,
    pub label: &'static str,
    pub family: Family,
    /// `key` of its native twin, for the ratio.
    pub twin: Option<&'static str>,
    /// `None` for the twins, the ceiling and the legacy path (the "before").
    pub goal: Option<Goal>,
    /// How its Envoy is configured, for the report.
    pub setup: String,
    /// Envoy's cluster the requests go to, as its stats name it (its `alt_stat_name`).
    pub stat_cluster: Option<String>,
    /// The build of the dnslb filter in its HTTP filter chain, if any.
    pub filter: Option<Build>,
}

impl Spec {
    pub(crate) fn new(
        key: &'static str,
        label: &'static str,
        family: Family,
        setup: String,
    ) -> Self {
        Self {
            key,
            label,
            family,
            twin: None,
            goal: None,
            setup,
            stat_cluster: None,
            filter: None,
        }
    }
    pub(crate) fn twin(self, twin: &'static str, goal: Option<Goal>) -> Self {
        Self {
            twin: Some(twin),
            goal,
            ..self
        }
    }
    pub(crate) fn cluster(self, cluster: &str) -> Self {
        Self {
            stat_cluster: Some(dnslb_wire::names::stat_name(cluster)),
            ..self
        }
    }
    pub(crate) fn with_filter(self, build: Option<Build>) -> Self {
        Self {
            filter: build,
            ..self
        }
    }
}
