//! `https://` upstreams through the real Envoy: TLS to the resolved IP with SNI = the DNS
//! name, the certificate verified against that name (it names the host only, no IP). The
//! TLS backend is `openssl s_server -www` with a certificate from a throwaway CA.
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

/// A CA (`ca.pem`) and a leaf for `name` signed by it (`leaf.pem`, `leaf.key`).
fn certificates(dir: &Path, name: &str) {
    let ca_subject = "/CN=dnslb test CA";
    openssl(
        dir,
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", ca_subject,
        ],
    );
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

#[test]
fn https_upstream_verifies_the_certificate_against_the_dns_name() {
    let certs = TempDir::new("tls-certs").unwrap();
    certificates(certs.path(), "tls.test");
    let ip = Ipv4Addr::new(127, 0, 0, 2);
    let port = free_port(ip.into()).unwrap();
    let mut server = Command::new("openssl");
    server
        .args([
            "s_server", "-www", "-cert", "leaf.pem", "-key", "leaf.key", "-accept",
        ])
        .arg(SocketAddr::new(ip.into(), port).to_string())
        .current_dir(certs.path());
    let server = ChildGuard::spawn("s_server", server, certs.path()).unwrap();
    server.wait_for_log("ACCEPT", WAIT).unwrap();

    // The same server behind two names: one its certificate names, one it does not.
    let good = format!("dns+tls.test:{port}");
    let wrong = format!("dns+wrong.test:{port}");
    let ca = certs.path().join("ca.pem").display().to_string();
    let opts = StackOptions {
        shim_args: vec!["--ca-file".into(), ca],
        ..StackOptions::new(
            vec![format!("https://{good}"), format!("https://{wrong}")],
            vec![],
            PathBuf::from(env!("CARGO_BIN_EXE_fake-backend")),
        )
    };
    let stack = Stack::start(opts, |dns| {
        dns.set_a("tls.test", &[ip]);
        dns.set_a("wrong.test", &[ip]);
    })
    .unwrap();
    let backend = SocketAddr::new(ip.into(), port);
    for cluster in [&good, &wrong] {
        stack
            .envoy
            .wait_cluster_hosts(cluster, &[backend], WAIT)
            .unwrap();
    }

    let response = stack.get(&good, "/").unwrap();
    assert_eq!(response.status, 200, "{}", stack.envoy.log_tail(30));
    assert!(response.body.contains("s_server"), "{}", response.body);
    assert!(
        response.body.contains("TLS"),
        "served over TLS: {}",
        response.body
    );

    // Same IP, but the certificate does not name wrong.test: Envoy refuses to talk.
    let response = stack.get(&wrong, "/").unwrap();
    assert_eq!(response.status, 503, "{}", response.body);
    let failures = stack
        .envoy
        // Envoy's stat names spell ':' as '_'.
        .stat(&format!(
            "cluster.{}.ssl.fail_verify_san",
            wrong.replace(':', "_")
        ))
        .unwrap();
    assert!(
        failures.is_some_and(|n| n != "0"),
        "expected a SAN verification failure; stats:\n{}",
        stack.envoy.stats().unwrap()
    );
}
