//! Chunks answered item by item: how a map chunk under a time limit is timed per item, and what
//! happens to it when its worker dies part-way (issue 9, case 14).
//!
//! Without a time limit a chunk is one call and one answer (`RunChunk` / `ChunkDone`), the fast
//! path. With one, the writer sends `RunChunkEach` and the worker answers each item with its own
//! `ItemDone` frame, written before the next item starts. The reader keeps those frames in the
//! chunk's [`InFlight::answered`] and restarts the front deadline at each one, so the limit
//! counts one item. When the last item's frame arrives the chunk is finished from all of them.
//!
//! If the worker dies, the receipt rule decides first (`connection.rs`, `settle_exit`): a chunk
//! whose frame the worker never read is requeued whole, like any call it never received. One it
//! read and was running when it died (time limit, crash, kill) is settled here: the answered
//! items keep their outcomes, the item after them — the one running — fails with the worker's
//! error, and the items after that, which never started, go back to the queue as a smaller chunk
//! with the same sink: nothing is run twice and every item gets exactly one outcome.

use crate::error::TaskError;
use crate::wire::{FromWorker, Outcome};

use super::sink::Answer;
use super::state::{InFlight, Pending, Work};

/// How many items `work` holds.
pub(super) fn item_count(work: &Work) -> usize {
    match work {
        Work::One { .. } => 1,
        Work::Chunk { ends, .. } => ends.len(),
    }
}

/// Each stored item frame as its outcome; a frame that is not an `ItemDone` is that item's
/// protocol error (the rest are still used).
fn outcomes(frames: &[Vec<u8>]) -> Vec<Outcome<'_>> {
    frames
        .iter()
        .map(
            |frame| match postcard::from_bytes::<FromWorker<'_>>(frame) {
                Ok(FromWorker::ItemDone(outcome)) => outcome,
                _ => Outcome::Unserializable(
                    "protocol error: the worker's answer for this item is malformed".into(),
                ),
            },
        )
        .collect()
}

/// Finishes a chunk whose every item was answered.
pub(super) fn finish(entry: InFlight) {
    let outcomes = outcomes(&entry.answered);
    entry.sink.finish(Answer::Chunk(outcomes));
}

/// Settles a chunk sent item by item whose worker died while running it: the answered items
/// keep their outcomes, the running one fails with `running`. Returns the items that never
/// started, as an entry to requeue (already started, like any call a dead worker held), or
/// `None` when the running item was the last (then the chunk is finished here).
pub(super) fn settle_running(entry: InFlight, running: TaskError) -> Option<Pending> {
    let InFlight {
        work,
        mut sink,
        time_limit,
        soft_limit,
        memory_limit,
        answered,
        ..
    } = entry;
    let done = answered.len() + 1;
    sink.settle_prefix(&outcomes(&answered), running);
    match rest_of(work, done) {
        Some(work) => Some(Pending {
            work,
            sink,
            time_limit,
            soft_limit,
            memory_limit,
            started: true,
        }),
        None => {
            sink.finish(Answer::Chunk(Vec::new()));
            None
        }
    }
}

/// The items of a chunk after its first `skip`, if any are left.
fn rest_of(work: Work, skip: usize) -> Option<Work> {
    let Work::Chunk {
        function,
        args,
        ends,
    } = work
    else {
        return None;
    };
    if skip >= ends.len() {
        return None;
    }
    let from = ends[skip - 1];
    Some(Work::Chunk {
        function,
        args: args[from..].to_vec(),
        ends: ends[skip..].iter().map(|end| end - from).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rest_of_a_chunk_keeps_each_argument_whole() {
        let work = Work::Chunk {
            function: 3,
            args: b"aabbbcddd".to_vec(),
            ends: vec![2, 5, 6, 9],
        };
        let Some(Work::Chunk {
            function,
            args,
            ends,
        }) = rest_of(work, 2)
        else {
            panic!("two items are left");
        };
        assert_eq!(
            (function, &args[..], &ends[..]),
            (3, &b"cddd"[..], &[1, 4][..])
        );
        let work = Work::Chunk {
            function: 3,
            args: b"aa".to_vec(),
            ends: vec![2],
        };
        assert!(rest_of(work, 1).is_none());
    }
}
