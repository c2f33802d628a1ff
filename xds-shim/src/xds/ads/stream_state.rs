//! The state-of-the-world xDS protocol for one ADS stream, without I/O.
//!
//! Rules (xDS protocol, as go-control-plane applies them):
//! - A request whose `response_nonce` is not the latest nonce sent for its type is stale:
//!   a newer response is already on its way, and the client will answer that one.
//! - A request with an empty nonce, or the first request for a type on this stream, is a
//!   (re)subscription and is always answered.
//! - Otherwise the request is an ACK, or a NACK if it carries `error_detail`. Neither is
//!   answered unless the subscribed names changed: re-sending a version the client already
//!   has (or has just rejected) only loops.
//! - A new snapshot is pushed for each subscribed type whose version moved.

use std::collections::{BTreeMap, BTreeSet};

use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};

use super::node::Client;
use crate::xds::resources::EdsSource;
use crate::xds::snapshot::{ResourceType, Snapshot};

/// The xDS-spec explicit wildcard resource name.
const WILDCARD: &str = "*";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subscription {
    /// Every resource of the type: CDS with no names (legacy wildcard) or any type naming `*`.
    All,
    /// Only these names. Empty means "none" (e.g. Envoy after its last EDS cluster went).
    Names(BTreeSet<String>),
}

impl Subscription {
    fn from_request(kind: ResourceType, names: &[String]) -> Self {
        let legacy_wildcard = kind == ResourceType::Cluster && names.is_empty();
        if legacy_wildcard || names.iter().any(|n| n == WILDCARD) {
            Subscription::All
        } else {
            Subscription::Names(names.iter().cloned().collect())
        }
    }

    fn is_nothing(&self) -> bool {
        matches!(self, Subscription::Names(names) if names.is_empty())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Sent {
    version: String,
    nonce: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct TypeState {
    subscription: Subscription,
    sent: Option<Sent>,
    acked_version: Option<String>,
}

/// What a request meant, for the caller to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestKind {
    Subscribe {
        kind: ResourceType,
    },
    Ack {
        kind: ResourceType,
        version: String,
    },
    /// The client rejected `rejected_version` and keeps running `kept_version`.
    Nack {
        kind: ResourceType,
        rejected_version: String,
        kept_version: String,
        message: String,
    },
    Stale {
        kind: ResourceType,
        nonce: String,
    },
    /// A type the shim does not serve (listeners, routes, ...). Answering with an empty set
    /// would delete the client's resources of that type, so it is left unanswered.
    UnknownType {
        type_url: String,
    },
}

/// Which types one stream carries; the same for state-of-the-world and Delta streams.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Scope {
    /// ADS: every served type; clusters fetch their endpoints over the same stream.
    #[default]
    Aggregated,
    /// A plain CDS or EDS stream: this one type. Requests may leave `type_url` empty
    /// (allowed on non-aggregated streams); other types are refused. Clusters served here
    /// fetch endpoints from the plain EDS service, since the client's ADS (if any) may
    /// belong to another control plane.
    Single(ResourceType),
}

impl Scope {
    pub fn eds_source(self) -> EdsSource {
        match self {
            Scope::Aggregated => EdsSource::Ads,
            Scope::Single(_) => EdsSource::Grpc,
        }
    }

    /// The type a request's `type_url` names on this stream; `None` for one it does not
    /// carry, which the caller reports as [`RequestKind::UnknownType`].
    pub fn kind_of(self, type_url: &str) -> Option<ResourceType> {
        match self {
            Scope::Aggregated => ResourceType::from_type_url(type_url),
            Scope::Single(kind) if type_url.is_empty() || type_url == kind.type_url() => Some(kind),
            Scope::Single(_) => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub request: RequestKind,
    pub response: Option<DiscoveryResponse>,
}

#[derive(Debug, Default)]
pub struct StreamState {
    client: Client,
    last_nonce: u64,
    types: BTreeMap<ResourceType, TypeState>,
    scope: Scope,
}

impl StreamState {
    /// An ADS stream: any served type, clusters pointing back at ADS for endpoints.
    pub fn new() -> Self {
        Self::default()
    }

    /// A plain CDS or EDS stream (see [`Scope::Single`]).
    pub fn single_type(kind: ResourceType) -> Self {
        StreamState {
            scope: Scope::Single(kind),
            ..Self::default()
        }
    }

    fn version<'s>(&self, kind: ResourceType, snapshot: &'s Snapshot) -> &'s str {
        &snapshot
            .served(kind, self.scope.eds_source(), self.client.balancing())
            .version
    }

    /// The client's node id, once a request carried one (Envoy may send it only once).
    pub fn node_id(&self) -> &str {
        self.client.id()
    }

    /// The version the client last ACKed for `kind` on this stream.
    pub fn acked_version(&self, kind: ResourceType) -> Option<&str> {
        self.types.get(&kind)?.acked_version.as_deref()
    }

    pub fn on_request(&mut self, request: DiscoveryRequest, snapshot: &Snapshot) -> Reply {
        self.client.observe(request.node.as_ref());
        let Some(kind) = self.scope.kind_of(&request.type_url) else {
            return Reply {
                request: RequestKind::UnknownType {
                    type_url: request.type_url,
                },
                response: None,
            };
        };
        let subscription = Subscription::from_request(kind, &request.resource_names);
        let previous = self.types.get(&kind).cloned();
        let latest_nonce = previous
            .as_ref()
            .and_then(|p| p.sent.as_ref())
            .map(|s| &s.nonce);

        // Nonces are per stream, so one we never sent on this stream cannot be current;
        // only a type we have answered can have stale requests.
        let resubscribe = request.response_nonce.is_empty() || latest_nonce.is_none();
        if !resubscribe && latest_nonce != Some(&request.response_nonce) {
            return Reply {
                request: RequestKind::Stale {
                    kind,
                    nonce: request.response_nonce,
                },
                response: None,
            };
        }

        let mut state = previous.clone().unwrap_or(TypeState {
            subscription: subscription.clone(),
            sent: None,
            acked_version: None,
        });
        let request_kind = if resubscribe {
            RequestKind::Subscribe { kind }
        } else if let Some(error) = request.error_detail {
            RequestKind::Nack {
                kind,
                rejected_version: state
                    .sent
                    .as_ref()
                    .map(|s| s.version.clone())
                    .unwrap_or_default(),
                kept_version: request.version_info,
                message: error.message,
            }
        } else {
            state.acked_version = Some(request.version_info.clone());
            RequestKind::Ack {
                kind,
                version: request.version_info,
            }
        };
        let subscription_changed = previous
            .as_ref()
            .is_some_and(|p| p.subscription != subscription);
        state.subscription = subscription;
        let sent_version = state.sent.as_ref().map(|s| s.version.as_str());
        let version_moved = sent_version != Some(self.version(kind, snapshot));
        self.types.insert(kind, state);

        let response = if resubscribe || subscription_changed || version_moved {
            self.respond(kind, snapshot)
        } else {
            None
        };
        Reply {
            request: request_kind,
            response,
        }
    }

    /// Responses for every subscribed type whose version differs from what was last sent,
    /// clusters before endpoints so a new cluster exists before its assignment arrives.
    pub fn on_snapshot(&mut self, snapshot: &Snapshot) -> Vec<DiscoveryResponse> {
        let stale: Vec<ResourceType> = self
            .types
            .iter()
            .filter(|(kind, state)| {
                state.sent.as_ref().map(|s| s.version.as_str())
                    != Some(self.version(**kind, snapshot))
            })
            .map(|(kind, _)| *kind)
            .collect();
        stale
            .into_iter()
            .filter_map(|kind| self.respond(kind, snapshot))
            .collect()
    }

    fn respond(&mut self, kind: ResourceType, snapshot: &Snapshot) -> Option<DiscoveryResponse> {
        let resources = snapshot.served(kind, self.scope.eds_source(), self.client.balancing());
        let state = self.types.get_mut(&kind)?;
        if state.subscription.is_nothing() {
            return None;
        }
        let selected = match &state.subscription {
            Subscription::All => resources
                .by_name
                .values()
                .map(|v| v.resource.clone())
                .collect(),
            // Unknown names are skipped: an EDS client may ask for a cluster that
            // another control plane (or an older snapshot) defined.
            Subscription::Names(names) => names
                .iter()
                .filter_map(|name| Some(resources.by_name.get(name)?.resource.clone()))
                .collect(),
        };
        self.last_nonce += 1;
        let nonce = self.last_nonce.to_string();
        state.sent = Some(Sent {
            version: resources.version.clone(),
            nonce: nonce.clone(),
        });
        Some(DiscoveryResponse {
            version_info: resources.version.clone(),
            resources: selected,
            type_url: kind.type_url().to_string(),
            nonce,
            ..Default::default()
        })
    }
}

#[cfg(test)]
pub(crate) mod tests;
