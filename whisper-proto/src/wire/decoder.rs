//! The incremental, per-connection frame decoder.

use super::{DecodeError, Frame, WireConfig};
use bytes::{Buf, Bytes, BytesMut};

/// Cuts whole frames out of a byte stream that arrives in arbitrary chunks.
///
/// The decoder buffers at most one frame: it copies header bytes until the frame's size
/// is known and checked against its cap ([`WireConfig::frame_len`]), then exactly the
/// rest of that frame. Input past the current frame is left in the caller's slice, so
/// one byte at a time and many frames at once both work, and the buffer never holds more
/// than the largest cap plus a header.
///
/// After an error the decoder is poisoned and refuses all further input, so a stream is
/// never read out of alignment.
///
/// ```
/// use bytes::Bytes;
/// use whisper_proto::wire::{Digest, Frame, FrameDecoder, WireConfig};
///
/// let config = WireConfig::default();
/// let mut decoder = FrameDecoder::new();
/// let bytes = Frame::Digest(Digest { flags: 1, fingerprint: 7 }).to_bytes().unwrap();
/// let (a, b) = bytes.split_at(5);
/// let mut input: &[u8] = a;
/// assert_eq!(decoder.decode(&config, &mut input), Ok(None)); // needs more
/// let mut input: &[u8] = b;
/// let frame = decoder.decode(&config, &mut input).unwrap().unwrap();
/// assert_eq!(frame, Frame::Digest(Digest { flags: 1, fingerprint: 7 }));
/// ```
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: BytesMut,
    /// Size of the frame being assembled, once its header has been read and checked.
    want: Option<usize>,
    poisoned: bool,
}

impl FrameDecoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes of a partial frame held.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// When a partial frame is buffered: how many bytes the whole frame needs (0 while
    /// its header is incomplete) and how many are held. For reporting a stream that
    /// ended mid-frame.
    pub fn partial(&self) -> Option<(usize, usize)> {
        (!self.buf.is_empty()).then(|| (self.want.unwrap_or(0), self.buf.len()))
    }

    /// True after an error: the stream must be closed.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Consumes bytes from the front of `input` and returns the next whole frame, or
    /// `Ok(None)` once `input` is used up without completing one.
    ///
    /// Call again with the remaining `input` until it returns `Ok(None)`.
    pub fn decode(
        &mut self,
        config: &WireConfig,
        input: &mut &[u8],
    ) -> Result<Option<Frame>, DecodeError> {
        if self.poisoned {
            return Err(DecodeError::Poisoned);
        }
        loop {
            let target = match self.want {
                Some(n) => n,
                None => match self.header(config)? {
                    Some(n) => n,
                    None => {
                        // Need one more header byte.
                        let Some((&b, rest)) = input.split_first() else {
                            return Ok(None);
                        };
                        self.buf.extend_from_slice(&[b]);
                        *input = rest;
                        continue;
                    }
                },
            };
            let missing = target - self.buf.len();
            if missing > 0 {
                if input.is_empty() {
                    return Ok(None);
                }
                let take = missing.min(input.len());
                self.buf.extend_from_slice(&input[..take]);
                *input = &input[take..];
                if take < missing {
                    return Ok(None);
                }
            }
            let frame = self.buf.split().freeze();
            self.want = None;
            return Frame::parse_sized(&frame)
                .inspect_err(|_| self.poisoned = true)
                .map(Some);
        }
    }

    /// Like [`FrameDecoder::decode`] for input already in a [`Bytes`]: when nothing is
    /// buffered and the whole frame is in `input`, the frame is a zero-copy slice of it.
    pub fn decode_bytes(
        &mut self,
        config: &WireConfig,
        input: &mut Bytes,
    ) -> Result<Option<Frame>, DecodeError> {
        if self.poisoned {
            return Err(DecodeError::Poisoned);
        }
        if self.buf.is_empty() {
            match config.frame_len(input) {
                Ok(Some(n)) if n <= input.len() => {
                    let frame = if n == input.len() {
                        core::mem::take(input)
                    } else {
                        input.split_to(n)
                    };
                    return Frame::parse_sized(&frame)
                        .inspect_err(|_| self.poisoned = true)
                        .map(Some);
                }
                Ok(_) => {}
                Err(e) => {
                    self.poisoned = true;
                    return Err(e);
                }
            }
        }
        let mut slice: &[u8] = input;
        let before = slice.len();
        let out = self.decode(config, &mut slice);
        let used = before - slice.len();
        input.advance(used);
        out
    }

    /// Checks the buffered header; the whole frame size once known.
    fn header(&mut self, config: &WireConfig) -> Result<Option<usize>, DecodeError> {
        match config.frame_len(&self.buf) {
            Ok(Some(n)) => {
                self.buf.reserve(n - self.buf.len());
                self.want = Some(n);
                Ok(Some(n))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                self.poisoned = true;
                Err(e)
            }
        }
    }
}
