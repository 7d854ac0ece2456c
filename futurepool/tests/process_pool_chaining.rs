//! Issue 16, chaining on processes: `ProcessPool::submit_after` runs a registered function on a
//! task's value once it succeeded, wherever that task ran, with no thread blocked meanwhile;
//! failures and cancellation propagate, and the dependent can be cancelled or aborted itself.

mod support;

use std::sync::mpsc;
use std::time::Duration;

use futurepool::{ProcessPool, Shutdown, Task, TaskError, ThreadPool};
use support::within;

fn double(n: u64) -> u64 {
    n * 2
}
fn explode(_: u64) -> u64 {
    panic!("exploded on purpose")
}
fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}
futurepool::register!(double, explode, sleep_ms);
futurepool::test_support!();

const LIMIT: Duration = Duration::from_secs(120);

/// A thread pool task that returns `value` once the sender is used (or dropped).
fn gated(threads: &ThreadPool, value: u64) -> (mpsc::Sender<()>, Task<u64>) {
    let (release, gate) = mpsc::channel::<()>();
    let task = threads.submit(move || {
        let _ = gate.recv_timeout(Duration::from_secs(60));
        value
    });
    (release, task)
}

#[test]
fn a_thread_task_then_two_process_steps_give_the_composed_value() {
    within(LIMIT, "chain across executors", || {
        let threads = ThreadPool::new(1);
        let processes = ProcessPool::new(2).unwrap();
        let first = threads.submit(|| 5u64);
        let second = processes.submit_after(&first, double);
        let third = processes.submit_after(&second, double);
        assert_eq!(third.result(), Ok(20));
        assert_eq!(second.result(), Ok(10), "each step keeps its own value");
    });
}

#[test]
fn an_upstream_error_panic_or_cancellation_reaches_the_dependent_and_f_never_runs() {
    within(LIMIT, "chain failures", || {
        let threads = ThreadPool::new(1);
        let processes = ProcessPool::new(1).unwrap();

        let failed = threads.submit_fallible(|| Err::<u64, _>("no input"));
        let after_failure = processes.submit_after(&failed, double);
        assert_eq!(after_failure.result(), Err(TaskError::Failed("no input")));

        let panicked = processes.submit(explode, 1);
        let after_panic = processes.submit_after(&panicked, double);
        match after_panic.result() {
            Err(TaskError::Panicked(panic)) => {
                assert!(panic.message().contains("exploded on purpose"), "{panic}")
            }
            other => panic!("expected the upstream's panic, got {other:?}"),
        }

        let (release, blocked) = gated(&threads, 1);
        let queued_behind = threads.submit(|| 2u64);
        let after_cancelled = processes.submit_after(&queued_behind, double);
        assert!(queued_behind.cancel());
        release.send(()).unwrap();
        assert_eq!(blocked.result(), Ok(1));
        assert_eq!(after_cancelled.result(), Err(TaskError::Cancelled));
        // No dependent ran: nothing completed; the panic and the two errors it passed on
        // failed, the dependent of the cancelled task was cancelled.
        processes.shutdown(Shutdown::default());
        let stats = processes.stats();
        assert_eq!(
            (stats.completed, stats.failed, stats.cancelled),
            (0, 3, 1),
            "{stats:?}"
        );
    });
}

#[test]
fn a_dependent_cancelled_before_its_upstream_finishes_never_runs() {
    within(LIMIT, "cancel a dependent", || {
        let processes = ProcessPool::new(1).unwrap();
        let slow = processes.submit(sleep_ms, 300);
        let dependent = processes.submit_after(&slow, double);
        assert!(
            dependent.cancel(),
            "waiting for its upstream, it is pending"
        );
        assert_eq!(slow.result(), Ok(300), "the upstream is unaffected");
        assert_eq!(dependent.result(), Err(TaskError::Cancelled));
        processes.shutdown(Shutdown::default());
        let stats = processes.stats();
        assert_eq!((stats.completed, stats.cancelled), (1, 1), "{stats:?}");
    });
}

#[test]
fn an_aborted_running_dependent_has_its_worker_killed() {
    within(LIMIT, "abort a running dependent", || {
        let processes = ProcessPool::new(1).unwrap();
        let quick = processes.submit(double, 30_000);
        let long = processes.submit_after(&quick, sleep_ms);
        let started = std::time::Instant::now();
        while !long.is_running() {
            assert!(started.elapsed() < Duration::from_secs(60), "never started");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(long.abort());
        assert_eq!(long.result(), Err(TaskError::Cancelled));
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the 60 s sleep was cut short"
        );
        assert_eq!(processes.submit(double, 4).result(), Ok(8), "replaced");
    });
}

#[test]
fn a_pool_shut_down_before_the_upstream_finishes_fails_the_dependent_shut_down() {
    within(LIMIT, "chain after shutdown", || {
        let threads = ThreadPool::new(1);
        let processes = ProcessPool::new(1).unwrap();
        let (release, upstream) = gated(&threads, 7);
        let dependent = processes.submit_after(&upstream, double);
        processes.shutdown(Shutdown::default().wait(false));
        release.send(()).unwrap();
        assert_eq!(dependent.result(), Err(TaskError::ShutDown));
    });
}

#[test]
fn a_closure_is_refused_at_once_naming_the_fix() {
    within(LIMIT, "chain with a closure", || {
        let threads = ThreadPool::new(1);
        let processes = ProcessPool::new(1).unwrap();
        let upstream = threads.submit(|| 1u64);
        let dependent = processes.submit_after(&upstream, |n: u64| n + 1);
        match dependent.result() {
            Err(TaskError::Transfer(reason)) => {
                assert!(reason.to_string().contains("named `fn"), "{reason}")
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    });
}

#[test]
fn a_thousand_dependents_wait_without_a_thread_each() {
    within(LIMIT, "many dependents", || {
        let threads = ThreadPool::new(1);
        let processes = ProcessPool::new(2).unwrap();
        let (release, upstream) = gated(&threads, 3);
        let before = support::thread_count();
        let dependents: Vec<_> = (0..1000)
            .map(|_| processes.submit_after(&upstream, double))
            .collect();
        assert!(
            support::thread_count() <= before + 2,
            "waiting dependents hold no threads"
        );
        release.send(()).unwrap();
        for dependent in &dependents {
            assert_eq!(dependent.result(), Ok(6));
        }
    });
}
