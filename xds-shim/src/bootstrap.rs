//! `xds-shim envoy-bootstrap`: the recommended Envoy bootstrap, as YAML. Pure: a function of
//! its flags and the dnslb filter configuration (parsed by the filter's own code, so both
//! accept the same JSON).
//!
//! Envoy does the per-request work natively here: the route sends `Host: dns+NAME:PORT` to
//! the cluster of exactly that name (`cluster_header: ":authority"`), rewrites the authority
//! from the picked endpoint's `hostname` (`auto_host_rewrite`), balances with the cluster's
//! own policy (round robin; Maglev over the route's `hash_policy` for hash affinity),
//! retries on another host (`previous_hosts`, then lower SRV levels), answers 400 for
//! malformed names and 404 for unknown upstreams. The dnslb filter is in the chain but off
//! by default; it is enabled only on the routes where it adds what Envoy lacks: the sealed
//! affinity cookie (cookie mode) and its status path. The route never changes with the
//! upstreams, so it is static here rather than served over RDS.
//!
//! The filter is either build: the `.wasm` (`--wasm`, proxy-wasm in V8) or the native
//! dynamic module (`--module`, a `.so` loaded by file path). Both take the same JSON and are
//! turned off per route the same way. The module follows EDS with its own client thread,
//! so its JSON gets `xds_address` (the `--xds` address) besides `routing: envoy`, and
//! with `--xds-ca` the same TLS in `xds_tls`.
//!
//! With `--xds-ca` Envoy reaches the shim over TLS (ALPN `h2`, which tonic's server
//! offers) and checks its certificate against that CA and a name: the `--xds` IP as an IP
//! SAN, or `--xds-sni NAME` as a DNS SAN (also sent as SNI). Envoy checks no name at all
//! unless told to, and the chain alone would accept any certificate the CA ever signed.

use std::net::SocketAddr;

use dnslb_filter::config::{Affinity, Config as FilterConfig};
use serde_json::{json, Value};

use crate::xds::ads::node;
use crate::xds::resources::XDS_CLUSTER;
use routes::route_config;

/// The filter's name in the HTTP filter chain and in `typed_per_filter_config`.
const FILTER_NAME: &str = "dnslb";
/// Headers a client may not send: the filter's own (`x-dnslb-endpoint` names a member).
const CLIENT_HEADER_PREFIX: &str = "x-dnslb-";
/// What `envoy-bootstrap` was asked for.
#[derive(Debug, Clone)]
pub struct Request {
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub xds: SocketAddr,
    /// The dnslb filter's build; without one the bootstrap has no dnslb filter (round
    /// robin and hash affinity need none).
    pub build: Option<FilterBuild>,
    /// The filter configuration JSON, as given (`{}` by default).
    pub filter_json: String,
    pub filter: FilterConfig,
    /// Adds the network filter that turns HTTP-proxy (absolute-form) requests into
    /// origin form before Envoy's HTTP codec.
    pub absolute_form: bool,
    /// `None`: the `dnslb_xds` cluster speaks plaintext HTTP/2.
    pub xds_tls: Option<XdsTlsClient>,
}

/// How Envoy reaches the shim over TLS; paths as Envoy sees them (not opened here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdsTlsClient {
    /// Roots the shim's certificate is verified against.
    pub ca: String,
    /// Sent as SNI and required as a DNS SAN; `None`: the `--xds` IP is required as an IP
    /// SAN.
    pub sni: Option<String>,
    /// Certificate chain and key Envoy presents, for a shim that requires one.
    pub client_cert: Option<ClientCert>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    pub cert: String,
    pub key: String,
}

/// Which build of the dnslb filter Envoy loads, by file path as Envoy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterBuild {
    /// The proxy-wasm filter (`dnslb_filter.wasm`).
    Wasm(String),
    /// The dynamic module (`libdnslb_module.so`), built for this Envoy's ABI.
    Module(String),
}

impl FilterBuild {
    /// `--wasm` or `--module` (clap keeps them exclusive).
    pub fn from_flags(wasm: Option<String>, module: Option<String>) -> Option<Self> {
        wasm.map(Self::Wasm).or(module.map(Self::Module))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BootstrapError {
    #[error("--filter-config {json:?}: {why}")]
    FilterConfig { json: String, why: String },
    #[error("{0} needs --wasm FILE or --module FILE: the dnslb filter provides it")]
    NeedsFilter(&'static str),
    #[error("--absolute-form needs --wasm FILE: its network filter exists only as wasm")]
    AbsoluteFormNeedsWasm,
}

/// Checks the request: the filter JSON must be valid, and what only the filter can do needs
/// the filter.
pub fn request(
    listen: SocketAddr,
    admin: SocketAddr,
    xds: SocketAddr,
    build: Option<FilterBuild>,
    filter_json: &str,
    absolute_form: bool,
    xds_tls: Option<XdsTlsClient>,
) -> Result<Request, BootstrapError> {
    let filter = FilterConfig::from_bytes(Some(filter_json.as_bytes())).map_err(|e| {
        BootstrapError::FilterConfig {
            json: filter_json.to_string(),
            why: e.to_string(),
        }
    })?;
    match &build {
        None if matches!(filter.affinity, Affinity::Cookie(_)) => {
            return Err(BootstrapError::NeedsFilter("cookie affinity"));
        }
        Some(FilterBuild::Wasm(_)) => {}
        _ if absolute_form => return Err(BootstrapError::AbsoluteFormNeedsWasm),
        _ => {}
    }
    Ok(Request {
        listen,
        admin,
        xds,
        build,
        filter_json: filter_json.to_string(),
        filter,
        absolute_form,
        xds_tls,
    })
}

/// The bootstrap as YAML, with a header comment saying how it was made.
pub fn render(request: &Request) -> String {
    let yaml = serde_norway::to_string(&bootstrap(request))
        .unwrap_or_else(|e| format!("# cannot render: {e}\n"));
    let mut out = String::from(
        "# Envoy bootstrap for dnslb, printed by `xds-shim envoy-bootstrap`.\n\
         # Clusters (one per dns+/srv+ upstream) and endpoints come from xds-shim over ADS.\n",
    );
    if matches!(request.filter.affinity, Affinity::Hash(_)) {
        out.push_str(
            "# Hash affinity: give the upstreams `lb_policy: maglev` (or ring_hash) in the\n\
             # shim's --config, or Envoy balances them round robin and ignores the hash.\n",
        );
    }
    out.push_str(&yaml);
    out
}

fn bootstrap(request: &Request) -> Value {
    let mut network_filters = Vec::new();
    if let (true, Some(FilterBuild::Wasm(wasm))) = (request.absolute_form, &request.build) {
        network_filters.push(json!({
            "name": "dnslb_absolute_form",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm",
                "config": {
                    "name": "dnslb_absolute_form",
                    "root_id": "dnslb_absolute_form",
                    "vm_config": vm_config(wasm),
                }
            }
        }));
    }
    network_filters.push(connection_manager(request));
    let mut bootstrap = json!({
        "node": {
            "id": "dnslb",
            "cluster": "dnslb",
            "metadata": { node::METADATA_KEY: { node::BALANCING_FIELD: balancing(request) } },
        },
        "admin": { "address": socket_address(request.admin) },
        "dynamic_resources": {
            "ads_config": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{ "envoy_grpc": { "cluster_name": XDS_CLUSTER } }],
            },
            "cds_config": { "ads": {}, "resource_api_version": "V3" },
        },
        "static_resources": {
            "listeners": [{
                "name": "dnslb",
                "address": socket_address(request.listen),
                "filter_chains": [{ "filters": network_filters }],
            }],
            "clusters": [xds_cluster(request.xds, request.xds_tls.as_ref())],
        },
    });
    if matches!(request.build, Some(FilterBuild::Wasm(_))) {
        // The wasm filter's per-upstream gauge carries its upstream as a label, as Envoy's
        // cluster stats do (the clusters' dot-free alt_stat_name needs no tag of its own).
        bootstrap["stats_config"] = json!({
            "stats_tags": [{
                "tag_name": "envoy.cluster_name",
                "regex": dnslb_filter::stats::UPSTREAM_TAG_REGEX,
            }],
        });
    }
    bootstrap
}

/// The wasm filter's cookie routes name the session's member in `x-dnslb-endpoint`, which
/// only the `override_host` policy reads; without them the shim serves clusters balanced by
/// their own policy alone, which costs Envoy less per request. The dynamic module needs no
/// header: it hands the member to Envoy's own override (`set_upstream_override_host`),
/// which every cluster honours, draining members included (`override_host_status`).
fn balancing(request: &Request) -> &'static str {
    let wasm = matches!(request.build, Some(FilterBuild::Wasm(_)));
    if wasm && matches!(request.filter.affinity, Affinity::Cookie(_)) {
        "endpoint_header"
    } else {
        node::NATIVE
    }
}

fn connection_manager(request: &Request) -> Value {
    let mut http_filters = Vec::new();
    // Every route that needs nothing of it turns it off, so those requests never enter the
    // filter. (Envoy cannot enable a filter per route without a per-route config, which the
    // filter has none of, so it is on in the chain and off per route.)
    if let Some(FilterBuild::Module(module)) = &request.build {
        let mut json = filter_configuration(&request.filter_json);
        json["xds_address"] = json!(request.xds.to_string());
        if let Some(tls) = &request.xds_tls {
            json["xds_tls"] = module_xds_tls(tls);
        }
        http_filters.push(json!({
            "name": FILTER_NAME,
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter",
                "dynamic_module_config": { "module": { "local": { "filename": module } } },
                "filter_name": FILTER_NAME,
                "filter_config": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": json.to_string(),
                },
            },
        }));
    }
    if let Some(FilterBuild::Wasm(wasm)) = &request.build {
        http_filters.push(json!({
            "name": FILTER_NAME,
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                "config": {
                    "name": FILTER_NAME,
                    "root_id": FILTER_NAME,
                    "vm_config": vm_config(wasm),
                    "configuration": {
                        "@type": "type.googleapis.com/google.protobuf.StringValue",
                        "value": filter_configuration(&request.filter_json).to_string(),
                    },
                },
            },
        }));
    }
    http_filters.push(json!({
        "name": "envoy.filters.http.router",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
        },
    }));
    json!({
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "dnslb",
            // Before routing: a client cannot name the member it wants.
            "early_header_mutation_extensions": [{
                "name": "dnslb_strip_client_headers",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.http.early_header_mutation.header_mutation.v3.HeaderMutation",
                    "mutations": [{
                        "remove_on_match": {
                            "key_matcher": { "prefix": CLIENT_HEADER_PREFIX },
                        },
                    }],
                },
            }],
            "route_config": route_config(request),
            "http_filters": http_filters,
        },
    })
}

/// The filter's JSON with `routing: envoy`: Envoy routes, the filter only adds its part.
fn filter_configuration(json: &str) -> Value {
    let mut value: Value = serde_json::from_str(json).unwrap_or_else(|_| json!({}));
    if let Some(object) = value.as_object_mut() {
        object.insert("routing".into(), json!("envoy"));
    }
    value
}

fn vm_config(wasm: &str) -> Value {
    json!({
        "vm_id": "dnslb",
        "runtime": "envoy.wasm.runtime.v8",
        "code": { "local": { "filename": wasm } },
    })
}

fn xds_cluster(xds: SocketAddr, tls: Option<&XdsTlsClient>) -> Value {
    let mut cluster = json!({
        "name": XDS_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": { "http2_protocol_options": {} },
            },
        },
        "load_assignment": {
            "cluster_name": XDS_CLUSTER,
            "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": socket_address(xds) } }] }],
        },
    });
    if let Some(tls) = tls {
        cluster["transport_socket"] = xds_transport_socket(xds, tls);
    }
    cluster
}

/// The same TLS for the module's own xDS client (its filter configuration's `xds_tls`).
fn module_xds_tls(tls: &XdsTlsClient) -> Value {
    let mut json = json!({ "ca_file": tls.ca });
    if let Some(name) = &tls.sni {
        json["server_name"] = json!(name);
    }
    if let Some(client) = &tls.client_cert {
        json["cert_file"] = json!(client.cert);
        json["key_file"] = json!(client.key);
    }
    json
}

/// TLS to the shim: its certificate verified against the CA and a name, ALPN `h2` (gRPC
/// servers may refuse a TLS connection that does not offer it), and Envoy's own
/// certificate when given.
fn xds_transport_socket(xds: SocketAddr, tls: &XdsTlsClient) -> Value {
    let san = match &tls.sni {
        Some(name) => json!({ "san_type": "DNS", "matcher": { "exact": name } }),
        None => json!({ "san_type": "IP_ADDRESS", "matcher": { "exact": xds.ip().to_string() } }),
    };
    let mut common = json!({
        "alpn_protocols": ["h2"],
        "validation_context": {
            "trusted_ca": { "filename": tls.ca },
            "match_typed_subject_alt_names": [san],
        },
    });
    if let Some(client) = &tls.client_cert {
        common["tls_certificates"] = json!([{
            "certificate_chain": { "filename": client.cert },
            "private_key": { "filename": client.key },
        }]);
    }
    let mut context = json!({
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        "common_tls_context": common,
    });
    if let Some(name) = &tls.sni {
        context["sni"] = json!(name);
    }
    json!({ "name": "envoy.transport_sockets.tls", "typed_config": context })
}

fn socket_address(addr: SocketAddr) -> Value {
    json!({ "socket_address": { "address": addr.ip().to_string(), "port_value": addr.port() } })
}

mod routes;
#[cfg(test)]
mod tests;
