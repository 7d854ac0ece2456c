//! The `futurepool` command: `fetch` (a parallel page downloader on futurepool's thread pool).

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
    // The help text is `FetchArgs`'s own doc comment.
    Fetch(fetch::FetchArgs),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Fetch(args) => fetch::main(args),
    }
}
