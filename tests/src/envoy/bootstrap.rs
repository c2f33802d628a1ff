//! The hand-written Envoy bootstraps of the tests and the bench start the same way: an
//! admin address and one HTTP listener whose connection manager has one virtual host for
//! every domain. [`listener_head`] writes that much; callers add the routes, the HTTP
//! filters and the clusters at the indentation it documents.

use std::net::SocketAddr;

/// Who the bootstrap says it is (`node`); ADS needs one, meshes set one anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node<'a> {
    pub id: &'a str,
    pub cluster: &'a str,
}

/// The bootstrap up to the virtual host's `routes:` key. Route list items go at 24
/// spaces (`- match: ...`, their other keys at 26), `http_filters:` at 16 with items at
/// 18 ([`ROUTER`]), and `  clusters:` at 2. `validate_clusters: false` lets routes name
/// clusters that only arrive later over xDS.
pub fn listener_head(
    node: Option<Node<'_>>,
    name: &str,
    admin: SocketAddr,
    listener: SocketAddr,
    validate_clusters: bool,
) -> String {
    let node = node.map_or(String::new(), |n| {
        format!("node: {{ id: {}, cluster: {} }}\n", n.id, n.cluster)
    });
    let validate = if validate_clusters {
        ""
    } else {
        "                  validate_clusters: false\n"
    };
    format!(
        r#"{node}admin:
  address: {{ socket_address: {{ address: "{admin_ip}", port_value: {admin_port} }} }}
static_resources:
  listeners:
    - name: {name}
      address: {{ socket_address: {{ address: "{listener_ip}", port_value: {listener_port} }} }}
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: {name}
                route_config:
                  name: {name}
{validate}                  virtual_hosts:
                    - name: {name}
                      domains: ["*"]
                      routes:
"#,
        admin_ip = admin.ip(),
        admin_port = admin.port(),
        listener_ip = listener.ip(),
        listener_port = listener.port(),
    )
}

/// The router, as the last item of `http_filters` after [`listener_head`].
pub const ROUTER: &str = r#"                  - name: envoy.filters.http.router
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_with_routes_and_router_is_one_listener() {
        let admin: SocketAddr = "127.0.0.1:9901".parse().unwrap();
        let listener: SocketAddr = "127.0.0.1:10000".parse().unwrap();
        let node = Node {
            id: "edge-1",
            cluster: "edge",
        };
        let yaml = format!(
            "{}                        - match: {{ prefix: / }}\n                          direct_response: {{ status: 404 }}\n                http_filters:\n{ROUTER}",
            listener_head(Some(node), "main", admin, listener, false)
        );
        let doc: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(doc["node"]["id"].as_str(), Some("edge-1"));
        let first = &doc["static_resources"]["listeners"][0];
        assert_eq!(
            first["address"]["socket_address"]["port_value"].as_u64(),
            Some(10000)
        );
        let hcm = &first["filter_chains"][0]["filters"][0]["typed_config"];
        assert_eq!(
            hcm["route_config"]["validate_clusters"].as_bool(),
            Some(false)
        );
        let route = &hcm["route_config"]["virtual_hosts"][0]["routes"][0];
        assert_eq!(route["direct_response"]["status"].as_u64(), Some(404));
        assert_eq!(
            hcm["http_filters"][0]["name"].as_str(),
            Some("envoy.filters.http.router")
        );
        assert!(!listener_head(None, "main", admin, listener, true).contains("node:"));
    }
}
