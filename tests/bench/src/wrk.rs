//! The load generator: `wrk` (closed loop, HTTP/1.1 keep-alive), its command
//! line and the parser of its `--latency` report.

use std::{net::SocketAddr, process::Command, time::Duration};

use dnslb_tests::error::{HarnessError, Result};

/// One wrk run's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    pub threads: u32,
    pub connections: u32,
    pub duration: Duration,
}

/// What one wrk run measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WrkRun {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub requests: u64,
    /// Responses that were not 2xx/3xx.
    pub non_2xx: u64,
    /// connect + read + write + timeout errors.
    pub socket_errors: u64,
}

/// The argument vector (without `wrk` itself) for `load` against `addr`.
pub fn args(load: Load, addr: SocketAddr, headers: &[(String, String)]) -> Vec<String> {
    let mut args = vec![
        format!("-t{}", load.threads),
        format!("-c{}", load.connections),
        format!("-d{}s", load.duration.as_secs().max(1)),
        "--timeout".into(),
        "2s".into(),
        "--latency".into(),
    ];
    for (name, value) in headers {
        args.push("-H".into());
        args.push(format!("{name}: {value}"));
    }
    args.push(format!("http://{addr}/"));
    args
}

/// The command line as a user would type it (for the report).
pub fn shell_line(args: &[String]) -> String {
    let mut line = String::from("wrk");
    for arg in args {
        line.push(' ');
        if arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=+".contains(c))
        {
            line.push_str(arg);
        } else {
            line.push('\'');
            line.push_str(&arg.replace('\'', r"'\''"));
            line.push('\'');
        }
    }
    line
}

/// Runs wrk to completion (bounded by its own `-d` and `--timeout`).
pub fn run(load: Load, addr: SocketAddr, headers: &[(String, String)]) -> Result<WrkRun> {
    let output = Command::new("wrk")
        .args(args(load, addr, headers))
        .output()
        .map_err(HarnessError::io("run wrk (apt-get install wrk)"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(HarnessError::Process {
            name: "wrk".into(),
            reason: format!(
                "{}: {}{}",
                output.status,
                text,
                String::from_utf8_lossy(&output.stderr)
            ),
            log_tail: String::new(),
        });
    }
    parse(&text).map_err(|reason| HarnessError::Process {
        name: "wrk".into(),
        reason: format!("{reason} in output:\n{text}"),
        log_tail: String::new(),
    })
}

/// Parses wrk's report (with `--latency`).
pub fn parse(text: &str) -> std::result::Result<WrkRun, String> {
    let mut rps = None;
    let mut p50 = None;
    let mut p99 = None;
    let mut requests = None;
    let mut non_2xx = 0;
    let mut socket_errors = 0;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("Requests/sec:") {
            rps = rest.trim().parse::<f64>().ok();
        } else if let Some(rest) = line.strip_prefix("50%") {
            p50 = latency_ms(rest.trim());
        } else if let Some(rest) = line.strip_prefix("99%") {
            p99 = latency_ms(rest.trim());
        } else if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
            non_2xx = rest.trim().parse().unwrap_or(0);
        } else if let Some(rest) = line.strip_prefix("Socket errors:") {
            socket_errors = rest
                .split(',')
                .filter_map(|part| part.split_whitespace().last())
                .filter_map(|n| n.parse::<u64>().ok())
                .sum();
        } else if line.contains(" requests in ") {
            requests = line
                .split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok());
        }
    }
    Ok(WrkRun {
        rps: rps.ok_or("no Requests/sec line")?,
        p50_ms: p50.ok_or("no 50% latency line")?,
        p99_ms: p99.ok_or("no 99% latency line")?,
        requests: requests.ok_or("no `N requests in` line")?,
        non_2xx,
        socket_errors,
    })
}

/// `1.10ms`, `456.00us`, `1.02s`, `2.00m` as milliseconds.
fn latency_ms(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let factor = match unit {
        "us" => 0.001,
        "ms" => 1.0,
        "s" => 1000.0,
        "m" => 60_000.0,
        _ => return None,
    };
    Some(value * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "Running 4s test @ http://127.0.0.1:10000/
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.23ms  456.00us  10.00ms   80.00%
    Req/Sec     8.00k   500.00     9.00k    70.00%
  Latency Distribution
     50%  812.00us
     75%    1.40ms
     90%    1.80ms
     99%    3.10ms
  32000 requests in 4.00s, 5.00MB read
  Socket errors: connect 1, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 12
Requests/sec:   8000.50
Transfer/sec:      1.25MB
";

    #[test]
    fn parses_the_latency_report() {
        let run = parse(SAMPLE).unwrap();
        assert_eq!(run.rps, 8000.5);
        assert!((run.p50_ms - 0.812).abs() < 1e-9);
        assert!((run.p99_ms - 3.1).abs() < 1e-9);
        assert_eq!(run.requests, 32000);
        assert_eq!(run.non_2xx, 12);
        assert_eq!(run.socket_errors, 6);
    }

    #[test]
    fn missing_lines_are_errors() {
        assert!(parse("nothing here").is_err());
    }

    #[test]
    fn shell_line_quotes_headers() {
        let load = Load {
            threads: 1,
            connections: 8,
            duration: Duration::from_secs(3),
        };
        let addr: SocketAddr = "127.0.0.1:10000".parse().unwrap();
        let line = shell_line(&args(
            load,
            addr,
            &[("Host".into(), "dns+a.test:80".into())],
        ));
        assert_eq!(
            line,
            "wrk -t1 -c8 -d3s --timeout 2s --latency -H 'Host: dns+a.test:80' http://127.0.0.1:10000/"
        );
    }
}
