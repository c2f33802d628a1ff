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

/// `dns+a:80` at 10.0.0.1 and `dns+b:80` at 10.0.0.2.
fn a_and_b() -> Snapshot {
    snapshot(&[
        ("dns+a:80", &["10.0.0.1:80"]),
        ("dns+b:80", &["10.0.0.2:80"]),
    ])
}

#[test]
fn sends_only_what_changed_and_names_what_went() {
    let snap = a_and_b();
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
    let membership = crate::model::membership::Membership::new(members, Default::default(), None);
    snap.updated([(cluster.to_string(), membership)]).unwrap()
}

#[test]
fn follows_a_chain_of_updates_and_checks_everything_when_it_lost_track() {
    let mut snap = a_and_b();
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
    let entries: Vec<(&str, &[&str])> = names.iter().map(|n| (n.as_str(), &addrs[..])).collect();
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
    let (kind, none) = delta.on_request(request(ENDPOINT_TYPE_URL, &[], &parts[1].nonce), &snap);
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
    let snap = a_and_b();
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
    let snap = a_and_b();
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
    let snap = a_and_b();
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
