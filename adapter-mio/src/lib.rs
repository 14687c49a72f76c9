//! whisper driven by a blocking mio event loop.
//!
//! A thin adapter: [`Node::run`] blocks in `poll` with the driver's deadline as the
//! timeout and moves bytes between non-blocking sockets and the shared node core
//! ([`whisper_proto::runtime::NodeCore`]: the driver, event fan-out, query replies,
//! persistence). Other threads use the same typed [`Handle`] as the async adapters, and
//! [`Call::wait`] for each answer; a [`mio::Waker`] interrupts the poll for each command.
//!
//! ```no_run
//! # fn demo() -> Result<(), whisper_mio::HandleError> {
//! use whisper_mio::{Builder, NodeId};
//!
//! let (handle, thread) = Builder::new(NodeId::from_static("alice"))
//!     .listen("127.0.0.1:7000".parse().unwrap())
//!     .peer("127.0.0.1:7001")
//!     .spawn()?;
//! let mut events = handle.events();
//! while let Some(event) = events.next_blocking() {
//!     println!("{event:?}");
//! }
//! handle.shutdown().wait()?;
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
//! Handle calls block until the loop answers: never `wait` for one from inside a
//! closure given to [`Handle::with_engine`] or [`Handle::with_driver`] (that runs on the
//! loop). Streams other than mio's TCP ([`Handle::add_stream`]) are refused.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, ToSocketAddrs};
use std::sync::Arc;
use std::thread;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use whisper_proto::driver::{DialId, Output};
use whisper_proto::runtime::{Command, NodeCore, NodeParts, Start};
use whisper_proto::util::targets::ADAPTER;

pub use whisper_proto;
pub use whisper_proto::driver::{
    DriverConfig, DriverStats, HandleError, NodeSnapshot, PeerAddr, PeerInfo, PeerSlot,
};
pub use whisper_proto::rumor::RumorId;
pub use whisper_proto::runtime::{Call, EventStream, Handle, QueryOutcome};
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

/// Configures a node: [`Node::build`] it to run the loop on a thread of your own, or
/// `.spawn()?` it on a new thread.
pub type Builder = whisper_proto::runtime::Builder<Mio>;

/// The mio adapter, as named in [`Builder`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Mio;

impl Start for Mio {
    type Started = Result<(Handle, thread::JoinHandle<io::Result<()>>), HandleError>;

    /// Builds the loop and runs it on a new thread.
    fn start(self, node: NodeParts) -> Self::Started {
        let (node, handle) = Node::from_parts(node)?;
        let thread = thread::Builder::new()
            .name("whisper-mio".into())
            .spawn(move || node.run())?;
        Ok((handle, thread))
    }
}

/// The event loop. Run it with [`Node::run`] on a thread of its own.
pub struct Node {
    core: NodeCore,
    poll: Poll,
    listener: Option<TcpListener>,
    conns: HashMap<ConnId, Conn>,
    tokens: HashMap<Token, Source>,
    dials: HashMap<DialId, (Token, TcpStream)>,
    next_token: usize,
    cmd_rx: async_channel::Receiver<Command>,
    commands_open: bool,
    /// Connections left readable after [`READS_PER_EVENT`] reads.
    backlog: Vec<ConnId>,
    more_commands: bool,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("core", &self.core)
            .field("conns", &self.conns.len())
            .finish_non_exhaustive()
    }
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

impl Node {
    /// Binds the listener and builds the loop; run it with [`Node::run`]. Subscribe
    /// with [`Builder::events`] before to miss no event.
    ///
    /// # Errors
    /// What [`NodeCore::new`] refuses, or the listener's bind error.
    pub fn build(builder: Builder) -> Result<(Self, Handle), HandleError> {
        Self::from_parts(builder.into_parts())
    }

    fn from_parts(parts: NodeParts) -> Result<(Self, Handle), HandleError> {
        let mut core = NodeCore::new(parts)?;
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (listener, local_addr) = match core.listen_addr() {
            Some(addr) => {
                let mut listener = TcpListener::bind(addr)?;
                poll.registry()
                    .register(&mut listener, LISTENER, Interest::READABLE)?;
                let local = listener.local_addr()?;
                (Some(listener), Some(local))
            }
            None => (None, None),
        };
        let wake = Arc::new(move || {
            let _ = waker.wake();
        });
        let (handle, cmd_rx) = core.handle(local_addr, Some(wake));
        let read_buffer = core.driver().config().read_buffer.max(1);
        let node = Self {
            core,
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
            buf: vec![0; read_buffer],
        };
        Ok((node, handle))
    }

    /// Runs the loop until a graceful shutdown completes ([`Handle::shutdown`], or every
    /// handle dropped). Errors only if polling itself fails.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(256);
        loop {
            self.drain();
            if self.core.driver().is_finished() {
                break;
            }
            let now = self.core.now();
            let timeout = if self.backlog.is_empty() && !self.more_commands {
                let deadline = self.core.driver().poll_timeout();
                deadline.map(|t| self.core.clock().until(now, t))
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
            let now = self.core.now();
            if self.core.driver().poll_timeout().is_some_and(|t| t <= now) {
                self.core.driver().handle_timeout(now);
            }
        }
        for (_, (token, mut stream)) in self.dials.drain() {
            let _ = self.poll.registry().deregister(&mut stream);
            self.tokens.remove(&token);
        }
        self.core.finish();
        Ok(())
    }

    fn drain(&mut self) {
        while let Some(out) = self.core.poll_output() {
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
            match self.cmd_rx.try_recv() {
                Ok(cmd) => {
                    if let Some(Command::AddStream { reply, .. }) = self.core.command(cmd) {
                        let refused = io::Error::new(
                            io::ErrorKind::Unsupported,
                            "the mio adapter takes TCP connections only",
                        );
                        let _ = reply.try_send(Err(refused.into()));
                    }
                }
                Err(async_channel::TryRecvError::Empty) => return,
                Err(async_channel::TryRecvError::Closed) => {
                    // Every handle is gone: nobody can use the node any more.
                    self.commands_open = false;
                    let now = self.core.now();
                    self.core.driver().shutdown(now);
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
                    let now = self.core.now();
                    match self
                        .core
                        .driver()
                        .handle_accepted(now, Some(remote.to_string()))
                    {
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
                let now = self.core.now();
                self.core.driver().handle_disconnected(now, conn);
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
        let now = self.core.now();
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
                self.core.driver().handle_dial_failed(now, dial);
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
        let now = self.core.now();
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
            Ok(remote) => {
                match self
                    .core
                    .driver()
                    .handle_dialed(now, dial, Some(remote.to_string()))
                {
                    Ok(conn) => self.add_conn(conn, stream, Some(token)),
                    Err(_) => {
                        let _ = self.poll.registry().deregister(&mut stream);
                        self.tokens.remove(&token);
                    }
                }
            }
            Err(error) => {
                tracing::debug!(target: ADAPTER, ?dial, %error, "dial failed");
                let _ = self.poll.registry().deregister(&mut stream);
                self.tokens.remove(&token);
                self.core.driver().handle_dial_failed(now, dial);
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
                    let now = self.core.now();
                    self.core.driver().handle_disconnected(now, conn);
                    return;
                }
                Ok(n) => {
                    let now = self.core.now();
                    self.core.driver().handle_bytes(now, conn, &self.buf[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    let now = self.core.now();
                    self.core.driver().handle_disconnected(now, conn);
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
                    let now = self.core.now();
                    self.core.driver().handle_disconnected(now, conn);
                    return;
                }
                Ok(n) => {
                    *off += n;
                    if *off == bytes.len() {
                        c.pending = None;
                        let now = self.core.now();
                        self.core.driver().handle_written(now, conn);
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    c.pending = None;
                    let now = self.core.now();
                    self.core.driver().handle_disconnected(now, conn);
                    return;
                }
            }
        }
    }
}
