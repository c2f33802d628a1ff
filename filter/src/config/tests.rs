use super::*;
// The same tests run natively and, under Node, compiled to wasm32.
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn parse(json: &str) -> Result<Config, ConfigError> {
    Config::from_bytes(Some(json.as_bytes()))
}

fn err(json: &str) -> String {
    parse(json).unwrap_err().to_string()
}

#[test]
fn empty_config_gives_defaults() {
    for raw in [None, Some(&b""[..]), Some(&b"{}"[..]), Some(&b"  "[..])] {
        let c = Config::from_bytes(raw).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c, unreachable_defaults());
        assert_eq!(c.xds_cluster, "dnslb_xds");
        assert_eq!(c.retries, 2);
        assert_eq!(c.affinity, Affinity::None);
        assert_eq!(c.status_path, "/dnslb/status");
    }
}

#[test]
fn settings_are_read() {
    let c = parse(
        r#"{"xds_cluster":"shim","retries":0,"node_id":"edge-1",
            "aliases":{"VMInsert:8480":"dns+vminsert.svc:8480"},
            "headers":{"cluster":"x-c","endpoint":"x-e"},
            "status":{"path":"/lb","allowed_sources":["10.0.0.0/8","::1"]}}"#,
    )
    .unwrap();
    assert_eq!(c.xds_cluster, "shim");
    assert_eq!(c.retries, 0);
    assert_eq!(c.node_id, "edge-1");
    assert_eq!(c.aliases["vminsert:8480"], "dns+vminsert.svc:8480");
    assert_eq!(
        (c.cluster_header.as_str(), c.endpoint_header.as_str()),
        ("x-c", "x-e")
    );
    assert_eq!(c.status_path, "/lb");
    assert!(c.status_sources[0].contains("10.1.2.3".parse().unwrap()));
    assert!(!c.status_sources[0].contains("11.0.0.1".parse().unwrap()));
    assert!(c.status_sources[1].contains("::1".parse().unwrap()));
}

#[test]
fn affinity_modes() {
    let c = parse(r#"{"affinity":{"mode":"cookie"}}"#).unwrap();
    let Affinity::Cookie(cookie) = c.affinity else {
        panic!()
    };
    assert_eq!(cookie.name, "dnslb");
    assert_eq!(cookie.max_age, 86_400);
    assert!(!cookie.secure && !cookie.strict && cookie.secret.is_none());
    assert!(cookie.previous_secrets.is_empty());
    let c = parse(
        r#"{"affinity":{"mode":"cookie","cookie_name":"lb","max_age":60,"secure":true,
            "secret":"0123456789abcdef","strict":true}}"#,
    )
    .unwrap();
    let Affinity::Cookie(cookie) = c.affinity else {
        panic!()
    };
    assert_eq!((cookie.name.as_str(), cookie.max_age), ("lb", 60));
    assert!(cookie.secure && cookie.strict);
    assert_eq!(cookie.secret.as_deref(), Some(&b"0123456789abcdef"[..]));
    assert!(cookie.previous_secrets.is_empty());
    let c = parse(
        r#"{"affinity":{"mode":"cookie","secret":"0123456789abcdef",
            "previous_secrets":["previous one, 16+","the one before it"]}}"#,
    )
    .unwrap();
    let Affinity::Cookie(cookie) = c.affinity else {
        panic!()
    };
    assert_eq!(
        cookie.previous_secrets,
        [&b"previous one, 16+"[..], b"the one before it"]
    );

    let c = parse(r#"{"affinity":{"mode":"hash"}}"#).unwrap();
    assert_eq!(c.affinity, Affinity::Hash(HashKey::SourceIp));
    let c = parse(r#"{"affinity":{"mode":"hash","key":"header:X-User"}}"#).unwrap();
    assert_eq!(c.affinity, Affinity::Hash(HashKey::Header("x-user".into())));
}

#[test]
fn bad_config_names_the_field_and_value() {
    let e = err(r#"{"bogus": 3}"#);
    assert!(e.contains("unknown field `bogus`"), "{e}");
    let e = err(r#"{"retries": 99}"#);
    assert!(e.contains("retries") && e.contains("99"), "{e}");
    let e = err(r#"{"xds_cluster": ""}"#);
    assert!(e.contains("xds_cluster"), "{e}");
    let e = err(r#"{"xds_address": "shim:18000"}"#);
    assert!(e.contains("xds_address") && e.contains("IP:PORT"), "{e}");
    let ok = parse(r#"{"xds_address": "127.0.0.1:18000"}"#).unwrap();
    assert_eq!(ok.xds_address, Some("127.0.0.1:18000".parse().unwrap()));
    assert_eq!(ok.xds_tls, None);
    let tls = parse(
        r#"{"xds_address": "127.0.0.1:18000",
            "xds_tls": {"ca_file": "/ca.pem", "server_name": "shim.test",
                        "cert_file": "/c.pem", "key_file": "/k.pem"}}"#,
    )
    .unwrap();
    assert_eq!(
        tls.xds_tls,
        Some(XdsTls {
            ca_file: "/ca.pem".into(),
            server_name: Some("shim.test".into()),
            client_identity: Some(("/c.pem".into(), "/k.pem".into())),
        })
    );
    for (json, names) in [
        (
            r#"{"xds_tls": {"ca_file": "/ca.pem"}}"#,
            "needs xds_address",
        ),
        (
            r#"{"xds_address": "127.0.0.1:1", "xds_tls": {}}"#,
            "xds_tls.ca_file",
        ),
        (
            r#"{"xds_address": "127.0.0.1:1", "xds_tls": {"ca_file": "/a", "cert_file": "/c"}}"#,
            "xds_tls.key_file",
        ),
        (
            r#"{"xds_address": "127.0.0.1:1", "xds_tls": {"ca_file": "/a", "ca": "/b"}}"#,
            "unknown field",
        ),
    ] {
        let e = err(json);
        assert!(e.contains(names), "{json}: {e}");
    }
    let e = err(r#"{"aliases": {"a:1": "b:1"}}"#);
    assert!(e.contains("aliases") && e.contains("b:1"), "{e}");
    let e = err(r#"{"aliases": {"a:1": "dns+b:0"}}"#);
    assert!(e.contains("dns+b:0"), "{e}");
    let e = err(r#"{"affinity": {"mode": "sticky"}}"#);
    assert!(e.contains("affinity.mode") && e.contains("sticky"), "{e}");
    let e = err(r#"{"affinity": {"mode": "hash", "key": "cookie"}}"#);
    assert!(e.contains("affinity.key") && e.contains("cookie"), "{e}");
    let e = err(r#"{"affinity": {"mode": "hash", "cookie_name": "x"}}"#);
    assert!(e.contains("affinity.cookie_name does not apply"), "{e}");
    let e = err(r#"{"affinity": {"mode": "cookie", "secret": "short"}}"#);
    assert!(e.contains("affinity.secret") && !e.contains("short"), "{e}");
    let e = err(
        r#"{"affinity": {"mode": "cookie", "secret": "0123456789abcdef",
            "previous_secrets": ["0123456789abcdef", "short"]}}"#,
    );
    assert!(
        e.contains("affinity.previous_secrets") && e.contains("entry 2 of 2"),
        "{e}"
    );
    assert!(!e.contains("short") && !e.contains("0123"), "{e}");
    for list in [r#"["0123456789abcdef"]"#, "[]"] {
        let e = err(&format!(
            r#"{{"affinity": {{"mode": "cookie", "previous_secrets": {list}}}}}"#
        ));
        assert!(
            e.contains("affinity.previous_secrets") && e.contains("needs affinity.secret"),
            "{e}"
        );
    }
    let e = err(&format!(
        r#"{{"affinity": {{"mode": "cookie", "secret": "0123456789abcdef",
            "previous_secrets": {:?}}}}}"#,
        ["0123456789abcdef"; 5]
    ));
    assert!(e.contains("5 entries") && e.contains("at most 4"), "{e}");
    let e = err(r#"{"affinity": {"mode": "hash", "previous_secrets": []}}"#);
    assert!(
        e.contains("affinity.previous_secrets does not apply"),
        "{e}"
    );
    let e = err(r#"{"affinity": {"mode": "cookie", "cookie_name": "a;b"}}"#);
    assert!(e.contains("a;b"), "{e}");
    let e = err(r#"{"headers": {"cluster": "X Cluster"}}"#);
    assert!(
        e.contains("headers.cluster") && e.contains("X Cluster"),
        "{e}"
    );
    let e = err(r#"{"status": {"allowed_sources": ["10.0.0.0/33"]}}"#);
    assert!(e.contains("10.0.0.0/33"), "{e}");
    let e = err(r#"{"status": {"path": "dnslb"}}"#);
    assert!(e.contains("status.path"), "{e}");
    assert_eq!(Config::from_bytes(Some(&[0xff])), Err(ConfigError::NotUtf8));
    assert!(Config::from_bytes(Some(b"{")).is_err());
}

#[test]
fn routing_is_filter_unless_envoy() {
    assert_eq!(parse("{}").unwrap().routing, Routing::Filter);
    let c = parse(r#"{"routing": "filter"}"#).unwrap();
    assert_eq!(c.routing, Routing::Filter);
    let c = parse(r#"{"routing": "envoy", "affinity": {"mode": "cookie"}}"#).unwrap();
    assert_eq!(c.routing, Routing::Envoy);
    for bad in [r#""Envoy""#, r#""""#, r#""native""#] {
        let e = err(&format!(r#"{{"routing": {bad}}}"#));
        assert!(e.contains("routing") && e.contains(bad), "{e}");
    }
    let e = err(r#"{"routing": 1}"#);
    assert!(e.contains("invalid type"), "{e}");
}

#[test]
fn cidr_matching() {
    let c = parse_cidr("192.168.1.0/25").unwrap();
    assert!(c.contains("192.168.1.127".parse().unwrap()));
    assert!(!c.contains("192.168.1.128".parse().unwrap()));
    let any = parse_cidr("0.0.0.0/0").unwrap();
    assert!(any.contains("8.8.8.8".parse().unwrap()));
    assert!(any.contains("::ffff:8.8.8.8".parse().unwrap()));
    let v6 = parse_cidr("::1").unwrap();
    assert!(!v6.contains("::2".parse().unwrap()));
}
