//! Helpers shared by the tests that check the adoption material statically
//! (compose, Kubernetes, mesh snippets): YAML loading and Envoy validation.
// Each test file uses its own subset.
#![allow(dead_code)]

use std::{fs, path::Path};

use dnslb_tests::{stack::filter_wasm, workspace_root, Envoy, TempDir};
use serde::Deserialize;
use serde_yaml::Value;

/// A file under the workspace root, read as text.
pub fn read(relative: &str) -> String {
    let path = workspace_root().join(relative);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// One YAML document, with `<<` merge keys applied (compose files use them).
pub fn parse_yaml(what: &str, text: &str) -> Value {
    let mut value: Value =
        serde_yaml::from_str(text).unwrap_or_else(|e| panic!("{what} is not YAML: {e}"));
    value
        .apply_merge()
        .unwrap_or_else(|e| panic!("{what}: merge keys: {e}"));
    value
}

/// Every document of a multi-document YAML file (Kubernetes manifests).
pub fn parse_yaml_documents(what: &str, text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|document| {
            let mut value = Value::deserialize(document)
                .unwrap_or_else(|e| panic!("{what} has a document that is not YAML: {e}"));
            value.apply_merge().unwrap();
            value
        })
        .filter(|value| !value.is_null())
        .collect()
}

/// The list at `value`, or a failure naming `what`.
pub fn seq<'a>(value: &'a Value, what: &str) -> &'a Vec<Value> {
    value
        .as_sequence()
        .unwrap_or_else(|| panic!("{what} is not a list: {value:?}"))
}

/// The string at `value`, or a failure naming `what`.
pub fn str<'a>(value: &'a Value, what: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {value:?}"))
}

/// Points every `filename: .../dnslb_filter.wasm` at the filter `just build`
/// made, so `envoy --mode validate` loads the real filter. Returns how many
/// it replaced.
pub fn use_built_filter(value: &mut Value) -> usize {
    match value {
        Value::Mapping(map) => {
            let mut count = 0;
            for (key, child) in map.iter_mut() {
                if key.as_str() == Some("filename")
                    && child
                        .as_str()
                        .is_some_and(|s| s.ends_with("/dnslb_filter.wasm"))
                {
                    *child = Value::String(filter_wasm().display().to_string());
                    count += 1;
                } else {
                    count += use_built_filter(child);
                }
            }
            count
        }
        Value::Sequence(items) => items.iter_mut().map(use_built_filter).sum(),
        Value::Tagged(tagged) => use_built_filter(&mut tagged.value),
        _ => 0,
    }
}

/// Runs `envoy --mode validate` on `bootstrap` with the built filter; fails
/// with Envoy's output. The bootstrap must load the filter at least once.
pub fn validate_bootstrap(what: &str, bootstrap: &Value) {
    let mut bootstrap = bootstrap.clone();
    assert!(
        use_built_filter(&mut bootstrap) > 0,
        "{what} does not load dnslb_filter.wasm"
    );
    let dir = TempDir::new("validate").unwrap();
    let path = dir.path().join("envoy.yaml");
    fs::write(&path, serde_yaml::to_string(&bootstrap).unwrap()).unwrap();
    if let Err(e) = Envoy::validate(&path) {
        panic!("{what} does not validate: {e}");
    }
}

/// `path` relative to `base` exists.
pub fn assert_exists(base: &Path, path: &str, what: &str) {
    let full = base.join(path);
    assert!(
        full.exists(),
        "{what} refers to {path}, but {} does not exist",
        full.display()
    );
}
