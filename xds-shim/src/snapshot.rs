//! The immutable, versioned xDS state served to every stream (go-control-plane style).
//!
//! A snapshot is built by a pure function of the discovered membership. Each resource type
//! carries a version that is a hash of its content, so replicas fed the same DNS answers
//! publish identical versions and a reconnecting Envoy is not sent what it already has.

use std::collections::BTreeMap;

use envoy_types::pb::google::protobuf::Any;
use envoy_types::util::pack_any;
use prost::Message;
use sha2::{Digest, Sha256};

use crate::config_file::UpstreamSettings;
use crate::member::{self, Member};
use crate::resources::{self, TlsTarget};

pub const CLUSTER_TYPE_URL: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
pub const ENDPOINT_TYPE_URL: &str =
    "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";

/// The xDS resource types the shim serves. Listeners and routes stay with the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceType {
    Cluster,
    Endpoint,
}

impl ResourceType {
    pub const ALL: [ResourceType; 2] = [ResourceType::Cluster, ResourceType::Endpoint];

    pub fn type_url(self) -> &'static str {
        match self {
            ResourceType::Cluster => CLUSTER_TYPE_URL,
            ResourceType::Endpoint => ENDPOINT_TYPE_URL,
        }
    }

    pub fn from_type_url(url: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.type_url() == url)
    }

    /// Short name for logs and status output.
    pub fn short_name(self) -> &'static str {
        match self {
            ResourceType::Cluster => "CDS",
            ResourceType::Endpoint => "EDS",
        }
    }
}

/// What discovery currently believes one upstream consists of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// Live and draining members.
    pub members: Vec<Member>,
    /// The upstream's own cluster settings (connect timeout, circuit breakers).
    pub settings: UpstreamSettings,
    /// Set for `https://` upstreams.
    pub tls: Option<TlsTarget>,
}

/// All resources of one type, keyed by name, with their content version.
#[derive(Debug, Clone, PartialEq)]
pub struct Resources {
    pub version: String,
    pub by_name: BTreeMap<String, Any>,
    /// Each resource's own content version, for Delta xDS.
    pub resource_versions: BTreeMap<String, String>,
}

impl Resources {
    fn new(by_name: BTreeMap<String, Any>) -> Self {
        let resource_versions = by_name
            .iter()
            .map(|(name, any)| {
                let digest = Sha256::digest(any.encode_to_vec());
                (name.clone(), hex16(&digest))
            })
            .collect();
        Resources {
            version: content_version(&by_name),
            by_name,
            resource_versions,
        }
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
}

#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    clusters: Resources,
    /// The same clusters, pointing at the plain EDS service instead of ADS.
    grpc_clusters: Resources,
    endpoints: Resources,
    members: BTreeMap<String, Membership>,
}

impl Snapshot {
    /// Builds every resource from `members` (cluster name → membership). Clusters exist for
    /// every configured upstream, even before its first successful resolution, so routes to
    /// it answer 503 "no healthy upstream" rather than "unknown cluster".
    pub fn build(mut members: BTreeMap<String, Membership>) -> Self {
        // Canonical order, so equal memberships give equal snapshots whatever the input order.
        for membership in members.values_mut() {
            membership.members = member::canonical(membership.members.drain(..));
        }
        let clusters_for = |source| {
            members
                .iter()
                .map(|(name, m)| {
                    let cluster = resources::cluster(name, source, &m.settings, m.tls.as_ref());
                    (name.clone(), pack_any(cluster))
                })
                .collect()
        };
        let endpoints = members
            .iter()
            .map(|(name, m)| {
                let cla = resources::load_assignment(name, &m.members);
                (name.clone(), pack_any(cla))
            })
            .collect();
        Snapshot {
            clusters: Resources::new(clusters_for(EdsSource::Ads)),
            grpc_clusters: Resources::new(clusters_for(EdsSource::Grpc)),
            endpoints: Resources::new(endpoints),
            members,
        }
    }

    pub fn empty() -> Self {
        Self::build(BTreeMap::new())
    }

    /// The resources ADS clients get.
    pub fn resources(&self, kind: ResourceType) -> &Resources {
        self.resources_for(kind, EdsSource::Ads)
    }

    /// The resources of `kind` for clients whose clusters fetch endpoints from `source`.
    pub fn resources_for(&self, kind: ResourceType, source: EdsSource) -> &Resources {
        match (kind, source) {
            (ResourceType::Cluster, EdsSource::Ads) => &self.clusters,
            (ResourceType::Cluster, EdsSource::Grpc) => &self.grpc_clusters,
            (ResourceType::Endpoint, _) => &self.endpoints,
        }
    }

    pub fn version(&self, kind: ResourceType) -> &str {
        &self.resources(kind).version
    }

    pub fn members(&self) -> &BTreeMap<String, Membership> {
        &self.members
    }

    /// True when any served version differs, i.e. when streams have something to push.
    pub fn versions_differ(&self, other: &Snapshot) -> bool {
        ResourceType::ALL
            .into_iter()
            .any(|t| self.version(t) != other.version(t))
            || self.grpc_clusters.version != other.grpc_clusters.version
    }
}

/// First 16 hex digits of SHA-256 over (name, encoded resource) pairs in name order.
/// Lengths are mixed in so that no two different sets can concatenate to the same bytes.
fn content_version(by_name: &BTreeMap<String, Any>) -> String {
    let mut hasher = Sha256::new();
    for (name, any) in by_name {
        let bytes = any.encode_to_vec();
        hasher.update((name.len() as u64).to_be_bytes());
        hasher.update(name.as_bytes());
        hasher.update((bytes.len() as u64).to_be_bytes());
        hasher.update(&bytes);
    }
    hex16(&hasher.finalize())
}

fn hex16(digest: &[u8]) -> String {
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn membership(host: &str, addrs: &[&str]) -> Membership {
        let ips: Vec<std::net::SocketAddr> = addrs.iter().map(|a| a.parse().unwrap()).collect();
        let members = ips
            .iter()
            .map(|addr| Member {
                priority: 0,
                addr: *addr,
                hostname: host.to_string(),
                weight: None,
                draining: false,
            })
            .collect();
        Membership {
            members,
            settings: UpstreamSettings::default(),
            tls: None,
        }
    }

    fn members(entries: &[(&str, &str, &[&str])]) -> BTreeMap<String, Membership> {
        entries
            .iter()
            .map(|(name, host, addrs)| (name.to_string(), membership(host, addrs)))
            .collect()
    }

    #[test]
    fn builds_one_cluster_and_one_assignment_per_upstream() {
        let snap = Snapshot::build(members(&[
            ("dns+a.test:80", "a.test", &["10.0.0.1:80"]),
            ("dns+b.test:81", "b.test", &[]),
        ]));
        for t in ResourceType::ALL {
            let names: Vec<&String> = snap.resources(t).by_name.keys().collect();
            assert_eq!(names, ["dns+a.test:80", "dns+b.test:81"]);
            assert!(snap
                .resources(t)
                .by_name
                .values()
                .all(|any| any.type_url == t.type_url()));
        }
    }

    #[test]
    fn versions_are_content_derived_and_stable() {
        let a = Snapshot::build(members(&[
            ("dns+a.test:80", "a.test", &["10.0.0.1:80", "10.0.0.2:80"]),
            ("dns+b.test:80", "b.test", &["10.0.0.3:80"]),
        ]));
        // Same content, different address order: same versions.
        let b = Snapshot::build(members(&[
            ("dns+b.test:80", "b.test", &["10.0.0.3:80"]),
            ("dns+a.test:80", "a.test", &["10.0.0.2:80", "10.0.0.1:80"]),
        ]));
        assert_eq!(a, b);
        assert!(!a.versions_differ(&b));
        assert_eq!(a.version(ResourceType::Cluster).len(), 16);

        // A membership change moves EDS only; the cluster set is unchanged.
        let c = Snapshot::build(members(&[
            ("dns+a.test:80", "a.test", &["10.0.0.1:80"]),
            ("dns+b.test:80", "b.test", &["10.0.0.3:80"]),
        ]));
        assert_eq!(
            a.version(ResourceType::Cluster),
            c.version(ResourceType::Cluster)
        );
        assert_ne!(
            a.version(ResourceType::Endpoint),
            c.version(ResourceType::Endpoint)
        );
        assert!(a.versions_differ(&c));

        // A new upstream moves both.
        let d = Snapshot::build(members(&[
            ("dns+a.test:80", "a.test", &["10.0.0.1:80", "10.0.0.2:80"]),
            ("dns+b.test:80", "b.test", &["10.0.0.3:80"]),
            ("dns+c.test:80", "c.test", &[]),
        ]));
        assert_ne!(
            a.version(ResourceType::Cluster),
            d.version(ResourceType::Cluster)
        );
        assert_ne!(
            a.version(ResourceType::Endpoint),
            d.version(ResourceType::Endpoint)
        );
    }

    #[test]
    fn version_is_a_known_value_for_a_known_input() {
        // Pins the hash recipe: replicas of different builds must still agree.
        let empty = Snapshot::empty();
        assert_eq!(
            empty.version(ResourceType::Cluster),
            "e3b0c44298fc1c14" // sha256("")
        );
        let one = Snapshot::build(members(&[("dns+a.test:80", "a.test", &["10.0.0.1:80"])]));
        assert_eq!(one.version(ResourceType::Cluster), "5cf512d7586338cb");
        assert_eq!(one.version(ResourceType::Endpoint), "8753ca3c7c416151");
    }

    #[test]
    fn type_urls_round_trip() {
        for t in ResourceType::ALL {
            assert_eq!(ResourceType::from_type_url(t.type_url()), Some(t));
        }
        assert_eq!(
            ResourceType::from_type_url("type.googleapis.com/envoy.config.listener.v3.Listener"),
            None
        );
    }
}
