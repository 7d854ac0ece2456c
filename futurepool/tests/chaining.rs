//! Chaining (issue 16): `then`, `Task::all`, `Task::any`, with failures and cancellation
//! propagating and no thread blocked while a chained task waits.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use futurepool::{Shutdown, Task, TaskError, ThreadPool};
use support::within;

const LIMIT: Duration = Duration::from_secs(60);

/// A task on `pool` that returns `value` once the returned sender sends (or is dropped).
fn gated<T: Clone + Send + Sync + 'static>(
    pool: &ThreadPool,
    value: T,
) -> (mpsc::Sender<()>, Task<T>) {
    let (open, gate) = mpsc::channel::<()>();
    let task = pool.submit(move || {
        let _ = gate.recv_timeout(LIMIT);
        value
    });
    (open, task)
}

#[test]
fn then_runs_on_the_value_and_chains() {
    within(LIMIT, "then chain", || {
        let pool = ThreadPool::new(2);
        let base = pool.submit(|| 2u64);
        let chained = base
            .then(&pool, |n| n * 10)
            .then(&pool, |n| n + 1)
            .then(&pool, |n| format!("{n}"));
        assert_eq!(chained.result(), Ok("21".to_string()));
        assert_eq!(base.result(), Ok(2), "the first task keeps its value");
    });
}

#[test]
fn then_blocks_no_thread_of_the_pool_while_it_waits() {
    within(LIMIT, "then waits without a thread", || {
        let upstream_pool = ThreadPool::new(1);
        let pool = ThreadPool::new(1);
        let (open, upstream) = gated(&upstream_pool, 5u32);
        let dependents: Vec<_> = (0..100)
            .map(|i| upstream.then(&pool, move |v| v + i))
            .collect();
        // The chaining pool's only worker is free while the dependents wait.
        assert_eq!(pool.submit(|| "free").result_timeout(LIMIT), Ok("free"));
        assert!(dependents.iter().all(|d| !d.is_done()));
        open.send(()).unwrap();
        for (i, dependent) in dependents.iter().enumerate() {
            assert_eq!(dependent.result(), Ok(5 + i as u32));
        }
        assert_eq!(pool.worker_count(), 1);
    });
}

#[test]
fn then_propagates_failures_and_panics_without_running() {
    within(LIMIT, "then failures", || {
        let pool = ThreadPool::new(2);
        let ran = Arc::new(AtomicBool::new(false));
        let failed = pool.submit_fallible(|| Err::<u8, _>("disk full"));
        let panicked = pool.submit(|| -> u8 { panic!("chain kaboom") });
        let (r1, r2) = (Arc::clone(&ran), Arc::clone(&ran));
        let after_failure = failed.then(&pool, move |v| {
            r1.store(true, Ordering::SeqCst);
            v
        });
        let after_panic = panicked.then(&pool, move |v| {
            r2.store(true, Ordering::SeqCst);
            v
        });
        assert_eq!(after_failure.result(), Err(TaskError::Failed("disk full")));
        match after_panic.result() {
            Err(TaskError::Panicked(p)) => assert_eq!(p.message(), "chain kaboom"),
            other => panic!("expected the upstream panic, got {other:?}"),
        }
        assert!(!ran.load(Ordering::SeqCst), "f ran after a failure");
    });
}

#[test]
fn then_propagates_cancellation_both_ways() {
    within(LIMIT, "then cancellation", || {
        let pool = ThreadPool::new(1);
        let ran = Arc::new(AtomicBool::new(false));
        let (open, blocker) = gated(&pool, ());
        // Upstream cancelled: the dependent is cancelled, f never runs.
        let queued = pool.submit(|| 1u8);
        let r = Arc::clone(&ran);
        let dependent = queued.then(&pool, move |v| {
            r.store(true, Ordering::SeqCst);
            v
        });
        assert!(queued.cancel());
        assert!(dependent.is_cancelled());
        // Dependent cancelled first: f never runs, the upstream is unaffected.
        let upstream = pool.submit(|| 2u8);
        let r = Arc::clone(&ran);
        let unwanted = upstream.then(&pool, move |v| {
            r.store(true, Ordering::SeqCst);
            v
        });
        assert!(unwanted.cancel());
        open.send(()).unwrap();
        blocker.wait();
        assert_eq!(upstream.result(), Ok(2));
        // The dependent's job went through the pool: a later task finishing means it was seen.
        pool.submit(|| ()).wait();
        assert!(unwanted.is_cancelled());
        assert!(!ran.load(Ordering::SeqCst));
    });
}

#[test]
fn then_on_a_pool_shut_down_meanwhile_ends_shut_down() {
    within(LIMIT, "then after shutdown", || {
        let upstream_pool = ThreadPool::new(1);
        let pool = ThreadPool::new(1);
        let (open, upstream) = gated(&upstream_pool, 1u8);
        let dependent = upstream.then(&pool, |v| v);
        pool.shutdown(Shutdown::default());
        open.send(()).unwrap();
        assert_eq!(dependent.result(), Err(TaskError::ShutDown));
    });
}

#[test]
fn all_and_any_over_pool_tasks() {
    within(LIMIT, "all / any", || {
        let pool = ThreadPool::new(4);
        let tasks: Vec<_> = (0..50u64).map(|n| pool.submit(move || n)).collect();
        let sum = Task::all(&tasks).then(&pool, |values| values.iter().sum::<u64>());
        assert_eq!(sum.result(), Ok(49 * 50 / 2));

        let failing = pool.submit_fallible(|| Err::<u64, _>("bad mirror"));
        let (open, gate) = mpsc::channel::<()>();
        let good = pool.submit_fallible(move || {
            let _ = gate.recv_timeout(LIMIT);
            Ok::<u64, &str>(7)
        });
        assert_eq!(
            Task::all([&failing, &good]).result(),
            Err(TaskError::Failed("bad mirror")),
            "all fails on the first failure, without waiting for the rest"
        );
        let any = Task::any([&failing, &good]);
        open.send(()).unwrap();
        assert_eq!(any.result(), Ok(7));
    });
}
