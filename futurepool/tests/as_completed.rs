//! `as_completed`, ported from CPython's
//! `test_concurrent_futures/test_as_completed.py`.

use std::sync::{mpsc, Arc, Weak};
use std::time::Duration;

use futurepool::{as_completed, AsCompletedTimeout, Shutdown, Task, ThreadPool};

fn blocked(pool: &ThreadPool) -> (Task<i32>, mpsc::Sender<()>) {
    let (release, released) = mpsc::channel::<()>();
    let task = pool.submit(move || {
        let _ = released.recv();
        0
    });
    (task, release)
}

#[test]
fn already_finished_tasks_come_first_then_completion_order() {
    // CPython: test_no_timeout.
    let pool = ThreadPool::new(3);
    let (first, release_first) = blocked(&pool);
    let (second, release_second) = blocked(&pool);
    let done_before = pool.submit(|| 9);
    done_before.wait();
    let tasks = [&first, &second, &done_before];
    let mut yielded = as_completed(tasks, None);
    assert!(yielded.next().unwrap().unwrap().ptr_eq(&done_before));
    // Release in the opposite order of submission: completion order wins.
    drop(release_second);
    assert!(yielded.next().unwrap().unwrap().ptr_eq(&second));
    drop(release_first);
    assert!(yielded.next().unwrap().unwrap().ptr_eq(&first));
    assert!(yielded.next().is_none());
}

#[test]
fn each_task_is_yielded_once() {
    // CPython: test_duplicate_futures.
    let pool = ThreadPool::new(2);
    let a = pool.submit(|| 1);
    let b = pool.submit(|| 2);
    let yielded: Vec<_> = as_completed([&a, &b, &a.clone(), &b], None)
        .map(Result::unwrap)
        .collect();
    assert_eq!(yielded.len(), 2);
}

#[test]
fn timeout_yields_an_error_naming_unfinished_of_total_then_ends() {
    // CPython: test_future_times_out ("2 (of 4) futures unfinished").
    let pool = ThreadPool::new(4);
    let (slow_a, release_a) = blocked(&pool);
    let (slow_b, release_b) = blocked(&pool);
    let quick_a = pool.submit(|| 1);
    let quick_b = pool.submit(|| 2);
    quick_a.wait();
    quick_b.wait();
    let mut yielded = as_completed(
        [&slow_a, &quick_a, &slow_b, &quick_b],
        Some(Duration::from_millis(30)),
    );
    assert!(yielded.next().unwrap().is_ok());
    assert!(yielded.next().unwrap().is_ok());
    let error = yielded.next().unwrap().unwrap_err();
    assert_eq!(
        error,
        AsCompletedTimeout {
            unfinished: 2,
            total: 4
        }
    );
    assert_eq!(error.to_string(), "timed out with 2 of 4 tasks unfinished");
    assert!(yielded.next().is_none(), "ends after the timeout");
    drop((release_a, release_b));
}

#[test]
fn zero_timeout_still_yields_the_finished_ones() {
    // CPython: test_zero_timeout.
    let pool = ThreadPool::new(1);
    let (slow, release) = blocked(&pool);
    let queued = pool.submit(|| 1);
    queued.cancel();
    let results: Vec<_> = as_completed([&slow, &queued], Some(Duration::ZERO)).collect();
    assert!(results[0].as_ref().unwrap().ptr_eq(&queued));
    assert_eq!(
        results[1].as_ref().err(),
        Some(&AsCompletedTimeout {
            unfinished: 1,
            total: 2
        })
    );
    assert_eq!(results.len(), 2);
    drop(release);
}

#[test]
fn it_holds_no_task_it_has_yielded() {
    // CPython: test_free_reference_yielded_future.
    let pool = ThreadPool::new(1);
    let (release, released) = mpsc::channel::<()>();
    let watched = pool.submit(move || {
        let _ = released.recv();
        Arc::new("payload")
    });
    let mut yielded = as_completed([&watched], None);
    drop(release);
    let task = yielded.next().unwrap().unwrap();
    let value: Weak<&str> = Arc::downgrade(&task.result().unwrap());
    // Join the worker, so its own reference to the task is certainly gone.
    pool.shutdown(Shutdown::default());
    drop(task);
    drop(watched);
    assert!(
        value.upgrade().is_none(),
        "the iterator still holds the yielded task"
    );
    assert!(yielded.next().is_none());
}

#[test]
fn dropping_it_stops_watching_the_rest() {
    let pool = ThreadPool::new(1);
    let (slow, release) = blocked(&pool);
    let mut yielded = as_completed([&slow], Some(Duration::from_millis(1)));
    assert!(yielded.next().unwrap().is_err());
    drop(yielded);
    // The task completes later without anyone left to notify; it must still finish cleanly.
    drop(release);
    assert_eq!(slow.result(), Ok(0));
}

#[test]
fn correct_with_many_tasks_completing_concurrently() {
    let pool = ThreadPool::new(4);
    let tasks: Vec<_> = (0..5_000u32).map(|i| pool.submit(move || i)).collect();
    let mut seen: Vec<u32> = as_completed(&tasks, None)
        .map(|t| t.unwrap().result().unwrap())
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..5_000).collect::<Vec<_>>());
}
