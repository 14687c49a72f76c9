//! HELLO (`0x4748`, "GH"): whisper's connection preamble. Not part of the Go reference.
//!
//! ```text
//! 0x4748 | len u32 | version u8 | capabilities u32 | idLen u8 (1..=64) | nodeId[idLen] | reserved…
//! ```
//! Each side sends one HELLO as its first frame and accepts no other frame before the
//! peer's HELLO. Bytes after the node id (up to `len`) are reserved for later versions
//! and ignored, so a version-1 node reads a longer HELLO from a newer peer.

use super::{DecodeError, EncodeError, LEN_HEADER_LEN, magic};
use crate::node::NodeId;
use bytes::{BufMut, Bytes};

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u8 = 1;

/// Smallest HELLO body: version, capabilities, idLen and a one-byte id.
pub(super) const MIN_BODY: u32 = 7;

/// Optional behaviours a node supports; peers gate G3-ACK, G4 and G5 on them.
#[derive(Clone, Copy, Debug, Default, Eq, Hash, PartialEq)]
pub struct Capabilities(pub u32);

impl Capabilities {
    /// Sends and understands G3-ACK (`0x4735`).
    pub const RUMOR_ACK: Self = Self(1 << 0);
    /// Understands G4 reconcile.
    pub const RECONCILE: Self = Self(1 << 1);
    /// Understands G5 snapshot.
    pub const SNAPSHOT: Self = Self(1 << 2);
    /// Understands the topic extension of the G1 body.
    pub const TOPICS: Self = Self(1 << 3);
    /// Serves G4 pull requests.
    pub const PULL: Self = Self(1 << 4);
    /// Answers G2B bucket digests.
    pub const BUCKET_DIGEST: Self = Self(1 << 5);
    /// No optional behaviour.
    pub const NONE: Self = Self(0);
    /// Everything this crate version can do.
    pub const ALL: Self = Self(0b11_1111);

    /// True when every bit of `other` is set in `self`.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// The union.
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// The intersection: what two peers can both do.
    pub const fn intersection(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }
}

/// The HELLO frame.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Hello {
    /// The sender's protocol version.
    pub version: u8,
    /// The sender's capabilities.
    pub capabilities: Capabilities,
    /// The sender's node id.
    pub node_id: NodeId,
}

impl Hello {
    /// Encoded size.
    pub fn encoded_len(&self) -> usize {
        LEN_HEADER_LEN + 6 + self.node_id.as_bytes().len()
    }

    pub(super) fn validate(&self) -> Result<(), EncodeError> {
        let n = self.node_id.as_bytes().len();
        if n == 0 || n > NodeId::MAX_LEN {
            return Err(EncodeError::HelloNodeId);
        }
        Ok(())
    }

    /// INVARIANT: `frame` is a whole HELLO frame with `len >= MIN_BODY`.
    pub(super) fn parse(frame: &Bytes) -> Result<Self, DecodeError> {
        let body = &frame[LEN_HEADER_LEN..];
        let id_len = usize::from(body[5]);
        let id = frame
            .get(LEN_HEADER_LEN + 6..LEN_HEADER_LEN + 6 + id_len)
            .ok_or(DecodeError::MalformedHello)?;
        let node_id = NodeId::new(frame.slice_ref(id)).ok_or(DecodeError::MalformedHello)?;
        Ok(Self {
            version: body[0],
            capabilities: Capabilities(u32::from_be_bytes([body[1], body[2], body[3], body[4]])),
            node_id,
        })
    }

    pub(super) fn emit<B: BufMut>(&self, buf: &mut B) {
        let id = self.node_id.as_bytes();
        buf.put_u16(magic::HELLO);
        buf.put_u32(6 + id.len() as u32);
        buf.put_u8(self.version);
        buf.put_u32(self.capabilities.0);
        buf.put_u8(id.len() as u8);
        buf.put_slice(id);
    }
}
