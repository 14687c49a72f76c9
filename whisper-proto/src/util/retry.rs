//! Exponential backoff.
//!
//! A [`RetryPolicy`] maps a retry number to a delay: `base_delay × 2^attempt`, capped at
//! `max_delay`, optionally shortened by a random jitter. A [`Retrier`] is the sans-IO driver:
//! after each attempt the caller reports the outcome with `now` and is told when to retry, or
//! to give up. Sleeping until then is the adapter's business.

use crate::rng::RandomSource;
use crate::time::{Duration, Instant};

/// How often and how fast to retry.
///
/// # Delays
///
/// Retry `n` (counting from 0) waits `min(base_delay × 2^n, max_delay)`; the sequence never
/// decreases and never exceeds `max_delay`. If `base_delay > max_delay`, every delay is
/// `max_delay`. With a jitter fraction `j`, each delay `d` is drawn uniformly from
/// `[d − j·d, d]`, so jitter spreads retries out without ever exceeding `max_delay`.
///
/// # Example
///
/// ```
/// use whisper_proto::time::Duration;
/// use whisper_proto::util::RetryPolicy;
///
/// let policy = RetryPolicy::new(3, Duration::from_secs(1), Duration::from_secs(30));
/// assert_eq!(policy.delay_for(0), Duration::from_secs(1));
/// assert_eq!(policy.delay_for(4), Duration::from_secs(16));
/// assert_eq!(policy.delay_for(5), Duration::from_secs(30));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryPolicy {
    max_retries: u32,
    base_delay: Duration,
    max_delay: Duration,
    jitter: f64,
}

/// What to do after an attempt, as decided by [`Retrier::record`].
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum RetryDecision {
    /// The attempt succeeded; the retrier was reset.
    Done,
    /// Out of retries: stop trying. The retrier stays exhausted until [`Retrier::reset`].
    GiveUp,
    /// Try again at this instant.
    RetryAt(Instant),
}

/// Drives retries of one operation under a [`RetryPolicy`].
///
/// # Example
///
/// ```
/// use whisper_proto::rng::Rng;
/// use whisper_proto::time::{Duration, Instant};
/// use whisper_proto::util::{RetryDecision, RetryPolicy, Retrier};
///
/// let policy = RetryPolicy::new(2, Duration::from_secs(1), Duration::from_secs(10));
/// let mut retrier = Retrier::new(policy);
/// let mut rng = Rng::new(7);
/// let t = Instant::from_secs(100);
///
/// let failed: Result<(), &str> = Err("timeout");
/// assert_eq!(
///     retrier.record(t, &failed, &mut rng),
///     RetryDecision::RetryAt(t + Duration::from_secs(1))
/// );
/// assert_eq!(
///     retrier.record(t, &failed, &mut rng),
///     RetryDecision::RetryAt(t + Duration::from_secs(2))
/// );
/// assert_eq!(retrier.record(t, &failed, &mut rng), RetryDecision::GiveUp);
/// assert_eq!(retrier.record(t, &Ok::<_, &str>(()), &mut rng), RetryDecision::Done);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Retrier {
    policy: RetryPolicy,
    /// Retries granted since the last success or reset.
    retries: u32,
}

impl RetryPolicy {
    /// A policy allowing `max_retries` retries after the first attempt, without jitter.
    pub const fn new(max_retries: u32, base_delay: Duration, max_delay: Duration) -> Self {
        Self {
            max_retries,
            base_delay,
            max_delay,
            jitter: 0.0,
        }
    }

    /// The same policy with a jitter `fraction` of each delay. Clamped to `[0, 1]`; NaN
    /// means no jitter.
    pub fn with_jitter(self, fraction: f64) -> Self {
        let jitter = if fraction.is_nan() {
            0.0
        } else {
            fraction.clamp(0.0, 1.0)
        };
        Self { jitter, ..self }
    }

    /// Retries allowed after the first attempt.
    pub const fn max_retries(&self) -> u32 {
        self.max_retries
    }

    /// The delay before the first retry.
    pub const fn base_delay(&self) -> Duration {
        self.base_delay
    }

    /// The cap on any delay.
    pub const fn max_delay(&self) -> Duration {
        self.max_delay
    }

    /// The jitter fraction in `[0, 1]`.
    pub const fn jitter(&self) -> f64 {
        self.jitter
    }

    /// The delay before retry `attempt` (from 0), without jitter.
    pub fn delay_for(&self, attempt: u32) -> Duration {
        let factor = 1u128.checked_shl(attempt).unwrap_or(u128::MAX);
        let nanos = self.base_delay.as_nanos().saturating_mul(factor);
        duration_from_nanos(nanos.min(self.max_delay.as_nanos()))
    }

    /// The delay before retry `attempt`, shortened by a random jitter drawn from `rng`:
    /// uniform in `[d − jitter·d, d]` where `d` is [`delay_for`](Self::delay_for).
    pub fn jittered_delay_for(&self, attempt: u32, rng: &mut impl RandomSource) -> Duration {
        let delay = self.delay_for(attempt);
        if self.jitter == 0.0 {
            return delay;
        }
        let micros = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        // `as` saturates, and `jitter <= 1`, so `spread <= micros`.
        let spread = (micros as f64 * self.jitter) as u64;
        let cut = rng.below(spread.saturating_add(1)).min(micros);
        delay.saturating_sub(Duration::from_micros(cut))
    }
}

impl Retrier {
    /// A fresh retrier under `policy`.
    pub const fn new(policy: RetryPolicy) -> Self {
        Self { policy, retries: 0 }
    }

    /// Reports the outcome of an attempt that ended at `now`.
    ///
    /// Call after: each attempt. `rng` is drawn from only when a retry is granted and the
    /// policy has jitter.
    pub fn record<T, E>(
        &mut self,
        now: Instant,
        outcome: &Result<T, E>,
        rng: &mut impl RandomSource,
    ) -> RetryDecision {
        match outcome {
            Ok(_) => {
                self.reset();
                RetryDecision::Done
            }
            Err(_) => self.record_failure(now, rng),
        }
    }

    /// Reports a failed attempt that ended at `now`: retry at `now + delay`, or give up.
    pub fn record_failure(&mut self, now: Instant, rng: &mut impl RandomSource) -> RetryDecision {
        if self.retries >= self.policy.max_retries {
            return RetryDecision::GiveUp;
        }
        let delay = self.policy.jittered_delay_for(self.retries, rng);
        self.retries += 1;
        RetryDecision::RetryAt(now + delay)
    }

    /// Forgets past failures, as after a success.
    pub const fn reset(&mut self) {
        self.retries = 0;
    }

    /// Retries granted since the last success or reset.
    pub const fn retries(&self) -> u32 {
        self.retries
    }

    /// The policy in force.
    pub const fn policy(&self) -> &RetryPolicy {
        &self.policy
    }
}

/// `nanos` as a [`Duration`], saturating at [`Duration::MAX`].
fn duration_from_nanos(nanos: u128) -> Duration {
    const NANOS_PER_SEC: u128 = 1_000_000_000;
    let secs = u64::try_from(nanos / NANOS_PER_SEC).unwrap_or(u64::MAX);
    // The remainder is below 10^9, so it always fits.
    let sub = u32::try_from(nanos % NANOS_PER_SEC).unwrap_or(0);
    Duration::new(secs, sub)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use alloc::vec::Vec;
    use quickcheck::quickcheck;

    #[test]
    fn delays_double_then_cap() {
        let p = RetryPolicy::new(10, Duration::from_millis(100), Duration::from_secs(1));
        let delays: [u64; 6] = core::array::from_fn(|n| p.delay_for(n as u32).as_millis() as u64);
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(p.delay_for(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn huge_values_saturate() {
        let p = RetryPolicy::new(1, Duration::MAX, Duration::MAX);
        assert_eq!(p.delay_for(0), Duration::MAX);
        assert_eq!(p.delay_for(200), Duration::MAX);
        let p = RetryPolicy::new(1, Duration::from_secs(5), Duration::from_secs(1));
        assert_eq!(p.delay_for(0), Duration::from_secs(1));
    }

    #[test]
    fn jitter_is_clamped() {
        let p = RetryPolicy::new(1, Duration::ZERO, Duration::ZERO);
        assert_eq!(p.with_jitter(f64::NAN).jitter(), 0.0);
        assert_eq!(p.with_jitter(-1.0).jitter(), 0.0);
        assert_eq!(p.with_jitter(7.0).jitter(), 1.0);
    }

    #[test]
    fn jitter_varies_delays() {
        let p =
            RetryPolicy::new(1, Duration::from_secs(1), Duration::from_secs(1)).with_jitter(0.5);
        let mut rng = Rng::new(3);
        let a = p.jittered_delay_for(0, &mut rng);
        let distinct = (0..20).any(|_| p.jittered_delay_for(0, &mut rng) != a);
        assert!(distinct);
    }

    #[test]
    fn retrier_gives_up_and_resets() {
        let p = RetryPolicy::new(1, Duration::from_secs(2), Duration::from_secs(2));
        let mut r = Retrier::new(p);
        let mut rng = Rng::new(1);
        let t = Instant::from_secs(10);
        assert_eq!(
            r.record_failure(t, &mut rng),
            RetryDecision::RetryAt(Instant::from_secs(12))
        );
        assert_eq!(r.record_failure(t, &mut rng), RetryDecision::GiveUp);
        assert_eq!(r.record_failure(t, &mut rng), RetryDecision::GiveUp);
        assert_eq!(r.retries(), 1);
        r.reset();
        assert!(matches!(
            r.record_failure(t, &mut rng),
            RetryDecision::RetryAt(_)
        ));
        let none = RetryPolicy::new(0, Duration::ZERO, Duration::ZERO);
        assert_eq!(
            Retrier::new(none).record_failure(t, &mut rng),
            RetryDecision::GiveUp
        );
    }

    quickcheck! {
        fn delays_non_decreasing_and_capped(base_ms: u32, max_ms: u32, attempts: u8) -> bool {
            let max = Duration::from_millis(u64::from(max_ms));
            let p = RetryPolicy::new(0, Duration::from_millis(u64::from(base_ms)), max);
            let delays: Vec<Duration> = (0..u32::from(attempts)).map(|n| p.delay_for(n)).collect();
            delays.windows(2).all(|w| w[0] <= w[1]) && delays.iter().all(|&d| d <= max)
        }

        fn jittered_delays_within_bounds(base_ms: u16, max_ms: u32, percent: u8, seed: u64) -> bool {
            let p = RetryPolicy::new(0, Duration::from_millis(u64::from(base_ms)), Duration::from_millis(u64::from(max_ms)))
                .with_jitter(f64::from(percent % 101) / 100.0);
            let mut rng = Rng::new(seed);
            (0..40).all(|n| {
                let d = p.delay_for(n);
                let lowest = d.mul_f64(1.0 - p.jitter()).saturating_sub(Duration::from_micros(1));
                let j = p.jittered_delay_for(n, &mut rng);
                j <= d && j >= lowest
            })
        }

        fn retrier_grants_exactly_max_retries(max: u8, seed: u64) -> bool {
            let p = RetryPolicy::new(u32::from(max % 16), Duration::from_millis(10), Duration::from_secs(1))
                .with_jitter(0.3);
            let mut r = Retrier::new(p);
            let mut rng = Rng::new(seed);
            let now = Instant::from_secs(1);
            let granted = core::iter::from_fn(|| match r.record_failure(now, &mut rng) {
                RetryDecision::RetryAt(at) => Some(at),
                _ => None,
            })
            .take(100)
            .collect::<Vec<_>>();
            granted.len() == usize::from(max % 16)
                && granted.iter().zip(0..).all(|(&at, n)| {
                    at >= now && at <= now + p.delay_for(n)
                })
        }
    }
}
