//! The `/status.json` document: what the shim serves, how discovery is going, and who is
//! connected. Pure; `/status` renders the same report as HTML (`status_html`).

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::discovery::{DiscoveryState, Outcome};
use crate::metrics::LastReload;
use crate::model::member::priority_levels;
use crate::xds::clients::ClientInfo;
use crate::xds::resources::EdsSource;
use crate::xds::snapshot::{ResourceType, Snapshot};

/// What the running shim is: fixed at start, handed to the admin server.
#[derive(Debug, Clone)]
pub struct ShimInfo {
    pub started_at: SystemTime,
    /// Empty: the system resolver.
    pub nameservers: Vec<SocketAddr>,
    /// The default interval the shim started with (a reload may change it).
    pub interval: Duration,
}

#[derive(Debug, Serialize)]
pub struct ShimReport {
    /// `0.1.0 (commit abcdef123456)`, as `xds-shim -V` says.
    pub version: &'static str,
    pub started_at_unix_ms: u64,
    /// `IP:PORT` each; empty for the system resolver.
    pub nameservers: Vec<String>,
    /// The default re-resolution interval at start.
    pub start_interval_ms: u64,
    /// How long an address gone from DNS drains (now in force).
    pub drain_ms: u64,
}

#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub generated_at_unix_ms: u64,
    pub shim: ShimReport,
    pub versions: Versions,
    pub connected_streams: usize,
    pub upstreams: Vec<UpstreamReport>,
    pub clients: Vec<ClientReport>,
    /// The latest configuration reload (SIGHUP), if any.
    pub last_reload: Option<ReloadReport>,
}

#[derive(Debug, Serialize)]
pub struct ReloadReport {
    pub at_unix_ms: u64,
    /// `ok` (applied) or `error` (refused; the running configuration stays).
    pub result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Settings changed in the file that only a restart applies.
    pub restart_required: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct ClientReport {
    /// `ADS`, `CDS` or `EDS`.
    pub service: &'static str,
    pub node: String,
    pub peer: Option<String>,
    pub connected_at_unix_ms: u64,
    /// ACKed version by type (`CDS`, `EDS`).
    pub acked: std::collections::BTreeMap<&'static str, String>,
    pub last_nack: Option<NackReport>,
}

#[derive(Debug, Serialize)]
pub struct NackReport {
    pub r#type: &'static str,
    pub rejected_version: String,
    pub message: String,
    pub at_unix_ms: u64,
}

#[derive(Debug, Serialize)]
pub struct Versions {
    /// Served over ADS.
    pub clusters: String,
    /// The same clusters as the plain CDS service serves them (their EDS points at it),
    /// state of the world and Delta: clients there ACK these.
    pub plain_clusters: String,
    pub plain_delta_clusters: String,
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
    /// Members in the last answer when it was over `--max-records` (then cut to it).
    pub capped_from: Option<usize>,
    /// Set when a reload removed the upstream: its members drain, then it goes.
    pub removed_at_unix_ms: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct MemberReport {
    pub address: String,
    pub hostname: String,
    /// The SRV priority value (0 for A records).
    pub priority: u16,
    /// Envoy's priority level: the rank of `priority` among the upstream's members.
    pub level: u32,
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
    /// `truncated`, `malformed`, `error`).
    pub result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl StatusReport {
    pub fn new(
        shim: &ShimInfo,
        discovery: &DiscoveryState,
        snapshot: &Snapshot,
        clients: &[ClientInfo],
        last_reload: Option<&LastReload>,
    ) -> Self {
        let upstreams = discovery
            .upstreams()
            .map(|state| {
                (
                    state,
                    priority_levels(
                        state
                            .members
                            .iter()
                            .chain(state.draining.iter().map(|d| &d.member)),
                    ),
                )
            })
            .map(|(state, levels)| UpstreamReport {
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
                        level: levels.get(&m.priority).copied().unwrap_or(0),
                        weight: m.weight,
                        draining: until.is_some(),
                        drain_until_unix_ms: until.map(unix_ms),
                    })
                    .collect(),
                stale_since_unix_ms: state.stale_since.map(unix_ms),
                empty_answers: state.empty_answers,
                capped_from: state.capped_from,
                removed_at_unix_ms: state.removed_at.map(unix_ms),
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
        let cds = |source| {
            let clusters = snapshot.resources_for(ResourceType::Cluster, source);
            clusters.version.clone()
        };
        StatusReport {
            generated_at_unix_ms: unix_ms(SystemTime::now()),
            shim: ShimReport {
                version: crate::VERSION,
                started_at_unix_ms: unix_ms(shim.started_at),
                nameservers: shim.nameservers.iter().map(|n| n.to_string()).collect(),
                start_interval_ms: millis(shim.interval),
                drain_ms: millis(discovery.policy().drain),
            },
            connected_streams: clients.len(),
            clients: clients.iter().map(client_report).collect(),
            versions: Versions {
                clusters: snapshot.version(ResourceType::Cluster).to_string(),
                plain_clusters: cds(EdsSource::Grpc),
                plain_delta_clusters: cds(EdsSource::DeltaGrpc),
                endpoints: snapshot.version(ResourceType::Endpoint).to_string(),
            },
            upstreams,
            last_reload: last_reload.map(|reload| ReloadReport {
                at_unix_ms: unix_ms(reload.at),
                result: if reload.error.is_some() {
                    "error"
                } else {
                    "ok"
                },
                error: reload.error.clone(),
                restart_required: reload.restart_required.clone(),
            }),
        }
    }
}

fn client_report(info: &ClientInfo) -> ClientReport {
    ClientReport {
        service: info.service,
        node: info.node.clone(),
        peer: info.peer.map(|p| p.to_string()),
        connected_at_unix_ms: unix_ms(info.connected_at),
        acked: info.acked.clone(),
        last_nack: info.last_nack.as_ref().map(|n| NackReport {
            r#type: n.r#type,
            rejected_version: n.rejected_version.clone(),
            message: n.message.clone(),
            at_unix_ms: unix_ms(n.at),
        }),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::resolve::ResolveError;
    use crate::discovery::RoundResults;
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
        let client = ClientInfo {
            service: "ADS",
            node: "envoy-1".into(),
            peer: None,
            connected_at: at,
            acked: [("CDS", "v1".to_string())].into_iter().collect(),
            last_nack: None,
        };
        let reload = LastReload {
            at,
            error: Some("config key interval: invalid value \"soon\"".into()),
            restart_required: vec![],
        };
        let shim = ShimInfo {
            started_at: at,
            nameservers: vec!["127.0.0.1:53".parse().unwrap()],
            interval: Duration::from_secs(5),
        };
        let report = StatusReport::new(&shim, &state, &snapshot, &[client], Some(&reload));
        let json = serde_json::to_value(report).unwrap();
        assert_eq!(json["last_reload"]["result"], "error");
        assert_eq!(json["last_reload"]["at_unix_ms"], 1_500);
        assert!(json["last_reload"]["error"]
            .as_str()
            .unwrap()
            .contains("soon"));

        assert_eq!(json["shim"]["version"], crate::VERSION);
        assert_eq!(json["shim"]["nameservers"][0], "127.0.0.1:53");
        assert_eq!(json["shim"]["start_interval_ms"], 5_000);
        assert_eq!(json["connected_streams"], 1);
        assert_eq!(json["clients"][0]["node"], "envoy-1");
        assert_eq!(json["clients"][0]["acked"]["CDS"], "v1");
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
