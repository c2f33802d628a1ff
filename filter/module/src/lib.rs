//! dnslb's HTTP filter as an Envoy dynamic module: a native shared library
//! (`libdnslb_module.so`) Envoy 1.40 loads through its dynamic-module C ABI.
//!
//! It takes the same configuration JSON as the wasm filter and runs the same
//! per-request code (`dnslb_filter`'s `RequestContext` and response handling); only
//! the binding differs:
//! - `abi` is the one unsafe module: the hand-declared ABI, the hooks Envoy
//!   calls, and a safe API over them;
//! - `filter` is the filter on one Envoy and one stream, written against
//!   the `filter::Stream` trait (tested with a fake);
//! - `xds_client` is one background thread per filter configuration that
//!   follows EDS from the xDS server and publishes each update to `feed`,
//!   from which worker threads take it without a lock on the request path.

#[cfg(not(test))]
mod abi;
mod feed;
mod filter;
mod gauges;
mod log;
#[cfg(test)]
mod test_support;
mod xds_client;

/// The dynamic-module ABI this build targets (Envoy 1.40).
pub const ABI_VERSION: &str = "v0.2.0";
