//! A CPU-bound `map` on the process pool: count the primes below two million in chunks, each
//! chunk in a worker process.
//!
//! The function is a plain `fn`, registered by name so the workers (this same executable,
//! re-executed) can find it; `futurepool::init()` is the first line of `main` because that is
//! where a worker starts serving. In Rust, threads would scale just as well on this job — choose
//! processes when a task might crash, leak or hang and you want it contained and killable.
//!
//! ```text
//! cargo run --release -p futurepool --example cpu_map
//! ```

use std::time::Instant;

use futurepool::ProcessPool;

/// Primes in `start..end`, by trial division.
fn count_primes((start, end): (u64, u64)) -> u64 {
    (start..end).filter(|&n| is_prime(n)).count() as u64
}
futurepool::register!(count_primes);

fn is_prime(n: u64) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

fn main() {
    futurepool::init();

    const LIMIT: u64 = 2_000_000;
    const CHUNK: u64 = 100_000;
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let pool = ProcessPool::new(workers).expect("start the worker processes");

    let started = Instant::now();
    let ranges = (0..LIMIT)
        .step_by(CHUNK as usize)
        .map(|start| (start, (start + CHUNK).min(LIMIT)));
    let primes: u64 = pool
        .map(count_primes, ranges)
        .map(|count| count.expect("a chunk failed"))
        .sum();
    println!(
        "{primes} primes below {LIMIT}, counted by {workers} worker processes in {:.2?}",
        started.elapsed()
    );
    assert_eq!(primes, 148_933);
}
