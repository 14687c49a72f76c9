//! # whisper-proto: the sans-IO core of whisper
//!
//! whisper is a gossip engine for peer-to-peer state propagation. This crate is its
//! whole protocol as a deterministic state machine: it consumes bytes and time ticks and
//! emits actions (send bytes, close a connection, tell the application something).
//!
//! **What the core never does**: no I/O, no clock reads, no threads, no global RNG, no
//! `unsafe`. Every input carries the current [`Instant`], chosen by the driver; all
//! randomness comes from a seed. The same seed and the same inputs give the same actions,
//! so the core can be driven step by step in a unit test or a simulator, and embedded in
//! any executor (tokio, smol, a blocking mio loop, a microcontroller's main loop).
//!
//! ## The driving loop
//!
//! After every input (`handle_*`) or command, drain [`Engine::poll_action`] until it
//! returns `None`; then sleep until a socket is readable, a command arrives, or
//! [`Engine::poll_timeout`] passes, and feed what happened back in.
//!
//! ```
//! use whisper_proto::{Action, ConnId, Config, Engine, Identity, Instant, NodeId, Role};
//!
//! let t0 = Instant::ZERO;
//! let mut a = Engine::new(NodeId::from_static("a"), Config::default(), 1, t0).unwrap();
//! let mut b = Engine::new(NodeId::from_static("b"), Config::default(), 2, t0).unwrap();
//! let (ca, cb) = (ConnId(1), ConnId(1));
//! a.handle_connected(t0, ca, Role::Dialer, Identity::Hello).unwrap();
//! b.handle_connected(t0, cb, Role::Acceptor, Identity::Hello).unwrap();
//!
//! // The loop an adapter runs, with the "network" replaced by direct calls.
//! let mut now = t0;
//! for _ in 0..4 {
//!     while let Some(action) = a.poll_action() {
//!         match action {
//!             Action::Send { bytes, .. } => b.handle_bytes(now, cb, &bytes).unwrap(),
//!             Action::Close { .. } => { /* close the socket */ }
//!             Action::Emit(event) => println!("a: {event:?}"),
//!             _ => {}
//!         }
//!     }
//!     while let Some(action) = b.poll_action() {
//!         if let Action::Send { bytes, .. } = action {
//!             a.handle_bytes(now, ca, &bytes).unwrap();
//!         }
//!     }
//!     // Sleep until the earliest deadline, then tell both engines.
//!     now = a.poll_timeout().into_iter().chain(b.poll_timeout()).min().unwrap_or(now);
//!     a.handle_timeout(now);
//!     b.handle_timeout(now);
//! }
//! assert_eq!(a.peer(ca), Some(&NodeId::from_static("b")));
//! ```
//!
//! ## Modules
//! - [`wire`]: every frame, the incremental decoder, the G1 body codec.
//! - [`engine`]: the state machine.
//! - [`topic`]: topics in three modes (BroadcastOnly, StatefulMerge, RequestResponse).
//! - [`store`]: the [`StateStore`] trait and [`MemStore`], the embedded LWW map.
//! - [`delta`]: per-peer watermarks, adaptive full syncs, persistence.
//! - [`hypercube`]: the virtual hypercube: exact broadcast trees for every cluster size.
//! - [`rumor`]: G3 rumor push over the hypercube (the [`RumorPusher`](rumor::RumorPusher)),
//!   rumor ids (BLAKE3-256 of the payload) and the O(1) LRU dedup.
//! - [`flow`]: flow control: adaptive cadence and backpressure, the token-bucket limits,
//!   the CPU gate, round-trip estimators.
//! - [`util`]: the opt-in utilities (correlator, sliding-window limiter, batched logging,
//!   retrier, circuit breaker, consensus, dedup cache, batch collector).
//! - [`time`], [`rng`], [`hash`]: injected time, seeded randomness, keyed hashing.
//!
//! ## Errors
//! Peer input never panics and never wedges the engine: bad bytes close that one
//! connection with a typed [`ConnError`]; a message that frames correctly but whose
//! body does not decode is dropped with a [`MessageError`] and the connection stays
//! open. Both are counted in [`EngineStats`] and reported as an [`Event::FrameError`]
//! ([`InputError`] tells them apart). Every length is checked against its cap before allocation.

#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

/// Emits a `tracing` event on a subsystem target (`util::log::targets`) when the
/// `tracing` feature is on; compiles to nothing otherwise.
macro_rules! trace_event {
    ($level:ident, $target:expr, $($rest:tt)+) => {{
        #[cfg(feature = "tracing")]
        ::tracing::$level!(target: $target, $($rest)+);
    }};
}
pub(crate) use trace_event;

pub mod action;
pub mod config;
pub mod defaults;
pub mod delta;
#[cfg(feature = "std")]
pub mod driver;
pub mod engine;
pub mod error;
pub mod flow;
pub mod hash;
pub mod hypercube;
pub mod node;
pub mod rng;
pub mod rumor;
#[cfg(feature = "runtime")]
pub mod runtime;
pub mod store;
pub mod time;
pub mod topic;
pub mod util;
pub mod wire;

pub use action::{Action, CloseReason, Event, EventKind};
pub use bytes::Bytes;
pub use config::{Config, ConfigError};
pub use delta::{DeltaPeerStats, DeltaPersistence, DeltaTracker, PersistError, PersistedPeerState};
pub use engine::{CommandError, Engine, EngineStats, FlowStats, Identity, PeerFlow, Role};
pub use error::{ConnError, InputError, MessageError};
pub use node::{ConnId, NodeId};
pub use store::{MemStore, StateStore};
pub use time::{Duration, Instant};
pub use topic::{
    Pressure, PublishError, QueryError, QueryHandler, QueryId, QueryReply, TopicConfig, TopicError,
    TopicMode,
};
