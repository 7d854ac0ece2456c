//! Where a call's answer goes: the typed task handle behind a type-erased [`Sink`], so the pool's
//! queues and threads never see `R` or `E`.

use std::convert::Infallible;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;

use crate::error::{Panic, Reason, TaskError, WorkerLoss};
use crate::task::Task;
use crate::wire::Outcome;

/// How a worker answered one queued entry.
pub(super) enum Answer<'a> {
    One(Outcome<'a>),
    Chunk(Vec<Outcome<'a>>),
}

/// The pool's side of one submitted entry (a task, or one chunk of a map).
pub(super) trait Sink: Send {
    /// Marks the task running as it is handed to a worker; false if it was cancelled meanwhile
    /// (then it is dropped, never sent).
    fn start(&self) -> bool;
    /// Cancels the task (shutdown with `cancel_pending`).
    fn cancel(self: Box<Self>);
    /// Resolves the task from the worker's answer.
    fn finish(self: Box<Self>, answer: Answer<'_>);
    /// Resolves the task with an error of the pool's (worker lost, time limit, broken, shut down).
    fn fail(self: Box<Self>, error: TaskError);
}

/// How the bytes a function returned become a task's outcome.
pub(super) trait Decode<R, E>: Send + 'static {
    fn decode(bytes: &[u8]) -> Result<R, TaskError<E>>;
}

/// A `fn(A) -> R`: the bytes are an `R`.
pub(super) struct Plain;
/// A `fn(A) -> Result<R, E>`: the bytes are a whole `Result`, and `Err` is the task's own error.
pub(super) struct Fallible;

impl<R: DeserializeOwned, E> Decode<R, E> for Plain {
    fn decode(bytes: &[u8]) -> Result<R, TaskError<E>> {
        postcard::from_bytes(bytes).map_err(undecodable::<R, E>)
    }
}

impl<R: DeserializeOwned, E: DeserializeOwned> Decode<R, E> for Fallible {
    fn decode(bytes: &[u8]) -> Result<R, TaskError<E>> {
        match postcard::from_bytes::<Result<R, E>>(bytes) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(TaskError::Failed(error)),
            Err(e) => Err(undecodable::<Result<R, E>, E>(e)),
        }
    }
}

fn undecodable<T, E>(error: postcard::Error) -> TaskError<E> {
    TaskError::Transfer(Reason::new(format!(
        "the worker's result does not decode as `{}`: {error}{}",
        std::any::type_name::<T>(),
        crate::wire::postcard_hint(&error)
    )))
}

/// Turns one answer into the task's outcome.
pub(super) fn outcome_into<R, E, D: Decode<R, E>>(
    outcome: &Outcome<'_>,
) -> Result<R, TaskError<E>> {
    match outcome {
        Outcome::Returned(bytes) => D::decode(bytes.0),
        Outcome::Panicked { message, location } => Err(TaskError::Panicked(Panic::new(
            message.clone(),
            location.clone(),
        ))),
        Outcome::BadArgument(why) => Err(transfer(format!("in the worker, {why}"))),
        Outcome::Unserializable(why) => Err(transfer(format!("in the worker, {why}"))),
        Outcome::UnknownFunction(name) => Err(transfer(format!(
            "the worker has no registered function {name}"
        ))),
    }
}

fn transfer<E>(why: String) -> TaskError<E> {
    TaskError::Transfer(Reason::new(why))
}

/// A single call's task.
pub(super) struct TaskSink<R, E, D> {
    task: Task<R, E>,
    decode: PhantomData<fn() -> D>,
}

impl<R, E, D> TaskSink<R, E, D> {
    pub(super) fn new(task: Task<R, E>) -> Self {
        TaskSink {
            task,
            decode: PhantomData,
        }
    }
}

impl<R, E, D> Sink for TaskSink<R, E, D>
where
    R: Send + Sync + 'static,
    E: Send + Sync + 'static,
    D: Decode<R, E>,
{
    fn start(&self) -> bool {
        self.task.set_running()
    }

    fn cancel(self: Box<Self>) {
        self.task.cancel();
    }

    fn finish(self: Box<Self>, answer: Answer<'_>) {
        let outcome = match answer {
            Answer::One(outcome) => outcome_into::<R, E, D>(&outcome),
            Answer::Chunk(_) => Err(transfer(
                "protocol error: a chunk answer for a single call".into(),
            )),
        };
        self.task.resolve(outcome);
    }

    fn fail(self: Box<Self>, error: TaskError) {
        self.task.resolve(Err(error.widen()));
    }
}

/// What a task gets if the pool ever drops its sink without an outcome: a bug in the pool, but
/// one that must surface as an error rather than as a task that never resolves.
fn dropped_unresolved<E>() -> TaskError<E> {
    TaskError::WorkerLost(WorkerLoss::Disconnected)
}

/// The last line of defence for "no task vanishes": a sink dropped without `finish`, `fail` or
/// `cancel` fails its task instead of leaving it pending forever. After any of those (or for a
/// task cancelled by its caller) the task is done and this does nothing.
impl<R, E, D> Drop for TaskSink<R, E, D> {
    fn drop(&mut self) {
        if !self.task.is_done() {
            self.task.resolve(Err(dropped_unresolved()));
        }
    }
}

/// The value of one map chunk: each item's outcome, in input order.
pub(crate) type ChunkResults<R, E> = Vec<Result<R, TaskError<E>>>;

/// One chunk of a map: a task whose value holds each item's outcome. A failure of the whole
/// chunk (its worker lost, time limit) becomes that error at every item, so the map can still
/// yield exactly one result per input.
pub(super) struct ChunkSink<R, E, D> {
    task: Task<ChunkResults<R, E>, Infallible>,
    len: usize,
    /// Items that never left (their argument did not serialize), by position, with why.
    holes: Vec<(usize, Reason)>,
    decode: PhantomData<fn() -> D>,
}

impl<R, E, D> ChunkSink<R, E, D> {
    pub(super) fn new(
        task: Task<ChunkResults<R, E>, Infallible>,
        len: usize,
        holes: Vec<(usize, Reason)>,
    ) -> Self {
        ChunkSink {
            task,
            len,
            holes,
            decode: PhantomData,
        }
    }

    /// One outcome per item: the holes' own errors at their positions, `sent` for the rest.
    fn merge(&self, mut sent: impl Iterator<Item = Result<R, TaskError<E>>>) -> ChunkResults<R, E> {
        let mut holes = self.holes.iter().peekable();
        (0..self.len)
            .map(|position| match holes.peek() {
                Some((at, reason)) if *at == position => {
                    holes.next();
                    Err(TaskError::Transfer(reason.clone()))
                }
                _ => sent.next().unwrap_or_else(|| {
                    Err(transfer(
                        "protocol error: the worker answered too few items".into(),
                    ))
                }),
            })
            .collect()
    }
}

/// As for [`TaskSink`]: a chunk dropped unresolved fails every item, never hangs the map.
impl<R, E, D> Drop for ChunkSink<R, E, D> {
    fn drop(&mut self) {
        if !self.task.is_done() {
            let outcomes = self.merge(std::iter::repeat_with(|| Err(dropped_unresolved())));
            self.task.resolve(Ok(outcomes));
        }
    }
}

impl<R, E, D> Sink for ChunkSink<R, E, D>
where
    R: Send + Sync + 'static,
    E: Send + Sync + 'static,
    D: Decode<R, E>,
{
    fn start(&self) -> bool {
        self.task.set_running()
    }

    fn cancel(self: Box<Self>) {
        self.task.cancel();
    }

    fn finish(self: Box<Self>, answer: Answer<'_>) {
        let outcomes = match answer {
            Answer::Chunk(outcomes) => self.merge(outcomes.iter().map(outcome_into::<R, E, D>)),
            Answer::One(_) => self.merge(std::iter::empty()),
        };
        self.task.resolve(Ok(outcomes));
    }

    fn fail(self: Box<Self>, error: TaskError) {
        let outcomes = self.merge(std::iter::repeat_with(|| Err(error.clone().widen())));
        self.task.resolve(Ok(outcomes));
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_sink_dropped_unresolved_fails_its_task_instead_of_hanging_it() {
        let task = Task::<u8>::pending();
        drop(TaskSink::<u8, Infallible, Plain>::new(task.clone()));
        assert_eq!(
            task.try_result(),
            Some(Err(TaskError::WorkerLost(WorkerLoss::Disconnected)))
        );
    }

    #[test]
    fn dropping_the_sink_of_a_done_task_changes_nothing() {
        let cancelled = Task::<u8>::pending();
        assert!(cancelled.cancel());
        drop(TaskSink::<u8, Infallible, Plain>::new(cancelled.clone()));
        assert_eq!(cancelled.try_result(), Some(Err(TaskError::Cancelled)));

        let failed = Task::<u8>::pending();
        Box::new(TaskSink::<u8, Infallible, Plain>::new(failed.clone())).fail(TaskError::ShutDown);
        assert_eq!(failed.try_result(), Some(Err(TaskError::ShutDown)));
    }

    #[test]
    fn a_chunk_dropped_unresolved_fails_every_item() {
        let task = Task::<ChunkResults<u8, Infallible>>::pending();
        drop(ChunkSink::<u8, Infallible, Plain>::new(
            task.clone(),
            3,
            Vec::new(),
        ));
        let items = task.try_result().unwrap().unwrap();
        assert_eq!(items.len(), 3);
        assert!(items
            .iter()
            .all(|item| *item == Err(TaskError::WorkerLost(WorkerLoss::Disconnected))));
    }
}
