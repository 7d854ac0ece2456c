//! Length-prefixed frames: `[u32 little-endian length][length bytes of postcard]`.
//!
//! The reader checks the length against a maximum *before* allocating, so garbage or a hostile
//! peer costs at most one maximum-size buffer, and every malformed input is an error value, never
//! a panic (fuzzed by `fuzz/fuzz_targets/frame_decoder.rs` and `wire::tests`).

use std::io::{self, Read};

use serde::Serialize;

/// Bytes in a frame's length prefix.
pub(crate) const HEADER_LEN: usize = 4;

/// The default largest frame body accepted or sent: 1 GiB, so a 256 MiB argument fits even when
/// postcard's varints inflate it.
pub(crate) const DEFAULT_MAX_FRAME: usize = 1 << 30;

/// Why a frame could not be written or read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FrameError {
    /// The pipe failed (for a reader, the peer may have died).
    #[error("pipe error: {0}")]
    Io(#[from] io::Error),
    /// The stream ended in the middle of a frame.
    #[error("the stream ended inside a frame")]
    Truncated,
    /// A frame announced, or a message needed, more than the maximum frame size.
    #[error("a frame of {len} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// The frame's length.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// The frame's body is not a valid message.
    #[error("malformed message: {0}")]
    Malformed(#[from] postcard::Error),
}

/// Appends one frame holding `message` to `out`. On error `out` is left as it was.
pub(crate) fn encode_into<M: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    message: &M,
    max: usize,
) -> Result<(), FrameError> {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    if let Err(error) = postcard::serialize_with_flavor(message, AppendTo(out)) {
        out.truncate(start);
        return Err(FrameError::Malformed(error));
    }
    let len = out.len() - start - HEADER_LEN;
    let Ok(len32) = u32::try_from(len) else {
        out.truncate(start);
        return Err(FrameError::TooLarge { len, max });
    };
    if len > max {
        out.truncate(start);
        return Err(FrameError::TooLarge { len, max });
    }
    out[start..start + HEADER_LEN].copy_from_slice(&len32.to_le_bytes());
    Ok(())
}

/// A postcard output that appends to a caller's buffer, so many frames can be batched into one
/// write without an intermediate allocation per message.
pub(crate) struct AppendTo<'a>(pub(crate) &'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for AppendTo<'_> {
    type Output = ();

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Reads the next frame's body into `body` (reusing its allocation).
///
/// Returns `Ok(false)` on a clean end of stream (before any byte of a frame), `Ok(true)` when
/// `body` holds a frame.
pub(crate) fn read_into(
    reader: &mut impl Read,
    body: &mut Vec<u8>,
    max: usize,
) -> Result<bool, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    let mut filled = 0;
    while filled < HEADER_LEN {
        match reader.read(&mut header[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(FrameError::Truncated),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let len = u32::from_le_bytes(header) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    body.clear();
    body.reserve(len.min(64 * 1024));
    // Grow as bytes arrive rather than trusting the header with one big allocation up front:
    // a lying header on a short stream then costs only what was actually sent.
    let got = reader.take(len as u64).read_to_end(body)?;
    if got < len {
        return Err(FrameError::Truncated);
    }
    Ok(true)
}
