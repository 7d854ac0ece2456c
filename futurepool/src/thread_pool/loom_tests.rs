//! Model checks of the thread pool's submit / sleep / wake / shutdown hand-off, run with
//! `RUSTFLAGS="--cfg loom" cargo test -p futurepool --lib --release loom`.
//!
//! The pool's real `shared.rs` and `worker.rs` run here: their mutex, condition variables,
//! atomics, thread-local, parking and threads come from `crate::loom`. A lost wake-up or a
//! shutdown that waits for itself leaves every thread blocked, which loom reports as a deadlock.
//!
//! The help-while-waiting models (issue 16) run a one-worker pool whose only worker waits
//! inside a task: without helping, the worker waits for itself and loom reports the deadlock.
//!
//! Each model bounds preemptions to 3 (or `LOOM_MAX_PREEMPTIONS` if set): the five models take
//! about 2 s in release on a loaded two-core machine (6 s at 4), and each bug they pin (a
//! sleeper not woken, a worker joining itself, a callback counted idle) is caught at 2 already:
//! each was checked by re-introducing it.

use std::sync::Arc;

use loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use crate::executor::Shutdown;
use crate::{Task, ThreadPool};

fn model(body: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(body);
}

fn pool(max_workers: usize) -> ThreadPool {
    ThreadPool::builder()
        .max_workers(max_workers)
        .thread_name_prefix("loom")
        .build()
}

/// A submit either finds the worker awake, wakes it from its sleep, or starts it: the second
/// task, submitted while the worker goes to sleep, is never lost, and one worker does both.
#[test]
fn loom_submit_reaches_a_worker_going_to_sleep() {
    model(|| {
        let pool = pool(1);
        assert_eq!(pool.submit(|| 1).result(), Ok(1));
        assert_eq!(pool.submit(|| 2).result(), Ok(2));
        assert_eq!(pool.worker_count(), 1);
        drop(pool);
    });
}

/// `shutdown(wait)` racing the worker's first look for work: the queued task still runs (no
/// cancel), the sleeping or looking worker is woken, and the wait returns after it exits.
#[test]
fn loom_shutdown_wakes_and_joins_the_worker() {
    model(|| {
        let pool = pool(1);
        let task = pool.submit(|| 3);
        pool.shutdown(Shutdown::default());
        assert_eq!(task.try_result(), Some(Ok(3)));
        assert_eq!(pool.worker_count(), 0);
    });
}

/// Case 16: a task shutting its own pool down while main does too. Neither waits for itself, and
/// main's wait returns only after that task has finished.
#[test]
fn loom_a_task_and_main_both_shut_down() {
    model(|| {
        let pool = Arc::new(pool(1));
        let finished = Arc::new(AtomicUsize::new(0));
        let (inner, finished_in_task) = (Arc::clone(&pool), Arc::clone(&finished));
        let task = pool.submit(move || {
            inner.shutdown(Shutdown::default());
            finished_in_task.store(1, SeqCst);
        });
        pool.shutdown(Shutdown::default());
        assert_eq!(finished.load(SeqCst), 1, "main returned while the task ran");
        assert!(task.is_done());
    });
}

/// Case 15: a callback that submits to its own pool and waits, with two workers allowed. The
/// worker running the callback is no longer counted idle, so the nested task gets a thread.
#[test]
fn loom_a_callback_that_submits_and_waits_completes() {
    model(|| {
        let pool = Arc::new(pool(2));
        let (nested_tx, nested) = loom::sync::mpsc::channel();
        let first = pool.submit(|| 1);
        let inner = Arc::clone(&pool);
        first.add_done_callback(move |_| {
            nested_tx.send(inner.submit(|| 2).result()).unwrap();
        });
        // The callback runs on the worker, or right here if the task was already done.
        assert_eq!(nested.recv().unwrap(), Ok(2));
        pool.shutdown(Shutdown::default());
        assert_eq!(pool.worker_count(), 0);
    });
}

/// Case 16: two tasks both shutting their pool down wait for each other's worker to finish or
/// wait too, never for themselves; the pool's drop then joins both.
#[test]
fn loom_two_tasks_shut_down() {
    model(|| {
        let pool = Arc::new(pool(2));
        let tasks: Vec<_> = (0..2)
            .map(|_| {
                let inner = Arc::clone(&pool);
                pool.submit(move || inner.shutdown(Shutdown::default()))
            })
            .collect();
        pool.shutdown(Shutdown::default());
        assert!(tasks.iter().all(|task| task.is_done()));
    });
}

/// Help-while-waiting, inline: a task on a one-worker pool submits a task and waits for it
/// (Python's classic deadlock); the waiting worker finds its target queued and runs it.
#[test]
fn loom_a_task_waiting_on_its_own_one_worker_pool_completes() {
    model(|| {
        let pool = Arc::new(pool(1));
        let inner = Arc::clone(&pool);
        let outer = pool.submit(move || inner.submit(|| 2).result());
        assert_eq!(outer.result(), Ok(Ok(2)));
        pool.shutdown(Shutdown::default());
        assert_eq!(pool.worker_count(), 0);
    });
}

/// Help-while-waiting, parked: the only worker waits inside a task for a gate that only a job
/// submitted later (from outside) opens. Whether that job is queued before the worker starts
/// waiting, or arrives while it is parked as a helper, the worker runs it: a submit that finds
/// no idle worker and may start none wakes a helper.
#[test]
fn loom_a_waiting_worker_runs_a_job_submitted_while_it_waits() {
    model(|| {
        let pool = Arc::new(pool(1));
        let gate = Task::<u8>::pending();
        let waited = gate.clone();
        let outer = pool.submit(move || waited.result());
        let opener = gate.clone();
        let open = pool.submit(move || {
            opener.resolve(Ok(1));
        });
        assert_eq!(outer.result(), Ok(Ok(1)));
        open.wait();
        pool.shutdown(Shutdown::default());
        assert_eq!(pool.worker_count(), 0);
    });
}

/// Help-while-waiting, handed on: both workers wait inside tasks; a job that only a waiter can
/// run is submitted while main ends the first waiter's wait. If the submit woke that waiter and
/// it leaves, it hands the wake-up on to the other, which runs the job.
///
/// Bounded to 1 preemption (3 s; `LOOM_MAX_PREEMPTIONS` raises it). With the lock-free queue
/// (`injector.rs`) the model's state space grew: at 2 it ran 15 minutes without finishing and
/// without a failure, after it had found, within 2 minutes each, the two bugs its comments in
/// `shared.rs` name (a helper that took itself off the list after a submit had taken it, and a
/// helper wake weighed against `idle`). At 3, loom 0.7.3 reaches a schedule where a task's
/// completion unparks a worker that is blocked on the pool's mutex, and loom's `unpark` makes a
/// thread blocked on *anything* runnable (`rt/thread.rs`, `set_unparked`), so the worker is
/// scheduled while the mutex is still held and loom panics ("expected to be able to acquire
/// lock"). With std the unpark only leaves a token. The same family as the yield concession in
/// `README.md`.
#[test]
fn loom_a_leaving_helper_hands_its_wake_up_on() {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(1);
    }
    builder.check(|| {
        let pool = Arc::new(pool(2));
        let (first_gate, second_gate) = (Task::<u8>::pending(), Task::<u8>::pending());
        let (waited_first, waited_second) = (first_gate.clone(), second_gate.clone());
        // After its wait, the first task blocks outside futurepool (helping no more) until
        // the second is done: only a handed-on wake-up gets the job to the second waiter.
        let (release, released) = loom::sync::mpsc::channel::<()>();
        let first = pool.submit(move || {
            let value = waited_first.result();
            released.recv().unwrap();
            value
        });
        let second = pool.submit(move || waited_second.result());
        let opener = second_gate.clone();
        let open = pool.submit(move || {
            opener.resolve(Ok(2));
        });
        first_gate.resolve(Ok(1));
        assert_eq!(second.result(), Ok(Ok(2)));
        release.send(()).unwrap();
        assert_eq!(first.result(), Ok(Ok(1)));
        open.wait();
        pool.shutdown(Shutdown::default());
    });
}

/// A submit that takes no lock (the worker exists already) on another thread, racing
/// `shutdown(how)` on this one; the submit's task once both are done.
fn submit_racing_shutdown(how: Shutdown) -> Task<i32> {
    let pool = Arc::new(pool(1));
    assert_eq!(pool.submit(|| 1).result(), Ok(1));
    let submitter = {
        let pool = Arc::clone(&pool);
        loom::thread::spawn(move || pool.submit(|| 2))
    };
    pool.shutdown(how);
    submitter.join().unwrap()
}

/// A lock-free submit racing `shutdown(wait)`: its task runs on the worker before it leaves, or
/// is refused — never left in a queue nobody looks at again (the pool's `rescue`).
#[test]
fn loom_a_lock_free_submit_racing_shutdown_runs_or_is_refused() {
    model(
        || match submit_racing_shutdown(Shutdown::default()).try_result() {
            Some(Ok(2)) | Some(Err(crate::TaskError::ShutDown)) => {}
            other => panic!("the racing submit ended as {other:?}"),
        },
    );
}

/// The same race with `cancel_pending`: the task runs, is cancelled with the queue, or is
/// refused, and is settled once both threads are done.
#[test]
fn loom_a_lock_free_submit_racing_a_cancelling_shutdown_is_settled() {
    model(
        || match submit_racing_shutdown(Shutdown::default().cancel_pending(true)).try_result() {
            Some(Ok(2)) | Some(Err(crate::TaskError::ShutDown | crate::TaskError::Cancelled)) => {}
            other => panic!("the racing submit ended as {other:?}"),
        },
    );
}
