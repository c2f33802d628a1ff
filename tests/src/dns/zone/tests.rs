use std::net::{Ipv4Addr, Ipv6Addr};

use super::*;

fn srv(priority: u16, weight: u16, port: u16, target: &str) -> ZoneData {
    ZoneData::Srv(Srv {
        priority,
        weight,
        port,
        target: target.into(),
    })
}

/// Records in a stable order: hickory returns them by (name, type), not by file order.
fn sorted(records: Vec<(&str, Option<u32>, ZoneData)>) -> Vec<(&str, Option<u32>, ZoneData)> {
    let mut records = records;
    records.sort_by_key(|r| format!("{r:?}"));
    records
}

fn err_of(text: &str) -> (usize, String, String) {
    match parse_zone(text) {
        Err(HarnessError::Zone { line, text, reason }) => (line, text, reason),
        other => panic!("expected a zone error, got {other:?}"),
    }
}

#[test]
fn parses_the_demo_shape() {
    let zone = "\
$ORIGIN test.
$TTL 5
; the apex, as CoreDNS wants it
@   IN SOA ns.test. admin.test. (
        2024010101 ; serial
        1h 15m 1w 5 )
    IN NS  ns
backend         A     127.0.0.2
                A     127.0.0.3   ; same owner
Backend6  30 IN AAAA  ::1
_http._tcp.api  IN 60 SRV 10 5 8080 api1
_http._tcp.api        SRV 20 0 8081 other.example.
";
    let records = parse_zone(zone).unwrap();
    let got = records
        .iter()
        .map(|r| (r.name.as_str(), r.ttl, r.data.clone()))
        .collect();
    assert_eq!(
        sorted(got),
        sorted(vec![
            ("test", Some(5), ZoneData::Anchor),
            ("test", Some(5), ZoneData::Anchor),
            (
                "backend.test",
                Some(5),
                ZoneData::A(Ipv4Addr::new(127, 0, 0, 2))
            ),
            (
                "backend.test",
                Some(5),
                ZoneData::A(Ipv4Addr::new(127, 0, 0, 3))
            ),
            (
                "backend6.test",
                Some(30),
                ZoneData::Aaaa(Ipv6Addr::LOCALHOST)
            ),
            (
                "_http._tcp.api.test",
                Some(60),
                srv(10, 5, 8080, "api1.test")
            ),
            (
                "_http._tcp.api.test",
                Some(5),
                srv(20, 0, 8081, "other.example")
            ),
        ])
    );
}

#[test]
fn records_of_one_rrset_keep_file_order() {
    let zone = "$ORIGIN test.\nb A 10.0.0.3\nb A 10.0.0.1\nb A 10.0.0.2\n";
    let ips: Vec<_> = parse_zone(zone)
        .unwrap()
        .into_iter()
        .map(|r| r.data)
        .collect();
    let a = |last| ZoneData::A(Ipv4Addr::new(10, 0, 0, last));
    assert_eq!(ips, vec![a(3), a(1), a(2)]);
}

#[test]
fn origin_can_be_relative_and_ttl_defaults_to_previous() {
    let zone = "$ORIGIN test.\n$ORIGIN sub\na 7 A 10.0.0.1\nb A 10.0.0.2\n";
    let records = parse_zone(zone).unwrap();
    assert_eq!(records[0].name, "a.sub.test");
    assert_eq!(records[1].name, "b.sub.test");
    assert_eq!(records[1].ttl, Some(7));
}

#[test]
fn no_ttl_anywhere_means_server_default() {
    let records = parse_zone("x.test. A 10.0.0.1").unwrap();
    assert_eq!(records[0].ttl, None);
    let records = parse_zone("x.test. A 10.0.0.1\ny.test. 9 A 10.0.0.2\n").unwrap();
    let ttls: Vec<_> = records.iter().map(|r| (r.name.as_str(), r.ttl)).collect();
    assert_eq!(ttls, vec![("x.test", None), ("y.test", Some(9))]);
}

#[test]
fn ttl_units() {
    let ttl = |text: &str| {
        parse_zone(&format!("x.test. {text} A 10.0.0.1"))
            .map(|records| records[0].ttl)
            .map_err(|e| e.to_string())
    };
    assert_eq!(ttl("300"), Ok(Some(300)));
    assert_eq!(ttl("1h30m"), Ok(Some(5400)));
    assert_eq!(ttl("1W"), Ok(Some(604_800)));
    // Not TTLs, so hickory reads them as a class or type and fails there.
    assert!(ttl("1h30x").is_err());
    assert!(ttl("99999999999").is_err());
}

#[test]
fn errors_name_the_line_and_what_is_wrong() {
    assert_eq!(
        err_of("$ORIGIN test.\n\nbackend A 127.0.0.300\n"),
        (
            3,
            "backend A 127.0.0.300".into(),
            "network address parse error: invalid IPv4 address syntax".into()
        )
    );
    let cases = [
        (
            "$ORIGIN test.\nx CNAME y\n",
            2,
            "record type CNAME is not supported",
        ),
        (
            "backend A 127.0.0.2\n",
            1,
            "relative name `backend` used before $ORIGIN",
        ),
        ("@ A 127.0.0.2\n", 1, "`@` used before $ORIGIN"),
        (
            "$ORIGIN sub\na A 10.0.0.1\n",
            2,
            "relative name `a.sub` used before $ORIGIN",
        ),
        (
            "x.test. SRV 1 2 3 t\n",
            1,
            "relative name `t` used before $ORIGIN",
        ),
        (
            "$ORIGIN test.\ns SRV 1 2 3\n",
            2,
            "token is missing: target",
        ),
        ("$ORIGIN test.\ns SRV 1 2 70000 t\n", 2, "number too large"),
        (
            "$ORIGIN test.\n@ SOA a b ( 1 2\n3 4 5\n",
            2,
            "unclosed list",
        ),
        ("$INCLUDE other.zone\n", 1, "$INCLUDE is not supported"),
        ("  A 10.0.0.1\n", 1, "no owner name before it"),
        (
            "$ORIGIN test.\nx CH A 10.0.0.1\n",
            2,
            "class CH is not supported",
        ),
        (
            "$ORIGIN test.\nbad..name A 10.0.0.1\n",
            2,
            "Malformed label",
        ),
        (
            "$ORIGIN test.\nx 5 A\n",
            2,
            "token is missing: ipv4 address",
        ),
        (
            "$ORIGIN test.\nx A 10.0.0.1\n$TTL soon\n",
            3,
            "invalid time string: soon",
        ),
    ];
    for (zone, line, reason) in cases {
        let (got_line, text, got_reason) = err_of(zone);
        assert_eq!(got_line, line, "{zone:?}: {got_reason}");
        assert_eq!(text, zone.lines().nth(line - 1).unwrap().trim(), "{zone:?}");
        assert!(got_reason.contains(reason), "{zone:?}: {got_reason}");
    }
}

#[test]
fn error_message_is_readable() {
    let err = parse_zone("$ORIGIN test.\nx A nope\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "zone line 2 `x A nope`: network address parse error: invalid IPv4 address syntax"
    );
}

/// What hickory's parser lets through that ours did not (see the module comment).
#[test]
fn hickory_leniency_is_known() {
    let records = parse_zone("$ORIGIN test.\ns A 10.0.0.1 10.0.0.2\nx 5\n").unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].data, ZoneData::A(Ipv4Addr::new(10, 0, 0, 1)));
}
