//! The per-upstream settings that shape its Envoy cluster: circuit breakers and the retry
//! budget, outlier detection, active health checks and the load-balancing policy, with
//! their defaults and the checks that name `upstreams[i].key` and the value.

use std::time::Duration;

use serde::Deserialize;

use super::{FileError, Text};
use crate::duration::parse_duration;
use crate::model::settings::{CircuitBreakers, Ejection, HealthCheck};

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

/// `outlier_detection:` as written; unset keys keep [`Ejection::DEFAULT`]'s.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutlierDto {
    pub consecutive_local_origin_failures: Option<u32>,
    pub base_ejection_time: Option<Text>,
    pub max_ejection_percent: Option<u32>,
    pub interval: Option<Text>,
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
            &crate::duration::human(timeout),
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
