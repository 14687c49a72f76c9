//! State stores: the [`StateStore`] trait the G1 exchange drives, and [`MemStore`], the
//! embedded last-writer-wins map.
//!
//! # The contract
//! Records are opaque [`Bytes`] to the engine and the G1 codec; the store alone gives
//! them meaning. The engine asks for a [`fingerprint`](StateStore::fingerprint) (G2),
//! [`snapshot`](StateStore::snapshot)s and [`delta`](StateStore::delta)s (G1), optional
//! bucket digests (G2B), and hands every inbound record to
//! [`apply`](StateStore::apply) — the single ingest point for G1 and raw G3 records.
//!
//! Deltas are cut by the store's own **change stamps**, not by wall-clock time: every
//! local mutation (a write, or an applied remote record) gets a stamp greater than every
//! earlier one, and [`high_water`](StateStore::high_water) is the latest. The engine
//! records the high water it has sent a peer as that peer's watermark (see
//! [`crate::delta`]), so clock skew between writers never hides a record from a delta.
//!
//! # Time
//! Stores never read a clock. The engine passes `now_us`: wall-clock microseconds since
//! the Unix epoch, computed as the driver's [`Instant`](crate::Instant) plus
//! [`Config::wall_clock_offset`](crate::Config::wall_clock_offset).

use crate::node::NodeId;
use crate::time::Duration;
use crate::wire::{MAX_KEY_LEN, Record, RecordError};
use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;
use bytes::Bytes;
use core::any::Any;

/// The state a StatefulMerge topic synchronises.
///
/// Implementations MUST be deterministic (no clock, no global RNG) and MUST change
/// [`fingerprint`](Self::fingerprint) on every mutation, content included: equal
/// fingerprints let G2 skip the exchange.
pub trait StateStore {
    /// A 64-bit summary of the whole state; 0 means "none" (G2 never reports a match on
    /// 0). MUST change on any mutation.
    fn fingerprint(&self) -> u64;

    /// Every record, tombstones included, as opaque bytes.
    fn snapshot(&self) -> Vec<Bytes>;

    /// Records whose change stamp is in `(since, until]`. `since = 0` is a snapshot
    /// bounded by `until`. A store that cannot cut deltas MAY return more (the peer
    /// tolerates over-sending) but MUST NOT return less.
    fn delta(&self, since: u64, until: u64) -> Vec<Bytes>;

    /// The latest change stamp (0 before the first mutation). Stamps only grow.
    fn high_water(&self) -> u64;

    /// Ingests one inbound record. `Ok(true)`: state changed (the record won);
    /// `Ok(false)`: it was stale, a duplicate or an expired tombstone.
    ///
    /// # Errors
    /// [`ApplyError`]: the record is dropped and counted; state is unchanged.
    fn apply(&mut self, now_us: u64, record: &Bytes) -> Result<bool, ApplyError>;

    /// A local write (`Some(value)`) or delete (`None`). Returns the encoded record.
    ///
    /// # Errors
    /// [`StoreError`]; state is unchanged. The default implementation is
    /// [`StoreError::Unsupported`]: stores the application writes to directly need not
    /// implement it.
    fn write(
        &mut self,
        now_us: u64,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<Bytes, StoreError> {
        let _ = (now_us, key, value);
        Err(StoreError::Unsupported)
    }

    /// `n` (1..=256) bucket digests whose wrapping sum is the fingerprint, for G2B; `None`
    /// when the store does not partition (the default).
    fn bucket_digests(&self, n: usize) -> Option<Vec<u64>> {
        let _ = n;
        None
    }

    /// Every record in the buckets marked in `want` (`want.len()` buckets). The default
    /// is the whole snapshot.
    fn records_in_buckets(&self, want: &[bool]) -> Vec<Bytes> {
        let _ = want;
        self.snapshot()
    }

    /// Garbage-collects what has expired by `now_us` (tombstones); returns how many
    /// entries were removed. The default does nothing.
    fn expire(&mut self, now_us: u64) -> usize {
        let _ = now_us;
        0
    }

    /// The store as [`Any`], so the application can reach its concrete type through
    /// [`Engine::store`](crate::Engine::store). The default is `None`.
    fn as_any(&self) -> Option<&dyn Any> {
        None
    }

    /// Mutable [`StateStore::as_any`].
    fn as_any_mut(&mut self) -> Option<&mut dyn Any> {
        None
    }
}

/// Why [`StateStore::apply`] refused a record. The record is dropped and counted in
/// [`EngineStats::records_rejected`](crate::EngineStats::records_rejected); state is
/// unchanged.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// The bytes are not a record.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The record's clock is further ahead of ours than the store tolerates; accepting it
    /// would drag every later write of ours into the future.
    #[error("record clock {ahead_ms} ms ahead of ours")]
    ClockSkew {
        /// How far ahead, in milliseconds.
        ahead_ms: u64,
    },
    /// The store holds its maximum number of entries.
    #[error("store full")]
    Full,
    /// A store-specific refusal.
    #[error("{0}")]
    Other(&'static str),
}

/// Why a local write failed. State is unchanged.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store does not take writes through the engine.
    #[error("the store does not support writes through the engine")]
    Unsupported,
    /// The key is empty or longer than [`MAX_KEY_LEN`].
    #[error("bad key length {0}")]
    KeyLength(usize),
    /// The value exceeds [`MemStoreConfig::max_value_len`].
    #[error("value of {len} bytes exceeds {max}")]
    ValueTooLarge {
        /// Its length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// The store holds [`MemStoreConfig::max_entries`] entries.
    #[error("store full")]
    Full,
    /// No StatefulMerge topic of that name (from the engine's `put`/`delete`).
    #[error("no StatefulMerge topic of that name")]
    UnknownTopic,
}

/// A hybrid logical clock packed in a `u64`: the upper 48 bits are Unix milliseconds,
/// the lower 16 a counter. Packed values compare like `(ms, counter)` pairs, and a tick
/// is `max(last + 1, physical)`, so a counter overflow carries into the milliseconds.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct Hlc {
    last: u64,
}

impl Hlc {
    /// A clock that has seen nothing.
    pub const fn new() -> Self {
        Self { last: 0 }
    }

    /// Packs milliseconds and a counter.
    pub const fn pack(ms: u64, counter: u16) -> u64 {
        (ms << 16) | counter as u64
    }

    /// The milliseconds of a packed value.
    pub const fn millis(v: u64) -> u64 {
        v >> 16
    }

    /// The latest value issued or observed.
    pub const fn last(&self) -> u64 {
        self.last
    }

    /// A new timestamp, greater than every earlier one, at wall time `now_us`.
    pub fn tick(&mut self, now_us: u64) -> u64 {
        let physical = Self::pack((now_us / 1000).min(Self::MAX_MS), 0);
        self.last = physical.max(self.last.saturating_add(1));
        self.last
    }

    /// Merges a remote timestamp, so the next tick is greater than it.
    pub fn observe(&mut self, remote: u64) {
        self.last = self.last.max(remote);
    }

    /// The largest representable millisecond value (2^48 − 1).
    pub const MAX_MS: u64 = (1 << 48) - 1;
}

/// [`MemStore`]'s bounds and policies.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct MemStoreConfig {
    /// Most entries, tombstones included (default 1,048,576). Writes and applies of new
    /// keys beyond it fail with `Full`.
    pub max_entries: usize,
    /// Largest value (default 64 KiB), so that a record always fits in a G1 body and a
    /// G3 rumor.
    pub max_value_len: usize,
    /// How long a tombstone is kept (default 24 h, by its HLC time). It MUST exceed the
    /// longest time a node can be away and come back with the deleted record: a peer
    /// that still holds the live record after every tombstone expired resurrects it.
    /// Tombstones older than this are refused on apply, so an expired delete does not
    /// come back either.
    pub tombstone_ttl: Duration,
    /// Most a record's HLC may run ahead of our wall clock (default 60 s).
    pub max_clock_skew: Duration,
}

impl Default for MemStoreConfig {
    fn default() -> Self {
        Self {
            max_entries: 1 << 20,
            max_value_len: 64 * 1024,
            tombstone_ttl: Duration::from_secs(24 * 3600),
            max_clock_skew: Duration::from_secs(60),
        }
    }
}

#[derive(Clone, Debug)]
struct Entry {
    record: Record,
    encoded: Bytes,
    /// Local change stamp.
    stamp: u64,
    /// Keyed hash of `encoded`.
    hash: u64,
}

/// The embedded [`StateStore`]: a keyed last-writer-wins map.
///
/// * **Versions** are `(hlc, origin)`: the writer's [`Hlc`] and node id; the greater
///   wins, so every replica picks the same winner whatever the order of arrival.
/// * **Deletes** are tombstones, kept for [`MemStoreConfig::tombstone_ttl`] and then
///   collected by [`StateStore::expire`] (the engine calls it from its sweep timer).
/// * **Fingerprint**: the wrapping sum, over every entry (tombstones included), of the
///   first 8 bytes of `BLAKE3-keyed(deployment key, encoded record)`. Any mutation —
///   a new key, a new value under an old key, a delete — changes it, and a peer that
///   does not know the deployment key cannot craft collisions. Every node of a
///   deployment MUST use the same key, or fingerprints never match.
/// * **Buckets** (G2B): a key's bucket is `BLAKE3-keyed(deployment key, 0x00 ‖ key)`
///   mod n; bucket digests are the same sums per bucket, so they add up to the
///   fingerprint.
/// * **Bounds**: [`MemStoreConfig::max_entries`] entries, keys up to 1 KiB, values up to
///   [`MemStoreConfig::max_value_len`].
#[derive(Clone, Debug)]
pub struct MemStore {
    me: NodeId,
    key: [u8; 32],
    config: MemStoreConfig,
    clock: Hlc,
    entries: BTreeMap<Bytes, Entry>,
    by_stamp: BTreeMap<u64, Bytes>,
    fingerprint: u64,
    tombstones: usize,
}

impl MemStore {
    /// An empty store writing as `me`, fingerprinting with the deployment key `key`.
    pub fn new(me: NodeId, key: [u8; 32]) -> Self {
        Self::with_config(me, key, MemStoreConfig::default())
    }

    /// An empty store with explicit bounds.
    pub fn with_config(me: NodeId, key: [u8; 32], config: MemStoreConfig) -> Self {
        Self {
            me,
            key,
            config,
            clock: Hlc::new(),
            entries: BTreeMap::new(),
            by_stamp: BTreeMap::new(),
            fingerprint: 0,
            tombstones: 0,
        }
    }

    /// The live value under `key`.
    pub fn get(&self, key: &[u8]) -> Option<&Bytes> {
        self.entries.get(key)?.record.value.as_ref()
    }

    /// The record under `key`, tombstones included.
    pub fn record(&self, key: &[u8]) -> Option<&Record> {
        self.entries.get(key).map(|e| &e.record)
    }

    /// Live (non-deleted) keys.
    pub fn len(&self) -> usize {
        self.entries.len() - self.tombstones
    }

    /// True when no live key exists.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Tombstones held.
    pub fn tombstones(&self) -> usize {
        self.tombstones
    }

    /// Live entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&Bytes, &Bytes)> + '_ {
        self.entries
            .iter()
            .filter_map(|(k, e)| e.record.value.as_ref().map(|v| (k, v)))
    }

    /// The store's clock.
    pub fn clock(&self) -> Hlc {
        self.clock
    }

    /// Writes `value` under `key` at wall time `now_us`; returns the encoded record.
    ///
    /// # Errors
    /// [`StoreError`]; state is unchanged.
    pub fn put(&mut self, now_us: u64, key: &[u8], value: &[u8]) -> Result<Bytes, StoreError> {
        self.local_write(now_us, key, Some(value))
    }

    /// Deletes `key` (writes a tombstone, even for an absent key, so the delete wins over
    /// concurrent older writes elsewhere); returns the encoded tombstone.
    ///
    /// # Errors
    /// [`StoreError`]; state is unchanged.
    pub fn delete(&mut self, now_us: u64, key: &[u8]) -> Result<Bytes, StoreError> {
        self.local_write(now_us, key, None)
    }

    fn local_write(
        &mut self,
        now_us: u64,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<Bytes, StoreError> {
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return Err(StoreError::KeyLength(key.len()));
        }
        if let Some(v) = value {
            if v.len() > self.config.max_value_len {
                return Err(StoreError::ValueTooLarge {
                    len: v.len(),
                    max: self.config.max_value_len,
                });
            }
        }
        if !self.entries.contains_key(key) && self.entries.len() >= self.config.max_entries {
            return Err(StoreError::Full);
        }
        let stamp = self.clock.tick(now_us);
        let record = Record {
            key: Bytes::copy_from_slice(key),
            value: value.map(Bytes::copy_from_slice),
            hlc: stamp,
            origin: self.me.clone(),
        };
        // INVARIANT: key and value lengths were checked above.
        let encoded = record
            .encode()
            .map_err(|_| StoreError::KeyLength(key.len()))?;
        self.install(record, encoded.clone(), stamp);
        Ok(encoded)
    }

    fn record_hash(&self, encoded: &[u8]) -> u64 {
        first_u64(blake3::keyed_hash(&self.key, encoded).as_bytes())
    }

    fn bucket_of(&self, key: &[u8], n: usize) -> usize {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        h.update(&[0x00]);
        h.update(key);
        (first_u64(h.finalize().as_bytes()) % n as u64) as usize
    }

    fn install(&mut self, record: Record, encoded: Bytes, stamp: u64) {
        let hash = self.record_hash(&encoded);
        let tombstone = record.is_tombstone();
        let key = record.key.clone();
        let entry = Entry {
            record,
            encoded,
            stamp,
            hash,
        };
        if let Some(old) = self.entries.insert(key.clone(), entry) {
            self.fingerprint = self.fingerprint.wrapping_sub(old.hash);
            self.by_stamp.remove(&old.stamp);
            if old.record.is_tombstone() {
                self.tombstones -= 1;
            }
        }
        self.fingerprint = self.fingerprint.wrapping_add(hash);
        self.by_stamp.insert(stamp, key);
        if tombstone {
            self.tombstones += 1;
        }
    }

    fn tombstone_expired(&self, hlc: u64, now_us: u64) -> bool {
        let ttl_ms = self.config.tombstone_ttl.as_millis() as u64;
        Hlc::millis(hlc).saturating_add(ttl_ms) < now_us / 1000
    }
}

fn first_u64(b: &[u8; 32]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[..8]);
    u64::from_le_bytes(w)
}

impl StateStore for MemStore {
    fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    fn snapshot(&self) -> Vec<Bytes> {
        self.entries.values().map(|e| e.encoded.clone()).collect()
    }

    fn delta(&self, since: u64, until: u64) -> Vec<Bytes> {
        if since >= until {
            return Vec::new();
        }
        self.by_stamp
            .range(since.saturating_add(1)..=until)
            .filter_map(|(_, k)| self.entries.get(k).map(|e| e.encoded.clone()))
            .collect()
    }

    fn high_water(&self) -> u64 {
        self.clock.last()
    }

    fn apply(&mut self, now_us: u64, record: &Bytes) -> Result<bool, ApplyError> {
        let rec = Record::decode(record, self.config.max_value_len)?;
        let now_ms = now_us / 1000;
        let skew_ms = self.config.max_clock_skew.as_millis() as u64;
        let rec_ms = Hlc::millis(rec.hlc);
        if rec_ms > now_ms.saturating_add(skew_ms) {
            return Err(ApplyError::ClockSkew {
                ahead_ms: rec_ms - now_ms,
            });
        }
        if rec.is_tombstone() && self.tombstone_expired(rec.hlc, now_us) {
            return Ok(false);
        }
        match self.entries.get(&rec.key) {
            Some(cur) if (cur.record.hlc, &cur.record.origin) >= (rec.hlc, &rec.origin) => {
                return Ok(false);
            }
            None if self.entries.len() >= self.config.max_entries => {
                return Err(ApplyError::Full);
            }
            _ => {}
        }
        self.clock.observe(rec.hlc);
        let stamp = self.clock.tick(now_us);
        self.install(rec, record.clone(), stamp);
        Ok(true)
    }

    fn write(
        &mut self,
        now_us: u64,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<Bytes, StoreError> {
        self.local_write(now_us, key, value)
    }

    fn bucket_digests(&self, n: usize) -> Option<Vec<u64>> {
        if n == 0 || n > 256 {
            return None;
        }
        let mut out = vec![0u64; n];
        for (k, e) in &self.entries {
            let b = self.bucket_of(k, n);
            out[b] = out[b].wrapping_add(e.hash);
        }
        Some(out)
    }

    fn records_in_buckets(&self, want: &[bool]) -> Vec<Bytes> {
        let n = want.len();
        if n == 0 {
            return Vec::new();
        }
        self.entries
            .iter()
            .filter(|(k, _)| want[self.bucket_of(k, n)])
            .map(|(_, e)| e.encoded.clone())
            .collect()
    }

    fn expire(&mut self, now_us: u64) -> usize {
        let dead: Vec<Bytes> = self
            .entries
            .iter()
            .filter(|(_, e)| {
                e.record.is_tombstone() && self.tombstone_expired(e.record.hlc, now_us)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in &dead {
            if let Some(e) = self.entries.remove(k) {
                self.fingerprint = self.fingerprint.wrapping_sub(e.hash);
                self.by_stamp.remove(&e.stamp);
                self.tombstones -= 1;
            }
        }
        dead.len()
    }

    fn as_any(&self) -> Option<&dyn Any> {
        Some(self)
    }

    fn as_any_mut(&mut self) -> Option<&mut dyn Any> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];

    fn store(name: &'static str) -> MemStore {
        MemStore::new(NodeId::from_static(name), KEY)
    }

    #[test]
    fn fingerprint_changes_on_every_mutation_and_is_order_free() {
        let mut a = store("a");
        assert_eq!(a.fingerprint(), 0);
        a.put(1_000, b"k", b"v1").unwrap();
        let f1 = a.fingerprint();
        assert_ne!(f1, 0);
        a.put(2_000, b"k", b"v2").unwrap();
        let f2 = a.fingerprint();
        assert_ne!(f2, f1, "content change under the same key");
        a.delete(3_000, b"k").unwrap();
        assert_ne!(a.fingerprint(), f2);
        a.put(4_000, b"j", b"x").unwrap();
        // Another replica applying the same records in another order agrees.
        let mut b = store("b");
        let mut recs = a.snapshot();
        recs.reverse();
        for r in &recs {
            assert!(b.apply(5_000, r).unwrap());
        }
        assert_eq!(a.fingerprint(), b.fingerprint());
        let sum = b
            .bucket_digests(64)
            .unwrap()
            .iter()
            .fold(0u64, |s, d| s.wrapping_add(*d));
        assert_eq!(sum, b.fingerprint());
    }

    #[test]
    fn last_writer_wins_with_origin_tiebreak() {
        let mut a = store("a");
        let mut b = store("b");
        let ra = a.put(1_000, b"k", b"from-a").unwrap();
        let rb = b.put(1_000, b"k", b"from-b").unwrap();
        // Same HLC: the greater origin ("b") wins on both sides.
        assert!(a.apply(1_000, &rb).unwrap());
        assert!(!b.apply(1_000, &ra).unwrap());
        assert_eq!(a.get(b"k"), b.get(b"k"));
        assert_eq!(a.get(b"k").unwrap().as_ref(), b"from-b");
        // A later delete wins; the older write does not resurrect.
        let del = a.delete(2_000, b"k").unwrap();
        assert!(b.apply(2_000, &del).unwrap());
        assert!(!b.apply(2_000, &rb).unwrap());
        assert!(b.get(b"k").is_none());
        assert_eq!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn delta_is_cut_by_local_stamps() {
        let mut a = store("a");
        a.put(1_000, b"x", b"1").unwrap();
        let wm = a.high_water();
        a.put(1_000, b"y", b"2").unwrap();
        a.put(1_000, b"x", b"3").unwrap();
        let d = a.delta(wm, a.high_water());
        assert_eq!(d.len(), 2);
        assert_eq!(a.delta(0, a.high_water()).len(), 2);
        assert!(a.delta(a.high_water(), a.high_water()).is_empty());
    }

    #[test]
    fn tombstones_expire_and_are_not_reapplied() {
        let cfg = MemStoreConfig {
            tombstone_ttl: Duration::from_secs(10),
            ..Default::default()
        };
        let mut a = MemStore::with_config(NodeId::from_static("a"), KEY, cfg);
        let t = a.delete(1_000_000, b"k").unwrap();
        assert_eq!(a.expire(5_000_000), 0);
        assert_eq!(a.expire(12_000_000), 1);
        assert_eq!(a.fingerprint(), 0);
        assert_eq!(a.apply(12_000_000, &t), Ok(false));
    }

    #[test]
    fn bounds_and_skew() {
        let cfg = MemStoreConfig {
            max_entries: 1,
            max_value_len: 4,
            ..Default::default()
        };
        let mut a = MemStore::with_config(NodeId::from_static("a"), KEY, cfg);
        assert_eq!(
            a.put(0, b"k", b"12345"),
            Err(StoreError::ValueTooLarge { len: 5, max: 4 })
        );
        assert_eq!(a.put(0, b"", b"1"), Err(StoreError::KeyLength(0)));
        a.put(0, b"k", b"1").unwrap();
        assert_eq!(a.put(0, b"j", b"1"), Err(StoreError::Full));
        let mut far = store("z");
        let r = far.put(3_600_000_000, b"q", b"1").unwrap();
        assert!(matches!(a.apply(0, &r), Err(ApplyError::ClockSkew { .. })));
        assert!(matches!(
            a.apply(0, &Bytes::from_static(b"junk")),
            Err(ApplyError::Record(_))
        ));
    }
}
