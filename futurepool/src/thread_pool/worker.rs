//! A worker thread's life: run the initializer, then jobs until the pool closes.

use std::sync::Arc;

use crate::error::Reason;
use crate::panic;

use super::shared::{Shared, Sleeper};

/// The body of every worker thread.
pub(super) fn run(shared: Arc<Shared>) {
    if let Some(init) = shared.config.initializer.clone() {
        let failure = match panic::catch(|| init()) {
            Ok(Ok(())) => None,
            Ok(Err(message)) => Some(format!("the worker initializer failed: {message}")),
            Err(panic) => Some(format!("the worker initializer panicked: {panic}")),
        };
        if let Some(failure) = failure {
            shared.break_pool(Reason::new(failure));
            return;
        }
    }
    let sleeper = Sleeper::for_current_thread();
    let mark_idle = || shared.mark_idle();
    while let Some(job) = shared.next_job(&sleeper) {
        // Panics of the task and of its callbacks are caught inside `run_with`: the worker lives on.
        job.run_with(&mark_idle);
    }
    shared.worker_exited();
}
