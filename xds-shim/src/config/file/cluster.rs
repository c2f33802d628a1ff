//! The per-upstream settings that shape its Envoy cluster: circuit breakers and the retry
//! budget, outlier detection, active health checks and the load-balancing policy, with
//! their defaults and the checks that name `upstreams[i].key` and the value.

use std::time::Duration;

use serde::Deserialize;

use super::{FileError, Text};
use crate::config::duration::parse_duration;

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

/// `health_check:` as written; only `path` is required.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckDto {
    pub path: String,
    pub interval: Option<Text>,
    pub timeout: Option<Text>,
    pub healthy_threshold: Option<u32>,
    pub unhealthy_threshold: Option<u32>,
}

/// Envoy's active HTTP health check of every member: `GET path` with the upstream's
/// authority as Host; any status but 200 counts as a failure.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct HealthCheck {
    pub path: String,
    #[serde(serialize_with = "crate::config::duration::serialize_human")]
    pub interval: Duration,
    #[serde(serialize_with = "crate::config::duration::serialize_human")]
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

/// `outlier_detection:` as written; unset keys keep [`Ejection::DEFAULT`]'s.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutlierDto {
    pub consecutive_local_origin_failures: Option<u32>,
    pub base_ejection_time: Option<Text>,
    pub max_ejection_percent: Option<u32>,
    pub interval: Option<Text>,
}

/// Ejection of members that fail locally (refused or timed-out connections, resets):
/// Envoy's outlier detection on local-origin errors only, so a backend's own 5xx answers
/// never eject it. `consecutive_local_origin_failures: 0` turns it off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Ejection {
    pub consecutive_local_origin_failures: u32,
    #[serde(serialize_with = "crate::config::duration::serialize_human")]
    pub base_ejection_time: Duration,
    pub max_ejection_percent: u32,
    #[serde(serialize_with = "crate::config::duration::serialize_human")]
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

/// `upstreams[i].circuit_breakers`: a retry budget replaces `max_retries` in Envoy, so
/// both at once would silently drop one.
pub(super) fn circuit_breakers(
    i: usize,
    limits: CircuitBreakers,
) -> Result<CircuitBreakers, FileError> {
    let key = format!("upstreams[{i}].circuit_breakers");
    if let (Some(max), Some(_)) = (limits.max_retries, limits.retry_budget) {
        let why = "retry_budget replaces max_retries in Envoy: set one of them";
        return Err(FileError::invalid(key, &max.to_string(), why));
    }
    if let Some(budget) = limits.retry_budget {
        if !(1..=100).contains(&budget.budget_percent) {
            let key = format!("{key}.retry_budget.budget_percent");
            return Err(FileError::invalid(
                key,
                &budget.budget_percent.to_string(),
                "a percentage from 1 to 100",
            ));
        }
    }
    Ok(limits)
}

/// `upstreams[i].health_check`: an absolute path, durations, thresholds of at least 1.
pub(super) fn health_check(i: usize, dto: &HealthCheckDto) -> Result<HealthCheck, FileError> {
    let key = |name: &str| format!("upstreams[{i}].health_check.{name}");
    let bad_char = |c: char| c.is_ascii_whitespace() || c.is_ascii_control();
    if !dto.path.starts_with('/') || dto.path.chars().any(bad_char) {
        return Err(FileError::invalid(
            key("path"),
            &dto.path,
            "an absolute path without spaces, e.g. /healthz",
        ));
    }
    let duration = |name: &str, value: &Option<Text>, default: Duration| match value {
        Some(Text(v)) => parse_duration(v).map_err(|e| FileError::invalid(key(name), v, e)),
        None => Ok(default),
    };
    let threshold = |name: &str, value: Option<u32>, default: u32| match value {
        Some(0) => Err(FileError::invalid(key(name), "0", "must be at least 1")),
        Some(n) => Ok(n),
        None => Ok(default),
    };
    let interval = duration("interval", &dto.interval, Duration::from_secs(5))?;
    let timeout = duration("timeout", &dto.timeout, Duration::from_secs(1))?;
    if timeout > interval {
        return Err(FileError::invalid(
            key("timeout"),
            &crate::config::duration::human(timeout),
            "must not exceed the interval",
        ));
    }
    Ok(HealthCheck {
        path: dto.path.clone(),
        interval,
        timeout,
        healthy_threshold: threshold("healthy_threshold", dto.healthy_threshold, 2)?,
        unhealthy_threshold: threshold("unhealthy_threshold", dto.unhealthy_threshold, 3)?,
    })
}

/// `upstreams[i].outlier_detection`, unset keys from [`Ejection::DEFAULT`].
pub(super) fn ejection(i: usize, dto: &OutlierDto) -> Result<Ejection, FileError> {
    let key = |name: &str| format!("upstreams[{i}].outlier_detection.{name}");
    let duration = |name: &str, value: &Option<Text>, default: Duration| match value {
        Some(Text(v)) => parse_duration(v).map_err(|e| FileError::invalid(key(name), v, e)),
        None => Ok(default),
    };
    let default = Ejection::DEFAULT;
    let max_ejection_percent = dto
        .max_ejection_percent
        .unwrap_or(default.max_ejection_percent);
    if !(1..=100).contains(&max_ejection_percent) {
        return Err(FileError::invalid(
            key("max_ejection_percent"),
            &max_ejection_percent.to_string(),
            "a percentage from 1 to 100",
        ));
    }
    Ok(Ejection {
        consecutive_local_origin_failures: dto
            .consecutive_local_origin_failures
            .unwrap_or(default.consecutive_local_origin_failures),
        base_ejection_time: duration(
            "base_ejection_time",
            &dto.base_ejection_time,
            default.base_ejection_time,
        )?,
        max_ejection_percent,
        interval: duration("interval", &dto.interval, default.interval)?,
    })
}
