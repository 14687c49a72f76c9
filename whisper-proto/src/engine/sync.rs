//! The G1 exchange, the G2 digest probe and the G2B bucket digest (reference §b, §c).
//!
//! # A round (initiator = dialer)
//! 1. **G2**: a probe with our fingerprint (skipped when it is 0). A match ends the
//!    round ([`Event::DigestMatch`]; watermarks advance, no G1 is sent).
//! 2. **G1**, once per StatefulMerge topic the peer shares (only the default topic for
//!    a peer without `TOPICS`), in priority order. Each side sends a snapshot or a
//!    delta chosen by its [`DeltaTracker`](crate::delta::DeltaTracker); the responder
//!    applies the request first, then replies with its own records and its
//!    fingerprint.
//! 3. **G2B**, only when the fingerprints still differ after a default-topic G1 and
//!    the peer advertised `BUCKET_DIGEST`: both sides compare 64 bucket digests and a
//!    second, bucket-scoped G1 carries every record of the diverging buckets. Without
//!    G2B, a mismatch forces a full sync at the next exchange instead.
//!
//! The next round starts after the connection's adaptive interval (around
//! [`Config::gossip_interval`](crate::Config::gossip_interval); `next_exchange_at`,
//! see `engine/flow.rs`), or when the peer's backpressure backoff ends. A request unanswered after
//! [`Config::exchange_timeout`](crate::Config::exchange_timeout) closes the connection.
//!
//! # Splitting under the G1 cap
//! A selection larger than one G1 body (cap minus 512 bytes for meta and extension
//! fields) is sent in several exchanges on the same topic: each body carries as many
//! whole records as fit, in selection order, and sets `more` (envelope field 19) while
//! records remain. The initiator keeps sending requests (empty ones once its own records
//! are out) until a reply arrives without `more` and it has nothing left; the responder
//! keeps its selection across those requests. A single record larger than a body is
//! never sent and is counted in `records_oversized`.
//!
//! # Watermarks
//! The watermark committed after a session is the store's high water when the session
//! ended if every change in between came from this peer's records, and the selection's
//! upper bound otherwise; so the next delta neither echoes the peer's own records back
//! nor skips a concurrent local write. The initiator commits on the final reply; the
//! responder when the initiator's next request (G1, G2 or G2B) arrives, which proves
//! the reply was read.

use super::{Engine, MessageError, Role, Timer};
use crate::action::Event;
use crate::node::{ConnId, NodeId};
use crate::topic::TopicMode;
use crate::wire::codec::{BodyKind, ExchangeBody};
use crate::wire::{BucketDigest, Capabilities, Digest, Exchange, Frame};
use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use bytes::{Bytes, BytesMut};

/// Bytes of a G1 body kept free of records, for meta and the extension fields.
const BODY_RESERVE: usize = 512;

/// Most bodies one side sends in one topic exchange (4096 × 1 MiB): past it, the peer's
/// `more` is ignored and the session ends, so a peer that always sets `more` cannot
/// keep the initiator exchanging forever.
const MAX_SESSION_BODIES: u32 = 4096;

/// Exchange state of one connection.
#[derive(Debug, Default)]
pub(super) struct ConnSync {
    /// Initiator: the round in progress.
    round: Option<Round>,
    /// Sessions in progress, by topic name (either role).
    sessions: BTreeMap<String, Session>,
    /// Responder: finished sessions, committed when the next request arrives.
    pending: Vec<Pending>,
    /// Responder: the one-shot diverging-bucket set armed by a G2B request.
    armed_buckets: Option<Vec<bool>>,
}

#[derive(Debug)]
struct Round {
    topics: VecDeque<String>,
    stage: Stage,
}

#[derive(Clone, Debug, Eq, PartialEq)]
enum Stage {
    Digest,
    Exchange(String),
    Buckets(String),
}

#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Selection {
    Full,
    Delta,
    Buckets,
}

/// One side's records for one topic exchange, possibly spread over several bodies.
#[derive(Debug)]
struct Session {
    records: VecDeque<Bytes>,
    /// The selection's upper change stamp: the watermark if the session is not clean.
    cursor: u64,
    kind: Selection,
    /// Records applied from the peer during the session.
    applied: usize,
    /// The store's high water after our last send.
    sent_hw: u64,
    /// No change other than the peer's records happened since the selection.
    clean: bool,
    /// Bodies sent so far.
    bodies: u32,
}

#[derive(Debug)]
struct Pending {
    topic: String,
    watermark: u64,
    kind: Selection,
    applied: usize,
}

impl ConnSync {
    /// Initiator: a round is in progress.
    pub(super) fn in_round(&self) -> bool {
        self.round.is_some()
    }
}

impl Engine {
    // ---- shared helpers ---------------------------------------------------------------

    fn has_cap(&self, conn: ConnId, cap: Capabilities) -> bool {
        self.conns
            .get(&conn)
            .is_some_and(|c| c.capabilities.contains(cap))
    }

    /// The fingerprint G2 carries on `conn`: the default topic's store for a peer
    /// without `TOPICS` (the reference's single store), else the wrapping sum over every
    /// StatefulMerge store.
    pub(super) fn local_fingerprint(&self, conn: ConnId) -> u64 {
        if self.has_cap(conn, Capabilities::TOPICS) {
            self.topics
                .topics
                .values()
                .filter_map(|t| t.store.as_ref())
                .fold(0u64, |acc, s| acc.wrapping_add(s.fingerprint()))
        } else {
            self.topics
                .default_stateful()
                .and_then(|d| self.topics.topics.get(d))
                .and_then(|t| t.store.as_ref())
                .map_or(0, |s| s.fingerprint())
        }
    }

    /// The StatefulMerge topics exchanged on `conn`, in order.
    fn sync_topics(&self, conn: ConnId) -> Vec<String> {
        if self.has_cap(conn, Capabilities::TOPICS) {
            self.topics.stateful_in_order()
        } else {
            self.topics
                .default_stateful()
                .map(String::from)
                .into_iter()
                .collect()
        }
    }

    /// The topic as written in field 16: empty for the default topic.
    pub(super) fn wire_topic(&self, name: &str) -> String {
        if self.topics.default_stateful() == Some(name) {
            String::new()
        } else {
            String::from(name)
        }
    }

    /// The local StatefulMerge topic a field-16 value names.
    pub(super) fn resolve_topic(&self, wire: &str) -> Option<String> {
        if wire.is_empty() {
            return self.topics.default_stateful().map(String::from);
        }
        (self.topics.mode(wire) == Some(TopicMode::StatefulMerge)).then(|| String::from(wire))
    }

    fn high_water(&self, topic: &str) -> u64 {
        self.topics
            .topics
            .get(topic)
            .and_then(|t| t.store.as_ref())
            .map_or(0, |s| s.high_water())
    }

    fn topic_fingerprint(&self, topic: &str) -> u64 {
        self.topics
            .topics
            .get(topic)
            .and_then(|t| t.store.as_ref())
            .map_or(0, |s| s.fingerprint())
    }

    /// When the next round with `conn`'s peer starts: the per-peer adaptive interval
    /// and backoff (`engine/flow.rs`).
    fn next_exchange_at(&mut self, conn: ConnId) -> crate::Instant {
        self.flow_next_exchange_at(conn)
    }

    fn arm_reply(&mut self, conn: ConnId) {
        self.flow_request_sent(conn);
        let at = self.now + self.config.exchange_timeout;
        self.set_timer(conn, Timer::Reply, at);
    }

    /// Encodes and sends a G1 body. Returns false (and counts) when it does not fit.
    pub(super) fn send_body(&mut self, conn: ConnId, body: &ExchangeBody) -> bool {
        let mut buf = BytesMut::new();
        let ok = self.codec.encode(body, &mut buf).is_ok()
            && buf.len() <= self.wire.limits().max_exchange as usize;
        if !ok {
            self.stats.records_oversized += 1;
            return false;
        }
        self.send_frame(conn, &Frame::Exchange(Exchange { body: buf.freeze() }));
        true
    }

    /// The record budget of one G1 body for `wire_topic`.
    fn body_budget(&self, wire_topic: &str) -> usize {
        (self.wire.limits().max_exchange as usize).saturating_sub(BODY_RESERVE + wire_topic.len())
    }

    /// Applies inbound records to `topic`'s store; emits [`Event::RecordApplied`].
    pub(super) fn apply_records(&mut self, topic: &str, peer: &NodeId, records: &[Bytes]) -> usize {
        let now_us = self.wall_us();
        let Some(store) = self
            .topics
            .topics
            .get_mut(topic)
            .and_then(|t| t.store.as_mut())
        else {
            return 0;
        };
        let (mut applied, mut rejected) = (0usize, 0u64);
        for r in records {
            match store.apply(now_us, r) {
                Ok(true) => applied += 1,
                Ok(false) => {}
                Err(_) => rejected += 1,
            }
        }
        self.stats.records_applied += applied as u64;
        self.stats.records_rejected += rejected;
        if applied > 0 {
            self.emit(Event::RecordApplied {
                peer: peer.clone(),
                topic: String::from(topic),
                records: applied,
            });
        }
        applied
    }

    /// Sends the next body of `topic`'s session on `conn`. Returns true when our side of
    /// the session is drained.
    fn send_chunk(&mut self, conn: ConnId, topic: &str) -> bool {
        let wire_topic = self.wire_topic(topic);
        let budget = self.body_budget(&wire_topic);
        let fingerprint = self.topic_fingerprint(topic);
        let hw = self.high_water(topic);
        let Some(session) = self
            .conns
            .get_mut(&conn)
            .and_then(|c| c.sync.sessions.get_mut(topic))
        else {
            return true;
        };
        let (records, oversized) = take_chunk(&mut session.records, budget);
        let more = !session.records.is_empty();
        session.sent_hw = hw;
        session.bodies += 1;
        self.stats.records_oversized += oversized;
        self.stats.records_sent += records.len() as u64;
        let mut body = ExchangeBody {
            records,
            topic: wire_topic,
            more,
            ..Default::default()
        };
        body.meta.cache_fingerprint = fingerprint;
        body.meta.backpressure_signal = self.flow_reply_signal(conn);
        self.flow_note_sent(conn, body.records.len());
        self.send_body(conn, &body);
        !more
    }

    /// Keeps the peer's piggybacked meta, bounded.
    fn note_peer_meta(&mut self, conn: ConnId, body: &mut ExchangeBody) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let mut meta = core::mem::take(&mut body.meta);
        meta.pex_entries.truncate(Self::MAX_PEER_META_ENTRIES);
        while meta.connection_counts.len() > Self::MAX_PEER_META_ENTRIES {
            meta.connection_counts.pop_last();
        }
        body.meta.cache_fingerprint = meta.cache_fingerprint;
        c.peer_meta = meta;
    }

    // ---- initiator --------------------------------------------------------------------

    /// Starts a round on `conn` if this node dialed it, the peer is up, no round is in
    /// progress and there is a StatefulMerge topic to exchange.
    pub(super) fn start_round(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        if c.role != Role::Dialer || c.peer.is_none() || c.sync.round.is_some() {
            return;
        }
        let topics = self.sync_topics(conn);
        if topics.is_empty() || self.flow_skip_round(conn) {
            return;
        }
        self.clear_timer(conn, Timer::Gossip);
        self.stats.rounds_started += 1;
        let local = self.local_fingerprint(conn);
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.sync.round = Some(Round {
            topics: topics.into(),
            stage: Stage::Digest,
        });
        if local == 0 {
            self.next_topic(conn);
            return;
        }
        c.awaiting_digest = true;
        self.send_frame(conn, &Frame::Digest(Digest::probe(local)));
        self.arm_reply(conn);
    }

    fn stage(&self, conn: ConnId) -> Option<&Stage> {
        Some(&self.conns.get(&conn)?.sync.round.as_ref()?.stage)
    }

    fn set_stage(&mut self, conn: ConnId, stage: Stage) {
        if let Some(r) = self
            .conns
            .get_mut(&conn)
            .and_then(|c| c.sync.round.as_mut())
        {
            r.stage = stage;
        }
    }

    fn next_topic(&mut self, conn: ConnId) {
        let next = self
            .conns
            .get_mut(&conn)
            .and_then(|c| c.sync.round.as_mut())
            .and_then(|r| r.topics.pop_front());
        match next {
            Some(topic) => self.begin_exchange(conn, topic, None),
            None => self.finish_round(conn),
        }
    }

    fn finish_round(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.sync.round = None;
        self.clear_timer(conn, Timer::Reply);
        let at = self.next_exchange_at(conn);
        self.set_timer(conn, Timer::Gossip, at);
    }

    /// Selects our records for `topic` and sends the first request body.
    fn begin_exchange(&mut self, conn: ConnId, topic: String, scoped: Option<Vec<bool>>) {
        let Some(peer) = self.conns.get(&conn).and_then(|c| c.peer.clone()) else {
            return;
        };
        let Some((records, kind, hw)) = self.select(&topic, &peer, scoped, None) else {
            self.next_topic(conn);
            return;
        };
        let session = Session {
            records: records.into(),
            cursor: hw,
            kind,
            applied: 0,
            sent_hw: hw,
            clean: true,
            bodies: 0,
        };
        if let Some(c) = self.conns.get_mut(&conn) {
            c.sync.sessions.insert(topic.clone(), session);
        }
        self.set_stage(conn, Stage::Exchange(topic.clone()));
        self.stats.exchanges_sent += 1;
        self.send_chunk(conn, &topic);
        self.arm_reply(conn);
    }

    /// Our records for `topic` toward `peer`: bucket-scoped, full or delta (up to
    /// `until`, default the high water). Returns the records, the kind and the
    /// selection's upper stamp.
    fn select(
        &mut self,
        topic: &str,
        peer: &NodeId,
        scoped: Option<Vec<bool>>,
        until: Option<u64>,
    ) -> Option<(Vec<Bytes>, Selection, u64)> {
        let t = self.topics.topics.get(topic)?;
        let (store, delta) = (t.store.as_ref()?, t.delta.as_ref()?);
        let hw = until.unwrap_or_else(|| store.high_water());
        let (records, kind) = if let Some(want) = scoped {
            (store.records_in_buckets(&want), Selection::Buckets)
        } else if delta.should_full_sync(peer) {
            // A responder's snapshot stops at `until` too: the peer's own records, just
            // applied, are not echoed (the keys they replaced are the peer's version now).
            let records = match until {
                Some(until) => store.delta(0, until),
                None => store.snapshot(),
            };
            (records, Selection::Full)
        } else {
            (store.delta(delta.watermark(peer), hw), Selection::Delta)
        };
        match kind {
            Selection::Full => self.stats.full_syncs += 1,
            Selection::Delta => self.stats.delta_syncs += 1,
            Selection::Buckets => self.stats.bucket_syncs += 1,
        }
        Some((records, kind, hw))
    }

    fn commit(
        &mut self,
        topic: &str,
        peer: &NodeId,
        watermark: u64,
        kind: Selection,
        applied: usize,
    ) {
        let now_us = self.wall_us();
        if let Some(d) = self
            .topics
            .topics
            .get_mut(topic)
            .and_then(|t| t.delta.as_mut())
        {
            d.update_watermark(peer, watermark, now_us);
            if kind == Selection::Full {
                d.record_full_sync_result(peer, applied);
            }
        }
    }

    /// Advances every exchanged topic's watermark after a digest match.
    fn touch_all(&mut self, conn: ConnId, peer: &NodeId) {
        let now_us = self.wall_us();
        for topic in self.sync_topics(conn) {
            if let Some(t) = self.topics.topics.get_mut(&topic) {
                if let (Some(s), Some(d)) = (t.store.as_ref(), t.delta.as_mut()) {
                    d.touch(peer, s.high_water(), now_us);
                }
            }
        }
    }

    fn on_exchange_reply(&mut self, conn: ConnId, peer: NodeId, mut body: ExchangeBody) {
        let Some(Stage::Exchange(topic)) = self.stage(conn).cloned() else {
            self.stats.unsolicited += 1;
            return;
        };
        self.note_peer_meta(conn, &mut body);
        self.clear_timer(conn, Timer::Reply);
        let pre = self.high_water(&topic);
        let applied = self.apply_records(&topic, &peer, &body.records);
        self.flow_on_reply(conn, applied);
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let Some(session) = c.sync.sessions.get_mut(&topic) else {
            // INVARIANT: an Exchange stage always has its session; never strand a round.
            self.next_topic(conn);
            return;
        };
        if pre != session.sent_hw {
            session.clean = false;
        }
        session.applied += applied;
        let peer_more = body.more && session.bodies < MAX_SESSION_BODIES;
        if !session.records.is_empty() || peer_more {
            self.stats.exchanges_sent += 1;
            self.send_chunk(conn, &topic);
            self.arm_reply(conn);
            return;
        }
        let Some(session) = c.sync.sessions.remove(&topic) else {
            return;
        };
        let watermark = if session.clean {
            self.high_water(&topic)
        } else {
            session.cursor
        };
        self.commit(&topic, &peer, watermark, session.kind, session.applied);
        let (ours, theirs) = (self.topic_fingerprint(&topic), body.meta.cache_fingerprint);
        self.flow_note_fingerprints(conn, ours, theirs);
        if theirs != 0 && theirs != ours {
            let n = self.config.digest_buckets;
            let digests = (session.kind != Selection::Buckets
                && self.topics.default_stateful() == Some(topic.as_str())
                && self.has_cap(conn, Capabilities::BUCKET_DIGEST))
            .then(|| {
                self.topics
                    .topics
                    .get(&topic)
                    .and_then(|t| t.store.as_ref())
                    .and_then(|s| s.bucket_digests(n))
            })
            .flatten();
            if let Some(digests) = digests {
                self.set_stage(conn, Stage::Buckets(topic));
                self.stats.bucket_digests_sent += 1;
                let frame = Frame::BucketDigest(BucketDigest { flags: 0, digests });
                self.send_frame(conn, &frame);
                self.arm_reply(conn);
                return;
            }
            if let Some(d) = self
                .topics
                .topics
                .get_mut(&topic)
                .and_then(|t| t.delta.as_mut())
            {
                d.force_full_sync(&peer);
            }
        }
        self.next_topic(conn);
    }

    // ---- responder --------------------------------------------------------------------

    /// Commits the watermarks of sessions whose last reply the peer has now read.
    fn commit_pending(&mut self, conn: ConnId, peer: &NodeId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        for p in core::mem::take(&mut c.sync.pending) {
            self.commit(&p.topic, peer, p.watermark, p.kind, p.applied);
        }
    }

    fn on_exchange_request(&mut self, conn: ConnId, peer: NodeId, mut body: ExchangeBody) {
        self.note_peer_meta(conn, &mut body);
        self.commit_pending(conn, &peer);
        self.stats.exchanges_answered += 1;
        let Some(topic) = self.resolve_topic(&body.topic) else {
            self.stats.unknown_topic += 1;
            let reply = ExchangeBody {
                topic: body.topic,
                ..Default::default()
            };
            self.send_body(conn, &reply);
            return;
        };
        let pre = self.high_water(&topic);
        let applied = self.apply_records(&topic, &peer, &body.records);
        let existing = self
            .conns
            .get_mut(&conn)
            .and_then(|c| c.sync.sessions.get_mut(&topic));
        match existing {
            Some(session) => {
                if pre != session.sent_hw {
                    session.clean = false;
                }
                session.applied += applied;
            }
            None => {
                let armed = if self.topics.default_stateful() == Some(topic.as_str()) {
                    self.conns
                        .get_mut(&conn)
                        .and_then(|c| c.sync.armed_buckets.take())
                } else {
                    None
                };
                // A delta stops at `pre`: what the peer just sent is not echoed back.
                let Some((records, kind, cursor)) = self.select(&topic, &peer, armed, Some(pre))
                else {
                    // INVARIANT: resolved topics are stateful; still, never leave the
                    // initiator waiting.
                    self.send_body(conn, &ExchangeBody::default());
                    return;
                };
                let session = Session {
                    records: records.into(),
                    cursor,
                    kind,
                    applied,
                    sent_hw: pre,
                    clean: true,
                    bodies: 0,
                };
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.sync.sessions.insert(topic.clone(), session);
                }
            }
        }
        let drained = self.send_chunk(conn, &topic);
        if drained && !body.more {
            let hw = self.high_water(&topic);
            if let Some(c) = self.conns.get_mut(&conn) {
                if let Some(s) = c.sync.sessions.remove(&topic) {
                    c.sync.pending.push(Pending {
                        watermark: if s.clean { hw } else { s.cursor },
                        topic,
                        kind: s.kind,
                        applied: s.applied,
                    });
                }
            }
        }
    }

    // ---- dispatch ---------------------------------------------------------------------

    /// A non-keepalive G1 frame.
    pub(super) fn on_exchange(&mut self, conn: ConnId, peer: NodeId, body: Bytes) {
        let Some(role) = self.conns.get(&conn).map(|c| c.role) else {
            return;
        };
        let body = match self.codec.decode(body) {
            Ok(body) => body,
            Err(e) => {
                self.reject(conn, MessageError::Body(e));
                match role {
                    // Never leave the initiator waiting: answer with an empty exchange
                    // carrying our fingerprint, which also tells it we still differ.
                    Role::Acceptor => {
                        let mut reply = ExchangeBody::default();
                        reply.meta.cache_fingerprint = self
                            .topics
                            .default_stateful()
                            .map_or(0, |d| self.topic_fingerprint(d));
                        self.send_body(conn, &reply);
                    }
                    // An undecodable reply ends that exchange as if it were empty.
                    Role::Dialer => {
                        if matches!(self.stage(conn), Some(Stage::Exchange(_))) {
                            self.on_exchange_reply(conn, peer, ExchangeBody::default());
                        }
                    }
                }
                return;
            }
        };
        match (body.kind, role) {
            (BodyKind::Exchange, Role::Acceptor) => self.on_exchange_request(conn, peer, body),
            (BodyKind::Exchange, Role::Dialer) => self.on_exchange_reply(conn, peer, body),
            (BodyKind::Query, _) => self.on_query(conn, peer, body),
            (BodyKind::Response, _) => self.on_response(conn, peer, body),
            (BodyKind::Announce, _) => self.on_announce(conn, body),
            (BodyKind::Unknown(_), _) => self.stats.bodies_rejected += 1,
        }
    }

    /// G2 (reference §c). A frame with [`Digest::FLAG_REPLY`], or any G2 while our own
    /// probe is unanswered (a Go peer's reply, or a crossing probe that tells us the same
    /// thing), is a reply and is never answered; anything else is a probe, always
    /// answered.
    pub(super) fn on_digest(&mut self, conn: ConnId, peer: NodeId, digest: Digest) {
        let local = self.local_fingerprint(conn);
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.peer_fingerprint = digest.fingerprint;
        if digest.is_reply() || c.awaiting_digest {
            c.awaiting_digest = false;
            let matched = digest.is_match() || (local != 0 && digest.fingerprint == local);
            if matched {
                self.emit(Event::DigestMatch { peer: peer.clone() });
            }
            if self.stage(conn) == Some(&Stage::Digest) {
                self.clear_timer(conn, Timer::Reply);
                if matched {
                    self.stats.digest_skips += 1;
                    self.flow_note_fingerprints(conn, local, local);
                    self.touch_all(conn, &peer);
                    self.finish_round(conn);
                } else {
                    self.next_topic(conn);
                }
            }
            return;
        }
        self.commit_pending(conn, &peer);
        let reply = Digest::reply(local, digest.fingerprint);
        if reply.is_match() {
            self.emit(Event::DigestMatch { peer: peer.clone() });
            self.touch_all(conn, &peer);
        }
        self.send_frame(conn, &Frame::Digest(reply));
    }

    /// G2B. From the dialer it is a request: answered with our digests (flag
    /// [`Digest::FLAG_REPLY`]), and diverging buckets arm the next G1 reply. From the
    /// acceptor it is the reply to ours: the bucket-scoped G1 follows.
    pub(super) fn on_bucket_digest(&mut self, conn: ConnId, peer: NodeId, bd: BucketDigest) {
        let Some(role) = self.conns.get(&conn).map(|c| c.role) else {
            return;
        };
        let n = bd.digests.len();
        let local_of = |e: &Self, topic: Option<&str>| {
            topic
                .and_then(|t| e.topics.topics.get(t))
                .and_then(|t| t.store.as_ref())
                .and_then(|s| s.bucket_digests(n))
                .filter(|d| d.len() == n)
        };
        if role == Role::Dialer {
            let Some(Stage::Buckets(topic)) = self.stage(conn).cloned() else {
                self.stats.unsolicited += 1;
                return;
            };
            self.clear_timer(conn, Timer::Reply);
            let want: Vec<bool> = match local_of(self, Some(&topic)) {
                Some(local) => local.iter().zip(&bd.digests).map(|(a, b)| a != b).collect(),
                None => vec![true; n],
            };
            let buckets = want.iter().filter(|w| **w).count();
            if buckets == 0 {
                self.next_topic(conn);
                return;
            }
            self.emit(Event::DigestBucketMismatch { peer, buckets });
            self.begin_exchange(conn, topic, Some(want));
            return;
        }
        self.commit_pending(conn, &peer);
        let default = self.topics.default_stateful().map(String::from);
        let local = local_of(self, default.as_deref()).unwrap_or_else(|| vec![0; n]);
        let want: Vec<bool> = local.iter().zip(&bd.digests).map(|(a, b)| a != b).collect();
        let buckets = want.iter().filter(|w| **w).count();
        if buckets > 0 {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.sync.armed_buckets = Some(want);
            }
            self.emit(Event::DigestBucketMismatch { peer, buckets });
        }
        self.stats.bucket_digests_sent += 1;
        let reply = BucketDigest {
            flags: Digest::FLAG_REPLY,
            digests: local,
        };
        self.send_frame(conn, &Frame::BucketDigest(reply));
    }
}

/// Protobuf cost of one `records` element: tag, length varint, bytes.
fn record_cost(len: usize) -> usize {
    let mut varint = 1;
    let mut v = len >> 7;
    while v > 0 {
        varint += 1;
        v >>= 7;
    }
    1 + varint + len
}

/// Takes as many whole records as fit in `budget`; drops (and counts) any record that
/// could never fit.
fn take_chunk(records: &mut VecDeque<Bytes>, budget: usize) -> (Vec<Bytes>, u64) {
    let (mut out, mut size, mut oversized) = (Vec::new(), 0usize, 0u64);
    while let Some(r) = records.front() {
        let cost = record_cost(r.len());
        if cost > budget {
            records.pop_front();
            oversized += 1;
            continue;
        }
        if size + cost > budget {
            break;
        }
        size += cost;
        if let Some(r) = records.pop_front() {
            out.push(r);
        }
    }
    (out, oversized)
}
