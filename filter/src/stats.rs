//! The filter's counters. The glue defines each as an Envoy metric named
//! `dnslb.<name>`, visible in `/stats` and `/stats/prometheus`; and the stat name of a
//! dnslb cluster, shared with the shim (its `alt_stat_name`) and the filter's gauges.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Counter {
    /// Every request the filter saw.
    Requests,
    /// Requests routed to a dnslb upstream.
    Rewrites,
    PicksRoundRobin,
    PicksCookie,
    PicksHash,
    /// A valid affinity cookie whose endpoint served.
    AffinityHits,
    /// No valid affinity cookie: a fresh pick.
    AffinityMisses,
    /// A valid cookie whose endpoint is gone: a new pick (or 503 if strict).
    AffinityFailovers,
    /// Tampered, expired, foreign or malformed cookies, ignored.
    CookiesRejected,
    /// A known upstream with no member to pick: 503.
    NoMembers,
    /// Malformed upstreams, repeated or oversized cookies: 400.
    BadRequests,
    /// An upstream the xDS server does not serve: 404.
    UnknownUpstreams,
    StatusRequests,
    /// Forced re-resolutions asked of the shim.
    ForcedRefreshes,
}

impl Counter {
    pub const ALL: [Counter; 14] = [
        Counter::Requests,
        Counter::Rewrites,
        Counter::PicksRoundRobin,
        Counter::PicksCookie,
        Counter::PicksHash,
        Counter::AffinityHits,
        Counter::AffinityMisses,
        Counter::AffinityFailovers,
        Counter::CookiesRejected,
        Counter::NoMembers,
        Counter::BadRequests,
        Counter::UnknownUpstreams,
        Counter::StatusRequests,
        Counter::ForcedRefreshes,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Counter::Requests => "requests",
            Counter::Rewrites => "rewrites",
            Counter::PicksRoundRobin => "picks_round_robin",
            Counter::PicksCookie => "picks_cookie",
            Counter::PicksHash => "picks_hash",
            Counter::AffinityHits => "affinity_hits",
            Counter::AffinityMisses => "affinity_misses",
            Counter::AffinityFailovers => "affinity_failovers",
            Counter::CookiesRejected => "cookies_rejected",
            Counter::NoMembers => "no_members",
            Counter::BadRequests => "bad_requests",
            Counter::UnknownUpstreams => "unknown_upstreams",
            Counter::StatusRequests => "status_requests",
            Counter::ForcedRefreshes => "forced_refreshes",
        }
    }

    /// Index into per-counter tables (the glue's metric ids).
    pub fn index(self) -> usize {
        Counter::ALL.iter().position(|c| *c == self).unwrap_or(0)
    }
}

pub use dnslb_wire::names::stat_name;

/// The prefix of the per-upstream member gauges; the recommended bootstrap's stats tag
/// [`UPSTREAM_TAG_REGEX`] moves the upstream into the label `envoy_cluster_name`.
pub const MEMBERS_GAUGE_PREFIX: &str = "dnslb.upstream_members.";

/// The name the root context defines the member gauge of `cluster` under.
pub fn members_gauge(cluster: &str) -> String {
    format!("{MEMBERS_GAUGE_PREFIX}{}", stat_name(cluster))
}

/// Envoy stats tag regex (the first group is cut from the name, the second is the value)
/// that turns `wasmcustom.dnslb.upstream_members.<stat name>` into
/// `dnslb_upstream_members{envoy_cluster_name="<stat name>"}`, the label Envoy's own cluster
/// stats carry.
pub const UPSTREAM_TAG_REGEX: &str = r"^wasmcustom\.dnslb\.upstream_members(\.([^.]+))$";

#[cfg(test)]
mod tests {
    use super::*;
    // The same tests run natively and, under Node, compiled to wasm32.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn member_gauges_of_a_dash_and_a_dot_differ() {
        assert_ne!(members_gauge("dns+a-b:80"), members_gauge("dns+a.b:80"));
        assert_eq!(
            members_gauge("dns+a.b:80"),
            "dnslb.upstream_members.dns+a~b_80"
        );
    }

    #[test]
    fn names_are_distinct_and_indexed() {
        let names: std::collections::HashSet<_> = Counter::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(names.len(), Counter::ALL.len());
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
        }
    }
}
