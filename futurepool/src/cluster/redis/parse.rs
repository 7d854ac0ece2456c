//! Turning Redis answers into the backend's types. Nothing here panics on an odd answer: it
//! becomes an error message or is skipped.

use std::collections::HashMap;
use std::time::Duration;

use redis::Value;

use super::super::backend::{Delivery, PoolConfig};
use super::super::status::{DeadLetter, Status, WorkerStatus};

/// A stream entry: its id and its fields.
pub(super) type Entry = (String, HashMap<String, Vec<u8>>);

pub(super) fn bytes(value: Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        _ => None,
    }
}

pub(super) fn text(value: Value) -> Option<String> {
    bytes(value).map(|b| String::from_utf8_lossy(&b).into_owned())
}

pub(super) fn number(value: Value) -> Option<u64> {
    match value {
        Value::Int(i) => u64::try_from(i).ok(),
        other => text(other)?.parse().ok(),
    }
}

pub(super) fn array(value: Value) -> Result<Vec<Value>, String> {
    match value {
        Value::Array(items) | Value::Set(items) => Ok(items),
        Value::Nil => Ok(Vec::new()),
        other => Err(format!("expected an array, got {other:?}")),
    }
}

/// The answer of `XREAD`/`XREADGROUP` on one stream: nil on time-out, else
/// `[[stream, [entry, ...]]]`.
pub(super) fn stream_entries(value: Value) -> Result<Vec<Entry>, String> {
    let mut streams = array(value)?;
    match streams.pop() {
        None => Ok(Vec::new()),
        Some(stream) => {
            let mut pair = array(stream)?;
            let entries = pair.pop().ok_or("a stream answer without entries")?;
            self::entries(entries)
        }
    }
}

/// A list of entries `[[id, [field, value, ...]], ...]`; entries deleted meanwhile (nil) are
/// skipped. Odd field lists become empty ones (the entry is then malformed, not the answer).
pub(super) fn entries(value: Value) -> Result<Vec<Entry>, String> {
    let mut out = Vec::new();
    for entry in array(value)? {
        let Ok(parts) = array(entry) else { continue };
        let mut parts = parts.into_iter();
        let (Some(id), Some(fields)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Some(id) = text(id) else { continue };
        let mut map = HashMap::new();
        let mut flat = array(fields).unwrap_or_default().into_iter();
        while let (Some(k), Some(v)) = (flat.next(), flat.next()) {
            if let (Some(k), Some(v)) = (text(k), bytes(v)) {
                map.insert(k, v);
            }
        }
        out.push((id, map));
    }
    Ok(out)
}

/// A queue entry as a delivery, or — for an entry that is not a task (written by something
/// else than a futurepool client) — its entry id and what is wrong with it, to dead-letter it.
pub(super) fn delivery((entry, mut fields): Entry) -> Result<Delivery, (String, String)> {
    let mut text = |name: &str| match fields.remove(name) {
        None => Err(format!("malformed entry: it has no `{name}` field")),
        Some(bytes) => String::from_utf8(bytes)
            .map_err(|_| format!("malformed entry: its `{name}` field is not UTF-8")),
    };
    let parsed = (|| {
        let task_id = text("id")?;
        let function = text("fn")?;
        let signature = match text("sig") {
            Ok(signature) => Some(signature),
            Err(why) if why.contains("no `sig`") => None,
            Err(why) => return Err(why),
        };
        Ok((task_id, function, signature))
    })();
    let (task_id, function, signature) = match parsed {
        Ok(parsed) => parsed,
        Err(why) => return Err((entry, why)),
    };
    let Some(arg) = fields.remove("arg") else {
        return Err((entry, "malformed entry: it has no `arg` field".to_string()));
    };
    // Optional job-queue fields: one that does not parse means "no retry", never a failure.
    let retry = fields
        .remove("retry")
        .and_then(|bytes| String::from_utf8(bytes).ok());
    let attempt = fields
        .remove("attempt")
        .and_then(|bytes| std::str::from_utf8(&bytes).ok()?.parse().ok())
        .unwrap_or(0);
    let limits = fields
        .remove("limits")
        .and_then(|bytes| String::from_utf8(bytes).ok());
    Ok(Delivery {
        entry,
        task_id,
        function,
        arg,
        signature,
        retry,
        attempt,
        limits,
        aborted: false,
    })
}

/// An `XPENDING stream group` summary: how many entries are pending, and how many per consumer.
pub(super) fn pending_summary(value: Value) -> Result<(u64, Vec<(String, u64)>), String> {
    let mut pending = array(value)?.into_iter();
    let total = pending.next().and_then(number).unwrap_or(0);
    let mut held = Vec::new();
    if let Some(per_consumer) = pending.nth(2) {
        for pair in array(per_consumer).unwrap_or_default() {
            let mut pair = array(pair)?.into_iter();
            if let (Some(name), Some(count)) = (pair.next().and_then(text), pair.next()) {
                held.push((name, number(count).unwrap_or(0)));
            }
        }
    }
    Ok((total, held))
}

/// The value in a `CONFIG GET name` answer (`[name, value]`, or a map under RESP3).
pub(super) fn config_number(answer: Vec<Value>) -> Option<u64> {
    number(answer.into_iter().nth(1)?)
}

/// The smallest stream id greater than `id` (`ms-seq` → `ms-(seq+1)`), for `XTRIM MINID`.
pub(super) fn next_stream_id(id: &str) -> String {
    match id.split_once('-') {
        Some((ms, seq)) => match seq.parse::<u64>() {
            Ok(seq) if seq < u64::MAX => format!("{ms}-{}", seq + 1),
            _ => format!("{}-0", ms.parse::<u64>().unwrap_or(0).saturating_add(1)),
        },
        None => "0-1".to_string(),
    }
}

fn hash(value: Value) -> Result<HashMap<String, Value>, String> {
    if let Value::Map(pairs) = value {
        return Ok(pairs
            .into_iter()
            .filter_map(|(k, v)| Some((text(k)?, v)))
            .collect());
    }
    let mut map = HashMap::new();
    let mut flat = array(value)?.into_iter();
    while let (Some(k), Some(v)) = (flat.next(), flat.next()) {
        if let Some(k) = text(k) {
            map.insert(k, v);
        }
    }
    Ok(map)
}

/// The status pipeline: TIME, XLEN queue, XPENDING summary, HGETALL workers, HGETALL
/// worker-info, XLEN dead, XREVRANGE dead, HGETALL stats.
pub(super) fn status(raw: Vec<Value>, config: PoolConfig) -> Result<Status, String> {
    let [time, queue_len, pending, workers, info, dead_len, dead, stats, scheduled]: [Value; 9] =
        raw.try_into()
            .map_err(|_| "the status pipeline returned the wrong number of answers")?;
    let mut time = array(time)?.into_iter();
    let now_ms = time.next().and_then(number).unwrap_or(0) * 1000
        + time.next().and_then(number).unwrap_or(0) / 1000;

    let mut pending = array(pending)?.into_iter();
    let in_flight = pending.next().and_then(number).unwrap_or(0);
    let mut held: HashMap<String, u64> = HashMap::new();
    if let Some(per_consumer) = pending.nth(2) {
        for pair in array(per_consumer)? {
            let mut pair = array(pair)?.into_iter();
            if let (Some(name), Some(count)) = (pair.next().and_then(text), pair.next()) {
                held.insert(name, number(count).unwrap_or(0));
            }
        }
    }

    let mut info = hash(info)?;
    let mut workers: Vec<WorkerStatus> = hash(workers)?
        .into_iter()
        .map(|(name, last)| {
            let last_ms = number(last).unwrap_or(0);
            WorkerStatus {
                description: info.remove(&name).and_then(text).unwrap_or_default(),
                last_heartbeat: Some(Duration::from_millis(now_ms.saturating_sub(last_ms))),
                in_flight: held.remove(&name).unwrap_or(0),
                name,
            }
        })
        .collect();
    // Consumers that hold tasks but never stamped a heartbeat (or were forgotten) still show.
    workers.extend(held.into_iter().map(|(name, in_flight)| WorkerStatus {
        name,
        description: String::new(),
        last_heartbeat: None,
        in_flight,
    }));
    workers.sort_by(|a, b| a.name.cmp(&b.name));

    let recent_dead = entries(dead)?
        .into_iter()
        .map(|(_, mut f)| {
            let mut field = |k: &str| {
                f.remove(k)
                    .map(|v| String::from_utf8_lossy(&v).into_owned())
                    .unwrap_or_default()
            };
            DeadLetter {
                task_id: field("id"),
                function: field("fn"),
                deliveries: field("deliveries").parse().unwrap_or(0),
                worker: field("worker"),
                reason: field("reason"),
            }
        })
        .collect();

    let stats = hash(stats)?;
    let counter = |k: &str| stats.get(k).cloned().and_then(number).unwrap_or(0);
    let queue_len = number(queue_len).unwrap_or(0);
    Ok(Status {
        queued: queue_len.saturating_sub(in_flight),
        in_flight,
        workers,
        dead_lettered: number(dead_len).unwrap_or(0),
        malformed: counter("malformed"),
        problems: Vec::new(),
        recent_dead,
        submitted: counter("submitted"),
        published: counter("published"),
        duplicates: counter("duplicates"),
        released: counter("released"),
        // A schedule key of another type answers with an error: nothing scheduled then.
        scheduled: number(scheduled).unwrap_or(0),
        // A gauge: parked chained tasks, counted up in SUBMIT and down as they are released.
        chained: counter("chained"),
        retried: counter("retried"),
        throttled: counter("throttled"),
        lease: config.lease,
        max_deliveries: config.max_deliveries,
        // Read apart, after (`RedisConnection::status`).
        progress: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stream_id_is_just_above() {
        assert_eq!(next_stream_id("1700-5"), "1700-6");
        assert_eq!(next_stream_id("0-0"), "0-1");
        assert_eq!(next_stream_id(&format!("9-{}", u64::MAX)), "10-0");
    }

    #[test]
    fn odd_answers_are_errors_not_panics() {
        assert!(stream_entries(Value::Int(3)).is_err());
        assert_eq!(stream_entries(Value::Nil).unwrap().len(), 0);
        let entry = Value::Array(vec![Value::BulkString(b"1-1".to_vec()), Value::Nil]);
        assert_eq!(entries(Value::Array(vec![entry])).unwrap().len(), 1);
        let odd = Value::Array(vec![Value::BulkString(b"1-2".to_vec()), Value::Int(7)]);
        assert_eq!(
            entries(Value::Array(vec![odd, Value::Int(1)]))
                .unwrap()
                .len(),
            1
        );
    }

    type Fields<'a> = &'a [(&'a str, &'a [u8])];

    fn entry(fields: Fields<'_>) -> Entry {
        let map = fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect();
        ("1-1".to_string(), map)
    }

    #[test]
    fn a_malformed_entry_says_what_is_wrong() {
        let cases: [(Fields<'_>, &str); 4] = [
            (&[("fn", b"f"), ("arg", b"")], "no `id`"),
            (&[("id", b"a"), ("arg", b"")], "no `fn`"),
            (
                &[("id", b"\xff"), ("fn", b"f"), ("arg", b"")],
                "`id` field is not UTF-8",
            ),
            (&[("id", b"a"), ("fn", b"f")], "no `arg`"),
        ];
        for (fields, want) in cases {
            let (entry_id, why) = delivery(entry(fields)).unwrap_err();
            assert_eq!(entry_id, "1-1");
            assert!(why.contains(want), "{why} should contain {want}");
        }
        let ok = delivery(entry(&[("id", b"a"), ("fn", b"f"), ("arg", b"x")])).unwrap();
        assert_eq!((ok.task_id.as_str(), ok.signature), ("a", None));
    }
}
