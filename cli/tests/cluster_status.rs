//! `futurepool cluster status` against a private `redis-server` (skipped, saying so, without one).

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Redis(Child, u16);

impl Redis {
    fn start() -> Option<Redis> {
        let port = TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .ok()?;
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Some(Redis(child, port))
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn futurepool(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_futurepool"))
        .args(args)
        .output()
        .expect("run futurepool")
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli comes with redis-server");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn status_of_an_empty_pool_shows_every_section() {
    let Some(redis) = Redis::start() else {
        eprintln!("skipped: redis-server is not installed");
        return;
    };
    let url = format!("redis://127.0.0.1:{}/", redis.1);
    // What the first client or worker of a pool creates.
    redis_cli(
        redis.1,
        &[
            "XGROUP",
            "CREATE",
            "{futurepool:reports}:queue",
            "workers",
            "0",
            "MKSTREAM",
        ],
    );
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
    let Some(redis) = Redis::start() else {
        eprintln!("skipped: redis-server is not installed");
        return;
    };
    let url = format!("redis://127.0.0.1:{}/", redis.1);
    redis_cli(
        redis.1,
        &[
            "XGROUP",
            "CREATE",
            "{futurepool:reports}:queue",
            "workers",
            "0",
            "MKSTREAM",
        ],
    );
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
    assert_eq!(
        redis_cli(redis.1, &["EXISTS", "{futurepool:nosuch}:queue"]),
        "0"
    );
    assert_eq!(redis_cli(redis.1, &["DBSIZE"]), "1");
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
