//! The `futurepool` command: `fetch` (a parallel page downloader on futurepool's thread pool) and
//! `demo` (what futurepool is for, measured on this machine).

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
    /// Download a list of pages in parallel into a directory.
    Fetch(fetch::FetchArgs),
    /// Show what futurepool is for: downloads, a CPU-bound job and isolation, measured here.
    Demo(demo::DemoArgs),
}

fn main() -> ExitCode {
    // First: when this binary is re-executed as a process-pool worker (the demo starts some), this
    // serves tasks and never returns.
    futurepool::init();
    match Cli::parse().command {
        Command::Fetch(args) => fetch::main(args),
        Command::Demo(args) => demo::run(&args),
    }
}
