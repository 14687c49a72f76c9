//! The engine's flow limiter, [`TokenBucketLimiter`] (seed 000 `RateLimiter`, reference
//! §g): a per-peer token bucket with violation accounting and cooldown, a global egress
//! byte bucket with priority headroom, and the outbound-queue overload threshold.
//!
//! Not to be confused with the sliding-window [`crate::util::SlidingWindowLimiter`] in
//! `util::sliding_window` (seed 002); this one is a token bucket.
//!
//! # Token bucket
//! As `golang.org/x/time/rate`: at most `burst` tokens, starts full, refills
//! continuously at `rate` per second (fractional tokens), `allow_n` takes `n` tokens
//! only when all are there. Time is the injected [`Instant`].
//!
//! # Per peer
//! Each admitted message takes one token. A message over the bucket is *throttled* and
//! counts as a violation; violations are counted in a 5-minute window, and at 1000 the
//! peer is put in a 5-minute *cooldown* during which every message of it is refused
//! (not counted as a violation). When the cooldown ends the violations reset.
//! Per-peer state is bounded: at most [`RateLimitConfig::max_peers`] entries (the
//! engine removes a peer's entry when its last connection closes; a new peer past the
//! bound evicts the smallest-keyed entry that is not in cooldown).
//!
//! # Egress priority headroom
//! One global bucket in bytes per second, with a configurable burst (not fixed at
//! 10 MiB as in the Go code). A send of `n` bytes at priority `p` passes only if, after
//! it, the bucket keeps at least `reserve(p) × burst` tokens, where
//! `reserve(p) = 0.5 × (1 − p / 10)` clamped to `[0, 0.5]`: priority ≥ 10 may use the
//! whole burst, priority ≤ 0 only the upper half, priorities in between a linear share.
//! So under saturation low-priority traffic is refused first and high-priority traffic
//! still passes.

use crate::defaults;
use crate::node::NodeId;
use crate::time::{Duration, Instant};
use alloc::collections::BTreeMap;

/// Priority at and above which a topic may use the whole egress burst.
pub const HIGH_PRIORITY: i32 = 10;

/// A token bucket over injected time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate_per_sec: f64, burst: f64, now: Instant) -> Self {
        Self {
            rate: rate_per_sec.max(0.0),
            burst: burst.max(0.0),
            tokens: burst.max(0.0),
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        if now > self.last {
            let dt = now.saturating_duration_since(self.last).as_micros() as f64 / 1e6;
            self.tokens = (self.tokens + dt * self.rate).min(self.burst);
            self.last = now;
        }
    }

    /// Tokens available at `now`.
    pub fn tokens(&mut self, now: Instant) -> f64 {
        self.refill(now);
        self.tokens
    }

    /// Takes `n` tokens if at least `n` are there, keeping at least `keep` afterwards.
    pub fn allow_n_keeping(&mut self, now: Instant, n: f64, keep: f64) -> bool {
        self.refill(now);
        if self.tokens - n >= keep {
            self.tokens -= n;
            true
        } else {
            false
        }
    }

    /// Takes `n` tokens if at least `n` are there.
    pub fn allow_n(&mut self, now: Instant, n: f64) -> bool {
        self.allow_n_keeping(now, n, 0.0)
    }

    /// The burst.
    pub fn burst(&self) -> f64 {
        self.burst
    }
}

/// Limits; `Default` gives the seed's values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimitConfig {
    /// Per-peer messages per second (default 100).
    pub peer_per_sec: f64,
    /// Per-peer burst (default 500).
    pub peer_burst: f64,
    /// Violations within [`Self::violation_window`] that start a cooldown (default 1000).
    pub violation_threshold: u32,
    /// Violation window (default 5 min).
    pub violation_window: Duration,
    /// Cooldown length (default 5 min).
    pub cooldown: Duration,
    /// Global egress, bytes per second (default 10 MiB/s).
    pub egress_bytes_per_sec: f64,
    /// Global egress burst, bytes (default 10 MiB; configurable).
    pub egress_burst: f64,
    /// Queued actions at or above which low-priority publishes are refused with
    /// [`crate::PublishError::Backpressure`] (default 1024).
    pub queue_threshold: usize,
    /// Most per-peer entries (default 1024).
    pub max_peers: usize,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            peer_per_sec: f64::from(defaults::PEER_MESSAGES_PER_SEC),
            peer_burst: f64::from(defaults::PEER_BURST),
            violation_threshold: 1000,
            violation_window: Duration::from_secs(300),
            cooldown: Duration::from_secs(300),
            egress_bytes_per_sec: defaults::EGRESS_BYTES_PER_SEC as f64,
            egress_burst: defaults::EGRESS_BURST as f64,
            queue_threshold: defaults::OVERLOAD_QUEUE_THRESHOLD,
            max_peers: 1024,
        }
    }
}

/// The verdict on one inbound message.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Verdict {
    /// Within the allowance.
    Allowed,
    /// Over the bucket: dropped, one violation.
    Throttled,
    /// Over the bucket, and that violation started a cooldown.
    CooldownStarted,
    /// The peer is in cooldown: dropped.
    InCooldown,
}

/// One peer's limiter state.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PeerLimiter {
    bucket: TokenBucket,
    violations: u32,
    window_start: Instant,
    cooldown_until: Option<Instant>,
}

impl PeerLimiter {
    fn new(cfg: &RateLimitConfig, now: Instant) -> Self {
        Self {
            bucket: TokenBucket::new(cfg.peer_per_sec, cfg.peer_burst, now),
            violations: 0,
            window_start: now,
            cooldown_until: None,
        }
    }

    fn allow(&mut self, cfg: &RateLimitConfig, now: Instant) -> Verdict {
        if let Some(end) = self.cooldown_until {
            if now < end {
                return Verdict::InCooldown;
            }
            self.cooldown_until = None;
            self.violations = 0;
            self.window_start = now;
        }
        if now.saturating_duration_since(self.window_start) > cfg.violation_window {
            self.window_start = now;
            self.violations = 0;
        }
        if self.bucket.allow_n(now, 1.0) {
            return Verdict::Allowed;
        }
        self.violations = self.violations.saturating_add(1);
        if self.violations >= cfg.violation_threshold {
            self.cooldown_until = Some(now.saturating_add(cfg.cooldown));
            return Verdict::CooldownStarted;
        }
        Verdict::Throttled
    }

    fn in_cooldown(&self, now: Instant) -> bool {
        self.cooldown_until.is_some_and(|end| now < end)
    }
}

/// Counters and gauges of a [`TokenBucketLimiter`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct RateLimitStats {
    /// Peers with limiter state.
    pub peers: usize,
    /// Of which in cooldown now.
    pub peers_in_cooldown: usize,
    /// Inbound messages admitted.
    pub admitted: u64,
    /// Inbound messages dropped over the bucket.
    pub throttled: u64,
    /// Inbound messages dropped during a cooldown.
    pub refused_cooldown: u64,
    /// Cooldowns started.
    pub cooldowns: u64,
    /// Outbound sends refused by the egress bucket.
    pub egress_refused: u64,
    /// Egress bytes admitted.
    pub egress_bytes: u64,
    /// Egress tokens left (bytes).
    pub egress_tokens: f64,
    /// Publishes refused for the queue threshold.
    pub backpressure_refused: u64,
    /// The queue threshold.
    pub queue_threshold: usize,
    /// Approximate bytes held by per-peer state (entries × per-entry size).
    pub state_bytes: usize,
}

/// Per-peer inbound limits, global egress, overload threshold.
#[derive(Clone, Debug)]
pub struct TokenBucketLimiter {
    cfg: RateLimitConfig,
    peers: BTreeMap<NodeId, PeerLimiter>,
    egress: TokenBucket,
    stats: RateLimitStats,
}

impl TokenBucketLimiter {
    /// Per-entry memory estimate: the map's key and value plus B-tree overhead (one
    /// node holds up to 11 entries plus child pointers; 16 bytes per entry is generous).
    pub const ENTRY_BYTES: usize = size_of::<NodeId>() + size_of::<PeerLimiter>() + 16;

    /// A limiter at `now`. Non-positive rates and bursts take the defaults.
    pub fn new(cfg: RateLimitConfig, now: Instant) -> Self {
        let d = RateLimitConfig::default();
        let pos = |v: f64, def: f64| if v > 0.0 { v } else { def };
        let cfg = RateLimitConfig {
            peer_per_sec: pos(cfg.peer_per_sec, d.peer_per_sec),
            peer_burst: pos(cfg.peer_burst, d.peer_burst),
            egress_bytes_per_sec: pos(cfg.egress_bytes_per_sec, d.egress_bytes_per_sec),
            egress_burst: pos(cfg.egress_burst, d.egress_burst),
            violation_threshold: cfg.violation_threshold.max(1),
            max_peers: cfg.max_peers.max(1),
            ..cfg
        };
        Self {
            egress: TokenBucket::new(cfg.egress_bytes_per_sec, cfg.egress_burst, now),
            cfg,
            peers: BTreeMap::new(),
            stats: RateLimitStats::default(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &RateLimitConfig {
        &self.cfg
    }

    /// Admits (or not) one inbound message from `peer`.
    pub fn allow_peer(&mut self, now: Instant, peer: &NodeId) -> Verdict {
        if !self.peers.contains_key(peer) && self.peers.len() >= self.cfg.max_peers {
            let victim = self
                .peers
                .iter()
                .find(|(_, l)| !l.in_cooldown(now))
                .map(|(k, _)| k.clone());
            match victim {
                Some(v) => {
                    self.peers.remove(&v);
                }
                None => {
                    // Every tracked peer is in cooldown: refuse newcomers rather than grow.
                    self.stats.throttled += 1;
                    return Verdict::Throttled;
                }
            }
        }
        let cfg = self.cfg;
        let v = self
            .peers
            .entry(peer.clone())
            .or_insert_with(|| PeerLimiter::new(&cfg, now))
            .allow(&cfg, now);
        match v {
            Verdict::Allowed => self.stats.admitted += 1,
            Verdict::Throttled => self.stats.throttled += 1,
            Verdict::CooldownStarted => {
                self.stats.throttled += 1;
                self.stats.cooldowns += 1;
            }
            Verdict::InCooldown => self.stats.refused_cooldown += 1,
        }
        v
    }

    /// True while `peer` is in cooldown (unknown peers are not).
    pub fn peer_in_cooldown(&self, now: Instant, peer: &NodeId) -> bool {
        self.peers.get(peer).is_some_and(|l| l.in_cooldown(now))
    }

    /// Forgets `peer`'s state.
    pub fn remove_peer(&mut self, peer: &NodeId) {
        self.peers.remove(peer);
    }

    /// Peers with state.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// The egress share priority `p` must leave in the bucket.
    pub fn reserve_fraction(priority: i32) -> f64 {
        let p = f64::from(priority.clamp(0, HIGH_PRIORITY));
        0.5 * (1.0 - p / f64::from(HIGH_PRIORITY))
    }

    /// Takes `bytes` of egress for a send at `priority`; false (counted) when the
    /// bucket cannot give them while keeping the priority's reserve.
    pub fn allow_egress(&mut self, now: Instant, bytes: usize, priority: i32) -> bool {
        if bytes == 0 {
            return true;
        }
        let keep = Self::reserve_fraction(priority) * self.egress.burst();
        if self.egress.allow_n_keeping(now, bytes as f64, keep) {
            self.stats.egress_bytes += bytes as u64;
            true
        } else {
            self.stats.egress_refused += 1;
            false
        }
    }

    /// True when `queued` (the engine's pending action count) is at or above the
    /// threshold.
    pub fn overloaded(&self, queued: usize) -> bool {
        queued >= self.cfg.queue_threshold
    }

    pub(crate) fn count_backpressure(&mut self) {
        self.stats.backpressure_refused += 1;
    }

    /// A snapshot at `now`.
    pub fn stats(&mut self, now: Instant) -> RateLimitStats {
        let mut s = self.stats;
        s.peers = self.peers.len();
        s.peers_in_cooldown = self.peers.values().filter(|l| l.in_cooldown(now)).count();
        s.egress_tokens = self.egress.tokens(now);
        s.queue_threshold = self.cfg.queue_threshold;
        s.state_bytes = self.peers.len() * Self::ENTRY_BYTES;
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    #[test]
    fn bucket_semantics() {
        let mut b = TokenBucket::new(100.0, 500.0, ms(0));
        for _ in 0..500 {
            assert!(b.allow_n(ms(0), 1.0));
        }
        assert!(!b.allow_n(ms(0), 1.0));
        assert!(!b.allow_n(ms(9), 1.0)); // 0.9 token
        assert!(b.allow_n(ms(11), 1.0));
        assert_eq!(b.tokens(ms(100_000)), 500.0);
    }

    #[test]
    fn throttle_then_cooldown_then_recover() {
        let mut r = TokenBucketLimiter::new(RateLimitConfig::default(), ms(0));
        let (a, b) = (NodeId::from_static("a"), NodeId::from_static("b"));
        let mut allowed = 0;
        let mut verdicts = alloc::vec::Vec::new();
        for _ in 0..1500 {
            let v = r.allow_peer(ms(0), &a);
            if v == Verdict::Allowed {
                allowed += 1;
            }
            verdicts.push(v);
        }
        assert_eq!(allowed, 500);
        assert_eq!(verdicts[500], Verdict::Throttled);
        assert_eq!(verdicts[1499], Verdict::CooldownStarted);
        assert!(r.peer_in_cooldown(ms(0), &a));
        // Refill does not help during the cooldown.
        assert_eq!(r.allow_peer(ms(10_000), &a), Verdict::InCooldown);
        // Others are unaffected.
        assert_eq!(r.allow_peer(ms(0), &b), Verdict::Allowed);
        assert_eq!(r.allow_peer(ms(300_000), &a), Verdict::Allowed);
        assert!(!r.peer_in_cooldown(ms(300_000), &a));
        let s = r.stats(ms(300_000));
        assert_eq!(
            (s.admitted, s.throttled, s.cooldowns, s.refused_cooldown),
            (502, 1000, 1, 1)
        );
        r.remove_peer(&a);
        assert_eq!(r.peer_count(), 1);
    }

    #[test]
    fn egress_priority_headroom() {
        let cfg = RateLimitConfig {
            egress_bytes_per_sec: 1000.0,
            egress_burst: 10_000.0,
            ..Default::default()
        };
        let mut r = TokenBucketLimiter::new(cfg, ms(0));
        // Priority 0 may take the upper half only.
        assert!(r.allow_egress(ms(0), 5000, 0));
        assert!(!r.allow_egress(ms(0), 1, 0));
        assert!(r.allow_egress(ms(0), 2500, 5)); // reserve 25 %
        assert!(!r.allow_egress(ms(0), 1, 5));
        assert!(r.allow_egress(ms(0), 2500, 10));
        assert!(!r.allow_egress(ms(0), 1, 10));
        assert!(r.allow_egress(ms(1), 1, 10));
        assert_eq!(TokenBucketLimiter::reserve_fraction(-3), 0.5);
        assert_eq!(TokenBucketLimiter::reserve_fraction(99), 0.0);
    }

    #[test]
    fn bounded_peers() {
        let cfg = RateLimitConfig {
            max_peers: 2,
            ..Default::default()
        };
        let mut r = TokenBucketLimiter::new(cfg, ms(0));
        for n in ["a", "b", "c", "d"] {
            r.allow_peer(ms(0), &NodeId::from_static(n));
        }
        assert_eq!(r.peer_count(), 2);
    }
}
