//! A node's settings, gathered before it starts.

use std::boxed::Box;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::string::String;
use std::vec::Vec;

use super::{EventStream, Start, Subscribers};
use crate::config::Config;
use crate::config::defaults::DELTA_SAVE_INTERVAL;
use crate::driver::{Clock, DriverConfig};
use crate::engine::Engine;
use crate::node::NodeId;
use crate::time::Instant;

/// Called once at the end of a graceful shutdown with the engine's final state.
pub type ShutdownHook = Box<dyn FnOnce(&mut Engine, Instant) + Send>;

/// Configures and starts a node on the adapter `R` (`whisper_tokio::Tokio`,
/// `whisper_smol::Smol`, `whisper_mio::Mio`); each adapter names it `Builder`.
pub struct Builder<R> {
    runtime: R,
    parts: NodeParts,
}

/// Everything a [`Builder`] collected: what an adapter starts a node from.
#[non_exhaustive]
pub struct NodeParts {
    /// The node's id.
    pub id: NodeId,
    /// The engine's configuration.
    pub config: Config,
    /// The seed for all of the node's randomness.
    pub seed: u64,
    /// The adapter settings (bounds, reconnect policy).
    pub driver: DriverConfig,
    /// Where to accept TCP connections (`None`: no listener).
    pub listen: Option<SocketAddr>,
    /// Addresses (`host:port`) to dial at start and whenever the connection is lost.
    pub peers: Vec<String>,
    /// Custom frame kinds `(magic, max_len)` registered before any connection opens.
    pub kinds: Vec<(u16, u32)>,
    /// Where the node's state persists across restarts (`None`: it does not).
    pub persist: Option<PathBuf>,
    /// Called once at the end of a graceful shutdown.
    pub hook: Option<ShutdownHook>,
    /// The clock (default: the OS clocks, from now).
    pub clock: Option<Clock>,
    /// Subscribers registered before the start ([`Builder::events`]).
    pub subscribers: Subscribers,
}

impl fmt::Debug for NodeParts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeParts")
            .field("id", &self.id)
            .field("listen", &self.listen)
            .field("peers", &self.peers)
            .field("persist", &self.persist)
            .finish_non_exhaustive()
    }
}

impl<R: fmt::Debug> fmt::Debug for Builder<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("runtime", &self.runtime)
            .field("parts", &self.parts)
            .finish()
    }
}

impl<R: Default> Builder<R> {
    /// Node `id` with the default [`Config`] and [`DriverConfig`], seed 0, no listener
    /// and no peers.
    pub fn new(id: NodeId) -> Self {
        Self::with_runtime(id, R::default())
    }
}

impl<R> Builder<R> {
    /// Node `id` on `runtime`.
    pub fn with_runtime(id: NodeId, runtime: R) -> Self {
        Self {
            runtime,
            parts: NodeParts {
                id,
                config: Config::default(),
                seed: 0,
                driver: DriverConfig::default(),
                listen: None,
                peers: Vec::new(),
                kinds: Vec::new(),
                persist: None,
                hook: None,
                clock: None,
                subscribers: Subscribers::new(),
            },
        }
    }

    /// The engine's configuration.
    pub fn config(mut self, config: Config) -> Self {
        self.parts.config = config;
        self
    }

    /// The seed for all of the node's randomness.
    pub fn seed(mut self, seed: u64) -> Self {
        self.parts.seed = seed;
        self
    }

    /// The adapter settings (bounds, reconnect policy).
    pub fn driver_config(mut self, driver: DriverConfig) -> Self {
        let interval = self.parts.driver.persist_interval;
        self.parts.driver = driver;
        if self.parts.persist.is_some() && self.parts.driver.persist_interval.is_none() {
            self.parts.driver.persist_interval = interval;
        }
        self
    }

    /// Accept TCP connections on `addr` (port 0 picks one: see
    /// [`Handle::local_addr`](super::Handle::local_addr)).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.parts.listen = Some(addr);
        self
    }

    /// Dial `addr` (`host:port`) at start and whenever the connection is lost.
    pub fn peer(mut self, addr: impl Into<String>) -> Self {
        self.parts.peers.push(addr.into());
        self
    }

    /// Keep the node's state in `dir` across restarts and crashes: read at start, saved
    /// every 30 s (unless [`DriverConfig::persist_interval`] says otherwise) and at
    /// shutdown (see [`StateDir`](super::StateDir)).
    pub fn persist(mut self, dir: impl Into<PathBuf>) -> Self {
        self.parts.persist = Some(dir.into());
        if self.parts.driver.persist_interval.is_none() {
            self.parts.driver.persist_interval = Some(DELTA_SAVE_INTERVAL);
        }
        self
    }

    /// Registers a custom frame kind before any connection opens.
    pub fn frame_kind(mut self, magic: u16, max_len: u32) -> Self {
        self.parts.kinds.push((magic, max_len));
        self
    }

    /// Called once at the end of a graceful shutdown with the engine's final state.
    pub fn on_shutdown(mut self, hook: impl FnOnce(&mut Engine, Instant) + Send + 'static) -> Self {
        self.parts.hook = Some(Box::new(hook));
        self
    }

    /// The clock the node reads (default: the OS clocks from the start). Tests use
    /// [`Clock::with_unix_start`] to run a node whose process "started an hour later"
    /// or whose wall clock is skewed.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.parts.clock = Some(clock);
        self
    }

    /// Subscribes to events before the node starts, so none is missed.
    pub fn events(&self) -> EventStream {
        self.parts
            .subscribers
            .subscribe(self.parts.driver.event_capacity)
    }

    /// The settings collected so far, for an adapter that starts nodes its own way.
    pub fn into_parts(self) -> NodeParts {
        self.parts
    }
}

impl<R: Start> Builder<R> {
    /// Starts the node on its adapter: with tokio and smol, `.spawn().await?` binds the
    /// listener and spawns the driver task on the current runtime; with mio it starts the
    /// blocking loop on a thread of its own.
    pub fn spawn(self) -> R::Started {
        self.runtime.start(self.parts)
    }
}
