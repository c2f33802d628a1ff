//! `https://` upstreams through the real Envoy: TLS to the resolved IP with SNI = the DNS
//! name, the certificate verified against that name (it names the host only, no IP). The
//! TLS backend is `openssl s_server -www` with a certificate from a throwaway CA. Roots and
//! SNI come from the global `--ca-file` or from an upstream's own `tls:` in `--config`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    fs,
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use dnslb_tests::{free_port, ChildGuard, Stack, StackOptions, TempDir};

const WAIT: Duration = Duration::from_secs(30);

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl must be installed");
    assert!(output.status.success(), "openssl {args:?}: {output:?}");
}

/// A self-signed CA in `dir` (`ca.pem`, `ca.key`).
fn ca(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=dnslb test CA",
        ],
    );
}

/// A CA (`ca.pem`) and a leaf for `name` signed by it (`leaf.pem`, `leaf.key`).
fn certificates(dir: &Path, name: &str) {
    ca(dir);
    let subject = format!("/CN={name}");
    openssl(
        dir,
        &[
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "leaf.key", "-out", "leaf.csr",
            "-subj", &subject,
        ],
    );
    fs::write(dir.join("san.ext"), format!("subjectAltName=DNS:{name}\n")).unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "leaf.pem",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    );
}

/// `openssl s_server -www` on 127.0.0.2 with the leaf in `certs`, once it accepts.
fn tls_server(certs: &Path) -> (ChildGuard, SocketAddr) {
    let ip = Ipv4Addr::new(127, 0, 0, 2);
    let addr = SocketAddr::new(ip.into(), free_port(ip.into()).unwrap());
    let mut server = Command::new("openssl");
    server
        .args([
            "s_server", "-www", "-cert", "leaf.pem", "-key", "leaf.key", "-accept",
        ])
        .arg(addr.to_string())
        .current_dir(certs);
    let server = ChildGuard::spawn("s_server", server, certs).unwrap();
    server.wait_for_log("ACCEPT", WAIT).unwrap();
    (server, addr)
}

/// The shim reads its upstreams from `config` (written next to the certificates) with the
/// global `--ca-file` `ca`; every name in `names` resolves to `backend`.
fn start(certs: &Path, config: &str, ca: &Path, names: &[&str], backend: SocketAddr) -> Stack {
    let config_path = certs.join("shim.yaml");
    fs::write(&config_path, config).unwrap();
    let opts = StackOptions {
        shim_args: vec![
            "--config".into(),
            config_path.display().to_string(),
            "--ca-file".into(),
            ca.display().to_string(),
        ],
        ..StackOptions::new(
            vec![],
            vec![],
            PathBuf::from(env!("CARGO_BIN_EXE_fake-backend")),
        )
    };
    let SocketAddr::V4(v4) = backend else {
        panic!("the TLS server listens on IPv4");
    };
    Stack::start(opts, |dns| {
        for name in names {
            dns.set_a(name, &[*v4.ip()]);
        }
    })
    .unwrap()
}

/// Envoy's counter `ssl.STAT` of the cluster.
fn ssl_stat(stack: &Stack, cluster: &str, stat: &str) -> u64 {
    stack
        .envoy
        .cluster_stat(cluster, &format!("ssl.{stat}"))
        .unwrap()
        .map_or(0, |n| n.parse().unwrap())
}

/// A request to `cluster` fails (503) on certificate verification, counted in `stat`.
fn assert_refused(stack: &Stack, cluster: &str, stat: &str) {
    let response = stack.get(cluster, "/").unwrap();
    assert_eq!(response.status, 503, "{cluster}: {}", response.body);
    assert!(
        ssl_stat(stack, cluster, stat) > 0,
        "{cluster}: expected ssl.{stat}; stats:\n{}",
        stack.envoy.stats().unwrap()
    );
}

#[test]
fn https_upstream_verifies_the_certificate_against_the_dns_name() {
    let certs = TempDir::new("tls-certs").unwrap();
    certificates(certs.path(), "tls.test");
    // The global roots are another CA, which did not sign the server's certificate.
    let other = TempDir::new("tls-other-ca").unwrap();
    ca(other.path());
    let (_server, backend) = tls_server(certs.path());
    let port = backend.port();
    let ca = certs.path().join("ca.pem").display().to_string();

    // The same server behind four names. Its certificate names tls.test only.
    let good = format!("dns+tls.test:{port}");
    let wrong = format!("dns+wrong.test:{port}");
    let alias = format!("dns+alias.test:{port}");
    let global = format!("dns+global.test:{port}");
    let config = format!(
        "upstreams:\n\
         - spec: https://{good}\n  tls: {{ca_file: '{ca}'}}\n\
         - spec: https://{wrong}\n  tls: {{ca_file: '{ca}'}}\n\
         - spec: https://{alias}\n  tls: {{ca_file: '{ca}', sni: tls.test}}\n\
         - https://{global}\n"
    );
    let stack = start(
        certs.path(),
        &config,
        &other.path().join("ca.pem"),
        &["tls.test", "wrong.test", "alias.test", "global.test"],
        backend,
    );
    for cluster in [&good, &wrong, &alias, &global] {
        stack
            .envoy
            .wait_cluster_hosts(cluster, &[backend], WAIT)
            .unwrap();
    }

    // Served only because the upstream's own CA replaced the (wrong) global one.
    let response = stack.get(&good, "/").unwrap();
    assert_eq!(response.status, 200, "{}", stack.envoy.log_tail(30));
    assert!(response.body.contains("s_server"), "{}", response.body);
    assert!(
        response.body.contains("TLS"),
        "served over TLS: {}",
        response.body
    );

    // Same IP and roots, but the certificate does not name wrong.test: Envoy refuses.
    assert_refused(&stack, &wrong, "fail_verify_san");

    // alias.test asks for tls.test by SNI and requires that name: the certificate fits.
    let response = stack.get(&alias, "/").unwrap();
    assert_eq!(response.status, 200, "{}", stack.envoy.log_tail(30));

    // Without its own CA an upstream gets the global roots, which do not trust the server.
    assert_refused(&stack, &global, "fail_verify_error");
    assert_eq!(ssl_stat(&stack, &good, "fail_verify_error"), 0);
}

/// A CA path is Envoy's to open (the shim may run elsewhere): a missing one is reported by
/// Envoy's NACK, which the shim logs and shows, naming the path.
#[test]
fn missing_ca_file_is_reported_naming_the_path() {
    let certs = TempDir::new("tls-certs").unwrap();
    certificates(certs.path(), "tls.test");
    let (_server, backend) = tls_server(certs.path());
    let missing = certs.path().join("no-such-ca.pem").display().to_string();
    let config = format!(
        "upstreams:\n- spec: https://dns+tls.test:{}\n  tls: {{ca_file: '{missing}'}}\n",
        backend.port()
    );
    let stack = start(
        certs.path(),
        &config,
        &certs.path().join("ca.pem"),
        &["tls.test"],
        backend,
    );
    let line = stack.shim.process.wait_for_log("NACK", WAIT).unwrap();
    assert!(line.contains(&missing), "{line}");
    let status = stack.shim.status().unwrap().to_string();
    assert!(status.contains(&missing), "{status}");
}
