//! Build identity: the git commit the binary was built from, for `-V`, the start-up log
//! line and the `dnslb_build_info` metric. Outside a git checkout (a source tarball, a
//! container build without .git) it is "unknown".

use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=DNSLB_COMMIT={commit}");
    // Rebuild when HEAD moves (a commit, a checkout); paths are relative to this crate.
    println!("cargo:rerun-if-changed=../.git/HEAD");
    println!("cargo:rerun-if-changed=../.git/refs/heads");
    println!("cargo:rerun-if-env-changed=DNSLB_COMMIT");
}
