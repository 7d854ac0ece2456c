//! Side-by-side benchmarks of futurepool against its peers.
//!
//! `futurepool-bench processes`: the process pool against Python's `ProcessPoolExecutor` and
//! `procspawn`.

mod processes;

fn main() {
    // The process benchmarks re-run this binary as their workers.
    futurepool::init();
    procspawn::init();
    match std::env::args().nth(1).as_deref() {
        Some("processes") => processes::run(),
        _ => eprintln!("usage: futurepool-bench processes"),
    }
}
