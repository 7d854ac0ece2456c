//! Issue 13 on the cluster, process mode: a worker started with `FUTUREPOOL_PROCESSES`
//! (`ServeOptions::processes`) runs each task in a local process pool. An abort kills the local
//! process running the task; per-submit hard and soft time limits and memory limits are
//! enforced on it; a task that panics or whose process is killed fails alone. Real processes,
//! each test against a private `redis-server`, every wait bounded.

use std::time::{Duration, Instant};

use futurepool::cluster::SubmitOptions;
use futurepool::{TaskError, WorkerLoss};

#[path = "../support/mod.rs"]
mod common;

use crate::support::*;
use crate::{explode, square, traced, World, LEASE};

// ---- The functions the workers run ----------------------------------------------------------

/// `(log, tag)`: logs `start TAG PID`, then sleeps a minute without ever reading its token (only
/// a kill stops it early), logs `end TAG PID`.
pub fn ignores_its_token((log, tag): (String, String)) -> u32 {
    let pid = std::process::id();
    log_line(&log, &format!("start {tag} {pid}"));
    std::thread::sleep(Duration::from_secs(60));
    log_line(&log, &format!("end {tag} {pid}"));
    pid
}

/// `(log, tag)`: logs `start TAG PID`; once its token reads cancelled (the soft limit) logs
/// `token TAG PID` and then keeps running without returning for a minute (so only the hard limit
/// ends it).
pub fn overstays((log, tag): (String, String)) -> u32 {
    let pid = std::process::id();
    log_line(&log, &format!("start {tag} {pid}"));
    let token = futurepool::current_token();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !token.is_cancelled() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    if token.is_cancelled() {
        log_line(&log, &format!("token {tag} {pid}"));
    }
    std::thread::sleep(Duration::from_secs(60));
    pid
}

/// Grows by 64 MiB per second, `mib` MiB in all (touching every page, so it is resident).
pub fn grow_64_mib_per_s(mib: u64) -> u64 {
    const MIB: usize = 1 << 20;
    let mut held: Vec<Vec<u8>> = Vec::new();
    for _ in 0..mib {
        held.push(vec![1u8; MIB]);
        std::thread::sleep(Duration::from_micros(1_000_000 / 64));
    }
    held.iter().map(|b| b.len() as u64).sum::<u64>() / MIB as u64
}

/// Its local process's pid.
pub fn local_pid(_: ()) -> u32 {
    std::process::id()
}

futurepool::register!(ignores_its_token, overstays, grow_64_mib_per_s, local_pid);

pub const TESTS: &[(&str, fn())] = &[
    (
        "a_process_mode_worker_runs_tasks_in_local_processes_and_returns_values",
        a_process_mode_worker_runs_tasks_in_local_processes_and_returns_values,
    ),
    (
        "an_abort_kills_the_local_process_of_a_task_ignoring_its_token_and_is_not_retried",
        an_abort_kills_the_local_process_of_a_task_ignoring_its_token_and_is_not_retried,
    ),
    (
        "a_per_submit_time_limit_kills_its_process_and_ends_time_limit_while_others_finish",
        a_per_submit_time_limit_kills_its_process_and_ends_time_limit_while_others_finish,
    ),
    (
        "soft_then_hard_limit_the_token_is_seen_before_the_kill",
        soft_then_hard_limit_the_token_is_seen_before_the_kill,
    ),
    (
        "a_task_growing_64_mib_per_s_under_a_256_mib_limit_fails_memory_limit_while_others_finish",
        a_task_growing_64_mib_per_s_under_a_256_mib_limit_fails_memory_limit_while_others_finish,
    ),
    (
        "a_panicking_or_killed_task_in_process_mode_fails_alone",
        a_panicking_or_killed_task_in_process_mode_fails_alone,
    ),
];

fn tagged(world: &World, tag: &str) -> (String, String) {
    (world.log.clone(), tag.to_string())
}

/// The local process a task tagged `tag` logged it started in, once it has.
fn started_in(world: &World, tag: &str) -> u32 {
    wait_for(&format!("{tag} to start"), || {
        !pids(world.log(), "start", tag).is_empty()
    });
    pids(world.log(), "start", tag)[0]
}

fn settled(world: &World) {
    wait_for("the pool to hold nothing", || {
        let status = world.status();
        (status.queued, status.in_flight, status.scheduled) == (0, 0, 0)
    });
}

fn a_process_mode_worker_runs_tasks_in_local_processes_and_returns_values() {
    let world = World::new("procs-values");
    let pool = world.client(LEASE, 3);
    let worker = world.process_worker(2, 2);
    let squares: Vec<u64> = pool
        .map(square, 0..40u64)
        .map(|r| r.expect("a value"))
        .collect();
    assert_eq!(squares, (0..40u64).map(|n| n * n).collect::<Vec<_>>());
    let pids: Vec<u32> = (0..6)
        .map(|_| pool.submit(local_pid, ()))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.result_timeout(PATIENCE).expect("a pid"))
        .collect();
    assert!(
        pids.iter()
            .all(|&pid| pid != worker.pid() && pid != std::process::id()),
        "tasks ran in the worker's local processes, not in it: {pids:?} (worker {})",
        worker.pid()
    );
    let distinct: std::collections::HashSet<u32> = pids.iter().copied().collect();
    assert!(distinct.len() <= 2, "at most 2 local processes: {pids:?}");
    let fallible = pool.submit_fallible(crate::checked_half, (world.log.clone(), "odd".into(), 7));
    assert_eq!(
        fallible.result_timeout(PATIENCE),
        Err(TaskError::Failed("7 is odd".to_string())),
        "a fallible function's own error crosses both pipes"
    );
    let stderr = std::fs::read_to_string(world.scratch.path("workers.stderr")).unwrap_or_default();
    assert!(stderr.contains("2 local processes"), "{stderr}");
}

fn an_abort_kills_the_local_process_of_a_task_ignoring_its_token_and_is_not_retried() {
    let world = World::new("procs-abort");
    let pool = world.client(LEASE, 3);
    let worker = world.process_worker(1, 0);
    let options = SubmitOptions::new().id("stuck");
    let aborted = pool.submit_with(&options, ignores_its_token, tagged(&world, "stuck"));
    let other = pool.submit_with(&options, ignores_its_token, tagged(&world, "stuck"));
    let local = started_in(&world, "stuck");
    assert_ne!(local, worker.pid(), "it runs in a local process");
    assert!(aborted.abort());
    assert_eq!(aborted.try_result(), Some(Err(TaskError::Cancelled)));
    // The task never reads its token: only the kill ends it, and the broker's outcome is C.
    assert_eq!(other.result_timeout(PATIENCE), Err(TaskError::Cancelled));
    common::assert_gone_within(local, PATIENCE, "the aborted task's local process");
    assert_eq!(
        count(world.log(), "end", "stuck"),
        0,
        "it never ran to its end"
    );
    settled(&world);
    let status = world.status();
    assert_eq!((status.retried, status.published), (0, 1), "{status:?}");
    // A fresh local process serves the next task; the cluster worker lived on.
    let next = pool.submit(local_pid, ());
    let fresh = next.result_timeout(PATIENCE).expect("the next task runs");
    assert_ne!(fresh, local);
    assert_eq!(
        count(world.log(), "start", "stuck"),
        1,
        "run once, never redelivered"
    );
}

fn a_per_submit_time_limit_kills_its_process_and_ends_time_limit_while_others_finish() {
    let world = World::new("procs-time-limit");
    let pool = world.client(LEASE, 3);
    let _worker = world.process_worker(2, 0);
    let limit = Duration::from_millis(300);
    let slow = pool.submit_with(
        &SubmitOptions::new().time_limit(limit),
        traced,
        world.job("slow", 30_000),
    );
    let others: Vec<_> = (0..10u64).map(|n| pool.submit(square, n)).collect();
    assert_eq!(
        slow.result_timeout(PATIENCE),
        Err(TaskError::TimeLimit(limit))
    );
    for (n, task) in others.iter().enumerate() {
        assert_eq!(task.result_timeout(PATIENCE), Ok((n * n) as u64));
    }
    let local = pids(world.log(), "start", "slow");
    assert_eq!(local.len(), 1, "ran once, not retried");
    common::assert_gone_within(local[0], PATIENCE, "the timed-out task's local process");
    assert_eq!(count(world.log(), "end", "slow"), 0);
    // A limit of the same length given by nobody: a plain submit of the same work is not
    // limited (the worker has no default).
    let plain = pool.submit(traced, world.job("plain", 400));
    assert!(plain.result_timeout(PATIENCE).is_ok());
}

fn soft_then_hard_limit_the_token_is_seen_before_the_kill() {
    let world = World::new("procs-soft-hard");
    let pool = world.client(LEASE, 3);
    let _worker = world.process_worker(1, 0);
    let hard = Duration::from_millis(1500);
    let options = SubmitOptions::new()
        .soft_time_limit(Duration::from_millis(200))
        .time_limit(hard);
    let task = pool.submit_with(&options, overstays, tagged(&world, "over"));
    assert_eq!(
        task.result_timeout(PATIENCE),
        Err(TaskError::TimeLimit(hard))
    );
    assert_eq!(
        count(world.log(), "token", "over"),
        1,
        "the soft limit set the token before the hard one killed it"
    );
    let local = pids(world.log(), "start", "over");
    common::assert_gone_within(local[0], PATIENCE, "the killed task's local process");
}

fn a_task_growing_64_mib_per_s_under_a_256_mib_limit_fails_memory_limit_while_others_finish() {
    let world = World::new("procs-memory");
    let pool = world.client(LEASE, 3);
    let _worker = world.process_worker(2, 0);
    let limit: u64 = 256 << 20;
    // 2 GiB at 64 MiB/s would take 32 s: the limit strikes after about 4.
    let hog = pool.submit_with(
        &SubmitOptions::new().memory_limit(limit),
        grow_64_mib_per_s,
        2048,
    );
    let others: Vec<_> = (0..20u64).map(|n| pool.submit(square, n)).collect();
    // A limit given to one task only: the others (with none) are not measured against it, and
    // a small grower without a limit finishes.
    let small = pool.submit(grow_64_mib_per_s, 32);
    match hog.result_timeout(PATIENCE) {
        Err(TaskError::MemoryLimit { limit: seen, used }) => {
            assert_eq!(seen, limit);
            assert!(used > limit, "used {used} is over the limit {limit}");
        }
        other => panic!("expected MemoryLimit, got {other:?}"),
    }
    for (n, task) in others.iter().enumerate() {
        assert_eq!(task.result_timeout(PATIENCE), Ok((n * n) as u64));
    }
    assert_eq!(small.result_timeout(PATIENCE), Ok(32));
    settled(&world);
    assert_eq!(world.status().retried, 0);
}

fn a_panicking_or_killed_task_in_process_mode_fails_alone() {
    let world = World::new("procs-panic");
    let pool = world.client(LEASE, 3);
    let _worker = world.process_worker(2, 2);
    let boom = pool.submit(explode, tagged(&world, "boom"));
    let killed = pool.submit(crate::poison, ());
    let others: Vec<_> = (0..10u64).map(|n| pool.submit(square, n)).collect();
    match boom.result_timeout(PATIENCE) {
        Err(TaskError::Panicked(panic)) => assert_eq!(panic.message(), "boom in boom"),
        other => panic!("expected a panic, got {other:?}"),
    }
    // `poison` aborts its process: in process mode that is a lost local process, reported as
    // such and not redelivered (a thread-mode worker would die and be retried by its lease).
    assert_eq!(
        killed.result_timeout(PATIENCE),
        Err(TaskError::WorkerLost(WorkerLoss::Signaled(libc::SIGABRT)))
    );
    for (n, task) in others.iter().enumerate() {
        assert_eq!(task.result_timeout(PATIENCE), Ok((n * n) as u64));
    }
    assert_eq!(count(world.log(), "start", "boom"), 1, "ran once");
}
