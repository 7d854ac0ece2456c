//! Side-by-side benchmarks of futurepool against its peers: `futurepool-bench <area> [options]`
//! prints one table per area with our figure, each peer's and the ratios; `--json` adds the table
//! as one JSON line at the end, and `futurepool-bench report` runs every area and writes
//! `docs/bench/README.md` with charts.

mod cluster;
mod fetch;
mod overhead;
mod processes;
mod report;
mod svg;
mod table;
mod threads;

use std::process::ExitCode;

fn main() -> ExitCode {
    // First: the process benchmarks re-execute this binary as their workers (futurepool's and
    // procspawn's).
    futurepool::init();
    procspawn::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or_default();
    match args.first().map(String::as_str) {
        Some("threads") => threads::run(rest),
        Some("processes") => processes::run(rest),
        Some("fetch") => fetch::run(rest),
        Some("cluster") => cluster::run(rest),
        Some("cluster-abort") => cluster::abort_latency(rest),
        // Internal: a worker process the cluster benchmark starts.
        Some("cluster-worker") => cluster::worker(rest),
        Some("overhead") => overhead::run(rest),
        // Internal: one build variant's run, started by `overhead`.
        Some("overhead-child") => overhead::child(rest),
        Some("all") => {
            threads::run(&[]);
            processes::run(&[]);
            fetch::run(&[]);
            cluster::run(&[]);
        }
        Some("report") => return report::main(rest),
        _ => {
            eprintln!(
                "usage: futurepool-bench <threads|processes|fetch|cluster|cluster-abort|overhead|all|report> [options]"
            );
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}
