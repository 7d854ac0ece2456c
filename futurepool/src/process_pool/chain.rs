//! Chaining on a process pool: [`ProcessPool::submit_after`] runs a registered function on a
//! task's value once that task has succeeded, wherever the task ran.
//!
//! As with [`Task::then`] on a thread pool, no thread waits for the first task: the dependent
//! task and its sink exist from the start (so the dependent can be cancelled or aborted, and
//! counts as queued in [`stats`](ProcessPool::stats)), and a done-callback on the first task —
//! in whichever thread completes it — serializes the value and queues the call.

use std::sync::Arc;

use crate::error::TaskError;
use crate::executor::Payload;
use crate::registry;
use crate::task::Task;

use super::sink::{Plain, Sink, TaskSink};
use super::state::{self, Limits};
use super::{encode_call, enqueue_on, ProcessPool};

impl ProcessPool {
    /// Runs `f(value)` in a worker process once `upstream` has finished with a value, and
    /// returns its task. `f` is a registered function (see [`register!`](crate::register));
    /// `upstream` may run anywhere: this pool, a [`ThreadPool`](crate::ThreadPool), another
    /// executor. No thread blocks in the meantime.
    ///
    /// How outcomes propagate (`f` never runs unless `upstream` succeeded):
    ///
    /// - `upstream` fails (its own error, a panic, a lost worker, a time limit, ...): the new task
    ///   fails with the same error;
    /// - `upstream` is cancelled: the new task is cancelled;
    /// - the new task is cancelled or aborted before `upstream` finishes: `f` never runs;
    ///   `upstream` is unaffected. Once queued here it is like any task of this pool
    ///   ([`Task::abort`] kills its worker while it runs);
    /// - this pool is shut down by the time `upstream` finishes: the new task ends with
    ///   [`TaskError::ShutDown`];
    /// - `f` is not a registered function: the new task fails at once with
    ///   [`TaskError::Transfer`] naming the fix.
    ///
    /// The pool's time limits apply to the new task from the moment a worker starts it. Until
    /// `upstream` finishes, the new task counts as queued in [`stats`](ProcessPool::stats).
    /// The value is cloned for `f`; `upstream` keeps its own.
    ///
    /// On a thread pool the same is [`Task::then`], which takes any closure.
    ///
    /// # Examples
    ///
    /// ```
    /// use futurepool::{ProcessPool, TaskError, ThreadPool};
    ///
    /// fn word_count(text: String) -> usize { text.split_whitespace().count() }
    /// fn double(n: usize) -> usize { n * 2 }
    /// futurepool::register!(word_count, double);
    ///
    /// fn main() {
    ///     futurepool::init();
    ///     let threads = ThreadPool::new(1);
    ///     let processes = ProcessPool::new(1).unwrap();
    ///     let page = threads.submit(|| String::from("three short words"));
    ///     let words = processes.submit_after(&page, word_count);
    ///     let doubled = processes.submit_after(&words, double);
    ///     assert_eq!(doubled.result(), Ok(6));
    ///
    ///     let failed = threads.submit_fallible(|| Err::<String, _>("no page"));
    ///     let counted = processes.submit_after(&failed, word_count);
    ///     assert_eq!(counted.result(), Err(TaskError::Failed("no page")));
    /// }
    /// ```
    pub fn submit_after<F, A, R, E>(&self, upstream: &Task<A, E>, f: F) -> Task<R, E>
    where
        F: Fn(A) -> R + 'static,
        A: Payload + Clone,
        R: Payload,
        E: Clone + Send + Sync + 'static,
    {
        let function = match registry::index_of_item(f) {
            Ok(function) => function,
            Err(reason) => return Task::resolved(Err(TaskError::Transfer(reason))),
        };
        let dependent = Task::pending_with_tail(state::ProcessTask);
        let sink = Box::new(TaskSink::<R, E, Plain>::new(
            dependent.clone(),
            self.shared.callbacks.clone(),
            self.counters.clone(),
        ));
        let shared = Arc::clone(&self.shared);
        let config = &shared.config;
        let limits = Limits::new(
            config.time_limit,
            config.soft_time_limit,
            config.memory_limit,
        );
        upstream.add_done_callback(move |upstream| match upstream.try_result() {
            Some(Ok(value)) => match encode_call(function, &value) {
                Ok(work) => enqueue_on(&shared, work, sink, limits),
                Err(error) => sink.fail(error),
            },
            _ if upstream.is_cancelled() => sink.cancel(),
            Some(Err(error)) => sink.resolve(Err(error)),
            None => unreachable!("a done-callback sees its task done"),
        });
        dependent
    }
}
