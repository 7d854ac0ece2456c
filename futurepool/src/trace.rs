//! The `tracing` feature: spans and events through the [`tracing`](https://docs.rs/tracing)
//! crate, compiled out entirely without the feature.
//!
//! Every call site goes through [`trace_event!`] or [`task_span!`], which expand to nothing when
//! the feature is off (their arguments are not even evaluated), so the hot paths carry no trace
//! of them. With the feature on and no subscriber interested, each site costs one cached check of
//! the callsite's interest, as everywhere in `tracing`.
//!
//! What is emitted (target `futurepool`):
//! - a span `task` (DEBUG) around each thread pool task's run, with `pool` (the thread name
//!   prefix) and `task` (an id stable for the task's life), and a TRACE event `submitted` with
//!   the same fields when it is queued: submitted → started (span entered) → finished (exited);
//! - DEBUG events `worker started` / `worker exited` for thread pool workers (`pool`,
//!   `worker`), and `worker started` (`pid`) for process pool workers;
//! - one event per process pool worker killed, naming why: `worker killed: time limit` (WARN,
//!   `limit_ms`), `…: memory limit` (WARN, `limit_bytes`, `used_bytes`), `…: task aborted`
//!   (INFO), `…: start timeout` (WARN), `…: pool stopped` (DEBUG), `…: protocol error` and
//!   `…: its answer pipe closed` (WARN), `…: internal error` (ERROR), each with `pid`;
//! - `worker exited` for each process pool worker (`pid`, `how`: exit code or signal, `held`:
//!   whether it still held calls): DEBUG when retired or stopped with nothing in hand, WARN
//!   otherwise;
//! - for cluster workers (`serve`, and `MemoryBroker` workers): INFO `worker started` (`pool`,
//!   `worker`, `threads`) and `worker exited` (ERROR with `error` when it stopped on one), WARN
//!   `task redelivered: its worker was lost` per task the reaper claims (`task`), ERROR `tasks
//!   dead-lettered: they lost their workers too often` (`tasks`, `max_deliveries`).

/// `tracing::event!` with the feature, nothing without.
#[cfg(feature = "tracing")]
macro_rules! trace_event {
    ($($arg:tt)*) => { ::tracing::event!(target: "futurepool", $($arg)*) };
}
#[cfg(not(feature = "tracing"))]
macro_rules! trace_event {
    ($($arg:tt)*) => {};
}

/// An entered `task` span guard with the feature; `()` without.
#[cfg(feature = "tracing")]
macro_rules! task_span {
    ($($field:tt)*) => {
        ::tracing::span!(target: "futurepool", ::tracing::Level::DEBUG, "task", $($field)*).entered()
    };
}
#[cfg(not(feature = "tracing"))]
macro_rules! task_span {
    ($($field:tt)*) => {
        ()
    };
}

pub(crate) use task_span;
pub(crate) use trace_event;
