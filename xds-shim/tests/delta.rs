//! A Delta (incremental) xDS client against the real binary, on ADS and on the plain CDS
//! and EDS services: only changed resources are sent, a NACK shows in /status.json and
//! /metrics, and a plain stream answers only its own type.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use dnslb_tests::xds::XdsStream;
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::config_source::ConfigSourceSpecifier;
use envoy_types::pb::envoy::config::core::v3::grpc_service::TargetSpecifier;
use envoy_types::pb::envoy::config::core::v3::{api_config_source::ApiType, Node};
use envoy_types::pb::envoy::service::cluster::v3::cluster_discovery_service_client::ClusterDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse,
};
use envoy_types::pb::envoy::service::endpoint::v3::endpoint_discovery_service_client::EndpointDiscoveryServiceClient;
use envoy_types::pb::google::rpc::Status;
use prost::Message;

use support::{dns as start_dns, set, shim as start_shim, DnsServer, Running};

const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const EDS: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";

/// The gRPC service a Delta stream is opened on.
#[derive(Clone, Copy)]
enum Service {
    Ads,
    /// Plain `ClusterDiscoveryService/DeltaClusters`.
    Cds,
    /// Plain `EndpointDiscoveryService/DeltaEndpoints`.
    Eds,
}

struct DeltaClient(XdsStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>);

impl DeltaClient {
    async fn connect(shim: &Running, service: Service) -> DeltaClient {
        let url = shim.xds_url();
        let stream = match service {
            Service::Ads => {
                let mut client = AggregatedDiscoveryServiceClient::connect(url)
                    .await
                    .unwrap();
                XdsStream::open(None, |rx| async move {
                    client.delta_aggregated_resources(rx).await
                })
                .await
            }
            Service::Cds => {
                let mut client = ClusterDiscoveryServiceClient::connect(url).await.unwrap();
                XdsStream::open(None, |rx| async move { client.delta_clusters(rx).await }).await
            }
            Service::Eds => {
                let mut client = EndpointDiscoveryServiceClient::connect(url).await.unwrap();
                XdsStream::open(None, |rx| async move { client.delta_endpoints(rx).await }).await
            }
        };
        DeltaClient(stream.unwrap())
    }

    async fn send(&self, type_url: &str, subscribe: &[&str], nonce: &str, error: Option<&str>) {
        let request = DeltaDiscoveryRequest {
            node: Some(Node {
                id: "delta-node".into(),
                ..Default::default()
            }),
            type_url: type_url.into(),
            resource_names_subscribe: subscribe.iter().map(|n| n.to_string()).collect(),
            response_nonce: nonce.into(),
            error_detail: error.map(|message| Status {
                code: 3,
                message: message.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.0.send(request).await.unwrap();
    }

    async fn next(&mut self) -> DeltaDiscoveryResponse {
        self.0.next(Duration::from_secs(15)).await.unwrap()
    }
}

fn names(response: &DeltaDiscoveryResponse) -> Vec<&str> {
    response.resources.iter().map(|r| r.name.as_str()).collect()
}

async fn status(shim: &Running) -> serde_json::Value {
    let (_, body) = shim.get("/status.json");
    serde_json::from_str(&body).unwrap()
}

/// The fake DNS server with `a.test` and `b.test`, the shim serving `dns+a.test:80` and
/// `dns+b.test:80` from it (fast rounds, no draining), and a Delta stream on `service`.
async fn start(service: Service) -> (DnsServer, Running, DeltaClient) {
    let dns = start_dns(&[("a.test", &["127.0.0.2"]), ("b.test", &["127.0.0.3"])]);
    let shim = start_shim(
        &dns,
        &["dns+a.test:80", "dns+b.test:80"],
        Duration::from_millis(200),
        &["--drain", "0s"],
    );
    let client = DeltaClient::connect(&shim, service).await;
    (dns, shim, client)
}

/// Sends `client`'s NACK of `rejected` with `message`, waits until /status.json reports
/// the NACK of `delta-node`, checks it against what was rejected, and checks /metrics for
/// `metrics`. Returns the node's status entry.
async fn reject(
    client: &DeltaClient,
    shim: &Running,
    service: &str,
    rejected: &DeltaDiscoveryResponse,
    message: &str,
    metrics: &[&str],
) -> serde_json::Value {
    // The NACK goes on the rejected type; the status names that type.
    let (type_url, kind) = if rejected.type_url == CDS {
        (CDS, "CDS")
    } else {
        (EDS, "EDS")
    };
    client
        .send(type_url, &[], &rejected.nonce, Some(message))
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let entry = loop {
        let json = status(shim).await;
        let found = json["clients"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["node"] == "delta-node" && !c["last_nack"].is_null())
            .cloned();
        if let Some(found) = found {
            break found;
        }
        assert!(std::time::Instant::now() < deadline, "NACK never reported");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(entry["service"], service);
    let nack = &entry["last_nack"];
    assert_eq!(nack["type"], kind);
    assert_eq!(nack["message"], message);
    assert_eq!(
        nack["rejected_version"],
        rejected.system_version_info.as_str()
    );
    let (_, text) = shim.get("/metrics");
    for needle in metrics.iter().chain(&["dnslb_xds_nacks_total 1"]) {
        assert!(text.contains(needle), "{needle} not in\n{text}");
    }
    entry
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_client_gets_changes_only_and_nacks_are_reported() {
    let (dns, shim, mut client) = start(Service::Ads).await;

    // CDS wildcard (legacy: nothing named), then EDS for both.
    client.send(CDS, &[], "", None).await;
    let cds = client.next().await;
    assert_eq!(cds.type_url, CDS);
    assert_eq!(names(&cds), ["dns+a.test:80", "dns+b.test:80"]);
    client.send(CDS, &[], &cds.nonce, None).await;
    client
        .send(EDS, &["dns+a.test:80", "dns+b.test:80"], "", None)
        .await;
    let eds = client.next().await;
    assert_eq!(names(&eds), ["dns+a.test:80", "dns+b.test:80"]);
    client.send(EDS, &[], &eds.nonce, None).await;

    // One name changes: only its assignment is sent.
    set(&dns, "b.test", &["127.0.0.4"]);
    let push = client.next().await;
    assert_eq!(push.type_url, EDS);
    assert_eq!(names(&push), ["dns+b.test:80"]);
    assert!(push.removed_resources.is_empty());

    // The client rejects it: the NACK and its reason show up per node.
    let status = reject(&client, &shim, "ADS delta", &push, "endpoint rejected", &[]).await;
    assert_eq!(status["acked"]["CDS"], cds.system_version_info.as_str());
    assert_eq!(status["acked"]["EDS"], eds.system_version_info.as_str());

    // A later change is still pushed after the NACK.
    set(&dns, "a.test", &["127.0.0.5"]);
    let push = client.next().await;
    assert_eq!(names(&push), ["dns+a.test:80"]);
}

/// Plain Delta CDS, for an Envoy that takes its clusters from the shim without ADS: the
/// clusters fetch their endpoints from the shim's plain EDS service, the stream carries
/// clusters only, and a NACK is reported for the stream's node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_delta_cds_serves_clusters_that_fetch_from_grpc_eds() {
    let (_dns, shim, mut client) = start(Service::Cds).await;

    // Endpoints on a CDS stream go unanswered: the first response is the clusters'.
    client.send(EDS, &["*"], "", None).await;
    client.send(CDS, &[], "", None).await;
    let cds = client.next().await;
    assert_eq!(cds.type_url, CDS);
    assert_eq!(names(&cds), ["dns+a.test:80", "dns+b.test:80"]);
    for resource in &cds.resources {
        let cluster =
            Cluster::decode(resource.resource.as_ref().unwrap().value.as_slice()).unwrap();
        let source = cluster.eds_cluster_config.unwrap().eds_config.unwrap();
        let Some(ConfigSourceSpecifier::ApiConfigSource(api)) = source.config_source_specifier
        else {
            panic!(
                "{}: EDS must be an api_config_source, not ADS",
                cluster.name
            );
        };
        // Delta like the cluster stream that carried it.
        assert_eq!(api.api_type, ApiType::DeltaGrpc as i32, "{}", cluster.name);
        let Some(TargetSpecifier::EnvoyGrpc(grpc)) = &api.grpc_services[0].target_specifier else {
            panic!("{}: not envoy_grpc", cluster.name);
        };
        assert_eq!(grpc.cluster_name, "dnslb_xds");
    }

    let metrics = [
        "dnslb_xds_connected_streams 1",
        "dnslb_xds_pushes_total{type=\"CDS\"} 1",
    ];
    reject(
        &client,
        &shim,
        "CDS delta",
        &cds,
        "cluster rejected",
        &metrics,
    )
    .await;
}

/// Plain Delta EDS: assignments for the subscribed clusters only, changes pushed, ACKs and
/// NACKs per node, clusters refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_delta_eds_pushes_subscribed_changes_and_reports_nacks() {
    let (dns, shim, mut client) = start(Service::Eds).await;

    // Clusters on an EDS stream go unanswered: the first response is the assignment.
    client.send(CDS, &[], "", None).await;
    client.send(EDS, &["dns+a.test:80"], "", None).await;
    let eds = client.next().await;
    assert_eq!(eds.type_url, EDS);
    assert_eq!(names(&eds), ["dns+a.test:80"]);
    client.send(EDS, &[], &eds.nonce, None).await;

    // b is not subscribed: its change is not sent; a's is, alone.
    set(&dns, "b.test", &["127.0.0.5"]);
    set(&dns, "a.test", &["127.0.0.4"]);
    let push = client.next().await;
    assert_eq!(names(&push), ["dns+a.test:80"]);
    assert_ne!(push.resources[0].version, eds.resources[0].version);

    let metrics = [
        "dnslb_xds_connected_streams 1",
        "dnslb_xds_pushes_total{type=\"EDS\"} 2",
    ];
    let status = reject(
        &client,
        &shim,
        "EDS delta",
        &push,
        "endpoint rejected",
        &metrics,
    )
    .await;
    assert_eq!(status["acked"]["EDS"], eds.system_version_info.as_str());
}
