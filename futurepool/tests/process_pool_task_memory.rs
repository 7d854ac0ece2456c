//! Issue 16, part 2: what a pending process-pool task costs the parent, pinned through a counting
//! global allocator (a binary of its own, so it counts nothing but this test).
//!
//! The bug: 100,000 pending no-op tasks took 68.6 MiB of parent RSS, against 26.5 MiB a few
//! features earlier. Each pending task carried a 16-byte abort hook in its allocation (72 bytes,
//! out of malloc's 64-byte class), a 72-byte sink (an `Option` around the handle, an
//! `Option<Instant>`, a `u64` item count and a flag for its stats), and a 112-byte queue entry (two
//! `Option<Duration>` limits, a `Vec` for a chunk's item ends).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use futurepool::{ProcessPool, Shutdown, Task, TaskError};

/// Counts the bytes live on the heap, all threads together.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to `System`; the bookkeeping is one relaxed atomic add.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: forwarded with the caller's arguments.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn noop(n: u64) -> u64 {
    n
}

fn hold(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

futurepool::register!(noop, hold);
futurepool::test_support!();

/// Per pending no-op task: the 16-byte handle, one 56-byte allocation, a 40-byte sink, the 8-byte
/// argument and a 96-byte queue entry (fewer entries than tasks sit in the queue: the writer has
/// taken a batch into the blocked worker's pipe), measured 202 bytes. The code with the bug
/// measured 267 here; the bound leaves room for a field or two, not for a regression that size.
#[test]
fn a_pending_process_task_costs_the_parent_at_most_250_bytes() {
    // Just under a power of two, so the queue's doubling leaves little spare capacity.
    const TASKS: usize = 16_000;
    let pool = ProcessPool::new(1).unwrap();
    assert_eq!(
        pool.submit(noop, 1).result_timeout(Duration::from_secs(60)),
        Ok(1),
        "the worker is up"
    );
    let blocker = pool.submit(hold, 60_000);
    let mut tasks: Vec<Task<u64>> = Vec::with_capacity(TASKS);
    // Let the pool's threads settle (the blocker sent, their buffers grown) before counting.
    std::thread::sleep(Duration::from_millis(200));
    let before = LIVE.load(Ordering::Relaxed);
    tasks.extend((0..TASKS as u64).map(|i| pool.submit(noop, i)));
    std::thread::sleep(Duration::from_millis(200));
    let per_task = (LIVE.load(Ordering::Relaxed) - before) as f64 / TASKS as f64;
    eprintln!("{per_task:.1} bytes per pending process task");
    assert!(
        tasks.iter().all(|task| !task.is_done()),
        "every task is pending behind the blocker"
    );
    pool.shutdown(Shutdown::default().cancel_pending(true).abort_running(true));
    assert_eq!(
        blocker.result_timeout(Duration::from_secs(60)),
        Err(TaskError::Cancelled)
    );
    assert!(
        per_task <= 250.0,
        "{per_task:.1} bytes per pending process task"
    );
}
