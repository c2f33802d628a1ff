//! A DNS responder on loopback that misbehaves on purpose, to see what the shim does with
//! replies a real server should never send. It speaks the real protocol: queries are
//! decoded with hickory-proto, replies go back over UDP; TCP connections are accepted and
//! closed at once, so a client falling back to TCP gets nothing there.

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, PoisonError,
    },
};

use hickory_proto::{
    op::{Message, Metadata, ResponseCode},
    rr::{rdata::A, RData, Record, RecordType},
};

use crate::{
    background::Background,
    dns::bind_udp_and_tcp,
    error::{HarnessError, Result},
};

/// What the responder does with the next query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// Answers A questions with these addresses, as a sound server would (TTL 1).
    Answer(Vec<Ipv4Addr>),
    /// Replies over UDP with TC=1 and no records; the TCP retry finds the connection
    /// closed.
    TruncatedNoTcp,
    /// Replies with the query's ID followed by bytes that do not decode as a message.
    Garbage,
    /// Replies with a sound answer under another ID, as a blind spoofer would.
    WrongId(Vec<Ipv4Addr>),
}

/// Serves until dropped; [`RogueDns::set`] changes the behaviour for the next query.
pub struct RogueDns {
    addr: SocketAddr,
    behaviour: Arc<Mutex<Behaviour>>,
    udp_queries: Arc<AtomicU64>,
    tcp_connections: Arc<AtomicU64>,
    _runtime: Background,
}

impl RogueDns {
    /// Starts on a free port of 127.0.0.1 (UDP and TCP), behaving as `behaviour`.
    pub fn start(behaviour: Behaviour) -> Result<Self> {
        let (udp, tcp) = bind_udp_and_tcp(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
        let addr = udp
            .local_addr()
            .map_err(HarnessError::io("read rogue DNS socket address"))?;
        let runtime = Background::start(&format!("rogue-dns {addr}"))?;
        let _context = runtime.handle().enter();
        let udp = tokio::net::UdpSocket::from_std(udp)
            .map_err(HarnessError::io(format!("register UDP {addr}")))?;
        let tcp = tokio::net::TcpListener::from_std(tcp)
            .map_err(HarnessError::io(format!("register TCP {addr}")))?;
        let behaviour = Arc::new(Mutex::new(behaviour));
        let udp_queries = Arc::new(AtomicU64::new(0));
        let tcp_connections = Arc::new(AtomicU64::new(0));
        runtime
            .handle()
            .spawn(serve_udp(udp, behaviour.clone(), udp_queries.clone()));
        runtime
            .handle()
            .spawn(close_tcp(tcp, tcp_connections.clone()));
        Ok(Self {
            addr,
            behaviour,
            udp_queries,
            tcp_connections,
            _runtime: runtime,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn set(&self, behaviour: Behaviour) {
        *self
            .behaviour
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = behaviour;
    }

    /// Decodable queries received over UDP so far.
    pub fn udp_queries(&self) -> u64 {
        self.udp_queries.load(Ordering::Relaxed)
    }

    /// TCP connections accepted (and closed) so far.
    pub fn tcp_connections(&self) -> u64 {
        self.tcp_connections.load(Ordering::Relaxed)
    }
}

async fn serve_udp(
    socket: tokio::net::UdpSocket,
    behaviour: Arc<Mutex<Behaviour>>,
    queries: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; 65_535];
    loop {
        let (len, from) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(error) => {
                tracing::warn!(%error, "rogue DNS: UDP receive failed");
                continue;
            }
        };
        // Not a query: ignored, as a server would.
        let Ok(query) = Message::from_vec(&buf[..len]) else {
            continue;
        };
        queries.fetch_add(1, Ordering::Relaxed);
        let now = behaviour
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match reply(&query, &now) {
            Ok(bytes) => {
                if let Err(error) = socket.send_to(&bytes, from).await {
                    tracing::warn!(%error, "rogue DNS: UDP send failed");
                }
            }
            Err(error) => tracing::warn!(%error, "rogue DNS: cannot encode a reply"),
        }
    }
}

async fn close_tcp(listener: tokio::net::TcpListener, connections: Arc<AtomicU64>) {
    loop {
        match listener.accept().await {
            // Dropped at once: the client reads end of stream before any reply.
            Ok((stream, _)) => {
                connections.fetch_add(1, Ordering::Relaxed);
                drop(stream);
            }
            Err(error) => tracing::warn!(%error, "rogue DNS: TCP accept failed"),
        }
    }
}

/// The bytes sent back for `query` under `behaviour`.
fn reply(query: &Message, behaviour: &Behaviour) -> Result<Vec<u8>> {
    let id = query.metadata.id;
    let encode = |message: Message| {
        message
            .to_vec()
            .map_err(|e| HarnessError::Dns(format!("encode reply: {e}")))
    };
    match behaviour {
        Behaviour::Answer(ips) => encode(answer(query, ips)),
        Behaviour::WrongId(ips) => {
            let mut message = answer(query, ips);
            message.metadata.id = id.wrapping_add(1);
            encode(message)
        }
        Behaviour::TruncatedNoTcp => {
            let mut message = answer(query, &[]);
            message.metadata.truncation = true;
            encode(message)
        }
        Behaviour::Garbage => {
            // The right ID, then a header claiming 0xffff records of every kind, then
            // nothing: the decoder runs out of bytes.
            let mut bytes = id.to_be_bytes().to_vec();
            bytes.extend([0x81, 0x80]);
            bytes.extend([0xff; 8]);
            bytes.extend(b"\x07garbage");
            Ok(bytes)
        }
    }
}

/// A NOERROR response to `query` with `ips` as A records of each A question.
fn answer(query: &Message, ips: &[Ipv4Addr]) -> Message {
    let mut message = Message::response(query.metadata.id, query.metadata.op_code);
    message.metadata = Metadata::response_from_request(&query.metadata);
    message.metadata.authoritative = true;
    message.metadata.response_code = ResponseCode::NoError;
    message.add_queries(query.queries.iter().cloned());
    for question in query
        .queries
        .iter()
        .filter(|q| q.query_type() == RecordType::A)
    {
        message.add_answers(
            ips.iter()
                .map(|ip| Record::from_rdata(question.name().clone(), 1, RData::A(A(*ip)))),
        );
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::{op::Query, rr::Name};

    fn query() -> Message {
        let mut query = Message::query();
        query.add_query(Query::query(
            Name::from_ascii("a.test.").unwrap(),
            RecordType::A,
        ));
        query
    }

    #[test]
    fn each_behaviour_replies_as_described() {
        let query = query();
        let ip = Ipv4Addr::new(127, 0, 0, 2);
        let decode = |behaviour| Message::from_vec(&reply(&query, &behaviour).unwrap());

        let good = decode(Behaviour::Answer(vec![ip])).unwrap();
        assert_eq!(good.metadata.id, query.metadata.id);
        assert_eq!(good.answers.len(), 1);

        let spoofed = decode(Behaviour::WrongId(vec![ip])).unwrap();
        assert_ne!(spoofed.metadata.id, query.metadata.id);

        let truncated = decode(Behaviour::TruncatedNoTcp).unwrap();
        assert!(truncated.metadata.truncation && truncated.answers.is_empty());

        let garbage = reply(&query, &Behaviour::Garbage).unwrap();
        assert_eq!(garbage[..2], query.metadata.id.to_be_bytes());
        assert!(Message::from_vec(&garbage).is_err());
    }
}
