//! Which entry goes next: list order, except that an entry whose host already has `--per-host`
//! requests in flight waits (without holding a worker) until one of them finishes, and, with
//! `--rate`, an entry whose host's next request slot is not due yet waits (again without a
//! worker) until it is.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Hands out entry indices, at most `cap` at a time per host.
pub(crate) struct Scheduler {
    ready: VecDeque<usize>,
    /// Shared per host, not one string per entry: a list has thousands of entries.
    hosts: Vec<Arc<str>>,
    cap: usize,
    active: HashMap<Arc<str>, usize>,
    blocked: HashMap<Arc<str>, VecDeque<usize>>,
    /// Entries waiting for their host's `--rate` slot, in list order per host.
    timed: HashMap<Arc<str>, VecDeque<usize>>,
}

impl Scheduler {
    /// `hosts[i]` is entry `i`'s host; `order` lists the entries to run, first first.
    pub(crate) fn new(
        hosts: Vec<Arc<str>>,
        order: impl IntoIterator<Item = usize>,
        cap: usize,
    ) -> Self {
        Scheduler {
            ready: order.into_iter().collect(),
            hosts,
            cap: cap.max(1),
            active: HashMap::new(),
            blocked: HashMap::new(),
            timed: HashMap::new(),
        }
    }

    /// The next entry that may start now, counted as active until [`finished`](Self::finished).
    #[cfg(test)]
    pub(crate) fn next(&mut self) -> Option<usize> {
        self.next_when(|_| true)
    }

    /// [`next`](Self::next), where `slot(host)` says whether `host` may get a request now (and
    /// takes that slot if so). Entries of a host that may not wait, in list order, and are
    /// offered again first on every later call.
    pub(crate) fn next_when(&mut self, mut slot: impl FnMut(&str) -> bool) -> Option<usize> {
        for (host, queue) in &mut self.timed {
            if queue.is_empty() || self.active.get(host).is_some_and(|&a| a >= self.cap) {
                continue;
            }
            if slot(host) {
                *self.active.entry(host.clone()).or_default() += 1;
                return queue.pop_front();
            }
        }
        while let Some(entry) = self.ready.pop_front() {
            let host = &self.hosts[entry];
            if self.timed.get(host).is_some_and(|q| !q.is_empty()) {
                // An earlier entry of this host waits for its slot: keep list order.
                self.timed.entry(host.clone()).or_default().push_back(entry);
                continue;
            }
            let active = self.active.entry(host.clone()).or_default();
            if *active >= self.cap {
                self.blocked
                    .entry(host.clone())
                    .or_default()
                    .push_back(entry);
                continue;
            }
            if !slot(host) {
                self.timed.entry(host.clone()).or_default().push_back(entry);
                continue;
            }
            *self.active.get_mut(host).expect("inserted above") += 1;
            return Some(entry);
        }
        None
    }

    /// Hosts with entries waiting for their `--rate` slot, and below their `--per-host` cap:
    /// those whose slot coming due lets an entry start (the others wait for a
    /// [`finished`](Self::finished)).
    pub(crate) fn timed_hosts(&self) -> impl Iterator<Item = &str> {
        self.timed
            .iter()
            .filter(|(host, queue)| {
                !queue.is_empty() && self.active.get(*host).is_none_or(|&a| a < self.cap)
            })
            .map(|(h, _)| &**h)
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
        !self.ready.is_empty()
            || self.blocked.values().any(|queue| !queue.is_empty())
            || self.timed.values().any(|queue| !queue.is_empty())
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
        let hosts = ["a", "a", "a", "b"].map(Arc::from).to_vec();
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
    fn a_host_without_a_slot_waits_without_holding_up_others_or_its_own_order() {
        let hosts = ["a", "a", "b", "a"].map(Arc::from).to_vec();
        let mut s = Scheduler::new(hosts, 0..4, usize::MAX);
        let mut a_open = true;
        let mut slot = |host: &str| host == "b" || std::mem::replace(&mut a_open, false);
        assert_eq!(s.next_when(&mut slot), Some(0));
        assert_eq!(s.next_when(&mut slot), Some(2), "b goes while a waits");
        assert_eq!(s.next_when(&mut slot), None);
        assert!(s.has_waiting());
        assert_eq!(s.timed_hosts().collect::<Vec<_>>(), ["a"]);
        assert_eq!(s.next_when(|_| false), None, "a's slot is not due yet");
        assert_eq!(
            s.next_when(|_| true),
            Some(1),
            "a's entries keep list order"
        );
        assert_eq!(s.next_when(|_| true), Some(3));
        assert!(!s.has_waiting());
    }

    #[test]
    fn waiting_counts_ready_and_blocked_entries() {
        let hosts = ["a", "a"].map(Arc::from).to_vec();
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
