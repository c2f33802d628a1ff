//! Any cookie value: no panic; and sealing any endpoint, with any nonce,
//! opens to the same endpoint, under the current key and after a rotation.
#![no_main]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::LazyLock;

use dnslb_filter::cookie::{find, open, seal, Keyring, NONCE_LEN};
use libfuzzer_sys::fuzz_target;

const CLUSTER: &str = "dns+a.test:80";
const SECRET: &[u8] = b"fuzzing key, sixteen bytes or more";
const OLD_SECRET: &[u8] = b"previous fuzzing key, 16+";

// Built once: deriving keys for every input would only slow the fuzzer.
static KEYS: LazyLock<Keyring> = LazyLock::new(|| Keyring::new(SECRET, &[OLD_SECRET.to_vec()]));
static OLD_KEYS: LazyLock<Keyring> = LazyLock::new(|| Keyring::new(OLD_SECRET, &[]));

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = find(text, "dnslb");
        let _ = open(&KEYS, CLUSTER, text, 0);
    }
    let Some((ip, rest)) = data.split_first_chunk::<16>() else {
        return;
    };
    let Some((port, rest)) = rest.split_first_chunk::<2>() else {
        return;
    };
    let Some((expiry, rest)) = rest.split_first_chunk::<8>() else {
        return;
    };
    let Some((nonce, _)) = rest.split_first_chunk::<NONCE_LEN>() else {
        return;
    };
    let port = u16::from_be_bytes(*port);
    let expiry = u64::from_be_bytes(*expiry).max(1);
    let v4 = Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]);
    for addr in [SocketAddr::from((*ip, port)), SocketAddr::from((v4, port))] {
        let value = seal(&KEYS, CLUSTER, addr, expiry, *nonce).unwrap();
        assert_eq!(open(&KEYS, CLUSTER, &value, expiry - 1), Ok(addr));
        assert!(open(&KEYS, "dns+b.test:80", &value, 0).is_err());
        let old = seal(&OLD_KEYS, CLUSTER, addr, expiry, *nonce).unwrap();
        assert_eq!(open(&KEYS, CLUSTER, &old, expiry - 1), Ok(addr));
    }
});
