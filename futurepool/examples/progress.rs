//! A progress bar on a map: `cargo run --release --example progress --features progress`.
//!
//! Every tenth item fails, and the bar counts it; run it with stderr redirected to a file and no
//! bar is drawn.

use std::time::Duration;

fn main() {
    futurepool::init();
    let pool = futurepool::ThreadPool::new(8);
    let results = pool
        .map_fallible(
            |n: u32| {
                std::thread::sleep(Duration::from_millis(20));
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
