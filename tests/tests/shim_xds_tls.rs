//! xDS over TLS end to end: the shim serves its xDS port only over TLS
//! (`--xds-tls-cert/--xds-tls-key`), optionally requiring client certificates
//! (`--xds-tls-client-ca`), and a real Envoy started from `xds-shim envoy-bootstrap
//! --xds-ca ...` gets its clusters through it. The certificates are made by the test with
//! rcgen: a CA, the shim's certificate (DNS `xds.dnslb.test` and IP 127.0.0.1) and an
//! Envoy client certificate.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    fs,
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use dnslb_tests::{
    free_port, shim_bootstrap_with,
    stack::{filter_wasm, EnvoyPorts},
    wait_until, Build, Envoy, EnvoyOptions, Stack, StackOptions, TempDir,
};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::cluster::v3::cluster_discovery_service_client::ClusterDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

const NAME: &str = "backend.test";
const SHIM_NAME: &str = "xds.dnslb.test";
const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const WAIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

/// PEM files in a temp dir: a CA, the shim's certificate and key, Envoy's client
/// certificate and key.
struct Pki {
    dir: TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = TempDir::new("xds-tls").unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "dnslb xDS test CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        fs::write(dir.path().join("ca.pem"), ca_cert.pem()).unwrap();
        let issuer = Issuer::new(ca, ca_key);

        let leaf = |name: &str, sans: &[&str], usage: ExtendedKeyUsagePurpose| {
            let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
            let mut params = CertificateParams::new(sans).unwrap();
            params.distinguished_name.push(DnType::CommonName, name);
            params.extended_key_usages = vec![usage];
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &issuer).unwrap();
            fs::write(dir.path().join(format!("{name}.pem")), cert.pem()).unwrap();
            fs::write(dir.path().join(format!("{name}.key")), key.serialize_pem()).unwrap();
        };
        leaf(
            "shim",
            &[SHIM_NAME, "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        leaf("envoy", &[], ExtendedKeyUsagePurpose::ClientAuth);
        Pki { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn read(&self, name: &str) -> Vec<u8> {
        fs::read(self.dir.path().join(name)).unwrap()
    }

    /// `envoy-bootstrap`'s flags for mutual TLS: our CA, the shim's DNS name, Envoy's
    /// certificate.
    fn mutual_bootstrap_args(&self) -> Vec<String> {
        vec![
            "--xds-ca".into(),
            self.path("ca.pem"),
            "--xds-sni".into(),
            SHIM_NAME.into(),
            "--xds-client-cert".into(),
            self.path("envoy.pem"),
            "--xds-client-key".into(),
            self.path("envoy.key"),
        ]
    }

    /// The shim's flags: TLS, and client certificates from our CA when `mutual`.
    fn shim_args(&self, mutual: bool) -> Vec<String> {
        let mut args = vec![
            "--xds-tls-cert".to_string(),
            self.path("shim.pem"),
            "--xds-tls-key".into(),
            self.path("shim.key"),
        ];
        if mutual {
            args.extend(["--xds-tls-client-ca".into(), self.path("ca.pem")]);
        }
        args
    }
}

/// A stack with one backend behind `dns+backend.test:PORT`, the shim started with
/// `shim_args`, Envoy from `envoy-bootstrap` with `bootstrap_args` and the wasm filter in
/// cookie mode, so the filter's own stream to the shim crosses TLS as well.
fn start(shim_args: Vec<String>, bootstrap_args: Vec<String>) -> (Stack, String, SocketAddr) {
    start_build(Build::Wasm, shim_args, bootstrap_args)
}

/// [`start`] with `build` of the filter: the module's own xDS client (not one of
/// Envoy's clusters) crosses TLS with the same files.
fn start_build(
    build: Build,
    shim_args: Vec<String>,
    bootstrap_args: Vec<String>,
) -> (Stack, String, SocketAddr) {
    let port = free_port(ip(2).into()).unwrap();
    let backend = SocketAddr::new(ip(2).into(), port);
    let cluster = format!("dns+{NAME}:{port}");
    let opts = StackOptions {
        shim_args,
        filter_config: r#"{"affinity":{"mode":"cookie"}}"#.into(),
        ..StackOptions::new(
            vec![cluster.clone()],
            vec![backend],
            PathBuf::from(env!("CARGO_BIN_EXE_fake-backend")),
        )
    };
    let stack = Stack::start_with(
        opts,
        |dns| dns.set_a(NAME, &[ip(2)]),
        |ports, _, config| {
            let artifact = build.artifact()?.display().to_string();
            let mut extra = vec![build.flag(), artifact.as_str()];
            extra.extend(bootstrap_args.iter().map(String::as_str));
            shim_bootstrap_with(ports, None, config, false, &extra)
        },
    )
    .unwrap();
    (stack, cluster, backend)
}

/// The request path works: Envoy has the member, a backend answers through it, and the
/// filter's status (fed by its own stream to the shim) lists the cluster.
fn assert_serving(stack: &Stack, cluster: &str, backend: SocketAddr) {
    stack.wait_serving_native(cluster, &[backend]).unwrap();
    let report = stack.get_backend(cluster, "/through-tls").unwrap();
    assert_eq!(report.backend, backend.to_string());
    assert_eq!(report.host, cluster.trim_start_matches("dns+"));
    wait_until(
        "the filter's stream to list the cluster",
        WAIT,
        POLL,
        || {
            let status = stack.get("example.test", "/dnslb/status")?;
            Ok(status.status == 200 && status.body.contains(cluster))
        },
    )
    .unwrap();
}

/// An Envoy started from `envoy-bootstrap` with `bootstrap_args` against `stack`'s shim,
/// its node renamed to `node`. Not waited for: it may never get its clusters.
fn another_envoy(stack: &Stack, node: &str, bootstrap_args: &[&str]) -> Envoy {
    let ports = EnvoyPorts {
        admin: free_port(ip(1).into()).unwrap(),
        listener: free_port(ip(1).into()).unwrap(),
        xds: stack.shim.xds,
    };
    let yaml = shim_bootstrap_with(ports, None, "{}", false, bootstrap_args).unwrap();
    assert_eq!(yaml.matches("id: dnslb\n").count(), 1, "{yaml}");
    let yaml = yaml.replace("id: dnslb\n", &format!("id: {node}\n"));
    Envoy::start(
        &yaml,
        EnvoyOptions {
            admin: SocketAddr::new(ip(1).into(), ports.admin),
            concurrency: 1,
        },
    )
    .unwrap()
}

/// Envoy's counter `name`, 0 while it does not exist.
fn counter(envoy: &Envoy, name: &str) -> u64 {
    envoy
        .stat(name)
        .ok()
        .flatten()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Waits until Envoy's counter `name` reaches `at_least`; the error shows Envoy's log.
fn wait_counter(envoy: &Envoy, name: &str, at_least: u64) {
    wait_until(&format!("{name} >= {at_least}"), WAIT, POLL, || {
        envoy.process().ensure_running()?;
        Ok(counter(envoy, name) >= at_least)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", envoy.log_tail(40)));
}

/// The nodes of the shim's open xDS streams.
fn shim_nodes(stack: &Stack) -> Vec<String> {
    let status = stack.shim.status().unwrap();
    status["clients"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| c["node"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// One unary CDS fetch from the shim's xDS port, as node `node`: the cluster names, or the
/// error. `tls`: `None` for plaintext (h2c).
fn fetch_clusters(
    xds: u16,
    tls: Option<ClientTlsConfig>,
    node: &str,
) -> Result<Vec<String>, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut endpoint = Channel::from_shared(format!("{scheme}://127.0.0.1:{xds}"))
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(5));
        if let Some(tls) = tls {
            endpoint = endpoint.tls_config(tls).map_err(|e| format!("{e:?}"))?;
        }
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| format!("connect: {e:?}"))?;
        let request = DiscoveryRequest {
            node: Some(Node {
                id: node.into(),
                ..Default::default()
            }),
            type_url: CDS.into(),
            ..Default::default()
        };
        let response = ClusterDiscoveryServiceClient::new(channel)
            .fetch_clusters(request)
            .await
            .map_err(|e| format!("fetch: {e:?}"))?
            .into_inner();
        Ok(response
            .resources
            .iter()
            .filter_map(|any| {
                use prost::Message;
                envoy_types::pb::envoy::config::cluster::v3::Cluster::decode(any.value.as_slice())
                    .ok()
                    .map(|c| c.name)
            })
            .collect())
    })
}

/// The client TLS settings of a gRPC client that trusts our CA and checks the shim's DNS
/// name, with Envoy's client certificate when `identity`.
fn client_tls(pki: &Pki, identity: bool) -> ClientTlsConfig {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(pki.read("ca.pem")))
        .domain_name(SHIM_NAME);
    if identity {
        tls.identity(Identity::from_pem(
            pki.read("envoy.pem"),
            pki.read("envoy.key"),
        ))
    } else {
        tls
    }
}

#[test]
fn envoy_gets_its_clusters_from_a_tls_only_shim() {
    let pki = Pki::new();
    // No --xds-sni: Envoy requires the --xds IP (127.0.0.1) as an IP SAN.
    let (stack, cluster, backend) = start(
        pki.shim_args(false),
        vec!["--xds-ca".into(), pki.path("ca.pem")],
    );
    assert_serving(&stack, &cluster, backend);
    assert!(counter(&stack.envoy, "cluster.dnslb_xds.ssl.handshake") >= 1);
    assert!(
        stack.shim.process.log().contains("xDS over TLS (tls)"),
        "{}",
        stack.shim.process.log_tail(20)
    );

    // TLS only: a plaintext gRPC client gets nothing; one that trusts the CA does.
    let plaintext = fetch_clusters(stack.shim.xds, None, "plaintext");
    assert!(plaintext.is_err(), "{plaintext:?}");
    assert_eq!(
        fetch_clusters(stack.shim.xds, Some(client_tls(&pki, false)), "tls"),
        Ok(vec![cluster.clone()])
    );

    // Envoy checks the name: a certificate without the SNI asked for is refused.
    let ca = pki.path("ca.pem");
    let wrong = another_envoy(
        &stack,
        "wrong-name",
        &["--xds-ca", &ca, "--xds-sni", "other.dnslb.test"],
    );
    wait_counter(&wrong, "cluster.dnslb_xds.ssl.fail_verify_san", 1);
    assert!(!shim_nodes(&stack).contains(&"wrong-name".to_string()));
}

#[test]
fn the_modules_own_xds_client_crosses_tls_with_the_same_files() {
    let pki = Pki::new();
    // Mutual TLS and a DNS name: the module's client shows Envoy's certificate and
    // checks the shim's name, as Envoy's `dnslb_xds` cluster does.
    let (stack, cluster, backend) = start_build(
        Build::Module,
        pki.shim_args(true),
        pki.mutual_bootstrap_args(),
    );
    // The status path is the module's: it lists the cluster only from its own stream.
    assert_serving(&stack, &cluster, backend);
}

#[test]
fn mutual_tls_serves_envoy_with_a_client_certificate_and_refuses_one_without() {
    let pki = Pki::new();
    let ca = pki.path("ca.pem");
    let (stack, cluster, backend) = start(pki.shim_args(true), pki.mutual_bootstrap_args());
    assert_serving(&stack, &cluster, backend);
    assert!(
        stack
            .shim
            .process
            .log()
            .contains("client certificates required"),
        "{}",
        stack.shim.process.log_tail(20)
    );

    // A gRPC client: with the certificate it gets the clusters, without it is refused.
    assert_eq!(
        fetch_clusters(stack.shim.xds, Some(client_tls(&pki, true)), "with-cert"),
        Ok(vec![cluster.clone()])
    );
    let refused = fetch_clusters(
        stack.shim.xds,
        Some(client_tls(&pki, false)),
        "no-cert-grpc",
    );
    assert!(refused.is_err(), "{refused:?}");

    // An Envoy without a client certificate: the shim ends each of its connections in
    // the TLS handshake (Envoy counts a TLS connection error and retries), so it never
    // holds a stream nor gets a dnslb cluster.
    let refused = another_envoy(
        &stack,
        "no-cert",
        &["--xds-ca", &ca, "--xds-sni", SHIM_NAME],
    );
    wait_counter(&refused, "cluster.dnslb_xds.ssl.connection_error", 2);
    assert!(!shim_nodes(&stack).contains(&"no-cert".to_string()));
    let connected = refused.stat("control_plane.connected_state").unwrap();
    assert_eq!(connected.as_deref(), Some("0"));
    let clusters = refused.clusters().unwrap();
    assert!(!clusters.contains("dns+"), "{clusters}");
    // The first Envoy is still served.
    assert!(shim_nodes(&stack).contains(&"dnslb".to_string()));
    stack.get_backend(&cluster, "/still").unwrap();
}

/// `envoy --mode validate` accepts the bootstraps with TLS to the shim (it opens the files).
#[test]
fn xds_tls_bootstraps_validate() {
    let pki = Pki::new();
    let ports = EnvoyPorts {
        admin: 9901,
        listener: 10000,
        xds: 18000,
    };
    let (ca, cert, key) = (
        pki.path("ca.pem"),
        pki.path("envoy.pem"),
        pki.path("envoy.key"),
    );
    let wasm = filter_wasm();
    for (i, extra) in [
        vec!["--xds-ca", &ca],
        vec!["--xds-ca", &ca, "--xds-sni", SHIM_NAME],
        vec![
            "--xds-ca",
            &ca,
            "--xds-client-cert",
            &cert,
            "--xds-client-key",
            &key,
        ],
    ]
    .into_iter()
    .enumerate()
    {
        let yaml = shim_bootstrap_with(ports, Some(wasm.as_path()), "{}", false, &extra).unwrap();
        let path = pki.dir.path().join(format!("bootstrap-{i}.yaml"));
        fs::write(&path, &yaml).unwrap();
        Envoy::validate(&path).unwrap_or_else(|e| panic!("{extra:?}: {e}\n{yaml}"));
    }
}
