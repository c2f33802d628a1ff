use super::*;
use crate::model::membership::Membership;
use crate::xds::snapshot::{CLUSTER_TYPE_URL, ENDPOINT_TYPE_URL};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::google::rpc::Status;
use prost::Message;

/// Cluster name → `ip:port` members (all on the first one's port), hostname `h.test`.
pub(crate) fn snapshot(entries: &[(&str, &[&str])]) -> Snapshot {
    Snapshot::build(
        entries
            .iter()
            .map(|(name, addrs)| {
                let addrs: Vec<std::net::SocketAddr> =
                    addrs.iter().map(|a| a.parse().unwrap()).collect();
                let ips: Vec<std::net::IpAddr> = addrs.iter().map(|a| a.ip()).collect();
                let port = addrs.first().map_or(80, |a| a.port());
                let members = crate::model::member::from_a("h.test", port, &ips);
                let settings = Default::default();
                let membership = Membership::new(members, settings, None);
                (name.to_string(), membership)
            })
            .collect(),
    )
}

fn two_clusters() -> Snapshot {
    snapshot(&[
        ("dns+a.test:80", &["10.0.0.1:80"]),
        ("dns+b.test:80", &["10.0.0.2:80"]),
    ])
}

fn request(type_url: &str, names: &[&str], version: &str, nonce: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        type_url: type_url.into(),
        resource_names: names.iter().map(|n| n.to_string()).collect(),
        version_info: version.into(),
        response_nonce: nonce.into(),
        ..Default::default()
    }
}

/// The answer to a first request for `type_url`'s `names` (no version, no nonce).
fn subscribe(
    stream: &mut StreamState,
    type_url: &str,
    names: &[&str],
    snap: &Snapshot,
) -> DiscoveryResponse {
    stream
        .on_request(request(type_url, names, "", ""), snap)
        .response
        .unwrap()
}

/// What `request` was taken for, checking it got no answer (ACKs, NACKs, stale nonces).
fn unanswered(stream: &mut StreamState, request: DiscoveryRequest, snap: &Snapshot) -> RequestKind {
    let reply = stream.on_request(request, snap);
    assert!(reply.response.is_none());
    reply.request
}

fn ack_of(response: &DiscoveryResponse, names: &[&str]) -> DiscoveryRequest {
    request(
        &response.type_url,
        names,
        &response.version_info,
        &response.nonce,
    )
}

fn cla_names(response: &DiscoveryResponse) -> Vec<String> {
    response
        .resources
        .iter()
        .map(|any| {
            ClusterLoadAssignment::decode(any.value.as_slice())
                .unwrap()
                .cluster_name
        })
        .collect()
}

#[test]
fn a_node_asking_for_native_balancing_gets_clusters_without_the_override_policy() {
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    let snap = two_clusters();
    let policy = |node| {
        let mut cds_req = request(CLUSTER_TYPE_URL, &[], "", "");
        cds_req.node = Some(node);
        let cds = StreamState::new()
            .on_request(cds_req, &snap)
            .response
            .unwrap();
        let cluster = Cluster::decode(cds.resources[0].value.as_slice()).unwrap();
        let policies = cluster.load_balancing_policy.unwrap().policies;
        policies[0]
            .typed_extension_config
            .as_ref()
            .unwrap()
            .name
            .clone()
    };
    use crate::xds::ads::node::{test_node, NATIVE};
    assert_eq!(
        policy(test_node("e", Some(NATIVE))),
        "envoy.load_balancing_policies.round_robin"
    );
    assert_eq!(
        policy(test_node("e", None)),
        "envoy.load_balancing_policies.override_host"
    );
}

#[test]
fn envoy_flow_cds_then_eds_then_acks() {
    let snap = two_clusters();
    let mut stream = StreamState::new();

    let mut cds_req = request(CLUSTER_TYPE_URL, &[], "", "");
    cds_req.node = Some(Node {
        id: "envoy-1".into(),
        ..Default::default()
    });
    let reply = stream.on_request(cds_req, &snap);
    assert_eq!(
        reply.request,
        RequestKind::Subscribe {
            kind: ResourceType::Cluster
        }
    );
    let cds = reply.response.unwrap();
    assert_eq!(stream.node_id(), "envoy-1");
    assert_eq!(cds.resources.len(), 2);
    assert_eq!(cds.version_info, snap.version(ResourceType::Cluster));
    assert_eq!(cds.nonce, "1");

    let names = ["dns+a.test:80", "dns+b.test:80"];
    let eds = subscribe(&mut stream, ENDPOINT_TYPE_URL, &names, &snap);
    assert_eq!(cla_names(&eds), names);
    assert_eq!(eds.nonce, "2");

    // ACKs are not answered.
    assert_eq!(
        unanswered(&mut stream, ack_of(&cds, &[]), &snap),
        RequestKind::Ack {
            kind: ResourceType::Cluster,
            version: cds.version_info.clone()
        }
    );
    assert_eq!(
        stream.acked_version(ResourceType::Cluster),
        Some(cds.version_info.as_str())
    );
    assert!(stream
        .on_request(ack_of(&eds, &names), &snap)
        .response
        .is_none());
    // Nor is an unchanged snapshot.
    assert!(stream.on_snapshot(&snap).is_empty());
}

#[test]
fn snapshot_change_pushes_only_moved_types() {
    let snap = two_clusters();
    let mut stream = StreamState::new();
    let cds = subscribe(&mut stream, CLUSTER_TYPE_URL, &[], &snap);
    let names = ["dns+a.test:80"];
    let eds = subscribe(&mut stream, ENDPOINT_TYPE_URL, &names, &snap);
    stream.on_request(ack_of(&cds, &[]), &snap);
    stream.on_request(ack_of(&eds, &names), &snap);

    let moved = snapshot(&[
        ("dns+a.test:80", &["10.0.0.9:80"]),
        ("dns+b.test:80", &["10.0.0.2:80"]),
    ]);
    let pushes = stream.on_snapshot(&moved);
    assert_eq!(pushes.len(), 1);
    assert_eq!(pushes[0].type_url, ENDPOINT_TYPE_URL);
    assert_eq!(
        pushes[0].version_info,
        moved.version(ResourceType::Endpoint)
    );
    assert_eq!(cla_names(&pushes[0]), names);
    assert_eq!(pushes[0].nonce, "3");

    // ACK of the push: silence.
    assert!(stream
        .on_request(ack_of(&pushes[0], &names), &moved)
        .response
        .is_none());
    assert!(stream.on_snapshot(&moved).is_empty());

    // A new cluster moves both, CDS first.
    let grown = snapshot(&[
        ("dns+a.test:80", &["10.0.0.9:80"]),
        ("dns+b.test:80", &["10.0.0.2:80"]),
        ("dns+c.test:80", &[]),
    ]);
    let pushes = stream.on_snapshot(&grown);
    let types: Vec<&str> = pushes.iter().map(|p| p.type_url.as_str()).collect();
    assert_eq!(types, [CLUSTER_TYPE_URL, ENDPOINT_TYPE_URL]);
    assert_eq!(pushes[0].resources.len(), 3);
}

#[test]
fn nack_is_reported_and_not_answered() {
    let snap = two_clusters();
    let mut stream = StreamState::new();
    let cds = subscribe(&mut stream, CLUSTER_TYPE_URL, &[], &snap);
    let mut nack = request(CLUSTER_TYPE_URL, &[], "", &cds.nonce);
    nack.error_detail = Some(Status {
        code: 3,
        message: "bad cluster".into(),
        ..Default::default()
    });
    assert_eq!(
        unanswered(&mut stream, nack, &snap),
        RequestKind::Nack {
            kind: ResourceType::Cluster,
            rejected_version: cds.version_info.clone(),
            kept_version: String::new(),
            message: "bad cluster".into(),
        }
    );
    // A later snapshot with a new version is pushed again.
    let moved = snapshot(&[("dns+z.test:80", &[])]);
    assert_eq!(stream.on_snapshot(&moved).len(), 1);
}

#[test]
fn stale_nonces_are_ignored() {
    let snap = two_clusters();
    let mut stream = StreamState::new();
    let first = subscribe(&mut stream, CLUSTER_TYPE_URL, &[], &snap);
    let moved = snapshot(&[("dns+z.test:80", &[])]);
    let second = stream.on_snapshot(&moved).remove(0);

    // The ACK of the first response arrives after the second was sent.
    assert_eq!(
        unanswered(&mut stream, ack_of(&first, &[]), &moved),
        RequestKind::Stale {
            kind: ResourceType::Cluster,
            nonce: first.nonce.clone()
        }
    );
    // Even a stale NACK is ignored.
    let mut stale_nack = ack_of(&first, &[]);
    stale_nack.error_detail = Some(Status::default());
    assert!(matches!(
        stream.on_request(stale_nack, &moved).request,
        RequestKind::Stale { .. }
    ));
    assert!(stream
        .on_request(ack_of(&second, &[]), &moved)
        .response
        .is_none());
}

#[test]
fn subscription_change_is_answered() {
    let snap = two_clusters();
    let mut stream = StreamState::new();
    let eds = subscribe(&mut stream, ENDPOINT_TYPE_URL, &["dns+a.test:80"], &snap);
    let names = ["dns+a.test:80", "dns+b.test:80", "dns+unknown.test:80"];
    let reply = stream.on_request(ack_of(&eds, &names), &snap);
    let response = reply.response.unwrap();
    // Unknown names are skipped.
    assert_eq!(cla_names(&response), ["dns+a.test:80", "dns+b.test:80"]);
    assert_eq!(response.version_info, eds.version_info);
    assert_ne!(response.nonce, eds.nonce);
}

#[test]
fn explicit_wildcard_gets_every_assignment() {
    let snap = two_clusters();
    let mut stream = StreamState::new();
    let eds = subscribe(&mut stream, ENDPOINT_TYPE_URL, &["*"], &snap);
    assert_eq!(cla_names(&eds), ["dns+a.test:80", "dns+b.test:80"]);

    let grown = snapshot(&[("dns+a.test:80", &["10.0.0.1:80"]), ("dns+c.test:80", &[])]);
    let push = stream.on_snapshot(&grown).remove(0);
    assert_eq!(cla_names(&push), ["dns+a.test:80", "dns+c.test:80"]);
}

#[test]
fn empty_eds_subscription_is_not_answered() {
    let snap = two_clusters();
    let mut stream = StreamState::new();
    let eds = subscribe(&mut stream, ENDPOINT_TYPE_URL, &["dns+a.test:80"], &snap);
    let reply = stream.on_request(ack_of(&eds, &[]), &snap);
    assert!(reply.response.is_none());
    assert!(stream
        .on_snapshot(&snapshot(&[("dns+a.test:80", &[])]))
        .is_empty());
}

#[test]
fn reconnect_with_known_version_is_answered() {
    // After a shim restart Envoy re-requests with its last version and an empty nonce
    // (or a nonce from the old stream). Always answer: the stream is new.
    let snap = two_clusters();
    for nonce in ["", "17"] {
        let mut stream = StreamState::new();
        let version = snap.version(ResourceType::Cluster).to_string();
        let reply = stream.on_request(request(CLUSTER_TYPE_URL, &[], &version, nonce), &snap);
        assert_eq!(
            reply.request,
            RequestKind::Subscribe {
                kind: ResourceType::Cluster
            }
        );
        assert_eq!(reply.response.unwrap().version_info, version);
    }
}

#[test]
fn unknown_types_are_not_answered() {
    let mut stream = StreamState::new();
    let reply = stream.on_request(
        request(
            "type.googleapis.com/envoy.config.listener.v3.Listener",
            &[],
            "",
            "",
        ),
        &two_clusters(),
    );
    assert!(matches!(reply.request, RequestKind::UnknownType { .. }));
    assert!(reply.response.is_none());
}

#[test]
fn plain_cds_stream_serves_grpc_eds_clusters_and_fills_type_url() {
    use crate::xds::resources::EdsSource;
    let snap = two_clusters();
    let mut stream = StreamState::single_type(ResourceType::Cluster);
    let reply = stream.on_request(request("", &[], "", ""), &snap);
    let cds = reply.response.unwrap();
    assert_eq!(cds.type_url, CLUSTER_TYPE_URL);
    let grpc = snap.resources_for(ResourceType::Cluster, EdsSource::Grpc);
    assert_eq!(cds.version_info, grpc.version);
    assert_ne!(cds.version_info, snap.version(ResourceType::Cluster));
    assert_eq!(
        cds.resources,
        grpc.by_name
            .values()
            .map(|v| v.resource.clone())
            .collect::<Vec<_>>()
    );
    // An ACK without type_url is recognised as such.
    let reply = stream.on_request(request("", &[], &cds.version_info, &cds.nonce), &snap);
    assert!(matches!(reply.request, RequestKind::Ack { .. }));
    assert!(reply.response.is_none());
    // Another type on a CDS stream is not served.
    let reply = stream.on_request(request(ENDPOINT_TYPE_URL, &["*"], "", ""), &snap);
    assert!(matches!(reply.request, RequestKind::UnknownType { .. }));
}

#[test]
fn plain_eds_stream_serves_assignments() {
    let snap = two_clusters();
    let mut stream = StreamState::single_type(ResourceType::Endpoint);
    let eds = subscribe(&mut stream, "", &["dns+b.test:80"], &snap);
    assert_eq!(eds.type_url, ENDPOINT_TYPE_URL);
    assert_eq!(cla_names(&eds), ["dns+b.test:80"]);
    assert_eq!(eds.version_info, snap.version(ResourceType::Endpoint));
}

#[test]
fn nonces_increase_across_types() {
    let snap = two_clusters();
    let mut stream = StreamState::new();
    let a = subscribe(&mut stream, CLUSTER_TYPE_URL, &[], &snap);
    let b = subscribe(&mut stream, ENDPOINT_TYPE_URL, &["*"], &snap);
    assert_eq!((a.nonce.as_str(), b.nonce.as_str()), ("1", "2"));
}
