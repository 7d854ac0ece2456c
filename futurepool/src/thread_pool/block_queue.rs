//! An unbounded lock-free first-in first-out queue for any number of pushers and takers, which
//! keeps the blocks it empties for the pushes to come instead of freeing them.
//!
//! # Why not `crossbeam_deque::Injector`
//!
//! The pool used crossbeam's `Injector` until a profile showed its blocks' life cycle costing more
//! than the queue itself: a submitting thread allocates every block (one per 63 jobs) and the
//! worker that takes a block's last job frees it. glibc returns a chunk to the arena it came
//! from, the submitter's, whose lock the submitter takes for nearly every allocation of a task;
//! and glibc's lock sleeps in the kernel at the first conflict. On two cores, 1,000,000 no-op
//! submits made about 24,000 such futex calls, most of the system calls of the whole run, and
//! the same binary ran 1.5–1.8× faster under jemalloc. Here the worker that empties a block
//! hands it back ([`SPARES`] kept), and the next push that needs a block takes it, so in a steady
//! flow no block is allocated or freed at all.
//!
//! # The protocol
//!
//! Jobs sit in blocks of [`BLOCK_SLOTS`] slots chained by `next`. Each end of the queue is a
//! position: an index and the block it falls in. An index counts [`LAP`] steps per block: one
//! per slot and one more, the *sentinel* offset `BLOCK_SLOTS`, which stands for "this end is
//! moving to the next block" and which nobody claims. Indices only grow, so a compare-exchange on
//! an index succeeds only for a thread whose look at that end is still current: a thread never
//! touches a block it looked up before such a successful step, and a block can be recycled (or
//! freed) while stale threads hold its address.
//!
//! - **Push**: claim the tail index with one compare-exchange, then write the slot and set its
//!   `WRITTEN` bit. Whoever claims a block's last slot installs the next block (taken from the
//!   spares, or allocated *before* the claim so nobody waits on an allocation): its pointer in
//!   `tail.block`, then the index past the sentinel, then `next` of the old block.
//! - **Take**: look at the head index; a SeqCst fence; the queue is empty if the tail index is
//!   the same (read only when the head has caught up with the last tail a taker saw, kept on
//!   the head's line, so the takers of a deep queue do not pull the pushers' line on every
//!   take). Otherwise claim the head index with one compare-exchange, wait (briefly) for the
//!   slot's `WRITTEN` bit, move the value out and set `TAKEN`. The taker of a block's last slot
//!   moves the head to the next block (waiting for `next` if its pusher has not linked it yet).
//! - **A block's end**: the taker of the last slot walks the block's other slots; at the first
//!   not yet `TAKEN` it sets `RELEASE` and leaves, and that slot's taker, seeing `RELEASE` when
//!   it sets `TAKEN`, goes on from there. Whoever finds every slot taken owns the block: it
//!   clears it and offers it to the spares (or frees it when they are full). No slot is read
//!   after its taker set `TAKEN`, so nobody is inside the block by then.
//! - **Why a take after a push never misses it**: the push's claim is a SeqCst compare-exchange
//!   on the tail, and the take reads the tail after a SeqCst fence; the pool pairs these with its
//!   own fences (`thread_pool/README.md`, "Why no wake-up is lost").
//!
//! The loom models at the bottom run the protocol with blocks of [`BLOCK_SLOTS`] = 3 across block
//! boundaries, with recycling; the unit tests run under miri.

use std::mem::MaybeUninit;
use std::ptr;

use crate::loom::cell::UnsafeCell;
use crate::loom::sync::atomic::{fence, AtomicPtr, AtomicUsize, Ordering};
use crate::loom::thread;

use super::padded::Padded;

/// Index steps per block: its slots and the sentinel. Small under loom, so a model of a few
/// pushes crosses block boundaries.
const LAP: usize = if cfg!(loom) { 4 } else { 64 };

/// Slots per block (a block is then 1,016 bytes for 8-byte values).
const BLOCK_SLOTS: usize = LAP - 1;

/// Emptied blocks kept for later pushes: a queue that shrinks and grows again by up to 2,016 jobs
/// allocates nothing, for at most 32 KB kept per pool; one draining from a deeper peak frees the
/// rest. (With 4 spares a 1M-task run still made ~13,000 arena-lock futex calls, with 32 ~7,000;
/// throughput was within the noise of each other.)
const SPARES: usize = 32;

/// A slot's value has been written.
const WRITTEN: usize = 1;
/// A slot's value has been moved out.
const TAKEN: usize = 2;
/// The walk over a block's slots stopped at this one: its taker finishes the walk.
const RELEASE: usize = 4;

struct Slot<T> {
    value: UnsafeCell<MaybeUninit<T>>,
    state: AtomicUsize,
}

struct Block<T> {
    /// The block after this one, set by the pusher that claims this block's last slot.
    next: AtomicPtr<Block<T>>,
    slots: [Slot<T>; BLOCK_SLOTS],
}

impl<T> Block<T> {
    fn allocate() -> *mut Block<T> {
        #[cfg(test)]
        ALLOCATED.with(|count| count.set(count.get() + 1));
        Box::into_raw(Box::new(Block {
            next: AtomicPtr::new(ptr::null_mut()),
            slots: std::array::from_fn(|_| Slot {
                value: UnsafeCell::new(MaybeUninit::uninit()),
                state: AtomicUsize::new(0),
            }),
        }))
    }

    /// Waits for the pusher of this block's last slot to link the next block.
    fn wait_next(&self) -> *mut Block<T> {
        let mut round = 0;
        loop {
            let next = self.next.load(Ordering::Acquire);
            if !next.is_null() {
                return next;
            }
            snooze(&mut round);
        }
    }
}

impl<T> Slot<T> {
    /// Waits for the pusher that claimed this slot to write it (it has claimed it, so it is
    /// between two of its own steps).
    fn wait_written(&self) {
        let mut round = 0;
        while self.state.load(Ordering::Acquire) & WRITTEN == 0 {
            snooze(&mut round);
        }
    }
}

/// One end of the queue.
struct Position<T> {
    index: AtomicUsize,
    block: AtomicPtr<Block<T>>,
}

impl<T> Position<T> {
    fn at(block: *mut Block<T>) -> Position<T> {
        Position {
            index: AtomicUsize::new(0),
            block: AtomicPtr::new(block),
        }
    }

    /// This end's index, its block and the offset in it; `None` (after a snooze) while the
    /// thread that claimed the block's last slot moves this end to the next block.
    fn look(&self, round: &mut u32) -> Option<(usize, *mut Block<T>, usize)> {
        let index = self.index.load(Ordering::Acquire);
        // Read after the index: the block's pointer is stored before the index moves into it,
        // so this is the index's block or, if the index has moved on, a later one (and then the
        // claim fails).
        let block = self.block.load(Ordering::Acquire);
        let offset = index % LAP;
        if offset == BLOCK_SLOTS {
            snooze(round);
            return None;
        }
        Some((index, block, offset))
    }

    /// Claims `index` for this thread: true if this end was still there (a SeqCst step, see
    /// the module docs); else snoozes, for the caller to look again.
    fn claim(&self, index: usize, round: &mut u32) -> bool {
        let claimed = self
            .index
            .compare_exchange_weak(index, index + 1, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok();
        if !claimed {
            snooze(round);
        }
        claimed
    }

    /// Moves this end from the sentinel of the block it claimed the last slot of to `next`: its
    /// pointer first, then the index, so a look that sees the new index sees `next`.
    fn move_to(&self, next: *mut Block<T>) {
        self.block.store(next, Ordering::Release);
        self.index.fetch_add(1, Ordering::Release);
    }
}

/// The head: its position, and a value the tail index had (the tail never goes back, so it is
/// at least this now). A taker whose index is below that knows its slot was claimed without
/// reading the tail, whose line the pushers write on every push: in a queue many jobs deep the
/// takers read it once per batch instead of once per job.
struct Head<T> {
    position: Position<T>,
    tail_seen: AtomicUsize,
}

/// The queue. Each end sits on a line of its own, so pushers and takers do not write each other's
/// lines.
pub(crate) struct BlockQueue<T> {
    head: Padded<Head<T>>,
    tail: Padded<Position<T>>,
    spares: [AtomicPtr<Block<T>>; SPARES],
}

// SAFETY: values move between threads through the queue (so `T: Send`); the queue's own state is
// atomics, and each slot's value is touched only by the one pusher and then the one taker that
// claimed its index, in that order (the `WRITTEN` bit, set with Release and read with Acquire).
unsafe impl<T: Send> Send for BlockQueue<T> {}
// SAFETY: as for `Send`: shared access only ever moves whole values in and out, one thread per
// slot at a time.
unsafe impl<T: Send> Sync for BlockQueue<T> {}

impl<T> BlockQueue<T> {
    pub(crate) fn new() -> BlockQueue<T> {
        let first = Block::allocate();
        BlockQueue {
            head: Padded(Head {
                position: Position::at(first),
                tail_seen: AtomicUsize::new(0),
            }),
            tail: Padded(Position::at(first)),
            spares: std::array::from_fn(|_| AtomicPtr::new(ptr::null_mut())),
        }
    }

    /// Adds `value` at the tail.
    pub(crate) fn push(&self, value: T) {
        let mut round = 0;
        let mut next_block: *mut Block<T> = ptr::null_mut();
        loop {
            let Some((tail, block, offset)) = self.tail.look(&mut round) else {
                continue;
            };
            if offset + 1 == BLOCK_SLOTS && next_block.is_null() {
                // Ready before the claim, so nobody waits on an allocation.
                next_block = self.spare_or_new_block();
            }
            if !self.tail.claim(tail, &mut round) {
                continue;
            }
            // SAFETY: the claim succeeded, so `block` is the block of index `tail` (see
            // `Position::look`), and a block is recycled only once all its slots are taken, this
            // one included.
            let block = unsafe { &*block };
            if offset + 1 == BLOCK_SLOTS {
                self.tail.move_to(next_block);
                block.next.store(next_block, Ordering::Release);
            } else if !next_block.is_null() {
                // Prepared for a last slot another pusher claimed first.
                self.recycle(next_block);
            }
            let slot = &block.slots[offset];
            // SAFETY: this thread claimed the slot, so nobody else writes it, and its taker reads
            // it only after seeing `WRITTEN`, set below with Release.
            slot.value.with_mut(|cell| unsafe { (*cell).write(value) });
            slot.state.fetch_or(WRITTEN, Ordering::Release);
            return;
        }
    }

    /// Takes the value at the head, or `None` if the queue is empty.
    pub(crate) fn pop(&self) -> Option<T> {
        let mut round = 0;
        let head_end = &self.head.position;
        loop {
            let Some((head, block, offset)) = head_end.look(&mut round) else {
                continue;
            };
            // Pairs with the SeqCst claim of a push, and with the fences of the pool's wake-up
            // protocol: a push that precedes this fence is seen below.
            fence(Ordering::SeqCst);
            if self.head.tail_seen.load(Ordering::Relaxed) <= head {
                let tail = self.tail.index.load(Ordering::Relaxed);
                if tail == head {
                    return None;
                }
                self.head.tail_seen.store(tail, Ordering::Relaxed);
            }
            if !head_end.claim(head, &mut round) {
                continue;
            }
            // SAFETY: the claim succeeded, so `block` is the block of index `head`, and it is not
            // recycled before this thread sets `TAKEN` on the slot (or, for the last slot, walks
            // the block below).
            let block_ref = unsafe { &*block };
            if offset + 1 == BLOCK_SLOTS {
                head_end.move_to(block_ref.wait_next());
            }
            let slot = &block_ref.slots[offset];
            slot.wait_written();
            // SAFETY: this thread claimed the slot and its value is written (`WRITTEN` read with
            // Acquire); the value is moved out once, and the slot is not read again.
            let value = slot
                .value
                .with(|cell| unsafe { (*cell).assume_init_read() });
            if offset + 1 == BLOCK_SLOTS {
                // SAFETY: the last slot's taker starts the walk over the block's other slots.
                unsafe { self.release(block, 0) };
            } else if slot.state.fetch_or(TAKEN, Ordering::AcqRel) & RELEASE != 0 {
                // SAFETY: the walk stopped at this slot and left the rest of it to this thread.
                unsafe { self.release(block, offset + 1) };
            }
            return Some(value);
        }
    }

    /// Values queued at some instant during the call.
    pub(crate) fn len(&self) -> usize {
        loop {
            let tail = self.tail.index.load(Ordering::SeqCst);
            let head = self.head.position.index.load(Ordering::SeqCst);
            // Unchanged tail: the two indices held together at the moment `head` was read.
            if self.tail.index.load(Ordering::SeqCst) == tail {
                return slots_before(tail).saturating_sub(slots_before(head));
            }
        }
    }

    /// Whether the queue was empty at some instant during the call.
    pub(crate) fn is_empty(&self) -> bool {
        // The head read first: the tail is never behind it, so equal means empty when the tail
        // was read.
        let head = self.head.position.index.load(Ordering::SeqCst);
        self.tail.index.load(Ordering::SeqCst) == head
    }

    /// Goes on with the walk over `block`'s slots from `start` (the last slot excluded: its
    /// taker started the walk). Stops at a slot not yet taken, marking it `RELEASE` so its
    /// taker goes on; past the last, recycles the block.
    ///
    /// # Safety
    ///
    /// The caller is the taker of the block's last slot (with `start == 0`) or of slot
    /// `start - 1`, having found `RELEASE` on it.
    unsafe fn release(&self, block: *mut Block<T>, start: usize) {
        // SAFETY: not recycled while this walk is unfinished (only its end recycles it).
        let block_ref = unsafe { &*block };
        for slot in &block_ref.slots[start..BLOCK_SLOTS - 1] {
            if slot.state.load(Ordering::Acquire) & TAKEN == 0
                && slot.state.fetch_or(RELEASE, Ordering::AcqRel) & TAKEN == 0
            {
                return;
            }
        }
        // Every slot taken, and every taker done with it.
        self.recycle(block);
    }

    /// Clears an unused block and keeps it as a spare, or frees it if the spares are full.
    fn recycle(&self, block: *mut Block<T>) {
        {
            // SAFETY: nobody else holds the block now (see `release`; a block prepared by a
            // push and not used was never shared).
            let block_ref = unsafe { &*block };
            block_ref.next.store(ptr::null_mut(), Ordering::Relaxed);
            for slot in &block_ref.slots {
                slot.state.store(0, Ordering::Relaxed);
            }
        }
        for spare in &self.spares {
            if spare.load(Ordering::Relaxed).is_null()
                && spare
                    .compare_exchange(ptr::null_mut(), block, Ordering::Release, Ordering::Relaxed)
                    .is_ok()
            {
                return;
            }
        }
        // SAFETY: allocated by `Block::allocate` and owned here (see above).
        drop(unsafe { Box::from_raw(block) });
    }

    /// A cleared block for the next push: a spare if there is one (the clearing made visible by
    /// the Acquire swap), else a new one.
    fn spare_or_new_block(&self) -> *mut Block<T> {
        for spare in &self.spares {
            if !spare.load(Ordering::Relaxed).is_null() {
                let block = spare.swap(ptr::null_mut(), Ordering::Acquire);
                if !block.is_null() {
                    return block;
                }
            }
        }
        Block::allocate()
    }
}

impl<T> Drop for BlockQueue<T> {
    fn drop(&mut self) {
        let head = self.head.position.index.load(Ordering::Relaxed);
        let tail = self.tail.index.load(Ordering::Relaxed);
        let mut block = self.head.position.block.load(Ordering::Relaxed);
        // With `&mut self` no push or take is between its steps: every index from head to tail
        // is a written slot or a block's sentinel.
        for index in head..tail {
            // SAFETY: `block` is the block of `index`, allocated and not yet freed.
            let block_ref = unsafe { &*block };
            let offset = index % LAP;
            if offset == BLOCK_SLOTS {
                let next = block_ref.next.load(Ordering::Relaxed);
                // SAFETY: every value of this block is dropped; nothing refers to it any more.
                drop(unsafe { Box::from_raw(block) });
                block = next;
                continue;
            }
            // SAFETY: written and never taken.
            block_ref.slots[offset]
                .value
                .with_mut(|cell| unsafe { (*cell).assume_init_drop() });
        }
        // SAFETY: the tail's block (the same as the head's now), and the spares, are owned here.
        drop(unsafe { Box::from_raw(block) });
        for spare in &self.spares {
            let spare = spare.load(Ordering::Relaxed);
            if !spare.is_null() {
                // SAFETY: as above.
                drop(unsafe { Box::from_raw(spare) });
            }
        }
    }
}

/// Slots (not counting sentinels) before `index`.
fn slots_before(index: usize) -> usize {
    index - index / LAP
}

/// Waits a little before looking again: spins at first, then yields the core (a pusher or taker
/// between two of its steps may have been descheduled on it). Under loom, always a yield, which
/// is what lets the model run the other threads.
fn snooze(round: &mut u32) {
    if cfg!(loom) {
        thread::yield_now();
        return;
    }
    if *round < 6 {
        for _ in 0..1u32 << *round {
            std::hint::spin_loop();
        }
    } else {
        thread::yield_now();
    }
    *round += 1;
}

#[cfg(test)]
thread_local! {
    /// Blocks this thread allocated, for the tests that check blocks are reused.
    static ALLOCATED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Fewer values under miri, which runs these about a thousand times slower.
    const SCALE: usize = if cfg!(miri) { 1 } else { 50 };

    #[test]
    fn values_come_out_in_the_order_they_went_in_across_blocks() {
        let queue = BlockQueue::new();
        let n = 5 * LAP * SCALE;
        for i in 0..n {
            queue.push(i);
            assert_eq!(queue.len(), i + 1);
        }
        for i in 0..n {
            assert_eq!(queue.pop(), Some(i));
            assert_eq!(queue.len(), n - i - 1);
        }
        assert_eq!(queue.pop(), None);
        assert!(queue.is_empty());
    }

    #[test]
    fn a_steady_flow_reuses_its_blocks_instead_of_allocating() {
        let queue = BlockQueue::new();
        // Up to a few blocks deep, then a long steady flow.
        for i in 0..3 * LAP {
            queue.push(i);
        }
        for _ in 0..3 * LAP {
            queue.pop().unwrap();
        }
        let before = ALLOCATED.with(|count| count.get());
        for i in 0..20 * LAP * SCALE {
            queue.push(i);
            assert_eq!(queue.pop(), Some(i));
        }
        assert_eq!(
            ALLOCATED.with(|count| count.get()),
            before,
            "a block was allocated"
        );
    }

    #[test]
    fn dropping_the_queue_drops_each_value_left_once() {
        let value = Arc::new(());
        let queue = BlockQueue::new();
        for _ in 0..3 * LAP + 5 {
            queue.push(Arc::clone(&value));
        }
        for _ in 0..LAP + 2 {
            drop(queue.pop());
        }
        assert_eq!(Arc::strong_count(&value), 1 + 2 * LAP + 3);
        drop(queue);
        assert_eq!(Arc::strong_count(&value), 1);
    }

    #[test]
    fn many_pushers_and_takers_move_every_value_once_in_each_pushers_order() {
        const PUSHERS: usize = 3;
        const TAKERS: usize = 3;
        let per_pusher = 4 * LAP * SCALE;
        let queue = BlockQueue::new();
        let taken: Vec<Vec<(usize, usize)>> = std::thread::scope(|scope| {
            for pusher in 0..PUSHERS {
                let queue = &queue;
                scope.spawn(move || {
                    for i in 0..per_pusher {
                        queue.push((pusher, i));
                    }
                });
            }
            let takers: Vec<_> = (0..TAKERS)
                .map(|_| {
                    let queue = &queue;
                    scope.spawn(move || {
                        let mut mine = Vec::new();
                        let mut idle_rounds = 0;
                        // Until the pushers are surely done and the queue is empty.
                        while idle_rounds < 1000 || !queue.is_empty() {
                            match queue.pop() {
                                Some(value) => {
                                    mine.push(value);
                                    idle_rounds = 0;
                                }
                                None => {
                                    idle_rounds += 1;
                                    std::thread::yield_now();
                                }
                            }
                        }
                        mine
                    })
                })
                .collect();
            takers.into_iter().map(|t| t.join().unwrap()).collect()
        });
        // Whatever the takers stopped too early for is still in the queue.
        let mut rest = Vec::new();
        while let Some(value) = queue.pop() {
            rest.push(value);
        }
        let mut seen = vec![Vec::new(); PUSHERS];
        for value in taken.iter().flatten().chain(&rest) {
            seen[value.0].push(value.1);
        }
        // Each taker sees each pusher's values in order (FIFO), and all of them are taken once.
        for mine in &taken {
            for pusher in 0..PUSHERS {
                let order: Vec<usize> =
                    mine.iter().filter(|v| v.0 == pusher).map(|v| v.1).collect();
                assert!(
                    order.windows(2).all(|w| w[0] < w[1]),
                    "out of order: {order:?}"
                );
            }
        }
        for (pusher, mut values) in seen.into_iter().enumerate() {
            values.sort_unstable();
            assert_eq!(
                values,
                (0..per_pusher).collect::<Vec<_>>(),
                "pusher {pusher}"
            );
        }
    }
}

/// Model checks, run with `RUSTFLAGS="--cfg loom" cargo test -p futurepool --lib --release loom`.
/// Blocks have 3 slots here, so four pushes cross a block boundary and the first block is
/// released and recycled while the others run.
#[cfg(all(test, loom))]
mod loom_models {
    use super::*;
    use loom::sync::Arc;

    fn model(body: impl Fn() + Sync + Send + 'static) {
        model_with_preemptions(3, body);
    }

    /// Bounds preemptions to `bound` unless `LOOM_MAX_PREEMPTIONS` says otherwise.
    fn model_with_preemptions(bound: usize, body: impl Fn() + Sync + Send + 'static) {
        let mut builder = loom::model::Builder::new();
        if builder.preemption_bound.is_none() {
            builder.preemption_bound = Some(bound);
        }
        builder.check(body);
    }

    #[test]
    fn loom_two_pushers_across_a_block_boundary_lose_nothing_and_keep_their_order() {
        model(|| {
            let queue = Arc::new(BlockQueue::new());
            let pushers: Vec<_> = (0..2)
                .map(|pusher| {
                    let queue = Arc::clone(&queue);
                    loom::thread::spawn(move || {
                        queue.push((pusher, 0));
                        queue.push((pusher, 1));
                    })
                })
                .collect();
            let mut taken = Vec::new();
            // One value taken while the pushes run, the rest after.
            if let Some(value) = queue.pop() {
                taken.push(value);
            }
            for pusher in pushers {
                pusher.join().unwrap();
            }
            while let Some(value) = queue.pop() {
                taken.push(value);
            }
            assert_eq!(taken.len(), 4, "{taken:?}");
            for pusher in 0..2 {
                let order: Vec<_> = taken
                    .iter()
                    .filter(|v| v.0 == pusher)
                    .map(|v| v.1)
                    .collect();
                assert_eq!(order, [0, 1]);
            }
        });
    }

    #[test]
    fn loom_two_takers_each_take_a_value_once_while_the_block_is_recycled() {
        model(|| {
            let queue = Arc::new(BlockQueue::new());
            // The first block is full; the fourth push starts the second.
            for i in 0..3 {
                queue.push(i);
            }
            let takers: Vec<_> = (0..2)
                .map(|_| {
                    let queue = Arc::clone(&queue);
                    loom::thread::spawn(move || {
                        let mut mine = Vec::new();
                        while let Some(value) = queue.pop() {
                            mine.push(value);
                        }
                        mine
                    })
                })
                .collect();
            queue.push(3);
            let mut taken: Vec<_> = takers.into_iter().flat_map(|t| t.join().unwrap()).collect();
            while let Some(value) = queue.pop() {
                taken.push(value);
            }
            taken.sort_unstable();
            assert_eq!(taken, [0, 1, 2, 3]);
        });
    }

    #[test]
    fn loom_a_recycled_block_is_reused_while_takers_race_for_its_slots() {
        // Three threads and eleven operations: 8 s at 2 preemptions, 70 s at 3 (which also
        // passes), on a loaded two-core machine.
        model_with_preemptions(2, || {
            // Blocks of three: 0 1 2 | 3 4 5 | 6. Taker A empties the first block, which is
            // recycled and may be taken again for the third while B takes and main pushes.
            let queue = Arc::new(BlockQueue::new());
            for i in 0..5 {
                queue.push(i);
            }
            let taker = |pops: usize| {
                let queue = Arc::clone(&queue);
                loom::thread::spawn(move || {
                    (0..pops).filter_map(|_| queue.pop()).collect::<Vec<_>>()
                })
            };
            let (a, b) = (taker(3), taker(2));
            queue.push(5);
            queue.push(6);
            let mut all: Vec<_> = [a, b].into_iter().flat_map(|t| t.join().unwrap()).collect();
            while let Some(value) = queue.pop() {
                all.push(value);
            }
            all.sort_unstable();
            assert_eq!(all, (0..7).collect::<Vec<_>>());
        });
    }

    #[test]
    fn loom_a_take_after_a_push_and_a_fence_sees_it() {
        // The pool's wake-up protocol: a pusher fences then reads a flag; a taker sets the flag,
        // fences, then looks at the queue. At least one of them sees the other.
        model(|| {
            let queue = Arc::new(BlockQueue::new());
            let flag = Arc::new(AtomicUsize::new(0));
            let pusher = {
                let (queue, flag) = (Arc::clone(&queue), Arc::clone(&flag));
                loom::thread::spawn(move || {
                    queue.push(1);
                    fence(Ordering::SeqCst);
                    flag.load(Ordering::Relaxed) == 1
                })
            };
            flag.store(1, Ordering::Relaxed);
            fence(Ordering::SeqCst);
            let taker_saw = !queue.is_empty();
            let pusher_saw = pusher.join().unwrap();
            assert!(taker_saw || pusher_saw, "a wake-up would be lost");
        });
    }
}
