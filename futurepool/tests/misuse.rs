//! Misuse is reported at the caller's line with the fix (issue 12, case 9): one rule for every
//! pool (a zero worker count panics where it was written) and errors whose `Debug` (what
//! `.unwrap()` prints) says what to do.
//!
//! No `test_support!` here on purpose: this binary is one that forgot it.

mod support;

use std::panic::{self, Location};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futurepool::{ProcessPool, ProcessPoolError, ThreadPool};

const LIMIT: Duration = Duration::from_secs(60);

/// Runs `f`, which must panic, and returns the panic's message and `file:line`.
fn panic_site(f: impl FnOnce() + panic::UnwindSafe) -> (String, String) {
    static TURN: Mutex<()> = Mutex::new(());
    let _turn = TURN.lock().unwrap_or_else(|p| p.into_inner());
    let seen = Arc::new(Mutex::new(None));
    let recorder = seen.clone();
    let previous = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()));
        *recorder.lock().unwrap() = location;
    }));
    let outcome = panic::catch_unwind(f);
    panic::set_hook(previous);
    let payload = outcome.expect_err("expected a panic");
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    let location = seen.lock().unwrap().take().expect("the hook saw the panic");
    (message, location)
}

#[test]
fn thread_pool_new_zero_panics_at_the_callers_line() {
    support::within(LIMIT, "ThreadPool::new(0)", || {
        let line = Location::caller().line() + 1;
        let (message, at) = panic_site(|| drop(ThreadPool::new(0)));
        assert!(message.contains("at least one worker"), "{message}");
        assert_eq!(at, format!("futurepool/tests/misuse.rs:{line}"));

        let line = Location::caller().line() + 1;
        let (_, at) = panic_site(|| drop(ThreadPool::builder().max_queued(0)));
        assert_eq!(at, format!("futurepool/tests/misuse.rs:{line}"));
    });
}

#[test]
fn process_pool_new_zero_panics_at_the_callers_line_like_the_thread_pool() {
    support::within(LIMIT, "ProcessPool::new(0)", || {
        let line = Location::caller().line() + 1;
        let (message, at) = panic_site(|| drop(ProcessPool::new(0)));
        assert!(message.contains("at least one worker"), "{message}");
        assert_eq!(at, format!("futurepool/tests/misuse.rs:{line}"));
    });
}

#[test]
fn unwrapping_not_initialized_prints_the_fix() {
    let error = ProcessPool::new(1).unwrap_err();
    assert!(matches!(error, ProcessPoolError::NotInitialized));
    let debug = format!("{error:?}");
    assert!(debug.starts_with("NotInitialized: "), "{debug}");
    assert!(
        debug.contains("futurepool::init()") && debug.contains("test_support!"),
        "{debug}"
    );
}

#[test]
#[ignore = "helper: run in a child process by a_worker_without_init_cannot_start_workers"]
fn helper_create_pool_as_uninitialized_worker() {
    let outcome = ProcessPool::new(1);
    assert!(
        matches!(outcome, Err(ProcessPoolError::InsideUninitializedWorker)),
        "{outcome:?}"
    );
}

#[test]
fn a_worker_without_init_cannot_start_workers() {
    // Stands for a binary whose main forgot `futurepool::init()` (this one has no
    // `test_support!`, which would be its `init()`): started as a worker, its main runs and
    // tries to create a pool of its own. That must fail, not fork forever.
    support::within(LIMIT, "a worker without init", || {
        let status = Command::new(std::env::current_exe().unwrap())
            .args([
                "helper_create_pool_as_uninitialized_worker",
                "--exact",
                "--ignored",
                "--test-threads=1",
            ])
            .env("FUTUREPOOL_WORKER", "1")
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    });
}
