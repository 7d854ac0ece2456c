//! Model checks of the task state machine, run with
//! `RUSTFLAGS="--cfg loom" cargo test -p futurepool --lib --release loom`.
//!
//! Each test explores every interleaving loom can generate of the real `Core` code (its atomics,
//! lock, cell and parking come from `crate::loom`).

use loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use loom::sync::Arc;
use loom::thread;

use super::{Job, Task};
use crate::error::TaskError;

fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

/// A worker starting the task races `cancel`: exactly one wins, and a cancelled task never runs.
#[test]
fn loom_start_races_cancel() {
    loom::model(|| {
        let ran = counter();
        let ran_in_job = ran.clone();
        let (task, job) = Job::new(move || {
            ran_in_job.fetch_add(1, SeqCst);
            Ok::<u32, ()>(7)
        });
        let worker = thread::spawn(move || job.run());
        let cancelled = task.cancel();
        worker.join().unwrap();

        assert!(task.is_done());
        if cancelled {
            assert!(task.is_cancelled());
            assert_eq!(ran.load(SeqCst), 0, "a cancelled task must never run");
            assert_eq!(task.try_result(), Some(Err(TaskError::Cancelled)));
        } else {
            assert_eq!(ran.load(SeqCst), 1);
            assert_eq!(task.try_result(), Some(Ok(7)));
        }
    });
}

/// A callback added while the task completes runs exactly once, whichever side wins.
#[test]
fn loom_callback_runs_exactly_once() {
    loom::model(|| {
        let calls = counter();
        let (task, job) = Job::new(|| Ok::<u32, ()>(1));
        let worker = thread::spawn(move || job.run());
        let calls_in_callback = calls.clone();
        task.add_done_callback(move |t| {
            assert!(t.is_done(), "callbacks see a done task");
            calls_in_callback.fetch_add(1, SeqCst);
        });
        worker.join().unwrap();
        assert_eq!(calls.load(SeqCst), 1);
    });
}

/// A thread blocked in `wait` is always woken by completion (loom reports a deadlock otherwise).
#[test]
fn loom_waiter_is_always_woken() {
    loom::model(|| {
        let (task, job) = Job::new(|| Ok::<u32, ()>(3));
        let waiter_task = task.clone();
        let waiter = thread::spawn(move || {
            waiter_task.wait();
            waiter_task.try_result()
        });
        job.run();
        assert_eq!(waiter.join().unwrap(), Some(Ok(3)));
    });
}

/// A waiter is also woken when the task is cancelled instead of run.
#[test]
fn loom_waiter_is_woken_by_cancel() {
    loom::model(|| {
        let task = Task::<u32, ()>::pending();
        let waiter_task = task.clone();
        let waiter = thread::spawn(move || {
            waiter_task.wait();
            waiter_task.is_cancelled()
        });
        assert!(task.cancel());
        assert!(waiter.join().unwrap());
    });
}

/// Two executors racing to resolve the same task (a late result against a time-out killer, say):
/// exactly one outcome is kept, and listeners run once.
#[test]
fn loom_outcome_is_set_exactly_once() {
    loom::model(|| {
        let task = Task::<u32, ()>::pending();
        let calls = counter();
        let calls_in_callback = calls.clone();
        task.add_done_callback(move |_| {
            calls_in_callback.fetch_add(1, SeqCst);
        });
        let other = task.clone();
        let racer = thread::spawn(move || other.resolve(Ok(1)));
        let won_here = task.resolve(Err(TaskError::Timeout));
        let won_there = racer.join().unwrap();

        assert!(won_here ^ won_there, "exactly one resolution wins");
        let expected = if won_here {
            Err(TaskError::Timeout)
        } else {
            Ok(1)
        };
        assert_eq!(task.try_result(), Some(expected));
        assert_eq!(calls.load(SeqCst), 1);
    });
}

/// Resolving from outside races `cancel`: exactly one wins and the state agrees with it.
#[test]
fn loom_resolve_races_cancel() {
    loom::model(|| {
        let task = Task::<u32, ()>::pending();
        let other = task.clone();
        let resolver = thread::spawn(move || other.resolve(Ok(5)));
        let cancelled = task.cancel();
        let resolved = resolver.join().unwrap();

        assert!(
            cancelled ^ resolved,
            "exactly one of cancel and resolve wins"
        );
        assert_eq!(task.is_cancelled(), cancelled);
        assert!(task.is_done());
    });
}

/// The process pool's hand-off (`resolve_deferred`, issue 9 case 9): a reader thread sets the
/// outcome and takes the callbacks to run elsewhere while a user thread adds one. Whichever
/// wins, the callback runs exactly once, sees a done task, and a waiter is woken at once —
/// never only when the deferred callbacks run.
#[test]
fn loom_deferred_callback_runs_exactly_once_and_waiters_do_not_wait_for_it() {
    loom::model(|| {
        let task = Task::<u32, ()>::pending();
        let calls = counter();
        let reader_task = task.clone();
        let reader = thread::spawn(move || reader_task.resolve_deferred(Ok(4)));
        let calls_in_callback = calls.clone();
        task.add_done_callback(move |t| {
            assert!(t.is_done(), "callbacks see a done task");
            calls_in_callback.fetch_add(1, SeqCst);
        });
        let deferred = reader.join().unwrap();
        task.wait();
        assert_eq!(task.try_result(), Some(Ok(4)));
        match deferred {
            // The reader took the callback: it has not run yet, and runs once elsewhere.
            Some(deferred) => {
                assert_eq!(calls.load(SeqCst), 0);
                let runner = thread::spawn(move || deferred.run_here());
                runner.join().unwrap();
            }
            // Registered after completion: it ran at once, in this thread (F4).
            None => assert_eq!(calls.load(SeqCst), 1),
        }
        assert_eq!(calls.load(SeqCst), 1);
    });
}

/// `abort` racing a worker that runs the task (issue 13): exactly one outcome. Abort answers
/// true if and only if the task ends cancelled (pending: cancelled before it ran; running: its
/// value discarded), and false only when the value stands; listeners run once either way.
#[test]
fn loom_abort_races_completion() {
    loom::model(|| {
        let calls = counter();
        let (task, job) = Job::new(|| Ok::<u32, ()>(7));
        let calls_in_callback = calls.clone();
        task.add_done_callback(move |_| {
            calls_in_callback.fetch_add(1, SeqCst);
        });
        let worker = thread::spawn(move || job.run());
        let aborted = task.abort();
        worker.join().unwrap();

        assert!(task.is_done());
        assert_eq!(
            task.is_cancelled(),
            aborted,
            "abort's answer is the outcome"
        );
        let expected = if aborted {
            Err(TaskError::Cancelled)
        } else {
            Ok(7)
        };
        assert_eq!(task.try_result(), Some(expected));
        assert_eq!(calls.load(SeqCst), 1);
    });
}

/// `abort` of a running task resolved from outside (a process pool's reader) racing that
/// resolution: exactly one outcome, and a waiter is always woken.
#[test]
fn loom_abort_races_an_outside_resolution() {
    loom::model(|| {
        let task = Task::<u32, ()>::pending();
        assert!(task.set_running());
        let reader_task = task.clone();
        let reader = thread::spawn(move || reader_task.resolve(Ok(3)));
        let waiter_task = task.clone();
        let waiter = thread::spawn(move || {
            waiter_task.wait();
            waiter_task.is_cancelled()
        });
        let aborted = task.abort();
        let resolved = reader.join().unwrap();
        assert!(
            resolved,
            "the claim always succeeds; an abort only changes what it publishes"
        );
        assert_eq!(waiter.join().unwrap(), aborted);
        assert_eq!(task.is_cancelled(), aborted);
    });
}
