//! Where a pool keeps its state in Redis: every key of one pool shares the hash tag
//! `{futurepool:NAME}`, so on Redis Cluster they all live in one slot and the Lua scripts that
//! touch several of them stay legal. Per-task keys (`:result:ID`, `:waiters:ID`) are built by the
//! scripts themselves from [`Keys::prefix`].

/// The key names of one pool (see the README's "Key layout").
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

/// The consumer group every worker of a pool joins.
pub(crate) const GROUP: &str = "workers";

impl Keys {
    pub(crate) fn new(pool: &str) -> Self {
        Keys {
            prefix: format!("{{futurepool:{pool}}}"),
        }
    }

    /// `{futurepool:NAME}`: scripts derive per-task and per-client keys from it.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The stream of tasks: the queue.
    pub(crate) fn queue(&self) -> String {
        format!("{}:queue", self.prefix)
    }

    /// The stream of outcomes one client is waiting for.
    pub(crate) fn replies(&self, client: u64) -> String {
        format!("{}:replies:{client}", self.prefix)
    }

    /// A finished task's outcome (the scripts build the same name from the prefix).
    pub(crate) fn result(&self, task_id: &str) -> String {
        format!("{}:result:{task_id}", self.prefix)
    }

    /// The set of clients waiting for a task (the scripts build the same name from the prefix).
    pub(crate) fn waiters(&self, task_id: &str) -> String {
        format!("{}:waiters:{task_id}", self.prefix)
    }

    /// Counter handing out client numbers.
    pub(crate) fn clients(&self) -> String {
        format!("{}:clients", self.prefix)
    }

    /// Hash: worker name → time of its last heartbeat (ms since the epoch, broker clock).
    pub(crate) fn workers(&self) -> String {
        format!("{}:workers", self.prefix)
    }

    /// Hash: worker name → `host pid threads` description.
    pub(crate) fn worker_info(&self) -> String {
        format!("{}:worker-info", self.prefix)
    }

    /// Stream of dead-lettered tasks (capped).
    pub(crate) fn dead(&self) -> String {
        format!("{}:dead", self.prefix)
    }

    /// Hash of counters: submitted, published, duplicates, dead_lettered, released.
    pub(crate) fn stats(&self) -> String {
        format!("{}:stats", self.prefix)
    }

    /// Hash: task id → `"DONE TOTAL"`, the latest progress a running task reported (two decimal
    /// `u64` and one space). Written by workers at most every few hundred ms per task; a task's
    /// field is deleted when its outcome is published.
    pub(crate) fn progress(&self) -> String {
        format!("{}:progress", self.prefix)
    }

    /// Hash: the pool's lease (ms) and retry budget, shared by every worker.
    pub(crate) fn config(&self) -> String {
        format!("{}:config", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_carries_the_pool_hash_tag() {
        let keys = Keys::new("jobs");
        for key in [
            keys.queue(),
            keys.replies(7),
            keys.clients(),
            keys.workers(),
            keys.worker_info(),
            keys.dead(),
            keys.stats(),
            keys.config(),
            keys.progress(),
        ] {
            assert!(key.starts_with("{futurepool:jobs}:"), "{key}");
        }
    }
}
