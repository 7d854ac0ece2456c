//! Where a client decodes outcomes: not on its listener thread, which every task of the client
//! depends on, but on decoder threads. Decoding runs user code (the result's `Deserialize`, the
//! `Drop` of a value for a cancelled handle); a panic there is caught by the job itself, and a
//! job that *blocks* keeps only its own decoder: when queued outcomes have waited for
//! [`STALL`] with every decoder busy and none finishing, another decoder starts (at most
//! [`MAX_DECODERS`]). A stuck decoder that comes back finishes its job and exits if another
//! decoder is idle, so the client keeps one idle decoder at most.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// How long queued outcomes wait behind busy, silent decoders before another one starts.
const STALL: Duration = Duration::from_millis(500);
/// Most decoder threads one client runs (each beyond the first is there because others block).
const MAX_DECODERS: usize = 64;

/// One outcome to decode and hand to its handles.
pub(super) type Job = Box<dyn FnOnce() + Send>;

pub(super) struct Decoders {
    name: String,
    state: Mutex<State>,
    ready: Condvar,
}

struct State {
    queue: VecDeque<Job>,
    threads: usize,
    idle: usize,
    /// The last time a decoder finished a job or started.
    progress: Instant,
    closing: bool,
}

impl Decoders {
    /// `name` names the threads (`futurepool-cluster-{name}-decode`).
    pub(super) fn new(name: &str) -> Arc<Decoders> {
        Arc::new(Decoders {
            name: format!("futurepool-cluster-{name}-decode"),
            state: Mutex::new(State {
                queue: VecDeque::new(),
                threads: 0,
                idle: 0,
                progress: Instant::now(),
                closing: false,
            }),
            ready: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Jobs run outside the lock; every update under it is a single push, pop or count.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `job` for a decoder.
    pub(super) fn push(self: &Arc<Self>, job: Job) {
        let mut state = self.lock();
        state.queue.push_back(job);
        if state.idle > 0 {
            drop(state);
            self.ready.notify_one();
        } else {
            self.grow_if_stalled(state);
        }
    }

    /// Starts another decoder if queued jobs wait behind decoders that all block. Called by the
    /// listener on every pass, so a stall is noticed even when no new outcome arrives.
    pub(super) fn nudge(self: &Arc<Self>) {
        let state = self.lock();
        self.grow_if_stalled(state);
    }

    /// No more jobs will come: decoders exit once the queue is empty.
    pub(super) fn close(&self) {
        self.lock().closing = true;
        self.ready.notify_all();
    }

    fn grow_if_stalled(self: &Arc<Self>, mut state: MutexGuard<'_, State>) {
        let stalled = state.threads == 0 || state.progress.elapsed() >= STALL;
        if state.queue.is_empty() || state.idle > 0 || !stalled || state.threads >= MAX_DECODERS {
            return;
        }
        state.threads += 1;
        state.progress = Instant::now();
        drop(state);
        let decoders = self.clone();
        let started = thread::Builder::new()
            .name(self.name.clone())
            .spawn(move || decoders.run());
        if started.is_err() {
            let mut state = self.lock();
            state.threads -= 1;
            // No thread to be had: decode here rather than leave the outcomes queued.
            let jobs: Vec<Job> = if state.threads == 0 {
                state.queue.drain(..).collect()
            } else {
                Vec::new()
            };
            drop(state);
            for job in jobs {
                job();
            }
        }
    }

    fn run(self: Arc<Self>) {
        let mut state = self.lock();
        loop {
            if let Some(job) = state.queue.pop_front() {
                drop(state);
                // The job guards its user code itself; this only keeps the count of threads
                // right should anything else in it unwind.
                let _ = crate::panic::catch(job);
                state = self.lock();
                state.progress = Instant::now();
                continue;
            }
            // One idle decoder is enough; the pool closing needs none.
            if state.closing || state.idle > 0 {
                state.threads -= 1;
                return;
            }
            state.idle += 1;
            state = self.ready.wait(state).unwrap_or_else(|p| p.into_inner());
            state.idle -= 1;
        }
    }
}
