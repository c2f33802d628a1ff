//! The Kubernetes manifests as an operator would apply them: every one passes Kubernetes'
//! own schemas (kubernetes-validate, installed by `just kubernetes-validate`), the pods
//! meet Pod Security "restricted", the shim is ready only when resolved and survives
//! disruptions, NetworkPolicies admit only Envoy to xDS and only Prometheus to metrics,
//! and Envoy serves its stats apart from its admin API and drains before it stops.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::{collections::BTreeSet, fs, process::Command};

use dnslb_tests::{workspace_root, TempDir};
use serde_yaml::Value;
use support::k8s::{container, container_port, get, manifests, pod_spec, DIR, NAMESPACE};
use support::{parse_yaml, parse_yaml_documents, read, seq, str};

/// Runs kubernetes-validate `--strict` (unknown fields are errors) on `files`.
fn kubernetes_validate(files: &[String]) -> (bool, String) {
    let output = Command::new(workspace_root().join("envoy/k8s/kubernetes-validate.sh"))
        .arg("--strict")
        .args(files)
        .current_dir(workspace_root())
        .output()
        .expect("envoy/k8s/kubernetes-validate.sh runs (just kubernetes-validate)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// The CRDs (no schema in Kubernetes') in the optional files.
const CUSTOM_KINDS: [&str; 2] = ["EnvoyFilter", "ServiceMonitor"];

#[test]
fn every_manifest_passes_the_kubernetes_schemas() {
    let kustomization = parse_yaml("kustomization", &read(&format!("{DIR}/kustomization.yaml")));
    let mut files: Vec<String> = seq(&kustomization["resources"], "resources")
        .iter()
        .map(|f| format!("{DIR}/{}", str(f, "resource")))
        .collect();
    files.push(format!("{DIR}/istio/envoyfilter.yaml"));
    files.push(format!("{DIR}/monitoring/servicemonitor.yaml"));
    let (ok, output) = kubernetes_validate(&files);
    assert!(ok, "{output}");
    for file in &files {
        for document in parse_yaml_documents(file, &read(file)) {
            let kind = str(&document["kind"], "kind");
            let name = str(&document["metadata"]["name"], "metadata.name");
            let passed = format!("{file} passed for resource {}/{name}", kind.to_lowercase());
            assert!(
                output.contains(&passed) || CUSTOM_KINDS.contains(&kind),
                "{kind}/{name} in {file} was not validated:\n{output}"
            );
        }
    }
    // Anything not validated is one of the CRDs.
    for line in output.lines().filter(|l| l.starts_with("WARN")) {
        assert!(
            CUSTOM_KINDS
                .iter()
                .any(|k| line.contains(&format!("schema for kind {k} "))),
            "{line}"
        );
    }

    // The validator does reject what Kubernetes would.
    let dir = TempDir::new("k8s-bad").unwrap();
    let bad = dir.path().join("bad.yaml");
    let shim = read(&format!("{DIR}/xds-shim.yaml"));
    fs::write(&bad, shim.replace("replicas: 2", "replicas: two")).unwrap();
    let (ok, output) = kubernetes_validate(&[bad.display().to_string()]);
    assert!(!ok, "a Deployment with replicas: two passed:\n{output}");
}

#[test]
fn pods_meet_pod_security_restricted() {
    let all = manifests();
    let labels = &get(&all, "Namespace/dnslb")["metadata"]["labels"];
    for mode in ["enforce", "warn", "audit"] {
        assert_eq!(
            labels[format!("pod-security.kubernetes.io/{mode}").as_str()],
            "restricted"
        );
    }
    for (key, deployment) in all.iter().filter(|(k, _)| k.starts_with("Deployment/")) {
        let pod = pod_spec(deployment);
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{key}");
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
            "{key}"
        );
        for field in ["hostNetwork", "hostPID", "hostIPC"] {
            assert!(
                pod[field].is_null() || pod[field] == false,
                "{key}: {field}"
            );
        }
        for volume in pod["volumes"].as_sequence().into_iter().flatten() {
            assert!(volume["hostPath"].is_null(), "{key}: hostPath");
        }
        let containers = [&pod["containers"], &pod["initContainers"]];
        for c in containers.iter().filter_map(|c| c.as_sequence()).flatten() {
            let security = &c["securityContext"];
            assert_eq!(security["allowPrivilegeEscalation"], false, "{key}");
            assert_eq!(security["capabilities"]["drop"][0], "ALL", "{key}");
            assert!(security["capabilities"]["add"].is_null(), "{key}");
            assert!(security["privileged"].is_null(), "{key}");
        }
    }
}

#[test]
fn the_shim_is_ready_when_resolved_and_survives_disruptions() {
    let all = manifests();
    let deployment = get(&all, "Deployment/xds-shim");
    let shim = container(deployment, "xds-shim");
    assert_eq!(shim["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(shim["readinessProbe"]["httpGet"]["port"], "admin");
    assert_eq!(shim["livenessProbe"]["httpGet"]["path"], "/healthz");
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];

    let pdb = get(&all, "PodDisruptionBudget/xds-shim");
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], pod_labels);
    let min = pdb["spec"]["minAvailable"].as_u64().unwrap();
    assert!(min >= 1 && min < deployment["spec"]["replicas"].as_u64().unwrap());

    let spread = seq(
        &pod_spec(deployment)["topologySpreadConstraints"],
        "topologySpreadConstraints",
    );
    let keys: BTreeSet<&str> = spread
        .iter()
        .inspect(|c| assert_eq!(&c["labelSelector"]["matchLabels"], pod_labels))
        .map(|c| str(&c["topologyKey"], "topologyKey"))
        .collect();
    assert!(keys.contains("kubernetes.io/hostname"), "{keys:?}");
}

/// The pods (by `app.kubernetes.io/name`) and ports an ingress rule admits.
fn admitted(rule: &Value) -> (Vec<Value>, Vec<String>) {
    let from = rule["from"].as_sequence().cloned().unwrap_or_default();
    let ports = seq(&rule["ports"], "ports")
        .iter()
        .map(|p| str(&p["port"], "port").to_owned())
        .collect();
    (from, ports)
}

fn policy_rules(all: &std::collections::BTreeMap<String, Value>, app: &str) -> Vec<Value> {
    let policy = get(all, &format!("NetworkPolicy/{app}"));
    assert_eq!(
        policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
        app
    );
    seq(&policy["spec"]["ingress"], "ingress").clone()
}

#[test]
fn network_policies_admit_only_envoy_to_xds_and_prometheus_to_metrics() {
    let all = manifests();
    let deny = get(&all, "NetworkPolicy/default-deny-ingress");
    assert_eq!(
        deny["spec"]["podSelector"],
        Value::Mapping(Default::default())
    );
    assert!(deny["spec"]["ingress"].is_null());

    let envoy_pods = serde_yaml::from_str::<Value>(
        "podSelector: { matchLabels: { app.kubernetes.io/name: envoy } }",
    )
    .unwrap();
    let prometheus = serde_yaml::from_str::<Value>(
        "namespaceSelector: { matchLabels: { kubernetes.io/metadata.name: monitoring } }\n\
         podSelector: { matchLabels: { app.kubernetes.io/name: prometheus } }",
    )
    .unwrap();
    let shim = policy_rules(&all, "xds-shim");
    assert_eq!(
        shim.iter().map(admitted).collect::<Vec<_>>(),
        [
            (vec![envoy_pods.clone()], vec!["xds".to_owned()]),
            (vec![prometheus.clone()], vec!["admin".to_owned()]),
        ]
    );
    let envoy = policy_rules(&all, "envoy");
    assert_eq!(
        envoy.iter().map(admitted).collect::<Vec<_>>(),
        [
            (vec![], vec!["http".to_owned()]),
            (vec![prometheus], vec!["metrics".to_owned()]),
        ]
    );
    let backend = policy_rules(&all, "fake-backend");
    assert_eq!(
        backend.iter().map(admitted).collect::<Vec<_>>(),
        [(vec![envoy_pods], vec!["http".to_owned()])]
    );
    // Named ports exist on the pods they admit to.
    for (app, port) in [
        ("xds-shim", "xds"),
        ("xds-shim", "admin"),
        ("envoy", "metrics"),
    ] {
        container_port(
            container(get(&all, &format!("Deployment/{app}")), app),
            port,
        );
    }
    assert!(all
        .values()
        .all(|m| m["metadata"]["namespace"].is_null() || m["metadata"]["namespace"] == NAMESPACE));
}

#[test]
fn envoy_serves_stats_apart_from_its_admin_and_drains_before_it_stops() {
    let all = manifests();
    let deployment = get(&all, "Deployment/envoy");
    let envoy = container(deployment, "envoy");
    let config = parse_yaml(
        "the k8s Envoy config",
        str(
            &get(&all, "ConfigMap/envoy-config")["data"]["envoy.yaml"],
            "envoy.yaml",
        ),
    );
    let admin = &config["admin"]["address"]["socket_address"];
    assert_eq!(admin["address"], "127.0.0.1", "the admin API stays private");
    let admin_port = admin["port_value"].as_u64().unwrap();

    let metrics_port = container_port(envoy, "metrics");
    let listener = seq(&config["static_resources"]["listeners"], "listeners")
        .iter()
        .find(|l| l["name"] == "metrics")
        .unwrap();
    assert_eq!(
        listener["address"]["socket_address"]["port_value"].as_u64(),
        Some(metrics_port)
    );
    let manager = &listener["filter_chains"][0]["filters"][0]["typed_config"];
    let routes = seq(
        &manager["route_config"]["virtual_hosts"][0]["routes"],
        "routes",
    );
    let paths: Vec<&str> = routes
        .iter()
        .inspect(|r| assert_eq!(r["route"]["cluster"], "envoy_admin"))
        .map(|r| str(&r["match"]["path"], "an exact path"))
        .collect();
    assert_eq!(paths, ["/stats/prometheus", "/ready"]);
    let admin_cluster = seq(&config["static_resources"]["clusters"], "clusters")
        .iter()
        .find(|c| c["name"] == "envoy_admin")
        .unwrap();
    let endpoint = &admin_cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
        ["address"]["socket_address"];
    assert_eq!(endpoint["port_value"].as_u64(), Some(admin_port));

    assert_eq!(envoy["readinessProbe"]["httpGet"]["path"], "/ready");
    assert_eq!(envoy["readinessProbe"]["httpGet"]["port"], "metrics");
    let pre_stop = seq(&envoy["lifecycle"]["preStop"]["exec"]["command"], "preStop")
        .iter()
        .map(|a| str(a, "preStop argument"))
        .collect::<Vec<_>>()
        .join(" ");
    let wasm_dir = seq(&envoy["volumeMounts"], "volumeMounts")
        .iter()
        .find(|m| m["name"] == "wasm")
        .map(|m| str(&m["mountPath"], "mountPath"))
        .unwrap();
    assert!(
        pre_stop.contains(&format!(
            "{wasm_dir}/xds-shim probe --post 'http://127.0.0.1:{admin_port}/drain_listeners?graceful'"
        )),
        "{pre_stop}"
    );

    // Scrape annotations and the optional ServiceMonitors point at the same ports.
    for (app, port_name, path) in [
        ("xds-shim", "admin", "/metrics"),
        ("envoy", "metrics", "/stats/prometheus"),
    ] {
        let deployment = get(&all, &format!("Deployment/{app}"));
        let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
        let port = container_port(container(deployment, app), port_name);
        assert_eq!(annotations["prometheus.io/scrape"], "true", "{app}");
        assert_eq!(annotations["prometheus.io/port"], port.to_string().as_str());
        assert_eq!(annotations["prometheus.io/path"], path, "{app}");
    }
    let monitors = parse_yaml_documents(
        "servicemonitor",
        &read(&format!("{DIR}/monitoring/servicemonitor.yaml")),
    );
    for monitor in &monitors {
        let name = str(&monitor["metadata"]["name"], "name");
        let service = get(&all, &format!("Service/{name}"));
        for (k, v) in monitor["spec"]["selector"]["matchLabels"]
            .as_mapping()
            .unwrap()
        {
            assert_eq!(service["metadata"]["labels"].get(k), Some(v), "{name}");
        }
        let port = str(&monitor["spec"]["endpoints"][0]["port"], "port");
        assert!(
            seq(&service["spec"]["ports"], "ports")
                .iter()
                .any(|p| p["name"] == port),
            "Service/{name} has no port {port}"
        );
    }
}
