//! dnslb's proxy-wasm HTTP filter.
//!
//! Everything but [`glue`] is pure logic with no proxy-wasm dependency, so it
//! builds and is tested natively; `glue` is the one module that calls the host.

pub mod absolute_form;
pub mod authority;
pub mod config;
pub mod cookie;
pub mod envoy_routing;
pub mod members;
pub mod request;
pub mod root;
pub mod stats;
pub mod xds;

#[cfg(test)]
mod test_support;

#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
mod glue;
