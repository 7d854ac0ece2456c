//! A caught panic keeps its location when the program installs its own panic hook (issue 12,
//! case 5), and says why when it cannot have one.
//!
//! The panic hook is global to the process, so the tests in this file take turns.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::Duration;

use futurepool::{Panic, TaskError, ThreadPool};

const LIMIT: Duration = Duration::from_secs(60);

fn one_at_a_time() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn quiet_hook() {
    std::panic::set_hook(Box::new(|_| {}));
}

fn panic_of(outcome: Result<(), TaskError>) -> Panic {
    match outcome {
        Err(TaskError::Panicked(panic)) => panic,
        other => panic!("expected a panic, got {other:?}"),
    }
}

fn assert_located_here(panic: &Panic) {
    let location = panic
        .location()
        .unwrap_or_else(|| panic!("no location: {panic}"));
    assert!(location.contains("panic_location.rs"), "{location}");
}

#[test]
fn location_survives_a_hook_installed_after_the_first_task() {
    let _turn = one_at_a_time();
    support::within(LIMIT, "panics around a set_hook", || {
        quiet_hook();
        let pool = ThreadPool::new(1);
        assert_located_here(&panic_of(pool.submit(|| panic!("first")).result()));
        // The program installs its own hook once tasks have run (this dropped futurepool's).
        quiet_hook();
        assert_located_here(&panic_of(pool.submit(|| panic!("second")).result()));
        quiet_hook();
        quiet_hook();
        assert_located_here(&panic_of(pool.submit(|| panic!("third")).result()));
    });
}

#[test]
fn a_hook_that_chains_the_previous_one_keeps_every_location() {
    let _turn = one_at_a_time();
    support::within(LIMIT, "panics under a chaining hook", || {
        quiet_hook();
        let pool = ThreadPool::new(1);
        assert_located_here(&panic_of(pool.submit(|| panic!("before")).result()));
        let calls = Arc::new(AtomicUsize::new(0));
        let previous = std::panic::take_hook();
        let counted = calls.clone();
        std::panic::set_hook(Box::new(move |info| {
            counted.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
        assert_located_here(&panic_of(pool.submit(|| panic!("after")).result()));
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "the program's own hook still runs"
        );
    });
}

#[test]
fn a_hook_replaced_while_the_task_runs_says_why_the_location_is_missing() {
    let _turn = one_at_a_time();
    support::within(LIMIT, "a set_hook during a task", || {
        quiet_hook();
        let pool = ThreadPool::new(1);
        let (started_tx, started) = mpsc::channel();
        let (release, gate) = mpsc::channel::<()>();
        let task = pool.submit(move || {
            started_tx.send(()).unwrap();
            gate.recv().unwrap();
            panic!("mid-replacement");
        });
        started.recv().unwrap();
        quiet_hook();
        release.send(()).unwrap();
        let panic = panic_of(task.result());
        assert_eq!(panic.location(), None);
        assert_eq!(panic.message(), "mid-replacement");
        let shown = panic.to_string();
        assert!(
            shown.contains("location unknown") && shown.contains("set_hook"),
            "{shown}"
        );
        // Re-installed: the next task has its location.
        assert_located_here(&panic_of(pool.submit(|| panic!("next")).result()));
    });
}

#[test]
fn resume_unwind_says_no_hook_ran_and_stacks_no_hooks() {
    let _turn = one_at_a_time();
    support::within(LIMIT, "resume_unwind in tasks", || {
        quiet_hook();
        let pool = ThreadPool::new(1);
        for _ in 0..50 {
            let outcome = pool
                .submit(|| std::panic::resume_unwind(Box::new("resumed")))
                .result();
            let panic = panic_of(outcome);
            assert_eq!(panic.location(), None);
            assert!(panic.to_string().contains("resume_unwind"), "{panic}");
        }
        assert_located_here(&panic_of(pool.submit(|| panic!("plain")).result()));
    });
}

#[test]
fn location_survives_a_hook_installed_inside_async_code() {
    let _turn = one_at_a_time();
    support::within(LIMIT, "panics awaited from async code", || {
        futures::executor::block_on(async {
            quiet_hook();
            let pool = ThreadPool::new(1);
            assert_located_here(&panic_of(pool.submit(|| panic!("first")).await));
            quiet_hook();
            assert_located_here(&panic_of(pool.submit(|| panic!("second")).await));
        });
    });
}
