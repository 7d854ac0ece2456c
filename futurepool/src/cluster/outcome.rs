//! The outcome of a task as it travels from a worker to its clients, and as it is kept in the
//! result key.
//!
//! One tag byte, then the payload. The tag format is this simple so the broker's own scripts can
//! write an outcome too: when a task runs out of deliveries, the reaper script publishes
//! `L<deliveries>` without any Rust code involved.
//!
//! | tag | payload | becomes |
//! | --- | --- | --- |
//! | `V` | postcard bytes of the function's return value | `Ok(value)` (or `Failed(e)` for a fallible function's `Err`) |
//! | `P` | postcard `(message, location)` | `TaskError::Panicked` |
//! | `T` | UTF-8 reason | `TaskError::Transfer` (unknown function, bad argument or result bytes) |
//! | `L` | decimal delivery count | `TaskError::WorkerLost(WorkerLoss::GaveUp { deliveries })` |
//! | `C` | nothing | `TaskError::Cancelled`: the task was aborted (`Task::abort`) |
//! | `F` | postcard bytes of the error a fallible task returned, passed on by the broker to the tasks chained after it (`submit_after`) | `TaskError::Failed(e)` |
//! | `K` | decimal nanoseconds | `TaskError::TimeLimit(limit)`: its local process was killed at the hard limit |
//! | `M` | decimal limit, space, decimal bytes used | `TaskError::MemoryLimit { limit, used }` |
//! | `W` | `x` + exit code, `s` + signal, or `d` | `TaskError::WorkerLost(Exited / Signaled / Disconnected)`: the local process running it died |
//! | `A` | decimal attempts, `:`, then one of the above | that outcome; the handle's `attempts()` is the count |
//!
//! `A` wraps the final outcome of a task submitted with a retry policy, and only those: an
//! ordinary outcome is unchanged.

use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::error::{Panic, Reason, TaskError, WorkerLoss};

const VALUE: u8 = b'V';
const PANICKED: u8 = b'P';
const TRANSFER: u8 = b'T';
const GAVE_UP: u8 = b'L';
const ATTEMPTS: u8 = b'A';
const CANCELLED: u8 = b'C';
const UPSTREAM_FAILED: u8 = b'F';
const TIME_LIMIT: u8 = b'K';
const MEMORY_LIMIT: u8 = b'M';
const PROCESS_LOST: u8 = b'W';

/// A value returned by the task function, already serialized.
pub(crate) fn value(bytes: &[u8]) -> Vec<u8> {
    tagged(VALUE, bytes)
}

/// The task function panicked.
pub(crate) fn panicked(panic: &Panic) -> Vec<u8> {
    let payload = postcard::to_stdvec(&(panic.message(), panic.location()))
        .expect("a pair of strings always serializes");
    tagged(PANICKED, &payload)
}

/// The task could not be run or its result could not be sent back.
pub(crate) fn transfer(reason: &str) -> Vec<u8> {
    tagged(TRANSFER, reason.as_bytes())
}

/// The task was aborted: it did not run, or its value was discarded (the abort script writes the
/// same byte for a task it takes off the schedule).
pub(crate) fn cancelled() -> Vec<u8> {
    vec![CANCELLED]
}

/// The local process running the task was killed at its hard time limit.
pub(crate) fn time_limit(limit: Duration) -> Vec<u8> {
    tagged(TIME_LIMIT, limit.as_nanos().to_string().as_bytes())
}

/// The local process running the task was killed for using `used` bytes, over `limit`.
pub(crate) fn memory_limit(limit: u64, used: u64) -> Vec<u8> {
    tagged(MEMORY_LIMIT, format!("{limit} {used}").as_bytes())
}

/// The local process running the task died (a crash, `exit`, a signal from elsewhere).
pub(crate) fn process_lost(loss: WorkerLoss) -> Vec<u8> {
    let payload = match loss {
        WorkerLoss::Exited(code) => format!("x{code}"),
        WorkerLoss::Signaled(signal) => format!("s{signal}"),
        // `GaveUp` is the broker's (tag `L`); a local pool never reports it.
        WorkerLoss::Disconnected | WorkerLoss::GaveUp { .. } => "d".to_string(),
    };
    tagged(PROCESS_LOST, payload.as_bytes())
}

/// The final outcome of a task with a retry policy, after `attempts` runs.
pub(crate) fn with_attempts(attempts: u32, outcome: &[u8]) -> Vec<u8> {
    let count = attempts.to_string();
    let mut out = Vec::with_capacity(outcome.len() + count.len() + 2);
    out.push(ATTEMPTS);
    out.extend_from_slice(count.as_bytes());
    out.push(b':');
    out.extend_from_slice(outcome);
    out
}

/// Splits off the attempt count of [`with_attempts`]; other outcomes come back as they are.
pub(crate) fn split_attempts(bytes: &[u8]) -> (Option<u32>, &[u8]) {
    let Some(rest) = bytes.strip_prefix(&[ATTEMPTS]) else {
        return (None, bytes);
    };
    let Some(colon) = rest.iter().position(|&b| b == b':') else {
        return (None, bytes);
    };
    match std::str::from_utf8(&rest[..colon])
        .ok()
        .and_then(|n| n.parse().ok())
    {
        Some(attempts) => (Some(attempts), &rest[colon + 1..]),
        None => (None, bytes),
    }
}

fn tagged(tag: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 1);
    out.push(tag);
    out.extend_from_slice(payload);
    out
}

/// What the broker does with a task chained after another (`ClusterPool::submit_after`) once
/// the other's outcome is published: the same rule as the Redis scripts' `release_one`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Release {
    /// The other succeeded: queue the chained task with this argument (its value's bytes).
    Run(Vec<u8>),
    /// The other did not: publish this as the chained task's outcome.
    Publish(Vec<u8>),
}

/// [`Release`] of a task chained after one whose outcome is `upstream` (its attempt count
/// dropped: it is the other task's); `fallible`: the other's value is a postcard `Result`, whose
/// `Ok` is unwrapped and whose `Err` becomes an `F` outcome.
pub(crate) fn release_after(upstream: &[u8], fallible: bool) -> Release {
    let (_, inner) = split_attempts(upstream);
    match inner.split_first() {
        Some((&VALUE, value)) if !fallible => Release::Run(value.to_vec()),
        // A postcard `Result`: variant 0 (`Ok`) or 1 (`Err`), one byte, then its payload.
        Some((&VALUE, [0, ok @ ..])) => Release::Run(ok.to_vec()),
        Some((&VALUE, [1, err @ ..])) => Release::Publish(tagged(UPSTREAM_FAILED, err)),
        Some((&VALUE, _)) => Release::Publish(transfer(
            "the task it was chained after returned a value that is not a Result",
        )),
        _ => Release::Publish(inner.to_vec()),
    }
}

/// Decodes the outcome of a task chained after another on the broker: as [`decode`], and an `F`
/// outcome (the other task's own error, passed on) is `Failed(e)`.
pub(crate) fn decode_after<R: DeserializeOwned, E: DeserializeOwned>(
    bytes: &[u8],
) -> Result<R, TaskError<E>> {
    let (_, inner) = split_attempts(bytes);
    match inner.strip_prefix(&[UPSTREAM_FAILED]) {
        Some(error) => match postcard::take_from_bytes::<E>(error) {
            Ok((error, [])) => Err(TaskError::Failed(error)),
            _ => Err(garbled(&format!(
                "a passed-on error that does not decode as {}",
                std::any::type_name::<E>()
            ))),
        },
        None => decode::<R, E>(bytes),
    }
}

/// Decodes an outcome for a task whose function returns `R` directly.
pub(crate) fn decode<R: DeserializeOwned, E>(bytes: &[u8]) -> Result<R, TaskError<E>> {
    decode_value(bytes, |value: R| Ok(value))
}

/// Decodes an outcome for a task whose function returns `Result<R, E>`: its `Err` is the task's
/// own failure.
pub(crate) fn decode_fallible<R: DeserializeOwned, E: DeserializeOwned>(
    bytes: &[u8],
) -> Result<R, TaskError<E>> {
    decode_value(bytes, |value: Result<R, E>| {
        value.map_err(TaskError::Failed)
    })
}

fn decode_value<V: DeserializeOwned, R, E>(
    bytes: &[u8],
    finish: impl FnOnce(V) -> Result<R, TaskError<E>>,
) -> Result<R, TaskError<E>> {
    let (_, bytes) = split_attempts(bytes);
    let Some((&tag, payload)) = bytes.split_first() else {
        return Err(garbled("an empty outcome"));
    };
    match tag {
        // Every byte must belong to the value: left-over bytes mean the outcome was written for
        // another type, and the value decoded from its start would be a wrong one.
        VALUE => match postcard::take_from_bytes::<V>(payload) {
            Ok((value, [])) => finish(value),
            Ok((_, rest)) => Err(TaskError::Transfer(Reason::new(format!(
                "the result from the worker does not decode as {}: {} bytes are left over \
                 (are the client and the workers built from the same code?)",
                std::any::type_name::<V>(),
                rest.len()
            )))),
            Err(e) => Err(TaskError::Transfer(Reason::new(format!(
                "the result from the worker does not decode as {}: {e} \
                 (are the client and the workers built from the same code?)",
                std::any::type_name::<V>()
            )))),
        },
        PANICKED => match postcard::from_bytes::<(String, Option<String>)>(payload) {
            Ok((message, location)) => Err(TaskError::Panicked(Panic::new(message, location))),
            Err(_) => Err(garbled("a panic report that does not decode")),
        },
        TRANSFER => Err(TaskError::Transfer(Reason::new(
            String::from_utf8_lossy(payload).into_owned(),
        ))),
        CANCELLED if payload.is_empty() => Err(TaskError::Cancelled),
        GAVE_UP => match std::str::from_utf8(payload)
            .ok()
            .and_then(|s| s.parse().ok())
        {
            Some(deliveries) => Err(TaskError::WorkerLost(WorkerLoss::GaveUp { deliveries })),
            None => Err(garbled("a dead-letter report without a delivery count")),
        },
        TIME_LIMIT => match std::str::from_utf8(payload)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
        {
            Some(nanos) => Err(TaskError::TimeLimit(Duration::from_nanos(nanos))),
            None => Err(garbled("a time-limit report without its limit")),
        },
        MEMORY_LIMIT => {
            let numbers = std::str::from_utf8(payload).ok().and_then(|s| {
                let (limit, used) = s.split_once(' ')?;
                Some((limit.parse().ok()?, used.parse().ok()?))
            });
            match numbers {
                Some((limit, used)) => Err(TaskError::MemoryLimit { limit, used }),
                None => Err(garbled("a memory-limit report without its numbers")),
            }
        }
        PROCESS_LOST => {
            let text = std::str::from_utf8(payload).unwrap_or("");
            let number = |s: &str| s.parse::<i32>().ok();
            let loss = match text.split_at_checked(1) {
                Some(("x", code)) => number(code).map(WorkerLoss::Exited),
                Some(("s", signal)) => number(signal).map(WorkerLoss::Signaled),
                Some(("d", "")) => Some(WorkerLoss::Disconnected),
                _ => None,
            };
            match loss {
                Some(loss) => Err(TaskError::WorkerLost(loss)),
                None => Err(garbled("a lost-process report that does not decode")),
            }
        }
        other => Err(garbled(&format!(
            "an outcome with the unknown tag {other:#04x}"
        ))),
    }
}

fn garbled<E>(what: &str) -> TaskError<E> {
    TaskError::Transfer(Reason::new(format!("the broker returned {what}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chained_task_gets_the_value_or_the_failure_passed_on() {
        let plain = value(&postcard::to_stdvec(&21u64).unwrap());
        assert_eq!(
            release_after(&plain, false),
            Release::Run(postcard::to_stdvec(&21u64).unwrap())
        );
        assert_eq!(
            release_after(&with_attempts(3, &plain), false),
            Release::Run(postcard::to_stdvec(&21u64).unwrap()),
            "the attempt count is the other task's"
        );
        let ok = value(&postcard::to_stdvec(&Ok::<u64, String>(5)).unwrap());
        assert_eq!(
            release_after(&ok, true),
            Release::Run(postcard::to_stdvec(&5u64).unwrap())
        );
        let err = value(&postcard::to_stdvec(&Err::<u64, String>("bad".into())).unwrap());
        let Release::Publish(passed_on) = release_after(&err, true) else {
            panic!("an Err is not run on");
        };
        assert_eq!(
            decode_after::<u32, String>(&passed_on),
            Err(TaskError::Failed("bad".to_string()))
        );
        for failure in [cancelled(), b"L3".to_vec(), transfer("no such function")] {
            assert_eq!(
                release_after(&with_attempts(2, &failure), false),
                Release::Publish(failure.clone())
            );
        }
        assert!(matches!(
            decode_after::<u32, String>(b"F\xff"),
            Err(TaskError::Transfer(_))
        ));
        assert_eq!(
            decode_after::<u8, String>(&cancelled()),
            Err(TaskError::Cancelled)
        );
    }

    #[test]
    fn a_value_round_trips() {
        let bytes = value(&postcard::to_stdvec(&(7u32, "x".to_string())).unwrap());
        assert_eq!(
            decode::<(u32, String), ()>(&bytes),
            Ok((7, "x".to_string()))
        );
    }

    #[test]
    fn a_fallible_error_is_the_tasks_own_failure() {
        let bytes = value(&postcard::to_stdvec(&Err::<u8, String>("no".into())).unwrap());
        assert_eq!(
            decode_fallible::<u8, String>(&bytes),
            Err(TaskError::Failed("no".to_string()))
        );
    }

    #[test]
    fn a_panic_keeps_message_and_location() {
        let bytes = panicked(&Panic::new("boom", Some("src/lib.rs:1:2".into())));
        let Err(TaskError::Panicked(p)) = decode::<u8, ()>(&bytes) else {
            panic!("not a panic");
        };
        assert_eq!(
            (p.message(), p.location()),
            ("boom", Some("src/lib.rs:1:2"))
        );
    }

    #[test]
    fn the_reapers_dead_letter_outcome_decodes() {
        assert_eq!(
            decode::<u8, ()>(b"L3"),
            Err(TaskError::WorkerLost(WorkerLoss::GaveUp { deliveries: 3 }))
        );
    }

    #[test]
    fn an_aborted_task_decodes_as_cancelled() {
        assert_eq!(decode::<u8, ()>(&cancelled()), Err(TaskError::Cancelled));
        assert_eq!(
            decode::<u8, ()>(&with_attempts(2, &cancelled())),
            Err(TaskError::Cancelled)
        );
        assert!(matches!(
            decode::<u8, ()>(b"Cx"),
            Err(TaskError::Transfer(_))
        ));
    }

    #[test]
    fn a_process_mode_workers_limits_and_losses_decode() {
        let limit = Duration::from_millis(300);
        assert_eq!(
            decode::<u8, ()>(&time_limit(limit)),
            Err(TaskError::TimeLimit(limit))
        );
        assert_eq!(
            decode::<u8, ()>(&memory_limit(256 << 20, 300 << 20)),
            Err(TaskError::MemoryLimit {
                limit: 256 << 20,
                used: 300 << 20
            })
        );
        for loss in [
            WorkerLoss::Exited(3),
            WorkerLoss::Signaled(9),
            WorkerLoss::Disconnected,
        ] {
            assert_eq!(
                decode::<u8, ()>(&process_lost(loss)),
                Err(TaskError::WorkerLost(loss))
            );
        }
        assert_eq!(
            decode::<u8, ()>(&with_attempts(1, &time_limit(limit))),
            Err(TaskError::TimeLimit(limit))
        );
    }

    #[test]
    fn attempts_wrap_any_outcome() {
        let inner = value(&postcard::to_stdvec(&5u8).unwrap());
        let wrapped = with_attempts(3, &inner);
        assert_eq!(split_attempts(&wrapped), (Some(3), &inner[..]));
        assert_eq!(decode::<u8, ()>(&wrapped), Ok(5));
        assert_eq!(split_attempts(&inner), (None, &inner[..]));
        assert_eq!(split_attempts(b"Ax:V"), (None, &b"Ax:V"[..]));
    }

    #[test]
    fn garbage_is_a_transfer_error_not_a_panic() {
        // `V\x05\x06`: a u64 and a byte left over, an outcome written for another type.
        for bytes in [
            &b""[..],
            b"V",
            b"P\xff",
            b"Lx",
            b"?",
            b"V\x05\x06",
            b"A",
            b"A2:",
            b"K",
            b"Kx",
            b"M1",
            b"M1 x",
            b"W",
            b"Wq1",
            b"Wd1",
            b"Wsx",
        ] {
            assert!(matches!(
                decode::<u64, ()>(bytes),
                Err(TaskError::Transfer(_))
            ));
        }
    }
}
