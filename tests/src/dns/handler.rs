//! Answers queries from the store the way an authoritative server would.

use std::{
    collections::HashSet,
    iter,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, PoisonError, RwLock,
    },
};

use hickory_proto::{
    op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode},
    rr::{
        rdata::{A, AAAA, SRV},
        Name, RData, Record, RecordType,
    },
};
use hickory_server::{
    net::{runtime::Time, xfer::Protocol},
    server::{Request, RequestHandler, ResponseHandler, ResponseInfo},
    zone_handler::MessageResponseBuilder,
};

use super::store::{Lookup, Node, RrSet, Store};

pub(crate) struct Handler {
    pub(crate) store: Arc<RwLock<Store>>,
    pub(crate) queries: Arc<AtomicU64>,
    pub(crate) tcp_queries: Arc<AtomicU64>,
}

/// The content of a response, computed from the store without I/O.
#[derive(Debug, Default)]
pub(crate) struct Answer {
    pub(crate) code: ResponseCode,
    pub(crate) answers: Vec<Record>,
    pub(crate) additionals: Vec<Record>,
}

impl Answer {
    fn code(code: ResponseCode) -> Self {
        Self {
            code,
            ..Self::default()
        }
    }
}

/// Looks `qname`/`qtype` up; SRV answers carry their targets' addresses as additionals.
pub(crate) fn answer(store: &Store, qname: &Name, qtype: RecordType) -> Answer {
    if store.servfail {
        return Answer::code(ResponseCode::ServFail);
    }
    let node = match store.lookup(&qname.to_ascii()) {
        Lookup::NxDomain => return Answer::code(ResponseCode::NXDomain),
        Lookup::EmptyNonTerminal => return Answer::code(ResponseCode::NoError),
        Lookup::Found(node) => node,
    };
    let any = qtype == RecordType::ANY;
    let mut out = Answer::code(ResponseCode::NoError);
    if any || qtype == RecordType::A || qtype == RecordType::AAAA {
        address_records(store, node, qname, qtype, &mut out.answers);
    }
    if any || qtype == RecordType::SRV {
        let ttl = node.srv.ttl.unwrap_or(store.default_ttl);
        let mut targets_done = HashSet::new();
        for srv in &node.srv.items {
            let Ok(target) = Name::from_ascii(format!("{}.", srv.target)) else {
                tracing::warn!(target = %srv.target, "SRV target is not a domain name");
                return Answer::code(ResponseCode::ServFail);
            };
            out.answers.push(Record::from_rdata(
                qname.clone(),
                ttl,
                RData::SRV(SRV::new(srv.priority, srv.weight, srv.port, target.clone())),
            ));
            if !targets_done.insert(srv.target.clone()) {
                continue;
            }
            if let Lookup::Found(target_node) = store.lookup(&srv.target) {
                address_records(
                    store,
                    target_node,
                    &target,
                    RecordType::ANY,
                    &mut out.additionals,
                );
            }
        }
    }
    out
}

/// A and/or AAAA records of `node` (`RecordType::ANY` means both).
fn address_records(
    store: &Store,
    node: &Node,
    name: &Name,
    qtype: RecordType,
    out: &mut Vec<Record>,
) {
    if qtype != RecordType::AAAA {
        out.extend(rrset(store, &node.a, name, |ip| RData::A(A(ip))));
    }
    if qtype != RecordType::A {
        out.extend(rrset(store, &node.aaaa, name, |ip| RData::AAAA(AAAA(ip))));
    }
}

/// The records of one RRset at `name`, with its TTL or the server's default.
fn rrset<'a, T: Copy>(
    store: &Store,
    set: &'a RrSet<T>,
    name: &'a Name,
    rdata: impl Fn(T) -> RData + 'a,
) -> impl Iterator<Item = Record> + 'a {
    let ttl = set.ttl.unwrap_or(store.default_ttl);
    set.items
        .iter()
        .map(move |item| Record::from_rdata(name.clone(), ttl, rdata(*item)))
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        self.queries.fetch_add(1, Ordering::Relaxed);
        if request.protocol() == Protocol::Tcp {
            self.tcp_queries.fetch_add(1, Ordering::Relaxed);
        }
        let content = if request.metadata.op_code != OpCode::Query {
            Answer::code(ResponseCode::NotImp)
        } else {
            match request.request_info() {
                Err(_) => Answer::code(ResponseCode::FormErr),
                Ok(info) => {
                    let store = self.store.read().unwrap_or_else(PoisonError::into_inner);
                    // The original query name keeps the client's case (0x20 randomization).
                    let query = info.query.original();
                    answer(&store, query.name(), query.query_type())
                }
            }
        };

        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = true;
        metadata.response_code = content.code;
        // A client that speaks EDNS must get an OPT record back (RFC 6891).
        let edns = request.edns.as_ref().map(|asked| {
            let mut edns = Edns::new();
            edns.set_max_payload(asked.max_payload().max(512));
            edns
        });
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(edns) = &edns {
            builder.edns(edns);
        }
        let response = builder.build(
            metadata,
            content.answers.iter(),
            iter::empty(),
            iter::empty(),
            content.additionals.iter(),
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(error) => {
                tracing::warn!(%error, "sending a DNS response failed");
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::dns::Srv;

    fn name(text: &str) -> Name {
        Name::from_ascii(text).unwrap()
    }

    fn store() -> Store {
        let mut store = Store::default();
        store.update("a.test", |n| n.a.replace(vec![Ipv4Addr::new(127, 0, 0, 2)]));
        store.update("_x._tcp.test", |n| {
            n.srv.replace(vec![
                Srv {
                    priority: 1,
                    weight: 1,
                    port: 81,
                    target: "a.test".into(),
                },
                Srv {
                    priority: 1,
                    weight: 1,
                    port: 82,
                    target: "a.test".into(),
                },
            ])
        });
        store
    }

    #[test]
    fn srv_adds_each_target_address_once() {
        let got = answer(&store(), &name("_x._tcp.test."), RecordType::SRV);
        assert_eq!(got.code, ResponseCode::NoError);
        assert_eq!(got.answers.len(), 2);
        assert_eq!(got.additionals.len(), 1);
        assert_eq!(got.additionals[0].name, name("a.test."));
    }

    #[test]
    fn known_name_without_the_type_is_empty_noerror() {
        let got = answer(&store(), &name("a.test."), RecordType::AAAA);
        assert_eq!(got.code, ResponseCode::NoError);
        assert!(got.answers.is_empty());
    }

    #[test]
    fn servfail_knob_wins() {
        let mut store = store();
        store.servfail = true;
        let got = answer(&store, &name("a.test."), RecordType::A);
        assert_eq!(got.code, ResponseCode::ServFail);
    }

    #[test]
    fn answers_use_default_ttl_and_asked_case() {
        let mut store = store();
        store.default_ttl = 9;
        let got = answer(&store, &name("A.Test."), RecordType::A);
        assert_eq!(got.answers[0].ttl, 9);
        assert_eq!(got.answers[0].name.to_ascii(), "A.Test.");
    }
}
