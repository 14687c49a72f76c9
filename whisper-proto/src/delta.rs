//! Per-peer delta-sync watermarks with an adaptive full-sync cadence (seed
//! `DeltaTracker`, reference §i).
//!
//! # What a watermark is
//! The [change stamp](crate::store::StateStore::high_water) up to which this node has
//! sent its records to a peer *and knows the peer received them*. The next exchange
//! sends `delta(watermark, now)` instead of a snapshot. The engine commits a watermark
//! only on proof of receipt: the initiator when the reply arrives; the responder when the
//! initiator's *next* request arrives on the same connection (the initiator starts a new
//! request only after reading the previous reply). A reply lost with its connection
//! therefore never advances a watermark. (The reference advances it right after writing
//! the reply.)
//!
//! # Full syncs
//! [`DeltaTracker::should_full_sync`] is true when the peer has no entry or a zero
//! watermark, when a fingerprint mismatch after a delta exchange forced one, or when
//! `exchange_count % I == 0`, where `I` is the peer's adaptive interval: the baseline
//! ([`crate::config::defaults::FULL_SYNC_INTERVAL`], 10) scaled by a factor in
//! \[0.5, 2.0\] from the share of recent full syncs that applied records (seed: "high
//! ratio (≥0.5) … scale 0.5; mid ratio (0.1–0.5) … 1.0; low ratio (<0.1) … 2.0"):
//! with fewer than 3 full syncs recorded, `I` is the baseline. Counters are halved past
//! 100 full syncs, so the ratio follows recent behaviour. `exchange_count` is a running
//! total, as in the reference.
//!
//! # Lifetime
//! Watermarks **survive a disconnect**: the seed persists them across restarts, so they
//! certainly survive a reconnect ([`Config::delta_reset_on_disconnect`] turns on the
//! reference's reset-on-disconnect instead). Entries idle for longer than
//! [`Config::delta_max_peer_age`] (1 h) are removed by the sweeper, which the engine runs
//! from its timer every [`Config::delta_sweep_interval`] (5 min). The table holds at most
//! [`DeltaTracker::MAX_PEERS`] entries; beyond it the least recently active is evicted.
//!
//! # Persistence
//! [`DeltaPersistence`] is the storage trait; [`PersistedPeerState`] the record; a JSON
//! encoding is in [`json`]. The core never does I/O on its own: the driver emits the
//! state as an output to save on its schedule (every
//! [`crate::config::defaults::DELTA_SAVE_INTERVAL`], 30 s, and at shutdown) and is handed
//! it back at start; an atomic file backend for the engine's own
//! [`Engine::save_delta`](crate::Engine::save_delta) /
//! [`Engine::load_delta`](crate::Engine::load_delta) is the adapters' `JsonFile` (the
//! `runtime` feature).
//!
//! [`Config::delta_reset_on_disconnect`]: crate::Config::delta_reset_on_disconnect
//! [`Config::delta_max_peer_age`]: crate::Config::delta_max_peer_age
//! [`Config::delta_sweep_interval`]: crate::Config::delta_sweep_interval

pub mod json;

use crate::node::NodeId;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::num::NonZeroU32;

/// One peer's delta state.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
struct PeerState {
    watermark: u64,
    exchange_count: u64,
    /// Wall-clock microseconds.
    last_activity: u64,
    applied_on_full: u32,
    full_sync_count: u32,
    force_full: bool,
}

/// Debug information for one peer's delta state (seed `DeltaPeerStats`).
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
#[non_exhaustive]
pub struct DeltaPeerStats {
    /// The committed watermark (a store change stamp; 0 = none).
    pub watermark: u64,
    /// Exchanges committed with this peer (running total).
    pub exchange_count: u64,
    /// Exchanges until the next scheduled full sync.
    pub next_full_sync: u32,
    /// The peer's current full-sync interval.
    pub adaptive_interval: u32,
    /// Full syncs recorded (halved past 100).
    pub full_sync_count: u32,
    /// Full syncs that applied at least one record (halved with the above).
    pub applied_on_full: u32,
    /// Wall-clock microseconds of the last committed exchange.
    pub last_activity: u64,
}

/// The persisted form of one peer's state (seed `PersistedPeerState`, plus the topic).
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct PersistedPeerState {
    /// The StatefulMerge topic the watermark belongs to.
    pub topic: String,
    /// The peer.
    pub peer_id: Option<NodeId>,
    /// Its watermark (a store change stamp).
    pub watermark: u64,
    /// Exchanges committed.
    pub exchange_count: u64,
    /// Wall-clock microseconds of the last exchange.
    pub last_activity: u64,
    /// Full syncs that applied records.
    pub applied_on_full: u32,
    /// Full syncs recorded.
    pub full_sync_count: u32,
}

/// Why persisted delta state could not be saved or loaded. On load, the tracker keeps
/// the state it had (empty at start): the next exchange with each peer is a full sync.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PersistError {
    /// The stored bytes are not valid (truncated, hand-edited, another format).
    #[error("corrupt delta state at byte {offset}: {what}")]
    Corrupt {
        /// Where parsing stopped.
        offset: usize,
        /// What was expected.
        what: &'static str,
    },
    /// The backend failed (I/O). The message is the backend's.
    #[error("delta persistence backend: {0}")]
    Backend(String),
}

/// Durable storage for delta state across restarts (seed `DeltaPersistence`).
///
/// Implementations SHOULD write atomically (a crash mid-save leaves the previous save).
pub trait DeltaPersistence {
    /// Persists `states`, replacing the previous save.
    ///
    /// # Errors
    /// [`PersistError::Backend`]; the engine's state is unaffected.
    fn save(&mut self, states: &[PersistedPeerState]) -> Result<(), PersistError>;

    /// The latest save; empty when nothing was saved yet.
    ///
    /// # Errors
    /// [`PersistError`] when the stored state is unreadable.
    fn load(&mut self) -> Result<Vec<PersistedPeerState>, PersistError>;
}

/// Per-peer watermarks and full-sync cadence for one StatefulMerge topic.
#[derive(Clone, Debug)]
pub struct DeltaTracker {
    base: NonZeroU32,
    peers: BTreeMap<NodeId, PeerState>,
}

impl DeltaTracker {
    /// The most peers tracked; beyond it the least recently active entry is evicted.
    pub const MAX_PEERS: usize = 65_536;

    /// A tracker with full-sync baseline `base` (the seed's default is 10).
    pub fn new(base: NonZeroU32) -> Self {
        Self {
            base,
            peers: BTreeMap::new(),
        }
    }

    /// The baseline full-sync interval.
    pub fn base_interval(&self) -> u32 {
        self.base.get()
    }

    /// Peers tracked.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// True when no peer is tracked.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// The committed watermark for `peer` (0 = none: the next exchange is full).
    pub fn watermark(&self, peer: &NodeId) -> u64 {
        self.peers.get(peer).map_or(0, |p| p.watermark)
    }

    /// True when the next exchange with `peer` should send a snapshot.
    pub fn should_full_sync(&self, peer: &NodeId) -> bool {
        match self.peers.get(peer) {
            None => true,
            Some(p) if p.watermark == 0 || p.force_full => true,
            Some(p) => p.exchange_count % u64::from(self.interval_of(p)) == 0,
        }
    }

    /// The adaptive full-sync interval for `peer`.
    pub fn interval(&self, peer: &NodeId) -> u32 {
        self.peers
            .get(peer)
            .map_or_else(|| self.base.get(), |p| self.interval_of(p))
    }

    fn interval_of(&self, p: &PeerState) -> u32 {
        let base = self.base.get();
        if p.full_sync_count < 3 {
            return base;
        }
        // ratio = applied / full, compared without floats.
        let (applied, full) = (u64::from(p.applied_on_full), u64::from(p.full_sync_count));
        if applied * 2 >= full {
            (base / 2).max(1)
        } else if applied * 10 < full {
            base.saturating_mul(2)
        } else {
            base
        }
    }

    /// Commits an exchange: sets the watermark, counts the exchange and its activity
    /// time (wall-clock µs), clears a forced full sync.
    pub fn update_watermark(&mut self, peer: &NodeId, watermark: u64, now_us: u64) {
        self.make_room(peer);
        let p = self.peers.entry(peer.clone()).or_default();
        p.watermark = watermark;
        p.exchange_count += 1;
        p.last_activity = now_us;
        p.force_full = false;
    }

    /// Advances the watermark without counting an exchange (a G2 digest match proves
    /// the peer holds everything we have).
    pub fn touch(&mut self, peer: &NodeId, watermark: u64, now_us: u64) {
        if let Some(p) = self.peers.get_mut(peer) {
            p.watermark = p.watermark.max(watermark);
            p.last_activity = now_us;
        }
    }

    /// Forces the next exchange with `peer` to be a full sync (fingerprints still
    /// differed after a delta exchange).
    pub fn force_full_sync(&mut self, peer: &NodeId) {
        if let Some(p) = self.peers.get_mut(peer) {
            p.force_full = true;
        }
    }

    /// Records the outcome of a full sync: `applied` records changed state.
    pub fn record_full_sync_result(&mut self, peer: &NodeId, applied: usize) {
        let Some(p) = self.peers.get_mut(peer) else {
            return;
        };
        p.full_sync_count += 1;
        if applied > 0 {
            p.applied_on_full += 1;
        }
        if p.full_sync_count > 100 {
            p.full_sync_count /= 2;
            p.applied_on_full /= 2;
        }
    }

    /// Forgets `peer`.
    pub fn reset(&mut self, peer: &NodeId) {
        self.peers.remove(peer);
    }

    /// Removes entries idle for more than `max_age_us`; returns how many.
    pub fn sweep(&mut self, now_us: u64, max_age_us: u64) -> usize {
        let before = self.peers.len();
        self.peers
            .retain(|_, p| now_us.saturating_sub(p.last_activity) <= max_age_us);
        before - self.peers.len()
    }

    /// Per-peer debug information.
    pub fn stats(&self) -> BTreeMap<NodeId, DeltaPeerStats> {
        self.peers
            .iter()
            .map(|(id, p)| {
                let interval = self.interval_of(p);
                let stats = DeltaPeerStats {
                    watermark: p.watermark,
                    exchange_count: p.exchange_count,
                    next_full_sync: interval - (p.exchange_count % u64::from(interval)) as u32,
                    adaptive_interval: interval,
                    full_sync_count: p.full_sync_count,
                    applied_on_full: p.applied_on_full,
                    last_activity: p.last_activity,
                };
                (id.clone(), stats)
            })
            .collect()
    }

    /// The persisted form of every entry, labelled with `topic`.
    pub fn export(&self, topic: &str) -> Vec<PersistedPeerState> {
        self.peers
            .iter()
            .map(|(id, p)| PersistedPeerState {
                topic: String::from(topic),
                peer_id: Some(id.clone()),
                watermark: p.watermark,
                exchange_count: p.exchange_count,
                last_activity: p.last_activity,
                applied_on_full: p.applied_on_full,
                full_sync_count: p.full_sync_count,
            })
            .collect()
    }

    /// Installs a persisted entry, overwriting any current one. Entries without a peer,
    /// and entries whose last activity is older than `max_age_us` at `now_us` (their
    /// watermark may refer to records the peer has since lost), are skipped. Returns
    /// whether it was installed.
    pub fn import(&mut self, state: &PersistedPeerState, now_us: u64, max_age_us: u64) -> bool {
        let Some(peer) = &state.peer_id else {
            return false;
        };
        if now_us.saturating_sub(state.last_activity) > max_age_us {
            return false;
        }
        self.make_room(peer);
        self.peers.insert(
            peer.clone(),
            PeerState {
                watermark: state.watermark,
                exchange_count: state.exchange_count,
                last_activity: state.last_activity,
                applied_on_full: state.applied_on_full.min(state.full_sync_count),
                full_sync_count: state.full_sync_count,
                force_full: false,
            },
        );
        true
    }

    fn make_room(&mut self, incoming: &NodeId) {
        if self.peers.len() < Self::MAX_PEERS || self.peers.contains_key(incoming) {
            return;
        }
        let oldest = self
            .peers
            .iter()
            .min_by_key(|(_, p)| p.last_activity)
            .map(|(id, _)| id.clone());
        if let Some(id) = oldest {
            self.peers.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> NodeId {
        NodeId::from_static("p")
    }

    #[test]
    fn reference_cadence_with_base_10() {
        let mut t = DeltaTracker::new(NonZeroU32::new(10).unwrap());
        let p = peer();
        let mut fulls = Vec::new();
        for n in 1..=25u64 {
            if t.should_full_sync(&p) {
                fulls.push(n);
            }
            t.update_watermark(&p, n, n);
        }
        // Exchanges 1, 11, 21 (the count is read before this exchange's update).
        assert_eq!(fulls, [1, 11, 21]);
    }

    #[test]
    fn adaptive_scale_moves_between_half_and_double() {
        let mut t = DeltaTracker::new(NonZeroU32::new(10).unwrap());
        let p = peer();
        t.update_watermark(&p, 1, 1);
        assert_eq!(t.interval(&p), 10);
        for _ in 0..3 {
            t.record_full_sync_result(&p, 0);
        }
        assert_eq!(t.interval(&p), 20, "quiet peer: less often");
        for _ in 0..3 {
            t.record_full_sync_result(&p, 5);
        }
        assert_eq!(t.interval(&p), 5, "half the full syncs applied: more often");
        for _ in 0..200 {
            t.record_full_sync_result(&p, 0);
        }
        assert!(t.stats()[&p].full_sync_count <= 100);
        assert_eq!(t.interval(&p), 20);
    }

    #[test]
    fn forced_full_sweep_and_import_age() {
        let mut t = DeltaTracker::new(NonZeroU32::new(10).unwrap());
        let p = peer();
        t.update_watermark(&p, 5, 1_000);
        assert!(!t.should_full_sync(&p));
        t.force_full_sync(&p);
        assert!(t.should_full_sync(&p));
        t.update_watermark(&p, 6, 2_000);
        assert!(!t.should_full_sync(&p));
        let saved = t.export("topic");
        assert_eq!(t.sweep(10_000, 5_000), 1);
        assert!(t.is_empty());
        assert!(!t.import(&saved[0], 10_000, 5_000), "too old");
        assert!(t.import(&saved[0], 3_000, 5_000));
        assert_eq!(t.watermark(&p), 6);
    }
}
