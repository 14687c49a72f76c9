//! The sans-IO engine: bytes and instants in, actions out.
//!
//! Method groups, in the order of [the crate docs](crate): getters (`&self`), inputs
//! (`handle_*`, which always take `now`), commands (imperative verbs), outputs (`poll_*`).
//! After every input or command, drain [`Engine::poll_action`] until it returns `None`,
//! then sleep until [`Engine::poll_timeout`].
//!
//! The engine is split by concern: this file holds the connection table, dispatch and
//! the single timer table; `sync` the G1/G2/G2B exchange, `broadcast` the G3 rumor push (broadcasts and
//! record pushes through the [`RumorPusher`]),
//! `query` request/response, `topics` the topic, store and delta-tracker commands.
//!
//! # Who initiates
//! On each connection the **dialer** is the G1/G2/G2B initiator and the acceptor only
//! responds. Both directions share one ordered byte stream, and a G1 frame carries no
//! request/reply bit, so the role tells them apart: an exchange-kind G1 from the
//! dialer is a request, from the acceptor a reply. (G2 replies also carry
//! [`Digest::FLAG_REPLY`], G2B replies the same bit.) Query, response and announce
//! bodies (G1 kinds 1–3) sit outside this alternation.
//!
//! # Timers
//! One table of `(deadline, connection or engine, timer)`; [`Engine::poll_timeout`] is
//! its first entry. Per connection: HELLO, keepalive, idle, next gossip round, reply
//! wait. Engine-wide: the earliest query deadline (folded in from the
//! [`Correlator`]), the sweeper, and the rumor pusher's earliest ACK deadline
//! ([`RumorPusher::next_deadline`]).

mod broadcast;
mod flow;
mod query;
mod sync;
mod topics;

pub use flow::{FlowStats, PeerFlow};

use crate::action::{Action, CloseReason, Event};
use crate::config::{Config, ConfigError};
use crate::error::{ConnError, InputError, MessageError};
use crate::hypercube::MemberInfo;
use crate::node::{ConnId, NodeId};
use crate::rng::{RandomSource, Rng};
use crate::rumor::{RumorConfig, RumorPusher, RumorStats, RumorTracker};
use crate::time::{Duration, Instant};
use crate::topic::{QueryId, QueryReply, TopicRegistry};
use crate::util::Correlator;
use crate::wire::codec::{G1Codec, ProtobufCodec};
use crate::wire::{
    Capabilities, Custom, Digest, Exchange, Frame, FrameDecoder, Hello, PROTOCOL_VERSION,
    RegisterError, WireConfig,
};
use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::string::String;
use bytes::Bytes;
use core::num::NonZeroUsize;

/// Which side opened the connection. The dialer is the G1 initiator on it.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub enum Role {
    /// We dialed.
    Dialer,
    /// We accepted.
    Acceptor,
}

/// How a new connection learns who the peer is.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Identity {
    /// Exchange HELLO frames first (the default). No other frame is accepted before the
    /// peer's HELLO.
    Hello,
    /// The transport already authenticated the peer (a TLS certificate, a QUIC
    /// connection id, an Aether session): no HELLO is sent or expected, and the given
    /// capabilities are assumed. Use this to speak to Go-reference peers, which send no
    /// HELLO: give them [`Capabilities::NONE`] unless you know better.
    Transport {
        /// The peer, as the transport identified it.
        peer: NodeId,
        /// What the peer is known to support.
        capabilities: Capabilities,
    },
}

/// Counters since the engine started. Cheap to copy.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
#[non_exhaustive]
pub struct EngineStats {
    /// Live connections (identified or not).
    pub connections: usize,
    /// Live connections whose peer is identified.
    pub peers: usize,
    /// Whole frames received.
    pub frames_received: u64,
    /// Whole frames sent.
    pub frames_sent: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Connections closed for bad input.
    pub frame_errors: u64,
    /// Valid built-in frames dropped because no subsystem handles them yet.
    pub frames_unhandled: u64,
    /// Connections refused because [`Config::max_connections`] were live.
    pub connections_refused: u64,
    /// Connections closed by timeouts (HELLO, idle or exchange reply).
    pub timeouts: u64,
    /// Registered topics.
    pub topics: usize,
    /// Subscribed BroadcastOnly topics.
    pub subscribers: usize,
    /// G1/G2 rounds this node started as initiator.
    pub rounds_started: u64,
    /// Rounds ended by a G2 digest match (no G1 sent).
    pub digest_skips: u64,
    /// G1 exchange requests sent (continuations included).
    pub exchanges_sent: u64,
    /// G1 exchange requests answered.
    pub exchanges_answered: u64,
    /// Full-sync selections (snapshots) sent, either role.
    pub full_syncs: u64,
    /// Delta selections sent, either role.
    pub delta_syncs: u64,
    /// Bucket-scoped selections sent after a G2B mismatch, either role.
    pub bucket_syncs: u64,
    /// G2B frames sent.
    pub bucket_digests_sent: u64,
    /// Records put in G1 bodies.
    pub records_sent: u64,
    /// Inbound records that changed local state.
    pub records_applied: u64,
    /// Inbound records refused by the store (malformed, clock skew, full).
    pub records_rejected: u64,
    /// Outbound records larger than a G1 body; never sent.
    pub records_oversized: u64,
    /// G1 bodies or G3 envelopes that did not decode: dropped (a G1 request is answered
    /// with an empty exchange); the connection stays open.
    pub bodies_rejected: u64,
    /// G1 replies or G2B frames that arrived outside a round; dropped.
    pub unsolicited: u64,
    /// Exchanges or queries for a topic this node does not have.
    pub unknown_topic: u64,
    /// G3 rumor frames sent (origin, relays and retries; broadcasts and records).
    pub broadcasts_sent: u64,
    /// G3-ACK frames sent.
    pub rumor_acks_sent: u64,
    /// G3-ACKs dropped because the peer did not negotiate `RUMOR_ACK`.
    pub rumor_acks_dropped: u64,
    /// Broadcasts delivered to a local subscriber.
    pub broadcasts_delivered: u64,
    /// Raw G3 records from peers without `TOPICS` dropped as already seen (duplicates
    /// between `TOPICS` peers are in [`RumorStats::duplicates`]).
    pub broadcasts_duplicate: u64,
    /// Broadcasts dropped after their TTL.
    pub broadcasts_expired: u64,
    /// Queries sent (one per asked peer).
    pub queries_sent: u64,
    /// Queries from peers answered by a local handler.
    pub queries_answered: u64,
    /// Queries that completed with every reply.
    pub queries_completed: u64,
    /// Queries that reached their deadline first.
    pub queries_timed_out: u64,
    /// Responses that matched no open query (late, duplicate or unasked).
    pub responses_dropped: u64,
    /// The rumor pusher's counters ([`Engine::rumor_stats`]).
    pub rumor: RumorStats,
}

/// Misuse of the engine's API. Engine state is unchanged.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// No live connection has that id.
    #[error("unknown connection {0}")]
    UnknownConnection(ConnId),
    /// That connection id is already live.
    #[error("connection {0} is already registered")]
    DuplicateConnection(ConnId),
    /// [`Config::max_connections`] are live; the driver should close the new one.
    #[error("connection limit reached")]
    TooManyConnections,
    /// The peer has not identified itself yet.
    #[error("connection {0} is not ready")]
    NotReady(ConnId),
    /// The frame has no valid encoding.
    #[error(transparent)]
    Encode(#[from] crate::wire::EncodeError),
    /// The magic is not a registered custom kind.
    #[error("magic {0:#06x} is not a registered custom kind")]
    NotCustom(u16),
    /// The body exceeds the custom kind's cap.
    #[error("body exceeds the custom kind's cap")]
    TooLarge,
    /// [`Config::max_queued_actions`] are waiting: drain [`Engine::poll_action`].
    #[error("action queue full")]
    QueueFull,
}

#[derive(Clone, Copy, Debug, Eq, Ord, PartialEq, PartialOrd)]
enum Timer {
    Hello,
    Keepalive,
    Idle,
    /// Per connection (dialer): start the next G1/G2 round.
    Gossip,
    /// Per connection (dialer): the reply to our request is overdue.
    Reply,
    /// Engine-wide: the earliest query deadline.
    Query,
    /// Engine-wide: delta sweeper and store expiry.
    Sweep,
    /// Engine-wide: the rumor pusher's earliest ACK deadline.
    Rumor,
}

#[derive(Debug)]
struct Conn {
    role: Role,
    peer: Option<NodeId>,
    capabilities: Capabilities,
    decoder: FrameDecoder,
    deadlines: BTreeMap<Timer, Instant>,
    /// A G2 probe we sent is unanswered.
    awaiting_digest: bool,
    /// The fingerprint the peer last reported (0 = none).
    peer_fingerprint: u64,
    /// G1/G2/G2B exchange state of this connection.
    sync: sync::ConnSync,
    /// RequestResponse topics the peer announced (at most
    /// [`TopicRegistry::MAX_TOPICS`]).
    served: BTreeSet<String>,
    /// The meta of the peer's last G1 exchange body (bounded, see `note_peer_meta`).
    peer_meta: crate::wire::codec::ExchangeMeta,
    /// Cadence, backoff and RTT state.
    flow: flow::ConnFlow,
}

/// An open query: the topic and the connections not yet answered.
#[derive(Debug)]
struct OpenQuery {
    topic: String,
    waiting: BTreeSet<ConnId>,
}

/// The whisper engine. No I/O, no clock, no threads, no global RNG.
///
/// See [the crate docs](crate) for the driving loop.
#[derive(Debug)]
pub struct Engine {
    me: NodeId,
    config: Config,
    wire: WireConfig,
    capabilities: Capabilities,
    rng: Rng,
    now: Instant,
    /// Boxed: a B-tree leaf holds 11 entries, and inline they would be 11 × the size
    /// of a `Conn` for an engine with one connection.
    conns: BTreeMap<ConnId, Box<Conn>>,
    /// The one timer table: `None` marks an engine-wide timer.
    timers: BTreeSet<(Instant, Option<ConnId>, Timer)>,
    global_deadlines: BTreeMap<Timer, Instant>,
    actions: VecDeque<Action>,
    stats: EngineStats,
    topics: TopicRegistry,
    /// The G1 body codec ([`ProtobufCodec`] unless replaced).
    codec: Box<dyn G1Codec>,
    /// Dedup of raw G3 records from peers without `TOPICS` (bounded LRU,
    /// [`Config::broadcast_dedup_capacity`]).
    seen: RumorTracker,
    /// G3 push over the hypercube.
    rumor: RumorPusher,
    /// Whether [`Engine::set_members`] gave the members; otherwise they are self and every
    /// `TOPICS` peer.
    members_set: bool,
    /// Open queries ([`Config::max_pending_queries`]).
    queries: Correlator<QueryId, QueryReply>,
    open_queries: BTreeMap<QueryId, OpenQuery>,
    next_query_id: u64,
    /// Rate limiter, CPU gate, RTT, backpressure.
    flow: flow::Flow,
}

impl Engine {
    /// The capabilities this build implements; [`Config::capabilities`] is intersected
    /// with it before it is advertised.
    pub const SUPPORTED: Capabilities = Capabilities::TOPICS
        .union(Capabilities::BUCKET_DIGEST)
        .union(Capabilities::RUMOR_ACK);

    /// A new engine for node `me`. `seed` fixes all of its randomness; `now` is the
    /// driver's current instant.
    pub fn new(me: NodeId, config: Config, seed: u64, now: Instant) -> Result<Self, ConfigError> {
        config.validate()?;
        let wire = WireConfig::new(config.limits);
        let capabilities = config.capabilities.intersection(Self::SUPPORTED);
        let mut rng = Rng::new(seed);
        let seen = RumorTracker::with_capacity(config.broadcast_dedup_capacity, rng.next_u64());
        let rumor_config = RumorConfig {
            max_payload: config.limits.max_rumor_send,
            ..config.rumor
        };
        let mut rumor =
            RumorPusher::new(me.clone(), rumor_config, config.hypercube, rng.next_u64());
        let _ = rumor.set_members(now, &[MemberInfo::new(me.clone())]);
        let max_queries =
            NonZeroUsize::new(config.max_pending_queries).unwrap_or(NonZeroUsize::MIN);
        Ok(Self {
            me,
            wire,
            capabilities,
            rng,
            now,
            conns: BTreeMap::new(),
            timers: BTreeSet::new(),
            global_deadlines: BTreeMap::new(),
            actions: VecDeque::new(),
            stats: EngineStats::default(),
            topics: TopicRegistry::new(),
            codec: Box::new(ProtobufCodec),
            seen,
            rumor,
            members_set: false,
            queries: Correlator::new(max_queries),
            open_queries: BTreeMap::new(),
            next_query_id: 1,
            flow: flow::Flow::new(&config, now),
            config,
        })
    }

    // ---- (A) getters ----------------------------------------------------------------

    /// This node's id.
    pub fn node_id(&self) -> &NodeId {
        &self.me
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Replaces the G1 body codec (default: [`ProtobufCodec`], the deployed Go mesh's
    /// envelope). Every node of a deployment must use the same codec. Call before the
    /// first connection; exchanges already under way finish with the new codec.
    pub fn set_g1_codec(&mut self, codec: Box<dyn G1Codec>) {
        self.codec = codec;
    }

    /// The capabilities this node advertises.
    pub fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    /// Counters.
    pub fn stats(&self) -> EngineStats {
        let mut s = self.stats;
        s.topics = self.topics.count();
        s.subscribers = self.topics.subscribers();
        s.rumor = self.rumor.stats();
        s
    }

    /// The topic registry.
    pub fn topics(&self) -> &TopicRegistry {
        &self.topics
    }

    /// The engine's wall clock: the latest instant plus
    /// [`Config::wall_clock_offset`], in Unix microseconds.
    pub fn wall_clock_micros(&self) -> u64 {
        self.wall_us()
    }

    /// The identified peer on `conn`, if any.
    pub fn peer(&self, conn: ConnId) -> Option<&NodeId> {
        self.conns.get(&conn)?.peer.as_ref()
    }

    /// The role this node plays on `conn`.
    pub fn role(&self, conn: ConnId) -> Option<Role> {
        self.conns.get(&conn).map(|c| c.role)
    }

    /// Live connections with an identified peer, in connection-id order.
    pub fn peers(&self) -> impl Iterator<Item = (ConnId, &NodeId)> + '_ {
        self.conns
            .iter()
            .filter_map(|(id, c)| c.peer.as_ref().map(|p| (*id, p)))
    }

    // ---- (B) inputs -----------------------------------------------------------------

    /// A transport connection is open.
    ///
    /// Call after: the socket connected or was accepted. With [`Identity::Hello`] the
    /// engine queues its HELLO and arms the HELLO timeout; with
    /// [`Identity::Transport`] the peer is up at once.
    pub fn handle_connected(
        &mut self,
        now: Instant,
        conn: ConnId,
        role: Role,
        identity: Identity,
    ) -> Result<(), CommandError> {
        self.advance(now);
        if self.conns.contains_key(&conn) {
            return Err(CommandError::DuplicateConnection(conn));
        }
        if self.conns.len() >= self.config.max_connections {
            self.stats.connections_refused += 1;
            return Err(CommandError::TooManyConnections);
        }
        self.conns.insert(
            conn,
            Box::new(Conn {
                role,
                peer: None,
                capabilities: Capabilities::NONE,
                decoder: FrameDecoder::new(),
                deadlines: BTreeMap::new(),
                awaiting_digest: false,
                peer_fingerprint: 0,
                sync: sync::ConnSync::default(),
                served: BTreeSet::new(),
                peer_meta: crate::wire::codec::ExchangeMeta::default(),
                flow: flow::ConnFlow::new(&self.config),
            }),
        );
        self.stats.connections = self.conns.len();
        self.set_timer(conn, Timer::Idle, self.now + self.config.idle_timeout);
        self.arm_keepalive(conn);
        match identity {
            Identity::Hello => {
                let hello = Frame::Hello(Hello {
                    version: PROTOCOL_VERSION,
                    capabilities: self.capabilities,
                    node_id: self.me.clone(),
                });
                self.send_frame(conn, &hello);
                self.set_timer(conn, Timer::Hello, self.now + self.config.hello_timeout);
            }
            Identity::Transport { peer, capabilities } => {
                self.peer_up(conn, peer, capabilities);
            }
        }
        Ok(())
    }

    /// Bytes arrived on `conn`, in any chunking.
    ///
    /// Call after: every read. On `Err` the engine has already queued
    /// [`Action::Close`] and [`Event::FrameError`] for this connection and forgotten it;
    /// the driver logs the error and goes on serving the others. A message dropped for a
    /// body that does not decode ([`MessageError`]) is not an `Err`: it is reported as
    /// [`Event::FrameError`] with [`InputError::Dropped`] and the connection stays open.
    /// Bytes for an unknown (already closed) connection are ignored.
    pub fn handle_bytes(
        &mut self,
        now: Instant,
        conn: ConnId,
        bytes: &[u8],
    ) -> Result<(), ConnError> {
        self.advance(now);
        if !self.conns.contains_key(&conn) {
            return Ok(());
        }
        self.stats.bytes_received += bytes.len() as u64;
        let mut input = bytes;
        let idle = self.now + self.config.idle_timeout;
        self.set_timer(conn, Timer::Idle, idle);
        loop {
            let Some(c) = self.conns.get_mut(&conn) else {
                return Ok(());
            };
            let frame = match c.decoder.decode(&self.wire, &mut input) {
                Ok(Some(frame)) => frame,
                Ok(None) => return Ok(()),
                Err(e) => return Err(self.fail(conn, e.into())),
            };
            self.stats.frames_received += 1;
            if let Err(e) = self.dispatch(conn, frame) {
                return Err(self.fail(conn, e));
            }
        }
    }

    /// The transport connection is gone.
    ///
    /// Call after: EOF, a read or write error, or the driver closed it. Emits
    /// [`Event::PeerDown`] for an identified peer. Unknown ids are ignored.
    pub fn handle_disconnected(&mut self, now: Instant, conn: ConnId) {
        self.advance(now);
        let partial = self.conns.get(&conn).and_then(|c| c.decoder.partial());
        if let Some((needed, got)) = partial {
            // The stream ended inside a frame: report the truncation (nothing of that
            // frame was applied).
            self.stats.frame_errors += 1;
            let peer = self.conns.get(&conn).and_then(|c| c.peer.clone());
            let needed = needed.max(got + 1);
            self.emit(Event::FrameError {
                conn,
                peer,
                error: InputError::Closed(ConnError::Decode(crate::wire::DecodeError::Truncated {
                    needed,
                    got,
                })),
            });
        }
        self.forget(conn);
    }

    /// Time passed. Early or spurious calls are harmless no-ops.
    ///
    /// Call when: the instant from [`Engine::poll_timeout`] is reached (or any time).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        self.flow_tick();
        while let Some(&(at, scope, timer)) = self.timers.first() {
            if at > self.now {
                break;
            }
            self.timers.pop_first();
            let Some(conn) = scope else {
                self.global_deadlines.remove(&timer);
                match timer {
                    Timer::Query => self.expire_queries(),
                    Timer::Sweep => self.sweep(),
                    Timer::Rumor => self.rumor_timeout(),
                    _ => {}
                }
                continue;
            };
            if let Some(c) = self.conns.get_mut(&conn) {
                c.deadlines.remove(&timer);
            }
            match timer {
                Timer::Hello => self.close(conn, CloseReason::HelloTimeout, true),
                Timer::Idle => self.close(conn, CloseReason::IdleTimeout, true),
                Timer::Reply => self.close(conn, CloseReason::ExchangeTimeout, true),
                Timer::Keepalive => {
                    self.send_frame(conn, &Frame::Exchange(Exchange::keepalive()));
                }
                Timer::Gossip => self.start_round(conn),
                Timer::Query | Timer::Sweep | Timer::Rumor => {}
            }
        }
    }

    // ---- (C) commands ---------------------------------------------------------------

    /// Registers a custom frame kind: `magic` + `len u32` + body of at most `max_len`
    /// bytes, delivered as [`Event::CustomFrame`]. Built-in magics cannot be overridden.
    pub fn register_frame_kind(&mut self, magic: u16, max_len: u32) -> Result<(), RegisterError> {
        self.wire.register_custom(magic, max_len)
    }

    /// Sends a frame of a registered custom kind to an identified peer.
    pub fn send_custom(
        &mut self,
        now: Instant,
        conn: ConnId,
        magic: u16,
        body: Bytes,
    ) -> Result<(), CommandError> {
        self.advance(now);
        self.check_queue()?;
        let cap = self
            .wire
            .custom_cap(magic)
            .ok_or(CommandError::NotCustom(magic))?;
        if body.len() > cap as usize {
            return Err(CommandError::TooLarge);
        }
        let c = self
            .conns
            .get(&conn)
            .ok_or(CommandError::UnknownConnection(conn))?;
        if c.peer.is_none() {
            return Err(CommandError::NotReady(conn));
        }
        let bytes = Frame::Custom(Custom { magic, body }).to_bytes()?;
        self.push_send(conn, bytes, 1);
        Ok(())
    }

    /// Sends a G2 digest probe with the local fingerprint to an identified peer. Its
    /// reply is never answered; a match emits [`Event::DigestMatch`].
    pub fn probe_digest(&mut self, now: Instant, conn: ConnId) -> Result<(), CommandError> {
        self.advance(now);
        self.check_queue()?;
        let local = self.local_fingerprint(conn);
        let c = self
            .conns
            .get_mut(&conn)
            .ok_or(CommandError::UnknownConnection(conn))?;
        if c.peer.is_none() {
            return Err(CommandError::NotReady(conn));
        }
        c.awaiting_digest = true;
        self.send_frame(conn, &Frame::Digest(Digest::probe(local)));
        Ok(())
    }

    /// The meta the peer on `conn` piggybacked on its last G1 exchange body (fingerprint,
    /// backpressure signal, connection counts, PEX entries, offer). Lists are truncated
    /// to [`Engine::MAX_PEER_META_ENTRIES`] entries.
    pub fn peer_meta(&self, conn: ConnId) -> Option<&crate::wire::codec::ExchangeMeta> {
        self.conns.get(&conn).map(|c| &c.peer_meta)
    }

    /// The most PEX entries and connection counts kept from one peer's meta.
    pub const MAX_PEER_META_ENTRIES: usize = 256;

    /// The fingerprint the peer on `conn` last reported in a G2 frame (0 = none).
    pub fn peer_fingerprint(&self, conn: ConnId) -> Option<u64> {
        self.conns.get(&conn).map(|c| c.peer_fingerprint)
    }

    /// Closes a connection: queues [`Action::Close`] and forgets it.
    pub fn close_connection(&mut self, now: Instant, conn: ConnId) -> Result<(), CommandError> {
        self.advance(now);
        if !self.conns.contains_key(&conn) {
            return Err(CommandError::UnknownConnection(conn));
        }
        self.close(conn, CloseReason::Requested, false);
        Ok(())
    }

    // ---- (D) outputs ----------------------------------------------------------------

    /// The next action for the driver, in order.
    ///
    /// Call after: every `handle_*` and command, until it returns `None`.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        let action = self.actions.pop_front();
        if action.is_some() {
            self.flow_polled();
        }
        action
    }

    /// When [`Engine::handle_timeout`] should next be called; `None` when nothing is
    /// scheduled. May move earlier or later after any input or command.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|(at, _, _)| *at)
    }

    /// The engine's wall clock in Unix microseconds.
    fn wall_us(&self) -> u64 {
        let offset = u64::try_from(self.config.wall_clock_offset.as_micros()).unwrap_or(u64::MAX);
        self.now.as_micros().saturating_add(offset)
    }

    // ---- internals ------------------------------------------------------------------

    /// Clamps time to be monotonic.
    fn advance(&mut self, now: Instant) {
        if now > self.now {
            self.now = now;
        }
    }

    fn check_queue(&self) -> Result<(), CommandError> {
        if self.actions.len() >= self.config.max_queued_actions {
            return Err(CommandError::QueueFull);
        }
        Ok(())
    }

    fn dispatch(&mut self, conn: ConnId, frame: Frame) -> Result<(), ConnError> {
        // INVARIANT: callers only dispatch for live connections.
        let Some(c) = self.conns.get(&conn) else {
            return Ok(());
        };
        let Some(peer) = c.peer.clone() else {
            return match frame {
                Frame::Hello(hello) => self.on_hello(conn, hello),
                other => Err(ConnError::FrameBeforeHello {
                    magic: other.magic(),
                }),
            };
        };
        if !self.flow_admit(conn, &peer, &frame) {
            return Ok(());
        }
        match frame {
            Frame::Hello(_) => return Err(ConnError::DuplicateHello),
            Frame::Exchange(ex) if ex.is_keepalive() => {}
            Frame::Exchange(ex) => self.on_exchange(conn, peer, ex.body),
            Frame::Digest(digest) => self.on_digest(conn, peer, digest),
            Frame::BucketDigest(bd) => self.on_bucket_digest(conn, peer, bd),
            Frame::Rumor(rumor) => self.on_rumor(conn, peer, rumor),
            Frame::RumorAck(ack) => self.on_rumor_ack(conn, peer, ack),
            Frame::Custom(Custom { magic, body }) => {
                self.emit(Event::CustomFrame {
                    conn,
                    peer,
                    magic,
                    body,
                });
            }
            other => {
                self.stats.frames_unhandled += 1;
                self.emit(Event::FrameUnhandled {
                    conn,
                    magic: other.magic(),
                });
            }
        }
        Ok(())
    }

    fn on_hello(&mut self, conn: ConnId, hello: Hello) -> Result<(), ConnError> {
        if hello.version == 0 {
            return Err(ConnError::UnsupportedVersion(hello.version));
        }
        if hello.node_id == self.me {
            return Err(ConnError::SelfConnection);
        }
        self.clear_timer(conn, Timer::Hello);
        let caps = hello.capabilities.intersection(self.capabilities);
        self.peer_up(conn, hello.node_id, caps);
        Ok(())
    }

    fn peer_up(&mut self, conn: ConnId, peer: NodeId, capabilities: Capabilities) {
        crate::trace_event!(debug, crate::util::log::targets::ENGINE, %conn, %peer, caps = capabilities.0, "peer up");
        let mut dialer = false;
        if let Some(c) = self.conns.get_mut(&conn) {
            c.peer = Some(peer.clone());
            c.capabilities = capabilities;
            dialer = c.role == Role::Dialer;
        }
        self.stats.peers = self.conns.values().filter(|c| c.peer.is_some()).count();
        self.emit(Event::PeerUp {
            conn,
            peer: peer.clone(),
            capabilities,
        });
        self.rumor_peer_up(&peer, capabilities);
        self.announce(conn);
        if dialer {
            // The first exchange right after PeerUp.
            self.start_round(conn);
        }
    }

    /// Drops one bad message without closing: counted and evented.
    fn reject(&mut self, conn: ConnId, error: MessageError) {
        self.stats.bodies_rejected += 1;
        let peer = self.conns.get(&conn).and_then(|c| c.peer.clone());
        self.emit(Event::FrameError {
            conn,
            peer,
            error: InputError::Dropped(error),
        });
    }

    /// Closes `conn` for bad input: counted, evented, forgotten.
    fn fail(&mut self, conn: ConnId, error: ConnError) -> ConnError {
        crate::trace_event!(debug, crate::util::log::targets::WIRE, %conn, %error, "closing connection on bad input");
        self.stats.frame_errors += 1;
        let peer = self.conns.get(&conn).and_then(|c| c.peer.clone());
        self.emit(Event::FrameError {
            conn,
            peer,
            error: InputError::Closed(error.clone()),
        });
        self.close(conn, CloseReason::Protocol(error.clone()), false);
        error
    }

    fn close(&mut self, conn: ConnId, reason: CloseReason, timeout: bool) {
        if !self.conns.contains_key(&conn) {
            return;
        }
        if timeout {
            self.stats.timeouts += 1;
        }
        self.actions.push_back(Action::Close { conn, reason });
        self.forget(conn);
    }

    fn forget(&mut self, conn: ConnId) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        for (timer, at) in c.deadlines {
            self.timers.remove(&(at, Some(conn), timer));
        }
        self.stats.connections = self.conns.len();
        if let Some(peer) = c.peer {
            self.stats.peers = self.stats.peers.saturating_sub(1);
            if self.config.delta_reset_on_disconnect {
                for t in self.topics.topics.values_mut() {
                    if let Some(d) = t.delta.as_mut() {
                        d.reset(&peer);
                    }
                }
            }
            self.flow_forget(&peer);
            self.emit(Event::PeerDown {
                conn,
                peer: peer.clone(),
            });
            self.rumor_peer_gone(&peer);
        }
    }

    fn emit(&mut self, event: Event) {
        self.actions.push_back(Action::Emit(event));
    }

    fn send_frame(&mut self, conn: ConnId, frame: &Frame) {
        match frame.to_bytes() {
            Ok(bytes) => self.push_send(conn, bytes, 1),
            // INVARIANT: the engine only builds frames with valid encodings.
            Err(_) => debug_assert!(false, "engine built an unencodable frame"),
        }
    }

    fn push_send(&mut self, conn: ConnId, bytes: Bytes, frames: u64) {
        self.stats.frames_sent += frames;
        self.stats.bytes_sent += bytes.len() as u64;
        self.actions.push_back(Action::Send { conn, bytes });
        self.arm_keepalive(conn);
    }

    /// Re-arms the keepalive after a send, with ±10 % jitter so that connections opened
    /// together do not all wake together.
    fn arm_keepalive(&mut self, conn: ConnId) {
        let base = self.config.keepalive_interval;
        let spread = base.as_micros() as u64 / 5;
        let offset = self.rng.below(spread.saturating_add(1));
        let at =
            self.now + base - Duration::from_micros(spread / 2) + Duration::from_micros(offset);
        self.set_timer(conn, Timer::Keepalive, at);
    }

    fn set_timer(&mut self, conn: ConnId, timer: Timer, at: Instant) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if let Some(old) = c.deadlines.insert(timer, at) {
            self.timers.remove(&(old, Some(conn), timer));
        }
        self.timers.insert((at, Some(conn), timer));
    }

    fn clear_timer(&mut self, conn: ConnId, timer: Timer) {
        if let Some(c) = self.conns.get_mut(&conn) {
            if let Some(old) = c.deadlines.remove(&timer) {
                self.timers.remove(&(old, Some(conn), timer));
            }
        }
    }

    /// Arms (or with `None` clears) an engine-wide timer.
    fn set_global_timer(&mut self, timer: Timer, at: Option<Instant>) {
        if let Some(old) = self.global_deadlines.remove(&timer) {
            self.timers.remove(&(old, None, timer));
        }
        if let Some(at) = at {
            self.global_deadlines.insert(timer, at);
            self.timers.insert((at, None, timer));
        }
    }
}

#[cfg(test)]
mod tests;
