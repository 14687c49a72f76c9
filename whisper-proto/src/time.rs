//! Injected, monotonic time.
//!
//! The core never reads a clock. Every input carries an [`Instant`] chosen by the
//! driver: microseconds since an arbitrary, per-process epoch. A simulator builds
//! instants from integers; an adapter converts `std::time::Instant` through a
//! `Clock` (behind the `std` feature).
//!
//! Inputs must carry non-decreasing instants. The engine clamps an older instant to
//! the newest it has seen instead of panicking.

pub use core::time::Duration;

/// Monotonic time in microseconds since an arbitrary, per-process epoch chosen by the driver.
#[derive(Clone, Copy, Debug, Default, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct Instant(u64);

impl Instant {
    /// The epoch.
    pub const ZERO: Self = Self(0);
    /// The largest representable instant; used as "never".
    pub const MAX: Self = Self(u64::MAX);

    /// An instant `us` microseconds after the epoch.
    pub const fn from_micros(us: u64) -> Self {
        Self(us)
    }

    /// An instant `ms` milliseconds after the epoch (saturating).
    pub const fn from_millis(ms: u64) -> Self {
        Self(ms.saturating_mul(1_000))
    }

    /// An instant `s` seconds after the epoch (saturating).
    pub const fn from_secs(s: u64) -> Self {
        Self(s.saturating_mul(1_000_000))
    }

    /// Microseconds since the epoch.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// Time elapsed from `earlier` to `self`, or zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Self) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }

    /// `self + d`, or `None` on overflow.
    pub fn checked_add(self, d: Duration) -> Option<Self> {
        let us = u64::try_from(d.as_micros()).ok()?;
        self.0.checked_add(us).map(Self)
    }

    /// `self + d`, saturating at [`Instant::MAX`].
    pub fn saturating_add(self, d: Duration) -> Self {
        self.checked_add(d).unwrap_or(Self::MAX)
    }

    /// `self - d`, saturating at [`Instant::ZERO`].
    pub fn saturating_sub(self, d: Duration) -> Self {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        Self(self.0.saturating_sub(us))
    }
}

impl core::ops::Add<Duration> for Instant {
    type Output = Self;
    /// Saturating addition.
    fn add(self, d: Duration) -> Self {
        self.saturating_add(d)
    }
}

impl core::ops::Sub<Duration> for Instant {
    type Output = Self;
    /// Saturating subtraction.
    fn sub(self, d: Duration) -> Self {
        self.saturating_sub(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Instant::from_secs(2);
        assert_eq!(t.as_micros(), 2_000_000);
        assert_eq!((t + Duration::from_millis(5)).as_micros(), 2_005_000);
        assert_eq!(t - Duration::from_secs(10), Instant::ZERO);
        assert_eq!(Instant::MAX + Duration::from_secs(1), Instant::MAX);
        assert_eq!(
            Instant::from_secs(3).saturating_duration_since(t),
            Duration::from_secs(1)
        );
        assert_eq!(
            t.saturating_duration_since(Instant::from_secs(3)),
            Duration::ZERO
        );
    }
}
