//! The `futurepool` command.

fn main() {
    eprintln!("futurepool: subcommands arrive with the fetch and demo issues");
}
