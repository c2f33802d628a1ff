//! The guide for an existing Envoy or mesh (envoy/README.md), checked with
//! `envoy --mode validate`: the variant that keeps its own control plane (no
//! ADS from the shim, dnslb clusters declared with plain EDS) and the Istio
//! EnvoyFilter. The ADS variant is checked in envoy_configs.rs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_yaml::Value;
use support::{
    add_dnslb, mesh_clusters, parse_yaml, parse_yaml_documents, plain_bootstrap, read, seq,
    snippet, str, validate_bootstrap,
};

/// As the snippet is (EDS state of the world) and with `api_type: DELTA_GRPC`.
#[test]
fn mesh_variant_with_plain_eds_clusters_validates() {
    for api_type in ["GRPC", "DELTA_GRPC"] {
        let mut bootstrap = plain_bootstrap(9901, 10000);
        add_dnslb(&mut bootstrap, mesh_clusters(api_type));
        assert!(
            bootstrap["dynamic_resources"].is_null(),
            "the mesh variant keeps its own control plane"
        );
        validate_bootstrap(&format!("the mesh variant, EDS {api_type}"), &bootstrap);
    }
}

/// The EDS snippet's cluster is what the shim would send over ADS: the same
/// LB policy, EDS from dnslb_xds.
#[test]
fn eds_cluster_snippet_fetches_from_the_shim_cluster() {
    let clusters = snippet("eds-cluster.yaml");
    let cluster = &seq(&clusters, "eds-cluster.yaml")[0];
    assert!(str(&cluster["name"], "name").starts_with("dns+"));
    assert_eq!(cluster["type"], "EDS");
    let source = &cluster["eds_cluster_config"]["eds_config"]["api_config_source"];
    assert_eq!(source["api_type"], "GRPC");
    assert_eq!(
        source["grpc_services"][0]["envoy_grpc"]["cluster_name"],
        "dnslb_xds"
    );
    let policy = &cluster["load_balancing_policy"]["policies"][0]["typed_extension_config"];
    assert_eq!(
        policy["name"],
        "envoy.load_balancing_policies.override_host"
    );
    assert_eq!(
        policy["typed_config"]["override_host_sources"][0]["header"],
        "x-dnslb-endpoint"
    );
}

const ISTIO: &str = "envoy/k8s/istio/envoyfilter.yaml";

/// Applies the EnvoyFilter's ADD patches to an empty bootstrap, the way
/// istiod would add them to a sidecar's configuration, and validates it.
#[test]
fn istio_envoyfilter_patches_validate() {
    let documents = parse_yaml_documents(ISTIO, &read(ISTIO));
    let filters: Vec<&Value> = documents
        .iter()
        .filter(|d| d["kind"] == "EnvoyFilter")
        .collect();
    assert_eq!(filters.len(), 1, "{ISTIO} holds one EnvoyFilter");
    let filter = filters[0];
    assert_eq!(filter["apiVersion"], "networking.istio.io/v1alpha3");

    let mut bootstrap = parse_yaml(
        "bootstrap",
        r#"
node: { id: sidecar~10.0.0.1~app.default~default.svc.cluster.local, cluster: app.default }
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: 15000 } }
static_resources: { listeners: [], clusters: [] }
"#,
    );
    let mut clusters = Vec::new();
    for patch in seq(&filter["spec"]["configPatches"], "configPatches") {
        assert_eq!(patch["patch"]["operation"], "ADD");
        assert_eq!(patch["match"]["context"], "SIDECAR_OUTBOUND");
        let value = patch["patch"]["value"].clone();
        let section = match str(&patch["applyTo"], "applyTo") {
            "CLUSTER" => {
                clusters.push(value.clone());
                "clusters"
            }
            "LISTENER" => "listeners",
            other => panic!("{ISTIO}: unexpected applyTo {other}"),
        };
        bootstrap["static_resources"][section]
            .as_sequence_mut()
            .unwrap()
            .push(value);
    }
    // The shim cluster, and at least one upstream that fetches from it.
    let names: Vec<&str> = clusters.iter().map(|c| str(&c["name"], "name")).collect();
    assert!(names.contains(&"dnslb_xds"), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("dns+")), "{names:?}");
    validate_bootstrap("the Istio EnvoyFilter's patches", &bootstrap);
}
