//! A value on a cache line (two, for the adjacent-line prefetcher) of its own.
//!
//! The counters a submitter reads on every submit and the ones each worker writes on every job,
//! or the two ends of a queue, would otherwise share lines, and every job would move them
//! between cores.

#[repr(align(128))]
pub(super) struct Padded<T>(pub(super) T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}
