//! The queue of jobs submitted from outside the pool: lock-free, so a submitter and the workers
//! taking jobs never wait for one another.
//!
//! A [`BlockQueue`](super::block_queue::BlockQueue) (a list of blocks of slots: a push claims the
//! tail slot, a take the head one, each with one atomic step; `block_queue.rs` has its protocol
//! and its own loom models). Under loom the pool's models, whose state space the queue's would
//! multiply, use a stand-in with the same promise — a push is visible to every look that comes
//! after it in the sequentially consistent order — that models each operation as one atomic
//! step on a loom counter: a push adds its job, then counts it; a take first claims one counted
//! job, then removes one. The jobs themselves sit behind a `std` mutex never held across a loom
//! step (so it never blocks a model thread), which keeps the models' state space small.

use crate::task::Job;

/// First-in first-out, any number of pushers and takers.
pub(super) struct Injector {
    #[cfg(not(loom))]
    jobs: super::block_queue::BlockQueue<Job>,
    #[cfg(loom)]
    jobs: std::sync::Mutex<std::collections::VecDeque<Job>>,
    /// Jobs pushed and not yet claimed: the step the model sees.
    #[cfg(loom)]
    counted: crate::loom::sync::atomic::AtomicUsize,
}

impl Injector {
    pub(super) fn new() -> Injector {
        Injector {
            #[cfg(not(loom))]
            jobs: super::block_queue::BlockQueue::new(),
            #[cfg(loom)]
            jobs: Default::default(),
            #[cfg(loom)]
            counted: Default::default(),
        }
    }

    pub(super) fn push(&self, job: Job) {
        #[cfg(not(loom))]
        self.jobs.push(job);
        #[cfg(loom)]
        {
            self.jobs.lock().unwrap().push_back(job);
            self.counted
                .fetch_add(1, crate::loom::sync::atomic::Ordering::SeqCst);
        }
    }

    /// The oldest job, if any.
    pub(super) fn pop(&self) -> Option<Job> {
        #[cfg(not(loom))]
        return self.jobs.pop();
        #[cfg(loom)]
        {
            use crate::loom::sync::atomic::Ordering::SeqCst;
            let mut counted = self.counted.load(SeqCst);
            loop {
                if counted == 0 {
                    return None;
                }
                match self
                    .counted
                    .compare_exchange(counted, counted - 1, SeqCst, SeqCst)
                {
                    Ok(_) => break,
                    Err(now) => counted = now,
                }
            }
            // Every counted job was added before it was counted, so a claimed one is there.
            self.jobs.lock().unwrap().pop_front()
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        #[cfg(not(loom))]
        return self.jobs.is_empty();
        #[cfg(loom)]
        {
            self.counted
                .load(crate::loom::sync::atomic::Ordering::SeqCst)
                == 0
        }
    }

    pub(super) fn len(&self) -> usize {
        #[cfg(not(loom))]
        return self.jobs.len();
        #[cfg(loom)]
        {
            self.counted
                .load(crate::loom::sync::atomic::Ordering::SeqCst)
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::convert::Infallible;

    #[test]
    fn jobs_come_out_in_the_order_they_went_in() {
        let queue = Injector::new();
        let (tasks, jobs): (Vec<_>, Vec<_>) = (0..100)
            .map(|n| Job::new(move || Ok::<_, Infallible>(n)))
            .unzip();
        for job in jobs {
            queue.push(job);
        }
        assert_eq!(queue.len(), 100);
        while let Some(job) = queue.pop() {
            job.run();
        }
        assert!(queue.is_empty());
        for (n, task) in tasks.iter().enumerate() {
            assert_eq!(task.try_result(), Some(Ok(n)));
        }
    }
}
