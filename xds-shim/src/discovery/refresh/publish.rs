//! Where a round's answers go once folded into the state: counted, logged, published.

use crate::discovery::resolve::AddressResolver;
use crate::discovery::{DiscoveryState, RoundResults};

use super::events::log_event;
use super::fan_out::{resolve_all, unanswered};
use crate::discovery::names::Names;

/// What the refresh loop publishes to (the xDS snapshot and the admin pages). A trait, so
/// discovery does not depend on how its results are served.
pub trait Sink: Send + Sync + 'static {
    /// Counts one answer or failure by kind (`ok`, `nxdomain`, ...).
    fn count_resolution(&self, kind: &'static str);
    /// Serves `state` anew for the `touched` clusters, and says what that did to the
    /// served endpoints.
    fn publish(&self, state: &DiscoveryState, touched: &[String]) -> Published;
    /// The endpoints' version served now.
    fn endpoint_version(&self) -> String;
}

/// What one publish did to the served endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The endpoints' version served after it.
    pub endpoint_version: String,
    /// Whether that version moved.
    pub endpoints_changed: bool,
}

/// A round's outcome once folded in.
pub(super) struct Folded {
    /// The names whose question went unanswered (to retry soon).
    pub(super) unanswered: Names,
    pub(super) published: Published,
}

/// Folds a round's answers into the state, logs, publishes.
pub(super) fn fold_in<S: Sink>(
    results: &RoundResults,
    state: &mut DiscoveryState,
    sink: &S,
) -> Folded {
    let kinds = results.a.values().map(|r| r.as_ref().map(|_| ()));
    let kinds = kinds.chain(results.srv.values().map(|r| r.as_ref().map(|_| ())));
    for kind in kinds {
        sink.count_resolution(kind.map_or_else(|e| e.kind(), |()| "ok"));
    }
    let (events, touched) = state.apply_tracked(results, std::time::SystemTime::now());
    for event in &events {
        log_event(event);
    }
    Folded {
        published: sink.publish(state, &touched),
        unanswered: unanswered(results),
    }
}

/// One round over `names`: resolve, fold in, log, publish.
pub(super) async fn round_of<R: AddressResolver, S: Sink>(
    resolver: &R,
    names: &Names,
    state: &mut DiscoveryState,
    sink: &S,
) -> Folded {
    let round = resolve_all(resolver, names).await;
    fold_in(&round.results, state, sink)
}

/// One full round over every name; returns the names whose question went unanswered.
pub async fn round<R: AddressResolver, S: Sink>(
    resolver: &R,
    state: &mut DiscoveryState,
    sink: &S,
) -> Names {
    let names = Names::all(state);
    round_of(resolver, &names, state, sink).await.unanswered
}
