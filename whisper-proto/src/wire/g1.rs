//! G1 exchange: `0x4731` + `len u32` + body. A zero length is a keepalive (no reply).
//!
//! The body is opaque here; [`super::codec`] gives it meaning.

use super::{EXCHANGE_HEADER_LEN, magic};
use bytes::{BufMut, Bytes};

/// A G1 exchange frame. The body is codec-defined; empty means keepalive.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct Exchange {
    /// The encoded exchange body, zero-copy.
    pub body: Bytes,
}

impl Exchange {
    /// The keepalive frame: `47 31 00 00 00 00`.
    pub const fn keepalive() -> Self {
        Self { body: Bytes::new() }
    }

    /// True for a keepalive (len 0).
    pub fn is_keepalive(&self) -> bool {
        self.body.is_empty()
    }

    /// INVARIANT: `frame` is a whole G1 frame whose length was checked by `frame_len`.
    pub(super) fn parse(frame: &Bytes) -> Self {
        Self {
            body: frame.slice(EXCHANGE_HEADER_LEN..),
        }
    }

    pub(super) fn emit<B: BufMut>(&self, buf: &mut B) {
        buf.put_u16(magic::EXCHANGE);
        buf.put_u32(self.body.len() as u32);
        buf.put_slice(&self.body);
    }
}
