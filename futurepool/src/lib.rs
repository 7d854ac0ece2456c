//! futurepool: thread and process pools with Python's `concurrent.futures` semantics, for Rust.
//!
//! (The newcomer's guide arrives with the demo issue.)

#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

mod error;
mod executor;
mod loom;
mod panic;
mod registry;
mod task;

pub use error::{Panic, Reason, TaskError, WorkerLoss};
pub use executor::{Executor, Payload, Shutdown};
pub use task::{Task, TaskFuture};

/// What `register!` expands to; not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::registry::{describe, Function, Registration, REGISTRATIONS};
    pub use linkme;
}
