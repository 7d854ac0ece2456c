//! The `futurepool` command.

mod demo;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Thread and process pools with concurrent.futures semantics, as a command.
#[derive(Debug, Parser)]
#[command(name = "futurepool", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show what futurepool is for: downloads, a CPU-bound job and isolation, measured here.
    Demo(demo::DemoArgs),
}

fn main() -> ExitCode {
    // First: when this binary is re-executed as a process-pool worker, this serves tasks and
    // never returns.
    futurepool::init();
    match Cli::parse().command {
        Command::Demo(args) => demo::run(&args),
    }
}
