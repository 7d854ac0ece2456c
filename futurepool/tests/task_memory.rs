//! Issue 16's memory budget for a pending thread-pool task (≤ 96 bytes: handle, queue slot and
//! allocation), pinned through a counting global allocator. A binary of its own, so the allocator
//! counts nothing but these tests.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::mpsc;
use std::time::Duration;

use futurepool::{Task, ThreadPool};

/// Counts what the current thread allocates while its window is open.
struct Counting;

thread_local! {
    /// The sizes asked for while the window is open, in order; `None` when it is closed.
    static WINDOW: Cell<Option<Recorded>> = const { Cell::new(None) };
}

/// At most this many allocations are recorded per window (more are still counted).
const RECORDED: usize = 8;

#[derive(Clone, Copy, Debug)]
struct Recorded {
    count: usize,
    sizes: [usize; RECORDED],
}

// SAFETY: every call is forwarded to `System`; the bookkeeping only reads and writes a
// thread-local `Cell` (const-initialised, so touching it never allocates).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        // SAFETY: forwarded with the caller's arguments.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn record(size: usize) {
    // `try_with`: the thread-local may be gone while the thread exits.
    let _ = WINDOW.try_with(|window| {
        if let Some(mut recorded) = window.get() {
            if recorded.count < RECORDED {
                recorded.sizes[recorded.count] = size;
            }
            recorded.count += 1;
            window.set(Some(recorded));
        }
    });
}

/// Runs `f` and returns the sizes of the allocations this thread made meanwhile.
fn allocations_of<R>(f: impl FnOnce() -> R) -> (R, Vec<usize>) {
    WINDOW.with(|window| {
        window.set(Some(Recorded {
            count: 0,
            sizes: [0; RECORDED],
        }))
    });
    let result = f();
    let recorded = WINDOW
        .with(|window| window.take())
        .expect("the window is still open");
    let sizes = recorded.sizes[..recorded.count.min(RECORDED)].to_vec();
    assert!(recorded.count <= RECORDED, "{} allocations", recorded.count);
    (result, sizes)
}

#[test]
fn a_task_handle_is_two_words() {
    assert_eq!(std::mem::size_of::<Task<u64>>(), 16);
    assert_eq!(std::mem::size_of::<Task<()>>(), 16);
}

/// One allocation of 56 bytes (the `Arc`'s two counts, the state word, the outcome slot, the
/// listener pointer): malloc's 64-byte class. With the 16-byte handle and the 8-byte queue slot
/// that is 88 bytes per pending no-op task.
#[test]
fn a_pending_no_op_task_is_one_allocation_of_56_bytes() {
    let pool = ThreadPool::new(1);
    let (release, gate) = mpsc::channel::<()>();
    let (started_tx, started) = mpsc::channel::<()>();
    let blocker = pool.submit(move || {
        started_tx.send(()).unwrap();
        gate.recv_timeout(Duration::from_secs(60)).is_ok()
    });
    started
        .recv_timeout(Duration::from_secs(60))
        .expect("the worker started the blocking task");
    // Grow the queue first, so the submits measured below find room in it (capacity 128).
    let mut handles: Vec<Task<()>> = (0..100).map(|_| pool.submit(|| ())).collect();
    handles.reserve(10);
    for _ in 0..10 {
        let (task, sizes) = allocations_of(|| pool.submit(|| ()));
        assert_eq!(sizes, [56], "the allocations of one pending no-op submit");
        handles.push(task);
    }
    release.send(()).unwrap();
    assert_eq!(blocker.result(), Ok(true));
    for task in &handles {
        assert_eq!(task.result_timeout(Duration::from_secs(60)), Ok(()));
    }
}

/// A handle polled as a future while its task is pending registers one waker, whatever the
/// number of polls, and dropping the handle removes it: the first such poll boxes the handle
/// with the registration's id (no handle pays for that up front).
#[test]
fn polling_a_pending_task_again_adds_no_allocation() {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll, Waker};

    let pool = ThreadPool::new(1);
    let (release, gate) = mpsc::channel::<()>();
    let mut task = pool.submit(move || gate.recv_timeout(Duration::from_secs(60)).is_ok());
    let mut cx = Context::from_waker(Waker::noop());
    assert!(Pin::new(&mut task).poll(&mut cx).is_pending());
    let (poll, sizes) = allocations_of(|| Pin::new(&mut task).poll(&mut cx));
    assert!(poll.is_pending());
    assert_eq!(
        sizes,
        [] as [usize; 0],
        "a second poll refreshes the registration"
    );
    release.send(()).unwrap();
    let done = loop {
        if let Poll::Ready(outcome) = Pin::new(&mut task).poll(&mut cx) {
            break outcome;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    assert_eq!(done, Ok(true));
}
