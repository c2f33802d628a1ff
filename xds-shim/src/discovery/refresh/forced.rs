//! Forced refreshes: a client (the dnslb filter) asks for a cluster's names to be
//! re-resolved now, because the member it picked did not answer. Asks are coalesced, and
//! each name is forced at most once per [`MIN_GAP`].

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::info;

use crate::discovery::resolve::AddressResolver;
use crate::discovery::DiscoveryState;
use crate::model::upstream::Upstream;

use super::publish::{round_of, Sink};
use crate::discovery::names::Names;

/// A name is re-resolved on request at most this often.
pub const MIN_GAP: Duration = Duration::from_secs(1);

/// One ask handed to the refresh loop, with where to answer it.
#[derive(Debug)]
pub struct Ask {
    pub cluster: String,
    pub reply: oneshot::Sender<Result<Refreshed, NotServed>>,
}

/// The answer to an ask: the endpoints' version served now, and whether the forced round
/// moved it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refreshed {
    pub changed: bool,
    pub version: String,
}

/// The asked cluster is not one the shim serves.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("xds-shim does not serve {0}")]
pub struct NotServed(pub String);

/// Per-name rate limit for forced rounds (pure; the loop owns it).
#[derive(Debug, Default)]
pub struct RateLimit {
    last: HashMap<String, Instant>,
}

impl RateLimit {
    /// True (and recorded) when `name` was not force-resolved in the last
    /// [`MIN_GAP`].
    pub fn allow(&mut self, name: &str, now: Instant) -> bool {
        match self.last.get(name) {
            Some(at) if now.duration_since(*at) < MIN_GAP => false,
            _ => {
                self.last.insert(name.to_string(), now);
                true
            }
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
/// served endpoints changed. Returns the names it resolved.
pub(super) async fn forced_round<R: AddressResolver, S: Sink>(
    resolver: &R,
    asks: Vec<Ask>,
    state: &mut DiscoveryState,
    sink: &S,
    limit: &mut RateLimit,
) -> Names {
    let now = Instant::now();
    let mut names = Names::default();
    let mut waiting = Vec::with_capacity(asks.len());
    for ask in asks {
        let Some(wanted) = names_of(state, &ask.cluster) else {
            let _ = ask.reply.send(Err(NotServed(ask.cluster)));
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
    let refreshed = if names.is_empty() {
        Refreshed {
            changed: false,
            version: sink.endpoint_version(),
        }
    } else {
        info!(hosts = ?names.hosts, srv = ?names.srv, "forced refresh");
        let published = round_of(resolver, &names, state, sink).await.published;
        Refreshed {
            changed: published.endpoints_changed,
            version: published.endpoint_version,
        }
    };
    for ask in waiting {
        let _ = ask.reply.send(Ok(refreshed.clone()));
    }
    names
}

/// `first` and every ask already waiting: they share one forced round.
pub(super) fn coalesce(first: Ask, asks: &mut mpsc::Receiver<Ask>) -> Vec<Ask> {
    let mut batch = vec![first];
    while let Ok(ask) = asks.try_recv() {
        batch.push(ask);
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_forced_at_most_once_a_second() {
        let mut limit = RateLimit::default();
        let t0 = Instant::now();
        assert!(limit.allow("a.test", t0));
        assert!(!limit.allow("a.test", t0 + Duration::from_millis(999)));
        assert!(limit.allow("b.test", t0 + Duration::from_millis(10)));
        assert!(limit.allow("a.test", t0 + MIN_GAP));
    }
}
