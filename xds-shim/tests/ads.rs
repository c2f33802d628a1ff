//! End to end through the real binary: a fake DNS server feeds the shim, a tonic ADS client
//! plays Envoy (CDS, then EDS, then ACKs) and the filter (EDS `*`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use dnslb_tests::xds::{endpoint_address, XdsStream};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use prost::Message;

use support::{dns as start_dns, set, shim as start_shim, Running};

const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const EDS: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";

/// A SotW ADS stream, as Envoy opens one.
struct AdsClient(XdsStream<DiscoveryRequest, DiscoveryResponse>);

impl AdsClient {
    async fn connect(shim: &Running) -> AdsClient {
        let mut client = AggregatedDiscoveryServiceClient::connect(shim.xds_url())
            .await
            .unwrap();
        let stream = XdsStream::open(None, |rx| async move {
            client.stream_aggregated_resources(rx).await
        });
        AdsClient(stream.await.unwrap())
    }

    async fn send(&self, type_url: &str, names: &[&str], version: &str, nonce: &str) {
        let request = DiscoveryRequest {
            node: Some(Node {
                id: "test-node".into(),
                ..Default::default()
            }),
            type_url: type_url.into(),
            resource_names: names.iter().map(|n| n.to_string()).collect(),
            version_info: version.into(),
            response_nonce: nonce.into(),
            ..Default::default()
        };
        self.0.send(request).await.unwrap();
    }

    async fn ack(&self, response: &DiscoveryResponse, names: &[&str]) {
        self.send(
            &response.type_url,
            names,
            &response.version_info,
            &response.nonce,
        )
        .await;
    }

    async fn next(&mut self) -> DiscoveryResponse {
        self.0.next(Duration::from_secs(15)).await.unwrap()
    }

    /// Asserts that nothing arrives for a while (e.g. after an ACK).
    async fn expect_silence(&mut self, wait: Duration) {
        if let Some(message) = self.0.next_or_silence(wait).await.unwrap() {
            panic!("unexpected message: {message:?}");
        }
    }
}

/// `address:port` of every endpoint in a CLA response, by cluster name.
fn endpoints(response: &DiscoveryResponse) -> Vec<(String, Vec<String>)> {
    response
        .resources
        .iter()
        .map(|any| {
            let cla = ClusterLoadAssignment::decode(any.value.as_slice()).unwrap();
            let addrs = cla
                .endpoints
                .iter()
                .flat_map(|locality| &locality.lb_endpoints)
                .map(|lb| endpoint_address(lb).expect("a socket address with a port"))
                .collect();
            (cla.cluster_name, addrs)
        })
        .collect()
}

fn cluster_names(response: &DiscoveryResponse) -> Vec<String> {
    response
        .resources
        .iter()
        .map(|any| Cluster::decode(any.value.as_slice()).unwrap().name)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_flow_against_fake_dns() {
    let dns = start_dns(&[
        ("backend.test", &["127.0.0.3", "127.0.0.2"]),
        ("other.test", &["127.0.0.9"]),
    ]);
    let shim = start_shim(
        &dns,
        &["dns+backend.test:8080", "dns+other.test:9090"],
        Duration::from_millis(200),
        &["--drain", "0s"],
    );

    // Envoy: CDS wildcard, then EDS for the clusters it learned, then ACKs.
    let mut envoy = AdsClient::connect(&shim).await;
    envoy.send(CDS, &[], "", "").await;
    let cds = envoy.next().await;
    assert_eq!(cds.type_url, CDS);
    assert_eq!(
        cluster_names(&cds),
        ["dns+backend.test:8080", "dns+other.test:9090"]
    );
    envoy.ack(&cds, &[]).await;

    let names = ["dns+backend.test:8080"];
    envoy.send(EDS, &names, "", "").await;
    let eds = envoy.next().await;
    assert_eq!(eds.type_url, EDS);
    assert_eq!(
        endpoints(&eds),
        [(
            "dns+backend.test:8080".to_string(),
            vec!["127.0.0.2:8080".to_string(), "127.0.0.3:8080".to_string()]
        )]
    );
    envoy.ack(&eds, &names).await;
    // Several refresh rounds with unchanged answers: nothing is re-sent.
    envoy.expect_silence(Duration::from_millis(800)).await;

    // The filter's stream: EDS with the explicit wildcard gets every assignment.
    let mut filter = AdsClient::connect(&shim).await;
    filter.send(EDS, &["*"], "", "").await;
    let all = filter.next().await;
    let clusters: Vec<String> = endpoints(&all).into_iter().map(|(name, _)| name).collect();
    assert_eq!(clusters, ["dns+backend.test:8080", "dns+other.test:9090"]);
    filter.ack(&all, &["*"]).await;

    // DNS changes: both streams get a push with a new version, no request needed.
    set(&dns, "backend.test", &["127.0.0.4"]);
    let push = envoy.next().await;
    assert_eq!(push.type_url, EDS);
    assert_ne!(push.version_info, eds.version_info);
    assert_eq!(
        endpoints(&push),
        [(
            "dns+backend.test:8080".to_string(),
            vec!["127.0.0.4:8080".to_string()]
        )]
    );
    let filter_push = filter.next().await;
    assert_eq!(filter_push.version_info, push.version_info);
    assert_eq!(filter_push.resources.len(), 2);

    envoy.ack(&push, &names).await;
    let (status, body) = shim.get("/status.json");
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["connected_streams"], 2);
    assert_eq!(json["versions"]["endpoints"], push.version_info.as_str());
    assert_eq!(
        json["upstreams"][0]["endpoints"],
        serde_json::json!(["127.0.0.4:8080"])
    );

    let (status, _) = shim.get("/readyz");
    assert_eq!(status, 200);
    let (status, metrics) = shim.get("/metrics");
    assert_eq!(status, 200);
    for needle in [
        "dnslb_xds_connected_streams 2",
        "dnslb_xds_pushes_total{type=\"EDS\"} 4",
        "dnslb_xds_pushes_total{type=\"CDS\"} 1",
        "dnslb_endpoints{cluster=\"dns+backend.test:8080\",state=\"live\"} 1",
        "dnslb_resolutions_total{result=\"ok\"}",
        "dnslb_xds_push_latency_seconds_count 2",
    ] {
        assert!(metrics.contains(needle), "{needle} not in\n{metrics}");
    }

    // Clean shutdown: streams end, the process exits 0.
    let status = shim.process.stop(Duration::from_secs(10)).unwrap();
    assert!(status.success(), "{status:?}");
    // The stream ends or fails; a timeout (`Ok(None)`) or a message would be wrong.
    let end = envoy.0.next_or_silence(Duration::from_secs(5)).await;
    assert!(end.is_err(), "{end:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nxdomain_empties_only_when_confirmed() {
    let dns = start_dns(&[("flappy.test", &["127.0.0.7"])]);
    let shim = start_shim(
        &dns,
        &["dns+flappy.test:80"],
        Duration::from_millis(200),
        &["--empty-after", "4", "--drain", "0s"],
    );
    let mut envoy = AdsClient::connect(&shim).await;
    envoy.send(EDS, &["dns+flappy.test:80"], "", "").await;
    let eds = envoy.next().await;
    envoy.ack(&eds, &["dns+flappy.test:80"]).await;

    // Unconfirmed NXDOMAIN: the last good members stay, the streak shows in the status.
    dns.remove("flappy.test");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let upstream = loop {
        let (_, body) = shim.get("/status.json");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        let upstream = json["upstreams"][0].clone();
        if upstream["empty_answers"].as_u64().unwrap() >= 1 {
            break upstream;
        }
        assert!(std::time::Instant::now() < deadline, "no NXDOMAIN seen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(upstream["last_resolution"]["result"], "nxdomain");
    if upstream["empty_answers"].as_u64().unwrap() < 4 {
        assert_eq!(upstream["endpoints"], serde_json::json!(["127.0.0.7:80"]));
    }

    // Confirmed (4 in a row): the assignment empties.
    let push = envoy.next().await;
    assert_eq!(
        endpoints(&push),
        [("dns+flappy.test:80".to_string(), vec![])]
    );
}

/// A mesh that keeps its own ADS: plain CDS and EDS streams on the same port. Requests
/// leave `type_url` empty (allowed on non-aggregated streams); clusters point their EDS at
/// the shim's gRPC service rather than at ADS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_cds_and_eds_services() {
    use envoy_types::pb::envoy::config::core::v3::config_source::ConfigSourceSpecifier;
    use envoy_types::pb::envoy::config::core::v3::grpc_service::TargetSpecifier;
    use envoy_types::pb::envoy::service::cluster::v3::cluster_discovery_service_client::ClusterDiscoveryServiceClient;
    use envoy_types::pb::envoy::service::endpoint::v3::endpoint_discovery_service_client::EndpointDiscoveryServiceClient;

    let dns = start_dns(&[("backend.test", &["127.0.0.2"])]);
    let shim = start_shim(
        &dns,
        &["dns+backend.test:8080"],
        Duration::from_millis(200),
        &["--drain", "0s"],
    );
    let url = shim.xds_url();
    let request = |names: &[&str], version: &str, nonce: &str| DiscoveryRequest {
        resource_names: names.iter().map(|n| n.to_string()).collect(),
        version_info: version.into(),
        response_nonce: nonce.into(),
        ..Default::default()
    };

    let mut client = ClusterDiscoveryServiceClient::connect(url.clone())
        .await
        .unwrap();
    let mut cds = XdsStream::open(Some(request(&[], "", "")), |rx| async move {
        client.stream_clusters(rx).await
    })
    .await
    .unwrap();
    let clusters = cds.next(Duration::from_secs(15)).await.unwrap();
    assert_eq!(clusters.type_url, CDS);
    let cluster = Cluster::decode(clusters.resources[0].value.as_slice()).unwrap();
    assert_eq!(cluster.name, "dns+backend.test:8080");
    let source = cluster.eds_cluster_config.unwrap().eds_config.unwrap();
    let Some(ConfigSourceSpecifier::ApiConfigSource(api)) = source.config_source_specifier else {
        panic!("EDS of a plain-CDS cluster must be an api_config_source");
    };
    let Some(TargetSpecifier::EnvoyGrpc(grpc)) = &api.grpc_services[0].target_specifier else {
        panic!("not envoy_grpc");
    };
    assert_eq!(grpc.cluster_name, "dnslb_xds");

    let names = ["dns+backend.test:8080"];
    let mut client = EndpointDiscoveryServiceClient::connect(url).await.unwrap();
    let mut eds = XdsStream::open(Some(request(&names, "", "")), |rx| async move {
        client.stream_endpoints(rx).await
    })
    .await
    .unwrap();
    let first = eds.next(Duration::from_secs(15)).await.unwrap();
    assert_eq!(first.type_url, EDS);
    assert_eq!(
        endpoints(&first),
        [(names[0].to_string(), vec!["127.0.0.2:8080".to_string()])]
    );
    eds.send(request(&names, &first.version_info, &first.nonce))
        .await
        .unwrap();

    // A DNS change is pushed on the plain EDS stream too.
    set(&dns, "backend.test", &["127.0.0.3"]);
    let push = eds.next(Duration::from_secs(15)).await.unwrap();
    assert_eq!(
        endpoints(&push),
        [(names[0].to_string(), vec!["127.0.0.3:8080".to_string()])]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_until_every_upstream_answered() {
    let dns = start_dns(&[("here.test", &["127.0.0.2"])]);
    let shim = start_shim(
        &dns,
        &["dns+here.test:80", "dns+later.test:80"],
        Duration::from_millis(100),
        &["--empty-after", "1000"],
    );
    let (status, body) = shim.get("/readyz");
    assert_eq!(status, 503, "{body}");
    set(&dns, "later.test", &["127.0.0.3"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while shim.get("/readyz").0 != 200 {
        assert!(std::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// TTL-aware mode: with an hour between rounds, a change still arrives about one TTL
/// (the fake server answers TTL 1 s) after it happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_aware_mode_follows_the_record_ttl() {
    let dns = start_dns(&[("ttl.test", &["127.0.0.2"])]);
    let shim = start_shim(
        &dns,
        &["dns+ttl.test:80"],
        Duration::from_secs(3600),
        &["--ttl-floor", "200ms", "--drain", "0s"],
    );
    let mut envoy = AdsClient::connect(&shim).await;
    envoy.send(EDS, &["dns+ttl.test:80"], "", "").await;
    let first = envoy.next().await;
    envoy.ack(&first, &["dns+ttl.test:80"]).await;

    set(&dns, "ttl.test", &["127.0.0.3"]);
    let changed_at = std::time::Instant::now();
    let push = envoy.next().await;
    assert_eq!(
        endpoints(&push),
        [(
            "dns+ttl.test:80".to_string(),
            vec!["127.0.0.3:80".to_string()]
        )]
    );
    println!("TTL-aware change seen after {:?}", changed_at.elapsed());
}
