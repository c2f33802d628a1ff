//! The Envoy RAII wrapper against a real Envoy (found by envoy/envoy.sh) with a static
//! config: no dnslb parts involved.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

use dnslb_tests::{
    envoy::bootstrap::{listener_head, ROUTER},
    free_port, http_get, Backend, Envoy, EnvoyOptions, HarnessError,
};

fn local_port() -> dnslb_tests::Result<SocketAddr> {
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    Ok(SocketAddr::new(ip, free_port(ip)?))
}

fn config(admin: SocketAddr, listener: SocketAddr, backends: &[SocketAddr]) -> String {
    let endpoints: String = backends
        .iter()
        .map(|b| {
            format!(
                "              - endpoint: {{ address: {{ socket_address: {{ address: \"{}\", port_value: {} }} }} }}\n",
                b.ip(),
                b.port()
            )
        })
        .collect();
    format!(
        r#"{head}                        - match: {{ path: "/direct" }}
                          direct_response: {{ status: 200, body: {{ inline_string: "hello" }} }}
                        - match: {{ prefix: "/" }}
                          route: {{ cluster: static_backends }}
                http_filters:
{ROUTER}  clusters:
    - name: static_backends
      type: STATIC
      load_assignment:
        cluster_name: static_backends
        endpoints:
          - lb_endpoints:
{endpoints}"#,
        head = listener_head(None, "main", admin, listener, true),
    )
}

#[test]
fn envoy_starts_serves_and_reports_its_clusters() {
    let backends = [
        Backend::start("127.0.0.1:0".parse().unwrap(), Some("one")).unwrap(),
        Backend::start("127.0.0.1:0".parse().unwrap(), Some("two")).unwrap(),
    ];
    let backend_addrs: Vec<SocketAddr> = backends.iter().map(Backend::addr).collect();
    let (admin, listener) = (local_port().unwrap(), local_port().unwrap());
    let yaml = config(admin, listener, &backend_addrs);

    let envoy = Envoy::start(
        &yaml,
        EnvoyOptions {
            admin,
            concurrency: 1,
        },
    )
    .unwrap();
    envoy.wait_ready(Duration::from_secs(60)).unwrap();
    Envoy::validate(envoy.config_path()).unwrap();
    envoy
        .wait_cluster_hosts("static_backends", &backend_addrs, Duration::from_secs(10))
        .unwrap();

    let direct = http_get(listener, "/direct", &[]).unwrap();
    assert_eq!((direct.status, direct.body.as_str()), (200, "hello"));
    let proxied = http_get(listener, "/x", &[("Host", "anything.test")]).unwrap();
    assert_eq!(proxied.status, 200);
    let served_by: SocketAddr = proxied.header("x-backend").unwrap().parse().unwrap();
    assert!(backend_addrs.contains(&served_by));
    assert_eq!(proxied.header("x-seen-host"), Some("anything.test"));

    assert_eq!(
        envoy
            .stat("cluster.static_backends.upstream_rq_200")
            .unwrap()
            .as_deref(),
        Some("1")
    );
    assert!(envoy.stats().unwrap().contains("server.live: 1"));

    // A wrong expectation times out with what was seen and the Envoy log.
    let err = envoy
        .wait_cluster_hosts("static_backends", &[], Duration::from_millis(200))
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, HarnessError::Timeout { .. }), "{text}");
    assert!(
        text.contains("last seen hosts") && text.contains("envoy log tail"),
        "{text}"
    );
}

#[test]
fn envoy_validate_reports_a_bad_config() {
    let dir = dnslb_tests::TempDir::new("validate").unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "static_resources: { clusters: [ { name: x, type: NOPE } ] }\n",
    )
    .unwrap();
    let err = Envoy::validate(&path).unwrap_err();
    assert!(matches!(err, HarnessError::EnvoyValidate { .. }), "{err}");
    assert!(err.to_string().contains("NOPE"), "{err}");
}
