//! Flow control wired into the engine (issue 5): the per-peer adaptive cadence, the
//! backpressure signal and the sender-side backoff, the rate limiter, the CPU gate and
//! the RTT measurer. The engine files call the small hooks below; the logic lives in
//! [`crate::flow`]: [`adaptive`](crate::flow::adaptive),
//! [`token_bucket`](crate::flow::token_bucket), [`cpu_gate`](crate::flow::cpu_gate) and
//! [`rtt`](crate::flow::rtt).
//!
//! # Definitions
//! * **Pending exchanges** (backpressure): G1 exchange replies this node has queued that
//!   the driver has not yet taken from [`Engine::poll_action`] (the reply being built
//!   counts itself). More than [`Config::backpressure_threshold`](crate::Config)
//!   (default 5) sets `backpressure_signal` in that reply's meta and emits
//!   [`Event::Backpressure`] on each transition.
//! * **Sender backoff**: every G1 reply the initiator reads feeds its connection's
//!   [`PeerBackoff`]; while it runs, the connection's gossip rounds are skipped (the
//!   round timer is moved to the backoff's end). A round ended by a G2 digest match
//!   carries no signal and leaves the backoff as it is.
//! * **Cadence**: one [`AdaptiveInterval`] per connection (base =
//!   [`Config::gossip_interval`](crate::Config), min/max from the config); the round's
//!   outcome is the records sent and applied and whether the peer's last reported
//!   fingerprint equals ours (a digest match counts as equal). While this node itself
//!   signals backpressure the interval also grows (`apply_backpressure`).
//! * **Inbound limit**: every frame from an identified peer takes one token of its
//!   bucket, except *control* frames: keepalives, and G1/G2/G2B frames on a connection we
//!   dialed while our round is open (the replies we asked for). Frames over the bucket
//!   are dropped and counted; a peer in cooldown has all its non-control frames dropped
//!   ([`Event::PeerCooldown`] when it starts). A dropped G1 request goes unanswered: the
//!   peer's own exchange timeout handles it.
//! * **Outbound**: publish, query, query responses and broadcast relays take egress
//!   tokens (bytes × frames) at their topic's priority (a publish: the frames the rumor
//!   pusher actually routes it to); the overload queue is the
//!   engine's pending action count ([`Engine::poll_action`] not yet drained): at
//!   [`RateLimitConfig::queue_threshold`] (default 1024) publishes on topics of priority
//!   ≤ 0 are refused with [`PublishError::Backpressure`]; higher priorities are bounded
//!   only by [`Config::max_queued_actions`](crate::Config).
//! * **CPU gate**: sampled on each `handle_timeout` that fires a timer; consulted
//!   before a publish (refused) and before answering a query (skipped, counted).

use super::{Engine, Role, Timer};
use crate::action::Event;
use crate::config::Config;
use crate::flow::adaptive::{
    AdaptiveInterval, AdaptiveStats, BackpressureMonitor, ExchangeOutcome, PeerBackoff,
};
use crate::flow::cpu_gate::CpuGate;
use crate::flow::rtt::RttMeasurer;
use crate::flow::token_bucket::{RateLimitConfig, RateLimitStats, TokenBucketLimiter, Verdict};
use crate::node::{ConnId, NodeId};
use crate::time::{Duration, Instant};
use crate::topic::Pressure;
use crate::wire::Frame;
use alloc::collections::VecDeque;

/// Engine-wide flow state.
#[derive(Debug)]
pub(super) struct Flow {
    limiter: TokenBucketLimiter,
    gate: CpuGate,
    rtt: RttMeasurer,
    monitor: BackpressureMonitor,
    /// Action positions (1-based, counted since start) of queued exchange replies.
    replies: VecDeque<u64>,
    /// Actions taken by the driver since start.
    popped: u64,
    counters: FlowCounters,
}

#[derive(Clone, Copy, Debug, Default)]
struct FlowCounters {
    dropped_inbound: u64,
    cpu_refused: u64,
    responses_skipped: u64,
    relays_refused: u64,
    rounds_skipped: u64,
    signals_received: u64,
    signals_sent: u64,
}

impl Flow {
    pub(super) fn new(config: &Config, now: Instant) -> Self {
        Self {
            limiter: TokenBucketLimiter::new(config.rate_limit, now),
            gate: CpuGate::new(config.cpu_gate),
            rtt: RttMeasurer::default(),
            monitor: BackpressureMonitor::new(config.backpressure_threshold),
            replies: VecDeque::new(),
            popped: 0,
            counters: FlowCounters::default(),
        }
    }

    /// Takes egress for `frames` frames of `bytes` each at `priority`: the frames a
    /// publish actually sends ([`crate::rumor::RumorPusher::publish_if`]).
    pub(super) fn admit_egress(
        &mut self,
        now: Instant,
        bytes: usize,
        frames: usize,
        priority: i32,
    ) -> bool {
        self.limiter
            .allow_egress(now, bytes.saturating_mul(frames), priority)
    }

    /// The driver took one action.
    pub(super) fn on_poll(&mut self) {
        self.popped += 1;
        while self.replies.front().is_some_and(|&i| i <= self.popped) {
            self.replies.pop_front();
        }
    }
}

/// Per-connection flow state.
#[derive(Debug)]
pub(super) struct ConnFlow {
    interval: AdaptiveInterval,
    backoff: PeerBackoff,
    sent: usize,
    applied: usize,
    in_sync: Option<bool>,
    peer_fingerprint: u64,
    local_fingerprint: u64,
    request_at: Option<Instant>,
}

impl ConnFlow {
    pub(super) fn new(config: &Config) -> Self {
        Self {
            interval: AdaptiveInterval::new(
                config.gossip_interval,
                config.gossip_min.min(config.gossip_interval),
                config.gossip_max.max(config.gossip_interval),
            ),
            backoff: PeerBackoff::default(),
            sent: 0,
            applied: 0,
            in_sync: None,
            peer_fingerprint: 0,
            local_fingerprint: 0,
            request_at: None,
        }
    }
}

/// A snapshot of the engine's flow control ([`Engine::flow_stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct FlowStats {
    /// The rate limiter.
    pub rate: RateLimitStats,
    /// Inbound frames dropped by the per-peer limiter (throttled or in cooldown).
    pub dropped_inbound: u64,
    /// Queued actions (the overload queue's depth).
    pub queue_depth: usize,
    /// Pending exchanges (queued, undrained G1 replies).
    pub pending_exchanges: u32,
    /// True while this node signals backpressure.
    pub backpressure: bool,
    /// Replies sent with the backpressure signal.
    pub backpressure_signals_sent: u64,
    /// Replies read with the backpressure signal.
    pub backpressure_signals_received: u64,
    /// Gossip rounds skipped because the peer asked for backoff.
    pub rounds_skipped_backoff: u64,
    /// The CPU gate's load, `[0, 1]`.
    pub cpu_load: f64,
    /// True when the CPU gate allows work.
    pub cpu_allow: bool,
    /// Publishes refused by the CPU gate.
    pub cpu_refused_publishes: u64,
    /// Query responses skipped by the CPU gate or the egress limit.
    pub responses_skipped: u64,
    /// Broadcast relays refused by the egress limit.
    pub relays_refused: u64,
    /// Mean G1 exchange RTT over the last samples.
    pub rtt_avg: Duration,
    /// The last G1 exchange RTT.
    pub rtt_last: Duration,
    /// RTT samples held.
    pub rtt_samples: usize,
}

/// One connection's flow state ([`Engine::peer_flow`]).
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
#[non_exhaustive]
pub struct PeerFlow {
    /// The adaptive interval.
    pub interval: AdaptiveStats,
    /// The current backoff (zero when none).
    pub backoff: Duration,
    /// When the backoff ends.
    pub backoff_until: Option<Instant>,
    /// When the next round is armed (dialer only).
    pub next_round: Option<Instant>,
}

impl Engine {
    /// The flow-control snapshot.
    pub fn flow_stats(&mut self) -> FlowStats {
        let now = self.now;
        let f = &mut self.flow;
        let c = f.counters;
        FlowStats {
            rate: f.limiter.stats(now),
            dropped_inbound: c.dropped_inbound,
            queue_depth: self.actions.len(),
            pending_exchanges: f.replies.len() as u32,
            backpressure: f.monitor.is_overloaded(),
            backpressure_signals_sent: c.signals_sent,
            backpressure_signals_received: c.signals_received,
            rounds_skipped_backoff: c.rounds_skipped,
            cpu_load: f.gate.load(),
            cpu_allow: f.gate.allow(),
            cpu_refused_publishes: c.cpu_refused,
            responses_skipped: c.responses_skipped,
            relays_refused: c.relays_refused,
            rtt_avg: f.rtt.avg(),
            rtt_last: f.rtt.last(),
            rtt_samples: f.rtt.count(),
        }
    }

    /// The flow state of `conn`.
    pub fn peer_flow(&self, conn: ConnId) -> Option<PeerFlow> {
        let c = self.conns.get(&conn)?;
        Some(PeerFlow {
            interval: c.flow.interval.stats(),
            backoff: c.flow.backoff.current(),
            backoff_until: c.flow.backoff.until(),
            next_round: c.deadlines.get(&Timer::Gossip).copied(),
        })
    }

    /// Sets the external load reading the CPU gate max-merges with its tick skew
    /// (clamped to `[0, 1]`).
    pub fn set_external_load(&mut self, load: f64) {
        self.flow.gate.set_external(load);
    }

    /// Sets the CPU gate's threshold (clamped to `[0, 1]`; 0 disables the gate).
    pub fn set_cpu_threshold(&mut self, threshold: f64) {
        self.flow.gate.set_threshold(threshold);
    }

    /// The RTT measurer.
    pub fn rtt(&self) -> &RttMeasurer {
        &self.flow.rtt
    }

    /// The rate limiter's configuration.
    pub fn rate_limit_config(&self) -> &RateLimitConfig {
        self.flow.limiter.config()
    }

    /// True while `peer` is in its inbound cooldown.
    pub fn peer_in_cooldown(&self, peer: &NodeId) -> bool {
        self.flow.limiter.peer_in_cooldown(self.now, peer)
    }

    // ---- hooks --------------------------------------------------------------------

    /// `handle_timeout` at `self.now`: samples the tick skew when a timer is due.
    pub(super) fn flow_tick(&mut self) {
        if let Some(&(at, _, _)) = self.timers.first() {
            if at <= self.now {
                self.flow.gate.on_tick(self.now, at);
            }
        }
    }

    /// The driver took an action.
    pub(super) fn flow_polled(&mut self) {
        self.flow.on_poll();
    }

    /// The last connection to `peer` is gone: forget its limiter state.
    pub(super) fn flow_forget(&mut self, peer: &NodeId) {
        if !self.conns.values().any(|c| c.peer.as_ref() == Some(peer)) {
            self.flow.limiter.remove_peer(peer);
        }
    }

    /// Inbound admission of one frame from an identified peer. False: drop it.
    pub(super) fn flow_admit(&mut self, conn: ConnId, peer: &NodeId, frame: &Frame) -> bool {
        let solicited = self
            .conns
            .get(&conn)
            .is_some_and(|c| c.role == Role::Dialer && c.sync.in_round());
        let control = match frame {
            Frame::Exchange(ex) => ex.is_keepalive() || solicited,
            Frame::Digest(_) | Frame::BucketDigest(_) => solicited,
            Frame::Hello(_) => true,
            _ => false,
        };
        if control {
            return true;
        }
        match self.flow.limiter.allow_peer(self.now, peer) {
            Verdict::Allowed => true,
            Verdict::Throttled | Verdict::InCooldown => {
                self.flow.counters.dropped_inbound += 1;
                false
            }
            Verdict::CooldownStarted => {
                self.flow.counters.dropped_inbound += 1;
                let until = self.now.saturating_add(self.flow.limiter.config().cooldown);
                self.emit(Event::PeerCooldown {
                    conn,
                    peer: peer.clone(),
                    until,
                });
                false
            }
        }
    }

    fn fanout_bytes(&self, bytes: usize, targets: usize) -> usize {
        bytes.saturating_mul(targets)
    }

    /// A publish on a topic of `priority`: the CPU gate and the overload queue. Its
    /// egress is taken from the frames the pusher actually sends ([`Flow::admit_egress`]).
    pub(super) fn flow_admit_publish(&mut self, priority: i32) -> Result<(), Pressure> {
        if !self.flow.gate.allow() {
            self.flow.counters.cpu_refused += 1;
            return Err(Pressure::Cpu);
        }
        if priority <= 0 && self.flow.limiter.overloaded(self.actions.len()) {
            self.flow.limiter.count_backpressure();
            return Err(Pressure::Queue);
        }
        Ok(())
    }

    /// A query of `bytes` to `targets` peers (egress only).
    pub(super) fn flow_admit_query(
        &mut self,
        priority: i32,
        bytes: usize,
        targets: usize,
    ) -> Result<(), Pressure> {
        if !self.flow.gate.allow() {
            self.flow.counters.cpu_refused += 1;
            return Err(Pressure::Cpu);
        }
        let total = self.fanout_bytes(bytes, targets);
        if !self.flow.limiter.allow_egress(self.now, total, priority) {
            return Err(Pressure::Egress);
        }
        Ok(())
    }

    /// Whether to answer a query on `topic` (CPU gate, then egress of `bytes`).
    pub(super) fn flow_admit_response(&mut self, topic: &str, bytes: usize) -> bool {
        let priority = self.topics.topics.get(topic).map_or(0, |t| t.priority);
        let ok =
            self.flow.gate.allow() && self.flow.limiter.allow_egress(self.now, bytes, priority);
        if !ok {
            self.flow.counters.responses_skipped += 1;
        }
        ok
    }

    /// Whether to relay a broadcast of `bytes` on `topic` to its `targets`.
    pub(super) fn flow_admit_relay(&mut self, topic: &str, bytes: usize, targets: usize) -> bool {
        let priority = self.topics.topics.get(topic).map_or(0, |t| t.priority);
        let total = self.fanout_bytes(bytes, targets);
        let ok = self.flow.limiter.allow_egress(self.now, total, priority);
        if !ok {
            self.flow.counters.relays_refused += 1;
        }
        ok
    }

    /// The backpressure bit for a G1 body about to be sent on `conn`: replies (acceptor
    /// side) count as pending exchanges until the driver takes them.
    pub(super) fn flow_reply_signal(&mut self, conn: ConnId) -> bool {
        if self.conns.get(&conn).map(|c| c.role) != Some(Role::Acceptor) {
            return false;
        }
        let was = self.flow.monitor.is_overloaded();
        let position = self.flow.popped + self.actions.len() as u64 + 1;
        self.flow.replies.push_back(position);
        self.flow
            .monitor
            .set_pending(self.flow.replies.len() as u32);
        let now = self.flow.monitor.is_overloaded();
        if now != was {
            self.emit(Event::Backpressure {
                overloaded: now,
                pending: self.flow.monitor.pending(),
            });
        }
        if now {
            self.flow.counters.signals_sent += 1;
        }
        now
    }

    /// Initiator: a G1 request went out on `conn` now.
    pub(super) fn flow_request_sent(&mut self, conn: ConnId) {
        let now = self.now;
        if let Some(c) = self.conns.get_mut(&conn) {
            c.flow.request_at = Some(now);
        }
    }

    /// Initiator: records sent in a request body.
    pub(super) fn flow_note_sent(&mut self, conn: ConnId, records: usize) {
        if let Some(c) = self.conns.get_mut(&conn) {
            if c.role == Role::Dialer {
                c.flow.sent = c.flow.sent.saturating_add(records);
            }
        }
    }

    /// Initiator: a G1 reply arrived with `applied` records (its meta, with the peer's
    /// signal, is already in `peer_meta`).
    pub(super) fn flow_on_reply(&mut self, conn: ConnId, applied: usize) {
        let now = self.now;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let signal = c.peer_meta.backpressure_signal;
        c.flow.applied = c.flow.applied.saturating_add(applied);
        c.flow.backoff.record_signal(now, signal);
        if let Some(at) = c.flow.request_at.take() {
            self.flow.rtt.record(now.saturating_duration_since(at));
        }
        if signal {
            self.flow.counters.signals_received += 1;
        }
    }

    /// Initiator: the fingerprints after a topic exchange (or a digest match).
    pub(super) fn flow_note_fingerprints(&mut self, conn: ConnId, ours: u64, theirs: u64) {
        if let Some(c) = self.conns.get_mut(&conn) {
            let equal = theirs != 0 && theirs == ours;
            c.flow.in_sync = Some(c.flow.in_sync.unwrap_or(true) && equal);
            c.flow.peer_fingerprint = theirs;
            c.flow.local_fingerprint = ours;
        }
    }

    /// Initiator: true when the round must be skipped (the peer asked for backoff); the
    /// round timer is then moved to the backoff's end. Otherwise resets the round tally.
    pub(super) fn flow_skip_round(&mut self, conn: ConnId) -> bool {
        let now = self.now;
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        if c.flow.backoff.should_skip(now) {
            let until = c.flow.backoff.until().unwrap_or(now);
            self.flow.counters.rounds_skipped += 1;
            self.set_timer(conn, Timer::Gossip, until);
            return true;
        }
        c.flow.sent = 0;
        c.flow.applied = 0;
        c.flow.in_sync = None;
        false
    }

    /// Initiator: when the next round starts, from the finished round's outcome.
    pub(super) fn flow_next_exchange_at(&mut self, conn: ConnId) -> Instant {
        let overloaded = self.flow.monitor.is_overloaded();
        let now = self.now;
        let Some(c) = self.conns.get_mut(&conn) else {
            return now + self.config.gossip_interval;
        };
        let f = &mut c.flow;
        let in_sync = f.in_sync.unwrap_or(false);
        // Every exchanged topic matched (or the G2 digest did): present the round as
        // "peer fingerprint equals ours"; otherwise as differing.
        let (peer_fingerprint, local_fingerprint) = if in_sync {
            let fp = f.local_fingerprint.max(1);
            (fp, fp)
        } else if f.peer_fingerprint == f.local_fingerprint {
            (f.peer_fingerprint, f.local_fingerprint ^ 1)
        } else {
            (f.peer_fingerprint, f.local_fingerprint)
        };
        let outcome = ExchangeOutcome {
            records_sent: f.sent,
            records_applied: f.applied,
            peer_fingerprint,
            local_fingerprint,
        };
        let mut wait = f.interval.next(&outcome, &mut self.rng);
        if !self.config.adaptive_cadence {
            wait = self.config.gossip_interval;
        } else if overloaded {
            wait = f.interval.apply_backpressure(true, &mut self.rng);
        }
        let at = now.saturating_add(wait);
        match f.backoff.until() {
            Some(until) if until > at => until,
            _ => at,
        }
    }
}
