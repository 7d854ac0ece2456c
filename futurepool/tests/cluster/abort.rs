//! Issue 13 on the cluster: `Task::abort` reaches the worker through the broker. A task aborted
//! before a worker has it never runs; a running one sees its token and ends cancelled, is acked
//! and never retried; a finished one keeps its value. Workers are real processes, each test
//! against a private `redis-server`, under the runner's watchdog.

use std::time::{Duration, Instant};

use futurepool::cluster::{ClusterPool, RetryPolicy, SubmitOptions};
use futurepool::{Shutdown, Task, TaskError};

use crate::support::*;
use crate::{square, traced, World, LEASE};

// ---- The functions the workers run ----------------------------------------------------------

/// `(log, tag, limit_ms)`: logs `start TAG PID`, polls its token until it is cancelled (at most
/// `limit_ms`), logs `token TAG PID` if it saw it cancelled, then `end TAG PID`. Always fails,
/// so under a retry policy only the abort can keep it from running again.
pub fn until_aborted((log, tag, limit_ms): (String, String, u64)) -> Result<u32, String> {
    let pid = std::process::id();
    log_line(&log, &format!("start {tag} {pid}"));
    let token = futurepool::current_token();
    let deadline = Instant::now() + Duration::from_millis(limit_ms);
    while !token.is_cancelled() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    if token.is_cancelled() {
        log_line(&log, &format!("token {tag} {pid}"));
    }
    log_line(&log, &format!("end {tag} {pid}"));
    Err(format!("{tag} returned"))
}

futurepool::register!(until_aborted);

pub const TESTS: &[(&str, fn())] = &[
    (
        "an_aborted_queued_task_never_runs_and_ends_cancelled",
        an_aborted_queued_task_never_runs_and_ends_cancelled,
    ),
    (
        "an_aborted_prefetched_task_is_completed_cancelled_without_running",
        an_aborted_prefetched_task_is_completed_cancelled_without_running,
    ),
    (
        "shutdown_abort_running_stops_the_tasks_on_the_workers",
        shutdown_abort_running_stops_the_tasks_on_the_workers,
    ),
    (
        "an_aborted_running_task_sees_its_token_and_is_not_retried",
        an_aborted_running_task_sees_its_token_and_is_not_retried,
    ),
    (
        "an_abort_after_the_outcome_returns_false_and_the_value_stands",
        an_abort_after_the_outcome_returns_false_and_the_value_stands,
    ),
    (
        "an_abort_racing_completion_has_exactly_one_outcome",
        an_abort_racing_completion_has_exactly_one_outcome,
    ),
    (
        "a_task_aborted_after_its_worker_was_killed_is_reclaimed_cancelled_not_run",
        a_task_aborted_after_its_worker_was_killed_is_reclaimed_cancelled_not_run,
    ),
];

fn job(world: &World, tag: &str, limit_ms: u64) -> (String, String, u64) {
    (world.log.clone(), tag.to_string(), limit_ms)
}

/// Task handle of `until_aborted`.
type Handle = futurepool::Task<u32, String>;

/// Waits until the task tagged `tag` has started on a worker.
fn started(world: &World, tag: &str) {
    wait_for(&format!("{tag} to start"), || {
        count(world.log(), "start", tag) == 1
    });
}

/// Two handles on one task `until_aborted` tagged `tag` (id `tag`): the first to abort, the
/// second to hear what the broker publishes.
fn two_handles(
    pool: &ClusterPool,
    world: &World,
    tag: &str,
    options: SubmitOptions,
) -> (Handle, Handle) {
    let options = options.id(tag);
    let submit = || pool.submit_fallible_with(&options, until_aborted, job(world, tag, 30_000));
    (submit(), submit())
}

/// A pool whose one worker (one thread, `prefetch`) is busy with a 1.5 s task.
fn busy_worker(name: &str, prefetch: usize) -> (World, ClusterPool, WorkerProcess, Task<u32>) {
    let world = World::new(name);
    let pool = world.client(LEASE, 3);
    let worker = world.worker(1, prefetch);
    let blocker = pool.submit(traced, world.job("blocker", 1500));
    started(&world, "blocker");
    (world, pool, worker, blocker)
}

/// After the abort of `tag` queued behind the blocker: the second handle ends cancelled, the
/// blocker is unaffected, `tag` never ran and the broker holds nothing.
fn cancelled_without_running(world: &World, other: &Handle, blocker: &Task<u32>, tag: &str) {
    assert_eq!(other.result_timeout(PATIENCE), Err(TaskError::Cancelled));
    assert!(other.is_cancelled());
    assert!(blocker.result_timeout(PATIENCE).is_ok());
    assert_eq!(count(world.log(), "start", tag), 0, "{tag} never ran");
    settled(world);
}

/// Waits until the broker holds nothing of the pool: every entry acked, nothing scheduled.
fn settled(world: &World) {
    wait_for("the pool to hold nothing", || {
        let status = world.status();
        (status.queued, status.in_flight, status.scheduled) == (0, 0, 0)
    });
}

/// Queued behind a running task on a one-thread worker without prefetch: the abort is recorded on
/// the broker before any worker has the task, so the worker acks it cancelled without running it.
/// A second handle on the same task hears the broker's outcome: cancelled.
fn an_aborted_queued_task_never_runs_and_ends_cancelled() {
    let (world, pool, _worker, blocker) = busy_worker("abort-queued", 0);
    let (aborted, other) = two_handles(&pool, &world, "queued", SubmitOptions::new());
    assert!(aborted.abort());
    assert!(aborted.is_cancelled(), "the handle is cancelled at once");
    assert_eq!(aborted.try_result(), Some(Err(TaskError::Cancelled)));
    cancelled_without_running(&world, &other, &blocker, "queued");
}

/// Fetched by the worker (prefetch) before the abort, behind a running task: the worker's poll
/// takes it out of its local queue and acks it cancelled; it never starts.
fn an_aborted_prefetched_task_is_completed_cancelled_without_running() {
    let (world, pool, _worker, blocker) = busy_worker("abort-prefetched", 4);
    let (aborted, other) = two_handles(&pool, &world, "prefetched", SubmitOptions::new());
    wait_for("the worker to hold both tasks", || {
        world.status().in_flight == 2
    });
    assert!(aborted.abort());
    cancelled_without_running(&world, &other, &blocker, "prefetched");
}

/// `shutdown` with `abort_running` aborts on the broker too: the running task's token is set on
/// its worker, and it returns.
fn shutdown_abort_running_stops_the_tasks_on_the_workers() {
    let world = World::new("abort-shutdown");
    let pool = world.client(LEASE, 3);
    let _worker = world.worker(2, 0);
    let running = pool.submit_fallible(until_aborted, job(&world, "endless", 60_000));
    started(&world, "endless");
    pool.shutdown(Shutdown::default().abort_running(true));
    assert_eq!(running.try_result(), Some(Err(TaskError::Cancelled)));
    wait_for("the task to see its token", || {
        count(world.log(), "token", "endless") == 1
    });
    settled(&world);
}

/// Running, under `RetryPolicy::new(3)`: the abort reaches the worker, which sets the task's token
/// (`current_token()` inside the task reads it); the task returns an error its policy would retry,
/// but it ends cancelled, acked, and runs once.
fn an_aborted_running_task_sees_its_token_and_is_not_retried() {
    let world = World::new("abort-running");
    let pool = world.client(LEASE, 3);
    let _worker = world.worker(2, 0);
    let policy = RetryPolicy::new(3).backoff(Duration::from_millis(20), Duration::from_millis(50));
    let (aborted, other) =
        two_handles(&pool, &world, "running", SubmitOptions::new().retry(policy));
    started(&world, "running");
    assert!(aborted.abort());
    assert_eq!(aborted.try_result(), Some(Err(TaskError::Cancelled)));

    assert_eq!(other.result_timeout(PATIENCE), Err(TaskError::Cancelled));
    assert!(other.is_cancelled());
    assert_eq!(
        count(world.log(), "token", "running"),
        1,
        "the token was seen"
    );
    settled(&world);
    let status = world.status();
    assert_eq!((status.retried, status.published), (0, 1), "{status:?}");
    // Long enough for a retry's backoff (50 ms at most) to have come and gone.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(count(world.log(), "start", "running"), 1, "run once");
}

/// Finished: `abort` returns false and the value stands, here and on the broker.
fn an_abort_after_the_outcome_returns_false_and_the_value_stands() {
    let world = World::new("abort-finished");
    let pool = world.client(LEASE, 3);
    let _worker = world.worker(1, 0);
    let task = pool.submit_with_id("done", square, 7);
    assert_eq!(task.result_timeout(PATIENCE), Ok(49));
    assert!(!task.abort());
    assert_eq!(task.result(), Ok(49));
    assert!(!task.is_cancelled());
    let again = pool.submit_with_id("done", square, 7);
    assert_eq!(
        again.result_timeout(PATIENCE),
        Ok(49),
        "the broker keeps it"
    );
}

/// Aborts at staggered moments around short tasks' completion: every handle has exactly one
/// outcome, the one `abort`'s answer says (true: cancelled; false: the value), and a second
/// handle on the same task resolves once, with the value or cancelled.
fn an_abort_racing_completion_has_exactly_one_outcome() {
    let world = World::new("abort-race");
    let pool = world.client(LEASE, 3);
    let _worker = world.worker(4, 4);
    let mut outcomes = (0, 0);
    for i in 0..40u64 {
        let id = format!("race-{i}");
        let first = pool.submit_with_id(&id, traced, world.job(&id, 0));
        let second = pool.submit_with_id(&id, traced, world.job(&id, 0));
        std::thread::sleep(Duration::from_micros(500 * (i % 8)));
        let aborted = first.abort();
        let outcome = first.result_timeout(PATIENCE);
        if aborted {
            assert_eq!(outcome, Err(TaskError::Cancelled), "task {id}");
            outcomes.0 += 1;
        } else {
            assert!(outcome.is_ok(), "task {id}: {outcome:?}");
            outcomes.1 += 1;
        }
        match second.result_timeout(PATIENCE) {
            Ok(_) => assert!(!second.abort(), "task {id}: resolved, so too late"),
            Err(TaskError::Cancelled) => assert!(second.is_cancelled()),
            other => panic!("task {id}: {other:?}"),
        }
        assert!(count(world.log(), "start", &id) <= 1, "task {id} ran twice");
    }
    println!(
        "race: {} aborted first, {} finished first",
        outcomes.0, outcomes.1
    );
    settled(&world);
}

/// The worker running the task is SIGKILLed, then the task is aborted: the worker that reclaims
/// it after the lease acks it cancelled without running it again.
fn a_task_aborted_after_its_worker_was_killed_is_reclaimed_cancelled_not_run() {
    let world = World::new("abort-reclaimed");
    let pool = world.client(LEASE, 3);
    let mut victim = world.worker(1, 0);
    let (aborted, other) = two_handles(&pool, &world, "orphan", SubmitOptions::new());
    started(&world, "orphan");
    victim.signal(libc::SIGKILL);
    victim.wait();
    assert!(aborted.abort());
    // Recorded before any live worker could hand it over.
    wait_for("the abort to reach the broker", || {
        matches!(
            world
                .broker
                .cmd(&["ZCARD", "{futurepool:abort-reclaimed}:aborted"]),
            Reply::Int(1)
        )
    });
    let _heir = world.worker(1, 0);

    assert_eq!(other.result_timeout(PATIENCE), Err(TaskError::Cancelled));
    assert_eq!(count(world.log(), "start", "orphan"), 1, "not run again");
    settled(&world);
}
