//! The Kubernetes manifests (`envoy/k8s/`), checked statically: they parse,
//! names, labels and ports line up, nothing gets API access it does not need,
//! and the Envoy configuration inside validates.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use dnslb_tests::workspace_root;
use serde_yaml::Value;
use support::k8s::{
    args, container, container_port, flag, get, manifests, pod_spec, DIR, NAMESPACE,
};
use support::{parse_yaml, parse_yaml_documents, read, seq, str, validate_bootstrap};

#[test]
fn every_manifest_file_is_a_resource_and_namespaced() {
    let kustomization = parse_yaml("kustomization", &read(&format!("{DIR}/kustomization.yaml")));
    let listed: Vec<&str> = seq(&kustomization["resources"], "resources")
        .iter()
        .map(|f| str(f, "resource"))
        .collect();
    for entry in std::fs::read_dir(workspace_root().join(DIR)).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".yaml") && name != "kustomization.yaml" {
            assert!(
                listed.contains(&name.as_str()),
                "{name} is not in kustomization.yaml"
            );
        }
    }
    for (key, document) in manifests() {
        if key.starts_with("Namespace/") {
            assert_eq!(key, format!("Namespace/{NAMESPACE}"));
        } else {
            assert_eq!(document["metadata"]["namespace"], NAMESPACE, "{key}");
        }
    }
}

#[test]
fn services_select_their_deployments_ports_by_name() {
    let all = manifests();
    for (key, service) in all.iter().filter(|(k, _)| k.starts_with("Service/")) {
        let selector = service["spec"]["selector"].as_mapping().unwrap();
        let deployments: Vec<&Value> = all
            .iter()
            .filter(|(k, _)| k.starts_with("Deployment/"))
            .map(|(_, d)| d)
            .filter(|d| {
                let labels = d["spec"]["template"]["metadata"]["labels"]
                    .as_mapping()
                    .unwrap();
                selector.iter().all(|(k, v)| labels.get(k) == Some(v))
            })
            .collect();
        assert_eq!(deployments.len(), 1, "{key} must select one Deployment");
        let pod = pod_spec(deployments[0]);
        for port in seq(&service["spec"]["ports"], "ports") {
            let target = str(&port["targetPort"], "targetPort");
            let found = seq(&pod["containers"], "containers").iter().any(|c| {
                c["ports"]
                    .as_sequence()
                    .is_some_and(|ps| ps.iter().any(|p| p["name"] == target))
            });
            assert!(found, "{key}: no container port named {target}");
        }
    }
    for (key, deployment) in all.iter().filter(|(k, _)| k.starts_with("Deployment/")) {
        let labels = deployment["spec"]["template"]["metadata"]["labels"]
            .as_mapping()
            .unwrap();
        for (k, v) in deployment["spec"]["selector"]["matchLabels"]
            .as_mapping()
            .unwrap()
        {
            assert_eq!(
                labels.get(k),
                Some(v),
                "{key}: selector does not match its pods"
            );
        }
    }
    assert_eq!(
        get(&all, "Service/backend")["spec"]["clusterIP"],
        "None",
        "headless"
    );
    assert_eq!(get(&all, "Deployment/xds-shim")["spec"]["replicas"], 2);
}

#[test]
fn pods_get_no_api_access() {
    let all = manifests();
    let account = get(&all, "ServiceAccount/dnslb");
    assert_eq!(account["automountServiceAccountToken"], false);
    for key in all.keys() {
        assert!(
            !key.contains("Role"),
            "{key}: nothing in dnslb talks to the Kubernetes API"
        );
    }
    for (key, deployment) in all.iter().filter(|(k, _)| k.starts_with("Deployment/")) {
        let pod = pod_spec(deployment);
        assert_eq!(pod["serviceAccountName"], "dnslb", "{key}");
        assert_eq!(pod["automountServiceAccountToken"], false, "{key}");
        let containers = [&pod["containers"], &pod["initContainers"]];
        for container in containers.iter().filter_map(|c| c.as_sequence()).flatten() {
            let security = &container["securityContext"];
            assert_eq!(security["runAsNonRoot"], true, "{key}");
            assert_eq!(security["allowPrivilegeEscalation"], false, "{key}");
            assert_eq!(security["capabilities"]["drop"][0], "ALL", "{key}");
        }
    }
}

/// `dnslb/NAME:dev` images are the Dockerfile's stages.
#[test]
fn images_are_the_dockerfile_targets_and_the_pinned_envoy() {
    let dockerfile = read("envoy/compose/Dockerfile");
    let version = read(".envoy-version").trim().to_owned();
    for (key, deployment) in manifests()
        .iter()
        .filter(|(k, _)| k.starts_with("Deployment/"))
    {
        let pod = pod_spec(deployment);
        let containers = [&pod["containers"], &pod["initContainers"]];
        for container in containers.iter().filter_map(|c| c.as_sequence()).flatten() {
            let image = str(&container["image"], "image");
            if let Some(stage) = image
                .strip_prefix("dnslb/")
                .and_then(|s| s.strip_suffix(":dev"))
            {
                assert!(
                    dockerfile.contains(&format!(" AS {stage}\n")),
                    "{key}: {image} is no Dockerfile target"
                );
            } else {
                assert_eq!(image, format!("envoyproxy/envoy:v{version}"), "{key}");
            }
        }
    }
}

/// The shim discovers the headless Service; Envoy reaches the shim's Service.
#[test]
fn the_shim_and_envoy_find_each_other() {
    let all = manifests();
    let backend = get(&all, "Service/backend");
    let backend_port = backend["spec"]["ports"][0]["port"].as_u64().unwrap();
    let shim = container(get(&all, "Deployment/xds-shim"), "xds-shim");
    let shim_args = args(shim);
    assert_eq!(
        flag(&shim_args, "--upstream"),
        [format!(
            "dns+backend.{NAMESPACE}.svc.cluster.local:{backend_port}"
        )]
    );
    let xds_port = container_port(shim, "xds");
    assert_eq!(
        flag(&shim_args, "--xds-listen"),
        [format!("0.0.0.0:{xds_port}")]
    );
    assert_eq!(
        flag(&shim_args, "--admin-listen"),
        [format!("0.0.0.0:{}", container_port(shim, "admin"))]
    );
    let shim_service = get(&all, "Service/xds-shim");
    let service_port = seq(&shim_service["spec"]["ports"], "ports")
        .iter()
        .find(|p| p["targetPort"] == "xds")
        .and_then(|p| p["port"].as_u64())
        .unwrap();
    let shim_host = format!("xds-shim.{NAMESPACE}.svc.cluster.local");

    let config_text = str(
        &get(&all, "ConfigMap/envoy-config")["data"]["envoy.yaml"],
        "envoy.yaml",
    );
    let config = parse_yaml("the k8s Envoy config", config_text);
    let xds = seq(&config["static_resources"]["clusters"], "clusters")
        .iter()
        .find(|c| c["name"] == "dnslb_xds")
        .unwrap();
    let socket = &xds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
        ["socket_address"];
    assert_eq!(socket["address"], shim_host.as_str());
    assert_eq!(socket["port_value"].as_u64(), Some(service_port));

    // The Istio variant reaches the same shim for the same upstream.
    let istio = parse_yaml_documents("istio", &read(&format!("{DIR}/istio/envoyfilter.yaml")));
    let patches = seq(&istio[0]["spec"]["configPatches"], "configPatches");
    let clusters: Vec<&Value> = patches
        .iter()
        .filter(|p| p["applyTo"] == "CLUSTER")
        .map(|p| &p["patch"]["value"])
        .collect();
    let istio_xds = clusters.iter().find(|c| c["name"] == "dnslb_xds").unwrap();
    assert_eq!(
        istio_xds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"],
        xds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    );
    let upstreams: Vec<String> = flag(&shim_args, "--upstream")
        .iter()
        .map(|u| (*u).to_owned())
        .collect();
    for cluster in clusters.iter().filter(|c| c["name"] != "dnslb_xds") {
        let name = str(&cluster["name"], "cluster name");
        assert!(
            upstreams.iter().any(|u| u == name),
            "{name} is no --upstream of the shim"
        );
    }
}

/// Envoy reads the ConfigMap and the .wasm the init container copies, and
/// the configuration validates.
#[test]
fn envoy_pod_mounts_what_its_config_reads() {
    let all = manifests();
    let deployment = get(&all, "Deployment/envoy");
    let pod = pod_spec(deployment);
    let envoy = container(deployment, "envoy");
    let mount = |c: &Value, volume: &str| -> String {
        seq(&c["volumeMounts"], "volumeMounts")
            .iter()
            .find(|m| m["name"] == volume)
            .map(|m| str(&m["mountPath"], "mountPath").to_owned())
            .unwrap_or_else(|| panic!("no mount of {volume}"))
    };
    let volume = |name: &str| -> &Value {
        seq(&pod["volumes"], "volumes")
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no volume {name}"))
    };
    let envoy_args = args(envoy);
    let config_dir = mount(envoy, "config");
    assert_eq!(volume("config")["configMap"]["name"], "envoy-config");
    assert_eq!(
        envoy_args[..2],
        ["-c".to_owned(), format!("{config_dir}/envoy.yaml")]
    );

    // The filter image copies to /out (its CMD); Envoy reads the same volume.
    let init = &seq(&pod["initContainers"], "initContainers")[0];
    assert_eq!(mount(init, "wasm"), "/out");
    assert!(read("envoy/compose/Dockerfile")
        .contains(r#"CMD ["cp", "/dnslb/dnslb_filter.wasm", "/dnslb/xds-shim", "/out/"]"#));
    assert!(volume("wasm")["emptyDir"].is_mapping());
    let wasm_dir = mount(envoy, "wasm");

    let config_text = str(
        &get(&all, "ConfigMap/envoy-config")["data"]["envoy.yaml"],
        "envoy.yaml",
    );
    assert_eq!(
        config_text
            .matches(&format!("filename: {wasm_dir}/dnslb_filter.wasm"))
            .count(),
        1
    );
    let config = parse_yaml("the k8s Envoy config", config_text);
    let listener_port = config["static_resources"]["listeners"][0]["address"]["socket_address"]
        ["port_value"]
        .as_u64();
    assert_eq!(listener_port, Some(container_port(envoy, "http")));
    validate_bootstrap("the k8s Envoy config", &config);
}
