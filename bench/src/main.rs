//! Side-by-side benchmarks of futurepool against its peers: `futurepool-bench <area> [options]`.

mod fetch;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("fetch") => fetch::run(&args[1..]),
        Some("all") => fetch::run(&[]),
        _ => {
            eprintln!("usage: futurepool-bench <fetch|all> [options]");
            std::process::exit(2);
        }
    }
}
