//! The affinity cookie: an opaque, authenticated token naming one endpoint
//! of one upstream, with its own expiry.
//!
//! # Format, version 2
//!
//! The cookie value is the unpadded base64url encoding (RFC 4648 §5) of 56
//! bytes, so always 75 characters:
//!
//! | bytes  | field                                                  |
//! |--------|--------------------------------------------------------|
//! | 0      | version, `2`                                           |
//! | 1..13  | nonce: 12 random bytes, fresh for every cookie         |
//! | 13..40 | the 27-byte plaintext below, encrypted                 |
//! | 40..56 | Poly1305 tag                                           |
//!
//! The plaintext, integers big-endian:
//!
//! | bytes  | field                                                  |
//! |--------|--------------------------------------------------------|
//! | 0..8   | expiry, Unix seconds; the cookie is void from then on  |
//! | 8      | address family, `4` or `6`                            |
//! | 9..25  | IPv6 address, or IPv4 address and 12 zero bytes        |
//! | 25..27 | port                                                   |
//!
//! Both families have one size, so the length does not tell them apart.
//! Sealing is ChaCha20-Poly1305 (RFC 8439) with the cluster name (UTF-8,
//! e.g. `dns+backend.test:8080`) as associated data: a cookie of one upstream
//! is foreign to every other. The key is HKDF-SHA256 (RFC 5869) of the secret,
//! no salt, info [`KEY_INFO`], 32 bytes. Cookies are sealed with the current
//! secret and opened with it or any previous one (key rotation).
//!
//! With random 96-bit nonces, two cookies share a nonce with probability
//! about n²/2⁹⁷ after n cookies under one key (below 2⁻³² up to 2³² cookies).
//! Even then the damage is bounded: a forged cookie can only name an address,
//! and Envoy connects only to members of the cluster.
//!
//! Version 1 (HMAC-SHA256 keystream, one per upstream and second) is no
//! longer read: such cookies are rejected like foreign ones.

mod opened;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{AeadInOut, KeyInit, Nonce, Tag};
use chacha20poly1305::ChaCha20Poly1305;
use hkdf::Hkdf;
use sha2::Sha256;
use thiserror::Error;

/// The format version this codec writes and reads.
pub const VERSION: u8 = 2;
/// Bytes of random nonce the caller supplies for each cookie.
pub const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const PLAIN_LEN: usize = 27;
const SEALED_LEN: usize = 1 + NONCE_LEN + PLAIN_LEN + TAG_LEN;
// The memo keeps whole values of exactly this format's length.
const _: () = assert!(opened::VALUE_LEN == (SEALED_LEN * 4).div_ceil(3));
/// The longest cookie value looked at; longer values are rejected before
/// any decoding work. Version 2 values are 75 characters.
pub const MAX_VALUE_LEN: usize = 96;
/// HKDF info: separates this key from any other use of the same secret, and
/// a later format version will change it.
pub const KEY_INFO: &[u8] = b"dnslb affinity cookie v2 chacha20poly1305";

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CookieError {
    #[error("malformed affinity cookie")]
    Malformed,
    #[error("affinity cookie of format version {0}, not {VERSION}")]
    Version(u8),
    #[error("affinity cookie fails authentication (tampered, or another key or upstream)")]
    Forged,
    #[error("affinity cookie expired")]
    Expired,
}

/// The cipher refused to seal: only for inputs far beyond a cookie's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("sealing the affinity cookie failed")]
pub struct SealError;

/// The cookie keys: the current one seals and opens, previous ones only open.
#[derive(Clone)]
pub struct Keyring {
    current: ChaCha20Poly1305,
    previous: Vec<ChaCha20Poly1305>,
    /// Tells keyrings apart in the memo of opened cookies: a new
    /// configuration (other secrets) never recalls what an old one opened.
    id: u64,
}

/// The next keyring's id; only distinctness matters.
static NEXT_KEYRING: AtomicU64 = AtomicU64::new(1);

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keyring({} previous keys)", self.previous.len())
    }
}

impl Keyring {
    /// Keys from the configured secret (or this Envoy's random one) and the
    /// secrets it replaced.
    pub fn new(secret: &[u8], previous: &[Vec<u8>]) -> Self {
        Self {
            current: cipher(secret),
            previous: previous.iter().map(|s| cipher(s)).collect(),
            id: NEXT_KEYRING.fetch_add(1, Ordering::Relaxed),
        }
    }

    fn all(&self) -> impl Iterator<Item = &ChaCha20Poly1305> {
        std::iter::once(&self.current).chain(&self.previous)
    }
}

/// HKDF rather than the secret itself: secrets are operator strings of any
/// length ≥ 16, and HKDF's extract step turns them into a uniform 32-byte
/// key while the info label keeps it apart from other uses of the secret.
/// HKDF over a bare labelled SHA-256 because it is the standard KDF for
/// exactly this, and it only adds a thin layer over hmac and sha2.
fn cipher(secret: &[u8]) -> ChaCha20Poly1305 {
    let mut key = [0u8; 32];
    let expanded = Hkdf::<Sha256>::new(None, secret).expand(KEY_INFO, &mut key);
    // Expand fails only beyond 255 × 32 bytes; 32 cannot.
    debug_assert!(expanded.is_ok());
    ChaCha20Poly1305::new(&key.into())
}

fn plaintext(addr: SocketAddr, expiry: u64) -> [u8; PLAIN_LEN] {
    let mut plain = [0u8; PLAIN_LEN];
    plain[..8].copy_from_slice(&expiry.to_be_bytes());
    match addr.ip() {
        IpAddr::V4(ip) => {
            plain[8] = 4;
            plain[9..13].copy_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            plain[8] = 6;
            plain[9..25].copy_from_slice(&ip.octets());
        }
    }
    plain[25..].copy_from_slice(&addr.port().to_be_bytes());
    plain
}

/// The address and expiry, or `None` for a layout this codec never writes.
fn parse_plaintext(plain: &[u8; PLAIN_LEN]) -> Option<(SocketAddr, u64)> {
    let [e0, e1, e2, e3, e4, e5, e6, e7, family, ip @ .., p0, p1] = *plain;
    let expiry = u64::from_be_bytes([e0, e1, e2, e3, e4, e5, e6, e7]);
    let ip = match family {
        4 => {
            let (v4, zeros) = ip.split_first_chunk::<4>()?;
            if zeros.iter().any(|&b| b != 0) {
                return None;
            }
            IpAddr::V4(Ipv4Addr::from(*v4))
        }
        6 => IpAddr::V6(Ipv6Addr::from(ip)),
        _ => return None,
    };
    Some((SocketAddr::new(ip, u16::from_be_bytes([p0, p1])), expiry))
}

/// The cookie value for `addr` of `cluster`, valid until `expiry` (Unix s).
/// `nonce` must be fresh random bytes: the caller owns the randomness, so
/// this stays a pure function.
pub fn seal(
    keys: &Keyring,
    cluster: &str,
    addr: SocketAddr,
    expiry: u64,
    nonce: [u8; NONCE_LEN],
) -> Result<String, SealError> {
    let mut body = [0u8; SEALED_LEN];
    let (version, rest) = body.split_at_mut(1);
    let (nonce_out, rest) = rest.split_at_mut(NONCE_LEN);
    let (sealed, tag_out) = rest.split_at_mut(PLAIN_LEN);
    version[0] = VERSION;
    nonce_out.copy_from_slice(&nonce);
    sealed.copy_from_slice(&plaintext(addr, expiry));
    let tag = keys
        .current
        .encrypt_inout_detached(
            &Nonce::<ChaCha20Poly1305>::from(nonce),
            cluster.as_bytes(),
            sealed.into(),
        )
        .map_err(|_| SealError)?;
    tag_out.copy_from_slice(&tag);
    Ok(URL_SAFE_NO_PAD.encode(body))
}

/// The endpoint a cookie value names, if it is authentic under one of the
/// keys, for this cluster, and not expired at `now` (Unix s). A value this
/// thread opened before is recalled instead of decrypted again.
pub fn open(
    keys: &Keyring,
    cluster: &str,
    value: &str,
    now: u64,
) -> Result<SocketAddr, CookieError> {
    let exact: Option<&[u8; opened::VALUE_LEN]> = value.as_bytes().try_into().ok();
    let recalled = exact.and_then(|v| opened::recall(keys.id, cluster, v));
    let (addr, expiry) = match recalled {
        Some(found) => found,
        None => {
            let found = authenticate(keys, cluster, value)?;
            if let Some(v) = exact {
                opened::remember(keys.id, cluster, v, found);
            }
            found
        }
    };
    if expiry <= now {
        return Err(CookieError::Expired);
    }
    Ok(addr)
}

/// The endpoint and expiry sealed in a value, if it is authentic under one
/// of the keys and for this cluster.
fn authenticate(
    keys: &Keyring,
    cluster: &str,
    value: &str,
) -> Result<(SocketAddr, u64), CookieError> {
    if value.len() > MAX_VALUE_LEN {
        return Err(CookieError::Malformed);
    }
    let body = URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|_| CookieError::Malformed)?;
    match body.first() {
        None => return Err(CookieError::Malformed),
        Some(&v) if v != VERSION => return Err(CookieError::Version(v)),
        Some(_) => {}
    }
    let body: &[u8; SEALED_LEN] = body
        .as_slice()
        .try_into()
        .map_err(|_| CookieError::Malformed)?;
    let (nonce, rest) = body[1..].split_at(NONCE_LEN);
    let (sealed, tag) = rest.split_at(PLAIN_LEN);
    let nonce = Nonce::<ChaCha20Poly1305>::try_from(nonce).map_err(|_| CookieError::Malformed)?;
    let tag = Tag::<ChaCha20Poly1305>::try_from(tag).map_err(|_| CookieError::Malformed)?;
    // The crate checks the tag (in constant time) before it decrypts.
    let plain = keys
        .all()
        .find_map(|key| {
            let mut plain = [0u8; PLAIN_LEN];
            plain.copy_from_slice(sealed);
            key.decrypt_inout_detached(
                &nonce,
                cluster.as_bytes(),
                plain.as_mut_slice().into(),
                &tag,
            )
            .ok()
            .map(|()| plain)
        })
        .ok_or(CookieError::Forged)?;
    parse_plaintext(&plain).ok_or(CookieError::Malformed)
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

/// A fresh nonce drawn by `fill` (the binding's randomness), or why there is
/// none: then no cookie is set.
pub fn fresh_nonce<E: fmt::Display>(
    fill: impl FnOnce(&mut [u8]) -> Result<(), E>,
) -> Result<[u8; NONCE_LEN], String> {
    let mut nonce = [0u8; NONCE_LEN];
    fill(&mut nonce)
        .map(|()| nonce)
        .map_err(|e| format!("no randomness for a cookie nonce, no cookie set: {e}"))
}

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

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const OLD_SECRET: &[u8] = b"the secret before the last rotation";
    const CLUSTER: &str = "dns+backend.test:8080";
    const NONCE: [u8; NONCE_LEN] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];

    fn keys() -> Keyring {
        Keyring::new(SECRET, &[])
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn unhex(text: &str) -> Vec<u8> {
        let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
            .collect()
    }

    /// Encrypts and decrypts one RFC 8439 vector through the same trait
    /// calls `seal` and `open` make.
    fn check_rfc8439(key: &str, nonce: &str, aad: &str, plain: &[u8], sealed: &str, tag: &str) {
        let cipher = ChaCha20Poly1305::new_from_slice(&unhex(key)).unwrap();
        let nonce = Nonce::<ChaCha20Poly1305>::try_from(unhex(nonce).as_slice()).unwrap();
        let (aad, sealed, tag) = (unhex(aad), unhex(sealed), unhex(tag));
        let mut buf = plain.to_vec();
        let got = cipher
            .encrypt_inout_detached(&nonce, &aad, buf.as_mut_slice().into())
            .unwrap();
        assert_eq!(buf, sealed);
        assert_eq!(got.as_slice(), tag.as_slice());
        let tag = Tag::<ChaCha20Poly1305>::try_from(tag.as_slice()).unwrap();
        cipher
            .decrypt_inout_detached(&nonce, &aad, buf.as_mut_slice().into(), &tag)
            .unwrap();
        assert_eq!(buf, plain);
        let mut forged = sealed.clone();
        forged[0] ^= 1;
        let refused =
            cipher.decrypt_inout_detached(&nonce, &aad, forged.as_mut_slice().into(), &tag);
        assert!(refused.is_err());
    }

    #[test]
    fn rfc8439_section_2_8_2_vector() {
        check_rfc8439(
            "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f",
            "070000004041424344454647",
            "50515253c0c1c2c3c4c5c6c7",
            b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip \
              for the future, sunscreen would be it.",
            "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6
             3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36
             92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc
             3ff4def08e4b7a9de576d26586cec64b6116",
            "1ae10b594f09e26a7e902ecbd0600691",
        );
    }

    #[test]
    fn rfc8439_appendix_a_5_vector() {
        check_rfc8439(
            "1c9240a5eb55d38af333888604f6b5f0473917c1402b80099dca5cbc207075c0",
            "000000000102030405060708",
            "f33388860000000000004e91",
            "Internet-Drafts are draft documents valid for a maximum of six months and may \
             be updated, replaced, or obsoleted by other documents at any time. It is \
             inappropriate to use Internet-Drafts as reference material or to cite them \
             other than as /\u{201c}work in progress./\u{201d}"
                .as_bytes(),
            concat!(
                "64a0861575861af460f062c79be643bd5e805cfd345cf389f108670ac76c8cb2",
                "4c6cfc18755d43eea09ee94e382d26b0bdb7b73c321b0100d4f03b7f355894cf",
                "332f830e710b97ce98c8a84abd0b948114ad176e008d33bd60f982b1ff37c855",
                "9797a06ef4f0ef61c186324e2b3506383606907b6a7c02b0f9f6157b53c867e4",
                "b9166c767b804d46a59b5216cde7a4e99040c5a40433225ee282a1b0a06c523e",
                "af4534d7f83fa1155b0047718cbc546a0d072b04b3564eea1b422273f548271a",
                "0bb2316053fa76991955ebd63159434ecebb4e466dae5a1073a6727627097a10",
                "49e617d91d361094fa68f0ff77987130305beaba2eda04df997b714d6c6f2c29",
                "a6ad5cb4022b02709b"
            ),
            "eead9d67890cbb22392336fea1851f38",
        );
    }

    /// The format end to end (HKDF, layout, AEAD), computed independently
    /// with Python's `cryptography` (OpenSSL): a change to any part shows.
    #[test]
    fn format_vector() {
        let v4 = "AgABAgMEBQYHCAkKC7_Rg3_EbCUPLTNb4gn28WKnW6rnwVf3skE-qr1JAEZcPe-ZrUcdX7mmDSU";
        let v6 = "AgwNDg8QERITFBUWFzysXvdWZbI-LlvtIXKe9ti5AdWVLaPBwQcuJ5Gs2HOoHCX7vDrWOcsVqdc";
        let v6_nonce = [12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23];
        let k = keys();
        assert_eq!(
            seal(&k, CLUSTER, addr("127.0.0.2:8080"), 5_000, NONCE).unwrap(),
            v4
        );
        assert_eq!(
            seal(&k, CLUSTER, addr("[2001:db8::1]:443"), 5_000, v6_nonce).unwrap(),
            v6
        );
        assert_eq!(open(&k, CLUSTER, v4, 4_999), Ok(addr("127.0.0.2:8080")));
        assert_eq!(open(&k, CLUSTER, v6, 4_999), Ok(addr("[2001:db8::1]:443")));
    }

    #[test]
    fn round_trip_v4_and_v6() {
        for a in [
            "127.0.0.2:8080",
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "[2001:db8::1]:443",
            "[::ffff:127.0.0.2]:8080",
            "[::]:1",
        ] {
            let v = seal(&keys(), CLUSTER, addr(a), 1_000, NONCE).unwrap();
            assert_eq!(v.len(), 75, "{v}");
            assert!(v.len() <= MAX_VALUE_LEN);
            assert_eq!(open(&keys(), CLUSTER, &v, 999), Ok(addr(a)), "{a}");
        }
    }

    #[test]
    fn value_is_opaque() {
        let v = seal(&keys(), CLUSTER, addr("127.0.0.2:8080"), 1_000, NONCE).unwrap();
        assert!(!v.contains("127"));
        let raw = URL_SAFE_NO_PAD.decode(&v).unwrap();
        assert!(!raw.windows(4).any(|w| w == [127, 0, 0, 2]));
        assert!(!raw.windows(2).any(|w| w == 8080u16.to_be_bytes()));
    }

    /// The flaw of version 1: two cookies of one upstream issued in the same
    /// second shared a keystream, so XORing them gave the XOR of the addresses.
    #[test]
    fn cookies_of_one_second_differ_and_leak_nothing() {
        let mut nonce2 = NONCE;
        nonce2[11] ^= 1;
        let a = addr("127.0.0.2:8080");
        let one = seal(&keys(), CLUSTER, a, 1_000, NONCE).unwrap();
        let two = seal(&keys(), CLUSTER, a, 1_000, nonce2).unwrap();
        assert_ne!(one, two);
        assert_eq!(open(&keys(), CLUSTER, &one, 0), Ok(a));
        assert_eq!(open(&keys(), CLUSTER, &two, 0), Ok(a));

        let b = addr("127.0.0.3:9090");
        let three = seal(&keys(), CLUSTER, b, 1_000, nonce2).unwrap();
        let (raw1, raw3) = (
            URL_SAFE_NO_PAD.decode(&one).unwrap(),
            URL_SAFE_NO_PAD.decode(&three).unwrap(),
        );
        let xor = |x: &[u8], y: &[u8]| x.iter().zip(y).map(|(p, q)| p ^ q).collect::<Vec<_>>();
        let sealed = |raw: &[u8]| raw[1 + NONCE_LEN..1 + NONCE_LEN + PLAIN_LEN].to_vec();
        assert_ne!(
            xor(&sealed(&raw1), &sealed(&raw3)),
            xor(&plaintext(a, 1_000), &plaintext(b, 1_000))
        );
    }

    #[test]
    fn tampered_foreign_and_expired_cookies_are_rejected() {
        let v = seal(&keys(), CLUSTER, addr("127.0.0.2:8080"), 1_000, NONCE).unwrap();
        assert_eq!(open(&keys(), CLUSTER, &v, 1_000), Err(CookieError::Expired));
        assert_eq!(
            open(&keys(), CLUSTER, &v, u64::MAX),
            Err(CookieError::Expired)
        );
        let other = Keyring::new(b"another key, sixteen+", &[]);
        assert_eq!(open(&other, CLUSTER, &v, 0), Err(CookieError::Forged));
        assert_eq!(
            open(&keys(), "dns+other.test:8080", &v, 0),
            Err(CookieError::Forged)
        );
        // Flip every bit of the token in turn: never accepted.
        let raw = URL_SAFE_NO_PAD.decode(&v).unwrap();
        for i in 0..raw.len() * 8 {
            let mut t = raw.clone();
            t[i / 8] ^= 1 << (i % 8);
            let tampered = URL_SAFE_NO_PAD.encode(&t);
            assert!(open(&keys(), CLUSTER, &tampered, 0).is_err(), "bit {i}");
        }
        // Cut or extended: never accepted.
        for t in [&raw[..raw.len() - 1], &[raw.as_slice(), &[0]].concat()] {
            let t = URL_SAFE_NO_PAD.encode(t);
            assert_eq!(open(&keys(), CLUSTER, &t, 0), Err(CookieError::Malformed));
        }
    }

    #[test]
    fn a_nonce_comes_from_the_bindings_randomness_or_says_why_not() {
        let drawn = fresh_nonce(|b: &mut [u8]| {
            b.fill(7);
            Ok::<(), String>(())
        });
        assert_eq!(drawn, Ok([7; NONCE_LEN]));
        let none = fresh_nonce(|_: &mut [u8]| Err("no entropy"));
        assert!(none.unwrap_err().contains("no entropy"));
    }

    #[test]
    fn a_recalled_cookie_is_still_bound_and_still_expires() {
        let k = keys();
        let a = addr("127.0.0.2:8080");
        let v = seal(&k, CLUSTER, a, 1_000, NONCE).unwrap();
        assert_eq!(open(&k, CLUSTER, &v, 0), Ok(a), "opened and remembered");
        assert_eq!(open(&k, CLUSTER, &v, 999), Ok(a), "recalled");
        assert_eq!(open(&k, CLUSTER, &v, 1_000), Err(CookieError::Expired));
        assert_eq!(
            open(&k, "dns+other.test:8080", &v, 0),
            Err(CookieError::Forged)
        );
        let replaced = Keyring::new(b"another key, sixteen+", &[]);
        assert_eq!(open(&replaced, CLUSTER, &v, 0), Err(CookieError::Forged));
        let mut tampered = v.into_bytes();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(open(&k, CLUSTER, &tampered, 0).is_err());
    }

    #[test]
    fn other_versions_are_rejected() {
        // Sealed by the version-1 codec (key SECRET, CLUSTER, 127.0.0.2:8080,
        // expiry 5000): ignored, like a foreign cookie.
        let v1 = "AQAAAAAAABOIBoCJD3I1biKfpxyi6w1HcSYZ2TIHqr4";
        assert_eq!(open(&keys(), CLUSTER, v1, 0), Err(CookieError::Version(1)));
        let v = seal(&keys(), CLUSTER, addr("127.0.0.2:8080"), 1_000, NONCE).unwrap();
        let mut raw = URL_SAFE_NO_PAD.decode(&v).unwrap();
        raw[0] = 3;
        let v3 = URL_SAFE_NO_PAD.encode(&raw);
        assert_eq!(open(&keys(), CLUSTER, &v3, 0), Err(CookieError::Version(3)));
    }

    #[test]
    fn rotation_opens_with_previous_secrets_and_seals_with_the_current() {
        let a = addr("[2001:db8::7]:8443");
        let before = Keyring::new(OLD_SECRET, &[]);
        let old_cookie = seal(&before, CLUSTER, a, 1_000, NONCE).unwrap();
        let rotated = Keyring::new(
            SECRET,
            &[b"unrelated secret, 16+".to_vec(), OLD_SECRET.to_vec()],
        );
        assert_eq!(open(&rotated, CLUSTER, &old_cookie, 0), Ok(a));
        // New cookies use the current secret: the old keyring cannot open them.
        let new_cookie = seal(&rotated, CLUSTER, a, 1_000, NONCE).unwrap();
        assert_eq!(open(&keys(), CLUSTER, &new_cookie, 0), Ok(a));
        assert_eq!(
            open(&before, CLUSTER, &new_cookie, 0),
            Err(CookieError::Forged)
        );
        // Once the old secret is dropped, its cookies are foreign.
        assert_eq!(
            open(&keys(), CLUSTER, &old_cookie, 0),
            Err(CookieError::Forged)
        );
        // A previous secret still binds the cluster and the expiry.
        assert_eq!(
            open(&rotated, "dns+other.test:8080", &old_cookie, 0),
            Err(CookieError::Forged)
        );
        assert_eq!(
            open(&rotated, CLUSTER, &old_cookie, 1_000),
            Err(CookieError::Expired)
        );
    }

    #[test]
    fn garbage_is_malformed() {
        for v in ["", "!!!", "A", &"A".repeat(MAX_VALUE_LEN + 1)] {
            assert_eq!(
                open(&keys(), CLUSTER, v, 0),
                Err(CookieError::Malformed),
                "{v}"
            );
        }
        // Right length and version, wrong everything else.
        let zeros = URL_SAFE_NO_PAD.encode([&[VERSION][..], &[0; SEALED_LEN - 1]].concat());
        assert_eq!(open(&keys(), CLUSTER, &zeros, 0), Err(CookieError::Forged));
    }

    #[test]
    fn plaintext_layouts_never_written_are_malformed() {
        let mut plain = plaintext(addr("127.0.0.2:80"), 9);
        assert!(parse_plaintext(&plain).is_some());
        plain[20] = 1; // padding after an IPv4 address
        assert!(parse_plaintext(&plain).is_none());
        plain[8] = 5; // no such family
        assert!(parse_plaintext(&plain).is_none());
    }

    #[test]
    fn key_material_stays_out_of_debug_output() {
        let shown = format!("{:?}", Keyring::new(SECRET, &[OLD_SECRET.to_vec()]));
        assert_eq!(shown, "Keyring(1 previous keys)");
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
