//! Wiring: bind, resolve once, then run the refresh loop, the ADS server and the admin
//! server side by side until shutdown.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::admin::status::ShimInfo;
use crate::admin::{self, AdminState};
use crate::config::reload::{self, Source};
use crate::config::Config;
use crate::discovery::refresh::{Inbox, Refresher};
use crate::discovery::resolv_conf;
use crate::discovery::resolve::{BuildError, DnsResolver};
use crate::discovery::DiscoveryState;
use crate::shutdown::Shutdown;
use crate::xds::ads::service::{self, XdsService};
use crate::xds::clients::Clients;
use crate::xds::publisher::Publisher;
use crate::xds::refresh_service;

/// How long open ADS streams get to close after shutdown before the process exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: io::Error,
    },
    #[error(transparent)]
    Resolver(#[from] BuildError),
    #[error("ADS server failed: {0}")]
    Ads(#[from] tonic::transport::Error),
    #[error("ADS server task failed: {0}")]
    AdsTask(#[from] tokio::task::JoinError),
}

/// Runs until shutdown; `source` is where SIGHUP rereads the configuration from.
pub async fn run(config: Config, source: Source, mut shutdown: Shutdown) -> Result<(), AppError> {
    // First: until a handler is installed, SIGHUP terminates the process.
    let hangups = reload::hangups();
    let started_at = SystemTime::now();
    // Bind first: a taken port is reported before any DNS work, and clients that connect
    // during the first round queue in the backlog instead of being refused.
    let xds_listener = bind("xDS", config.xds_listen).await?;
    let admin_listener = bind("admin", config.admin_listen).await?;
    let resolver = build_resolver(&config)?;

    let state = DiscoveryState::from_wanted(&config.wanted());
    let publisher = Publisher::new(&state);
    let snapshots = publisher.snapshots();
    let discovery = publisher.discovery();
    let metrics = publisher.metrics();
    let mut refresher = Refresher::new(resolver, state, config.timing(), publisher);
    tokio::select! {
        _ = shutdown.wait() => return Ok(()),
        _ = refresher.first_round() => {}
    };

    let clients = Clients::default();
    let admin_state = AdminState {
        snapshots: snapshots.clone(),
        discovery,
        clients: clients.clone(),
        metrics: Arc::clone(&metrics),
        shim: ShimInfo {
            started_at,
            nameservers: config.nameservers.clone(),
            interval: config.interval,
        },
    };
    let ads = XdsService::new(snapshots, clients, shutdown.clone(), Arc::clone(&metrics));

    let (forced, asks) = refresh_service::channel();
    let (reload_requests, reloads) = mpsc::channel(1);
    match hangups {
        Ok(hangups) => {
            let metrics = Arc::clone(&metrics);
            let running = config.clone();
            let reloads = reload::serve(
                hangups,
                source,
                running,
                reload_requests,
                metrics,
                shutdown.clone(),
            );
            tokio::spawn(reloads);
        }
        Err(err) => warn!(%err, "cannot listen for SIGHUP; configuration reload is unavailable"),
    }
    let refresher = tokio::spawn(refresher.run(shutdown.clone(), Inbox { asks, reloads }));
    let admin = tokio::spawn(admin::serve(admin_listener, admin_state, shutdown.clone()));
    info!(
        xds = %config.xds_listen,
        admin = %config.admin_listen,
        upstreams = config.upstreams.len(),
        interval = ?config.interval,
        "serving"
    );
    let mut ads_server = tokio::spawn(service::serve(
        xds_listener,
        ads,
        forced,
        config.xds_tls.clone(),
        shutdown.clone(),
    ));

    let early_exit = tokio::select! {
        _ = shutdown.wait() => None,
        ended = &mut ads_server => Some(ended),
    };
    if let Some(ended) = early_exit {
        // The ADS server only returns on its own when it failed.
        ended??;
        return Ok(());
    }
    info!("shutting down");
    let all = async {
        let ads = ads_server.await;
        let _ = refresher.await;
        let _ = admin.await;
        ads
    };
    match tokio::time::timeout(SHUTDOWN_GRACE, all).await {
        Ok(ads) => ads??,
        Err(_) => warn!("streams did not close within the grace period; exiting anyway"),
    }
    Ok(())
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, AppError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| AppError::Bind { what, addr, source })
}

fn build_resolver(config: &Config) -> Result<DnsResolver, BuildError> {
    if !config.nameservers.is_empty() {
        info!(nameservers = ?config.nameservers, "resolving with the given nameservers");
        return DnsResolver::with_nameservers(&config.nameservers, config.resolver);
    }
    let conf = match std::fs::read_to_string(resolv_conf::PATH) {
        Ok(text) => resolv_conf::parse(&text),
        Err(error) => {
            warn!(path = resolv_conf::PATH, %error, "cannot read resolver config; using 127.0.0.1:53");
            resolv_conf::ResolvConf::default()
        }
    };
    info!(nameservers = ?conf.nameservers, search = ?conf.search, "resolving with the system configuration");
    DnsResolver::with_system_config(&conf, config.resolver)
}
