//! `dnslb-dns-server`: serves a zone file on loopback, for the demo and for poking at
//! the shim by hand. Exit status 2 on bad flags or a bad zone file.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::Parser;
use dnslb_tests::DnsServer;

/// Authoritative DNS server for A, AAAA and SRV records from a zone file.
#[derive(Debug, Parser)]
#[command(name = "dnslb-dns-server", version)]
struct Args {
    /// UDP and TCP address to serve on.
    #[arg(long, default_value = "127.0.0.1:5353")]
    listen: SocketAddr,
    /// Zone file (RFC 1035 syntax: $ORIGIN, $TTL, A, AAAA, SRV; SOA and NS accepted).
    #[arg(long)]
    zone: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let zone = match std::fs::read_to_string(&args.zone) {
        Ok(zone) => zone,
        Err(error) => {
            eprintln!(
                "dns-server: cannot read zone file {}: {error}",
                args.zone.display()
            );
            return ExitCode::from(2);
        }
    };
    let server = match DnsServer::start_on(args.listen) {
        Ok(server) => server,
        Err(error) => {
            eprintln!("dns-server: cannot listen on {}: {error}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    if let Err(error) = server.load_zone(&zone) {
        eprintln!("dns-server: bad zone file {}: {error}", args.zone.display());
        return ExitCode::from(2);
    }
    println!("dns-server listening on {}", server.addr());
    match wait_for_shutdown_signal() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("dns-server: cannot wait for signals: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Blocks until SIGINT or SIGTERM.
fn wait_for_shutdown_signal() -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result,
            _ = term.recv() => Ok(()),
        }
    })
}
