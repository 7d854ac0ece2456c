//! futurepool: thread and process pools with Python's `concurrent.futures` semantics, for Rust.
//!
//! (The newcomer's guide arrives with the demo issue.)

#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

mod error;
mod executor;
mod loom;
mod map;
mod panic;
mod task;
mod thread_pool;
mod wait;

pub use error::{Panic, Reason, TaskError, WorkerLoss};
pub use executor::{Executor, Payload, Shutdown};
pub use map::{Map, MapUnordered};
pub use task::{Task, TaskFuture};
pub use thread_pool::{ThreadPool, ThreadPoolBuilder};
pub use wait::{as_completed, wait, AsCompleted, AsCompletedTimeout, ReturnWhen};
