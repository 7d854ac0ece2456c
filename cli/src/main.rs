//! The `futurepool` command: `fetch` (a parallel page downloader on futurepool's thread pool)
//! and `cluster status` (a Redis-Streams cluster pool, seen from its broker).

mod cluster;
mod fetch;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// futurepool: Python's concurrent.futures for Rust, and tools built on it.
#[derive(Debug, Parser)]
#[command(name = "futurepool", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Download a list of pages in parallel into a directory.
    Fetch(fetch::FetchArgs),
    /// Inspect a cluster pool on its Redis broker.
    Cluster(cluster::ClusterArgs),
}

fn main() -> ExitCode {
    // First: the process pool re-executes this binary as its workers.
    futurepool::init();
    match Cli::parse().command {
        Command::Fetch(args) => fetch::main(args),
        Command::Cluster(args) => cluster::main(args),
    }
}
