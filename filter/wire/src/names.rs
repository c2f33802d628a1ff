//! Names both sides of a wire use: the filter and the module on one side,
//! xds-shim's resources and bootstrap on the other.

/// The Envoy cluster through which the filter reaches the xDS server.
pub const XDS_CLUSTER: &str = "dnslb_xds";
/// The header that names the cluster in the legacy filter routing.
pub const CLUSTER_HEADER: &str = "x-dnslb-cluster";
/// The header that names the endpoint for the cluster's `override_host` policy.
pub const ENDPOINT_HEADER: &str = "x-dnslb-endpoint";
/// Request headers under this prefix are dnslb's own; a client's are dropped.
pub const HEADER_PREFIX: &str = "x-dnslb-";

/// The stat name of the cluster `cluster` (an upstream spec without scheme): `.` becomes
/// `~` and `:` becomes `_`, e.g. `dns+backend.test:8080` → `dns+backend~test_8080`,
/// `srv+_http._tcp.api.test` → `srv+_http~_tcp~api~test`.
///
/// Envoy splits stat names on `.` (its default tag extraction would take `dns+backend` as
/// the cluster and fold `test_8080` into the metric name) and turns `:` into `_`. A spec
/// never holds `~`, and a `dns+` spec always ends in `:PORT`, so the last `_` of a `dns+`
/// stat name is the port's: the mapping is one-to-one.
pub fn stat_name(cluster: &str) -> String {
    cluster
        .chars()
        .map(|c| match c {
            '.' => '~',
            ':' => '_',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    // The same tests run natively and, under Node, compiled to wasm32.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn stat_names_keep_every_spec_apart() {
        assert_eq!(stat_name("dns+backend.test:8080"), "dns+backend~test_8080");
        assert_eq!(
            stat_name("srv+_http._tcp.api.test"),
            "srv+_http~_tcp~api~test"
        );
        let specs = [
            "dns+a-b.test:80",
            "dns+a.b.test:80",
            "dns+a_b.test:80",
            "dns+a.b-test:80",
            "dns+a_80:80",
            "dns+a:8080",
            "srv+_a._tcp.b",
            "srv+_a_._tcp.b",
            "srv+_a._tcp_.b",
        ];
        let names: std::collections::HashSet<_> = specs.iter().map(|s| stat_name(s)).collect();
        assert_eq!(names.len(), specs.len());
        for name in &names {
            assert!(!name.contains(['.', ':']), "{name}");
        }
    }
}
