//! The settings of one upstream that shape its Envoy cluster (connect timeout, circuit
//! breakers and retry budget, outlier detection, health checks, the LB policy, TLS), as
//! validated values with their defaults. The YAML that writes them is `config::file`'s.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

/// Settings one upstream may override. Cheap to clone (strings are shared `Arc<str>`):
/// every published membership carries a copy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct UpstreamSettings {
    /// Re-resolution interval for this upstream's name (default: the global one).
    pub interval: Option<Duration>,
    /// Envoy cluster connect timeout (default 1 s).
    pub connect_timeout: Option<Duration>,
    pub circuit_breakers: Option<CircuitBreakers>,
    /// Outlier detection (default [`Ejection::DEFAULT`]).
    pub outlier_detection: Option<Ejection>,
    pub lb_policy: LbPolicy,
    /// Active HTTP health checks; none by default.
    pub health_check: Option<HealthCheck>,
    /// Only ever set for `https://` upstreams.
    pub tls: TlsSettings,
}

/// What an `https://` upstream may override; `None` keeps the default (the global
/// `ca_file`; the upstream's DNS name as SNI and required SAN).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TlsSettings {
    pub ca_file: Option<Arc<str>>,
    pub sni: Option<Arc<str>>,
}

/// Envoy's default-priority thresholds; unset ones keep Envoy's defaults, except the retry
/// limit: without `max_retries` or `retry_budget` a cluster gets [`RetryBudget::DEFAULT`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreakers {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_pending_requests: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_requests: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_budget: Option<RetryBudget>,
}

/// Retries allowed in flight: `budget_percent` of the cluster's active requests, and never
/// fewer than `min_retry_concurrency` (Envoy's `retry_budget`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetryBudget {
    pub budget_percent: u32,
    pub min_retry_concurrency: u32,
}

impl RetryBudget {
    /// Envoy's default without any setting is 3 retries in flight per cluster: under load
    /// with one dead member most retries were refused (503 UO). Half the active requests
    /// covers a two-member cluster losing one member; 32 covers bursts at low load.
    pub const DEFAULT: RetryBudget = RetryBudget {
        budget_percent: 50,
        min_retry_concurrency: 32,
    };
}

/// Which load balancer Envoy uses when no endpoint is named (`x-dnslb-endpoint`): round
/// robin, or a consistent hash over the route's `hash_policy` (hash affinity).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LbPolicy {
    #[default]
    RoundRobin,
    Maglev,
    RingHash,
}

/// Envoy's active HTTP health check of every member: `GET path` with the upstream's
/// authority as Host; any status but 200 counts as a failure.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct HealthCheck {
    pub path: String,
    #[serde(serialize_with = "crate::duration::serialize_human")]
    pub interval: Duration,
    #[serde(serialize_with = "crate::duration::serialize_human")]
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

/// Ejection of members that fail locally (refused or timed-out connections, resets):
/// Envoy's outlier detection on local-origin errors only, so a backend's own 5xx answers
/// never eject it. `consecutive_local_origin_failures: 0` turns it off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Ejection {
    pub consecutive_local_origin_failures: u32,
    #[serde(serialize_with = "crate::duration::serialize_human")]
    pub base_ejection_time: Duration,
    pub max_ejection_percent: u32,
    #[serde(serialize_with = "crate::duration::serialize_human")]
    pub interval: Duration,
}

impl Ejection {
    /// Three refused connects in a row eject a member at once. Envoy's default
    /// `max_ejection_percent` (10 %) ejects nothing below ten members; half lets one of two
    /// or three go while the rest keep serving.
    pub const DEFAULT: Ejection = Ejection {
        consecutive_local_origin_failures: 3,
        base_ejection_time: Duration::from_secs(10),
        max_ejection_percent: 50,
        interval: Duration::from_secs(1),
    };
}
