//! How every broker call of the cluster is retried (the README's "What is retried").
//!
//! One rule for every loop: a transient error (the broker is unreachable, restarting, loading) is
//! logged — one line per failed attempt — and retried with backoff, for at most the loop's
//! patience; a permanent one ends the loop with the error. A failure that looks transient but
//! repeats while the broker answers `PING` is not an outage: the broker refuses that data (a
//! server closes the link on a value larger than `proto-max-bulk-len`), so [`send_pinning`] sends
//! the items one by one and pins the refusal on the ones that cause it; the rest go through.

use std::time::{Duration, Instant};

use super::backend::{BrokerError, BrokerResult, Connection};
use super::backoff::Backoff;

/// Failed attempts of one call, while `PING` succeeds, after which the data is taken to be what
/// the broker refuses.
const SUSPICIONS: u32 = 2;
/// The smallest value Redis can refuse for its size: `proto-max-bulk-len` and
/// `client-query-buffer-limit` cannot be set below 1 MiB. A dropped link on a call whose values
/// are all smaller is an outage (a killed or timed-out connection), never a refusal of the data.
const SMALLEST_REFUSABLE: usize = 1 << 20;

/// Why a retry loop ended without success.
#[derive(Debug, Clone)]
pub(crate) enum Stop {
    /// A permanent error: stop, with it.
    Fatal(BrokerError),
    /// The loop's patience ran out, or its owner is stopping.
    GaveUp(String),
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Fatal(error) => write!(f, "{error}"),
            Stop::GaveUp(why) => f.write_str(why),
        }
    }
}

/// The state of one retry loop: who it is (for the log), its backoff, and how long the current
/// outage has lasted.
#[derive(Debug)]
pub(crate) struct Retry {
    label: String,
    backoff: Backoff,
    outage_since: Option<Instant>,
    patience: Duration,
    recovered: bool,
}

impl Retry {
    /// `label` starts each log line (e.g. `futurepool worker "jobs"`); `patience` bounds one
    /// outage (`Duration::MAX`: no bound, for loops bounded otherwise).
    pub(crate) fn new(label: impl Into<String>, patience: Duration) -> Self {
        Retry {
            label: label.into(),
            backoff: Backoff::new(),
            outage_since: None,
            patience,
            recovered: false,
        }
    }

    /// After a failed attempt to `what`: logs it and sleeps (transient), or ends the loop
    /// (permanent, or the outage outlasted the patience).
    pub(crate) fn failed(&mut self, what: &str, error: BrokerError) -> Result<(), Stop> {
        if !error.is_transient() {
            return Err(Stop::Fatal(error));
        }
        let since = *self.outage_since.get_or_insert_with(Instant::now);
        let lasted = since.elapsed();
        if lasted >= self.patience {
            return Err(Stop::GaveUp(format!(
                "gave up trying to {what} after {lasted:.1?} of failures (last: {error})"
            )));
        }
        let (attempt, delay) = self.backoff.next();
        eprintln!(
            "{}: cannot {what} ({error}); attempt {attempt} failed, retrying in {delay:?}",
            self.label
        );
        std::thread::sleep(delay);
        Ok(())
    }

    /// After a success; true if it ended an outage (callers re-synchronise then).
    pub(crate) fn succeeded(&mut self) -> bool {
        let recovered = self.outage_since.take().is_some();
        if recovered {
            eprintln!("{}: the broker answers again", self.label);
            self.backoff.reset();
            self.recovered = true;
        }
        recovered
    }

    /// Ends a run of failures that turned out to be the broker refusing some data, not an
    /// outage: nothing to re-synchronise afterwards.
    fn refusal_pinned(&mut self) {
        self.outage_since = None;
        self.backoff.reset();
    }

    /// How long the current outage has lasted (zero when there is none).
    pub(crate) fn outage(&self) -> Duration {
        self.outage_since
            .map_or(Duration::ZERO, |since| since.elapsed())
    }

    /// Whether an outage ended since the last call.
    pub(crate) fn take_recovered(&mut self) -> bool {
        std::mem::take(&mut self.recovered)
    }
}

/// One broker call on a batch of items: one answer per item.
pub(crate) type Send<'a, T, A> = dyn FnMut(&mut dyn Connection, &[T]) -> BrokerResult<Vec<A>> + 'a;

/// What became of one item sent by [`send_pinning`].
pub(crate) type Pinned<A> = Result<A, String>;

/// Sends `items` with `send` — one call for all of them, the only call on the normal path — and
/// returns one answer per item. If the broker refuses the call (an error reply, or a failure that
/// repeats while it answers `PING` on a call carrying an item of at least 1 MiB by `size`), the
/// items are sent one at a time, so the refusal is pinned on the item(s) that cause it
/// (`Err(reason)`) and the others still go through.
///
/// # Errors
///
/// [`Stop::Fatal`] for an error no item can get past (the broker refuses this client),
/// [`Stop::GaveUp`] when the outage outlasts `retry`'s patience or `stop` (given how long the
/// outage has lasted) says so.
pub(crate) fn send_pinning<T, A>(
    connection: &mut dyn Connection,
    what: &str,
    items: &[T],
    size: &dyn Fn(&T) -> usize,
    send: &mut Send<'_, T, A>,
    retry: &mut Retry,
    stop: &dyn Fn(Duration) -> bool,
) -> Result<Vec<Pinned<A>>, Stop> {
    match attempt(connection, what, items, size, send, retry, stop)? {
        Ok(answers) => Ok(answers.into_iter().map(Ok).collect()),
        Err(reason) if items.len() == 1 => Ok(vec![Err(reason)]),
        Err(reason) => {
            eprintln!(
                "futurepool cluster: the broker refused a batch of {} ({reason}); sending them one by one",
                items.len()
            );
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                let one = attempt(
                    connection,
                    what,
                    std::slice::from_ref(item),
                    size,
                    send,
                    retry,
                    stop,
                )?;
                out.push(one.and_then(|mut answers| {
                    answers
                        .pop()
                        .ok_or_else(|| "the broker gave no answer".to_string())
                }));
            }
            Ok(out)
        }
    }
}

/// One call, retried while transient: `Ok(Ok(answers))`, or `Ok(Err(reason))` when the broker
/// refuses these items.
fn attempt<T, A>(
    connection: &mut dyn Connection,
    what: &str,
    items: &[T],
    size: &dyn Fn(&T) -> usize,
    send: &mut Send<'_, T, A>,
    retry: &mut Retry,
    stop: &dyn Fn(Duration) -> bool,
) -> Result<Result<Vec<A>, String>, Stop> {
    let refusable = items.iter().any(|item| size(item) >= SMALLEST_REFUSABLE);
    let mut suspicions = 0;
    loop {
        match send(connection, items) {
            Ok(answers) => {
                retry.succeeded();
                return Ok(Ok(answers));
            }
            Err(error @ BrokerError::Refused(_)) => return Err(Stop::Fatal(error)),
            Err(error) if !error.is_transient() => return Ok(Err(error.to_string())),
            Err(error) => {
                let shown = error.to_string();
                retry.failed(what, error)?;
                if stop(retry.outage()) {
                    return Err(Stop::GaveUp(format!(
                        "stopped trying to {what} after {:.1?} of failures ({shown})",
                        retry.outage()
                    )));
                }
                if refusable && connection.ping().is_ok() {
                    suspicions += 1;
                    if suspicions >= SUSPICIONS {
                        retry.refusal_pinned();
                        return Ok(Err(format!(
                            "{shown}, {suspicions} times while the broker answered other commands: \
                             it refuses this data"
                        )));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::time::Duration;

    use super::*;
    use crate::cluster::backend::{
        Completion, Delivery, NewTask, PoolConfig, Reaped, Reply, Submitted,
    };

    /// A broker that answers `PING`, and refuses any call carrying a "big" item the way Redis
    /// refuses a value over `proto-max-bulk-len`: by dropping the link (an I/O error).
    struct Picky {
        ping_ok: bool,
    }

    impl Connection for Picky {
        fn ping(&mut self) -> BrokerResult<()> {
            if self.ping_ok {
                Ok(())
            } else {
                Err(BrokerError::Unavailable("Connection refused".into()))
            }
        }
        fn max_payload(&mut self) -> usize {
            usize::MAX
        }
        fn config(&mut self, _: PoolConfig) -> BrokerResult<(PoolConfig, Vec<String>)> {
            unimplemented!()
        }
        fn store_config(&mut self, _: PoolConfig) -> BrokerResult<()> {
            unimplemented!()
        }
        fn register_client(&mut self) -> BrokerResult<u64> {
            unimplemented!()
        }
        fn abort(&mut self, _: &[std::sync::Arc<str>]) -> BrokerResult<Vec<bool>> {
            unimplemented!()
        }
        fn aborted(&mut self, _: &[String]) -> BrokerResult<Vec<String>> {
            unimplemented!()
        }
        fn progress(&mut self, _: &[crate::cluster::backend::ProgressReport]) -> BrokerResult<()> {
            unimplemented!()
        }
        fn submit(&mut self, _: u64, _: &[NewTask]) -> BrokerResult<Vec<Submitted>> {
            unimplemented!()
        }
        fn replies(
            &mut self,
            _: u64,
            _: &mut String,
            _: usize,
            _: Duration,
        ) -> BrokerResult<Vec<Reply>> {
            unimplemented!()
        }
        fn look_up(
            &mut self,
            _: &[std::sync::Arc<str>],
        ) -> BrokerResult<Vec<crate::cluster::backend::Known>> {
            unimplemented!()
        }
        fn register_worker(&mut self, _: &str) -> BrokerResult<String> {
            unimplemented!()
        }
        fn fetch(&mut self, _: &str, _: usize, _: Duration) -> BrokerResult<Vec<Delivery>> {
            unimplemented!()
        }
        fn complete(&mut self, _: &[Completion]) -> BrokerResult<Vec<bool>> {
            unimplemented!()
        }
        fn heartbeat(&mut self, _: &str, _: &[String]) -> BrokerResult<Vec<String>> {
            unimplemented!()
        }
        fn reap(&mut self, _: &str, _: PoolConfig, _: usize) -> BrokerResult<Reaped> {
            unimplemented!()
        }
        fn release(&mut self, _: &str, _: &[String]) -> BrokerResult<()> {
            unimplemented!()
        }
        fn retire_worker(&mut self, _: &str) -> BrokerResult<()> {
            unimplemented!()
        }
        fn status(&mut self) -> BrokerResult<Option<crate::cluster::Status>> {
            unimplemented!()
        }
        fn pools(&mut self) -> BrokerResult<Vec<String>> {
            unimplemented!()
        }
        fn live_workers(&mut self, _: Duration) -> BrokerResult<usize> {
            unimplemented!()
        }
    }

    /// "big" stands for an item over the broker's limit; the others are a few bytes.
    fn big_is_huge(item: &&str) -> usize {
        if *item == "big" {
            2 << 20
        } else {
            item.len()
        }
    }

    #[test]
    fn a_dropped_link_on_small_items_is_an_outage_never_a_refusal() {
        let failures = Cell::new(0);
        let mut send = |_: &mut dyn Connection, items: &[&str]| {
            failures.set(failures.get() + 1);
            if failures.get() <= 4 {
                // A killed connection, while PING works.
                Err(BrokerError::Unavailable("Connection reset by peer".into()))
            } else {
                Ok(items.iter().map(|i| i.len()).collect())
            }
        };
        let mut retry = Retry::new("test", Duration::from_secs(60));
        let answers = send_pinning(
            &mut Picky { ping_ok: true },
            "send",
            &["a", "bb"],
            &big_is_huge,
            &mut send,
            &mut retry,
            &|_| false,
        )
        .unwrap();
        assert_eq!(answers, [Ok(1), Ok(2)]);
    }

    #[test]
    fn a_refused_item_fails_alone_even_when_the_broker_only_drops_the_link() {
        let calls = Cell::new(0);
        let mut send = |_: &mut dyn Connection, items: &[&str]| {
            calls.set(calls.get() + 1);
            if items.contains(&"big") {
                Err(BrokerError::Unavailable("Connection reset by peer".into()))
            } else {
                Ok(items.iter().map(|i| i.len()).collect())
            }
        };
        let mut retry = Retry::new("test", Duration::from_secs(60));
        let items = ["a", "big", "ccc"];
        let answers = send_pinning(
            &mut Picky { ping_ok: true },
            "send",
            &items,
            &big_is_huge,
            &mut send,
            &mut retry,
            &|_| false,
        )
        .unwrap();
        assert_eq!(answers[0], Ok(1));
        assert!(answers[1]
            .as_ref()
            .unwrap_err()
            .contains("refuses this data"));
        assert_eq!(answers[2], Ok(3));
        assert!(
            calls.get() < 10,
            "a bounded number of calls: {}",
            calls.get()
        );
    }

    #[test]
    fn an_error_reply_is_pinned_at_once_and_a_refused_client_is_fatal() {
        let mut send = |_: &mut dyn Connection, items: &[u8]| match items {
            [2] => Err(BrokerError::Rejected(
                "ERR Protocol error: invalid bulk length".into(),
            )),
            [3] => Err(BrokerError::Refused("NOAUTH".into())),
            _ if items.contains(&2) => Err(BrokerError::Rejected("ERR too big".into())),
            _ => Ok(items.to_vec()),
        };
        let mut retry = Retry::new("test", Duration::from_secs(60));
        let answers = send_pinning(
            &mut Picky { ping_ok: true },
            "send",
            &[1, 2],
            &|_| 0,
            &mut send,
            &mut retry,
            &|_| false,
        )
        .unwrap();
        assert_eq!(answers[0], Ok(1));
        assert!(answers[1].is_err());
        let fatal = send_pinning(
            &mut Picky { ping_ok: true },
            "send",
            &[3],
            &|_| 0,
            &mut send,
            &mut retry,
            &|_| false,
        );
        assert!(matches!(fatal, Err(Stop::Fatal(BrokerError::Refused(_)))));
    }

    #[test]
    fn an_outage_longer_than_the_patience_gives_up() {
        let mut send = |_: &mut dyn Connection, _: &[u8]| -> BrokerResult<Vec<u8>> {
            Err(BrokerError::Unavailable("Connection refused".into()))
        };
        let mut retry = Retry::new("test", Duration::from_millis(100));
        // PING fails too: an outage, not a refusal of the data.
        let mut down = Picky { ping_ok: false };
        let outcome = send_pinning(
            &mut down,
            "send",
            &[1],
            &|_| usize::MAX,
            &mut send,
            &mut retry,
            &|_| false,
        );
        assert!(matches!(outcome, Err(Stop::GaveUp(_))), "{outcome:?}");
    }
}
