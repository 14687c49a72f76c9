//! Round-trip time estimators.
//!
//! * [`RttMeasurer`], the network RTT measurer (seed 000 `NetworkRTTMeasurer`, reference
//!   §o): a ring of the last N samples. The engine feeds it the G1 exchange time measured
//!   by the initiator (request queued → reply decoded, injected time).
//! * [`SmoothedRtt`], the RFC 6298 estimator (`SRTT`, `RTTVAR`) behind the rumor
//!   pusher's adaptive ACK timeout.

use crate::time::Duration;
use alloc::vec::Vec;

/// Ring of the last `N` round-trip samples.
#[derive(Clone, Debug)]
pub struct RttMeasurer {
    ring: Vec<Duration>,
    cap: usize,
    idx: usize,
    filled: bool,
}

impl Default for RttMeasurer {
    fn default() -> Self {
        Self::new(Self::DEFAULT_SAMPLES)
    }
}

impl RttMeasurer {
    /// The default ring size.
    pub const DEFAULT_SAMPLES: usize = 10;

    /// A ring of `n` samples (0 takes the default, 10).
    pub fn new(n: usize) -> Self {
        let cap = if n == 0 { Self::DEFAULT_SAMPLES } else { n };
        Self {
            ring: Vec::with_capacity(cap),
            cap,
            idx: 0,
            filled: false,
        }
    }

    /// Records a sample; zero is ignored.
    pub fn record(&mut self, rtt: Duration) {
        if rtt.is_zero() {
            return;
        }
        if self.ring.len() < self.cap {
            self.ring.push(rtt);
        } else {
            self.ring[self.idx] = rtt;
        }
        self.idx += 1;
        if self.idx >= self.cap {
            self.idx = 0;
            self.filled = true;
        }
    }

    /// Live samples.
    pub fn count(&self) -> usize {
        self.ring.len()
    }

    /// Mean of the live samples, whole microseconds (zero when empty).
    pub fn avg(&self) -> Duration {
        if self.ring.is_empty() {
            return Duration::ZERO;
        }
        let sum: u128 = self.ring.iter().map(Duration::as_micros).sum();
        Duration::from_micros((sum / self.ring.len() as u128) as u64)
    }

    /// The latest sample (zero when empty).
    pub fn last(&self) -> Duration {
        if self.ring.is_empty() {
            return Duration::ZERO;
        }
        let i = if self.idx == 0 {
            self.cap - 1
        } else {
            self.idx - 1
        };
        self.ring[i.min(self.ring.len() - 1)]
    }

    /// True once `N` samples were recorded.
    pub fn is_filled(&self) -> bool {
        self.filled
    }
}

/// A smoothed round trip after RFC 6298 §2, in whole microseconds: `SRTT` and `RTTVAR`
/// with the RFC's gains (α = 1/8, β = 1/4). The caller applies Karn's rule (feed only
/// samples of frames sent once) and clamps [`rto`](Self::rto) to its own floor and
/// ceiling.
#[derive(Clone, Copy, Debug)]
pub struct SmoothedRtt {
    srtt: u64,
    rttvar: u64,
}

impl SmoothedRtt {
    /// The estimate after the first sample `R`: `SRTT = R`, `RTTVAR = R/2`.
    pub fn first(sample: Duration) -> Self {
        let r = micros(sample);
        Self {
            srtt: r,
            rttvar: r / 2,
        }
    }

    /// The estimate after a further sample `R'`: `RTTVAR = 3/4·RTTVAR + 1/4·|SRTT − R'|`,
    /// then `SRTT = 7/8·SRTT + 1/8·R'`.
    #[must_use]
    pub fn update(self, sample: Duration) -> Self {
        let r = micros(sample);
        Self {
            rttvar: (3 * self.rttvar + self.srtt.abs_diff(r)) / 4,
            srtt: (7 * self.srtt + r) / 8,
        }
    }

    /// `SRTT + 4·RTTVAR`.
    pub fn rto(self) -> Duration {
        Duration::from_micros(self.srtt.saturating_add(self.rttvar.saturating_mul(4)))
    }
}

/// Whole microseconds, capped so the estimator's arithmetic cannot overflow.
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX / 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn ring_semantics() {
        let mut r = RttMeasurer::new(3);
        assert_eq!(
            (r.avg(), r.last(), r.count()),
            (Duration::ZERO, Duration::ZERO, 0)
        );
        r.record(Duration::ZERO);
        assert_eq!(r.count(), 0);
        r.record(ms(10));
        r.record(ms(20));
        assert_eq!((r.avg(), r.last(), r.count()), (ms(15), ms(20), 2));
        r.record(ms(30));
        assert!(r.is_filled());
        assert_eq!(r.last(), ms(30));
        r.record(ms(60)); // overwrites 10
        assert_eq!(
            (r.avg(), r.last(), r.count()),
            (ms(36) + Duration::from_micros(666), ms(60), 3)
        );
        r.record(ms(90)); // overwrites 20
        assert_eq!((r.avg(), r.last()), (ms(60), ms(90)));
        assert_eq!(RttMeasurer::new(0).cap, 10);
    }
}
