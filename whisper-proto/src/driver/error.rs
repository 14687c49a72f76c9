//! What the driver's inputs and commands fail with.

use crate::delta::PersistError;
use crate::engine::CommandError;
use crate::node::NodeId;
use crate::store::StoreError;
use crate::topic::{PublishError, QueryError, TopicError};
use crate::wire::RegisterError;

use super::DialId;
#[allow(unused_imports)] // doc links
use super::DriverStats;
#[allow(unused_imports)]
use crate::config::Config;

/// Why a new connection was not handed to the engine. The adapter drops the socket.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The engine refused it (e.g. [`Config::max_connections`]); counted in
    /// [`DriverStats::refused`].
    #[error(transparent)]
    Engine(#[from] CommandError),
    /// The driver is shutting down; counted in [`DriverStats::refused`].
    #[error("shutting down")]
    ShuttingDown,
    /// The dial was aborted or already reported. Does not affect state.
    #[error("stale dial {0:?}")]
    StaleDial(DialId),
}

/// What an adapter handle's methods fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandleError {
    /// The driver has stopped; the command did not run.
    #[error("the node has stopped")]
    Stopped,
    /// The engine refused the command. Engine state is unchanged.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The custom frame kind could not be registered.
    #[error(transparent)]
    Register(#[from] RegisterError),
    /// No live connection to that peer.
    #[error("no connection to {0}")]
    UnknownPeer(NodeId),
    /// A new connection was refused.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// An I/O error (binding, connecting).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Unknown topic, wrong mode, or a name already taken.
    #[error(transparent)]
    Topic(#[from] TopicError),
    /// The engine refused a publish (too large, or its action queue is full:
    /// backpressure, retry later).
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// The engine refused a query (no responders, too many pending, too large, queue
    /// full).
    #[error(transparent)]
    Query(#[from] QueryError),
    /// The store refused a write.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Saved state could not be read or written.
    #[error(transparent)]
    Persist(#[from] PersistError),
}
