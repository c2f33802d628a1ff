//! The harness itself, against real sockets and real processes.

use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    process::Command,
    time::Duration,
};

use dnslb_tests::{
    dns::query, free_port, http_get, http_request, workspace_root, BackendReport, ChildGuard,
    DnsServer, Srv, TempDir,
};
use hickory_proto::{
    op::{Message, ResponseCode},
    rr::{RData, RecordType},
};

fn a_records(message: &Message) -> BTreeSet<Ipv4Addr> {
    message
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

#[test]
fn dns_server_answers_a_srv_and_nxdomain() {
    let dns = DnsServer::start().unwrap();
    let ips = [Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3)];
    dns.set_a("backend.test", &ips);
    dns.set_srv(
        "_http._tcp.api.test.",
        &[Srv {
            priority: 10,
            weight: 5,
            port: 8080,
            target: "backend.test".into(),
        }],
    );

    let a = query(dns.addr(), "BACKEND.test", RecordType::A).unwrap();
    assert_eq!(a.metadata.response_code, ResponseCode::NoError);
    assert!(a.metadata.authoritative);
    assert_eq!(a_records(&a), ips.into_iter().collect());
    assert!(a.answers.iter().all(|r| r.ttl == 1));

    let srv = query(dns.addr(), "_http._tcp.api.test", RecordType::SRV).unwrap();
    assert_eq!(srv.answers.len(), 1);
    let RData::SRV(record) = &srv.answers[0].data else {
        panic!("not SRV: {srv:?}");
    };
    assert_eq!((record.priority, record.weight, record.port), (10, 5, 8080));
    assert_eq!(record.target.to_ascii(), "backend.test.");
    let extra: BTreeSet<_> = srv
        .additionals
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect();
    assert_eq!(extra, ips.into_iter().collect());

    let missing = query(dns.addr(), "nope.test", RecordType::A).unwrap();
    assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);
    let no_aaaa = query(dns.addr(), "backend.test", RecordType::AAAA).unwrap();
    assert_eq!(no_aaaa.metadata.response_code, ResponseCode::NoError);
    assert!(no_aaaa.answers.is_empty());

    // Changes take effect at once; an emptied name is gone.
    dns.set_ttl(30);
    dns.set_a("backend.test", &ips[..1]);
    let a = query(dns.addr(), "backend.test", RecordType::A).unwrap();
    assert_eq!(a_records(&a), [ips[0]].into_iter().collect());
    assert_eq!(a.answers[0].ttl, 30);
    dns.set_a("backend.test", &[]);
    let gone = query(dns.addr(), "backend.test", RecordType::A).unwrap();
    assert_eq!(gone.metadata.response_code, ResponseCode::NXDomain);

    dns.set_servfail(true);
    let failed = query(dns.addr(), "_http._tcp.api.test", RecordType::SRV).unwrap();
    assert_eq!(failed.metadata.response_code, ResponseCode::ServFail);
    assert!(dns.queries() >= 7);
}

#[test]
fn dns_server_serves_the_demo_zone_over_tcp_too() {
    let zone = std::fs::read_to_string(workspace_root().join("envoy/demo.zone")).unwrap();
    let dns = DnsServer::start().unwrap();
    dns.load_zone(&zone).unwrap();
    let a = query(dns.addr(), "backend.test", RecordType::A).unwrap();
    assert_eq!(a.answers.len(), 3);
    assert_eq!(a.answers[0].ttl, 5);

    // Same port over TCP: two-byte length prefix, then the message.
    use std::io::{Read, Write};
    let mut request = Message::query();
    request.add_query(hickory_proto::op::Query::query(
        "static.test.".parse().unwrap(),
        RecordType::A,
    ));
    let bytes = request.to_vec().unwrap();
    let mut stream = std::net::TcpStream::connect(dns.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(&(bytes.len() as u16).to_be_bytes())
        .unwrap();
    stream.write_all(&bytes).unwrap();
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; u16::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).unwrap();
    let response = Message::from_vec(&body).unwrap();
    assert_eq!(
        a_records(&response),
        [Ipv4Addr::new(127, 0, 0, 4)].into_iter().collect()
    );
}

#[test]
fn dns_server_binary_serves_a_zone_and_rejects_a_bad_one() {
    let tmp = TempDir::new("dns-bin").unwrap();
    let port = free_port(IpAddr::V4(Ipv4Addr::LOCALHOST)).unwrap();
    let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let zone = tmp.path().join("good.zone");
    std::fs::write(&zone, "$ORIGIN test.\nx 1 IN A 10.1.2.3\n").unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_dnslb-dns-server"));
    command
        .args(["--listen", &listen.to_string(), "--zone"])
        .arg(&zone);
    let server = ChildGuard::spawn("dns-server", command, tmp.path()).unwrap();
    let line = server
        .wait_for_log("listening on", Duration::from_secs(10))
        .unwrap();
    assert_eq!(line, format!("dns-server listening on {listen}"));
    let a = query(listen, "x.test", RecordType::A).unwrap();
    assert_eq!(
        a_records(&a),
        [Ipv4Addr::new(10, 1, 2, 3)].into_iter().collect()
    );

    // An edited zone file is served within a poll or two; names it no longer
    // has answer NXDOMAIN; a broken edit keeps the last good zone.
    std::fs::write(
        &zone,
        "$ORIGIN test.
y 1 IN A 10.9.9.9
",
    )
    .unwrap();
    dnslb_tests::wait_until(
        "the edited zone to be served",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            let x = query(listen, "x.test", RecordType::A)?;
            let y = query(listen, "y.test", RecordType::A)?;
            Ok(x.metadata.response_code == ResponseCode::NXDomain
                && a_records(&y) == [Ipv4Addr::new(10, 9, 9, 9)].into_iter().collect())
        },
    )
    .unwrap();
    std::fs::write(
        &zone,
        "$ORIGIN test.
y 1 IN A nonsense
",
    )
    .unwrap();
    server
        .wait_for_log("keeping the last good zone", Duration::from_secs(10))
        .unwrap();
    let y = query(listen, "y.test", RecordType::A).unwrap();
    assert_eq!(
        a_records(&y),
        [Ipv4Addr::new(10, 9, 9, 9)].into_iter().collect()
    );
    server.stop(Duration::from_secs(5)).unwrap();

    let bad = tmp.path().join("bad.zone");
    std::fs::write(&bad, "$ORIGIN test.\nx A 10.1.2\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_dnslb-dns-server"))
        .args(["--listen", "127.0.0.1:0", "--zone"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("line 2") && stderr.contains("10.1.2"),
        "{stderr}"
    );

    let output = Command::new(env!("CARGO_BIN_EXE_dnslb-dns-server"))
        .args(["--listen", "nowhere", "--zone"])
        .arg(&zone)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("nowhere"));
}

#[test]
fn fake_backends_report_who_they_are() {
    let tmp = TempDir::new("backends").unwrap();
    let port = free_port(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))).unwrap();
    let addrs: Vec<SocketAddr> = [2, 3]
        .iter()
        .map(|last| SocketAddr::from((Ipv4Addr::new(127, 0, 0, *last), port)))
        .collect();
    let backends: Vec<ChildGuard> = addrs
        .iter()
        .map(|addr| {
            let mut command = Command::new(env!("CARGO_BIN_EXE_fake-backend"));
            command.args(["--listen", &addr.to_string(), "--name", "b"]);
            let child = ChildGuard::spawn("fake-backend", command, tmp.path()).unwrap();
            let line = child
                .wait_for_log("listening on", Duration::from_secs(10))
                .unwrap();
            assert_eq!(line, format!("fake-backend listening on {addr}"));
            child
        })
        .collect();

    for addr in &addrs {
        let response = http_get(
            *addr,
            "http://dns+backend.test:8080/x?y=1",
            &[
                ("Host", "backend.test:8080"),
                ("x-dnslb-endpoint", "127.0.0.9:1,127.0.0.2:8080"),
            ],
        )
        .unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(
            response.header("x-backend"),
            Some(addr.to_string().as_str())
        );
        assert_eq!(response.header("x-seen-host"), Some("backend.test:8080"));
        assert_eq!(
            response.header("x-seen-dnslb-endpoint"),
            Some("127.0.0.9:1,127.0.0.2:8080")
        );
        let report: BackendReport = response.json().unwrap();
        assert_eq!(
            report,
            BackendReport {
                backend: addr.to_string(),
                host: "backend.test:8080".into(),
                method: "GET".into(),
                path: "/x".into(),
                query: Some("y=1".into()),
                body_len: 0,
                name: Some("b".into()),
            }
        );
    }

    let posted = http_request(addrs[1], "POST", "/upload", &[], b"12345").unwrap();
    let report: BackendReport = posted.json().unwrap();
    assert_eq!((report.method.as_str(), report.body_len), ("POST", 5));
    assert_eq!(posted.header("x-seen-dnslb-endpoint"), Some(""));
    assert_eq!(report.host, addrs[1].to_string());

    // A killed backend refuses connections: what failover tests rely on.
    backends[0].kill().unwrap();
    assert!(http_get(addrs[0], "/", &[]).is_err());
    assert!(backends[0].ensure_running().is_err());

    let output = Command::new(env!("CARGO_BIN_EXE_fake-backend"))
        .args(["--listen", "127.0.0.2:http"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("127.0.0.2:http"));
}

#[test]
fn in_process_backend_works_from_a_tokio_test_runtime_too() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let backend = dnslb_tests::Backend::start("127.0.0.1:0".parse().unwrap(), None).unwrap();
        let addr = backend.addr();
        let response = tokio::task::spawn_blocking(move || http_get(addr, "/", &[]))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            response.header("x-backend"),
            Some(addr.to_string().as_str())
        );
        // Dropping inside a runtime must not panic.
        drop(backend);
    });
}
