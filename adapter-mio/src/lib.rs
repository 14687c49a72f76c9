//! whisper driven by a blocking mio event loop.
//!
//! A thin adapter: [`Node::run`] blocks in `poll` with the driver's deadline as the
//! timeout, and moves bytes between non-blocking sockets and one
//! [`whisper_proto::driver::Driver`] (the engine plus the shared adapter logic:
//! reconnects, the dial tie-break, bounded coalesced write queues). Other threads talk
//! to it through a [`Handle`]: commands go over a bounded std channel and a
//! [`mio::Waker`] interrupts the poll.
//!
//! ```no_run
//! # fn demo() -> Result<(), whisper_mio::HandleError> {
//! use whisper_mio::{Builder, NodeId};
//!
//! let (handle, thread) = Builder::new(NodeId::from_static("alice"))
//!     .listen("127.0.0.1:7000".parse().unwrap())
//!     .peer("127.0.0.1:7001")
//!     .frame_kind(0x5801, 64 * 1024)
//!     .spawn()?;
//! let events = handle.events();
//! while let Ok(event) = events.recv() {
//!     println!("{event:?}");
//! }
//! handle.shutdown();
//! thread.join().unwrap()?;
//! # Ok(()) }
//! ```
//!
//! # Bounds and fairness
//!
//! The command channel holds [`DriverConfig::command_capacity`] commands: callers block
//! when it is full. Each connection's queued bytes are bounded by
//! [`DriverConfig::write_queue_limit`]: a connection whose peer does not read fast enough
//! is closed (see [`whisper_proto::driver`]). Each event subscriber holds at most
//! [`DriverConfig::event_capacity`] events; a subscriber that falls behind loses events.
//! One readiness event reads at most [`READS_PER_EVENT`] buffers from a connection and
//! one loop turn runs at most [`COMMANDS_PER_TURN`] commands; the rest wait for the
//! next turn, so a flooding peer or caller cannot starve the others.
//!
//! # Deadlock
//!
//! Handle methods block until the loop answers: never call them from inside a closure
//! given to [`Handle::with_engine`] or [`Handle::with_driver`] (that runs on the loop).

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use whisper_proto::driver::{Clock, DialId, Driver, NodeSpec, Output, Subscribers};
use whisper_proto::util::targets::ADAPTER;

pub use whisper_proto;
pub use whisper_proto::driver::{
    DriverConfig, DriverStats, HandleError, NodeSnapshot, PeerAddr, PeerInfo, PeerSlot,
    QueryOutcome,
};
pub use whisper_proto::rumor::RumorId;
pub use whisper_proto::topic::{QueryId, QueryReply, TopicConfig, TopicMode};
pub use whisper_proto::{
    Bytes, Config, ConnId, Engine, EngineStats, Event, Identity, Instant, NodeId, Role,
};
pub use whisper_proto::{MemStore, StateStore};

/// Most reads from one connection per readiness event.
pub const READS_PER_EVENT: usize = 32;
/// Most commands run per loop turn.
pub const COMMANDS_PER_TURN: usize = 64;

const WAKER: Token = Token(0);
const LISTENER: Token = Token(1);

/// Configures a node.
pub struct Builder {
    spec: NodeSpec,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl Builder {
    /// A node with id `id`, the default [`Config`] and [`DriverConfig`], seed 0, no
    /// listener and no peers.
    pub fn new(id: NodeId) -> Self {
        Self {
            spec: NodeSpec::new(id),
        }
    }

    whisper_proto::node_builder_setters!();

    /// Binds the listener and builds the loop; run it with [`Node::run`]. Subscribe
    /// with [`Handle::events`] before running it to miss no event.
    pub fn build(self) -> Result<(Node, Handle), HandleError> {
        let clock = Clock::new();
        let now = clock.now();
        let (driver, listen, settings) = self.spec.into_driver(now)?;
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (listener, local_addr) = match listen {
            Some(addr) => {
                let mut listener = TcpListener::bind(addr)?;
                poll.registry()
                    .register(&mut listener, LISTENER, Interest::READABLE)?;
                let local = listener.local_addr()?;
                (Some(listener), Some(local))
            }
            None => (None, None),
        };
        let (cmd_tx, cmd_rx) = mpsc::sync_channel(settings.command_capacity.max(1));
        let subscribers = Subscribers::new();
        let done = Arc::new(Done::default());
        let node = Node {
            driver,
            clock,
            poll,
            listener,
            conns: HashMap::new(),
            tokens: HashMap::new(),
            dials: HashMap::new(),
            next_token: 2,
            cmd_rx,
            commands_open: true,
            backlog: Vec::new(),
            more_commands: false,
            subscribers: subscribers.clone(),
            buf: vec![0; settings.read_buffer.max(1)],
            done: Arc::clone(&done),
        };
        let handle = Handle {
            inner: Arc::new(Inner {
                cmd: Some(cmd_tx),
                waker,
                subscribers,
                event_capacity: settings.event_capacity,
                local_addr,
                done,
            }),
        };
        Ok((node, handle))
    }

    /// [`Builder::build`], then [`Node::run`] on a new thread.
    pub fn spawn(self) -> Result<(Handle, thread::JoinHandle<io::Result<()>>), HandleError> {
        let (node, handle) = self.build()?;
        let thread = thread::Builder::new()
            .name("whisper-mio".into())
            .spawn(move || node.run())?;
        Ok((handle, thread))
    }
}

/// A cloneable handle to a node, usable from any thread. Dropping the last one shuts
/// the node down gracefully.
#[derive(Clone, Debug)]
pub struct Handle {
    inner: Arc<Inner>,
}

struct Inner {
    /// `None` only while dropping.
    cmd: Option<SyncSender<Command>>,
    waker: Arc<Waker>,
    subscribers: Subscribers<SyncSender<Event>>,
    event_capacity: usize,
    local_addr: Option<SocketAddr>,
    done: Arc<Done>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("local_addr", &self.local_addr)
            .field("stopped", &self.done.is_done())
            .finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Disconnect first, then wake the loop so that it notices.
        drop(self.cmd.take());
        let _ = self.waker.wake();
    }
}

impl Handle {
    /// The address the listener is bound to, if any.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.inner.local_addr
    }

    /// Whether the node has stopped.
    pub fn is_stopped(&self) -> bool {
        self.inner.done.is_done()
    }

    /// A new subscription to every event from now on; disconnects when the node stops.
    pub fn events(&self) -> Receiver<Event> {
        let (tx, rx) = mpsc::sync_channel(self.inner.event_capacity.max(1));
        self.inner.subscribers.add(tx);
        rx
    }

    /// Runs `f` on the engine inside the loop, then drains its actions: the escape hatch
    /// for any engine command. Blocks until it ran (and while the command channel is
    /// full).
    ///
    /// Use it for commands only; transport inputs (`handle_*`) belong to the adapter.
    pub fn with_engine<R, F>(&self, f: F) -> Result<R, HandleError>
    where
        F: FnOnce(&mut Engine, Instant) -> R + Send + 'static,
        R: Send + 'static,
    {
        self.with_driver(move |d, now| f(d.engine_mut(), now))
    }

    /// Runs `f` on the driver inside the loop, then drains its outputs.
    pub fn with_driver<R, F>(&self, f: F) -> Result<R, HandleError>
    where
        F: FnOnce(&mut Driver, Instant) -> R + Send + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(Command::Run(Box::new(move |d, now| {
            let _ = tx.send(f(d, now));
        })))?;
        rx.recv().map_err(|_| HandleError::Stopped)
    }

    /// Like [`Handle::with_engine`], but fails with [`HandleError::Full`] instead of
    /// blocking when the command channel is full (it still waits for the answer).
    pub fn try_with_engine<R, F>(&self, f: F) -> Result<R, HandleError>
    where
        F: FnOnce(&mut Engine, Instant) -> R + Send + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        let cmd = Command::Run(Box::new(move |d, now| {
            let _ = tx.send(f(d.engine_mut(), now));
        }));
        let sender = self.inner.cmd.as_ref().ok_or(HandleError::Stopped)?;
        match sender.try_send(cmd) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(HandleError::Full),
            Err(TrySendError::Disconnected(_)) => return Err(HandleError::Stopped),
        }
        self.inner.waker.wake()?;
        rx.recv().map_err(|_| HandleError::Stopped)
    }

    whisper_proto::node_handle_methods!(blocking);

    /// Subscribes to a BroadcastOnly topic: a channel of its [`Event::Message`]s only.
    pub fn subscribe(&self, topic: impl Into<String>) -> Result<Receiver<Event>, HandleError> {
        let topic = topic.into();
        let (tx, rx) = mpsc::sync_channel(self.inner.event_capacity.max(1));
        let subscribers = self.inner.subscribers.clone();
        self.with_driver(move |d, _| {
            d.subscribe(&topic)?;
            subscribers.add_topic(tx, topic);
            Ok::<_, HandleError>(())
        })??;
        Ok(rx)
    }

    /// Queries a RequestResponse topic and blocks for the replies, at most `timeout`
    /// (plus a short grace for the loop to report): [`HandleError::TimedOut`] after.
    pub fn query(
        &self,
        topic: impl Into<String>,
        payload: impl Into<Bytes>,
        timeout: std::time::Duration,
    ) -> Result<QueryOutcome, HandleError> {
        let (topic, payload) = (topic.into(), payload.into());
        let (tx, rx) = mpsc::sync_channel(1);
        let reply = Box::new(move |outcome| {
            let _ = tx.try_send(outcome);
        });
        self.with_driver(move |d, now| d.query(now, &topic, payload, timeout, reply))??;
        match rx.recv_timeout(timeout + std::time::Duration::from_secs(1)) {
            Ok(outcome) => Ok(outcome),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(HandleError::TimedOut),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(HandleError::Stopped),
        }
    }

    /// Shuts the node down gracefully (flush queued writes, close every connection, run
    /// the shutdown hook) and blocks until [`Node::run`] has returned. Idempotent.
    pub fn shutdown(&self) {
        let _ = self.send(Command::Shutdown);
        self.inner.done.wait();
    }

    fn send(&self, cmd: Command) -> Result<(), HandleError> {
        let sender = self.inner.cmd.as_ref().ok_or(HandleError::Stopped)?;
        sender.send(cmd).map_err(|_| HandleError::Stopped)?;
        self.inner.waker.wake()?;
        Ok(())
    }
}

/// The event loop. Run it with [`Node::run`] on a thread of its own.
pub struct Node {
    driver: Driver,
    clock: Clock,
    poll: Poll,
    listener: Option<TcpListener>,
    conns: HashMap<ConnId, Conn>,
    tokens: HashMap<Token, Source>,
    dials: HashMap<DialId, (Token, TcpStream)>,
    next_token: usize,
    cmd_rx: Receiver<Command>,
    commands_open: bool,
    /// Connections left readable after [`READS_PER_EVENT`] reads.
    backlog: Vec<ConnId>,
    more_commands: bool,
    subscribers: Subscribers<SyncSender<Event>>,
    buf: Vec<u8>,
    done: Arc<Done>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("driver", &self.driver)
            .field("conns", &self.conns.len())
            .finish_non_exhaustive()
    }
}

type RunFn = Box<dyn FnOnce(&mut Driver, Instant) + Send>;

enum Command {
    Run(RunFn),
    Shutdown,
}

#[derive(Clone, Copy)]
enum Source {
    Conn(ConnId),
    Dial(DialId),
}

struct Conn {
    stream: TcpStream,
    token: Token,
    /// The write in flight and how much of it is written.
    pending: Option<(Bytes, usize)>,
}

#[derive(Default)]
struct Done {
    flag: Mutex<bool>,
    cond: Condvar,
}

impl Done {
    fn set(&self) {
        *self.flag.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.cond.notify_all();
    }

    fn is_done(&self) -> bool {
        *self.flag.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wait(&self) {
        let mut done = self.flag.lock().unwrap_or_else(PoisonError::into_inner);
        while !*done {
            done = self.cond.wait(done).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// Marks the node stopped however `run` ends.
struct DoneGuard(Arc<Done>);

impl Drop for DoneGuard {
    fn drop(&mut self) {
        self.0.set();
    }
}

impl Node {
    /// Runs the loop until a graceful shutdown completes ([`Handle::shutdown`], or every
    /// handle dropped). Errors only if polling itself fails.
    pub fn run(mut self) -> io::Result<()> {
        let _done = DoneGuard(Arc::clone(&self.done));
        let mut events = Events::with_capacity(256);
        loop {
            self.drain();
            if self.driver.is_finished() {
                break;
            }
            let now = self.clock.now();
            let timeout = if self.backlog.is_empty() && !self.more_commands {
                self.driver.poll_timeout().map(|t| self.clock.until(now, t))
            } else {
                Some(std::time::Duration::ZERO)
            };
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for event in events.iter() {
                match event.token() {
                    WAKER => {}
                    LISTENER => self.accept(),
                    token => self.ready(token, event),
                }
            }
            for conn in std::mem::take(&mut self.backlog) {
                self.read(conn);
            }
            self.commands();
            let now = self.clock.now();
            if self.driver.poll_timeout().is_some_and(|t| t <= now) {
                self.driver.handle_timeout(now);
            }
        }
        for (_, (token, mut stream)) in self.dials.drain() {
            let _ = self.poll.registry().deregister(&mut stream);
            self.tokens.remove(&token);
        }
        let now = self.clock.now();
        self.driver.finish(now);
        self.subscribers.clear();
        tracing::debug!(target: ADAPTER, "stopped");
        Ok(())
    }

    fn drain(&mut self) {
        while let Some(out) = self.driver.poll_output() {
            match out {
                Output::Write { conn, bytes } => {
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.pending = Some((bytes, 0));
                        self.write(conn);
                    }
                }
                Output::Close { conn } => {
                    if let Some(mut c) = self.conns.remove(&conn) {
                        let _ = self.poll.registry().deregister(&mut c.stream);
                        let _ = c.stream.shutdown(Shutdown::Write);
                        self.tokens.remove(&c.token);
                    }
                }
                Output::Emit(event) => self.subscribers.deliver(&event),
                Output::Dial { dial, addr } => self.dial(dial, &addr),
                Output::AbortDial { dial } => {
                    if let Some((token, mut stream)) = self.dials.remove(&dial) {
                        let _ = self.poll.registry().deregister(&mut stream);
                        self.tokens.remove(&token);
                    }
                }
                other => {
                    tracing::debug!(target: ADAPTER, output = ?other, "unhandled driver output");
                }
            }
        }
    }

    fn commands(&mut self) {
        self.more_commands = false;
        if !self.commands_open {
            return;
        }
        for _ in 0..COMMANDS_PER_TURN {
            let now = self.clock.now();
            match self.cmd_rx.try_recv() {
                Ok(Command::Run(f)) => f(&mut self.driver, now),
                Ok(Command::Shutdown) => self.driver.shutdown(now),
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => {
                    // Every handle is gone: nobody can use the node any more.
                    self.commands_open = false;
                    self.driver.shutdown(now);
                    return;
                }
            }
            self.drain();
        }
        self.more_commands = true;
    }

    fn token(&mut self) -> Token {
        let token = Token(self.next_token);
        self.next_token += 1;
        token
    }

    fn accept(&mut self) {
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((stream, remote)) => {
                    let now = self.clock.now();
                    match self.driver.handle_accepted(now, Some(remote.to_string())) {
                        Ok(conn) => self.add_conn(conn, stream, None),
                        Err(error) => tracing::debug!(target: ADAPTER, %remote, %error, "refused"),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    // Out of descriptors and the like: try again on the next event.
                    tracing::warn!(target: ADAPTER, %error, "accept failed");
                    return;
                }
            }
        }
    }

    fn add_conn(&mut self, conn: ConnId, mut stream: TcpStream, token: Option<Token>) {
        let _ = stream.set_nodelay(true);
        let registered = match token {
            Some(token) => Ok(token),
            None => {
                let token = self.token();
                self.poll
                    .registry()
                    .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
                    .map(|()| token)
            }
        };
        let token = match registered {
            Ok(token) => token,
            Err(error) => {
                tracing::warn!(target: ADAPTER, %conn, %error, "register failed");
                self.driver.handle_disconnected(self.clock.now(), conn);
                return;
            }
        };
        self.tokens.insert(token, Source::Conn(conn));
        self.conns.insert(
            conn,
            Conn {
                stream,
                token,
                pending: None,
            },
        );
        // Bytes may have arrived before the registration reported them.
        self.read(conn);
    }

    fn dial(&mut self, dial: DialId, addr: &str) {
        let now = self.clock.now();
        let resolved = addr
            .to_socket_addrs()
            .and_then(|mut addrs| addrs.next().ok_or_else(|| io::ErrorKind::NotFound.into()));
        let token = self.token();
        let started = resolved.and_then(|sa| {
            let mut stream = TcpStream::connect(sa)?;
            self.poll.registry().register(
                &mut stream,
                token,
                Interest::READABLE | Interest::WRITABLE,
            )?;
            Ok(stream)
        });
        match started {
            Ok(stream) => {
                self.tokens.insert(token, Source::Dial(dial));
                self.dials.insert(dial, (token, stream));
            }
            Err(error) => {
                tracing::debug!(target: ADAPTER, addr, %error, "dial failed");
                self.driver.handle_dial_failed(now, dial);
            }
        }
    }

    fn ready(&mut self, token: Token, event: &mio::event::Event) {
        match self.tokens.get(&token).copied() {
            Some(Source::Conn(conn)) => {
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    self.read(conn);
                }
                if event.is_writable() || event.is_error() {
                    self.write(conn);
                }
            }
            Some(Source::Dial(dial)) => self.connected(dial),
            None => {}
        }
    }

    /// A dialing socket became ready: connected, failed, or (spuriously) neither yet.
    fn connected(&mut self, dial: DialId) {
        let now = self.clock.now();
        let Some((_, stream)) = self.dials.get(&dial) else {
            return;
        };
        let outcome = match stream.take_error() {
            Ok(Some(e)) | Err(e) => Err(e),
            Ok(None) => match stream.peer_addr() {
                Ok(remote) => Ok(remote),
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => Err(e),
            },
        };
        let Some((token, mut stream)) = self.dials.remove(&dial) else {
            return;
        };
        match outcome {
            Ok(remote) => match self
                .driver
                .handle_dialed(now, dial, Some(remote.to_string()))
            {
                Ok(conn) => self.add_conn(conn, stream, Some(token)),
                Err(_) => {
                    let _ = self.poll.registry().deregister(&mut stream);
                    self.tokens.remove(&token);
                }
            },
            Err(error) => {
                tracing::debug!(target: ADAPTER, ?dial, %error, "dial failed");
                let _ = self.poll.registry().deregister(&mut stream);
                self.tokens.remove(&token);
                self.driver.handle_dial_failed(now, dial);
            }
        }
    }

    fn read(&mut self, conn: ConnId) {
        for _ in 0..READS_PER_EVENT {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            match c.stream.read(&mut self.buf) {
                Ok(0) => {
                    self.driver.handle_disconnected(self.clock.now(), conn);
                    return;
                }
                Ok(n) => {
                    let now = self.clock.now();
                    self.driver.handle_bytes(now, conn, &self.buf[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.driver.handle_disconnected(self.clock.now(), conn);
                    return;
                }
            }
        }
        self.backlog.push(conn);
    }

    fn write(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        while let Some((bytes, off)) = &mut c.pending {
            match c.stream.write(&bytes[*off..]) {
                Ok(0) => {
                    c.pending = None;
                    self.driver.handle_disconnected(self.clock.now(), conn);
                    return;
                }
                Ok(n) => {
                    *off += n;
                    if *off == bytes.len() {
                        c.pending = None;
                        self.driver.handle_written(self.clock.now(), conn);
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    c.pending = None;
                    self.driver.handle_disconnected(self.clock.now(), conn);
                    return;
                }
            }
        }
    }
}
