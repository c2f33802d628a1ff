//! xds-shim: turns `dns+HOST:PORT` upstreams into Envoy clusters served over ADS.
//!
//! Data flow: [`refresh`] resolves every host through [`resolve`], folds the answers into a
//! [`discovery::DiscoveryState`], and publishes an immutable [`snapshot::Snapshot`] when
//! its versions move; each ADS stream ([`ads`]) pushes what its client subscribed to.

/// `0.1.0 (commit abcdef123456)`: what `-V`, the start-up log line and
/// `dnslb_build_info` say.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("DNSLB_COMMIT"),
    ")"
);
/// The git commit the binary was built from ("unknown" outside a checkout).
pub const COMMIT: &str = env!("DNSLB_COMMIT");

pub mod admin;
pub mod app;
pub mod bootstrap;
pub mod config;
pub mod discovery;
pub mod duration;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod shutdown;
pub mod xds;
