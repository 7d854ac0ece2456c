//! `wait`, ported from CPython's `test_concurrent_futures/test_wait.py`.

use std::sync::mpsc;
use std::time::Duration;

use futurepool::{wait, ReturnWhen, Task, ThreadPool};

/// A task that runs until `release` is sent to (or dropped).
fn blocked(pool: &ThreadPool) -> (Task<i32>, mpsc::Sender<()>) {
    let (release, released) = mpsc::channel::<()>();
    let task = pool.submit(move || {
        let _ = released.recv();
        0
    });
    (task, release)
}

fn finished(pool: &ThreadPool, value: i32) -> Task<i32> {
    let task = pool.submit(move || value);
    task.wait();
    task
}

fn ids(tasks: &[Task<i32>]) -> Vec<i32> {
    tasks.iter().map(|t| t.result().unwrap_or(-1)).collect()
}

#[test]
fn first_completed_returns_once_one_is_done() {
    // CPython: test_first_completed.
    let pool = ThreadPool::new(2);
    let (slow, release) = blocked(&pool);
    let quick = pool.submit(|| 1);
    let (done, not_done) = wait([&slow, &quick], ReturnWhen::FirstCompleted, None);
    assert_eq!(ids(&done), [1]);
    assert!(not_done.len() == 1 && not_done[0].ptr_eq(&slow));
    drop(release);
}

#[test]
fn first_completed_with_one_already_done_returns_at_once() {
    // CPython: test_first_completed_some_already_completed.
    let pool = ThreadPool::new(2);
    let (slow, release) = blocked(&pool);
    let already = finished(&pool, 7);
    let (done, not_done) = wait([&slow, &already], ReturnWhen::FirstCompleted, None);
    assert_eq!((done.len(), not_done.len()), (1, 1));
    assert!(done[0].ptr_eq(&already));
    drop(release);
}

#[test]
fn first_exception_returns_at_the_first_failure() {
    // CPython: test_first_exception.
    let pool = ThreadPool::new(3);
    let (slow, release) = blocked(&pool);
    let ok = finished(&pool, 1);
    let failing = pool.submit(|| -> i32 { panic!("first exception test") });
    let (done, not_done) = wait([&slow, &ok, &failing], ReturnWhen::FirstException, None);
    assert_eq!(done.len(), 2, "the success and the failure");
    assert!(done.iter().any(|t| t.ptr_eq(&failing)));
    assert!(not_done.len() == 1 && not_done[0].ptr_eq(&slow));
    drop(release);
}

#[test]
fn first_exception_with_a_pre_failed_task_returns_at_once() {
    // CPython: test_first_exception_some_already_complete / test_first_exception_one_already_failed.
    let pool = ThreadPool::new(2);
    let (slow, release) = blocked(&pool);
    let failed = pool.submit_fallible(|| Err::<i32, _>("already failed"));
    failed.wait();
    let slow_fallible = {
        let slow = slow.clone();
        pool.submit_fallible(move || slow.result().map_err(|_| "unreachable"))
    };
    let (done, not_done) = wait([&slow_fallible, &failed], ReturnWhen::FirstException, None);
    assert!(done.len() == 1 && done[0].ptr_eq(&failed));
    assert_eq!(not_done.len(), 1);
    drop(release);
}

#[test]
fn first_exception_ignores_cancelled_tasks() {
    let pool = ThreadPool::new(1);
    let (slow, release) = blocked(&pool);
    let queued = pool.submit(|| 1);
    queued.cancel();
    let (done, not_done) = wait(
        [&slow, &queued],
        ReturnWhen::FirstException,
        Some(Duration::from_millis(20)),
    );
    assert!(done.len() == 1 && done[0].ptr_eq(&queued));
    assert!(
        not_done.len() == 1 && not_done[0].ptr_eq(&slow),
        "kept waiting"
    );
    drop(release);
}

#[test]
fn first_exception_without_failures_waits_for_all() {
    let pool = ThreadPool::new(2);
    let tasks: Vec<_> = (0..10).map(|i| pool.submit(move || i)).collect();
    let (done, not_done) = wait(&tasks, ReturnWhen::FirstException, None);
    assert_eq!((done.len(), not_done.len()), (10, 0));
}

#[test]
fn all_completed_waits_for_every_task() {
    // CPython: test_all_completed.
    let pool = ThreadPool::new(2);
    let ok = pool.submit(|| 1);
    let failing = pool.submit(|| -> i32 { panic!("all completed test") });
    let cancelled = {
        let (blocker, release) = blocked(&pool);
        let (blocker2, release2) = blocked(&pool);
        let queued = pool.submit(|| 3);
        queued.cancel();
        drop((release, release2));
        blocker.wait();
        blocker2.wait();
        queued
    };
    let (done, not_done) = wait([&ok, &failing, &cancelled], ReturnWhen::AllCompleted, None);
    assert_eq!((done.len(), not_done.len()), (3, 0));
}

#[test]
fn timeout_gives_a_partial_answer() {
    // CPython: test_timeout.
    let pool = ThreadPool::new(2);
    let (slow, release) = blocked(&pool);
    let quick = finished(&pool, 1);
    let (done, not_done) = wait(
        [&quick, &slow],
        ReturnWhen::AllCompleted,
        Some(Duration::from_millis(30)),
    );
    assert!(done.len() == 1 && done[0].ptr_eq(&quick));
    assert!(not_done.len() == 1 && not_done[0].ptr_eq(&slow));
    drop(release);
}

#[test]
fn duplicates_count_once() {
    // CPython: test_pending_calls_race / the set semantics of wait.
    let pool = ThreadPool::new(1);
    let a = finished(&pool, 1);
    let b = finished(&pool, 2);
    let (done, not_done) = wait([&a, &a.clone(), &b, &a], ReturnWhen::AllCompleted, None);
    assert_eq!(ids(&done), [1, 2]);
    assert!(not_done.is_empty());
}

#[test]
fn no_tasks_returns_at_once() {
    let tasks: Vec<Task<i32>> = Vec::new();
    for when in [
        ReturnWhen::FirstCompleted,
        ReturnWhen::FirstException,
        ReturnWhen::AllCompleted,
    ] {
        let (done, not_done) = wait(&tasks, when, None);
        assert!(done.is_empty() && not_done.is_empty());
    }
}

#[test]
fn many_tasks_completing_together_are_all_seen() {
    let pool = ThreadPool::new(2);
    let tasks: Vec<_> = (0..2_000).map(|i| pool.submit(move || i)).collect();
    let (done, not_done) = wait(&tasks, ReturnWhen::AllCompleted, None);
    assert_eq!((done.len(), not_done.len()), (2_000, 0));
    assert_eq!(
        ids(&done),
        (0..2_000).collect::<Vec<_>>(),
        "input order kept"
    );
}
