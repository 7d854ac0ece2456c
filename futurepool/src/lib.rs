//! futurepool: thread and process pools with Python's `concurrent.futures` semantics, for Rust.
//!
//! (The newcomer's guide arrives with the demo issue.)

#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(feature = "cluster")]
pub mod cluster;
mod error;
mod executor;
mod loom;
mod map;
mod panic;
#[cfg(target_os = "linux")]
mod process_pool;
mod registry;
mod task;
mod thread_pool;
mod wait;
mod wire;

pub use error::{Panic, Reason, TaskError, WorkerLoss};
pub use executor::{Executor, Payload, Shutdown};
pub use map::{Map, MapUnordered};
pub use task::{Task, TaskFuture};
pub use thread_pool::{ThreadPool, ThreadPoolBuilder};
pub use wait::{as_completed, wait, AsCompleted, AsCompletedTimeout, ReturnWhen};

#[cfg(target_os = "linux")]
pub use process_pool::{
    init, ProcessMap, ProcessMapUnordered, ProcessPool, ProcessPoolBuilder, ProcessPoolError,
};

/// Call this first in `main`. Process pools exist only on Linux; elsewhere this does nothing, so
/// portable programs can call it unconditionally.
///
/// # Examples
///
/// ```
/// futurepool::init();
/// ```
#[cfg(not(target_os = "linux"))]
pub fn init() {}

/// What `register!` expands to; not public API.
#[doc(hidden)]
pub mod __private {
    #[cfg(target_os = "linux")]
    pub use crate::process_pool::TEST_ENTRIES;
    pub use crate::registry::{describe, Function, Registration, REGISTRATIONS};
    pub use linkme;

    /// The fuzz target's entry point: decodes `data` as frames and messages, discarding them.
    /// Must return, never panic, whatever `data` holds.
    pub fn fuzz_decode(data: &[u8]) {
        crate::wire::decode_everything(data, 1 << 20);
    }
}
