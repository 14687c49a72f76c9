//! Rumor ids and the O(1) LRU dedup set.

use alloc::vec::Vec;
use core::fmt;
use core::num::NonZeroU32;

use crate::hash::{Map, SeededState};

/// The seen-set capacity used by the reference (4096).
pub const DEFAULT_CAPACITY: NonZeroU32 = NonZeroU32::new(4096).unwrap();

/// The largest capacity a [`RumorTracker`] accepts; larger requests are clamped.
/// About 40 MiB of slots and index at this size.
pub const MAX_CAPACITY: NonZeroU32 = NonZeroU32::new(1 << 20).unwrap();

/// A rumor's identity: BLAKE3-256 of its payload. The G3-ACK carries these 32 bytes.
#[derive(Clone, Copy, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct RumorId([u8; 32]);

impl RumorId {
    /// An id from its 32 bytes, as read from a G3-ACK.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The id's 32 bytes, as written in a G3-ACK.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for RumorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RumorId({self})")
    }
}

impl fmt::Display for RumorId {
    /// Lowercase hex, as `b3sum` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// The id of a rumor with `payload`: BLAKE3-256, the one id function for origin, receipt
/// and ACK.
pub fn rumor_id(payload: &[u8]) -> RumorId {
    RumorId(*blake3::hash(payload).as_bytes())
}

/// "No slot": the end of the recency list.
const NIL: u32 = u32::MAX;

/// One entry of the recency list.
#[derive(Clone, Debug)]
struct Slot {
    id: RumorId,
    /// Toward the most recent end.
    prev: u32,
    /// Toward the least recent end.
    next: u32,
}

/// A bounded LRU set of seen [`RumorId`]s; every operation is O(1) (amortised while it
/// grows).
///
/// It holds at most [`capacity`](Self::capacity) ids. Inserting into a full tracker
/// evicts the least recently seen id. Memory grows with use up to the capacity and is
/// then reused slot by slot.
#[derive(Clone, Debug)]
pub struct RumorTracker {
    index: Map<RumorId, u32>,
    slots: Vec<Slot>,
    /// Most recently seen.
    head: u32,
    /// Least recently seen: evicted next.
    tail: u32,
    capacity: u32,
}

impl RumorTracker {
    /// A tracker of [`DEFAULT_CAPACITY`] whose index is keyed by `hash_seed` (draw it from
    /// the engine's RNG).
    pub fn new(hash_seed: u64) -> Self {
        Self::with_capacity(DEFAULT_CAPACITY, hash_seed)
    }

    /// A tracker holding at most `capacity` ids, clamped to [`MAX_CAPACITY`].
    pub fn with_capacity(capacity: NonZeroU32, hash_seed: u64) -> Self {
        let capacity = capacity.min(MAX_CAPACITY).get();
        // Nothing is allocated up front: an idle engine holds two trackers, and 100,000
        // engines in one process must stay small.
        Self {
            index: Map::with_hasher(SeededState::new(hash_seed)),
            slots: Vec::new(),
            head: NIL,
            tail: NIL,
            capacity,
        }
    }

    /// Marks `id` seen. Returns `true` if it was new. A new id becomes the most recent,
    /// evicting the least recent one when full. A known id is moved to the front, as by
    /// [`touch`](Self::touch).
    pub fn check_and_insert(&mut self, id: RumorId) -> bool {
        if self.touch(&id) {
            return false;
        }
        let slot = if self.slots.len() < self.capacity as usize {
            if self.slots.len() == self.slots.capacity() {
                // Double, but never past the capacity.
                let room =
                    (self.capacity as usize - self.slots.len()).min(self.slots.len().max(16));
                self.slots.reserve_exact(room);
            }
            self.slots.push(Slot {
                id,
                prev: NIL,
                next: NIL,
            });
            // INVARIANT: slots.len() ≤ capacity ≤ MAX_CAPACITY < u32::MAX.
            (self.slots.len() - 1) as u32
        } else {
            let victim = self.tail;
            self.unlink(victim);
            let old = core::mem::replace(&mut self.slot_mut(victim).id, id);
            self.index.remove(&old);
            victim
        };
        self.index.insert(id, slot);
        self.push_front(slot);
        true
    }

    /// Whether `id` has been seen (and not yet evicted). Does not change recency.
    pub fn contains(&self, id: &RumorId) -> bool {
        self.index.contains_key(id)
    }

    /// Moves `id` to the most-recent end if present; returns whether it was.
    pub fn touch(&mut self, id: &RumorId) -> bool {
        let Some(&slot) = self.index.get(id) else {
            return false;
        };
        if slot != self.head {
            self.unlink(slot);
            self.push_front(slot);
        }
        true
    }

    /// Number of ids held.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether no id is held.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The most ids held at once.
    pub fn capacity(&self) -> usize {
        self.capacity as usize
    }

    /// Forgets every id (keeps the allocation).
    pub fn clear(&mut self) {
        self.index.clear();
        self.slots.clear();
        self.head = NIL;
        self.tail = NIL;
    }

    /// Ids from most to least recent.
    pub fn iter(&self) -> impl Iterator<Item = &RumorId> + '_ {
        let mut at = self.head;
        core::iter::from_fn(move || {
            let slot = self.slots.get(at as usize)?;
            at = slot.next;
            Some(&slot.id)
        })
    }

    fn slot_mut(&mut self, slot: u32) -> &mut Slot {
        // INVARIANT: list links and index values only ever name pushed slots.
        &mut self.slots[slot as usize]
    }

    /// Detaches `slot` from the recency list.
    fn unlink(&mut self, slot: u32) {
        let Slot { prev, next, .. } = *self.slot_mut(slot);
        match prev {
            NIL => self.head = next,
            p => self.slot_mut(p).next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.slot_mut(n).prev = prev,
        }
    }

    /// Links a detached `slot` in as the most recent.
    fn push_front(&mut self, slot: u32) {
        let old_head = self.head;
        let s = self.slot_mut(slot);
        s.prev = NIL;
        s.next = old_head;
        match old_head {
            NIL => self.tail = slot,
            h => self.slot_mut(h).prev = slot,
        }
        self.head = slot;
    }
}

#[cfg(test)]
mod tests {
    use alloc::{format, vec::Vec};

    use quickcheck::quickcheck;

    use super::*;

    fn n(i: u32) -> RumorId {
        let mut b = [0u8; 32];
        b[..4].copy_from_slice(&i.to_be_bytes());
        RumorId::from_bytes(b)
    }

    fn cap(c: u32) -> NonZeroU32 {
        NonZeroU32::new(c).unwrap()
    }

    #[test]
    fn golden_ids() {
        assert_eq!(
            format!("{}", rumor_id(b"")),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        assert_eq!(
            format!("{}", rumor_id(b"hi")),
            "85052e9aab1b67b6622d94a08441b09fd5b7aca61ee360416d70de5da67d86ca"
        );
        assert_eq!(rumor_id(b"hi").as_bytes(), blake3::hash(b"hi").as_bytes());
        assert_ne!(rumor_id(b"hi"), rumor_id(b"hi\0"));
    }

    #[test]
    fn dedups_and_counts() {
        let mut t = RumorTracker::new(1);
        assert_eq!(t.capacity(), 4096);
        assert!(t.is_empty());
        assert!(t.check_and_insert(n(1)));
        assert!(!t.check_and_insert(n(1)));
        assert!(t.contains(&n(1)));
        assert!(!t.contains(&n(2)));
        assert!(!t.touch(&n(2)));
        assert_eq!(t.len(), 1);
        t.clear();
        assert!(t.is_empty() && !t.contains(&n(1)));
        assert!(t.check_and_insert(n(1)));
    }

    #[test]
    fn evicts_least_recent_and_touch_protects() {
        let mut t = RumorTracker::with_capacity(cap(3), 7);
        for i in 1..=3 {
            assert!(t.check_and_insert(n(i)));
        }
        assert!(t.touch(&n(1))); // order now 1, 3, 2
        assert!(!t.check_and_insert(n(3))); // re-seen: 3, 1, 2
        assert!(t.check_and_insert(n(4))); // evicts 2
        assert!(!t.contains(&n(2)));
        assert_eq!(t.iter().copied().collect::<Vec<_>>(), [n(4), n(3), n(1)]);
        assert!(t.check_and_insert(n(5))); // evicts 1
        assert!(!t.contains(&n(1)) && t.contains(&n(3)));
        // contains does not bump: 3 is now least recent and goes next.
        assert!(t.contains(&n(3)));
        assert!(t.check_and_insert(n(6)));
        assert!(!t.contains(&n(3)));
    }

    #[test]
    fn capacity_is_clamped() {
        let t = RumorTracker::with_capacity(cap(u32::MAX), 0);
        assert_eq!(t.capacity(), MAX_CAPACITY.get() as usize);
    }

    #[test]
    fn flood_of_a_million_keeps_the_bound_and_the_hot_id() {
        let mut t = RumorTracker::new(3);
        let hot = rumor_id(b"hot");
        t.check_and_insert(hot);
        for i in 0..1_000_000 {
            assert!(t.check_and_insert(n(i)));
            if i % 1000 == 0 {
                assert!(!t.check_and_insert(hot), "re-seen at {i}");
            }
            assert!(t.len() <= 4096);
        }
        assert_eq!(t.len(), 4096);
        assert!(t.contains(&hot));
        assert!(t.contains(&n(999_999)) && !t.contains(&n(999_999 - 4096)));
        assert_eq!(t.iter().count(), 4096);
    }

    quickcheck! {
        /// Against a naive model: a Vec in recency order.
        fn matches_a_naive_lru(ops: Vec<(bool, u8)>, capacity: u8) -> bool {
            let capacity = u32::from(capacity % 16) + 1;
            let mut t = RumorTracker::with_capacity(cap(capacity), 9);
            let mut model: Vec<RumorId> = Vec::new();
            ops.into_iter().all(|(insert, key)| {
                let id = n(u32::from(key % 32));
                let pos = model.iter().position(|m| *m == id);
                let ok = if insert {
                    let new = t.check_and_insert(id);
                    if let Some(p) = pos {
                        model.remove(p);
                    } else if model.len() == capacity as usize {
                        model.pop();
                    }
                    model.insert(0, id);
                    new == pos.is_none()
                } else {
                    let hit = t.touch(&id);
                    if let Some(p) = pos {
                        model.remove(p);
                        model.insert(0, id);
                    }
                    hit == pos.is_some()
                };
                ok && t.iter().copied().eq(model.iter().copied()) && t.len() == model.len()
            })
        }
    }
}
