//! The real binary rejects bad flags with exit status 2 and names the bad value.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use dnslb_tests::TempDir;
use std::process::{Command, Output};

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xds-shim"));
    command.args(args).env_remove("DNSLB_UPSTREAM");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

fn assert_rejected(output: &Output, needles: &[&str]) {
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert_contains(&String::from_utf8_lossy(&output.stderr), needles);
}

/// Standard output of a run that must have succeeded.
fn succeeded(output: Output) -> String {
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap()
}

fn assert_contains(text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(text.contains(needle), "{needle:?} not in\n{text}");
    }
}

#[test]
fn bad_upstream_exits_2_naming_the_value() {
    let output = run(&["--upstream", "dns+bad*host.test:80"], &[]);
    assert_rejected(&output, &["--upstream", "dns+bad*host.test:80"]);
}

#[test]
fn other_url_schemes_exit_2() {
    let output = run(&["--upstream", "http://srv+_http._tcp.api.test"], &[]);
    assert_rejected(
        &output,
        &["http://srv+_http._tcp.api.test", "not supported"],
    );
}

#[test]
fn bad_value_from_environment_exits_2() {
    let output = run(&[], &[("DNSLB_UPSTREAM", "dns+ok.test:80,dns+nope")]);
    assert_rejected(&output, &["dns+nope", "missing :PORT"]);
    let output = run(
        &["--upstream", "dns+ok.test:80"],
        &[("DNSLB_INTERVAL", "0s")],
    );
    assert_rejected(&output, &["--interval", "0s"]);
}

/// `-V` names the version and the commit it was built from.
#[test]
fn version_names_the_commit() {
    let output = run(&["-V"], &[]);
    let stdout = succeeded(output);
    assert!(
        stdout.starts_with(&format!("xds-shim {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{stdout}"
    );
    let commit = stdout
        .trim()
        .trim_end_matches(')')
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string();
    assert!(
        commit == "unknown"
            || (commit.len() == 12 && commit.bytes().all(|b| b.is_ascii_hexdigit())),
        "{stdout}"
    );
}

#[test]
fn missing_upstream_exits_2() {
    let output = run(&[], &[]);
    assert_rejected(&output, &["--upstream"]);
}

#[test]
fn same_listen_addresses_exit_2() {
    let output = run(
        &[
            "--upstream",
            "dns+ok.test:80",
            "--xds-listen",
            "127.0.0.1:9",
            "--admin-listen",
            "127.0.0.1:9",
        ],
        &[],
    );
    assert_rejected(&output, &["127.0.0.1:9", "must differ"]);
}

/// `text` in a file of its own directory (the test kit's, removed on drop), and its path.
fn config_file(text: &[u8]) -> (TempDir, String) {
    let dir = TempDir::new("xds-shim-cli").unwrap();
    let path = dir.path().join("file");
    std::fs::write(&path, text).unwrap();
    let path = path.display().to_string();
    (dir, path)
}

#[test]
fn check_prints_the_effective_config() {
    let (_guard, path) = config_file(
        b"upstreams:\n  - dns+a.test:80\n  - spec: srv+_h._tcp.b.test\n    interval: 10s\n    \
          connect_timeout: 250ms\n    circuit_breakers: {max_connections: 7}\n  \
          - spec: https://dns+c.test:443\n    tls: {ca_file: /own.pem, sni: api.test}\n\
          interval: 2s\ndrain: 0s\nlog_format: json\n",
    );
    // The variable beats the file; the file beats the default.
    let output = run(&["check", "--config", &path], &[("DNSLB_INTERVAL", "3s")]);
    let stdout = succeeded(output);
    assert_contains(
        &stdout,
        &[
            "- spec: dns+a.test:80\n  interval: 3s\n  connect_timeout: 1s\n",
            "- spec: https://dns+c.test:443\n  interval: 3s\n  connect_timeout: 1s\n  tls:\n    \
         ca_file: /own.pem\n    sni: api.test\n",
            "- spec: srv+_h._tcp.b.test\n  interval: 10s\n  connect_timeout: 250ms\n",
            "max_connections: 7",
            "\ninterval: 3s\n",
            "\ndrain: 0s\n",
            "\nempty_after: 3\n",
            "\nlog_format: json\n",
        ],
    );
}

/// Flags are global: `check` takes them after the subcommand as well as before it, the file
/// still fills in what no flag set, and `check --help` lists what it validates.
#[test]
fn check_takes_the_flags_after_the_subcommand() {
    let output = run(&["check", "--upstream", "dns+backend.test:80"], &[]);
    let stdout = succeeded(output);
    assert!(stdout.contains("- spec: dns+backend.test:80\n"), "{stdout}");

    let (_guard, path) = config_file(b"upstreams: [dns+a.test:80]\ninterval: 10s\ndrain: 1s\n");
    let output = run(
        &[
            "check",
            "--config",
            &path,
            "--interval",
            "2s",
            "--upstream",
            "dns+b.test:81",
        ],
        &[],
    );
    let stdout = succeeded(output);
    assert_contains(
        &stdout,
        &[
            "dns+a.test:80",
            "dns+b.test:81",
            "\ninterval: 2s\n",
            "\ndrain: 1s\n",
        ],
    );

    let output = run(&["check", "--upstream", "dns+bad..name:80"], &[]);
    assert_rejected(&output, &["--upstream", "dns+bad..name:80"]);

    let output = run(&["check", "--help"], &[]);
    let help = succeeded(output);
    assert_contains(
        &help,
        &[
            "--upstream",
            "--nameserver",
            "--interval",
            "--drain",
            "--config",
            "--ca-file",
        ],
    );
}

#[test]
fn invalid_config_exits_2_naming_key_and_value() {
    for (text, needles) in [
        (&b"interval: 5\n"[..], &["interval", "5"][..]),
        (b"drain: soon\n", &["drain", "soon"]),
        (b"upstreams: [dns+a:80]\nfrobnicate: 1\n", &["frobnicate"]),
        (
            b"upstreams:\n  - spec: dns+a:80\n    connect_timeout: 3\n",
            &["upstreams[0].connect_timeout", "\"3\""],
        ),
        (b"upstreams: ['srv+a b']\n", &["upstreams[0]", "srv+a b"]),
        (b"upstreams: [dns+a:80]\nxds_listen: \xff\n", &["not UTF-8"]),
        (
            b"nameservers: [dns.google]\nupstreams: [dns+a:80]\n",
            &["nameservers[0]", "dns.google"],
        ),
        (
            b"upstreams:\n  - spec: https://dns+a:443\n    tls: {ca_fille: /ca.pem}\n",
            &[
                "upstreams[0].tls",
                "{ca_fille: /ca.pem}",
                "unknown field `ca_fille`",
            ],
        ),
        (
            b"upstreams:\n  - spec: dns+a:80\n    tls: {sni: a.test}\n",
            &["upstreams[0].tls", "{sni: a.test}", "https://dns+a:80"],
        ),
        (
            b"upstreams:\n  - spec: https://dns+a:443\n    tls: {ca_file: ''}\n",
            &["upstreams[0].tls.ca_file", "\"\"", "empty"],
        ),
    ] {
        let (_guard, path) = config_file(text);
        let output = run(&["check", "--config", &path], &[]);
        assert_rejected(&output, needles);
    }
    let output = run(&["--config", "/nonexistent/dnslb.yaml"], &[]);
    assert_rejected(&output, &["/nonexistent/dnslb.yaml"]);
}

#[test]
fn malformed_names_exit_2_naming_the_value_and_the_fault() {
    let label64 = format!("dns+{}.test:80", "a".repeat(64));
    // Four 63-byte labels and three dots: 255 bytes.
    let label63 = "a".repeat(63);
    let name255 = format!("dns+{}:80", [label63.as_str(); 4].join("."));
    for (spec, why) in [
        ("dns+a..b.test:80", "empty label"),
        ("dns+.a.test:80", "empty label"),
        ("dns+a.test..:80", "empty label"),
        (label64.as_str(), "longer than 63"),
        (name255.as_str(), "longer than 253"),
        ("dns+a b.test:80", "only letters"),
        ("dns+b\u{e9}.test:80", "only letters"),
        ("dns+a*.test:80", "only letters"),
        ("dns+-a.test:80", "starts or ends with '-'"),
        ("dns+:80", "it is empty"),
        ("dns+a.test", "missing :PORT"),
        ("dns+a.test:", "port must be"),
        ("dns+a.test:0", "port must be"),
        ("dns+a.test:65536", "port must be"),
        ("dns+a.test:-1", "port must be"),
        ("dns+a.test:http", "port must be"),
        ("srv+", "it is empty"),
        ("srv+_http._tcp..test", "empty label"),
        ("srv+_http._tcp.a.test:80", "only letters"),
    ] {
        let output = run(&["--upstream", spec], &[]);
        assert_rejected(&output, &["--upstream", spec, why]);
        let (_guard, path) = config_file(format!("upstreams: ['{spec}']\n").as_bytes());
        let output = run(&["check", "--config", &path], &[]);
        assert_rejected(&output, &["upstreams[0]", spec, why]);
    }
}

#[test]
fn non_utf8_flag_or_variable_exits_2() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let bad = OsStr::from_bytes(b"dns+b\xff.test:80");
    let output = Command::new(env!("CARGO_BIN_EXE_xds-shim"))
        .arg("--upstream")
        .arg(bad)
        .env_remove("DNSLB_UPSTREAM")
        .output()
        .unwrap();
    assert_rejected(&output, &["UTF-8"]);
    let output = Command::new(env!("CARGO_BIN_EXE_xds-shim"))
        .env("DNSLB_UPSTREAM", bad)
        .output()
        .unwrap();
    assert_rejected(&output, &["UTF-8"]);
}

/// A certificate for `localhost` and its key, PEM, each in a temp file.
fn cert_and_key() -> ((TempDir, String), (TempDir, String)) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    (
        config_file(certified.cert.pem().as_bytes()),
        config_file(certified.signing_key.serialize_pem().as_bytes()),
    )
}

/// A good certificate and key, with `ca` as the client CA.
fn with_client_ca<'a>(cert: &'a str, key: &'a str, ca: &'a str) -> Vec<&'a str> {
    vec![
        "--xds-tls-cert",
        cert,
        "--xds-tls-key",
        key,
        "--xds-tls-client-ca",
        ca,
    ]
}

#[test]
fn bad_or_missing_xds_tls_files_exit_2_naming_flag_and_path() {
    let ((_c, cert), (_k, key)) = cert_and_key();
    let ((_o, other_cert), _) = cert_and_key();
    let (_j, junk) = config_file(b"not a certificate\n");
    let dir = std::env::temp_dir().display().to_string();
    let up = ["--upstream", "dns+ok.test:80"];
    for (args, needles) in [
        (
            vec![
                "--xds-tls-cert",
                "/nonexistent/xds.pem",
                "--xds-tls-key",
                &key,
            ],
            vec!["--xds-tls-cert", "/nonexistent/xds.pem", "cannot read"],
        ),
        (
            vec!["--xds-tls-cert", &dir, "--xds-tls-key", &key],
            vec!["--xds-tls-cert", &dir, "cannot read"],
        ),
        (
            vec!["--xds-tls-cert", &junk, "--xds-tls-key", &key],
            vec!["--xds-tls-cert", &junk, "no PEM CERTIFICATE"],
        ),
        (
            vec!["--xds-tls-cert", &cert, "--xds-tls-key", &junk],
            vec!["--xds-tls-key", &junk, "no PEM PRIVATE KEY"],
        ),
        (
            vec!["--xds-tls-cert", &other_cert, "--xds-tls-key", &key],
            vec!["--xds-tls-cert", &other_cert, "--xds-tls-key", &key],
        ),
        (
            with_client_ca(&cert, &key, "/nonexistent/ca.pem"),
            vec!["--xds-tls-client-ca", "/nonexistent/ca.pem", "cannot read"],
        ),
        (
            with_client_ca(&cert, &key, &junk),
            vec!["--xds-tls-client-ca", &junk, "no PEM CERTIFICATE"],
        ),
        (
            vec!["--xds-tls-cert", &cert],
            vec!["--xds-tls-cert needs --xds-tls-key"],
        ),
        (
            vec!["--xds-tls-client-ca", &cert],
            vec!["--xds-tls-client-ca needs --xds-tls-cert"],
        ),
    ] {
        let all = [&up[..], &args].concat();
        assert_rejected(&run(&all, &[]), &needles);
        // `check` validates them the same way, before printing anything.
        let output = run(&[&["check"], &all[..]].concat(), &[]);
        assert_rejected(&output, &needles);
        assert!(output.stdout.is_empty(), "{output:?}");
    }

    // From the environment and the config file alike.
    let output = run(
        &up,
        &[
            ("DNSLB_XDS_TLS_CERT", "/nonexistent/env.pem"),
            ("DNSLB_XDS_TLS_KEY", &key),
        ],
    );
    assert_rejected(&output, &["--xds-tls-cert", "/nonexistent/env.pem"]);
    let (_f, file) = config_file(
        format!(
            "upstreams: [dns+a:80]\nxds_tls_cert: {cert}\nxds_tls_key: /nonexistent/file.key\n"
        )
        .as_bytes(),
    );
    let output = run(&["check", "--config", &file], &[]);
    assert_rejected(
        &output,
        &["--xds-tls-key", "/nonexistent/file.key", "cannot read"],
    );
}

#[test]
fn check_prints_the_xds_tls_settings() {
    let ((_c, cert), (_k, key)) = cert_and_key();
    let output = run(&["check", "--upstream", "dns+a.test:80"], &[]);
    let stdout = succeeded(output);
    assert!(stdout.contains("\nxds_tls: null\n"), "{stdout}");

    let (_f, file) = config_file(
        format!("upstreams: [dns+a.test:80]\nxds_tls_cert: {cert}\nxds_tls_key: {key}\n")
            .as_bytes(),
    );
    let output = run(&["check", "--config", &file], &[]);
    let stdout = succeeded(output);
    let want = format!("\nxds_tls:\n  mode: tls\n  cert: {cert}\n  key: {key}\nadmin_listen");
    assert!(stdout.contains(&want), "{want:?} not in\n{stdout}");

    // Any PEM of roots serves as client CA; this certificate names itself.
    let output = run(
        &["check", "--config", &file],
        &[("DNSLB_XDS_TLS_CLIENT_CA", &cert)],
    );
    let stdout = succeeded(output);
    let want =
        format!("\nxds_tls:\n  mode: mtls\n  cert: {cert}\n  key: {key}\n  client_ca: {cert}\n");
    assert!(stdout.contains(&want), "{want:?} not in\n{stdout}");
}
