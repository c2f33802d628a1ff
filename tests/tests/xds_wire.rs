//! The filter declares only the xDS fields it reads; these tests check its
//! messages against Envoy's own protos (envoy-types) on the wire.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use dnslb_filter::xds::{EdsSubscription, CLA_TYPE_URL};
use envoy_types::pb::envoy::config::core::v3::{
    address::Address as AddressKind, socket_address::PortSpecifier, Address, HealthStatus,
    SocketAddress,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    lb_endpoint::HostIdentifier, ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::google::protobuf::{Any, UInt32Value};
use prost::Message;

fn lb_endpoint(ip: &str, port: u32, health: HealthStatus, weight: u32) -> LbEndpoint {
    LbEndpoint {
        host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
            address: Some(Address {
                address: Some(AddressKind::SocketAddress(SocketAddress {
                    address: ip.into(),
                    port_specifier: Some(PortSpecifier::PortValue(port)),
                    ..Default::default()
                })),
            }),
            hostname: "backend.test".into(),
            ..Default::default()
        })),
        health_status: health as i32,
        load_balancing_weight: Some(UInt32Value { value: weight }),
        ..Default::default()
    }
}

#[test]
fn filter_reads_envoy_cluster_load_assignments() {
    let cla = ClusterLoadAssignment {
        cluster_name: "dns+backend.test:8080".into(),
        endpoints: vec![
            LocalityLbEndpoints {
                lb_endpoints: vec![
                    lb_endpoint("127.0.0.2", 8080, HealthStatus::Healthy, 3),
                    lb_endpoint("127.0.0.3", 8080, HealthStatus::Draining, 1),
                    lb_endpoint("127.0.0.4", 8080, HealthStatus::Unhealthy, 1),
                ],
                ..Default::default()
            },
            LocalityLbEndpoints {
                lb_endpoints: vec![lb_endpoint("::1", 9090, HealthStatus::Healthy, 1)],
                priority: 1,
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let response = DiscoveryResponse {
        version_info: "abc".into(),
        resources: vec![Any {
            type_url: CLA_TYPE_URL.into(),
            value: cla.encode_to_vec(),
        }],
        type_url: CLA_TYPE_URL.into(),
        nonce: "1".into(),
        ..Default::default()
    };

    let mut sub = EdsSubscription::new("edge-1");
    let outcome = sub.on_response(&response.encode_to_vec());
    let update = outcome.update.unwrap();
    assert_eq!(update.version, "abc");
    let (name, members) = &update.clusters[0];
    assert_eq!(name, "dns+backend.test:8080");
    let seen: Vec<(&str, u32, u32, bool)> = members
        .iter()
        .map(|m| (m.address.as_str(), m.weight, m.priority, m.draining))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("127.0.0.2:8080", 3, 0, false),
            ("127.0.0.3:8080", 1, 0, true),
            ("[::1]:9090", 1, 1, false),
        ]
    );

    let ack = DiscoveryRequest::decode(outcome.reply.as_slice()).unwrap();
    assert_eq!(ack.type_url, CLA_TYPE_URL);
    assert_eq!(ack.version_info, "abc");
    assert_eq!(ack.response_nonce, "1");
    assert_eq!(ack.resource_names, vec!["*"]);
    assert_eq!(ack.node.unwrap().id, "edge-1");
    assert!(ack.error_detail.is_none());
}

#[test]
fn filter_nack_carries_the_reason_in_envoy_form() {
    let response = DiscoveryResponse {
        version_info: "v2".into(),
        type_url: "type.googleapis.com/envoy.config.cluster.v3.Cluster".into(),
        nonce: "9".into(),
        ..Default::default()
    };
    let mut sub = EdsSubscription::new("edge-1");
    let outcome = sub.on_response(&response.encode_to_vec());
    assert!(outcome.update.is_none());
    let nack = DiscoveryRequest::decode(outcome.reply.as_slice()).unwrap();
    assert_eq!(nack.response_nonce, "9");
    assert_eq!(nack.version_info, "");
    let detail = nack.error_detail.unwrap();
    assert!(
        detail.message.contains("envoy.config.cluster.v3.Cluster"),
        "{}",
        detail.message
    );
}
