//! A Delta (incremental) xDS client against the real binary: only changed resources are
//! sent, removals are named, and a NACK shows in /status.json and /metrics.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse,
};
use envoy_types::pb::google::rpc::Status;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

use support::{http_get, FakeDns, Shim};

const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const EDS: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";

struct DeltaClient {
    requests: mpsc::Sender<DeltaDiscoveryRequest>,
    responses: Streaming<DeltaDiscoveryResponse>,
}

impl DeltaClient {
    async fn connect(shim: &Shim) -> DeltaClient {
        let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://{}", shim.xds))
            .await
            .unwrap();
        let (requests, rx) = mpsc::channel(8);
        let responses = client
            .delta_aggregated_resources(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        DeltaClient {
            requests,
            responses,
        }
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
        self.requests.send(request).await.unwrap();
    }

    async fn next(&mut self) -> DeltaDiscoveryResponse {
        tokio::time::timeout(Duration::from_secs(15), self.responses.message())
            .await
            .expect("no response in time")
            .unwrap()
            .expect("stream ended")
    }
}

fn names(response: &DeltaDiscoveryResponse) -> Vec<&str> {
    response.resources.iter().map(|r| r.name.as_str()).collect()
}

async fn status(shim: &Shim) -> serde_json::Value {
    let (_, body) = http_get(shim.admin, "/status.json").await.unwrap();
    serde_json::from_str(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_client_gets_changes_only_and_nacks_are_reported() {
    let dns = FakeDns::start().await;
    dns.set("a.test", &["127.0.0.2"]);
    dns.set("b.test", &["127.0.0.3"]);
    let nameserver = dns.addr.to_string();
    let shim = Shim::spawn(&[
        "--upstream",
        "dns+a.test:80",
        "--upstream",
        "dns+b.test:80",
        "--nameserver",
        &nameserver,
        "--interval",
        "200ms",
        "--drain",
        "0s",
    ]);
    shim.wait_ready().await;
    let mut client = DeltaClient::connect(&shim).await;

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
    dns.set("b.test", &["127.0.0.4"]);
    let push = client.next().await;
    assert_eq!(push.type_url, EDS);
    assert_eq!(names(&push), ["dns+b.test:80"]);
    assert!(push.removed_resources.is_empty());

    // The client rejects it: the NACK and its reason show up per node.
    client
        .send(EDS, &[], &push.nonce, Some("endpoint rejected"))
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let client_status = loop {
        let json = status(&shim).await;
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
    assert_eq!(client_status["service"], "ADS delta");
    assert_eq!(
        client_status["acked"]["CDS"],
        cds.system_version_info.as_str()
    );
    assert_eq!(
        client_status["acked"]["EDS"],
        eds.system_version_info.as_str()
    );
    let nack = &client_status["last_nack"];
    assert_eq!(nack["type"], "EDS");
    assert_eq!(nack["message"], "endpoint rejected");
    assert_eq!(nack["rejected_version"], push.system_version_info.as_str());
    let (_, metrics) = http_get(shim.admin, "/metrics").await.unwrap();
    assert!(metrics.contains("dnslb_xds_nacks_total 1"), "{metrics}");

    // A later change is still pushed after the NACK.
    dns.set("a.test", &["127.0.0.5"]);
    let push = client.next().await;
    assert_eq!(names(&push), ["dns+a.test:80"]);
}
