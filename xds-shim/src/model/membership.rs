//! What discovery currently believes one upstream consists of, as served.

use crate::model::member::{self, Member};
use crate::model::settings::UpstreamSettings;
use crate::model::tls::TlsTarget;

/// What discovery currently believes one upstream consists of. Its members are canonical
/// (see [`member::canonical`]) by construction, so equal memberships compare and encode
/// equal whatever order DNS answered in, and nothing downstream sorts them again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// Live and draining members.
    members: Vec<Member>,
    /// The upstream's own cluster settings (connect timeout, circuit breakers).
    pub settings: UpstreamSettings,
    /// Set for `https://` upstreams.
    pub tls: Option<TlsTarget>,
}

impl Membership {
    pub fn new(
        members: impl IntoIterator<Item = Member>,
        settings: UpstreamSettings,
        tls: Option<TlsTarget>,
    ) -> Self {
        Membership {
            members: member::canonical(members.into_iter()),
            settings,
            tls,
        }
    }

    /// Live and draining members, one per address, by (priority, address).
    pub fn members(&self) -> &[Member] {
        &self.members
    }
}
