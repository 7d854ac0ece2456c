//! The `tracing` feature (issue 14): a span per thread pool task, events for worker start and
//! exit and for a process worker killed by a time limit, seen by a real subscriber.
#![cfg(feature = "tracing")]

mod support;

use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use futurepool::{ProcessPool, Shutdown, TaskError, ThreadPool};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

fn hang(_: ()) {
    loop {
        std::thread::park();
    }
}
futurepool::register!(hang);
futurepool::test_support!();

/// Every span opened and event seen, as text lines: `span NAME k=v ...` / `event k=v ...`.
#[derive(Default)]
struct Recorder {
    lines: Mutex<Vec<String>>,
    next: std::sync::atomic::AtomicU64,
}

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={:?}", field.name(), value);
    }
}

impl Subscriber for &'static Recorder {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target() == "futurepool"
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut fields = Fields(format!("span {}", span.metadata().name()));
        span.record(&mut fields);
        self.lines.lock().unwrap().push(fields.0);
        Id::from_u64(1 + self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields(format!("event {}", event.metadata().level()));
        event.record(&mut fields);
        self.lines.lock().unwrap().push(fields.0);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

fn recorder() -> &'static Recorder {
    static RECORDER: OnceLock<&'static Recorder> = OnceLock::new();
    RECORDER.get_or_init(|| {
        let recorder: &'static Recorder = Box::leak(Box::default());
        tracing::subscriber::set_global_default(recorder).expect("the only subscriber");
        recorder
    })
}

fn lines_with(all: &[String], parts: &[&str]) -> usize {
    all.iter()
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .count()
}

#[test]
fn thread_pool_tasks_have_spans_and_workers_have_start_and_exit_events() {
    let recorder = recorder();
    support::within(Duration::from_secs(120), "thread pool tracing", move || {
        let pool = ThreadPool::builder()
            .max_workers(1)
            .thread_name_prefix("traced")
            .build();
        let tasks: Vec<_> = (0..3).map(|n| pool.submit(move || n)).collect();
        tasks.iter().for_each(|t| t.wait());
        pool.shutdown(Shutdown::default());
        let lines = recorder.lines.lock().unwrap().clone();
        let text = lines.join("\n");
        assert_eq!(
            lines_with(&lines, &["span task", "pool=traced"]),
            3,
            "{text}"
        );
        assert_eq!(
            lines_with(&lines, &["submitted", "pool=traced"]),
            3,
            "{text}"
        );
        assert_eq!(
            lines_with(&lines, &["worker started", "worker=\"traced-0\""]),
            1,
            "{text}"
        );
        assert_eq!(
            lines_with(&lines, &["worker exited", "worker=\"traced-0\""]),
            1,
            "{text}"
        );
    });
}

#[test]
fn a_process_worker_killed_by_a_time_limit_is_an_event() {
    let recorder = recorder();
    support::within(
        Duration::from_secs(120),
        "process pool tracing",
        move || {
            let pool = ProcessPool::builder()
                .max_workers(1)
                .time_limit(Duration::from_millis(200))
                .build()
                .unwrap();
            assert!(matches!(
                pool.submit(hang, ()).result(),
                Err(TaskError::TimeLimit(_))
            ));
            let lines = recorder.lines.lock().unwrap().clone();
            let text = lines.join("\n");
            assert!(
                lines_with(&lines, &["worker started", "pid="]) >= 1,
                "{text}"
            );
            assert_eq!(
                lines_with(
                    &lines,
                    &["WARN", "worker killed: time limit", "limit_ms=200"]
                ),
                1,
                "{text}"
            );
        },
    );
}
