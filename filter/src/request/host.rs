//! What the per-request decisions need from Envoy: the glue implements these for
//! proxy-wasm and the dynamic module, the unit tests with a fake.

use std::net::IpAddr;

use crate::cookie;
use crate::stats::Counter;

/// The request view the decisions need from the host.
pub trait RequestHost {
    /// Every request header, in order, repeated names included. Read once
    /// per request: each host call costs a trip out of the VM.
    fn headers(&self) -> Vec<(String, Vec<u8>)>;
    /// One request header by its lowercase name (the first, if repeated):
    /// one host call, for paths that need only a few headers.
    fn header(&self, name: &str) -> Option<Vec<u8>>;
    /// A few request headers by their lowercase names, in the fewest host
    /// calls: one each by default, which suits a native host; the wasm host
    /// reads the whole map once, since each call is a trip out of the VM
    /// and back in for the copy (callgrind: 15k instructions a request
    /// fewer than three single reads).
    fn headers_named<const N: usize>(&self, names: [&str; N]) -> [Option<Vec<u8>>; N] {
        names.map(|name| self.header(name))
    }
    fn set_header(&mut self, name: &str, value: &str);
    fn remove_header(&mut self, name: &str);
    /// Sends the request to the member at `address` (`ip:port`) through
    /// the cluster's override_host: the header `header` names it, unless the
    /// host can set the override directly (the dynamic module can).
    fn override_host(&mut self, header: &str, address: &str) {
        self.set_header(header, address);
    }
    /// Answers locally; the request never reaches a backend.
    fn respond(&mut self, status: u32, content_type: &str, body: &str);
    fn source_ip(&self) -> Option<IpAddr>;
    /// Seconds since the Unix epoch.
    fn now(&self) -> u64;
    fn count(&mut self, counter: Counter);
}

/// The response view: where the request went, and a header to add.
pub trait ResponseHost {
    /// `ip:port` of the backend that answered (after retries, the last one).
    fn upstream_address(&self) -> Option<String>;
    fn add_header(&mut self, name: &str, value: &str);
    fn now(&self) -> u64;
    /// Asks the control plane to re-resolve `cluster` soon.
    fn request_refresh(&mut self, cluster: &str);
    /// Fresh random bytes for a cookie's nonce; `None` without randomness.
    fn cookie_nonce(&mut self) -> Option<[u8; cookie::NONCE_LEN]>;
}
