//! Errors from peer input, shared by the [engine](crate::engine) that raises them and
//! the [actions and events](crate::action) that report them: a leaf module, so neither
//! depends on the other.

use crate::wire::BroadcastError;
use crate::wire::codec::CodecError;

/// Why a connection was closed for what came over it: returned by
/// [`Engine::handle_bytes`](crate::Engine::handle_bytes), carried by
/// [`CloseReason::Protocol`](crate::CloseReason::Protocol) and reported as
/// [`InputError::Closed`].
///
/// Every variant closes the connection: it is forgotten (an identified peer gets
/// [`Event::PeerDown`](crate::Event::PeerDown)) and counted in
/// [`EngineStats::frame_errors`](crate::EngineStats::frame_errors); nothing already
/// applied is undone; other connections are unaffected.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnError {
    /// The bytes are not a valid frame (or the stream ended inside one). Closes the
    /// connection.
    #[error(transparent)]
    Decode(#[from] crate::wire::DecodeError),
    /// A second HELLO on the same connection. Closes the connection.
    #[error("duplicate HELLO")]
    DuplicateHello,
    /// A frame other than HELLO arrived before the peer's HELLO. Closes the connection.
    #[error("frame {magic:#06x} before HELLO")]
    FrameBeforeHello {
        /// Its magic.
        magic: u16,
    },
    /// The peer claims this node's own id. Closes the connection.
    #[error("peer claims our own node id")]
    SelfConnection,
    /// The peer speaks a protocol version this node cannot. Closes the connection.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u8),
}

/// Why one message from a peer was dropped while its connection stays open: reported as
/// [`InputError::Dropped`] and counted in
/// [`EngineStats::bodies_rejected`](crate::EngineStats::bodies_rejected).
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// A G1 body did not decode. The body is dropped and nothing of it applied; a request
    /// is answered with an empty exchange, a reply ends the round. The connection stays
    /// open.
    #[error(transparent)]
    Body(#[from] CodecError),
    /// A G3 payload on a `TOPICS` connection is not a broadcast or record envelope. The
    /// rumor is dropped: not ACKed, delivered or forwarded. The connection stays open.
    #[error(transparent)]
    Broadcast(#[from] BroadcastError),
}

/// Bad input from a peer, as [`Event::FrameError`](crate::Event::FrameError) reports it:
/// either the connection was closed, or one message was dropped.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// The connection was closed (see [`ConnError`]).
    #[error(transparent)]
    Closed(#[from] ConnError),
    /// One message was dropped; the connection stays open (see [`MessageError`]).
    #[error(transparent)]
    Dropped(#[from] MessageError),
}
