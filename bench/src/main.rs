//! Side-by-side benchmarks of futurepool against its peers.

fn main() {}
