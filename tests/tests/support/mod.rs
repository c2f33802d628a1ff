//! Helpers shared by the tests that check the adoption material statically
//! (compose, Kubernetes, mesh snippets) and the end-to-end tests that run it:
//! YAML loading, bootstrap composition and Envoy validation.
// Each test file uses its own subset.
#![allow(dead_code)]

pub mod k8s;

use std::{fs, net::SocketAddr, path::Path};

use dnslb_tests::{
    envoy::bootstrap::{listener_head, Node, ROUTER},
    stack::{filter_routing_bootstrap, filter_wasm, EnvoyPorts},
    workspace_root, Envoy, TempDir,
};
use serde::Deserialize;
use serde_yaml::Value;

/// A file under the workspace root, read as text.
pub fn read(relative: &str) -> String {
    let path = workspace_root().join(relative);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// One YAML document, with `<<` merge keys applied (compose files use them).
pub fn parse_yaml(what: &str, text: &str) -> Value {
    let mut value: Value =
        serde_yaml::from_str(text).unwrap_or_else(|e| panic!("{what} is not YAML: {e}"));
    value
        .apply_merge()
        .unwrap_or_else(|e| panic!("{what}: merge keys: {e}"));
    value
}

/// Every document of a multi-document YAML file (Kubernetes manifests).
pub fn parse_yaml_documents(what: &str, text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|document| {
            let mut value = Value::deserialize(document)
                .unwrap_or_else(|e| panic!("{what} has a document that is not YAML: {e}"));
            value.apply_merge().unwrap();
            value
        })
        .filter(|value| !value.is_null())
        .collect()
}

/// The list at `value`, or a failure naming `what`.
pub fn seq<'a>(value: &'a Value, what: &str) -> &'a Vec<Value> {
    value
        .as_sequence()
        .unwrap_or_else(|| panic!("{what} is not a list: {value:?}"))
}

/// The string at `value`, or a failure naming `what`.
pub fn str<'a>(value: &'a Value, what: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {value:?}"))
}

/// Points every `filename: .../dnslb_filter.wasm` at the filter `just build`
/// made, so `envoy --mode validate` loads the real filter. Returns how many
/// it replaced.
pub fn use_built_filter(value: &mut Value) -> usize {
    match value {
        Value::Mapping(map) => {
            let mut count = 0;
            for (key, child) in map.iter_mut() {
                if key.as_str() == Some("filename")
                    && child
                        .as_str()
                        .is_some_and(|s| s.ends_with("/dnslb_filter.wasm"))
                {
                    *child = Value::String(filter_wasm().display().to_string());
                    count += 1;
                } else {
                    count += use_built_filter(child);
                }
            }
            count
        }
        Value::Sequence(items) => items.iter_mut().map(use_built_filter).sum(),
        Value::Tagged(tagged) => use_built_filter(&mut tagged.value),
        _ => 0,
    }
}

/// Runs `envoy --mode validate` on `bootstrap` with the built filter; fails
/// with Envoy's output. The bootstrap must load the filter at least once.
pub fn validate_bootstrap(what: &str, bootstrap: &Value) {
    let mut bootstrap = bootstrap.clone();
    assert!(
        use_built_filter(&mut bootstrap) > 0,
        "{what} does not load dnslb_filter.wasm"
    );
    let dir = TempDir::new("validate").unwrap();
    let path = dir.path().join("envoy.yaml");
    fs::write(&path, serde_yaml::to_string(&bootstrap).unwrap()).unwrap();
    if let Err(e) = Envoy::validate(&path) {
        panic!("{what} does not validate: {e}");
    }
}

/// `path` relative to `base` exists.
pub fn assert_exists(base: &Path, path: &str, what: &str) {
    let full = base.join(path);
    assert!(
        full.exists(),
        "{what} refers to {path}, but {} does not exist",
        full.display()
    );
}

/// `envoy/snippets/NAME`, parsed.
pub fn snippet(name: &str) -> Value {
    let relative = format!("envoy/snippets/{name}");
    parse_yaml(&relative, &read(&relative))
}

/// A bootstrap like an existing Envoy's before dnslb: one HTTP listener on
/// 127.0.0.1 whose only route answers 404, and no clusters. `node` is set:
/// ADS needs it, and meshes set it anyway.
pub fn plain_bootstrap(admin_port: u16, listener_port: u16) -> Value {
    let node = Node {
        id: "edge-1",
        cluster: "edge",
    };
    let head = listener_head(
        Some(node),
        "main",
        SocketAddr::from(([127, 0, 0, 1], admin_port)),
        SocketAddr::from(([127, 0, 0, 1], listener_port)),
        false,
    );
    parse_yaml(
        "plain bootstrap",
        &format!(
            "{head}                        - match: {{ prefix: / }}
                          direct_response: {{ status: 404 }}
                http_filters:
{ROUTER}  clusters: []
"
        ),
    )
}

/// Adds the dnslb pieces the way envoy/README.md tells: the absolute-form
/// network filter before the connection manager, the HTTP filter before the
/// router, the route before the catch-all, and `clusters` (the snippets'
/// `xds-cluster.yaml`, plus `eds-cluster.yaml` ones for the mesh variant).
pub fn add_dnslb(bootstrap: &mut Value, clusters: Vec<Value>) {
    let network_filters = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]
        ["filters"]
        .as_sequence_mut()
        .unwrap();
    for (i, filter) in seq(
        &snippet("absolute-form-filter.yaml"),
        "absolute-form-filter.yaml",
    )
    .iter()
    .enumerate()
    {
        network_filters.insert(i, filter.clone());
    }
    let hcm = network_filters
        .iter_mut()
        .find(|f| f["name"] == "envoy.filters.network.http_connection_manager")
        .map(|f| &mut f["typed_config"])
        .unwrap();
    let routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
        .as_sequence_mut()
        .unwrap();
    for (i, route) in seq(&snippet("route.yaml"), "route.yaml").iter().enumerate() {
        routes.insert(i, route.clone());
    }
    let filters = hcm["http_filters"].as_sequence_mut().unwrap();
    for (i, filter) in seq(&snippet("http-filter.yaml"), "http-filter.yaml")
        .iter()
        .enumerate()
    {
        filters.insert(i, filter.clone());
    }
    bootstrap["static_resources"]["clusters"]
        .as_sequence_mut()
        .unwrap()
        .extend(clusters);
}

/// Sets the address of the `socket_address` of cluster `name`'s only endpoint.
pub fn point_cluster_at(bootstrap: &mut Value, name: &str, address: &str, port: u16) {
    let cluster = bootstrap["static_resources"]["clusters"]
        .as_sequence_mut()
        .unwrap()
        .iter_mut()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no cluster {name}"));
    let socket = &mut cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
        ["address"]["socket_address"];
    socket["address"] = Value::String(address.to_owned());
    socket["port_value"] = Value::Number(port.into());
}

/// The demo bootstrap as the stack runs it ([`filter_routing_bootstrap`]) with `dynamic` as its
/// `dynamic_resources`: the demo taking its clusters from the shim another way.
pub fn demo_with_dynamic_resources(
    ports: EnvoyPorts,
    wasm: &Path,
    filter_config: &str,
    dynamic: Value,
) -> dnslb_tests::Result<String> {
    let demo = filter_routing_bootstrap(ports, wasm, filter_config)?;
    let mut bootstrap = parse_yaml("the demo bootstrap", &demo);
    bootstrap["dynamic_resources"] = dynamic;
    Ok(serde_yaml::to_string(&bootstrap).unwrap())
}

/// `dynamic-resources-cds.yaml` with its cluster stream switched to Delta.
pub fn delta_cds_dynamic_resources() -> Value {
    let mut dynamic = snippet("dynamic-resources-cds.yaml");
    let api_type = &mut dynamic["cds_config"]["api_config_source"]["api_type"];
    assert_eq!(api_type, "GRPC");
    *api_type = Value::String("DELTA_GRPC".into());
    dynamic
}

/// The mesh variant's clusters (envoy/README.md, B): `xds-cluster.yaml` and
/// `eds-cluster.yaml`, the latter's EDS of `api_type` (the snippet says
/// `GRPC`; `DELTA_GRPC` works as well).
pub fn mesh_clusters(api_type: &str) -> Vec<Value> {
    let mut eds = seq(&snippet("eds-cluster.yaml"), "eds-cluster.yaml").clone();
    assert_eq!(eds.len(), 1);
    eds[0]["eds_cluster_config"]["eds_config"]["api_config_source"]["api_type"] =
        Value::String(api_type.to_owned());
    [
        seq(&snippet("xds-cluster.yaml"), "xds-cluster.yaml").clone(),
        eds,
    ]
    .concat()
}
