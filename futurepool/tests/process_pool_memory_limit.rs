//! Issue 13, memory limits: a worker whose memory passes the pool's limit while it runs a task is
//! killed at once; that task alone fails `MemoryLimit`, the worker is replaced, others finish.

mod support;

use std::time::Duration;

use futurepool::{ProcessPool, TaskError};
use support::within;

const MIB: u64 = 1 << 20;
const LIMIT: u64 = 256 * MIB;

/// Grows by 64 MiB a second (touching every page, so it is resident) up to `mib` MiB, then
/// returns how much it held.
fn grow_64_mib_per_s(mib: u64) -> u64 {
    let mut held: Vec<Vec<u8>> = Vec::new();
    for _ in 0..mib {
        held.push(vec![1u8; MIB as usize]);
        std::thread::sleep(Duration::from_micros(1_000_000 / 64));
    }
    held.iter().map(|b| b.len() as u64).sum::<u64>() / MIB
}
fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}
/// Leaks `mib` MiB (resident), then returns its worker's pid.
fn leak_mib(mib: u64) -> u32 {
    for _ in 0..mib {
        std::mem::forget(vec![1u8; MIB as usize]);
    }
    std::process::id()
}
futurepool::register!(grow_64_mib_per_s, sleep_ms, leak_mib);
futurepool::test_support!();

#[test]
fn a_task_allocating_64_mib_per_s_under_a_256_mib_limit_fails_memory_limit_while_others_finish() {
    within(Duration::from_secs(120), "memory limit", || {
        let pool = ProcessPool::builder()
            .max_workers(2)
            .memory_limit(LIMIT)
            .build()
            .unwrap();
        let hog = pool.submit(grow_64_mib_per_s, 1024);
        let others: Vec<_> = (0..20).map(|_| pool.submit(sleep_ms, 100)).collect();
        match hog.result() {
            Err(TaskError::MemoryLimit { limit, used }) => {
                assert_eq!(limit, LIMIT);
                assert!(used > LIMIT, "killed at {used} bytes, under the limit");
                assert!(used < 2 * LIMIT, "killed only at {used} bytes");
                let message =
                    TaskError::<std::convert::Infallible>::MemoryLimit { limit, used }.to_string();
                assert!(message.contains("memory_limit"), "{message}");
            }
            other => panic!("expected MemoryLimit, got {other:?}"),
        }
        for task in &others {
            assert_eq!(task.result(), Ok(100));
        }
        // Two at once need two workers: the killed one was replaced; within the limit they run.
        let after: Vec<_> = (0..2).map(|_| pool.submit(grow_64_mib_per_s, 8)).collect();
        for task in &after {
            assert_eq!(task.result(), Ok(8));
        }
        assert!(
            pool.workers_started() >= 3,
            "the killed worker was replaced"
        );
    });
}

#[test]
fn a_worker_above_max_memory_per_child_after_a_task_is_replaced_before_the_next() {
    within(Duration::from_secs(120), "memory recycling", || {
        let pool = ProcessPool::builder()
            .max_workers(1)
            .max_memory_per_child(128 * MIB)
            .build()
            .unwrap();
        let small_a = pool.submit(leak_mib, 1).result().unwrap();
        let small_b = pool.submit(leak_mib, 1).result().unwrap();
        assert_eq!(small_a, small_b, "a worker under the threshold is reused");
        let leaky = pool.submit(leak_mib, 200).result().unwrap();
        assert_eq!(leaky, small_a);
        let next = pool.submit(leak_mib, 1).result().unwrap();
        assert_ne!(next, leaky, "the worker above the threshold was replaced");
        assert_eq!(pool.workers_started(), 2);
    });
}
