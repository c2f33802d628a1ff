//! The shared test kit (`dnslb-tests`) as the shim's own tests use it: its DNS server on
//! loopback and the xds-shim binary cargo built for these tests.

#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::time::Duration;

pub use dnslb_tests::{DnsServer, Shim, TempDir};

/// A DNS server answering A queries for `names`; others get NXDOMAIN.
pub fn dns(names: &[(&str, &[&str])]) -> DnsServer {
    let dns = DnsServer::start().unwrap();
    for (name, ips) in names {
        set(&dns, name, ips);
    }
    dns
}

/// Replaces the A records of `name`.
pub fn set(dns: &DnsServer, name: &str, ips: &[&str]) {
    let ips: Vec<Ipv4Addr> = ips.iter().map(|ip| ip.parse().unwrap()).collect();
    dns.set_a(name, &ips);
}

/// A running shim and the directory holding its log (removed with it).
pub struct Running {
    pub shim: Shim,
    _dir: TempDir,
}

impl std::ops::Deref for Running {
    type Target = Shim;
    fn deref(&self) -> &Shim {
        &self.shim
    }
}

impl Running {
    /// `http://` and the xDS address, for tonic clients.
    pub fn xds_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.shim.xds)
    }

    /// GET `path` on the admin port: (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        let response = dnslb_tests::http_get(self.shim.admin, path, &[]).unwrap();
        (response.status, response.body)
    }
}

/// The shim on `upstreams`, asking only `dns`, re-resolving every `interval`, with `extra`
/// flags; ready (its `/healthz` answers) when this returns.
pub fn shim(dns: &DnsServer, upstreams: &[&str], interval: Duration, extra: &[&str]) -> Running {
    let dir = TempDir::new("xds-shim-test").unwrap();
    let upstreams: Vec<String> = upstreams.iter().map(|u| u.to_string()).collect();
    let shim = Shim::start_binary(
        env!("CARGO_BIN_EXE_xds-shim").as_ref(),
        &upstreams,
        dns.addr(),
        interval,
        dir.path(),
        extra,
    )
    .unwrap();
    Running { shim, _dir: dir }
}
