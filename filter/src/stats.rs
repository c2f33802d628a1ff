//! The filter's counters. The glue defines each as an Envoy metric named
//! `dnslb.<name>`, visible in `/stats` and `/stats/prometheus`.

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

#[cfg(test)]
mod tests {
    use super::*;
    // The same tests run natively and, under Node, compiled to wasm32.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn names_are_distinct_and_indexed() {
        let names: std::collections::HashSet<_> = Counter::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(names.len(), Counter::ALL.len());
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
        }
    }
}
