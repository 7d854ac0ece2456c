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
//! - a WARN event `worker killed: time limit` when a process pool worker is killed because its
//!   task ran past its time limit (`pid`, `limit_ms`).

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
