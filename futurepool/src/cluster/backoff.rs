//! Waiting between attempts to reach a broker that is down or restarting.

use std::time::Duration;

const FIRST: Duration = Duration::from_millis(25);
const LONGEST: Duration = Duration::from_secs(1);

/// Exponential backoff from 25 ms to 1 s; reset after a success.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
    failures: u32,
}

impl Backoff {
    pub(crate) fn new() -> Self {
        Backoff {
            next: FIRST,
            failures: 0,
        }
    }

    /// Counts a failed attempt; returns how many failed in a row so far and how long to wait
    /// before the next one.
    pub(crate) fn next(&mut self) -> (u32, Duration) {
        let delay = self.next;
        self.next = self.next.saturating_mul(2).min(LONGEST);
        self.failures = self.failures.saturating_add(1);
        (self.failures, delay)
    }

    pub(crate) fn reset(&mut self) {
        *self = Backoff::new();
    }
}
