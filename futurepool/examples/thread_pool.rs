//! A tour of the thread pool: submit, wait, as_completed, map, errors and shutdown.
//!
//! Run: `cargo run -p futurepool --example thread_pool`

use std::time::Duration;

use futurepool::{as_completed, wait, ReturnWhen, Shutdown, TaskError, ThreadPool};

/// Stands in for I/O: sleeps, then reports how long it "took".
fn fetch(millis: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(millis));
    millis
}

fn main() {
    let pool = ThreadPool::builder()
        .max_workers(4)
        .thread_name_prefix("tour")
        .build();

    // Submit returns a handle at once; `result` blocks until the value is there.
    let task = pool.submit(|| fetch(20));
    println!("one task: {:?}", task.result());

    // Completion order, whatever the submission order.
    let tasks: Vec<_> = [60, 20, 40]
        .into_iter()
        .map(|ms| pool.submit(move || fetch(ms)))
        .collect();
    for done in as_completed(&tasks, Some(Duration::from_secs(5))) {
        println!("as completed: {:?}", done.expect("within 5 s").result());
    }

    // Input order, lazily, with each item's error in its place.
    let inputs = ["7", "x", "42"];
    for (input, parsed) in inputs
        .iter()
        .zip(pool.map_fallible(|s: &str| s.parse::<u32>(), inputs))
    {
        match parsed {
            Ok(n) => println!("map: {input} -> {n}"),
            Err(TaskError::Failed(e)) => println!("map: {input} -> error: {e}"),
            Err(other) => println!("map: {input} -> not run: {other}"),
        }
    }

    // Stop at the first failure.
    let checks = [
        pool.submit_fallible(|| Ok::<_, String>(fetch(30))),
        pool.submit_fallible(|| Err("disk full".to_string())),
    ];
    let (done, not_done) = wait(&checks, ReturnWhen::FirstException, None);
    println!(
        "wait: {} done, {} still running",
        done.len(),
        not_done.len()
    );

    // A panic fails its task only; the worker lives on.
    let boom = pool.submit(|| -> u8 { panic!("bug in one task") });
    println!(
        "panicked task: {:?}",
        boom.result().map_err(|e| e.to_string())
    );

    pool.shutdown(Shutdown::default());
    println!("after shutdown: {:?}", pool.submit(|| 1).result());
}
