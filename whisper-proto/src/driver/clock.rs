//! The one place a whisper process reads the OS clocks.

use crate::time::{Duration, Instant};

/// Converts between the OS clocks and the engine's two injected times: the monotonic
/// [`Instant`] (timers) and the wall clock (record HLCs, broadcast expiries, which are
/// Unix time on the wire).
///
/// A clock is fixed at start: [`Clock::new`] pairs "now" on the monotonic clock with
/// "now" in Unix time, and from then on the wall clock advances with the monotonic one.
/// So a process started an hour after another still stamps records with the same Unix
/// time as its neighbours, and a test can make a node that "started an hour later" or
/// runs with a skewed wall clock without waiting ([`Clock::with_unix_start`]).
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// The OS instant the clock started at.
    epoch: std::time::Instant,
    /// The engine instant that `epoch` stands for.
    base: Instant,
    /// Unix time (since 1970-01-01 UTC) at `epoch`.
    unix_start: Duration,
}

impl Clock {
    /// A clock starting now: engine time starts at [`Instant::ZERO`], the wall clock at
    /// the system's Unix time.
    pub fn new() -> Self {
        let unix_start = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Self::with_unix_start(Instant::ZERO, unix_start)
    }

    /// A clock starting now whose engine time starts at `base` and whose wall clock
    /// reads `unix_start` (Unix time) at this moment. Tests use it to run a node as if
    /// its process had been up for `base` already, or with a skewed wall clock.
    pub fn with_unix_start(base: Instant, unix_start: Duration) -> Self {
        Self {
            epoch: std::time::Instant::now(),
            base,
            unix_start,
        }
    }

    /// The current instant.
    pub fn now(&self) -> Instant {
        self.to_instant(std::time::Instant::now())
    }

    /// The current Unix time, as this clock tells it.
    pub fn unix_now(&self) -> Duration {
        self.unix_at(self.now())
    }

    /// The Unix time at engine instant `t`.
    pub fn unix_at(&self, t: Instant) -> Duration {
        let since = Duration::from_micros(t.as_micros().saturating_sub(self.base.as_micros()));
        self.unix_start.saturating_add(since)
    }

    /// `t` as an engine instant; times before the epoch clamp to the clock's start.
    pub fn to_instant(&self, t: std::time::Instant) -> Instant {
        let us = t.saturating_duration_since(self.epoch).as_micros();
        let us = u64::try_from(us).unwrap_or(u64::MAX);
        Instant::from_micros(self.base.as_micros().saturating_add(us))
    }

    /// `t` as an OS instant. Instants too far away to represent (such as
    /// [`Instant::MAX`]) clamp to about thirty years from the epoch.
    pub fn to_std(&self, t: Instant) -> std::time::Instant {
        const FAR: Duration = Duration::from_secs(30 * 365 * 24 * 3600);
        let since = t.as_micros().saturating_sub(self.base.as_micros());
        let d = Duration::from_micros(since).min(FAR);
        self.epoch.checked_add(d).unwrap_or(self.epoch + FAR / 2)
    }

    /// How long from `now` until `deadline` (zero if it has passed).
    pub fn until(&self, now: Instant, deadline: Instant) -> Duration {
        deadline.saturating_duration_since(now)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_both_ways_and_tells_unix_time() {
        let clock = Clock::new();
        let t = clock.now();
        let back = clock.to_instant(clock.to_std(t));
        assert!(back.as_micros().abs_diff(t.as_micros()) <= 1);
        assert!(clock.to_std(Instant::MAX) > clock.to_std(t));
        // After 2020-01-01 and before 2200: the wall clock is Unix time, not uptime.
        let unix = clock.unix_now().as_secs();
        assert!(unix > 1_577_836_800 && unix < 7_258_118_400, "{unix}");
    }

    #[test]
    fn a_clock_with_a_base_reads_uptime_and_unix_time_apart() {
        let hour = Duration::from_secs(3600);
        let clock =
            Clock::with_unix_start(Instant::ZERO + hour, Duration::from_secs(1_800_000_000));
        assert!(clock.now() >= Instant::ZERO + hour);
        assert_eq!(
            clock.unix_at(Instant::ZERO + hour),
            Duration::from_secs(1_800_000_000)
        );
        assert_eq!(
            clock.unix_at(Instant::ZERO + hour + Duration::from_secs(5)),
            Duration::from_secs(1_800_000_005)
        );
    }
}
