//! G3 rumor (`0x4733`) and G3-ACK (`0x4735`).

use super::{RUMOR_ACK_LEN, RUMOR_HEADER_LEN, magic};
use bytes::{BufMut, Bytes};

/// `fromDim` of a rumor sent by its origin: "all dimensions".
pub const FROM_DIM_ORIGIN: u8 = 0xFF;

/// G3: `len u32` + `hop u8` + `fromDim u8` + payload\[len\].
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct Rumor {
    /// Hops travelled so far (the origin sends 0 or 1 by convention of the caller).
    pub hop: u8,
    /// The hypercube dimension the rumor arrived on; [`FROM_DIM_ORIGIN`] from the origin.
    pub from_dim: u8,
    /// The rumor payload, zero-copy.
    pub payload: Bytes,
}

impl Rumor {
    /// INVARIANT: `frame` is a whole G3 frame whose length was checked by `frame_len`.
    pub(super) fn parse(frame: &Bytes) -> Self {
        Self {
            hop: frame[6],
            from_dim: frame[7],
            payload: frame.slice(RUMOR_HEADER_LEN..),
        }
    }

    pub(super) fn emit<B: BufMut>(&self, buf: &mut B) {
        buf.put_u16(magic::RUMOR);
        buf.put_u32(self.payload.len() as u32);
        buf.put_u8(self.hop);
        buf.put_u8(self.from_dim);
        buf.put_slice(&self.payload);
    }
}

/// G3-ACK: the 32-byte id of the acknowledged rumor (BLAKE3-256 of its payload).
#[derive(Clone, Copy, Debug, Default, Eq, Hash, PartialEq)]
pub struct RumorAck {
    /// The rumor id.
    pub rumor_id: [u8; 32],
}

impl RumorAck {
    /// INVARIANT: `frame` is exactly [`RUMOR_ACK_LEN`] bytes.
    pub(super) fn parse(frame: &[u8]) -> Self {
        let mut rumor_id = [0u8; 32];
        rumor_id.copy_from_slice(&frame[2..RUMOR_ACK_LEN]);
        Self { rumor_id }
    }

    pub(super) fn emit<B: BufMut>(&self, buf: &mut B) {
        buf.put_u16(magic::RUMOR_ACK);
        buf.put_slice(&self.rumor_id);
    }
}
