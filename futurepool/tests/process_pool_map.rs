//! `map` on a process pool: chunking, order, per-item errors, laziness, the unordered variant,
//! and the shared `wait` / `as_completed` on process tasks.

use std::time::Duration;

use futurepool::{as_completed, wait, Executor, ProcessPool, ReturnWhen, TaskError, WorkerLoss};

fn square(n: u64) -> u64 {
    n * n
}
fn checked_half(n: u64) -> Result<u64, String> {
    if n.is_multiple_of(2) {
        Ok(n / 2)
    } else {
        Err(format!("{n} is odd"))
    }
}
fn panics_on_seven(n: u64) -> u64 {
    assert_ne!(n, 7, "seven is not allowed");
    n
}
fn abort_on_seven(n: u64) -> u64 {
    if n == 7 {
        std::process::abort();
    }
    n
}
fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

futurepool::register!(square, checked_half, panics_on_seven, abort_on_seven, nap);
futurepool::test_support!();

#[test]
fn chunksize_does_not_change_the_results() {
    // CPython: test_map_chunksize / chunksize equivalence.
    let pool = ProcessPool::new(2).unwrap();
    let expected: Vec<u64> = (0..1000).map(|n| n * n).collect();
    for chunksize in [1, 2, 7, 64, 1000, 5000] {
        let got: Vec<u64> = pool
            .map(square, 0..1000)
            .chunksize(chunksize)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(got, expected, "chunksize {chunksize}");
    }
    let automatic: Vec<u64> = pool.map(square, 0..1000).collect::<Result<_, _>>().unwrap();
    assert_eq!(automatic, expected);
}

#[test]
fn each_item_error_is_in_its_place_and_iteration_goes_on() {
    let pool = ProcessPool::new(2).unwrap();
    let out: Vec<_> = pool.map_fallible(checked_half, 0..6).chunksize(4).collect();
    assert_eq!(out[0], Ok(0));
    assert_eq!(out[1], Err(TaskError::Failed("1 is odd".into())));
    assert_eq!(out[4], Ok(2));
    assert_eq!(out.len(), 6);

    let out: Vec<_> = pool.map(panics_on_seven, 0..10).chunksize(4).collect();
    for (n, result) in out.iter().enumerate() {
        match (n, result) {
            (7, Err(TaskError::Panicked(panic))) => {
                assert!(panic.message().contains("seven is not allowed"))
            }
            (_, Ok(v)) => assert_eq!(*v, n as u64),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn a_chunk_whose_worker_dies_fails_each_of_its_items_only() {
    let pool = ProcessPool::new(2).unwrap();
    let out: Vec<_> = pool.map(abort_on_seven, 0..20).chunksize(5).collect();
    for (n, result) in out.iter().enumerate() {
        if (5..10).contains(&n) {
            assert_eq!(
                *result,
                Err(TaskError::WorkerLost(WorkerLoss::Signaled(6))),
                "item {n}"
            );
        } else {
            assert_eq!(*result, Ok(n as u64), "item {n}");
        }
    }
}

#[test]
fn map_is_lazy_and_works_on_endless_input() {
    let pool = ProcessPool::new(2).unwrap();
    let first: Vec<u64> = pool
        .map(square, 0u64..)
        .buffer(4)
        .take(5)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(first, [0, 1, 4, 9, 16]);
}

#[test]
fn map_timeout_yields_one_timeout_and_ends() {
    let pool = ProcessPool::new(1).unwrap();
    let out: Vec<_> = pool
        .map(nap, [0, 60_000, 0])
        .chunksize(1)
        .timeout(Duration::from_millis(300))
        .collect();
    assert_eq!(out, [Ok(0), Err(TaskError::Timeout)]);
    pool.kill_workers();
}

#[test]
fn unordered_map_yields_every_result_once() {
    let pool = ProcessPool::new(2).unwrap();
    let mut out: Vec<u64> = pool
        .map_unordered(square, 0..500)
        .collect::<Result<_, _>>()
        .unwrap();
    out.sort_unstable();
    assert_eq!(out, (0..500).map(|n| n * n).collect::<Vec<_>>());
    let failures = pool
        .map_unordered_fallible(checked_half, 0..100)
        .filter(Result::is_err)
        .count();
    assert_eq!(failures, 50);
}

#[test]
fn executor_map_fn_runs_unchunked_through_the_trait() {
    let pool = ProcessPool::new(2).unwrap();
    let out: Vec<u64> = pool
        .map_fn(square, 0..50)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(out, (0..50).map(|n| n * n).collect::<Vec<_>>());
}

#[test]
fn wait_and_as_completed_accept_process_tasks() {
    let pool = ProcessPool::new(2).unwrap();
    let tasks = vec![pool.submit(nap, 300), pool.submit(nap, 0)];
    let (done, _) = wait(&tasks, ReturnWhen::FirstCompleted, None);
    assert!(!done.is_empty());
    let order: Vec<u64> = as_completed(&tasks, None)
        .map(|t| t.unwrap().result().unwrap())
        .collect();
    assert_eq!(order.len(), 2);
}
