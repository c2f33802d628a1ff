//! Thin entry point: parse flags, set up logging, run, map the outcome to an exit status
//! (2 for bad flags or config, 1 for runtime failures, 0 after a clean shutdown).

use std::process::ExitCode;

use clap::Parser;
use tracing::{error, info};
use xds_shim::cli::Cli;
use xds_shim::{app, logging, shutdown};

fn main() -> ExitCode {
    // clap prints its own errors (naming the flag and value) and exits with 2.
    let cli = Cli::parse();
    let config = match cli.to_config() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    logging::init(cli.log_format);

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            error!(%err, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        let (trigger, shutdown) = shutdown::channel();
        tokio::spawn(async move {
            match shutdown::signal().await {
                Ok(name) => {
                    info!(signal = name, "shutdown requested");
                    trigger.fire();
                }
                Err(err) => {
                    // Dropping the trigger would read as "shut down"; hold it and run on.
                    error!(%err, "cannot listen for signals; graceful shutdown is unavailable");
                    std::future::pending::<()>().await;
                    drop(trigger);
                }
            }
        });
        app::run(config, shutdown).await
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            error!(%err, "xds-shim failed");
            ExitCode::FAILURE
        }
    }
}
