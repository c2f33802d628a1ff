//! When each name is next resolved: on its own interval, or when its TTL is up.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::time::Instant;

use crate::discovery::names::Names;

/// A name in the schedule: (is SRV, name).
type Key = (bool, String);

/// When each name is next due: every name on its own interval (the smallest of the
/// upstreams that use it), plus a little jitter each time.
#[derive(Debug)]
pub struct Schedule {
    /// (is SRV, name) → (next due, interval).
    due: BTreeMap<Key, (Instant, Duration)>,
    /// The same deadlines ordered by (deadline, name), so a wake-up finds what is due
    /// without scanning every name (10,000 of them) as mini-redis does for expiries.
    by_deadline: BTreeSet<(Instant, Key)>,
}

impl Schedule {
    pub fn new(intervals: BTreeMap<Key, Duration>, now: Instant) -> Self {
        let due = intervals
            .into_iter()
            .map(|(name, every)| (name, (now + jittered(every), every)))
            .collect();
        Schedule::indexed(due)
    }

    fn indexed(due: BTreeMap<Key, (Instant, Duration)>) -> Self {
        let by_deadline = due
            .iter()
            .map(|(name, (at, _))| (*at, name.clone()))
            .collect();
        Schedule { due, by_deadline }
    }

    /// Follows a reload: names gone are dropped, new ones are due at `now` (a new upstream
    /// gets members at once), and a name whose interval changed is due no later than one
    /// new interval from `now`; the others keep their time.
    pub fn reconcile(&mut self, intervals: BTreeMap<Key, Duration>, now: Instant) {
        let old = std::mem::take(&mut self.due);
        let due = intervals
            .into_iter()
            .map(|(name, every)| {
                let at = match old.get(&name) {
                    Some((at, before)) if *before == every => *at,
                    Some((at, _)) => (*at).min(now + jittered(every)),
                    None => now,
                };
                (name, (at, every))
            })
            .collect();
        *self = Schedule::indexed(due);
    }

    /// Overrides when `name` is next due (TTL-aware mode); unknown names are ignored.
    pub fn set_next(&mut self, name: Key, at: Instant) {
        if let Some((due, _)) = self.due.get_mut(&name) {
            self.by_deadline.remove(&(*due, name.clone()));
            *due = at;
            self.by_deadline.insert((at, name));
        }
    }

    /// TTL-aware mode: each of `names` answered this round (not in `unanswered`) is next
    /// due when the TTL its answer carried is up, but no sooner than `floor`.
    pub fn follow_ttls(
        &mut self,
        ttls: &BTreeMap<Key, Duration>,
        names: &Names,
        unanswered: &Names,
        floor: Duration,
        now: Instant,
    ) {
        let hosts = names
            .hosts
            .iter()
            .filter(|h| !unanswered.hosts.contains(*h))
            .map(|h| (false, h.clone()));
        let srv = names
            .srv
            .iter()
            .filter(|n| !unanswered.srv.contains(*n))
            .map(|n| (true, n.clone()));
        for key in hosts.chain(srv) {
            if let Some(ttl) = ttls.get(&key) {
                self.set_next(key, now + (*ttl).max(floor));
            }
        }
    }

    pub fn next(&self) -> Option<Instant> {
        self.by_deadline.first().map(|(at, _)| *at)
    }

    /// The names due by `now`, each rescheduled one interval after it. A slow round
    /// delays the next instead of bunching up, since this counts from when it is called.
    pub fn take_due(&mut self, now: Instant) -> Names {
        let mut taken = Vec::new();
        while let Some(first) = self.by_deadline.first() {
            if first.0 > now {
                break;
            }
            taken.extend(self.by_deadline.pop_first());
        }
        let mut names = Names::default();
        for (_, name) in taken {
            let Some((due, every)) = self.due.get_mut(&name) else {
                continue;
            };
            *due = now + jittered(*every);
            self.by_deadline.insert((*due, name.clone()));
            let (srv, name) = name;
            let set = if srv {
                &mut names.srv
            } else {
                &mut names.hosts
            };
            set.insert(name);
        }
        names
    }
}

/// `interval` plus up to a tenth of it, so many shims (or many restarts) do not query in
/// lockstep. The randomness comes from the std hasher's per-process random keys.
fn jittered(interval: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0);
    let fraction = (hasher.finish() % 1_000) as u32;
    interval + interval / 10 * fraction / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_adds_at_most_a_tenth() {
        let interval = Duration::from_secs(5);
        for _ in 0..50 {
            let d = jittered(interval);
            assert!(d >= interval && d <= interval + interval / 10, "{d:?}");
        }
    }

    #[test]
    fn schedule_takes_each_name_on_its_own_interval() {
        let start = Instant::now();
        let intervals = BTreeMap::from([
            ((false, "fast.test".to_string()), Duration::from_secs(1)),
            (
                (true, "_s._tcp.slow.test".to_string()),
                Duration::from_secs(10),
            ),
        ]);
        let mut schedule = Schedule::new(intervals, start);
        assert!(schedule.take_due(start).is_empty());
        let first = schedule.next().unwrap();
        assert!(
            first >= start + Duration::from_secs(1)
                && first <= start + Duration::from_millis(1_100)
        );
        let due = schedule.take_due(start + Duration::from_millis(1_100));
        assert_eq!(due.hosts.iter().collect::<Vec<_>>(), ["fast.test"]);
        assert!(due.srv.is_empty());
        let due = schedule.take_due(start + Duration::from_secs(11));
        assert_eq!(due.srv.iter().collect::<Vec<_>>(), ["_s._tcp.slow.test"]);
        assert_eq!(due.hosts.len(), 1);

        // TTL-aware: a name follows what it was told.
        let later = start + Duration::from_secs(300);
        schedule.set_next((false, "fast.test".to_string()), later);
        assert!(schedule
            .take_due(start + Duration::from_secs(30))
            .hosts
            .is_empty());
        assert_eq!(schedule.take_due(later).hosts.len(), 1);
    }

    #[test]
    fn the_next_deadline_follows_every_change() {
        let start = Instant::now();
        let name = |n: &str| (false, n.to_string());
        let secs = Duration::from_secs;
        let intervals = BTreeMap::from([(name("a.test"), secs(10)), (name("b.test"), secs(20))]);
        let mut schedule = Schedule::new(intervals, start);
        let a_at = schedule.due[&name("a.test")].0;
        assert_eq!(schedule.next(), Some(a_at));
        schedule.set_next(name("a.test"), start + secs(60));
        assert_eq!(schedule.next(), Some(schedule.due[&name("b.test")].0));
        let due = schedule.take_due(start + secs(25));
        assert_eq!(due.hosts.iter().collect::<Vec<_>>(), ["b.test"]);
        let next: Vec<Instant> = schedule.due.values().map(|(at, _)| *at).collect();
        assert_eq!(schedule.next(), next.into_iter().min());
        assert_eq!(schedule.by_deadline.len(), schedule.due.len());
    }

    #[test]
    fn a_reload_adds_drops_and_retimes_names() {
        let start = Instant::now();
        let name = |n: &str| (false, n.to_string());
        let secs = Duration::from_secs;
        let intervals = BTreeMap::from([
            (name("kept.test"), secs(10)),
            (name("faster.test"), secs(60)),
            (name("gone.test"), secs(10)),
        ]);
        let mut schedule = Schedule::new(intervals, start);
        let kept_at = schedule.due[&name("kept.test")].0;
        let later = start + secs(5);
        schedule.reconcile(
            BTreeMap::from([
                (name("kept.test"), secs(10)),
                (name("faster.test"), secs(1)),
                (name("new.test"), secs(10)),
            ]),
            later,
        );
        assert_eq!(schedule.due[&name("kept.test")].0, kept_at);
        assert!(schedule.due[&name("faster.test")].0 <= later + Duration::from_millis(1_100));
        assert!(!schedule.due.contains_key(&name("gone.test")));
        let due = schedule.take_due(later);
        assert_eq!(due.hosts.iter().collect::<Vec<_>>(), ["new.test"]);
    }
}
