//! Where a call's answer goes: the typed task handle behind a type-erased [`Sink`], so the pool's
//! queues and threads never see `R` or `E`.

use std::convert::Infallible;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;

use crate::error::{Panic, Reason, TaskError};
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
        "the worker's result does not decode as `{}`: {error}",
        std::any::type_name::<T>()
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
