//! Async code awaiting futurepool tasks: blocking work runs on the pool, and an `async fn` awaits
//! its handles like any other future — no runtime-specific glue (Python needs
//! `asyncio.wrap_future`).
//!
//! To stay dependency-free the example drives its future with a ten-line `block_on`; in a real
//! program the same `.await`s work under tokio, async-std, smol or any other executor.
//!
//! ```text
//! cargo run -p futurepool --example async_await
//! ```

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::Duration;

use futurepool::{TaskError, ThreadPool};

/// Something slow and blocking: a disk scan, a hash, a synchronous client call.
fn checksum(name: &'static str, millis: u64) -> (String, u64) {
    thread::sleep(Duration::from_millis(millis));
    let sum = name.bytes().fold(millis, |acc, b| {
        acc.wrapping_mul(31).wrapping_add(u64::from(b))
    });
    (name.to_string(), sum)
}

async fn report(pool: &ThreadPool) -> Result<u64, TaskError> {
    // Both start at once on the pool; awaiting one does not hold up the other.
    let config = pool.submit(|| checksum("config.toml", 150));
    let data = pool.submit(|| checksum("data.bin", 100));
    let (config_name, config_sum) = config.await?;
    let (data_name, data_sum) = data.await?;
    println!("{config_name}: {config_sum:x}");
    println!("{data_name}: {data_sum:x}");

    // A panic in the task comes back as an error at the `.await`, not as a crash.
    let broken = pool.submit(|| -> u64 { panic!("corrupt header") });
    if let Err(TaskError::Panicked(panic)) = broken.await {
        println!(
            "a task panicked and the program went on: {}",
            panic.message()
        );
    }
    Ok(config_sum ^ data_sum)
}

fn main() {
    std::panic::set_hook(Box::new(|_| {})); // the example reports the panic itself
    let pool = ThreadPool::new(4);
    let combined = block_on(report(&pool)).expect("the checksums ran");
    println!("combined: {combined:x}");
}

/// Runs a future to completion on this thread, sleeping until its waker is called.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        match future.as_mut().poll(&mut context) {
            Poll::Ready(output) => return output,
            // A spurious wake-up only costs one more poll.
            Poll::Pending => thread::park(),
        }
    }
}
