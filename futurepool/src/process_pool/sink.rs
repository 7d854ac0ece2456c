//! Where a call's answer goes: the typed task handle behind a type-erased [`Sink`], so the pool's
//! queues and threads never see `R` or `E`.

use std::cell::Cell;
use std::convert::Infallible;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::error::{Panic, Reason, TaskError, WorkerLoss};
use crate::stats::{ended_as, Ended, SharedCounters};
use crate::task::{release, CallbackGroup, RemoteProgress, Task};
use crate::wire::{Outcome, ProgressReport};

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
    /// Cancels the task (shutdown with `cancel_pending`, or `abort` reached it in the queue).
    fn cancel(self: Box<Self>);
    /// `Task::abort` flagged the task: it must not be sent again, and its worker is killed.
    fn abort_requested(&self) -> bool;
    /// Flags a running task aborted, for the pool's own `shutdown` with `abort_running` (the
    /// pool then kills its worker itself).
    fn flag_abort(&self);
    /// Resolves the task from the worker's answer.
    fn finish(self: Box<Self>, answer: Answer<'_>);
    /// Resolves the task with an error of the pool's (worker lost, time limit, broken, shut down).
    fn fail(self: Box<Self>, error: TaskError);
    /// For a chunk sent item by item (it has a time limit) whose worker died part-way: keeps
    /// the outcomes of the items it `answered`, fails the item after them (the one that was
    /// running) with `running`, and leaves the rest to a later `finish`/`fail` of this same sink
    /// (they go back to the queue, or fail). Only chunks are sent item by item.
    fn settle_prefix(&mut self, answered: &[Outcome<'_>], running: TaskError);
    /// Where a progress report of the running call goes, with the `(done, total)` to store
    /// there: a single call's task and the report as it is; a map chunk's task and how much of
    /// the chunk is done, in [`UNITS_PER_ITEM`] (the items before the reporting one, which
    /// finished, plus its share). `None` when it has nowhere to go: a report that names an item
    /// for a single call, or none for a chunk (no build sends either).
    fn progress(&self, report: ProgressReport) -> Option<(RemoteProgress, u64, u64)>;
    /// For a chunk answered item by item: what its progress becomes once its first `answered`
    /// items are answered, so the share a finished item reported does not outlive its answer.
    /// `None` if nothing of it ever reported (it has no progress to correct).
    fn items_answered(&self, _answered: usize) -> Option<(RemoteProgress, u64, u64)> {
        None
    }
}

/// How finely a chunk's progress counts an item: a map chunk's task stores its progress as
/// `(items done × UNITS_PER_ITEM, items × UNITS_PER_ITEM)`, so the map reads it in items,
/// fractions of the running one included (`map.rs`). The chunk's task is the map's own, never
/// a user's handle, so the units are free to choose.
pub(super) const UNITS_PER_ITEM: u64 = 1 << 20;

/// How the bytes a function returned become a task's outcome.
pub(super) trait Decode<R, E>: Send + 'static {
    fn decode(bytes: &[u8]) -> Result<R, TaskError<E>>;

    /// An answer other than a returned value: the task's error, except for the cluster's raw
    /// calls (`raw.rs`), which hand each case back as it was so the cluster encodes it as its
    /// own workers do.
    fn not_returned(outcome: &Outcome<'_>) -> Result<R, TaskError<E>> {
        Err(match outcome {
            Outcome::Returned(_) => {
                transfer("protocol error: a returned value taken for another answer".into())
            }
            Outcome::Panicked { message, location } => {
                TaskError::Panicked(Panic::new(message.clone(), location.clone()))
            }
            Outcome::BadArgument(why) => transfer(format!("in the worker, {why}")),
            Outcome::Unserializable(why) => transfer(format!("in the worker, {why}")),
            Outcome::UnknownFunction(name) => {
                transfer(format!("the worker has no registered function {name}"))
            }
        })
    }
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
///
/// Decoding runs the user's `Deserialize` on a pool thread (a reader, which serves every later
/// answer of its worker), so it runs under `catch_unwind`: a panicking `Deserialize` fails this
/// one task as `Panicked`, with the panic's own message and location, like a panic in the task
/// itself would.
pub(super) fn outcome_into<R, E, D: Decode<R, E>>(
    outcome: &Outcome<'_>,
) -> Result<R, TaskError<E>> {
    match outcome {
        Outcome::Returned(bytes) => crate::panic::catch(|| D::decode(bytes.0))
            .unwrap_or_else(|panic| Err(TaskError::Panicked(panic))),
        other => outcome_into_unguarded::<R, E, D>(other),
    }
}

/// Every item's outcome, each decoded as by [`outcome_into`]. One guard covers a run of items,
/// keeping the cost of `catch_unwind` off each tiny item; the items decoded before a panic are
/// kept outside the guarded closure (never dropped while unwinding), the panicking item fails
/// alone, and decoding resumes after it.
fn chunk_outcomes_into<R, E, D: Decode<R, E>>(
    outcomes: &[Outcome<'_>],
) -> Vec<Result<R, TaskError<E>>> {
    let mut decoded = Vec::with_capacity(outcomes.len());
    while decoded.len() < outcomes.len() {
        let from = decoded.len();
        let run = crate::panic::catch(|| {
            for outcome in &outcomes[from..] {
                decoded.push(outcome_into_unguarded::<R, E, D>(outcome));
            }
        });
        if let Err(panic) = run {
            decoded.push(Err(TaskError::Panicked(panic)));
        }
    }
    decoded
}

/// [`outcome_into`] without its guard: only for callers that catch panics themselves.
fn outcome_into_unguarded<R, E, D: Decode<R, E>>(outcome: &Outcome<'_>) -> Result<R, TaskError<E>> {
    match outcome {
        Outcome::Returned(bytes) => D::decode(bytes.0),
        other => D::not_returned(other),
    }
}

fn transfer<E>(why: String) -> TaskError<E> {
    TaskError::Transfer(Reason::new(why))
}

/// A single call's task.
///
/// Every method may run on a pool thread, so nothing user-written runs in it unguarded: decoding
/// is caught (see [`outcome_into`]), done-callbacks go to the pool's [`CallbackGroup`], and the
/// handle (maybe the task's last, so the value's `Drop`) is released under `catch_unwind`.
///
/// It waits in the pool's queue with every pending task, so it is kept to 40 bytes (malloc's
/// 48-byte class; issue 16): the handle without an `Option` around it, and a [`Counted`] of 16.
pub(super) struct TaskSink<R: Send + Sync + 'static, E: Send + Sync + 'static, D> {
    /// Taken only in `drop`.
    task: ManuallyDrop<Task<R, E>>,
    callbacks: Arc<CallbackGroup>,
    counted: Counted,
    decode: PhantomData<fn() -> D>,
}

impl<R: Send + Sync + 'static, E: Send + Sync + 'static, D> TaskSink<R, E, D> {
    pub(super) fn new(
        task: Task<R, E>,
        callbacks: Arc<CallbackGroup>,
        counters: Arc<SharedCounters>,
    ) -> Self {
        TaskSink {
            task: ManuallyDrop::new(task),
            callbacks,
            counted: Counted::new(counters, 1),
            decode: PhantomData,
        }
    }

    fn task(&self) -> &Task<R, E> {
        &self.task
    }
}

impl<R: Send + Sync + 'static, E: Send + Sync + 'static, D> TaskSink<R, E, D> {
    /// Sets the outcome here and queues the callbacks for the callback threads.
    pub(super) fn resolve(&self, outcome: Result<R, TaskError<E>>) {
        // Counted before the outcome is visible, so whoever it wakes sees it in the stats.
        if !self.task().is_done() {
            self.counted.ended(1, [ended_as(&outcome)]);
        }
        if let Some(deferred) = self.task().resolve_deferred(outcome) {
            self.callbacks.spawn(deferred);
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
        let started = self.task().set_running();
        if started {
            self.counted.started(1);
        }
        started
    }

    fn cancel(self: Box<Self>) {
        if self.task().abort_requested() && !self.task().is_done() {
            // Aborted while running (requeued after its worker died): a cancel cannot end a
            // running task, a resolution can, and the abort makes it publish CANCELLED.
            self.resolve(Err(TaskError::Cancelled));
            return;
        }
        if !self.task().is_done() {
            self.counted.ended(1, [Ended::Cancelled]);
        }
        if let Some(deferred) = self.task().cancel_deferred() {
            self.callbacks.spawn(deferred);
        }
    }

    fn abort_requested(&self) -> bool {
        self.task().abort_requested()
    }

    fn flag_abort(&self) {
        self.task().abort_quietly();
    }

    fn finish(self: Box<Self>, answer: Answer<'_>) {
        let outcome = match answer {
            Answer::One(outcome) => outcome_into::<R, E, D>(&outcome),
            Answer::Chunk(_) => Err(transfer(
                "protocol error: a chunk answer for a single call".into(),
            )),
        };
        self.resolve(outcome);
    }

    fn fail(self: Box<Self>, error: TaskError) {
        self.resolve(Err(error.widen()));
    }

    fn progress(&self, report: ProgressReport) -> Option<(RemoteProgress, u64, u64)> {
        if report.item.is_some() {
            return None;
        }
        let target = self.task().remote_progress(&self.callbacks)?;
        Some((target, report.done, report.total))
    }

    /// Never called (a single call is not answered item by item); if it were, the task would
    /// fail with the running item's error rather than take a pool thread down.
    fn settle_prefix(&mut self, _answered: &[Outcome<'_>], running: TaskError) {
        self.resolve(Err(running.widen()));
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
impl<R: Send + Sync + 'static, E: Send + Sync + 'static, D> Drop for TaskSink<R, E, D> {
    fn drop(&mut self) {
        if !self.task().is_done() {
            self.resolve(Err(dropped_unresolved()));
        }
        // Cancelled by its caller while queued: the pool never resolved it.
        self.counted.ended(1, [Ended::Cancelled]);
        // SAFETY: `drop` runs once, and nothing reads `self.task` after this.
        release(unsafe { ManuallyDrop::take(&mut self.task) });
    }
}

/// A sink's place in the pool's [`Stats`](crate::Stats): queued from its creation, running once
/// sent, ended exactly once (later calls to [`ended`](Counted::ended) do nothing).
///
/// The sink knows how many items it stands for (1, or a chunk's length) and passes it in, so this
/// is two words: the counters, and one `state` for "queued", "sent at" and "ended".
struct Counted {
    counters: Arc<SharedCounters>,
    /// [`QUEUED`], [`ENDED`], or when the sink was sent (a [`SharedCounters::mark`]).
    state: Cell<u64>,
}

/// [`Counted::state`] of a sink not sent yet (marks are never 0).
const QUEUED: u64 = 0;
/// [`Counted::state`] once it ended (a mark that would take 584 years to reach).
const ENDED: u64 = u64::MAX;

impl Counted {
    fn new(counters: Arc<SharedCounters>, items: usize) -> Self {
        counters.queued(items as u64);
        Counted {
            counters,
            state: Cell::new(QUEUED),
        }
    }

    fn started(&self, items: usize) {
        if self.state.get() == QUEUED {
            self.counters.started(items as u64);
            self.state.set(self.counters.mark().min(ENDED - 1));
        }
    }

    /// The `items` ended so (each item's way; an iterator shorter than the items counts the rest
    /// as the last one's way, or cancelled).
    fn ended(&self, items: usize, outcomes: impl IntoIterator<Item = Ended>) {
        let state = self.state.replace(ENDED);
        if state == ENDED {
            return;
        }
        let mut last = Ended::Cancelled;
        let mut counted = 0;
        for how in outcomes.into_iter().take(items) {
            self.counters.outcome(how);
            last = how;
            counted += 1;
        }
        for _ in counted..items {
            self.counters.outcome(last);
        }
        let ran = state != QUEUED;
        self.counters.ended(
            ran,
            items as u64,
            if ran {
                self.counters.since(state)
            } else {
                Duration::ZERO
            },
        );
    }
}

/// The value of one map chunk: each item's outcome, in input order.
pub(crate) type ChunkResults<R, E> = Vec<Result<R, TaskError<E>>>;

/// One chunk of a map: a task whose value holds each item's outcome.
///
/// The rule that keeps a map's results paired with its inputs: whatever happens
/// to a chunk — cancelled, its worker lost, a time limit, an undecodable answer — its task
/// *finishes* with exactly one outcome per item, in item order, each item with its own error
/// value. A chunk task is never left cancelled by the pool (only the map itself cancels one, as
/// it ends), so the flattened map always yields one result per input, in its own place.
pub(super) struct ChunkSink<R, E, D> {
    /// Always `Some` until the sink is dropped.
    task: Option<Task<ChunkResults<R, E>, Infallible>>,
    len: usize,
    /// Items that never left (their argument did not serialize, or its `Serialize` panicked),
    /// by position, with their error.
    holes: Vec<(usize, TaskError)>,
    /// Outcomes of the first sent items, already settled (a chunk whose worker died part-way
    /// through; see [`Sink::settle_prefix`]). The next answer continues after them.
    settled: Vec<Result<R, TaskError<E>>>,
    counted: Counted,
    /// Where the chunk task's progress entry is served from (it has no callback: the task is
    /// the map's own, but an entry needs a group to hand one to).
    callbacks: Arc<CallbackGroup>,
    /// An item reported progress: from then on each item's answer corrects the chunk's value.
    reported: Cell<bool>,
    decode: PhantomData<fn() -> D>,
}

impl<R, E, D> ChunkSink<R, E, D> {
    pub(super) fn new(
        task: Task<ChunkResults<R, E>, Infallible>,
        len: usize,
        holes: Vec<(usize, TaskError)>,
        counters: Arc<SharedCounters>,
        callbacks: Arc<CallbackGroup>,
    ) -> Self {
        ChunkSink {
            task: Some(task),
            len,
            holes,
            settled: Vec::new(),
            counted: Counted::new(counters, len),
            callbacks,
            reported: Cell::new(false),
            decode: PhantomData,
        }
    }

    /// The chunk's progress when the sent item at `item` (counted from the first item this
    /// entry sent) has done `done` of `total`: the items settled earlier (a requeued rest of
    /// the chunk starts its indices again at 0) and those before `item` count whole, `item`
    /// its share, at most one.
    fn progress_at(
        &self,
        item: usize,
        done: u64,
        total: u64,
    ) -> Option<(RemoteProgress, u64, u64)> {
        let target = self.task().remote_progress(&self.callbacks)?;
        let whole = (self.settled.len() + item).min(self.len) as u64;
        let share = match total {
            0 => 0,
            total => {
                let units = u128::from(done.min(total)) * u128::from(UNITS_PER_ITEM);
                (units / u128::from(total)) as u64
            }
        };
        let total = self.len as u64 * UNITS_PER_ITEM;
        Some((target, (whole * UNITS_PER_ITEM + share).min(total), total))
    }

    /// Resolves the chunk, counting each item's outcome first.
    fn resolve(&self, outcomes: ChunkResults<R, E>) {
        if !self.task().is_done() {
            self.counted.ended(self.len, outcomes.iter().map(ended_as));
        }
        self.task().resolve(Ok(outcomes));
    }

    fn task(&self) -> &Task<ChunkResults<R, E>, Infallible> {
        self.task
            .as_ref()
            .expect("the task is only taken when the sink is dropped")
    }

    /// One outcome per item: the holes' own errors at their positions, then for the items that
    /// were sent, those already settled followed by `sent`.
    fn merge(&mut self, sent: impl Iterator<Item = Result<R, TaskError<E>>>) -> ChunkResults<R, E> {
        let mut sent = std::mem::take(&mut self.settled).into_iter().chain(sent);
        let mut holes = self.holes.iter().peekable();
        (0..self.len)
            .map(|position| match holes.peek() {
                Some((at, error)) if *at == position => {
                    holes.next();
                    Err(error.clone().widen())
                }
                _ => sent.next().unwrap_or_else(|| {
                    Err(transfer(
                        "protocol error: the worker answered too few items".into(),
                    ))
                }),
            })
            .collect()
    }

    /// Finishes the chunk with every item still open failing with its own copy of `error`.
    fn fail_rest(&mut self, error: impl Fn() -> TaskError<E>) {
        let outcomes = self.merge(std::iter::repeat_with(|| Err(error())));
        self.resolve(outcomes);
    }
}

/// As for [`TaskSink`]: a chunk dropped unresolved fails every item, never hangs the map. The
/// handle is released under `catch_unwind`: it may be the last, dropping the items' values.
impl<R, E, D> Drop for ChunkSink<R, E, D> {
    fn drop(&mut self) {
        if !self.task().is_done() {
            self.fail_rest(dropped_unresolved);
        }
        // Cancelled by its map while queued: the pool never resolved it.
        self.counted.ended(self.len, [Ended::Cancelled]);
        if let Some(task) = self.task.take() {
            release(task);
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
        let started = self.task().set_running();
        if started {
            self.counted.started(self.len);
        }
        started
    }

    /// Not `Task::cancel`: a chunk task left cancelled would reach the map as one error for
    /// all its items. Each item is cancelled instead, in its place.
    fn cancel(mut self: Box<Self>) {
        self.fail_rest(|| TaskError::Cancelled);
    }

    fn abort_requested(&self) -> bool {
        self.task().abort_requested()
    }

    fn flag_abort(&self) {
        self.task().abort_quietly();
    }

    fn finish(mut self: Box<Self>, answer: Answer<'_>) {
        let outcomes = match answer {
            Answer::Chunk(outcomes) => {
                let decoded = chunk_outcomes_into::<R, E, D>(&outcomes);
                self.merge(decoded.into_iter())
            }
            Answer::One(_) => self.merge(std::iter::empty()),
        };
        self.resolve(outcomes);
    }

    fn fail(mut self: Box<Self>, error: TaskError) {
        self.fail_rest(|| error.clone().widen());
    }

    fn settle_prefix(&mut self, answered: &[Outcome<'_>], running: TaskError) {
        self.settled
            .extend(chunk_outcomes_into::<R, E, D>(answered));
        self.settled.push(Err(running.widen()));
    }

    fn progress(&self, report: ProgressReport) -> Option<(RemoteProgress, u64, u64)> {
        let item = usize::try_from(report.item?).ok()?;
        self.reported.set(true);
        self.progress_at(item, report.done, report.total)
    }

    fn items_answered(&self, answered: usize) -> Option<(RemoteProgress, u64, u64)> {
        if !self.reported.get() {
            return None;
        }
        self.progress_at(answered, 0, 0)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// A single call's sink waits in the queue with its task: 40 bytes, malloc's 48-byte class
    /// (issue 16; it was 72).
    #[test]
    fn a_task_sink_stays_at_40_bytes() {
        assert_eq!(std::mem::size_of::<Counted>(), 16);
        assert_eq!(std::mem::size_of::<TaskSink<u64, Infallible, Plain>>(), 40);
    }

    /// Stats through the packed `Counted`: a sink counted queued, then running, then ended once,
    /// with its busy time; a second end counts nothing.
    #[test]
    fn a_sink_counts_queued_running_and_ended_once() {
        let counters = Arc::new(SharedCounters::default());
        let counted = Counted::new(counters.clone(), 3);
        assert_eq!(
            (counters.snapshot(0).queued, counters.snapshot(0).running),
            (3, 0)
        );
        counted.started(3);
        counted.started(3);
        assert_eq!(
            (counters.snapshot(0).queued, counters.snapshot(0).running),
            (0, 3)
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
        counted.ended(3, [Ended::Completed, Ended::Failed]);
        counted.ended(3, [Ended::Completed]);
        let stats = counters.snapshot(0);
        assert_eq!((stats.running, stats.completed, stats.failed), (0, 1, 2));
        assert!(
            stats.busy >= std::time::Duration::from_millis(2),
            "{stats:?}"
        );
        let never_sent = Counted::new(counters.clone(), 1);
        never_sent.ended(1, [Ended::Cancelled]);
        never_sent.started(1);
        let stats = counters.snapshot(0);
        assert_eq!((stats.queued, stats.running, stats.cancelled), (0, 0, 1));
    }

    #[test]
    fn a_sink_dropped_unresolved_fails_its_task_instead_of_hanging_it() {
        let task = Task::<u8>::pending();
        drop(TaskSink::<u8, Infallible, Plain>::new(
            task.clone(),
            Arc::default(),
            Arc::default(),
        ));
        assert_eq!(
            task.try_result(),
            Some(Err(TaskError::WorkerLost(WorkerLoss::Disconnected)))
        );
    }

    #[test]
    fn dropping_the_sink_of_a_done_task_changes_nothing() {
        let cancelled = Task::<u8>::pending();
        assert!(cancelled.cancel());
        drop(TaskSink::<u8, Infallible, Plain>::new(
            cancelled.clone(),
            Arc::default(),
            Arc::default(),
        ));
        assert_eq!(cancelled.try_result(), Some(Err(TaskError::Cancelled)));

        let failed = Task::<u8>::pending();
        Box::new(TaskSink::<u8, Infallible, Plain>::new(
            failed.clone(),
            Arc::default(),
            Arc::default(),
        ))
        .fail(TaskError::ShutDown);
        assert_eq!(failed.try_result(), Some(Err(TaskError::ShutDown)));
    }

    /// A chunk's progress counts, in items, those before the reporting one whole and that one
    /// its share; a report of the wrong shape goes nowhere; an item's answer replaces its share
    /// (only once something reported); nothing reaches a finished chunk.
    #[test]
    fn a_chunk_counts_the_items_before_the_reporting_one_and_its_share() {
        let task = Task::<ChunkResults<u8, Infallible>>::pending();
        let mut sink = ChunkSink::<u8, Infallible, Plain>::new(
            task.clone(),
            4,
            Vec::new(),
            Arc::default(),
            Arc::default(),
        );
        let report = |item, done, total| ProgressReport { item, done, total };
        let value =
            |sent: Option<(RemoteProgress, u64, u64)>| sent.map(|(_, done, total)| (done, total));
        let unit = UNITS_PER_ITEM;
        assert_eq!(value(sink.items_answered(1)), None, "nothing reported yet");
        assert_eq!(
            value(sink.progress(report(None, 1, 2))),
            None,
            "a single call's report"
        );
        assert_eq!(
            value(sink.progress(report(Some(1), 5, 10))),
            Some((unit + unit / 2, 4 * unit))
        );
        assert_eq!(
            value(sink.progress(report(Some(2), 30, 10))),
            Some((3 * unit, 4 * unit)),
            "a share is one item at most"
        );
        assert_eq!(value(sink.items_answered(3)), Some((3 * unit, 4 * unit)));
        // The worker died running item 1: the rest is sent again, its indices from 0.
        sink.settle_prefix(
            &[Outcome::Returned(crate::wire::Bytes(&[7]))],
            TaskError::Cancelled,
        );
        assert_eq!(
            value(sink.progress(report(Some(0), 1, 4))),
            Some((2 * unit + unit / 4, 4 * unit))
        );
        Box::new(sink).finish(Answer::Chunk(vec![
            Outcome::Returned(crate::wire::Bytes(&[1])),
            Outcome::Returned(crate::wire::Bytes(&[2])),
        ]));
        assert_eq!(task.progress(), None, "no value outlives the chunk");
        assert_eq!(task.try_result().unwrap().unwrap().len(), 4);
    }

    #[test]
    fn a_chunk_dropped_unresolved_fails_every_item() {
        let task = Task::<ChunkResults<u8, Infallible>>::pending();
        drop(ChunkSink::<u8, Infallible, Plain>::new(
            task.clone(),
            3,
            Vec::new(),
            Arc::default(),
            Arc::default(),
        ));
        let items = task.try_result().unwrap().unwrap();
        assert_eq!(items.len(), 3);
        assert!(items
            .iter()
            .all(|item| *item == Err(TaskError::WorkerLost(WorkerLoss::Disconnected))));
    }
}
