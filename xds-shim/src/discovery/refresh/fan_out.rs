//! The DNS fan-out of one round: every name asked once, many at a time.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::StreamExt;

use crate::discovery::names::Names;
use crate::discovery::resolve::{AddressResolver, Answer, SrvRecord};
use crate::discovery::{HostResult, RoundResults};

/// Lookups polled at once. The resolver's own limit (`--max-in-flight`) bounds the queries
/// on the wire; this only bounds the futures a round keeps around.
const MAX_IN_FLIGHT: usize = 1_024;

/// A round's answers, and the TTL each answer carried, keyed (is SRV, name) as the
/// schedule keys names.
#[derive(Debug, Default)]
pub struct Round {
    pub results: RoundResults,
    pub ttls: BTreeMap<(bool, String), Duration>,
}

enum Query {
    A(String),
    Srv(String),
}

enum Reply {
    A(String, Answer<Vec<std::net::IpAddr>>),
    Srv(String, Answer<Vec<SrvRecord>>),
}

/// Resolves each name once: first the A hosts and SRV
/// names, then the SRV targets not already resolved as hosts.
pub async fn resolve_all<R: AddressResolver>(resolver: &R, names: &Names) -> Round {
    let queries = names
        .hosts
        .iter()
        .cloned()
        .map(Query::A)
        .chain(names.srv.iter().cloned().map(Query::Srv));
    let mut round = Round::default();
    for reply in run_queries(resolver, queries).await {
        round.insert(reply);
    }
    let targets: BTreeSet<String> = round
        .results
        .srv
        .values()
        .flat_map(|r| r.iter().flatten())
        .map(|record| record.target.clone())
        .filter(|target| !round.results.a.contains_key(target))
        .collect();
    for reply in run_queries(resolver, targets.into_iter().map(Query::A)).await {
        round.insert(reply);
    }
    round
}

impl Round {
    fn insert(&mut self, reply: Reply) {
        let (key, ttl) = match reply {
            Reply::A(host, answer) => {
                self.results.a.insert(host.clone(), answer.result);
                ((false, host), answer.ttl)
            }
            Reply::Srv(name, answer) => {
                self.results.srv.insert(name.clone(), answer.result);
                ((true, name), answer.ttl)
            }
        };
        if let Some(ttl) = ttl {
            self.ttls.insert(key, ttl);
        }
    }
}

async fn run_queries<R: AddressResolver>(
    resolver: &R,
    queries: impl Iterator<Item = Query>,
) -> Vec<Reply> {
    futures::stream::iter(queries)
        .map(|query| async move {
            match query {
                Query::A(host) => {
                    let answer = resolver.resolve_host(&host).await;
                    Reply::A(host, answer)
                }
                Query::Srv(name) => {
                    let answer = resolver.resolve_srv(&name).await;
                    Reply::Srv(name, answer)
                }
            }
        })
        .buffer_unordered(MAX_IN_FLIGHT)
        .collect()
        .await
}

/// Primary names (hosts, SRV names) whose answer, or one of whose SRV targets' answer,
/// was a failure rather than "nothing there".
pub fn unanswered(results: &RoundResults) -> Names {
    let failed = |r: &HostResult| r.as_ref().is_err_and(|e| !e.is_answer());
    let srv = results
        .srv
        .iter()
        .filter(|(_, result)| match result {
            Err(e) => !e.is_answer(),
            Ok(records) => records
                .iter()
                .any(|rec| results.a.get(&rec.target).is_some_and(failed)),
        })
        .map(|(name, _)| name.clone())
        .collect();
    let hosts = results
        .a
        .iter()
        .filter(|(_, r)| failed(r))
        .map(|(host, _)| host.clone())
        .collect();
    Names { hosts, srv }
}
