//! An authoritative DNS server on loopback whose records tests change at will.

mod handler;
mod store;
mod zone;

use std::{
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, PoisonError, RwLock, RwLockWriteGuard,
    },
    time::Duration,
};

use hickory_proto::{
    op::{Message, Query},
    rr::{Name, RecordType},
};
use hickory_server::Server;

use self::{
    handler::Handler,
    store::Store,
    zone::{parse_zone, ZoneData, ZoneRecord},
};
use crate::{
    background::Background,
    error::{HarnessError, Result},
};

/// One SRV record's data. `target` is a domain name, with or without the trailing dot.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    pub target: String,
}

/// The IPv4 addresses among `addrs` (IPv6 ones skipped), as [`DnsServer::set_a`] takes them.
pub fn ipv4s<'a>(addrs: impl IntoIterator<Item = &'a SocketAddr>) -> Vec<Ipv4Addr> {
    addrs
        .into_iter()
        .filter_map(|addr| match addr.ip() {
            std::net::IpAddr::V4(v4) => Some(v4),
            std::net::IpAddr::V6(_) => None,
        })
        .collect()
}

/// How long a TCP client may stay idle before the server closes the connection.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves A, AAAA and SRV records over UDP and TCP on one port until dropped.
///
/// Every setter takes effect for the next query. Records are answered with TTL 1 unless
/// [`DnsServer::set_ttl`] or the zone file says otherwise.
pub struct DnsServer {
    addr: SocketAddr,
    store: Arc<RwLock<Store>>,
    queries: Arc<AtomicU64>,
    tcp_queries: Arc<AtomicU64>,
    _runtime: Background,
}

impl DnsServer {
    /// Starts on a free port of 127.0.0.1.
    pub fn start() -> Result<Self> {
        Self::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
    }

    /// Starts on `addr`; port 0 picks a port free for both UDP and TCP.
    pub fn start_on(addr: SocketAddr) -> Result<Self> {
        let (udp, tcp) = bind_udp_and_tcp(addr)?;
        let addr = udp
            .local_addr()
            .map_err(HarnessError::io("read DNS socket address"))?;
        let runtime = Background::start(&format!("dns-server {addr}"))?;
        let store = Arc::new(RwLock::new(Store::default()));
        let queries = Arc::new(AtomicU64::new(0));
        let tcp_queries = Arc::new(AtomicU64::new(0));

        // Registering std sockets with tokio and spawning the server tasks need a runtime context.
        let _context = runtime.handle().enter();
        let udp = tokio::net::UdpSocket::from_std(udp)
            .map_err(HarnessError::io(format!("register UDP {addr}")))?;
        let tcp = tokio::net::TcpListener::from_std(tcp)
            .map_err(HarnessError::io(format!("register TCP {addr}")))?;
        let mut server = Server::new(Handler {
            store: store.clone(),
            queries: queries.clone(),
            tcp_queries: tcp_queries.clone(),
        });
        server.register_socket(udp);
        server.register_listener(tcp, TCP_IDLE_TIMEOUT, 64);
        // The server's tasks live as long as `server`; keep it on the runtime thread.
        runtime.handle().spawn(async move {
            if let Err(error) = server.block_until_done().await {
                tracing::warn!(%error, "DNS server stopped");
            }
        });

        Ok(Self {
            addr,
            store,
            queries,
            tcp_queries,
            _runtime: runtime,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces the A records of `name`; an empty slice removes them.
    pub fn set_a(&self, name: &str, ips: &[Ipv4Addr]) {
        self.store()
            .update(name, |node| node.a.replace(ips.to_vec()));
    }

    /// Replaces the AAAA records of `name`; an empty slice removes them.
    pub fn set_aaaa(&self, name: &str, ips: &[Ipv6Addr]) {
        self.store()
            .update(name, |node| node.aaaa.replace(ips.to_vec()));
    }

    /// Replaces the SRV records of `name`; an empty slice removes them.
    pub fn set_srv(&self, name: &str, records: &[Srv]) {
        self.store()
            .update(name, |node| node.srv.replace(records.to_vec()));
    }

    /// Removes every record of `name`, so it answers NXDOMAIN.
    pub fn remove(&self, name: &str) {
        self.store().update(name, |node| *node = Default::default());
    }

    /// TTL for records that were not given one by a zone file (default 1 second).
    pub fn set_ttl(&self, ttl: u32) {
        self.store().default_ttl = ttl;
    }

    /// While on, every query is answered SERVFAIL (a DNS outage).
    pub fn set_servfail(&self, on: bool) {
        self.store().servfail = on;
    }

    /// Number of queries received so far, answered or not.
    pub fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }

    /// How many of [`DnsServer::queries`] came over TCP (a client retrying a truncated
    /// UDP answer, for one).
    pub fn tcp_queries(&self) -> u64 {
        self.tcp_queries.load(Ordering::Relaxed)
    }

    /// Adds the records of a zone file (see the `zone` module for the syntax).
    ///
    /// Parsing is all or nothing. Each (name, type) in the file replaces that RRset in the
    /// store; other names and types are left alone.
    pub fn load_zone(&self, text: &str) -> Result<()> {
        let records = parse_zone(text)?;
        apply_zone(&mut self.store(), records);
        Ok(())
    }

    /// Replaces every record with those of a zone file: names the file no
    /// longer has answer NXDOMAIN. A file that does not parse changes nothing.
    pub fn replace_zone(&self, text: &str) -> Result<()> {
        let records = parse_zone(text)?;
        let mut store = self.store();
        store.clear();
        apply_zone(&mut store, records);
        Ok(())
    }

    fn store(&self) -> RwLockWriteGuard<'_, Store> {
        // A panicking test thread must not take the server down with it.
        self.store.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Each (name, type) in `records` replaces that RRset in the store.
fn apply_zone(store: &mut Store, records: Vec<ZoneRecord>) {
    let mut replaced = std::collections::HashSet::new();
    for record in records {
        let first = replaced.insert((record.name.clone(), kind(&record.data)));
        store.update(&record.name, |node| match record.data {
            ZoneData::A(ip) => {
                if first {
                    node.a = Default::default();
                }
                node.a.push(ip, record.ttl);
            }
            ZoneData::Aaaa(ip) => {
                if first {
                    node.aaaa = Default::default();
                }
                node.aaaa.push(ip, record.ttl);
            }
            ZoneData::Srv(srv) => {
                if first {
                    node.srv = Default::default();
                }
                node.srv.push(srv, record.ttl);
            }
            ZoneData::Anchor => node.anchored = true,
        });
    }
}

fn kind(data: &ZoneData) -> RecordType {
    match data {
        ZoneData::A(_) => RecordType::A,
        ZoneData::Aaaa(_) => RecordType::AAAA,
        ZoneData::Srv(_) => RecordType::SRV,
        ZoneData::Anchor => RecordType::SOA,
    }
}

/// Binds UDP and TCP to the same port, retrying when port 0 picked a port taken for TCP.
pub(crate) fn bind_udp_and_tcp(addr: SocketAddr) -> Result<(UdpSocket, std::net::TcpListener)> {
    let attempts = if addr.port() == 0 { 20 } else { 1 };
    let mut last_error = None;
    for _ in 0..attempts {
        let udp = UdpSocket::bind(addr).map_err(HarnessError::io(format!("bind UDP {addr}")))?;
        let bound = udp
            .local_addr()
            .map_err(HarnessError::io("read UDP socket address"))?;
        match std::net::TcpListener::bind(bound) {
            Ok(tcp) => {
                udp.set_nonblocking(true)
                    .and_then(|()| tcp.set_nonblocking(true))
                    .map_err(HarnessError::io(format!("set {bound} non-blocking")))?;
                return Ok((udp, tcp));
            }
            Err(error) => last_error = Some((bound, error)),
        }
    }
    Err(match last_error {
        Some((bound, source)) => HarnessError::Io {
            context: format!("bind TCP {bound}"),
            source,
        },
        None => HarnessError::Dns(format!("could not bind {addr}")),
    })
}

/// Sends one query over UDP and returns the decoded response (blocking, 2 s timeout,
/// three tries). For tests that want to see exactly what the server answers.
pub fn query(server: SocketAddr, name: &str, rtype: RecordType) -> Result<Message> {
    let fqdn = if name.ends_with('.') {
        name.to_owned()
    } else {
        format!("{name}.")
    };
    let qname =
        Name::from_ascii(&fqdn).map_err(|e| HarnessError::Dns(format!("bad name {name}: {e}")))?;
    let mut request = Message::query();
    request.metadata.recursion_desired = true;
    request.add_query(Query::query(qname, rtype));
    let bytes = request
        .to_vec()
        .map_err(|e| HarnessError::Dns(format!("encode query for {name}: {e}")))?;

    let local: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).map_err(HarnessError::io("bind DNS client socket"))?;
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(HarnessError::io("set DNS client timeout"))?;
    let mut buf = vec![0u8; 65_535];
    let mut last_error = String::new();
    for _ in 0..3 {
        socket
            .send_to(&bytes, server)
            .map_err(HarnessError::io(format!("send DNS query to {server}")))?;
        loop {
            match socket.recv_from(&mut buf) {
                Ok((len, from)) if from == server => {
                    let response = Message::from_vec(&buf[..len]).map_err(|e| {
                        HarnessError::Dns(format!("undecodable response from {server}: {e}"))
                    })?;
                    if response.metadata.id == request.metadata.id {
                        return Ok(response);
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    last_error = error.to_string();
                    break;
                }
            }
        }
    }
    Err(HarnessError::Dns(format!(
        "no answer from {server} for {name} {rtype}: {last_error}"
    )))
}
