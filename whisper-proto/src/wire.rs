//! The wire: every frame of whisper, byte-compatible with the Go reference's framing.
//!
//! All integers are big-endian. Every frame starts with a 2-byte magic; the rest of its
//! size is known from a fixed layout or a length field, so a frame can be cut from a byte
//! stream before its body is looked at. The full layout table, caps and decisions are in
//! `docs/wire.md` at the repository root; the short version:
//!
//! | frame | magic | after the magic |
//! |---|---|---|
//! | G1 exchange | `0x4731` | `len u32` + body (len 0 = keepalive) |
//! | G2 digest probe | `0x4732` | `flags u16` + `fingerprint u64` |
//! | G2B bucket digest | `0x4742` | `flags u16` + `count u8` (0 = 256) + count × `u64` |
//! | G3 rumor | `0x4733` | `len u32` + `hop u8` + `fromDim u8` + payload\[len\] |
//! | G3-ACK | `0x4735` | `rumor_id [32]` |
//! | G4 reconcile | `0x4734` | `len u32` (1..=cap) + `flags u8` + body |
//! | G4 pull | `0x4734` | `topicLen u8` (1..=255) + topic + `since i64` + `maxResp u32` |
//! | G5 snapshot | `0x4736` | `len u32` (1..=cap) + `kind u8` + body |
//! | HELLO (whisper) | `0x4748` | `len u32` + version, capabilities, node id |
//! | custom | registered | `len u32` + body |
//!
//! **0x4734** carries both pull and reconcile: the byte after the magic is the first byte
//! of a reconcile length (always `0x00`, since the reconcile cap is below 16 MiB) or a
//! pull's `topicLen` (1..=255). An empty pull topic is invalid.
//!
//! # Two levels
//! [`Frame`] is the validated, owned representation; its byte-carrying fields are
//! [`Bytes`] slices of the input, so parsing copies no payload. [`FrameDecoder`] cuts
//! frames out of a byte stream delivered in arbitrary chunks.
//!
//! # Panics
//! Nothing in this module panics on any input. [`Frame::parse`] and [`FrameDecoder`]
//! return [`DecodeError`] for every malformed input; [`Frame::emit`] returns
//! [`EncodeError`] for a representation that has no valid encoding.
//!
//! # Caps
//! Every length read from the wire is checked against its cap in [`Limits`] **before**
//! anything is allocated or buffered. A violation is a [`DecodeError`]; the engine closes
//! that one connection. The stream is never left desynchronised: after an error the
//! decoder refuses all further input.

mod broadcast;
mod decoder;
mod digest;
mod g1;
mod hello;
mod pull;
mod reconcile;
mod record;
mod rumor;
mod snapshot;

pub mod codec;

pub use broadcast::{
    BroadcastError, Envelope, KIND_TOPIC_BROADCAST, KIND_TOPIC_RECORD, TopicBroadcast, TopicRecord,
};
pub use decoder::FrameDecoder;
pub use digest::{BucketDigest, Digest};
pub use g1::Exchange;
pub use hello::{Capabilities, Hello, PROTOCOL_VERSION};
pub use pull::Pull;
pub use reconcile::{Reconcile, ReconcileKind};
pub use record::{
    FLAG_TOMBSTONE, MAX_KEY_LEN, RECORD_OVERHEAD, RECORD_VERSION, Record, RecordError,
};
pub use rumor::{FROM_DIM_ORIGIN, Rumor, RumorAck};
pub use snapshot::{Snapshot, SnapshotKind};

use alloc::collections::BTreeMap;
use bytes::{BufMut, Bytes};

/// Frame magics (2 bytes, big-endian, at the start of every frame).
pub mod magic {
    /// G1 gossip exchange ("G1").
    pub const EXCHANGE: u16 = 0x4731;
    /// G2 digest probe ("G2").
    pub const DIGEST: u16 = 0x4732;
    /// G3 rumor push ("G3").
    pub const RUMOR: u16 = 0x4733;
    /// G4 pull request and G4 reconcile ("G4"; told apart by the next byte).
    pub const G4: u16 = 0x4734;
    /// G3 rumor acknowledgement.
    pub const RUMOR_ACK: u16 = 0x4735;
    /// G5 snapshot.
    pub const SNAPSHOT: u16 = 0x4736;
    /// G2B bucket digest ("GB").
    pub const BUCKET_DIGEST: u16 = 0x4742;
    /// whisper's connection preamble ("GH"); not part of the Go reference's set.
    pub const HELLO: u16 = 0x4748;

    /// Every built-in magic; none can be registered as a custom kind.
    pub const BUILTIN: [u16; 8] = [
        EXCHANGE,
        DIGEST,
        RUMOR,
        G4,
        RUMOR_ACK,
        SNAPSHOT,
        BUCKET_DIGEST,
        HELLO,
    ];
}

/// One mebibyte, the reference's default cap for most length-prefixed frames.
pub const MIB: u32 = 1 << 20;
/// The largest cap accepted for G4 reconcile frames, so that a reconcile length's first
/// byte is always `0x00` and never collides with a pull's `topicLen`.
pub const MAX_RECONCILE_CAP: u32 = 0x00FF_FFFF;
/// G1 header: magic + `len u32`.
pub const EXCHANGE_HEADER_LEN: usize = 6;
/// G2 frame size.
pub const DIGEST_LEN: usize = 12;
/// G3 header: magic + `len u32` + `hop u8` + `fromDim u8`.
pub const RUMOR_HEADER_LEN: usize = 8;
/// G3-ACK frame size.
pub const RUMOR_ACK_LEN: usize = 34;
/// Header of every `len u32`-prefixed frame other than G3: magic + `len u32`.
pub const LEN_HEADER_LEN: usize = 6;

/// Caps on every length read from the wire. Checked before allocation or buffering.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Limits {
    /// Largest G1 body (default 1 MiB).
    pub max_exchange: u32,
    /// Largest G3 payload accepted on read (default 1 MiB).
    pub max_rumor_read: u32,
    /// Largest G3 payload this node sends (default 256 KiB); bigger payloads go by G1.
    pub max_rumor_send: u32,
    /// Largest G4 reconcile length, flags byte included (default 1 MiB; at most
    /// [`MAX_RECONCILE_CAP`]).
    pub max_reconcile: u32,
    /// Largest G5 snapshot length, kind byte included (default 1 MiB).
    pub max_snapshot: u32,
    /// Largest HELLO body (default 1 KiB).
    pub max_hello: u32,
}

impl Limits {
    /// The reference's caps.
    pub const DEFAULT: Self = Self {
        max_exchange: MIB,
        max_rumor_read: MIB,
        max_rumor_send: 256 * 1024,
        max_reconcile: MIB,
        max_snapshot: MIB,
        max_hello: 1024,
    };

    /// The caps with the reconcile cap clamped to [`MAX_RECONCILE_CAP`].
    pub const fn sanitized(mut self) -> Self {
        if self.max_reconcile > MAX_RECONCILE_CAP {
            self.max_reconcile = MAX_RECONCILE_CAP;
        }
        self
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The frame kinds this node understands: caps plus registered custom kinds.
#[derive(Clone, Debug, Default)]
pub struct WireConfig {
    limits: Limits,
    custom: BTreeMap<u16, u32>,
}

impl WireConfig {
    /// The most custom kinds that can be registered.
    pub const MAX_CUSTOM_KINDS: usize = 64;

    /// Built-in frames only, with `limits` (the reconcile cap clamped, see
    /// [`Limits::sanitized`]).
    pub fn new(limits: Limits) -> Self {
        Self {
            limits: limits.sanitized(),
            custom: BTreeMap::new(),
        }
    }

    /// The caps in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Registers a custom frame kind: `magic` + `len u32` + body of at most `max_len`
    /// bytes. Built-in magics cannot be overridden.
    pub fn register_custom(&mut self, magic: u16, max_len: u32) -> Result<(), RegisterError> {
        if magic::BUILTIN.contains(&magic) {
            return Err(RegisterError::Builtin(magic));
        }
        if self.custom.contains_key(&magic) {
            return Err(RegisterError::Duplicate(magic));
        }
        if self.custom.len() >= Self::MAX_CUSTOM_KINDS {
            return Err(RegisterError::TooMany);
        }
        self.custom.insert(magic, max_len);
        Ok(())
    }

    /// The cap of a registered custom kind.
    pub fn custom_cap(&self, magic: u16) -> Option<u32> {
        self.custom.get(&magic).copied()
    }

    /// Given the first bytes of a frame, how long the whole frame is.
    ///
    /// Returns `Ok(None)` while more header bytes are needed. Every length is checked
    /// against its cap here, so a caller can allocate the returned size safely.
    pub fn frame_len(&self, head: &[u8]) -> Result<Option<usize>, DecodeError> {
        let Some(m) = read_u16(head, 0) else {
            return Ok(None);
        };
        let l = &self.limits;
        let total = match m {
            magic::DIGEST => DIGEST_LEN,
            magic::RUMOR_ACK => RUMOR_ACK_LEN,
            magic::BUCKET_DIGEST => match head.get(4) {
                None => return Ok(None),
                Some(&c) => 5 + 8 * digest::count_from_byte(c),
            },
            magic::EXCHANGE => match read_u32(head, 2) {
                None => return Ok(None),
                Some(len) => LEN_HEADER_LEN + checked(m, len, 0, l.max_exchange)?,
            },
            magic::RUMOR => match read_u32(head, 2) {
                None => return Ok(None),
                Some(len) => RUMOR_HEADER_LEN + checked(m, len, 0, l.max_rumor_read)?,
            },
            magic::G4 => match head.get(2) {
                None => return Ok(None),
                Some(0) => match read_u32(head, 2) {
                    None => return Ok(None),
                    Some(len) => LEN_HEADER_LEN + checked(m, len, 1, l.max_reconcile)?,
                },
                Some(&topic_len) => pull::frame_len(topic_len),
            },
            magic::SNAPSHOT => match read_u32(head, 2) {
                None => return Ok(None),
                Some(len) => LEN_HEADER_LEN + checked(m, len, 1, l.max_snapshot)?,
            },
            magic::HELLO => match read_u32(head, 2) {
                None => return Ok(None),
                Some(len) => LEN_HEADER_LEN + checked(m, len, hello::MIN_BODY, l.max_hello)?,
            },
            other => {
                let cap = self
                    .custom_cap(other)
                    .ok_or(DecodeError::UnknownMagic(other))?;
                match read_u32(head, 2) {
                    None => return Ok(None),
                    Some(len) => LEN_HEADER_LEN + checked(m, len, 0, cap)?,
                }
            }
        };
        Ok(Some(total))
    }
}

/// Checks `min <= len <= max`; the length as `usize` on success.
fn checked(magic: u16, len: u32, min: u32, max: u32) -> Result<usize, DecodeError> {
    if len > max {
        return Err(DecodeError::Oversized { magic, len, max });
    }
    if len < min {
        return Err(DecodeError::BadLength { magic, len });
    }
    Ok(len as usize)
}

pub(crate) fn read_u16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at + 2)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

pub(crate) fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

pub(crate) fn read_u64(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at + 8)?;
    let mut w = [0u8; 8];
    w.copy_from_slice(s);
    Some(u64::from_be_bytes(w))
}

/// A frame whose magic was registered as a custom kind: `magic` + `len u32` + body.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Custom {
    /// The registered magic.
    pub magic: u16,
    /// The body, zero-copy.
    pub body: Bytes,
}

/// One whole, validated frame.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum Frame {
    /// G2B bucket digest.
    BucketDigest(BucketDigest),
    /// A registered custom kind.
    Custom(Custom),
    /// G2 digest probe or reply.
    Digest(Digest),
    /// G1 exchange (an empty body is a keepalive).
    Exchange(Exchange),
    /// whisper's connection preamble.
    Hello(Hello),
    /// G4 pull request.
    Pull(Pull),
    /// G4 reconcile.
    Reconcile(Reconcile),
    /// G3 rumor.
    Rumor(Rumor),
    /// G3-ACK.
    RumorAck(RumorAck),
    /// G5 snapshot.
    Snapshot(Snapshot),
}

impl Frame {
    /// Parses exactly one whole frame; `frame` must hold nothing else.
    ///
    /// Byte fields of the result are zero-copy slices of `frame`.
    pub fn parse(frame: &Bytes, config: &WireConfig) -> Result<Self, DecodeError> {
        let total = config.frame_len(frame)?.ok_or(DecodeError::Truncated {
            needed: frame.len() + 1,
            got: frame.len(),
        })?;
        if frame.len() < total {
            return Err(DecodeError::Truncated {
                needed: total,
                got: frame.len(),
            });
        }
        if frame.len() > total {
            return Err(DecodeError::TrailingBytes {
                extra: frame.len() - total,
            });
        }
        Self::parse_sized(frame)
    }

    /// Parses a frame whose exact size `frame_len` has already confirmed.
    ///
    /// INVARIANT: `frame.len()` equals `WireConfig::frame_len(frame)`.
    pub(crate) fn parse_sized(frame: &Bytes) -> Result<Self, DecodeError> {
        let m = read_u16(frame, 0).unwrap_or_default();
        Ok(match m {
            magic::EXCHANGE => Self::Exchange(Exchange::parse(frame)),
            magic::DIGEST => Self::Digest(Digest::parse(frame)),
            magic::BUCKET_DIGEST => Self::BucketDigest(BucketDigest::parse(frame)),
            magic::RUMOR => Self::Rumor(Rumor::parse(frame)),
            magic::RUMOR_ACK => Self::RumorAck(RumorAck::parse(frame)),
            magic::G4 if frame[2] == 0 => Self::Reconcile(Reconcile::parse(frame)?),
            magic::G4 => Self::Pull(Pull::parse(frame)),
            magic::SNAPSHOT => Self::Snapshot(Snapshot::parse(frame)?),
            magic::HELLO => Self::Hello(Hello::parse(frame)?),
            other => Self::Custom(Custom {
                magic: other,
                body: frame.slice(LEN_HEADER_LEN..),
            }),
        })
    }

    /// The frame's magic.
    pub fn magic(&self) -> u16 {
        match self {
            Self::BucketDigest(_) => magic::BUCKET_DIGEST,
            Self::Custom(c) => c.magic,
            Self::Digest(_) => magic::DIGEST,
            Self::Exchange(_) => magic::EXCHANGE,
            Self::Hello(_) => magic::HELLO,
            Self::Pull(_) | Self::Reconcile(_) => magic::G4,
            Self::Rumor(_) => magic::RUMOR,
            Self::RumorAck(_) => magic::RUMOR_ACK,
            Self::Snapshot(_) => magic::SNAPSHOT,
        }
    }

    /// The encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        match self {
            Self::BucketDigest(f) => f.encoded_len(),
            Self::Custom(c) => LEN_HEADER_LEN + c.body.len(),
            Self::Digest(_) => DIGEST_LEN,
            Self::Exchange(f) => EXCHANGE_HEADER_LEN + f.body.len(),
            Self::Hello(f) => f.encoded_len(),
            Self::Pull(f) => pull::frame_len(f.topic.len().min(255) as u8),
            Self::Reconcile(f) => LEN_HEADER_LEN + 1 + f.body.len(),
            Self::Rumor(f) => RUMOR_HEADER_LEN + f.payload.len(),
            Self::RumorAck(_) => RUMOR_ACK_LEN,
            Self::Snapshot(f) => LEN_HEADER_LEN + 1 + f.body.len(),
        }
    }

    /// Writes the frame. Fails, writing nothing, when the representation has no valid
    /// encoding (a length beyond `u32`, an empty or long pull topic, a bucket count
    /// outside 1..=256, a custom frame with a built-in magic, …).
    pub fn emit<B: BufMut>(&self, buf: &mut B) -> Result<(), EncodeError> {
        self.validate()?;
        if buf.remaining_mut() < self.encoded_len() {
            return Err(EncodeError::BufferTooSmall);
        }
        match self {
            Self::BucketDigest(f) => f.emit(buf),
            Self::Custom(c) => {
                buf.put_u16(c.magic);
                buf.put_u32(c.body.len() as u32);
                buf.put_slice(&c.body);
            }
            Self::Digest(f) => f.emit(buf),
            Self::Exchange(f) => f.emit(buf),
            Self::Hello(f) => f.emit(buf),
            Self::Pull(f) => f.emit(buf),
            Self::Reconcile(f) => f.emit(buf),
            Self::Rumor(f) => f.emit(buf),
            Self::RumorAck(f) => f.emit(buf),
            Self::Snapshot(f) => f.emit(buf),
        }
        Ok(())
    }

    /// The frame as a fresh buffer.
    pub fn to_bytes(&self) -> Result<Bytes, EncodeError> {
        let mut out = bytes::BytesMut::with_capacity(self.encoded_len());
        self.emit(&mut out)?;
        Ok(out.freeze())
    }

    fn validate(&self) -> Result<(), EncodeError> {
        let fits_u32 = |n: usize, extra: usize| {
            n.checked_add(extra)
                .and_then(|t| u32::try_from(t).ok())
                .map(|_| ())
                .ok_or(EncodeError::TooLong)
        };
        match self {
            Self::BucketDigest(f) => {
                if f.digests.is_empty() || f.digests.len() > 256 {
                    return Err(EncodeError::BucketCount(f.digests.len()));
                }
            }
            Self::Custom(c) => {
                if magic::BUILTIN.contains(&c.magic) {
                    return Err(EncodeError::BuiltinMagic(c.magic));
                }
                fits_u32(c.body.len(), 0)?;
            }
            Self::Exchange(f) => fits_u32(f.body.len(), 0)?,
            Self::Hello(f) => f.validate()?,
            Self::Pull(f) => {
                if f.topic.is_empty() || f.topic.len() > 255 {
                    return Err(EncodeError::PullTopic(f.topic.len()));
                }
            }
            Self::Reconcile(f) => {
                if f.body.len() >= MAX_RECONCILE_CAP as usize {
                    return Err(EncodeError::TooLong);
                }
            }
            Self::Rumor(f) => fits_u32(f.payload.len(), 0)?,
            Self::Snapshot(f) => fits_u32(f.body.len(), 1)?,
            Self::Digest(_) | Self::RumorAck(_) => {}
        }
        Ok(())
    }
}

/// Why bytes from a peer are not a valid frame. Every variant closes the connection it
/// came from; nothing already applied is undone.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// A magic that is neither built in nor registered. Closes the connection.
    #[error("unknown frame magic {0:#06x}")]
    UnknownMagic(u16),
    /// A length above its cap. Detected before any body byte is buffered; closes the
    /// connection.
    #[error("frame {magic:#06x}: length {len} exceeds cap {max}")]
    Oversized {
        /// The frame's magic.
        magic: u16,
        /// The length read from the wire.
        len: u32,
        /// The cap in force.
        max: u32,
    },
    /// A length below the frame's minimum (a zero G4/G5 length, a HELLO too short).
    /// Closes the connection.
    #[error("frame {magic:#06x}: invalid length {len}")]
    BadLength {
        /// The frame's magic.
        magic: u16,
        /// The length read from the wire.
        len: u32,
    },
    /// Fewer bytes than the frame needs ([`Frame::parse`] only; the stream decoder waits
    /// instead). Does not affect engine state.
    #[error("truncated frame: need {needed} bytes, got {got}")]
    Truncated {
        /// Bytes the frame needs.
        needed: usize,
        /// Bytes present.
        got: usize,
    },
    /// Bytes after a whole frame ([`Frame::parse`] only). Does not affect engine state.
    #[error("{extra} bytes after the frame")]
    TrailingBytes {
        /// How many.
        extra: usize,
    },
    /// A G4 reconcile flags byte outside 0..=3. Closes the connection.
    #[error("unknown reconcile flags {0:#04x}")]
    ReconcileKind(u8),
    /// A G5 kind byte outside 0x10..=0x13. Closes the connection.
    #[error("unknown snapshot kind {0:#04x}")]
    SnapshotKind(u8),
    /// A HELLO whose fields do not fit its length, or whose node id is empty or too long.
    /// Closes the connection.
    #[error("malformed HELLO")]
    MalformedHello,
    /// The decoder already failed on this stream and accepts nothing more.
    #[error("stream already failed")]
    Poisoned,
}

/// Why a representation cannot be encoded. Nothing is written.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A body or payload longer than its length field can say.
    #[error("body too long for its length field")]
    TooLong,
    /// G2B needs 1..=256 digests.
    #[error("G2B needs 1..=256 digests, got {0}")]
    BucketCount(usize),
    /// A pull topic must be 1..=255 bytes.
    #[error("pull topic must be 1..=255 bytes, got {0}")]
    PullTopic(usize),
    /// A custom frame may not use a built-in magic.
    #[error("magic {0:#06x} is built in")]
    BuiltinMagic(u16),
    /// A HELLO node id must be 1..=64 bytes.
    #[error("HELLO node id must be 1..=64 bytes")]
    HelloNodeId,
    /// The output buffer cannot take the whole frame.
    #[error("output buffer too small")]
    BufferTooSmall,
}

/// Why a custom kind cannot be registered. The registry is unchanged.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// Built-in magics cannot be overridden.
    #[error("magic {0:#06x} is built in")]
    Builtin(u16),
    /// Already registered.
    #[error("magic {0:#06x} is already registered")]
    Duplicate(u16),
    /// [`WireConfig::MAX_CUSTOM_KINDS`] are registered already.
    #[error("too many custom frame kinds")]
    TooMany,
}

#[cfg(test)]
mod tests;
