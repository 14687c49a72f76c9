//! A map that remembers the order in which entries were last touched.
//!
//! Shared by the bounded tables of this module ([`DedupCache`](super::DedupCache),
//! [`SlidingWindowLimiter`](super::SlidingWindowLimiter), [`LogBatcher`](super::LogBatcher)):
//! each checks its own bound and calls [`LruMap::pop_oldest`] to make room. Every operation
//! is `O(log n)`; iteration order is deterministic.

use alloc::collections::BTreeMap;
use alloc::collections::btree_map::Entry;
use core::num::NonZeroUsize;

/// Entries keyed by `K`, plus an index from "touch sequence number" to key.
#[derive(Clone, Debug)]
pub(super) struct LruMap<K, V> {
    entries: BTreeMap<K, Slot<V>>,
    order: BTreeMap<u64, K>,
    next_seq: u64,
}

#[derive(Clone, Debug)]
struct Slot<V> {
    seq: u64,
    value: V,
}

impl<K: Ord + Clone, V> LruMap<K, V> {
    pub(super) const fn new() -> Self {
        Self {
            entries: BTreeMap::new(),
            order: BTreeMap::new(),
            next_seq: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn get(&self, key: &K) -> Option<&V> {
        self.entries.get(key).map(|slot| &slot.value)
    }

    /// Mutable access without changing the entry's age.
    pub(super) fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.entries.get_mut(key).map(|slot| &mut slot.value)
    }

    /// Inserts `value` as the newest entry, returning the value it replaced.
    pub(super) fn insert(&mut self, key: K, value: V) -> Option<V> {
        let seq = self.bump();
        self.order.insert(seq, key.clone());
        let old = self.entries.insert(key, Slot { seq, value })?;
        self.order.remove(&old.seq);
        Some(old.value)
    }

    /// Makes `key` the newest entry, inserting `default()` if it is absent. When inserting
    /// would exceed `cap` entries, the oldest entry is evicted first; the flag says so.
    pub(super) fn upsert_bounded(
        &mut self,
        key: K,
        cap: NonZeroUsize,
        default: impl FnOnce() -> V,
    ) -> (&mut V, bool) {
        let mut evicted = false;
        if !self.entries.contains_key(&key) && self.entries.len() >= cap.get() {
            evicted = self.pop_oldest().is_some();
        }
        let seq = self.bump();
        self.order.insert(seq, key.clone());
        let slot = match self.entries.entry(key) {
            Entry::Occupied(entry) => {
                let slot = entry.into_mut();
                self.order.remove(&slot.seq);
                slot.seq = seq;
                slot
            }
            Entry::Vacant(entry) => entry.insert(Slot {
                seq,
                value: default(),
            }),
        };
        (&mut slot.value, evicted)
    }

    /// The least recently touched entry.
    pub(super) fn oldest(&self) -> Option<(&K, &V)> {
        let (_, key) = self.order.first_key_value()?;
        self.entries
            .get_key_value(key)
            .map(|(k, slot)| (k, &slot.value))
    }

    /// Removes and returns the least recently touched entry.
    pub(super) fn pop_oldest(&mut self) -> Option<(K, V)> {
        let (_, key) = self.order.pop_first()?;
        let slot = self.entries.remove(&key)?;
        Some((key, slot.value))
    }

    /// Keeps only the entries for which `keep` returns `true`.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        let order = &mut self.order;
        self.entries.retain(|key, slot| {
            let kept = keep(key, &mut slot.value);
            if !kept {
                order.remove(&slot.seq);
            }
            kept
        });
    }

    /// Entries in key order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().map(|(k, slot)| (k, &slot.value))
    }

    /// The next sequence number. It would take 2^64 touches to wrap, and a wrap only
    /// misorders eviction; it never panics.
    fn bump(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touch_and_insert_move_to_newest() {
        let mut map = LruMap::new();
        map.insert("a", 1);
        map.insert("b", 2);
        map.insert("c", 3);
        let cap = NonZeroUsize::new(3).unwrap();
        assert_eq!(map.upsert_bounded("a", cap, || 0), (&mut 1, false));
        assert_eq!(map.oldest(), Some((&"b", &2)));
        assert_eq!(map.upsert_bounded("b", cap, || 0), (&mut 2, false));
        assert_eq!(map.oldest(), Some((&"c", &3)));
        map.insert("b", 20);
        assert_eq!(map.pop_oldest(), Some(("c", 3)));
        assert_eq!(map.pop_oldest(), Some(("a", 1)));
        assert_eq!(map.pop_oldest(), Some(("b", 20)));
        assert_eq!(map.pop_oldest(), None);
    }

    #[test]
    fn upsert_bounded_evicts_the_oldest() {
        let cap = NonZeroUsize::new(2).unwrap();
        let mut map = LruMap::new();
        assert_eq!(map.upsert_bounded(1, cap, || 'a'), (&mut 'a', false));
        assert_eq!(map.upsert_bounded(2, cap, || 'b'), (&mut 'b', false));
        assert_eq!(map.upsert_bounded(1, cap, || 'x'), (&mut 'a', false));
        assert_eq!(map.upsert_bounded(3, cap, || 'c'), (&mut 'c', true));
        assert_eq!(map.get(&2), None);
        assert_eq!(map.len(), 2);
        assert_eq!(map.order.len(), 2);
    }

    #[test]
    fn retain_keeps_the_index_in_step() {
        let mut map = LruMap::new();
        for k in 0..10 {
            map.insert(k, k * 10);
        }
        map.retain(|k, _| k % 2 == 0);
        assert_eq!(map.len(), 5);
        assert_eq!(map.order.len(), 5);
        *map.get_mut(&4).unwrap() = 7;
        assert_eq!(map.get(&4), Some(&7));
        assert_eq!(map.oldest(), Some((&0, &0)));
        assert_eq!(map.iter().count(), 5);
    }
}
