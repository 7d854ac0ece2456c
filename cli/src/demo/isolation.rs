//! Section 3: one bad task fails alone.
//!
//! - On the thread pool a panicking task is caught: its task reports the panic, the worker lives
//!   on and every other task completes.
//! - On the process pool a task that aborts its whole process fails with the signal that killed
//!   the worker; a fresh worker takes its place and the pool carries on.
//! - On the process pool a runaway task is stopped by its own time limit: the worker is killed,
//!   the task fails as timed out — something no thread can do to another thread.
//! - On the process pool `Task::abort` stops a running task: its worker is killed and replaced,
//!   the task ends cancelled, the others complete.
//! - On the process pool a task whose memory passes the pool's `memory_limit` while it runs is
//!   killed at once and fails `MemoryLimit`; the others complete.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futurepool::{ProcessPool, Shutdown, Task, TaskError, ThreadPool};
use serde::Serialize;

/// Tasks submitted beside the bad one; all must complete.
const NEIGHBOURS: u32 = 7;

/// The runaway task's own time limit.
const TIME_LIMIT: Duration = Duration::from_millis(500);

/// What the panic says, so the demo's panic hook can keep it off the terminal.
const PANIC_MESSAGE: &str = "corrupt record in row 3";

/// The isolation section's results.
#[derive(Debug, Serialize)]
pub struct IsolationSection {
    /// A task that panics on the thread pool.
    pub thread_panic: Contained,
    /// A task that aborts its worker process on the process pool.
    pub process_abort: Contained,
    /// A task that never returns, on a process pool with a per-task time limit.
    pub runaway_time_limit: Contained,
    /// A running task stopped by `Task::abort`: its worker is killed and replaced.
    pub running_abort: Contained,
    /// A task whose memory grows past the pool's memory limit while it runs.
    pub memory_limit: Contained,
}

impl IsolationSection {
    /// Each bad task failed the expected way, and only it.
    pub fn as_expected(&self) -> bool {
        [
            &self.thread_panic,
            &self.process_abort,
            &self.runaway_time_limit,
            &self.running_abort,
            &self.memory_limit,
        ]
        .iter()
        .all(|c| c.as_expected)
    }
}

/// How a bad task ended, and what happened to the rest.
#[derive(Debug, Serialize)]
pub struct Contained {
    /// The pool it ran on: `thread_pool` or `process_pool`.
    pub pool: &'static str,
    /// What the task did.
    pub task: &'static str,
    /// How it ended: `panicked`, `worker_lost`, `time_limit`, ... (or `ok`).
    pub outcome: &'static str,
    /// The error as a user reads it.
    pub error: Option<String>,
    /// How long after submission its failure was known, in seconds.
    pub failed_after_s: f64,
    /// Other tasks that completed normally.
    pub others_completed: u32,
    /// Other tasks submitted beside it.
    pub others_total: u32,
    /// A task submitted after the failure still ran.
    pub pool_usable_after: bool,
    /// The task failed the expected way and nothing else did.
    pub as_expected: bool,
}

/// Runs the five scenarios.
pub fn run() -> Result<IsolationSection, String> {
    Ok(IsolationSection {
        thread_panic: thread_panic(),
        process_abort: process_abort()?,
        runaway_time_limit: runaway()?,
        running_abort: running_abort()?,
        memory_limit: memory_hog()?,
    })
}

fn thread_panic() -> Contained {
    // The panic is the point of the scenario: keep its message off stderr (the demo prints it
    // itself), but let any other panic through.
    let previous = Arc::new(std::panic::take_hook());
    {
        let previous = Arc::clone(&previous);
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<&str>() != Some(&PANIC_MESSAGE) {
                previous(info);
            }
        }));
    }
    let pool = ThreadPool::new(2);
    let started = Instant::now();
    let bad = pool.submit(|| -> u32 { std::panic::panic_any(PANIC_MESSAGE) });
    let others: Vec<_> = (0..NEIGHBOURS)
        .map(|i| pool.submit(move || i * i))
        .collect();
    let outcome = bad.result();
    let failed_after_s = started.elapsed().as_secs_f64();
    let others_completed = count_squares(&others);
    let pool_usable_after = pool.submit(|| 42).result() == Ok(42);
    pool.shutdown(Shutdown::default());
    let _ = std::panic::take_hook();
    if let Ok(previous) = Arc::try_unwrap(previous) {
        std::panic::set_hook(previous);
    }
    let expected = matches!(&outcome, Err(TaskError::Panicked(p)) if p.message() == PANIC_MESSAGE);
    contained(
        "thread_pool",
        "panics",
        &outcome,
        failed_after_s,
        others_completed,
        pool_usable_after,
        expected,
    )
}

/// One process-pool scenario: `bad` submits the bad task on a fresh pool built by `pool`,
/// seven neighbours run beside it, `stop` (if any) acts on the bad task once it runs, and
/// `expected` says whether its error is the one the scenario demonstrates.
struct ProcessScenario {
    task: &'static str,
    pool: fn() -> Result<ProcessPool, futurepool::ProcessPoolError>,
    bad: fn(&ProcessPool) -> Task<()>,
    stop: Option<fn(&Task<()>)>,
    expected: fn(&TaskError) -> bool,
}

impl ProcessScenario {
    fn run(&self) -> Result<Contained, String> {
        let pool = (self.pool)().map_err(|e| format!("cannot start the process pool: {e}"))?;
        let started = Instant::now();
        let bad = (self.bad)(&pool);
        let others: Vec<_> = (0..NEIGHBOURS).map(|i| pool.submit(square, i)).collect();
        if let Some(stop) = self.stop {
            stop(&bad);
        }
        let outcome = bad.result();
        let failed_after_s = started.elapsed().as_secs_f64();
        let others_completed = count_squares(&others);
        let pool_usable_after = pool.submit(square, 6).result() == Ok(36);
        pool.shutdown(Shutdown::default());
        let expected = outcome.as_ref().err().is_some_and(self.expected);
        Ok(contained(
            "process_pool",
            self.task,
            &outcome,
            failed_after_s,
            others_completed,
            pool_usable_after,
            expected,
        ))
    }
}

fn two_workers() -> Result<ProcessPool, futurepool::ProcessPoolError> {
    ProcessPool::new(2)
}

fn process_abort() -> Result<Contained, String> {
    ProcessScenario {
        task: "aborts its process",
        pool: two_workers,
        bad: |pool| pool.submit(abort_process, ()),
        stop: None,
        expected: |e| matches!(e, TaskError::WorkerLost(_)),
    }
    .run()
}

fn runaway() -> Result<Contained, String> {
    ProcessScenario {
        task: "never returns",
        pool: two_workers,
        // This task's own limit; `ProcessPool::builder().time_limit(..)` sets one for every task.
        bad: |pool| pool.submit_with_time_limit(spin_forever, (), Some(TIME_LIMIT)),
        stop: None,
        expected: |e| matches!(e, TaskError::TimeLimit(_)),
    }
    .run()
}

fn running_abort() -> Result<Contained, String> {
    ProcessScenario {
        task: "aborted while running",
        pool: two_workers,
        bad: |pool| pool.submit(spin_forever, ()),
        // Stop it once it runs: no thread could do this to another thread; here its worker is
        // killed and replaced.
        stop: Some(|bad| {
            let started = Instant::now();
            while !bad.is_running() && started.elapsed() < Duration::from_secs(30) {
                std::thread::sleep(Duration::from_millis(5));
            }
            std::thread::sleep(Duration::from_millis(100));
            bad.abort();
        }),
        expected: |e| matches!(e, TaskError::Cancelled),
    }
    .run()
}

/// The memory-limit scenario's limit.
const MEMORY_LIMIT: u64 = 256 << 20;

fn memory_hog() -> Result<Contained, String> {
    ProcessScenario {
        task: "outgrows its memory limit",
        pool: || {
            ProcessPool::builder()
                .max_workers(2)
                .memory_limit(MEMORY_LIMIT)
                .build()
        },
        bad: |pool| pool.submit(grow_without_end, ()),
        stop: None,
        expected: |e| matches!(e, TaskError::MemoryLimit { .. }),
    }
    .run()
}

/// How many of `tasks` returned the square of their position, as each task here does.
fn count_squares(tasks: &[Task<u32>]) -> u32 {
    tasks
        .iter()
        .zip(0u32..)
        .filter(|(t, i)| t.result() == Ok(i * i))
        .count() as u32
}

fn contained<T>(
    pool: &'static str,
    task: &'static str,
    outcome: &Result<T, TaskError>,
    failed_after_s: f64,
    others_completed: u32,
    pool_usable_after: bool,
    failed_as_expected: bool,
) -> Contained {
    Contained {
        pool,
        task,
        outcome: match outcome {
            Ok(_) => "ok",
            Err(e) => outcome_name(e),
        },
        error: outcome.as_ref().err().map(|e| e.to_string()),
        failed_after_s,
        others_completed,
        others_total: NEIGHBOURS,
        pool_usable_after,
        as_expected: failed_as_expected && others_completed == NEIGHBOURS && pool_usable_after,
    }
}

/// A stable, machine-readable name for each way a task can fail.
pub fn outcome_name<E>(error: &TaskError<E>) -> &'static str {
    match error {
        TaskError::Cancelled => "cancelled",
        TaskError::Panicked(_) => "panicked",
        TaskError::Failed(_) => "failed",
        TaskError::Timeout => "timeout",
        TaskError::TimeLimit(_) => "time_limit",
        TaskError::MemoryLimit { .. } => "memory_limit",
        TaskError::WorkerLost(_) => "worker_lost",
        TaskError::PoolBroken(_) => "pool_broken",
        TaskError::ShutDown => "shut_down",
        TaskError::Transfer(_) => "transfer",
        _ => "other",
    }
}

fn square(n: u32) -> u32 {
    n * n
}
futurepool::register!(square);

/// Kills its own process, as a segfault or a failed assertion in C code would.
fn abort_process(_: ()) {
    std::process::abort()
}
futurepool::register!(abort_process);

/// Never returns: the bug a time limit exists for.
fn spin_forever(_: ()) {
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}
futurepool::register!(spin_forever);

/// Allocates (and touches) 16 MiB every 1/16 s, about 256 MiB/s, without end: a leak at speed.
fn grow_without_end(_: ()) {
    let mut held: Vec<Vec<u8>> = Vec::new();
    loop {
        held.push(vec![1u8; 16 << 20]);
        std::thread::sleep(Duration::from_millis(62));
    }
}
futurepool::register!(grow_without_end);
