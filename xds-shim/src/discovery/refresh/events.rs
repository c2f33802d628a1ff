//! One log line per discovery event.

use tracing::{info, warn};

use crate::discovery::Event;

pub(super) fn log_event(event: &Event) {
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
        Event::Emptied { cluster, answers } => warn!(
            %cluster,
            answers,
            "nothing there, confirmed; members now draining"
        ),
        Event::StaleExpired { cluster, since } => warn!(
            %cluster,
            stale_since = ?since,
            "stale longer than allowed; members now draining"
        ),
        Event::DrainEnded { cluster, addrs } => info!(%cluster, ?addrs, "drain ended"),
        Event::Withdrawn { cluster } => {
            info!(%cluster, "removed upstream drained; cluster withdrawn")
        }
        Event::Capped {
            cluster,
            answered,
            kept,
        } => warn!(
            %cluster,
            answered,
            kept,
            "answer over --max-records; serving only the first (by SRV priority, then address)"
        ),
    }
}
