//! The process pool's wire protocol: length-prefixed postcard frames on dedicated pipes.
//!
//! - `frame.rs`: framing, the size limit, a decoder that never panics;
//! - `message.rs`: the messages and the handshake;
//! - `README.md`: the design (why pipes of their own, the handshake, ordering, back-pressure).

mod frame;
mod message;
#[cfg(test)]
mod tests;

pub(crate) use self::frame::{encode_into, read_into, AppendTo, FrameError, DEFAULT_MAX_FRAME};
pub(crate) use self::message::{
    Bytes, Call, FromWorker, Hello, Outcome, ProgressReport, ToWorker, MAGIC, PROTOCOL_VERSION,
};

/// What to add to a postcard error about a task's argument or result: the likely cause, when it
/// is not the type's own (custom) error. See [`Payload`](crate::Payload) for the full list.
pub(crate) fn postcard_hint(error: &postcard::Error) -> &'static str {
    match error {
        postcard::Error::SerdeSerCustom | postcard::Error::SerdeDeCustom => "",
        _ => {
            " (likely cause: a serde attribute the compact format postcard cannot carry, such as \
             #[serde(untagged)], #[serde(flatten)], #[serde(tag = ...)], skip_serializing_if, or \
             a type using deserialize_any like serde_json::Value; these work on a thread pool \
             only, see futurepool::Payload)"
        }
    }
}

/// Decodes `data` as a stream of frames in both directions, discarding what it finds. The fuzz
/// target's entry point: it must return, never panic, whatever `data` is.
pub(crate) fn decode_everything(data: &[u8], max_frame: usize) {
    let mut stream = data;
    let mut body = Vec::new();
    while let Ok(true) = read_into(&mut stream, &mut body, max_frame) {
        let _ = postcard::from_bytes::<ToWorker<'_>>(&body);
        let _ = postcard::from_bytes::<FromWorker<'_>>(&body);
    }
}
