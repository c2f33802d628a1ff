use std::collections::BTreeMap;

use super::*;
use crate::test_support::FakeGauges;

/// Envoy's side of one stream, recorded.
#[derive(Default)]
struct FakeStream {
    request: Vec<(String, Vec<u8>)>,
    response: Vec<(String, String)>,
    reply: Option<(u32, String)>,
    override_host: Option<String>,
    refuse_override: bool,
    upstream: Option<String>,
    counters: BTreeMap<usize, u64>,
    route_cleared: u32,
}

impl FakeStream {
    fn get(authority: &str, more: &[(&str, &str)]) -> Self {
        let mut request = vec![
            (":method".to_string(), b"GET".to_vec()),
            (":path".to_string(), b"/".to_vec()),
            (":authority".to_string(), authority.as_bytes().to_vec()),
        ];
        request.extend(
            more.iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())),
        );
        Self {
            request,
            ..Self::default()
        }
    }
}

impl Stream for FakeStream {
    fn request_header(&self, name: &str) -> Option<Vec<u8>> {
        self.request
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    fn request_headers(&self) -> Vec<(String, Vec<u8>)> {
        self.request.clone()
    }

    fn set_request_header(&mut self, name: &str, value: &str) -> bool {
        self.remove_request_header(name);
        self.request.push((name.into(), value.as_bytes().to_vec()));
        true
    }

    fn remove_request_header(&mut self, name: &str) -> bool {
        self.request.retain(|(k, _)| k != name);
        true
    }

    fn add_response_header(&mut self, name: &str, value: &str) -> bool {
        self.response.push((name.into(), value.into()));
        true
    }

    fn send_response(&mut self, status: u32, _headers: &[(&str, &str)], body: &str) {
        self.reply = Some((status, body.into()));
    }

    fn set_upstream_override_host(&mut self, host: &str) -> bool {
        if self.refuse_override {
            return false;
        }
        self.override_host = Some(host.into());
        true
    }

    fn clear_route_cache(&mut self) {
        self.route_cleared += 1;
    }

    fn source_address(&self) -> Option<String> {
        Some("127.0.0.1:40000".into())
    }

    fn upstream_address(&self) -> Option<String> {
        self.upstream.clone()
    }

    fn increment_counter(&mut self, id: usize, by: u64) {
        *self.counters.entry(id).or_default() += by;
    }
}

/// Counter ids are the counter's index plus 100.
#[derive(Default)]
struct FakeCounters(Vec<String>, Arc<FakeScheduler>);

/// Counts the wake-ups and whether it was closed.
#[derive(Default)]
struct FakeScheduler {
    notified: std::sync::atomic::AtomicUsize,
    closed: std::sync::atomic::AtomicBool,
}

impl Notify for FakeScheduler {
    fn notify(&self) {
        self.notified
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn close(&self) {
        self.closed
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl DefineMetrics for FakeCounters {
    fn define_counter(&mut self, name: &str) -> Option<usize> {
        self.0.push(name.into());
        Some(self.0.len() + 99)
    }

    fn define_gauge(&mut self, name: &str, label: &str) -> Option<usize> {
        self.0.push(format!("{name}{{{label}}}"));
        Some(1)
    }

    fn scheduler(&mut self) -> Option<Arc<dyn Notify>> {
        Some(self.1.clone())
    }
}

fn filter(json: &str) -> (Filter, Vec<String>) {
    let mut counters = FakeCounters::default();
    let config = FilterConfig::new(&mut counters, b"dnslb", json.as_bytes()).unwrap();
    (Filter::new(Arc::new(config)), counters.0)
}

fn id(counter: Counter) -> usize {
    counter.index() + 100
}

const CLUSTER: &str = "dns+backend.test:8080";
const COOKIE: &str = r#"{"routing": "envoy", "affinity": {"mode": "cookie"}}"#;

#[test]
fn counters_keep_the_wasm_names() {
    let (_, names) = filter("");
    assert_eq!(names.len(), Counter::ALL.len() + 1);
    assert!(names.contains(&"dnslb.upstream_members{envoy_cluster_name}".to_string()));
    assert!(names.contains(&"dnslb.requests".to_string()), "{names:?}");
    assert!(names.contains(&"dnslb.affinity_hits".to_string()));
}

#[test]
fn cookie_sessions_stick_through_the_override_host() {
    let (mut first, _) = filter(COOKIE);
    let mut stream = FakeStream::get(CLUSTER, &[]);
    assert_eq!(first.on_request_headers(&mut stream), Next::Continue);
    assert_eq!(stream.override_host, None, "no cookie: Envoy picks");
    stream.upstream = Some("127.0.0.3:8080".into());
    first.on_response_headers(&mut stream);
    let (name, set_cookie) = &stream.response[0];
    assert_eq!(name, "set-cookie");
    let pair = set_cookie.split(';').next().unwrap().to_string();

    // The key is this process's: a second configuration opens the cookie.
    let (mut again, _) = filter(COOKIE);
    let mut stream = FakeStream::get(CLUSTER, &[("cookie", &pair)]);
    assert_eq!(again.on_request_headers(&mut stream), Next::Continue);
    assert_eq!(stream.override_host.as_deref(), Some("127.0.0.3:8080"));
    assert_eq!(stream.counters.get(&id(Counter::AffinityHits)), Some(&1));
    assert_eq!(stream.counters.get(&id(Counter::Requests)), Some(&1));
    // Nothing written to the request: no header for the override, the same route.
    assert_eq!(stream.request.len(), 4);
    assert_eq!(stream.route_cleared, 0);
    stream.upstream = Some("127.0.0.3:8080".into());
    again.on_response_headers(&mut stream);
    assert!(stream.response.is_empty(), "same endpoint, no new cookie");

    // Without the override callback, the override_host header carries it.
    let mut stream = FakeStream::get(CLUSTER, &[("cookie", &pair)]);
    stream.refuse_override = true;
    again.on_request_headers(&mut stream);
    assert_eq!(
        stream.request_header("x-dnslb-endpoint").as_deref(),
        Some(&b"127.0.0.3:8080"[..])
    );
}

#[test]
fn the_status_path_and_bad_cookies_answer_locally() {
    let (mut f, _) = filter(COOKIE);
    let mut stream = FakeStream::get("any", &[]);
    stream.set_request_header(":path", "/dnslb/status");
    assert_eq!(f.on_request_headers(&mut stream), Next::Stop);
    let (status, body) = stream.reply.unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("\"eds_received\":false"), "{body}");

    let mut stream = FakeStream::get(CLUSTER, &[("cookie", "dnslb=a; dnslb=b")]);
    assert_eq!(f.on_request_headers(&mut stream), Next::Stop);
    assert_eq!(stream.reply.unwrap().0, 400);
    assert_eq!(stream.counters.get(&id(Counter::BadRequests)), Some(&1));
}

#[test]
fn bad_configuration_is_refused() {
    let mut counters = FakeCounters::default();
    let e = FilterConfig::new(&mut counters, b"dnslb", br#"{"retries": "x"}"#)
        .err()
        .unwrap();
    assert!(e.to_string().contains("invalid configuration"), "{e}");
    let e = FilterConfig::new(&mut counters, b"dnslb", br#"{"xds_address": "x"}"#)
        .err()
        .unwrap();
    assert!(e.to_string().contains("xds_address"), "{e}");
    let missing = br#"{"xds_address": "127.0.0.1:1", "xds_tls": {"ca_file": "/no/such/ca.pem"}}"#;
    let e = FilterConfig::new(&mut counters, b"dnslb", missing)
        .err()
        .unwrap();
    assert!(e.to_string().contains("/no/such/ca.pem"), "{e}");
}

#[test]
fn filter_routing_rewrites_and_routes_again() {
    let (mut f, _) = filter("{}");
    let mut stream = FakeStream::get(CLUSTER, &[("x-dnslb-endpoint", "10.9.9.9:80")]);
    assert_eq!(f.on_request_headers(&mut stream), Next::Continue);
    assert_eq!(
        stream.request_header("x-dnslb-cluster").as_deref(),
        Some(CLUSTER.as_bytes())
    );
    assert_eq!(
        stream.request_header(":authority").as_deref(),
        Some(&b"backend.test:8080"[..])
    );
    // The client's header is gone; no member known yet, so no pick of ours.
    assert_eq!(stream.request_header("x-dnslb-endpoint"), None);
    assert_eq!(stream.route_cleared, 1);
}

#[test]
fn member_gauges_follow_the_feed_and_the_scheduler_closes_with_envoys_configuration() {
    let mut envoy = FakeCounters::default();
    let config = FilterConfig::new(&mut envoy, b"dnslb", b"{}").unwrap();
    let mut gauges = FakeGauges::default();
    config.on_scheduled(&mut gauges);
    assert!(gauges.0.is_empty(), "nothing received yet");
    config.feed.publish(crate::feed::Snapshot {
        version: "v1".into(),
        clusters: vec![(
            CLUSTER.into(),
            vec![crate::test_support::member("127.0.0.2:8080")],
        )],
    });
    config.on_scheduled(&mut gauges);
    assert_eq!(gauges.0, [(1, "dns+backend~test_8080".to_string(), 1)]);
    assert!(!envoy.1.closed.load(std::sync::atomic::Ordering::Relaxed));
    config.close();
    assert!(envoy.1.closed.load(std::sync::atomic::Ordering::Relaxed));
}
