//! `fake-backend`: an HTTP/1.1 server that answers 200 with a report of what it received
//! (see `dnslb_tests::backend`). Exit status 2 on bad flags.

use std::{net::SocketAddr, process::ExitCode, sync::Arc};

use clap::Parser;
use dnslb_tests::backend::serve;
use tokio::{net::TcpListener, task::JoinSet};

/// Fake backend: every request gets 200 and a JSON report naming this backend.
#[derive(Debug, Parser)]
#[command(name = "fake-backend", version)]
struct Args {
    /// Address to listen on; repeat to serve several addresses from one process.
    #[arg(long, required = true)]
    listen: Vec<SocketAddr>,
    /// Name reported in `x-backend-name` and the JSON body.
    #[arg(long)]
    name: Option<String>,
    /// Answer 503 to requests for this path (repeatable): a member that is up but tells
    /// its health checks it is not.
    #[arg(long = "fail-path", value_name = "PATH")]
    fail_paths: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("fake-backend: cannot start tokio: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(args))
}

async fn run(args: Args) -> ExitCode {
    let mut servers = JoinSet::new();
    for addr in args.listen {
        let listener = match TcpListener::bind(addr).await {
            Ok(listener) => listener,
            Err(error) => {
                eprintln!("fake-backend: cannot listen on {addr}: {error}");
                return ExitCode::FAILURE;
            }
        };
        match listener.local_addr() {
            Ok(bound) => println!("fake-backend listening on {bound}"),
            Err(error) => {
                eprintln!("fake-backend: cannot read address of {addr}: {error}");
                return ExitCode::FAILURE;
            }
        }
        servers.spawn(serve(
            listener,
            args.name.clone(),
            Arc::from(args.fail_paths.clone()),
        ));
    }
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(error) => {
            eprintln!("fake-backend: cannot wait for SIGTERM: {error}");
            return ExitCode::FAILURE;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => ExitCode::SUCCESS,
        _ = term.recv() => ExitCode::SUCCESS,
        Some(result) = servers.join_next() => {
            eprintln!("fake-backend: a listener stopped: {result:?}");
            ExitCode::FAILURE
        }
    }
}
