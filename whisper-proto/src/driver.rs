//! Standard-library glue shared by every adapter (`std` feature).
//!
//! An adapter (tokio, smol, mio) owns sockets, timers, tasks and a command channel, and
//! nothing else. Everything that is the same in all of them lives here, sans-IO like the
//! engine, so it is written and tested once:
//!
//! - [`Clock`]: the one place that reads the OS clock, converting `std::time::Instant`
//!   to the engine's [`Instant`] and back.
//! - [`Driver`]: the [`Engine`] plus the connection-id allocator, the address book of
//!   configured peers with their reconnect state ([`Retrier`] + [`CircuitBreaker`] per
//!   peer), the dial tie-break, bounded per-connection write queues with coalescing, and
//!   the single deadline.
//! - [`Output`]: the small, adapter-facing result of draining: write, close, emit, dial.
//! - [`Subscribers`]: fan-out of [`Event`]s to any number of bounded subscriber channels.
//! - [`HandleError`]: what an adapter's handle methods fail with.
//! - The typed commands every adapter's handle wraps: [`Driver::register_topic`],
//!   [`Driver::subscribe`], [`Driver::publish`], [`Driver::put`], [`Driver::delete`],
//!   [`Driver::query`] (resolved through a query-id → reply table filled from
//!   [`Event::QueryComplete`]), [`Driver::snapshot`], and delta persistence
//!   ([`DriverConfig::persist_dir`]: loaded when a StatefulMerge topic is registered,
//!   saved at [`Driver::finish`]).
//!
//! Only this module reads the OS clock ([`Clock`]); the [`Driver`] itself, like the
//! engine, takes `now` in every input, so it is unit-tested on virtual time.
//!
//! # The adapter loop
//!
//! ```text
//! loop {
//!     while let Some(out) = driver.poll_output() { do the I/O it names }
//!     if driver.is_finished() { driver.finish(now); break }
//!     re-arm the one timer if driver.poll_timeout() changed
//!     wait for: bytes read | write done | accepted | dial result | command | timer
//!     feed it in: handle_bytes / handle_written / handle_accepted / handle_dialed /
//!                 handle_dial_failed / handle_disconnected / handle_timeout / a command
//! }
//! ```
//!
//! # Contracts
//!
//! - **Every connection ends with exactly one [`Output::Close`]**, whoever noticed first:
//!   the engine (bad input, timeouts), the driver (slow consumer, tie-break, shutdown) or
//!   the adapter ([`Driver::handle_disconnected`] after EOF or an I/O error). The adapter
//!   tears its socket and tasks down there and nowhere else.
//! - **At most one [`Output::Write`] per connection is in flight.** The adapter writes the
//!   whole buffer, then calls [`Driver::handle_written`]; sends queued meanwhile are
//!   coalesced into the next write (up to [`DriverConfig::max_write_batch`] bytes).
//! - **Write queues are bounded.** Bytes queued for a connection, including the write in
//!   flight, never exceed [`DriverConfig::write_queue_limit`]: a send that would pass it
//!   closes that slow connection at once ([`DriverStats::slow_closes`]). Its peer
//!   reconnects if it is configured to.
//! - **A closing connection is flushed first.** When the engine closes a connection the
//!   queued bytes are still written, for at most [`DriverConfig::close_linger`].
//! - **Dials are emitted when due** ([`Output::Dial`]) and bounded by
//!   [`DriverConfig::dial_timeout`] ([`Output::AbortDial`]), so the adapter needs no timer
//!   of its own besides the one for [`Driver::poll_timeout`].
//!
//! # Reconnects and the tie-break
//!
//! Each configured peer address ([`Driver::add_peer`]) is dialed at start and redialed
//! after every failure or loss with its [`RetryPolicy`] backoff (restarting at the base
//! delay once the policy gives up), and not at all while its [`CircuitBreaker`] is open.
//! A dial counts as a success only once the peer's HELLO arrived (`PeerUp`).
//!
//! When two nodes dial each other at the same time they end up with two connections.
//! After each `PeerUp` the driver compares them: **the connection dialed by the higher
//! [`NodeId`] is kept and the other closed** (between two connections from the same
//! dialer, the newer one wins). Both sides decide the same way without talking. Events
//! stay per connection, so the application sees `PeerUp` and then `PeerDown` for the
//! losing connection while the peer stays up on the other ([`Driver::peers`] is the
//! current set). A
//! configured peer that is already connected (for instance because it dialed us) is not
//! dialed again until that connection goes away.

use std::boxed::Box;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::num::NonZeroU32;
use std::string::String;
use std::sync::{Arc, Mutex, PoisonError};
use std::vec::Vec;

use bytes::{Bytes, BytesMut};

use crate::action::{Action, Event};
use crate::config::defaults::DELTA_SAVE_INTERVAL;
use crate::config::{Config, ConfigError};
use crate::delta::{DeltaPersistence, JsonFile, PersistError};
use crate::engine::{CommandError, Engine, EngineStats, Identity, Role};
use crate::node::{ConnId, NodeId};
use crate::rng::Rng;
use crate::rumor::RumorId;
use crate::store::StoreError;
use crate::time::{Duration, Instant};
use crate::topic::{
    PublishError, QueryError, QueryId, QueryReply, TopicConfig, TopicError, TopicMode,
};
use crate::util::log::targets;
use crate::util::{BreakerState, CircuitBreaker, Retrier, RetryDecision, RetryPolicy};
use crate::wire::RegisterError;

// ---- Clock ----------------------------------------------------------------------------

/// Converts between the OS clock and the engine's [`Instant`]: microseconds since
/// `epoch`. The only place a whisper process reads the clock.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// What [`Instant::ZERO`] stands for.
    pub epoch: std::time::Instant,
}

impl Clock {
    /// A clock whose epoch is now.
    pub fn new() -> Self {
        Self {
            epoch: std::time::Instant::now(),
        }
    }

    /// The current instant.
    pub fn now(&self) -> Instant {
        self.to_instant(std::time::Instant::now())
    }

    /// `t` as an engine instant; times before the epoch clamp to [`Instant::ZERO`].
    pub fn to_instant(&self, t: std::time::Instant) -> Instant {
        let us = t.saturating_duration_since(self.epoch).as_micros();
        Instant::from_micros(u64::try_from(us).unwrap_or(u64::MAX))
    }

    /// `t` as an OS instant. Instants too far away to represent (such as
    /// [`Instant::MAX`]) clamp to about thirty years from the epoch.
    pub fn to_std(&self, t: Instant) -> std::time::Instant {
        const FAR: Duration = Duration::from_secs(30 * 365 * 24 * 3600);
        let d = Duration::from_micros(t.as_micros()).min(FAR);
        self.epoch.checked_add(d).unwrap_or(self.epoch + FAR / 2)
    }

    /// How long from `now` until `deadline` (zero if it has passed).
    pub fn until(&self, now: Instant, deadline: Instant) -> Duration {
        deadline.saturating_duration_since(now)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

// ---- configuration and stats ------------------------------------------------------------

/// Settings every adapter shares. `DriverConfig::default()` suits a LAN deployment.
#[derive(Clone, Debug)]
pub struct DriverConfig {
    /// Most bytes queued for one connection, including the write in flight (default
    /// 4 MiB). A send beyond it closes that connection as too slow. Keep it above the
    /// largest frame the engine sends, or such a frame closes every connection.
    pub write_queue_limit: usize,
    /// Most bytes coalesced into one [`Output::Write`] (default 64 KiB). A single larger
    /// send is passed through whole, without copying.
    pub max_write_batch: usize,
    /// Backoff between dials of a configured peer (default: 10 retries, 100 ms doubling
    /// to 30 s, 20 % jitter). When the policy gives up the backoff starts over.
    pub reconnect: RetryPolicy,
    /// Consecutive failed dials that open a configured peer's circuit (default 5).
    pub breaker_threshold: NonZeroU32,
    /// How long an open circuit refuses dials (default 30 s).
    pub breaker_reset: Duration,
    /// A dial that has not connected by then is aborted and counted as failed
    /// (default 5 s).
    pub dial_timeout: Duration,
    /// How long a closing connection may take to flush its queue before it is closed
    /// anyway (default 2 s). Shutdown waits at most this long for flushes.
    pub close_linger: Duration,
    /// Capacity of the command channel from handles to the driver (default 256). A full
    /// channel makes async callers wait and blocking callers block.
    pub command_capacity: usize,
    /// Capacity of each event subscriber's channel (default 1024). A subscriber that
    /// falls that far behind loses events, counted in [`Subscribers::dropped`].
    pub event_capacity: usize,
    /// Capacity of an async adapter's internal channel from connection tasks to the
    /// driver (default 1024). A full channel pauses reads: TCP backpressure.
    pub input_capacity: usize,
    /// Size of the buffer each read fills (default 64 KiB).
    pub read_buffer: usize,
    /// Where delta watermarks persist across restarts (default `None`: not persisted).
    /// When set, `<dir>/delta.json` ([`JsonFile`]) is loaded for every StatefulMerge
    /// topic as it is registered, and saved when the driver finishes.
    pub persist_dir: Option<std::path::PathBuf>,
}

impl Default for DriverConfig {
    fn default() -> Self {
        Self {
            write_queue_limit: 4 << 20,
            max_write_batch: 64 << 10,
            reconnect: RetryPolicy::new(10, Duration::from_millis(100), Duration::from_secs(30))
                .with_jitter(0.2),
            breaker_threshold: NonZeroU32::new(5).unwrap_or(NonZeroU32::MIN),
            breaker_reset: Duration::from_secs(30),
            dial_timeout: Duration::from_secs(5),
            close_linger: Duration::from_secs(2),
            command_capacity: 256,
            event_capacity: 1024,
            input_capacity: 1024,
            read_buffer: 64 << 10,
            persist_dir: None,
        }
    }
}

/// Driver counters, next to the engine's [`EngineStats`]. Cheap to copy.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
#[non_exhaustive]
pub struct DriverStats {
    /// Inbound connections handed to the engine.
    pub accepted: u64,
    /// Connections refused (engine limit, or shutting down).
    pub refused: u64,
    /// Dials started.
    pub dials: u64,
    /// Dials that failed, timed out, or closed before the peer's HELLO.
    pub dial_failures: u64,
    /// Configured peers connected again after an earlier connection to them was up.
    pub reconnects: u64,
    /// Connections closed by the dial tie-break.
    pub tie_breaks: u64,
    /// Connections closed because their write queue passed its bound.
    pub slow_closes: u64,
    /// Closing connections whose flush did not finish within the linger time.
    pub lingers_expired: u64,
    /// `Send` actions queued.
    pub sends: u64,
    /// Writes handed to the adapter (each one or more coalesced sends).
    pub writes: u64,
    /// Dials skipped because the peer's circuit was open.
    pub breaker_rejections: u64,
    /// Periodic saves of delta watermarks to [`DriverConfig::persist_dir`].
    pub delta_saves: u64,
    /// Periodic saves that failed (the file is left as it was; retried next period).
    pub persist_errors: u64,
}

// ---- outputs ----------------------------------------------------------------------------

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
    /// Write all of `bytes` to the connection, then call [`Driver::handle_written`]. At
    /// most one is in flight per connection.
    Write {
        /// The connection.
        conn: ConnId,
        /// One or more whole frames.
        bytes: Bytes,
    },
}

/// An identified peer on a live connection.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct PeerInfo {
    /// The connection.
    pub conn: ConnId,
    /// The peer.
    pub node: NodeId,
    /// Who dialed.
    pub role: Role,
    /// The remote address, when the transport has one.
    pub remote: Option<String>,
}

/// A configured peer address and its reconnect state.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct PeerAddr {
    /// The slot.
    pub slot: PeerSlot,
    /// The address.
    pub addr: String,
    /// The node last seen there.
    pub node: Option<NodeId>,
    /// The connection to it, when connected.
    pub conn: Option<ConnId>,
    /// Its circuit breaker's state.
    pub breaker: BreakerState,
    /// Failed attempts since the last success.
    pub retries: u32,
}

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
    /// The command channel is full (only from non-waiting `try_*` calls). Retry later.
    #[error("command channel full")]
    Full,
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
    /// Delta persistence failed.
    #[error(transparent)]
    Persist(#[from] PersistError),
    /// A blocking call's timeout passed before its answer.
    #[error("timed out")]
    TimedOut,
}

/// The result of a query: what [`Event::QueryComplete`] carried.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct QueryOutcome {
    /// The query.
    pub id: QueryId,
    /// The replies, in arrival order.
    pub replies: Vec<QueryReply>,
    /// True when the deadline passed before every asked peer answered.
    pub timed_out: bool,
}

/// Called once with a query's outcome; an adapter sends it down its reply channel.
pub type QueryCallback = Box<dyn FnOnce(QueryOutcome) + Send>;

/// A cheap view of a node for monitoring: counters, peers and per-topic store state.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
#[non_exhaustive]
pub struct NodeSnapshot {
    /// The engine's counters.
    pub engine: EngineStats,
    /// The driver's counters.
    pub driver: DriverStats,
    /// Identified peers on live connections.
    pub members: Vec<NodeId>,
    /// Per StatefulMerge topic: (name, record count, store fingerprint).
    pub stores: Vec<(String, usize, u64)>,
}

// ---- the driver ---------------------------------------------------------------------

/// Called once when the driver finishes, with the engine's final state: save what
/// should survive a restart.
pub type ShutdownHook = Box<dyn FnOnce(&mut Engine, Instant) + Send>;

/// What every adapter's `Builder` collects before it starts a node, and the
/// [`Driver`] it makes of it ([`NodeSpec::into_driver`]). The adapters' setters are
/// generated by [`node_builder_setters!`](crate::node_builder_setters) over a field
/// `spec` of this type, so the three stay the same.
pub struct NodeSpec {
    /// The node's id.
    pub id: NodeId,
    /// The engine's configuration.
    pub config: Config,
    /// The seed for all of the node's randomness.
    pub seed: u64,
    /// The adapter settings (bounds, reconnect policy, persistence).
    pub driver: DriverConfig,
    /// Where to accept TCP connections (`None`: no listener).
    pub listen: Option<std::net::SocketAddr>,
    /// Addresses (`host:port`) to dial at start and whenever the connection is lost.
    pub peers: Vec<String>,
    /// Custom frame kinds `(magic, max_len)` registered before any connection opens.
    pub kinds: Vec<(u16, u32)>,
    /// Called once at the end of a graceful shutdown.
    pub hook: Option<ShutdownHook>,
}

impl fmt::Debug for NodeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeSpec")
            .field("id", &self.id)
            .field("listen", &self.listen)
            .field("peers", &self.peers)
            .finish_non_exhaustive()
    }
}

impl NodeSpec {
    /// Node `id` with the default [`Config`] and [`DriverConfig`], seed 0, no listener
    /// and no peers.
    pub fn new(id: NodeId) -> Self {
        Self {
            id,
            config: Config::default(),
            seed: 0,
            driver: DriverConfig::default(),
            listen: None,
            peers: Vec::new(),
            kinds: Vec::new(),
            hook: None,
        }
    }

    /// The driver at `now`: the engine, its custom kinds, the peers to dial and the
    /// shutdown hook. Returns it with the listen address and the driver settings the
    /// adapter still needs (channel capacities).
    ///
    /// # Errors
    /// An invalid [`Config`] ([`HandleError::Io`] of kind `InvalidInput`) or a frame
    /// kind the engine refuses ([`HandleError::Register`]).
    pub fn into_driver(
        self,
        now: Instant,
    ) -> Result<(Driver, Option<std::net::SocketAddr>, DriverConfig), HandleError> {
        let mut driver = Driver::new(self.id, self.config, self.seed, self.driver.clone(), now)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        for (magic, max_len) in self.kinds {
            driver.engine_mut().register_frame_kind(magic, max_len)?;
        }
        for addr in self.peers {
            driver.add_peer(now, addr);
        }
        if let Some(hook) = self.hook {
            driver.set_shutdown_hook(hook);
        }
        Ok((driver, self.listen, self.driver))
    }
}

/// The methods of an adapter's `Handle` that only forward to the driver or the engine:
/// `stats`, `register_topic`, `publish`, `put`, `delete`, `members`, `snapshot`,
/// `save_delta`, `driver_stats`, `peers`, `peer_addrs`, `add_peer`,
/// `register_frame_kind`, `send_custom` and `broadcast_custom`. Expand it inside the
/// `impl Handle` block with `(async)` when the handle has
/// `async fn with_driver`/`with_engine`, or `(blocking)` when they block; the adapter
/// crate must have a `Builder` with a `frame_kind` method (the docs link to it).
#[macro_export]
macro_rules! node_handle_methods {
    (async) => {
        $crate::node_handle_methods!(@gen [async] [.await]);
    };
    (blocking) => {
        $crate::node_handle_methods!(@gen [] []);
    };
    (@gen [$($kw:tt)*] [$($aw:tt)*]) => {
        /// The engine's counters.
        pub $($kw)* fn stats(&self) -> Result<$crate::EngineStats, $crate::driver::HandleError> {
            self.with_engine(|e, _| e.stats()) $($aw)*
        }

        /// Registers a topic (see [`whisper_proto::driver::Driver::register_topic`]).
        pub $($kw)* fn register_topic(
            &self,
            name: impl Into<::std::string::String>,
            config: $crate::topic::TopicConfig,
        ) -> Result<(), $crate::driver::HandleError> {
            let name = name.into();
            self.with_driver(move |d, now| d.register_topic(now, &name, config)) $($aw)* ?
        }

        /// Publishes `payload` on a BroadcastOnly topic. A full engine queue is
        /// [`whisper_proto::topic::PublishError::QueueFull`]: back off and retry.
        pub $($kw)* fn publish(
            &self,
            topic: impl Into<::std::string::String>,
            payload: impl Into<$crate::Bytes>,
        ) -> Result<$crate::rumor::RumorId, $crate::driver::HandleError> {
            let (topic, payload) = (topic.into(), payload.into());
            self.with_driver(move |d, now| d.publish(now, &topic, payload)) $($aw)* ?
        }

        /// Writes `value` under `key` in a StatefulMerge topic.
        pub $($kw)* fn put(
            &self,
            topic: impl Into<::std::string::String>,
            key: impl Into<$crate::Bytes>,
            value: impl Into<$crate::Bytes>,
        ) -> Result<(), $crate::driver::HandleError> {
            let (topic, key, value) = (topic.into(), key.into(), value.into());
            self.with_driver(move |d, now| d.put(now, &topic, &key, &value)) $($aw)* ?
        }

        /// Deletes `key` in a StatefulMerge topic.
        pub $($kw)* fn delete(
            &self,
            topic: impl Into<::std::string::String>,
            key: impl Into<$crate::Bytes>,
        ) -> Result<(), $crate::driver::HandleError> {
            let (topic, key) = (topic.into(), key.into());
            self.with_driver(move |d, now| d.delete(now, &topic, &key)) $($aw)* ?
        }

        /// The identified peers (node ids) on live connections.
        pub $($kw)* fn members(
            &self,
        ) -> Result<::std::vec::Vec<$crate::NodeId>, $crate::driver::HandleError> {
            self.with_driver(|d, _| d.peers().into_iter().map(|p| p.node).collect()) $($aw)*
        }

        /// Counters, members and per-topic store state in one call.
        pub $($kw)* fn snapshot(
            &self,
        ) -> Result<$crate::driver::NodeSnapshot, $crate::driver::HandleError> {
            self.with_driver(|d, _| d.snapshot()) $($aw)*
        }

        /// Saves delta watermarks now (also done at shutdown); 0 when not configured.
        pub $($kw)* fn save_delta(&self) -> Result<usize, $crate::driver::HandleError> {
            self.with_driver(|d, _| d.save_delta()) $($aw)* ?
        }

        /// The driver's counters (dials, reconnects, slow closes, …).
        pub $($kw)* fn driver_stats(
            &self,
        ) -> Result<$crate::driver::DriverStats, $crate::driver::HandleError> {
            self.with_driver(|d, _| d.stats()) $($aw)*
        }

        /// Identified peers on live connections.
        pub $($kw)* fn peers(
            &self,
        ) -> Result<::std::vec::Vec<$crate::driver::PeerInfo>, $crate::driver::HandleError> {
            self.with_driver(|d, _| d.peers()) $($aw)*
        }

        /// Configured peer addresses and their reconnect state.
        pub $($kw)* fn peer_addrs(
            &self,
        ) -> Result<::std::vec::Vec<$crate::driver::PeerAddr>, $crate::driver::HandleError> {
            self.with_driver(|d, _| d.peer_addrs()) $($aw)*
        }

        /// Adds a peer address to dial now and whenever its connection is lost.
        pub $($kw)* fn add_peer(
            &self,
            addr: impl Into<::std::string::String>,
        ) -> Result<$crate::driver::PeerSlot, $crate::driver::HandleError> {
            let addr = addr.into();
            self.with_driver(move |d, now| d.add_peer(now, addr)) $($aw)*
        }

        /// Registers a custom frame kind (prefer [`Builder::frame_kind`], which
        /// registers before any peer can send one).
        pub $($kw)* fn register_frame_kind(
            &self,
            magic: u16,
            max_len: u32,
        ) -> Result<(), $crate::driver::HandleError> {
            self.with_engine(move |e, _| e.register_frame_kind(magic, max_len)) $($aw)* ?
                .map_err(Into::into)
        }

        /// Sends a frame of a registered custom kind to `peer`.
        pub $($kw)* fn send_custom(
            &self,
            peer: $crate::NodeId,
            magic: u16,
            body: $crate::Bytes,
        ) -> Result<(), $crate::driver::HandleError> {
            self.with_driver(move |d, now| d.send_custom(now, &peer, magic, body)) $($aw)* ?
        }

        /// Sends a frame of a registered custom kind to every peer; returns how many.
        pub $($kw)* fn broadcast_custom(
            &self,
            magic: u16,
            body: $crate::Bytes,
        ) -> Result<usize, $crate::driver::HandleError> {
            self.with_driver(move |d, now| d.broadcast_custom(now, magic, body)) $($aw)* ?
        }
    };
}

/// The setters of an adapter's `Builder`, over its field `spec: NodeSpec`: `config`,
/// `seed`, `driver_config`, `listen`, `peer`, `persist`, `frame_kind` and
/// `on_shutdown`. Expand it inside the `impl Builder` block; the adapter crate must have
/// a `Handle` with a `local_addr` method (the docs link to it).
#[macro_export]
macro_rules! node_builder_setters {
    () => {
        /// The engine's configuration.
        pub fn config(mut self, config: $crate::Config) -> Self {
            self.spec.config = config;
            self
        }

        /// The seed for all of the node's randomness.
        pub fn seed(mut self, seed: u64) -> Self {
            self.spec.seed = seed;
            self
        }

        /// The adapter settings (bounds, reconnect policy).
        pub fn driver_config(mut self, driver: $crate::driver::DriverConfig) -> Self {
            self.spec.driver = driver;
            self
        }

        /// Accept TCP connections on `addr` (port 0 picks one: see
        /// [`Handle::local_addr`]).
        pub fn listen(mut self, addr: ::std::net::SocketAddr) -> Self {
            self.spec.listen = Some(addr);
            self
        }

        /// Dial `addr` (`host:port`) at start and whenever the connection is lost.
        pub fn peer(mut self, addr: impl Into<::std::string::String>) -> Self {
            self.spec.peers.push(addr.into());
            self
        }

        /// Persist delta watermarks in `dir` (see
        /// [`DriverConfig::persist_dir`]).
        pub fn persist(mut self, dir: impl Into<::std::path::PathBuf>) -> Self {
            self.spec.driver.persist_dir = Some(dir.into());
            self
        }

        /// Registers a custom frame kind before any connection opens.
        pub fn frame_kind(mut self, magic: u16, max_len: u32) -> Self {
            self.spec.kinds.push((magic, max_len));
            self
        }

        /// Called once at the end of a graceful shutdown with the engine's final state.
        pub fn on_shutdown(
            mut self,
            hook: impl FnOnce(&mut $crate::Engine, $crate::Instant) + Send + 'static,
        ) -> Self {
            self.spec.hook = Some(::std::boxed::Box::new(hook));
            self
        }
    };
}

#[derive(Debug)]
struct Conn {
    role: Role,
    remote: Option<String>,
    slot: Option<PeerSlot>,
    peer: Option<NodeId>,
    /// The engine still knows the connection.
    open: bool,
    queue: VecDeque<Bytes>,
    /// Bytes in `queue` plus the write in flight.
    queued: usize,
    in_flight: usize,
    /// Set once the engine closed it: flush until then, then close.
    linger_until: Option<Instant>,
}

#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum SlotState {
    Waiting {
        at: Instant,
    },
    Dialing {
        dial: DialId,
        deadline: Instant,
    },
    Connected {
        conn: ConnId,
    },
    /// Connected to its node through another connection; redialed when that goes.
    Covered,
    Stopped,
}

#[derive(Debug)]
struct Slot {
    addr: String,
    node: Option<NodeId>,
    retrier: Retrier,
    breaker: CircuitBreaker,
    state: SlotState,
    ever_up: bool,
}

/// The engine plus everything an adapter needs besides sockets: see [the module
/// docs](self).
pub struct Driver {
    engine: Engine,
    config: DriverConfig,
    now: Instant,
    next_conn: u64,
    next_dial: u64,
    conns: BTreeMap<ConnId, Conn>,
    slots: Vec<Slot>,
    /// Connections with queued bytes and no write in flight.
    dirty: Vec<ConnId>,
    out: VecDeque<Output>,
    rng: Rng,
    stats: DriverStats,
    shutting_down: bool,
    hook: Option<ShutdownHook>,
    /// Open queries' reply callbacks, resolved from [`Event::QueryComplete`].
    queries: BTreeMap<QueryId, QueryCallback>,
    stateful: Vec<String>,
    /// When delta watermarks are next saved (only with a persistence directory).
    next_save: Option<Instant>,
}

impl fmt::Debug for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Driver")
            .field("engine", &self.engine)
            .field("now", &self.now)
            .field("conns", &self.conns.len())
            .field("slots", &self.slots)
            .field("stats", &self.stats)
            .field("shutting_down", &self.shutting_down)
            .finish_non_exhaustive()
    }
}

impl Driver {
    /// A driver around a new engine for node `me` (see [`Engine::new`]). `seed` fixes the
    /// engine's randomness and the reconnect jitter.
    pub fn new(
        me: NodeId,
        config: Config,
        seed: u64,
        driver: DriverConfig,
        now: Instant,
    ) -> Result<Self, ConfigError> {
        let engine = Engine::new(me, config, seed, now)?;
        Ok(Self::with_engine(engine, driver, seed, now))
    }

    /// A driver around an existing engine with no connections.
    pub fn with_engine(engine: Engine, config: DriverConfig, seed: u64, now: Instant) -> Self {
        let next_save = config
            .persist_dir
            .as_ref()
            .map(|_| now + DELTA_SAVE_INTERVAL);
        Self {
            engine,
            config,
            now,
            next_conn: 1,
            next_dial: 1,
            conns: BTreeMap::new(),
            slots: Vec::new(),
            dirty: Vec::new(),
            out: VecDeque::new(),
            rng: Rng::new(seed ^ 0x5EED_D21E_u64),
            stats: DriverStats::default(),
            shutting_down: false,
            hook: None,
            queries: BTreeMap::new(),
            stateful: Vec::new(),
            next_save,
        }
    }

    // ---- getters ----------------------------------------------------------------------

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The engine, for commands (`send_custom`, `register_frame_kind`, and whatever the
    /// engine grows). Drain [`Driver::poll_output`] afterwards, as after any input.
    ///
    /// Do not feed transport inputs (`handle_connected`, `handle_bytes`, …) through it:
    /// those go through the driver's `handle_*` methods, which keep its books.
    pub fn engine_mut(&mut self) -> &mut Engine {
        &mut self.engine
    }

    /// The settings in force.
    pub fn config(&self) -> &DriverConfig {
        &self.config
    }

    /// Driver counters.
    pub fn stats(&self) -> DriverStats {
        self.stats
    }

    /// The latest instant the driver was given.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Identified peers on live connections, in connection order.
    pub fn peers(&self) -> Vec<PeerInfo> {
        self.conns
            .iter()
            .filter(|(_, c)| c.open)
            .filter_map(|(&conn, c)| {
                Some(PeerInfo {
                    conn,
                    node: c.peer.clone()?,
                    role: c.role,
                    remote: c.remote.clone(),
                })
            })
            .collect()
    }

    /// The live connection to `node`, if any.
    pub fn conn_to(&self, node: &NodeId) -> Option<ConnId> {
        self.conns
            .iter()
            .find(|(_, c)| c.open && c.peer.as_ref() == Some(node))
            .map(|(&id, _)| id)
    }

    /// The address book: configured peers and their reconnect state.
    pub fn peer_addrs(&self) -> Vec<PeerAddr> {
        self.slots
            .iter()
            .enumerate()
            .map(|(i, s)| PeerAddr {
                slot: PeerSlot(i),
                addr: s.addr.clone(),
                node: s.node.clone(),
                conn: match s.state {
                    SlotState::Connected { conn } => Some(conn),
                    _ => None,
                },
                breaker: s.breaker.state(self.now),
                retries: s.retrier.retries(),
            })
            .collect()
    }

    /// Whether [`Driver::shutdown`] was called.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    /// Whether a shutdown has completed: every connection closed, every dial ended and
    /// every output drained. Then call [`Driver::finish`].
    pub fn is_finished(&self) -> bool {
        self.shutting_down
            && self.conns.is_empty()
            && self.out.is_empty()
            && !self
                .slots
                .iter()
                .any(|s| matches!(s.state, SlotState::Dialing { .. }))
    }

    /// When [`Driver::handle_timeout`] should next be called: the earliest of the
    /// engine's deadline, the next dial, a dial timeout, a linger and the next periodic
    /// save of delta watermarks (every
    /// [`DELTA_SAVE_INTERVAL`] with a
    /// persistence directory). `None` when
    /// nothing is scheduled.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let slots = self.slots.iter().filter_map(|s| match s.state {
            SlotState::Waiting { at } => Some(at),
            SlotState::Dialing { deadline, .. } => Some(deadline),
            _ => None,
        });
        let lingers = self.conns.values().filter_map(|c| c.linger_until);
        self.engine
            .poll_timeout()
            .into_iter()
            .chain(slots)
            .chain(lingers)
            .chain(self.next_save)
            .min()
    }

    // ---- commands ---------------------------------------------------------------------

    /// Adds a peer address to dial now and to redial whenever the connection is lost.
    pub fn add_peer(&mut self, now: Instant, addr: impl Into<String>) -> PeerSlot {
        self.advance(now);
        let slot = PeerSlot(self.slots.len());
        self.slots.push(Slot {
            addr: addr.into(),
            node: None,
            retrier: Retrier::new(self.config.reconnect),
            breaker: CircuitBreaker::new(self.config.breaker_threshold, self.config.breaker_reset),
            state: if self.shutting_down {
                SlotState::Stopped
            } else {
                SlotState::Waiting { at: self.now }
            },
            ever_up: false,
        });
        slot
    }

    /// Sends a frame of a registered custom kind to `peer`.
    pub fn send_custom(
        &mut self,
        now: Instant,
        peer: &NodeId,
        magic: u16,
        body: Bytes,
    ) -> Result<(), HandleError> {
        self.advance(now);
        let conn = self
            .conn_to(peer)
            .ok_or_else(|| HandleError::UnknownPeer(peer.clone()))?;
        self.engine.send_custom(self.now, conn, magic, body)?;
        Ok(())
    }

    /// Sends a frame of a registered custom kind to every identified peer; returns how
    /// many it was queued for.
    pub fn broadcast_custom(
        &mut self,
        now: Instant,
        magic: u16,
        body: Bytes,
    ) -> Result<usize, HandleError> {
        self.advance(now);
        let conns: Vec<ConnId> = self.peers().into_iter().map(|p| p.conn).collect();
        for &conn in &conns {
            self.engine
                .send_custom(self.now, conn, magic, body.clone())?;
        }
        Ok(conns.len())
    }

    /// Registers a topic. For a StatefulMerge topic with [`DriverConfig::persist_dir`]
    /// set, that topic's saved delta watermarks are loaded (an unreadable file is
    /// logged and ignored: every peer then starts with a full sync).
    pub fn register_topic(
        &mut self,
        now: Instant,
        name: &str,
        config: TopicConfig,
    ) -> Result<(), HandleError> {
        self.advance(now);
        let stateful = config.mode == TopicMode::StatefulMerge;
        self.engine.register_topic(name, config)?;
        if stateful {
            self.stateful.push(String::from(name));
            if let Some(mut file) = self.delta_file() {
                match file.load() {
                    Ok(states) => {
                        let mine: Vec<_> = states.into_iter().filter(|s| s.topic == name).collect();
                        let n = self.engine.import_delta(
                            self.now,
                            &mine,
                            crate::config::defaults::DELTA_LOAD_MAX_AGE,
                        );
                        tracing::debug!(target: targets::ADAPTER, topic = name, loaded = n, "delta state loaded");
                    }
                    Err(error) => {
                        tracing::warn!(target: targets::ADAPTER, %error, "delta state unreadable; full sync");
                    }
                }
            }
        }
        Ok(())
    }

    /// Delivers `topic`'s broadcasts to this node (see [`Engine::subscribe`]).
    pub fn subscribe(&mut self, topic: &str) -> Result<(), HandleError> {
        Ok(self.engine.subscribe(topic)?)
    }

    /// Publishes on a BroadcastOnly topic; errors (including a full action queue) are
    /// typed and leave no state behind.
    pub fn publish(
        &mut self,
        now: Instant,
        topic: &str,
        payload: Bytes,
    ) -> Result<RumorId, HandleError> {
        self.advance(now);
        Ok(self.engine.publish(self.now, topic, payload)?)
    }

    /// Writes `value` under `key` in a StatefulMerge topic.
    pub fn put(
        &mut self,
        now: Instant,
        topic: &str,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), HandleError> {
        self.advance(now);
        self.engine.put(self.now, topic, key, value)?;
        Ok(())
    }

    /// Deletes `key` in a StatefulMerge topic.
    pub fn delete(&mut self, now: Instant, topic: &str, key: &[u8]) -> Result<(), HandleError> {
        self.advance(now);
        self.engine.delete(self.now, topic, key)?;
        Ok(())
    }

    /// Queries a RequestResponse topic; `reply` is called once with the outcome (when
    /// every asked peer answered or at `timeout`). Not called when this returns an
    /// error, nor when the driver is dropped first.
    pub fn query(
        &mut self,
        now: Instant,
        topic: &str,
        payload: Bytes,
        timeout: Duration,
        reply: QueryCallback,
    ) -> Result<QueryId, HandleError> {
        self.advance(now);
        let id = self.engine.query(self.now, topic, payload, timeout)?;
        self.queries.insert(id, reply);
        Ok(id)
    }

    /// Queries whose outcome has not arrived yet.
    pub fn pending_queries(&self) -> usize {
        self.queries.len()
    }

    /// Counters, members and per-topic store state.
    pub fn snapshot(&self) -> NodeSnapshot {
        let stores = self
            .stateful
            .iter()
            .filter_map(|t| {
                let s = self.engine.store(t)?;
                let len = self
                    .engine
                    .mem_store(t)
                    .map_or(0, crate::store::MemStore::len);
                Some((t.clone(), len, s.fingerprint()))
            })
            .collect();
        NodeSnapshot {
            engine: self.engine.stats(),
            driver: self.stats,
            members: self.peers().into_iter().map(|p| p.node).collect(),
            stores,
        }
    }

    /// Saves delta watermarks to [`DriverConfig::persist_dir`] now (also done at
    /// [`Driver::finish`]); returns how many entries, 0 when not configured.
    pub fn save_delta(&self) -> Result<usize, HandleError> {
        match self.delta_file() {
            Some(mut file) => Ok(self.engine.save_delta(&mut file)?),
            None => Ok(0),
        }
    }

    fn delta_file(&self) -> Option<JsonFile> {
        let dir = self.config.persist_dir.as_ref()?;
        Some(JsonFile::new(dir.join("delta.json")))
    }

    /// Sets the hook [`Driver::finish`] calls.
    pub fn set_shutdown_hook(&mut self, hook: ShutdownHook) {
        self.hook = Some(hook);
    }

    /// Starts a graceful shutdown: stops dialing (aborting dials in flight), refuses new
    /// connections, and closes every connection after flushing its queue (for at most
    /// [`DriverConfig::close_linger`]). Keep driving until [`Driver::is_finished`].
    pub fn shutdown(&mut self, now: Instant) {
        self.advance(now);
        if self.shutting_down {
            return;
        }
        self.shutting_down = true;
        for slot in &mut self.slots {
            if let SlotState::Dialing { dial, .. } = slot.state {
                self.out.push_back(Output::AbortDial { dial });
            }
            slot.state = SlotState::Stopped;
        }
        let open: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.open)
            .map(|(&id, _)| id)
            .collect();
        for conn in open {
            let _ = self.engine.close_connection(self.now, conn);
        }
    }

    /// Saves delta watermarks (when [`DriverConfig::persist_dir`] is set), then runs the
    /// shutdown hook, if any. Call once [`Driver::is_finished`].
    pub fn finish(mut self, now: Instant) {
        self.advance(now);
        if let Err(error) = self.save_delta() {
            tracing::warn!(target: targets::ADAPTER, %error, "delta state not saved");
        }
        if let Some(hook) = self.hook.take() {
            hook(&mut self.engine, self.now);
        }
    }

    // ---- inputs -----------------------------------------------------------------------

    /// A connection was accepted from `remote`; returns its id. On error drop the socket.
    pub fn handle_accepted(
        &mut self,
        now: Instant,
        remote: Option<String>,
    ) -> Result<ConnId, OpenError> {
        let conn = self.open(now, Role::Acceptor, Identity::Hello, remote, None)?;
        self.stats.accepted += 1;
        Ok(conn)
    }

    /// A stream from elsewhere (TLS, QUIC, an in-memory pipe) is ready, with the given
    /// role and identity; returns its id. On error drop the stream.
    pub fn handle_stream(
        &mut self,
        now: Instant,
        role: Role,
        identity: Identity,
        remote: Option<String>,
    ) -> Result<ConnId, OpenError> {
        self.open(now, role, identity, remote, None)
    }

    /// The dial `dial` connected to `remote`; returns the connection's id. On error drop
    /// the socket.
    pub fn handle_dialed(
        &mut self,
        now: Instant,
        dial: DialId,
        remote: Option<String>,
    ) -> Result<ConnId, OpenError> {
        self.advance(now);
        let slot = self.dialing(dial).ok_or(OpenError::StaleDial(dial))?;
        match self.open(now, Role::Dialer, Identity::Hello, remote, Some(slot)) {
            Ok(conn) => {
                self.slots[slot.0].state = SlotState::Connected { conn };
                Ok(conn)
            }
            Err(e) => {
                self.slot_failed(slot);
                Err(e)
            }
        }
    }

    /// The dial `dial` failed. Stale ids are ignored.
    pub fn handle_dial_failed(&mut self, now: Instant, dial: DialId) {
        self.advance(now);
        if let Some(slot) = self.dialing(dial) {
            tracing::debug!(target: targets::ADAPTER, addr = %self.slots[slot.0].addr, "dial failed");
            self.slot_failed(slot);
        }
    }

    /// Bytes were read from `conn`. A protocol error closes that connection only (logged
    /// at `debug`); the driver goes on.
    pub fn handle_bytes(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) {
        self.advance(now);
        if let Err(error) = self.engine.handle_bytes(self.now, conn, bytes) {
            tracing::debug!(target: targets::ADAPTER, %conn, %error, "closing connection for bad input");
        }
    }

    /// The [`Output::Write`] in flight on `conn` was written completely. Unknown
    /// connections are ignored.
    pub fn handle_written(&mut self, now: Instant, conn: ConnId) {
        self.advance(now);
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.queued = c.queued.saturating_sub(c.in_flight);
        c.in_flight = 0;
        if !c.queue.is_empty() {
            self.dirty.push(conn);
        } else if c.linger_until.is_some() {
            self.remove(conn);
        }
    }

    /// `conn` reached EOF or failed. The engine is told; an [`Output::Close`] follows.
    pub fn handle_disconnected(&mut self, now: Instant, conn: ConnId) {
        self.advance(now);
        // Take in what the engine already said about `conn` (its `PeerUp`, say), so the
        // loss is judged on the connection's latest state.
        while let Some(action) = self.engine.poll_action() {
            self.on_action(action);
        }
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        if c.open {
            self.engine.handle_disconnected(self.now, conn);
            self.gone(conn);
        }
        self.remove(conn);
    }

    /// Time passed: engine timers, due dials, dial timeouts and lingers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        self.engine.handle_timeout(self.now);
        for i in 0..self.slots.len() {
            match self.slots[i].state {
                SlotState::Waiting { at } if at <= self.now => self.dial(PeerSlot(i)),
                SlotState::Dialing { dial, deadline } if deadline <= self.now => {
                    self.out.push_back(Output::AbortDial { dial });
                    self.slot_failed(PeerSlot(i));
                }
                _ => {}
            }
        }
        let expired: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.linger_until.is_some_and(|t| t <= self.now))
            .map(|(&id, _)| id)
            .collect();
        for conn in expired {
            self.stats.lingers_expired += 1;
            self.remove(conn);
        }
        if self.next_save.is_some_and(|t| t <= self.now) {
            // Watermarks survive a crash, not only a graceful shutdown.
            match self.save_delta() {
                Ok(_) => self.stats.delta_saves += 1,
                Err(error) => {
                    self.stats.persist_errors += 1;
                    tracing::warn!(target: targets::ADAPTER, %error, "periodic delta save failed");
                }
            }
            self.next_save = Some(self.now + DELTA_SAVE_INTERVAL);
        }
    }

    // ---- output -----------------------------------------------------------------------

    /// The next thing for the adapter to do. Call after every input and command until
    /// it returns `None`.
    pub fn poll_output(&mut self) -> Option<Output> {
        loop {
            if let Some(out) = self.out.pop_front() {
                return Some(out);
            }
            if let Some(action) = self.engine.poll_action() {
                self.on_action(action);
                continue;
            }
            if self.dirty.is_empty() {
                return None;
            }
            for conn in core::mem::take(&mut self.dirty) {
                self.flush(conn);
            }
        }
    }

    // ---- internals --------------------------------------------------------------------

    fn advance(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    fn open(
        &mut self,
        now: Instant,
        role: Role,
        identity: Identity,
        remote: Option<String>,
        slot: Option<PeerSlot>,
    ) -> Result<ConnId, OpenError> {
        self.advance(now);
        if self.shutting_down {
            self.stats.refused += 1;
            return Err(OpenError::ShuttingDown);
        }
        let conn = ConnId(self.next_conn);
        if let Err(e) = self.engine.handle_connected(self.now, conn, role, identity) {
            self.stats.refused += 1;
            return Err(e.into());
        }
        self.next_conn += 1;
        self.conns.insert(
            conn,
            Conn {
                role,
                remote,
                slot,
                peer: None,
                open: true,
                queue: VecDeque::new(),
                queued: 0,
                in_flight: 0,
                linger_until: None,
            },
        );
        Ok(conn)
    }

    fn on_action(&mut self, action: Action) {
        match action {
            Action::Send { conn, bytes } => self.queue(conn, bytes),
            Action::Close { conn, reason } => {
                tracing::debug!(target: targets::ADAPTER, %conn, ?reason, "engine closed connection");
                self.gone(conn);
                let linger = self.now + self.config.close_linger;
                match self.conns.get_mut(&conn) {
                    Some(c) if c.queued > 0 => c.linger_until = Some(linger),
                    Some(_) => self.remove(conn),
                    None => {}
                }
            }
            Action::Emit(event) => {
                if let Event::PeerUp { conn, peer, .. } = &event {
                    self.peer_up(*conn, peer.clone());
                }
                if let Event::QueryComplete {
                    id,
                    replies,
                    timed_out,
                    ..
                } = &event
                {
                    if let Some(reply) = self.queries.remove(id) {
                        reply(QueryOutcome {
                            id: *id,
                            replies: replies.clone(),
                            timed_out: *timed_out,
                        });
                    }
                }
                self.out.push_back(Output::Emit(event));
            }
            // Actions a newer engine may add (dial hints, record applications) are
            // logged, not lost silently.
            #[allow(unreachable_patterns)]
            other => {
                tracing::debug!(target: targets::ADAPTER, action = ?other, "action not handled by this driver");
            }
        }
    }

    fn queue(&mut self, conn: ConnId, bytes: Bytes) {
        let limit = self.config.write_queue_limit;
        let Some(c) = self.conns.get_mut(&conn) else {
            tracing::debug!(target: targets::ADAPTER, %conn, "send for unknown connection dropped");
            return;
        };
        if c.queued.saturating_add(bytes.len()) > limit {
            tracing::debug!(target: targets::ADAPTER, %conn, queued = c.queued, "closing slow connection");
            self.stats.slow_closes += 1;
            c.queue.clear();
            let open = c.open;
            if open {
                let _ = self.engine.close_connection(self.now, conn);
                self.gone(conn);
            }
            self.remove(conn);
            return;
        }
        self.stats.sends += 1;
        c.queued += bytes.len();
        c.queue.push_back(bytes);
        if c.in_flight == 0 && c.queue.len() == 1 {
            self.dirty.push(conn);
        }
    }

    /// Emits the next coalesced write for `conn` if none is in flight.
    fn flush(&mut self, conn: ConnId) {
        let max = self.config.max_write_batch;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.in_flight != 0 {
            return;
        }
        let Some(first) = c.queue.pop_front() else {
            return;
        };
        let bytes = if first.len() >= max || c.queue.is_empty() {
            first
        } else {
            let mut buf = BytesMut::with_capacity(max);
            buf.extend_from_slice(&first);
            while let Some(next) = c.queue.front() {
                if buf.len() + next.len() > max {
                    break;
                }
                buf.extend_from_slice(next);
                c.queue.pop_front();
            }
            buf.freeze()
        };
        c.in_flight = bytes.len();
        self.stats.writes += 1;
        self.out.push_back(Output::Write { conn, bytes });
    }

    /// Forgets `conn` and tells the adapter to close it.
    fn remove(&mut self, conn: ConnId) {
        if self.conns.remove(&conn).is_some() {
            self.out.push_back(Output::Close { conn });
        }
    }

    /// The engine has forgotten `conn`: update reconnect state.
    fn gone(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if !c.open {
            return;
        }
        c.open = false;
        let (slot, peer) = (c.slot, c.peer.clone());
        if let Some(slot) = slot {
            if self.slots[slot.0].state == (SlotState::Connected { conn }) {
                if peer.is_some() {
                    self.reschedule(slot);
                } else {
                    self.slot_failed(slot);
                }
            }
        }
        if let Some(node) = peer {
            if self.conn_to(&node).is_none() {
                for i in 0..self.slots.len() {
                    let s = &self.slots[i];
                    if s.state == SlotState::Covered && s.node.as_ref() == Some(&node) {
                        self.reschedule(PeerSlot(i));
                    }
                }
            }
        }
    }

    fn peer_up(&mut self, conn: ConnId, peer: NodeId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.peer = Some(peer.clone());
        if let Some(slot) = c.slot {
            let now = self.now;
            let s = &mut self.slots[slot.0];
            if s.ever_up {
                self.stats.reconnects += 1;
            }
            s.ever_up = true;
            s.node = Some(peer.clone());
            s.retrier.reset();
            s.breaker.record_success(now);
        }
        // The tie-break: keep the connection dialed by the higher node id.
        let me = self.engine.node_id().clone();
        let dialer = |role: Role| if role == Role::Dialer { &me } else { &peer };
        let others: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(id, c)| **id != conn && c.open && c.peer.as_ref() == Some(&peer))
            .map(|(&id, _)| id)
            .collect();
        for other in others {
            let key = |id: ConnId| (dialer(self.conns[&id].role), id);
            let loser = if key(conn) > key(other) { other } else { conn };
            tracing::debug!(target: targets::ADAPTER, %peer, kept = %if loser == conn { other } else { conn }, closed = %loser, "dial tie-break");
            self.stats.tie_breaks += 1;
            let _ = self.engine.close_connection(self.now, loser);
            self.gone(loser);
            if loser == conn {
                break;
            }
        }
    }

    fn dialing(&self, dial: DialId) -> Option<PeerSlot> {
        self.slots
            .iter()
            .position(|s| matches!(s.state, SlotState::Dialing { dial: d, .. } if d == dial))
            .map(PeerSlot)
    }

    fn dial(&mut self, slot: PeerSlot) {
        let now = self.now;
        let connected = self.slots[slot.0]
            .node
            .as_ref()
            .is_some_and(|n| self.conn_to(n).is_some());
        let s = &mut self.slots[slot.0];
        if connected {
            s.state = SlotState::Covered;
            return;
        }
        if !s.breaker.allow_request(now) {
            self.stats.breaker_rejections += 1;
            s.state = SlotState::Waiting {
                at: now + s.breaker.reset_timeout(),
            };
            return;
        }
        let dial = DialId(self.next_dial);
        self.next_dial += 1;
        self.stats.dials += 1;
        s.state = SlotState::Dialing {
            dial,
            deadline: now + self.config.dial_timeout,
        };
        self.out.push_back(Output::Dial {
            dial,
            addr: s.addr.clone(),
        });
    }

    /// A dial failed, or its connection closed before the peer identified itself.
    fn slot_failed(&mut self, slot: PeerSlot) {
        self.stats.dial_failures += 1;
        let now = self.now;
        self.slots[slot.0].breaker.record_failure(now);
        self.reschedule(slot);
    }

    /// Schedules the next dial of `slot` with its backoff, or parks it while its node is
    /// connected some other way.
    fn reschedule(&mut self, slot: PeerSlot) {
        let now = self.now;
        if self.shutting_down {
            self.slots[slot.0].state = SlotState::Stopped;
            return;
        }
        let covered = self.slots[slot.0]
            .node
            .as_ref()
            .is_some_and(|n| self.conn_to(n).is_some());
        let s = &mut self.slots[slot.0];
        if covered {
            s.state = SlotState::Covered;
            return;
        }
        let mut at = match s.retrier.record_failure(now, &mut self.rng) {
            RetryDecision::RetryAt(at) => at,
            RetryDecision::Done | RetryDecision::GiveUp => {
                s.retrier.reset();
                now + s.retrier.policy().max_delay()
            }
        };
        if s.breaker.state(now) == BreakerState::Open {
            at = at.max(now + s.breaker.reset_timeout());
        }
        s.state = SlotState::Waiting { at };
    }
}

// ---- event fan-out ----------------------------------------------------------------------

/// What an [`EventSink`] did with an event.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Offer {
    /// Queued for the subscriber.
    Accepted,
    /// The subscriber's channel is full: the event is dropped for it.
    Full,
    /// The subscriber is gone: it is removed.
    Closed,
}

/// One subscriber's bounded channel, as seen by the driver. Implemented by each
/// adapter for its channel's sender; MUST NOT block.
pub trait EventSink: Send {
    /// Offers a copy of `event`.
    fn offer(&mut self, event: &Event) -> Offer;
}

/// Event fan-out to any number of subscribers, shared between a driver and its handles.
///
/// Each subscriber has its own bounded channel ([`DriverConfig::event_capacity`]); a
/// subscriber that falls behind loses events (counted in [`Subscribers::dropped`])
/// rather than growing memory or stalling the driver. Clones share the same list.
pub struct Subscribers<S> {
    inner: Arc<Mutex<SubscribersInner<S>>>,
}

struct SubscribersInner<S> {
    /// Each sink with its topic filter (`None`: every event).
    sinks: Vec<(S, Option<String>)>,
    dropped: u64,
}

impl<S> Clone for Subscribers<S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S> fmt::Debug for Subscribers<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("Subscribers")
            .field("subscribers", &inner.sinks.len())
            .field("dropped", &inner.dropped)
            .finish()
    }
}

impl<S: EventSink> Default for Subscribers<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: EventSink> Subscribers<S> {
    /// No subscribers yet.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Mutex::new(SubscribersInner {
                sinks: Vec::new(),
                dropped: 0,
            })),
        }
    }

    /// Adds a subscriber; it receives every event delivered from now on.
    pub fn add(&self, sink: S) {
        self.lock().sinks.push((sink, None));
    }

    /// Adds a subscriber that receives only [`Event::Message`]s of `topic`.
    pub fn add_topic(&self, sink: S, topic: impl Into<String>) {
        self.lock().sinks.push((sink, Some(topic.into())));
    }

    /// Offers `event` to every subscriber; drops closed ones.
    pub fn deliver(&self, event: &Event) {
        let mut inner = self.lock();
        let mut dropped = 0;
        let message_topic = match event {
            Event::Message { topic, .. } => Some(topic.as_str()),
            _ => None,
        };
        inner.sinks.retain_mut(|(sink, filter)| {
            if let Some(want) = filter {
                if message_topic != Some(want.as_str()) {
                    return true;
                }
            }
            match sink.offer(event) {
                Offer::Accepted => true,
                Offer::Full => {
                    dropped += 1;
                    true
                }
                Offer::Closed => false,
            }
        });
        inner.dropped += dropped;
    }

    /// Live subscribers.
    pub fn len(&self) -> usize {
        self.lock().sinks.len()
    }

    /// Whether there are no subscribers.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Events dropped because a subscriber's channel was full.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// Removes every subscriber, closing their channels.
    pub fn clear(&self) {
        self.lock().sinks.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SubscribersInner<S>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl EventSink for std::sync::mpsc::SyncSender<Event> {
    fn offer(&mut self, event: &Event) -> Offer {
        match self.try_send(event.clone()) {
            Ok(()) => Offer::Accepted,
            Err(std::sync::mpsc::TrySendError::Full(_)) => Offer::Full,
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => Offer::Closed,
        }
    }
}

#[cfg(test)]
mod tests;
