//! Machine facts and tool versions for the report.

use std::{fs, process::Command};

use crate::process::workspace_root;

#[derive(Debug, Clone, Default)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub mem_total: String,
    pub kernel: String,
    pub load_before: String,
    pub load_after: String,
    pub envoy: String,
    pub rustc: String,
    pub wrk: String,
    pub h2load: String,
    pub git: String,
    /// Where the processes ran, when the run pinned them.
    pub pinning: Option<super::pin::Pinning>,
}

/// First line of a command's stdout and stderr, or why it did not run.
pub fn first_line_of(program: &str, args: &[&str]) -> String {
    match Command::new(program).args(args).output() {
        Ok(output) => {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            text.lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("(no output)")
                .to_string()
        }
        Err(error) => format!("({program} not available: {error})"),
    }
}

pub fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

pub fn collect() -> Machine {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_total = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0))
        .unwrap_or_else(|| "unknown".into());
    let envoy_script = workspace_root().join("envoy").join("envoy.sh");
    let envoy = first_line_of(&envoy_script.to_string_lossy(), &["--version"]);
    let root = workspace_root();
    let root = root.to_string_lossy();
    let head = first_line_of("git", &["-C", &root, "rev-parse", "--short", "HEAD"]);
    let dirty = Command::new("git")
        .args(["-C", &root, "status", "--porcelain", "--untracked-files=no"])
        .output()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false);
    Machine {
        nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model,
        mem_total,
        kernel: first_line_of("uname", &["-srm"]),
        load_before: loadavg(),
        load_after: String::new(),
        envoy: envoy
            .trim_start_matches(|c: char| c != ' ')
            .trim()
            .to_string(),
        rustc: first_line_of("rustc", &["--version"]),
        wrk: first_line_of("wrk", &["-v"]),
        h2load: first_line_of("h2load", &["--version"]),
        git: if dirty {
            format!("{head} (with uncommitted changes in the shared tree)")
        } else {
            head
        },
        pinning: None,
    }
}
