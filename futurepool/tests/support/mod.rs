//! Helpers shared by the integration tests: `mod support;` at the top of a test file.
//!
//! [`within`] is the watchdog every hostile test runs under: a hang (a drop that never returns, a
//! task that never resolves) becomes a failure that names what hung, instead of a stalled run.
#![allow(dead_code)]

use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

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
