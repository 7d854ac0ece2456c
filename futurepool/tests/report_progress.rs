//! Progress reported from inside a thread pool task (issue 14, progress from inside tasks):
//! reports arrive in order, rate-limited, the last one always, and none after the end.

mod support;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futurepool::{report_progress, ThreadPool};

const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn reports_arrive_in_order_rate_limited_and_the_last_always() {
    support::within(LIMIT, "progress in order", || {
        let pool = ThreadPool::new(1);
        let (go, gate) = mpsc::channel::<()>();
        const N: u64 = 2_000_000;
        let task = pool.submit(move || {
            gate.recv().unwrap();
            let start = Instant::now();
            for i in 1..=N {
                report_progress(i, N);
            }
            start.elapsed()
        });
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        task.on_progress(move |done, total| sink.lock().unwrap().push((done, total)));
        go.send(()).unwrap();
        let took = task.result().unwrap();
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.first(), Some(&(1, N)), "the first report gets through");
        assert_eq!(seen.last(), Some(&(N, N)), "the last report gets through");
        support::assert_in_order_and_rate_limited(&seen, took);
    });
}

#[test]
fn no_report_reaches_the_handle_after_the_end() {
    support::within(LIMIT, "none after the end", || {
        let pool = ThreadPool::new(1);
        let calls = Arc::new(Mutex::new(0u32));
        let (go, gate) = mpsc::channel::<()>();
        let task = pool.submit(move || {
            gate.recv().unwrap();
            report_progress(1, 2);
            report_progress(2, 2);
        });
        let counter = calls.clone();
        task.on_progress(move |_, _| *counter.lock().unwrap() += 1);
        go.send(()).unwrap();
        task.wait();
        let at_end = *calls.lock().unwrap();
        assert_eq!(at_end, 2);
        assert_eq!(task.progress(), None, "a done task shows no progress");
        // A callback set after the end is never called; a report from the next task on the same
        // worker reaches that task, not this one.
        let counter = calls.clone();
        task.on_progress(move |_, _| *counter.lock().unwrap() += 100);
        let next = pool.submit(|| report_progress(5, 5));
        next.wait();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(*calls.lock().unwrap(), at_end);
    });
}

#[test]
fn the_handle_shows_the_latest_report_while_the_task_runs() {
    support::within(LIMIT, "latest report", || {
        let pool = ThreadPool::new(1);
        let (step, steps) = mpsc::channel::<()>();
        let (reported, ack) = mpsc::channel::<()>();
        let task = pool.submit(move || {
            for i in 1..=3u64 {
                steps.recv().unwrap();
                // Past the rate limit, so each report gets through.
                std::thread::sleep(Duration::from_millis(60));
                report_progress(i * 10, 30);
                reported.send(()).unwrap();
            }
            // Still running while the caller looks at the last report.
            let _ = steps.recv();
        });
        assert_eq!(task.progress(), None, "nothing reported yet");
        for i in 1..=3u64 {
            step.send(()).unwrap();
            ack.recv().unwrap();
            assert_eq!(task.progress(), Some((i * 10, 30)));
        }
        step.send(()).unwrap();
        task.wait();
    });
}

#[test]
fn report_progress_outside_a_task_does_nothing() {
    report_progress(1, 1);
    let pool = ThreadPool::new(1);
    // A thread the task starts is not the task.
    let task = pool.submit(|| {
        std::thread::spawn(|| report_progress(1, 2)).join().unwrap();
        std::thread::sleep(Duration::from_millis(10));
    });
    task.wait();
    assert_eq!(task.progress(), None);
}

#[test]
fn a_panicking_progress_callback_is_removed_and_the_task_goes_on() {
    support::within(LIMIT, "panicking callback", || {
        std::panic::set_hook(Box::new(|_| {}));
        let pool = ThreadPool::new(1);
        let (go, gate) = mpsc::channel::<()>();
        let task = pool.submit(move || {
            gate.recv().unwrap();
            report_progress(1, 3);
            std::thread::sleep(Duration::from_millis(60));
            report_progress(2, 3);
            7
        });
        let calls = Arc::new(Mutex::new(0u32));
        let counter = calls.clone();
        task.on_progress(move |_, _| {
            *counter.lock().unwrap() += 1;
            panic!("a bad progress callback");
        });
        go.send(()).unwrap();
        assert_eq!(task.result(), Ok(7));
        assert_eq!(*calls.lock().unwrap(), 1, "removed after its panic");
    });
}
