//! The `futurepool` command: `cluster status` (a Redis-Streams cluster pool, seen from its broker).

mod cluster;

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
    /// Inspect a cluster pool on its Redis broker.
    Cluster(cluster::ClusterArgs),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Cluster(args) => cluster::main(args),
    }
}
