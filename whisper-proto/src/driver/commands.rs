//! The typed commands every adapter's handle offers, and the monitoring snapshot.

use bytes::Bytes;
use std::string::String;
use std::vec::Vec;

use super::{Driver, DriverStats, HandleError};
use crate::engine::EngineStats;
use crate::node::{ConnId, NodeId};
use crate::rumor::RumorId;
use crate::time::{Duration, Instant};
use crate::topic::{QueryId, TopicConfig, TopicMode};

/// A cheap view of a node for monitoring: counters, peers and per-topic store state.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
#[non_exhaustive]
pub struct NodeSnapshot {
    /// The engine's counters.
    pub engine: EngineStats,
    /// The driver's counters.
    pub driver: DriverStats,
    /// Identified peers on live connections.
    pub members: Vec<NodeId>,
    /// Per StatefulMerge topic: (name, record count, store fingerprint).
    pub stores: Vec<(String, usize, u64)>,
}

impl Driver {
    /// Sends a frame of a registered custom kind to `peer`.
    pub fn send_custom(
        &mut self,
        now: Instant,
        peer: &NodeId,
        magic: u16,
        body: Bytes,
    ) -> Result<(), HandleError> {
        self.advance(now);
        let conn = self
            .conn_to(peer)
            .ok_or_else(|| HandleError::UnknownPeer(peer.clone()))?;
        self.engine.send_custom(self.now, conn, magic, body)?;
        Ok(())
    }

    /// Sends a frame of a registered custom kind to every identified peer; returns how
    /// many it was queued for.
    pub fn broadcast_custom(
        &mut self,
        now: Instant,
        magic: u16,
        body: Bytes,
    ) -> Result<usize, HandleError> {
        self.advance(now);
        let conns: Vec<ConnId> = self.peers().into_iter().map(|p| p.conn).collect();
        for &conn in &conns {
            self.engine
                .send_custom(self.now, conn, magic, body.clone())?;
        }
        Ok(conns.len())
    }

    /// Registers a topic. A StatefulMerge topic takes its share of the delta state
    /// handed to [`Driver::restore`] before it.
    pub fn register_topic(
        &mut self,
        now: Instant,
        name: &str,
        config: TopicConfig,
    ) -> Result<(), HandleError> {
        self.advance(now);
        let stateful = config.mode == TopicMode::StatefulMerge;
        self.engine.register_topic(name, config)?;
        if stateful {
            self.stateful.push(String::from(name));
            self.import_restored(name);
        }
        Ok(())
    }

    /// Delivers `topic`'s broadcasts to this node (see [`Engine::subscribe`](crate::Engine::subscribe)).
    pub fn subscribe(&mut self, topic: &str) -> Result<(), HandleError> {
        Ok(self.engine.subscribe(topic)?)
    }

    /// Publishes on a BroadcastOnly topic; errors (including a full action queue) are
    /// typed and leave no state behind.
    pub fn publish(
        &mut self,
        now: Instant,
        topic: &str,
        payload: Bytes,
    ) -> Result<RumorId, HandleError> {
        self.advance(now);
        Ok(self.engine.publish(self.now, topic, payload)?)
    }

    /// Writes `value` under `key` in a StatefulMerge topic.
    pub fn put(
        &mut self,
        now: Instant,
        topic: &str,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), HandleError> {
        self.advance(now);
        self.engine.put(self.now, topic, key, value)?;
        Ok(())
    }

    /// Deletes `key` in a StatefulMerge topic.
    pub fn delete(&mut self, now: Instant, topic: &str, key: &[u8]) -> Result<(), HandleError> {
        self.advance(now);
        self.engine.delete(self.now, topic, key)?;
        Ok(())
    }

    /// Queries a RequestResponse topic. The outcome arrives as
    /// [`Event::QueryComplete`](crate::Event::QueryComplete) with the returned id (when
    /// every asked peer answered or at `timeout`).
    pub fn query(
        &mut self,
        now: Instant,
        topic: &str,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<QueryId, HandleError> {
        self.advance(now);
        Ok(self.engine.query(self.now, topic, payload, timeout)?)
    }

    /// Counters, members and per-topic store state.
    pub fn snapshot(&self) -> NodeSnapshot {
        let stores = self
            .stateful
            .iter()
            .filter_map(|t| {
                let s = self.engine.store(t)?;
                let len = self
                    .engine
                    .mem_store(t)
                    .map_or(0, crate::store::MemStore::len);
                Some((t.clone(), len, s.fingerprint()))
            })
            .collect();
        NodeSnapshot {
            engine: self.engine.stats(),
            driver: self.stats,
            members: self.peers().into_iter().map(|p| p.node).collect(),
            stores,
        }
    }
}
