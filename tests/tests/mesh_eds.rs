//! End to end, the mesh variant of envoy/README.md: an Envoy whose control
//! plane is not xds-shim (here: no dynamic resources at all) declares the
//! dnslb cluster itself from envoy/snippets/eds-cluster.yaml and takes only
//! its endpoints from the shim, over the plain EndpointDiscoveryService, in
//! state of the world (the snippet as it is) and Delta.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use dnslb_tests::{free_port, stack::EnvoyPorts, Stack, StackOptions};
use serde_yaml::Value;
use support::{add_dnslb, mesh_clusters, plain_bootstrap, point_cluster_at, use_built_filter};

const NAME: &str = "backend.test";

/// The snippets in a plain bootstrap, with the test's ports and cluster name,
/// the cluster's EDS of `api_type`.
fn mesh_bootstrap(ports: EnvoyPorts, cluster: &str, api_type: &str) -> String {
    let mut bootstrap = plain_bootstrap(ports.admin, ports.listener);
    let mut clusters = mesh_clusters(api_type);
    clusters[1]["name"] = Value::String(cluster.to_owned());
    add_dnslb(&mut bootstrap, clusters);
    point_cluster_at(&mut bootstrap, "dnslb_xds", "127.0.0.1", ports.xds);
    assert!(bootstrap["dynamic_resources"].is_null());
    assert!(use_built_filter(&mut bootstrap) > 0);
    serde_yaml::to_string(&bootstrap).unwrap()
}

#[test]
fn static_eds_cluster_from_the_shim_round_robins() {
    round_robin_over_static_eds_cluster("GRPC", "EDS");
}

#[test]
fn static_eds_cluster_over_delta_eds_round_robins() {
    round_robin_over_static_eds_cluster("DELTA_GRPC", "EDS delta");
}

/// The cluster's EDS of `api_type`; `service` is how the shim lists Envoy's stream.
fn round_robin_over_static_eds_cluster(api_type: &str, service: &str) {
    let ips = [2, 3, 4].map(|last| Ipv4Addr::new(127, 0, 0, last));
    let port = free_port(ips[0].into()).unwrap();
    let addrs: Vec<SocketAddr> = ips.iter().map(|&ip| SocketAddr::from((ip, port))).collect();
    let cluster = format!("dns+{NAME}:{port}");
    let opts = StackOptions::new(
        vec![cluster.clone()],
        addrs.clone(),
        PathBuf::from(env!("CARGO_BIN_EXE_fake-backend")),
    );
    let stack = Stack::start_with(
        opts,
        |dns| dns.set_a(NAME, &ips),
        |ports, _wasm, _filter_config| Ok(mesh_bootstrap(ports, &cluster, api_type)),
    )
    .unwrap();

    // Envoy got the endpoints over EDS without ADS or CDS from the shim.
    stack
        .envoy
        .wait_cluster_hosts(&cluster, &addrs, Duration::from_secs(30))
        .unwrap();
    assert_eq!(
        stack
            .envoy
            .stat("cluster_manager.cds.update_success")
            .unwrap(),
        None,
        "no CDS: the cluster is the bootstrap's"
    );
    assert_eq!(stack.shim_streams("edge-1").unwrap(), [service]);
    stack.wait_filter_members(&cluster).unwrap();

    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    for i in 0..30 {
        let report = stack.get_backend(&cluster, &format!("/mesh/{i}")).unwrap();
        assert_eq!(report.host, format!("{NAME}:{port}"));
        *counts.entry(report.backend).or_default() += 1;
    }
    let expected: BTreeMap<String, u32> = addrs.iter().map(|a| (a.to_string(), 10)).collect();
    assert_eq!(counts, expected);
}
