//! Abort → handle resolved latency, per backend (issue 13's figures). Not a timed assertion:
//! run by hand, in release, and read the printout:
//! `cargo test -p futurepool --release --test abort_latency -- --ignored --nocapture`

use std::time::{Duration, Instant};

use futurepool::{current_token, ProcessPool, ThreadPool};

/// Spins on its token (a thread-pool task), polling every 100 µs.
fn polls_token() {
    let token = current_token();
    while !token.is_cancelled() {
        std::thread::sleep(Duration::from_micros(100));
    }
}
fn sleep_forever(started: String) -> u8 {
    std::fs::write(started, b"1").unwrap();
    std::thread::sleep(Duration::from_secs(600));
    0
}
futurepool::register!(sleep_forever);
futurepool::test_support!();

fn report(backend: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    eprintln!(
        "{backend}: n={} p50={:?} p99={:?} max={:?}",
        samples.len(),
        at(0.50),
        at(0.99),
        samples[samples.len() - 1]
    );
}

#[test]
#[ignore = "a measurement, run by hand in release"]
fn abort_latency_per_backend() {
    let threads = ThreadPool::new(1);
    let mut samples = Vec::new();
    for _ in 0..200 {
        let (tx, rx) = std::sync::mpsc::channel();
        let task = threads.submit(move || {
            tx.send(()).unwrap();
            polls_token();
        });
        rx.recv().unwrap();
        // Let it get into its polling loop, so the figure is not the first check's.
        std::thread::sleep(Duration::from_millis(2));
        let start = Instant::now();
        task.abort();
        task.wait();
        samples.push(start.elapsed());
    }
    report("thread pool (task polls its token every 100 µs)", samples);

    let processes = ProcessPool::new(1).unwrap();
    let marker = std::env::temp_dir().join(format!("futurepool-latency-{}", std::process::id()));
    let mut samples = Vec::new();
    for _ in 0..100 {
        let _ = std::fs::remove_file(&marker);
        let task = processes.submit(sleep_forever, marker.to_string_lossy().into_owned());
        while !marker.exists() {
            std::thread::sleep(Duration::from_micros(200));
        }
        let start = Instant::now();
        task.abort();
        task.wait();
        samples.push(start.elapsed());
    }
    let _ = std::fs::remove_file(&marker);
    report(
        "process pool (worker killed, task ignores its token)",
        samples,
    );
}
