//! Being polite to servers: `--rate` (requests per second per host) and `--limit-rate`
//! (bytes per second for the whole run).
//!
//! Both are the same mechanism, a token bucket kept as the time its next token is due ("virtual
//! scheduling"): taking `n` tokens moves that time on by `n / rate`, and the taker sleeps until
//! its share is due. The reservation is made under a lock and the sleep outside it, and the
//! sleep is cut short by Ctrl-C, so a slow bucket never blocks another host or an interrupt.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::interrupt::Interrupt;

/// Why a wait for a token ended without it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stopped {
    /// Ctrl-C.
    Interrupted,
    /// The token is due after the attempt's deadline: waiting for it would make the attempt
    /// outlive `--timeout`.
    Deadline,
}

/// `1 / per_second` as a duration, saturating at a day: `from_secs_f64` panics on a value
/// too large for a `Duration`, and the parser refuses slower rates anyway.
fn interval(per_second: f64) -> Duration {
    Duration::try_from_secs_f64(1.0 / per_second)
        .unwrap_or(Duration::from_secs(86_400))
        .min(Duration::from_secs(86_400))
}

/// One bucket, as GCRA keeps it: the theoretical arrival time of the next token.
#[derive(Debug)]
struct Bucket {
    due: Instant,
}

impl Bucket {
    /// Takes tokens worth `cost` of time; returns how long to wait before using them and how
    /// long after (for bytes already received). `tolerance` is the burst: how far ahead of its
    /// due time a taker may go. Idle time is not saved up.
    fn reserve(
        &mut self,
        now: Instant,
        cost: Duration,
        tolerance: Duration,
    ) -> (Duration, Duration) {
        let start = self.due.max(now);
        // A sum past what Instant holds (a rate of one per millennium) saturates at a year.
        self.due = start
            .checked_add(cost)
            .or_else(|| start.checked_add(Duration::from_secs(365 * 86_400)))
            .unwrap_or(start);
        let wait_until = |due: Instant| {
            due.checked_sub(tolerance)
                .map_or(Duration::ZERO, |t| t.saturating_duration_since(now))
        };
        (wait_until(start), wait_until(self.due))
    }
}

/// `--rate`: requests per second to each `host:port`, one at a time (a burst of one).
#[derive(Debug)]
pub(crate) struct HostRate {
    per_second: f64,
    hosts: Mutex<HashMap<String, Bucket>>,
}

impl HostRate {
    pub(crate) fn new(per_second: f64) -> HostRate {
        HostRate {
            per_second,
            hosts: Mutex::default(),
        }
    }

    /// Takes `host`'s request slot if it is due now; else says when it will be.
    pub(crate) fn try_acquire(&self, host: &str, now: Instant) -> Result<(), Instant> {
        let mut hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
        let bucket = hosts.entry(host.to_owned()).or_insert(Bucket { due: now });
        if bucket.due > now {
            return Err(bucket.due);
        }
        bucket.reserve(now, interval(self.per_second), Duration::ZERO);
        Ok(())
    }

    /// When `host`'s next request slot is due (now or earlier if it is free).
    pub(crate) fn due(&self, host: &str) -> Option<Instant> {
        let hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
        hosts.get(host).map(|bucket| bucket.due)
    }

    /// Waits for `host`'s next request slot. A slot due after `deadline` is not taken (a
    /// later attempt may have it) and the wait ends at once: a redirect's request must not
    /// hold its attempt beyond `--timeout`.
    pub(crate) fn acquire(
        &self,
        host: &str,
        interrupt: &Interrupt,
        deadline: Option<Instant>,
    ) -> Result<(), Stopped> {
        let now = Instant::now();
        let wait = {
            let mut hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
            let bucket = hosts.entry(host.to_owned()).or_insert(Bucket { due: now });
            if deadline.is_some_and(|deadline| bucket.due > deadline) {
                return Err(Stopped::Deadline);
            }
            bucket
                .reserve(now, interval(self.per_second), Duration::ZERO)
                .0
        };
        match wait.is_zero() || !interrupt.sleep(wait) {
            true => Ok(()),
            false => Err(Stopped::Interrupted),
        }
    }
}

/// `--limit-rate`: bytes per second, all downloads together.
#[derive(Debug)]
pub(crate) struct Bandwidth {
    per_second: f64,
    bucket: Mutex<Bucket>,
}

impl Bandwidth {
    pub(crate) fn new(bytes_per_second: u64) -> Bandwidth {
        Bandwidth {
            per_second: bytes_per_second.max(1) as f64,
            bucket: Mutex::new(Bucket {
                due: Instant::now(),
            }),
        }
    }

    /// Accounts for `bytes` just received, sleeping as long as the limit requires, but never
    /// past `deadline` (the attempt's `--timeout`): a tiny limit cannot hold a worker longer
    /// than the attempt may last.
    pub(crate) fn consume(
        &self,
        bytes: usize,
        interrupt: &Interrupt,
        deadline: Instant,
    ) -> Result<(), Stopped> {
        // A tenth of a second's worth may pass without waiting, so small reads do not each
        // sleep a few microseconds.
        let cost = Duration::try_from_secs_f64(bytes as f64 / self.per_second)
            .unwrap_or(Duration::from_secs(86_400));
        let wait = self
            .bucket
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .reserve(Instant::now(), cost, Duration::from_millis(100))
            .1;
        if wait.is_zero() {
            return Ok(());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if interrupt.sleep(wait.min(left)) {
            return Err(Stopped::Interrupted);
        }
        match wait > left {
            true => Err(Stopped::Deadline),
            false => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn a_bucket_of_one_spaces_requests_evenly() {
        let start = Instant::now();
        let mut bucket = Bucket { due: start };
        let waits: Vec<Duration> = (0..4)
            .map(|_| bucket.reserve(start, MS(500), Duration::ZERO).0)
            .collect();
        assert_eq!(
            waits,
            [0, 500, 1000, 1500].map(MS),
            "2 per second: one now, then every half second"
        );
    }

    #[test]
    fn idle_time_is_not_saved_up() {
        let start = Instant::now();
        let mut bucket = Bucket { due: start };
        let later = start + Duration::from_secs(100);
        assert_eq!(
            bucket.reserve(later, MS(1000), Duration::ZERO).0,
            Duration::ZERO
        );
        assert_eq!(bucket.reserve(later, MS(1000), Duration::ZERO).0, MS(1000));
    }

    #[test]
    fn bandwidth_waits_in_proportion_to_bytes_received() {
        let start = Instant::now();
        let mut bucket = Bucket { due: start };
        // 1000 B/s, 100 ms of tolerance: 100 bytes pass, 400 more cost 0.4 s.
        assert_eq!(bucket.reserve(start, MS(100), MS(100)).1, Duration::ZERO);
        assert_eq!(bucket.reserve(start, MS(400), MS(100)).1, MS(400));
    }
}
