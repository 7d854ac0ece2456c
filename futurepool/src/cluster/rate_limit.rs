//! Cluster-wide rate limits per registered function: a token bucket on the broker.
//!
//! The limit is pool-wide: [`ClusterPoolBuilder::rate_limit`](super::ClusterPoolBuilder::rate_limit)
//! stores it in the hash `PREFIX:limits` (function → `RATE BURST`, tokens per second and bucket
//! size). A worker learns the limits with each `PROMOTE` (at most every 50 ms). When a fetch
//! delivers tasks of a limited function, one `THROTTLE` script call takes a token for each, in
//! order, atomically with every other worker: a task that gets one runs now; one that does not
//! *reserves* the next token (the bucket goes negative) and goes to the broker's schedule, due
//! exactly when that token accrues, marked `paid` so it does not pay twice. No worker waits or
//! polls for a token: a throttled task is back on the schedule, and the fetch blocks no longer
//! than its due time.

use std::time::Duration;

/// At most `count` runs per `per` of one registered function, across every worker of the pool,
/// with bursts of up to `burst` runs (default: `count`, at least 1) after a quiet period.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use futurepool::cluster::RateLimit;
/// let limit = RateLimit::per_second(10).burst(1);
/// assert_eq!(RateLimit::new(600, Duration::from_secs(60)).per_second_rate(), 10.0);
/// # drop(limit);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[must_use]
pub struct RateLimit {
    per_second: f64,
    burst: u32,
}

impl RateLimit {
    /// `count` runs per `per`. A zero `count` or `per` is taken as 1 run per `per` (or per
    /// millisecond): a limit always lets tasks through eventually.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let limit = futurepool::cluster::RateLimit::new(5, Duration::from_secs(1));
    /// assert_eq!(limit.per_second_rate(), 5.0);
    /// ```
    pub fn new(count: u32, per: Duration) -> Self {
        let count = count.max(1);
        let per = per.max(Duration::from_millis(1));
        RateLimit {
            per_second: f64::from(count) / per.as_secs_f64(),
            burst: count,
        }
    }

    /// `count` runs per second.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(futurepool::cluster::RateLimit::per_second(20).per_second_rate(), 20.0);
    /// ```
    pub fn per_second(count: u32) -> Self {
        RateLimit::new(count, Duration::from_secs(1))
    }

    /// The bucket size: how many runs may start at once after a quiet period (at least 1).
    ///
    /// # Examples
    ///
    /// ```
    /// let limit = futurepool::cluster::RateLimit::per_second(20).burst(5);
    /// # drop(limit);
    /// ```
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = burst.max(1);
        self
    }

    /// The rate, in runs per second.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(futurepool::cluster::RateLimit::per_second(3).per_second_rate(), 3.0);
    /// ```
    pub fn per_second_rate(&self) -> f64 {
        self.per_second
    }

    /// (runs per second, burst).
    pub(crate) fn parts(&self) -> (f64, u32) {
        (self.per_second, self.burst)
    }

    /// The value stored in `PREFIX:limits`.
    pub(crate) fn wire(&self) -> String {
        format!("{} {}", self.per_second, self.burst)
    }
}
