//! The messages exchanged between a process pool and its workers. See `README.md` for the
//! conversation they make up.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// First bytes of every handshake, so a stray process on the pipe is recognised at once.
pub(crate) const MAGIC: [u8; 8] = *b"futurepl";

/// Bumped on any change to these messages. 5: `Progress` names the chunk item it comes from.
/// 4: `Progress` (a running call's report). 3:
/// `Accepted` (the handshake's first answer) and `RunChunkEach` / `ItemDone` (chunks answered
/// item by item); 2 was used by builds that had only one of the two, so it is skipped.
pub(crate) const PROTOCOL_VERSION: u32 = 5;

/// The first byte of a [`FromWorker::Progress`] frame's body: its variant index, which postcard
/// writes as a one-byte varint. The pool's reader tells progress from answers by it without
/// decoding the answers twice.
const PROGRESS_TAG: u8 = 6;

/// An already-serialized value, carried as raw bytes (postcard `bytes`: a length, then the bytes)
/// and borrowed from the frame buffer when decoded, so a payload is never copied twice.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bytes<'a>(pub(crate) &'a [u8]);

impl fmt::Debug for Bytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes>", self.0.len())
    }
}

impl Serialize for Bytes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Bytes<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BorrowedBytes;
        impl<'de> Visitor<'de> for BorrowedBytes {
            type Value = Bytes<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("borrowed bytes")
            }
            fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<Self::Value, E> {
                Ok(Bytes(v))
            }
        }
        deserializer.deserialize_bytes(BorrowedBytes)
    }
}

/// One call of a registered function: its index in the (identical) registry of both processes,
/// and the serialized argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Call<'a> {
    pub(crate) function: u32,
    #[serde(borrow)]
    pub(crate) arg: Bytes<'a>,
}

/// The pool's half of the handshake, its first frame to a new worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Hello<'a> {
    pub(crate) magic: [u8; 8],
    pub(crate) protocol: u32,
    /// [`registry::build_id`](crate::registry::build_id) of the pool's binary.
    pub(crate) build_id: u64,
    /// Run once before the first task; its failure breaks the pool.
    #[serde(borrow)]
    pub(crate) initializer: Option<Call<'a>>,
    /// The worker exits after this many tasks (a chunk counts as one).
    pub(crate) max_tasks: Option<u64>,
    /// The largest frame either side sends or accepts.
    pub(crate) max_frame: u64,
}

/// Pool → worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ToWorker<'a> {
    /// The handshake; always the first frame.
    #[serde(borrow)]
    Hello(Hello<'a>),
    /// Run one call; answered by [`FromWorker::Done`].
    Run(Call<'a>),
    /// Run one function over several arguments, in order; answered by [`FromWorker::ChunkDone`].
    RunChunk {
        function: u32,
        #[serde(borrow)]
        args: Vec<Bytes<'a>>,
    },
    /// As `RunChunk`, but answered item by item: one [`FromWorker::ItemDone`] per argument,
    /// each written before the next item starts. Used when a time limit applies, so the limit
    /// is timed per item and a worker killed part-way has said which items it finished.
    RunChunkEach {
        function: u32,
        #[serde(borrow)]
        args: Vec<Bytes<'a>>,
    },
}

/// How one call ended in the worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Outcome<'a> {
    /// The function returned; these are the postcard bytes of its return value.
    #[serde(borrow)]
    Returned(Bytes<'a>),
    /// The function panicked.
    Panicked {
        message: String,
        location: Option<String>,
    },
    /// The argument bytes did not decode in the worker.
    BadArgument(String),
    /// The return value did not serialize in the worker.
    Unserializable(String),
    /// The worker has no function with this index or name.
    UnknownFunction(String),
}

/// Worker → pool. Answers to `Run`/`RunChunk`/`RunChunkEach` come back in the order the calls
/// were sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum FromWorker<'a> {
    /// Handshake accepted; with how the initializer (if any) ended. The pool judges that outcome
    /// (a fallible initializer's `Err` is returned bytes) and either sends work or closes the pipe.
    Ready {
        pid: u32,
        #[serde(borrow)]
        initializer: Option<Outcome<'a>>,
    },
    /// The handshake was refused (wrong magic, protocol or build); the worker exits.
    Refused { reason: String },
    /// The answer to one `Run`.
    Done(Outcome<'a>),
    /// The answers to one `RunChunk`, one per argument, in order.
    ChunkDone(Vec<Outcome<'a>>),
    /// The handshake was accepted and the initializer (if any) starts now; `Ready` follows. It
    /// lets the pool say, when a worker misses its start timeout, whether the initializer was
    /// slow or the program never reached `init()`.
    Accepted,
    /// The answer to one item of a `RunChunkEach`; the items' answers come in order, and the
    /// last one completes the chunk.
    ItemDone(Outcome<'a>),
    /// `report_progress(done, total)` in the call running now, already rate-limited in the
    /// worker. Not an answer: it does not move the worker's queue on, and any number of them
    /// (none included) may come before the call's `Done`, or before each item's answer of a
    /// chunk.
    Progress(ProgressReport),
}

/// One `report_progress(done, total)` of the running call, as a [`FromWorker::Progress`] frame
/// carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ProgressReport {
    /// For a `RunChunk` / `RunChunkEach`, which item reported: its index among the frame's
    /// arguments (the items before it have finished, since a worker runs them in order). `None`
    /// for a `Run`.
    pub(crate) item: Option<u32>,
    pub(crate) done: u64,
    pub(crate) total: u64,
}

impl ProgressReport {
    /// The most bytes a frame of one report takes, header included: 4 of length, 1 of variant
    /// tag, at most 1 + 5 for the item and 10 for each `u64` varint. Far below `PIPE_BUF`
    /// (4096 on Linux, 512 by POSIX), so a worker writes one in a single `write` that lands
    /// whole or not at all.
    pub(crate) const MAX_FRAME: usize = 4 + 1 + 6 + 10 + 10;
}

// The single-write guarantee rests on this: POSIX's smallest `PIPE_BUF`.
const _: () = assert!(ProgressReport::MAX_FRAME <= 512);

impl FromWorker<'_> {
    /// The report if `body` is a [`FromWorker::Progress`] frame, `None` for any other message
    /// (or a malformed progress frame, which the caller then takes for an answer and rejects as
    /// malformed).
    pub(crate) fn progress_in(body: &[u8]) -> Option<ProgressReport> {
        if body.first() != Some(&PROGRESS_TAG) {
            return None;
        }
        match postcard::from_bytes::<FromWorker<'_>>(body) {
            Ok(FromWorker::Progress(report)) => Some(report),
            _ => None,
        }
    }
}
