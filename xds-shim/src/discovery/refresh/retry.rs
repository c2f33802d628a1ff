//! Retry backoff for names whose question went unanswered.

use std::time::Duration;

use crate::discovery::names::Names;

/// First retry of an unanswered name; doubles up to the interval.
const RETRY_FIRST: Duration = Duration::from_millis(250);

/// Retries of unanswered names between full rounds: first after [`RETRY_FIRST`], then
/// doubling, never later than the next full round anyway.
#[derive(Debug, Default)]
pub(super) struct Retry {
    pub(super) names: Names,
    pub(super) delay: Duration,
}

impl Retry {
    pub(super) fn update(&mut self, unanswered: Names, cap: Duration) {
        self.delay = if unanswered.is_empty() {
            Duration::ZERO
        } else if self.delay.is_zero() {
            RETRY_FIRST.min(cap)
        } else {
            (self.delay * 2).min(cap)
        };
        self.names = unanswered;
    }

    /// After a regular round while retries wait: it settled the names it covered (`asked`);
    /// those still `unanswered` join the others, which keep their retry time.
    pub(super) fn settle(&mut self, asked: &Names, unanswered: Names, cap: Duration) {
        self.names.hosts.retain(|h| !asked.hosts.contains(h));
        self.names.srv.retain(|n| !asked.srv.contains(n));
        self.names.extend(unanswered);
        if self.names.is_empty() {
            self.update(Names::default(), cap);
        }
    }

    /// Stops retrying names no longer resolved (after a reload).
    pub(super) fn keep_only(&mut self, resolved: &Names) {
        self.names.hosts.retain(|h| resolved.hosts.contains(h));
        self.names.srv.retain(|n| resolved.srv.contains(n));
    }
}
