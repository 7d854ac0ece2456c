//! The cluster's way into a local process pool: a call by registered name with its argument's
//! bytes, answered with the result's bytes, or with how the worker refused or failed it, or with
//! the pool's own [`TaskError`] (time limit, memory limit, worker lost, abort).
//!
//! The process pool knows nothing of the cluster: this is a typed submit whose value stays
//! bytes. The answer goes through the same sink as any task's (`sink.rs`), so settling,
//! counting, aborts and the "no task vanishes" backstop are the ones every call has; only
//! decoding differs ([`Raw`]): nothing is decoded, and an answer that is not a value comes back
//! as the [`InvokeError`] the worker process saw, so the cluster encodes it exactly as a worker
//! running the function on its own thread would.

use std::convert::Infallible;
use std::time::Duration;

use crate::error::{Panic, TaskError};
use crate::registry::{self, InvokeError};
use crate::task::Task;
use crate::wire::Outcome;

use super::sink::{Decode, TaskSink};
use super::state::Work;
use super::ProcessPool;

/// What a raw call ends with when its worker process answered it: the result's bytes, or why the
/// worker could not run the function or send its result (a panic included).
pub(crate) type RawAnswer = Result<Vec<u8>, InvokeError>;

/// The limits of one raw call, each absolute (the pool's own settings do not apply to it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RawLimits {
    /// The worker is killed past this, and the call fails with [`TaskError::TimeLimit`].
    pub(crate) time_limit: Option<Duration>,
    /// The call's `current_token()` reads cancelled past this.
    pub(crate) soft_time_limit: Option<Duration>,
    /// The worker is killed if its resident memory passes this while it runs the call, which
    /// fails with [`TaskError::MemoryLimit`].
    pub(crate) memory_limit: Option<u64>,
}

/// Keeps the worker's answer as it was: bytes stay bytes, refusals stay refusals.
struct Raw;

impl Decode<RawAnswer, Infallible> for Raw {
    fn decode(bytes: &[u8]) -> Result<RawAnswer, TaskError> {
        Ok(Ok(bytes.to_vec()))
    }

    fn not_returned(outcome: &Outcome<'_>) -> Result<RawAnswer, TaskError> {
        Ok(Err(match outcome {
            Outcome::Returned(bytes) => return Ok(Ok(bytes.0.to_vec())),
            Outcome::Panicked { message, location } => {
                InvokeError::Panicked(Panic::new(message.clone(), location.clone()))
            }
            Outcome::BadArgument(why) => InvokeError::BadArgument(why.clone()),
            Outcome::Unserializable(why) => InvokeError::Unserializable(why.clone()),
            Outcome::UnknownFunction(name) => InvokeError::UnknownFunction(name.clone()),
        }))
    }
}

impl ProcessPool {
    /// Runs the function registered as `function` on `arg` (its argument's postcard bytes) in a
    /// worker process, under `limits`. [`Task::abort`] on the returned handle kills the worker
    /// running it (the call ends [`TaskError::Cancelled`]), as for any task of the pool.
    ///
    /// A name this binary does not have is answered at once with
    /// [`InvokeError::UnknownFunction`], without a worker.
    ///
    /// `on_progress` is set as the task's [`Task::on_progress`] before the call is queued, so
    /// it hears every report of the call that the coalescing lets through, the first included.
    pub(crate) fn submit_raw(
        &self,
        function: &str,
        arg: Vec<u8>,
        limits: RawLimits,
        on_progress: Option<Box<dyn FnMut(u64, u64) + Send>>,
    ) -> Task<RawAnswer> {
        let task = Task::pending_with_tail(super::state::ProcessTask);
        if let Some(on_progress) = on_progress {
            task.on_progress(on_progress);
        }
        let Some(index) = registry::index_of_name(function) else {
            task.resolve(Ok(Err(InvokeError::UnknownFunction(function.to_string()))));
            return task;
        };
        let sink = Box::new(TaskSink::<RawAnswer, Infallible, Raw>::new(
            task.clone(),
            self.shared.callbacks.clone(),
            self.counters.clone(),
        ));
        let work = Work::One {
            function: index,
            arg,
        };
        self.enqueue_limited(
            work,
            sink,
            limits.time_limit,
            limits.soft_time_limit,
            limits.memory_limit,
        );
        task
    }
}
