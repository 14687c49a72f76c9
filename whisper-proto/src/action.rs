//! What the engine asks its driver to do ([`Action`]) and tells its application
//! ([`Event`]).

use crate::error::{ConnError, InputError};
use crate::node::{ConnId, NodeId};
use crate::rumor::RumorEvent;
use crate::topic::{QueryId, QueryReply};
use crate::wire::Capabilities;
use alloc::string::String;
use alloc::vec::Vec;
use bytes::Bytes;

/// An instruction to the driver, drained with [`crate::Engine::poll_action`].
#[derive(Clone, Debug, PartialEq)]
#[must_use]
#[non_exhaustive]
pub enum Action {
    /// Close the connection; the engine has already forgotten it. The driver should flush
    /// any `Send` queued before this action first.
    Close {
        /// The connection.
        conn: ConnId,
        /// Why.
        reason: CloseReason,
    },
    /// Tell the application something.
    Emit(Event),
    /// Write these bytes (one or more whole frames) to the connection, in order.
    Send {
        /// The connection.
        conn: ConnId,
        /// Already framed, ready for the socket.
        bytes: Bytes,
    },
}

/// Why the engine closes a connection.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The peer did not answer a G1, G2 or G2B request of ours within
    /// [`crate::Config::exchange_timeout`]. On one ordered stream a late reply could not
    /// be told from the reply to a later request, so the connection is closed.
    ExchangeTimeout,
    /// No HELLO arrived within [`crate::Config::hello_timeout`].
    HelloTimeout,
    /// Nothing arrived within [`crate::Config::idle_timeout`].
    IdleTimeout,
    /// The peer sent something invalid.
    Protocol(ConnError),
    /// The application asked for it.
    Requested,
}

/// A notification for the application.
///
/// Variants that the seed numbers report that number through [`Event::kind`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// This node started (`overloaded`) or stopped signalling backpressure in its G1
    /// replies.
    Backpressure {
        /// True on entering the overloaded state.
        overloaded: bool,
        /// Pending exchanges at the transition.
        pending: u32,
    },
    /// A frame of a registered custom kind arrived.
    CustomFrame {
        /// The connection.
        conn: ConnId,
        /// The peer.
        peer: NodeId,
        /// The custom magic.
        magic: u16,
        /// The body.
        body: Bytes,
    },
    /// A G2B bucket digest found diverging buckets: the next exchange with this peer
    /// carries only their records.
    DigestBucketMismatch {
        /// The peer.
        peer: NodeId,
        /// How many buckets diverge.
        buckets: usize,
    },
    /// A G2 probe matched our fingerprint: the G1 exchange is skipped.
    DigestMatch {
        /// The peer.
        peer: NodeId,
    },
    /// Bad input. [`InputError::Closed`]: the connection was closed (counted in
    /// [`crate::EngineStats::frame_errors`]). [`InputError::Dropped`]: one message was
    /// dropped (and answered, for a G1 request) and the connection stays open (counted
    /// in [`crate::EngineStats::bodies_rejected`]).
    FrameError {
        /// The connection.
        conn: ConnId,
        /// The peer, when it had identified itself.
        peer: Option<NodeId>,
        /// What was wrong, and whether the connection was closed.
        error: InputError,
    },
    /// A valid built-in frame arrived that no subsystem of this engine handles yet; it
    /// was dropped and counted.
    FrameUnhandled {
        /// The connection.
        conn: ConnId,
        /// Its magic.
        magic: u16,
    },
    /// A broadcast on a subscribed BroadcastOnly topic, delivered once per message.
    Message {
        /// The topic.
        topic: String,
        /// The publisher (not the relay it came through).
        from: NodeId,
        /// The payload.
        payload: Bytes,
        /// The message id (BLAKE3-256 of its envelope), the same on every node.
        id: crate::rumor::RumorId,
        /// Links the message travelled to reach this node: 0 at its publisher.
        hop: u8,
    },
    /// A peer exceeded its inbound violation threshold: its non-control frames are
    /// dropped until `until`.
    PeerCooldown {
        /// The connection the violating frame came on.
        conn: ConnId,
        /// The peer.
        peer: NodeId,
        /// The cooldown's end.
        until: crate::time::Instant,
    },
    /// An identified peer's connection went away (closed by either side).
    PeerDown {
        /// The connection.
        conn: ConnId,
        /// The peer.
        peer: NodeId,
    },
    /// A connection became usable: the peer is identified and its capabilities known.
    PeerUp {
        /// The connection.
        conn: ConnId,
        /// The peer.
        peer: NodeId,
        /// What both sides support.
        capabilities: Capabilities,
    },
    /// A query finished: every asked peer answered, or the deadline passed.
    QueryComplete {
        /// The id [`crate::Engine::query`] returned.
        id: QueryId,
        /// The topic.
        topic: String,
        /// The replies, in arrival order.
        replies: Vec<QueryReply>,
        /// True when the deadline passed before every asked peer answered.
        timed_out: bool,
    },
    /// Records from a peer changed local state (at least one).
    RecordApplied {
        /// The peer.
        peer: NodeId,
        /// The StatefulMerge topic.
        topic: String,
        /// How many records changed state.
        records: usize,
    },
    /// Rumor push traffic: a frame sent, acknowledged, retried or dropped. Accepted
    /// rumors are reported by their effect instead ([`Event::Message`],
    /// [`Event::RecordApplied`]).
    Rumor(RumorEvent),
}

impl Event {
    /// The seed's stable event number, for the variants it names.
    pub fn kind(&self) -> Option<EventKind> {
        match self {
            Self::DigestBucketMismatch { .. } => Some(EventKind::DigestBucketMismatch),
            Self::DigestMatch { .. } => Some(EventKind::DigestMatch),
            Self::FrameError { .. } => Some(EventKind::FrameError),
            Self::Message { .. } => Some(EventKind::RumorReceived),
            Self::PeerUp { .. } => Some(EventKind::CapabilityNegotiated),
            Self::RecordApplied { .. } => Some(EventKind::RecordApplied),
            Self::Rumor(e) => match e {
                RumorEvent::Sent { .. } => Some(EventKind::RumorSent),
                RumorEvent::Acked { .. } => Some(EventKind::RumorAcked),
                RumorEvent::Retry { .. } => Some(EventKind::RumorRetry),
                RumorEvent::Dropped { .. } => Some(EventKind::RumorDropped),
                RumorEvent::Received { .. } => Some(EventKind::RumorReceived),
            },
            Self::Backpressure { .. }
            | Self::CustomFrame { .. }
            | Self::FrameUnhandled { .. }
            | Self::PeerCooldown { .. }
            | Self::PeerDown { .. }
            | Self::QueryComplete { .. } => None,
        }
    }
}

/// The seed's event kinds. The numbers are stable: never renumbered, append only.
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
#[repr(u8)]
#[non_exhaustive]
pub enum EventKind {
    /// 0: a digest probe matched.
    DigestMatch = 0,
    /// 1: records were applied.
    RecordApplied = 1,
    /// 2: a rumor was accepted.
    RumorReceived = 2,
    /// 3: bad input closed a connection or dropped a message ([`Event::FrameError`]).
    FrameError = 3,
    /// 4: a rumor was sent.
    RumorSent = 4,
    /// 5: a rumor was acknowledged.
    RumorAcked = 5,
    /// 6: a rumor was retried.
    RumorRetry = 6,
    /// 7: a rumor was dropped.
    RumorDropped = 7,
    /// 8: a freshness signal.
    FreshnessSignal = 8,
    /// 9: reconciliation started.
    ReconcileStart = 9,
    /// 10: reconciliation completed.
    ReconcileComplete = 10,
    /// 11: an IBLT failed to decode.
    ReconcileDecodeFailure = 11,
    /// 12: a snapshot transfer started.
    SnapshotStart = 12,
    /// 13: a snapshot transfer completed.
    SnapshotComplete = 13,
    /// 14: a snapshot shard failed.
    SnapshotShardFailure = 14,
    /// 15: the hypercube was rebuilt.
    HypercubeRebuild = 15,
    /// 16: a neighbour was promoted.
    HypercubeNeighborPromoted = 16,
    /// 17: a neighbour was demoted.
    HypercubeNeighborDemoted = 17,
    /// 18: the network policy changed profile.
    NetworkPolicyTransition = 18,
    /// 19: a peer's capabilities were negotiated.
    CapabilityNegotiated = 19,
    /// 20: G2B found diverging buckets.
    DigestBucketMismatch = 20,
}
