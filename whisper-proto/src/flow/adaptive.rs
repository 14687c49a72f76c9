//! Adaptive G1 cadence, the backpressure monitor and the sender-side peer backoff
//! (seed 000 `AdaptiveInterval`, `BackpressureMonitor`, `PeerBackoff`; reference §f).
//!
//! # `AdaptiveInterval` rules (what whisper does, and where it differs from the Go code)
//! After each round the initiator reports an [`ExchangeOutcome`]; the unjittered
//! `current` interval then becomes:
//!
//! 1. **Converging** (`records_applied > 0`): `min`; the idle count resets.
//! 2. **Idle** (the peer's fingerprint is non-zero and equals **ours**; the Go code
//!    compares it with the peer's *previous* fingerprint, reference §t.20): the idle
//!    count grows and `current = base` if `current < base`, else
//!    `min(current × 2, max)`. So the idle backoff starts from the base interval, never
//!    from `min` (the Go code gives 2, 4, 8 s after convergence; whisper gives 10, 20,
//!    40, 60 s).
//! 3. **Otherwise** (records sent but not applied, or fingerprints differ): `base`; the
//!    idle count resets.
//!
//! Every returned sample is jittered: `d × (1 + 0.15 × (2U − 1))` with `U` uniform in
//! `[0, 1)` from the caller's random source, so samples lie in `[0.85 d, 1.15 d)`,
//! rounded down to whole microseconds and never below 1 µs.
//!
//! [`AdaptiveInterval::apply_backpressure`]`(true)` sets
//! `current = min(max(current × 2, 2 × base), max)`.

use crate::defaults;
use crate::rng::RandomSource;
use crate::time::{Duration, Instant};

/// What one gossip round with a peer achieved (the inputs of
/// [`AdaptiveInterval::next`]).
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct ExchangeOutcome {
    /// Records we sent.
    pub records_sent: usize,
    /// Records from the peer that changed local state.
    pub records_applied: usize,
    /// The peer's fingerprint after the round (0 = unknown).
    pub peer_fingerprint: u64,
    /// Our fingerprint after the round.
    pub local_fingerprint: u64,
}

impl ExchangeOutcome {
    /// True when the peer reported a non-zero fingerprint equal to ours.
    pub fn in_sync(&self) -> bool {
        self.peer_fingerprint != 0 && self.peer_fingerprint == self.local_fingerprint
    }
}

/// A point-in-time snapshot of an [`AdaptiveInterval`].
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct AdaptiveStats {
    /// The unjittered interval.
    pub current: Duration,
    /// The base interval.
    pub base: Duration,
    /// The fastest interval.
    pub min: Duration,
    /// The slowest interval.
    pub max: Duration,
    /// Consecutive idle rounds.
    pub idle_exchanges: u32,
    /// The peer fingerprint seen on the last round (0 = none).
    pub fingerprint: u64,
}

/// Per-peer G1 cadence: fast while converging, slower while idle.
#[derive(Clone, Debug)]
pub struct AdaptiveInterval {
    base: Duration,
    min: Duration,
    max: Duration,
    current: Duration,
    idle: u32,
    fingerprint: u64,
}

impl Default for AdaptiveInterval {
    fn default() -> Self {
        Self::new(
            defaults::GOSSIP_BASE,
            defaults::GOSSIP_MIN,
            defaults::GOSSIP_MAX,
        )
    }
}

impl AdaptiveInterval {
    /// Jitter fraction applied to every sample.
    pub const JITTER: f64 = defaults::GOSSIP_JITTER;

    /// A new interval (argument order as the seed: base, min, max). Zero values take the
    /// defaults (10 s, 2 s, 60 s); `min` is lowered to `base` and `max` raised to it.
    pub fn new(base: Duration, min: Duration, max: Duration) -> Self {
        let or = |d: Duration, def: Duration| if d.is_zero() { def } else { d };
        let base = or(base, defaults::GOSSIP_BASE);
        let min = or(min, defaults::GOSSIP_MIN).min(base);
        let max = or(max, defaults::GOSSIP_MAX).max(base);
        Self {
            base,
            min,
            max,
            current: base,
            idle: 0,
            fingerprint: 0,
        }
    }

    /// Updates the state from a round's outcome and returns the unjittered interval.
    pub fn advance(&mut self, outcome: &ExchangeOutcome) -> Duration {
        if outcome.records_applied > 0 {
            self.idle = 0;
            self.current = self.min;
        } else if outcome.in_sync() {
            self.idle = self.idle.saturating_add(1);
            self.current = if self.current < self.base {
                self.base
            } else {
                self.current.saturating_mul(2).min(self.max)
            };
        } else {
            self.idle = 0;
            self.current = self.base;
        }
        if outcome.peer_fingerprint != 0 {
            self.fingerprint = outcome.peer_fingerprint;
        }
        self.current
    }

    /// Updates the state from a round's outcome and returns a jittered sample.
    pub fn next(&mut self, outcome: &ExchangeOutcome, rng: &mut impl RandomSource) -> Duration {
        let d = self.advance(outcome);
        jitter(d, rng)
    }

    /// Grows the interval while backpressure is active (`overloaded`); returns a
    /// jittered sample of the (possibly grown) interval.
    pub fn apply_backpressure(
        &mut self,
        overloaded: bool,
        rng: &mut impl RandomSource,
    ) -> Duration {
        if overloaded {
            self.current = self
                .current
                .saturating_mul(2)
                .max(self.base.saturating_mul(2))
                .min(self.max);
        }
        jitter(self.current, rng)
    }

    /// The unjittered interval.
    pub fn current(&self) -> Duration {
        self.current
    }

    /// A snapshot.
    pub fn stats(&self) -> AdaptiveStats {
        AdaptiveStats {
            current: self.current,
            base: self.base,
            min: self.min,
            max: self.max,
            idle_exchanges: self.idle,
            fingerprint: self.fingerprint,
        }
    }
}

/// `d × (1 + 0.15 × (2U − 1))`, whole microseconds, at least 1 µs (0 stays 0).
pub fn jitter(d: Duration, rng: &mut impl RandomSource) -> Duration {
    if d.is_zero() {
        return d;
    }
    let u = rng.unit_f64();
    let us = d.as_micros() as f64 * (1.0 + AdaptiveInterval::JITTER * (2.0 * u - 1.0));
    Duration::from_micros((us as u64).max(1))
}

/// Counts pending exchanges and says when they exceed the threshold (reference §f.2).
///
/// The engine defines *pending* as: G1 exchange replies it has queued that the driver
/// has not yet taken from [`crate::Engine::poll_action`] (the reply counts itself while
/// it is being built). A driver that cannot keep up with the replies it is asked to
/// write is exactly the overloaded responder the signal is for.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct BackpressureMonitor {
    threshold: u32,
    pending: u32,
}

impl Default for BackpressureMonitor {
    fn default() -> Self {
        Self::new(defaults::BACKPRESSURE_THRESHOLD)
    }
}

impl BackpressureMonitor {
    /// A monitor; a zero threshold takes the default (5).
    pub fn new(threshold: u32) -> Self {
        let threshold = if threshold == 0 {
            defaults::BACKPRESSURE_THRESHOLD
        } else {
            threshold
        };
        Self {
            threshold,
            pending: 0,
        }
    }

    /// One more pending exchange; returns [`Self::is_overloaded`].
    pub fn enter(&mut self) -> bool {
        self.pending = self.pending.saturating_add(1);
        self.is_overloaded()
    }

    /// One fewer (never below 0).
    pub fn exit(&mut self) {
        self.pending = self.pending.saturating_sub(1);
    }

    /// Sets the pending count (the engine recomputes it).
    pub fn set_pending(&mut self, pending: u32) {
        self.pending = pending;
    }

    /// `pending > threshold`.
    pub fn is_overloaded(&self) -> bool {
        self.pending > self.threshold
    }

    /// The pending count.
    pub fn pending(&self) -> u32 {
        self.pending
    }

    /// The threshold.
    pub fn threshold(&self) -> u32 {
        self.threshold
    }
}

/// Sender-side backoff from one peer's backpressure signal (reference §f.3): 30 s on the
/// first signal, doubling per further signal, capped at 120 s; cleared by a reply
/// without the signal.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct PeerBackoff {
    backoff: Duration,
    until: Option<Instant>,
}

impl PeerBackoff {
    /// Records the signal of one reply received at `now`.
    pub fn record_signal(&mut self, now: Instant, signalled: bool) {
        if !signalled {
            *self = Self::default();
            return;
        }
        self.backoff = if self.backoff.is_zero() {
            defaults::BACKPRESSURE_INITIAL_BACKOFF
        } else {
            self.backoff.saturating_mul(2)
        }
        .min(defaults::BACKPRESSURE_MAX_BACKOFF);
        self.until = Some(now.saturating_add(self.backoff));
    }

    /// True while `now` is before the backoff's end.
    pub fn should_skip(&self, now: Instant) -> bool {
        self.until.is_some_and(|u| now < u)
    }

    /// The end of the backoff, if one is set.
    pub fn until(&self) -> Option<Instant> {
        self.until
    }

    /// The current backoff (zero when none).
    pub fn current(&self) -> Duration {
        self.backoff
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn ev(applied: usize, sent: usize, peer: u64, ours: u64) -> ExchangeOutcome {
        ExchangeOutcome {
            records_sent: sent,
            records_applied: applied,
            peer_fingerprint: peer,
            local_fingerprint: ours,
        }
    }

    #[test]
    fn scripted_sequence() {
        let mut a = AdaptiveInterval::default();
        let script = [
            (ev(0, 0, 7, 7), 20), // idle: double from base
            (ev(0, 0, 7, 7), 40),
            (ev(0, 0, 7, 7), 60),
            (ev(0, 0, 7, 7), 60), // capped
            (ev(3, 0, 7, 9), 2),  // converging: min
            (ev(0, 0, 9, 9), 10), // idle after convergence: base first, not 4
            (ev(0, 0, 9, 9), 20),
            (ev(0, 5, 8, 9), 10), // sent, not applied, still differ: base
            (ev(0, 0, 0, 0), 10), // unknown fingerprint: base
            (ev(0, 0, 5, 5), 20),
            (ev(0, 2, 5, 5), 40), // sent but already equal: idle still
        ];
        for (i, (e, want)) in script.iter().enumerate() {
            assert_eq!(a.advance(e), s(*want), "step {i}");
        }
        assert_eq!(a.stats().idle_exchanges, 2);
        assert_eq!(a.stats().fingerprint, 5);
        // Backpressure growth from base, then from min.
        let mut rng = Rng::new(1);
        let mut a = AdaptiveInterval::default();
        let mut seq = alloc::vec::Vec::new();
        for _ in 0..4 {
            a.apply_backpressure(true, &mut rng);
            seq.push(a.current().as_secs());
        }
        assert_eq!(seq, [20, 40, 60, 60]);
        a.advance(&ev(1, 0, 0, 0));
        assert_eq!(a.current(), s(2));
        a.apply_backpressure(true, &mut rng);
        assert_eq!(a.current(), s(20));
        a.apply_backpressure(false, &mut rng);
        assert_eq!(a.current(), s(20));
    }

    #[test]
    fn jitter_bounds_over_many_samples() {
        let mut rng = Rng::new(42);
        let d = s(10);
        let (mut lo, mut hi) = (u128::MAX, 0u128);
        for _ in 0..20_000 {
            let j = jitter(d, &mut rng).as_micros();
            assert!((8_500_000..11_500_000).contains(&j), "{j}");
            lo = lo.min(j);
            hi = hi.max(j);
        }
        // The spread is really used: both ends within 1 % of the bounds.
        assert!(lo < 8_600_000 && hi > 11_400_000, "{lo} {hi}");
        assert_eq!(jitter(Duration::ZERO, &mut rng), Duration::ZERO);
        assert!(jitter(Duration::from_nanos(1), &mut rng) >= Duration::from_micros(1));
    }

    #[test]
    fn clamps() {
        let a = AdaptiveInterval::new(s(5), s(8), s(3));
        let st = a.stats();
        assert_eq!((st.base, st.min, st.max), (s(5), s(5), s(5)));
        let z = AdaptiveInterval::new(Duration::ZERO, Duration::ZERO, Duration::ZERO);
        assert_eq!(z.stats().max, s(60));
    }

    #[test]
    fn monitor_and_backoff() {
        let mut m = BackpressureMonitor::default();
        for _ in 0..5 {
            assert!(!m.enter());
        }
        assert!(m.enter());
        m.exit();
        assert!(!m.is_overloaded());
        let mut b = PeerBackoff::default();
        let t = Instant::from_secs(100);
        let mut seq = alloc::vec::Vec::new();
        for _ in 0..4 {
            b.record_signal(t, true);
            seq.push(b.current().as_secs());
        }
        assert_eq!(seq, [30, 60, 120, 120]);
        assert!(b.should_skip(Instant::from_secs(219)));
        assert!(!b.should_skip(Instant::from_secs(220)));
        b.record_signal(t, false);
        assert!(!b.should_skip(t));
        assert_eq!(b.current(), Duration::ZERO);
    }
}
