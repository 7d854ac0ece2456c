//! The synchronisation facade, after tokio's pattern.
//!
//! The task state machine and the thread pool's shared state import their atomics, locks, condition
//! variables, cells, thread-locals and threads from here instead of
//! from `std`. A normal build re-exports `std`; a build with `RUSTFLAGS="--cfg loom"` swaps in
//! [`loom`](https://docs.rs/loom)'s mocked types, so the very code that ships is model-checked by the
//! tests in `task/loom_tests.rs` and `thread_pool/loom_tests.rs`.

#[cfg(not(loom))]
mod std;
#[cfg(not(loom))]
pub(crate) use self::std::*;

#[cfg(loom)]
mod mocked;
#[cfg(loom)]
pub(crate) use self::mocked::*;
