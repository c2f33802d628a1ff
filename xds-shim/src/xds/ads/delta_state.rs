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
mod tests {
    use super::*;
    use crate::xds::ads::stream_state::tests::snapshot;
    use crate::xds::snapshot::{CLUSTER_TYPE_URL, ENDPOINT_TYPE_URL};
    use envoy_types::pb::google::rpc::Status;

    fn request(type_url: &str, subscribe: &[&str], nonce: &str) -> DeltaDiscoveryRequest {
        DeltaDiscoveryRequest {
            type_url: type_url.into(),
            resource_names_subscribe: subscribe.iter().map(|n| n.to_string()).collect(),
            response_nonce: nonce.into(),
            ..Default::default()
        }
    }

    /// The one response a call gave.
    fn only(mut responses: Vec<DeltaDiscoveryResponse>) -> DeltaDiscoveryResponse {
        assert_eq!(responses.len(), 1, "{responses:?}");
        responses.remove(0)
    }

    fn names(response: &DeltaDiscoveryResponse) -> Vec<&str> {
        response.resources.iter().map(|r| r.name.as_str()).collect()
    }

    #[test]
    fn sends_only_what_changed_and_names_what_went() {
        let snap = snapshot(&[
            ("dns+a:80", &["10.0.0.1:80"]),
            ("dns+b:80", &["10.0.0.2:80"]),
        ]);
        let mut delta = DeltaState::new();
        let (kind, first) = delta.on_request(request(CLUSTER_TYPE_URL, &[], ""), &snap);
        assert_eq!(
            kind,
            RequestKind::Subscribe {
                kind: ResourceType::Cluster
            }
        );
        let first = only(first);
        assert_eq!(names(&first), ["dns+a:80", "dns+b:80"]);

        // ACK: silence.
        let (kind, none) = delta.on_request(request(CLUSTER_TYPE_URL, &[], &first.nonce), &snap);
        assert!(matches!(kind, RequestKind::Ack { .. }));
        assert!(none.is_empty());

        let (_, eds) = delta.on_request(request(ENDPOINT_TYPE_URL, &["dns+a:80"], ""), &snap);
        assert_eq!(names(&only(eds)), ["dns+a:80"]);

        // b's members change: EDS subscribed to a only says nothing; CDS unchanged too.
        let moved = snapshot(&[
            ("dns+a:80", &["10.0.0.1:80"]),
            ("dns+b:80", &["10.0.0.9:80"]),
        ]);
        assert!(delta.on_snapshot(&moved).is_empty());
        // a changes and b goes: EDS sends a, CDS removes b.
        let next = snapshot(&[("dns+a:80", &["10.0.0.3:80"])]);
        let pushes = delta.on_snapshot(&next);
        assert_eq!(pushes.len(), 2);
        let cds = pushes
            .iter()
            .find(|p| p.type_url == CLUSTER_TYPE_URL)
            .unwrap();
        assert!(cds.resources.is_empty());
        assert_eq!(cds.removed_resources, ["dns+b:80"]);
        let eds = pushes
            .iter()
            .find(|p| p.type_url == ENDPOINT_TYPE_URL)
            .unwrap();
        assert_eq!(names(eds), ["dns+a:80"]);
        assert_eq!(
            eds.system_version_info,
            next.version(ResourceType::Endpoint)
        );
    }

    fn updated(snap: &Snapshot, cluster: &str, ip: &str) -> Snapshot {
        let members = crate::model::member::from_a("h.test", 80, &[ip.parse().unwrap()]);
        let membership =
            crate::model::membership::Membership::new(members, Default::default(), None);
        snap.updated([(cluster.to_string(), membership)]).unwrap()
    }

    #[test]
    fn follows_a_chain_of_updates_and_checks_everything_when_it_lost_track() {
        let mut snap = snapshot(&[
            ("dns+a:80", &["10.0.0.1:80"]),
            ("dns+b:80", &["10.0.0.2:80"]),
        ]);
        let mut delta = DeltaState::new();
        let (_, first) = delta.on_request(request(ENDPOINT_TYPE_URL, &["*"], ""), &snap);
        assert_eq!(names(&only(first)), ["dns+a:80", "dns+b:80"]);

        // Two updates while the stream was busy: both changed clusters are sent.
        snap = updated(&snap, "dns+b:80", "10.0.0.3");
        snap = updated(&snap, "dns+a:80", "10.0.0.4");
        let pushes = delta.on_snapshot(&snap);
        assert_eq!(names(&pushes[0]), ["dns+a:80", "dns+b:80"]);
        assert!(delta.on_snapshot(&snap).is_empty());

        // More updates than the change log holds: a full check still finds the one news.
        for i in 0..100 {
            snap = updated(&snap, "dns+b:80", &format!("10.0.1.{}", i % 2));
        }
        snap = updated(&snap, "dns+b:80", "10.0.0.3");
        assert!(delta.on_snapshot(&snap).is_empty());
        snap = updated(&snap, "dns+a:80", "10.0.0.5");
        for i in 0..100 {
            snap = updated(&snap, "dns+b:80", &format!("10.0.1.{}", i % 2));
        }
        snap = updated(&snap, "dns+b:80", "10.0.0.3");
        let pushes = delta.on_snapshot(&snap);
        assert_eq!(names(&pushes[0]), ["dns+a:80"]);
    }

    #[test]
    fn a_large_push_comes_in_parts_and_any_part_can_be_acked_or_nacked() {
        let addrs: Vec<String> = (1..=20).map(|i| format!("10.0.0.{i}:80")).collect();
        let addrs: Vec<&str> = addrs.iter().map(String::as_str).collect();
        let names: Vec<String> = (0..400).map(|i| format!("dns+u{i}:80")).collect();
        let entries: Vec<(&str, &[&str])> =
            names.iter().map(|n| (n.as_str(), &addrs[..])).collect();
        let snap = snapshot(&entries);
        let mut delta = DeltaState::new();
        let (_, parts) = delta.on_request(request(ENDPOINT_TYPE_URL, &["*"], ""), &snap);
        assert!(parts.len() > 1, "{} parts", parts.len());
        let sent: usize = parts.iter().map(|p| p.resources.len()).sum();
        assert_eq!(sent, 400);
        for part in &parts {
            assert!(part.encoded_len() <= PART_BYTES + 1_024);
            assert_eq!(
                part.system_version_info,
                snap.version(ResourceType::Endpoint)
            );
        }
        let (kind, none) =
            delta.on_request(request(ENDPOINT_TYPE_URL, &[], &parts[1].nonce), &snap);
        assert!(matches!(kind, RequestKind::Ack { .. }), "{kind:?}");
        assert!(none.is_empty());
        let mut nack = request(ENDPOINT_TYPE_URL, &[], &parts[0].nonce);
        nack.error_detail = Some(Status {
            message: "bad".into(),
            ..Default::default()
        });
        let (kind, _) = delta.on_request(nack, &snap);
        assert!(matches!(kind, RequestKind::Nack { .. }), "{kind:?}");
    }

    #[test]
    fn a_synced_stream_names_a_withdrawn_cluster() {
        let snap = snapshot(&[
            ("dns+a:80", &["10.0.0.1:80"]),
            ("dns+b:80", &["10.0.0.2:80"]),
        ]);
        let mut delta = DeltaState::new();
        delta.on_request(request(CLUSTER_TYPE_URL, &[], ""), &snap);
        // Updated from what the stream has, so only the change log is read.
        let next = snap
            .updated_withdrawing([], &["dns+b:80".to_string()])
            .unwrap();
        let cds = only(delta.on_snapshot(&next));
        assert!(cds.resources.is_empty());
        assert_eq!(cds.removed_resources, ["dns+b:80"]);
    }

    #[test]
    fn reconnect_with_initial_versions_gets_only_news() {
        let snap = snapshot(&[
            ("dns+a:80", &["10.0.0.1:80"]),
            ("dns+b:80", &["10.0.0.2:80"]),
        ]);
        let versions = &snap.resources(ResourceType::Endpoint).by_name;
        let mut req = request(ENDPOINT_TYPE_URL, &["*"], "");
        req.initial_resource_versions = [
            ("dns+a:80".to_string(), versions["dns+a:80"].version.clone()),
            ("dns+gone:80".to_string(), "old".to_string()),
        ]
        .into_iter()
        .collect();
        let (_, response) = DeltaState::new().on_request(req, &snap);
        let response = only(response);
        assert_eq!(names(&response), ["dns+b:80"]);
        assert_eq!(response.removed_resources, ["dns+gone:80"]);
    }

    #[test]
    fn nack_and_stale_nonces() {
        let snap = snapshot(&[("dns+a:80", &["10.0.0.1:80"])]);
        let mut delta = DeltaState::new();
        let (_, first) = delta.on_request(request(ENDPOINT_TYPE_URL, &["dns+a:80"], ""), &snap);
        let first = only(first);
        let mut nack = request(ENDPOINT_TYPE_URL, &[], &first.nonce);
        nack.error_detail = Some(Status {
            message: "bad endpoint".into(),
            ..Default::default()
        });
        let (kind, response) = delta.on_request(nack, &snap);
        assert_eq!(
            kind,
            RequestKind::Nack {
                kind: ResourceType::Endpoint,
                rejected_version: first.system_version_info.clone(),
                kept_version: String::new(),
                message: "bad endpoint".into(),
            }
        );
        assert!(
            response.is_empty(),
            "a NACK is not answered with the same content"
        );

        let moved = snapshot(&[("dns+a:80", &["10.0.0.2:80"])]);
        let push = delta.on_snapshot(&moved).remove(0);
        let (kind, _) = delta.on_request(request(ENDPOINT_TYPE_URL, &[], &first.nonce), &moved);
        assert!(matches!(kind, RequestKind::Stale { .. }));
        let (kind, _) = delta.on_request(request(ENDPOINT_TYPE_URL, &[], &push.nonce), &moved);
        assert!(matches!(kind, RequestKind::Ack { .. }));
    }

    #[test]
    fn a_new_name_sends_only_that_name() {
        let snap = snapshot(&[
            ("dns+a:80", &["10.0.0.1:80"]),
            ("dns+b:80", &["10.0.0.2:80"]),
        ]);
        let mut delta = DeltaState::new();
        let (_, first) = delta.on_request(request(ENDPOINT_TYPE_URL, &["dns+a:80"], ""), &snap);
        let first = only(first);
        assert_eq!(names(&first), ["dns+a:80"]);
        // The client has a (from the response); adding b must not resend a.
        let (_, more) = delta.on_request(
            request(ENDPOINT_TYPE_URL, &["dns+b:80"], &first.nonce),
            &snap,
        );
        assert_eq!(names(&only(more)), ["dns+b:80"]);
        // a changes: only a, though both are subscribed.
        let moved = updated(&snap, "dns+a:80", "10.0.0.7");
        assert_eq!(names(&only(delta.on_snapshot(&moved))), ["dns+a:80"]);
    }

    #[test]
    fn unsubscribe_then_resubscribe_resends() {
        let snap = snapshot(&[("dns+a:80", &["10.0.0.1:80"])]);
        let mut delta = DeltaState::new();
        let (_, first) = delta.on_request(request(ENDPOINT_TYPE_URL, &["dns+a:80"], ""), &snap);
        let mut unsub = request(ENDPOINT_TYPE_URL, &[], &only(first).nonce);
        unsub.resource_names_unsubscribe = vec!["dns+a:80".into()];
        assert!(delta.on_request(unsub, &snap).1.is_empty());
        let (_, again) = delta.on_request(request(ENDPOINT_TYPE_URL, &["dns+a:80"], ""), &snap);
        assert_eq!(names(&only(again)), ["dns+a:80"]);
    }

    #[test]
    fn plain_streams_serve_their_one_type() {
        use crate::xds::resources::EdsSource;
        let snap = snapshot(&[("dns+a:80", &["10.0.0.1:80"])]);
        // Plain CDS: the clusters whose EDS is the plain gRPC service; type_url may be empty.
        let mut cds = DeltaState::single_type(ResourceType::Cluster);
        let (_, response) = cds.on_request(request("", &[], ""), &snap);
        let response = only(response);
        assert_eq!(response.type_url, CLUSTER_TYPE_URL);
        let grpc = snap.resources_for(ResourceType::Cluster, EdsSource::DeltaGrpc);
        assert_ne!(grpc.version, snap.version(ResourceType::Cluster));
        assert_eq!(response.system_version_info, grpc.version);
        assert_eq!(
            response.resources[0].resource.as_ref(),
            grpc.by_name.get("dns+a:80").map(|v| &v.resource)
        );
        assert_eq!(
            response.resources[0].version,
            grpc.by_name["dns+a:80"].version
        );
        // Another type on it is refused, as on the state-of-the-world services.
        let (kind, none) = cds.on_request(request(ENDPOINT_TYPE_URL, &["*"], ""), &snap);
        assert!(matches!(kind, RequestKind::UnknownType { .. }));
        assert!(none.is_empty());

        let mut eds = DeltaState::single_type(ResourceType::Endpoint);
        let (_, response) = eds.on_request(request(ENDPOINT_TYPE_URL, &["dns+a:80"], ""), &snap);
        assert_eq!(names(&only(response)), ["dns+a:80"]);
        let (kind, none) = eds.on_request(request(CLUSTER_TYPE_URL, &[], ""), &snap);
        assert!(matches!(kind, RequestKind::UnknownType { .. }));
        assert!(none.is_empty());
    }
}
