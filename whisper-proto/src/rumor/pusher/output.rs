//! What the pusher hands back: [`PusherOutput`], its frames and events, errors and
//! counters.

use bytes::Bytes;

use crate::NodeId;
use crate::rumor::RumorId;
use crate::wire::{self, Rumor, RumorAck};

/// Why [`RumorPusher::publish`](super::RumorPusher::publish) refused a payload.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// This payload was already seen (published or received). Nothing is sent; the id
    /// becomes the most recent in the LRU.
    #[error("rumor {id} was already seen")]
    Duplicate {
        /// Its id.
        id: RumorId,
    },
    /// The admission check of
    /// [`RumorPusher::publish_if`](super::RumorPusher::publish_if) refused the frames
    /// the publish would send. Nothing changed: the rumor is not marked seen, nothing is
    /// sent or tracked.
    #[error("publish of {frames} rumor frames refused by admission")]
    Refused {
        /// The frames the publish would have sent.
        frames: usize,
    },
    /// The payload is above
    /// [`RumorConfig::max_payload`](super::RumorConfig::max_payload). Nothing changed;
    /// send it by G1 only.
    #[error("rumor payload of {len} bytes exceeds the push cap of {max}; send it by G1")]
    TooLarge {
        /// The payload's length.
        len: usize,
        /// The cap.
        max: u32,
    },
}

/// A frame the pusher wants sent.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum PushFrame {
    /// A G3-ACK.
    Ack(RumorAck),
    /// A G3 rumor.
    Rumor(Rumor),
}

impl From<PushFrame> for wire::Frame {
    fn from(frame: PushFrame) -> Self {
        match frame {
            PushFrame::Rumor(r) => Self::Rumor(r),
            PushFrame::Ack(a) => Self::RumorAck(a),
        }
    }
}

/// How a rumor frame's receiver was chosen.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum SendPath {
    /// An alternate member of the same half-block, sent at once because the cube target
    /// was unreachable or was the sender.
    Alternate,
    /// The exact hypercube tree.
    Cube,
    /// The random fallback.
    Fallback,
    /// A retry to a member already sent this frame (every member that can cover the
    /// block was tried; a leaf is resent in place), with a doubled timeout.
    Resend,
    /// A retry after an ACK timeout or a peer going down, to an alternate member of the
    /// half-block.
    Retry,
}

/// Why a tracked frame was given up on.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum DropReason {
    /// The pending-ACK table was full and this was its oldest entry.
    Evicted,
    /// No ACK came, and the retry budget was spent.
    RetriesExhausted,
    /// No ACK came, and nothing is left to retry: the frame came from the random
    /// fallback, or the peer was alone in its half-block and is no longer reachable.
    Unacknowledged,
    /// No reachable member was left for a half-block, and the random fallback sent
    /// nothing.
    Unreachable,
}

/// A notification about rumor traffic.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum RumorEvent {
    /// A G3-ACK matched a frame awaiting one.
    Acked {
        /// The rumor.
        id: RumorId,
        /// The peer that acknowledged.
        peer: NodeId,
    },
    /// A frame (or a half-block) was given up on; anti-entropy will repair it.
    Dropped {
        /// The rumor.
        id: RumorId,
        /// The peer last tried.
        peer: NodeId,
        /// Why.
        reason: DropReason,
    },
    /// A new rumor was accepted (duplicates are only counted, unlike the reference, §t
    /// item 13).
    Received {
        /// The rumor.
        id: RumorId,
        /// The peer it came from.
        from: NodeId,
        /// The hop it carried.
        hop: u8,
    },
    /// An unacknowledged frame was sent again to another member.
    Retry {
        /// The rumor.
        id: RumorId,
        /// The peer that did not acknowledge.
        failed: NodeId,
        /// The new receiver.
        to: NodeId,
        /// Retries so far for this frame, this one included.
        attempt: u8,
    },
    /// A rumor frame was queued for sending.
    Sent {
        /// The rumor.
        id: RumorId,
        /// Receiver.
        to: NodeId,
        /// The frame's hop.
        hop: u8,
        /// The frame's `fromDim`.
        from_dim: u8,
        /// How the receiver was chosen.
        path: SendPath,
    },
}

/// One output of the pusher, drained with
/// [`RumorPusher::poll_output`](super::RumorPusher::poll_output).
#[must_use]
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum PusherOutput {
    /// A rumor accepted for the first time: apply it. The origin gets none for its own.
    Deliver {
        /// The rumor.
        id: RumorId,
        /// Its payload.
        payload: Bytes,
        /// The peer it came from.
        from: NodeId,
        /// The hop it carried.
        hop: u8,
    },
    /// A notification.
    Event(RumorEvent),
    /// Send `frame` to `to`.
    Send {
        /// Receiver.
        to: NodeId,
        /// The frame.
        frame: PushFrame,
        /// True for a frame of a rumor this node publishes, sent by that
        /// [`publish`](super::RumorPusher::publish) call; false for relays, retries, resends
        /// and ACKs.
        origin: bool,
    },
}

/// Counters and sizes, a snapshot from [`RumorPusher::stats`](super::RumorPusher::stats).
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
#[non_exhaustive]
pub struct RumorStats {
    /// Rumors published by this node.
    pub published: u64,
    /// Publishes refused as too large.
    pub refused_too_large: u64,
    /// Rumor frames sent, all paths.
    pub sent: u64,
    /// Of those, down the exact cube tree.
    pub cube_sends: u64,
    /// Of those, to an alternate member at once (target unreachable or the sender).
    pub alternate_sends: u64,
    /// Of those, by the random fallback (including last-resort retries).
    pub fallback_sends: u64,
    /// Rumor frames received, duplicates included.
    pub received: u64,
    /// Received frames (and publishes) whose rumor was already seen.
    pub duplicates: u64,
    /// Rumors delivered (accepted for the first time from a peer).
    pub delivered: u64,
    /// Delivered rumors not forwarded because they exceed the push cap.
    pub not_forwarded: u64,
    /// G3-ACKs sent.
    pub acks_sent: u64,
    /// G3-ACKs that matched a frame awaiting one.
    pub acks_received: u64,
    /// G3-ACKs that matched nothing (late, duplicate or unknown).
    pub acks_unmatched: u64,
    /// ACK timeouts (and pending frames failed by a peer going down).
    pub ack_timeouts: u64,
    /// Frames resent after a failure.
    pub retries: u64,
    /// Frames or half-blocks given up on (every [`RumorEvent::Dropped`]).
    pub dropped: u64,
    /// Frames awaiting an ACK now.
    pub pending_acks: usize,
    /// Ids in the seen set now.
    pub seen: usize,
    /// Reachable peers now.
    pub peers: usize,
}
