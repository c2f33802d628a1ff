//! The names a round resolves: A hosts and SRV names.

use std::collections::BTreeSet;

use crate::discovery::DiscoveryState;

/// Names to resolve in one round.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    pub hosts: BTreeSet<String>,
    pub srv: BTreeSet<String>,
}

impl Names {
    pub fn all(state: &DiscoveryState) -> Self {
        Names {
            hosts: state.hosts(),
            srv: state.srv_names(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty() && self.srv.is_empty()
    }

    /// Adds `other`'s names to these.
    pub fn extend(&mut self, other: Names) {
        self.hosts.extend(other.hosts);
        self.srv.extend(other.srv);
    }
}
