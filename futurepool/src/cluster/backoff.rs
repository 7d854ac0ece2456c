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

    /// Sleeps before the next attempt; returns how many attempts failed in a row so far.
    pub(crate) fn wait(&mut self) -> u32 {
        std::thread::sleep(self.next);
        self.next = (self.next * 2).min(LONGEST);
        self.failures += 1;
        self.failures
    }

    pub(crate) fn reset(&mut self) {
        *self = Backoff::new();
    }

    /// True on the first failure of a run: the moment to tell the user once, not every retry.
    pub(crate) fn first_failure(&self) -> bool {
        self.failures == 0
    }
}
