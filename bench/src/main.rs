//! Side-by-side benchmarks of futurepool against its peers.
//!
//! `cargo run --release -p futurepool-bench -- <area>`; each area prints one table with our figure,
//! each peer's, and the ratios.

mod threads;

fn main() {
    let mut args = std::env::args().skip(1);
    let area = args.next();
    let rest: Vec<String> = args.collect();
    match area.as_deref() {
        Some("threads") => threads::run(&rest),
        Some("all") => threads::run(&[]),
        _ => {
            eprintln!("usage: futurepool-bench <threads|all>");
            std::process::exit(2);
        }
    }
}
