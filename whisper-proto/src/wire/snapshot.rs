//! G5 snapshot (`0x4736`): `len u32` (1..=cap) + `kind u8` + body\[len − 1\].

use super::{DecodeError, LEN_HEADER_LEN, magic};
use bytes::{BufMut, Bytes};

/// The snapshot message kind.
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
#[repr(u8)]
pub enum SnapshotKind {
    /// Ask for the manifest (0x10).
    ManifestRequest = 0x10,
    /// The manifest (0x11).
    Manifest = 0x11,
    /// Ask for shards (0x12).
    ShardRequest = 0x12,
    /// A shard (0x13).
    Shard = 0x13,
}

impl TryFrom<u8> for SnapshotKind {
    type Error = DecodeError;
    fn try_from(b: u8) -> Result<Self, DecodeError> {
        Ok(match b {
            0x10 => Self::ManifestRequest,
            0x11 => Self::Manifest,
            0x12 => Self::ShardRequest,
            0x13 => Self::Shard,
            other => return Err(DecodeError::SnapshotKind(other)),
        })
    }
}

/// A G5 snapshot frame.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Snapshot {
    /// The message kind.
    pub kind: SnapshotKind,
    /// The codec-defined body, zero-copy.
    pub body: Bytes,
}

impl Snapshot {
    /// INVARIANT: `frame` is a whole snapshot frame with len ≥ 1.
    pub(super) fn parse(frame: &Bytes) -> Result<Self, DecodeError> {
        Ok(Self {
            kind: SnapshotKind::try_from(frame[LEN_HEADER_LEN])?,
            body: frame.slice(LEN_HEADER_LEN + 1..),
        })
    }

    pub(super) fn emit<B: BufMut>(&self, buf: &mut B) {
        buf.put_u16(magic::SNAPSHOT);
        buf.put_u32(self.body.len() as u32 + 1);
        buf.put_u8(self.kind as u8);
        buf.put_slice(&self.body);
    }
}
