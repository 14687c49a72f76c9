//! Routing: the exact hypercube tree, alternates, retries and the random fallback
//! (see the [pusher docs](super)), and the pending-ACK table.

use alloc::vec::Vec;

use bytes::Bytes;

use super::{DropReason, Pending, PushFrame, PusherOutput, RumorEvent, RumorPusher, SendPath};
use crate::NodeId;
use crate::hypercube::{ORIGIN, Target};
use crate::rng::RandomSource;
use crate::rumor::RumorId;
use crate::time::{Duration, Instant};
use crate::wire::Rumor;

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
pub(super) enum Chain {
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
pub(super) enum Step {
    /// Give up on `peer`'s part of the frame.
    Drop { peer: NodeId, reason: DropReason },
    /// Send the frame to `to`. `retry` is the failed peer and attempt when this is a
    /// last-resort fallback retry.
    Send {
        to: NodeId,
        from_dim: u8,
        path: SendPath,
        chain: Chain,
        retry: Option<(NodeId, u8)>,
    },
}

impl RumorPusher {
    // internals

    pub(super) fn drop_frame(&mut self, id: RumorId, peer: NodeId, reason: DropReason) {
        self.stats.dropped += 1;
        self.event(RumorEvent::Dropped { id, peer, reason });
    }

    /// Plans the frames (carrying `hop`) that forward a rumor just accepted, or
    /// originate one (`hop = 1`, `from_dim = ORIGIN`, no sender): down the cube tree, or
    /// by the random fallback without a cube.
    pub(super) fn route(
        &mut self,
        plan: &mut Vec<Step>,
        hop: u8,
        from_dim: u8,
        sender: Option<&NodeId>,
    ) {
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
    pub(super) fn apply(
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
    pub(super) fn hand_off(
        &mut self,
        plan: &mut Vec<Step>,
        hop: u8,
        target: Target,
        sender: Option<&NodeId>,
    ) {
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
    pub(super) fn on_failure(&mut self, now: Instant, p: Pending) {
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
    pub(super) fn again(&self, sent: &[NodeId], failed: &NodeId) -> Option<NodeId> {
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
    pub(super) fn next_alternate(
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
    pub(super) fn block_has_others(&self, from_dim: u8, owner: &NodeId) -> bool {
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
    pub(super) fn fallback(
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
    pub(super) fn send(
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
    pub(super) fn track(&mut self, p: Pending) {
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
    pub(super) fn untrack(&mut self, seq: u64) -> Option<Pending> {
        let p = self.pending.remove(&seq)?;
        self.by_key.remove(&(p.id, p.peer.clone()));
        self.deadlines.remove(&(p.deadline, seq));
        Some(p)
    }
}
