//! The recommended bootstrap's static route configuration: the `dns+*`/`srv+*` virtual
//! host (malformed names 400, unknown upstreams 404), the upstream routes with their
//! retry and hash policies, aliases and the status path, and the filter turned off on
//! every route that needs nothing of it.

use dnslb_filter::config::{Affinity, HashKey};
use serde_json::{json, Value};

use super::{Request, FILTER_NAME};

/// Failures where the backend never saw the request: safe to retry for every method.
const RETRY_ON_ANY: &str = "connect-failure,refused-stream,reset-before-request";
/// Idempotent methods also retry after the backend saw the request.
const RETRY_ON_IDEMPOTENT: &str = "connect-failure,refused-stream,reset-before-request,reset,5xx";
const IDEMPOTENT_METHODS: &str = "GET|HEAD|OPTIONS|TRACE|PUT|DELETE";
/// One DNS label (lowercase; `_` for SRV names). Lengths are not checked here (a bounded
/// repeat would blow up Envoy's RE2 program-size limit): a name too long for DNS cannot
/// be a cluster, so it gets Envoy's 404.
const LABEL: &str = "[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?";
/// 1-99999; above 65535 likewise ends as an unknown cluster.
const PORT: &str = "[1-9][0-9]{0,4}";

pub(super) fn route_config(request: &Request) -> Value {
    let config = &request.filter;
    let mut virtual_hosts = Vec::new();
    let mut aliases: Vec<_> = config.aliases.iter().collect();
    aliases.sort();
    for (authority, cluster) in aliases {
        let mut routes = status_route(request);
        routes.extend(upstream_routes(
            request,
            json!({ "cluster": cluster }),
            None,
        ));
        virtual_hosts.push(json!({
            "name": format!("alias {authority}"),
            "domains": [authority],
            "routes": routes,
        }));
    }
    let valid = format!(r"(dns\+{LABEL}(\.{LABEL})*:{PORT}|srv\+{LABEL}(\.{LABEL})*)");
    let mut routes = status_route(request);
    routes.extend(upstream_routes(
        request,
        json!({
            "cluster_header": ":authority",
            "cluster_not_found_response_code": "NOT_FOUND",
            "auto_host_rewrite": true,
        }),
        Some(&valid),
    ));
    let mut malformed = json!({
        "match": { "prefix": "/" },
        "direct_response": {
            "status": 400,
            "body": { "inline_string": "dnslb: malformed upstream in Host: expected lowercase dns+NAME:PORT or srv+NAME\n" },
        },
    });
    without_filter(request, &mut malformed);
    routes.push(malformed);
    virtual_hosts.push(json!({
        "name": "dnslb",
        // Envoy's `dns+*` wants at least one character after the `+`: a bare `dns+` is
        // malformed too (400), not some other authority (404).
        "domains": ["dns+*", "srv+*", "dns+", "srv+"],
        "routes": routes,
    }));
    let mut other = status_route(request);
    let mut not_ours = json!({
        "match": { "prefix": "/" },
        "direct_response": {
            "status": 404,
            "body": { "inline_string": "dnslb: not a dns+ or srv+ authority\n" },
        },
    });
    without_filter(request, &mut not_ours);
    other.push(not_ours);
    virtual_hosts.push(json!({ "name": "other", "domains": ["*"], "routes": other }));
    json!({
        "name": "dnslb",
        // The dnslb clusters arrive by CDS after the routes load.
        "validate_clusters": false,
        "virtual_hosts": virtual_hosts,
    })
}

/// The filter answers its status path itself, before the route's direct response.
fn status_route(request: &Request) -> Vec<Value> {
    if request.build.is_none() {
        return Vec::new();
    }
    vec![json!({
        "match": { "path": request.filter.status_path },
        "direct_response": { "status": 404 },
    })]
}

/// Two routes to the upstream: idempotent methods retry on more failures than others.
fn upstream_routes(request: &Request, action: Value, authority: Option<&str>) -> Vec<Value> {
    let config = &request.filter;
    let authority_match = authority.map(|regex| {
        json!({ "name": ":authority", "string_match": { "safe_regex": { "regex": regex } } })
    });
    let cookie = matches!(config.affinity, Affinity::Cookie(_)) && request.build.is_some();
    [
        (Some(IDEMPOTENT_METHODS), RETRY_ON_IDEMPOTENT),
        (None, RETRY_ON_ANY),
    ]
    .into_iter()
    .map(|(methods, retry_on)| {
        let mut headers: Vec<Value> = authority_match.iter().cloned().collect();
        if let Some(methods) = methods {
            headers.push(json!({
                "name": ":method",
                "string_match": { "safe_regex": { "regex": methods } },
            }));
        }
        let mut action = action.clone();
        if let Some(object) = action.as_object_mut() {
            object.insert(
                "retry_policy".into(),
                retry_policy(config.retries, retry_on),
            );
            if let Affinity::Hash(key) = &config.affinity {
                object.insert("hash_policy".into(), json!([hash_policy(key)]));
            }
        }
        let mut route = json!({
            "match": { "prefix": "/", "headers": headers },
            "route": action,
        });
        if !cookie {
            without_filter(request, &mut route);
        }
        route
    })
    .collect()
}

fn retry_policy(retries: u32, retry_on: &str) -> Value {
    json!({
        "retry_on": retry_on,
        "num_retries": retries,
        // Each retry on a member not tried yet, then on the next SRV priority level.
        "retry_host_predicate": [{
            "name": "envoy.retry_host_predicates.previous_hosts",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate",
            },
        }],
        "host_selection_retry_max_attempts": 5,
        "retry_priority": {
            "name": "envoy.retry_priorities.previous_priorities",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.retry.priority.previous_priorities.v3.PreviousPrioritiesConfig",
                "update_frequency": 2,
            },
        },
    })
}

fn hash_policy(key: &HashKey) -> Value {
    match key {
        HashKey::SourceIp => json!({ "connection_properties": { "source_ip": true } }),
        HashKey::Header(name) => json!({ "header": { "header_name": name } }),
    }
}

/// Turns the dnslb filter off on `route` (when the bootstrap has it at all).
fn without_filter(request: &Request, route: &mut Value) {
    if request.build.is_some() {
        route["typed_per_filter_config"] = json!({
            FILTER_NAME: {
                "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
                "disabled": true,
            },
        });
    }
}
