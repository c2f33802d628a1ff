//! The `/status.json` document: what the shim serves and how discovery is going. Pure.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::discovery::{DiscoveryState, Outcome};
use crate::snapshot::{ResourceType, Snapshot};

#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub versions: Versions,
    pub connected_streams: usize,
    pub upstreams: Vec<UpstreamReport>,
}

#[derive(Debug, Serialize)]
pub struct Versions {
    pub clusters: String,
    pub endpoints: String,
}

#[derive(Debug, Serialize)]
pub struct UpstreamReport {
    pub cluster: String,
    pub host: String,
    /// The live members served now (the last good answer), `ip:port`.
    pub endpoints: Vec<String>,
    /// Every served member with its details, draining ones included.
    pub members: Vec<MemberReport>,
    pub last_resolution: Option<ResolutionReport>,
    pub last_success_unix_ms: Option<u64>,
    /// Set while DNS questions go unanswered and the last good members are kept.
    pub stale_since_unix_ms: Option<u64>,
    /// NXDOMAIN / empty answers in a row (members go once this reaches the threshold).
    pub empty_answers: u32,
}

#[derive(Debug, Serialize)]
pub struct MemberReport {
    pub address: String,
    pub hostname: String,
    /// The SRV priority value (0 for A records).
    pub priority: u16,
    /// The SRV weight; absent for A records.
    pub weight: Option<u16>,
    pub draining: bool,
    /// When a draining member leaves.
    pub drain_until_unix_ms: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct ResolutionReport {
    pub at_unix_ms: u64,
    /// `ok`, or the error kind (`nxdomain`, `no_records`, `servfail`, `refused`, `timeout`,
    /// `error`).
    pub result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl StatusReport {
    pub fn new(discovery: &DiscoveryState, snapshot: &Snapshot, connected_streams: usize) -> Self {
        let upstreams = discovery
            .upstreams()
            .map(|state| UpstreamReport {
                cluster: state.upstream.cluster_name(),
                host: state.upstream.host().to_string(),
                endpoints: state.members.iter().map(|m| m.addr.to_string()).collect(),
                members: state
                    .members
                    .iter()
                    .map(|m| (m, None))
                    .chain(state.draining.iter().map(|d| (&d.member, Some(d.until))))
                    .map(|(m, until)| MemberReport {
                        address: m.addr.to_string(),
                        hostname: m.hostname.clone(),
                        priority: m.priority,
                        weight: m.weight,
                        draining: until.is_some(),
                        drain_until_unix_ms: until.map(unix_ms),
                    })
                    .collect(),
                stale_since_unix_ms: state.stale_since.map(unix_ms),
                empty_answers: state.empty_answers,
                last_resolution: state.last_attempt.as_ref().map(|attempt| {
                    let (result, error) = match &attempt.outcome {
                        Outcome::Resolved => ("ok", None),
                        Outcome::Failed(e) => (e.kind(), Some(e.to_string())),
                    };
                    ResolutionReport {
                        at_unix_ms: unix_ms(attempt.at),
                        result,
                        error,
                    }
                }),
                last_success_unix_ms: state.last_success.map(unix_ms),
            })
            .collect();
        StatusReport {
            versions: Versions {
                clusters: snapshot.version(ResourceType::Cluster).to_string(),
                endpoints: snapshot.version(ResourceType::Endpoint).to_string(),
            },
            connected_streams,
            upstreams,
        }
    }
}

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::RoundResults;
    use crate::resolve::ResolveError;
    use std::collections::HashMap;
    use std::time::Duration;

    #[test]
    fn reports_members_results_and_versions() {
        let mut state = DiscoveryState::new([
            "dns+a.test:80".parse().unwrap(),
            "dns+b.test:80".parse().unwrap(),
        ]);
        let at = UNIX_EPOCH + Duration::from_millis(1_500);
        let results = RoundResults {
            a: HashMap::from([
                ("a.test".to_string(), Ok(vec!["10.0.0.1".parse().unwrap()])),
                ("b.test".to_string(), Err(ResolveError::NxDomain)),
            ]),
            srv: HashMap::new(),
        };
        state.apply(&results, at);
        let snapshot = Snapshot::build(state.members());
        let json = serde_json::to_value(StatusReport::new(&state, &snapshot, 2)).unwrap();

        assert_eq!(json["connected_streams"], 2);
        assert_eq!(
            json["versions"]["clusters"],
            snapshot.version(ResourceType::Cluster)
        );
        let a = &json["upstreams"][0];
        assert_eq!(a["cluster"], "dns+a.test:80");
        assert_eq!(a["endpoints"], serde_json::json!(["10.0.0.1:80"]));
        assert_eq!(a["last_resolution"]["result"], "ok");
        assert_eq!(a["last_resolution"]["at_unix_ms"], 1_500);
        assert_eq!(a["last_success_unix_ms"], 1_500);
        let b = &json["upstreams"][1];
        assert_eq!(a["members"][0]["hostname"], "a.test");
        assert_eq!(a["members"][0]["draining"], false);
        assert_eq!(b["last_resolution"]["result"], "nxdomain");
        assert_eq!(b["empty_answers"], 1);
        assert_eq!(b["last_success_unix_ms"], serde_json::Value::Null);
    }
}
