//! Deterministic, keyed hashing for the core's hash tables.
//!
//! `alloc` has no `HashMap`; the core uses `hashbrown` with [`SeededState`], a
//! `BuildHasher` keyed by a seed the engine draws from its own RNG. Iteration order is
//! therefore a function of the seed (the simulator relies on that), and peers that do
//! not know the seed cannot aim keys at one bucket.

use core::hash::{BuildHasher, Hasher};

/// A `hashbrown` map keyed by [`SeededState`].
pub type Map<K, V> = hashbrown::HashMap<K, V, SeededState>;
/// A `hashbrown` set keyed by [`SeededState`].
pub type Set<K> = hashbrown::HashSet<K, SeededState>;

/// A `BuildHasher` with a fixed 128-bit key.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct SeededState {
    k0: u64,
    k1: u64,
}

impl SeededState {
    /// A state keyed by `seed`.
    pub fn new(seed: u64) -> Self {
        let mut s = seed;
        Self {
            k0: crate::rng::splitmix64(&mut s),
            k1: crate::rng::splitmix64(&mut s),
        }
    }
}

impl BuildHasher for SeededState {
    type Hasher = KeyedHasher;
    fn build_hasher(&self) -> KeyedHasher {
        KeyedHasher {
            acc: self.k0,
            key: self.k1 | 1,
        }
    }
}

/// A fast keyed multiply-mix hasher (not cryptographic).
#[derive(Clone, Copy, Debug)]
pub struct KeyedHasher {
    acc: u64,
    key: u64,
}

impl KeyedHasher {
    #[inline]
    fn mix(&mut self, word: u64) {
        let m = u128::from(self.acc ^ word) * u128::from(self.key ^ 0x9e37_79b9_7f4a_7c15);
        self.acc = (m as u64) ^ ((m >> 64) as u64);
    }
}

impl Hasher for KeyedHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.mix(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        self.mix(u64::from_le_bytes(w) ^ ((bytes.len() as u64) << 56));
    }

    fn write_u64(&mut self, i: u64) {
        self.mix(i);
    }

    fn write_u32(&mut self, i: u32) {
        self.mix(u64::from(i));
    }

    fn write_usize(&mut self, i: usize) {
        self.mix(i as u64);
    }

    fn finish(&self) -> u64 {
        let mut s = self.acc;
        crate::rng::splitmix64(&mut s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_and_deterministic() {
        let a = SeededState::new(1).hash_one(42u64);
        assert_eq!(a, SeededState::new(1).hash_one(42u64));
        assert_ne!(a, SeededState::new(2).hash_one(42u64));
        assert_ne!(
            SeededState::new(1).hash_one(b"ab".as_slice()),
            SeededState::new(1).hash_one(b"ab\0".as_slice())
        );
    }
}
