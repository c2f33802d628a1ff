//! `soak`: the bounded chaos run of `just soak` (see `dnslb_bench::soak`). Exit status 2
//! on bad flags, 1 when a request failed or the run could not start.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::Parser;
use dnslb_bench::soak::{self, Options};

#[derive(Debug, Parser)]
#[command(name = "soak")]
struct Args {
    /// Length of the run in seconds (at most 300).
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(10..=300))]
    seconds: u64,
    /// Concurrent connections of the load generator.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=256))]
    connections: u32,
    /// Where the report goes.
    #[arg(long, default_value = "docs/soak.md")]
    out: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let options = Options {
        duration: Duration::from_secs(args.seconds),
        connections: args.connections,
        out: args.out,
        backend_bin: match std::env::current_exe() {
            Ok(exe) => exe.with_file_name("fake-backend"),
            Err(error) => {
                eprintln!("soak: cannot find its own path: {error}");
                return ExitCode::FAILURE;
            }
        },
    };
    match soak::run(&options) {
        Ok(report) => {
            print!("{}", soak::render(&options, &report));
            if report.failed() == 0 {
                ExitCode::SUCCESS
            } else {
                eprintln!("soak: {} requests failed", report.failed());
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("soak: {error}");
            ExitCode::FAILURE
        }
    }
}
