//! Helpers shared by the integration tests: `mod support;` at the top of a test file.
//!
//! [`within`] is the watchdog every hostile test runs under: a hang (a drop that never returns, a
//! task that never resolves) becomes a failure that names what hung, instead of a stalled run.
#![allow(dead_code)]

use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

/// A chain of `links` tasks, each submitting the next to `pool` and waiting for its result: the
/// deepest nesting of help-while-waiting a test can ask for.
pub fn chain(pool: &std::sync::Arc<futurepool::ThreadPool>, links: u32) -> u32 {
    if links == 0 {
        return 0;
    }
    let inner = std::sync::Arc::clone(pool);
    pool.submit(move || chain(&inner, links - 1))
        .result()
        .unwrap()
        + 1
}

/// Runs `body` on a thread of its own and returns what it returned, or fails the test if it has
/// not returned within `limit`.
///
/// A panic in `body` is re-raised here, so assertions inside it fail the test as usual. On a
/// timeout the stuck thread is left behind: the test process ends with the test, and the
/// workers of any process pool it held die with it (their parent-death signal).
#[track_caller]
pub fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    body: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (done, finished) = mpsc::channel();
    let body = std::thread::Builder::new()
        .name(format!("watched: {what}"))
        .spawn(move || {
            let _ = done.send(body());
        })
        .expect("could not start the watched thread");
    match finished.recv_timeout(limit) {
        Ok(value) => {
            let _ = body.join();
            value
        }
        Err(RecvTimeoutError::Disconnected) => match body.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the watched thread ended without sending its value"),
        },
        Err(RecvTimeoutError::Timeout) => {
            panic!("hang: {what} did not finish within {limit:?}")
        }
    }
}

// ---- Child processes: helper tests run in a child, and processes that must die ----------------

/// A command that runs one `#[ignore]`d helper test of the current test binary in a child
/// process (the hostile suites' way to have a parent they can SIGKILL).
pub fn helper(name: &str) -> std::process::Command {
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    command.args([
        name,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    command
}

/// The numbers a helper printed on its stdout after `tag` (`"PIDS 12 34"` → `[12, 34]`).
/// libtest prints `test NAME ... ` before the helper's own output, on the same line, so the tag
/// is looked for anywhere in a line.
pub fn read_tagged_pids(stdout: impl std::io::Read, tag: &str) -> Vec<u32> {
    use std::io::BufRead;
    std::io::BufReader::new(stdout)
        .lines()
        .map(Result::unwrap)
        .find_map(|line| {
            line.split_once(tag)
                .map(|(_, pids)| pids.split(' ').map(|p| p.parse().unwrap()).collect())
        })
        .unwrap_or_else(|| panic!("the helper never printed {tag:?}"))
}

/// The state letter of a `/proc/.../stat` file (`R`, `S`, `T`, `Z`, ...), or `None` when it is
/// unreadable (the process or thread is gone). The command name before it is in parentheses and
/// may itself contain spaces and `)`, so the state is read after the last `)`.
fn state_in(stat_path: &str) -> Option<char> {
    let stat = std::fs::read_to_string(stat_path).ok()?;
    stat.rsplit(')').next()?.trim_start().chars().next()
}

/// Gone, or a zombie (it has exited and waits for a reaper).
pub fn is_gone(pid: u32) -> bool {
    matches!(state_in(&format!("/proc/{pid}/stat")), None | Some('Z'))
}

/// Whether every thread of `pid` is stopped (`/proc/PID/stat` shows only the main thread's
/// state, and a group stop reaches the threads one by one).
pub fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks
        .filter_map(Result::ok)
        .all(|task| state_in(&task.path().join("stat").to_string_lossy()) == Some('T'))
}

/// Waits (a liveness bound, not a timing assertion) until `pid` has exited.
#[track_caller]
pub fn assert_gone_within(pid: u32, bound: Duration, what: &str) {
    let start = std::time::Instant::now();
    while !is_gone(pid) {
        assert!(start.elapsed() < bound, "{what}: process {pid} still alive");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How many threads this process has now (`Threads:` of /proc/self/status).
pub fn thread_count() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .expect("/proc/self/status names the thread count")
}

/// Fails unless `seen` (the `(done, total)` pairs a progress callback heard) is strictly in
/// order, and no longer than what `report_progress`'s rate limit lets through from a loop that
/// took `took`: the first report, one per 50 ms, and the last.
#[track_caller]
pub fn assert_in_order_and_rate_limited(seen: &[(u64, u64)], took: Duration) {
    assert!(
        seen.windows(2).all(|w| w[0].0 < w[1].0),
        "strictly in order: {seen:?}"
    );
    let allowed = (took.as_millis() / 50) as usize + 2;
    assert!(
        seen.len() <= allowed,
        "{} reports heard from a loop of {took:?}: not rate-limited",
        seen.len()
    );
}
