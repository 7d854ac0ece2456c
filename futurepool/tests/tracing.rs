//! The `tracing` feature (issue 14): a span per thread pool task, events for worker start and
//! exit, for process workers killed (time limit, memory limit, abort) or exiting, and for cluster
//! workers starting and stopping, seen by a real subscriber.
#![cfg(feature = "tracing")]

mod support;

use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use futurepool::cluster::{MemoryBroker, ServeOptions};
use futurepool::{ProcessPool, Shutdown, TaskError, ThreadPool};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

fn hang(_: ()) {
    loop {
        std::thread::park();
    }
}
fn exit_with(code: i32) {
    std::process::exit(code);
}
/// Holds more and more resident memory, 8 MiB every 10 ms, until it is killed.
fn grow_forever(_: ()) {
    let mut held: Vec<Vec<u8>> = Vec::new();
    loop {
        held.push(vec![1u8; 8 << 20]);
        std::thread::sleep(Duration::from_millis(10));
    }
}
fn cluster_double(n: u32) -> u32 {
    n * 2
}
futurepool::register!(hang, exit_with, grow_forever, cluster_double);
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

#[test]
fn process_workers_killed_for_memory_or_an_abort_and_their_exits_are_events() {
    let recorder = recorder();
    support::within(
        Duration::from_secs(120),
        "process pool kill and exit tracing",
        move || {
            let pool = ProcessPool::builder()
                .max_workers(1)
                .memory_limit(64 << 20)
                .build()
                .unwrap();
            assert!(matches!(
                pool.submit(grow_forever, ()).result(),
                Err(TaskError::MemoryLimit { .. })
            ));
            let running = pool.submit(hang, ());
            while !running.is_running() {
                std::thread::sleep(Duration::from_millis(5));
            }
            assert!(running.abort());
            assert_eq!(running.result(), Err(TaskError::Cancelled));
            assert!(matches!(
                pool.submit(exit_with, 3).result(),
                Err(TaskError::WorkerLost(_))
            ));
            pool.shutdown(Shutdown::default());
            let lines = recorder.lines.lock().unwrap().clone();
            let text = lines.join("\n");
            assert_eq!(
                lines_with(
                    &lines,
                    &[
                        "WARN",
                        "worker killed: memory limit",
                        "limit_bytes=67108864",
                        "used_bytes="
                    ]
                ),
                1,
                "{text}"
            );
            assert_eq!(
                lines_with(&lines, &["INFO", "worker killed: task aborted", "pid="]),
                1,
                "{text}"
            );
            // The two killed workers died by SIGKILL holding a call; the third exited by itself.
            assert_eq!(
                lines_with(
                    &lines,
                    &["WARN", "worker exited", "how=signal 9", "held=true"]
                ),
                2,
                "{text}"
            );
            assert_eq!(
                lines_with(
                    &lines,
                    &["WARN", "worker exited", "how=exit code 3", "held=true"]
                ),
                1,
                "{text}"
            );
        },
    );
}

#[test]
fn cluster_workers_starting_and_stopping_are_events() {
    let recorder = recorder();
    support::within(Duration::from_secs(120), "cluster tracing", move || {
        let broker = MemoryBroker::new();
        let worker = broker.serve(ServeOptions::default().pool("traced-cluster"));
        let pool = broker.pool("traced-cluster").build().unwrap();
        assert_eq!(pool.submit(cluster_double, 21).result(), Ok(42));
        drop(pool);
        worker.stop().unwrap();
        let lines = recorder.lines.lock().unwrap().clone();
        let text = lines.join("\n");
        assert_eq!(
            lines_with(
                &lines,
                &["INFO", "worker started", "pool=traced-cluster", "threads="]
            ),
            1,
            "{text}"
        );
        assert_eq!(
            lines_with(&lines, &["INFO", "worker exited", "pool=traced-cluster"]),
            1,
            "{text}"
        );
    });
}
