//! Instructions per request: every cost variant's Envoy once more, under valgrind's
//! callgrind. Unlike req/s and CPU time on shared cores, the number of instructions
//! Envoy executes for a request does not depend on what else the machine runs, so the
//! ratio to a twin holds from one run to the next (within about 1 %). It counts work,
//! not time: cache misses and V8's JIT warm-up are not in it.

use std::{fs, path::Path, process::Command, time::Duration};

use super::{
    cost::{Spec, Variant},
    fixture, wrk,
};
use dnslb_tests::{
    error::{HarnessError, Result},
    process::wait_until,
};

/// wrk's load while callgrind counts: Envoy runs some 50× slower under it.
pub const LOAD: wrk::Load = wrk::Load {
    threads: 1,
    connections: 4,
    duration: Duration::from_secs(6),
};

/// What one variant's Envoy executed over the measured run.
#[derive(Debug, Clone)]
pub struct Count {
    pub spec: Spec,
    pub requests: u64,
    pub instructions: u64,
}

impl Count {
    pub fn per_request(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.instructions as f64 / self.requests as f64)
    }
}

/// Whether valgrind is installed (`just bench` installs it).
pub fn available() -> bool {
    Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Counts each variant (started with [`fixture::Launch::Callgrind`]) over one run.
pub fn measure(variants: &[Variant]) -> Result<Vec<Count>> {
    variants
        .iter()
        .map(|v| {
            let pid = v.proxy.envoy.process().pid().to_string();
            control(&["-i", "on", &pid])?;
            let run = wrk::run(LOAD, v.proxy.listener, &v.headers);
            control(&["-i", "off", &pid])?;
            let run = run?;
            control(&["-d", &pid])?;
            Ok(Count {
                spec: v.spec.clone(),
                requests: run.requests,
                instructions: dumped(v.proxy.envoy.dir(), v.spec.key)?,
            })
        })
        .collect()
}

fn control(args: &[&str]) -> Result<()> {
    let output = Command::new("callgrind_control")
        .args(args)
        .output()
        .map_err(HarnessError::io(
            "run callgrind_control (apt-get install valgrind)",
        ))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(fixture::fail(
            "callgrind_control",
            format!(
                "{args:?} failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        ))
    }
}

/// The instruction total of the dump in `dir` (`callgrind.out.PID.1`): instrumentation
/// was on only for the run, so that is the run's count.
fn dumped(dir: &Path, key: &str) -> Result<u64> {
    let mut total = None;
    wait_until(
        &format!("the callgrind dump of {key}"),
        fixture::STARTUP,
        Duration::from_millis(100),
        || {
            total = fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".1"))
                .find_map(|e| totals(&fs::read_to_string(e.path()).ok()?));
            Ok(total.is_some())
        },
    )?;
    total.ok_or_else(|| fixture::fail(key, "no callgrind dump"))
}

/// The `totals:` line that ends a callgrind profile (its `summary:` header line may
/// read 0); `None` until the dump is complete.
fn totals(profile: &str) -> Option<u64> {
    profile.lines().find_map(|l| {
        let rest = l.strip_prefix("totals:")?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_come_from_the_profile_footer() {
        let profile = "version: 1\nevents: Ir\nsummary: 0\nfn=main\n1 5\ntotals: 151510682\n";
        assert_eq!(totals(profile), Some(151_510_682));
        assert_eq!(totals("events: Ir\nsummary: 0\nfn=main\n"), None);
    }

    #[test]
    fn no_requests_no_ratio() {
        let count = |requests| Count {
            spec: Spec {
                key: "k",
                label: "k",
                family: crate::cost::Family::Dnslb,
                twin: None,
                goal: None,
                setup: String::new(),
                stat_cluster: None,
                filter: None,
            },
            requests,
            instructions: 1000,
        };
        assert_eq!(count(0).per_request(), None);
        assert_eq!(count(4).per_request(), Some(250.0));
    }
}
