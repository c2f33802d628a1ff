//! Envoy resources for one upstream: an EDS `Cluster` and its `ClusterLoadAssignment`.
//! Pure functions of their inputs, so equal inputs encode to equal bytes.

use std::net::SocketAddr;

use envoy_types::pb::envoy::config::cluster::v3::circuit_breakers::thresholds::RetryBudget as ProtoRetryBudget;
use envoy_types::pb::envoy::config::cluster::v3::circuit_breakers::Thresholds;
use envoy_types::pb::envoy::config::cluster::v3::cluster::CommonLbConfig;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, DiscoveryType, EdsClusterConfig,
};
use envoy_types::pb::envoy::config::cluster::v3::load_balancing_policy::Policy;
use envoy_types::pb::envoy::config::cluster::v3::CircuitBreakers;
use envoy_types::pb::envoy::config::cluster::v3::OutlierDetection;
use envoy_types::pb::envoy::config::cluster::v3::{Cluster, LoadBalancingPolicy};
use envoy_types::pb::envoy::config::core::v3::address::Address as AddressKind;
use envoy_types::pb::envoy::config::core::v3::api_config_source::ApiType;
use envoy_types::pb::envoy::config::core::v3::config_source::ConfigSourceSpecifier;
use envoy_types::pb::envoy::config::core::v3::grpc_service::{EnvoyGrpc, TargetSpecifier};
use envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier;
use envoy_types::pb::envoy::config::core::v3::{
    Address, AggregatedConfigSource, ApiConfigSource, ApiVersion, ConfigSource, GrpcService,
    HealthStatus, HealthStatusSet, SocketAddress, TypedExtensionConfig,
};
use envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};
use envoy_types::pb::envoy::extensions::load_balancing_policies::maglev::v3::Maglev;
use envoy_types::pb::envoy::extensions::load_balancing_policies::override_host::v3::override_host::OverrideHostSource;
use envoy_types::pb::envoy::extensions::load_balancing_policies::override_host::v3::OverrideHost;
use envoy_types::pb::envoy::extensions::load_balancing_policies::ring_hash::v3::RingHash;
use envoy_types::pb::envoy::extensions::load_balancing_policies::round_robin::v3::RoundRobin;
use envoy_types::pb::envoy::r#type::v3::Percent;
use envoy_types::pb::google::protobuf::{Duration as ProtoDuration, UInt32Value};
use envoy_types::util::pack_any;

use envoy_types::pb::envoy::config::core::v3::data_source::Specifier;
use envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType;
use envoy_types::pb::envoy::config::core::v3::{DataSource, TransportSocket};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::common_tls_context::ValidationContextType;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::subject_alt_name_matcher::SanType;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, SubjectAltNameMatcher, UpstreamTlsContext,
};
use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
use envoy_types::pb::envoy::r#type::matcher::v3::StringMatcher;

use crate::model::member::Member;
use crate::model::settings::{
    CircuitBreakers as CircuitBreakerLimits, Ejection, HealthCheck as HealthCheckSettings,
    LbPolicy, RetryBudget, UpstreamSettings,
};
use crate::model::tls::TlsTarget;
use envoy_types::pb::envoy::config::core::v3::health_check::{HealthChecker, HttpHealthCheck};
use envoy_types::pb::envoy::config::core::v3::HealthCheck;

/// The header the dnslb filter fills with the chosen endpoint and its failover chain
/// (the filter's default, so both ends share one name).
pub const ENDPOINT_HEADER: &str = dnslb_wire::names::ENDPOINT_HEADER;
const OVERRIDE_HOST_POLICY: &str = "envoy.load_balancing_policies.override_host";
const ROUND_ROBIN_POLICY: &str = "envoy.load_balancing_policies.round_robin";
const MAGLEV_POLICY: &str = "envoy.load_balancing_policies.maglev";
const RING_HASH_POLICY: &str = "envoy.load_balancing_policies.ring_hash";
/// Envoy's connect timeout for an upstream without its own `connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);
const TLS_TRANSPORT_SOCKET: &str = "envoy.transport_sockets.tls";
/// The Envoy cluster that reaches the shim (the bootstrap snippets name it so, and the
/// filter dials it by default).
pub const XDS_CLUSTER: &str = dnslb_wire::names::XDS_CLUSTER;

/// An EDS cluster balanced by `settings.lb_policy` (round robin by default); with
/// [`Balancing::EndpointHeader`] its LB first honours the endpoint a request names
/// (`x-dnslb-endpoint`: the filter's pick or a sticky session) until that is exhausted.
/// Its endpoints come from `source`. Every cluster gets a retry budget and ejects members
/// that fail locally, unless its settings say otherwise.
pub fn cluster(
    name: &str,
    source: EdsSource,
    balancing: Balancing,
    settings: &UpstreamSettings,
    tls: Option<&TlsTarget>,
) -> Cluster {
    let connect_timeout = settings.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    Cluster {
        transport_socket: tls.map(transport_socket),
        name: name.to_string(),
        // Envoy splits stat names on dots: a dot-free name keeps the cluster whole in the
        // `envoy_cluster_name` label, with Envoy's default tags, in any bootstrap.
        alt_stat_name: dnslb_wire::names::stat_name(name),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
        eds_cluster_config: Some(EdsClusterConfig {
            eds_config: Some(eds_config(source)),
            service_name: String::new(),
        }),
        // DRAINING hosts take no new picks, but an override (sticky session, the filter's
        // failover chain) may still reach them until they leave the assignment.
        common_lb_config: Some(CommonLbConfig {
            override_host_status: Some(HealthStatusSet {
                statuses: vec![
                    HealthStatus::Unknown as i32,
                    HealthStatus::Healthy as i32,
                    HealthStatus::Degraded as i32,
                    HealthStatus::Draining as i32,
                ],
            }),
            ..Default::default()
        }),
        connect_timeout: Some(proto_duration(connect_timeout)),
        circuit_breakers: Some(circuit_breakers(effective_limits(
            settings.circuit_breakers,
        ))),
        outlier_detection: outlier_detection(
            settings.outlier_detection.unwrap_or(Ejection::DEFAULT),
        ),
        health_checks: settings
            .health_check
            .iter()
            .map(|check| health_check(check, backend_authority(name)))
            .collect(),
        load_balancing_policy: Some(match balancing {
            Balancing::EndpointHeader => single_policy(
                OVERRIDE_HOST_POLICY,
                pack_any(OverrideHost {
                    override_host_sources: vec![OverrideHostSource {
                        header: ENDPOINT_HEADER.to_string(),
                        metadata: None,
                    }],
                    selected_host_key: None,
                    fallback_policy: Some(fallback_policy(settings.lb_policy)),
                }),
            ),
            Balancing::Native => fallback_policy(settings.lb_policy),
        }),
        ..Default::default()
    }
}

/// TLS to every endpoint: the certificate must name the SNI (a DNS SAN), whatever IP the
/// endpoint has; trusted roots from `ca_file`.
fn transport_socket(tls: &TlsTarget) -> TransportSocket {
    let context = UpstreamTlsContext {
        sni: tls.sni.clone(),
        common_tls_context: Some(CommonTlsContext {
            validation_context_type: Some(ValidationContextType::ValidationContext(
                CertificateValidationContext {
                    trusted_ca: Some(DataSource {
                        specifier: Some(Specifier::Filename(tls.ca_file.clone())),
                        ..Default::default()
                    }),
                    match_typed_subject_alt_names: vec![SubjectAltNameMatcher {
                        san_type: SanType::Dns as i32,
                        matcher: Some(StringMatcher {
                            match_pattern: Some(MatchPattern::Exact(tls.sni.clone())),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            )),
            ..Default::default()
        }),
        ..Default::default()
    };
    TransportSocket {
        name: TLS_TRANSPORT_SOCKET.to_string(),
        config_type: Some(ConfigType::TypedConfig(pack_any(context))),
    }
}

fn fallback_policy(policy: LbPolicy) -> LoadBalancingPolicy {
    match policy {
        LbPolicy::RoundRobin => single_policy(ROUND_ROBIN_POLICY, pack_any(RoundRobin::default())),
        LbPolicy::Maglev => single_policy(MAGLEV_POLICY, pack_any(Maglev::default())),
        LbPolicy::RingHash => single_policy(RING_HASH_POLICY, pack_any(RingHash::default())),
    }
}

/// An upstream's limits with the default retry budget filled in when it set no retry limit.
pub fn effective_limits(limits: Option<CircuitBreakerLimits>) -> CircuitBreakerLimits {
    let mut limits = limits.unwrap_or_default();
    if limits.max_retries.is_none() && limits.retry_budget.is_none() {
        limits.retry_budget = Some(RetryBudget::DEFAULT);
    }
    limits
}

/// Default-priority thresholds; unset limits keep Envoy's defaults.
fn circuit_breakers(limits: CircuitBreakerLimits) -> CircuitBreakers {
    let value = |limit: Option<u32>| limit.map(|value| UInt32Value { value });
    CircuitBreakers {
        thresholds: vec![Thresholds {
            max_connections: value(limits.max_connections),
            max_pending_requests: value(limits.max_pending_requests),
            max_requests: value(limits.max_requests),
            max_retries: value(limits.max_retries),
            retry_budget: limits.retry_budget.map(|budget| ProtoRetryBudget {
                budget_percent: Some(Percent {
                    value: f64::from(budget.budget_percent),
                }),
                min_retry_concurrency: value(Some(budget.min_retry_concurrency)),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Local-origin failures only (`split_external_local_origin_errors`): refused or timed-out
/// connects and resets eject, a backend's own 5xx answers do not (their enforcement is 0).
fn outlier_detection(ejection: Ejection) -> Option<OutlierDetection> {
    if ejection.consecutive_local_origin_failures == 0 {
        return None;
    }
    let value = |value: u32| Some(UInt32Value { value });
    Some(OutlierDetection {
        split_external_local_origin_errors: true,
        consecutive_local_origin_failure: value(ejection.consecutive_local_origin_failures),
        enforcing_consecutive_local_origin_failure: value(100),
        enforcing_local_origin_success_rate: value(0),
        enforcing_consecutive_5xx: value(0),
        enforcing_success_rate: value(0),
        enforcing_consecutive_gateway_failure: value(0),
        enforcing_failure_percentage: value(0),
        enforcing_failure_percentage_local_origin: value(0),
        max_ejection_percent: value(ejection.max_ejection_percent),
        base_ejection_time: Some(proto_duration(ejection.base_ejection_time)),
        interval: Some(proto_duration(ejection.interval)),
        ..Default::default()
    })
}

/// `GET path` with the authority the backend expects (Envoy's default Host would be the
/// cluster name, `dns+...`). Checked at `interval` even without traffic (Envoy's default
/// then is once a minute).
fn health_check(check: &HealthCheckSettings, authority: &str) -> HealthCheck {
    let value = |value: u32| Some(UInt32Value { value });
    HealthCheck {
        timeout: Some(proto_duration(check.timeout)),
        interval: Some(proto_duration(check.interval)),
        no_traffic_interval: Some(proto_duration(check.interval)),
        healthy_threshold: value(check.healthy_threshold),
        unhealthy_threshold: value(check.unhealthy_threshold),
        health_checker: Some(HealthChecker::HttpHealthCheck(HttpHealthCheck {
            host: authority.to_string(),
            path: check.path.to_string(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn proto_duration(d: std::time::Duration) -> ProtoDuration {
    ProtoDuration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

fn eds_config(source: EdsSource) -> ConfigSource {
    let specifier = match source {
        EdsSource::Ads => ConfigSourceSpecifier::Ads(AggregatedConfigSource {}),
        EdsSource::Grpc | EdsSource::DeltaGrpc => {
            ConfigSourceSpecifier::ApiConfigSource(ApiConfigSource {
                api_type: if source == EdsSource::Grpc {
                    ApiType::Grpc
                } else {
                    ApiType::DeltaGrpc
                } as i32,
                transport_api_version: ApiVersion::V3 as i32,
                grpc_services: vec![GrpcService {
                    target_specifier: Some(TargetSpecifier::EnvoyGrpc(EnvoyGrpc {
                        cluster_name: XDS_CLUSTER.to_string(),
                        ..Default::default()
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            })
        }
    };
    ConfigSource {
        resource_api_version: ApiVersion::V3 as i32,
        config_source_specifier: Some(specifier),
        ..Default::default()
    }
}

fn single_policy(
    name: &str,
    typed_config: envoy_types::pb::google::protobuf::Any,
) -> LoadBalancingPolicy {
    LoadBalancingPolicy {
        policies: vec![Policy {
            typed_extension_config: Some(TypedExtensionConfig {
                name: name.to_string(),
                typed_config: Some(typed_config),
            }),
        }],
    }
}

/// One locality per priority level. Levels are the ranks of the distinct SRV priorities
/// (lowest value = level 0), so `10, 20` and `0, 1` give the same levels; A records are all
/// level 0. Each endpoint's `hostname` is the authority its requests carry upstream (Envoy's
/// `auto_host_rewrite` copies it): `HOST:PORT` for `dns+HOST:PORT`, the SRV name for
/// `srv+NAME`, what the backend would see without dnslb.
///
/// Weights: the SRV weight, unscaled. Envoy needs at least 1, so weight 0 becomes 1: RFC
/// 2782 gives weight-0 records "a very small chance" next to weighted ones, and 1 is the
/// smallest share Envoy can express (equal to a weight-1 record). A records carry no
/// weight (Envoy's default, 1).
///
/// `named_endpoints` is a map and would encode in hash order; it stays empty so the
/// encoding, and hence the version, is deterministic.
pub fn load_assignment(cluster_name: &str, members: &[Member]) -> ClusterLoadAssignment {
    let authority = backend_authority(cluster_name);
    let endpoints = crate::model::member::priority_levels(members)
        .into_iter()
        .map(|(priority, level)| {
            let mut at_level: Vec<&Member> =
                members.iter().filter(|m| m.priority == priority).collect();
            at_level.sort_unstable_by_key(|m| m.addr);
            LocalityLbEndpoints {
                lb_endpoints: at_level
                    .into_iter()
                    .map(|m| lb_endpoint(m, authority))
                    .collect(),
                priority: level,
                ..Default::default()
            }
        })
        .collect();
    ClusterLoadAssignment {
        cluster_name: cluster_name.to_string(),
        endpoints,
        ..Default::default()
    }
}

/// What the backend of cluster `dns+HOST:PORT` / `srv+NAME` sees as its authority.
pub fn backend_authority(cluster_name: &str) -> &str {
    cluster_name
        .strip_prefix("dns+")
        .or_else(|| cluster_name.strip_prefix("srv+"))
        .unwrap_or(cluster_name)
}

fn lb_endpoint(member: &Member, authority: &str) -> LbEndpoint {
    let health = if member.draining {
        HealthStatus::Draining
    } else {
        HealthStatus::Healthy
    };
    LbEndpoint {
        health_status: health as i32,
        load_balancing_weight: member.weight.map(|w| UInt32Value {
            value: u32::from(w).max(1),
        }),
        host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
            address: Some(socket_address(member.addr)),
            hostname: authority.to_string(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn socket_address(addr: SocketAddr) -> Address {
    Address {
        address: Some(AddressKind::SocketAddress(SocketAddress {
            address: addr.ip().to_string(),
            port_specifier: Some(PortSpecifier::PortValue(u32::from(addr.port()))),
            ..Default::default()
        })),
    }
}

/// Where a served cluster tells Envoy to fetch its endpoints: over the same ADS stream, or
/// from the shim's plain EDS service (for clusters delivered by the plain CDS service, whose
/// client may run its ADS against another control plane).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EdsSource {
    Ads,
    /// `api_config_source` GRPC to the Envoy cluster that reaches the shim.
    Grpc,
    /// The same with `DELTA_GRPC`: for clusters sent over the Delta CDS service, so the
    /// endpoint streams are Delta like the cluster stream.
    DeltaGrpc,
}

/// How a served cluster picks a member (chosen per client, see `ads::node`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Balancing {
    /// Envoy's `override_host` policy over the upstream's own: a request that names a
    /// member in `x-dnslb-endpoint` goes there (the legacy filter's picks, the wasm
    /// filter's cookie sessions). What a client gets unless it asks otherwise.
    #[default]
    EndpointHeader,
    /// The upstream's own policy alone, for Envoys that route and balance natively
    /// (`xds-shim envoy-bootstrap` without wasm cookie affinity): the override wrapper
    /// cost them ~3 % more instructions per request (issue 11).
    Native,
}

#[cfg(test)]
mod tests;
