//! whisper driven by tokio.
//!
//! A thin adapter: it owns sockets, tasks, one timer and a command channel, and drives
//! one [`whisper_proto::driver::Driver`] (the engine plus the shared adapter logic:
//! reconnects, the dial tie-break, bounded coalesced write queues). It has no protocol
//! logic of its own.
//!
//! ```no_run
//! # async fn demo() -> Result<(), whisper_tokio::HandleError> {
//! use whisper_tokio::{Builder, NodeId};
//!
//! let node = Builder::new(NodeId::from_static("alice"))
//!     .listen("127.0.0.1:7000".parse().unwrap())
//!     .peer("127.0.0.1:7001")
//!     .frame_kind(0x5801, 64 * 1024)
//!     .spawn()
//!     .await?;
//! let mut events = node.events();
//! while let Some(event) = events.next().await {
//!     println!("{event:?}");
//! }
//! node.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Tasks
//!
//! One driver task owns the [`Driver`]; it `select!`s on an internal channel fed by the
//! connection tasks, the command channel fed by [`Handle`]s, and a single `Sleep` reset
//! only when the driver's deadline changes. Each connection has a reader task (reads
//! and forwards bytes; a full internal channel pauses reading, which is TCP
//! backpressure) and a writer task (writes one coalesced buffer at a time). A listener
//! task accepts; a task per dial connects.
//!
//! # Bounds
//!
//! The command channel holds [`DriverConfig::command_capacity`] commands: callers wait
//! when it is full. Each connection's queued bytes are bounded by
//! [`DriverConfig::write_queue_limit`]: a connection whose peer does not read fast enough
//! is closed (see [`whisper_proto::driver`]). Each event subscriber holds at most
//! [`DriverConfig::event_capacity`] events; a subscriber that falls behind loses events.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use whisper_proto::driver::{
    Clock, DialId, Driver, EventSink, NodeSpec, Offer, OpenError, Output, Subscribers,
};
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

/// Configures and starts a node.
pub struct Builder {
    spec: NodeSpec,
    subscribers: Subscribers<EventSender>,
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
            subscribers: Subscribers::new(),
        }
    }

    whisper_proto::node_builder_setters!();

    /// Subscribes to events before the node starts, so none is missed.
    pub fn events(&self) -> EventStream {
        subscribe(&self.subscribers, self.spec.driver.event_capacity)
    }

    /// Binds the listener and spawns the driver task on the current tokio runtime.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub async fn spawn(self) -> Result<Handle, HandleError> {
        let clock = Clock::new();
        let now = clock.now();
        let (driver, listen, settings) = self.spec.into_driver(now)?;
        let (io_tx, io_rx) = mpsc::channel(settings.input_capacity.max(1));
        let (cmd_tx, cmd_rx) = mpsc::channel(settings.command_capacity.max(1));
        let (listener, local_addr) = match listen {
            Some(addr) => {
                let listener = TcpListener::bind(addr).await?;
                let local = listener.local_addr()?;
                tracing::debug!(target: ADAPTER, %local, "listening");
                (
                    Some(tokio::spawn(accept_loop(listener, io_tx.clone()))),
                    Some(local),
                )
            }
            None => (None, None),
        };
        let task = Task {
            driver,
            clock,
            io_tx,
            conns: HashMap::new(),
            dials: HashMap::new(),
            listener,
            subscribers: self.subscribers.clone(),
            read_buffer: settings.read_buffer.max(1),
            linger: settings.close_linger,
        };
        tokio::spawn(task.run(cmd_rx, io_rx));
        Ok(Handle {
            cmd: cmd_tx,
            subscribers: self.subscribers,
            event_capacity: settings.event_capacity,
            local_addr,
        })
    }
}

/// A cloneable handle to a running node. Dropping the last one shuts the node down
/// gracefully.
#[derive(Clone)]
pub struct Handle {
    cmd: mpsc::Sender<Command>,
    subscribers: Subscribers<EventSender>,
    event_capacity: usize,
    local_addr: Option<SocketAddr>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("local_addr", &self.local_addr)
            .field("stopped", &self.is_stopped())
            .finish_non_exhaustive()
    }
}

impl Handle {
    /// The address the listener is bound to, if any.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// Whether the node has stopped.
    pub fn is_stopped(&self) -> bool {
        self.cmd.is_closed()
    }

    /// A new subscription to every event from now on. Ends when the node stops.
    pub fn events(&self) -> EventStream {
        subscribe(&self.subscribers, self.event_capacity)
    }

    /// Runs `f` on the engine inside the driver task, then drains its actions: the
    /// escape hatch for any engine command. Waits while the command channel is full.
    ///
    /// Use it for commands only; transport inputs (`handle_*`) belong to the adapter.
    pub async fn with_engine<R, F>(&self, f: F) -> Result<R, HandleError>
    where
        F: FnOnce(&mut Engine, Instant) -> R + Send + 'static,
        R: Send + 'static,
    {
        self.with_driver(move |d, now| f(d.engine_mut(), now)).await
    }

    /// Runs `f` on the driver inside the driver task, then drains its outputs.
    pub async fn with_driver<R, F>(&self, f: F) -> Result<R, HandleError>
    where
        F: FnOnce(&mut Driver, Instant) -> R + Send + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let run: RunFn = Box::new(move |d, now| {
            let _ = tx.send(f(d, now));
        });
        self.cmd
            .send(Command::Run(run))
            .await
            .map_err(|_| HandleError::Stopped)?;
        rx.await.map_err(|_| HandleError::Stopped)
    }

    whisper_proto::node_handle_methods!(async);

    /// Subscribes to a BroadcastOnly topic: a stream of its [`Event::Message`]s only.
    pub async fn subscribe(&self, topic: impl Into<String>) -> Result<EventStream, HandleError> {
        let topic = topic.into();
        let (tx, rx) = mpsc::channel(self.event_capacity.max(1));
        let subscribers = self.subscribers.clone();
        self.with_driver(move |d, _| {
            d.subscribe(&topic)?;
            subscribers.add_topic(EventSender(tx), topic);
            Ok::<_, HandleError>(())
        })
        .await??;
        Ok(EventStream { rx })
    }

    /// Queries a RequestResponse topic and waits for the replies (all asked peers, or
    /// those that answered within `timeout`).
    pub async fn query(
        &self,
        topic: impl Into<String>,
        payload: impl Into<Bytes>,
        timeout: std::time::Duration,
    ) -> Result<QueryOutcome, HandleError> {
        let (topic, payload) = (topic.into(), payload.into());
        let (tx, rx) = oneshot::channel();
        let reply = Box::new(move |outcome| {
            let _ = tx.send(outcome);
        });
        self.with_driver(move |d, now| d.query(now, &topic, payload, timeout, reply))
            .await??;
        rx.await.map_err(|_| HandleError::Stopped)
    }

    /// Hands the node an established stream (TLS, QUIC, an in-memory pipe) with the
    /// given role and identity.
    pub async fn add_stream<S>(
        &self,
        stream: S,
        role: Role,
        identity: Identity,
    ) -> Result<ConnId, HandleError>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Command::AddStream(Box::new(stream), role, identity, tx))
            .await
            .map_err(|_| HandleError::Stopped)?;
        Ok(rx.await.map_err(|_| HandleError::Stopped)??)
    }

    /// Shuts the node down gracefully (flush queued writes, close every connection, run
    /// the shutdown hook) and waits until it has stopped. Idempotent.
    pub async fn shutdown(&self) {
        let _ = self.cmd.send(Command::Shutdown).await;
        self.cmd.closed().await;
    }
}

/// A subscription to a node's events: a [`futures_lite::Stream`] of [`Event`]s. Ends
/// when the node stops.
#[derive(Debug)]
pub struct EventStream {
    rx: mpsc::Receiver<Event>,
}

impl EventStream {
    /// The next event, or `None` once the node has stopped.
    pub async fn next(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// The next event if one is waiting.
    pub fn try_next(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }
}

impl futures_lite::Stream for EventStream {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.rx.poll_recv(cx)
    }
}

// ---- internals --------------------------------------------------------------------------

struct EventSender(mpsc::Sender<Event>);

impl EventSink for EventSender {
    fn offer(&mut self, event: &Event) -> Offer {
        match self.0.try_send(event.clone()) {
            Ok(()) => Offer::Accepted,
            Err(mpsc::error::TrySendError::Full(_)) => Offer::Full,
            Err(mpsc::error::TrySendError::Closed(_)) => Offer::Closed,
        }
    }
}

fn subscribe(subscribers: &Subscribers<EventSender>, capacity: usize) -> EventStream {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    subscribers.add(EventSender(tx));
    EventStream { rx }
}

trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

type RunFn = Box<dyn FnOnce(&mut Driver, Instant) + Send>;

enum Command {
    Run(RunFn),
    AddStream(
        Box<dyn Stream>,
        Role,
        Identity,
        oneshot::Sender<Result<ConnId, OpenError>>,
    ),
    Shutdown,
}

enum Input {
    Accepted(TcpStream, SocketAddr),
    Dialed(DialId, io::Result<TcpStream>),
    Read(ConnId, Bytes),
    Eof(ConnId),
    Written(ConnId),
}

enum WriteMsg {
    Bytes(Bytes),
    Close,
}

struct ConnIo {
    writer: mpsc::Sender<WriteMsg>,
    writer_task: JoinHandle<()>,
    reader_task: JoinHandle<()>,
}

struct Task {
    driver: Driver,
    clock: Clock,
    io_tx: mpsc::Sender<Input>,
    conns: HashMap<ConnId, ConnIo>,
    dials: HashMap<DialId, JoinHandle<()>>,
    listener: Option<JoinHandle<()>>,
    subscribers: Subscribers<EventSender>,
    read_buffer: usize,
    linger: std::time::Duration,
}

/// Inputs handled per wakeup before draining, so their sends coalesce.
const INPUT_BATCH: usize = 64;

impl Task {
    async fn run(mut self, mut cmd_rx: mpsc::Receiver<Command>, mut io_rx: mpsc::Receiver<Input>) {
        let sleep = tokio::time::sleep(std::time::Duration::from_secs(3600));
        tokio::pin!(sleep);
        let mut armed: Option<Instant> = None;
        let mut commands_open = true;
        loop {
            self.drain();
            if self.driver.is_finished() {
                break;
            }
            let deadline = self.driver.poll_timeout();
            if deadline != armed {
                armed = deadline;
                if let Some(at) = deadline {
                    let at = tokio::time::Instant::from_std(self.clock.to_std(at));
                    sleep.as_mut().reset(at);
                }
            }
            tokio::select! {
                Some(input) = io_rx.recv() => {
                    self.input(input);
                    for _ in 1..INPUT_BATCH {
                        match io_rx.try_recv() {
                            Ok(input) => self.input(input),
                            Err(_) => break,
                        }
                    }
                }
                cmd = cmd_rx.recv(), if commands_open => match cmd {
                    Some(cmd) => self.command(cmd),
                    None => {
                        // Every handle is gone: nobody can use the node any more.
                        commands_open = false;
                        self.driver.shutdown(self.clock.now());
                    }
                },
                () = &mut sleep, if armed.is_some() => {
                    // Re-armed on the next turn even if the deadline did not move.
                    armed = None;
                    self.driver.handle_timeout(self.clock.now());
                }
            }
        }
        if let Some(listener) = self.listener.take() {
            listener.abort();
        }
        for (_, dial) in self.dials.drain() {
            dial.abort();
        }
        let now = self.clock.now();
        self.driver.finish(now);
        self.subscribers.clear();
        tracing::debug!(target: ADAPTER, "stopped");
        // `cmd_rx` drops here: `Handle::shutdown` returns.
    }

    fn drain(&mut self) {
        while let Some(out) = self.driver.poll_output() {
            match out {
                Output::Write { conn, bytes } => {
                    let sent = self
                        .conns
                        .get(&conn)
                        .is_some_and(|c| c.writer.try_send(WriteMsg::Bytes(bytes)).is_ok());
                    if !sent {
                        self.driver.handle_disconnected(self.clock.now(), conn);
                    }
                }
                Output::Close { conn } => {
                    if let Some(c) = self.conns.remove(&conn) {
                        c.reader_task.abort();
                        let _ = c.writer.try_send(WriteMsg::Close);
                        // A writer stuck on a peer that does not read is cut off.
                        let (writer, linger) = (c.writer_task, self.linger);
                        tokio::spawn(async move {
                            tokio::time::sleep(linger).await;
                            writer.abort();
                        });
                    }
                }
                Output::Emit(event) => self.subscribers.deliver(&event),
                Output::Dial { dial, addr } => {
                    let io_tx = self.io_tx.clone();
                    let task = tokio::spawn(async move {
                        let result = TcpStream::connect(addr.as_str()).await;
                        let _ = io_tx.send(Input::Dialed(dial, result)).await;
                    });
                    self.dials.insert(dial, task);
                }
                Output::AbortDial { dial } => {
                    if let Some(task) = self.dials.remove(&dial) {
                        task.abort();
                    }
                }
                other => {
                    tracing::debug!(target: ADAPTER, output = ?other, "unhandled driver output");
                }
            }
        }
    }

    fn input(&mut self, input: Input) {
        let now = self.clock.now();
        match input {
            Input::Read(conn, bytes) => self.driver.handle_bytes(now, conn, &bytes),
            Input::Written(conn) => self.driver.handle_written(now, conn),
            Input::Eof(conn) => self.driver.handle_disconnected(now, conn),
            Input::Accepted(stream, remote) => {
                match self.driver.handle_accepted(now, Some(remote.to_string())) {
                    Ok(conn) => self.spawn_conn(conn, tcp(stream)),
                    Err(error) => tracing::debug!(target: ADAPTER, %remote, %error, "refused"),
                }
            }
            Input::Dialed(dial, result) => {
                self.dials.remove(&dial);
                match result {
                    Ok(stream) => {
                        let remote = stream.peer_addr().ok().map(|a| a.to_string());
                        if let Ok(conn) = self.driver.handle_dialed(now, dial, remote) {
                            self.spawn_conn(conn, tcp(stream));
                        }
                    }
                    Err(error) => {
                        tracing::debug!(target: ADAPTER, ?dial, %error, "dial failed");
                        self.driver.handle_dial_failed(now, dial);
                    }
                }
            }
        }
    }

    fn command(&mut self, cmd: Command) {
        let now = self.clock.now();
        match cmd {
            Command::Run(f) => f(&mut self.driver, now),
            Command::AddStream(stream, role, identity, reply) => {
                let result = self.driver.handle_stream(now, role, identity, None);
                if let Ok(conn) = result {
                    self.spawn_conn(conn, stream);
                }
                let _ = reply.send(result);
            }
            Command::Shutdown => self.driver.shutdown(now),
        }
    }

    fn spawn_conn(&mut self, conn: ConnId, stream: Box<dyn Stream>) {
        let (reader, writer) = tokio::io::split(stream);
        // At most one write is in flight, plus the final close.
        let (wtx, wrx) = mpsc::channel(2);
        let reader_task = tokio::spawn(read_loop(
            conn,
            reader,
            self.io_tx.clone(),
            self.read_buffer,
        ));
        let writer_task = tokio::spawn(write_loop(
            conn,
            writer,
            wrx,
            self.io_tx.clone(),
            self.linger,
        ));
        self.conns.insert(
            conn,
            ConnIo {
                writer: wtx,
                writer_task,
                reader_task,
            },
        );
    }
}

fn tcp(stream: TcpStream) -> Box<dyn Stream> {
    let _ = stream.set_nodelay(true);
    Box::new(stream)
}

async fn accept_loop(listener: TcpListener, io_tx: mpsc::Sender<Input>) {
    loop {
        match listener.accept().await {
            Ok((stream, remote)) => {
                if io_tx.send(Input::Accepted(stream, remote)).await.is_err() {
                    return;
                }
            }
            Err(error) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::warn!(target: ADAPTER, %error, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

async fn read_loop(
    conn: ConnId,
    mut reader: tokio::io::ReadHalf<Box<dyn Stream>>,
    io_tx: mpsc::Sender<Input>,
    size: usize,
) {
    let mut buf = vec![0u8; size];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = io_tx.send(Input::Eof(conn)).await;
                return;
            }
            Ok(n) => {
                let bytes = Bytes::copy_from_slice(&buf[..n]);
                if io_tx.send(Input::Read(conn, bytes)).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn write_loop(
    conn: ConnId,
    mut writer: tokio::io::WriteHalf<Box<dyn Stream>>,
    mut rx: mpsc::Receiver<WriteMsg>,
    io_tx: mpsc::Sender<Input>,
    linger: std::time::Duration,
) {
    while let Some(msg) = rx.recv().await {
        match msg {
            WriteMsg::Bytes(bytes) => {
                let ok = writer.write_all(&bytes).await.is_ok() && writer.flush().await.is_ok();
                let input = if ok {
                    Input::Written(conn)
                } else {
                    Input::Eof(conn)
                };
                if io_tx.send(input).await.is_err() || !ok {
                    return;
                }
            }
            WriteMsg::Close => {
                let _ = tokio::time::timeout(linger, writer.shutdown()).await;
                return;
            }
        }
    }
}
