//! Feeds arbitrary bytes to the process pool's frame and message decoder, in both directions.
//! Run with `cargo +nightly fuzz run frame_decoder -- -max_total_time=60` from the repo root.
//! (`cargo test -p futurepool --lib wire` runs a bounded, seeded fuzz of the same decoder on
//! stable Rust.)

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    futurepool::__private::fuzz_decode(data);
});
