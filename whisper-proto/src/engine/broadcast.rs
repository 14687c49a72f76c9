//! BroadcastOnly topics: publish, flood with dedup, deliver once, honour the TTL.
//!
//! Until the rumor-cube pusher lands, a broadcast is flooded: the origin sends a G3
//! rumor (`hop` 0, `fromDim` 0xFF) whose payload is a
//! [`TopicBroadcast`] envelope to every connected peer that advertised
//! `TOPICS`; each receiver that has not seen the rumor id (BLAKE3-256 of the envelope)
//! delivers it to its subscriber and relays it to every other such peer, `hop + 1`, up
//! to [`MAX_FLOOD_HOPS`]. An envelope past its
//! expiry is neither delivered nor relayed. All of the flooding is in
//! `broadcast_payload`, which the pusher replaces.
//!
//! On a connection without `TOPICS` (a Go reference peer) a G3 payload is a raw store
//! record, applied to the default StatefulMerge topic, as the reference does.

use super::{ConnError, Engine};
use crate::action::Event;
use crate::config::defaults::MAX_FLOOD_HOPS;
use crate::node::{ConnId, NodeId};
use crate::rumor::{RumorId, rumor_id};
use crate::time::Instant;
use crate::topic::{PublishError, TopicError, TopicMode};
use crate::wire::{Capabilities, FROM_DIM_ORIGIN, Frame, Rumor, TopicBroadcast};
use alloc::string::String;
use alloc::vec::Vec;
use bytes::Bytes;

impl Engine {
    /// Publishes `payload` on a BroadcastOnly topic: every member's subscriber gets it
    /// once ([`Event::Message`]), this node's included, unless the topic's TTL passes
    /// first. Returns the message's rumor id.
    ///
    /// # Errors
    /// [`PublishError`]; nothing was sent and no state changed.
    pub fn publish(
        &mut self,
        now: Instant,
        topic: &str,
        payload: Bytes,
    ) -> Result<RumorId, PublishError> {
        self.advance(now);
        self.check_queue().map_err(|_| PublishError::QueueFull)?;
        let t = self
            .topics
            .topics
            .get(topic)
            .ok_or_else(|| TopicError::NotFound(String::from(topic)))?;
        if t.mode != TopicMode::BroadcastOnly {
            return Err(TopicError::WrongMode {
                expected: TopicMode::BroadcastOnly,
                actual: t.mode,
            }
            .into());
        }
        let (ttl, subscribed, priority) = (t.ttl, t.subscribed, t.priority);
        let expires_ms = ttl.map_or(0, |ttl| {
            let ttl_us = u64::try_from(ttl.as_micros()).unwrap_or(u64::MAX);
            self.wall_us().saturating_add(ttl_us).div_ceil(1000).max(1)
        });
        let envelope = TopicBroadcast {
            topic: String::from(topic),
            expires_ms,
            nonce: crate::rng::RandomSource::next_u64(&mut self.rng),
            origin: self.me.clone(),
            payload,
        };
        let (len, max) = (
            envelope.encoded_len(),
            self.wire.limits().max_rumor_send as usize,
        );
        if len > max {
            return Err(PublishError::TooLarge { len, max });
        }
        let targets = self.flow_targets(None);
        self.flow_admit_publish(priority, len, targets)
            .map_err(PublishError::Backpressure)?;
        let bytes = envelope.encode().map_err(|_| TopicError::InvalidName)?;
        let id = rumor_id(&bytes);
        self.seen.check_and_insert(id);
        if subscribed {
            self.stats.broadcasts_delivered += 1;
            self.emit(Event::Message {
                topic: envelope.topic,
                from: envelope.origin,
                payload: envelope.payload,
                id,
                hop: 0,
            });
        }
        self.broadcast_payload(bytes, None, 0);
        Ok(id)
    }

    /// Floods a broadcast envelope to every `TOPICS` peer except `except`. The rumor-cube
    /// pusher replaces this function.
    fn broadcast_payload(&mut self, payload: Bytes, except: Option<ConnId>, hop: u8) {
        let targets: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(id, c)| {
                Some(**id) != except
                    && c.peer.is_some()
                    && c.capabilities.contains(Capabilities::TOPICS)
            })
            .map(|(id, _)| *id)
            .collect();
        for conn in targets {
            self.stats.broadcasts_sent += 1;
            let frame = Frame::Rumor(Rumor {
                hop,
                from_dim: FROM_DIM_ORIGIN,
                payload: payload.clone(),
            });
            self.send_frame(conn, &frame);
        }
    }

    /// A G3 rumor.
    pub(super) fn on_rumor(&mut self, conn: ConnId, peer: NodeId, rumor: Rumor) {
        let id = rumor_id(&rumor.payload);
        let topics = self
            .conns
            .get(&conn)
            .is_some_and(|c| c.capabilities.contains(Capabilities::TOPICS));
        if !topics {
            // The reference: a rumor is one raw store record.
            if !self.seen.check_and_insert(id) {
                self.stats.broadcasts_duplicate += 1;
                return;
            }
            match self.topics.default_stateful().map(String::from) {
                Some(topic) => {
                    self.apply_records(&topic, &peer, &[rumor.payload]);
                }
                None => self.stats.frames_unhandled += 1,
            }
            return;
        }
        let envelope = match TopicBroadcast::decode(&rumor.payload) {
            Ok(e) => e,
            Err(e) => {
                self.reject(conn, ConnError::Broadcast(e));
                return;
            }
        };
        if !self.seen.check_and_insert(id) {
            self.stats.broadcasts_duplicate += 1;
            return;
        }
        if envelope.expires_ms != 0 && self.wall_us() / 1000 >= envelope.expires_ms {
            self.stats.broadcasts_expired += 1;
            return;
        }
        let subscribed = self
            .topics
            .topics
            .get(&envelope.topic)
            .is_some_and(|t| t.subscribed && t.mode == TopicMode::BroadcastOnly);
        let relay = rumor.hop < MAX_FLOOD_HOPS && {
            let targets = self.flow_targets(Some(conn));
            self.flow_admit_relay(&envelope.topic, rumor.payload.len(), targets)
        };
        if relay {
            self.broadcast_payload(rumor.payload, Some(conn), rumor.hop.saturating_add(1));
        }
        if subscribed {
            self.stats.broadcasts_delivered += 1;
            self.emit(Event::Message {
                topic: envelope.topic,
                from: envelope.origin,
                payload: envelope.payload,
                id,
                hop: rumor.hop.saturating_add(1),
            });
        }
    }
}
