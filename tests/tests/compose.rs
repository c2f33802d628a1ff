//! The docker-compose demo (`envoy/compose/`), checked statically: no Docker
//! engine runs where these tests run, so they are what keeps it working. The
//! file parses, everything it refers to exists, its Envoy config validates and
//! is the local demo's with only addresses and paths changed, its addresses
//! line up with the zone, and the Dockerfile builds with the commands CI runs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    net::{Ipv4Addr, SocketAddr},
    process::Command,
};

use dnslb_tests::{dns::query, workspace_root, DnsServer, TempDir};
use hickory_proto::rr::{RData, RecordType};
use serde_yaml::Value;
use support::{assert_exists, parse_yaml, read, seq, str, validate_bootstrap};

const DIR: &str = "envoy/compose";
const COMPOSE: &str = "envoy/compose/docker-compose.yml";

fn compose() -> Value {
    parse_yaml(COMPOSE, &read(COMPOSE))
}

fn service<'a>(compose: &'a Value, name: &str) -> &'a Value {
    let service = &compose["services"][name];
    assert!(service.is_mapping(), "{COMPOSE} has no service {name}");
    service
}

fn services(compose: &Value) -> BTreeMap<String, Value> {
    compose["services"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| (str(k, "service name").to_owned(), v.clone()))
        .collect()
}

fn command(service: &Value) -> Vec<String> {
    seq(&service["command"], "command")
        .iter()
        .map(|a| str(a, "command argument").to_owned())
        .collect()
}

/// `--flag=value` and `--flag value` forms of every occurrence of `flag`.
fn flag_values(args: &[String], flag: &str) -> Vec<String> {
    let mut values = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == flag {
            values.push(args.next().unwrap().clone());
        } else if let Some(value) = arg.strip_prefix(&format!("{flag}=")) {
            values.push(value.to_owned());
        }
    }
    values
}

fn ipv4(service: &Value) -> Ipv4Addr {
    str(
        &service["networks"]["dnslb"]["ipv4_address"],
        "networks.dnslb.ipv4_address",
    )
    .parse()
    .unwrap()
}

/// `docker compose` mount `SOURCE:TARGET[:MODE]` of a service, as (source, target).
fn mounts(service: &Value) -> Vec<(String, String)> {
    service["volumes"]
        .as_sequence()
        .map(|v| v.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|mount| {
            let parts: Vec<&str> = str(mount, "volume").split(':').collect();
            (parts[0].to_owned(), parts[1].to_owned())
        })
        .collect()
}

#[test]
fn rendered_files_are_the_local_demo_files_rendered() {
    let out = TempDir::new("render").unwrap();
    let status = Command::new("bash")
        .arg(workspace_root().join(DIR).join("render.sh"))
        .arg(out.path())
        .status()
        .unwrap();
    assert!(status.success(), "render.sh failed: {status}");
    for file in ["envoy.yaml", "demo.zone"] {
        let fresh = fs::read_to_string(out.path().join(file)).unwrap();
        let committed = read(&format!("{DIR}/rendered/{file}"));
        assert!(
            fresh == committed,
            "{DIR}/rendered/{file} is stale: run envoy/compose/render.sh and commit it"
        );
    }
}

#[test]
fn everything_the_compose_file_refers_to_exists() {
    let compose = compose();
    let dir = workspace_root().join(DIR);
    let dockerfile_stages = stages(&read(&format!("{DIR}/Dockerfile")));
    let declared_volumes = compose["volumes"].as_mapping().unwrap();
    let declared_networks = compose["networks"].as_mapping().unwrap();
    let services = services(&compose);
    for (name, service) in &services {
        let what = format!("service {name}");
        if service["build"].is_mapping() {
            let context = str(&service["build"]["context"], "build.context");
            assert_exists(&dir, context, &what);
            let dockerfile = str(&service["build"]["dockerfile"], "build.dockerfile");
            assert_exists(&dir.join(context), dockerfile, &what);
            let target = str(&service["build"]["target"], "build.target");
            assert!(
                dockerfile_stages.contains(target),
                "{what} builds target {target}; the Dockerfile has {dockerfile_stages:?}"
            );
        } else {
            assert!(service["image"].is_string(), "{what} has no image");
        }
        for (source, _) in mounts(service) {
            if source.starts_with('.') {
                assert_exists(&dir, &source, &what);
            } else {
                assert!(
                    declared_volumes.contains_key(source.as_str()),
                    "{what} mounts undeclared volume {source}"
                );
            }
        }
        if let Some(networks) = service["networks"].as_mapping() {
            for network in networks.keys() {
                assert!(
                    declared_networks.contains_key(network),
                    "{what} joins undeclared network {network:?}"
                );
            }
        }
        let depends: Vec<&Value> = match &service["depends_on"] {
            Value::Sequence(items) => items.iter().collect(),
            Value::Mapping(map) => map.keys().collect(),
            _ => Vec::new(),
        };
        for dependency in depends {
            assert!(
                services.contains_key(str(dependency, "depends_on")),
                "{what} depends on unknown service {dependency:?}"
            );
        }
    }

    // CoreDNS reads the Corefile and the zone through its mounts.
    let coredns = service(&compose, "coredns");
    let corefile = read(&format!("{DIR}/Corefile"));
    let zone_path = corefile
        .lines()
        .find_map(|l| l.trim().strip_prefix("file "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap();
    let host_path = mounts(coredns)
        .into_iter()
        .find_map(|(source, target)| {
            zone_path
                .strip_prefix(&format!("{target}/"))
                .map(|file| format!("{source}/{file}"))
        })
        .unwrap_or_else(|| panic!("no coredns mount holds {zone_path}"));
    assert_exists(&dir, &host_path, "the Corefile");
    assert_eq!(host_path, "./rendered/demo.zone");
    assert_eq!(
        command(coredns),
        ["-conf", "/etc/coredns/Corefile"],
        "CoreDNS must run the mounted Corefile"
    );
    assert!(mounts(coredns).contains(&("./Corefile".into(), "/etc/coredns/Corefile".into())));
}

/// `FROM image AS name` stage names.
fn stages(dockerfile: &str) -> BTreeSet<String> {
    dockerfile
        .lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["FROM", _, as_, name] if as_.eq_ignore_ascii_case("as") => {
                    Some((*name).to_owned())
                }
                _ => None,
            }
        })
        .collect()
}

#[test]
fn envoy_is_the_pinned_official_image_on_the_rendered_demo_config() {
    let compose = compose();
    let envoy = service(&compose, "envoy");
    let version = read(".envoy-version").trim().to_owned();
    assert_eq!(
        str(&envoy["image"], "envoy image"),
        format!("envoyproxy/envoy:v{version}"),
        "the compose Envoy must be the version in .envoy-version"
    );
    let args = command(envoy);
    assert_eq!(flag_values(&args, "-c"), ["/etc/envoy/envoy.yaml"]);
    let mounts = mounts(envoy);
    assert!(mounts.contains(&(
        "./rendered/envoy.yaml".into(),
        "/etc/envoy/envoy.yaml".into()
    )));
    // The filter service copies the .wasm into the volume Envoy reads it from.
    let filter = service(&compose, "filter");
    let filter_volume = self::mounts(filter)
        .into_iter()
        .find(|(_, target)| target == "/out")
        .map(|(source, _)| source)
        .unwrap();
    assert!(mounts.contains(&(filter_volume, "/etc/dnslb".into())));
    assert_eq!(
        str(
            &envoy["depends_on"]["filter"]["condition"],
            "envoy depends_on filter"
        ),
        "service_completed_successfully"
    );

    let config = read(&format!("{DIR}/rendered/envoy.yaml"));
    // The HTTP filter and the absolute-form network filter, one VM (vm_id dnslb).
    assert_eq!(
        config
            .matches("filename: /etc/dnslb/dnslb_filter.wasm")
            .count(),
        2
    );
    validate_bootstrap(
        "the compose Envoy config",
        &parse_yaml("rendered/envoy.yaml", &config),
    );
}

/// The A records `name` has in `zone` (served by the harness DNS server, which
/// parses the same master-file syntax CoreDNS does).
fn a_records(zone: &str, name: &str) -> BTreeSet<Ipv4Addr> {
    let dns = DnsServer::start().unwrap();
    dns.load_zone(zone).unwrap();
    query(dns.addr(), name, RecordType::A)
        .unwrap()
        .answers
        .iter()
        .filter_map(|r| match r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

#[test]
fn addresses_line_up_with_the_zone_and_the_envoy_config() {
    let compose = compose();
    let subnet = str(
        &compose["networks"]["dnslb"]["ipam"]["config"][0]["subnet"],
        "subnet",
    );
    assert_eq!(
        subnet, "10.53.0.0/24",
        "render.sh maps 127.0.0.N to 10.53.0.N"
    );

    // backend.test's A records are the backends, each listening on its own address.
    let zone = read(&format!("{DIR}/rendered/demo.zone"));
    let mut backends = BTreeSet::new();
    for (name, service) in services(&compose) {
        if name.starts_with("backend-") {
            let ip = ipv4(&service);
            assert_eq!(
                flag_values(&command(&service), "--listen"),
                [SocketAddr::from((ip, 8080)).to_string()],
                "{name} must listen on its network address"
            );
            backends.insert(ip);
        }
    }
    assert_eq!(a_records(&zone, "backend.test"), backends);
    assert_eq!(backends.len(), 3);

    // The shim asks CoreDNS, serves xDS where Envoy's dnslb_xds points, and
    // discovers what the local demo's shim discovers.
    let shim = service(&compose, "xds-shim");
    let args = command(shim);
    let coredns_ip = ipv4(service(&compose, "coredns"));
    assert_eq!(
        flag_values(&args, "--nameserver"),
        [format!("{coredns_ip}:53")]
    );
    assert_eq!(a_records(&zone, "ns.test"), BTreeSet::from([coredns_ip]));
    let xds_listen: SocketAddr = flag_values(&args, "--xds-listen")[0].parse().unwrap();
    let envoy_config = parse_yaml(
        "rendered/envoy.yaml",
        &read(&format!("{DIR}/rendered/envoy.yaml")),
    );
    let xds_cluster = seq(&envoy_config["static_resources"]["clusters"], "clusters")
        .iter()
        .find(|c| c["name"] == "dnslb_xds")
        .unwrap();
    let address = &xds_cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
        ["address"]["socket_address"];
    assert_eq!(
        str(&address["address"], "dnslb_xds address"),
        ipv4(shim).to_string()
    );
    assert_eq!(
        address["port_value"].as_u64(),
        Some(u64::from(xds_listen.port()))
    );
    let demo_sh = read("envoy/demo.sh");
    let demo_args: Vec<String> = demo_sh.split_whitespace().map(str::to_owned).collect();
    assert_eq!(
        flag_values(&args, "--upstream"),
        flag_values(&demo_args, "--upstream"),
        "the compose shim and envoy/demo.sh must discover the same upstreams"
    );
}

/// The `cargo` commands of every `RUN` in the Dockerfile.
fn dockerfile_cargo_commands(dockerfile: &str) -> Vec<String> {
    let joined = dockerfile.replace("\\\n", " ");
    joined
        .lines()
        .filter_map(|line| line.trim().strip_prefix("RUN "))
        .flat_map(|run| run.split("&&"))
        .map(|part| part.split_whitespace().collect::<Vec<_>>())
        .filter_map(|words| {
            let start = words.iter().position(|w| *w == "cargo")?;
            Some(words[start..].join(" "))
        })
        .collect()
}

/// The commands of the Justfile recipe `name`, with `{{var}}` expanded.
fn recipe(justfile: &str, name: &str) -> Vec<String> {
    let variables: Vec<(String, String)> = justfile
        .lines()
        .filter_map(|l| l.split_once(" := "))
        .filter_map(|(k, v)| {
            let v = v.trim();
            (v.starts_with('"') && v.ends_with('"') && v.matches('"').count() == 2)
                .then(|| (k.trim().to_owned(), v.trim_matches('"').to_owned()))
        })
        .collect();
    let mut lines = justfile.lines().skip_while(|l| {
        !l.strip_prefix(name)
            .is_some_and(|rest| rest.starts_with(':'))
    });
    assert!(lines.next().is_some(), "the Justfile has no recipe {name}");
    lines
        .take_while(|l| l.starts_with("    "))
        .map(|l| {
            let mut command = l.trim().to_owned();
            for (k, v) in &variables {
                command = command.replace(&format!("{{{{{k}}}}}"), v);
            }
            command
        })
        .collect()
}

#[test]
fn the_dockerfile_builds_with_the_commands_ci_runs() {
    let docker = dockerfile_cargo_commands(&read(&format!("{DIR}/Dockerfile")));
    let justfile = read("Justfile");
    let shim = recipe(&justfile, "build-shim");
    let filter = recipe(&justfile, "build-filter");
    let demo: Vec<String> = recipe(&justfile, "demo")
        .into_iter()
        .filter(|c| c.starts_with("cargo "))
        .collect();
    let expected: Vec<String> = [shim, filter, demo].concat();
    assert_eq!(
        docker, expected,
        "the Dockerfile must build with `just build-shim`, `just build-filter` \
         and `just demo`'s cargo commands"
    );
    assert!(expected.iter().all(|c| c.starts_with("cargo build")));
}

/// A health check's `["CMD", binary, "probe", url]`, as (binary, url).
fn probe_check(service: &Value, what: &str) -> (String, String) {
    let test: Vec<&str> = seq(&service["healthcheck"]["test"], "healthcheck.test")
        .iter()
        .map(|a| str(a, "healthcheck.test argument"))
        .collect();
    match test.as_slice() {
        ["CMD", binary, "probe", url] => ((*binary).to_owned(), (*url).to_owned()),
        other => panic!("{what}'s health check must be [CMD, xds-shim, probe, URL], not {other:?}"),
    }
}

#[test]
fn envoy_waits_for_a_ready_shim_and_both_are_probed_without_a_shell() {
    let compose = compose();
    let dockerfile = read(&format!("{DIR}/Dockerfile"));
    // The shim is healthy once /readyz (every upstream answered) says so, on its admin port.
    let shim = service(&compose, "xds-shim");
    let admin = flag_values(&command(shim), "--admin-listen");
    let admin: SocketAddr = admin[0].parse().unwrap();
    assert_eq!(
        probe_check(shim, "xds-shim"),
        (
            "/usr/local/bin/xds-shim".to_owned(),
            format!("http://127.0.0.1:{}/readyz", admin.port())
        )
    );
    assert!(dockerfile.contains("ENTRYPOINT [\"/usr/local/bin/xds-shim\"]"));

    // Envoy probes its admin /ready with the xds-shim the filter service copies into the
    // volume it mounts.
    let envoy = service(&compose, "envoy");
    let (binary, url) = probe_check(envoy, "envoy");
    let config = parse_yaml(
        "rendered/envoy.yaml",
        &read(&format!("{DIR}/rendered/envoy.yaml")),
    );
    let envoy_admin = config["admin"]["address"]["socket_address"]["port_value"]
        .as_u64()
        .unwrap();
    assert_eq!(url, format!("http://127.0.0.1:{envoy_admin}/ready"));
    let (volume, mount) = mounts(envoy)
        .into_iter()
        .find(|(_, target)| binary.starts_with(&format!("{target}/")))
        .unwrap_or_else(|| panic!("no envoy mount holds {binary}"));
    let filter = service(&compose, "filter");
    assert!(mounts(filter).contains(&(volume, "/out".into())));
    let file = binary.strip_prefix(&format!("{mount}/")).unwrap();
    assert!(
        dockerfile.contains(&format!("\"/dnslb/{file}\", \"/out/\"]")),
        "the filter stage must copy {file} into /out"
    );

    assert_eq!(
        str(
            &envoy["depends_on"]["xds-shim"]["condition"],
            "envoy depends_on xds-shim"
        ),
        "service_healthy"
    );
    // Whatever waits for a service to be healthy waits for one that has a health check.
    for (name, service) in services(&compose) {
        for (dependency, how) in service["depends_on"].as_mapping().into_iter().flatten() {
            if how["condition"] == "service_healthy" {
                let dependency = str(dependency, "depends_on");
                assert!(
                    compose["services"][dependency]["healthcheck"].is_mapping(),
                    "{name} waits for {dependency} to be healthy, which has no health check"
                );
            }
        }
    }
}

#[test]
fn images_are_pinned_by_version() {
    let dockerfile = read(&format!("{DIR}/Dockerfile"));
    for line in dockerfile.lines().filter(|l| l.starts_with("FROM ")) {
        let image = line.split_whitespace().nth(1).unwrap();
        let (name, tag) = image.rsplit_once(':').unwrap_or((image, "latest"));
        // distroless publishes no version tags: its `nonroot` variant follows Debian 12.
        if name.starts_with("gcr.io/distroless/") {
            assert!(name.ends_with("-debian12"), "{line}");
            continue;
        }
        let version = tag.split('-').next().unwrap();
        assert!(
            version.split('.').count() == 3 && version.split('.').all(|n| n.parse::<u32>().is_ok()),
            "{line}: pin the image by its full version (X.Y.Z)"
        );
    }
    for (name, service) in services(&compose()) {
        if let Some(image) = service["image"]
            .as_str()
            .filter(|_| !service["build"].is_mapping())
        {
            let tag = image.rsplit_once(':').map_or("latest", |(_, t)| t);
            assert!(
                tag.trim_start_matches('v').split('.').count() == 3,
                "service {name}: pin {image} by its full version"
            );
        }
    }
}
