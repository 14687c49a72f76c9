//! G3 rumors in the engine: BroadcastOnly publish, StatefulMerge record push, delivery
//! once, the TTL, and the glue to the [`RumorPusher`](crate::rumor::RumorPusher).
//!
//! # Membership
//!
//! The pusher routes on the exact hypercube of the *members*. Unless the application
//! sets the member list itself ([`Engine::set_members`]), the members are this node plus
//! every identified peer that advertised `TOPICS`: this assumes a **full-mesh
//! deployment**, where every member is connected to every other. The cube is rebuilt on
//! every `PeerUp` of a new peer and when the last connection to a peer closes. A
//! deployment that is not a full mesh must give the member list with
//! [`Engine::set_members`] and keep a connection to each of
//! [`HypercubeExt::overlay_peers`](crate::hypercube::HypercubeExt::overlay_peers) of
//! [`Engine::hypercube`] (`O(log N)` per node: every broadcast is then exact, measured
//! at N = 1,000 in `whisper-tests`); a cube target without a connection is covered by
//! an alternate member of the same half-block. Limitation: when a half-block's only member
//! is not connected to the node that must cover it, that member misses the rumor
//! ([`crate::rumor::DropReason::Unreachable`]); StatefulMerge records are then
//! repaired by G1, BroadcastOnly messages are not. Full meshes never hit this.
//!
//! Only peers that advertised `TOPICS` are reachable for the pusher: a Go reference
//! peer (no `TOPICS`) would read any G3 payload as a raw record, so it gets records by
//! G1 only.
//!
//! # Payloads
//!
//! Between `TOPICS` peers a G3 payload is an envelope whose first byte is its kind:
//! a [`TopicBroadcast`] (0x01) for a BroadcastOnly publish, or a [`TopicRecord`]
//! (0x02) for a StatefulMerge mutation (`put`/`delete`). A received payload is parsed
//! once into an [`Envelope`]; its delivery and relay admission use that view. Any other
//! payload is rejected ([`MessageError::Broadcast`]) and neither ACKed nor forwarded. An expired broadcast is neither delivered nor
//! forwarded (it is still ACKed). A publish larger than
//! [`Limits::max_rumor_send`](crate::wire::Limits::max_rumor_send) is refused with
//! [`PublishError::TooLarge`]: a BroadcastOnly topic has no G1 path. A StatefulMerge
//! record too large for G3 simply spreads by G1 only.
//!
//! On a connection without `TOPICS` (a Go reference peer) a G3 payload is one raw store
//! record, applied to the default StatefulMerge topic, as the reference does; it is
//! deduplicated separately, ACKed when the peer negotiated `RUMOR_ACK`, and not
//! forwarded (G1 spreads it).
//!
//! # Events
//!
//! Every pusher notification is an [`Event::Rumor`] except `Received`: an accepted rumor
//! is reported by its effect, [`Event::Message`] or [`Event::RecordApplied`].

use super::{Engine, MessageError, Timer};
use crate::action::Event;
use crate::hypercube::{HypercubeError, MemberInfo};
use crate::node::{ConnId, NodeId};
use crate::rumor::{PushError, PusherOutput, RumorEvent, RumorId, rumor_id};
use crate::time::Instant;
use crate::topic::{Pressure, PublishError, TopicError, TopicMode};
use crate::wire::{Capabilities, Envelope, Frame, Rumor, RumorAck, TopicBroadcast, TopicRecord};
use alloc::string::String;
use alloc::vec::Vec;
use bytes::Bytes;

impl Engine {
    /// Publishes `payload` on a BroadcastOnly topic: every member's subscriber gets it
    /// once ([`Event::Message`]), this node's included, unless the topic's TTL passes
    /// first. It is pushed down the hypercube as a G3 rumor. Returns the message's rumor
    /// id.
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
        self.flow_admit_publish(priority)
            .map_err(PublishError::Backpressure)?;
        let bytes = envelope.encode().map_err(|_| TopicError::InvalidName)?;
        // Egress is charged for the frames the pusher routes this publish to (refused:
        // nothing is sent and the pusher is unchanged).
        let now = self.now;
        let flow = &mut self.flow;
        let published = self.rumor.publish_if(now, bytes, |frames| {
            flow.admit_egress(now, len, frames, priority)
        });
        let id = match published {
            Ok(id) => id,
            Err(PushError::Refused { .. }) => {
                return Err(PublishError::Backpressure(Pressure::Egress));
            }
            Err(PushError::TooLarge { len, max }) => {
                return Err(PublishError::TooLarge {
                    len,
                    max: max as usize,
                });
            }
            // The nonce makes this practically impossible; the message was already
            // published and delivered.
            Err(PushError::Duplicate { id }) => return Ok(id),
        };
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
        self.drain_rumor_with(None, true);
        Ok(id)
    }

    /// Sets the members the rumor pusher routes on (self included), replacing the
    /// default of "self and every identified `TOPICS` peer" (a full mesh) until
    /// [`Engine::clear_members`]. For deployments that know their member list.
    ///
    /// # Errors
    /// [`HypercubeError`] when the list is too large; nothing changed.
    pub fn set_members(
        &mut self,
        now: Instant,
        members: &[MemberInfo],
    ) -> Result<(), HypercubeError> {
        self.advance(now);
        self.rumor.set_members(self.now, members)?;
        self.members_set = true;
        self.drain_rumor();
        Ok(())
    }

    /// Goes back to the full-mesh membership: self and every identified `TOPICS` peer.
    pub fn clear_members(&mut self, now: Instant) {
        self.advance(now);
        self.members_set = false;
        self.refresh_members();
        self.drain_rumor();
    }

    /// The rumor pusher's counters.
    pub fn rumor_stats(&self) -> crate::rumor::RumorStats {
        self.rumor.stats()
    }

    /// The hypercube the rumor pusher routes on.
    pub fn hypercube(&self) -> &crate::hypercube::HypercubeExt {
        self.rumor.cube()
    }

    /// Rebuilds the pusher's cube from the current membership.
    pub(super) fn refresh_members(&mut self) {
        if self.members_set {
            return;
        }
        let mut members = Vec::with_capacity(self.conns.len() + 1);
        members.push(MemberInfo::new(self.me.clone()));
        for c in self.conns.values() {
            if let Some(p) = c.peer.as_ref() {
                if c.capabilities.contains(Capabilities::TOPICS) {
                    members.push(MemberInfo::new(p.clone()));
                }
            }
        }
        // Duplicates keep their first entry; too many members keep the old cube.
        let _ = self.rumor.set_members(self.now, &members);
    }

    /// A `TOPICS` peer is up on `conn`.
    pub(super) fn rumor_peer_up(&mut self, peer: &NodeId, capabilities: Capabilities) {
        if !capabilities.contains(Capabilities::TOPICS) {
            return;
        }
        let known = self.rumor.is_reachable(peer);
        self.rumor
            .peer_up(peer.clone(), capabilities.contains(Capabilities::RUMOR_ACK));
        if !known {
            self.refresh_members();
        }
        self.drain_rumor();
    }

    /// A connection to `peer` closed; if it was the last one, the pusher learns it.
    pub(super) fn rumor_peer_gone(&mut self, peer: &NodeId) {
        if self.rumor_conn(peer).is_some() || !self.rumor.is_reachable(peer) {
            return;
        }
        self.rumor.peer_down(self.now, peer);
        self.refresh_members();
        self.drain_rumor();
    }

    /// A live `TOPICS` connection to `peer`.
    fn rumor_conn(&self, peer: &NodeId) -> Option<ConnId> {
        self.conns
            .iter()
            .find(|(_, c)| {
                c.peer.as_ref() == Some(peer) && c.capabilities.contains(Capabilities::TOPICS)
            })
            .map(|(id, _)| *id)
    }

    /// Pushes a local StatefulMerge mutation as a rumor (too large: G1 only).
    pub(super) fn push_record(&mut self, topic: &str, record: Bytes) {
        let envelope = TopicRecord {
            topic: self.wire_topic(topic),
            record,
        };
        let Ok(bytes) = envelope.encode() else {
            return;
        };
        // TooLarge: G1 carries it. Duplicate: the same record bytes already went out.
        let _ = self.rumor.publish(self.now, bytes.clone());
        self.drain_rumor_with(Some((&bytes, &Envelope::Record(envelope))), false);
    }

    /// The pusher's ACK deadlines passed.
    pub(super) fn rumor_timeout(&mut self) {
        self.rumor.handle_timeout(self.now);
        self.drain_rumor();
    }

    /// Hands every pusher output to the driver or the application, then re-arms the
    /// engine-wide rumor timer.
    pub(super) fn drain_rumor(&mut self) {
        self.drain_rumor_with(None, false);
    }

    /// [`drain_rumor`](Self::drain_rumor), where `known` is a payload the caller just
    /// gave the pusher with its envelope, parsed once (its outputs are not parsed
    /// again), and `origin_charged` says the origin frames were already charged
    /// ([`Engine::publish`]).
    fn drain_rumor_with(&mut self, known: Option<(&Bytes, &Envelope)>, origin_charged: bool) {
        while let Some(out) = self.rumor.poll_output() {
            match out {
                PusherOutput::Send { to, frame, origin } => match self.rumor_conn(&to) {
                    Some(conn) => {
                        let frame = Frame::from(frame);
                        if let Frame::Rumor(r) = &frame {
                            // A publish's own frames were charged by `publish`; relays,
                            // record pushes and every retry are charged here, by their
                            // topic's priority. A refused frame goes unsent: its ACK times
                            // out and the pusher's retry and drop rules take over.
                            let charged = origin && origin_charged;
                            if !charged && !self.admit_rumor_relay(&r.payload, known) {
                                continue;
                            }
                        }
                        match &frame {
                            Frame::Rumor(_) => self.stats.broadcasts_sent += 1,
                            _ => self.stats.rumor_acks_sent += 1,
                        }
                        self.send_frame(conn, &frame);
                    }
                    None => self.rumor.peer_down(self.now, &to),
                },
                PusherOutput::Deliver {
                    id,
                    payload,
                    from,
                    hop,
                } => self.deliver_rumor(id, &payload, known, &from, hop),
                PusherOutput::Event(RumorEvent::Received { .. }) => {}
                PusherOutput::Event(e) => self.emit(Event::Rumor(e)),
            }
        }
        let at = self.rumor.next_deadline();
        self.set_global_timer(Timer::Rumor, at);
    }

    /// Egress admission for sending a rumor payload to one peer, by the priority of the
    /// topic named in its envelope (the default StatefulMerge topic for a record
    /// envelope without one). The envelope is `known`'s when the payload is its own,
    /// else parsed here.
    fn admit_rumor_relay(&mut self, payload: &Bytes, known: Option<(&Bytes, &Envelope)>) -> bool {
        let named = match known {
            Some((bytes, envelope)) if bytes == payload => Some(String::from(envelope.topic())),
            _ => Envelope::decode(payload)
                .ok()
                .map(|e| String::from(e.topic())),
        };
        let topic = match named {
            Some(topic) if !topic.is_empty() => topic,
            _ => self
                .topics
                .default_stateful()
                .map(String::from)
                .unwrap_or_default(),
        };
        self.flow_admit_relay(&topic, payload.len(), 1)
    }

    /// Applies an accepted rumor: a broadcast to its subscriber, a record to its store.
    /// The envelope is `known`'s when the payload is its own, else parsed here.
    fn deliver_rumor(
        &mut self,
        id: RumorId,
        payload: &Bytes,
        known: Option<(&Bytes, &Envelope)>,
        from: &NodeId,
        hop: u8,
    ) {
        let parsed;
        let envelope = match known {
            Some((bytes, envelope)) if bytes == payload => envelope,
            _ => match Envelope::decode(payload) {
                Ok(envelope) => {
                    parsed = envelope;
                    &parsed
                }
                Err(_) => return,
            },
        };
        match envelope {
            Envelope::Broadcast(b) => {
                let subscribed = self
                    .topics
                    .topics
                    .get(&b.topic)
                    .is_some_and(|t| t.subscribed && t.mode == TopicMode::BroadcastOnly);
                if subscribed {
                    self.stats.broadcasts_delivered += 1;
                    self.emit(Event::Message {
                        topic: b.topic.clone(),
                        from: b.origin.clone(),
                        payload: b.payload.clone(),
                        id,
                        hop,
                    });
                }
            }
            Envelope::Record(r) => match self.resolve_topic(&r.topic) {
                Some(topic) => {
                    self.apply_records(&topic, from, core::slice::from_ref(&r.record));
                }
                None => self.stats.unknown_topic += 1,
            },
        }
    }

    /// A G3 rumor.
    pub(super) fn on_rumor(&mut self, conn: ConnId, peer: NodeId, rumor: Rumor) {
        let caps = self
            .conns
            .get(&conn)
            .map_or(Capabilities::NONE, |c| c.capabilities);
        let acks = caps.contains(Capabilities::RUMOR_ACK);
        if !caps.contains(Capabilities::TOPICS) {
            // The reference: a rumor is one raw store record.
            let id = rumor_id(&rumor.payload);
            if acks {
                self.send_ack(conn, id);
            }
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
        // The one parse of this payload: the pusher's outputs for it reuse the view.
        let envelope = match Envelope::decode(&rumor.payload) {
            Ok(envelope) => envelope,
            Err(e) => return self.reject(conn, MessageError::Broadcast(e)),
        };
        if let Envelope::Broadcast(b) = &envelope {
            if b.expires_ms != 0 && self.wall_us() / 1000 >= b.expires_ms {
                self.stats.broadcasts_expired += 1;
                if acks {
                    self.send_ack(conn, rumor_id(&rumor.payload));
                }
                return;
            }
        }
        let payload = rumor.payload.clone();
        self.rumor.handle_rumor(self.now, &peer, rumor, acks);
        self.drain_rumor_with(Some((&payload, &envelope)), false);
    }

    /// A G3-ACK.
    pub(super) fn on_rumor_ack(&mut self, conn: ConnId, peer: NodeId, ack: RumorAck) {
        let negotiated = self
            .conns
            .get(&conn)
            .is_some_and(|c| c.capabilities.contains(Capabilities::RUMOR_ACK));
        if !negotiated {
            self.stats.rumor_acks_dropped += 1;
            return;
        }
        self.rumor
            .handle_ack(self.now, &peer, RumorId::from_bytes(ack.rumor_id));
        self.drain_rumor();
    }

    fn send_ack(&mut self, conn: ConnId, id: RumorId) {
        self.stats.rumor_acks_sent += 1;
        let frame = Frame::RumorAck(RumorAck {
            rumor_id: *id.as_bytes(),
        });
        self.send_frame(conn, &frame);
    }
}
