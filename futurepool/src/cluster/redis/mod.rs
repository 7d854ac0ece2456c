//! The Redis Streams backend: the queue is a stream, the pool a consumer group, the in-flight set
//! the group's pending entries list, dead-worker recovery `XPENDING IDLE` + `XCLAIM` with their
//! delivery counts as the retry budget. Multi-key steps are Lua scripts (`scripts.rs`) so each is
//! atomic; every answer is parsed in `parse.rs`.

mod parse;
mod scripts;

use std::time::Duration;

use redis::{ErrorKind, RedisError, Value};

use super::backend::{
    Backend, BrokerError, BrokerResult, Completion, Connection, Delivery, NewTask, PoolConfig,
    Reaped, Reply, Submitted,
};
use super::keys::{Keys, GROUP};
use super::Status;
use scripts::Script;

/// How long opening a connection may take before the broker counts as unavailable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A reply slower than this (beyond a command's own blocking time) means the link is dead.
const IO_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest number of tasks one script call handles, so no call blocks the broker for long.
pub(crate) const MAX_BATCH: usize = 256;

/// Connections to one pool on one Redis server (or Valkey, or a Redis Cluster slot owner).
pub(crate) struct RedisBackend {
    client: redis::Client,
    keys: Keys,
    observe_only: bool,
}

impl RedisBackend {
    /// Checks the URL; nothing is connected yet.
    pub(crate) fn new(url: &str, pool: &str) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| format!("bad Redis URL {url:?}: {e}"))?;
        Ok(RedisBackend {
            client,
            keys: Keys::new(pool),
            observe_only: false,
        })
    }

    /// Connections that only look (for `status`): they create nothing, so asking about a pool
    /// that does not exist leaves no trace.
    pub(crate) fn observer(url: &str, pool: &str) -> Result<Self, String> {
        Ok(RedisBackend {
            observe_only: true,
            ..RedisBackend::new(url, pool)?
        })
    }
}

impl Backend for RedisBackend {
    fn connect(&self) -> BrokerResult<Box<dyn Connection>> {
        let mut connection = RedisConnection {
            client: self.client.clone(),
            keys: self.keys.clone(),
            observe_only: self.observe_only,
            link: None,
            shas: Vec::new(),
        };
        connection.link()?;
        Ok(Box::new(connection))
    }
}

/// One Redis connection that reconnects itself: after an error that broke the link, the next call
/// opens a new one (loading the scripts again: a restarted server has forgotten them).
struct RedisConnection {
    client: redis::Client,
    keys: Keys,
    observe_only: bool,
    link: Option<redis::Connection>,
    shas: Vec<String>,
}

impl RedisConnection {
    fn link(&mut self) -> BrokerResult<&mut redis::Connection> {
        if self.link.is_none() {
            let opened = self.open();
            let (link, shas) = opened.map_err(|e| self.classify(e))?;
            self.shas = shas;
            self.link = Some(link);
        }
        Ok(self.link.as_mut().expect("just opened"))
    }

    fn open(&self) -> Result<(redis::Connection, Vec<String>), RedisError> {
        let mut link = self.client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
        link.set_read_timeout(Some(IO_TIMEOUT))?;
        link.set_write_timeout(Some(IO_TIMEOUT))?;
        let mut load = redis::pipe();
        for script in Script::ALL {
            load.cmd("SCRIPT").arg("LOAD").arg(script.source());
        }
        let shas: Vec<String> = load.query(&mut link)?;
        if self.observe_only {
            return Ok((link, shas));
        }
        // The group must exist before any worker reads or any status is asked; start it at the
        // beginning of the stream so tasks queued before the first worker are not skipped.
        let created: Result<(), RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.keys.queue())
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query(&mut link);
        match created {
            Err(e) if e.code() != Some("BUSYGROUP") => return Err(e),
            _ => {}
        }
        Ok((link, shas))
    }

    /// Sorts an error into "try again" (dropping a broken link) and "this code is wrong".
    fn classify(&mut self, error: RedisError) -> BrokerError {
        let transient_code = matches!(
            error.code(),
            Some("LOADING" | "NOSCRIPT" | "NOGROUP" | "TRYAGAIN" | "MASTERDOWN" | "READONLY")
        );
        if error.is_io_error()
            || error.is_unrecoverable_error()
            || matches!(error.kind(), ErrorKind::NoScriptError)
            || transient_code
        {
            // A fresh link reloads the scripts and re-creates the group, which is what NOSCRIPT
            // and NOGROUP after a broker restart without persistence need.
            self.link = None;
            BrokerError::Unavailable(error.to_string())
        } else if matches!(
            error.kind(),
            ErrorKind::BusyLoadingError | ErrorKind::TryAgain
        ) {
            BrokerError::Unavailable(error.to_string())
        } else {
            BrokerError::Protocol(error.to_string())
        }
    }

    fn query<T: redis::FromRedisValue>(&mut self, command: &redis::Cmd) -> BrokerResult<T> {
        let result = command.query(self.link()?);
        result.map_err(|e| self.classify(e))
    }

    fn query_pipe<T: redis::FromRedisValue>(&mut self, pipe: &redis::Pipeline) -> BrokerResult<T> {
        let result = pipe.query(self.link()?);
        result.map_err(|e| self.classify(e))
    }

    /// `EVALSHA` of one of our scripts, with the queue as its only declared key and the prefix
    /// as its first argument.
    fn script(&mut self, script: Script) -> BrokerResult<redis::Cmd> {
        self.link()?;
        let mut command = redis::cmd("EVALSHA");
        command
            .arg(&self.shas[script.index()])
            .arg(1)
            .arg(self.keys.queue())
            .arg(self.keys.prefix());
        Ok(command)
    }
}

impl Connection for RedisConnection {
    fn config(&mut self) -> BrokerResult<PoolConfig> {
        let (lease, max, ttl): (Option<u64>, Option<u32>, Option<u64>) = self.query(
            redis::cmd("HMGET")
                .arg(self.keys.config())
                .arg("lease_ms")
                .arg("max_deliveries")
                .arg("result_ttl_ms"),
        )?;
        let defaults = PoolConfig::default();
        Ok(PoolConfig {
            lease: lease.map_or(defaults.lease, Duration::from_millis),
            max_deliveries: max.unwrap_or(defaults.max_deliveries),
            result_ttl: ttl.map_or(defaults.result_ttl, Duration::from_millis),
        })
    }

    fn store_config(&mut self, config: PoolConfig) -> BrokerResult<()> {
        self.query(
            redis::cmd("HSET")
                .arg(self.keys.config())
                .arg("lease_ms")
                .arg(config.lease.as_millis() as u64)
                .arg("max_deliveries")
                .arg(config.max_deliveries)
                .arg("result_ttl_ms")
                .arg(config.result_ttl.as_millis() as u64),
        )
    }

    fn register_client(&mut self) -> BrokerResult<u64> {
        self.query(redis::cmd("INCR").arg(self.keys.clients()))
    }

    fn submit(&mut self, client: u64, tasks: &[NewTask]) -> BrokerResult<Vec<Submitted>> {
        let mut answers = Vec::with_capacity(tasks.len());
        for batch in tasks.chunks(MAX_BATCH) {
            let mut command = self.script(Script::Submit)?;
            command.arg(client);
            for task in batch {
                command.arg(&*task.id).arg(task.function).arg(&*task.arg);
            }
            let raw: Vec<Value> = self.query(&command)?;
            answers.extend(raw.into_iter().map(|answer| match answer {
                Value::Int(0) => Submitted::Queued,
                Value::Int(_) => Submitted::AlreadyQueued,
                other => Submitted::Finished(parse::bytes(other).unwrap_or_default()),
            }));
        }
        Ok(answers)
    }

    fn replies(
        &mut self,
        client: u64,
        cursor: &mut String,
        max: usize,
        block: Duration,
    ) -> BrokerResult<Vec<Reply>> {
        if cursor.is_empty() {
            *cursor = "0-0".to_string();
        }
        let key = self.keys.replies(client);
        // Forget what was delivered last time, then wait for more, in one round trip.
        let mut pipe = redis::pipe();
        pipe.cmd("XTRIM")
            .arg(&key)
            .arg("MINID")
            .arg(parse::next_stream_id(cursor))
            .ignore();
        pipe.cmd("XREAD")
            .arg("COUNT")
            .arg(max)
            .arg("BLOCK")
            .arg(block.as_millis().max(1) as u64)
            .arg("STREAMS")
            .arg(&key)
            .arg(&*cursor);
        let (read,): (Value,) = self.query_pipe(&pipe)?;
        let entries = parse::stream_entries(read).map_err(BrokerError::Protocol)?;
        let mut replies = Vec::with_capacity(entries.len());
        for (id, fields) in entries {
            *cursor = id;
            // One entry per completion batch: each field is a task id, its value the outcome.
            replies.extend(
                fields
                    .into_iter()
                    .map(|(task_id, outcome)| Reply { task_id, outcome }),
            );
        }
        Ok(replies)
    }

    fn register_worker(&mut self, description: &str) -> BrokerResult<String> {
        let number: u64 = self.query(redis::cmd("INCR").arg(self.keys.clients()))?;
        let name = format!(
            "{}-w{number}",
            description.split(' ').next().unwrap_or("worker")
        );
        let (now,): (Vec<u64>,) = self.query_pipe(
            redis::pipe()
                .cmd("HSET")
                .arg(self.keys.worker_info())
                .arg(&name)
                .arg(description)
                .ignore()
                .cmd("TIME"),
        )?;
        let now_ms =
            now.first().copied().unwrap_or(0) * 1000 + now.get(1).copied().unwrap_or(0) / 1000;
        self.query::<()>(
            redis::cmd("HSET")
                .arg(self.keys.workers())
                .arg(&name)
                .arg(now_ms),
        )?;
        Ok(name)
    }

    fn fetch(&mut self, worker: &str, max: usize, block: Duration) -> BrokerResult<Vec<Delivery>> {
        let read: Value = self.query(
            redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(GROUP)
                .arg(worker)
                .arg("COUNT")
                .arg(max)
                .arg("BLOCK")
                .arg(block.as_millis().max(1) as u64)
                .arg("STREAMS")
                .arg(self.keys.queue())
                .arg(">"),
        )?;
        let entries = parse::stream_entries(read).map_err(BrokerError::Protocol)?;
        Ok(entries.into_iter().filter_map(parse::delivery).collect())
    }

    fn complete(&mut self, completions: &[Completion]) -> BrokerResult<Vec<bool>> {
        let mut answers = Vec::with_capacity(completions.len());
        for batch in completions.chunks(MAX_BATCH) {
            let mut command = self.script(Script::Complete)?;
            command.arg(GROUP);
            for completion in batch {
                command
                    .arg(&completion.entry)
                    .arg(&completion.task_id)
                    .arg(&completion.outcome);
            }
            let raw: Vec<i64> = self.query(&command)?;
            answers.extend(raw.into_iter().map(|first| first == 1));
        }
        Ok(answers)
    }

    fn heartbeat(&mut self, worker: &str, entries: &[String]) -> BrokerResult<Vec<String>> {
        let mut lost = Vec::new();
        // An empty list still stamps the worker's heartbeat.
        let mut batches: Vec<&[String]> = entries.chunks(MAX_BATCH).collect();
        if batches.is_empty() {
            batches.push(&[]);
        }
        for batch in batches {
            let mut command = self.script(Script::Heartbeat)?;
            command.arg(GROUP).arg(worker);
            for entry in batch {
                command.arg(entry);
            }
            lost.extend(self.query::<Vec<String>>(&command)?);
        }
        Ok(lost)
    }

    fn reap(
        &mut self,
        worker: &str,
        config: PoolConfig,
        max_claims: usize,
    ) -> BrokerResult<Reaped> {
        let mut command = self.script(Script::Reap)?;
        command
            .arg(GROUP)
            .arg(worker)
            .arg(config.lease.as_millis().max(1) as u64)
            .arg(config.max_deliveries)
            .arg(max_claims.min(MAX_BATCH))
            .arg(MAX_BATCH);
        let (claimed, dead_lettered): (Value, u32) = self.query(&command)?;
        let claimed = parse::entries(claimed).map_err(BrokerError::Protocol)?;
        Ok(Reaped {
            claimed: claimed.into_iter().filter_map(parse::delivery).collect(),
            dead_lettered,
        })
    }

    fn release(&mut self, worker: &str, entries: &[String]) -> BrokerResult<()> {
        for batch in entries.chunks(MAX_BATCH) {
            let mut command = self.script(Script::Release)?;
            command.arg(GROUP).arg(worker);
            for entry in batch {
                command.arg(entry);
            }
            self.query::<i64>(&command)?;
        }
        Ok(())
    }

    fn retire_worker(&mut self, worker: &str) -> BrokerResult<()> {
        let mut command = self.script(Script::Retire)?;
        command.arg(GROUP).arg(worker);
        self.query::<i64>(&command).map(drop)
    }

    fn status(&mut self) -> BrokerResult<Status> {
        let keys = self.keys.clone();
        // A pool nobody used yet has no queue and no group: report it empty rather than fail.
        let exists: bool = self.query(redis::cmd("EXISTS").arg(keys.queue()))?;
        let mut pipe = redis::pipe();
        pipe.cmd("TIME").cmd("XLEN").arg(keys.queue());
        if exists {
            pipe.cmd("XPENDING").arg(keys.queue()).arg(GROUP);
        }
        pipe.cmd("HGETALL")
            .arg(keys.workers())
            .cmd("HGETALL")
            .arg(keys.worker_info())
            .cmd("XLEN")
            .arg(keys.dead())
            .cmd("XREVRANGE")
            .arg(keys.dead())
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(10)
            .cmd("HGETALL")
            .arg(keys.stats());
        let mut raw: Vec<Value> = self.query_pipe(&pipe)?;
        if !exists {
            raw.insert(2, Value::Nil);
        }
        let config = self.config()?;
        parse::status(raw, config).map_err(BrokerError::Protocol)
    }
}
