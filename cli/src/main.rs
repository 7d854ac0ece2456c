//! The `futurepool` command: `demo` (what futurepool is for, measured on this machine), `fetch` (a
//! parallel page downloader on futurepool's thread pool) and `cluster status` / `cluster dashboard`
//! (a Redis-Streams cluster pool, seen from its broker, in the terminal or live in a browser).

mod cluster;
mod dashboard;
mod demo;
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
    /// Show what futurepool is for: downloads, a CPU-bound job and isolation, measured here.
    Demo(demo::DemoArgs),
    // Its help text is `FetchArgs`'s own doc comment.
    Fetch(fetch::FetchArgs),
    /// Inspect a cluster pool on its Redis broker.
    Cluster(cluster::ClusterArgs),
}

fn main() -> ExitCode {
    // First: when this binary is re-executed as a process-pool worker (the demo starts some), this
    // serves tasks and never returns.
    futurepool::init();
    match Cli::parse().command {
        Command::Demo(args) => demo::run(&args),
        Command::Fetch(args) => fetch::main(args),
        Command::Cluster(args) => cluster::main(args),
    }
}
