//! Any sequence of DNS answers (A sets, SRV sets with any priority, weight, port and
//! target, and every kind of failure) folded into the discovery state, round after round:
//! no panic, each cluster lists an address once, never more than `max_records` live
//! members, and the snapshot builds.
#![no_main]

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use xds_shim::discovery::resolve::{ResolveError, SrvRecord};
use xds_shim::discovery::{DiscoveryState, Policy, RoundResults};
use xds_shim::model::upstream::Upstream;
use xds_shim::xds::snapshot::Snapshot;

const MAX_RECORDS: usize = 8;
const TARGETS: [&str; 3] = ["a.test", "b.test", "a.test."];

fn error(byte: u8) -> ResolveError {
    match byte % 8 {
        0 => ResolveError::NxDomain,
        1 => ResolveError::NoRecords,
        2 => ResolveError::ServFail,
        3 => ResolveError::Refused,
        4 => ResolveError::Timeout,
        5 => ResolveError::Truncated,
        6 => ResolveError::Malformed("fuzz".into()),
        _ => ResolveError::Other("fuzz".into()),
    }
}

fuzz_target!(|data: &[u8]| {
    let upstreams: Vec<Upstream> = ["dns+a.test:80", "srv+_h._tcp.s.test"]
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
    let policy = Policy {
        drain: Duration::from_secs(2),
        empty_after: 2,
        max_stale: Some(Duration::from_secs(5)),
        max_records: MAX_RECORDS,
    };
    let mut state = DiscoveryState::with_policy(upstreams, policy);
    let mut at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    for round in data.chunks(24) {
        let mut bytes = round.iter().copied();
        let mut next = || bytes.next().unwrap_or(0);
        let mut results = RoundResults {
            a: HashMap::new(),
            srv: HashMap::new(),
        };
        for host in ["a.test", "b.test"] {
            let kind = next();
            let answer = if kind % 4 == 0 {
                Err(error(next()))
            } else {
                Ok((0..kind % 12)
                    .map(|i| IpAddr::V4(Ipv4Addr::new(10, 0, next() % 4, i)))
                    .collect())
            };
            results.a.insert(host.to_string(), answer);
        }
        let kind = next();
        let srv = if kind % 5 == 0 {
            Err(error(next()))
        } else {
            Ok((0..kind % 6)
                .map(|_| SrvRecord {
                    priority: u16::from(next() % 3),
                    weight: u16::from(next()),
                    port: u16::from(next() % 3),
                    target: TARGETS[usize::from(next()) % TARGETS.len()].to_string(),
                })
                .collect())
        };
        results.srv.insert("_h._tcp.s.test".to_string(), srv);
        state.apply(&results, at);
        at += Duration::from_millis(u64::from(next()) * 40);

        let members = state.members();
        for (cluster, membership) in &members {
            let mut seen = BTreeSet::new();
            for member in membership.members() {
                assert!(
                    seen.insert(member.addr),
                    "{cluster} lists {} twice",
                    member.addr
                );
            }
            let live = membership.members().iter().filter(|m| !m.draining).count();
            assert!(live <= MAX_RECORDS, "{cluster}: {live} live members");
        }
        let _ = Snapshot::build(members);
    }
});
