//! Membership from the xDS thread to the worker threads. The xDS thread
//! publishes each update once; a worker checks one atomic per request and
//! takes the lock only when the generation moved, to rebuild its own copy
//! (`WorkerMembership` keeps per-worker state and is not shared across threads).

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use dnslb_filter::members::{Member, WorkerMembership};

/// One accepted EDS update: every cluster with its members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub version: String,
    pub clusters: Vec<(String, Vec<Member>)>,
}

/// The latest snapshot of one filter configuration's xDS client.
#[derive(Debug)]
pub struct Feed {
    /// Tells the worker caches of different configurations apart.
    id: u64,
    /// Bumped after each publish; 0 until the first.
    generation: AtomicU64,
    latest: Mutex<Option<Arc<Snapshot>>>,
}

/// Worker caches kept per thread: one per live configuration, usually one.
const CACHED_FEEDS: usize = 4;

struct Cached {
    feed: u64,
    generation: u64,
    membership: WorkerMembership,
}

thread_local! {
    static CACHE: RefCell<Vec<Cached>> = const { RefCell::new(Vec::new()) };
}

impl Default for Feed {
    fn default() -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            generation: AtomicU64::new(0),
            latest: Mutex::new(None),
        }
    }
}

impl Feed {
    pub fn publish(&self, snapshot: Snapshot) {
        *self.latest.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(snapshot));
        self.generation.fetch_add(1, Ordering::Release);
    }

    fn latest(&self) -> Option<Arc<Snapshot>> {
        self.latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Runs `f` on this thread's copy of the membership, brought up to date
    /// first if an update was published since.
    pub fn with_membership<T>(&self, f: impl FnOnce(&mut WorkerMembership) -> T) -> T {
        let generation = self.generation.load(Ordering::Acquire);
        CACHE.with(|cache| {
            let mut cache = cache.borrow_mut();
            let index = match cache.iter().position(|c| c.feed == self.id) {
                Some(index) => index,
                None => {
                    if cache.len() >= CACHED_FEEDS {
                        // The oldest belongs to a configuration long replaced.
                        cache.remove(0);
                    }
                    cache.push(Cached {
                        feed: self.id,
                        generation: 0,
                        membership: WorkerMembership::default(),
                    });
                    cache.len() - 1
                }
            };
            let Some(entry) = cache.get_mut(index) else {
                return f(&mut WorkerMembership::default());
            };
            if entry.generation != generation {
                if let Some(snapshot) = self.latest() {
                    entry
                        .membership
                        .replace(snapshot.version.clone(), snapshot.clusters.clone());
                }
                entry.generation = generation;
            }
            f(&mut entry.membership)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::member;

    #[test]
    fn workers_see_each_published_update() {
        let feed = Arc::new(Feed::default());
        assert!(!feed.with_membership(|m| m.received()));
        feed.publish(Snapshot {
            version: "v1".into(),
            clusters: vec![("dns+a.test:80".into(), vec![member("127.0.0.2:80")])],
        });
        assert_eq!(feed.with_membership(|m| m.version().to_string()), "v1");
        // Another thread builds its own copy from the same snapshot.
        let other = Arc::clone(&feed);
        let seen = std::thread::spawn(move || other.with_membership(|m| m.len()))
            .join()
            .unwrap();
        assert_eq!(seen, 1);
        feed.publish(Snapshot {
            version: "v2".into(),
            clusters: Vec::new(),
        });
        assert_eq!(feed.with_membership(|m| m.len()), 0);
        // A second configuration has its own membership on the same thread.
        let fresh = Feed::default();
        assert!(!fresh.with_membership(|m| m.received()));
        assert_eq!(feed.with_membership(|m| m.version().to_string()), "v2");
    }
}
