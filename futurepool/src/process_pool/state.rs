//! The pool's shared state: the queue, the workers, and the decisions every thread makes under
//! one lock (who takes work, when to start a worker, breaking and shutting down).

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use crate::error::{Reason, TaskError, WorkerLoss};
use crate::task::CallbackGroup;
use crate::wire::Outcome;

use super::process::signal_group;
use super::sink::Sink;

/// Aim to keep about this much work queued at each worker, so the pipe round trip overlaps with
/// work for tiny tasks while long tasks are not hoarded by one worker.
const PIPELINE_TARGET: Duration = Duration::from_millis(2);
/// Never more than this many calls queued at one worker.
pub(super) const MAX_PIPELINE: usize = 64;

/// The pool's settings, fixed at build time.
pub(super) struct Config {
    pub(super) max_workers: usize,
    pub(super) program: PathBuf,
    pub(super) args: Vec<OsString>,
    pub(super) initializer: Option<Initializer>,
    pub(super) max_tasks_per_child: Option<u64>,
    pub(super) time_limit: Option<Duration>,
    /// Every call's soft time limit (the worker's token is set then), unless overridden.
    pub(super) soft_time_limit: Option<Duration>,
    /// A worker whose resident memory passes this while running a call is killed (each call's
    /// default: a call may carry its own, `Pending::memory_limit`).
    pub(super) memory_limit: Option<u64>,
    /// A worker whose resident memory is above this after a call is retired and replaced.
    pub(super) max_memory_per_child: Option<u64>,
    pub(super) max_frame: usize,
    pub(super) start_timeout: Duration,
    pub(super) terminate_grace: Duration,
    /// A panic to inject into one of the pool's own threads, once (tests of the backstops).
    #[cfg(test)]
    pub(super) fault: Option<Fault>,
    #[cfg(test)]
    pub(super) fault_fired: std::sync::atomic::AtomicBool,
}

/// Where `Config::fault` strikes.
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fault {
    Writer,
    Reader,
    Supervisor,
    /// Not a panic: the reader watches its worker as if the kernel had no pidfds.
    NoPidfd,
}

/// Panics, once per pool, if the test configured `fault` here.
#[cfg(test)]
pub(super) fn inject(config: &Config, fault: Fault) {
    if config.fault == Some(fault) && !config.fault_fired.swap(true, Ordering::SeqCst) {
        panic!("injected fault: {fault:?}");
    }
}

/// A registered function run once in each worker before its first task.
pub(super) struct Initializer {
    pub(super) function: u32,
    pub(super) arg: Vec<u8>,
    /// Whether the initializer's outcome counts as success; `Err` explains the failure.
    pub(super) judge: fn(&Outcome<'_>) -> Result<(), String>,
}

/// What to run: one call, or one function over a chunk of arguments.
pub(super) enum Work {
    One {
        function: u32,
        arg: Vec<u8>,
    },
    /// The arguments' bytes back to back; `ends[i]` is where argument `i` ends.
    Chunk {
        function: u32,
        args: Vec<u8>,
        /// A boxed slice, not a `Vec`: 8 bytes less in every queued entry (issue 16).
        ends: Box<[usize]>,
    },
}

impl Work {
    /// Bytes of payload, to refuse at submit what could never be framed.
    pub(super) fn payload_len(&self) -> usize {
        match self {
            Work::One { arg, .. } => arg.len(),
            Work::Chunk { args, ends, .. } => args.len() + ends.len() * 10,
        }
    }
}

/// A call's time limits: the hard one (its worker is killed) and the soft one (when the worker is
/// told to set the call's token; a chunk's: each item's).
///
/// Packed: two `Option<Duration>`s and an `Option<u64>` take 48 bytes, these 24, and every
/// pending task carries one (issue 16). A time limit is kept to the nanosecond up to 584 years;
/// a longer one could never fire and is kept as none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Limits {
    /// [`NO_LIMIT`] when there is none.
    hard_nanos: u64,
    soft_nanos: u64,
    /// Resident bytes the worker may use while it runs the call (the pool's `memory_limit`
    /// unless the call has its own: the cluster's per-submit limit).
    memory: u64,
}

/// An absent limit.
const NO_LIMIT: u64 = u64::MAX;

impl Limits {
    pub(super) fn new(hard: Option<Duration>, soft: Option<Duration>, memory: Option<u64>) -> Self {
        let nanos = |limit: Option<Duration>| {
            limit.map_or(NO_LIMIT, |d| {
                u64::try_from(d.as_nanos()).unwrap_or(NO_LIMIT)
            })
        };
        Limits {
            hard_nanos: nanos(hard),
            soft_nanos: nanos(soft),
            memory: memory.unwrap_or(NO_LIMIT),
        }
    }

    /// The hard time limit.
    pub(super) fn hard(&self) -> Option<Duration> {
        (self.hard_nanos != NO_LIMIT).then(|| Duration::from_nanos(self.hard_nanos))
    }

    /// The soft time limit.
    pub(super) fn soft(&self) -> Option<Duration> {
        (self.soft_nanos != NO_LIMIT).then(|| Duration::from_nanos(self.soft_nanos))
    }

    /// The memory limit.
    pub(super) fn memory(&self) -> Option<u64> {
        (self.memory != NO_LIMIT).then_some(self.memory)
    }

    /// Either time limit is set: the call is timed.
    pub(super) fn any(&self) -> bool {
        self.hard_nanos != NO_LIMIT || self.soft_nanos != NO_LIMIT
    }
}

/// A submitted entry waiting for a worker: 96 bytes in the queue per pending task.
pub(super) struct Pending {
    pub(super) work: Work,
    pub(super) sink: Box<dyn Sink>,
    pub(super) limits: Limits,
    /// Already marked running: it was sent to a worker that died before starting it.
    pub(super) started: bool,
}

/// An entry sent to a worker and not yet answered. It keeps its work so that, if the worker dies
/// before starting it, it can go back to the queue.
pub(super) struct InFlight {
    pub(super) work: Work,
    pub(super) sink: Box<dyn Sink>,
    pub(super) limits: Limits,
    /// Where its frame starts in the worker's calls stream (bytes, the handshake included). If
    /// the worker dies having read less than this, it never received the call (wire/README.md,
    /// "What is charged to whom").
    pub(super) offset: u64,
    /// A chunk sent item by item (see [`InFlight::by_item`]): the frames of the items answered
    /// so far, kept until the last one arrives or the worker dies.
    pub(super) answered: Vec<Vec<u8>>,
}

impl InFlight {
    /// A chunk under a time limit is sent item by item (`RunChunkEach`), so the limit times each
    /// item and a worker killed part-way has told which items it finished (`items.rs`).
    pub(super) fn by_item(&self) -> bool {
        matches!(self.work, Work::Chunk { .. }) && self.limits.any()
    }

    /// Whether the supervisor must watch this call while it runs (a clock, or its memory).
    pub(super) fn watched(&self) -> bool {
        self.limits.any() || self.limits.memory().is_some()
    }
}

/// Where a worker is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Started; the handshake and initializer have not answered yet.
    Starting { since: Instant },
    /// Serving calls.
    Ready,
    /// It exited (or is being killed for good); its in-flight calls are being settled.
    Exited,
}

/// Why the pool killed a worker, which decides what its running call reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum KillCause {
    TimeLimit(Duration),
    StartTimeout,
    /// `terminate_workers` / `kill_workers`.
    Stopped,
    /// It broke the protocol (an unreadable or oversized answer); the call it owed fails with
    /// this reason.
    Misbehaved(Reason),
    /// Its answer pipe reached end-of-file while it lived (a task closed or replaced the
    /// descriptor): it can never answer, so the call it was running fails as lost.
    AnswersClosed,
    /// A thread of the pool serving it failed (a bug); the call it was running fails as lost.
    Internal(Reason),
    /// It used `used` bytes of resident memory, over the running call's `limit` (the pool's, or
    /// the call's own), while running it.
    MemoryLimit {
        limit: u64,
        used: u64,
    },
    /// `Task::abort` reached the call it was running: that task alone ends cancelled (never
    /// retried); the calls behind it are requeued as for any death.
    Aborted,
}

/// The `tracing` event of a worker killed for `cause` (once per worker: `Slot::signal` sends
/// the first kill only).
#[cfg(feature = "tracing")]
fn trace_kill(pid: u32, cause: &KillCause) {
    use crate::trace::trace_event;
    use tracing::Level;
    match cause {
        KillCause::TimeLimit(limit) => trace_event!(
            Level::WARN,
            pid,
            limit_ms = limit.as_millis() as u64,
            "worker killed: time limit"
        ),
        KillCause::MemoryLimit { limit, used } => trace_event!(
            Level::WARN,
            pid,
            limit_bytes = *limit,
            used_bytes = *used,
            "worker killed: memory limit"
        ),
        KillCause::Aborted => trace_event!(Level::INFO, pid, "worker killed: task aborted"),
        KillCause::StartTimeout => trace_event!(Level::WARN, pid, "worker killed: start timeout"),
        KillCause::Stopped => trace_event!(Level::DEBUG, pid, "worker killed: pool stopped"),
        KillCause::Misbehaved(reason) => trace_event!(
            Level::WARN,
            pid,
            reason = %reason,
            "worker killed: protocol error"
        ),
        KillCause::AnswersClosed => {
            trace_event!(Level::WARN, pid, "worker killed: its answer pipe closed")
        }
        KillCause::Internal(reason) => trace_event!(
            Level::ERROR,
            pid,
            reason = %reason,
            "worker killed: internal error"
        ),
    }
}

/// One worker process, as every pool thread sees it.
pub(super) struct Slot {
    pub(super) id: u64,
    pub(super) pid: u32,
    pub(super) phase: Phase,
    pub(super) in_flight: VecDeque<InFlight>,
    /// Entries taken by the writer and being encoded, not yet in `in_flight`.
    pub(super) taking: usize,
    /// Calls sent so far (for `max_tasks_per_child`).
    pub(super) sent: u64,
    /// When the call at the front of `in_flight` (probably) started: when it was sent to an idle
    /// worker, or when the answer before it arrived. Never earlier than the truth, so a time limit
    /// never fires early.
    pub(super) front_started: Instant,
    pub(super) kill: Option<KillCause>,
    /// Answer frames read from it since `Ready`: the call it runs is number `answers + 1` in
    /// its own count too (`worker.rs`, `ANSWERS_WRITTEN`), which the soft-limit notice names.
    pub(super) answers: u64,
    /// The highest call number already sent a soft-limit notice.
    pub(super) soft_noticed: u64,
    /// Its memory was above `max_memory_per_child` after a call: it is sent nothing more, and
    /// retires once it has answered what it holds.
    pub(super) recycle: bool,
    /// It accepted the handshake (so it reached `init()`); its initializer may still run.
    pub(super) accepted: bool,
    /// `terminate_workers` sent SIGTERM: at this instant the supervisor sends SIGKILL.
    pub(super) escalate_at: Option<Instant>,
    /// The reader is reaping the process: its pid may be reused, never signal it again.
    pub(super) reaping: bool,
    pub(super) writer_wake: Arc<Condvar>,
    pub(super) writer_idle: bool,
}

impl Slot {
    fn idle(&self) -> bool {
        self.phase == Phase::Ready
            && self.in_flight.is_empty()
            && self.taking == 0
            && self.kill.is_none()
            && !self.recycle
    }

    /// Records why the pool ends this worker (the first cause wins) and sends `signal` to its
    /// whole process group, unless the process may already be reaped.
    pub(super) fn signal(&mut self, signal: i32, cause: KillCause) {
        if self.reaping || self.pid == 0 || self.kill.is_some() {
            return;
        }
        #[cfg(feature = "tracing")]
        trace_kill(self.pid, &cause);
        self.kill = Some(cause);
        // The pid (and so the group id) cannot have been reused: `reaping` is set under the
        // same lock before the process is waited for.
        signal_group(self.pid, signal);
    }

    /// Tells the worker that call number `call` (the one it runs) passed its soft time limit:
    /// its `current_token()` reads cancelled from now on. To the process only (`sigqueue`, the
    /// call's number as the value), never to a reaped pid.
    pub(super) fn notice_soft_limit(&mut self, call: u64) {
        self.soft_noticed = call;
        if self.reaping || self.pid == 0 {
            return;
        }
        let value = libc::sigval {
            sival_ptr: call as usize as *mut libc::c_void,
        };
        // SAFETY: sigqueue takes plain integers and a by-value union; the pid cannot have been
        // reused (`reaping` is set under this lock before the process is waited for).
        unsafe {
            libc::sigqueue(
                self.pid as libc::pid_t,
                super::worker::soft_limit_signal(),
                value,
            )
        };
    }

    /// Kills this worker if the call it is running was aborted (`Task::abort`).
    pub(super) fn kill_if_front_aborted(&mut self) {
        if self
            .in_flight
            .front()
            .is_some_and(|front| front.sink.abort_requested())
        {
            self.signal(libc::SIGKILL, KillCause::Aborted);
        }
    }

    /// `terminate_workers`: SIGTERM, and SIGCONT so a stopped worker can act on it; SIGKILL
    /// follows after `grace` (the supervisor's job; `None`: never).
    pub(super) fn terminate(&mut self, grace: Option<Instant>) {
        if self.reaping || self.pid == 0 || self.kill.is_some() {
            return;
        }
        self.kill = Some(KillCause::Stopped);
        signal_group(self.pid, libc::SIGTERM);
        signal_group(self.pid, libc::SIGCONT);
        self.escalate_at = grace;
    }

    /// The end of `terminate`'s grace: SIGKILL to the group, whatever the cause recorded.
    pub(super) fn escalate(&mut self) {
        self.escalate_at = None;
        if !self.reaping {
            signal_group(self.pid, libc::SIGKILL);
        }
    }
}

/// Everything behind the pool's lock.
pub(super) struct State {
    pub(super) queue: VecDeque<Pending>,
    pub(super) workers: Vec<Slot>,
    /// Workers requested but not yet in `workers`.
    pub(super) spawns_wanted: usize,
    pub(super) next_worker_id: u64,
    pub(super) shutting_down: bool,
    /// Set by `terminate_workers`/`kill_workers`: calls held by workers fail instead of requeuing.
    pub(super) stopping: bool,
    /// Set by `shutdown` with `abort_running`: every call a worker takes or holds is aborted.
    pub(super) aborting: bool,
    pub(super) broken: Option<Reason>,
    pub(super) supervisor_done: bool,
    /// How many workers were started, for tests of reuse and replacement.
    pub(super) started_total: u64,
}

/// The pool's shared core: settings, state, and the condition variables threads sleep on.
pub(super) struct Shared {
    pub(super) config: Config,
    pub(super) state: Mutex<State>,
    /// Wakes the supervisor: spawn requests, kills to schedule, shutdown progress.
    pub(super) supervisor_wake: Condvar,
    /// Signalled when the supervisor has finished (every worker gone, every task settled).
    pub(super) done: Condvar,
    /// Estimated time of one call in nanoseconds (moving average), for the pipeline depth.
    service_nanos: AtomicU64,
    /// Runs the tasks' done-callbacks off the pool's own threads (`task/deferred.rs`).
    pub(super) callbacks: Arc<CallbackGroup>,
}

/// Entries a caller must resolve outside the lock (resolving runs user callbacks).
pub(super) type Rejected = Vec<(Box<dyn Sink>, TaskError)>;

/// The tail of every process-pool task's allocation: zero bytes. `Task::abort` of a running task
/// must reach the pool running it, to kill its worker; a pointer to the pool (or to a per-pool
/// hook, as before) in each task took the allocation from 56 bytes to 72, out of malloc's
/// 64-byte class, for every process task (issue 16). Instead an abort asks every live process
/// pool of the program ([`abort_flagged_everywhere`]): each looks only for its own flagged tasks,
/// so the others find nothing, and aborts are rare while tasks are many.
pub(crate) struct ProcessTask;

impl crate::task::ErasedJob for ProcessTask {
    fn on_abort(&self) {
        abort_flagged_everywhere();
    }
}

/// Every process pool started and not yet dropped, for [`ProcessTask::on_abort`]; weak, so the
/// list keeps no pool alive.
static POOLS: Mutex<Vec<Weak<Shared>>> = Mutex::new(Vec::new());

fn pools() -> MutexGuard<'static, Vec<Weak<Shared>>> {
    // The list is only pushed to and pruned here: a panic elsewhere cannot leave it inconsistent.
    POOLS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Adds a new pool to those an abort asks, dropping the entries of pools gone since.
pub(super) fn register_for_aborts(shared: &Arc<Shared>) {
    let mut pools = pools();
    pools.retain(|pool| pool.strong_count() > 0);
    pools.push(Arc::downgrade(shared));
}

/// Tells every live process pool that some task was flagged aborted (see [`ProcessTask`]).
fn abort_flagged_everywhere() {
    // Upgraded under the list's lock, used after it: a pool's own lock is never taken under it.
    let live: Vec<Arc<Shared>> = pools().iter().filter_map(Weak::upgrade).collect();
    for shared in live {
        shared.abort_flagged();
    }
}

impl Shared {
    /// `Task::abort` flagged a task of this pool that is running: kill the worker whose running
    /// call (the front of its in-flight list) it is, and end it if it sits requeued in the queue.
    /// A flagged call pipelined behind another is killed when it reaches the front (the reader
    /// checks); a call's worker is never killed for an abort before it runs the call.
    pub(super) fn abort_flagged(&self) {
        let mut state = self.lock();
        for slot in &mut state.workers {
            slot.kill_if_front_aborted();
        }
        let mut ended = Vec::new();
        let mut index = 0;
        while index < state.queue.len() {
            if state.queue[index].started && state.queue[index].sink.abort_requested() {
                let pending = state.queue.remove(index).expect("index is in range");
                ended.push(pending.sink);
            } else {
                index += 1;
            }
        }
        drop(state);
        for sink in ended {
            sink.cancel();
        }
    }

    pub(super) fn new(config: Config) -> Self {
        Shared {
            config,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                workers: Vec::new(),
                spawns_wanted: 0,
                next_worker_id: 1,
                shutting_down: false,
                aborting: false,
                stopping: false,
                broken: None,
                supervisor_done: false,
                started_total: 0,
            }),
            supervisor_wake: Condvar::new(),
            done: Condvar::new(),
            // Unknown at first: assume long calls (one in flight) until answers say otherwise.
            service_nanos: AtomicU64::new(PIPELINE_TARGET.as_nanos() as u64),
            callbacks: Arc::default(),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic under this lock can only come from a bug in the pool; keep serving regardless,
        // since every transition leaves the state consistent between statements that matter.
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Queues an entry, or hands it back with the reason it was refused.
    // The refused entry is handed back whole on a cold path (a broken or shut-down pool); boxing
    // it would cost every accepted submit an allocation.
    #[allow(clippy::result_large_err)]
    pub(super) fn enqueue(&self, pending: Pending) -> Result<(), (Pending, TaskError)> {
        let mut state = self.lock();
        if let Some(reason) = &state.broken {
            let error = TaskError::PoolBroken(reason.clone());
            return Err((pending, error));
        }
        if state.shutting_down {
            return Err((pending, TaskError::ShutDown));
        }
        state.queue.push_back(pending);
        self.dispatch(&mut state);
        Ok(())
    }

    /// Puts entries a dead worker never started back at the front of the queue, in order,
    /// marked as started (their tasks are running from the caller's side).
    ///
    /// A pool that is broken, or whose workers are being stopped (`terminate_workers`,
    /// `kill_workers`), will start no worker to run them, and a queue that already went through
    /// shutdown's drain would never empty: those entries are handed back to be failed (with
    /// [`settle`], outside the lock) instead of waiting forever.
    #[must_use = "refused entries must be settled"]
    pub(super) fn requeue(
        &self,
        state: &mut State,
        entries: impl DoubleEndedIterator<Item = Pending>,
    ) -> Rejected {
        if let Some(reason) = &state.broken {
            let error = TaskError::PoolBroken(reason.clone());
            return entries.map(|p| (p.sink, error.clone())).collect();
        }
        if state.aborting {
            // `shutdown` with `abort_running`: every running call ends cancelled (flagged, so
            // this failure publishes CANCELLED), none is sent again.
            return entries
                .map(|p| {
                    p.sink.flag_abort();
                    (p.sink, TaskError::Cancelled)
                })
                .collect();
        }
        if state.stopping {
            // Taken by a worker that was being stopped: from the caller's side it was running.
            let error = TaskError::WorkerLost(WorkerLoss::Disconnected);
            return entries.map(|p| (p.sink, error.clone())).collect();
        }
        for mut entry in entries.rev() {
            // It was taken by a worker, so its task is already marked running: the next worker
            // must not try to start it again (that attempt fails, and would read as cancelled).
            entry.started = true;
            state.queue.push_front(entry);
        }
        self.dispatch(state);
        Vec::new()
    }

    /// After the queue grew or capacity appeared: wakes writers that can take work, and asks the
    /// supervisor for a worker when the queue outgrows the idle and starting ones (idle
    /// workers are reused; at most `max_workers`).
    pub(super) fn dispatch(&self, state: &mut State) {
        if state.queue.is_empty() {
            return;
        }
        let depth = self.pipeline_depth();
        let max_tasks = self.config.max_tasks_per_child;
        let mut woken = 0;
        for slot in &mut state.workers {
            if woken >= state.queue.len() {
                break;
            }
            if slot.writer_idle
                && slot.phase == Phase::Ready
                && capacity(slot, depth, max_tasks) > 0
            {
                slot.writer_idle = false;
                slot.writer_wake.notify_one();
                woken += 1;
            }
        }
        if state.broken.is_some() || state.stopping {
            return;
        }
        let idle = state.workers.iter().filter(|s| s.idle()).count();
        let starting = state
            .workers
            .iter()
            .filter(|s| matches!(s.phase, Phase::Starting { .. }))
            .count()
            + state.spawns_wanted;
        let live = state
            .workers
            .iter()
            .filter(|s| s.phase != Phase::Exited && s.kill.is_none())
            .count()
            + state.spawns_wanted;
        // A worker that will exit (max tasks reached, input closed) cannot take this work.
        let accepting = state
            .workers
            .iter()
            .filter(|s| {
                s.phase == Phase::Ready && s.kill.is_none() && capacity(s, depth, max_tasks) > 0
            })
            .count();
        let wants_worker = state.queue.len() > idle + starting || accepting + starting == 0;
        if wants_worker && live < self.config.max_workers {
            state.spawns_wanted += 1;
            self.supervisor_wake.notify_one();
        } else if accepting + starting == 0 && live >= self.config.max_workers {
            // Every worker is on its way out (retiring after max_tasks_per_child, or killed);
            // the supervisor starts replacements as they leave.
            self.supervisor_wake.notify_one();
        }
    }

    /// Marks the pool broken (first reason wins) and takes every queued entry to fail.
    pub(super) fn break_pool(&self, state: &mut State, reason: Reason) -> Rejected {
        let reason = state.broken.get_or_insert(reason).clone();
        let rejected = state
            .queue
            .drain(..)
            .map(|p| (p.sink, TaskError::PoolBroken(reason.clone())))
            .collect();
        self.wake_all(state);
        rejected
    }

    /// Wakes every writer and the supervisor (shutdown, breakage, stop).
    pub(super) fn wake_all(&self, state: &mut State) {
        for slot in &mut state.workers {
            slot.writer_idle = false;
            slot.writer_wake.notify_one();
        }
        self.supervisor_wake.notify_one();
    }

    /// How many calls to keep queued at one worker: about [`PIPELINE_TARGET`] of work.
    pub(super) fn pipeline_depth(&self) -> usize {
        let nanos = self.service_nanos.load(Ordering::Relaxed).max(1);
        let depth = PIPELINE_TARGET.as_nanos() as u64 / nanos;
        (depth as usize).clamp(1, MAX_PIPELINE)
    }

    /// Folds in how long `calls` answers took together.
    pub(super) fn record_service(&self, elapsed: Duration, calls: usize) {
        let sample = (elapsed.as_nanos() / calls.max(1) as u128).min(u64::MAX as u128) as u64;
        let old = self.service_nanos.load(Ordering::Relaxed);
        // An exponential moving average weighting the new sample by 1/4: quick to adapt when a
        // pool moves from tiny to long tasks, steady against one outlier.
        let new = old - old / 4 + sample / 4;
        self.service_nanos.store(new, Ordering::Relaxed);
    }
}

/// How many more calls `slot` may be sent now.
pub(super) fn capacity(slot: &Slot, depth: usize, max_tasks: Option<u64>) -> usize {
    if slot.kill.is_some() || slot.recycle {
        return 0;
    }
    let queued = slot.in_flight.len() + slot.taking;
    let room = depth.saturating_sub(queued);
    match max_tasks {
        Some(max) => room.min(max.saturating_sub(slot.sent) as usize),
        None => room,
    }
}

/// Resolves refused or failed entries; call without the lock held.
pub(super) fn settle(rejected: Rejected) {
    for (sink, error) in rejected {
        sink.fail(error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The packed limits give back exactly the `Duration`s they were made from, the extremes
    /// included, and tell a set limit from an absent one.
    #[test]
    fn limits_keep_each_duration_exactly() {
        let cases = [
            None,
            Some(Duration::ZERO),
            Some(Duration::from_nanos(1)),
            Some(Duration::new(3, 999_999_999)),
            Some(Duration::MAX),
        ];
        for hard in cases {
            for soft in cases {
                let limits = Limits::new(hard, soft, Some(7));
                let kept = |d: Option<Duration>| d.filter(|d| *d != Duration::MAX);
                assert_eq!((limits.hard(), limits.soft()), (kept(hard), kept(soft)));
                assert_eq!(limits.memory(), Some(7));
                assert_eq!(limits.any(), kept(hard).is_some() || kept(soft).is_some());
            }
        }
    }

    /// Every pending task carries one queue entry: 96 bytes (issue 16; it was 112).
    #[test]
    fn a_queue_entry_stays_at_96_bytes() {
        assert_eq!(std::mem::size_of::<Limits>(), 24);
        assert_eq!(std::mem::size_of::<Work>(), 48);
        assert_eq!(std::mem::size_of::<Pending>(), 96);
    }
}
