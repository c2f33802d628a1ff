//! A thin wrapper around hickory: fresh answers every time, errors sorted into the few
//! kinds the refresh policy cares about.
//!
//! The shim re-resolves on its own schedule, so hickory's cache is switched off: a cached
//! answer would hide membership changes for up to a TTL.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use hickory_resolver::TokioResolver;

use crate::discovery::resolv_conf::ResolvConf;
pub use crate::model::member::SrvRecord;

const ATTEMPTS: usize = 2;

/// How the resolver queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Per query and attempt; with two attempts a dead server costs twice this.
    pub timeout: Duration,
    /// Ask for AAAA as well as A.
    pub ipv6: bool,
    /// Queries in flight at once, over all names.
    pub max_in_flight: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            timeout: Duration::from_secs(2),
            ipv6: false,
            max_in_flight: 64,
        }
    }
}

/// Why a name produced no addresses. `NxDomain` and `NoRecords` are answers ("nothing
/// there"); the rest mean the question went unanswered. Later staleness rules treat the two
/// groups differently.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("no such domain (NXDOMAIN)")]
    NxDomain,
    #[error("no records")]
    NoRecords,
    #[error("server failure (SERVFAIL)")]
    ServFail,
    #[error("query refused (REFUSED)")]
    Refused,
    #[error("timed out")]
    Timeout,
    /// The answer did not fit UDP and the TCP retry failed or was truncated too (more
    /// than a 64 KiB message holds).
    #[error("answer truncated, and not to be had whole over TCP")]
    Truncated,
    /// A reply with the query's ID that does not decode as a DNS message.
    #[error("malformed reply: {0}")]
    Malformed(String),
    #[error("{0}")]
    Other(String),
}

impl ResolveError {
    /// NXDOMAIN or no records: the server answered "nothing there". Everything else means
    /// the question went unanswered and is worth retrying soon.
    pub fn is_answer(&self) -> bool {
        matches!(self, ResolveError::NxDomain | ResolveError::NoRecords)
    }

    /// A short stable label for status output and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            ResolveError::NxDomain => "nxdomain",
            ResolveError::NoRecords => "no_records",
            ResolveError::ServFail => "servfail",
            ResolveError::Refused => "refused",
            ResolveError::Timeout => "timeout",
            ResolveError::Truncated => "truncated",
            ResolveError::Malformed(_) => "malformed",
            ResolveError::Other(_) => "error",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot build the DNS resolver: {0}")]
    Resolver(#[from] NetError),
}

/// One name's answer with the smallest TTL of its records, for the TTL-aware schedule:
/// the answer carries its own lifetime, so the resolver remembers nothing between rounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer<T> {
    pub result: Result<T, ResolveError>,
    /// `None`: no records to take it from (a failure, "nothing there"), or not known.
    pub ttl: Option<Duration>,
}

/// An answer whose TTL is not known.
impl<T> From<Result<T, ResolveError>> for Answer<T> {
    fn from(result: Result<T, ResolveError>) -> Self {
        Answer { result, ttl: None }
    }
}

/// Anything that can answer "which IPv4 addresses / SRV records does this name have right
/// now". The refresh loop depends on this, not on hickory, so it can be tested with a fake.
pub trait AddressResolver: Send + Sync + 'static {
    /// A records, plus AAAA when IPv6 is on.
    fn resolve_host(&self, host: &str) -> impl Future<Output = Answer<Vec<IpAddr>>> + Send;

    fn resolve_srv(&self, name: &str) -> impl Future<Output = Answer<Vec<SrvRecord>>> + Send;
}

pub struct DnsResolver {
    inner: TokioResolver,
    ipv6: bool,
    /// Bounds the queries in flight, so a large config does not flood the servers.
    permits: tokio::sync::Semaphore,
}

impl DnsResolver {
    /// Queries exactly these servers (UDP, falling back to TCP on truncation), with no
    /// search list and no /etc/hosts: what you ask is what the servers answer.
    pub fn with_nameservers(
        servers: &[SocketAddr],
        settings: Settings,
    ) -> Result<Self, BuildError> {
        let name_servers = servers.iter().map(|s| name_server(*s)).collect();
        let config = ResolverConfig::from_name_servers(name_servers);
        let mut opts = base_options(settings);
        opts.use_hosts_file = ResolveHosts::Never;
        Self::build(config, opts, settings)
    }

    /// Behaves like the system resolver: resolv.conf servers, search list and ndots, and
    /// /etc/hosts (read once, at start).
    pub fn with_system_config(conf: &ResolvConf, settings: Settings) -> Result<Self, BuildError> {
        let name_servers = conf
            .nameservers
            .iter()
            .map(|ip| name_server(SocketAddr::new(*ip, 53)))
            .collect();
        let search = conf
            .search
            .iter()
            .filter_map(|domain| Name::from_str_relaxed(domain).ok())
            .collect();
        let config = ResolverConfig::from_parts(None, search, name_servers);
        let mut opts = base_options(settings);
        if let Some(ndots) = conf.ndots {
            opts.ndots = ndots;
        }
        opts.use_hosts_file = ResolveHosts::Always;
        Self::build(config, opts, settings)
    }

    fn build(
        config: ResolverConfig,
        opts: ResolverOpts,
        settings: Settings,
    ) -> Result<Self, BuildError> {
        let inner = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(opts)
            .build()?;
        Ok(DnsResolver {
            inner,
            ipv6: settings.ipv6,
            permits: tokio::sync::Semaphore::new(settings.max_in_flight.max(1)),
        })
    }

    /// A permit for one query; the semaphore is never closed.
    async fn permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, ResolveError> {
        self.permits
            .acquire()
            .await
            .map_err(|_| ResolveError::Other("resolver shut down".into()))
    }

    /// Runs one query once a permit is free; its error sorted into a [`ResolveError`].
    async fn limited<T>(
        &self,
        query: impl Future<Output = Result<T, NetError>>,
    ) -> Result<T, ResolveError> {
        let _permit = self.permit().await?;
        query.await.map_err(classify)
    }

    /// The addresses of one family (`rtype` A or AAAA).
    async fn addresses(&self, host: &str, rtype: RecordType) -> Answer<Vec<IpAddr>> {
        let lookup = match self.limited(self.inner.lookup(host, rtype)).await {
            Ok(lookup) => lookup,
            Err(error) => return Err(error).into(),
        };
        // CNAME chains arrive as extra answers; only the address records are members.
        let addresses = lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
                _ => None,
            });
        Answer {
            result: sorted_unique(addresses),
            ttl: smallest_ttl(lookup.answers()),
        }
    }
}

/// Joins the A and AAAA answers of one name. An unanswered question fails the whole (a
/// v6 timeout must not drain the v6 members); "nothing there" for one family is fine.
fn join_families(
    a: Result<Vec<IpAddr>, ResolveError>,
    aaaa: Result<Vec<IpAddr>, ResolveError>,
) -> Result<Vec<IpAddr>, ResolveError> {
    match (a, aaaa) {
        (Err(e), _) | (_, Err(e)) if !e.is_answer() => Err(e),
        (Ok(a), Ok(aaaa)) => sorted_unique(a.into_iter().chain(aaaa)),
        (Ok(found), Err(_)) | (Err(_), Ok(found)) => Ok(found),
        (Err(ResolveError::NxDomain), _) | (_, Err(ResolveError::NxDomain)) => {
            Err(ResolveError::NxDomain)
        }
        (Err(e), Err(_)) => Err(e),
    }
}

fn base_options(settings: Settings) -> ResolverOpts {
    let mut opts = ResolverOpts::default();
    // Capacity 0 disables hickory's response cache entirely (moka stores nothing).
    opts.cache_size = 0;
    opts.timeout = settings.timeout;
    opts.attempts = ATTEMPTS;
    opts
}

fn name_server(addr: SocketAddr) -> NameServerConfig {
    let mut udp = ConnectionConfig::udp();
    udp.port = addr.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = addr.port();
    NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
}

impl AddressResolver for DnsResolver {
    async fn resolve_host(&self, host: &str) -> Answer<Vec<IpAddr>> {
        if !self.ipv6 {
            return self.addresses(host, RecordType::A).await;
        }
        let (a, aaaa) = futures::join!(
            self.addresses(host, RecordType::A),
            self.addresses(host, RecordType::AAAA)
        );
        // The joined answer lasts as long as its shorter-lived family.
        let ttl = a.ttl.into_iter().chain(aaaa.ttl).min();
        Answer {
            result: join_families(a.result, aaaa.result),
            ttl,
        }
    }

    async fn resolve_srv(&self, name: &str) -> Answer<Vec<SrvRecord>> {
        let lookup = match self.limited(self.inner.srv_lookup(name)).await {
            Ok(lookup) => lookup,
            Err(error) => return Err(error).into(),
        };
        let records = lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::SRV(srv) => Some(SrvRecord {
                    priority: srv.priority,
                    weight: srv.weight,
                    port: srv.port,
                    target: srv
                        .target
                        .to_ascii()
                        .trim_end_matches('.')
                        .to_ascii_lowercase(),
                }),
                _ => None,
            });
        Answer {
            result: usable_srv(records),
            ttl: smallest_ttl(lookup.answers()),
        }
    }
}

/// The smallest TTL among an answer's records; `None` when it has none.
fn smallest_ttl(records: &[hickory_resolver::proto::rr::Record]) -> Option<Duration> {
    let ttl = records.iter().map(|r| r.ttl).min()?;
    Some(Duration::from_secs(u64::from(ttl)))
}

/// Sorted and deduplicated. Target "." means "no service here" (RFC 2782) and port 0
/// cannot be connected to; both are dropped, and nothing left reads as an empty answer.
fn usable_srv(records: impl Iterator<Item = SrvRecord>) -> Result<Vec<SrvRecord>, ResolveError> {
    let mut records: Vec<SrvRecord> = records
        .filter(|r| !r.target.is_empty() && r.port != 0)
        .collect();
    records.sort_unstable();
    records.dedup();
    if records.is_empty() {
        return Err(ResolveError::NoRecords);
    }
    Ok(records)
}

/// Sorted and deduplicated so that equal answers in any order give equal snapshots.
fn sorted_unique(addresses: impl Iterator<Item = IpAddr>) -> Result<Vec<IpAddr>, ResolveError> {
    let mut addresses: Vec<IpAddr> = addresses.collect();
    addresses.sort_unstable();
    addresses.dedup();
    if addresses.is_empty() {
        return Err(ResolveError::NoRecords);
    }
    Ok(addresses)
}

fn classify(error: NetError) -> ResolveError {
    match &error {
        NetError::Timeout => ResolveError::Timeout,
        NetError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => ResolveError::Timeout,
        NetError::Dns(DnsError::NoRecordsFound(no_records)) => {
            if no_records.response_code == ResponseCode::NXDomain {
                ResolveError::NxDomain
            } else {
                ResolveError::NoRecords
            }
        }
        NetError::Dns(DnsError::ResponseCode(ResponseCode::ServFail)) => ResolveError::ServFail,
        NetError::Dns(DnsError::ResponseCode(ResponseCode::Refused)) => ResolveError::Refused,
        NetError::Truncated => ResolveError::Truncated,
        NetError::Proto(proto) => ResolveError::Malformed(proto.to_string()),
        _ => ResolveError::Other(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_resolver::net::NoRecords;
    use hickory_resolver::proto::op::Query;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn sorts_and_dedups() {
        let got = sorted_unique(ips(&["10.0.0.3", "10.0.0.1", "10.0.0.3"]).into_iter());
        assert_eq!(got, Ok(ips(&["10.0.0.1", "10.0.0.3"])));
        assert_eq!(
            sorted_unique(std::iter::empty()),
            Err(ResolveError::NoRecords)
        );
    }

    #[test]
    fn joins_address_families() {
        use ResolveError::*;
        let v4 = || Ok(ips(&["10.0.0.1"]));
        let v6 = || Ok(ips(&["::1"]));
        assert_eq!(join_families(v4(), v6()), Ok(ips(&["10.0.0.1", "::1"])));
        assert_eq!(join_families(v4(), Err(NoRecords)), v4());
        assert_eq!(join_families(Err(NxDomain), v6()), v6());
        assert_eq!(join_families(v4(), Err(Timeout)), Err(Timeout));
        assert_eq!(join_families(Err(ServFail), v6()), Err(ServFail));
        assert_eq!(join_families(Err(NoRecords), Err(NxDomain)), Err(NxDomain));
        assert_eq!(
            join_families(Err(NoRecords), Err(NoRecords)),
            Err(NoRecords)
        );
    }

    #[test]
    fn srv_drops_unusable_records() {
        let srv = |target: &str, port| SrvRecord {
            priority: 1,
            weight: 1,
            port,
            target: target.into(),
        };
        assert_eq!(
            usable_srv([srv("b", 80), srv("", 80), srv("a", 0), srv("b", 80)].into_iter()),
            Ok(vec![srv("b", 80)])
        );
        assert_eq!(
            usable_srv([srv("", 80)].into_iter()),
            Err(ResolveError::NoRecords)
        );
    }

    #[test]
    fn classifies_errors() {
        let nx = NoRecords::new(Query::default(), ResponseCode::NXDomain);
        assert_eq!(
            classify(NetError::Dns(DnsError::NoRecordsFound(nx))),
            ResolveError::NxDomain
        );
        let empty = NoRecords::new(Query::default(), ResponseCode::NoError);
        assert_eq!(
            classify(NetError::Dns(DnsError::NoRecordsFound(empty))),
            ResolveError::NoRecords
        );
        assert_eq!(
            classify(NetError::Dns(DnsError::ResponseCode(
                ResponseCode::ServFail
            ))),
            ResolveError::ServFail
        );
        assert_eq!(
            classify(NetError::Dns(DnsError::ResponseCode(ResponseCode::Refused))),
            ResolveError::Refused
        );
        assert_eq!(classify(NetError::Timeout), ResolveError::Timeout);
        assert_eq!(classify(NetError::Truncated).kind(), "truncated");
        let garbage = hickory_resolver::proto::op::Message::from_vec(&[0, 1, 0x81, 0x80, 0xff])
            .map_err(NetError::from)
            .unwrap_err();
        assert_eq!(classify(garbage).kind(), "malformed");
        assert_eq!(classify(NetError::NoConnections).kind(), "error");
    }
}
