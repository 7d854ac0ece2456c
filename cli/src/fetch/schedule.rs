//! Which entry goes next: list order, except that an entry whose host already has `--per-host`
//! requests in flight waits (without holding a worker) until one of them finishes.

use std::collections::{HashMap, VecDeque};

/// Hands out entry indices, at most `cap` at a time per host.
pub(crate) struct Scheduler {
    ready: VecDeque<usize>,
    hosts: Vec<String>,
    cap: usize,
    active: HashMap<String, usize>,
    blocked: HashMap<String, VecDeque<usize>>,
}

impl Scheduler {
    /// `hosts[i]` is entry `i`'s host; `order` lists the entries to run, first first.
    pub(crate) fn new(
        hosts: Vec<String>,
        order: impl IntoIterator<Item = usize>,
        cap: usize,
    ) -> Self {
        Scheduler {
            ready: order.into_iter().collect(),
            hosts,
            cap: cap.max(1),
            active: HashMap::new(),
            blocked: HashMap::new(),
        }
    }

    /// The next entry that may start now, counted as active until [`finished`](Self::finished).
    pub(crate) fn next(&mut self) -> Option<usize> {
        while let Some(entry) = self.ready.pop_front() {
            let host = &self.hosts[entry];
            let active = self.active.entry(host.clone()).or_default();
            if *active < self.cap {
                *active += 1;
                return Some(entry);
            }
            self.blocked
                .entry(host.clone())
                .or_default()
                .push_back(entry);
        }
        None
    }

    /// Entry `entry` is done; the first entry waiting for its host becomes ready.
    pub(crate) fn finished(&mut self, entry: usize) {
        let host = &self.hosts[entry];
        if let Some(active) = self.active.get_mut(host) {
            *active = active.saturating_sub(1);
        }
        if let Some(waiting) = self.blocked.get_mut(host).and_then(VecDeque::pop_front) {
            self.ready.push_front(waiting);
        }
    }

    /// True while some entry has not been handed out yet.
    pub(crate) fn has_waiting(&self) -> bool {
        !self.ready.is_empty() || self.blocked.values().any(|queue| !queue.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_cap_entries_go_in_list_order() {
        let mut s = Scheduler::new(vec!["a".into(); 3], 0..3, usize::MAX);
        assert_eq!(
            [s.next(), s.next(), s.next(), s.next()],
            [Some(0), Some(1), Some(2), None]
        );
    }

    #[test]
    fn a_busy_host_lets_other_hosts_go_first() {
        let hosts = ["a", "a", "a", "b"].map(String::from).to_vec();
        let mut s = Scheduler::new(hosts, 0..4, 2);
        assert_eq!([s.next(), s.next(), s.next()], [Some(0), Some(1), Some(3)]);
        assert_eq!(s.next(), None, "entry 2 waits for host a");
        s.finished(3);
        assert_eq!(s.next(), None, "host b's slot does not help host a");
        s.finished(0);
        assert_eq!(s.next(), Some(2));
        assert_eq!(s.next(), None);
    }

    #[test]
    fn waiting_counts_ready_and_blocked_entries() {
        let hosts = ["a", "a"].map(String::from).to_vec();
        let mut s = Scheduler::new(hosts, 0..2, 1);
        assert!(s.has_waiting());
        assert_eq!(s.next(), Some(0));
        assert_eq!(s.next(), None);
        assert!(s.has_waiting(), "entry 1 waits for host a");
        s.finished(0);
        assert_eq!(s.next(), Some(1));
        assert!(!s.has_waiting());
    }
}
