use super::*;
use crate::model::member::Member;
use crate::model::settings::{TlsSettings, UpstreamSettings};
use crate::model::upstream::Upstream;
use dnslb_tests::xds::endpoint_address;

/// The ADS cluster `dns+b.test:80` with `settings`, reading the endpoint header.
fn ads_cluster(settings: &UpstreamSettings) -> Cluster {
    cluster(
        "dns+b.test:80",
        EdsSource::Ads,
        Balancing::EndpointHeader,
        settings,
        None,
    )
}

/// `name`'s cluster with default settings and no TLS.
fn plain_cluster(name: &str, source: EdsSource, balancing: Balancing) -> Cluster {
    cluster(name, source, balancing, &UpstreamSettings::default(), None)
}

use prost::Message;

#[test]
fn clusters_have_a_dot_free_stat_name() {
    let c = plain_cluster("srv+_http._tcp.api.test", EdsSource::Ads, Balancing::Native);
    assert_eq!(c.alt_stat_name, "srv+_http~_tcp~api~test");
}

#[test]
fn cluster_uses_ads_eds_and_override_host() {
    let c = plain_cluster(
        "dns+backend.test:8080",
        EdsSource::Ads,
        Balancing::EndpointHeader,
    );
    assert_eq!(c.name, "dns+backend.test:8080");
    assert_eq!(
        c.cluster_discovery_type,
        Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32))
    );
    let eds = c.eds_cluster_config.unwrap().eds_config.unwrap();
    assert_eq!(eds.resource_api_version, ApiVersion::V3 as i32);
    assert!(matches!(
        eds.config_source_specifier,
        Some(ConfigSourceSpecifier::Ads(_))
    ));
    assert_eq!(c.connect_timeout.unwrap().seconds, 1);

    let policy = &c.load_balancing_policy.unwrap().policies[0];
    let ext = policy.typed_extension_config.as_ref().unwrap();
    assert_eq!(ext.name, "envoy.load_balancing_policies.override_host");
    let any = ext.typed_config.as_ref().unwrap();
    assert_eq!(
        any.type_url,
        "type.googleapis.com/envoy.extensions.load_balancing_policies.override_host.v3.OverrideHost"
    );
    let oh = OverrideHost::decode(any.value.as_slice()).unwrap();
    assert_eq!(oh.override_host_sources[0].header, "x-dnslb-endpoint");
    let fallback = oh.fallback_policy.unwrap();
    let rr = fallback.policies[0]
        .typed_extension_config
        .as_ref()
        .unwrap();
    assert_eq!(rr.name, "envoy.load_balancing_policies.round_robin");
    assert_eq!(
        rr.typed_config.as_ref().unwrap().type_url,
        "type.googleapis.com/envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin"
    );
}

#[test]
fn grpc_sources_point_at_the_shim_cluster() {
    for (source, api_type) in [
        (EdsSource::Grpc, ApiType::Grpc),
        (EdsSource::DeltaGrpc, ApiType::DeltaGrpc),
    ] {
        let c = plain_cluster("dns+backend.test:8080", source, Balancing::EndpointHeader);
        let eds = c.eds_cluster_config.unwrap().eds_config.unwrap();
        let Some(ConfigSourceSpecifier::ApiConfigSource(api)) = eds.config_source_specifier else {
            panic!("not an api_config_source");
        };
        assert_eq!(api.api_type, api_type as i32);
        assert_eq!(api.transport_api_version, ApiVersion::V3 as i32);
        let Some(TargetSpecifier::EnvoyGrpc(grpc)) = &api.grpc_services[0].target_specifier else {
            panic!("not envoy_grpc");
        };
        assert_eq!(grpc.cluster_name, "dnslb_xds");
    }
}

fn member(addr: &str, priority: u16, weight: Option<u16>, draining: bool) -> Member {
    Member {
        priority,
        addr: addr.parse().unwrap(),
        hostname: "backend.test".into(),
        weight,
        draining,
    }
}

/// (level, address:port, hostname, health, weight) of every endpoint.
fn flat(cla: &ClusterLoadAssignment) -> Vec<(u32, String, String, i32, Option<u32>)> {
    cla.endpoints
        .iter()
        .flat_map(|locality| {
            locality.lb_endpoints.iter().map(move |lb| {
                let Some(HostIdentifier::Endpoint(ep)) = &lb.host_identifier else {
                    panic!("no endpoint");
                };
                (
                    locality.priority,
                    endpoint_address(lb).expect("a socket address with a port"),
                    ep.hostname.clone(),
                    lb.health_status,
                    lb.load_balancing_weight.as_ref().map(|w| w.value),
                )
            })
        })
        .collect()
}

#[test]
fn load_assignment_is_sorted_and_healthy() {
    let a = member("10.0.0.9:8080", 0, None, false);
    let b = member("10.0.0.10:8080", 0, None, false);
    let cla = load_assignment("dns+backend.test:8080", &[a.clone(), b.clone()]);
    assert_eq!(cla.cluster_name, "dns+backend.test:8080");
    let healthy = HealthStatus::Healthy as i32;
    assert_eq!(
        flat(&cla),
        vec![
            (
                0,
                "10.0.0.9:8080".into(),
                "backend.test:8080".into(),
                healthy,
                None
            ),
            (
                0,
                "10.0.0.10:8080".into(),
                "backend.test:8080".into(),
                healthy,
                None
            ),
        ]
    );
    // Order of the input does not matter.
    let reversed = load_assignment("dns+backend.test:8080", &[b, a]);
    assert_eq!(reversed.encode_to_vec(), cla.encode_to_vec());
}

#[test]
fn srv_priorities_become_levels_and_weights_stay_unscaled() {
    let cla = load_assignment(
        "srv+_h._tcp.api.test",
        &[
            member("10.0.0.3:90", 20, Some(0), false),
            member("10.0.0.1:80", 10, Some(65535), false),
            member("10.0.0.2:80", 10, Some(7), true),
        ],
    );
    let healthy = HealthStatus::Healthy as i32;
    let draining = HealthStatus::Draining as i32;
    // The authority requests carry upstream: the SRV name, not the target.
    let host = || "_h._tcp.api.test".to_string();
    assert_eq!(
        flat(&cla),
        vec![
            (0, "10.0.0.1:80".into(), host(), healthy, Some(65535)),
            (0, "10.0.0.2:80".into(), host(), draining, Some(7)),
            (1, "10.0.0.3:90".into(), host(), healthy, Some(1)),
        ]
    );
}

#[test]
fn clusters_allow_overriding_to_draining_hosts() {
    let c = plain_cluster(
        "dns+backend.test:8080",
        EdsSource::Ads,
        Balancing::EndpointHeader,
    );
    let statuses = c
        .common_lb_config
        .unwrap()
        .override_host_status
        .unwrap()
        .statuses;
    assert!(statuses.contains(&(HealthStatus::Draining as i32)));
    assert!(statuses.contains(&(HealthStatus::Healthy as i32)));
}

#[test]
fn per_upstream_connect_timeout_and_circuit_breakers() {
    let settings = UpstreamSettings {
        connect_timeout: Some(std::time::Duration::from_millis(2_500)),
        circuit_breakers: Some(CircuitBreakerLimits {
            max_connections: Some(5),
            max_retries: Some(2),
            ..Default::default()
        }),
        ..Default::default()
    };
    let c = ads_cluster(&settings);
    let timeout = c.connect_timeout.unwrap();
    assert_eq!((timeout.seconds, timeout.nanos), (2, 500_000_000));
    let t = &c.circuit_breakers.unwrap().thresholds[0];
    assert_eq!(t.max_connections.as_ref().unwrap().value, 5);
    assert_eq!(t.max_retries.as_ref().unwrap().value, 2);
    assert!(t.max_requests.is_none());
}

#[test]
fn every_cluster_gets_a_retry_budget_and_local_origin_ejection() {
    let c = ads_cluster(&Default::default());
    let t = &c.circuit_breakers.unwrap().thresholds[0];
    assert!(t.max_retries.is_none());
    let budget = t.retry_budget.as_ref().unwrap();
    assert_eq!(budget.budget_percent.as_ref().unwrap().value, 50.0);
    assert_eq!(budget.min_retry_concurrency.as_ref().unwrap().value, 32);
    let od = c.outlier_detection.unwrap();
    assert!(od.split_external_local_origin_errors);
    assert_eq!(od.consecutive_local_origin_failure.unwrap().value, 3);
    assert_eq!(
        od.enforcing_consecutive_local_origin_failure.unwrap().value,
        100
    );
    // A backend's own 5xx answers never eject it.
    assert_eq!(od.enforcing_consecutive_5xx.unwrap().value, 0);
    assert_eq!(od.enforcing_success_rate.unwrap().value, 0);
    assert_eq!(od.max_ejection_percent.unwrap().value, 50);
    assert_eq!(od.base_ejection_time.unwrap().seconds, 10);

    // An explicit max_retries keeps Envoy's plain limit; zero failures turns ejection off.
    let settings = UpstreamSettings {
        circuit_breakers: Some(CircuitBreakerLimits {
            max_retries: Some(9),
            ..Default::default()
        }),
        outlier_detection: Some(Ejection {
            consecutive_local_origin_failures: 0,
            ..Ejection::DEFAULT
        }),
        ..Default::default()
    };
    let c = ads_cluster(&settings);
    let t = &c.circuit_breakers.unwrap().thresholds[0];
    assert_eq!(t.max_retries.as_ref().unwrap().value, 9);
    assert!(t.retry_budget.is_none());
    assert!(c.outlier_detection.is_none());
}

#[test]
fn health_checks_ask_the_backend_authority() {
    let c = plain_cluster(
        "srv+_h._tcp.a.test",
        EdsSource::Ads,
        Balancing::EndpointHeader,
    );
    assert!(c.health_checks.is_empty());
    let settings = UpstreamSettings {
        health_check: Some(HealthCheckSettings {
            path: "/healthz".into(),
            interval: std::time::Duration::from_secs(2),
            timeout: std::time::Duration::from_millis(500),
            healthy_threshold: 1,
            unhealthy_threshold: 2,
        }),
        ..Default::default()
    };
    let c = ads_cluster(&settings);
    let check = &c.health_checks[0];
    let Some(HealthChecker::HttpHealthCheck(http)) = &check.health_checker else {
        panic!("not an HTTP check");
    };
    assert_eq!(
        (http.host.as_str(), http.path.as_str()),
        ("b.test:80", "/healthz")
    );
    assert_eq!(check.interval.as_ref().unwrap().seconds, 2);
    assert_eq!(check.no_traffic_interval.as_ref().unwrap().seconds, 2);
    assert_eq!(check.timeout.as_ref().unwrap().nanos, 500_000_000);
    assert_eq!(check.unhealthy_threshold.as_ref().unwrap().value, 2);
}

#[test]
fn lb_policy_picks_the_fallback_behind_override_host() {
    for (policy, name) in [
        (
            LbPolicy::RoundRobin,
            "envoy.load_balancing_policies.round_robin",
        ),
        (LbPolicy::Maglev, "envoy.load_balancing_policies.maglev"),
        (
            LbPolicy::RingHash,
            "envoy.load_balancing_policies.ring_hash",
        ),
    ] {
        let settings = UpstreamSettings {
            lb_policy: policy,
            ..Default::default()
        };
        let c = ads_cluster(&settings);
        let policy = &c.load_balancing_policy.unwrap().policies[0];
        let any = policy
            .typed_extension_config
            .as_ref()
            .unwrap()
            .typed_config
            .as_ref()
            .unwrap();
        let oh = OverrideHost::decode(any.value.as_slice()).unwrap();
        let fallback = oh.fallback_policy.unwrap();
        let ext = fallback.policies[0]
            .typed_extension_config
            .as_ref()
            .unwrap();
        assert_eq!(ext.name, name);
    }
}

/// The UpstreamTlsContext of a cluster: (SNI, CA file). The DNS SAN required is the SNI.
fn tls_of(c: Cluster) -> (String, String) {
    let socket = c.transport_socket.unwrap();
    assert_eq!(socket.name, "envoy.transport_sockets.tls");
    let Some(ConfigType::TypedConfig(any)) = socket.config_type else {
        panic!("no typed config");
    };
    let ctx = UpstreamTlsContext::decode(any.value.as_slice()).unwrap();
    let Some(ValidationContextType::ValidationContext(v)) =
        ctx.common_tls_context.unwrap().validation_context_type
    else {
        panic!("no validation context");
    };
    let Some(Specifier::Filename(ca)) = v.trusted_ca.unwrap().specifier else {
        panic!("CA not from a file");
    };
    let [san] = v.match_typed_subject_alt_names.as_slice() else {
        panic!("not one SAN matcher");
    };
    assert_eq!(san.san_type, SanType::Dns as i32);
    let Some(MatchPattern::Exact(name)) = san.matcher.as_ref().unwrap().match_pattern.clone()
    else {
        panic!("not an exact match");
    };
    assert_eq!(name, ctx.sni, "the SAN required is the SNI");
    (ctx.sni, ca)
}

fn owned(sni: &str, ca: &str) -> (String, String) {
    (sni.to_string(), ca.to_string())
}

fn tls_cluster(spec: &str, own: &TlsSettings) -> Cluster {
    let upstream: Upstream = spec.parse().unwrap();
    let target = TlsTarget::of(&upstream, own, "/global.pem");
    cluster(
        &upstream.cluster_name(),
        EdsSource::Ads,
        Balancing::EndpointHeader,
        &Default::default(),
        target.as_ref(),
    )
}

#[test]
fn tls_upstreams_verify_the_dns_name_against_the_global_roots() {
    let none = TlsSettings::default();
    let c = tls_cluster("https://dns+tls.test:443", &none);
    assert_eq!(tls_of(c), owned("tls.test", "/global.pem"));
    // srv+: the SRV name, as the spec has no other.
    let c = tls_cluster("https://srv+_h._tcp.tls.test", &none);
    assert_eq!(tls_of(c), owned("_h._tcp.tls.test", "/global.pem"));
    assert!(tls_cluster("dns+tls.test:443", &none)
        .transport_socket
        .is_none());
}

#[test]
fn per_upstream_roots_and_sni() {
    let own = TlsSettings {
        ca_file: Some("/own.pem".into()),
        sni: Some("api.test".into()),
    };
    let c = tls_cluster("https://srv+_h._tcp.tls.test", &own);
    assert_eq!(tls_of(c), owned("api.test", "/own.pem"));
    // Either alone; the other keeps its default.
    let ca_only = TlsSettings {
        sni: None,
        ..own.clone()
    };
    let c = tls_cluster("https://dns+tls.test:443", &ca_only);
    assert_eq!(tls_of(c), owned("tls.test", "/own.pem"));
    let sni_only = TlsSettings {
        ca_file: None,
        ..own
    };
    let c = tls_cluster("https://dns+tls.test:443", &sni_only);
    assert_eq!(tls_of(c), owned("api.test", "/global.pem"));
}

#[test]
fn empty_membership_has_no_localities() {
    let cla = load_assignment("dns+gone.test:80", &[]);
    assert!(cla.endpoints.is_empty());
}
