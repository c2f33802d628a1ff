//! The affinity cookie: an opaque, integrity-protected token naming one
//! endpoint of one upstream, with its own expiry.
//!
//! Layout before base64url: `version(1) | expiry(8, unix s) | len(1) |
//! address XOR keystream | mac(16)`. The keystream and MAC are HMAC-SHA256
//! under the cookie key, both bound to the cluster name, so a cookie reveals no
//! address, cannot be forged or edited, and a cookie of one upstream is
//! foreign to every other.

use std::net::{IpAddr, SocketAddr};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

const VERSION: u8 = 1;
const MAC_LEN: usize = 16;
/// The longest cookie value this codec produces, with room to spare; longer
/// values are rejected before any decoding work.
pub const MAX_VALUE_LEN: usize = 96;
/// The most bytes `MAX_VALUE_LEN` base64 characters decode to.
const MAX_BODY_LEN: usize = MAX_VALUE_LEN / 4 * 3;
/// An IPv6 address and a port.
const MAX_ADDRESS_LEN: usize = 18;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CookieError {
    #[error("malformed affinity cookie")]
    Malformed,
    #[error("affinity cookie fails its integrity check (tampered, or another key or upstream)")]
    Forged,
    #[error("affinity cookie expired")]
    Expired,
}

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC takes keys of any length; the error arm cannot happen.
    let Ok(mut mac) = HmacSha256::new_from_slice(key) else {
        return [0; 32];
    };
    for part in parts {
        mac.update(&(part.len() as u32).to_be_bytes());
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn address_bytes(addr: SocketAddr) -> Vec<u8> {
    let mut out = match addr.ip() {
        IpAddr::V4(ip) => ip.octets().to_vec(),
        IpAddr::V6(ip) => ip.octets().to_vec(),
    };
    out.extend_from_slice(&addr.port().to_be_bytes());
    out
}

fn address_from(bytes: &[u8]) -> Option<SocketAddr> {
    let (ip, port) = bytes.split_at_checked(bytes.len().checked_sub(2)?)?;
    let port = u16::from_be_bytes([port[0], port[1]]);
    let ip = match ip.len() {
        4 => IpAddr::from(<[u8; 4]>::try_from(ip).ok()?),
        16 => IpAddr::from(<[u8; 16]>::try_from(ip).ok()?),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

fn keystream(key: &[u8], cluster: &str, expiry: u64) -> [u8; 32] {
    hmac(
        key,
        &[
            b"dnslb-cookie-enc",
            cluster.as_bytes(),
            &expiry.to_be_bytes(),
        ],
    )
}

/// The cookie value for `addr` of `cluster`, valid until `expiry` (unix s).
pub fn seal(key: &[u8], cluster: &str, addr: SocketAddr, expiry: u64) -> String {
    let plain = address_bytes(addr);
    let stream = keystream(key, cluster, expiry);
    let mut body = Vec::with_capacity(10 + plain.len() + MAC_LEN);
    body.push(VERSION);
    body.extend_from_slice(&expiry.to_be_bytes());
    body.push(plain.len() as u8);
    body.extend(plain.iter().zip(stream.iter()).map(|(p, k)| p ^ k));
    let mac = hmac(key, &[b"dnslb-cookie-mac", cluster.as_bytes(), &body]);
    body.extend_from_slice(&mac[..MAC_LEN]);
    URL_SAFE_NO_PAD.encode(body)
}

/// The endpoint a cookie value names, if it is genuine, for this cluster and
/// not expired at `now` (unix s).
pub fn open(key: &[u8], cluster: &str, value: &str, now: u64) -> Result<SocketAddr, CookieError> {
    if value.len() > MAX_VALUE_LEN {
        return Err(CookieError::Malformed);
    }
    // Decoded on the stack: opening the cookie of every request allocates nothing.
    let mut decoded = [0u8; MAX_BODY_LEN];
    let len = URL_SAFE_NO_PAD
        .decode_slice(value, &mut decoded)
        .map_err(|_| CookieError::Malformed)?;
    let body = decoded.get(..len).ok_or(CookieError::Malformed)?;
    let (signed, mac) = body
        .split_at_checked(
            body.len()
                .checked_sub(MAC_LEN)
                .ok_or(CookieError::Malformed)?,
        )
        .ok_or(CookieError::Malformed)?;
    let [version, e0, e1, e2, e3, e4, e5, e6, e7, len, sealed @ ..] = signed else {
        return Err(CookieError::Malformed);
    };
    if *version != VERSION || usize::from(*len) != sealed.len() {
        return Err(CookieError::Malformed);
    }
    let expected = hmac(key, &[b"dnslb-cookie-mac", cluster.as_bytes(), signed]);
    // Constant-time comparison: the MAC must not leak through timing.
    let diff = expected[..MAC_LEN]
        .iter()
        .zip(mac)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if diff != 0 {
        return Err(CookieError::Forged);
    }
    let expiry = u64::from_be_bytes([*e0, *e1, *e2, *e3, *e4, *e5, *e6, *e7]);
    if expiry <= now {
        return Err(CookieError::Expired);
    }
    let stream = keystream(key, cluster, expiry);
    let mut plain = [0u8; MAX_ADDRESS_LEN];
    let plain = plain
        .get_mut(..sealed.len())
        .ok_or(CookieError::Malformed)?;
    for ((p, c), k) in plain.iter_mut().zip(sealed).zip(&stream) {
        *p = c ^ k;
    }
    address_from(plain).ok_or(CookieError::Malformed)
}

/// Finds cookie `name` in a `Cookie` header value. More than one cookie of
/// that name is an error: which one the client meant is unknowable.
pub fn find<'a>(header: &'a str, name: &str) -> Result<Option<&'a str>, Repeated> {
    let mut found = None;
    for pair in header.split(';') {
        let Some((k, v)) = pair.split_once('=') else {
            continue;
        };
        if k.trim() == name {
            if found.is_some() {
                return Err(Repeated);
            }
            found = Some(v.trim().trim_matches('"'));
        }
    }
    Ok(found)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("affinity cookie sent more than once")]
pub struct Repeated;

/// The `Set-Cookie` header value.
pub fn set_cookie(name: &str, value: &str, max_age: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}")
}

#[cfg(test)]
mod tests {
    use super::*;
    // The same tests run natively and, under Node, compiled to wasm32.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
    const CLUSTER: &str = "dns+backend.test:8080";

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn round_trip_v4_and_v6() {
        for a in ["127.0.0.2:8080", "[2001:db8::1]:443"] {
            let v = seal(KEY, CLUSTER, addr(a), 1_000);
            assert!(v.len() <= MAX_VALUE_LEN, "{v}");
            assert_eq!(open(KEY, CLUSTER, &v, 999), Ok(addr(a)));
        }
    }

    #[test]
    fn value_is_opaque() {
        let v = seal(KEY, CLUSTER, addr("127.0.0.2:8080"), 1_000);
        assert!(!v.contains("127"));
        let raw = URL_SAFE_NO_PAD.decode(&v).unwrap();
        assert!(!raw.windows(4).any(|w| w == [127, 0, 0, 2]));
    }

    #[test]
    fn expired_forged_and_foreign_cookies_are_rejected() {
        let v = seal(KEY, CLUSTER, addr("127.0.0.2:8080"), 1_000);
        assert_eq!(open(KEY, CLUSTER, &v, 1_000), Err(CookieError::Expired));
        assert_eq!(
            open(b"another key, sixteen+", CLUSTER, &v, 0),
            Err(CookieError::Forged)
        );
        assert_eq!(
            open(KEY, "dns+other.test:8080", &v, 0),
            Err(CookieError::Forged)
        );
        // Flip every bit of the token in turn: never accepted.
        let raw = URL_SAFE_NO_PAD.decode(&v).unwrap();
        for i in 0..raw.len() * 8 {
            let mut t = raw.clone();
            t[i / 8] ^= 1 << (i % 8);
            let tampered = URL_SAFE_NO_PAD.encode(&t);
            assert!(open(KEY, CLUSTER, &tampered, 0).is_err(), "bit {i}");
        }
        // Extending the expiry needs the key.
        let mut t = raw.clone();
        t[1..9].copy_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(
            open(KEY, CLUSTER, &URL_SAFE_NO_PAD.encode(&t), 0),
            Err(CookieError::Forged)
        );
    }

    #[test]
    fn garbage_is_malformed() {
        for v in ["", "!!!", "AAAA", &"A".repeat(MAX_VALUE_LEN + 1)] {
            assert_eq!(open(KEY, CLUSTER, v, 0), Err(CookieError::Malformed), "{v}");
        }
    }

    #[test]
    fn cookie_header_parsing() {
        assert_eq!(find("a=1; dnslb=xyz; b=2", "dnslb"), Ok(Some("xyz")));
        assert_eq!(find("dnslb=\"q\"", "dnslb"), Ok(Some("q")));
        assert_eq!(find("a=1; xdnslb=2", "dnslb"), Ok(None));
        assert_eq!(find("dnslb=1; dnslb=2", "dnslb"), Err(Repeated));
        assert_eq!(find("novalue; ;=", "dnslb"), Ok(None));
    }

    #[test]
    fn set_cookie_attributes() {
        assert_eq!(
            set_cookie("dnslb", "v", 60, false),
            "dnslb=v; Path=/; Max-Age=60; HttpOnly; SameSite=Lax"
        );
        assert!(set_cookie("dnslb", "v", 60, true).ends_with("; Secure"));
    }
}
