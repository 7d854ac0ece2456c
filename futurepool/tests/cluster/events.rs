//! The cluster worker's `tracing` events seen from outside: a worker started with
//! [`TRACE_EVENTS`] set prints every futurepool event on its stderr (one line each, `event LEVEL
//! field=value ...`), so a test can read what a worker in another process reported — here the
//! redelivery of a task whose worker was killed. Without the `tracing` feature there is nothing
//! to see and no test.

#[cfg(feature = "tracing")]
pub use traced::{print_events_to_stderr, TESTS};

#[cfg(not(feature = "tracing"))]
pub const TESTS: &[(&str, fn())] = &[];

/// Set in a worker's environment: it prints futurepool's events on its stderr.
#[cfg_attr(not(feature = "tracing"), allow(dead_code))]
pub const TRACE_EVENTS: &str = "FUTUREPOOL_TEST_TRACE_EVENTS";

#[cfg(feature = "tracing")]
mod traced {
    use std::fmt::Write as _;
    use std::io::Write as _;

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};

    use super::TRACE_EVENTS;
    use crate::support::*;
    use crate::{traced, World, LEASE};

    pub const TESTS: &[(&str, fn())] = &[(
        "a_task_redelivered_after_its_worker_was_killed_is_traced_by_the_worker_that_claims_it",
        a_task_redelivered_after_its_worker_was_killed_is_traced_by_the_worker_that_claims_it,
    )];

    /// Writes each futurepool event as one line on stderr; spans are not needed.
    struct StderrEvents;

    struct Line(String);

    impl Visit for Line {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            let _ = write!(self.0, " {}={:?}", field.name(), value);
        }
        fn record_str(&mut self, field: &Field, value: &str) {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }

    impl Subscriber for StderrEvents {
        fn enabled(&self, metadata: &Metadata<'_>) -> bool {
            metadata.target() == "futurepool"
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            let mut line = Line(format!("event {}", event.metadata().level()));
            event.record(&mut line);
            // One write per line, so lines of several threads do not interleave.
            line.0.push('\n');
            let _ = std::io::stderr().write_all(line.0.as_bytes());
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    /// In a worker started with [`TRACE_EVENTS`] set: print events from now on.
    pub fn print_events_to_stderr() {
        if std::env::var_os(TRACE_EVENTS).is_some() {
            tracing::subscriber::set_global_default(StderrEvents).expect("the only subscriber");
        }
    }

    /// A task runs on a worker that is then SIGKILLed; the worker that claims it once the lease
    /// has passed emits the redelivery event naming the task, and runs it.
    fn a_task_redelivered_after_its_worker_was_killed_is_traced_by_the_worker_that_claims_it() {
        let world = World::new("redelivery-traced");
        let pool = world.client(LEASE, 3);
        let mut lost = world.worker(1, 0);
        let task = pool.submit_with_id("redeliver-me", traced, world.job("r", 1500));
        wait_for("the task to start", || {
            count(world.log(), "start", "r") == 1
        });
        assert_eq!(pids(world.log(), "start", "r"), [lost.pid()]);
        let events = world.scratch.path("claimer.stderr");
        let claimer = WorkerProcess::start_with_env(
            &WorkerSpec {
                url: world.broker.url(),
                pool: world.pool.clone(),
                threads: 1,
                prefetch: 0,
                processes: None,
                stderr: events.clone(),
            },
            &[(TRACE_EVENTS, "1")],
        );
        lost.signal(libc::SIGKILL);
        lost.wait();

        assert_eq!(task.result_timeout(PATIENCE), Ok(claimer.pid()));
        let text = std::fs::read_to_string(&events).unwrap_or_default();
        let redelivered: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("task redelivered: its worker was lost"))
            .collect();
        assert_eq!(redelivered.len(), 1, "one redelivery event:\n{text}");
        let line = redelivered[0];
        assert!(
            line.starts_with("event WARN")
                // The broker's id of a task submitted with its own id.
                && line.contains("task=id:redeliver-me")
                && line.contains(&format!("pool={}", world.pool)),
            "{line}"
        );
    }
}
