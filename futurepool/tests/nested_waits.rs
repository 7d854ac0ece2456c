//! Nested waits never deadlock (issue 16): a worker that waits on a task of its own pool runs the
//! pool's queued jobs meanwhile. Every case fills *every* worker with a waiting task, so without
//! help-while-waiting nothing could ever run the inner tasks (each hangs on the code before it).

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use futurepool::{as_completed, wait, ReturnWhen, ThreadPool};
use support::{chain, within};

const LIMIT: Duration = Duration::from_secs(60);
const WORKER_COUNTS: [usize; 3] = [1, 2, 4];

/// Runs `outer(pool)` as `workers` tasks at once on a pool of `workers` threads and checks each
/// returns `expected`.
fn on_every_worker(workers: usize, expected: u64, outer: fn(&Arc<ThreadPool>) -> u64) {
    let pool = Arc::new(ThreadPool::new(workers));
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let inner = Arc::clone(&pool);
            pool.submit(move || outer(&inner))
        })
        .collect();
    for task in &tasks {
        assert_eq!(task.result(), Ok(expected), "{workers} workers");
    }
}

/// Python's classic deadlock: a task waits on another task of its own one-worker pool.
#[test]
fn a_task_waiting_on_its_own_pool_completes_with_result() {
    within(LIMIT, "nested result", || {
        for workers in WORKER_COUNTS {
            on_every_worker(workers, 42, |pool| pool.submit(|| 42).result().unwrap());
        }
    });
}

#[test]
fn a_task_waiting_on_its_own_pool_completes_with_result_timeout_and_wait() {
    within(LIMIT, "nested result_timeout / wait", || {
        for workers in WORKER_COUNTS {
            on_every_worker(workers, 7, |pool| {
                let a = pool.submit(|| 3);
                let b = pool.submit(|| 4);
                b.wait();
                a.result_timeout(Duration::from_secs(30)).unwrap() + b.result().unwrap()
            });
        }
    });
}

#[test]
fn a_task_waiting_on_its_own_pool_completes_with_wait_and_as_completed() {
    within(LIMIT, "nested wait / as_completed", || {
        for workers in WORKER_COUNTS {
            on_every_worker(workers, 20, |pool| {
                let tasks: Vec<_> = (1..=4u64).map(|n| pool.submit(move || n)).collect();
                let (done, not_done) = wait(&tasks, ReturnWhen::AllCompleted, None);
                assert_eq!((done.len(), not_done.len()), (4, 0));
                let again: Vec<_> = (1..=4u64).map(|n| pool.submit(move || n)).collect();
                let sum: u64 = as_completed(&again, None)
                    .map(|t| t.unwrap().result().unwrap())
                    .sum();
                10 + sum
            });
        }
    });
}

#[test]
fn a_task_iterating_a_map_of_its_own_pool_completes() {
    within(LIMIT, "nested map", || {
        for workers in WORKER_COUNTS {
            on_every_worker(workers, 30, |pool| {
                let ordered: u64 = pool.map(|n: u64| n * n, 1..=4).map(Result::unwrap).sum();
                let unordered: u64 = pool
                    .map_unordered(|n: u64| n, [0u64])
                    .map(Result::unwrap)
                    .sum();
                ordered + unordered
            });
        }
    });
}

/// The callback case: a done-callback runs on the worker that finished the task, submits to the
/// same pool and waits.
#[test]
fn a_callback_that_submits_and_waits_on_its_own_pool_completes() {
    within(LIMIT, "nested wait in a callback", || {
        for workers in WORKER_COUNTS {
            let pool = Arc::new(ThreadPool::new(workers));
            let (tx, rx) = mpsc::channel();
            // Keep every worker busy with a task whose callback waits on the pool.
            let (gate_tx, gate_rx) = mpsc::channel::<()>();
            let gate_rx = Arc::new(std::sync::Mutex::new(gate_rx));
            let tasks: Vec<_> = (0..workers)
                .map(|_| {
                    let gate = Arc::clone(&gate_rx);
                    pool.submit(move || {
                        let _ = gate.lock().unwrap().recv_timeout(Duration::from_secs(30));
                    })
                })
                .collect();
            for task in &tasks {
                let (inner, tx) = (Arc::clone(&pool), tx.clone());
                task.add_done_callback(move |_| {
                    tx.send(inner.submit(|| 5).result()).unwrap();
                });
            }
            for _ in 0..workers {
                gate_tx.send(()).unwrap();
            }
            for _ in 0..workers {
                assert_eq!(rx.recv_timeout(LIMIT), Ok(Ok(5)), "{workers} workers");
            }
        }
    });
}

/// Recursive fan-out: each level waits on two tasks of the same pool (depth 6: 127 tasks, all
/// waiting but the leaves), on pools smaller than the number of waiters.
#[test]
fn recursive_waits_on_a_small_pool_complete() {
    fn count(pool: &Arc<ThreadPool>, depth: u32) -> u64 {
        if depth == 0 {
            return 1;
        }
        let (a, b) = (Arc::clone(pool), Arc::clone(pool));
        let left = pool.submit(move || count(&a, depth - 1));
        let right = pool.submit(move || count(&b, depth - 1));
        1 + left.result().unwrap() + right.result().unwrap()
    }
    within(LIMIT, "recursive nested waits", || {
        for workers in WORKER_COUNTS {
            let pool = Arc::new(ThreadPool::new(workers));
            let inner = Arc::clone(&pool);
            assert_eq!(pool.submit(move || count(&inner, 6)).result(), Ok(127));
        }
    });
}

/// A scope opened inside a task of its own pool: the task waits for the scope's tasks while
/// holding the only worker.
#[test]
fn a_scope_inside_a_task_of_its_own_pool_completes() {
    within(LIMIT, "nested scope", || {
        for workers in WORKER_COUNTS {
            on_every_worker(workers, 10, |pool| {
                let data = [1u64, 2, 3, 4];
                pool.scope(|s| {
                    let (low, high) = data.split_at(2);
                    let a = s.submit(|| low.iter().sum::<u64>());
                    let b = s.submit(|| high.iter().sum::<u64>());
                    a.result().unwrap() + b.result().unwrap()
                })
            });
        }
    });
}

/// A job the waiter runs may panic: its own task fails, the waiting task goes on.
#[test]
fn a_panicking_job_run_while_waiting_fails_only_itself() {
    within(LIMIT, "nested panic", || {
        let pool = Arc::new(ThreadPool::new(1));
        let inner = Arc::clone(&pool);
        let outer = pool.submit(move || {
            let bad = inner.submit(|| -> u8 { panic!("nested kaboom") });
            let good = inner.submit(|| 9u8);
            (bad.result().is_err(), good.result())
        });
        assert_eq!(outer.result(), Ok((true, Ok(9))));
        assert_eq!(pool.submit(|| 1).result(), Ok(1), "the worker lives on");
    });
}

/// A waiter whose own wait ends helps no further: once its task is done it returns, even with
/// jobs still queued (here, a slow job submitted by another thread keeps the queue busy).
#[test]
fn a_waiter_stops_helping_once_its_task_is_done() {
    within(LIMIT, "helping stops", || {
        let pool = Arc::new(ThreadPool::new(1));
        let ran_inside = Arc::new(AtomicUsize::new(0));
        let (inner, counter) = (Arc::clone(&pool), Arc::clone(&ran_inside));
        let outer = pool.submit(move || {
            let mine = inner.submit(|| 1);
            // Queued after `mine`: the waiter finds `mine` done first and must not run these.
            let later: Vec<_> = (0..3)
                .map(|_| {
                    let counter = Arc::clone(&counter);
                    inner.submit(move || counter.fetch_add(1, Ordering::SeqCst))
                })
                .collect();
            let value = mine.result().unwrap();
            (value, counter.load(Ordering::SeqCst), later)
        });
        let (value, ran_while_waiting, later) = outer.result().unwrap();
        assert_eq!(value, 1);
        assert_eq!(
            ran_while_waiting, 0,
            "the waiter ran jobs queued after its own"
        );
        for task in later {
            task.wait();
        }
        assert_eq!(ran_inside.load(Ordering::SeqCst), 3);
    });
}

/// Regression: helping waits nested at most 64 deep, and the 65th blocked without helping, so a
/// chain of 65 nested `submit(..).result()` on a one-worker pool never finished. The bound is now
/// the worker's stack.
#[test]
fn nested_waits_deeper_than_64_complete_on_one_worker() {
    within(LIMIT, "a chain of 300 nested waits", || {
        let pool = Arc::new(ThreadPool::new(1));
        let inner = Arc::clone(&pool);
        assert_eq!(pool.submit(move || chain(&inner, 300)).result(), Ok(300));
    });
}

/// With bigger stacks (`ThreadPoolBuilder::stack_size`), nesting goes as deep as they allow.
#[test]
fn nested_waits_go_as_deep_as_the_workers_stack_allows() {
    within(LIMIT, "a chain of 5,000 nested waits", || {
        let pool = Arc::new(
            ThreadPool::builder()
                .max_workers(1)
                .stack_size(64 << 20)
                .build(),
        );
        let inner = Arc::clone(&pool);
        assert_eq!(
            pool.submit(move || chain(&inner, 5_000)).result(),
            Ok(5_000)
        );
    });
}

/// Past the end of its worker's stack (about 550 links unoptimised, 2,000 optimised, with the
/// default 2 MiB), a wait lends a thread with a fresh stack that runs the queued jobs for it: a
/// one-worker pool still completes the chain.
#[test]
fn nested_waits_deeper_than_the_workers_stack_complete_on_lent_threads() {
    within(
        LIMIT,
        "a chain of 5,000 nested waits on default stacks",
        || {
            let pool = Arc::new(ThreadPool::new(1));
            let inner = Arc::clone(&pool);
            assert_eq!(
                pool.submit(move || chain(&inner, 5_000)).result(),
                Ok(5_000)
            );
            // The pool is whole afterwards: the lent threads are gone and its worker takes work.
            assert_eq!(pool.submit(|| 7).result(), Ok(7));
            assert_eq!(pool.worker_count(), 1);
        },
    );
}
