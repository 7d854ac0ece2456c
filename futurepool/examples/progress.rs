//! A progress bar on a map: `cargo run --release --example progress --features progress`.
//!
//! Every tenth item fails, and the bar counts it; each item reports its own progress
//! (`report_progress`), so the count moves in tenths while items run, before they are taken. Run
//! it with stderr redirected to a file and no bar is drawn.

use std::time::Duration;

fn main() {
    futurepool::init();
    let pool = futurepool::ThreadPool::new(8);
    let results = pool
        .map_fallible(
            |n: u32| {
                // Ten steps of work, each reported: the bar counts the running items' share.
                for step in 1..=10 {
                    std::thread::sleep(Duration::from_millis(20));
                    futurepool::report_progress(step, 10);
                }
                if n % 10 == 9 {
                    Err(format!("item {n} failed"))
                } else {
                    Ok(n)
                }
            },
            0..400,
        )
        .progress()
        .prefix("crunching");
    let ok = results.filter(Result::is_ok).count();
    println!("{ok} of 400 succeeded");
}
