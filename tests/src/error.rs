//! The one error type of the harness: every failure names what it was doing.

use std::{io, path::PathBuf, time::Duration};

/// Everything that can go wrong while driving the harness.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// An operating-system call failed; `context` says which one and on what.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },

    /// A zone file could not be parsed: `text` is the bad line as written (trimmed),
    /// `reason` what hickory's parser or the server's checks said about it.
    #[error("zone line {line} `{text}`: {reason}")]
    Zone {
        line: usize,
        text: String,
        reason: String,
    },

    /// An xDS stream failed, ended or could not be opened.
    #[error("xds: {0}")]
    Xds(String),

    /// A DNS exchange failed or returned something unusable.
    #[error("dns: {0}")]
    Dns(String),

    /// An HTTP exchange returned something that is not HTTP/1.1.
    #[error("http {target}: {reason}")]
    Http { target: String, reason: String },

    /// A condition polled for did not come true in time.
    #[error("timed out after {waited:?} waiting for {what}{detail}")]
    Timeout {
        what: String,
        waited: Duration,
        /// Last observation and log tail, already formatted (may be empty).
        detail: String,
    },

    /// A child process misbehaved (exited early, could not be signalled, ...).
    #[error("process {name}: {reason}{log_tail}")]
    Process {
        name: String,
        reason: String,
        /// Already formatted tail of the process log (may be empty).
        log_tail: String,
    },

    /// `envoy --mode validate` rejected a configuration.
    #[error("envoy rejected {}:\n{output}", config.display())]
    EnvoyValidate { config: PathBuf, output: String },
}

/// Shorthand for the harness's fallible results.
pub type Result<T, E = HarnessError> = std::result::Result<T, E>;

impl HarnessError {
    /// Adapter for `map_err` on io results: `.map_err(HarnessError::io("bind 127.0.0.1:0"))`.
    pub fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> HarnessError {
        let context = context.into();
        move |source| HarnessError::Io { context, source }
    }

    /// Appends `extra` to the detail of a timeout; other errors pass through unchanged.
    pub(crate) fn with_detail(self, extra: &str) -> HarnessError {
        match self {
            HarnessError::Timeout {
                what,
                waited,
                mut detail,
            } => {
                detail.push_str(extra);
                HarnessError::Timeout {
                    what,
                    waited,
                    detail,
                }
            }
            other => other,
        }
    }
}

/// Formats a log tail for inclusion in an error message.
pub(crate) fn format_log_tail(name: &str, tail: &str) -> String {
    if tail.trim().is_empty() {
        format!("\n--- {name} log is empty ---")
    } else {
        format!("\n--- {name} log tail ---\n{tail}")
    }
}
