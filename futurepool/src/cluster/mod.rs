//! Many machines, one pool: run registered functions on workers anywhere, through Redis Streams.
//!
//! Needs the `cluster` cargo feature. The caller's side is [`ClusterPool`], an
//! [`Executor`](crate::Executor) like the thread and process pools: same task handles, same
//! `wait`, `as_completed` and `map`. A worker is your own binary running [`serve`] (or started
//! with `FUTUREPOOL_CLUSTER_WORKER=redis://host:port/` and calling `futurepool::init()`), each with a local
//! pool of threads. [`status`] (and `futurepool cluster status URL`) shows the queue, the tasks in
//! flight, the workers and the dead letters.
//!
//! Nothing here is a protocol of our own: the queue is a Redis stream, the pool a consumer group,
//! the in-flight set the group's pending entries list, dead-worker recovery `XPENDING IDLE` +
//! `XCLAIM` with the delivery count as the retry budget. The design note below (the
//! repository's `futurepool/src/cluster/README.md`) gives the key layout, the message flow and the
//! guarantees, stated exactly.
//!
//! Layout:
//! - `client.rs`: [`ClusterPool`] and its submitter and listener threads;
//! - `worker.rs`: [`serve`]: fetcher, executors, completer, heartbeat and reaper;
//! - `backend.rs`: the broker interface both sides use (a PostgreSQL backend would implement it);
//! - `redis/`: the Redis Streams implementation, its Lua scripts and answer parsing;
//! - `keys.rs`, `outcome.rs`: key names and the outcome encoding;
//! - `options.rs`: [`SubmitOptions`] and [`RetryPolicy`], retries of a task's own failure that
//!   wait on the broker's schedule; `rate_limit.rs`: [`RateLimit`], a token bucket per function;
//! - `retry.rs`: the retry rule every broker call follows — transient errors are logged and
//!   retried with backoff within a bound, permanent ones stop the loop with the error, and a
//!   refused batch is sent item by item so only the refused task fails;
//! - `memory.rs`: [`MemoryBroker`], the same backend trait in memory, for tests without Redis;
//! - `status.rs`: [`status`]; `signals.rs`, `backoff.rs`: clean stops and reconnection.
//!
//! ---
//!
#![doc = include_str!("README.md")]

mod backend;
mod backoff;
mod client;
mod decode;
mod keys;
mod memory;
mod options;
mod outcome;
mod progress;
mod rate_limit;
mod redis;
mod retry;
mod signals;
mod status;
mod worker;

pub use client::{ClusterPool, ClusterPoolBuilder};
pub use memory::{MemoryBroker, MemoryWorker};
pub use options::{Priority, RetryPolicy, SubmitOptions};
pub use rate_limit::RateLimit;
pub use status::{pools, status, DeadLetter, Status, TaskProgress, WorkerStatus, MAX_PROGRESS};
pub use worker::{serve, ServeOptions};

pub(crate) use worker::serve_if_requested;

use crate::error::Reason;
use backend::BrokerError;

/// The pool name used when none is given.
pub const DEFAULT_POOL: &str = "default";

/// Why a cluster pool, worker or status request could not start, or why a worker stopped.
///
/// Tasks never fail with this: once a task is accepted, broker outages only delay it (clients and
/// workers reconnect with backoff), and a task the broker refuses fails on its own with
/// [`TaskError::Transfer`](crate::TaskError::Transfer).
///
/// # Examples
///
/// ```
/// use futurepool::cluster::{ClusterError, ClusterPool};
/// match ClusterPool::connect("not a url") {
///     Err(ClusterError::InvalidUrl(why)) => println!("{why}"),
///     other => panic!("{other:?}"),
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The URL does not name a Redis server.
    #[error("invalid broker URL: {0}")]
    InvalidUrl(Reason),
    /// The broker cannot be reached (or is loading its data) right now.
    #[error("the broker is unavailable: {0}")]
    Unavailable(Reason),
    /// The broker answered something futurepool does not understand (is it Redis ≥ 6.2?).
    #[error("unexpected answer from the broker: {0}")]
    Protocol(Reason),
    /// The broker refuses this client: no password or a wrong one (NOAUTH, WRONGPASS), or no
    /// permission (NOPERM). Permanent: fix the URL or the broker's ACL.
    #[error("the broker refuses this client: {0}")]
    Refused(Reason),
    /// The broker rejected a command with an error that retrying cannot fix, e.g. the pool's
    /// queue key holds another type of value (WRONGTYPE).
    #[error("the broker rejected a command: {0}")]
    Rejected(Reason),
    /// A pool setting is out of range (the message names the setting and the accepted range).
    #[error("invalid setting: {0}")]
    InvalidSetting(Reason),
    /// `status` was asked about a pool no client or worker ever used on this broker.
    #[error("{0}")]
    NoSuchPool(Reason),
    /// The broker stayed unreachable for longer than the worker's patience
    /// ([`ServeOptions::patience`]).
    #[error("gave up on the broker: {0}")]
    GaveUp(Reason),
}

impl ClusterError {
    fn invalid_url(why: String) -> Self {
        ClusterError::InvalidUrl(Reason::new(why))
    }
}

impl From<BrokerError> for ClusterError {
    fn from(error: BrokerError) -> Self {
        match error {
            BrokerError::Unavailable(why) => ClusterError::Unavailable(Reason::new(why)),
            BrokerError::Protocol(why) => ClusterError::Protocol(Reason::new(why)),
            BrokerError::Refused(why) => ClusterError::Refused(Reason::new(why)),
            BrokerError::Rejected(why) => ClusterError::Rejected(Reason::new(why)),
        }
    }
}

impl From<retry::Stop> for ClusterError {
    fn from(stop: retry::Stop) -> Self {
        match stop {
            retry::Stop::Fatal(error) => error.into(),
            retry::Stop::GaveUp(why) => ClusterError::GaveUp(Reason::new(why)),
        }
    }
}
