//! Side-by-side benchmarks of futurepool against its peers.
//!
//! `futurepool-bench AREA` prints one table per area; `futurepool-bench report` runs them all and
//! writes `docs/bench/README.md` with charts.

mod report;
mod svg;
mod table;

use std::process::ExitCode;

fn main() -> ExitCode {
    // First: the process-pool benchmarks re-execute this binary as their workers.
    futurepool::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("report") => report::main(&args[1..]),
        _ => {
            eprintln!("usage: futurepool-bench report [--out DIR] [--only AREA,...]");
            ExitCode::from(2)
        }
    }
}
