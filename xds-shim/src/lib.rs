//! xds-shim: turns `dns+HOST:PORT` upstreams into Envoy clusters served over ADS.
//!
//! Data flow: [`refresh`] resolves every host through [`resolve`], folds the answers into a
//! [`discovery::DiscoveryState`], and publishes an immutable [`snapshot::Snapshot`] when
//! its versions move; each ADS stream ([`ads`]) pushes what its client subscribed to.

pub mod admin;
pub mod ads;
pub mod app;
pub mod bootstrap;
pub mod cli;
pub mod clients;
pub mod config;
pub mod config_file;
pub mod discovery;
pub mod duration;
pub mod forced;
pub mod logging;
pub mod member;
pub mod metrics;
pub mod publisher;
pub mod refresh;
pub mod reload;
pub mod resolv_conf;
pub mod resolve;
pub mod resources;
pub mod schedule;
pub mod shutdown;
pub mod snapshot;
pub mod status;
pub mod status_html;
pub mod upstream;
