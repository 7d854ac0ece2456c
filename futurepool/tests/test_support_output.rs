//! What a user's `cargo test` shows when a test uses a process pool (issue 12, cases 6 and 8):
//! their tests only, no libtest output from the workers, and a worker's panic message that says
//! it came from a worker process. Each test runs this same binary again as the "user's" test
//! run and reads its output.

mod support;

use std::process::{Command, Output};
use std::time::Duration;

use futurepool::ProcessPool;

fn double(n: u64) -> u64 {
    n * 2
}
fn explode(_: ()) -> u8 {
    panic!("worker-side failure")
}
futurepool::register!(double, explode);
futurepool::test_support!();

/// Set when this binary runs as the user's test run that the tests below inspect.
const INNER: &str = "FUTUREPOOL_TEST_SUPPORT_OUTPUT_INNER";

const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn inner_user_test_with_a_process_pool() {
    if std::env::var_os(INNER).is_none() {
        return; // Only meaningful as the inspected run.
    }
    let pool = ProcessPool::new(2).unwrap();
    let values: Vec<u64> = pool.map(double, 0..20).map(Result::unwrap).collect();
    assert_eq!(values[19], 38);
    if std::env::var(INNER).as_deref() == Ok("panic") {
        assert!(pool.submit(explode, ()).result().is_err());
    }
}

fn run_inner(mode: &str) -> Output {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "inner_user_test_with_a_process_pool",
            "--test-threads=1",
        ])
        .env(INNER, mode)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run the test binary")
}

#[test]
fn workers_print_no_libtest_output_and_add_no_test() {
    support::within(LIMIT, "the inner test run", || {
        let output = run_inner("quiet");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stdout}\n{stderr}");
        // libtest's header, once: the user's run. Workers used to print one each.
        assert_eq!(stdout.matches("running 1 test").count(), 1, "{stdout}");
        assert!(stdout.contains("1 passed"), "{stdout}");
        assert!(!stdout.contains("worker_entry"), "{stdout}");

        let listed = Command::new(std::env::current_exe().unwrap())
            .args(["--list"])
            .output()
            .expect("list the tests");
        let listed = String::from_utf8_lossy(&listed.stdout);
        assert!(
            listed.contains("inner_user_test_with_a_process_pool: test"),
            "{listed}"
        );
        assert!(
            !listed.contains("futurepool"),
            "a pseudo-test is listed: {listed}"
        );
    });
}

#[test]
fn a_worker_panic_names_the_worker_process_and_function() {
    support::within(LIMIT, "the inner test run with a panic", || {
        let output = run_inner("panic");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stderr}");
        let line = stderr
            .lines()
            .find(|line| line.contains("panicked at"))
            .unwrap_or_else(|| panic!("no panic message: {stderr}"));
        assert!(
            line.starts_with("futurepool worker process ")
                && line.contains("running `test_support_output::explode`")
                && line.contains("test_support_output.rs"),
            "{line}"
        );
        assert!(!stderr.contains("thread 'main'"), "{stderr}");
        assert!(stderr.contains("worker-side failure"), "{stderr}");
    });
}
