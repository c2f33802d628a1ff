//! Every Envoy configuration in `envoy/` and every mode of `xds-shim envoy-bootstrap`
//! passes `envoy --mode validate` (which loads the filter, either build, and configures it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::fs;

use dnslb_tests::{
    shim_bootstrap_build,
    stack::{filter_routing_bootstrap, filter_routing_bootstrap_module, filter_wasm, EnvoyPorts},
    Build, Envoy, TempDir,
};

fn validate(name: &str, yaml: &str) {
    let dir = TempDir::new("validate").unwrap();
    let path = dir.path().join(name);
    fs::write(&path, yaml).unwrap();
    if let Err(e) = Envoy::validate(&path) {
        panic!("{name} does not validate: {e}");
    }
}

#[test]
fn filter_routing_bootstrap_validates() {
    let ports = EnvoyPorts {
        admin: 9901,
        listener: 10000,
        xds: 18000,
    };
    validate(
        "filter-routing.yaml",
        &filter_routing_bootstrap(ports, &filter_wasm(), "{}").unwrap(),
    );
}

/// The snippets for an existing Envoy, dropped into a minimal bootstrap the
/// way envoy/README explains, make a valid configuration with each way of
/// taking the clusters from the shim: ADS, Delta ADS, plain CDS, plain Delta CDS.
#[test]
fn snippets_for_an_existing_envoy_validate() {
    let mut bootstrap = support::plain_bootstrap(9901, 10000);
    support::add_dnslb(
        &mut bootstrap,
        support::seq(&support::snippet("xds-cluster.yaml"), "xds-cluster.yaml").clone(),
    );
    let variants = [
        (
            "dynamic-resources.yaml",
            support::snippet("dynamic-resources.yaml"),
        ),
        (
            "dynamic-resources-delta.yaml",
            support::snippet("dynamic-resources-delta.yaml"),
        ),
        (
            "dynamic-resources-cds.yaml",
            support::snippet("dynamic-resources-cds.yaml"),
        ),
        (
            "dynamic-resources-cds.yaml with DELTA_GRPC",
            support::delta_cds_dynamic_resources(),
        ),
    ];
    for (name, dynamic) in variants {
        bootstrap["dynamic_resources"] = dynamic;
        support::validate_bootstrap(&format!("the snippets with {name}"), &bootstrap);
    }
}

/// Every mode `xds-shim envoy-bootstrap` offers validates, with either build of the filter.
#[test]
fn every_bootstrap_mode_validates() {
    let ports = EnvoyPorts {
        admin: 9901,
        listener: 10000,
        xds: 18000,
    };
    let (wasm, module) = (Some(Build::Wasm), Some(Build::Module));
    let cookie = r#"{"affinity":{"mode":"cookie","strict":true}}"#;
    let aliases = r#"{"affinity":{"mode":"hash","key":"header:x-user"},"aliases":{"vm:8480":"dns+vm.svc:8480"}}"#;
    for (i, (config, build, absolute_form)) in [
        ("{}", wasm, true),
        ("{}", None, false),
        ("{}", module, false),
        (cookie, wasm, false),
        (cookie, module, false),
        (r#"{"affinity":{"mode":"hash"}}"#, None, false),
        (aliases, wasm, true),
        (aliases, module, false),
    ]
    .into_iter()
    .enumerate()
    {
        let yaml = shim_bootstrap_build(ports, build, config, absolute_form).unwrap();
        validate(&format!("bootstrap-{i}.yaml"), &yaml);
    }
    // The snippets' configuration (filter routing) with the module as its HTTP filter.
    let yaml = filter_routing_bootstrap_module(ports, &filter_wasm(), "{}").unwrap();
    validate("filter-routing-module.yaml", &yaml);
}
