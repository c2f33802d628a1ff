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
mod tests;
