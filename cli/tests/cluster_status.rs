//! `futurepool cluster status` against a private `redis-server` (skipped, saying so, without one).

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use futurepool::cluster;
use support::redis::Redis;

fn futurepool(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_futurepool"))
        .args(args)
        .output()
        .expect("run futurepool")
}

#[test]
fn status_of_an_empty_pool_shows_every_section() {
    let Some(redis) = Redis::start_or_skip() else {
        return;
    };
    let url = redis.url();
    // What the first client or worker of a pool creates.
    redis.create_pool("reports");
    let out = futurepool(&["cluster", "status", &url, "--pool", "reports"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for line in [
        "pool          reports",
        "queued        0",
        "in flight     0",
        "workers       0",
        "dead-lettered 0",
    ] {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
}

#[test]
fn status_of_a_pool_that_does_not_exist_says_so_and_fails() {
    let Some(redis) = Redis::start_or_skip() else {
        return;
    };
    let url = redis.url();
    redis.create_pool("reports");
    let out = futurepool(&["cluster", "status", &url, "--pool", "nosuch"]);
    assert!(!out.status.success(), "a missing pool is an error");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("no pool named \"nosuch\""), "{err}");
    assert!(
        err.contains("reports"),
        "the pools that exist are named: {err}"
    );
    assert!(out.stdout.is_empty(), "no empty report as if it existed");
    // Looking created nothing: a mistyped pool name leaves no keys behind.
    assert_eq!(redis.cli(&["EXISTS", "{futurepool:nosuch}:queue"]), "0");
    assert_eq!(redis.cli(&["DBSIZE"]), "1");
}

#[test]
fn a_bad_url_names_the_problem_and_the_expected_form() {
    for url in [
        "http://127.0.0.1:6379/",
        "redis://127.0.0.1:notaport/",
        "localhost",
    ] {
        let out = futurepool(&["cluster", "status", url]);
        assert!(!out.status.success());
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(
            err.contains("redis://[user:password@]host[:port][/db]"),
            "{url}: {err}"
        );
        assert!(
            !err.contains("did not parse- InvalidClientConfig"),
            "{url}: {err}"
        );
    }
}

#[test]
fn an_unreachable_broker_is_a_clear_error() {
    // Port 1 on loopback: nothing listens there.
    let out = futurepool(&["cluster", "status", "redis://127.0.0.1:1/"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("broker is unavailable"), "{err}");
}

#[test]
fn status_shows_dead_lettered_malformed_entries_with_their_reasons() {
    let Some(redis) = Redis::start_or_skip() else {
        return;
    };
    let url = redis.url();
    // A worker of pool "intake", in this process (it runs until the test process ends).
    let worker_url = url.clone();
    std::thread::spawn(move || {
        let options = cluster::ServeOptions::default()
            .pool("intake")
            .threads(1)
            .handle_signals(false);
        let _ = cluster::serve(&worker_url, options);
    });
    let queue = "{futurepool:intake}:queue";
    let start = Instant::now();
    while redis.cli(&["EXISTS", queue]) != "1" {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the worker did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Entries another program wrote: no `id`, no `fn`.
    redis.cli(&["XADD", queue, "*", "fn", "resize", "arg", ""]);
    redis.cli(&["XADD", queue, "*", "id", "job-7", "arg", ""]);
    let text = loop {
        let out = futurepool(&["cluster", "status", &url, "--pool", "intake"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        if text.contains("dead-lettered 2") {
            break text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "never dead-lettered:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(text.contains("(2 malformed entries ever)"), "{text}");
    assert!(
        text.contains("(no id)  resize  malformed entry: it has no `id` field"),
        "{text}"
    );
    assert!(
        text.contains("job-7  (no fn)  malformed entry: it has no `fn` field"),
        "{text}"
    );
    assert!(
        text.contains("queued        0"),
        "the queue is clean again:\n{text}"
    );
}
