//! `futurepool cluster status URL`: what a cluster pool looks like from the broker;
//! `futurepool cluster dashboard URL`: the same, live in a browser (`dashboard/`).

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
    /// Serve a live, read-only web page of every pool on the broker (queue depth, tasks in
    /// flight, workers and heartbeats, throughput, dead letters), and /metrics for Prometheus.
    Dashboard {
        /// The broker, e.g. redis://127.0.0.1:6379/
        url: String,
        /// The address to serve on. Loopback by default: the page shows task ids, worker names
        /// and dead-letter reasons to whoever can reach it. Port 0 picks a free port (printed).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Show only this pool (repeatable); every pool on the broker by default.
        #[arg(long)]
        pool: Vec<String>,
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
        ClusterCommand::Dashboard { url, listen, pool } => {
            crate::dashboard::main(url, listen, pool)
        }
    }
}

/// `url` with its password replaced by `***`: a status report is often pasted into tickets.
pub(crate) fn redact(url: &str) -> String {
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
