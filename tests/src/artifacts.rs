//! What the end-to-end tests run: the built artifacts (`xds-shim`, the filter's `.wasm`
//! and `.so`) and the Envoy bootstraps made from them with a test's ports.

use std::{
    fs,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::Command,
};

use crate::{
    error::{HarnessError, Result},
    process::workspace_root,
};

/// Where the tests put every process of theirs.
pub(crate) const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Where `just build` puts the artifacts the tests run.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

pub fn shim_binary() -> PathBuf {
    target_dir().join("release").join("xds-shim")
}

pub fn filter_wasm() -> PathBuf {
    target_dir()
        .join("wasm32-wasip1")
        .join("release-wasm")
        .join("dnslb_filter.wasm")
}

/// The filter as an Envoy dynamic module (`just build-module`).
pub fn filter_module() -> PathBuf {
    target_dir().join("release").join("libdnslb_module.so")
}

/// Which build of the dnslb filter Envoy loads: the same JSON, the same behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Build {
    /// `dnslb_filter.wasm` (proxy-wasm, V8).
    Wasm,
    /// `libdnslb_module.so` (native dynamic module).
    Module,
}

/// Two `#[test]`s running `$run` against each build of the filter: `$wasm` with
/// [`Build::Wasm`], `$module` with [`Build::Module`]. Both builds take the same JSON and
/// must behave the same, so end-to-end tests run on both.
#[macro_export]
macro_rules! test_each_build {
    ($wasm:ident, $module:ident => $run:path) => {
        #[test]
        fn $wasm() {
            $run($crate::Build::Wasm);
        }

        #[test]
        fn $module() {
            $run($crate::Build::Module);
        }
    };
}

impl Build {
    /// The built artifact; an error says to build it when missing.
    pub fn artifact(self) -> Result<PathBuf> {
        built(match self {
            Build::Wasm => filter_wasm(),
            Build::Module => filter_module(),
        })
    }

    /// The `envoy-bootstrap` flag that loads it.
    pub fn flag(self) -> &'static str {
        match self {
            Build::Wasm => "--wasm",
            Build::Module => "--module",
        }
    }

    /// Where its counters show in Envoy's stats: `<prefix>dnslb.requests`.
    pub fn stats_prefix(self) -> &'static str {
        match self {
            Build::Wasm => "wasmcustom.",
            Build::Module => "dynamicmodulescustom.",
        }
    }

    /// The same in `/stats/prometheus`: Envoy 1.40 drops `wasmcustom` there but keeps
    /// the module's namespace.
    pub fn prometheus_prefix(self) -> &'static str {
        match self {
            Build::Wasm => "",
            Build::Module => "envoy_dynamicmodulescustom_",
        }
    }
}

/// [`shim_bootstrap`] loading `build` (or no filter at all).
pub fn shim_bootstrap_build(
    ports: EnvoyPorts,
    build: Option<Build>,
    filter_config: &str,
    absolute_form: bool,
) -> Result<String> {
    let Some(build) = build else {
        return shim_bootstrap_with(ports, None, filter_config, absolute_form, &[]);
    };
    let artifact = build.artifact()?.display().to_string();
    let extra = [build.flag(), artifact.as_str()];
    shim_bootstrap_with(ports, None, filter_config, absolute_form, &extra)
}

pub(crate) fn built(path: PathBuf) -> Result<PathBuf> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(HarnessError::Process {
            name: path.display().to_string(),
            reason: "not built: run `just build` first".into(),
            log_tail: String::new(),
        })
    }
}

/// Ports one Envoy uses; the demo bootstrap's are replaced by these.
#[derive(Debug, Clone, Copy)]
pub struct EnvoyPorts {
    pub admin: u16,
    pub listener: u16,
    pub xds: u16,
}

/// `envoy/filter-routing.yaml` (the snippets' configuration, filter routing) with the given
/// ports, wasm path and filter configuration (JSON), so the file cannot drift from what
/// the tests run.
/// Each value replaced must occur exactly once, so an edit of the demo that
/// moves them fails loudly here.
pub fn filter_routing_bootstrap(
    ports: EnvoyPorts,
    wasm: &Path,
    filter_config: &str,
) -> Result<String> {
    let path = workspace_root().join("envoy").join("filter-routing.yaml");
    let mut text =
        fs::read_to_string(&path).map_err(HarnessError::io(format!("read {}", path.display())))?;
    let replacements = [
        (
            "port_value: 9901 ".to_string(),
            format!("port_value: {} ", ports.admin),
        ),
        (
            "port_value: 10000 ".to_string(),
            format!("port_value: {} ", ports.listener),
        ),
        (
            "port_value: 18000 ".to_string(),
            format!("port_value: {} ", ports.xds),
        ),
        (
            "filename: target/wasm32-wasip1/release-wasm/dnslb_filter.wasm".to_string(),
            format!("filename: {}", wasm.display()),
        ),
        (
            r#"value: '{"affinity": {"mode": "cookie"}}'"#.to_string(),
            format!("value: {}", yaml_string(filter_config)),
        ),
    ];
    for (from, to) in replacements {
        let count = text.matches(&from).count();
        if count != 1 {
            return Err(HarnessError::Process {
                name: path.display().to_string(),
                reason: format!("expected {from:?} exactly once, found it {count} times"),
                log_tail: String::new(),
            });
        }
        text = text.replace(&from, &to);
    }
    Ok(text)
}

/// [`filter_routing_bootstrap`] with the dynamic module as the HTTP filter (the
/// absolute-form network filter stays wasm) and `xds_address` (the shim) in its JSON.
pub fn filter_routing_bootstrap_module(
    ports: EnvoyPorts,
    wasm: &Path,
    filter_config: &str,
) -> Result<String> {
    let text = filter_routing_bootstrap(ports, wasm, filter_config)?;
    let bad = |reason: &str| HarnessError::Process {
        name: "envoy/filter-routing.yaml".into(),
        reason: reason.into(),
        log_tail: String::new(),
    };
    let mut json: serde_json::Value = serde_json::from_str(filter_config)
        .map_err(|e| bad(&format!("filter configuration: {e}")))?;
    json["xds_address"] = SocketAddr::new(LOOPBACK, ports.xds).to_string().into();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.contains("envoy.extensions.filters.http.wasm.v3.Wasm"))
        .ok_or_else(|| bad("no wasm HTTP filter"))?;
    let end = lines
        .iter()
        .skip(start)
        .position(|l| l.trim_start().starts_with("value: "))
        .map(|i| start + i)
        .ok_or_else(|| bad("no filter configuration value"))?;
    let indent = " ".repeat(lines[start].len() - lines[start].trim_start().len());
    let module = filter_module();
    let typed_config = [
        "\"@type\": type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter".to_string(),
        format!("dynamic_module_config: {{ module: {{ local: {{ filename: {} }} }} }}", yaml_string(&module.display().to_string())),
        "filter_name: dnslb".to_string(),
        "filter_config:".to_string(),
        "  \"@type\": type.googleapis.com/google.protobuf.StringValue".to_string(),
        format!("  value: {}", yaml_string(&json.to_string())),
    ];
    let mut out: Vec<String> = lines[..start].iter().map(|l| l.to_string()).collect();
    out.extend(typed_config.iter().map(|l| format!("{indent}{l}")));
    out.extend(lines[end + 1..].iter().map(|l| l.to_string()));
    Ok(out.join("\n") + "\n")
}

/// What `xds-shim envoy-bootstrap` prints for these ports, the wasm filter and its
/// configuration: the recommended native path. `absolute_form` adds the network filter.
pub fn shim_bootstrap(
    ports: EnvoyPorts,
    wasm: Option<&Path>,
    filter_config: &str,
    absolute_form: bool,
) -> Result<String> {
    shim_bootstrap_with(ports, wasm, filter_config, absolute_form, &[])
}

/// [`shim_bootstrap`] with further `envoy-bootstrap` flags (`--xds-ca FILE`, ...).
pub fn shim_bootstrap_with(
    ports: EnvoyPorts,
    wasm: Option<&Path>,
    filter_config: &str,
    absolute_form: bool,
    extra: &[&str],
) -> Result<String> {
    let at = |port: u16| SocketAddr::new(LOOPBACK, port).to_string();
    let mut cmd = Command::new(built(shim_binary())?);
    cmd.args(["envoy-bootstrap", "--listen", &at(ports.listener)])
        .args(["--admin", &at(ports.admin), "--xds", &at(ports.xds)])
        .args(["--filter-config", filter_config]);
    if let Some(wasm) = wasm {
        cmd.arg("--wasm").arg(wasm);
    }
    if absolute_form {
        cmd.arg("--absolute-form");
    }
    cmd.args(extra);
    let output = cmd
        .output()
        .map_err(HarnessError::io("run xds-shim envoy-bootstrap"))?;
    if !output.status.success() {
        return Err(HarnessError::Process {
            name: "xds-shim envoy-bootstrap".into(),
            reason: format!("exit {}", output.status),
            log_tail: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    String::from_utf8(output.stdout).map_err(|e| HarnessError::Process {
        name: "xds-shim envoy-bootstrap".into(),
        reason: format!("output is not UTF-8: {e}"),
        log_tail: String::new(),
    })
}

/// GET `path` from `addr`, parsed as JSON.
/// A double-quoted YAML scalar (JSON string syntax is valid YAML).
fn yaml_string(text: &str) -> String {
    serde_json::Value::String(text.to_string()).to_string()
}
