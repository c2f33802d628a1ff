//! Cookies this thread opened lately, so a session's later requests skip the
//! base64 decoding and the AEAD check: opening is a pure function of
//! (keys, cluster, value), and a client sends the same value on every
//! request of its session, so the answer of the first opening serves them
//! all. In callgrind the opening was most of the cookie path's own work.
//!
//! Only values that authenticated are remembered, under the exact value, the
//! exact cluster and the identity of the keyring that opened them; the
//! expiry is kept and checked by the caller on every request. A lookup that
//! does not match all three is a miss, so a forged or foreign value never
//! gets an answer it would not get from the cipher.
//!
//! Direct-mapped, a fixed number of slots per thread (one Envoy worker, or
//! the one thread of a wasm VM): no lock on the request path, bounded
//! memory, and a new session simply takes the slot of an old one.

use std::cell::RefCell;
use std::net::SocketAddr;

/// Slots per thread; a power of two. Each is ~150 bytes, ~150 KiB in all,
/// allocated on the thread's first valid cookie.
const SLOTS: usize = 1024;
const SLOT_BITS: u32 = SLOTS.trailing_zeros();

/// The length of a version 2 cookie value; others are never remembered.
pub(super) const VALUE_LEN: usize = 75;

/// What an opening found: the endpoint and the expiry (Unix s).
pub(super) type Found = (SocketAddr, u64);

struct Entry {
    keyring: u64,
    value: [u8; VALUE_LEN],
    cluster: Box<str>,
    found: Found,
}

#[derive(Default)]
struct Table {
    slots: Vec<Option<Entry>>,
}

impl Table {
    fn get(&self, keyring: u64, cluster: &str, value: &[u8; VALUE_LEN]) -> Option<Found> {
        let entry = self.slots.get(slot(value))?.as_ref()?;
        (entry.keyring == keyring && &entry.value == value && &*entry.cluster == cluster)
            .then_some(entry.found)
    }

    fn put(&mut self, keyring: u64, cluster: &str, value: &[u8; VALUE_LEN], found: Found) {
        if self.slots.is_empty() {
            self.slots.resize_with(SLOTS, || None);
        }
        if let Some(slot) = self.slots.get_mut(slot(value)) {
            // Reuse the cluster's allocation when the slot had the same one.
            let cluster = match slot.take() {
                Some(old) if &*old.cluster == cluster => old.cluster,
                _ => cluster.into(),
            };
            *slot = Some(Entry {
                keyring,
                value: *value,
                cluster,
                found,
            });
        }
    }
}

/// The slot of a value: characters 2..10 encode nonce bytes, which are
/// random for every cookie we seal, so they spread without hashing. A
/// client choosing values only picks which slot misses.
fn slot(value: &[u8; VALUE_LEN]) -> usize {
    let mut word = [0u8; 8];
    word.copy_from_slice(&value[2..10]);
    let mixed = u64::from_le_bytes(word).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> (64 - SLOT_BITS)) as usize
}

thread_local! {
    static OPENED: RefCell<Table> = RefCell::new(Table::default());
}

/// What an earlier opening of `value` for `cluster` under `keyring` found.
pub(super) fn recall(keyring: u64, cluster: &str, value: &[u8; VALUE_LEN]) -> Option<Found> {
    OPENED
        .try_with(|t| t.try_borrow().ok()?.get(keyring, cluster, value))
        .ok()
        .flatten()
}

/// Remembers what opening `value` found; only call it for a value that
/// authenticated.
pub(super) fn remember(keyring: u64, cluster: &str, value: &[u8; VALUE_LEN], found: Found) {
    let _ = OPENED.try_with(|t| {
        if let Ok(mut t) = t.try_borrow_mut() {
            t.put(keyring, cluster, value, found);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(seed: u8) -> [u8; VALUE_LEN] {
        let mut v = [b'A'; VALUE_LEN];
        for (i, b) in v.iter_mut().enumerate() {
            *b = b'A' + ((i as u8).wrapping_mul(7).wrapping_add(seed) % 26);
        }
        v
    }

    fn found() -> Found {
        ("10.0.0.1:80".parse().unwrap(), 1_000)
    }

    #[test]
    fn recalls_only_the_exact_value_cluster_and_keyring() {
        let mut t = Table::default();
        let v = value(1);
        assert_eq!(t.get(7, "dns+a.test:80", &v), None, "empty");
        t.put(7, "dns+a.test:80", &v, found());
        assert_eq!(t.get(7, "dns+a.test:80", &v), Some(found()));
        assert_eq!(t.get(8, "dns+a.test:80", &v), None, "another keyring");
        assert_eq!(t.get(7, "dns+b.test:80", &v), None, "another cluster");
        let mut other = v;
        other[VALUE_LEN - 1] ^= 1;
        assert_eq!(slot(&other), slot(&v), "same slot, other value");
        assert_eq!(t.get(7, "dns+a.test:80", &other), None, "another value");
    }

    #[test]
    fn a_new_value_takes_the_slot_of_an_old_one() {
        let mut t = Table::default();
        let v = value(1);
        let mut w = value(2);
        w[2..10].copy_from_slice(&v[2..10]);
        t.put(7, "dns+a.test:80", &v, found());
        t.put(7, "dns+a.test:80", &w, found());
        assert_eq!(t.get(7, "dns+a.test:80", &v), None);
        assert_eq!(t.get(7, "dns+a.test:80", &w), Some(found()));
        assert_eq!(t.slots.len(), SLOTS, "bounded");
    }

    // Threads are native only; the wasm VM has one.
    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn the_thread_table_round_trips() {
        let v = value(3);
        remember(42, "dns+c.test:80", &v, found());
        assert_eq!(recall(42, "dns+c.test:80", &v), Some(found()));
        let other_thread = std::thread::spawn(move || recall(42, "dns+c.test:80", &v));
        assert_eq!(other_thread.join().unwrap(), None, "per thread");
    }
}
