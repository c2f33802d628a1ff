//! End-to-end test harness for dnslb: a loopback authoritative DNS server (and a
//! misbehaving one, `rogue_dns`), fake HTTP backends, Envoy as an RAII process, and the
//! process/HTTP plumbing around them.
//!
//! Everything is blocking and works from plain `#[test]` functions; in-process servers run
//! their own tokio runtime on a background thread.

pub mod artifacts;
pub mod backend;
mod background;
pub mod dns;
pub mod envoy;
pub mod error;
pub mod http;
pub mod process;
pub mod rogue_dns;
pub mod shim;
pub mod stack;
pub mod xds;

pub use backend::{Backend, BackendReport};
pub use dns::{DnsServer, Srv};
pub use envoy::{Envoy, EnvoyOptions};
pub use error::{HarnessError, Result};
pub use http::{http_get, http_request, HttpResponse};
pub use process::{free_port, wait_until, workspace_root, ChildGuard, TempDir};
pub use rogue_dns::RogueDns;
pub use stack::{
    shim_bootstrap, shim_bootstrap_build, shim_bootstrap_with, Build, Shim, Stack, StackOptions,
};
