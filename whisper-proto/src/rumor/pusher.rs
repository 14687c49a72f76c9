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
//!
//! # Files
//!
//! This file holds the pusher's state and its inputs and getters; `config` the
//! [`RumorConfig`] and its defaults; `output` what it hands back ([`PusherOutput`], its
//! events, errors and counters); `routing` the routing decisions and the pending-ACK
//! table. The ACK round trip is estimated by the shared [`SmoothedRtt`].

mod config;
mod output;
mod routing;
#[cfg(test)]
mod tests;

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::vec::Vec;

use bytes::Bytes;

use super::{RumorId, RumorTracker, rumor_id};
use crate::NodeId;
use crate::flow::rtt::SmoothedRtt;
use crate::hypercube::{self, HypercubeError, HypercubeExt, MemberInfo, ORIGIN};
use crate::rng::{RandomSource, Rng};
use crate::time::{Duration, Instant};
use crate::wire::{Rumor, RumorAck};
use routing::{Chain, Step};

pub use config::{
    DEFAULT_ACK_RETRIES, DEFAULT_ACK_TIMEOUT, DEFAULT_MAX_PENDING_ACKS, DEFAULT_MIN_ACK_TIMEOUT,
    RumorConfig,
};
pub use output::{
    DropReason, PushError, PushFrame, PusherOutput, RumorEvent, RumorStats, SendPath,
};
pub use routing::adaptive_fanout;

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
    rtt: Option<SmoothedRtt>,
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
    pooled_rtt: Option<SmoothedRtt>,
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
        let own = self
            .peers
            .get(peer)
            .and_then(|p| p.rtt)
            .map(SmoothedRtt::rto);
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
            let fold = |r: Option<SmoothedRtt>| {
                Some(r.map_or_else(|| SmoothedRtt::first(sample), |r| r.update(sample)))
            };
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
}
