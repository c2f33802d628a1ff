//! The incremental (Delta) xDS protocol for one stream, without I/O.
//!
//! Rules (xDS incremental protocol, as go-control-plane applies them):
//! - Per type the stream tracks the subscription (wildcard or names) and the version of
//!   each resource the client has: seeded from `initial_resource_versions` on
//!   (re)connect, then updated with every resource sent.
//! - Subscription changes are applied from every request, whatever its nonce.
//! - A request whose nonce is the latest sent for its type is an ACK, or a NACK with
//!   `error_detail`; a non-empty older nonce is stale (no ACK/NACK meaning).
//! - A response carries only resources whose version differs from what the client has,
//!   and names the subscribed resources that went away in `removed_resources`. Nothing to
//!   say, nothing sent.

use std::collections::{BTreeMap, BTreeSet};

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource,
};

use super::stream_state::{RequestKind, Scope};
use crate::snapshot::{ResourceType, Snapshot};

const WILDCARD: &str = "*";

#[derive(Debug, Default)]
struct TypeState {
    wildcard: bool,
    names: BTreeSet<String>,
    /// Resource name → version the client has.
    known: BTreeMap<String, String>,
    latest_nonce: Option<String>,
    /// The system version of the latest response, reported as rejected on NACK.
    latest_version: String,
}

impl TypeState {
    fn wants(&self, name: &str) -> bool {
        self.wildcard || self.names.contains(name)
    }
}

#[derive(Debug, Default)]
pub struct DeltaState {
    node_id: Option<String>,
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
        self.node_id.as_deref().unwrap_or("unknown")
    }

    pub fn on_request(
        &mut self,
        request: DeltaDiscoveryRequest,
        snapshot: &Snapshot,
    ) -> (RequestKind, Option<DeltaDiscoveryResponse>) {
        if let Some(node) = &request.node {
            if !node.id.is_empty() {
                self.node_id = Some(node.id.clone());
            }
        }
        let Some(kind) = self.scope.kind_of(&request.type_url) else {
            let type_url = request.type_url;
            return (RequestKind::UnknownType { type_url }, None);
        };
        let first = !self.types.contains_key(&kind);
        let state = self.types.entry(kind).or_default();
        if first {
            // Legacy wildcard: the first CDS request naming nothing subscribes to all.
            state.wildcard =
                kind == ResourceType::Cluster && request.resource_names_subscribe.is_empty();
            state.known = request.initial_resource_versions.into_iter().collect();
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
            state.known.remove(&name);
        }
        state
            .known
            .retain(|name, _| state.wildcard || state.names.contains(name));

        let nonce = request.response_nonce;
        let request_kind = if nonce.is_empty() {
            RequestKind::Subscribe { kind }
        } else if state.latest_nonce.as_deref() != Some(nonce.as_str()) {
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

    /// Responses for every type with something new for its client.
    pub fn on_snapshot(&mut self, snapshot: &Snapshot) -> Vec<DeltaDiscoveryResponse> {
        let kinds: Vec<ResourceType> = self.types.keys().copied().collect();
        kinds
            .into_iter()
            .filter_map(|kind| self.respond(kind, snapshot))
            .collect()
    }

    fn respond(
        &mut self,
        kind: ResourceType,
        snapshot: &Snapshot,
    ) -> Option<DeltaDiscoveryResponse> {
        let resources = snapshot.resources_for(kind, self.scope.eds_source());
        let state = self.types.get_mut(&kind)?;
        let mut changed = Vec::new();
        for (name, any) in &resources.by_name {
            let version = resources.resource_versions.get(name)?;
            if state.wants(name) && state.known.get(name) != Some(version) {
                changed.push(Resource {
                    name: name.clone(),
                    version: version.clone(),
                    resource: Some(any.clone()),
                    ..Default::default()
                });
            }
        }
        let removed: Vec<String> = state
            .known
            .keys()
            .filter(|name| !resources.by_name.contains_key(*name))
            .cloned()
            .collect();
        if changed.is_empty() && removed.is_empty() {
            return None;
        }
        for resource in &changed {
            state
                .known
                .insert(resource.name.clone(), resource.version.clone());
        }
        for name in &removed {
            state.known.remove(name);
        }
        self.last_nonce += 1;
        let nonce = self.last_nonce.to_string();
        state.latest_nonce = Some(nonce.clone());
        state.latest_version = resources.version.clone();
        Some(DeltaDiscoveryResponse {
            system_version_info: resources.version.clone(),
            resources: changed,
            type_url: kind.type_url().to_string(),
            removed_resources: removed,
            nonce,
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ads::stream_state::tests::snapshot;
    use crate::snapshot::{CLUSTER_TYPE_URL, ENDPOINT_TYPE_URL};
    use envoy_types::pb::google::rpc::Status;

    fn request(type_url: &str, subscribe: &[&str], nonce: &str) -> DeltaDiscoveryRequest {
        DeltaDiscoveryRequest {
            type_url: type_url.into(),
            resource_names_subscribe: subscribe.iter().map(|n| n.to_string()).collect(),
            response_nonce: nonce.into(),
            ..Default::default()
        }
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
        let first = first.unwrap();
        assert_eq!(names(&first), ["dns+a:80", "dns+b:80"]);

        // ACK: silence.
        let (kind, none) = delta.on_request(request(CLUSTER_TYPE_URL, &[], &first.nonce), &snap);
        assert!(matches!(kind, RequestKind::Ack { .. }));
        assert!(none.is_none());

        let (_, eds) = delta.on_request(request(ENDPOINT_TYPE_URL, &["dns+a:80"], ""), &snap);
        assert_eq!(names(&eds.unwrap()), ["dns+a:80"]);

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

    #[test]
    fn reconnect_with_initial_versions_gets_only_news() {
        let snap = snapshot(&[
            ("dns+a:80", &["10.0.0.1:80"]),
            ("dns+b:80", &["10.0.0.2:80"]),
        ]);
        let versions = &snap.resources(ResourceType::Endpoint).resource_versions;
        let mut req = request(ENDPOINT_TYPE_URL, &["*"], "");
        req.initial_resource_versions = [
            ("dns+a:80".to_string(), versions["dns+a:80"].clone()),
            ("dns+gone:80".to_string(), "old".to_string()),
        ]
        .into_iter()
        .collect();
        let (_, response) = DeltaState::new().on_request(req, &snap);
        let response = response.unwrap();
        assert_eq!(names(&response), ["dns+b:80"]);
        assert_eq!(response.removed_resources, ["dns+gone:80"]);
    }

    #[test]
    fn nack_and_stale_nonces() {
        let snap = snapshot(&[("dns+a:80", &["10.0.0.1:80"])]);
        let mut delta = DeltaState::new();
        let (_, first) = delta.on_request(request(ENDPOINT_TYPE_URL, &["dns+a:80"], ""), &snap);
        let first = first.unwrap();
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
            response.is_none(),
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
    fn unsubscribe_then_resubscribe_resends() {
        let snap = snapshot(&[("dns+a:80", &["10.0.0.1:80"])]);
        let mut delta = DeltaState::new();
        let (_, first) = delta.on_request(request(ENDPOINT_TYPE_URL, &["dns+a:80"], ""), &snap);
        let mut unsub = request(ENDPOINT_TYPE_URL, &[], &first.unwrap().nonce);
        unsub.resource_names_unsubscribe = vec!["dns+a:80".into()];
        assert!(delta.on_request(unsub, &snap).1.is_none());
        let (_, again) = delta.on_request(request(ENDPOINT_TYPE_URL, &["dns+a:80"], ""), &snap);
        assert_eq!(names(&again.unwrap()), ["dns+a:80"]);
    }

    #[test]
    fn plain_streams_serve_their_one_type() {
        use crate::snapshot::EdsSource;
        let snap = snapshot(&[("dns+a:80", &["10.0.0.1:80"])]);
        // Plain CDS: the clusters whose EDS is the plain gRPC service; type_url may be empty.
        let mut cds = DeltaState::single_type(ResourceType::Cluster);
        let (_, response) = cds.on_request(request("", &[], ""), &snap);
        let response = response.unwrap();
        assert_eq!(response.type_url, CLUSTER_TYPE_URL);
        let grpc = snap.resources_for(ResourceType::Cluster, EdsSource::Grpc);
        assert_ne!(grpc.version, snap.version(ResourceType::Cluster));
        assert_eq!(response.system_version_info, grpc.version);
        assert_eq!(
            response.resources[0].resource.as_ref(),
            grpc.by_name.get("dns+a:80")
        );
        assert_eq!(
            response.resources[0].version,
            grpc.resource_versions["dns+a:80"]
        );
        // Another type on it is refused, as on the state-of-the-world services.
        let (kind, none) = cds.on_request(request(ENDPOINT_TYPE_URL, &["*"], ""), &snap);
        assert!(matches!(kind, RequestKind::UnknownType { .. }));
        assert!(none.is_none());

        let mut eds = DeltaState::single_type(ResourceType::Endpoint);
        let (_, response) = eds.on_request(request(ENDPOINT_TYPE_URL, &["dns+a:80"], ""), &snap);
        assert_eq!(names(&response.unwrap()), ["dns+a:80"]);
        let (kind, none) = eds.on_request(request(CLUSTER_TYPE_URL, &[], ""), &snap);
        assert!(matches!(kind, RequestKind::UnknownType { .. }));
        assert!(none.is_none());
    }
}
