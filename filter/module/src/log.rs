//! Logging through Envoy (`[dynamic_modules]` logger), from any thread; the
//! unit tests, which run without Envoy, write to stderr instead. And the
//! guard every hook runs in, so that no panic unwinds into Envoy.

use std::panic::{catch_unwind, AssertUnwindSafe};

/// Envoy's log levels (`envoy_dynamic_module_type_log_level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
    Critical = 5,
}

pub fn log(level: LogLevel, message: &str) {
    let line = format!("dnslb: {message}");
    #[cfg(not(test))]
    crate::abi::envoy_log(level, &line);
    #[cfg(test)]
    eprintln!("{level:?} {line}");
}

/// Runs a hook's body; a panic is logged and yields `fallback` (for a
/// request: continue it), so it never crosses into Envoy.
pub fn guarded<T>(hook: &str, fallback: T, body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(value) => value,
        Err(_) => {
            log(
                LogLevel::Critical,
                &format!("panic in {hook}; the request continues"),
            );
            fallback
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::panic)]
    fn a_panic_in_a_hook_yields_the_fallback() {
        assert_eq!(guarded("request_headers", 0, || 1), 1);
        assert_eq!(
            guarded("request_headers", 0, || -> i32 { panic!("bug") }),
            0
        );
    }
}
