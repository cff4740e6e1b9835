//! Frames: header checks, then the body by kind.
//!
//! Decoding never panics, whatever the bytes (a property test feeds it
//! garbage): every length is checked before it is used, and postcard
//! reports malformed bodies as errors. Unlike the packet parsers, decoding
//! allocates: messages hold lists, and this is the control plane's slow
//! path.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Message, HEADER_LEN, MAGIC, MAX_FRAME_LEN, VERSION};

/// A message that cannot be framed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The encoded message is larger than a frame may be.
    #[error(
        "a {kind} message of {len} bytes is larger than the largest frame ({max} bytes); split it"
    )]
    TooLarge {
        /// The message kind.
        kind: u8,
        /// Its encoded size, header included.
        len: usize,
        /// [`MAX_FRAME_LEN`].
        max: usize,
    },
    /// postcard refused the body (not expected for these types).
    #[error("cannot encode a kind {kind} message: {reason}")]
    Body {
        /// The message kind.
        kind: u8,
        /// postcard's reason.
        reason: String,
    },
}

/// Bytes that are not a frame this build understands.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the frame needs; read more.
    #[error("incomplete frame: {needed} bytes needed, {have} available")]
    Incomplete {
        /// Bytes the whole frame needs.
        needed: usize,
        /// Bytes available.
        have: usize,
    },
    /// The length field announces a frame too large or too small.
    #[error("frame length {len} is outside 4..={max}; the peer is not speaking the vipa control protocol, or the stream lost its place")]
    BadLength {
        /// The announced length, header included.
        len: usize,
        /// [`MAX_FRAME_LEN`].
        max: usize,
    },
    /// Not the vipa control protocol.
    #[error("bad magic {found:02x?}, expected \"VP\": the peer is not speaking the vipa control protocol")]
    BadMagic {
        /// The two bytes found.
        found: [u8; 2],
    },
    /// Another version of the protocol.
    #[error("control protocol version {version} is not supported (this build speaks version {supported}); run the same vipa version on every routing node and target")]
    UnsupportedVersion {
        /// The peer's version.
        version: u8,
        /// [`VERSION`].
        supported: u8,
    },
    /// A kind byte this version does not define.
    #[error("unknown message kind {kind}")]
    UnknownKind {
        /// The kind byte.
        kind: u8,
    },
    /// The body does not decode as its kind.
    #[error("malformed kind {kind} message: {reason}")]
    Body {
        /// The kind byte.
        kind: u8,
        /// postcard's reason.
        reason: String,
    },
    /// The body decoded but bytes are left over.
    #[error("kind {kind} message has {extra} bytes after its end")]
    TrailingBytes {
        /// The kind byte.
        kind: u8,
        /// Bytes left.
        extra: usize,
    },
}

/// Appends `msg` as one frame to `out`. On error `out` is unchanged.
///
/// # Errors
///
/// [`EncodeError::TooLarge`] when the frame would exceed [`MAX_FRAME_LEN`].
pub fn encode(msg: &Message, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(msg.kind());
    let body = match msg {
        Message::Swim(data) => {
            // Opaque bytes: no length prefix, the frame length bounds them.
            out.extend_from_slice(data);
            Ok(())
        }
        Message::Status(m) => body(m, out),
        Message::Claim(m) => body(m, out),
        Message::Handover(m) => body(m, out),
        Message::Define(m) => body(m, out),
        Message::Report(m) => body(m, out),
        Message::ReportAck(m) => body(m, out),
        Message::Stale(m) => body(m, out),
        Message::Quiesce(m) => body(m, out),
        Message::Accepted(m) => body(m, out),
        Message::Hello(m) => body(m, out),
    };
    let len = out.len() - start;
    let result = match body {
        Err(reason) => Err(EncodeError::Body {
            kind: msg.kind(),
            reason,
        }),
        Ok(()) if len > MAX_FRAME_LEN => Err(EncodeError::TooLarge {
            kind: msg.kind(),
            len,
            max: MAX_FRAME_LEN,
        }),
        Ok(()) => {
            let after_length = (len - 4) as u32;
            out[start..start + 4].copy_from_slice(&after_length.to_be_bytes());
            return Ok(());
        }
    };
    out.truncate(start);
    result
}

fn body<T: Serialize>(value: &T, out: &mut Vec<u8>) -> Result<(), String> {
    // Into a buffer of its own: `out` may hold earlier frames that an
    // error must not lose.
    let bytes = postcard::to_stdvec(value).map_err(|e| e.to_string())?;
    out.extend_from_slice(&bytes);
    Ok(())
}

/// The size of the frame starting at `buf[0]`, once its four length bytes
/// are there: what a stream reader must buffer before [`decode`].
///
/// # Errors
///
/// [`DecodeError::BadLength`] for a length outside what a frame may be.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, DecodeError> {
    let Some(prefix) = buf.get(..4) else {
        return Ok(None);
    };
    let after = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
    let len = after.saturating_add(4);
    if !(HEADER_LEN..=MAX_FRAME_LEN).contains(&len) {
        return Err(DecodeError::BadLength {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    Ok(Some(len))
}

/// Decodes the frame at the start of `buf`; returns the message and the
/// bytes it took.
///
/// # Errors
///
/// [`DecodeError::Incomplete`] if `buf` holds less than the frame;
/// otherwise the first of: a bad length, a bad magic, another version, an
/// unknown kind, a malformed body.
pub fn decode(buf: &[u8]) -> Result<(Message, usize), DecodeError> {
    let Some(len) = frame_len(buf)? else {
        return Err(DecodeError::Incomplete {
            needed: HEADER_LEN,
            have: buf.len(),
        });
    };
    // Header fields are checked as soon as they are there, so that a peer
    // of another version is named even from a truncated frame.
    if let Some(magic) = buf.get(4..6) {
        if magic != MAGIC {
            return Err(DecodeError::BadMagic {
                found: [magic[0], magic[1]],
            });
        }
    }
    if let Some(&version) = buf.get(6) {
        if version != VERSION {
            return Err(DecodeError::UnsupportedVersion {
                version,
                supported: VERSION,
            });
        }
    }
    let Some(frame) = buf.get(..len) else {
        return Err(DecodeError::Incomplete {
            needed: len,
            have: buf.len(),
        });
    };
    let kind = frame[7];
    let b = &frame[HEADER_LEN..];
    let msg = match kind {
        1 => Message::Swim(b.to_vec()),
        2 => Message::Status(parse(kind, b)?),
        3 => Message::Claim(parse(kind, b)?),
        4 => Message::Handover(parse(kind, b)?),
        5 => Message::Define(parse(kind, b)?),
        6 => Message::Report(parse(kind, b)?),
        7 => Message::ReportAck(parse(kind, b)?),
        8 => Message::Stale(parse(kind, b)?),
        9 => Message::Quiesce(parse(kind, b)?),
        10 => Message::Accepted(parse(kind, b)?),
        11 => Message::Hello(parse(kind, b)?),
        _ => return Err(DecodeError::UnknownKind { kind }),
    };
    Ok((msg, len))
}

fn parse<T: DeserializeOwned>(kind: u8, body: &[u8]) -> Result<T, DecodeError> {
    let (value, rest) = postcard::take_from_bytes(body).map_err(|e| DecodeError::Body {
        kind,
        reason: e.to_string(),
    })?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes {
            kind,
            extra: rest.len(),
        });
    }
    Ok(value)
}
