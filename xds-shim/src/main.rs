//! Thin entry point: parse flags, set up logging, run, map the outcome to an exit status
//! (2 for bad flags or config, 1 for runtime failures, 0 after a clean shutdown).

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use tracing::{error, info};
use xds_shim::admin::probe;
use xds_shim::config::cli::{Cli, Command};
use xds_shim::config::reload::Source;
use xds_shim::config::Config;
use xds_shim::{app, bootstrap, logging, shutdown};

fn main() -> ExitCode {
    let (config, source) = match configure() {
        Ok(Setup::Bootstrap(yaml)) => {
            print!("{yaml}");
            return ExitCode::SUCCESS;
        }
        Ok(Setup::Probe(args)) => {
            let method = if args.post {
                probe::Method::Post
            } else {
                probe::Method::Get
            };
            return match probe::probe(&args.url, method, args.timeout) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("probe failed: {err}");
                    ExitCode::FAILURE
                }
            };
        }
        Ok(Setup::Run(Some(Command::Check), config, _)) => {
            print!("{}", config.to_yaml());
            return ExitCode::SUCCESS;
        }
        Ok(Setup::Run(_, config, source)) => (*config, *source),
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    logging::init(config.log_format);
    info!(
        version = env!("CARGO_PKG_VERSION"),
        commit = xds_shim::COMMIT,
        "xds-shim starting"
    );

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
        app::run(config, source, shutdown).await
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            error!(%err, "xds-shim failed");
            ExitCode::FAILURE
        }
    }
}

/// What the command line asks for.
enum Setup {
    /// `envoy-bootstrap`: the YAML to print.
    Bootstrap(String),
    /// `probe`: one GET, before any configuration is read.
    Probe(xds_shim::config::cli::ProbeArgs),
    /// Run the shim, or `check` its configuration; the source is reread on SIGHUP.
    Run(Option<Command>, Box<Config>, Box<Source>),
}

/// Flags, variables and the `--config` file, merged and validated. clap prints its own
/// errors (naming the flag and value) and exits with 2.
fn configure() -> Result<Setup, Box<dyn std::error::Error>> {
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Some(Command::EnvoyBootstrap(args)) = &cli.command {
        let request = bootstrap::request(
            args.listen,
            args.admin,
            args.xds,
            bootstrap::FilterBuild::from_flags(args.wasm.clone(), args.module.clone()),
            &args.filter_config,
            args.absolute_form,
            args.xds_tls(),
        )?;
        return Ok(Setup::Bootstrap(bootstrap::render(&request)));
    }
    if let Some(Command::Probe(args)) = cli.command.take_if(|c| matches!(c, Command::Probe(_))) {
        return Ok(Setup::Probe(args));
    }
    let command = cli.command.take();
    // Start and reload merge the file with the flags the same way.
    let source = Source::new(cli, &matches);
    let config = source.load()?;
    Ok(Setup::Run(command, Box::new(config), Box::new(source)))
}
