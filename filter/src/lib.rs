//! dnslb's HTTP filter: the pure core both builds share, and the proxy-wasm
//! binding.
//!
//! Everything but [`glue`] is pure logic with no proxy-wasm dependency, so it
//! builds and is tested natively; `glue` is the one module that calls the
//! proxy-wasm host (through the host traits of [`request`] and [`root`]).
//! The dynamic-module build (`filter/module`) uses this crate as an rlib.

pub mod absolute_form;
pub use dnslb_wire::authority;
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
