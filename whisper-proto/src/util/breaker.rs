//! A circuit breaker on injected time.
//!
//! [`CircuitBreaker`] fails fast when a peer is consistently unreachable:
//!
//! - **Closed**: requests flow. `failure_threshold` consecutive failures open the circuit.
//! - **Open**: requests are refused until `reset_timeout` has passed since it opened.
//! - **Half-open**: exactly one probe request is let through. Its success closes the circuit;
//!   its failure opens it again for another `reset_timeout`. A probe that reports nothing
//!   within `reset_timeout` is presumed lost, and one new probe is allowed.
//!
//! Outcomes reported while open (from requests admitted before it opened) are ignored.

use core::num::NonZeroU32;

use crate::time::{Duration, Instant};

/// A three-state circuit breaker for one peer or resource.
///
/// # Example
///
/// ```
/// use core::num::NonZeroU32;
/// use whisper_proto::time::{Duration, Instant};
/// use whisper_proto::util::{BreakerError, BreakerState, CircuitBreaker};
///
/// let mut cb = CircuitBreaker::new(NonZeroU32::new(2).unwrap(), Duration::from_secs(30));
/// let t = Instant::from_secs(1);
/// for _ in 0..2 {
///     assert!(matches!(cb.call(t, || Err::<(), _>("refused")), Err(BreakerError::Failed(_))));
/// }
/// assert_eq!(cb.state(t), BreakerState::Open);
/// assert!(matches!(cb.call(t, || Ok::<_, &str>(())), Err(BreakerError::Open { .. })));
///
/// let later = t + Duration::from_secs(30);
/// assert_eq!(cb.state(later), BreakerState::HalfOpen);
/// assert!(cb.allow_request(later)); // the probe
/// assert!(!cb.allow_request(later)); // only one
/// cb.record_success(later);
/// assert_eq!(cb.state(later), BreakerState::Closed);
/// ```
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct CircuitBreaker {
    failure_threshold: NonZeroU32,
    reset_timeout: Duration,
    phase: Phase,
}

#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Phase {
    Closed {
        /// Consecutive failures so far, below the threshold.
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// A probe is in flight; it is presumed lost at `probe_until`.
    HalfOpen {
        probe_until: Instant,
    },
}

/// The externally visible state of a [`CircuitBreaker`].
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub enum BreakerState {
    /// Requests flow normally.
    Closed,
    /// Waiting for a probe's outcome, or ready to send one.
    HalfOpen,
    /// Failing fast; no request is allowed.
    Open,
}

/// The error of [`CircuitBreaker::call`].
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BreakerError<E> {
    /// The operation ran and failed with `E`. The failure was recorded: it may have opened
    /// the circuit.
    #[error("operation failed")]
    Failed(#[source] E),
    /// The circuit is open (or its single probe is in flight), so the operation was not run.
    /// Does not affect state.
    #[error("circuit open until {retry_at:?}")]
    Open {
        /// When a request may next be allowed.
        retry_at: Instant,
    },
}

impl CircuitBreaker {
    /// A closed breaker that opens after `failure_threshold` consecutive failures and stays
    /// open for `reset_timeout`.
    pub const fn new(failure_threshold: NonZeroU32, reset_timeout: Duration) -> Self {
        Self {
            failure_threshold,
            reset_timeout,
            phase: Phase::Closed { failures: 0 },
        }
    }

    /// Whether a request may be sent at `now`. In half-open state, a `true` answer is the
    /// single probe: the caller must report its outcome with
    /// [`record_success`](Self::record_success) or [`record_failure`](Self::record_failure).
    pub fn allow_request(&mut self, now: Instant) -> bool {
        match self.phase {
            Phase::Closed { .. } => true,
            Phase::Open { until } | Phase::HalfOpen { probe_until: until } if now >= until => {
                self.phase = Phase::HalfOpen {
                    probe_until: now + self.reset_timeout,
                };
                true
            }
            Phase::Open { .. } | Phase::HalfOpen { .. } => false,
        }
    }

    /// Reports a successful request: resets the failure count, or closes a half-open circuit.
    /// `now` is taken for symmetry with [`record_failure`](Self::record_failure); a success
    /// does not depend on it.
    pub fn record_success(&mut self, now: Instant) {
        let _ = now;
        match self.phase {
            Phase::Closed { .. } | Phase::HalfOpen { .. } => {
                self.phase = Phase::Closed { failures: 0 };
            }
            Phase::Open { .. } => {}
        }
    }

    /// Reports a failed request at `now`: counts it, opening the circuit at the threshold;
    /// a failed probe reopens a half-open circuit.
    pub fn record_failure(&mut self, now: Instant) {
        match self.phase {
            Phase::Closed { failures } => {
                let failures = failures.saturating_add(1);
                self.phase = if failures >= self.failure_threshold.get() {
                    self.open_at(now)
                } else {
                    Phase::Closed { failures }
                };
            }
            Phase::HalfOpen { .. } => self.phase = self.open_at(now),
            Phase::Open { .. } => {}
        }
    }

    /// The state at `now`. An open circuit whose reset time has passed reports
    /// [`BreakerState::HalfOpen`]: the next [`allow_request`](Self::allow_request) is the probe.
    pub fn state(&self, now: Instant) -> BreakerState {
        match self.phase {
            Phase::Closed { .. } => BreakerState::Closed,
            Phase::Open { until } if now < until => BreakerState::Open,
            Phase::Open { .. } | Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Runs `f` at `now` if a request is allowed, and records its outcome.
    ///
    /// # Errors
    ///
    /// [`BreakerError::Open`] without running `f` if the circuit refuses the request;
    /// [`BreakerError::Failed`] if `f` failed.
    pub fn call<T, E>(
        &mut self,
        now: Instant,
        f: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, BreakerError<E>> {
        if !self.allow_request(now) {
            return Err(BreakerError::Open {
                retry_at: self.retry_at(),
            });
        }
        let outcome = f();
        match outcome {
            Ok(_) => self.record_success(now),
            Err(_) => self.record_failure(now),
        }
        outcome.map_err(BreakerError::Failed)
    }

    /// Consecutive failures counted while closed.
    pub const fn failures(&self) -> u32 {
        match self.phase {
            Phase::Closed { failures } => failures,
            Phase::Open { .. } | Phase::HalfOpen { .. } => self.failure_threshold.get(),
        }
    }

    /// Consecutive failures that open the circuit.
    pub const fn failure_threshold(&self) -> NonZeroU32 {
        self.failure_threshold
    }

    /// How long the circuit stays open.
    pub const fn reset_timeout(&self) -> Duration {
        self.reset_timeout
    }

    fn open_at(&self, now: Instant) -> Phase {
        Phase::Open {
            until: now + self.reset_timeout,
        }
    }

    /// When a refused request may next be allowed.
    const fn retry_at(&self) -> Instant {
        match self.phase {
            Phase::Closed { .. } => Instant::ZERO,
            Phase::Open { until } | Phase::HalfOpen { probe_until: until } => until,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use quickcheck::{Arbitrary, Gen, quickcheck};

    fn breaker(threshold: u32, reset_s: u64) -> CircuitBreaker {
        CircuitBreaker::new(
            NonZeroU32::new(threshold).unwrap(),
            Duration::from_secs(reset_s),
        )
    }

    fn secs(s: u64) -> Instant {
        Instant::from_secs(s)
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let mut cb = breaker(3, 10);
        cb.record_failure(secs(0));
        cb.record_failure(secs(0));
        cb.record_success(secs(0));
        assert_eq!(cb.failures(), 0);
        cb.record_failure(secs(1));
        cb.record_failure(secs(1));
        assert_eq!(cb.state(secs(1)), BreakerState::Closed);
        cb.record_failure(secs(2));
        assert_eq!(cb.state(secs(2)), BreakerState::Open);
        assert!(!cb.allow_request(secs(11)));
        assert!(cb.allow_request(secs(12)));
    }

    #[test]
    fn failed_probe_reopens_and_outcomes_while_open_are_ignored() {
        let mut cb = breaker(1, 10);
        cb.record_failure(secs(0));
        cb.record_success(secs(1)); // late success of an earlier request
        assert_eq!(cb.state(secs(1)), BreakerState::Open);
        assert!(cb.allow_request(secs(10)));
        cb.record_failure(secs(11));
        assert_eq!(cb.state(secs(20)), BreakerState::Open);
        assert_eq!(cb.state(secs(21)), BreakerState::HalfOpen);
    }

    #[test]
    fn lost_probe_is_replaced_after_reset_timeout() {
        let mut cb = breaker(1, 10);
        cb.record_failure(secs(0));
        assert!(cb.allow_request(secs(10)));
        assert!(!cb.allow_request(secs(19)));
        assert!(cb.allow_request(secs(20)));
        assert!(!cb.allow_request(secs(20)));
    }

    #[derive(Debug, thiserror::Error)]
    #[error("boom")]
    struct Boom;

    #[test]
    fn call_reports_open_with_retry_time() {
        let mut cb = breaker(1, 5);
        let err = cb.call(secs(1), || Err::<(), _>(Boom)).unwrap_err();
        assert!(matches!(err, BreakerError::Failed(Boom)));
        assert!(core::error::Error::source(&err).is_some());
        let mut ran = false;
        let err = cb.call(secs(2), || {
            ran = true;
            Ok::<(), Boom>(())
        });
        assert!(matches!(err, Err(BreakerError::Open { retry_at }) if retry_at == secs(6)));
        assert!(!ran);
        assert_eq!(cb.call(secs(6), || Ok::<_, Boom>(4)).unwrap(), 4);
        assert_eq!(cb.state(secs(6)), BreakerState::Closed);
    }

    #[derive(Clone, Copy, Debug)]
    enum Op {
        Allow,
        Success,
        Failure,
    }

    impl Arbitrary for Op {
        fn arbitrary(g: &mut Gen) -> Self {
            *g.choose(&[Self::Allow, Self::Allow, Self::Success, Self::Failure])
                .unwrap()
        }
    }

    quickcheck! {
        /// Checked against a small model: nothing is allowed while open before the reset
        /// time, and half-open allows exactly one probe per reset period.
        fn open_blocks_and_half_open_allows_one_probe(steps: Vec<(u8, Op)>, threshold: u8) -> bool {
            let (threshold, reset) = (u32::from(threshold % 4) + 1, 10);
            let mut cb = breaker(threshold, reset);
            let mut now = 0;
            let mut consecutive = 0;
            let mut blocked_until: Option<u64> = None;
            let mut probe: Option<u64> = None;
            steps.into_iter().all(|(dt, op)| {
                now += u64::from(dt % 8);
                let blocked = blocked_until.is_some_and(|until| now < until);
                let before = cb.state(secs(now));
                let state_ok = match before {
                    BreakerState::Closed => blocked_until.is_none(),
                    BreakerState::Open => blocked,
                    BreakerState::HalfOpen => !blocked && blocked_until.is_some(),
                };
                let probing = probe.is_some_and(|p| now < p + reset);
                let op_ok = match op {
                    Op::Allow => {
                        let allowed = cb.allow_request(secs(now));
                        if allowed && before == BreakerState::HalfOpen {
                            probe = Some(now);
                        }
                        match before {
                            BreakerState::Closed => allowed,
                            BreakerState::Open => !allowed,
                            BreakerState::HalfOpen => allowed != probing,
                        }
                    }
                    Op::Success => {
                        cb.record_success(secs(now));
                        if probe.is_some() {
                            (blocked_until, probe) = (None, None);
                        }
                        consecutive = 0;
                        true
                    }
                    Op::Failure => {
                        cb.record_failure(secs(now));
                        if blocked_until.is_none() {
                            consecutive += 1;
                        }
                        if consecutive == threshold || probe.is_some() {
                            (blocked_until, probe, consecutive) = (Some(now + reset), None, 0);
                        }
                        true
                    }
                };
                state_ok && op_ok
            })
        }
    }
}
