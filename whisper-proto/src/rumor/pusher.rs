//! [`RumorPusher`]: G3 rumor push over the hypercube, with ACKs, retries over an
//! alternate path, and a random fallback.
//!
//! # What it does
//!
//! A rumor is a payload pushed to every member right away, ahead of the next G1 exchange.
//! The pusher is sans-IO. Peers are [`NodeId`]s. Inputs are method calls that carry
//! `now`. Outputs queue inside and are drained with
//! [`poll_output`](RumorPusher::poll_output): frames to send ([`PusherOutput::Send`]),
//! rumors to apply ([`PusherOutput::Deliver`]) and notifications
//! ([`PusherOutput::Event`]). The only timer is [`next_deadline`](RumorPusher::next_deadline).
//! Randomness comes only from the pusher's own [`Rng`], seeded at construction.
//!
//! # Identity and dedup
//!
//! A rumor's id is BLAKE3-256 of its payload ([`rumor_id`]). One function serves the
//! origin, every receiver and the G3-ACK. The origin marks its own rumor seen in the same
//! [`RumorTracker`] (an O(1) LRU), so it recognises the rumor if it comes back, and every
//! ACK carries the id the sender is waiting for. The reference uses FNV-1a hex at the
//! origin and `"rh:" + hex(prefix)` at receivers. Its ACKs never match and an origin
//! re-accepts its own rumor (reference §t items 6, 7 and 8).
//!
//! # Routing: the exact hypercube tree
//!
//! When self has a place in the cube (a full member, or an ephemeral one with a host),
//! every send follows [`HypercubeExt::forward_targets`]. The origin hands each non-empty
//! half-block of the cube to one member, in frames tagged with the block level
//! (`fromDim`). A receiver covers exactly the block it was handed and splits it along the
//! *lower* dimensions. A fault-free broadcast therefore reaches every member exactly once,
//! with `N − 1` frames and at most `ceil(log2 N)` hops (see the
//! [hypercube docs](crate::hypercube)). No probability or hop limit applies on this
//! path. The reference thins cube forwarding with `P/(1+hop)` and `MaxHops`, so it loses
//! members even without faults (§t item 12).
//!
//! A receiver forwards only a rumor it has not seen, and never back to its sender. If a
//! target is the sender, or is not [reachable](RumorPusher::peer_up) (no connection), the
//! same frame goes at once to an *alternate*: another member of the same half-block (see
//! below). Any member of a half-block can cover it, so the tree stays exact.
//!
//! # ACKs and retries over an alternate path
//!
//! Every receipt is acknowledged, duplicates included, with a G3-ACK to the sender. The
//! ACK goes only to peers that advertised ACK support (`peer_acks` in
//! [`handle_rumor`](RumorPusher::handle_rumor)). The reference ACKs only the first
//! receipt, so a lost ACK can never be recovered (§t item 9). It also ACKs peers that
//! never asked, and that breaks their stream (§t item 11).
//!
//! A frame to a peer that advertised ACK support is tracked until its ACK arrives, for up
//! to the peer's ACK timeout: [`RumorConfig::ack_timeout`] until one of its ACKs was
//! timed, then `SRTT + 4·RTTVAR` of its ACK round trips (RFC 6298, Karn's rule) kept
//! between [`RumorConfig::min_ack_timeout`] and `ack_timeout`. A frame to a peer without ACK support is never waited
//! on. When the timeout passes, or the peer goes [down](RumorPusher::peer_down) first:
//!
//! 1. The loss is recorded on the edge's dimension
//!    ([`HypercubeExt::record_loss`]; an ACK records a success). The weights steer the
//!    random fallback.
//! 2. If [`RumorConfig::ack_retries`] retries of this frame were already made, the frame
//!    is [dropped](RumorEvent::Dropped) and left to anti-entropy (G1, G4).
//! 3. Otherwise the *same frame* (same `hop`, same `fromDim`) goes to the next live member
//!    of the half-block the failed peer was to cover, one not yet tried. That is the next
//!    [`HypercubeExt::alternates`] entry (the primary takeover first, then dual-cube
//!    neighbours, then block members), and then any reachable member of the block. The
//!    takeover covers the rest of the block exactly once. With one failed node, every
//!    live member still receives exactly once, for exactly one retry when the failed
//!    node's block had other members and none when it had not. The reference retries the
//!    same peer and only relabels `fromDim` and bumps `hop` (§t item 10).
//! 4. If every member that can cover the block was already sent this frame, it goes
//!    again to the next of them after the failed one, still reachable: the same peer
//!    when it is alone in its block (every leaf of the tree is). Under frame loss the
//!    frame or its ACK was lost, so a resend completes delivery; a connected peer that
//!    never ACKs costs the budget in extra frames.
//! 5. If no member of the block is reachable any more but the block had others, a
//!    random fallback is the last resort (below); if it had none, the frame is dropped.
//!
//! A retry answered by a member that already has the rumor is still ACKed, because
//! duplicates are ACKed. So a lost ACK costs one duplicate frame and no second delivery.
//!
//! # Random fallback
//!
//! The fallback is used only when self has no place in the cube (membership not yet
//! known, or self missing from it), or as the last resort above. It sends to
//! `adaptive_fanout(C, fanout)` reachable peers, where `C` is the number of candidates and
//! [`adaptive_fanout`] is `floor(log2 C)` raised to [`RumorConfig::fanout`] and capped at
//! `C`. Peers are drawn with weights from [`HypercubeExt::fallback_targets`]. Frames are
//! tagged `fromDim = 0xFF`, so a receiver with a cube covers the whole cube from there.
//! The origin always sends. A relay whose frame would carry hop `h + 1` sends only when
//! `h < max_hops` and a uniform draw is below `forward_probability / (1 + h)`. This is the
//! reference's `ShouldForward`, confined to this path. Fallback frames are tracked for
//! ACKs and weights but never retried.
//!
//! # Bounds
//!
//! - The seen set holds at most [`RumorConfig::lru_capacity`] ids.
//! - The pending-ACK table holds at most [`RumorConfig::max_pending_acks`] frames. When it
//!   is full, the oldest entry is dropped with [`DropReason::Evicted`] to make room.
//!   Payloads are shared [`Bytes`], so distinct payloads held are bounded by the same count.
//! - The peer table holds one entry per peer reported up and not yet down. The engine
//!   bounds connections.
//! - The output queue grows only by what one call produces: per frame sent, one `Send`
//!   and one `Sent` event, plus an ACK, a `Deliver` and a `Received` per receipt. The
//!   driver drains it after every call.
//! - Payloads above [`RumorConfig::max_payload`] (default 256 KiB,
//!   `Limits::max_rumor_send`) are refused with [`PushError::TooLarge`]; they go by G1
//!   only. A received rumor above that cap is delivered but not forwarded.
//!
//! Nothing here panics on any input.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::vec::Vec;
use core::num::NonZeroU32;

use bytes::Bytes;

use super::{DEFAULT_CAPACITY, RumorId, RumorTracker, rumor_id};
use crate::NodeId;
use crate::hypercube::{self, HypercubeError, HypercubeExt, MemberInfo, ORIGIN, Target};
use crate::rng::{RandomSource, Rng};
use crate::time::{Duration, Instant};
use crate::wire::{self, Limits, Rumor, RumorAck};

/// Default ACK timeout (the reference's `EnableACKs` default).
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(3);

/// Default floor of the adaptive ACK timeout ([`RumorConfig::min_ack_timeout`]): RFC
/// 6298's minimum RTO. A spurious timeout is not free: the retry goes to the block's
/// takeover, which covers the whole block again (its members get duplicates), so the
/// floor stays well above a stalled but live peer's delay. Lower it on lossy datagram
/// transports with steady round trips.
pub const DEFAULT_MIN_ACK_TIMEOUT: Duration = Duration::from_secs(1);

/// Default retry budget per frame. The reference's `EnableACKs` uses 3; with 5 a frame
/// is lost only if six copies are (at 5 % frame loss, 1.6 in 10⁸ instead of 6 in 10⁶).
pub const DEFAULT_ACK_RETRIES: u8 = 5;

/// Default bound of the pending-ACK table.
pub const DEFAULT_MAX_PENDING_ACKS: NonZeroU32 = NonZeroU32::new(4096).unwrap();

/// Rumor push settings.
///
/// The reference's `RumorConfig` has `{MaxHops, Fanout, ForwardProbability, Enabled}`.
/// Its zero value disables forwarding and `Enabled` is never read (§t item 15). Here
/// [`Default`] is [`service_mesh`](Self::service_mesh), and whether rumors are pushed at
/// all is the engine's choice.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RumorConfig {
    /// Random fallback only: the most hops a fallback frame may carry. The origin always
    /// sends. A relay forwards a fallback frame it received with hop `h` only if
    /// `h < max_hops`. Cube routing ignores it.
    pub max_hops: u8,
    /// Random fallback only: the base fan-out, raised to `floor(log2 C)` for `C`
    /// candidates (see [`adaptive_fanout`]).
    pub fanout: u8,
    /// Random fallback only: a relay forwards with probability
    /// `forward_probability / (1 + hop)`. Values outside `[0, 1]` act as the nearest
    /// bound; NaN never forwards.
    pub forward_probability: f64,
    /// How long to wait for a G3-ACK before retrying, at most. Zero means the default,
    /// 3 s. It is the timeout towards a peer until one of its ACKs was timed.
    pub ack_timeout: Duration,
    /// The floor of the adaptive ACK timeout. Towards a peer whose ACKs were timed, the
    /// timeout is `SRTT + 4·RTTVAR` of its ACK round trips (RFC 6298, sampled only from
    /// frames sent to it once: Karn's rule), between this floor and
    /// [`ack_timeout`](Self::ack_timeout); towards a peer not yet timed, twice that
    /// estimate pooled over all peers, until the first ACK at all. A frame sent again to the same peer waits
    /// twice as long each time, up to `ack_timeout`. A floor at or above `ack_timeout`
    /// turns adaptation off.
    pub min_ack_timeout: Duration,
    /// Retries per unacknowledged frame (0: none).
    pub ack_retries: u8,
    /// Capacity of the seen-rumor LRU (clamped to [`super::MAX_CAPACITY`]).
    pub lru_capacity: NonZeroU32,
    /// Most frames awaiting an ACK at once.
    pub max_pending_acks: NonZeroU32,
    /// Largest payload pushed by G3 (`Limits::max_rumor_send`, default 256 KiB).
    pub max_payload: u32,
}

impl RumorConfig {
    /// The reference's `ServiceMeshRumorConfig` (`{3, 3, 1.0}`), for small meshes, with
    /// the default ACK settings (adaptive timeout from 1 s to 3 s, 5 retries) and a
    /// 4096-entry LRU.
    pub const fn service_mesh() -> Self {
        Self {
            max_hops: 3,
            fanout: 3,
            forward_probability: 1.0,
            ack_timeout: DEFAULT_ACK_TIMEOUT,
            min_ack_timeout: DEFAULT_MIN_ACK_TIMEOUT,
            ack_retries: DEFAULT_ACK_RETRIES,
            lru_capacity: DEFAULT_CAPACITY,
            max_pending_acks: DEFAULT_MAX_PENDING_ACKS,
            max_payload: Limits::DEFAULT.max_rumor_send,
        }
    }

    /// The reference's `AgentMeshRumorConfig` (`{4, 3, 0.6}`), for meshes of hundreds of
    /// devices, with the same ACK and LRU defaults.
    pub const fn agent_mesh() -> Self {
        Self {
            max_hops: 4,
            forward_probability: 0.6,
            ..Self::service_mesh()
        }
    }

    /// The ACK timeout actually used: [`ack_timeout`](Self::ack_timeout), or 3 s when
    /// it is zero.
    pub fn effective_ack_timeout(&self) -> Duration {
        if self.ack_timeout.is_zero() {
            DEFAULT_ACK_TIMEOUT
        } else {
            self.ack_timeout
        }
    }
}

impl Default for RumorConfig {
    /// [`RumorConfig::service_mesh`].
    fn default() -> Self {
        Self::service_mesh()
    }
}

/// Why [`RumorPusher::publish`] refused a payload.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// The payload is above [`RumorConfig::max_payload`]. Nothing changed; send it by G1
    /// only.
    #[error("rumor payload of {len} bytes exceeds the push cap of {max}; send it by G1")]
    TooLarge {
        /// The payload's length.
        len: usize,
        /// The cap.
        max: u32,
    },
    /// This payload was already seen (published or received). Nothing is sent; the id
    /// becomes the most recent in the LRU.
    #[error("rumor {id} was already seen")]
    Duplicate {
        /// Its id.
        id: RumorId,
    },
    /// The admission check of [`RumorPusher::publish_if`] refused the frames the
    /// publish would send. Nothing changed: the rumor is not marked seen, nothing is
    /// sent or tracked.
    #[error("publish of {frames} rumor frames refused by admission")]
    Refused {
        /// The frames the publish would have sent.
        frames: usize,
    },
}

/// A frame the pusher wants sent.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum PushFrame {
    /// A G3 rumor.
    Rumor(Rumor),
    /// A G3-ACK.
    Ack(RumorAck),
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
    /// A retry after an ACK timeout or a peer going down, to an alternate member of the
    /// half-block.
    Retry,
    /// A retry to a member already sent this frame (every member that can cover the
    /// block was tried; a leaf is resent in place), with a doubled timeout.
    Resend,
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

/// One output of the pusher, drained with [`RumorPusher::poll_output`].
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
        /// [`publish`](RumorPusher::publish) call; false for relays, retries, resends
        /// and ACKs.
        origin: bool,
    },
}

/// Counters and sizes, a snapshot from [`RumorPusher::stats`].
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

/// `floor(log2 candidates)` raised to `base`, capped at `candidates` (0 for none): the
/// random fallback's fan-out. With base 3: 1 → 1, 3 → 3, 10 → 3, 16 → 4, 100 → 6,
/// 1024 → 10.
pub fn adaptive_fanout(candidates: usize, base: u8) -> usize {
    match candidates.checked_ilog2() {
        None => 0,
        Some(log) => (log as usize).max(usize::from(base)).min(candidates),
    }
}

/// What a retry chain remembers.
#[derive(Clone, Debug)]
enum Chain {
    /// A cube frame: `owner` was handed the half-block; `tried` holds every member sent
    /// this frame so far, after `owner` itself when `skipped_first` (it was the sender
    /// or unreachable, so it was never sent one); `retries` were made.
    Cube {
        owner: NodeId,
        tried: Vec<NodeId>,
        skipped_first: bool,
        retries: u8,
    },
    /// A random-fallback frame: never retried.
    Fallback,
}

/// One routing decision, made before anything is sent and then applied in order.
#[derive(Debug)]
enum Step {
    /// Send the frame to `to`. `retry` is the failed peer and attempt when this is a
    /// last-resort fallback retry.
    Send {
        to: NodeId,
        from_dim: u8,
        path: SendPath,
        chain: Chain,
        retry: Option<(NodeId, u8)>,
    },
    /// Give up on `peer`'s part of the frame.
    Drop { peer: NodeId, reason: DropReason },
}

/// A frame awaiting its ACK.
#[derive(Clone, Debug)]
struct Pending {
    id: RumorId,
    peer: NodeId,
    payload: Bytes,
    hop: u8,
    from_dim: u8,
    deadline: Instant,
    /// When it was sent, and whether its ACK times the round trip (a first send to
    /// this peer: Karn's rule).
    sent_at: Instant,
    timed: bool,
    chain: Chain,
}

/// What the pusher knows of a reachable peer.
#[derive(Clone, Copy, Debug, Default)]
struct PeerState {
    /// It advertised G3-ACK support.
    acks: bool,
    /// Its ACK round trip, once one was timed.
    rtt: Option<Rtt>,
}

/// A smoothed round trip (RFC 6298), in microseconds.
#[derive(Clone, Copy, Debug)]
struct Rtt {
    srtt: u64,
    rttvar: u64,
}

impl Rtt {
    fn first(sample: Duration) -> Self {
        let r = micros(sample);
        Self {
            srtt: r,
            rttvar: r / 2,
        }
    }

    fn update(self, sample: Duration) -> Self {
        let r = micros(sample);
        Self {
            rttvar: (3 * self.rttvar + self.srtt.abs_diff(r)) / 4,
            srtt: (7 * self.srtt + r) / 8,
        }
    }

    /// `SRTT + 4·RTTVAR`.
    fn rto(self) -> Duration {
        Duration::from_micros(self.srtt.saturating_add(self.rttvar.saturating_mul(4)))
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX / 8)
}

/// The G3 rumor pusher of one node. See the [module docs](self) for the algorithm.
///
/// # Driving it
///
/// After every call below, drain [`poll_output`](Self::poll_output) until `None`, then
/// call [`handle_timeout`](Self::handle_timeout) no later than
/// [`next_deadline`](Self::next_deadline). Instants passed in must not decrease; an older
/// one is clamped to the newest seen.
#[derive(Debug)]
pub struct RumorPusher {
    config: RumorConfig,
    cube: HypercubeExt,
    tracker: RumorTracker,
    rng: Rng,
    /// Reachable peers: ACK support and ACK round-trip estimate.
    peers: BTreeMap<NodeId, PeerState>,
    /// The ACK round trip over every peer: the first guess for a peer not yet timed.
    pooled_rtt: Option<Rtt>,
    /// Frames awaiting an ACK, by insertion sequence (oldest first).
    pending: BTreeMap<u64, Pending>,
    by_key: BTreeMap<(RumorId, NodeId), u64>,
    deadlines: BTreeSet<(Instant, u64)>,
    next_seq: u64,
    out: VecDeque<PusherOutput>,
    stats: RumorStats,
    now: Instant,
}

impl RumorPusher {
    /// A pusher for `me`, with an empty membership (so the random fallback) until
    /// [`set_members`](Self::set_members). `cube` configures its [`HypercubeExt`]. All
    /// randomness (the fallback draws, the LRU's hash key) comes from `seed`.
    pub fn new(me: NodeId, config: RumorConfig, cube: hypercube::Config, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let tracker = RumorTracker::with_capacity(config.lru_capacity, rng.next_u64());
        Self {
            config,
            cube: HypercubeExt::new(me, cube),
            tracker,
            rng,
            peers: BTreeMap::new(),
            pooled_rtt: None,
            pending: BTreeMap::new(),
            by_key: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            next_seq: 0,
            out: VecDeque::new(),
            stats: RumorStats::default(),
            now: Instant::ZERO,
        }
    }

    // (A) getters

    /// This node.
    pub fn me(&self) -> &NodeId {
        self.cube.primary().self_id()
    }

    /// The settings.
    pub fn config(&self) -> &RumorConfig {
        &self.config
    }

    /// The cube the pusher routes on.
    pub fn cube(&self) -> &HypercubeExt {
        &self.cube
    }

    /// The cube, for link caps or a lazy rebuild policy. Call after: a membership
    /// change; it affects only later sends and retries.
    pub fn cube_mut(&mut self) -> &mut HypercubeExt {
        &mut self.cube
    }

    /// The seen set.
    pub fn tracker(&self) -> &RumorTracker {
        &self.tracker
    }

    /// Whether `peer` is reachable (reported up and not down since).
    pub fn is_reachable(&self, peer: &NodeId) -> bool {
        self.peers.contains_key(peer)
    }

    /// Whether self routes on the cube (a full member, or an ephemeral one with a host);
    /// otherwise sends use the random fallback.
    pub fn routes_on_cube(&self) -> bool {
        self.cube.primary().is_valid() || self.cube.host_of(self.me()).is_some()
    }

    /// Counters and current sizes.
    pub fn stats(&self) -> RumorStats {
        RumorStats {
            pending_acks: self.pending.len(),
            seen: self.tracker.len(),
            peers: self.peers.len(),
            ..self.stats
        }
    }

    /// The earliest ACK deadline, if any frame awaits one. Call
    /// [`handle_timeout`](Self::handle_timeout) then.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|&(at, _)| at)
    }

    // (B) inputs and commands

    /// Replaces the membership (self included) and rebuilds the cube now.
    ///
    /// Frames already awaiting an ACK keep their `fromDim`; their retries use the new
    /// cube.
    ///
    /// # Errors
    ///
    /// As [`HypercubeExt::rebuild`]; the cube is then unchanged.
    pub fn set_members(
        &mut self,
        now: Instant,
        members: &[MemberInfo],
    ) -> Result<(), HypercubeError> {
        let now = self.clock(now);
        self.cube.rebuild(members, now)
    }

    /// `peer` is reachable (connected), and `acks` says whether it advertised G3-ACK
    /// support ([`crate::wire::Capabilities::RUMOR_ACK`]). Only reachable peers are sent
    /// rumors, and only frames to peers with `acks` are waited on. Call again to update.
    pub fn peer_up(&mut self, peer: NodeId, acks: bool) {
        self.peers.entry(peer).or_default().acks = acks;
    }

    /// The ACK timeout towards `peer` now, between [`RumorConfig::min_ack_timeout`] and
    /// [`RumorConfig::effective_ack_timeout`]: its own estimate once one of its ACKs was
    /// timed; before that twice the estimate pooled over every timed ACK; before any,
    /// the ceiling.
    pub fn ack_timeout_for(&self, peer: &NodeId) -> Duration {
        let max = self.config.effective_ack_timeout();
        let min = self.config.min_ack_timeout.min(max);
        if min >= max {
            return max;
        }
        let own = self.peers.get(peer).and_then(|p| p.rtt).map(Rtt::rto);
        let pooled = || self.pooled_rtt.map(|r| r.rto().saturating_mul(2));
        own.or_else(pooled).map_or(max, |t| t.clamp(min, max))
    }

    /// `peer` is no longer reachable. Frames awaiting its ACK fail now and are retried
    /// over alternates (outputs queue).
    pub fn peer_down(&mut self, now: Instant, peer: &NodeId) {
        let now = self.clock(now);
        if self.peers.remove(peer).is_none() {
            return;
        }
        let failed: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| &p.peer == peer)
            .map(|(&seq, _)| seq)
            .collect();
        for seq in failed {
            if let Some(p) = self.untrack(seq) {
                self.stats.ack_timeouts += 1;
                self.on_failure(now, p);
            }
        }
    }

    /// Sets the ACK timeout for frames sent from now on (a `NetworkPolicy`'s
    /// `RumorRetryInitial`). Zero means 3 s.
    pub fn set_ack_timeout(&mut self, timeout: Duration) {
        self.config.ack_timeout = timeout;
    }

    /// Sets the random fallback's base fan-out (a `NetworkPolicy`'s `RumorFanout`).
    pub fn set_fanout(&mut self, fanout: u8) {
        self.config.fanout = fanout;
    }

    /// Originates a rumor: marks it seen and pushes it on every dimension
    /// (`fromDim = 0xFF`, frames carry hop 1), or by the random fallback without a cube.
    /// The origin gets no [`PusherOutput::Deliver`] for its own rumor.
    ///
    /// # Errors
    ///
    /// [`PushError::TooLarge`] above [`RumorConfig::max_payload`];
    /// [`PushError::Duplicate`] if the payload was already seen. Neither sends anything.
    pub fn publish(&mut self, now: Instant, payload: Bytes) -> Result<RumorId, PushError> {
        self.publish_if(now, payload, |_| true)
    }

    /// [`publish`](Self::publish), after `admit` accepted the number of rumor frames the
    /// publish sends now (the frames that come out as [`PusherOutput::Send`] with
    /// `origin` set). The routing is decided first, then `admit` is asked, then the
    /// frames are queued; a caller charges its egress budget from the actual sends.
    ///
    /// # Errors
    ///
    /// As [`publish`](Self::publish), and [`PushError::Refused`] when `admit` returns
    /// false. None of them sends anything or changes state.
    pub fn publish_if(
        &mut self,
        now: Instant,
        payload: Bytes,
        admit: impl FnOnce(usize) -> bool,
    ) -> Result<RumorId, PushError> {
        let now = self.clock(now);
        if payload.len() > self.config.max_payload as usize {
            self.stats.refused_too_large += 1;
            return Err(PushError::TooLarge {
                len: payload.len(),
                max: self.config.max_payload,
            });
        }
        let id = rumor_id(&payload);
        if self.tracker.contains(&id) {
            // Marks it the most recent in the LRU.
            let _ = self.tracker.check_and_insert(id);
            self.stats.duplicates += 1;
            return Err(PushError::Duplicate { id });
        }
        // Routing draws from the RNG (the random fallback): a refused publish puts it
        // back, so it changes nothing.
        let rng = self.rng.clone();
        let hop = 1;
        let mut plan = Vec::new();
        self.route(&mut plan, hop, ORIGIN, None);
        let frames = plan
            .iter()
            .filter(|s| matches!(s, Step::Send { .. }))
            .count();
        if !admit(frames) {
            self.rng = rng;
            return Err(PushError::Refused { frames });
        }
        let _ = self.tracker.check_and_insert(id);
        self.stats.published += 1;
        self.apply(now, id, &payload, hop, plan, true);
        Ok(id)
    }

    /// A G3 rumor `frame` arrived from `from`. `peer_acks` says whether `from` advertised
    /// G3-ACK support; if so, it is ACKed, even for a duplicate. A new rumor is delivered
    /// and forwarded: down the cube tree, or by the random fallback without a cube.
    /// Returns the rumor's id.
    pub fn handle_rumor(
        &mut self,
        now: Instant,
        from: &NodeId,
        frame: Rumor,
        peer_acks: bool,
    ) -> RumorId {
        let now = self.clock(now);
        self.stats.received += 1;
        let id = rumor_id(&frame.payload);
        if peer_acks {
            self.stats.acks_sent += 1;
            self.out.push_back(PusherOutput::Send {
                to: from.clone(),
                frame: PushFrame::Ack(RumorAck {
                    rumor_id: *id.as_bytes(),
                }),
                origin: false,
            });
        }
        if !self.tracker.check_and_insert(id) {
            self.stats.duplicates += 1;
            return id;
        }
        self.stats.delivered += 1;
        self.out.push_back(PusherOutput::Deliver {
            id,
            payload: frame.payload.clone(),
            from: from.clone(),
            hop: frame.hop,
        });
        self.event(RumorEvent::Received {
            id,
            from: from.clone(),
            hop: frame.hop,
        });
        if frame.payload.len() > self.config.max_payload as usize {
            self.stats.not_forwarded += 1;
            return id;
        }
        let hop = frame.hop.saturating_add(1);
        let mut plan = Vec::new();
        self.route(&mut plan, hop, frame.from_dim, Some(from));
        self.apply(now, id, &frame.payload, hop, plan, false);
        id
    }

    /// A G3-ACK for rumor `id` arrived from `from`. If a frame to `from` awaits it, the
    /// frame is done and its dimension gains weight; otherwise it is only counted.
    pub fn handle_ack(&mut self, now: Instant, from: &NodeId, id: RumorId) {
        let now = self.clock(now);
        let Some(seq) = self.by_key.get(&(id, from.clone())).copied() else {
            self.stats.acks_unmatched += 1;
            return;
        };
        let Some(p) = self.untrack(seq) else {
            return;
        };
        self.stats.acks_received += 1;
        if let Some(dim) = self.cube.primary().dimension_of(&p.peer) {
            self.cube.record_success(dim);
        }
        if p.timed {
            let sample = now.saturating_duration_since(p.sent_at);
            let fold =
                |r: Option<Rtt>| Some(r.map_or_else(|| Rtt::first(sample), |r| r.update(sample)));
            if let Some(peer) = self.peers.get_mut(&p.peer) {
                peer.rtt = fold(peer.rtt);
            }
            self.pooled_rtt = fold(self.pooled_rtt);
        }
        self.event(RumorEvent::Acked { id, peer: p.peer });
    }

    /// Time passed. Every frame whose ACK deadline is at or before `now` fails: it is
    /// retried over an alternate or dropped (see the [module docs](self)). Early or
    /// spurious calls are no-ops.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clock(now);
        while let Some(&(at, seq)) = self.deadlines.first() {
            if at > now {
                break;
            }
            match self.untrack(seq) {
                Some(p) => {
                    self.stats.ack_timeouts += 1;
                    self.on_failure(now, p);
                }
                None => {
                    self.deadlines.remove(&(at, seq));
                }
            }
        }
    }

    // (D) outputs

    /// The next output, or `None` when drained. Call after every input or command.
    pub fn poll_output(&mut self) -> Option<PusherOutput> {
        self.out.pop_front()
    }

    // internals

    /// Clamps `now` so time never goes backwards.
    fn clock(&mut self, now: Instant) -> Instant {
        self.now = self.now.max(now);
        self.now
    }

    fn event(&mut self, event: RumorEvent) {
        self.out.push_back(PusherOutput::Event(event));
    }

    fn drop_frame(&mut self, id: RumorId, peer: NodeId, reason: DropReason) {
        self.stats.dropped += 1;
        self.event(RumorEvent::Dropped { id, peer, reason });
    }

    /// Plans the frames (carrying `hop`) that forward a rumor just accepted, or
    /// originate one (`hop = 1`, `from_dim = ORIGIN`, no sender): down the cube tree, or
    /// by the random fallback without a cube.
    fn route(&mut self, plan: &mut Vec<Step>, hop: u8, from_dim: u8, sender: Option<&NodeId>) {
        if self.routes_on_cube() {
            for target in self.cube.forward_targets(from_dim, sender) {
                self.hand_off(plan, hop, target, sender);
            }
        } else {
            self.fallback(plan, hop, sender, &[], None);
        }
    }

    /// Carries out `plan` for rumor `id`: frames carrying `hop` are sent (and tracked)
    /// and parts given up on are dropped, in order. `origin`: the frames of a publish.
    #[allow(clippy::too_many_arguments)]
    fn apply(
        &mut self,
        now: Instant,
        id: RumorId,
        payload: &Bytes,
        hop: u8,
        plan: Vec<Step>,
        origin: bool,
    ) {
        for step in plan {
            match step {
                Step::Send {
                    to,
                    from_dim,
                    path,
                    chain,
                    retry,
                } => {
                    if let Some((failed, attempt)) = retry {
                        self.stats.retries += 1;
                        self.event(RumorEvent::Retry {
                            id,
                            failed,
                            to: to.clone(),
                            attempt,
                        });
                    }
                    self.send(now, id, payload, hop, from_dim, to, path, chain, origin);
                }
                Step::Drop { peer, reason } => self.drop_frame(id, peer, reason),
            }
        }
    }

    /// Plans one cube frame to `target`, or to an alternate member of its half-block
    /// when `target` is unreachable or is the sender.
    fn hand_off(&mut self, plan: &mut Vec<Step>, hop: u8, target: Target, sender: Option<&NodeId>) {
        let Target { peer, from_dim } = target;
        let is_sender = sender == Some(&peer);
        if !is_sender && self.is_reachable(&peer) {
            let chain = Chain::Cube {
                owner: peer.clone(),
                tried: alloc::vec![peer.clone()],
                skipped_first: false,
                retries: 0,
            };
            plan.push(Step::Send {
                to: peer,
                from_dim,
                path: SendPath::Cube,
                chain,
                retry: None,
            });
            return;
        }
        let mut tried = alloc::vec![peer.clone()];
        if let Some(alt) = self.next_alternate(from_dim, &peer, &tried, sender) {
            tried.push(alt.clone());
            let chain = Chain::Cube {
                owner: peer,
                tried,
                skipped_first: true,
                retries: 0,
            };
            plan.push(Step::Send {
                to: alt,
                from_dim,
                path: SendPath::Alternate,
                chain,
                retry: None,
            });
        } else if self.block_has_others(from_dim, &peer) {
            if self.fallback(plan, hop, sender, &tried, None) == 0 {
                plan.push(Step::Drop {
                    peer,
                    reason: DropReason::Unreachable,
                });
            }
        } else if !is_sender {
            // A one-member block we cannot reach: only that member misses the rumor.
            plan.push(Step::Drop {
                peer,
                reason: DropReason::Unreachable,
            });
        }
    }

    /// A tracked frame failed (timeout or peer down): retry over an alternate, fall
    /// back, or drop.
    fn on_failure(&mut self, now: Instant, p: Pending) {
        if let Some(dim) = self.cube.primary().dimension_of(&p.peer) {
            self.cube.record_loss(dim);
        }
        let Chain::Cube {
            owner,
            mut tried,
            skipped_first,
            retries,
        } = p.chain
        else {
            self.drop_frame(p.id, p.peer, DropReason::Unacknowledged);
            return;
        };
        if retries >= self.config.ack_retries {
            self.drop_frame(p.id, p.peer, DropReason::RetriesExhausted);
            return;
        }
        let attempt = retries.saturating_add(1);
        let next = match self.next_alternate(p.from_dim, &owner, &tried, None) {
            Some(alt) => {
                tried.push(alt.clone());
                Some((alt, SendPath::Retry))
            }
            // Every member that can cover the block was sent this frame: send it again,
            // to the next of them after the one that failed (the same one when it is
            // alone). Under frame loss the frame or its ACK was lost; a duplicate is
            // ACKed and not delivered twice.
            None => self
                .again(&tried[usize::from(skipped_first)..], &p.peer)
                .map(|to| (to, SendPath::Resend)),
        };
        if let Some((to, path)) = next {
            self.stats.retries += 1;
            self.event(RumorEvent::Retry {
                id: p.id,
                failed: p.peer,
                to: to.clone(),
                attempt,
            });
            let chain = Chain::Cube {
                owner,
                tried,
                skipped_first,
                retries: attempt,
            };
            let (id, payload, hop, dim) = (p.id, p.payload, p.hop, p.from_dim);
            self.send(now, id, &payload, hop, dim, to, path, chain, false);
        } else if self.block_has_others(p.from_dim, &owner) {
            let mut plan = Vec::new();
            let retry = Some((p.peer.clone(), attempt));
            if self.fallback(&mut plan, p.hop, None, &tried, retry) == 0 {
                plan.push(Step::Drop {
                    peer: p.peer,
                    reason: DropReason::Unreachable,
                });
            }
            self.apply(now, p.id, &p.payload, p.hop, plan, false);
        } else {
            self.drop_frame(p.id, p.peer, DropReason::Unacknowledged);
        }
    }

    /// The member of `sent` (members already sent a frame, in order) to resend it to
    /// after `failed` did not acknowledge: the next reachable one after `failed`,
    /// wrapping around, `failed` itself last.
    fn again(&self, sent: &[NodeId], failed: &NodeId) -> Option<NodeId> {
        let me = self.me();
        let after = sent.iter().position(|p| p == failed).map_or(0, |i| i + 1);
        (0..sent.len())
            .map(|k| &sent[(after + k) % sent.len()])
            .find(|p| *p != me && self.is_reachable(p))
            .cloned()
    }

    /// The next member, not yet tried, that can take over `owner`'s half-block for a
    /// frame tagged `from_dim`: the first reachable [`HypercubeExt::alternates`] entry,
    /// else any reachable member of the block.
    fn next_alternate(
        &self,
        from_dim: u8,
        owner: &NodeId,
        tried: &[NodeId],
        sender: Option<&NodeId>,
    ) -> Option<NodeId> {
        let me = self.me();
        let usable =
            |p: &NodeId| p != me && Some(p) != sender && !tried.contains(p) && self.is_reachable(p);
        if let Some(t) = self
            .cube
            .alternates(from_dim, owner)
            .into_iter()
            .find(|t| usable(&t.peer))
        {
            return Some(t.peer);
        }
        let primary = self.cube.primary();
        let pos = primary.position(owner)?;
        let block = primary.block(pos, primary.level_for(from_dim));
        self.peers
            .keys()
            .filter(|p| primary.position(p).is_some_and(|q| block.contains(&q)))
            .find(|p| usable(p))
            .cloned()
    }

    /// Whether `owner`'s half-block for a frame tagged `from_dim` has other members.
    fn block_has_others(&self, from_dim: u8, owner: &NodeId) -> bool {
        let primary = self.cube.primary();
        primary
            .position(owner)
            .is_some_and(|pos| primary.block(pos, primary.level_for(from_dim)).len() > 1)
    }

    /// The random fallback: plans frames tagged `0xFF` carrying `hop` to
    /// `adaptive_fanout(C, fanout)` reachable peers other than self, `sender` and
    /// `tried`. A relay (`hop > 1`) sends only within `max_hops` and with probability
    /// `P / hop`. `retry` is the failed peer and attempt when this is a last-resort
    /// retry. Returns the number of frames planned.
    fn fallback(
        &mut self,
        plan: &mut Vec<Step>,
        hop: u8,
        sender: Option<&NodeId>,
        tried: &[NodeId],
        retry: Option<(NodeId, u8)>,
    ) -> usize {
        if hop > 1 {
            if hop > self.config.max_hops {
                return 0;
            }
            let p = self.config.forward_probability / f64::from(hop);
            // NaN compares false: it never forwards.
            let forward = self.rng.unit_f64() < p;
            if !forward {
                return 0;
            }
        }
        let me = self.me();
        let candidates: Vec<NodeId> = self
            .peers
            .keys()
            .filter(|p| *p != me && Some(*p) != sender && !tried.contains(p))
            .cloned()
            .collect();
        let count = adaptive_fanout(candidates.len(), self.config.fanout);
        let picks = self
            .cube
            .fallback_targets(&candidates, count, &mut self.rng);
        let sent = picks.len();
        for to in picks {
            plan.push(Step::Send {
                to,
                from_dim: ORIGIN,
                path: SendPath::Fallback,
                chain: Chain::Fallback,
                retry: retry.clone(),
            });
        }
        sent
    }

    /// Queues one rumor frame and, if `to` ACKs, tracks it. `origin`: a frame of a
    /// publish ([`PusherOutput::Send`]'s flag).
    #[allow(clippy::too_many_arguments)]
    fn send(
        &mut self,
        now: Instant,
        id: RumorId,
        payload: &Bytes,
        hop: u8,
        from_dim: u8,
        to: NodeId,
        path: SendPath,
        chain: Chain,
        origin: bool,
    ) {
        self.stats.sent += 1;
        match path {
            SendPath::Cube => self.stats.cube_sends += 1,
            SendPath::Alternate => self.stats.alternate_sends += 1,
            SendPath::Fallback => self.stats.fallback_sends += 1,
            SendPath::Retry | SendPath::Resend => {}
        }
        self.out.push_back(PusherOutput::Send {
            to: to.clone(),
            frame: PushFrame::Rumor(Rumor {
                hop,
                from_dim,
                payload: payload.clone(),
            }),
            origin,
        });
        self.event(RumorEvent::Sent {
            id,
            to: to.clone(),
            hop,
            from_dim,
            path,
        });
        if self.peers.get(&to).is_some_and(|p| p.acks) {
            let mut timeout = self.ack_timeout_for(&to);
            if path == SendPath::Resend {
                // Back off: twice the timeout per retry made, up to the configured one.
                let retries = match &chain {
                    Chain::Cube { retries, .. } => u32::from(*retries),
                    Chain::Fallback => 0,
                };
                let max = self.config.effective_ack_timeout();
                timeout = timeout
                    .checked_mul(1 << retries.min(16))
                    .map_or(max, |t| t.min(max));
            }
            let deadline = now
                .saturating_add(timeout)
                .max(now + Duration::from_micros(1));
            self.track(Pending {
                id,
                peer: to,
                payload: payload.clone(),
                hop,
                from_dim,
                deadline,
                sent_at: now,
                timed: path != SendPath::Resend,
                chain,
            });
        }
    }

    /// Adds `p` to the pending table, evicting the oldest entry when full. A frame of the
    /// same rumor to the same peer already awaiting an ACK is not tracked twice: one ACK
    /// answers both.
    fn track(&mut self, p: Pending) {
        let key = (p.id, p.peer.clone());
        if self.by_key.contains_key(&key) {
            return;
        }
        while self.pending.len() >= self.config.max_pending_acks.get() as usize {
            let Some(&oldest) = self.pending.keys().next() else {
                break;
            };
            if let Some(old) = self.untrack(oldest) {
                self.drop_frame(old.id, old.peer, DropReason::Evicted);
            }
        }
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.by_key.insert(key, seq);
        self.deadlines.insert((p.deadline, seq));
        self.pending.insert(seq, p);
    }

    /// Removes entry `seq` from every index.
    fn untrack(&mut self, seq: u64) -> Option<Pending> {
        let p = self.pending.remove(&seq)?;
        self.by_key.remove(&(p.id, p.peer.clone()));
        self.deadlines.remove(&(p.deadline, seq));
        Some(p)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
    use alloc::{format, vec, vec::Vec};

    use quickcheck::{QuickCheck, TestResult};

    use super::*;

    const T0: Instant = Instant::ZERO;

    fn id(i: usize) -> NodeId {
        NodeId::new(Bytes::from(format!("n{i:05}").into_bytes())).unwrap()
    }

    fn infos(ids: &[NodeId]) -> Vec<MemberInfo> {
        ids.iter().cloned().map(MemberInfo::new).collect()
    }

    /// Who is connected to whom.
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Links {
        /// Everyone to everyone.
        Full,
        /// The overlay of [`HypercubeExt::overlay_peers`], both ways.
        Neighbourhood,
    }

    /// What one broadcast did, as seen by the router.
    #[derive(Debug, Default)]
    struct Run {
        /// Per node: `Deliver` outputs.
        delivered: Vec<usize>,
        /// Per node: rumor frames arriving (the dead node's included).
        received: Vec<usize>,
        /// Per node: the `fromDim` of the first rumor frame it was sent.
        first_dim: Vec<Option<u8>>,
        /// Per node: ACK frames addressed to it.
        acks_to: Vec<usize>,
        /// Per node: ACK frames it sent.
        acks_from: Vec<usize>,
        /// Rumor frames sent.
        frames: usize,
        /// ACK frames sent (dropped ones included).
        acks: usize,
        max_hop: u8,
        retries: usize,
        dropped: Vec<DropReason>,
        acked: usize,
        fallback: usize,
        /// Every `(hop, fromDim)` sent, in order.
        sends: Vec<(usize, usize, u8, u8)>,
        /// Ids carried by ACK frames.
        ack_ids: BTreeSet<RumorId>,
    }

    impl Run {
        fn new(n: usize) -> Self {
            Self {
                delivered: vec![0; n],
                received: vec![0; n],
                first_dim: vec![None; n],
                acks_to: vec![0; n],
                acks_from: vec![0; n],
                ..Self::default()
            }
        }
    }

    /// An in-memory router over `N` pushers: frames arrive in FIFO order with no
    /// latency; when nothing is in flight, time jumps to the earliest ACK deadline.
    struct Net {
        ids: Vec<NodeId>,
        index: BTreeMap<NodeId, usize>,
        nodes: Vec<RumorPusher>,
        now: Instant,
        /// Receives frames but never processes them (no ACK, no forwarding).
        dead: Option<usize>,
        /// Nodes that did not advertise ACK support: they neither send nor await ACKs.
        legacy: BTreeSet<usize>,
        /// Drop the next ACK frame sent on each `(from, to)` link listed.
        drop_ack: Vec<(usize, usize)>,
        /// Links (`from`, `to`) whose frames are lost (the connection died).
        cut: BTreeSet<(usize, usize)>,
        queue: VecDeque<(usize, usize, PushFrame)>,
        run: Run,
    }

    impl Net {
        /// `n` nodes that all know the full member list.
        fn new(n: usize, config: RumorConfig, links: Links, legacy: &[usize]) -> Self {
            let ids: Vec<NodeId> = (0..n).map(id).collect();
            let members = infos(&ids);
            Self::build(ids, config, links, legacy, |_| members.clone())
        }

        fn build(
            ids: Vec<NodeId>,
            config: RumorConfig,
            links: Links,
            legacy: &[usize],
            members_of: impl Fn(usize) -> Vec<MemberInfo>,
        ) -> Self {
            let n = ids.len();
            let index: BTreeMap<NodeId, usize> = ids.iter().cloned().zip(0..).collect();
            let legacy: BTreeSet<usize> = legacy.iter().copied().collect();
            let mut nodes: Vec<RumorPusher> = (0..n)
                .map(|i| {
                    let cube = hypercube::Config::default();
                    let mut p = RumorPusher::new(ids[i].clone(), config, cube, 1000 + i as u64);
                    p.set_members(T0, &members_of(i)).unwrap();
                    p
                })
                .collect();
            // Links are undirected: a connection either end asked for serves both.
            let mut overlay: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
            if let Links::Neighbourhood = links {
                for (i, node) in nodes.iter().enumerate() {
                    for peer in node.cube().overlay_peers() {
                        overlay[i].insert(index[&peer]);
                        overlay[index[&peer]].insert(i);
                    }
                }
            }
            for (i, node) in nodes.iter_mut().enumerate() {
                let peers: BTreeSet<usize> = match links {
                    Links::Full => (0..n).filter(|&j| j != i).collect(),
                    Links::Neighbourhood => core::mem::take(&mut overlay[i]),
                };
                // ACK support is negotiated: both ends must advertise it.
                let acks = |j: usize| !legacy.contains(&i) && !legacy.contains(&j);
                for j in peers {
                    node.peer_up(ids[j].clone(), acks(j));
                }
            }
            Self {
                ids,
                index,
                nodes,
                now: T0,
                dead: None,
                legacy,
                drop_ack: Vec::new(),
                cut: BTreeSet::new(),
                queue: VecDeque::new(),
                run: Run::default(),
            }
        }

        fn n(&self) -> usize {
            self.ids.len()
        }

        fn drain(&mut self, i: usize) {
            while let Some(out) = self.nodes[i].poll_output() {
                match out {
                    PusherOutput::Send { to, frame, .. } => {
                        let j = self.index[&to];
                        match &frame {
                            PushFrame::Rumor(r) => {
                                self.run.frames += 1;
                                self.run.max_hop = self.run.max_hop.max(r.hop);
                                self.run.sends.push((i, j, r.hop, r.from_dim));
                                self.run.first_dim[j].get_or_insert(r.from_dim);
                            }
                            PushFrame::Ack(a) => {
                                self.run.acks += 1;
                                self.run.acks_to[j] += 1;
                                self.run.acks_from[i] += 1;
                                self.run.ack_ids.insert(RumorId::from_bytes(a.rumor_id));
                            }
                        }
                        self.queue.push_back((i, j, frame));
                    }
                    PusherOutput::Deliver { .. } => self.run.delivered[i] += 1,
                    PusherOutput::Event(e) => match e {
                        RumorEvent::Retry { .. } => self.run.retries += 1,
                        RumorEvent::Dropped { reason, .. } => self.run.dropped.push(reason),
                        RumorEvent::Acked { .. } => self.run.acked += 1,
                        RumorEvent::Sent {
                            path: SendPath::Fallback,
                            ..
                        } => self.run.fallback += 1,
                        _ => {}
                    },
                }
            }
        }

        /// Moves frames and fires timeouts until nothing is left to do.
        fn settle(&mut self) {
            for _ in 0..10_000 {
                while let Some((from, to, frame)) = self.queue.pop_front() {
                    if self.cut.contains(&(from, to)) {
                        continue;
                    }
                    match frame {
                        PushFrame::Rumor(r) => {
                            self.run.received[to] += 1;
                            if self.dead == Some(to) {
                                continue;
                            }
                            let acks = !self.legacy.contains(&from) && !self.legacy.contains(&to);
                            let from_id = self.ids[from].clone();
                            self.nodes[to].handle_rumor(self.now, &from_id, r, acks);
                        }
                        PushFrame::Ack(a) => {
                            if self.dead == Some(to) {
                                continue;
                            }
                            if let Some(k) = self.drop_ack.iter().position(|&l| l == (from, to)) {
                                self.drop_ack.remove(k);
                                continue;
                            }
                            let from_id = self.ids[from].clone();
                            let rid = RumorId::from_bytes(a.rumor_id);
                            self.nodes[to].handle_ack(self.now, &from_id, rid);
                        }
                    }
                    self.drain(to);
                }
                let dead = self.dead;
                let live = move |i: &usize| Some(*i) != dead;
                let Some(next) = (0..self.n())
                    .filter(live)
                    .filter_map(|i| self.nodes[i].next_deadline())
                    .min()
                else {
                    return;
                };
                self.now = self.now.max(next);
                for i in (0..self.n()).filter(live) {
                    if self.nodes[i].next_deadline().is_some_and(|d| d <= self.now) {
                        self.nodes[i].handle_timeout(self.now);
                        self.drain(i);
                    }
                }
            }
            panic!("the router did not settle");
        }

        fn broadcast(&mut self, origin: usize, payload: &[u8]) -> Run {
            self.run = Run::new(self.n());
            let payload = Bytes::copy_from_slice(payload);
            let rid = self.nodes[origin]
                .publish(self.now, payload.clone())
                .unwrap();
            assert_eq!(rid, rumor_id(&payload));
            self.drain(origin);
            self.settle();
            for id in &self.run.ack_ids {
                assert_eq!(*id, rid, "every ACK carries the origin's id");
            }
            core::mem::take(&mut self.run)
        }

        fn pending(&self) -> usize {
            self.nodes.iter().map(|p| p.stats().pending_acks).sum()
        }
    }

    fn ceil_log2(n: usize) -> u8 {
        if n <= 1 {
            0
        } else {
            (usize::BITS - (n - 1).leading_zeros()) as u8
        }
    }

    fn assert_exact(net: &Net, run: &Run, origin: usize) {
        let n = net.n();
        for (i, &d) in run.delivered.iter().enumerate() {
            assert_eq!(
                d,
                usize::from(i != origin),
                "N={n} origin={origin} node={i}"
            );
        }
        assert_eq!(run.frames, n - 1, "N={n} origin={origin}");
        assert!(run.max_hop <= ceil_log2(n), "N={n} origin={origin}");
        assert_eq!(run.acks, n - 1, "N={n} origin={origin}");
        assert_eq!(run.acked, n - 1, "N={n} origin={origin}");
        assert_eq!(run.retries, 0, "N={n} origin={origin}");
        assert!(run.dropped.is_empty(), "N={n} origin={origin}");
        assert_eq!(run.fallback, 0);
        assert_eq!(net.pending(), 0);
    }

    /// The overlay of `overlay_peers` (links both ways) is enough: every fault-free
    /// broadcast is exact, and a dead top delegate is still covered by a live link, with
    /// O(log N) links per node on average.
    #[test]
    fn overlay_peers_keep_every_broadcast_exact() {
        let mut rng = Rng::new(17);
        let sizes = [2, 3, 5, 8, 13, 31, 64, 100, 257, 1000];
        for n in sizes {
            let mut net = Net::new(n, RumorConfig::default(), Links::Neighbourhood, &[]);
            // Mean degree: a member alone in a half-block (N = 257: node 256) is every
            // lower node's delegate, so the maximum can reach N − 1.
            let links: usize = (0..n).map(|i| net.nodes[i].stats().peers).sum();
            let dims = ceil_log2(n) as usize;
            assert!(
                links <= 4 * dims.max(1) * n,
                "N={n}: mean degree {}",
                links / n
            );
            let origins: Vec<usize> = if n <= 64 {
                (0..n).collect()
            } else {
                (0..8).map(|_| rng.below(n as u64) as usize).collect()
            };
            for origin in origins {
                let run = net.broadcast(origin, format!("overlay {n} {origin}").as_bytes());
                assert_exact(&net, &run, origin);
                if n < 4 {
                    continue;
                }
                let top = net.nodes[origin].cube().delegate(dims as u8 - 1).unwrap();
                let dead = net.index[&top.clone()];
                net.dead = Some(dead);
                let hurt = net.broadcast(origin, format!("hurt {n} {origin}").as_bytes());
                net.dead = None;
                for i in (0..n).filter(|&i| i != dead) {
                    assert_eq!(
                        hurt.delivered[i],
                        usize::from(i != origin),
                        "N={n} node {i}"
                    );
                }
                assert!(hurt.fallback == 0, "N={n}: no random fallback needed");
            }
        }
    }

    #[test]
    fn fault_free_exact_for_every_n_up_to_64_and_every_origin() {
        for n in 1..=64 {
            let mut net = Net::new(n, RumorConfig::default(), Links::Full, &[]);
            for origin in 0..n {
                let run = net.broadcast(origin, format!("N{n} o{origin}").as_bytes());
                assert_exact(&net, &run, origin);
            }
            assert_eq!(net.now, T0, "no timeout ever fired");
        }
    }

    #[test]
    fn fault_free_exact_for_sampled_n_up_to_1024() {
        let mut rng = Rng::new(77);
        // A debug build (plain `cargo test`) samples fewer sizes; release runs them all.
        let sizes: &[usize] = if cfg!(debug_assertions) {
            &[65, 129, 300, 513]
        } else {
            &[65, 100, 127, 128, 129, 255, 300, 511, 700, 1000, 1023, 1024]
        };
        for &n in sizes {
            let links = if n <= 300 {
                Links::Full
            } else {
                Links::Neighbourhood
            };
            let mut net = Net::new(n, RumorConfig::default(), links, &[]);
            for k in 0..3 {
                let origin = rng.below(n as u64) as usize;
                let run = net.broadcast(origin, format!("N{n} #{k}").as_bytes());
                assert_exact(&net, &run, origin);
            }
        }
    }

    /// One dead node per run (it receives but never answers): every node in turn, for
    /// every N ≤ 64, from every origin up to N = 40 and four sampled origins above.
    /// Every live node receives exactly once. The dead node's block costs one retry to
    /// the takeover when it has other members; then the dead node is a leaf (of the
    /// takeover, or of its sender when alone in its block), and a leaf is retried in
    /// place until the budget is spent.
    #[test]
    fn one_dead_node_costs_one_takeover_retry_and_the_leaf_budget() {
        let budget = usize::from(RumorConfig::default().ack_retries);
        let mut rng = Rng::new(9);
        let mut with_retry = 0;
        for n in 2..=64 {
            let mut net = Net::new(n, RumorConfig::default(), Links::Full, &[]);
            for dead in 0..n {
                // Every origin up to N = 40 in release (N = 16 in a debug build).
                let all_origins = if cfg!(debug_assertions) { 16 } else { 40 };
                let origins: BTreeSet<usize> = if n <= all_origins {
                    (0..n).collect()
                } else {
                    (0..4).map(|_| rng.below(n as u64) as usize).collect()
                };
                for origin in origins.into_iter().filter(|&o| o != dead) {
                    net.dead = Some(dead);
                    let run = net.broadcast(origin, format!("N{n} o{origin} d{dead}").as_bytes());
                    net.dead = None;
                    let cube = net.nodes[dead].cube().primary();
                    let pos = cube.position(&net.ids[dead]).unwrap();
                    let level = cube.level_for(run.first_dim[dead].unwrap());
                    let expect = usize::from(cube.block(pos, level).len() > 1);
                    with_retry += expect;
                    let ctx = format!("N={n} origin={origin} dead={dead}");
                    for i in (0..n).filter(|&i| i != dead) {
                        assert_eq!(run.delivered[i], usize::from(i != origin), "{ctx} node={i}");
                    }
                    assert_eq!(run.retries, expect + budget, "{ctx}");
                    assert_eq!(run.received[dead], 1 + expect + budget, "{ctx}");
                    assert_eq!(run.frames, n - 1 + expect + budget, "{ctx}");
                    assert_eq!(run.acks, n - 2, "{ctx}: every live receipt is ACKed");
                    assert_eq!(run.dropped, [DropReason::RetriesExhausted], "{ctx}");
                    assert!(run.max_hop <= ceil_log2(n), "{ctx}");
                    assert_eq!(net.pending(), 0, "{ctx}");
                }
            }
        }
        assert!(
            with_retry > 1000,
            "the retry path was exercised: {with_retry}"
        );
    }

    #[test]
    fn retry_goes_to_the_takeover_not_the_dead_edge() {
        let mut net = Net::new(16, RumorConfig::default(), Links::Full, &[]);
        net.dead = Some(8);
        let run = net.broadcast(0, b"x");
        let takeover = net.nodes[0].cube().alternate_for(3, &net.ids[8]).unwrap();
        assert_eq!(takeover.peer, net.ids[9]);
        let to_8 = run.sends.iter().filter(|s| s.1 == 8).count();
        let from_0: Vec<_> = run.sends.iter().filter(|s| s.0 == 0).collect();
        // One retry to the takeover, then the budget of the takeover's leaf frame to 8.
        let budget = usize::from(RumorConfig::default().ack_retries);
        assert_eq!(run.retries, 1 + budget);
        assert_eq!(from_0.len(), 5, "four halves, then one retry");
        assert_eq!(
            *from_0[4],
            (0, 9, 1, 3),
            "same hop and fromDim, to the takeover"
        );
        assert_eq!(
            to_8,
            2 + budget,
            "the origin's frame, the leaf frame, resends"
        );
        // Untimed: 3 s at the origin, 3 s at the takeover. Then the takeover's own ACKs
        // were timed (0 in this harness, so the 1 s floor) and its resends to 8 wait
        // 2, then 3 s (the ceiling) four times.
        assert_eq!(net.now, Instant::from_secs(20));
    }

    #[test]
    fn lost_ack_is_recovered_by_the_retrys_ack_without_a_second_delivery() {
        let mut net = Net::new(16, RumorConfig::default(), Links::Full, &[]);
        net.drop_ack.push((8, 0));
        let run = net.broadcast(0, b"lost ack");
        assert!(net.drop_ack.is_empty(), "the ACK was dropped");
        for (i, &d) in run.delivered.iter().enumerate() {
            assert_eq!(d, usize::from(i != 0), "node {i}");
        }
        assert_eq!(run.retries, 1);
        assert_eq!(run.frames, 16, "N − 1 and the retry");
        assert_eq!(run.acks, 16, "the retry's duplicate is ACKed too");
        assert_eq!(run.acked, 15);
        assert!(run.dropped.is_empty());
        assert_eq!(net.nodes[9].stats().duplicates, 1);
        assert_eq!(net.pending(), 0);
        assert_eq!(run.ack_ids.len(), 1);
        assert_eq!(net.nodes[0].stats().acks_unmatched, 0);
    }

    #[test]
    fn peer_without_ack_support_gets_no_acks_and_causes_no_retries() {
        for legacy in [1, 4, 8, 15] {
            let mut net = Net::new(16, RumorConfig::default(), Links::Full, &[legacy]);
            for origin in 0..16 {
                let run = net.broadcast(origin, format!("l{legacy} o{origin}").as_bytes());
                for (i, &d) in run.delivered.iter().enumerate() {
                    assert_eq!(d, usize::from(i != origin));
                }
                assert_eq!(run.acks_to[legacy], 0, "legacy={legacy} origin={origin}");
                assert_eq!(run.acks_from[legacy], 0, "legacy={legacy} origin={origin}");
                assert_eq!(run.retries, 0);
                assert!(run.dropped.is_empty());
                assert_eq!(run.frames, 15);
                // Frames to or from the legacy peer are neither ACKed nor awaited.
                let legacy_links = run
                    .sends
                    .iter()
                    .filter(|s| s.0 == legacy || s.1 == legacy)
                    .count();
                assert!(legacy_links >= 1);
                assert_eq!(
                    run.acks,
                    15 - legacy_links,
                    "legacy={legacy} origin={origin}"
                );
                assert_eq!(
                    run.acked,
                    15 - legacy_links,
                    "nobody waits on the legacy peer"
                );
                assert_eq!(net.pending(), 0);
            }
            assert_eq!(net.now, T0, "no ACK deadline ever passed");
        }
    }

    #[test]
    fn own_rumor_coming_back_is_recognised() {
        let mut net = Net::new(4, RumorConfig::default(), Links::Full, &[]);
        let run = net.broadcast(0, b"mine");
        assert_eq!(run.delivered[0], 0);
        let origin = &mut net.nodes[0];
        let from = id(2);
        let back = Rumor {
            hop: 2,
            from_dim: 0,
            payload: Bytes::from_static(b"mine"),
        };
        let rid = origin.handle_rumor(Instant::from_secs(1), &from, back, true);
        assert_eq!(rid, rumor_id(b"mine"));
        let outs: Vec<PusherOutput> = core::iter::from_fn(|| origin.poll_output()).collect();
        assert_eq!(
            outs,
            [PusherOutput::Send {
                to: from,
                frame: PushFrame::Ack(RumorAck {
                    rumor_id: *rid.as_bytes()
                }),
                origin: false,
            }],
            "only the ACK: no delivery, no forwarding"
        );
        assert_eq!(origin.stats().duplicates, 1);
        assert_eq!(
            origin.publish(Instant::from_secs(1), Bytes::from_static(b"mine")),
            Err(PushError::Duplicate { id: rid })
        );

        // And through a fallback flood, where frames do come back to the origin.
        let mut net = fallback_net(12, RumorConfig::service_mesh());
        let run = net.broadcast(3, b"flood");
        assert_eq!(run.delivered[3], 0);
        assert!(run.received[3] > 0, "the flood came back");
    }

    /// Each node knows every member but itself: no cube, so the random fallback.
    fn fallback_net(n: usize, config: RumorConfig) -> Net {
        let ids: Vec<NodeId> = (0..n).map(id).collect();
        let all = infos(&ids);
        Net::build(ids, config, Links::Full, &[], |i| {
            let mut m = all.clone();
            m.remove(i);
            m
        })
    }

    #[test]
    fn invalid_cube_uses_random_fanout_with_forward_probability_and_max_hops() {
        let n = 32;
        let config = RumorConfig::service_mesh();
        let mut net = fallback_net(n, config);
        assert!(!net.nodes[0].routes_on_cube());
        let fanout = adaptive_fanout(n - 1, 3);
        assert_eq!(fanout, 4);
        // Over many rumors: forwarders at hop h forward with probability 1/(1+h).
        let mut first_receipts = [0usize; 4];
        let mut forwarded = [0usize; 4];
        for r in 0..300 {
            let run = net.broadcast(r % n, format!("fb{r}").as_bytes());
            let origin_sends: Vec<_> = run.sends.iter().filter(|s| s.0 == r % n).collect();
            assert_eq!(origin_sends.len(), fanout);
            assert!(origin_sends.iter().all(|s| s.2 == 1 && s.3 == ORIGIN));
            assert!(
                run.max_hop <= config.max_hops,
                "MaxHops bounds the fallback"
            );
            assert!(run.sends.iter().all(|s| s.3 == ORIGIN));
            assert_eq!(run.fallback, run.frames);
            // Relays that forwarded, by the hop they received.
            let mut first_hop: BTreeMap<usize, u8> = BTreeMap::new();
            for &(_, to, hop, _) in &run.sends {
                first_hop.entry(to).or_insert(hop);
            }
            for (&node, &hop) in first_hop.iter().filter(|(node, _)| **node != r % n) {
                first_receipts[usize::from(hop)] += 1;
                let sent = run.sends.iter().any(|s| s.0 == node);
                forwarded[usize::from(hop)] += usize::from(sent);
            }
            assert_eq!(run.retries, 0);
        }
        let rate = |h: usize| forwarded[h] as f64 / first_receipts[h] as f64;
        assert!((rate(1) - 0.5).abs() < 0.06, "hop 1: {}", rate(1));
        assert!((rate(2) - 1.0 / 3.0).abs() < 0.08, "hop 2: {}", rate(2));
        assert_eq!(forwarded[3], 0, "hop 3 = MaxHops never forwards");

        // P = 0: only the origin's frames.
        let mut quiet = fallback_net(
            n,
            RumorConfig {
                forward_probability: 0.0,
                ..config
            },
        );
        let run = quiet.broadcast(0, b"quiet");
        assert_eq!(run.frames, fanout);
        // MaxHops = 1: likewise.
        let mut short = fallback_net(
            n,
            RumorConfig {
                max_hops: 1,
                ..config
            },
        );
        assert_eq!(short.broadcast(5, b"short").frames, fanout);
        // Deterministic for a seed.
        let a = fallback_net(n, config).broadcast(7, b"det").sends;
        let b = fallback_net(n, config).broadcast(7, b"det").sends;
        assert_eq!(a, b);
    }

    #[test]
    fn unreachable_target_is_skipped_to_an_alternate_keeping_the_tree_exact() {
        let mut net = Net::new(8, RumorConfig::default(), Links::Full, &[]);
        net.nodes[0].peer_down(T0, &id(4));
        let run = net.broadcast(0, b"skip");
        for (i, &d) in run.delivered.iter().enumerate() {
            assert_eq!(d, usize::from(i != 0), "node {i}");
        }
        assert_eq!(run.frames, 7);
        assert_eq!(run.retries, 0);
        assert!(
            run.sends.contains(&(0, 5, 1, 2)),
            "the takeover got the level-2 frame"
        );
        assert_eq!(net.nodes[0].stats().alternate_sends, 1);
        assert_eq!(net.now, T0);
    }

    #[test]
    fn peer_down_fails_its_pending_frames_at_once() {
        let mut net = Net::new(8, RumorConfig::default(), Links::Full, &[]);
        net.cut.insert((0, 4));
        net.run = Run::new(8);
        net.nodes[0]
            .publish(T0, Bytes::from_static(b"down"))
            .unwrap();
        net.drain(0);
        // The connection to 4 drops before anything moves.
        net.nodes[0].peer_down(T0, &id(4));
        net.drain(0);
        net.settle();
        let run = core::mem::take(&mut net.run);
        for (i, &d) in run.delivered.iter().enumerate() {
            assert_eq!(d, usize::from(i != 0), "node {i}");
        }
        assert_eq!(run.retries, 1);
        assert_eq!(net.now, T0, "no timeout was needed");
        assert_eq!(net.pending(), 0);
    }

    #[test]
    fn last_resort_fallback_reaches_a_block_with_no_reachable_member() {
        let mut net = Net::new(8, RumorConfig::default(), Links::Full, &[]);
        for j in 4..8 {
            net.nodes[0].peer_down(T0, &id(j));
        }
        let run = net.broadcast(0, b"last resort");
        for (i, &d) in run.delivered.iter().enumerate() {
            assert_eq!(d, usize::from(i != 0), "node {i}");
        }
        assert!(run.fallback >= 1);
        assert!(run.dropped.is_empty());
        assert_eq!(net.pending(), 0);
    }

    #[test]
    fn retry_budget_is_enforced() {
        let config = RumorConfig {
            ack_retries: 2,
            ..RumorConfig::default()
        };
        let mut net = Net::new(16, config, Links::Full, &[]);
        // Everyone in 8..16 is dead to the origin: the frame is tried on 3 members.
        for j in 8..16 {
            net.cut.insert((0, j));
        }
        let run = net.broadcast(0, b"budget");
        assert_eq!(run.retries, 2);
        assert_eq!(run.dropped, [DropReason::RetriesExhausted]);
        assert_eq!(run.sends.iter().filter(|s| s.0 == 0).count(), 6);
        assert_eq!(run.delivered.iter().sum::<usize>(), 7, "only 1..8");
    }

    #[test]
    fn oversized_payload_is_refused_and_not_forwarded() {
        let mut p = RumorPusher::new(
            id(0),
            RumorConfig::default(),
            hypercube::Config::default(),
            1,
        );
        let max = Limits::DEFAULT.max_rumor_send as usize;
        assert_eq!(max, 256 * 1024);
        let big = Bytes::from(vec![7u8; max + 1]);
        assert_eq!(
            p.publish(T0, big.clone()),
            Err(PushError::TooLarge {
                len: max + 1,
                max: max as u32
            })
        );
        assert!(p.poll_output().is_none());
        assert_eq!(p.stats().refused_too_large, 1);
        assert!(p.publish(T0, Bytes::from(vec![7u8; max])).is_ok());

        // Received above the push cap: delivered, ACKed, not forwarded.
        let members = infos(&[id(0), id(1), id(2)]);
        p.set_members(T0, &members).unwrap();
        p.peer_up(id(1), true);
        p.peer_up(id(2), true);
        let frame = Rumor {
            hop: 1,
            from_dim: ORIGIN,
            payload: big,
        };
        p.handle_rumor(T0, &id(1), frame, true);
        let outs: Vec<PusherOutput> = core::iter::from_fn(|| p.poll_output()).collect();
        assert_eq!(outs.len(), 3, "ACK, Deliver, Received: {outs:?}");
        assert_eq!(p.stats().not_forwarded, 1);
    }

    #[test]
    fn lru_and_pending_table_are_bounded() {
        let config = RumorConfig {
            lru_capacity: NonZeroU32::new(8).unwrap(),
            max_pending_acks: NonZeroU32::new(4).unwrap(),
            ..RumorConfig::default()
        };
        let mut p = RumorPusher::new(id(0), config, hypercube::Config::default(), 1);
        p.set_members(T0, &infos(&[id(0), id(1)])).unwrap();
        p.peer_up(id(1), true);
        let mut evicted = 0;
        for i in 0..100u32 {
            p.publish(T0, Bytes::from(i.to_be_bytes().to_vec()))
                .unwrap();
            while let Some(out) = p.poll_output() {
                if let PusherOutput::Event(RumorEvent::Dropped { reason, .. }) = out {
                    assert_eq!(reason, DropReason::Evicted);
                    evicted += 1;
                }
            }
            assert!(p.stats().seen <= 8);
            assert!(p.stats().pending_acks <= 4);
        }
        assert_eq!(evicted, 96);
        assert!(matches!(
            p.publish(T0, Bytes::from(99u32.to_be_bytes().to_vec())),
            Err(PushError::Duplicate { .. })
        ));
        assert!(
            p.publish(T0, Bytes::from(0u32.to_be_bytes().to_vec()))
                .is_ok(),
            "evicted"
        );
    }

    #[test]
    fn configs_and_fanout() {
        let s = RumorConfig::service_mesh();
        assert_eq!((s.max_hops, s.fanout, s.forward_probability), (3, 3, 1.0));
        let a = RumorConfig::agent_mesh();
        assert_eq!((a.max_hops, a.fanout, a.forward_probability), (4, 3, 0.6));
        assert_eq!(s.ack_timeout, Duration::from_secs(3));
        assert_eq!(s.ack_retries, 5);
        assert_eq!(s.min_ack_timeout, Duration::from_secs(1));
        assert_eq!(s.max_payload, 256 * 1024);
        assert_eq!(RumorConfig::default(), s);
        let zero = RumorConfig {
            ack_timeout: Duration::ZERO,
            ..s
        };
        assert_eq!(zero.effective_ack_timeout(), Duration::from_secs(3));
        let cases = [
            (0, 0),
            (1, 1),
            (3, 3),
            (10, 3),
            (16, 4),
            (100, 6),
            (1024, 10),
        ];
        for (n, f) in cases {
            assert_eq!(adaptive_fanout(n, 3), f, "n={n}");
        }
        assert_eq!(adaptive_fanout(1, 0), 0, "floor(log2 1) = 0 with base 0");
        assert_eq!(adaptive_fanout(16, 1), 4);
    }

    /// The ACK timeout towards a peer follows its timed ACKs (RFC 6298) within
    /// [min_ack_timeout, ack_timeout]; a resend in place doubles it, and its ACK is not
    /// timed (Karn's rule).
    #[test]
    fn ack_timeout_adapts_to_the_ack_round_trip() {
        let config = RumorConfig {
            min_ack_timeout: Duration::from_millis(10),
            ..RumorConfig::default()
        };
        let mut p = RumorPusher::new(id(0), config, hypercube::Config::default(), 1);
        p.set_members(T0, &infos(&[id(0), id(1)])).unwrap();
        p.peer_up(id(1), true);
        assert_eq!(p.ack_timeout_for(&id(1)), Duration::from_secs(3), "untimed");
        assert_eq!(
            p.ack_timeout_for(&id(2)),
            Duration::from_secs(3),
            "nothing pooled"
        );
        let ms = Duration::from_millis;
        let mut t = Instant::from_secs(10);
        let send = |p: &mut RumorPusher, t: Instant, k: u32| {
            let rid = p.publish(t, Bytes::from(format!("m{k}"))).unwrap();
            while p.poll_output().is_some() {}
            rid
        };
        // First sample 40 ms: SRTT 40, RTTVAR 20 -> 120 ms.
        let rid = send(&mut p, t, 0);
        p.handle_ack(t + ms(40), &id(1), rid);
        assert_eq!(p.ack_timeout_for(&id(1)), ms(120));
        assert_eq!(
            p.ack_timeout_for(&id(2)),
            ms(240),
            "twice the pooled estimate"
        );
        // A second of 40 ms: RTTVAR 15 -> 100 ms; the next frame waits that long.
        t = t + ms(100);
        let rid = send(&mut p, t, 1);
        p.handle_ack(t + ms(40), &id(1), rid);
        assert_eq!(p.ack_timeout_for(&id(1)), ms(100));
        t = t + ms(100);
        let rid = send(&mut p, t, 2);
        assert_eq!(p.next_deadline(), Some(t + ms(100)));
        // Lost: resent in place (alone in its block) with 200 ms, then 400 ms.
        p.handle_timeout(t + ms(100));
        assert_eq!(p.next_deadline(), Some(t + ms(300)));
        p.handle_timeout(t + ms(300));
        assert_eq!(p.next_deadline(), Some(t + ms(700)));
        // The ACK of a resend is not a sample.
        p.handle_ack(t + ms(705), &id(1), rid);
        assert_eq!(p.ack_timeout_for(&id(1)), ms(100));
        // Clamped: 1 ms round trips reach the 10 ms floor; 5 s ones the 3 s ceiling.
        for (k, rtt, want) in [(3, ms(1), None), (4, Duration::from_secs(5), Some(3000))] {
            for j in 0..60 {
                t = t + Duration::from_secs(6);
                let rid = send(&mut p, t, 100 * k + j);
                p.handle_ack(t + rtt, &id(1), rid);
            }
            let got = p.ack_timeout_for(&id(1));
            match want {
                None => assert_eq!(got, ms(10)),
                Some(w) => assert_eq!(got, ms(w)),
            }
        }
        // Adaptation off: a floor at the ceiling.
        let mut q = RumorPusher::new(
            id(0),
            RumorConfig {
                min_ack_timeout: Duration::from_secs(3),
                ..RumorConfig::default()
            },
            hypercube::Config::default(),
            1,
        );
        q.set_members(T0, &infos(&[id(0), id(1)])).unwrap();
        q.peer_up(id(1), true);
        let rid = send(&mut q, t, 999);
        q.handle_ack(t + ms(40), &id(1), rid);
        assert_eq!(q.ack_timeout_for(&id(1)), Duration::from_secs(3));
    }

    #[test]
    fn ack_timeout_follows_set_ack_timeout() {
        let mut p = RumorPusher::new(
            id(0),
            RumorConfig::default(),
            hypercube::Config::default(),
            1,
        );
        p.set_members(T0, &infos(&[id(0), id(1)])).unwrap();
        p.peer_up(id(1), true);
        p.set_ack_timeout(Duration::from_millis(200));
        let t = Instant::from_secs(10);
        p.publish(t, Bytes::from_static(b"a")).unwrap();
        assert_eq!(p.next_deadline(), Some(t + Duration::from_millis(200)));
        p.handle_timeout(t + Duration::from_millis(199));
        assert_eq!(p.stats().ack_timeouts, 0);
        // An older instant is clamped, not a panic.
        p.handle_timeout(T0);
        p.handle_timeout(t + Duration::from_millis(200));
        assert_eq!(p.stats().ack_timeouts, 1);
        // id(1) is alone in its block: the same frame again, on the same timeout.
        assert_eq!(p.stats().retries, 1);
        assert_eq!(p.next_deadline(), Some(t + Duration::from_millis(400)));
    }

    #[test]
    fn refused_publish_changes_nothing_and_admits_the_actual_frames() {
        let mut p = RumorPusher::new(
            id(0),
            RumorConfig::default(),
            hypercube::Config::default(),
            1,
        );
        p.set_members(T0, &infos(&[id(0), id(1), id(2)])).unwrap();
        p.peer_up(id(1), true);
        p.peer_up(id(2), true);
        let payload = Bytes::from_static(b"a");
        let mut asked = None;
        let refused = p.publish_if(T0, payload.clone(), |frames| {
            asked = Some(frames);
            false
        });
        assert_eq!(refused, Err(PushError::Refused { frames: 2 }));
        assert_eq!(asked, Some(2));
        assert!(p.poll_output().is_none());
        assert_eq!((p.stats().published, p.stats().pending_acks), (0, 0));
        assert!(!p.tracker().contains(&rumor_id(&payload)));
        p.publish_if(T0, payload, |frames| frames == 2).unwrap();
        let origin_sends = core::iter::from_fn(|| p.poll_output())
            .filter(|o| matches!(o, PusherOutput::Send { origin: true, .. }))
            .count();
        assert_eq!(origin_sends, 2);
    }

    /// Arbitrary inputs never panic and keep every bound.
    #[test]
    fn arbitrary_inputs_keep_the_bounds() {
        fn prop(ops: Vec<(u8, u8, u8, u16)>) -> TestResult {
            let config = RumorConfig {
                lru_capacity: NonZeroU32::new(16).unwrap(),
                max_pending_acks: NonZeroU32::new(8).unwrap(),
                ack_retries: 2,
                ..RumorConfig::default()
            };
            let ids: Vec<NodeId> = (0..6).map(id).collect();
            let mut p = RumorPusher::new(ids[0].clone(), config, hypercube::Config::default(), 5);
            let mut now = T0;
            for (op, a, b, c) in ops {
                let peer = &ids[usize::from(a) % 6];
                let payload = Bytes::from(vec![b % 8; usize::from(c % 4)]);
                match op % 8 {
                    0 => {
                        let _ = p.publish(now, payload);
                    }
                    1 => {
                        let frame = Rumor {
                            hop: b,
                            from_dim: (c >> 8) as u8,
                            payload,
                        };
                        p.handle_rumor(now, peer, frame, c % 2 == 0);
                    }
                    2 => p.handle_ack(now, peer, rumor_id(&payload)),
                    3 => {
                        now = now + Duration::from_millis(u64::from(c));
                        p.handle_timeout(now);
                    }
                    4 => p.peer_up(peer.clone(), b % 2 == 0),
                    5 => p.peer_down(now, peer),
                    6 => {
                        let k = usize::from(b) % 7;
                        let members = infos(&ids[usize::from(a) % 3..k.max(usize::from(a) % 3)]);
                        p.set_members(now, &members).unwrap();
                    }
                    _ => p.handle_timeout(Instant::from_micros(u64::from(c))),
                }
                while p.poll_output().is_some() {}
                let s = p.stats();
                if s.seen > 16 || s.pending_acks > 8 {
                    return TestResult::failed();
                }
                if p.next_deadline().is_some() != (s.pending_acks > 0) {
                    return TestResult::failed();
                }
            }
            TestResult::passed()
        }
        QuickCheck::new()
            .tests(300)
            .quickcheck(prop as fn(Vec<(u8, u8, u8, u16)>) -> TestResult);
    }

    /// Frames, ACKs and hops per broadcast for a few sizes and random origins, fault-free
    /// and with the origin's top-dimension delegate dead (the largest subtree). Run with
    /// `cargo test --release -p whisper-proto figures -- --ignored --nocapture`.
    #[test]
    #[ignore = "prints a table; builds 4,096 pushers"]
    fn figures_table() {
        let mut rng = Rng::new(2024);
        std::println!(
            "|     N | D | origin | frames | acks | max hop | dead | frames | acks | retries | dropped | max hop | live missed |"
        );
        std::println!(
            "|------:|--:|-------:|-------:|-----:|--------:|-----:|-------:|-----:|--------:|--------:|--------:|------------:|"
        );
        for n in [16usize, 100, 1000, 1024, 4096] {
            let links = if n <= 1024 {
                Links::Full
            } else {
                Links::Neighbourhood
            };
            let mut net = Net::new(n, RumorConfig::default(), links, &[]);
            let dims = ceil_log2(n);
            for k in 0..3 {
                let origin = rng.below(n as u64) as usize;
                let clean = net.broadcast(origin, format!("clean {n} {k}").as_bytes());
                assert_exact(&net, &clean, origin);
                let top = net.nodes[origin].cube().delegate(dims - 1).unwrap().clone();
                let dead = net.index[&top];
                net.dead = Some(dead);
                let hurt = net.broadcast(origin, format!("hurt {n} {k}").as_bytes());
                net.dead = None;
                let missed = (0..n)
                    .filter(|&i| i != dead && i != origin && hurt.delivered[i] != 1)
                    .count();
                assert_eq!(missed, 0);
                std::println!(
                    "| {n:>5} | {dims:>2} | {origin:>6} | {:>6} | {:>4} | {:>7} | {dead:>4} | {:>6} | {:>4} | {:>7} | {:>7} | {:>7} | {missed:>11} |",
                    clean.frames,
                    clean.acks,
                    clean.max_hop,
                    hurt.frames,
                    hurt.acks,
                    hurt.retries,
                    hurt.dropped.len(),
                    hurt.max_hop,
                );
            }
        }
    }
}
