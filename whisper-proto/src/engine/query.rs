//! RequestResponse topics: queries over the wire, replies collected by a
//! [`Correlator`](crate::util::Correlator).
//!
//! * **Who serves what.** On `PeerUp` with a `TOPICS` peer, and again whenever a
//!   RequestResponse topic is registered, a node sends an Announce body (G1 kind 3)
//!   listing the topics it serves. A query goes only to peers that announced its topic.
//! * **Query.** [`Engine::query`] sends one Query body (G1 kind 1) per serving peer and
//!   registers a fan-out in the correlator expecting that many replies.
//! * **Answer.** The responder calls the topic's [`QueryHandler`]; `Some(reply)` goes
//!   back as a Response body (G1 kind 2), `None` sends nothing.
//! * **Result.** One [`Event::QueryComplete`]: as soon as every asked peer answered, or
//!   at the deadline with the replies that came (`timed_out`). The correlator's earliest
//!   deadline is the engine's `Query` timer. A peer that disconnects is still waited
//!   for until the deadline. Responses from peers not asked, duplicates and late ones
//!   are dropped and counted.
//!
//! [`QueryHandler`]: crate::topic::QueryHandler

use super::{Engine, OpenQuery, Timer};
use crate::action::Event;
use crate::node::{ConnId, NodeId};
use crate::time::{Duration, Instant};
use crate::topic::{QueryError, QueryId, QueryReply, TopicError, TopicMode, TopicRegistry};
use crate::util::Reply;
use crate::wire::Capabilities;
use crate::wire::codec::{BodyKind, ExchangeBody};
use alloc::collections::BTreeSet;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use bytes::Bytes;
use core::num::NonZeroUsize;

/// Bytes of a G1 body kept free for the query's envelope fields.
const QUERY_RESERVE: usize = 512;

impl Engine {
    /// Sends `payload` to every connected peer serving the RequestResponse `topic`; the
    /// replies arrive as one [`Event::QueryComplete`] carrying the returned id, at the
    /// latest `timeout` from now.
    ///
    /// # Errors
    /// [`QueryError`]; nothing was sent and no state changed.
    pub fn query(
        &mut self,
        now: Instant,
        topic: &str,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<QueryId, QueryError> {
        self.advance(now);
        self.check_queue().map_err(|_| QueryError::QueueFull)?;
        let mode = self
            .topics
            .mode(topic)
            .ok_or_else(|| TopicError::NotFound(String::from(topic)))?;
        if mode != TopicMode::RequestResponse {
            return Err(TopicError::WrongMode {
                expected: TopicMode::RequestResponse,
                actual: mode,
            }
            .into());
        }
        let max =
            (self.wire.limits().max_exchange as usize).saturating_sub(QUERY_RESERVE + topic.len());
        if payload.len() > max {
            return Err(QueryError::TooLarge {
                len: payload.len(),
                max,
            });
        }
        let targets: BTreeSet<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.peer.is_some() && c.served.contains(topic))
            .map(|(id, _)| *id)
            .collect();
        let expected = NonZeroUsize::new(targets.len()).ok_or(QueryError::NoResponders)?;
        let priority = self.topics.topics.get(topic).map_or(0, |t| t.priority);
        self.flow_admit_query(priority, payload.len(), targets.len())
            .map_err(QueryError::Backpressure)?;
        let id = QueryId(self.next_query_id);
        let deadline = self.now.saturating_add(timeout);
        self.queries
            .register_fan_out(id, deadline, expected)
            .map_err(|_| QueryError::TooManyPending)?;
        self.next_query_id += 1;
        let body = ExchangeBody {
            records: vec![payload],
            topic: String::from(topic),
            kind: BodyKind::Query,
            query_id: id.0,
            ..Default::default()
        };
        for conn in &targets {
            self.stats.queries_sent += 1;
            self.send_body(*conn, &body);
        }
        self.open_queries.insert(
            id,
            OpenQuery {
                topic: String::from(topic),
                waiting: targets,
            },
        );
        self.arm_query_timer();
        Ok(id)
    }

    /// Open queries.
    pub fn pending_queries(&self) -> usize {
        self.queries.len()
    }

    fn arm_query_timer(&mut self) {
        let next = self.queries.next_deadline();
        self.set_global_timer(Timer::Query, next);
    }

    /// The `Query` timer fired: every query past its deadline completes, timed out.
    pub(super) fn expire_queries(&mut self) {
        while let Some(expired) = self.queries.poll_expired(self.now) {
            let topic = self
                .open_queries
                .remove(&expired.id)
                .map(|q| q.topic)
                .unwrap_or_default();
            self.stats.queries_timed_out += 1;
            self.emit(Event::QueryComplete {
                id: expired.id,
                topic,
                replies: expired.replies,
                timed_out: true,
            });
        }
        self.arm_query_timer();
    }

    pub(super) fn on_query(&mut self, conn: ConnId, peer: NodeId, body: ExchangeBody) {
        let Some(t) = self.topics.topics.get(&body.topic) else {
            self.stats.unknown_topic += 1;
            return;
        };
        if t.handler.is_none() || t.mode != TopicMode::RequestResponse {
            self.stats.unknown_topic += 1;
            return;
        }
        let payload = body.records.first().cloned().unwrap_or_default();
        if !self.flow_admit_response(&body.topic, 0) {
            return;
        }
        let Some(t) = self.topics.topics.get_mut(&body.topic) else {
            return;
        };
        let Some(handler) = t.handler.as_mut() else {
            return;
        };
        let Some(reply) = handler.handle(&peer, &body.topic, &payload) else {
            return;
        };
        self.stats.queries_answered += 1;
        let response = ExchangeBody {
            records: vec![reply],
            topic: body.topic,
            kind: BodyKind::Response,
            query_id: body.query_id,
            ..Default::default()
        };
        self.send_body(conn, &response);
    }

    pub(super) fn on_response(&mut self, conn: ConnId, peer: NodeId, body: ExchangeBody) {
        let id = QueryId(body.query_id);
        let asked = self
            .open_queries
            .get_mut(&id)
            .is_some_and(|q| q.waiting.remove(&conn));
        if !asked {
            self.stats.responses_dropped += 1;
            return;
        }
        let reply = QueryReply {
            from: peer,
            payload: body.records.into_iter().next().unwrap_or_default(),
        };
        match self.queries.complete(self.now, &id, reply) {
            Reply::Complete(replies) => {
                let topic = self
                    .open_queries
                    .remove(&id)
                    .map(|q| q.topic)
                    .unwrap_or_default();
                self.stats.queries_completed += 1;
                self.emit(Event::QueryComplete {
                    id,
                    topic,
                    replies,
                    timed_out: false,
                });
            }
            Reply::Partial { .. } => {}
            Reply::Late(_) | Reply::Unknown(_) => self.stats.responses_dropped += 1,
        }
        self.arm_query_timer();
    }

    /// An Announce body: the RequestResponse topics the peer serves.
    pub(super) fn on_announce(&mut self, conn: ConnId, body: ExchangeBody) {
        let served: BTreeSet<String> = body
            .records
            .iter()
            .filter_map(|r| core::str::from_utf8(r).ok())
            .filter(|t| !t.is_empty() && t.len() <= 255)
            .take(TopicRegistry::MAX_TOPICS)
            .map(String::from)
            .collect();
        if let Some(c) = self.conns.get_mut(&conn) {
            c.served = served;
        }
    }

    /// Tells a `TOPICS` peer which RequestResponse topics this node serves (nothing when
    /// it serves none).
    pub(super) fn announce(&mut self, conn: ConnId) {
        let ok = self
            .conns
            .get(&conn)
            .is_some_and(|c| c.peer.is_some() && c.capabilities.contains(Capabilities::TOPICS));
        let served: Vec<Bytes> = self.topics.served();
        if !ok || served.is_empty() {
            return;
        }
        let body = ExchangeBody {
            records: served,
            kind: BodyKind::Announce,
            ..Default::default()
        };
        self.send_body(conn, &body);
    }
}
