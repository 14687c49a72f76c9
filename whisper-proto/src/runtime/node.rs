//! The socket-free part of a node loop, shared by the async driver task and the mio loop.

use std::boxed::Box;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::string::String;
use std::sync::Arc;
use std::vec::Vec;

use async_channel::{Receiver, Sender};
use bytes::Bytes;

use super::builder::ShutdownHook;
use super::handle::{QueryOutcome, Waker};
use super::{BoxStream, Handle, NodeParts, StateDir, Subscribers};
use crate::action::Event;
use crate::driver::{Clock, Driver, HandleError, Output, PersistKey};
use crate::engine::{Identity, Role};
use crate::node::ConnId;
use crate::time::{Duration, Instant};
use crate::topic::QueryId;
use crate::util::log::targets;

/// A closure run on the driver inside the node's loop.
pub type DriverFn = Box<dyn FnOnce(&mut Driver, Instant) + Send>;

/// What a [`Handle`] asks of its node's loop.
#[non_exhaustive]
pub enum Command {
    /// Run a closure on the driver, then drain its outputs.
    Run(DriverFn),
    /// Query a RequestResponse topic; the outcome goes to `reply`.
    Query {
        /// The topic.
        topic: String,
        /// The request.
        payload: Bytes,
        /// How long to wait for replies.
        timeout: Duration,
        /// Where the outcome goes.
        reply: Sender<Result<QueryOutcome, HandleError>>,
    },
    /// Take over an established stream (async adapters only).
    AddStream {
        /// The stream.
        stream: BoxStream,
        /// Who opened it.
        role: Role,
        /// How the peer identifies itself.
        identity: Identity,
        /// The new connection's id, or why it was refused.
        reply: Sender<Result<ConnId, HandleError>>,
    },
    /// Start a graceful shutdown.
    Shutdown,
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Run(_) => "Run",
            Self::Query { .. } => "Query",
            Self::AddStream { .. } => "AddStream",
            Self::Shutdown => "Shutdown",
        })
    }
}

/// A [`Driver`] with everything around it that is not a socket: the clock, event
/// fan-out, query replies, the state directory and the shutdown hook. An adapter's loop
/// feeds it commands ([`NodeCore::command`]) and drains the outputs it does not handle
/// itself ([`NodeCore::poll_output`]: writes, closes, dials).
pub struct NodeCore {
    driver: Driver,
    clock: Clock,
    subscribers: Subscribers,
    queries: BTreeMap<QueryId, Sender<Result<QueryOutcome, HandleError>>>,
    state: Option<StateDir>,
    hook: Option<ShutdownHook>,
    listen: Option<SocketAddr>,
    event_capacity: usize,
    /// Dropped when the loop ends: [`Handle::shutdown`] returns.
    alive: Option<Sender<()>>,
    stopped: Receiver<()>,
}

impl fmt::Debug for NodeCore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeCore")
            .field("driver", &self.driver)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl NodeCore {
    /// The node described by `parts`: its driver started now on its clock, its custom
    /// kinds registered, its peers added and its saved state (if any) restored. Also
    /// returns the listen address the adapter should bind.
    ///
    /// # Errors
    /// An invalid [`Config`](crate::Config) or state directory ([`HandleError::Io`]), or
    /// a frame kind the engine refuses ([`HandleError::Register`]). Saved state that does
    /// not parse is logged and skipped (the node starts with full syncs).
    pub fn new(parts: NodeParts) -> Result<Self, HandleError> {
        let clock = parts.clock.unwrap_or_default();
        let now = clock.now();
        let event_capacity = parts.driver.event_capacity;
        let mut driver = Driver::new(
            parts.id,
            parts.config,
            parts.seed,
            parts.driver,
            now,
            clock.unix_now(),
        )
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        for (magic, max_len) in parts.kinds {
            driver.engine_mut().register_frame_kind(magic, max_len)?;
        }
        for addr in parts.peers {
            driver.add_peer(now, addr);
        }
        let state = parts.persist.map(StateDir::open).transpose()?;
        if let Some(dir) = &state {
            for key in [PersistKey::DeltaState] {
                match dir.load(key) {
                    Ok(Some(bytes)) => match driver.restore(now, key, &bytes) {
                        Ok(n) => {
                            tracing::debug!(target: targets::ADAPTER, ?key, entries = n, "state restored")
                        }
                        Err(error) => {
                            tracing::warn!(target: targets::ADAPTER, ?key, %error, "saved state unreadable; starting without it")
                        }
                    },
                    Ok(None) => {}
                    Err(error) => {
                        tracing::warn!(target: targets::ADAPTER, ?key, %error, "saved state unreadable; starting without it")
                    }
                }
            }
        }
        let (alive, stopped) = async_channel::bounded(1);
        Ok(Self {
            driver,
            clock,
            subscribers: parts.subscribers,
            queries: BTreeMap::new(),
            state,
            hook: parts.hook,
            listen: parts.listen,
            event_capacity,
            alive: Some(alive),
            stopped,
        })
    }

    /// Where the adapter should listen, as configured.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.listen
    }

    /// A handle to this node, and the command channel the loop reads. `local_addr` is the
    /// bound listener's address; `waker` is called after every command sent (and when
    /// the last handle is dropped) for a loop that cannot wait on the channel itself.
    pub fn handle(
        &self,
        local_addr: Option<SocketAddr>,
        waker: Option<Arc<dyn Fn() + Send + Sync>>,
    ) -> (Handle, Receiver<Command>) {
        let (tx, rx) = async_channel::bounded(self.driver.config().command_capacity.max(1));
        let handle = Handle::new(
            tx,
            self.subscribers.clone(),
            self.event_capacity,
            local_addr,
            self.stopped.clone(),
            waker.map(Waker::new),
        );
        (handle, rx)
    }

    /// The driver.
    pub fn driver(&mut self) -> &mut Driver {
        &mut self.driver
    }

    /// The clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The current instant.
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// Runs a command. [`Command::AddStream`] is handed back: only the adapter can start
    /// a stream's tasks.
    pub fn command(&mut self, cmd: Command) -> Option<Command> {
        let now = self.clock.now();
        match cmd {
            Command::Run(f) => f(&mut self.driver, now),
            Command::Query {
                topic,
                payload,
                timeout,
                reply,
            } => match self.driver.query(now, &topic, payload, timeout) {
                Ok(id) => {
                    self.queries.insert(id, reply);
                }
                Err(e) => {
                    let _ = reply.try_send(Err(e));
                }
            },
            Command::Shutdown => self.driver.shutdown(now),
            add @ Command::AddStream { .. } => return Some(add),
        }
        None
    }

    /// The next output that needs a socket ([`Output::Write`], [`Output::Close`],
    /// [`Output::Dial`], [`Output::AbortDial`]). Events are delivered to subscribers and
    /// query replies, and state is saved to the state directory, on the way.
    pub fn poll_output(&mut self) -> Option<Output> {
        loop {
            match self.driver.poll_output()? {
                Output::Emit(event) => self.emit(event),
                Output::Persist { key, bytes } => {
                    let ok = match &self.state {
                        Some(dir) => match dir.save(key, &bytes) {
                            Ok(()) => true,
                            Err(error) => {
                                tracing::warn!(target: targets::ADAPTER, ?key, %error, "state not saved");
                                false
                            }
                        },
                        None => true,
                    };
                    let now = self.clock.now();
                    self.driver.handle_persisted(now, key, ok);
                }
                io => return Some(io),
            }
        }
    }

    /// Ends the node: runs the shutdown hook, ends every event stream and lets
    /// [`Handle::shutdown`] return.
    pub fn finish(mut self) {
        let now = self.clock.now();
        if let Some(hook) = self.hook.take() {
            hook(self.driver.engine_mut(), now);
        }
        self.subscribers.clear();
        self.alive = None;
        tracing::debug!(target: targets::ADAPTER, "stopped");
    }

    fn emit(&mut self, event: Event) {
        if let Event::QueryComplete {
            id,
            replies,
            timed_out,
            ..
        } = &event
        {
            if let Some(reply) = self.queries.remove(id) {
                let _ = reply.try_send(Ok(QueryOutcome {
                    id: *id,
                    replies: replies.clone(),
                    timed_out: *timed_out,
                }));
            }
        }
        self.subscribers.deliver(&event);
    }
}

/// Peers' ids on live connections.
pub(super) fn members(driver: &Driver) -> Vec<crate::NodeId> {
    driver.peers().into_iter().map(|p| p.node).collect()
}
