//! Side-by-side benchmarks of futurepool against its peers: `futurepool-bench <area> [options]`
//! prints one table per area; `futurepool-bench report` runs every area and writes
//! `docs/bench/README.md` with charts.

mod fetch;
mod report;
mod svg;
mod table;

use std::process::ExitCode;

fn main() -> ExitCode {
    // First: the process-pool benchmarks re-execute this binary as their workers.
    futurepool::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("fetch") => {
            fetch::run(&args[1..]);
            ExitCode::SUCCESS
        }
        Some("all") => {
            fetch::run(&[]);
            ExitCode::SUCCESS
        }
        Some("report") => report::main(&args[1..]),
        _ => {
            eprintln!("usage: futurepool-bench <fetch|all|report> [options]");
            ExitCode::from(2)
        }
    }
}
