//! G4 reconcile (`0x4734`): `len u32` (1..=cap) + `flags u8` + body\[len − 1\].

use super::{DecodeError, LEN_HEADER_LEN, magic};
use bytes::{BufMut, Bytes};

/// The reconcile message kind (the flags byte).
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
#[repr(u8)]
pub enum ReconcileKind {
    /// An IBLT table (0x00).
    Table = 0x00,
    /// A reply with decoded differences (0x01).
    Reply = 0x01,
    /// A request for records (0x02).
    Request = 0x02,
    /// The peer could not decode; fall back (0x03).
    DecodeFailed = 0x03,
}

impl TryFrom<u8> for ReconcileKind {
    type Error = DecodeError;
    fn try_from(b: u8) -> Result<Self, DecodeError> {
        Ok(match b {
            0x00 => Self::Table,
            0x01 => Self::Reply,
            0x02 => Self::Request,
            0x03 => Self::DecodeFailed,
            other => return Err(DecodeError::ReconcileKind(other)),
        })
    }
}

/// A G4 reconcile frame.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Reconcile {
    /// The message kind.
    pub kind: ReconcileKind,
    /// The codec-defined body, zero-copy.
    pub body: Bytes,
}

impl Reconcile {
    /// INVARIANT: `frame` is a whole reconcile frame with len ≥ 1.
    pub(super) fn parse(frame: &Bytes) -> Result<Self, DecodeError> {
        Ok(Self {
            kind: ReconcileKind::try_from(frame[LEN_HEADER_LEN])?,
            body: frame.slice(LEN_HEADER_LEN + 1..),
        })
    }

    pub(super) fn emit<B: BufMut>(&self, buf: &mut B) {
        buf.put_u16(magic::G4);
        buf.put_u32(self.body.len() as u32 + 1);
        buf.put_u8(self.kind as u8);
        buf.put_slice(&self.body);
    }
}
