//! A private `redis-server` on a free loopback port, for the `cluster_*` tests; killed when
//! dropped. `Redis::start` is `None` (and the test skips, saying so) where Redis is not installed.

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Redis {
    child: Child,
    pub port: u16,
}

impl Redis {
    /// Starts a server without persistence, or says why the calling test is skipped.
    pub fn start_or_skip() -> Option<Redis> {
        let redis = Redis::start();
        if redis.is_none() {
            eprintln!("skipped: redis-server is not installed");
        }
        redis
    }

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
        Some(Redis { child, port })
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Runs one `redis-cli` command against this server; its trimmed answer.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli comes with redis-server");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Creates pool `name`'s queue and consumer group, as its first client or worker would.
    pub fn create_pool(&self, name: &str) {
        let queue = format!("{{futurepool:{name}}}:queue");
        self.cli(&["XGROUP", "CREATE", &queue, "workers", "0", "MKSTREAM"]);
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
