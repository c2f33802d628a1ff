//! The process's counters. Every layer bumps them (the refresh loop, each xDS stream, a
//! reload), so they sit beside `shutdown` rather than in any one layer; `/metrics` renders
//! them (`admin::metrics`). Plain counts are atomics; counts by label sit in small `Mutex`
//! maps held only for one increment.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// Upper bounds (seconds) of the push-latency histogram buckets.
pub(crate) const LATENCY_BUCKETS: [f64; 8] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];

#[derive(Debug)]
pub struct Metrics {
    pub(crate) started: Instant,
    /// Resolutions by result kind (`ok`, `nxdomain`, `servfail`, ...).
    pub(crate) resolutions: Mutex<BTreeMap<&'static str, u64>>,
    /// Pushes by type (`CDS`, `EDS`).
    pub(crate) pushes: Mutex<BTreeMap<&'static str, u64>>,
    pub(crate) nacks: AtomicU64,
    pub(crate) snapshots: AtomicU64,
    /// Nanoseconds since `started` at which the current snapshot was published.
    pub(crate) published_at: AtomicU64,
    pub(crate) latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    pub(crate) latency_count: AtomicU64,
    pub(crate) latency_sum_nanos: AtomicU64,
    /// Under one lock, so whoever sees a count also sees the reload it counted.
    pub(crate) reloads: Mutex<Reloads>,
}

#[derive(Debug, Default)]
pub(crate) struct Reloads {
    pub(crate) ok: u64,
    pub(crate) error: u64,
    pub(crate) last: Option<LastReload>,
}

/// How the latest configuration reload went, for `/status.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastReload {
    pub at: SystemTime,
    /// Why the file was refused (the running configuration stayed); `None`: applied.
    pub error: Option<String>,
    /// Settings the file changed that only a restart applies (kept as they were).
    pub restart_required: Vec<String>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            started: Instant::now(),
            resolutions: Mutex::default(),
            pushes: Mutex::default(),
            nacks: AtomicU64::new(0),
            snapshots: AtomicU64::new(0),
            published_at: AtomicU64::new(0),
            latency_buckets: Default::default(),
            latency_count: AtomicU64::new(0),
            latency_sum_nanos: AtomicU64::new(0),
            reloads: Mutex::default(),
        }
    }
}

fn bump(map: &Mutex<BTreeMap<&'static str, u64>>, key: &'static str) {
    // A poisoned lock only means a panic elsewhere mid-increment; the counts stay usable.
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    *map.entry(key).or_default() += 1;
}

impl Metrics {
    pub fn resolution(&self, result: &'static str) {
        bump(&self.resolutions, result);
    }

    pub fn snapshot_published(&self) {
        self.snapshots.fetch_add(1, Ordering::Relaxed);
        self.published_at
            .store(self.nanos_since_start(), Ordering::Relaxed);
    }

    /// A push went out; its latency is counted from the latest snapshot publication when
    /// `after_publish` (the push was caused by it, not by a request).
    pub fn push(&self, kind: &'static str, after_publish: bool) {
        bump(&self.pushes, kind);
        if !after_publish {
            return;
        }
        let nanos = self
            .nanos_since_start()
            .saturating_sub(self.published_at.load(Ordering::Relaxed));
        let seconds = Duration::from_nanos(nanos).as_secs_f64();
        for (bucket, bound) in self.latency_buckets.iter().zip(LATENCY_BUCKETS) {
            if seconds <= bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    pub fn nack(&self) {
        self.nacks.fetch_add(1, Ordering::Relaxed);
    }

    pub fn config_reload(&self, outcome: LastReload) {
        let mut reloads = self.reloads.lock().unwrap_or_else(|e| e.into_inner());
        match outcome.error {
            None => reloads.ok += 1,
            Some(_) => reloads.error += 1,
        }
        reloads.last = Some(outcome);
    }

    pub fn last_reload(&self) -> Option<LastReload> {
        let reloads = self.reloads.lock().unwrap_or_else(|e| e.into_inner());
        reloads.last.clone()
    }

    pub(crate) fn nanos_since_start(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}
