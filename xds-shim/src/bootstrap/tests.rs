use super::*;

fn req(json: &str, wasm: bool) -> Result<Request, BootstrapError> {
    request(
        "127.0.0.1:10000".parse().unwrap(),
        "127.0.0.1:9901".parse().unwrap(),
        "127.0.0.1:18000".parse().unwrap(),
        wasm.then(|| FilterBuild::Wasm("/x/dnslb_filter.wasm".to_string())),
        json,
        false,
        None,
    )
}

/// The `dnslb_xds` cluster of the bootstrap for `tls`, with xDS at `xds`.
fn xds_cluster_of(xds: &str, tls: Option<XdsTlsClient>) -> Value {
    let mut request = req("{}", false).unwrap();
    request.xds = xds.parse().unwrap();
    request.xds_tls = tls;
    let yaml = render(&request);
    let value: Value = serde_norway::from_str(&yaml).unwrap();
    let cluster = &value["static_resources"]["clusters"][0];
    assert_eq!(cluster["name"], XDS_CLUSTER);
    cluster.clone()
}

#[test]
fn xds_is_plaintext_without_a_ca() {
    let cluster = xds_cluster_of("127.0.0.1:18000", None);
    assert!(cluster.get("transport_socket").is_none(), "{cluster}");
}

#[test]
fn xds_ca_verifies_the_shim_by_its_ip() {
    let tls = XdsTlsClient {
        ca: "/etc/dnslb/xds-ca.pem".into(),
        sni: None,
        client_cert: None,
    };
    let cluster = xds_cluster_of("10.0.0.7:18000", Some(tls));
    let socket = &cluster["transport_socket"];
    assert_eq!(socket["name"], "envoy.transport_sockets.tls");
    let context = &socket["typed_config"];
    assert_eq!(
        context["@type"],
        "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
    );
    assert!(context.get("sni").is_none(), "{context}");
    let common = &context["common_tls_context"];
    assert_eq!(common["alpn_protocols"], json!(["h2"]));
    assert_eq!(
        common["validation_context"],
        json!({
            "trusted_ca": { "filename": "/etc/dnslb/xds-ca.pem" },
            "match_typed_subject_alt_names": [
                { "san_type": "IP_ADDRESS", "matcher": { "exact": "10.0.0.7" } },
            ],
        })
    );
    assert!(common.get("tls_certificates").is_none(), "{common}");
    // Still HTTP/2 to the shim, now inside TLS.
    assert!(cluster["typed_extension_protocol_options"]
        .to_string()
        .contains("http2_protocol_options"));
}

#[test]
fn xds_sni_and_client_certificate() {
    let tls = XdsTlsClient {
        ca: "/ca.pem".into(),
        sni: Some("xds.dnslb.internal".into()),
        client_cert: Some(ClientCert {
            cert: "/envoy.pem".into(),
            key: "/envoy.key".into(),
        }),
    };
    let cluster = xds_cluster_of("[::1]:18000", Some(tls));
    let context = &cluster["transport_socket"]["typed_config"];
    assert_eq!(context["sni"], "xds.dnslb.internal");
    let common = &context["common_tls_context"];
    assert_eq!(
        common["validation_context"]["match_typed_subject_alt_names"],
        json!([{ "san_type": "DNS", "matcher": { "exact": "xds.dnslb.internal" } }])
    );
    assert_eq!(
        common["tls_certificates"],
        json!([{
            "certificate_chain": { "filename": "/envoy.pem" },
            "private_key": { "filename": "/envoy.key" },
        }])
    );
}

#[test]
fn round_robin_leaves_the_filter_off_on_upstream_routes() {
    let yaml = render(&req("{}", true).unwrap());
    assert!(yaml.contains("cluster_header: :authority"), "{yaml}");
    assert!(yaml.contains("auto_host_rewrite: true"));
    assert!(yaml.contains("envoy.retry_host_predicates.previous_hosts"));
    // Off on every route but the two status routes: 2 upstream routes, 400, 404.
    assert_eq!(yaml.matches("disabled: true").count(), 4);
    assert!(!yaml.contains("hash_policy"));
    assert!(yaml.contains(r#"{\"routing\":\"envoy\"}"#) || yaml.contains(r#""routing":"envoy""#));
}

#[test]
fn only_cookie_mode_asks_for_clusters_that_read_the_endpoint_header() {
    let balancing = |json: &str| {
        bootstrap(&req(json, true).unwrap())["node"]["metadata"]["dnslb"]["balancing"].clone()
    };
    assert_eq!(balancing("{}"), json!("native"));
    assert_eq!(
        balancing(r#"{"affinity":{"mode":"hash","key":"header:x-user"}}"#),
        json!("native")
    );
    assert_eq!(
        balancing(r#"{"affinity":{"mode":"cookie"}}"#),
        json!("endpoint_header")
    );
    // The module overrides the host itself: its cookie mode needs no header policy.
    let mut module = req(r#"{"affinity":{"mode":"cookie"}}"#, true).unwrap();
    module.build = Some(FilterBuild::Module("/x/libdnslb_module.so".into()));
    assert_eq!(
        bootstrap(&module)["node"]["metadata"]["dnslb"]["balancing"],
        json!("native")
    );
}

#[test]
fn cookie_mode_enables_the_filter_on_upstream_routes() {
    let yaml = render(&req(r#"{"affinity":{"mode":"cookie"}}"#, true).unwrap());
    // Off only on the 400 and 404 answers.
    assert_eq!(yaml.matches("disabled: true").count(), 2);
    assert_eq!(
        req(r#"{"affinity":{"mode":"cookie"}}"#, false).unwrap_err(),
        BootstrapError::NeedsFilter("cookie affinity")
    );
}

#[test]
fn the_module_loads_by_path_with_the_same_routes_and_its_own_xds_address() {
    let json = r#"{"affinity":{"mode":"cookie"}}"#;
    let mut module = req(json, true).unwrap();
    module.build = Some(FilterBuild::Module("/x/libdnslb_module.so".into()));
    let yaml = render(&module);
    assert!(yaml.contains("DynamicModuleFilter"), "{yaml}");
    assert!(yaml.contains("filename: /x/libdnslb_module.so"), "{yaml}");
    assert!(!yaml.contains("wasm"), "{yaml}");
    assert!(
        yaml.contains(r#""xds_address":"127.0.0.1:18000""#),
        "{yaml}"
    );
    // Turned off per route exactly like the wasm filter.
    let wasm = render(&req(json, true).unwrap());
    assert_eq!(
        yaml.matches("disabled: true").count(),
        wasm.matches("disabled: true").count()
    );
    // With --xds-ca its own xDS client gets the same TLS as Envoy's `dnslb_xds` cluster.
    module.xds_tls = Some(XdsTlsClient {
        ca: "/ca.pem".into(),
        sni: Some("shim.dnslb.test".into()),
        client_cert: Some(ClientCert {
            cert: "/envoy.pem".into(),
            key: "/envoy-key.pem".into(),
        }),
    });
    let yaml = render(&module);
    assert!(
        yaml.contains(
            r#""xds_address":"127.0.0.1:18000","xds_tls":{"ca_file":"/ca.pem","cert_file":"/envoy.pem","key_file":"/envoy-key.pem","server_name":"shim.dnslb.test"}"#
        ),
        "{yaml}"
    );
    let absolute = request(
        module.listen,
        module.admin,
        module.xds,
        module.build.clone(),
        "{}",
        true,
        None,
    );
    assert_eq!(absolute.unwrap_err(), BootstrapError::AbsoluteFormNeedsWasm);
}

#[test]
fn hash_mode_is_envoys_hash_policy() {
    let yaml = render(
        &req(
            r#"{"affinity":{"mode":"hash","key":"header:x-user"}}"#,
            false,
        )
        .unwrap(),
    );
    assert!(yaml.contains("header_name: x-user"), "{yaml}");
    assert!(yaml.contains("lb_policy: maglev"));
    assert!(!yaml.contains("wasm"));
    let yaml = render(&req(r#"{"affinity":{"mode":"hash"}}"#, false).unwrap());
    assert!(yaml.contains("source_ip: true"), "{yaml}");
}

#[test]
fn aliases_become_virtual_hosts() {
    let yaml = render(
        &req(
            r#"{"aliases":{"vminsert:8480":"dns+vminsert.svc:8480"}}"#,
            false,
        )
        .unwrap(),
    );
    assert!(yaml.contains("- vminsert:8480"), "{yaml}");
    assert!(yaml.contains("cluster: dns+vminsert.svc:8480"), "{yaml}");
}

#[test]
fn bad_filter_config_names_the_value() {
    let err = req(r#"{"retries":"many"}"#, true).unwrap_err().to_string();
    assert!(
        err.contains("--filter-config") && err.contains("many"),
        "{err}"
    );
}
