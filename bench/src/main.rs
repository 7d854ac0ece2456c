//! Side-by-side benchmarks of futurepool against its peers.

mod cluster;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("cluster") => cluster::run(),
        // Internal: a worker process the cluster benchmark starts.
        Some("cluster-worker") => cluster::worker(&args[1..]),
        _ => {
            eprintln!("usage: futurepool-bench cluster");
            std::process::exit(2);
        }
    }
}
