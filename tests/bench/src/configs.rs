//! Envoy bootstraps of the benchmark variants: the native twins written here,
//! the dnslb ones printed by `xds-shim envoy-bootstrap` (the recommended path)
//! and the legacy ones taken from `envoy/filter-routing.yaml` (filter routing).

use std::{net::SocketAddr, path::Path};

use dnslb_tests::{
    envoy::bootstrap::{self, Node, ROUTER},
    error::Result,
    stack::{filter_routing_bootstrap, shim_bootstrap_build, Build, EnvoyPorts},
};

/// Native Envoy load balancing of a STRICT_DNS cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NativePolicy {
    RoundRobin,
    /// Round robin plus `envoy.filters.http.stateful_session` (cookie).
    Cookie,
    /// MAGLEV with a `hash_policy` on header `x-user`.
    Hash,
}

impl NativePolicy {
    /// What [`native_bootstrap`] configures for it, for the report.
    pub fn describe(self) -> String {
        match self {
            Self::RoundRobin => "STRICT_DNS cluster, `ROUND_ROBIN`".into(),
            Self::Cookie => format!(
                "STRICT_DNS cluster, `ROUND_ROBIN`, `envoy.filters.http.stateful_session` \
                 (cookie `{NATIVE_COOKIE}`)"
            ),
            Self::Hash => {
                "STRICT_DNS cluster, `MAGLEV`, route `hash_policy` on header `x-user`".into()
            }
        }
    }
}

/// Cookie of the native stateful_session variant.
pub const NATIVE_COOKIE: &str = "global-session-cookie";

/// The retry policy of the dnslb route for idempotent methods, as
/// `xds-shim envoy-bootstrap` prints it with the default `retries: 2`
/// (`xds-shim/src/bootstrap/routes.rs` `retry_policy`; a unit test checks it against the
/// shim's rendering): the native twins' route gets
/// the same, so both do the same work per request.
pub const RETRY_POLICY: &str = r#"retry_policy:
  retry_on: "connect-failure,refused-stream,reset-before-request,reset,5xx"
  num_retries: 2
  retry_host_predicate:
    - name: envoy.retry_host_predicates.previous_hosts
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate
  host_selection_retry_max_attempts: 5
  retry_priority:
    name: envoy.retry_priorities.previous_priorities
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.retry.priority.previous_priorities.v3.PreviousPrioritiesConfig
      update_frequency: 2
"#;

/// `text` with every line indented by `spaces`.
fn indent(text: &str, spaces: usize) -> String {
    let pad = " ".repeat(spaces);
    text.lines().map(|l| format!("{pad}{l}\n")).collect()
}

/// One STRICT_DNS cluster: name, DNS name, port.
#[derive(Debug, Clone)]
pub struct DnsCluster {
    pub name: String,
    pub host: String,
    pub port: u16,
}

/// A static listener routing everything to the first of `clusters`, each a
/// STRICT_DNS cluster resolved through the c-ares resolver at `dns` every 5 s
/// (TTL ignored, as the shim does).
pub fn native_bootstrap(
    ports: EnvoyPorts,
    dns: SocketAddr,
    clusters: &[DnsCluster],
    policy: NativePolicy,
) -> String {
    let (admin, listener) = (ports.admin, ports.listener);
    let first = clusters.first().map_or("none", |c| c.name.as_str());
    let (lb, hash_policy, session) = match policy {
        NativePolicy::RoundRobin => ("ROUND_ROBIN", String::new(), String::new()),
        NativePolicy::Cookie => (
            "ROUND_ROBIN",
            String::new(),
            format!(
                r#"                  - name: envoy.filters.http.stateful_session
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.stateful_session.v3.StatefulSession
                      session_state:
                        name: envoy.http.stateful_session.cookie
                        typed_config:
                          "@type": type.googleapis.com/envoy.extensions.http.stateful_session.cookie.v3.CookieBasedSessionState
                          cookie: {{ name: {NATIVE_COOKIE}, path: /, ttl: 86400s }}
"#
            ),
        ),
        NativePolicy::Hash => (
            "MAGLEV",
            "                            hash_policy: [ { header: { header_name: x-user } } ]\n"
                .to_string(),
            String::new(),
        ),
    };
    let mut cluster_yaml = String::new();
    for c in clusters {
        cluster_yaml.push_str(&format!(
            r#"    - name: {name}
      type: STRICT_DNS
      connect_timeout: 1s
      lb_policy: {lb}
      dns_lookup_family: V4_ONLY
      respect_dns_ttl: false
      dns_refresh_rate: 5s
      typed_dns_resolver_config:
        name: envoy.network.dns_resolver.cares
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.network.dns_resolver.cares.v3.CaresDnsResolverConfig
          resolvers: [ {{ socket_address: {{ address: {dns_ip}, port_value: {dns_port} }} }} ]
          dns_resolver_options: {{ no_default_search_domain: true }}
      load_assignment:
        cluster_name: {name}
        endpoints:
          - lb_endpoints:
              - endpoint: {{ address: {{ socket_address: {{ address: {host}, port_value: {port} }} }} }}
"#,
            name = c.name,
            host = c.host,
            port = c.port,
            dns_ip = dns.ip(),
            dns_port = dns.port(),
        ));
    }
    format!(
        r#"{head}                          route:
                            cluster: {first}
{retry}{hash_policy}                http_filters:
{session}{ROUTER}  clusters:
{cluster_yaml}"#,
        head = listener_head("native", admin, listener),
        retry = indent(RETRY_POLICY, 28),
    )
}

/// Bootstrap up to the route's action: node `bench-NAME`, admin, one listener on
/// 127.0.0.1 with an HTTP connection manager whose single route matches everything.
fn listener_head(name: &str, admin: u16, listener: u16) -> String {
    let node = Node {
        id: &format!("bench-{name}"),
        cluster: "bench",
    };
    let loopback = |port| SocketAddr::from(([127, 0, 0, 1], port));
    format!(
        "{}                        - match: {{ prefix: / }}\n",
        bootstrap::listener_head(Some(node), name, loopback(admin), loopback(listener), true)
    )
}

/// The ceiling: Envoy answers 200 itself, no upstream.
pub fn direct_response_bootstrap(admin: u16, listener: u16) -> String {
    format!(
        r#"{head}                          direct_response: {{ status: 200, body: {{ inline_string: "ok\n" }} }}
                http_filters:
{ROUTER}"#,
        head = listener_head("direct", admin, listener),
    )
}

/// The recommended path: what `xds-shim envoy-bootstrap` prints for these
/// ports, filter configuration and, when given, the wasm filter; without the
/// absolute-form network filter (no variant sends absolute-form requests).
pub fn recommended_bootstrap(
    ports: EnvoyPorts,
    build: Option<Build>,
    filter_config: &str,
) -> Result<String> {
    shim_bootstrap_build(ports, build, filter_config, false)
}

/// The filter-routing path, where the filter routes and picks:
/// `envoy/filter-routing.yaml` (the snippets' bootstrap, absolute-form network filter
/// included) with these ports, wasm and filter configuration.
pub fn legacy_bootstrap(ports: EnvoyPorts, wasm: &Path, filter_config: &str) -> Result<String> {
    filter_routing_bootstrap(ports, wasm, filter_config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> serde_json::Value {
        let value: serde_yaml::Value = serde_yaml::from_str(text).unwrap();
        serde_json::to_value(value).unwrap()
    }

    fn bootstraps() -> [String; 3] {
        let dns: SocketAddr = "127.0.0.1:5353".parse().unwrap();
        let clusters = [DnsCluster {
            name: "backend".into(),
            host: "backend.test".into(),
            port: 8080,
        }];
        let ports = EnvoyPorts {
            admin: 1,
            listener: 2,
            xds: 0,
        };
        [
            NativePolicy::RoundRobin,
            NativePolicy::Cookie,
            NativePolicy::Hash,
        ]
        .map(|p| native_bootstrap(ports, dns, &clusters, p))
    }

    #[test]
    fn native_bootstrap_names_resolver_and_policy() {
        let [rr, cookie, hash] = bootstraps();
        assert!(rr.contains("port_value: 5353"));
        assert!(rr.contains("cluster: backend"));
        assert!(!rr.contains("stateful_session"));
        assert!(cookie.contains("stateful_session"));
        assert!(hash.contains("MAGLEV") && hash.contains("header_name: x-user"));
    }

    /// Every `retry_policy` anywhere in `value`.
    fn retry_policies<'v>(value: &'v serde_json::Value, out: &mut Vec<&'v serde_json::Value>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, item) in map {
                    if key == "retry_policy" {
                        out.push(item);
                    } else {
                        retry_policies(item, out);
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|i| retry_policies(i, out)),
            _ => {}
        }
    }

    /// The twins' route retries as the dnslb route of `xds-shim envoy-bootstrap` does for
    /// idempotent methods with the default 2 retries: the policy is read from the shim's
    /// own rendering, so the twins cannot drift from it.
    #[test]
    fn native_routes_carry_the_dnslb_retry_policy() {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let request =
            xds_shim::bootstrap::request(addr, addr, addr, None, "{}", false, None).unwrap();
        let shim = yaml(&xds_shim::bootstrap::render(&request));
        let mut policies = Vec::new();
        retry_policies(&shim, &mut policies);
        let idempotent: Vec<_> = policies
            .into_iter()
            .filter(|p| {
                p["retry_on"]
                    .as_str()
                    .is_some_and(|on| on.ends_with(",5xx"))
            })
            .collect();
        assert!(!idempotent.is_empty(), "{shim:#}");
        assert!(idempotent.iter().all(|p| *p == idempotent[0]), "{shim:#}");
        let want = idempotent[0].clone();
        assert_eq!(want["num_retries"], 2);
        for (text, hash) in bootstraps().iter().zip([false, false, true]) {
            let doc = yaml(text);
            let hcm = &doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
                ["typed_config"];
            let route = &hcm["route_config"]["virtual_hosts"][0]["routes"][0]["route"];
            assert_eq!(route["cluster"], "backend", "{text}");
            assert_eq!(route["retry_policy"], want, "{text}");
            assert_eq!(route["hash_policy"].is_array(), hash, "{text}");
            assert_eq!(
                hcm["http_filters"].as_array().map(Vec::len),
                Some(if text.contains("stateful_session") {
                    2
                } else {
                    1
                })
            );
        }
    }

    #[test]
    fn direct_response_is_valid_yaml() {
        let doc = yaml(&direct_response_bootstrap(1, 2));
        assert_eq!(doc["admin"]["address"]["socket_address"]["port_value"], 1);
    }
}
