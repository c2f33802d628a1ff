//! `bench`: runs the benchmarks of issue 6 and writes `docs/benchmarks.md`
//! (see `dnslb_tests::bench`). `just bench` is the way to run it. Exit status
//! 2 on bad flags, 1 when a phase could not run (the document says which);
//! never because of a number.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::Parser;
use dnslb_tests::bench::{self, Options, Phase};

#[derive(Debug, Parser)]
#[command(name = "bench")]
struct Args {
    /// Where the report goes; charts go to `benchmarks/` next to it.
    #[arg(long, default_value = "docs/benchmarks.md")]
    out: PathBuf,
    /// Wall-clock budget in seconds for this binary.
    #[arg(long, default_value_t = 540)]
    budget: u64,
    /// Seconds the preceding `just build` took (the recipe measures it).
    #[arg(long)]
    build_seconds: Option<f64>,
    /// A short smoke run of every phase (1 round, 1 s runs).
    #[arg(long)]
    quick: bool,
    /// Skip the clean build of the filter.
    #[arg(long)]
    no_clean_build: bool,
    /// Run only this phase with the release binaries already built (the
    /// others and the clean build are reported as not run). Pair it with
    /// `--out` elsewhere to keep `docs/benchmarks.md`.
    #[arg(long, value_enum)]
    only: Option<Phase>,
    /// Let Envoy share every CPU with wrk and the backends instead of
    /// giving it one of its own.
    #[arg(long)]
    no_pin: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let budget = Duration::from_secs(args.budget);
    let mut options = if args.quick {
        Options::quick(args.out, budget)
    } else {
        Options::full(args.out, budget)
    };
    options.build_seconds = args.build_seconds;
    options.clean_build &= !args.no_clean_build;
    options.only = args.only;
    options.pin = !args.no_pin;
    let out = options.out.clone();
    match bench::run(options) {
        Ok(results) => {
            let failures = results.failures();
            eprintln!(
                "bench: wrote {} in {:.0} s",
                out.display(),
                results.elapsed.as_secs_f64()
            );
            if failures.is_empty() {
                ExitCode::SUCCESS
            } else {
                for failure in failures {
                    eprintln!("bench: {failure}");
                }
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("bench: {error}");
            ExitCode::FAILURE
        }
    }
}
