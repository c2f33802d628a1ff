//! Logging through Envoy (`[dynamic_modules]` logger), from any thread; the
//! unit tests, which run without Envoy, write to stderr instead.

/// Envoy's log levels (`envoy_dynamic_module_type_log_level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
    #[cfg_attr(test, allow(dead_code))]
    Critical = 5,
}

pub fn log(level: LogLevel, message: &str) {
    let line = format!("dnslb: {message}");
    #[cfg(not(test))]
    crate::abi::envoy_log(level, &line);
    #[cfg(test)]
    eprintln!("{level:?} {line}");
}
