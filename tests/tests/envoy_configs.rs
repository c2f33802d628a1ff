//! Every Envoy configuration in `envoy/` passes `envoy --mode validate`
//! (which loads the filter and runs its `on_configure`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;

use dnslb_tests::{
    stack::{demo_bootstrap, filter_wasm, EnvoyPorts},
    workspace_root, Envoy, TempDir,
};
use serde_yaml::Value;

fn validate(name: &str, yaml: &str) {
    let dir = TempDir::new("validate").unwrap();
    let path = dir.path().join(name);
    fs::write(&path, yaml).unwrap();
    if let Err(e) = Envoy::validate(&path) {
        panic!("{name} does not validate: {e}");
    }
}

#[test]
fn demo_bootstrap_validates() {
    let ports = EnvoyPorts {
        admin: 9901,
        listener: 10000,
        xds: 18000,
    };
    validate(
        "demo.yaml",
        &demo_bootstrap(ports, &filter_wasm(), "{}").unwrap(),
    );
}

fn snippet(name: &str) -> Value {
    let path = workspace_root().join("envoy").join("snippets").join(name);
    let text = fs::read_to_string(&path).unwrap();
    let text = text.replace(
        "/etc/envoy/dnslb_filter.wasm",
        &filter_wasm().display().to_string(),
    );
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn list(value: Value) -> Vec<Value> {
    match value {
        Value::Sequence(items) => items,
        other => panic!("snippet is not a list: {other:?}"),
    }
}

/// The snippets for an existing Envoy, dropped into a minimal bootstrap the
/// way envoy/README explains, make a valid configuration.
#[test]
fn snippets_for_an_existing_envoy_validate() {
    // ADS needs node.id and node.cluster; existing bootstraps usually have them.
    let skeleton = r#"
node: { id: edge-1, cluster: edge }
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: 9901 } }
static_resources:
  listeners:
    - name: main
      address: { socket_address: { address: 127.0.0.1, port_value: 10000 } }
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: main
                route_config:
                  name: main
                  validate_clusters: false
                  virtual_hosts:
                    - name: all
                      domains: ["*"]
                      routes:
                        - match: { prefix: / }
                          direct_response: { status: 404 }
                http_filters:
                  - name: envoy.filters.http.router
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters: []
"#;
    let mut bootstrap: Value = serde_yaml::from_str(skeleton).unwrap();
    let network_filters = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]
        ["filters"]
        .as_sequence_mut()
        .unwrap();
    for (i, filter) in list(snippet("absolute-form-filter.yaml"))
        .into_iter()
        .enumerate()
    {
        network_filters.insert(i, filter);
    }
    let hcm = network_filters
        .iter_mut()
        .find(|f| f["name"] == "envoy.filters.network.http_connection_manager")
        .map(|f| &mut f["typed_config"])
        .unwrap();
    // The dnslb route goes before the catch-all, the filter before the router.
    let routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
        .as_sequence_mut()
        .unwrap();
    for (i, route) in list(snippet("route.yaml")).into_iter().enumerate() {
        routes.insert(i, route);
    }
    let filters = hcm["http_filters"].as_sequence_mut().unwrap();
    for (i, filter) in list(snippet("http-filter.yaml")).into_iter().enumerate() {
        filters.insert(i, filter);
    }
    let clusters = bootstrap["static_resources"]["clusters"]
        .as_sequence_mut()
        .unwrap();
    clusters.extend(list(snippet("xds-cluster.yaml")));
    let Value::Mapping(top) = &mut bootstrap else {
        panic!("bootstrap is not a mapping");
    };
    top.insert(
        Value::String("dynamic_resources".into()),
        snippet("dynamic-resources.yaml"),
    );
    validate("snippets.yaml", &serde_yaml::to_string(&bootstrap).unwrap());
}
