//! Side-by-side benchmarks of futurepool against its peers: `futurepool-bench <area> [options]`
//! prints one table per area, with our figure, each peer's and the ratios.

mod cluster;
mod fetch;
mod threads;

fn main() {
    // First: the process-pool benchmarks re-execute this binary as their workers.
    futurepool::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or_default();
    match args.first().map(String::as_str) {
        Some("threads") => threads::run(rest),
        Some("fetch") => fetch::run(rest),
        Some("cluster") => cluster::run(),
        // Internal: a worker process the cluster benchmark starts.
        Some("cluster-worker") => cluster::worker(rest),
        Some("all") => {
            threads::run(&[]);
            fetch::run(&[]);
            cluster::run();
        }
        _ => {
            eprintln!("usage: futurepool-bench <threads|fetch|cluster|all> [options]");
            std::process::exit(2);
        }
    }
}
