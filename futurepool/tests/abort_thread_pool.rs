//! Issue 13 on threads: `Task::abort`, the task's `CancelToken`, `Shutdown::abort_running`, and
//! dropping a map. Threads cannot be killed, so a running task's abort is cooperative: its token
//! is set and the handle resolves `Cancelled` when the closure returns, its value discarded.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use futurepool::{current_token, CancelToken, Shutdown, TaskError, ThreadPool};
use support::within;

const LIMIT: Duration = Duration::from_secs(60);

/// A task that reports it started, then spins on its token until aborted; returns how long it
/// looked (never read when aborted: the value is discarded).
fn until_aborted(started: mpsc::Sender<()>) -> impl FnOnce() -> u32 + Send + 'static {
    move || {
        started.send(()).unwrap();
        let token = current_token();
        let mut polls = 0;
        while !token.is_cancelled() {
            std::thread::sleep(Duration::from_millis(1));
            polls += 1;
        }
        polls
    }
}

#[test]
fn abort_of_a_pending_task_cancels_it_now() {
    within(LIMIT, "abort pending", || {
        let pool = ThreadPool::new(1);
        let (started_tx, started) = mpsc::channel();
        let blocker = pool.submit(until_aborted(started_tx));
        started.recv().unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        let queued = pool.submit({
            let ran = ran.clone();
            move || ran.fetch_add(1, Ordering::SeqCst)
        });
        assert!(queued.abort());
        assert!(
            queued.is_cancelled() && queued.is_done(),
            "cancelled at once"
        );
        assert!(queued.abort() && queued.cancel(), "idempotent");
        assert!(blocker.abort());
        assert_eq!(blocker.result(), Err(TaskError::Cancelled));
        pool.shutdown(Shutdown::default());
        assert_eq!(
            ran.load(Ordering::SeqCst),
            0,
            "an aborted pending task never runs"
        );
    });
}

#[test]
fn abort_of_a_running_task_sets_its_token_and_discards_its_value() {
    within(LIMIT, "abort running", || {
        let pool = ThreadPool::new(2);
        let (started_tx, started) = mpsc::channel();
        let task = pool.submit(until_aborted(started_tx));
        started.recv().unwrap();
        assert!(
            !task.cancel(),
            "cancel keeps Python's meaning: pending only"
        );
        assert!(task.is_running());
        assert!(task.abort());
        assert!(task.abort(), "a second abort answers true too");
        assert_eq!(task.result(), Err(TaskError::Cancelled));
        assert!(task.is_cancelled() && task.is_done() && !task.is_running());
        assert!(
            task.cancel(),
            "cancel on a cancelled task answers true (F1)"
        );
        // The worker lives on and the next task's token is fresh.
        let next = pool.submit(|| current_token().is_cancelled());
        assert_eq!(next.result(), Ok(false));
    });
}

#[test]
fn abort_of_a_finished_task_is_refused_and_keeps_the_value() {
    within(LIMIT, "abort finished", || {
        let pool = ThreadPool::new(1);
        let task = pool.submit(|| 7);
        task.wait();
        assert!(!task.abort());
        assert_eq!(task.result(), Ok(7));
        assert!(!task.is_cancelled());
    });
}

#[test]
fn a_task_that_ignores_its_token_resolves_only_when_it_returns() {
    within(LIMIT, "abort ignored", || {
        let pool = ThreadPool::new(1);
        let (started_tx, started) = mpsc::channel();
        let (release, release_rx) = mpsc::channel::<()>();
        let task = pool.submit(move || {
            started_tx.send(()).unwrap();
            release_rx.recv().unwrap();
            current_token().is_cancelled()
        });
        started.recv().unwrap();
        assert!(task.abort());
        assert!(
            !task.wait_timeout(Duration::from_millis(50)),
            "a thread cannot be killed: the handle waits for the closure"
        );
        release.send(()).unwrap();
        assert_eq!(task.result(), Err(TaskError::Cancelled));
    });
}

#[test]
fn abort_racing_completion_has_exactly_one_outcome() {
    within(LIMIT, "abort racing completion", || {
        let pool = ThreadPool::new(2);
        let mut aborted = 0;
        for i in 0..2_000u32 {
            let task = pool.submit(move || i);
            let won = task.abort();
            match task.result() {
                Err(TaskError::Cancelled) => {
                    assert!(won, "ended cancelled though abort answered false");
                    aborted += 1;
                }
                Ok(v) => {
                    assert!(!won, "abort answered true but the value {v} stood");
                    assert_eq!(v, i);
                }
                other => panic!("unexpected outcome {other:?}"),
            }
        }
        eprintln!("{aborted} of 2000 aborted");
    });
}

#[test]
fn aborted_tasks_run_each_callback_once_and_wake_waiters() {
    within(LIMIT, "abort callbacks", || {
        let pool = ThreadPool::new(1);
        let (started_tx, started) = mpsc::channel();
        let task = pool.submit(until_aborted(started_tx));
        started.recv().unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let (seen_tx, seen) = mpsc::channel();
        task.add_done_callback({
            let calls = calls.clone();
            move |t| {
                calls.fetch_add(1, Ordering::SeqCst);
                seen_tx.send(t.is_cancelled()).unwrap();
            }
        });
        let waiter = {
            let task = task.clone();
            std::thread::spawn(move || task.result())
        };
        task.abort();
        assert_eq!(waiter.join().unwrap(), Err(TaskError::Cancelled));
        assert!(seen.recv().unwrap());
        pool.shutdown(Shutdown::default());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn an_aborted_tasks_value_that_panics_in_drop_does_not_end_the_worker() {
    struct Bomb;
    impl Drop for Bomb {
        fn drop(&mut self) {
            panic!("Bomb dropped");
        }
    }
    within(LIMIT, "aborted value panics in drop", || {
        let pool = ThreadPool::new(1);
        let (started_tx, started) = mpsc::channel();
        let task = pool.submit(move || {
            until_aborted(started_tx)();
            Bomb
        });
        started.recv().unwrap();
        assert!(task.abort());
        assert!(matches!(task.result_ref(), Err(TaskError::Cancelled)));
        assert_eq!(pool.submit(|| 1).result(), Ok(1), "the worker lives on");
        assert_eq!(pool.worker_count(), 1);
    });
}

#[test]
fn shutdown_abort_running_sets_every_running_token_and_cancels_the_queue() {
    within(LIMIT, "shutdown abort_running", || {
        let pool = ThreadPool::new(2);
        let (started_tx, started) = mpsc::channel();
        let running: Vec<_> = (0..2)
            .map(|_| pool.submit(until_aborted(started_tx.clone())))
            .collect();
        started.recv().unwrap();
        started.recv().unwrap();
        let queued = pool.submit(|| 0);
        pool.shutdown(Shutdown::default().abort_running(true));
        assert!(queued.is_cancelled());
        for task in &running {
            assert_eq!(task.result(), Err(TaskError::Cancelled));
        }
        assert_eq!(pool.submit(|| 0).result(), Err(TaskError::ShutDown));
    });
}

#[test]
fn dropping_a_map_aborts_its_running_items() {
    within(LIMIT, "map drop aborts", || {
        let pool = ThreadPool::new(2);
        let (started_tx, started) = mpsc::channel();
        let (tasks_tx, tasks) = mpsc::channel();
        let stopped = Arc::new(AtomicUsize::new(0));
        {
            let stopped = stopped.clone();
            let mut map = pool.map(
                move |i: u32| {
                    if i == 0 {
                        return i;
                    }
                    started_tx.send(()).unwrap();
                    let token = current_token();
                    tasks_tx.send(token.clone()).unwrap();
                    while !token.is_cancelled() {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    stopped.fetch_add(1, Ordering::SeqCst);
                    i
                },
                0..1_000,
            );
            assert_eq!(map.next(), Some(Ok(0)));
            started.recv().unwrap();
        }
        pool.shutdown(Shutdown::default());
        let tokens: Vec<CancelToken> = tasks.try_iter().collect();
        assert!(!tokens.is_empty());
        assert!(tokens.iter().all(CancelToken::is_cancelled));
        assert_eq!(stopped.load(Ordering::SeqCst), tokens.len());
    });
}

#[test]
fn a_token_outside_any_task_is_never_cancelled() {
    assert!(!current_token().is_cancelled());
    let pool = ThreadPool::new(1);
    let (started_tx, started) = mpsc::channel();
    let (token_tx, token_rx) = mpsc::channel();
    let task = pool.submit(move || {
        token_tx.send(current_token()).unwrap();
        until_aborted(started_tx)()
    });
    started.recv().unwrap();
    let token = token_rx.recv().unwrap();
    assert!(!token.is_cancelled());
    task.abort();
    assert!(
        token.is_cancelled(),
        "a clone taken out of the task sees the abort"
    );
    task.wait();
    assert!(
        token.is_cancelled(),
        "and keeps seeing it once the task ended cancelled"
    );
}

/// Spins until its token reads cancelled; returns how long that took from its start.
fn waits_for_its_token() -> Duration {
    let started = std::time::Instant::now();
    let token = current_token();
    while !token.is_cancelled() {
        std::thread::sleep(Duration::from_millis(1));
    }
    started.elapsed()
}

#[test]
fn a_pool_soft_time_limit_sets_the_token_and_the_value_stands() {
    within(LIMIT, "pool soft time limit", || {
        let limit = Duration::from_millis(50);
        let pool = ThreadPool::builder().soft_time_limit(limit).build();
        let task = pool.submit(waits_for_its_token);
        let took = task
            .result()
            .expect("a soft limit never ends the task itself");
        assert!(took >= limit, "the token was set early: after {took:?}");
        assert!(!task.is_cancelled());
        // Not before the limit: a long limit leaves a quick task's token unset.
        let long = ThreadPool::builder()
            .soft_time_limit(Duration::from_secs(3600))
            .build();
        assert_eq!(
            long.submit(|| current_token().is_cancelled()).result(),
            Ok(false)
        );
    });
}

#[test]
fn a_per_submit_soft_time_limit_overrides_the_pools() {
    within(LIMIT, "per-submit soft time limit", || {
        let pool = ThreadPool::builder()
            .soft_time_limit(Duration::from_secs(3600))
            .build();
        let limit = Duration::from_millis(30);
        let took = pool
            .submit_with_soft_time_limit(waits_for_its_token, Some(limit))
            .result()
            .unwrap();
        assert!(took >= limit, "{took:?}");
        let none = ThreadPool::builder()
            .soft_time_limit(Duration::ZERO)
            .build()
            .submit_with_soft_time_limit(|| current_token().is_cancelled(), None);
        assert_eq!(
            none.result(),
            Ok(false),
            "None: no soft limit for this task"
        );
        let max = pool
            .submit_with_soft_time_limit(|| current_token().is_cancelled(), Some(Duration::MAX));
        assert_eq!(max.result(), Ok(false), "Duration::MAX means no limit");
    });
}

#[test]
fn a_soft_time_limit_still_lets_abort_discard_the_value() {
    within(LIMIT, "soft limit then abort", || {
        let pool = ThreadPool::new(1);
        let (started_tx, started) = mpsc::channel();
        let task = pool.submit_with_soft_time_limit(
            until_aborted(started_tx),
            Some(Duration::from_secs(3600)),
        );
        started.recv().unwrap();
        assert!(task.abort());
        assert_eq!(task.result(), Err(TaskError::Cancelled));
    });
}

/// Regression: a task run inside another task's wait (help-while-waiting) returned its value
/// after `shutdown(abort_running)`, where one the worker took from its loop ends cancelled.
#[test]
fn shutdown_abort_running_cancels_a_task_run_inside_a_wait() {
    within(LIMIT, "abort_running reaches a helped task", || {
        let pool = Arc::new(ThreadPool::new(1));
        let (started_tx, started) = mpsc::channel();
        let (inner_tx, inner_task) = mpsc::channel();
        let inner_pool = Arc::clone(&pool);
        let outer = pool.submit(move || {
            let inner = inner_pool.submit(until_aborted(started_tx));
            inner_tx.send(inner.clone()).unwrap();
            // Runs `inner` on this worker while it waits.
            inner.result()
        });
        started.recv().unwrap();
        let inner = inner_task.recv().unwrap();
        pool.shutdown(Shutdown::default().abort_running(true));
        assert_eq!(inner.result(), Err(TaskError::Cancelled));
        assert_eq!(outer.result(), Err(TaskError::Cancelled));
    });
}
