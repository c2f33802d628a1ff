//! Any cookie value: no panic; and sealing any endpoint opens to the same.
#![no_main]

use std::net::SocketAddr;

use dnslb_filter::cookie::{find, open, seal};
use libfuzzer_sys::fuzz_target;

const KEY: &[u8] = b"fuzzing key, sixteen bytes or more";

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = find(text, "dnslb");
        let _ = open(KEY, "dns+a.test:80", text, 0);
    }
    if data.len() >= 26 {
        let mut ip = [0u8; 16];
        ip.copy_from_slice(&data[..16]);
        let port = u16::from_be_bytes([data[16], data[17]]);
        let mut expiry = [0u8; 8];
        expiry.copy_from_slice(&data[18..26]);
        let expiry = u64::from_be_bytes(expiry).max(1);
        let addr = SocketAddr::from((ip, port));
        let value = seal(KEY, "dns+a.test:80", addr, expiry);
        assert_eq!(open(KEY, "dns+a.test:80", &value, expiry - 1), Ok(addr));
    }
});
