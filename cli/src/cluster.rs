//! `futurepool cluster status URL`: what a cluster pool looks like from the broker.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use futurepool::cluster;

/// Arguments of `futurepool cluster`.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// Show a pool's queue length, tasks in flight, workers and their heartbeats, and
    /// dead-lettered tasks.
    Status {
        /// The broker, e.g. redis://127.0.0.1:6379/
        url: String,
        /// The pool's name.
        #[arg(long, default_value = cluster::DEFAULT_POOL)]
        pool: String,
    },
}

/// Runs `futurepool cluster ...`.
pub fn main(args: ClusterArgs) -> ExitCode {
    match args.command {
        ClusterCommand::Status { url, pool } => match cluster::status(&url, &pool) {
            Ok(status) => {
                println!("pool          {pool} at {url}");
                print!("{status}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("futurepool cluster status: {error}");
                ExitCode::FAILURE
            }
        },
    }
}
