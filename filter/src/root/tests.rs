use std::cell::RefCell;
use std::collections::BTreeMap;

use super::*;
use crate::xds::{
    Address, Any, ClusterLoadAssignment, DiscoveryRequest, DiscoveryResponse, Endpoint, LbEndpoint,
    LocalityLbEndpoints, SocketAddress, CLA_TYPE_URL,
};
// The same tests run natively and, under Node, compiled to wasm32.
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// A host that records what the root context asked of it.
#[derive(Default)]
struct FakeRootHost {
    logs: RefCell<Vec<(Level, String)>>,
    now: u64,
    /// Refuse to open streams (the xDS cluster does not exist yet).
    refuse_streams: bool,
    opened: Vec<(String, u32)>,
    sent: Vec<(u32, Vec<u8>)>,
    calls: Vec<(String, Vec<u8>)>,
    metrics: BTreeMap<String, (MetricKind, u32)>,
    values: BTreeMap<u32, u64>,
    shared: BTreeMap<String, (Vec<u8>, u32)>,
    /// Lose this many CAS races before a store succeeds.
    cas_losses: u32,
    random_byte: u8,
}

impl FakeRootHost {
    fn logged(&self, level: Level, part: &str) -> usize {
        self.logs
            .borrow()
            .iter()
            .filter(|(l, m)| *l == level && m.contains(part))
            .count()
    }

    fn metric(&self, name: &str) -> Option<u64> {
        let (_, id) = self.metrics.get(name)?;
        self.values.get(id).copied()
    }
}

impl RootHost for FakeRootHost {
    fn log(&self, level: Level, message: &str) {
        self.logs.borrow_mut().push((level, message.to_string()));
    }

    fn now(&self) -> u64 {
        self.now
    }

    fn open_stream(&mut self, cluster: &str, service: &str, _method: &str) -> Result<u32, String> {
        if self.refuse_streams {
            return Err("BadArgument".into());
        }
        assert_eq!(service, xds::ADS_SERVICE);
        let token = self.opened.len() as u32 + 1;
        self.opened.push((cluster.to_string(), token));
        Ok(token)
    }

    fn send_stream(&mut self, token: u32, message: &[u8]) -> Result<(), String> {
        self.sent.push((token, message.to_vec()));
        Ok(())
    }

    fn cancel_stream(&mut self, _token: u32) {}

    fn call(
        &mut self,
        cluster: &str,
        service: &str,
        _method: &str,
        message: &[u8],
        _timeout: Duration,
    ) -> Result<(), String> {
        assert_eq!(service, xds::REFRESH_SERVICE);
        self.calls.push((cluster.to_string(), message.to_vec()));
        Ok(())
    }

    fn define_metric(&mut self, kind: MetricKind, name: &str) -> Option<u32> {
        let id = self.metrics.len() as u32;
        Some(self.metrics.entry(name.to_string()).or_insert((kind, id)).1)
    }

    fn increment_metric(&mut self, id: u32, by: u64) {
        *self.values.entry(id).or_default() += by;
    }

    fn record_metric(&mut self, id: u32, value: u64) {
        self.values.insert(id, value);
    }

    fn shared_data(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), String> {
        Ok(match self.shared.get(key) {
            Some((value, cas)) => (Some(value.clone()), Some(*cas)),
            None => (None, Some(0)),
        })
    }

    fn set_shared_data(
        &mut self,
        key: &str,
        value: &[u8],
        cas: Option<u32>,
    ) -> Result<(), SharedDataError> {
        if self.cas_losses > 0 {
            self.cas_losses -= 1;
            // The winner's key is what the loser reads next.
            self.shared.insert(key.into(), (vec![9; COOKIE_KEY_LEN], 7));
            return Err(SharedDataError::CasMismatch);
        }
        let current = self.shared.get(key).map_or(0, |(_, c)| *c);
        if cas != Some(current) {
            return Err(SharedDataError::CasMismatch);
        }
        self.shared
            .insert(key.into(), (value.to_vec(), current + 1));
        Ok(())
    }

    fn random(&mut self, bytes: &mut [u8]) -> Result<(), String> {
        self.random_byte += 1;
        bytes.fill(self.random_byte);
        Ok(())
    }
}

fn eds(version: &str, clusters: &[(&str, &[&str])]) -> Vec<u8> {
    let resources = clusters
        .iter()
        .map(|(name, ips)| Any {
            type_url: CLA_TYPE_URL.into(),
            value: ClusterLoadAssignment {
                cluster_name: (*name).into(),
                endpoints: vec![LocalityLbEndpoints {
                    lb_endpoints: ips
                        .iter()
                        .map(|ip| LbEndpoint {
                            endpoint: Some(Endpoint {
                                address: Some(Address {
                                    socket_address: Some(SocketAddress {
                                        address: (*ip).into(),
                                        port_value: 8080,
                                    }),
                                }),
                                hostname: String::new(),
                            }),
                            health_status: 0,
                            load_balancing_weight: None,
                        })
                        .collect(),
                    priority: 0,
                }],
            }
            .encode_to_vec(),
        })
        .collect();
    DiscoveryResponse {
        version_info: version.into(),
        resources,
        type_url: CLA_TYPE_URL.into(),
        nonce: format!("n-{version}"),
    }
    .encode_to_vec()
}

fn configured(json: &str) -> (Root, FakeRootHost) {
    let mut host = FakeRootHost {
        now: 1_000,
        ..FakeRootHost::default()
    };
    let mut root = Root::default();
    assert!(root.configure(&mut host, Some(json.as_bytes())));
    (root, host)
}

#[test]
fn bad_configuration_is_refused_with_one_line() {
    let mut host = FakeRootHost::default();
    let mut root = Root::default();
    assert!(!root.configure(&mut host, Some(b"{\"retries\": \"x\"}")));
    assert_eq!(host.logs.borrow().len(), 1);
    assert_eq!(host.logs.borrow()[0].0, Level::Error);
}

#[test]
fn the_stream_opens_on_tick_and_reopens_after_a_close() {
    let (mut root, mut host) = configured(r#"{"xds_cluster": "my_xds"}"#);
    host.refuse_streams = true;
    root.tick(&mut host);
    root.tick(&mut host);
    // One warning per outage, not per tick.
    assert_eq!(host.logged(Level::Warn, "cannot open xDS stream"), 1);
    host.refuse_streams = false;
    root.tick(&mut host);
    assert_eq!(host.opened, [("my_xds".to_string(), 1)]);
    assert_eq!(host.logged(Level::Info, "reopened"), 1);
    let first = DiscoveryRequest::decode(host.sent[0].1.as_slice()).unwrap();
    assert_eq!(first.resource_names, [xds::WILDCARD]);
    // Open: later ticks leave it alone.
    root.tick(&mut host);
    assert_eq!(host.opened.len(), 1);
    // A close from another stream is not ours.
    root.on_stream_close(&mut host, 9, 14);
    root.tick(&mut host);
    assert_eq!(host.opened.len(), 1);
    root.on_stream_close(&mut host, 1, 14);
    assert_eq!(host.logged(Level::Warn, "closed with gRPC status 14"), 1);
    root.tick(&mut host);
    assert_eq!(host.opened.len(), 2);
}

#[test]
fn updates_are_applied_acked_and_counted_in_gauges() {
    let (mut root, mut host) = configured("{}");
    root.tick(&mut host);
    let cluster = "dns+backend.test:8080";
    root.on_stream_message(
        &mut host,
        1,
        &eds("v1", &[(cluster, &["127.0.0.2", "127.0.0.3"])]),
    );
    assert_eq!(root.shared().membership.borrow().version(), "v1");
    let ack = DiscoveryRequest::decode(host.sent[1].1.as_slice()).unwrap();
    assert_eq!(
        (ack.version_info.as_str(), ack.response_nonce.as_str()),
        ("v1", "n-v1")
    );
    let gauge = &crate::stats::members_gauge(cluster);
    assert_eq!(host.metric(gauge), Some(2));
    // The upstream leaves: its gauge drops to 0.
    root.on_stream_message(&mut host, 1, &eds("v2", &[]));
    assert_eq!(host.metric(gauge), Some(0));
    // A message on another stream is ignored.
    root.on_stream_message(&mut host, 5, &eds("v3", &[]));
    assert_eq!(root.shared().membership.borrow().version(), "v2");
    // Garbage is NACKed and logged.
    root.on_stream_message(&mut host, 1, b"\xff\xff");
    assert_eq!(host.logged(Level::Warn, "rejected EDS update"), 1);
}

#[test]
fn counters_and_refreshes_go_out_on_tick() {
    let (mut root, mut host) = configured("{}");
    let shared = Rc::clone(root.shared());
    shared.count(Counter::Requests);
    shared.count(Counter::Requests);
    shared.request_refresh("dns+a.test:80");
    shared.request_refresh("dns+a.test:80");
    // Nothing reaches the host before the tick.
    assert_eq!(host.metric("dnslb.requests"), None);
    assert!(host.calls.is_empty());
    host.now = 1_005;
    root.tick(&mut host);
    assert_eq!(shared.now(), 1_005);
    assert_eq!(host.calls.len(), 1, "coalesced per tick");
    let sent = RefreshRequest::decode(host.calls[0].1.as_slice()).unwrap();
    assert_eq!(sent.cluster, "dns+a.test:80");
    assert_eq!(host.metric("dnslb.requests"), Some(2));
    // Counted on the next tick, with the counts since.
    root.tick(&mut host);
    assert_eq!(host.metric("dnslb.forced_refreshes"), Some(1));
    assert_eq!(host.metric("dnslb.requests"), Some(2));
    root.on_call_response(&mut host, 12, "unimplemented");
    root.on_call_response(&mut host, 12, "unimplemented");
    assert_eq!(host.logged(Level::Warn, "is the xDS server xds-shim?"), 1);
}

#[test]
fn workers_agree_on_one_random_cookie_key() {
    let cookie = r#"{"affinity": {"mode": "cookie"}}"#;
    let mut host = FakeRootHost::default();
    let first = shared_cookie_key(&mut host).unwrap();
    // The second worker reads the first one's key instead of drawing its own.
    assert_eq!(shared_cookie_key(&mut host).unwrap(), first);
    assert_eq!(host.random_byte, 1);
    // Losing the race means taking the winner's key.
    let mut host = FakeRootHost {
        cas_losses: 1,
        ..FakeRootHost::default()
    };
    assert_eq!(shared_cookie_key(&mut host).unwrap(), [9; COOKIE_KEY_LEN]);
    // A configured secret needs no shared key; without one, configure draws it.
    let (_, host) = configured(
        r#"{"affinity": {"mode": "cookie", "secret": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}}"#,
    );
    assert!(host.shared.is_empty());
    let (_, host) = configured(cookie);
    assert!(host.shared.contains_key(SHARED_COOKIE_KEY));
}
