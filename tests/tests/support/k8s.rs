//! The Kubernetes manifests (`envoy/k8s/`) as the tests read them.

use std::collections::BTreeMap;

use serde_yaml::Value;

use super::{parse_yaml, parse_yaml_documents, read, seq, str};

pub const DIR: &str = "envoy/k8s";
pub const NAMESPACE: &str = "dnslb";

/// Every document of the kustomization's resources, by `Kind/name`.
pub fn manifests() -> BTreeMap<String, Value> {
    let kustomization = parse_yaml("kustomization", &read(&format!("{DIR}/kustomization.yaml")));
    let mut all = BTreeMap::new();
    for file in seq(&kustomization["resources"], "resources") {
        let file = str(file, "resource");
        let relative = format!("{DIR}/{file}");
        for document in parse_yaml_documents(&relative, &read(&relative)) {
            let key = format!(
                "{}/{}",
                str(&document["kind"], "kind"),
                str(&document["metadata"]["name"], "metadata.name")
            );
            assert!(all.insert(key.clone(), document).is_none(), "{key} twice");
        }
    }
    all
}

pub fn get<'a>(all: &'a BTreeMap<String, Value>, key: &str) -> &'a Value {
    all.get(key)
        .unwrap_or_else(|| panic!("no {key} in {DIR}; have {:?}", all.keys()))
}

pub fn pod_spec(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["spec"]
}

pub fn container<'a>(deployment: &'a Value, name: &str) -> &'a Value {
    seq(&pod_spec(deployment)["containers"], "containers")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

pub fn args(container: &Value) -> Vec<String> {
    seq(&container["args"], "args")
        .iter()
        .map(|a| str(a, "arg").to_owned())
        .collect()
}

pub fn flag<'a>(args: &'a [String], name: &str) -> Vec<&'a str> {
    args.iter()
        .filter_map(|a| a.strip_prefix(&format!("{name}=")))
        .collect()
}

/// The container port named `name`.
pub fn container_port(container: &Value, name: &str) -> u64 {
    seq(&container["ports"], "ports")
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("no container port {name}"))
}
