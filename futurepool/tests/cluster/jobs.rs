//! Issue 15: the cluster as a job queue. Retries of a task's own failure wait on the broker's
//! schedule, the handle resolves once with the final outcome and says how many runs it took.
//! Each test against a private `redis-server`, under the runner's watchdog.

use std::time::{Duration, Instant};

use futurepool::cluster::{ClusterPool, RetryPolicy, SubmitOptions};
use futurepool::TaskError;

use crate::support::*;
use crate::{explode, World, LEASE};

// ---- The functions the workers run ----------------------------------------------------------

/// `(log, tag, failures)`: fails its first `failures` runs (counted in the log, so across
/// workers), then succeeds with the number of the run that did.
pub fn flaky((log, tag, failures): (String, String, usize)) -> Result<usize, String> {
    log_line(&log, &format!("start {tag} {}", std::process::id()));
    let run = count(std::path::Path::new(&log), "start", &tag);
    if run <= failures {
        Err(format!("run {run} of {tag} failed"))
    } else {
        Ok(run)
    }
}

futurepool::register!(flaky);

pub const TESTS: &[(&str, fn())] = &[
    (
        "a_task_failing_twice_with_three_retries_resolves_ok_after_three_attempts",
        a_task_failing_twice_with_three_retries_resolves_ok_after_three_attempts,
    ),
    (
        "a_task_failing_always_resolves_with_its_last_error_after_the_budget",
        a_task_failing_always_resolves_with_its_last_error_after_the_budget,
    ),
    (
        "panics_are_retried_only_when_the_policy_counts_them",
        panics_are_retried_only_when_the_policy_counts_them,
    ),
    (
        "a_policy_registered_for_the_function_applies_to_its_submits",
        a_policy_registered_for_the_function_applies_to_its_submits,
    ),
    (
        "a_retry_waits_on_the_broker_schedule_not_on_a_worker",
        a_retry_waits_on_the_broker_schedule_not_on_a_worker,
    ),
];

fn quick(max_retries: u32) -> RetryPolicy {
    RetryPolicy::new(max_retries).backoff(Duration::from_millis(50), Duration::from_millis(200))
}

fn job(world: &World, tag: &str, failures: usize) -> (String, String, usize) {
    (world.log.clone(), tag.to_string(), failures)
}

/// The first proof: fails twice, succeeds on the third run, within a budget of three.
fn a_task_failing_twice_with_three_retries_resolves_ok_after_three_attempts() {
    let world = World::new("retry-ok");
    let pool = world.client(LEASE, 3);
    let _worker = world.worker(2, 2);
    let options = SubmitOptions::new().retry(quick(3));
    let task = pool.submit_fallible_with(&options, flaky, job(&world, "twice", 2));
    assert_eq!(task.result_timeout(PATIENCE), Ok(3));
    assert_eq!(task.attempts(), Some(3));
    assert_eq!(count(world.log(), "start", "twice"), 3);
    let status = world.status();
    assert_eq!(
        (status.retried, status.scheduled, status.published),
        (2, 0, 1),
        "two runs retried, one outcome published: {status:?}"
    );
    // Without a policy the same failure is final at once: nothing changes for ordinary tasks.
    let plain = pool.submit_fallible(flaky, job(&world, "plain", 1));
    assert_eq!(
        plain.result_timeout(PATIENCE),
        Err(TaskError::Failed("run 1 of plain failed".into()))
    );
    assert_eq!(plain.attempts(), None);
}

/// The second proof: a task that always fails resolves with the error of its last run.
fn a_task_failing_always_resolves_with_its_last_error_after_the_budget() {
    let world = World::new("retry-exhausted");
    let pool = world.client(LEASE, 3);
    let _worker = world.worker(2, 2);
    let options = SubmitOptions::new().retry(quick(2));
    let task = pool.submit_fallible_with(&options, flaky, job(&world, "always", usize::MAX));
    assert_eq!(
        task.result_timeout(PATIENCE),
        Err(TaskError::Failed("run 3 of always failed".into()))
    );
    assert_eq!(task.attempts(), Some(3));
    // Nothing runs after the budget, and nothing stays scheduled.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(count(world.log(), "start", "always"), 3);
    assert_eq!(world.status().scheduled, 0);
}

fn panics_are_retried_only_when_the_policy_counts_them() {
    let world = World::new("retry-panics");
    let pool = world.client(LEASE, 3);
    let _worker = world.worker(2, 2);
    let counted = SubmitOptions::new().retry(quick(1).on_panic(true));
    let task = pool.submit_with(&counted, explode, (world.log.clone(), "counted".into()));
    assert!(matches!(
        task.result_timeout(PATIENCE),
        Err(TaskError::Panicked(_))
    ));
    assert_eq!(task.attempts(), Some(2));
    assert_eq!(count(world.log(), "start", "counted"), 2);

    let not_counted = SubmitOptions::new().retry(quick(3));
    let task = pool.submit_with(&not_counted, explode, (world.log.clone(), "once".into()));
    assert!(matches!(
        task.result_timeout(PATIENCE),
        Err(TaskError::Panicked(_))
    ));
    assert_eq!(task.attempts(), Some(1));
    assert_eq!(count(world.log(), "start", "once"), 1);
}

fn a_policy_registered_for_the_function_applies_to_its_submits() {
    let world = World::new("retry-per-function");
    let pool = ClusterPool::builder(&world.broker.url())
        .pool(&world.pool)
        .lease(LEASE)
        .retry(flaky, quick(3))
        .build()
        .expect("connect the client");
    let _worker = world.worker(2, 2);
    let task = pool.submit_fallible(flaky, job(&world, "registered", 2));
    assert_eq!(task.result_timeout(PATIENCE), Ok(3));
    assert_eq!(task.attempts(), Some(3));
    // A policy given at submit wins over the registered one.
    let options = SubmitOptions::new().retry(quick(0));
    let task = pool.submit_fallible_with(&options, flaky, job(&world, "override", 2));
    assert_eq!(
        task.result_timeout(PATIENCE),
        Err(TaskError::Failed("run 1 of override failed".into()))
    );
    assert_eq!(task.attempts(), Some(1));
}

/// While a retry waits for its backoff no worker holds it: the worker can die and another one,
/// started later, runs the retry.
fn a_retry_waits_on_the_broker_schedule_not_on_a_worker() {
    let world = World::new("retry-scheduled");
    let pool = world.client(LEASE, 3);
    let worker = world.worker(1, 0);
    let backoff = Duration::from_secs(4);
    let options = SubmitOptions::new().retry(RetryPolicy::new(1).backoff(backoff, backoff));
    let submitted = Instant::now();
    let task = pool.submit_fallible_with(&options, flaky, job(&world, "later", 1));
    wait_for("the first run to fail and be scheduled", || {
        world.status().scheduled == 1
    });
    let status = world.status();
    assert_eq!((status.in_flight, status.queued), (0, 0), "{status:?}");
    drop(worker);
    let _replacement = world.worker(1, 0);
    assert_eq!(task.result_timeout(PATIENCE), Ok(2));
    assert_eq!(task.attempts(), Some(2));
    // Equal jitter: at least half the backoff passed before the second run.
    assert!(
        submitted.elapsed() >= backoff / 2,
        "{:?}",
        submitted.elapsed()
    );
}
