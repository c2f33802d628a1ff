//! xds-shim: turns `dns+HOST:PORT` upstreams into Envoy clusters served over ADS.
//!
//! The modules are layers along the data flow; each imports only those above it here:
//! - [`model`]: upstreams, their settings, members and the TLS target (no DNS or Envoy
//!   types);
//! - [`discovery`]: the refresh loop resolves every name, folds the answers into a
//!   [`discovery::DiscoveryState`] and publishes through a [`discovery::refresh::Sink`];
//! - [`xds`]: the sink that builds immutable [`xds::snapshot::Snapshot`]s, and the streams
//!   ([`xds::ads`]) that push what each client subscribed to;
//! - [`admin`]: the admin HTTP server that reports all of it;
//! - [`config`]: flags and the YAML file, compiled into the values of the layers above.
//!
//! [`app`] wires them; [`bootstrap`] (the `envoy-bootstrap` command, which only prints
//! YAML) uses xds's names, and config its flags; [`shutdown`], [`logging`], [`duration`]
//! and [`metrics`] are leaves any layer may use.

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
