//! A `Task` is a `Future` (issue 12, case 7): the `futures` combinators take tasks directly, and
//! losing a race never cancels the work.

mod support;

use std::sync::mpsc;
use std::time::Duration;

use futurepool::{TaskError, ThreadPool};
use futures::future::{join_all, select_all};
use futures::FutureExt;

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn join_all_of_tasks_compiles_and_keeps_input_order() {
    support::within(LIMIT, "join_all over tasks", || {
        let pool = ThreadPool::new(3);
        let tasks: Vec<_> = [30u64, 0, 10]
            .into_iter()
            .map(|ms| {
                pool.submit(move || {
                    std::thread::sleep(Duration::from_millis(ms));
                    ms
                })
            })
            .collect();
        let values = futures::executor::block_on(join_all(tasks));
        assert_eq!(values, [Ok(30), Ok(0), Ok(10)]);
    });
}

#[test]
fn select_all_yields_the_finished_task_and_leaves_the_rest_running() {
    support::within(LIMIT, "select_all over tasks", || {
        let pool = ThreadPool::new(2);
        let (release, gate) = mpsc::channel::<()>();
        let blocked = pool.submit(move || gate.recv().is_ok());
        let quick = pool.submit(|| true);
        let (first, index, rest) =
            futures::executor::block_on(select_all([blocked.clone(), quick]));
        assert_eq!((first, index), (Ok(true), 1));
        drop(rest); // the losing handle: dropping it must not cancel the task
        assert!(!blocked.is_done());
        release.send(()).unwrap();
        assert_eq!(blocked.result(), Ok(true));
    });
}

#[test]
fn select_macro_polls_a_borrowed_task_again_after_a_lost_round() {
    support::within(LIMIT, "select! loop over a borrowed task", || {
        let pool = ThreadPool::new(1);
        let (release, gate) = mpsc::channel::<()>();
        let task = pool.submit(move || {
            gate.recv().unwrap();
            7u8
        });
        // `futures::select!` wants a `FusedFuture`: `.fuse()` it, as any plain future.
        let mut fused = task.clone().fuse();
        futures::executor::block_on(async {
            // Round 1: the task loses against a ready future; it stays registered and pending.
            futures::select_biased! {
                _ = futures::future::ready(()).fuse() => {}
                _ = fused => unreachable!("the task waits for `release`"),
            }
            release.send(()).unwrap();
            // Round 2: the same future, polled again, completes.
            let value = futures::select_biased! {
                value = fused => value,
            };
            assert_eq!(value, Ok(7));
        });
        // A finished task answers every poll the same way.
        assert_eq!(futures::executor::block_on(task.clone()), Ok(7));
    });
}

#[test]
fn a_cancelled_task_resolves_its_future_with_cancelled() {
    support::within(LIMIT, "awaiting a cancelled task", || {
        let pool = ThreadPool::new(1);
        let (release, gate) = mpsc::channel::<()>();
        let busy = pool.submit(move || gate.recv().is_ok());
        let queued = pool.submit(|| 1u8);
        let waiter = std::thread::spawn({
            let queued = queued.clone();
            move || futures::executor::block_on(queued)
        });
        // Whether the waiter registered yet or not, cancel must wake it.
        assert!(queued.cancel());
        assert_eq!(waiter.join().unwrap(), Err(TaskError::Cancelled));
        release.send(()).unwrap();
        assert_eq!(busy.result(), Ok(true));
    });
}
