//! G4 pull request (`0x4734`): `topicLen u8` (1..=255) + topic + `since i64` + `maxResp u32`.
//!
//! Shares its magic with G4 reconcile; see the module docs of [`super`] for how the two
//! are told apart.

use super::{magic, read_u32, read_u64};
use bytes::{BufMut, Bytes};

/// A pull request for records of `topic` changed since `since`.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct Pull {
    /// The topic, 1..=255 bytes (an empty topic has no encoding).
    pub topic: Bytes,
    /// Unix nanoseconds; 0 asks for everything.
    pub since: i64,
    /// Largest response wanted, in bytes; 0 means the default of 1 MiB.
    pub max_resp: u32,
}

impl Pull {
    /// The response cap a `max_resp` of 0 stands for.
    pub const DEFAULT_MAX_RESP: u32 = super::MIB;

    /// The effective response cap.
    pub fn effective_max_resp(&self) -> u32 {
        if self.max_resp == 0 {
            Self::DEFAULT_MAX_RESP
        } else {
            self.max_resp
        }
    }

    /// INVARIANT: `frame` is a whole pull frame (`15 + topicLen` bytes, topicLen ≥ 1).
    pub(super) fn parse(frame: &Bytes) -> Self {
        let tl = usize::from(frame[2]);
        let at = 3 + tl;
        Self {
            topic: frame.slice(3..at),
            since: read_u64(frame, at).unwrap_or_default() as i64,
            max_resp: read_u32(frame, at + 8).unwrap_or_default(),
        }
    }

    pub(super) fn emit<B: BufMut>(&self, buf: &mut B) {
        buf.put_u16(magic::G4);
        buf.put_u8(self.topic.len() as u8);
        buf.put_slice(&self.topic);
        buf.put_i64(self.since);
        buf.put_u32(self.max_resp);
    }
}

/// Whole frame size for a topic of `topic_len` bytes.
pub(super) fn frame_len(topic_len: u8) -> usize {
    15 + usize::from(topic_len)
}
