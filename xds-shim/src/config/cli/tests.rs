use super::*;

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("xds-shim").chain(args.iter().copied()))
}

fn cluster_names(config: &Config) -> Vec<String> {
    config
        .upstreams
        .iter()
        .map(|c| c.upstream.cluster_name())
        .collect()
}

#[test]
fn defaults() {
    let cli = parse(&["--upstream", "dns+backend.test:8080"]).unwrap();
    let config = cli.to_config().unwrap();
    let upstreams: Vec<&Upstream> = config.upstreams.iter().map(|c| &c.upstream).collect();
    assert_eq!(upstreams, [&"dns+backend.test:8080".parse().unwrap()]);
    assert!(config.nameservers.is_empty());
    assert_eq!(config.interval, Duration::from_secs(5));
    assert_eq!(config.xds_listen, "127.0.0.1:18000".parse().unwrap());
    assert_eq!(config.admin_listen, "127.0.0.1:18001".parse().unwrap());
    assert_eq!(cli.log_format, LogFormat::Text);
    assert_eq!(config.policy, Policy::default());
    assert_eq!(config.resolver, Settings::default());
}

#[test]
fn failure_policy_flags() {
    let cli = parse(&[
        "--upstream",
        "dns+x:1",
        "--drain",
        "0s",
        "--empty-after",
        "1",
        "--max-stale",
        "1m",
    ])
    .unwrap();
    let policy = cli.to_config().unwrap().policy;
    assert_eq!(policy.drain, Duration::ZERO);
    assert_eq!(policy.empty_after, 1);
    assert_eq!(policy.max_stale, Some(Duration::from_secs(60)));
    assert!(parse(&["--upstream", "dns+x:1", "--empty-after", "0"]).is_err());
}

#[test]
fn repeatable_and_comma_separated_flags() {
    let cli = parse(&[
        "--upstream",
        "dns+a.test:80,dns+b.test:80",
        "--upstream",
        "dns+A.test.:80",
        "--nameserver",
        "127.0.0.1:5353",
        "--nameserver",
        "10.0.0.53",
        "--nameserver",
        "[::1]:53",
        "--interval",
        "500ms",
        "--log-format",
        "json",
    ])
    .unwrap();
    let config = cli.to_config().unwrap();
    assert_eq!(cluster_names(&config), ["dns+a.test:80", "dns+b.test:80"]);
    assert_eq!(
        config.nameservers,
        [
            "127.0.0.1:5353".parse::<SocketAddr>().unwrap(),
            "10.0.0.53:53".parse().unwrap(),
            "[::1]:53".parse().unwrap()
        ]
    );
    assert_eq!(config.interval, Duration::from_millis(500));
    assert_eq!(cli.log_format, LogFormat::Json);
}

#[test]
fn bad_values_name_flag_and_value() {
    for (args, flag, value) in [
        (
            vec!["--upstream", "srv+_http._tcp.x:80"],
            "--upstream",
            "srv+_http._tcp.x:80",
        ),
        (vec!["--upstream", "dns+x:0"], "--upstream", "dns+x:0"),
        (
            vec!["--upstream", "dns+x:1", "--interval", "5"],
            "--interval",
            "5",
        ),
        (
            vec!["--upstream", "dns+x:1", "--nameserver", "dns.google"],
            "--nameserver",
            "dns.google",
        ),
        (
            vec!["--upstream", "dns+x:1", "--xds-listen", "localhost:1"],
            "--xds-listen",
            "localhost:1",
        ),
    ] {
        let err = parse(&args).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{args:?}");
        let msg = err.to_string();
        assert!(msg.contains(flag) && msg.contains(value), "{args:?}: {msg}");
    }
}

#[test]
fn file_fills_in_what_flags_did_not_set() {
    let file = file::parse(
        "upstreams: [dns+f.test:80]\ninterval: 2s\ndrain: 0s\nipv6: true\n\
         nameservers: [127.0.0.1:5353]\nmax_records: 10\n",
    )
    .unwrap();
    let cli = parse(&["--upstream", "dns+x:1", "--interval", "7s"]).unwrap();
    let explicit = |id: &str| id == "interval" || id == "upstreams";
    let config = cli.to_config_with(&file, explicit).unwrap();
    assert_eq!(cluster_names(&config), ["dns+f.test:80", "dns+x:1"]);
    assert_eq!(config.interval, Duration::from_secs(7), "the flag wins");
    assert_eq!(config.policy.drain, Duration::ZERO);
    assert!(config.resolver.ipv6);
    assert_eq!(config.policy.max_records, 10);
    assert_eq!(config.nameservers, ["127.0.0.1:5353".parse().unwrap()]);

    let bad = file::parse("drain: soon\n").unwrap();
    let err = cli.to_config_with(&bad, explicit).unwrap_err().to_string();
    assert!(err.contains("drain") && err.contains("\"soon\""), "{err}");
    let bad = file::parse("max_in_flight: 0\n").unwrap();
    let err = cli.to_config_with(&bad, explicit).unwrap_err().to_string();
    assert!(err.contains("max_in_flight"), "{err}");
}

#[test]
fn per_upstream_tls_overrides_the_global_ca_file() {
    let file = file::parse(
        "upstreams:\n  - spec: https://dns+own.test:443\n    \
         tls: {ca_file: /own.pem, sni: api.test}\n  - https://srv+_h._tcp.global.test\n\
         ca_file: /global.pem\n",
    )
    .unwrap();
    let cli = parse(&[]).unwrap();
    let config = cli.to_config_with(&file, |_| false).unwrap();
    assert_eq!(config.ca_file, "/global.pem");
    let yaml = config.to_yaml();
    for needle in [
        "- spec: https://dns+own.test:443\n  interval: 5s\n  connect_timeout: 1s\n  \
         tls:\n    ca_file: /own.pem\n    sni: api.test\n",
        // Defaults filled in: the global roots, the SRV name.
        "- spec: https://srv+_h._tcp.global.test\n  interval: 5s\n  connect_timeout: 1s\n  \
         tls:\n    ca_file: /global.pem\n    sni: _h._tcp.global.test\n",
    ] {
        assert!(yaml.contains(needle), "{yaml} lacks {needle}");
    }
}

#[test]
fn empty_ca_file_is_rejected() {
    let err = parse(&["--upstream", "dns+x:1", "--ca-file", ""]).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("--ca-file"), "{err}");
    let file = file::parse("ca_file: ''\n").unwrap();
    let cli = parse(&["--upstream", "dns+x:1"]).unwrap();
    let err = cli
        .to_config_with(&file, |_| false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("ca_file") && err.contains("empty"), "{err}");
}

#[test]
fn xds_tls_settings_merge_and_go_together() {
    let cli = parse(&["--upstream", "dns+x:1"]).unwrap();
    assert_eq!(cli.to_config().unwrap().xds_tls, None);
    // The file's cert without a key is caught after merging; its paths are read.
    let file = file::parse(
        "xds_tls_cert: /nonexistent/xds.pem
",
    )
    .unwrap();
    let err = cli
        .to_config_with(&file, |_| false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("--xds-tls-cert needs --xds-tls-key"), "{err}");
    let file = file::parse(
        "xds_tls_key: /nonexistent/xds.key
",
    )
    .unwrap();
    let cli = parse(&[
        "--upstream",
        "dns+x:1",
        "--xds-tls-cert",
        "/nonexistent/c.pem",
    ])
    .unwrap();
    let explicit = |id: &str| id == "xds_tls_cert";
    let err = cli.to_config_with(&file, explicit).unwrap_err().to_string();
    assert!(
        err.contains("--xds-tls-cert") && err.contains("/nonexistent/c.pem"),
        "{err}"
    );
    let cli = parse(&["--upstream", "dns+x:1", "--xds-tls-client-ca", "/ca.pem"]).unwrap();
    let err = cli.to_config().unwrap_err().to_string();
    assert!(err.contains("--xds-tls-client-ca needs"), "{err}");
}

fn bootstrap_args(args: &[&str]) -> Result<BootstrapArgs, clap::Error> {
    let cli = parse(&[&["envoy-bootstrap"], args].concat())?;
    match cli.command {
        Some(Command::EnvoyBootstrap(args)) => Ok(*args),
        other => panic!("{other:?}"),
    }
}

#[test]
fn bootstrap_xds_tls_flags() {
    assert_eq!(bootstrap_args(&[]).unwrap().xds_tls(), None);
    let args = bootstrap_args(&["--xds-ca", "/ca.pem", "--xds-sni", "XDS.test."]).unwrap();
    assert_eq!(
        args.xds_tls(),
        Some(XdsTlsClient {
            ca: "/ca.pem".into(),
            sni: Some("xds.test".into()),
            client_cert: None
        })
    );
    let args = bootstrap_args(&[
        "--xds-ca",
        "/ca.pem",
        "--xds-client-cert",
        "/e.pem",
        "--xds-client-key",
        "/e.key",
    ])
    .unwrap();
    let client = args.xds_tls().unwrap().client_cert.unwrap();
    assert_eq!(
        (client.cert.as_str(), client.key.as_str()),
        ("/e.pem", "/e.key")
    );

    for (args, needles) in [
        (&["--xds-sni", "x.test"][..], &["--xds-ca"][..]),
        (
            &["--xds-client-cert", "/e.pem", "--xds-client-key", "/e.key"],
            &["--xds-ca"],
        ),
        (
            &["--xds-ca", "/ca.pem", "--xds-client-cert", "/e.pem"],
            &["--xds-client-key"],
        ),
        (
            &["--xds-ca", "/ca.pem", "--xds-client-key", "/e.key"],
            &["--xds-client-cert"],
        ),
        (&["--xds-ca", ""], &["--xds-ca", "empty"]),
        (
            &["--xds-ca", "/ca.pem", "--xds-sni", "10.0.0.1"],
            &["--xds-sni", "10.0.0.1"],
        ),
    ] {
        let err = bootstrap_args(args).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{args:?}");
        let msg = err.to_string();
        for needle in needles {
            assert!(msg.contains(needle), "{args:?}: {msg}");
        }
    }
}

#[test]
fn upstream_is_required() {
    // From a flag, a variable or the file: checked once all are merged.
    let err = parse(&[]).unwrap().to_config().unwrap_err();
    assert_eq!(err, ConfigError::NoUpstreams);
    assert!(err.to_string().contains("--upstream"));
}

#[test]
fn listen_addresses_must_differ() {
    let cli = parse(&[
        "--upstream",
        "dns+x:1",
        "--xds-listen",
        "127.0.0.1:9000",
        "--admin-listen",
        "127.0.0.1:9000",
    ])
    .unwrap();
    assert_eq!(
        cli.to_config(),
        Err(ConfigError::SameListenAddress(
            "127.0.0.1:9000".parse().unwrap()
        ))
    );
}
