//! CPU pinning for the bench. On two shared cores, wrk, the backends and the
//! Envoy under test took turns on both, and req/s of one variant swung by more
//! than 2× between rounds. With Envoy alone on the last core and everything
//! else on the others, Envoy is the bottleneck, so its req/s measures what a
//! request costs it.

use std::{process::Command, sync::OnceLock};

use crate::error::{HarnessError, Result};

/// Where the bench's processes run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pinning {
    /// The CPU every Envoy under test runs on.
    pub envoy: usize,
    /// `taskset` list of the CPUs for the bench itself and what it starts
    /// (wrk, backends, xds-shim, DNS).
    pub rest: String,
}

impl Pinning {
    /// Envoy on the last CPU, the rest on the others; none below two CPUs.
    pub fn plan(nproc: usize) -> Option<Self> {
        let last = nproc.checked_sub(1).filter(|&l| l >= 1)?;
        let rest = if last == 1 {
            "0".to_string()
        } else {
            format!("0-{}", last - 1)
        };
        Some(Self { envoy: last, rest })
    }

    pub fn describe(&self) -> String {
        format!(
            "each Envoy pinned to CPU {} (`taskset`), wrk, the backends, xds-shim and the DNS \
             server to CPU {}",
            self.envoy, self.rest
        )
    }
}

static PLAN: OnceLock<Option<Pinning>> = OnceLock::new();

/// Pins this process (and so every child it starts later) to `plan.rest`,
/// and remembers the plan for [`envoy`]. Once per run; `None` pins nothing.
pub fn start(plan: Option<Pinning>) -> Result<()> {
    if let Some(p) = &plan {
        taskset(&p.rest, std::process::id())?;
    }
    // A second call keeps the first plan: one bench run, one layout.
    let _ = PLAN.set(plan);
    Ok(())
}

/// Moves a started Envoy (every thread) to its CPU, when the run pins.
pub fn envoy(pid: u32) -> Result<()> {
    match PLAN.get() {
        Some(Some(p)) => taskset(&p.envoy.to_string(), pid),
        _ => Ok(()),
    }
}

fn taskset(cpus: &str, pid: u32) -> Result<()> {
    let output = Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .output()
        .map_err(HarnessError::io("run taskset (util-linux)"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(HarnessError::Process {
            name: "taskset".into(),
            reason: format!(
                "pinning pid {pid} to CPU {cpus} failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ),
            log_tail: String::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envoy_gets_the_last_cpu_and_the_rest_the_others() {
        assert_eq!(Pinning::plan(1), None);
        assert_eq!(
            Pinning::plan(2),
            Some(Pinning {
                envoy: 1,
                rest: "0".into()
            })
        );
        assert_eq!(
            Pinning::plan(8),
            Some(Pinning {
                envoy: 7,
                rest: "0-6".into()
            })
        );
    }
}
