//! Child processes, temporary directories and polling: the plumbing every end-to-end test
//! needs, with failures that say what was going on.

use std::{
    fs::{self, File, OpenOptions},
    net::{IpAddr, TcpListener},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex, MutexGuard, PoisonError,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use crate::error::{format_log_tail, HarnessError, Result};

/// Set this variable to keep temporary directories (configs, logs) after the test.
pub const KEEP_TMP_ENV: &str = "DNSLB_KEEP_TMP";

/// The workspace checkout this crate lives in.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// A port that was free on `ip` a moment ago (bind port 0, read it, close).
pub fn free_port(ip: IpAddr) -> Result<u16> {
    let listener = TcpListener::bind((ip, 0))
        .map_err(HarnessError::io(format!("bind {ip}:0 to find a free port")))?;
    let addr = listener
        .local_addr()
        .map_err(HarnessError::io("read bound address"))?;
    Ok(addr.port())
}

/// Calls `check` every `poll_interval` until it returns `Ok(true)`. An `Err` from `check`
/// stops the wait at once (use it for "the process died"); return `Ok(false)` for
/// "not yet". On timeout the error names `what`.
pub fn wait_until(
    what: &str,
    timeout: Duration,
    poll_interval: Duration,
    mut check: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let start = Instant::now();
    loop {
        if check()? {
            return Ok(());
        }
        let waited = start.elapsed();
        if waited >= timeout {
            return Err(HarnessError::Timeout {
                what: what.to_owned(),
                waited,
                detail: String::new(),
            });
        }
        std::thread::sleep(poll_interval.min(timeout - waited));
    }
}

/// A directory under the system temp dir, removed on drop unless [`KEEP_TMP_ENV`] is set
/// or the thread is panicking (a failed test keeps its logs; the path is printed).
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(prefix: &str) -> Result<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let path = std::env::temp_dir().join(format!(
            "dnslb-{prefix}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
        ));
        fs::create_dir_all(&path)
            .map_err(HarnessError::io(format!("create {}", path.display())))?;
        Ok(Self { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os(KEEP_TMP_ENV).is_some() || std::thread::panicking() {
            eprintln!("keeping {}", self.path.display());
            return;
        }
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// A child process in its own process group, with stdout and stderr in one log file.
/// Dropping it kills the whole group and reaps the child.
#[derive(Debug)]
pub struct ChildGuard {
    name: String,
    pid: u32,
    log: PathBuf,
    child: Mutex<Child>,
}

impl ChildGuard {
    /// Spawns `command` with its output in `log_dir/NAME.log` (or `NAME-2.log`, ...).
    pub fn spawn(name: &str, mut command: Command, log_dir: &Path) -> Result<Self> {
        let (log, file) = create_log(log_dir, name)?;
        let stderr = file
            .try_clone()
            .map_err(HarnessError::io(format!("duplicate {}", log.display())))?;
        // Its own group, so a test can signal everything it started (envoy.sh's children
        // too) and a Ctrl-C meant for cargo does not race the guard.
        command
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(stderr)
            .process_group(0);
        let child = command
            .spawn()
            .map_err(HarnessError::io(format!("spawn {name} ({command:?})")))?;
        Ok(Self {
            name: name.to_owned(),
            pid: child.id(),
            log,
            child: Mutex::new(child),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Process id, which is also the process group id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything the process wrote so far.
    pub fn log(&self) -> String {
        fs::read(&self.log)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// `Some(status)` once the process has exited.
    pub fn exit_status(&self) -> Result<Option<ExitStatus>> {
        self.child()
            .try_wait()
            .map_err(HarnessError::io(format!("check on {}", self.name)))
    }

    /// An error with the log tail when the process has exited; `Ok(())` while it runs.
    pub fn ensure_running(&self) -> Result<()> {
        match self.exit_status()? {
            None => Ok(()),
            Some(status) => Err(self.error(format!("exited early with {status}"))),
        }
    }

    /// Waits for a log line containing `needle` and returns that line.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> Result<String> {
        let mut found = None;
        wait_until(
            &format!("{} to log {needle:?}", self.name),
            timeout,
            Duration::from_millis(20),
            || {
                found = self
                    .log()
                    .lines()
                    .find(|line| line.contains(needle))
                    .map(str::to_owned);
                if found.is_none() {
                    self.ensure_running()?;
                }
                Ok(found.is_some())
            },
        )
        .map_err(|e| e.with_detail(&format_log_tail(&self.name, &self.log_tail(30))))?;
        found.ok_or_else(|| self.error(format!("no log line with {needle:?}")))
    }

    /// Sends `signal` (a name such as `TERM` or `STOP`) to the whole process group.
    pub fn signal(&self, signal: &str) -> Result<()> {
        let status = Command::new("kill")
            .args(["-s", signal, "--", &format!("-{}", self.pid)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(HarnessError::io("run kill"))?;
        if status.success() {
            Ok(())
        } else {
            Err(self.error(format!("kill -s {signal} -{} failed: {status}", self.pid)))
        }
    }

    /// SIGKILLs the group and reaps the child; returns how it ended. Idempotent.
    pub fn kill(&self) -> Result<ExitStatus> {
        let mut child = self.child();
        if let Some(status) = child
            .try_wait()
            .map_err(HarnessError::io(format!("check on {}", self.name)))?
        {
            // The leader is gone; its group may still hold children of a wrapper script.
            let _ = self.signal("KILL");
            return Ok(status);
        }
        if self.signal("KILL").is_err() {
            let _ = child.kill();
        }
        child
            .wait()
            .map_err(HarnessError::io(format!("wait for {}", self.name)))
    }

    /// Sends SIGTERM and waits up to `timeout` for a clean exit, then SIGKILLs.
    pub fn stop(&self, timeout: Duration) -> Result<ExitStatus> {
        if self.exit_status()?.is_none() {
            let _ = self.signal("TERM");
            let _ = wait_until(
                &format!("{} to exit", self.name),
                timeout,
                Duration::from_millis(20),
                || Ok(self.exit_status()?.is_some()),
            );
        }
        self.kill()
    }

    fn child(&self) -> MutexGuard<'_, Child> {
        self.child.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn error(&self, reason: String) -> HarnessError {
        HarnessError::Process {
            name: self.name.clone(),
            reason,
            log_tail: format_log_tail(&self.name, &self.log_tail(30)),
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

fn create_log(dir: &Path, name: &str) -> Result<(PathBuf, File)> {
    let mut n = 1;
    loop {
        let file_name = if n == 1 {
            format!("{name}.log")
        } else {
            format!("{name}-{n}.log")
        };
        let path = dir.join(file_name);
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
            Err(e) => return Err(HarnessError::io(format!("create {}", path.display()))(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_until_times_out_with_the_description() {
        let err = wait_until(
            "the moon",
            Duration::from_millis(30),
            Duration::from_millis(5),
            || Ok(false),
        )
        .unwrap_err();
        assert!(err.to_string().contains("the moon"), "{err}");
    }

    /// `script` run by `sh` under a guard, logging to the returned directory (kept as long
    /// as the child runs).
    fn sh(script: &str) -> (TempDir, ChildGuard) {
        let dir = TempDir::new("unit").unwrap();
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        let child = ChildGuard::spawn("sh", command, dir.path()).unwrap();
        (dir, child)
    }

    #[test]
    fn child_logs_and_dies_with_its_guard() {
        let (_dir, child) = sh("echo hello; echo oops >&2; exec sleep 30");
        let line = child.wait_for_log("oops", Duration::from_secs(5)).unwrap();
        assert_eq!(line, "oops");
        assert!(child.log_tail(1).contains("oops"));
        child.ensure_running().unwrap();
        let status = child.kill().unwrap();
        assert!(!status.success());
        assert!(child.ensure_running().is_err());
    }

    #[test]
    fn early_exit_is_reported_with_the_log() {
        let (_dir, child) = sh("echo bad flag; exit 2");
        let err = child
            .wait_for_log("listening", Duration::from_secs(5))
            .unwrap_err();
        assert!(err.to_string().contains("bad flag"), "{err}");
    }

    #[test]
    fn temp_dir_is_removed() {
        let dir = TempDir::new("unit").unwrap();
        let path = dir.path().to_path_buf();
        assert!(path.is_dir());
        drop(dir);
        assert!(std::env::var_os(KEEP_TMP_ENV).is_some() || !path.exists());
    }
}
