//! The immutable, versioned xDS state served to every stream (go-control-plane style).
//!
//! A snapshot is a pure function of the discovered membership. Each resource carries a
//! version that is a hash of its content, and each resource type a version that combines
//! those, so replicas fed the same DNS answers publish identical versions and a
//! reconnecting Envoy is not sent what it already has.
//!
//! Snapshots are updated, not rebuilt: resources are shared (`Arc`) between a snapshot
//! and the next, and only the clusters whose membership changed are encoded and hashed
//! again. With 10,000 upstreams, one changed cluster costs one encode, not 30,000.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use envoy_types::pb::google::protobuf::Any;
use envoy_types::util::pack_any;
use prost::Message;
use sha2::{Digest, Sha256};

use crate::model::membership::Membership;
use crate::xds::resources::{self, Balancing, EdsSource};

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

/// One encoded resource and its content version.
#[derive(Debug, PartialEq)]
pub struct Versioned {
    pub resource: Any,
    /// First 16 hex digits of SHA-256 over the encoded resource (its Delta xDS version).
    pub version: String,
    digest: [u8; 32],
}

impl Versioned {
    fn new(resource: Any) -> Arc<Self> {
        let digest: [u8; 32] = Sha256::digest(resource.encode_to_vec()).into();
        Arc::new(Versioned {
            version: hex16(&digest),
            resource,
            digest,
        })
    }
}

/// Updates remembered per resource type, so a Delta stream that is up to date with a
/// recent snapshot checks only the resources changed since, not all of them.
const CHANGE_LOG_LEN: usize = 64;

/// Which state of a resource set a stream has seen: unique in the process, so two sets
/// updated apart from one base never share one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generation(u64);

impl Generation {
    fn next() -> Self {
        static SERIAL: AtomicU64 = AtomicU64::new(0);
        Generation(SERIAL.fetch_add(1, Ordering::Relaxed))
    }
}

/// All resources of one type, keyed by name, with the version of the whole set.
#[derive(Debug, Clone)]
pub struct Resources {
    pub version: String,
    /// Shared between snapshots until a resource of this type changes.
    pub by_name: Arc<BTreeMap<String, Arc<Versioned>>>,
    generation: Generation,
    /// (generation before, names the update changed), oldest first; the last entry's
    /// update produced this set.
    changes: Arc<VecDeque<(Generation, Arc<[String]>)>>,
}

/// Equal content, whatever the history.
impl PartialEq for Resources {
    fn eq(&self, other: &Self) -> bool {
        self.version == other.version && self.by_name == other.by_name
    }
}

impl Resources {
    fn empty() -> Self {
        Resources {
            version: content_version(&BTreeMap::new()),
            by_name: Arc::default(),
            generation: Generation::next(),
            changes: Arc::default(),
        }
    }

    /// These resources with `changed` put in and `removed` taken out; nothing moves
    /// (version, generation) unless a resource's content actually did.
    fn with(&self, changed: Vec<(String, Arc<Versioned>)>, removed: &[String]) -> Self {
        let changed: Vec<_> = changed
            .into_iter()
            .filter(|(name, new)| self.by_name.get(name).map(|old| old.digest) != Some(new.digest))
            .collect();
        let removed: Vec<&String> = removed
            .iter()
            .filter(|name| self.by_name.contains_key(*name))
            .collect();
        if changed.is_empty() && removed.is_empty() {
            return self.clone();
        }
        let mut changes = VecDeque::clone(&self.changes);
        // Removed names are logged too: a Delta stream tells its client they went.
        let names = changed
            .iter()
            .map(|(name, _)| name)
            .chain(removed.iter().copied());
        changes.push_back((self.generation, names.cloned().collect()));
        if changes.len() > CHANGE_LOG_LEN {
            changes.pop_front();
        }
        let mut by_name = BTreeMap::clone(&self.by_name);
        by_name.extend(changed);
        for name in removed {
            by_name.remove(name);
        }
        Resources {
            version: content_version(&by_name),
            by_name: Arc::new(by_name),
            generation: Generation::next(),
            changes: Arc::new(changes),
        }
    }

    pub fn generation(&self) -> Generation {
        self.generation
    }

    /// The names that may differ from what they were at `seen`, or `None` when that is
    /// not known (another lineage, or older than the change log): then check them all.
    pub fn changed_since(&self, seen: Generation) -> Option<BTreeSet<&str>> {
        if seen == self.generation {
            return Some(BTreeSet::new());
        }
        // The update made on top of `seen`, if this set descends from it and the log
        // still has it; every later update counts too.
        let from = self
            .changes
            .iter()
            .position(|(before, _)| *before == seen)?;
        let names = self
            .changes
            .iter()
            .skip(from)
            .flat_map(|(_, names)| names.iter().map(String::as_str));
        Some(names.collect())
    }
}

/// The resources one upstream contributes.
struct Encoded {
    cluster: Arc<Versioned>,
    native_cluster: Arc<Versioned>,
    grpc_cluster: Arc<Versioned>,
    delta_grpc_cluster: Arc<Versioned>,
    endpoints: Arc<Versioned>,
}

impl Encoded {
    fn new(name: &str, m: &Membership) -> Self {
        let cluster = |source, balancing| {
            Versioned::new(pack_any(resources::cluster(
                name,
                source,
                balancing,
                &m.settings,
                m.tls.as_ref(),
            )))
        };
        let header = Balancing::EndpointHeader;
        Encoded {
            cluster: cluster(EdsSource::Ads, header),
            native_cluster: cluster(EdsSource::Ads, Balancing::Native),
            grpc_cluster: cluster(EdsSource::Grpc, header),
            delta_grpc_cluster: cluster(EdsSource::DeltaGrpc, header),
            endpoints: Versioned::new(pack_any(resources::load_assignment(name, m.members()))),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    clusters: Resources,
    /// The ADS clusters with [`Balancing::Native`]. (Plain CDS clients, meshes whose ADS
    /// belongs to another control plane, always get the endpoint header.)
    native_clusters: Resources,
    /// The same clusters, pointing at the plain EDS service instead of ADS.
    grpc_clusters: Resources,
    /// And at the plain EDS service over Delta.
    delta_grpc_clusters: Resources,
    endpoints: Resources,
    members: BTreeMap<String, Arc<Membership>>,
}

impl Snapshot {
    /// Builds every resource from `members` (cluster name → membership). Clusters exist for
    /// every configured upstream, even before its first successful resolution, so routes to
    /// it answer 503 "no healthy upstream" rather than "unknown cluster".
    pub fn build(members: BTreeMap<String, Membership>) -> Self {
        Self::empty().updated(members).unwrap_or_else(Self::empty)
    }

    pub fn empty() -> Self {
        Snapshot {
            clusters: Resources::empty(),
            native_clusters: Resources::empty(),
            grpc_clusters: Resources::empty(),
            delta_grpc_clusters: Resources::empty(),
            endpoints: Resources::empty(),
            members: BTreeMap::new(),
        }
    }

    /// This snapshot with the given clusters' memberships replaced (or added), or `None`
    /// when none of them differs from what is served. Only those clusters are encoded.
    pub fn updated(
        &self,
        changes: impl IntoIterator<Item = (String, Membership)>,
    ) -> Option<Snapshot> {
        self.updated_withdrawing(changes, &[])
    }

    /// [`updated`](Self::updated), also withdrawing the clusters named in `withdrawn`
    /// (upstreams a reload removed), or `None` when nothing differs.
    pub fn updated_withdrawing(
        &self,
        changes: impl IntoIterator<Item = (String, Membership)>,
        withdrawn: &[String],
    ) -> Option<Snapshot> {
        let withdrawn: Vec<String> = withdrawn
            .iter()
            .filter(|name| self.members.contains_key(*name))
            .cloned()
            .collect();
        let mut members = Vec::new();
        let mut clusters = Vec::new();
        let mut native_clusters = Vec::new();
        let mut grpc_clusters = Vec::new();
        let mut delta_grpc_clusters = Vec::new();
        let mut endpoints = Vec::new();
        for (name, membership) in changes {
            if self.members.get(&name).map(|m| &**m) == Some(&membership) {
                continue;
            }
            let encoded = Encoded::new(&name, &membership);
            clusters.push((name.clone(), encoded.cluster));
            native_clusters.push((name.clone(), encoded.native_cluster));
            grpc_clusters.push((name.clone(), encoded.grpc_cluster));
            delta_grpc_clusters.push((name.clone(), encoded.delta_grpc_cluster));
            endpoints.push((name.clone(), encoded.endpoints));
            members.push((name, Arc::new(membership)));
        }
        if members.is_empty() && withdrawn.is_empty() {
            return None;
        }
        let gone = &withdrawn;
        let mut next = Snapshot {
            clusters: self.clusters.with(clusters, gone),
            native_clusters: self.native_clusters.with(native_clusters, gone),
            grpc_clusters: self.grpc_clusters.with(grpc_clusters, gone),
            delta_grpc_clusters: self.delta_grpc_clusters.with(delta_grpc_clusters, gone),
            endpoints: self.endpoints.with(endpoints, gone),
            members: self.members.clone(),
        };
        next.members.extend(members);
        for name in gone {
            next.members.remove(name);
        }
        Some(next)
    }

    /// The resources ADS clients get.
    pub fn resources(&self, kind: ResourceType) -> &Resources {
        self.resources_for(kind, EdsSource::Ads)
    }

    /// The resources of `kind` for clients whose clusters fetch endpoints from `source`.
    pub fn resources_for(&self, kind: ResourceType, source: EdsSource) -> &Resources {
        self.served(kind, source, Balancing::EndpointHeader)
    }

    /// The resources of `kind` for clients whose clusters fetch endpoints from `source`
    /// and balance with `balancing` (honoured for ADS clients).
    pub fn served(
        &self,
        kind: ResourceType,
        source: EdsSource,
        balancing: Balancing,
    ) -> &Resources {
        match (kind, source) {
            (ResourceType::Cluster, EdsSource::Ads) if balancing == Balancing::Native => {
                &self.native_clusters
            }
            (ResourceType::Cluster, EdsSource::Ads) => &self.clusters,
            (ResourceType::Cluster, EdsSource::Grpc) => &self.grpc_clusters,
            (ResourceType::Cluster, EdsSource::DeltaGrpc) => &self.delta_grpc_clusters,
            (ResourceType::Endpoint, _) => &self.endpoints,
        }
    }

    pub fn version(&self, kind: ResourceType) -> &str {
        &self.resources(kind).version
    }

    pub fn members(&self) -> &BTreeMap<String, Arc<Membership>> {
        &self.members
    }

    /// True when any served version differs, i.e. when streams have something to push.
    pub fn versions_differ(&self, other: &Snapshot) -> bool {
        ResourceType::ALL
            .into_iter()
            .any(|t| self.version(t) != other.version(t))
            || self.native_clusters.version != other.native_clusters.version
            || self.grpc_clusters.version != other.grpc_clusters.version
            || self.delta_grpc_clusters.version != other.delta_grpc_clusters.version
    }
}

/// First 16 hex digits of SHA-256 over (name, resource digest) pairs in name order.
/// The name length is mixed in so that no two different sets hash the same bytes.
fn content_version(by_name: &BTreeMap<String, Arc<Versioned>>) -> String {
    let mut hasher = Sha256::new();
    for (name, resource) in by_name {
        hasher.update((name.len() as u64).to_be_bytes());
        hasher.update(name.as_bytes());
        hasher.update(resource.digest);
    }
    hex16(&hasher.finalize())
}

fn hex16(digest: &[u8]) -> String {
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::member::Member;
    use crate::model::settings::UpstreamSettings;

    fn membership(host: &str, addrs: &[&str]) -> Membership {
        let ips: Vec<std::net::SocketAddr> = addrs.iter().map(|a| a.parse().unwrap()).collect();
        let members: Vec<Member> = ips
            .iter()
            .map(|addr| Member {
                priority: 0,
                addr: *addr,
                hostname: host.to_string(),
                weight: None,
                draining: false,
            })
            .collect();
        Membership::new(members, UpstreamSettings::default(), None)
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
                .all(|v| v.resource.type_url == t.type_url()));
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
        assert_eq!(one.version(ResourceType::Cluster), "a8a0fcac82689527");
        assert_eq!(one.version(ResourceType::Endpoint), "2ebb7b0794f06f7f");
    }

    #[test]
    fn an_update_equals_a_full_build_and_shares_what_did_not_change() {
        let before = members(&[
            ("dns+a.test:80", "a.test", &["10.0.0.1:80"]),
            ("dns+b.test:80", "b.test", &["10.0.0.2:80"]),
        ]);
        let old = Snapshot::build(before.clone());
        let mut after = before.clone();
        after.insert(
            "dns+b.test:80".into(),
            membership("b.test", &["10.0.0.3:80", "10.0.0.2:80"]),
        );
        let changed = ("dns+b.test:80".to_string(), after["dns+b.test:80"].clone());
        let new = old.updated([changed]).unwrap();
        assert_eq!(new, Snapshot::build(after));
        // The unchanged cluster's resources are the same allocation; the cluster set is too,
        // since only endpoints moved.
        let a = "dns+a.test:80";
        let eds = |s: &Snapshot| Arc::clone(&s.resources(ResourceType::Endpoint).by_name[a]);
        assert!(Arc::ptr_eq(&eds(&old), &eds(&new)));
        assert!(Arc::ptr_eq(
            &old.resources(ResourceType::Cluster).by_name,
            &new.resources(ResourceType::Cluster).by_name
        ));
        assert_ne!(
            old.version(ResourceType::Endpoint),
            new.version(ResourceType::Endpoint)
        );
        // Nothing new: no snapshot.
        let same = ("dns+a.test:80".to_string(), before["dns+a.test:80"].clone());
        assert!(new.updated([same]).is_none());
    }

    #[test]
    fn a_withdrawn_cluster_leaves_every_set_and_the_change_log() {
        let both = members(&[
            ("dns+a.test:80", "a.test", &["10.0.0.1:80"]),
            ("dns+b.test:80", "b.test", &["10.0.0.2:80"]),
        ]);
        let old = Snapshot::build(both.clone());
        let gone = ["dns+b.test:80".to_string()];
        let new = old.updated_withdrawing([], &gone).unwrap();
        let mut only_a = both;
        only_a.remove("dns+b.test:80");
        assert_eq!(new, Snapshot::build(only_a));
        for kind in [ResourceType::Cluster, ResourceType::Endpoint] {
            let since = new
                .resources(kind)
                .changed_since(old.resources(kind).generation());
            assert_eq!(since, Some(BTreeSet::from(["dns+b.test:80"])));
        }
        // Withdrawing what is not served changes nothing.
        assert!(new.updated_withdrawing([], &gone).is_none());
    }

    #[test]
    fn changed_since_follows_descent_and_knows_when_it_cannot() {
        let base = Snapshot::build(members(&[
            ("dns+a.test:80", "a.test", &["10.0.0.1:80"]),
            ("dns+b.test:80", "b.test", &["10.0.0.2:80"]),
        ]));
        let eds = |s: &Snapshot| s.resources(ResourceType::Endpoint).clone();
        let change = |s: &Snapshot, name: &str, ip: &str| {
            let host = &name[4..10];
            s.updated([(name.to_string(), membership(host, &[ip]))])
                .unwrap()
        };
        let seen = eds(&base).generation();
        assert_eq!(eds(&base).changed_since(seen), Some(BTreeSet::new()));
        // Two updates made apart from one base: each knows only its own change.
        let left = change(&base, "dns+a.test:80", "10.0.0.9:80");
        let right = change(&base, "dns+b.test:80", "10.0.0.9:80");
        let names = |s: &Snapshot, seen| {
            eds(s)
                .changed_since(seen)
                .map(|n| n.into_iter().map(str::to_string).collect::<Vec<_>>())
        };
        assert_eq!(names(&left, seen), Some(vec!["dns+a.test:80".to_string()]));
        assert_eq!(names(&right, seen), Some(vec!["dns+b.test:80".to_string()]));
        // Not descended from what was seen: unknown, so the caller checks everything.
        assert_eq!(names(&right, eds(&left).generation()), None);
        let further = change(&left, "dns+b.test:80", "10.0.0.8:80");
        assert_eq!(names(&further, seen).map(|n| n.len()), Some(2));
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
