//! What the driver asks its adapter to do.

use bytes::Bytes;
use std::string::String;

#[allow(unused_imports)] // doc links
use super::Driver;
use crate::action::Event;
use crate::node::ConnId;

/// Identifies one dial attempt; unique for the driver's lifetime.
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct DialId(pub u64);

/// A configured peer address: its index in the driver's address book.
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct PeerSlot(pub usize);

/// What the adapter must do, drained with [`Driver::poll_output`].
#[derive(Clone, Debug, PartialEq)]
#[must_use]
#[non_exhaustive]
pub enum Output {
    /// Abandon this dial (it timed out or the driver shuts down); drop its socket.
    AbortDial {
        /// The dial.
        dial: DialId,
    },
    /// Close the connection and drop everything the adapter holds for it. Always the
    /// last output for `conn`.
    Close {
        /// The connection.
        conn: ConnId,
    },
    /// Connect to `addr` now; report with [`Driver::handle_dialed`] or
    /// [`Driver::handle_dial_failed`].
    Dial {
        /// The attempt.
        dial: DialId,
        /// The address, as configured (`host:port`).
        addr: String,
    },
    /// Deliver to the application's subscribers.
    Emit(Event),
    /// Save `bytes` under `key` so that they survive a restart or a crash (replacing
    /// what was saved under `key` before), and hand them to [`Driver::restore`] at the
    /// next start. Then report with [`Driver::handle_persisted`].
    Persist {
        /// What the bytes are.
        key: PersistKey,
        /// The state, in the format [`Driver::restore`] reads.
        bytes: Bytes,
    },
    /// Write all of `bytes` to the connection, then call [`Driver::handle_written`]. At
    /// most one is in flight per connection.
    Write {
        /// The connection.
        conn: ConnId,
        /// One or more whole frames.
        bytes: Bytes,
    },
}

/// Names a piece of state the driver asks to persist ([`Output::Persist`]).
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
#[non_exhaustive]
pub enum PersistKey {
    /// Per-peer delta-sync progress of every StatefulMerge topic (JSON, see
    /// [`crate::delta::json`]): with it a restarted node resumes delta sync instead of
    /// a full sync with every peer.
    DeltaState,
}

impl PersistKey {
    /// A file name for the state, unique per key.
    pub const fn file_name(self) -> &'static str {
        match self {
            Self::DeltaState => "delta.json",
        }
    }
}
