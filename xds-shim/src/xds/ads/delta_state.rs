//! The incremental (Delta) xDS protocol for one stream, without I/O.
//!
//! Rules (xDS incremental protocol, as go-control-plane applies them):
//! - Per type the stream tracks the subscription (wildcard or names) and the version of
//!   each resource the client has: seeded from `initial_resource_versions` on
//!   (re)connect, then updated with every resource sent.
//! - Subscription changes are applied from every request, whatever its nonce.
//! - A request whose nonce is one of the latest response's for its type (assignments
//!   come in parts) is an ACK, or a NACK with `error_detail`; a non-empty older nonce
//!   is stale (no ACK/NACK meaning).
//! - A response carries only resources whose version differs from what the client has,
//!   and names the subscribed resources that went away in `removed_resources`. Nothing to
//!   say, nothing sent.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;
use std::sync::Arc;

use prost::Message;

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource,
};

use super::node::Client;
use super::stream_state::{RequestKind, Scope};
use crate::xds::resources::EdsSource;
use crate::xds::snapshot::{Generation, ResourceType, Resources, Snapshot, Versioned};

const WILDCARD: &str = "*";

#[derive(Debug, Default)]
struct TypeState {
    wildcard: bool,
    names: BTreeSet<String>,
    /// What the client has.
    known: Known,
    /// Nonces of the latest response, split in parts: an ACK or NACK of any of them is
    /// current.
    latest_nonces: Option<RangeInclusive<u64>>,
    /// The system version of the latest response, reported as rejected on NACK.
    latest_version: String,
}

/// The resources (name and version) a client has of one type.
#[derive(Debug)]
enum Known {
    /// As the client listed them on connecting, or as they stood at the last
    /// subscription change.
    Listed(BTreeMap<String, String>),
    /// Exactly the wanted resources of the set of generation `seen`, at its versions:
    /// what a client has once a response went out, while its subscription stays the
    /// same. Shared with the snapshot, so a stream subscribed to 10,000 resources keeps
    /// no copy of their names and versions, and the next response need only look at
    /// what changed since `seen`.
    Synced {
        set: Arc<BTreeMap<String, Arc<Versioned>>>,
        seen: Generation,
    },
}

impl Default for Known {
    fn default() -> Self {
        Known::Listed(BTreeMap::new())
    }
}

impl TypeState {
    fn wants(&self, name: &str) -> bool {
        self.wildcard || self.names.contains(name)
    }

    /// The version the client has of `name`, if any.
    fn known_version(&self, name: &str) -> Option<&str> {
        match &self.known {
            Known::Listed(versions) => versions.get(name).map(String::as_str),
            Known::Synced { set, .. } if self.wants(name) => {
                set.get(name).map(|v| v.version.as_str())
            }
            Known::Synced { .. } => None,
        }
    }

    /// Every name the client has.
    fn known_names(&self) -> Box<dyn Iterator<Item = &String> + '_> {
        match &self.known {
            Known::Listed(versions) => Box::new(versions.keys()),
            Known::Synced { set, .. } => Box::new(set.keys().filter(|name| self.wants(name))),
        }
    }

    /// Turns the known resources into a list, before the subscription they depend on
    /// changes.
    fn list_known(&mut self) {
        if let Known::Synced { .. } = self.known {
            let versions = self
                .known_names()
                .filter_map(|name| Some((name.clone(), self.known_version(name)?.to_string())))
                .collect();
            self.known = Known::Listed(versions);
        }
    }
}

#[derive(Debug, Default)]
pub struct DeltaState {
    client: Client,
    last_nonce: u64,
    types: BTreeMap<ResourceType, TypeState>,
    scope: Scope,
}

impl DeltaState {
    /// An ADS stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// A plain Delta CDS or EDS stream (see [`Scope::Single`]).
    pub fn single_type(kind: ResourceType) -> Self {
        DeltaState {
            scope: Scope::Single(kind),
            ..Self::default()
        }
    }

    pub fn node_id(&self) -> &str {
        self.client.id()
    }

    pub fn on_request(
        &mut self,
        request: DeltaDiscoveryRequest,
        snapshot: &Snapshot,
    ) -> (RequestKind, Vec<DeltaDiscoveryResponse>) {
        self.client.observe(request.node.as_ref());
        let Some(kind) = self.scope.kind_of(&request.type_url) else {
            let type_url = request.type_url;
            return (RequestKind::UnknownType { type_url }, Vec::new());
        };
        let first = !self.types.contains_key(&kind);
        let state = self.types.entry(kind).or_default();
        let resubscribed = first
            || !request.resource_names_subscribe.is_empty()
            || !request.resource_names_unsubscribe.is_empty();
        if first {
            // Legacy wildcard: the first CDS request naming nothing subscribes to all.
            state.wildcard =
                kind == ResourceType::Cluster && request.resource_names_subscribe.is_empty();
            state.known = Known::Listed(request.initial_resource_versions.into_iter().collect());
        } else if resubscribed {
            state.list_known();
        }
        for name in request.resource_names_subscribe {
            if name == WILDCARD {
                state.wildcard = true;
            } else {
                state.names.insert(name);
            }
        }
        for name in request.resource_names_unsubscribe {
            if name == WILDCARD {
                state.wildcard = false;
            } else {
                state.names.remove(&name);
            }
            // Forget it so a later re-subscription sends it again.
            if let Known::Listed(versions) = &mut state.known {
                versions.remove(&name);
            }
        }
        if resubscribed {
            let (wildcard, names) = (state.wildcard, &state.names);
            if let Known::Listed(versions) = &mut state.known {
                versions.retain(|name, _| wildcard || names.contains(name));
            }
        }

        let nonce = request.response_nonce;
        let request_kind = if nonce.is_empty() {
            RequestKind::Subscribe { kind }
        } else if !nonce
            .parse()
            .is_ok_and(|n| state.latest_nonces.as_ref().is_some_and(|r| r.contains(&n)))
        {
            RequestKind::Stale { kind, nonce }
        } else if let Some(error) = request.error_detail {
            RequestKind::Nack {
                kind,
                rejected_version: state.latest_version.clone(),
                kept_version: String::new(),
                message: error.message,
            }
        } else {
            RequestKind::Ack {
                kind,
                version: state.latest_version.clone(),
            }
        };
        // A NACKed resource stays "known" at the rejected version: re-sending it unchanged
        // would only be rejected again; the next change moves its version.
        (request_kind, self.respond(kind, snapshot))
    }

    /// Where the clusters this stream sends fetch their endpoints: a plain Delta CDS
    /// stream's clusters use Delta EDS too.
    fn eds_source(&self) -> EdsSource {
        match self.scope.eds_source() {
            EdsSource::Grpc => EdsSource::DeltaGrpc,
            source => source,
        }
    }

    /// Responses for every type with something new for its client.
    pub fn on_snapshot(&mut self, snapshot: &Snapshot) -> Vec<DeltaDiscoveryResponse> {
        let kinds: Vec<ResourceType> = self.types.keys().copied().collect();
        kinds
            .into_iter()
            .flat_map(|kind| self.respond(kind, snapshot))
            .collect()
    }

    /// What is new for the client; assignments in responses of about [`PART_BYTES`] each.
    fn respond(&mut self, kind: ResourceType, snapshot: &Snapshot) -> Vec<DeltaDiscoveryResponse> {
        let resources = snapshot.served(kind, self.eds_source(), self.client.balancing());
        let Some(state) = self.types.get_mut(&kind) else {
            return Vec::new();
        };
        // Up to date with a recent snapshot: only what changed since can be news. This keeps
        // a publish that moves one of 10,000 clusters cheap for hundreds of streams.
        let since = match state.known {
            Known::Synced { seen, .. } => resources.changed_since(seen),
            Known::Listed(_) => None,
        };
        let (changed, removed) = match since {
            Some(names) => news_among(state, resources, names),
            None => all_news(state, resources),
        };
        // Once this goes out the client has every wanted resource of this set.
        state.known = Known::Synced {
            set: Arc::clone(&resources.by_name),
            seen: resources.generation(),
        };
        if changed.is_empty() && removed.is_empty() {
            return Vec::new();
        }
        // Clusters stay whole: Envoy ends its initial CDS fetch with the first response,
        // and over plain CDS endpoint answers could start it before later parts arrived.
        let mut parts = match kind {
            ResourceType::Endpoint => split(changed),
            ResourceType::Cluster => vec![DeltaDiscoveryResponse {
                resources: changed,
                ..Default::default()
            }],
        };
        if let Some(last) = parts.last_mut() {
            last.removed_resources = removed;
        } else {
            parts.push(DeltaDiscoveryResponse {
                removed_resources: removed,
                ..Default::default()
            });
        }
        let first = self.last_nonce + 1;
        for part in &mut parts {
            self.last_nonce += 1;
            part.nonce = self.last_nonce.to_string();
            part.system_version_info = resources.version.clone();
            part.type_url = kind.type_url().to_string();
        }
        state.latest_nonces = Some(first..=self.last_nonce);
        state.latest_version = resources.version.clone();
        parts
    }
}

/// Resources per response, by encoded size. gRPC's encoder keeps a buffer as large as the
/// largest message a stream sent for as long as the stream lives: one 7 MB initial push
/// of 10,000 assignments to each of 200 clients held 1.4 GB.
const PART_BYTES: usize = 64 * 1024;

/// `changed` in responses of at most [`PART_BYTES`] (or one resource, if larger).
fn split(changed: Vec<Resource>) -> Vec<DeltaDiscoveryResponse> {
    let mut parts: Vec<DeltaDiscoveryResponse> = Vec::new();
    let mut size = 0;
    for resource in changed {
        let len = resource.encoded_len();
        match parts.last_mut() {
            Some(part) if size + len <= PART_BYTES => {
                size += len;
                part.resources.push(resource);
            }
            _ => {
                size = len;
                parts.push(DeltaDiscoveryResponse {
                    resources: vec![resource],
                    ..Default::default()
                });
            }
        }
    }
    parts
}

/// The resource to send if the client wants it and has another version of it.
fn news(state: &TypeState, name: &str, versioned: &Versioned) -> Option<Resource> {
    (state.wants(name) && state.known_version(name) != Some(versioned.version.as_str())).then(
        || Resource {
            name: name.to_string(),
            version: versioned.version.clone(),
            resource: Some(versioned.resource.clone()),
            ..Default::default()
        },
    )
}

/// Every wanted resource the client lacks, and every known one that went away.
fn all_news(state: &TypeState, resources: &Resources) -> (Vec<Resource>, Vec<String>) {
    let changed = if state.wildcard {
        resources
            .by_name
            .iter()
            .filter_map(|(name, versioned)| news(state, name, versioned))
            .collect()
    } else {
        state
            .names
            .iter()
            .filter_map(|name| news(state, name, resources.by_name.get(name)?))
            .collect()
    };
    let removed = state
        .known_names()
        .filter(|name| !resources.by_name.contains_key(*name))
        .cloned()
        .collect();
    (changed, removed)
}

/// [`all_news`], looking only at `names` (all the others are as the client has them).
fn news_among(
    state: &TypeState,
    resources: &Resources,
    names: BTreeSet<&str>,
) -> (Vec<Resource>, Vec<String>) {
    let mut changed = Vec::new();
    let mut removed = Vec::new();
    for name in names {
        match resources.by_name.get(name) {
            Some(versioned) => changed.extend(news(state, name, versioned)),
            None if state.known_version(name).is_some() => removed.push(name.to_string()),
            None => {}
        }
    }
    (changed, removed)
}

#[cfg(test)]
mod tests;
