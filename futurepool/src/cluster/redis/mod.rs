//! The Redis Streams backend: the queue is a stream, the pool a consumer group, the in-flight set
//! the group's pending entries list, dead-worker recovery `XPENDING IDLE` + `XCLAIM` with their
//! delivery counts as the retry budget. Multi-key steps are Lua scripts (`scripts.rs`) so each is
//! atomic; every answer is parsed in `parse.rs`.

mod parse;
mod scripts;

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::{ErrorKind, RedisError, Value};

use super::backend::{
    Backend, BrokerError, BrokerResult, Completion, Connection, Delivery, Known, NewTask,
    PoolConfig, ProgressReport, Reaped, Reply, Submitted, LEASE_RANGE, MAX_DELIVERIES_RANGE,
    RESULT_TTL_RANGE,
};
use super::keys::{Keys, GROUP};
use super::status::{first_progress, TaskProgress, MAX_PROGRESS};
use super::Status;
use scripts::Script;

/// How long opening a connection may take before the broker counts as unavailable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A reply slower than this (beyond a command's own blocking time) means the link is dead.
const IO_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest number of tasks one script call handles, so no call blocks the broker for long.
pub(crate) const MAX_BATCH: usize = 256;
/// Largest number of payload bytes one script call carries (a single larger item goes alone),
/// well under the broker's query buffer limit (1 GB by default), beyond which it drops the link.
const MAX_BATCH_BYTES: usize = 8 << 20;
/// Result keys read per `MGET` by the client's sweep for lost replies.
const MAX_SWEEP_BATCH: usize = 1024;
/// Redis's default `proto-max-bulk-len`, assumed when the broker does not say (`CONFIG` is often
/// disabled on managed servers).
const DEFAULT_MAX_BULK: usize = 512 << 20;

/// What a Redis URL looks like, for error messages.
pub(crate) const URL_FORM: &str =
    "redis://[user:password@]host[:port][/db], rediss://... for TLS, or unix:///path/to/redis.sock";

/// `url` with its password (if any) replaced by `***`, for messages and logs.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((credentials, host)) if credentials.contains(':') => {
            let user = credentials.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_string(),
    }
}

/// A client for `url`, or a message that names what is wrong with the URL and the expected form.
fn open_client(url: &str) -> Result<redis::Client, String> {
    let shown = redact(url);
    let scheme = url.split_once("://").map(|(scheme, _)| scheme);
    if !matches!(scheme, Some("redis" | "rediss" | "unix" | "redis+unix")) {
        return Err(format!(
            "{shown:?} is not a Redis URL: it must start with redis://, rediss:// or unix:// \
             (expected {URL_FORM})"
        ));
    }
    redis::Client::open(url).map_err(|e| {
        let what = match (e.kind(), e.detail()) {
            (_, Some(detail)) => detail.to_string(),
            (ErrorKind::InvalidClientConfig, None) => {
                "its host, port or database number does not parse".to_string()
            }
            (_, None) => e.to_string(),
        };
        format!("{shown:?} is not a valid Redis URL: {what} (expected {URL_FORM})")
    })
}

/// Splits `items` into runs of at most [`MAX_BATCH`] items and [`MAX_BATCH_BYTES`] bytes (an
/// item larger than that goes alone).
fn batches<T>(items: &[T], size: impl Fn(&T) -> usize) -> Vec<&[T]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0usize);
    for (i, item) in items.iter().enumerate() {
        let n = size(item);
        if i > start && (i - start >= MAX_BATCH || bytes.saturating_add(n) > MAX_BATCH_BYTES) {
            out.push(&items[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes = bytes.saturating_add(n);
    }
    if start < items.len() {
        out.push(&items[start..]);
    }
    out
}

/// A client number no other live client has, even across a broker that lost its keys: the
/// counter alone starts again at 1 after a restart without persistence, and a new client would
/// then share a live client's task ids and reply stream (each getting the other's results). So
/// the counter is mixed with 64 random bits (the standard library's per-process random hash
/// keys), the process id and the time.
fn unique_client_number(counted: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(counted);
    hasher.write_u32(std::process::id());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    hasher.write_u128(now.as_nanos());
    // Below 2^63 so it stays a plain positive number wherever it is shown or parsed.
    hasher.finish() >> 1
}

/// Connections to one pool on one Redis server (or Valkey, or a Redis Cluster slot owner).
pub(crate) struct RedisBackend {
    client: redis::Client,
    keys: Keys,
    observe_only: bool,
}

impl RedisBackend {
    /// Checks the URL; nothing is connected yet.
    pub(crate) fn new(url: &str, pool: &str) -> Result<Self, String> {
        let client = open_client(url)?;
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
            max_bulk: DEFAULT_MAX_BULK,
            schedule: ScheduleClock::default(),
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
    /// The broker's `proto-max-bulk-len`, read when the link opens.
    max_bulk: usize,
    /// When this (fetching) connection last moved due tasks from the schedule to the queue.
    schedule: ScheduleClock,
}

/// How often a fetcher also moves due scheduled tasks (delays, retries) into the queue and
/// learns whether the pool has priority lanes: one cheap script call per worker per interval
/// (and when a known due time has come), never one per task or per fetch.
const PROMOTE_EVERY: Duration = Duration::from_millis(50);

/// The longest a fetch blocks without looking at the schedule: a task delayed (or retried) by
/// another process becomes due at most this long before an idle worker notices it.
const SCHEDULE_PRECISION: Duration = Duration::from_millis(100);

/// How late Redis may end a blocked read: it checks their timeouts on its timer, `hz` times a
/// second (10 by default). A fetch that must return sooner than this reads without blocking.
const SERVER_TICK: Duration = Duration::from_millis(100);

/// The longest a fetcher sleeps between non-blocking reads while a scheduled task is due within
/// [`SERVER_TICK`]: how long a task queued meanwhile may wait, and at most 10 reads per tick.
const DUE_WAIT_SLICE: Duration = Duration::from_millis(10);

/// A delayed task's wait, counted from now (when it is sent): the broker adds it to its own
/// clock, so clients and broker need not agree on the time. '' for a task to queue now. Rounded
/// up to the broker's millisecond, so a task never becomes due before its time.
fn delay_ms(due: Option<std::time::SystemTime>) -> String {
    match due.and_then(|due| due.duration_since(std::time::SystemTime::now()).ok()) {
        Some(wait) if !wait.is_zero() => wait.as_micros().div_ceil(1000).to_string(),
        _ => String::new(),
    }
}

/// What a fetcher knows about the pool's schedule.
#[derive(Debug, Default)]
struct ScheduleClock {
    last_promote: Option<Instant>,
    /// The earliest due time the last `PROMOTE` reported (its clock converted to ours).
    next_due: Option<Instant>,
    /// Whether the pool has priority lanes (as of the last `PROMOTE`): then fetches go through
    /// the `FETCH` script, which reads the lanes in order.
    lanes: bool,
    /// Fetches that found work, for the anti-starvation turn (see [`Priority`]).
    fruitful: u64,
    /// Functions with a rate limit (as of the last `PROMOTE`): their tasks go through `THROTTLE`.
    limited: std::collections::HashSet<String>,
    /// Whether the pool has abort records (as of the last `PROMOTE`): then each fetch asks
    /// `ABORTED` about the tasks it got, so an aborted task is not run.
    aborts: bool,
}

/// Every this many fetches that find work, the lanes are served from the lowest up.
const STARVATION_TURN: u64 = 10;

impl RedisConnection {
    fn link(&mut self) -> BrokerResult<&mut redis::Connection> {
        if self.link.is_none() {
            let opened = self.open();
            let (mut link, shas) = opened.map_err(|e| self.classify(e))?;
            self.shas = shas;
            // Refused (CONFIG disabled or renamed): assume Redis's default; a smaller limit is
            // still caught when the broker refuses the command (see `retry::send_pinning`).
            let limit: Result<Vec<Value>, RedisError> = redis::cmd("CONFIG")
                .arg("GET")
                .arg("proto-max-bulk-len")
                .query(&mut link);
            self.max_bulk = limit
                .ok()
                .and_then(parse::config_number)
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(DEFAULT_MAX_BULK);
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

    /// Sorts an error by what the caller must do (the README's "What is retried"): refused
    /// client (permanent for everything), transient (try again; the link is dropped so the next
    /// call opens a fresh one), or rejected command (permanent for that command). Every error
    /// drops the link: after some of them (a value over `proto-max-bulk-len`) the server closes
    /// it, and a fresh one reloads the scripts and re-creates the group, which NOSCRIPT and
    /// NOGROUP after a restart without persistence need.
    fn classify(&mut self, error: RedisError) -> BrokerError {
        self.link = None;
        let code = error.code();
        let text = error.to_string();
        if matches!(error.kind(), ErrorKind::AuthenticationFailed)
            || matches!(code, Some("NOAUTH" | "WRONGPASS" | "NOPERM"))
        {
            return BrokerError::Refused(format!(
                "{text} (give the password in the URL: redis://user:password@host:port/)"
            ));
        }
        let transient_code = matches!(
            code,
            Some(
                "LOADING"
                    | "NOSCRIPT"
                    | "NOGROUP"
                    | "TRYAGAIN"
                    | "MASTERDOWN"
                    | "READONLY"
                    | "BUSY"
                    | "OOM"
                    | "CLUSTERDOWN"
            )
        );
        let transient_kind = matches!(
            error.kind(),
            ErrorKind::IoError
                | ErrorKind::ParseError
                | ErrorKind::NoScriptError
                | ErrorKind::BusyLoadingError
                | ErrorKind::TryAgain
                | ErrorKind::MasterDown
                | ErrorKind::ClusterDown
        );
        if transient_code || transient_kind || error.is_io_error() || error.is_timeout() {
            BrokerError::Unavailable(text)
        } else if matches!(error.kind(), ErrorKind::TypeError) {
            BrokerError::Protocol(text)
        } else {
            BrokerError::Rejected(text)
        }
    }

    /// Dead-letters entries that are not tasks (see the `DEAD_LETTER` script). A failure is
    /// logged, not returned: the entries stay pending, and the reaper meets them again.
    fn dead_letter(&mut self, worker: &str, malformed: &[(String, String)]) {
        for batch in malformed.chunks(MAX_BATCH) {
            let attempt = self.script(Script::DeadLetter).and_then(|mut command| {
                command.arg(GROUP).arg(worker);
                for (entry, reason) in batch {
                    command.arg(entry).arg(reason);
                }
                self.query::<i64>(&command)
            });
            match attempt {
                Ok(_) => {
                    for (entry, reason) in batch {
                        eprintln!("futurepool worker {worker}: dead-lettered queue entry {entry}: {reason}");
                    }
                }
                Err(error) => eprintln!(
                    "futurepool worker {worker}: could not dead-letter {} malformed {} \
                     ({error}); the reaper will meet {} again",
                    batch.len(),
                    if batch.len() == 1 { "entry" } else { "entries" },
                    if batch.len() == 1 { "it" } else { "them" },
                ),
            }
        }
    }

    /// Parses queue entries into deliveries, dead-lettering those that are not tasks.
    fn deliveries(&mut self, worker: &str, entries: Vec<parse::Entry>) -> Vec<Delivery> {
        let mut good = Vec::with_capacity(entries.len());
        let mut malformed = Vec::new();
        for entry in entries {
            match parse::delivery(entry) {
                Ok(delivery) => good.push(delivery),
                Err(bad) => malformed.push(bad),
            }
        }
        if !malformed.is_empty() {
            self.dead_letter(worker, &malformed);
        }
        good
    }

    fn query<T: redis::FromRedisValue>(&mut self, command: &redis::Cmd) -> BrokerResult<T> {
        let result = command.query(self.link()?);
        result.map_err(|e| self.classify(e))
    }

    fn query_pipe<T: redis::FromRedisValue>(&mut self, pipe: &redis::Pipeline) -> BrokerResult<T> {
        let result = pipe.query(self.link()?);
        result.map_err(|e| self.classify(e))
    }

    /// The progress hash, read in a bounded number of `HSCAN` pages (one for a small hash), so a
    /// pool with very many running tasks costs no more; entries that are not `"DONE TOTAL"` are
    /// skipped.
    fn running_progress(&mut self) -> BrokerResult<Vec<TaskProgress>> {
        const PAGES: usize = 4;
        let key = self.keys.progress();
        let mut cursor = 0u64;
        let mut found = Vec::new();
        for _ in 0..PAGES {
            let (next, flat): (u64, Vec<Vec<u8>>) = self.query(
                redis::cmd("HSCAN")
                    .arg(&key)
                    .arg(cursor)
                    .arg("COUNT")
                    .arg(MAX_PROGRESS),
            )?;
            for pair in flat.chunks_exact(2) {
                let id = String::from_utf8_lossy(&pair[0]).into_owned();
                found.extend(TaskProgress::parse(id, &String::from_utf8_lossy(&pair[1])));
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        Ok(first_progress(found))
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

impl RedisConnection {
    /// The next number of the pool's counter; if another program replaced the counter with
    /// something that does not count, 0 (client numbers mix in random bits anyway, and worker
    /// names carry host and pid), said on stderr.
    fn count(&mut self) -> BrokerResult<u64> {
        match self.query(redis::cmd("INCR").arg(self.keys.clients())) {
            Err(BrokerError::Rejected(why)) => {
                eprintln!(
                    "futurepool cluster: the counter {} cannot count ({why}); going on without it",
                    self.keys.clients()
                );
                Ok(0)
            }
            other => other,
        }
    }

    fn promote_command(&mut self) -> BrokerResult<redis::Cmd> {
        let mut command = self.script(Script::Promote)?;
        command.arg(MAX_BATCH);
        Ok(command)
    }

    /// Takes in `PROMOTE`'s answer: {tasks queued, ms to the next due time or -1, lanes, rate
    /// limits, abort records}.
    fn promoted(
        &mut self,
        now: Instant,
        (_queued, wait_ms, lanes, limits, aborts): (u64, i64, u64, Value, u64),
    ) {
        self.schedule.aborts = aborts > 0;
        self.schedule.last_promote = Some(now);
        self.schedule.next_due = u64::try_from(wait_ms)
            .ok()
            .and_then(|ms| now.checked_add(Duration::from_millis(ms)));
        self.schedule.lanes = lanes > 0;
        // Names only (a flat name → spec list); `THROTTLE` reads and checks the specs itself.
        self.schedule.limited = parse::array(limits)
            .unwrap_or_default()
            .into_iter()
            .step_by(2)
            .filter_map(parse::text)
            .collect();
    }

    /// Lets through the deliveries that may run now; `THROTTLE` moves the others, tasks of
    /// rate-limited functions without a token, to the schedule. One round trip, and only when
    /// the batch holds such tasks.
    fn throttle(&mut self, deliveries: Vec<Delivery>) -> BrokerResult<Vec<Delivery>> {
        let limited = &self.schedule.limited;
        if limited.is_empty() || !deliveries.iter().any(|d| limited.contains(&d.function)) {
            return Ok(deliveries);
        }
        let mut command = self.script(Script::Throttle)?;
        command.arg(GROUP);
        for delivery in deliveries
            .iter()
            .filter(|d| self.schedule.limited.contains(&d.function))
        {
            command.arg(&delivery.entry).arg(&delivery.function);
        }
        let run: std::collections::HashSet<String> = self.query(&command)?;
        let limited = &self.schedule.limited;
        Ok(deliveries
            .into_iter()
            .filter(|d| !limited.contains(&d.function) || run.contains(&d.entry))
            .collect())
    }

    /// Flags the deliveries whose task was aborted (one `ABORTED` round trip, none for an empty
    /// batch).
    fn mark_aborted(&mut self, mut deliveries: Vec<Delivery>) -> BrokerResult<Vec<Delivery>> {
        if deliveries.is_empty() {
            return Ok(deliveries);
        }
        let ids: Vec<String> = deliveries.iter().map(|d| d.task_id.clone()).collect();
        let aborted: std::collections::HashSet<String> =
            Connection::aborted(self, &ids)?.into_iter().collect();
        for delivery in &mut deliveries {
            delivery.aborted = aborted.contains(&delivery.task_id);
        }
        Ok(deliveries)
    }

    /// A fetch in a pool with priority lanes: `FETCH` reads the lanes in order without
    /// blocking; only when every lane is empty does it block, on the ordinary queue, for at most
    /// [`SCHEDULE_PRECISION`] (so a task arriving in a lane meanwhile waits no longer than that).
    fn fetch_lanes(
        &mut self,
        worker: &str,
        max: usize,
        block_read: redis::Cmd,
    ) -> BrokerResult<Vec<Delivery>> {
        let order = if self.schedule.fruitful % STARVATION_TURN == STARVATION_TURN - 1 {
            "up"
        } else {
            "down"
        };
        let mut fetch = self.script(Script::Fetch)?;
        fetch.arg(GROUP).arg(worker).arg(max).arg(order);
        let read: Value = self.query(&fetch)?;
        let mut entries = parse::entries(read).map_err(BrokerError::Protocol)?;
        if entries.is_empty() {
            let read: Value = self.query(&block_read)?;
            entries = parse::stream_entries(read).map_err(BrokerError::Protocol)?;
        }
        if !entries.is_empty() {
            self.schedule.fruitful = self.schedule.fruitful.wrapping_add(1);
        }
        let deliveries = self.deliveries(worker, entries);
        self.throttle(deliveries)
    }
}

impl Connection for RedisConnection {
    fn config(&mut self, fallback: PoolConfig) -> BrokerResult<(PoolConfig, Vec<String>)> {
        let read: BrokerResult<Vec<Value>> = self.query(
            redis::cmd("HMGET")
                .arg(self.keys.config())
                .arg("lease_ms")
                .arg("max_deliveries")
                .arg("result_ttl_ms"),
        );
        let raw = match read {
            Ok(raw) => raw,
            // Another program replaced the settings hash with something else.
            Err(BrokerError::Rejected(why)) => {
                let problem = format!(
                    "the pool settings key {} cannot be read ({why}): using the last valid \
                     settings until a client stores valid ones",
                    self.keys.config()
                );
                return Ok((fallback, vec![problem]));
            }
            Err(error) => return Err(error),
        };
        let mut raw = raw.into_iter();
        let mut problems = Vec::new();
        let defaults = PoolConfig::default();
        let mut setting = |name: &str, setter: &str, (low, high): (u64, u64), fallback: u64| {
            let Some(text) = raw.next().and_then(parse::text) else {
                return fallback;
            };
            match text.trim().parse::<u64>() {
                Ok(n) if (low..=high).contains(&n) => n,
                _ => {
                    problems.push(format!(
                        "the pool setting `{name}` stored on the broker is {text:?}, not a whole \
                         number between {low} and {high}: using {fallback} until a client stores \
                         a valid one (ClusterPoolBuilder::{setter})"
                    ));
                    fallback
                }
            }
        };
        let millis =
            |(low, high): (Duration, Duration)| (low.as_millis() as u64, high.as_millis() as u64);
        let lease = setting(
            "lease_ms",
            "lease",
            millis(LEASE_RANGE),
            fallback.lease.as_millis() as u64,
        );
        let (low, high) = MAX_DELIVERIES_RANGE;
        let max_deliveries = setting(
            "max_deliveries",
            "max_deliveries",
            (u64::from(low), u64::from(high)),
            u64::from(fallback.max_deliveries),
        );
        let result_ttl = setting(
            "result_ttl_ms",
            "result_ttl",
            millis(RESULT_TTL_RANGE),
            fallback.result_ttl.as_millis() as u64,
        );
        let config = PoolConfig {
            lease: Duration::from_millis(lease),
            max_deliveries: u32::try_from(max_deliveries).unwrap_or(defaults.max_deliveries),
            result_ttl: Duration::from_millis(result_ttl),
        };
        Ok((config, problems))
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

    fn store_rate_limits(&mut self, limits: &[(&str, super::RateLimit)]) -> BrokerResult<()> {
        let mut command = redis::cmd("HSET");
        command.arg(format!("{}:limits", self.keys.prefix()));
        for (function, limit) in limits {
            command.arg(*function).arg(limit.wire());
        }
        self.query(&command)
    }

    fn register_client(&mut self) -> BrokerResult<u64> {
        Ok(unique_client_number(self.count()?))
    }

    fn submit(&mut self, client: u64, tasks: &[NewTask]) -> BrokerResult<Vec<Submitted>> {
        let mut answers = Vec::with_capacity(tasks.len());
        for batch in batches(tasks, |task| task.arg.len()) {
            let mut command = self.script(Script::Submit)?;
            command.arg(client);
            for task in batch {
                command
                    .arg(&*task.id)
                    .arg(task.function)
                    .arg(&*task.arg)
                    .arg(task.signature)
                    .arg(task.retry.as_deref().unwrap_or(""))
                    .arg(delay_ms(task.due))
                    .arg(task.priority.wire())
                    .arg(task.limits.as_deref().unwrap_or(""))
                    .arg(
                        task.after
                            .as_ref()
                            .map_or(String::new(), |after| after.wire()),
                    );
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

    fn look_up(&mut self, task_ids: &[Arc<str>]) -> BrokerResult<Vec<Known>> {
        let mut known = Vec::with_capacity(task_ids.len());
        for batch in task_ids.chunks(MAX_SWEEP_BATCH) {
            // One round trip: the outcomes, and whether anyone still waits for each (`EXISTS`
            // of one key per command: with several keys it only counts them).
            let mut pipe = redis::pipe();
            let mut mget = redis::cmd("MGET");
            for id in batch {
                mget.arg(self.keys.result(id));
            }
            pipe.add_command(mget);
            for id in batch {
                pipe.cmd("EXISTS").arg(self.keys.waiters(id));
            }
            let mut raw: Vec<Value> = self.query_pipe(&pipe)?;
            if raw.len() != batch.len() + 1 {
                return Err(BrokerError::Protocol(format!(
                    "{} answers to a look-up of {} tasks",
                    raw.len(),
                    batch.len()
                )));
            }
            let waited: Vec<bool> = raw
                .drain(1..)
                .map(|v| parse::number(v).unwrap_or(0) > 0)
                .collect();
            let outcomes =
                parse::array(raw.pop().unwrap_or(Value::Nil)).map_err(BrokerError::Protocol)?;
            let mut outcomes = outcomes.into_iter();
            for waited in waited {
                known.push(match outcomes.next().and_then(parse::bytes) {
                    Some(outcome) => Known::Finished(outcome),
                    None if waited => Known::Pending,
                    None => Known::Forgotten,
                });
            }
        }
        Ok(known)
    }

    fn register_worker(&mut self, description: &str) -> BrokerResult<String> {
        let number = self.count()?;
        let name = format!(
            "{}-w{number}",
            description.split(' ').next().unwrap_or("worker")
        );
        // The worker list is bookkeeping (as in the scripts): a key another program replaced with
        // another type is skipped, and said, rather than stopping the worker from serving.
        let now: Vec<u64> = self.query(&redis::cmd("TIME"))?;
        let now_ms =
            now.first().copied().unwrap_or(0) * 1000 + now.get(1).copied().unwrap_or(0) / 1000;
        let stamps = [
            (self.keys.worker_info(), description.to_string()),
            (self.keys.workers(), now_ms.to_string()),
        ];
        for (key, value) in stamps {
            match self.query::<()>(redis::cmd("HSET").arg(&key).arg(&name).arg(value)) {
                Err(BrokerError::Rejected(why)) => eprintln!(
                    "futurepool worker {name}: cannot list itself in {key} ({why}): serving \
                     anyway; `cluster status` will not show it until that key is deleted"
                ),
                other => other?,
            }
        }
        Ok(name)
    }

    fn fetch(&mut self, worker: &str, max: usize, block: Duration) -> BrokerResult<Vec<Delivery>> {
        let now = Instant::now();
        let clock = &self.schedule;
        let promote = clock.next_due.is_some_and(|due| due <= now)
            || clock
                .last_promote
                .is_none_or(|at| now.saturating_duration_since(at) >= PROMOTE_EVERY);
        if promote {
            // Its own round trip, at most every PROMOTE_EVERY (or when something is due): it
            // also says whether the pool has priority lanes, which decides how to read.
            let command = self.promote_command()?;
            let promoted: (u64, i64, u64, Value, u64) = self.query(&command)?;
            self.promoted(now, promoted);
        }
        // A due task must not wait for a read that blocks past its due time.
        let block = match self.schedule.next_due {
            Some(due) => block.min(due.saturating_duration_since(Instant::now())),
            None => block,
        }
        .min(SCHEDULE_PRECISION);
        // Redis ends a blocked read on its own timer tick, so a read blocking for less than a
        // tick returns up to a tick late and a task due meanwhile would start ~50 ms late on
        // average. So when something is due sooner than that, read without blocking and wait
        // here, in slices short enough not to hold up tasks queued meanwhile.
        let wait_here = block < SERVER_TICK;
        let mut read_command = redis::cmd("XREADGROUP");
        read_command
            .arg("GROUP")
            .arg(GROUP)
            .arg(worker)
            .arg("COUNT")
            .arg(max);
        if !wait_here {
            read_command
                .arg("BLOCK")
                .arg(block.as_millis().max(1) as u64);
        }
        read_command.arg("STREAMS").arg(self.keys.queue()).arg(">");
        let deliveries = if self.schedule.lanes {
            self.fetch_lanes(worker, max, read_command)?
        } else {
            let read: Value = self.query(&read_command)?;
            let entries = parse::stream_entries(read).map_err(BrokerError::Protocol)?;
            let deliveries = self.deliveries(worker, entries);
            self.throttle(deliveries)?
        };
        if wait_here && deliveries.is_empty() {
            std::thread::sleep(block.min(DUE_WAIT_SLICE));
        }
        if self.schedule.aborts {
            return self.mark_aborted(deliveries);
        }
        Ok(deliveries)
    }

    fn complete(&mut self, completions: &[Completion]) -> BrokerResult<Vec<bool>> {
        let mut answers = Vec::with_capacity(completions.len());
        for batch in batches(completions, |c| c.outcome.len()) {
            let mut command = self.script(Script::Complete)?;
            command.arg(GROUP);
            for completion in batch {
                command
                    .arg(&completion.entry)
                    .arg(&completion.task_id)
                    .arg(&completion.outcome)
                    .arg(completion.dead_letter.as_deref().unwrap_or(""))
                    .arg(
                        completion
                            .retry_in
                            .map_or(String::new(), |d| d.as_millis().max(1).to_string()),
                    );
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
        let claimed = self.deliveries(worker, claimed);
        // Rare (a lost worker's tasks), so always asked: a task aborted after its worker died
        // must not run again.
        Ok(Reaped {
            claimed: self.mark_aborted(claimed)?,
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

    fn abort(&mut self, task_ids: &[Arc<str>]) -> BrokerResult<Vec<bool>> {
        let mut answers = Vec::with_capacity(task_ids.len());
        for batch in batches(task_ids, |id| id.len()) {
            let mut command = self.script(Script::Abort)?;
            for id in batch {
                command.arg(&**id);
            }
            let raw: Vec<i64> = self.query(&command)?;
            answers.extend(raw.into_iter().map(|recorded| recorded == 1));
        }
        Ok(answers)
    }

    fn aborted(&mut self, task_ids: &[String]) -> BrokerResult<Vec<String>> {
        let mut aborted = Vec::new();
        // A worker holding many tasks asks every 250 ms: while the pool has no abort record
        // (nearly always), one `EXISTS` instead of shipping every id.
        if task_ids.len() > MAX_BATCH {
            let any: bool =
                self.query(redis::cmd("EXISTS").arg(format!("{}:aborted", self.keys.prefix())))?;
            if !any {
                return Ok(aborted);
            }
        }
        for batch in batches(task_ids, String::len) {
            let mut command = self.script(Script::Aborted)?;
            for id in batch {
                command.arg(id);
            }
            aborted.extend(self.query::<Vec<String>>(&command)?);
        }
        Ok(aborted)
    }

    fn progress(&mut self, reports: &[ProgressReport]) -> BrokerResult<()> {
        // One script call per batch: the hash, the replies and the "already published" check
        // in one step, so a report racing its task's outcome never outlives it.
        for batch in batches(reports, |r| r.task_id.len() + 42) {
            let mut command = self.script(Script::Progress)?;
            command.arg(self.keys.progress());
            for report in batch {
                command
                    .arg(&report.task_id)
                    .arg(super::backend::progress_value(report.done, report.total));
            }
            self.query::<Value>(&command)?;
        }
        Ok(())
    }

    fn retire_worker(&mut self, worker: &str) -> BrokerResult<()> {
        let mut command = self.script(Script::Retire)?;
        command.arg(GROUP).arg(worker);
        self.query::<i64>(&command).map(drop)
    }

    fn status(&mut self) -> BrokerResult<Option<Status>> {
        let keys = self.keys.clone();
        // Every client and worker creates the queue (with its group) when it connects: without
        // one, nobody ever used this pool.
        // The type of each key status reads, first: a key another program replaced with another
        // type is named in `problems` and read as empty, instead of failing the whole report
        // with a WRONGTYPE that does not say which key.
        let expected = [
            (keys.queue(), "stream"),
            (keys.workers(), "hash"),
            (keys.worker_info(), "hash"),
            (keys.dead(), "stream"),
            (keys.stats(), "hash"),
            (keys.progress(), "hash"),
        ];
        let mut types = redis::pipe();
        for (key, _) in &expected {
            types.cmd("TYPE").arg(key);
        }
        let found: Vec<String> = self.query_pipe(&types)?;
        let mut problems = Vec::new();
        let mut readable = Vec::new();
        for ((key, want), found) in expected.iter().zip(&found) {
            let ok = found == want || found == "none";
            if !ok {
                problems.push(format!(
                    "the key {key} holds a {found}, not a {want} (written by another program): \
                     read as empty; delete it to let the pool rebuild it"
                ));
            }
            readable.push(ok);
        }
        match found.first().map(String::as_str) {
            // Every client and worker creates the queue (with its group) when it connects:
            // without one, nobody ever used this pool.
            None | Some("none") => return Ok(None),
            Some("stream") => {}
            Some(other) => {
                return Err(BrokerError::Rejected(format!(
                    "the pool's queue {} holds a {other}, not a stream (written by another \
                     program): no client or worker can use this pool until it is deleted",
                    keys.queue()
                )))
            }
        }
        // A key of the wrong type is read under a name that holds nothing.
        let absent = format!("{}:absent", keys.prefix());
        let key = |i: usize| {
            if readable[i] {
                expected[i].0.clone()
            } else {
                absent.clone()
            }
        };
        let mut pipe = redis::pipe();
        pipe.cmd("TIME").cmd("XLEN").arg(keys.queue());
        pipe.cmd("XPENDING").arg(keys.queue()).arg(GROUP);
        pipe.cmd("HGETALL")
            .arg(key(1))
            .cmd("HGETALL")
            .arg(key(2))
            .cmd("XLEN")
            .arg(key(3))
            .cmd("XREVRANGE")
            .arg(key(3))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(10)
            .cmd("HGETALL")
            .arg(key(4));
        let mut raw: Vec<Value> = self.query_pipe(&pipe)?;
        let (config, settings) = self.config(PoolConfig::default())?;
        // Asked apart: a schedule key another program replaced must not hide the rest.
        let schedule = format!("{}:scheduled", keys.prefix());
        match self.query::<Value>(redis::cmd("ZCARD").arg(&schedule)) {
            Ok(count) => raw.push(count),
            Err(BrokerError::Rejected(why)) => {
                problems.push(format!(
                    "the schedule key {schedule} cannot be read ({why}): delayed tasks and \
                     retries fail with a transfer error until it is deleted"
                ));
                raw.push(Value::Int(0));
            }
            Err(error) => return Err(error),
        }
        let mut status = parse::status(raw, config).map_err(BrokerError::Protocol)?;
        problems.extend(settings);
        status.problems = problems;
        // The priority lanes, where they exist (`XPENDING` of a missing stream is an error).
        for lane in [":high", ":low"] {
            let stream = format!("{}{lane}", keys.queue());
            let exists: bool = self.query(redis::cmd("EXISTS").arg(&stream))?;
            if !exists {
                continue;
            }
            let (length, pending): (u64, Value) = self.query_pipe(
                redis::pipe()
                    .cmd("XLEN")
                    .arg(&stream)
                    .cmd("XPENDING")
                    .arg(&stream)
                    .arg(GROUP),
            )?;
            let (in_flight, held) =
                parse::pending_summary(pending).map_err(BrokerError::Protocol)?;
            status.queued += length.saturating_sub(in_flight);
            status.in_flight += in_flight;
            for (name, n) in held {
                if let Some(worker) = status.workers.iter_mut().find(|w| w.name == name) {
                    worker.in_flight += n;
                }
            }
        }
        if readable[5] {
            status.progress = self.running_progress()?;
        }
        Ok(Some(status))
    }

    fn pools(&mut self) -> BrokerResult<Vec<String>> {
        // Bounded: a few SCAN pages are enough to suggest the name the user meant.
        let mut cursor = 0u64;
        let mut pools = Vec::new();
        for _ in 0..20 {
            let (next, keys): (u64, Vec<String>) = self.query(
                redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg("{futurepool:*}:queue")
                    .arg("COUNT")
                    .arg(1000),
            )?;
            pools.extend(keys.iter().filter_map(|key| {
                let name = key.strip_prefix("{futurepool:")?.strip_suffix("}:queue")?;
                Some(name.to_string())
            }));
            if next == 0 {
                break;
            }
            cursor = next;
        }
        pools.sort();
        pools.dedup();
        Ok(pools)
    }

    fn ping(&mut self) -> BrokerResult<()> {
        self.query::<String>(&redis::cmd("PING")).map(drop)
    }

    fn max_payload(&mut self) -> usize {
        // Opening the link is what reads the limit.
        let _ = self.link();
        self.max_bulk
    }

    fn live_workers(&mut self, within: Duration) -> BrokerResult<usize> {
        let (now, beats): (Vec<u64>, Vec<Value>) = self.query_pipe(
            redis::pipe()
                .cmd("TIME")
                .cmd("HVALS")
                .arg(self.keys.workers()),
        )?;
        let now_ms = now.first().copied().unwrap_or(0).saturating_mul(1000)
            + now.get(1).copied().unwrap_or(0) / 1000;
        let within_ms = u64::try_from(within.as_millis()).unwrap_or(u64::MAX);
        Ok(beats
            .into_iter()
            .filter_map(parse::number)
            .filter(|&beat| now_ms.saturating_sub(beat) < within_ms)
            .count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_never_reaches_a_message() {
        assert_eq!(redact("redis://:s3cret@h:6379/"), "redis://:***@h:6379/");
        assert_eq!(redact("redis://user:s3cret@h/"), "redis://user:***@h/");
        assert_eq!(redact("redis://h:6379/"), "redis://h:6379/");
        let error = open_client("redis://:s3cret@h:notaport/").err().unwrap();
        assert!(!error.contains("s3cret"), "{error}");
        assert!(error.contains(URL_FORM), "{error}");
    }

    #[test]
    fn batches_bound_both_count_and_bytes() {
        let sizes = vec![1usize; 600];
        let runs = batches(&sizes, |&n| n);
        assert_eq!(
            runs.iter().map(|r| r.len()).collect::<Vec<_>>(),
            [256, 256, 88]
        );
        let sizes = [MAX_BATCH_BYTES, 1, MAX_BATCH_BYTES * 3, 1, 1];
        let runs = batches(&sizes, |&n| n);
        assert_eq!(
            runs.iter().map(|r| r.len()).collect::<Vec<_>>(),
            [1, 1, 1, 2]
        );
        assert!(batches(&[0u8; 0], |_| 1).is_empty());
    }
}
