//! The demo's pure-CPU job: testing large primes for primality by trial division.
//!
//! It is the job of the `ProcessPoolExecutor` example in Python's documentation, scaled up: there
//! the numbers have 15 digits and Python takes about a second each; Rust tests these 16-digit
//! primes in some 50 ms each, so the whole section stays short while every task is long enough to
//! dwarf the cost of handing it to a worker.
//!
//! In CPython (with its GIL) a thread pool gives about 1× on this job — one thread runs Python
//! code at a time — and only a process pool scales. Rust has no such lock: both pools scale with
//! the cores, and the section prints the measured numbers to show it.

use std::time::Instant;

use futurepool::{ProcessPool, Shutdown, ThreadPool};
use serde::Serialize;

use super::{set_speedups, Mode, Run};

/// Sixteen primes just above 2.5 × 10^15. Being prime, each one makes the loop run to its square
/// root (about 25 million divisions): the same amount of work for every task.
pub const PRIMES: [u64; 16] = [
    2_500_000_000_000_043,
    2_500_000_000_000_049,
    2_500_000_000_000_099,
    2_500_000_000_000_163,
    2_500_000_000_000_187,
    2_500_000_000_000_253,
    2_500_000_000_000_271,
    2_500_000_000_000_273,
    2_500_000_000_000_289,
    2_500_000_000_000_339,
    2_500_000_000_000_343,
    2_500_000_000_000_357,
    2_500_000_000_000_403,
    2_500_000_000_000_471,
    2_500_000_000_000_513,
    2_500_000_000_000_523,
];

/// The numbers the CPU section tests: `count` of them, cycling through [`PRIMES`].
pub fn inputs(count: usize) -> Vec<u64> {
    PRIMES.iter().copied().cycle().take(count).collect()
}

/// Whether `n` is prime, by trial division with odd divisors up to its square root.
// `#[inline(never)]`: the registry finds a submitted function by its address, and in release
// builds rustc may give a small function a private copy per codegen unit, so the address passed
// to `submit` would not be the registered one.
#[inline(never)]
pub fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    if n.is_multiple_of(2) {
        return n == 2;
    }
    let mut divisor = 3u64;
    // `divisor <= n / divisor` is `divisor² <= n` without overflow near u64::MAX.
    while divisor <= n / divisor {
        if n.is_multiple_of(divisor) {
            return false;
        }
        divisor += 2;
    }
    true
}
futurepool::register!(is_prime);

/// The CPU section's measurements.
#[derive(Debug, Serialize)]
pub struct CpuSection {
    /// Numbers tested by each run.
    pub tasks: usize,
    /// Workers of each pool.
    pub workers: usize,
    /// What each task computes.
    pub job: &'static str,
    /// Serial, thread pool, process pool.
    pub runs: Vec<Run>,
}

impl CpuSection {
    /// Every run answered "prime" for every number.
    pub fn as_expected(&self) -> bool {
        self.runs
            .iter()
            .all(|r| r.succeeded == self.tasks && r.failed == 0)
    }
}

/// Tests `tasks` primes serially, then on a thread pool and a process pool of `workers` each.
pub fn run(tasks: usize, workers: usize) -> Result<CpuSection, String> {
    let numbers = inputs(tasks);
    let mut runs = Vec::new();
    for mode in [Mode::Serial, Mode::ThreadPool, Mode::ProcessPool] {
        let started = Instant::now();
        let answers: Vec<Result<bool, String>> = match mode {
            Mode::Serial => numbers.iter().map(|&n| Ok(is_prime(n))).collect(),
            Mode::ThreadPool => {
                let pool = ThreadPool::new(workers);
                let answers = pool
                    .map(is_prime, numbers.iter().copied())
                    .map(|answer| answer.map_err(|e| e.to_string()))
                    .collect();
                pool.shutdown(Shutdown::default());
                answers
            }
            Mode::ProcessPool => {
                let pool = ProcessPool::new(workers)
                    .map_err(|e| format!("cannot start the process pool: {e}"))?;
                let answers = pool
                    .map(is_prime, numbers.iter().copied())
                    .map(|answer| answer.map_err(|e| e.to_string()))
                    .collect();
                pool.shutdown(Shutdown::default());
                answers
            }
        };
        let wall_s = started.elapsed().as_secs_f64();
        let wrong = answers.iter().filter(|a| !matches!(a, Ok(true))).count();
        runs.push(Run {
            mode,
            workers: if mode == Mode::Serial { 1 } else { workers },
            wall_s,
            speedup: 0.0,
            succeeded: tasks - wrong,
            failed: wrong,
            first_error: answers.iter().find_map(|a| match a {
                Ok(true) => None,
                Ok(false) => Some("a prime was reported composite".to_string()),
                Err(e) => Some(e.clone()),
            }),
        });
    }
    set_speedups(&mut runs);
    Ok(CpuSection {
        tasks,
        workers,
        job: "primality of a 16-digit prime by trial division",
        runs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_numbers() {
        let primes: Vec<u64> = (0..30).filter(|&n| is_prime(n)).collect();
        assert_eq!(primes, [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]);
    }

    #[test]
    fn squares_and_large_composites() {
        assert!(!is_prime(3 * 3));
        assert!(!is_prime(4_294_967_291 * 3)); // prime × 3
        assert!(!is_prime(PRIMES[0] + 2));
        assert!(!is_prime(u64::MAX)); // 3 × 5 × 17 × 257 × 641 × 65537 × 6700417
        assert!(is_prime(4_294_967_291)); // the largest 32-bit prime
    }

    #[test]
    fn the_listed_numbers_are_prime() {
        // One is enough to pin the constant's shape; the demo checks every answer it gets.
        assert!(is_prime(PRIMES[0]));
    }

    #[test]
    fn inputs_cycle_through_the_primes() {
        let numbers = inputs(18);
        assert_eq!(numbers.len(), 18);
        assert_eq!(numbers[16], PRIMES[0]);
    }
}
