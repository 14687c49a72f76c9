//! Errors from peer input, shared by the [engine](crate::engine) that raises them and
//! the [actions and events](crate::action) that report them: a leaf module, so neither
//! depends on the other.

use crate::wire::BroadcastError;
use crate::wire::codec::CodecError;

/// Why a connection was closed for what came over it. The connection is forgotten;
/// nothing already applied is undone; other connections are unaffected.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnError {
    /// The bytes are not a valid frame.
    #[error(transparent)]
    Decode(#[from] crate::wire::DecodeError),
    /// A frame other than HELLO arrived before the peer's HELLO.
    #[error("frame {magic:#06x} before HELLO")]
    FrameBeforeHello {
        /// Its magic.
        magic: u16,
    },
    /// A second HELLO on the same connection.
    #[error("duplicate HELLO")]
    DuplicateHello,
    /// The peer speaks a protocol version this node cannot.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u8),
    /// The peer claims this node's own id.
    #[error("peer claims our own node id")]
    SelfConnection,
    /// A G1 body did not decode. Not fatal: the body is dropped, a request is answered
    /// with an empty exchange, the connection stays open.
    #[error(transparent)]
    Body(#[from] CodecError),
    /// A G3 payload on a `TOPICS` connection is not a broadcast envelope. Not fatal: the
    /// rumor is dropped, the connection stays open.
    #[error(transparent)]
    Broadcast(#[from] BroadcastError),
}

impl ConnError {
    /// True when the error closed the connection; false for a dropped message.
    pub fn is_fatal(&self) -> bool {
        !matches!(self, Self::Body(_) | Self::Broadcast(_))
    }
}
