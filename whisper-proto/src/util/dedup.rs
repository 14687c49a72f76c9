//! A TTL-based "seen" set with a hard capacity.
//!
//! [`DedupCache`] answers "have I seen this recently?": a key marked at `t` counts as seen
//! while `now < t + ttl`. Marking an already-seen key refreshes it.

use core::num::NonZeroUsize;

use super::lru::LruMap;
use crate::time::{Duration, Instant};

/// Keys of type `K` seen within the last `ttl`.
///
/// # Bounds
///
/// At most `capacity` keys are held. Marking a new key when full evicts the key marked
/// longest ago, even if it has not expired: a key can then be reported new again early.
/// Size the capacity for the expected rate × `ttl`.
///
/// # Time
///
/// Expiry is checked against `now` on every query, so answers are exact for any `now`.
/// [`cleanup`](Self::cleanup) frees expired keys oldest-first and assumes `now` does not
/// decrease; an older `now` only delays freeing.
///
/// # Example
///
/// ```
/// use core::num::NonZeroUsize;
/// use whisper_proto::time::{Duration, Instant};
/// use whisper_proto::util::DedupCache;
///
/// let mut seen = DedupCache::new(Duration::from_secs(30), NonZeroUsize::new(4096).unwrap());
/// let t = Instant::from_secs(10);
/// assert!(seen.check(t, [7u8; 32])); // new: handle it
/// assert!(!seen.check(t, [7u8; 32])); // duplicate: drop it
/// assert!(seen.seen(t + Duration::from_secs(29), &[7u8; 32]));
/// assert!(seen.check(t + Duration::from_secs(30), [7u8; 32])); // expired: new again
/// ```
#[derive(Clone, Debug)]
pub struct DedupCache<K> {
    ttl: Duration,
    capacity: NonZeroUsize,
    /// Key → expiry, in marking order.
    expiries: LruMap<K, Instant>,
    evictions: u64,
}

impl<K: Ord + Clone> DedupCache<K> {
    /// An empty cache remembering keys for `ttl`, holding at most `capacity` keys.
    /// A zero `ttl` remembers nothing: every key is always new.
    pub const fn new(ttl: Duration, capacity: NonZeroUsize) -> Self {
        Self {
            ttl,
            capacity,
            expiries: LruMap::new(),
            evictions: 0,
        }
    }

    /// Returns `true` if `key` was not seen within the TTL, and marks it seen at `now`.
    /// Returns `false` for a duplicate and leaves its expiry unchanged.
    pub fn check(&mut self, now: Instant, key: K) -> bool {
        if self.seen(now, &key) {
            return false;
        }
        self.mark(now, key);
        true
    }

    /// Whether `key` was seen within the TTL. Changes nothing.
    pub fn seen(&self, now: Instant, key: &K) -> bool {
        self.expiries.get(key).is_some_and(|&expiry| now < expiry)
    }

    /// Marks `key` seen at `now`, until `now + ttl` (refreshing it if already seen).
    pub fn mark(&mut self, now: Instant, key: K) {
        let expiry = now + self.ttl;
        let (slot, evicted) = self.expiries.upsert_bounded(key, self.capacity, || expiry);
        *slot = expiry;
        self.evictions = self.evictions.saturating_add(u64::from(evicted));
    }

    /// Removes expired keys, returning how many were removed.
    ///
    /// Call periodically; every other method stays correct without it.
    pub fn cleanup(&mut self, now: Instant) -> usize {
        let mut removed = 0;
        while self
            .expiries
            .oldest()
            .is_some_and(|(_, &expiry)| expiry <= now)
        {
            self.expiries.pop_oldest();
            removed += 1;
        }
        removed
    }

    /// Number of keys held, expired or not.
    pub fn len(&self) -> usize {
        self.expiries.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.expiries.len() == 0
    }

    /// The bound on held keys.
    pub const fn capacity(&self) -> NonZeroUsize {
        self.capacity
    }

    /// How long a key stays seen.
    pub const fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Unexpired keys evicted so far to respect the capacity.
    pub const fn evictions(&self) -> u64 {
        self.evictions
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
    fn check_marks_and_expires() {
        let mut dc = DedupCache::new(Duration::from_secs(10), nz(8));
        assert!(!dc.seen(secs(0), &1));
        assert!(dc.check(secs(0), 1));
        assert!(!dc.check(secs(9), 1));
        assert!(dc.check(secs(10), 1));
        assert!(dc.seen(secs(19), &1));
    }

    #[test]
    fn mark_refreshes() {
        let mut dc = DedupCache::new(Duration::from_secs(10), nz(8));
        dc.mark(secs(0), 1);
        dc.mark(secs(5), 1);
        assert!(dc.seen(secs(14), &1));
        assert_eq!(dc.len(), 1);
    }

    #[test]
    fn capacity_evicts_oldest_mark() {
        let mut dc = DedupCache::new(Duration::from_secs(100), nz(2));
        dc.mark(secs(0), 1);
        dc.mark(secs(1), 2);
        dc.mark(secs(2), 1); // refresh: 2 is now the oldest
        dc.mark(secs(3), 3);
        assert_eq!(dc.len(), 2);
        assert!(dc.seen(secs(3), &1));
        assert!(!dc.seen(secs(3), &2));
        assert_eq!(dc.evictions(), 1);
    }

    #[test]
    fn cleanup_removes_only_expired() {
        let mut dc = DedupCache::new(Duration::from_secs(10), nz(8));
        dc.mark(secs(0), 1);
        dc.mark(secs(5), 2);
        assert_eq!(dc.cleanup(secs(9)), 0);
        assert_eq!(dc.cleanup(secs(10)), 1);
        assert!(dc.seen(secs(10), &2));
        assert_eq!(dc.cleanup(secs(100)), 1);
        assert!(dc.is_empty());
    }

    #[test]
    fn zero_ttl_remembers_nothing() {
        let mut dc = DedupCache::new(Duration::ZERO, nz(8));
        assert!(dc.check(secs(1), 1));
        assert!(dc.check(secs(1), 1));
    }

    quickcheck! {
        /// With room for every key, no key is reported new twice within its TTL, and a key
        /// is reported new again once its TTL has passed.
        fn never_new_twice_within_ttl(steps: Vec<(u8, u8, bool)>) -> bool {
            let ttl = 10;
            let mut dc = DedupCache::new(Duration::from_secs(ttl), nz(16));
            let mut now = 0;
            let mut last_new: [Option<u64>; 16] = [None; 16];
            steps.into_iter().all(|(dt, key, clean)| {
                now += u64::from(dt % 5);
                let key = key % 16;
                if clean {
                    dc.cleanup(secs(now));
                }
                let is_new = dc.check(secs(now), key);
                let expected = last_new[usize::from(key)].is_none_or(|t| now >= t + ttl);
                if is_new {
                    last_new[usize::from(key)] = Some(now);
                }
                is_new == expected
            })
        }

        /// The capacity is never exceeded, whatever the keys and times.
        fn never_exceeds_capacity(steps: Vec<(u8, u16)>, cap: u8) -> bool {
            let cap = nz(usize::from(cap % 8) + 1);
            let mut dc = DedupCache::new(Duration::from_secs(50), cap);
            let mut now = 0;
            steps.into_iter().all(|(dt, key)| {
                now += u64::from(dt % 3);
                dc.check(secs(now), key);
                dc.len() <= cap.get()
            })
        }
    }
}
