//! Per-key sliding-window rate limiting with an optional cached result.
//!
//! [`SlidingWindowLimiter`] admits at most `max_events` events per key within any
//! `window`: an event at `t` counts against the key while `now - t < window`. It serves pull
//! requests and PEX, where a peer asking too often gets either nothing or the answer it was
//! given last time ([`SlidingWindowLimiter::allow_or_cached`]).
//!
//! This is not the engine's token-bucket `TokenBucketLimiter`: a sliding window remembers each
//! admitted event, so it never admits a burst larger than `max_events` in any window.

use alloc::collections::VecDeque;
use core::num::NonZeroUsize;

use super::lru::LruMap;
use crate::time::{Duration, Instant};

/// Sliding-window limiter keyed by `K`, with an optional cached result of type `C` per key.
///
/// # Bounds
///
/// At most `max_keys` keys are tracked; a new key beyond that evicts the key that was least
/// recently used (allowed, denied or given a cached result), which forgets its history.
/// Each key keeps at most `max_events` timestamps and one cached result.
///
/// # Time
///
/// `now` should not decrease. An event recorded with an older `now` than the key's newest
/// event is stamped with the newest instead, so the window never shrinks.
///
/// # Example
///
/// ```
/// use core::num::NonZeroUsize;
/// use whisper_proto::time::{Duration, Instant};
/// use whisper_proto::util::{Admission, SlidingWindowLimiter};
///
/// // Two pings per peer per minute; otherwise answer with the last ping's outcome.
/// let mut pings = SlidingWindowLimiter::<&str, bool>::new(
///     Duration::from_secs(60),
///     NonZeroUsize::new(2).unwrap(),
///     NonZeroUsize::new(1024).unwrap(),
/// );
/// let t = Instant::from_secs(100);
/// assert_eq!(pings.allow_or_cached(t, "alice"), Admission::Allowed);
/// pings.set_cached_result("alice", true);
/// assert!(pings.allow(t, "alice"));
/// assert_eq!(pings.allow_or_cached(t, "alice"), Admission::Cached(&true));
/// assert!(!pings.check(t + Duration::from_secs(59), &"alice"));
/// assert!(pings.check(t + Duration::from_secs(60), &"alice"));
/// ```
#[derive(Clone, Debug)]
pub struct SlidingWindowLimiter<K, C = ()> {
    window: Duration,
    max_events: NonZeroUsize,
    max_keys: NonZeroUsize,
    keys: LruMap<K, KeyState<C>>,
    evictions: u64,
}

#[derive(Clone, Debug)]
struct KeyState<C> {
    /// Admitted events, oldest first, at most `max_events` long.
    events: VecDeque<Instant>,
    cached: Option<C>,
}

/// The answer of [`SlidingWindowLimiter::allow_or_cached`].
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Admission<'a, C> {
    /// Under the limit: the event was recorded; do the work.
    Allowed,
    /// Over the limit; this is the result cached for the key. Nothing was recorded.
    Cached(&'a C),
    /// Over the limit and nothing cached. Nothing was recorded.
    Denied,
}

/// A snapshot of a [`SlidingWindowLimiter`], for debugging and metrics.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct SlidingWindowStats {
    /// Keys currently tracked.
    pub keys: usize,
    /// Events inside the window, summed over keys.
    pub events: usize,
    /// Keys evicted so far to respect `max_keys`.
    pub evictions: u64,
}

impl<K: Ord + Clone, C> SlidingWindowLimiter<K, C> {
    /// A limiter admitting `max_events` per key per `window`, tracking at most `max_keys`
    /// keys. A zero `window` admits everything.
    pub const fn new(window: Duration, max_events: NonZeroUsize, max_keys: NonZeroUsize) -> Self {
        Self {
            window,
            max_events,
            max_keys,
            keys: LruMap::new(),
            evictions: 0,
        }
    }

    /// Whether an event for `key` at `now` would be admitted. Records nothing.
    pub fn check(&self, now: Instant, key: &K) -> bool {
        self.count(now, key) < self.max_events.get()
    }

    /// Admits and records an event for `key` at `now` if under the limit.
    pub fn allow(&mut self, now: Instant, key: K) -> bool {
        let (window, max) = (self.window, self.max_events.get());
        let state = self.state_mut(key);
        state.prune(now, window);
        if state.events.len() >= max {
            return false;
        }
        let stamp = state.events.back().map_or(now, |&newest| newest.max(now));
        state.events.push_back(stamp);
        true
    }

    /// Like [`allow`](Self::allow), but when over the limit returns the result last cached
    /// for `key` with [`set_cached_result`](Self::set_cached_result), if any.
    pub fn allow_or_cached(&mut self, now: Instant, key: K) -> Admission<'_, C> {
        if self.allow(now, key.clone()) {
            return Admission::Allowed;
        }
        match self.keys.get(&key).and_then(|state| state.cached.as_ref()) {
            Some(cached) => Admission::Cached(cached),
            None => Admission::Denied,
        }
    }

    /// Caches `result` for `key`, for [`allow_or_cached`](Self::allow_or_cached) to return
    /// while the key is over the limit. The key counts as recently used (it is tracked, and
    /// may evict another, if it was not).
    pub fn set_cached_result(&mut self, key: K, result: C) {
        self.state_mut(key).cached = Some(result);
    }

    /// Forgets keys with no event inside the window at `now` (their cached result is no
    /// longer needed: the next event is admitted anyway). Returns how many were removed.
    ///
    /// Call periodically, e.g. once per `window`.
    pub fn cleanup(&mut self, now: Instant) -> usize {
        let (before, window) = (self.keys.len(), self.window);
        self.keys.retain(|_, state| {
            state.prune(now, window);
            !state.events.is_empty()
        });
        before - self.keys.len()
    }

    /// Counts of tracked keys and in-window events at `now`.
    pub fn stats(&self, now: Instant) -> SlidingWindowStats {
        SlidingWindowStats {
            keys: self.keys.len(),
            events: self.counts(now).map(|(_, n)| n).sum(),
            evictions: self.evictions,
        }
    }

    /// In-window event counts per tracked key at `now`, in key order.
    pub fn counts(&self, now: Instant) -> impl Iterator<Item = (&K, usize)> {
        self.keys
            .iter()
            .map(move |(key, state)| (key, state.in_window(now, self.window)))
    }

    /// Events for `key` inside the window at `now`.
    pub fn count(&self, now: Instant, key: &K) -> usize {
        self.keys
            .get(key)
            .map_or(0, |state| state.in_window(now, self.window))
    }

    /// Number of tracked keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.keys.len() == 0
    }

    /// The window length.
    pub const fn window(&self) -> Duration {
        self.window
    }

    /// The most events admitted per key per window.
    pub const fn max_events(&self) -> NonZeroUsize {
        self.max_events
    }

    /// The bound on tracked keys.
    pub const fn max_keys(&self) -> NonZeroUsize {
        self.max_keys
    }

    /// The state of `key`, created (evicting the least recently used key if full) and
    /// marked as most recently used.
    fn state_mut(&mut self, key: K) -> &mut KeyState<C> {
        let (state, evicted) = self.keys.upsert_bounded(key, self.max_keys, || KeyState {
            events: VecDeque::new(),
            cached: None,
        });
        self.evictions = self.evictions.saturating_add(u64::from(evicted));
        state
    }
}

impl<C> KeyState<C> {
    /// Drops events that left the window.
    fn prune(&mut self, now: Instant, window: Duration) {
        while let Some(&oldest) = self.events.front() {
            if now.saturating_duration_since(oldest) < window {
                break;
            }
            self.events.pop_front();
        }
    }

    fn in_window(&self, now: Instant, window: Duration) -> usize {
        let inside = |t: &&Instant| now.saturating_duration_since(**t) < window;
        self.events.iter().filter(inside).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use quickcheck::quickcheck;

    fn nz(n: usize) -> NonZeroUsize {
        NonZeroUsize::new(n).unwrap()
    }

    fn secs(s: u64) -> Instant {
        Instant::from_secs(s)
    }

    #[test]
    fn window_slides() {
        let mut rl = SlidingWindowLimiter::<u8>::new(Duration::from_secs(10), nz(2), nz(8));
        assert!(rl.allow(secs(0), 1));
        assert!(rl.allow(secs(5), 1));
        assert!(!rl.allow(secs(9), 1));
        assert!(!rl.check(secs(9), &1));
        assert!(rl.check(secs(9), &2));
        // The event at 0 leaves the window at 10; the one at 5 is still in.
        assert!(rl.allow(secs(10), 1));
        assert!(!rl.allow(secs(14), 1));
        assert_eq!(rl.count(secs(14), &1), 2);
        assert!(rl.allow(secs(15), 1));
    }

    #[test]
    fn check_records_nothing() {
        let rl = SlidingWindowLimiter::<u8>::new(Duration::from_secs(1), nz(1), nz(1));
        assert!(rl.check(secs(0), &1));
        assert!(rl.check(secs(0), &1));
        assert!(rl.is_empty());
    }

    #[test]
    fn cached_result_is_returned_only_when_limited() {
        let mut rl = SlidingWindowLimiter::<u8, &str>::new(Duration::from_secs(60), nz(1), nz(4));
        assert_eq!(rl.allow_or_cached(secs(0), 1), Admission::Allowed);
        assert_eq!(rl.allow_or_cached(secs(1), 1), Admission::Denied);
        rl.set_cached_result(1, "up");
        assert_eq!(rl.allow_or_cached(secs(2), 1), Admission::Cached(&"up"));
        assert_eq!(rl.allow_or_cached(secs(60), 1), Admission::Allowed);
    }

    #[test]
    fn keys_are_bounded_and_least_recent_evicted() {
        let mut rl = SlidingWindowLimiter::<u8>::new(Duration::from_secs(60), nz(1), nz(2));
        assert!(rl.allow(secs(0), 1));
        assert!(rl.allow(secs(0), 2));
        assert!(!rl.allow(secs(1), 1)); // touches 1: 2 is now least recent
        assert!(rl.allow(secs(1), 3));
        assert_eq!(rl.len(), 2);
        assert_eq!(rl.count(secs(1), &2), 0);
        assert_eq!(rl.count(secs(1), &1), 1);
        assert_eq!(
            rl.stats(secs(1)),
            SlidingWindowStats {
                keys: 2,
                events: 2,
                evictions: 1
            }
        );
    }

    #[test]
    fn cleanup_forgets_idle_keys() {
        let mut rl = SlidingWindowLimiter::<u8>::new(Duration::from_secs(10), nz(3), nz(8));
        assert!(rl.allow(secs(0), 1));
        assert!(rl.allow(secs(8), 2));
        assert_eq!(rl.cleanup(secs(12)), 1);
        assert_eq!(rl.counts(secs(12)).collect::<Vec<_>>(), [(&2, 1)]);
    }

    #[test]
    fn older_now_never_shrinks_the_window() {
        let mut rl = SlidingWindowLimiter::<u8>::new(Duration::from_secs(10), nz(2), nz(8));
        assert!(rl.allow(secs(20), 1));
        assert!(rl.allow(secs(5), 1));
        assert!(!rl.allow(secs(29), 1));
        assert!(rl.allow(secs(30), 1));
    }

    quickcheck! {
        /// In every window of length `window`, at most `max` events per key were admitted.
        fn never_more_than_max_per_window(steps: Vec<(u8, u8)>, max: u8, window: u8) -> bool {
            let (max, window) = (usize::from(max % 4) + 1, u64::from(window % 20) + 1);
            let mut rl = SlidingWindowLimiter::<u8>::new(Duration::from_secs(window), nz(max), nz(4));
            let mut now = 0;
            let mut admitted: [Vec<u64>; 4] = Default::default();
            for (dt, key) in steps {
                now += u64::from(dt % 4);
                let key = key % 4;
                let check = rl.check(secs(now), &key);
                let allowed = rl.allow(secs(now), key);
                if check != allowed {
                    return false;
                }
                if allowed {
                    admitted[usize::from(key)].push(now);
                }
            }
            admitted.iter().all(|times| {
                times.iter().all(|&start| {
                    times.iter().filter(|&&t| t >= start && t < start + window).count() <= max
                })
            })
        }

        /// The limiter admits whenever the key is under the limit (it is not stricter).
        fn admits_when_under_limit(gaps: Vec<u8>) -> bool {
            let mut rl = SlidingWindowLimiter::<()>::new(Duration::from_secs(10), nz(3), nz(1));
            let mut now = 0;
            let mut admitted: Vec<u64> = Vec::new();
            gaps.into_iter().all(|dt| {
                now += u64::from(dt % 6);
                let recent = admitted.iter().filter(|&&t| now - t < 10).count();
                let allowed = rl.allow(secs(now), ());
                if allowed {
                    admitted.push(now);
                }
                allowed == (recent < 3) && rl.keys.get(&()).is_some_and(|s| s.events.len() <= 3)
            })
        }
    }
}
