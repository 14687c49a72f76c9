//! Commands for topics, stores and delta trackers.

use super::{CommandError, Engine, Role, Timer};
use crate::delta::{
    DeltaPeerStats, DeltaPersistence, DeltaTracker, PersistError, PersistedPeerState,
};
use crate::node::{ConnId, NodeId};
use crate::store::{MemStore, StateStore, StoreError};
use crate::time::{Duration, Instant};
use crate::topic::{TopicConfig, TopicError, TopicMode};
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use bytes::Bytes;

impl Engine {
    /// Registers a topic (seed `RegisterTopic`). The first StatefulMerge topic is the
    /// default one (see [`crate::topic::TopicRegistry::default_stateful`]); registering
    /// it starts G1 rounds on every connection this node dialed. Registering a
    /// RequestResponse topic announces it to every `TOPICS` peer.
    ///
    /// # Errors
    /// [`TopicError`]; nothing changed.
    pub fn register_topic(&mut self, name: &str, config: TopicConfig) -> Result<(), TopicError> {
        let mode = config.mode;
        let had_stateful = self.topics.default_stateful().is_some();
        self.topics
            .register(name, config, self.config.full_sync_interval)?;
        let live: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.peer.is_some())
            .map(|(id, _)| *id)
            .collect();
        match mode {
            TopicMode::StatefulMerge => {
                if !had_stateful {
                    let at = self.now + self.config.delta_sweep_interval;
                    self.set_global_timer(Timer::Sweep, Some(at));
                }
                for conn in live {
                    let idle = self.conns.get(&conn).is_some_and(|c| {
                        c.role == Role::Dialer && !c.deadlines.contains_key(&Timer::Gossip)
                    });
                    if idle {
                        self.set_timer(conn, Timer::Gossip, self.now);
                    }
                }
            }
            TopicMode::RequestResponse => {
                for conn in live {
                    self.announce(conn);
                }
            }
            TopicMode::BroadcastOnly => {}
        }
        Ok(())
    }

    /// Delivers `topic`'s broadcasts to this node as [`crate::Event::Message`].
    ///
    /// # Errors
    /// [`TopicError::NotFound`] or [`TopicError::WrongMode`]; nothing changed.
    pub fn subscribe(&mut self, topic: &str) -> Result<(), TopicError> {
        self.set_subscribed(topic, true)
    }

    /// Stops delivering `topic`'s broadcasts (they are still relayed).
    ///
    /// # Errors
    /// As [`Engine::subscribe`].
    pub fn unsubscribe(&mut self, topic: &str) -> Result<(), TopicError> {
        self.set_subscribed(topic, false)
    }

    fn set_subscribed(&mut self, topic: &str, on: bool) -> Result<(), TopicError> {
        let t = self
            .topics
            .topics
            .get_mut(topic)
            .ok_or_else(|| TopicError::NotFound(String::from(topic)))?;
        if t.mode != TopicMode::BroadcastOnly {
            return Err(TopicError::WrongMode {
                expected: TopicMode::BroadcastOnly,
                actual: t.mode,
            });
        }
        t.subscribed = on;
        Ok(())
    }

    /// Writes `value` under `key` in a StatefulMerge topic's store (through
    /// [`StateStore::write`]); the record is pushed to every member at once as a G3
    /// rumor (with [`crate::Config::rumor_records`], when it fits [`crate::wire::Limits::max_rumor_send`]) and spreads with
    /// the next G1 rounds too (the repair path). Returns the record.
    ///
    /// # Errors
    /// [`StoreError`]; nothing changed.
    pub fn put(
        &mut self,
        now: Instant,
        topic: &str,
        key: &[u8],
        value: &[u8],
    ) -> Result<Bytes, StoreError> {
        self.write(now, topic, key, Some(value))
    }

    /// Deletes `key` (a tombstone) in a StatefulMerge topic's store; the tombstone is
    /// pushed like a [`put`](Self::put).
    ///
    /// # Errors
    /// [`StoreError`]; nothing changed.
    pub fn delete(&mut self, now: Instant, topic: &str, key: &[u8]) -> Result<Bytes, StoreError> {
        self.write(now, topic, key, None)
    }

    fn write(
        &mut self,
        now: Instant,
        topic: &str,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<Bytes, StoreError> {
        self.advance(now);
        let now_us = self.wall_us();
        let store = self
            .topics
            .topics
            .get_mut(topic)
            .and_then(|t| t.store.as_mut())
            .ok_or(StoreError::UnknownTopic)?;
        let record = store.write(now_us, key, value)?;
        if self.config.rumor_records {
            self.push_record(topic, record.clone());
        }
        Ok(record)
    }

    /// A StatefulMerge topic's store.
    pub fn store(&self, topic: &str) -> Option<&(dyn StateStore + Send)> {
        self.topics.topics.get(topic)?.store.as_deref()
    }

    /// A StatefulMerge topic's store, mutably (writes made here spread like any other).
    pub fn store_mut(&mut self, topic: &str) -> Option<&mut (dyn StateStore + Send)> {
        Some(self.topics.topics.get_mut(topic)?.store.as_mut()?.as_mut())
    }

    /// The topic's store as a [`MemStore`], when it is one.
    pub fn mem_store(&self, topic: &str) -> Option<&MemStore> {
        self.store(topic)?.as_any()?.downcast_ref()
    }

    /// A StatefulMerge topic's delta tracker.
    pub fn delta(&self, topic: &str) -> Option<&DeltaTracker> {
        self.topics.topics.get(topic)?.delta.as_ref()
    }

    /// A StatefulMerge topic's delta tracker, mutably (to `reset` a peer).
    pub fn delta_mut(&mut self, topic: &str) -> Option<&mut DeltaTracker> {
        self.topics.topics.get_mut(topic)?.delta.as_mut()
    }

    /// Per-peer delta state of a topic (seed `DeltaTracker.Stats`).
    pub fn delta_stats(&self, topic: &str) -> BTreeMap<NodeId, DeltaPeerStats> {
        self.delta(topic)
            .map(DeltaTracker::stats)
            .unwrap_or_default()
    }

    /// Every StatefulMerge topic's delta state, for persistence.
    pub fn export_delta(&self) -> Vec<PersistedPeerState> {
        self.topics
            .topics
            .iter()
            .filter_map(|(name, t)| t.delta.as_ref().map(|d| d.export(name)))
            .flatten()
            .collect()
    }

    /// Installs persisted delta state for registered StatefulMerge topics; entries for
    /// other topics, without a peer, or idle longer than `max_age` are skipped. Returns
    /// how many were installed.
    pub fn import_delta(
        &mut self,
        now: Instant,
        states: &[PersistedPeerState],
        max_age: Duration,
    ) -> usize {
        self.advance(now);
        let now_us = self.wall_us();
        let max_age_us = u64::try_from(max_age.as_micros()).unwrap_or(u64::MAX);
        let mut installed = 0;
        for s in states {
            if let Some(d) = self
                .topics
                .topics
                .get_mut(&s.topic)
                .and_then(|t| t.delta.as_mut())
            {
                installed += usize::from(d.import(s, now_us, max_age_us));
            }
        }
        installed
    }

    /// Saves every topic's delta state through `backend`. Call every
    /// [`DELTA_SAVE_INTERVAL`](crate::config::defaults::DELTA_SAVE_INTERVAL) and at
    /// shutdown. Returns how many entries were saved.
    ///
    /// # Errors
    /// The backend's [`PersistError`]; engine state is unaffected.
    pub fn save_delta(&self, backend: &mut dyn DeltaPersistence) -> Result<usize, PersistError> {
        let states = self.export_delta();
        backend.save(&states)?;
        Ok(states.len())
    }

    /// Loads delta state through `backend` (after registering the topics). Returns how
    /// many entries were installed.
    ///
    /// # Errors
    /// [`PersistError`] when the saved state is unreadable: nothing is installed, every
    /// peer starts with a full sync.
    pub fn load_delta(
        &mut self,
        now: Instant,
        backend: &mut dyn DeltaPersistence,
        max_age: Duration,
    ) -> Result<usize, PersistError> {
        let states = backend.load()?;
        Ok(self.import_delta(now, &states, max_age))
    }

    /// Starts a G1 round on `conn` now instead of at its next scheduled time. A no-op
    /// while a round is in progress, on a connection this node accepted (the dialer
    /// initiates) and without a StatefulMerge topic.
    ///
    /// # Errors
    /// [`CommandError::UnknownConnection`], [`CommandError::NotReady`] before the peer is
    /// identified; nothing changed.
    pub fn exchange_now(&mut self, now: Instant, conn: ConnId) -> Result<(), CommandError> {
        self.advance(now);
        self.check_queue()?;
        let c = self
            .conns
            .get(&conn)
            .ok_or(CommandError::UnknownConnection(conn))?;
        if c.peer.is_none() {
            return Err(CommandError::NotReady(conn));
        }
        self.start_round(conn);
        Ok(())
    }

    /// Sets [`crate::Config::wall_clock_offset`] (the driver corrected its wall clock).
    pub fn set_wall_clock_offset(&mut self, offset: Duration) {
        self.config.wall_clock_offset = offset;
    }

    /// The sweeper: stale delta entries, then store expiry (tombstones).
    pub(super) fn sweep(&mut self) {
        let now_us = self.wall_us();
        let max_age = u64::try_from(self.config.delta_max_peer_age.as_micros()).unwrap_or(u64::MAX);
        for t in self.topics.topics.values_mut() {
            if let Some(d) = t.delta.as_mut() {
                d.sweep(now_us, max_age);
            }
            if let Some(s) = t.store.as_mut() {
                s.expire(now_us);
            }
        }
        let at = self.now + self.config.delta_sweep_interval;
        self.set_global_timer(Timer::Sweep, Some(at));
    }
}
