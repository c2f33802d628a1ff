//! The release filter stays reasonably small: Envoy loads one copy per
//! worker. It is built for speed (opt-level 3), so the cap is 1 MB. And Envoy
//! loads the dynamic module built for its ABI.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
};

use dnslb_tests::{
    free_port, shim_bootstrap_build, stack::filter_wasm, Build, Stack, StackOptions,
};

/// The budget from the data-plane issue; `just build` reports the actual size.
const MAX_WASM_BYTES: u64 = 1024 * 1024;

#[test]
fn release_wasm_is_under_1_mb() {
    let path = filter_wasm();
    let size = std::fs::metadata(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run `just build`)", path.display()))
        .len();
    assert!(size < MAX_WASM_BYTES, "{} is {size} bytes", path.display());
}

/// Envoy loads the `.so` and says which ABI it was built for: the version line an Envoy
/// upgrade must keep matching (see the README).
#[test]
fn envoy_loads_the_module_and_its_abi_version_matches() {
    let ip = Ipv4Addr::new(127, 0, 0, 2);
    let backend = SocketAddr::new(ip.into(), free_port(ip.into()).unwrap());
    let cluster = format!("dns+backend.test:{}", backend.port());
    let opts = StackOptions::new(
        vec![cluster.clone()],
        vec![backend],
        PathBuf::from(env!("CARGO_BIN_EXE_fake-backend")),
    );
    let stack = Stack::start_with(
        opts,
        |dns| dns.set_a("backend.test", &[ip]),
        |ports, _, config| shim_bootstrap_build(ports, Some(Build::Module), config, false),
    )
    .unwrap();
    stack.wait_serving_native(&cluster, &[backend]).unwrap();
    let log = stack.envoy.process().log();
    assert!(
        log.contains("Dynamic module ABI version v0.2.0 matched"),
        "{}",
        stack.envoy.log_tail(40)
    );
}
