//! The sans-IO layer between the engine and an adapter (`std` feature).
//!
//! An adapter (tokio, smol, mio, a simulator) owns sockets, files, timers and tasks,
//! and nothing else. Everything that is the same in all of them lives in [`Driver`],
//! sans-IO like the engine, so it is written and tested once: the connection-id
//! allocator, the address book of configured peers with their reconnect state
//! ([`book`]), the dial tie-break and the bounded, coalescing per-connection write
//! queues ([`conns`]), the typed commands ([`commands`]), and persistence as outputs
//! ([`persist`]). The driver never reads a clock, opens a file or a socket, or calls
//! back into the application: time comes in with every input, and everything it wants
//! done comes out of [`Driver::poll_output`] as an [`Output`].
//!
//! [`Clock`] is the one place a process reads the OS clocks; the adapter feeds its
//! readings in. The wall clock the engine stamps records with is Unix time: give
//! [`Driver::new`] the Unix time of its start ([`Clock::unix_now`]).
//!
//! # The adapter loop
//!
//! ```text
//! loop {
//!     while let Some(out) = driver.poll_output() { do the I/O it names }
//!     if driver.is_finished() { break }
//!     re-arm the one timer if driver.poll_timeout() changed
//!     wait for: bytes read | write done | accepted | dial result | command | timer
//!     feed it in: handle_bytes / handle_written / handle_accepted / handle_dialed /
//!                 handle_dial_failed / handle_disconnected / handle_persisted /
//!                 handle_timeout / a command
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
//! - **State to keep comes out as [`Output::Persist`]** (every
//!   [`DriverConfig::persist_interval`] and once at the end of a shutdown, before
//!   [`Driver::is_finished`] turns true); the adapter saves it atomically and hands the
//!   latest copy to [`Driver::restore`] at the next start.
//! - **Queries resolve through events**: [`Driver::query`] returns a [`QueryId`] and its
//!   outcome is the [`Event::QueryComplete`] with that id.

pub mod book;
mod clock;
pub mod commands;
mod config;
pub mod conns;
mod error;
mod output;
pub mod persist;

pub use book::PeerAddr;
pub use clock::Clock;
pub use commands::NodeSnapshot;
pub use config::{DriverConfig, DriverStats};
pub use conns::PeerInfo;
pub use error::{HandleError, OpenError};
pub use output::{DialId, Output, PeerSlot, PersistKey};

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::string::String;
use std::vec::Vec;

use book::{Slot, SlotState};
use conns::Conn;

use crate::action::{Action, Event};
use crate::config::{Config, ConfigError};
use crate::delta::PersistedPeerState;
use crate::engine::{Engine, Identity, Role};
use crate::node::{ConnId, NodeId};
use crate::rng::Rng;
use crate::time::{Duration, Instant};
#[allow(unused_imports)] // doc links
use crate::topic::QueryId;
use crate::util::log::targets;

/// The shortest [`DriverConfig::persist_interval`] in force; shorter ones are raised to it.
pub const MIN_PERSIST_INTERVAL: Duration = Duration::from_secs(1);

/// The engine plus everything an adapter needs besides sockets and files: see [the
/// module docs](self).
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
    /// The final [`Output::Persist`] of a shutdown has been emitted.
    final_persist: bool,
    stateful: Vec<String>,
    /// Restored delta entries of topics not registered yet.
    restored: Vec<PersistedPeerState>,
    /// When the state is next persisted (only with a persistence interval).
    next_persist: Option<Instant>,
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
    /// A driver around a new engine for node `me` (see [`Engine::new`]), started at
    /// `now`, when the wall clock reads `unix_now` (Unix time, from [`Clock::unix_now`]
    /// or a simulated clock). The engine's wall clock ([`Config::wall_clock_offset`]) is
    /// set from it, so record stamps and broadcast expiries are Unix time whenever the
    /// process started. `seed` fixes the engine's randomness and the reconnect jitter.
    pub fn new(
        me: NodeId,
        mut config: Config,
        seed: u64,
        driver: DriverConfig,
        now: Instant,
        unix_now: Duration,
    ) -> Result<Self, ConfigError> {
        config.wall_clock_offset = unix_now.saturating_sub(Duration::from_micros(now.as_micros()));
        let engine = Engine::new(me, config, seed, now)?;
        Ok(Self::with_engine(engine, driver, seed, now))
    }

    /// A driver around an existing engine with no connections (its wall clock as it
    /// was configured).
    pub fn with_engine(engine: Engine, mut config: DriverConfig, seed: u64, now: Instant) -> Self {
        // A zero interval would ask for a save at every timeout, forever.
        config.persist_interval = config.persist_interval.map(|d| d.max(MIN_PERSIST_INTERVAL));
        let next_persist = config.persist_interval.map(|every| now + every);
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
            final_persist: false,
            stateful: Vec::new(),
            restored: Vec::new(),
            next_persist,
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

    /// Whether [`Driver::shutdown`] was called.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    /// Whether a shutdown has completed: every connection closed, every dial ended, the
    /// final state handed out for saving and every output drained. Then drop the driver.
    pub fn is_finished(&self) -> bool {
        self.shutting_down
            && self.conns.is_empty()
            && self.out.is_empty()
            && (self.final_persist || self.config.persist_interval.is_none())
            && !self
                .slots
                .iter()
                .any(|s| matches!(s.state, SlotState::Dialing { .. }))
    }

    /// When [`Driver::handle_timeout`] should next be called: the earliest of the
    /// engine's deadline, the next dial, a dial timeout, a linger and the next periodic
    /// [`Output::Persist`]. `None` when nothing is scheduled.
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
            .chain(self.next_persist)
            .min()
    }

    // ---- lifecycle --------------------------------------------------------------------

    /// Starts a graceful shutdown: stops dialing (aborting dials in flight), refuses new
    /// connections, and closes every connection after flushing its queue (for at most
    /// [`DriverConfig::close_linger`]); then, with persistence on, emits the final
    /// [`Output::Persist`]. Keep driving until [`Driver::is_finished`].
    pub fn shutdown(&mut self, now: Instant) {
        self.advance(now);
        if self.shutting_down {
            return;
        }
        self.shutting_down = true;
        self.next_persist = None;
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

    /// Time passed: engine timers, due dials, dial timeouts, lingers and periodic
    /// persistence.
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
        if let (Some(at), Some(every)) = (self.next_persist, self.config.persist_interval) {
            if at <= self.now {
                // State survives a crash, not only a graceful shutdown.
                self.emit_persist();
                self.next_persist = Some(self.now + every);
            }
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
            if !self.dirty.is_empty() {
                for conn in core::mem::take(&mut self.dirty) {
                    self.flush(conn);
                }
                continue;
            }
            if self.shutting_down
                && !self.final_persist
                && self.conns.is_empty()
                && self.config.persist_interval.is_some()
            {
                self.final_persist = true;
                self.emit_persist();
                continue;
            }
            return None;
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
}

#[cfg(test)]
mod tests;
