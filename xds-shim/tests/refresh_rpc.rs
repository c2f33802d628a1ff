//! `dnslb.v1.Resolver/Refresh` over gRPC against the real binary, with the messages
//! declared here as the filter declares them (so the wire shape is what is tested).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use dnslb_tests::xds::XdsStream;
use dnslb_wire::refresh::RefreshResponse;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;

use support::{dns as start_dns, set, shim as start_shim, Running};

const EDS: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";

async fn refresh(shim: &Running, cluster: &str) -> Result<RefreshResponse, tonic::Status> {
    let xds = std::net::SocketAddr::from(([127, 0, 0, 1], shim.xds));
    dnslb_tests::shim::refresh(xds, cluster).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_refresh_pushes_at_once_and_is_limited_per_name() {
    let dns = start_dns(&[("a.test", &["127.0.0.2"])]);
    // An hour between rounds: only the forced refresh can see the change.
    let shim = start_shim(&dns, &["dns+a.test:80"], Duration::from_secs(3600), &[]);

    let mut client = AggregatedDiscoveryServiceClient::connect(shim.xds_url())
        .await
        .unwrap();
    let subscribe = DiscoveryRequest {
        type_url: EDS.into(),
        resource_names: vec!["*".into()],
        ..Default::default()
    };
    let mut pushes = XdsStream::open(Some(subscribe), |rx| async move {
        client.stream_aggregated_resources(rx).await
    })
    .await
    .unwrap();
    let first = pushes.next(Duration::from_secs(15)).await.unwrap();

    // Nothing changed in DNS: not changed, the current version.
    let unchanged = refresh(&shim, "dns+a.test:80").await.unwrap();
    assert!(!unchanged.changed);
    assert_eq!(unchanged.version, first.version_info);

    // Within the second: limited, no new resolution even though DNS changed.
    set(&dns, "a.test", &["127.0.0.3"]);
    let limited = refresh(&shim, "dns+a.test:80").await.unwrap();
    assert!(!limited.changed);

    // Once the second is over: re-resolved, pushed at once, version returned. Polled
    // (bounded), since the limit is per second by design.
    let start = std::time::Instant::now();
    let changed = loop {
        let answer = refresh(&shim, "dns+a.test:80").await.unwrap();
        if answer.changed {
            break answer;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "never re-resolved"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_ne!(changed.version, first.version_info);
    let push = pushes.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(push.version_info, changed.version);

    let err = refresh(&shim, "dns+unknown.test:80").await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
}
