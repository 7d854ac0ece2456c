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
                println!("pool          {pool} at {}", redact(&url));
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

/// `url` with its password replaced by `***`: a status report is often pasted into tickets.
fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((credentials, host)) if credentials.contains(':') => {
                let user = credentials.split(':').next().unwrap_or("");
                format!("{scheme}://{user}:***@{host}")
            }
            _ => url.to_string(),
        },
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_password_is_not_printed() {
        assert_eq!(super::redact("redis://u:pw@h:1/"), "redis://u:***@h:1/");
        assert_eq!(super::redact("redis://h:1/"), "redis://h:1/");
    }
}
