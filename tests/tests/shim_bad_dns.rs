//! xds-shim against bad DNS: answers too big for UDP or even for TCP, truncated replies
//! whose TCP retry fails, undecodable and spoofed replies, and a flood of records for one
//! name. The real binary and a real DNS server on loopback (the harness's, or `RogueDns`
//! for replies no sound server sends); no Envoy. Each case is checked where an operator
//! looks: `/status.json`, `/metrics` and the log.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    net::{Ipv4Addr, SocketAddr},
    time::Duration,
};

use dnslb_tests::{
    dns::query,
    rogue_dns::{Behaviour, RogueDns},
    DnsServer, Shim, Srv, TempDir,
};
use hickory_proto::rr::RecordType;
use serde_json::Value;

const INTERVAL: Duration = Duration::from_millis(500);
const WAIT: Duration = Duration::from_secs(30);
const PORT: u16 = 8080;
/// Long enough that an answer's size is not dominated by the question.
const NAME: &str = "a-rather-long-label-for-a-pool-of-many-members.bad-input.test";

/// `n` distinct addresses, in ascending order (nothing connects to them).
fn ips(n: usize) -> Vec<Ipv4Addr> {
    (0..n)
        .map(|i| Ipv4Addr::new(127, 1, (i / 250) as u8, (i % 250 + 1) as u8))
        .collect()
}

fn endpoints_of(ips: &[Ipv4Addr]) -> Vec<String> {
    ips.iter().map(|ip| format!("{ip}:{PORT}")).collect()
}

fn cluster() -> String {
    format!("dns+{NAME}:{PORT}")
}

/// The shim on `upstream` alone, asking only `nameserver`; the directory holds its log
/// (kept when the test fails).
fn shim_on(upstream: &str, nameserver: SocketAddr, args: &[&str]) -> (Shim, TempDir) {
    let dir = TempDir::new("bad-dns").unwrap();
    let shim = Shim::start(&[upstream.into()], nameserver, INTERVAL, dir.path(), args).unwrap();
    (shim, dir)
}

fn shim_for(nameserver: SocketAddr, args: &[&str]) -> (Shim, TempDir) {
    shim_on(&cluster(), nameserver, args)
}

/// The served endpoints of the only upstream, sorted.
fn endpoints(status: &Value) -> Vec<String> {
    let mut list: Vec<String> = status["upstreams"][0]["endpoints"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    list.sort();
    list
}

fn sorted(mut list: Vec<String>) -> Vec<String> {
    list.sort();
    list
}

fn result(status: &Value) -> &Value {
    &status["upstreams"][0]["last_resolution"]["result"]
}

fn is_stale(status: &Value) -> bool {
    !status["upstreams"][0]["stale_since_unix_ms"].is_null()
}

fn resolutions(shim: &Shim, result: &str) -> f64 {
    shim.metric(&format!("dnslb_resolutions_total{{result=\"{result}\"}}"))
        .unwrap()
        .unwrap_or(0.0)
}

/// Nothing in the shim's log says it panicked, and it still runs.
fn assert_no_panic(shim: &Shim) {
    shim.process.ensure_running().unwrap();
    let log = shim.process.log();
    assert!(!log.contains("panicked"), "{log}");
}

/// With `good` served, the DNS server turns bad (`turn_bad`): the shim must keep `good`,
/// mark it stale, report `kind` in /status.json, /metrics and the log, and recover when
/// `turn_good` restores the server.
fn keeps_last_good_through(
    shim: &Shim,
    good: &[Ipv4Addr],
    kind: &str,
    turn_bad: impl FnOnce(),
    turn_good: impl FnOnce(),
) {
    let want = sorted(endpoints_of(good));
    shim.wait_status("the good answer", WAIT, |s| endpoints(s) == want)
        .unwrap();

    turn_bad();
    let status = shim
        .wait_status(&format!("a {kind} failure, kept stale"), WAIT, |s| {
            result(s) == kind && is_stale(s)
        })
        .unwrap();
    assert_eq!(endpoints(&status), want, "the last good endpoints stay");
    assert!(
        resolutions(shim, kind) >= 1.0,
        "{}",
        shim.metrics().unwrap()
    );
    assert_eq!(
        shim.metric(&format!(
            "dnslb_upstream_stale{{cluster=\"{}\"}}",
            cluster()
        ))
        .unwrap(),
        Some(1.0)
    );
    // A few failed rounds (and retries) later, still the same.
    let failures = resolutions(shim, kind);
    shim.wait_status("more failed rounds", WAIT, |_| {
        resolutions(shim, kind) >= failures + 2.0
    })
    .unwrap();
    let status = shim.status().unwrap();
    assert_eq!(endpoints(&status), want);
    assert!(is_stale(&status));
    let log = shim.process.log();
    assert!(
        log.lines()
            .any(|l| l.contains("keeping last good members") && l.contains(kind)),
        "no log line for the {kind} failure:\n{log}"
    );

    turn_good();
    let status = shim
        .wait_status("the stale mark to clear", WAIT, |s| {
            result(s) == "ok" && !is_stale(s)
        })
        .unwrap();
    assert_eq!(endpoints(&status), want);
    assert_no_panic(shim);
}

#[test]
fn answer_truncated_over_udp_is_fetched_whole_over_tcp() {
    let dns = DnsServer::start().unwrap();
    let all = ips(150);
    dns.set_a(NAME, &all);
    // Over UDP the set does not fit (150 records of 16 bytes, over 512 and 1232 bytes):
    // the server sends part of it with TC set.
    let udp = query(dns.addr(), NAME, RecordType::A).unwrap();
    assert!(udp.metadata.truncation, "{udp:?}");
    assert!(udp.answers.len() < all.len(), "{}", udp.answers.len());

    let (shim, _dir) = shim_for(dns.addr(), &[]);
    let want = endpoints_of(&all);
    let status = shim
        .wait_status("all 150 endpoints", WAIT, |s| {
            endpoints(s) == sorted(want.clone())
        })
        .unwrap();
    assert_eq!(result(&status), "ok");
    assert!(status["upstreams"][0]["capped_from"].is_null());
    assert!(!is_stale(&status));
    assert!(dns.tcp_queries() >= 1, "the whole set came over TCP");
    assert!(resolutions(&shim, "ok") >= 1.0);
    assert_no_panic(&shim);
}

#[test]
fn answer_over_64_kib_keeps_the_last_good_endpoints() {
    let dns = DnsServer::start().unwrap();
    let good = ips(3);
    dns.set_a(NAME, &good);
    let (shim, _dir) = shim_for(dns.addr(), &[]);
    // 5,000 records of 16 bytes: more than one DNS message holds, so the server
    // truncates over TCP too.
    keeps_last_good_through(
        &shim,
        &good,
        "truncated",
        || dns.set_a(NAME, &ips(5_000)),
        || dns.set_a(NAME, &good),
    );
    assert!(dns.tcp_queries() >= 1);
}

/// The rogue server answers well first, then misbehaves as `bad`.
fn rogue_case(bad: Behaviour, kind: &str) -> RogueDns {
    let good = ips(2);
    let dns = RogueDns::start(Behaviour::Answer(good.clone())).unwrap();
    // A short timeout, so a reply that never counts costs little.
    let (shim, _dir) = shim_for(dns.addr(), &["--dns-timeout", "200ms"]);
    keeps_last_good_through(
        &shim,
        &good,
        kind,
        || dns.set(bad),
        || dns.set(Behaviour::Answer(good.clone())),
    );
    dns
}

#[test]
fn truncated_udp_reply_with_tcp_closed_keeps_the_last_good_endpoints() {
    let dns = rogue_case(Behaviour::TruncatedNoTcp, "truncated");
    assert!(dns.tcp_connections() >= 1, "the shim did try TCP");
}

#[test]
fn undecodable_reply_keeps_the_last_good_endpoints() {
    rogue_case(Behaviour::Garbage, "malformed");
}

#[test]
fn reply_with_a_wrong_id_is_ignored() {
    // Ignored as spoofed, so the question times out; its records are never used.
    rogue_case(Behaviour::WrongId(ips(9)), "timeout");
}

#[test]
fn flood_of_records_is_capped_logged_shown_and_counted() {
    let dns = DnsServer::start().unwrap();
    let flood = ips(40);
    dns.set_a(NAME, &flood);
    let (shim, _dir) = shim_for(dns.addr(), &["--max-records", "10"]);

    // The first ten by address serve; the status says how many there were.
    let want = sorted(endpoints_of(&flood[..10]));
    let status = shim
        .wait_status("the capped set", WAIT, |s| endpoints(s) == want)
        .unwrap();
    assert_eq!(status["upstreams"][0]["capped_from"], 40);
    assert_eq!(result(&status), "ok");
    let capped = format!("dnslb_capped_answers_total{{cluster=\"{}\"}}", cluster());
    assert!(shim.metric(&capped).unwrap() >= Some(1.0));
    let line = shim
        .process
        .wait_for_log("answer over --max-records", WAIT)
        .unwrap();
    assert!(
        line.contains("answered=40") && line.contains("kept=10"),
        "{line}"
    );

    // Back within the cap: the mark clears, the count stays.
    dns.set_a(NAME, &flood[..5]);
    let status = shim
        .wait_status("the whole smaller set", WAIT, |s| {
            endpoints(s) == sorted(endpoints_of(&flood[..5]))
        })
        .unwrap();
    assert!(status["upstreams"][0]["capped_from"].is_null());
    assert!(shim.metric(&capped).unwrap() >= Some(1.0));
    assert_no_panic(&shim);
}

#[test]
fn flood_of_srv_records_is_capped_preferring_the_first_priorities() {
    let dns = DnsServer::start().unwrap();
    let name = "_http._tcp.flood.test";
    let addresses = ips(30);
    // Thirty targets with one address each; the last ten have the preferred priority.
    let records: Vec<Srv> = addresses
        .iter()
        .enumerate()
        .map(|(i, ip)| {
            let target = format!("t{i}.flood.test");
            dns.set_a(&target, &[*ip]);
            Srv {
                priority: if i >= 20 { 1 } else { 2 },
                weight: 1,
                port: PORT,
                target,
            }
        })
        .collect();
    dns.set_srv(name, &records);
    let (shim, _dir) = shim_on(&format!("srv+{name}"), dns.addr(), &["--max-records", "10"]);
    let want = sorted(endpoints_of(&addresses[20..]));
    let status = shim
        .wait_status("the preferred ten", WAIT, |s| endpoints(s) == want)
        .unwrap();
    assert_eq!(status["upstreams"][0]["capped_from"], 30);
    let capped = format!("dnslb_capped_answers_total{{cluster=\"srv+{name}\"}}");
    assert!(shim.metric(&capped).unwrap() >= Some(1.0));
    assert_no_panic(&shim);
}
