//! One rule for upstream names: the filter (`dnslb_wire::authority`), the shim
//! (`xds-shim check --upstream NAME`, the real binary) and the recommended bootstrap's
//! authority regex in a real Envoy (RE2: 400 for a malformed name, 404 for a well-formed
//! one it does not serve) accept and refuse the same names. Names are in canonical form
//! (lowercase, no trailing dot, no leading zeros): the filter and the shim normalize the
//! rest, Envoy matches exactly (README, "The recommended bootstrap").
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{net::Ipv4Addr, net::SocketAddr, path::PathBuf, process::Command};

use dnslb_tests::{free_port, shim_bootstrap, stack::shim_binary, Stack, StackOptions};

const VALID: [&str; 11] = [
    "dns+backend.test:8080",
    "dns+a_b.test:80",
    "dns+_a.test:80",
    "dns+a_.test:80",
    "dns+a-b.test:1",
    "dns+x:65535",
    "dns+10.0.0.1:80",
    "srv+_http._tcp.api.test",
    "srv+a_b.test",
    "srv+a-b.c",
    "srv+x",
];

const INVALID: [&str; 14] = [
    "dns+a..b:80",
    "dns+-a.test:80",
    "dns+a-.test:80",
    "dns+a.test",
    "dns+a.test:",
    "dns+a.test:0",
    "dns+a.test:x",
    "dns+:80",
    "dns+a*b:80",
    "srv+a.test:80",
    "srv+",
    "dns+",
    "srv+-a.b",
    "srv+a..b",
];

fn filter_accepts(name: &str) -> bool {
    matches!(dnslb_wire::authority::parse(name), Ok(Some(u)) if u.cluster == name)
}

fn shim_accepts(name: &str) -> bool {
    let output = Command::new(shim_binary())
        .args(["check", "--upstream", name])
        .output()
        .unwrap();
    match output.status.code() {
        Some(0) => true,
        Some(2) => false,
        other => panic!("xds-shim check --upstream {name}: {other:?} {output:?}"),
    }
}

#[test]
fn filter_shim_and_envoy_agree_on_every_name() {
    let ip = Ipv4Addr::new(127, 0, 0, 2);
    let port = free_port(ip.into()).unwrap();
    let cluster = format!("dns+backend.test:{port}");
    let backend = SocketAddr::new(ip.into(), port);
    let stack = Stack::start_with(
        StackOptions::new(
            vec![cluster.clone()],
            vec![backend],
            PathBuf::from(env!("CARGO_BIN_EXE_fake-backend")),
        ),
        |dns| dns.set_a("backend.test", &[ip]),
        |ports, wasm, config| shim_bootstrap(ports, Some(wasm), config, false),
    )
    .unwrap();
    stack.wait_serving_native(&cluster, &[backend]).unwrap();

    let mut disagreements = Vec::new();
    for (names, valid) in [(&VALID[..], true), (&INVALID[..], false)] {
        for name in names {
            let status = stack.get(name, "/").unwrap().status;
            let envoy = match status {
                404 => true,
                400 => false,
                other => panic!("{name}: Envoy answered {other}"),
            };
            let seen = (filter_accepts(name), shim_accepts(name), envoy);
            if seen != (valid, valid, valid) {
                disagreements.push(format!("{name}: filter, shim, Envoy say {seen:?}"));
            }
        }
    }
    assert!(disagreements.is_empty(), "{disagreements:#?}");
}
