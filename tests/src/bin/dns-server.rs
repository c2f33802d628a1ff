//! `dnslb-dns-server`: serves a zone file on loopback, for the demo and for poking at
//! the shim by hand, and reloads it when the file changes (as CoreDNS's `reload`
//! does in the compose demo). Exit status 2 on bad flags or a bad zone file.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, SystemTime},
};

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
    /// How often to check the zone file for changes (0s: never).
    #[arg(long, default_value = "1s", value_parser = parse_seconds)]
    reload_every: Duration,
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    text.strip_suffix('s')
        .and_then(|n| n.parse::<u64>().ok())
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?} is not a number of seconds like 1s"))
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
    if !args.reload_every.is_zero() {
        let (path, every) = (args.zone.clone(), args.reload_every);
        std::thread::spawn(move || watch_zone(&server, &path, every));
    }
    match wait_for_shutdown_signal() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("dns-server: cannot wait for signals: {error}");
            ExitCode::FAILURE
        }
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Reloads the zone whenever the file's modification time changes. A file
/// that does not parse is reported and the served records stay as they were.
fn watch_zone(server: &DnsServer, path: &Path, every: Duration) {
    let mut seen = modified(path);
    loop {
        std::thread::sleep(every);
        let now = modified(path);
        if now == seen {
            continue;
        }
        seen = now;
        let result = std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|text| server.replace_zone(&text).map_err(|e| e.to_string()));
        match result {
            Ok(()) => println!("dns-server reloaded {}", path.display()),
            Err(error) => eprintln!(
                "dns-server: keeping the last good zone; {}: {error}",
                path.display()
            ),
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
