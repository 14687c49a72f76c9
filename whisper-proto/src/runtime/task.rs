//! The async driver task, written once over any [`Runtime`].

use std::boxed::Box;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::string::ToString;
use std::sync::Arc;
use std::vec;

use async_channel::{Receiver, Sender};
use bytes::Bytes;
use futures_lite::future::{self, FutureExt};
use futures_lite::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};

use super::{BoxFuture, BoxStream, Command, Handle, NodeCore, NodeParts, Runtime, boxed};
use crate::driver::{DialId, HandleError, Output};
use crate::node::ConnId;
use crate::time::{Duration, Instant};
use crate::util::log::targets;

/// Inputs handled per wake-up before draining, so their sends coalesce.
const INPUT_BATCH: usize = 64;

/// Starts the node described by `parts` on `runtime`: binds its listener, spawns the
/// driver task and returns the node's [`Handle`]. This is what `whisper-tokio` and
/// `whisper-smol` call from [`Start::start`](super::Start::start).
///
/// # Errors
/// What [`NodeCore::new`] refuses, or the listener's bind error ([`HandleError::Io`]).
pub async fn drive<R: Runtime>(runtime: R, parts: NodeParts) -> Result<Handle, HandleError> {
    let rt = Arc::new(runtime);
    let mut core = NodeCore::new(parts)?;
    let settings = core.driver().config().clone();
    let (io_tx, io_rx) = async_channel::bounded(settings.input_capacity.max(1));
    let (accepting, accept_stop) = async_channel::bounded::<()>(1);
    let local = match core.listen_addr() {
        Some(addr) => {
            let listener = rt.bind(addr).await?;
            let local = R::local_addr(&listener)?;
            tracing::debug!(target: targets::ADAPTER, %local, "listening");
            let rt2 = Arc::clone(&rt);
            rt.spawn(Box::pin(accept_loop(
                rt2,
                listener,
                io_tx.clone(),
                accept_stop,
            )));
            Some(local)
        }
        None => None,
    };
    let (handle, cmd_rx) = core.handle(local, None);
    let task = Task {
        rt: Arc::clone(&rt),
        core,
        io_tx,
        conns: HashMap::new(),
        dials: HashMap::new(),
        _accepting: accepting,
        read_buffer: settings.read_buffer.max(1),
        linger: settings.close_linger,
    };
    rt.spawn(Box::pin(task.run(cmd_rx, io_rx)));
    Ok(handle)
}

enum Input {
    Accepted(BoxStream, SocketAddr),
    Dialed(DialId, io::Result<(BoxStream, SocketAddr)>),
    Read(ConnId, Bytes),
    Eof(ConnId),
    Written(ConnId),
}

enum WriteMsg {
    Bytes(Bytes),
    Close,
}

enum Wake {
    Input(Input),
    Command(Option<Command>),
    Timer,
}

/// A connection's tasks, seen from the driver task. Dropping it stops the reader at
/// once and the writer as soon as it is idle; `kill` cuts a stuck writer off.
struct ConnIo {
    writer: Sender<WriteMsg>,
    _reading: Sender<()>,
    kill: Sender<()>,
}

struct Task<R> {
    rt: Arc<R>,
    core: NodeCore,
    io_tx: Sender<Input>,
    conns: HashMap<ConnId, ConnIo>,
    /// Dials in flight; dropping the sender abandons the dial.
    dials: HashMap<DialId, Sender<()>>,
    /// Dropped with the task: the accept loop ends.
    _accepting: Sender<()>,
    read_buffer: usize,
    linger: Duration,
}

impl<R: Runtime> Task<R> {
    async fn run(mut self, cmd_rx: Receiver<Command>, io_rx: Receiver<Input>) {
        let mut armed: Option<Instant> = None;
        let mut sleep: Option<BoxFuture<'static, ()>> = None;
        let mut commands_open = true;
        loop {
            self.drain();
            if self.core.driver().is_finished() {
                break;
            }
            let deadline = self.core.driver().poll_timeout();
            if deadline != armed {
                armed = deadline;
                sleep = deadline.map(|at| self.rt.sleep_until(self.core.clock().to_std(at)));
            }
            let input = async { io_rx.recv().await.map_or(Wake::Command(None), Wake::Input) };
            let command = async {
                if commands_open {
                    Wake::Command(cmd_rx.recv().await.ok())
                } else {
                    future::pending().await
                }
            };
            let timer = async {
                match sleep.as_mut() {
                    Some(s) => s.await,
                    None => future::pending().await,
                }
                Wake::Timer
            };
            match input.or(command).or(timer).await {
                Wake::Input(input) => {
                    self.input(input);
                    for _ in 1..INPUT_BATCH {
                        match io_rx.try_recv() {
                            Ok(input) => self.input(input),
                            Err(_) => break,
                        }
                    }
                }
                Wake::Command(Some(cmd)) => self.command(cmd),
                Wake::Command(None) => {
                    // Every handle is gone: nobody can use the node any more.
                    commands_open = false;
                    let now = self.core.now();
                    self.core.driver().shutdown(now);
                }
                Wake::Timer => {
                    // Re-armed on the next turn even if the deadline did not move.
                    armed = None;
                    sleep = None;
                    let now = self.core.now();
                    self.core.driver().handle_timeout(now);
                }
            }
        }
        self.dials.clear();
        self.core.finish();
        // `cmd_rx` drops here, and with it every pending command.
    }

    fn drain(&mut self) {
        while let Some(out) = self.core.poll_output() {
            match out {
                Output::Write { conn, bytes } => {
                    let sent = self
                        .conns
                        .get(&conn)
                        .is_some_and(|c| c.writer.try_send(WriteMsg::Bytes(bytes)).is_ok());
                    if !sent {
                        let now = self.core.now();
                        self.core.driver().handle_disconnected(now, conn);
                    }
                }
                Output::Close { conn } => {
                    if let Some(c) = self.conns.remove(&conn) {
                        let _ = c.writer.try_send(WriteMsg::Close);
                        // A writer stuck on a peer that does not read is cut off.
                        let (rt, kill) = (Arc::clone(&self.rt), c.kill);
                        let at = std::time::Instant::now() + self.linger;
                        self.rt.spawn(Box::pin(async move {
                            rt.sleep_until(at).await;
                            drop(kill);
                        }));
                    }
                }
                Output::Dial { dial, addr } => {
                    let (abort, aborted) = async_channel::bounded::<()>(1);
                    let (rt, io_tx) = (Arc::clone(&self.rt), self.io_tx.clone());
                    self.rt.spawn(Box::pin(async move {
                        let connect = async { Some(rt.connect(addr).await.and_then(boxed::<R>)) };
                        let abort = async {
                            let _ = aborted.recv().await;
                            None
                        };
                        if let Some(result) = connect.or(abort).await {
                            let _ = io_tx.send(Input::Dialed(dial, result)).await;
                        }
                    }));
                    self.dials.insert(dial, abort);
                }
                Output::AbortDial { dial } => {
                    self.dials.remove(&dial);
                }
                other => {
                    tracing::debug!(target: targets::ADAPTER, output = ?other, "unhandled driver output");
                }
            }
        }
    }

    fn input(&mut self, input: Input) {
        let now = self.core.now();
        match input {
            Input::Read(conn, bytes) => self.core.driver().handle_bytes(now, conn, &bytes),
            Input::Written(conn) => self.core.driver().handle_written(now, conn),
            Input::Eof(conn) => self.core.driver().handle_disconnected(now, conn),
            Input::Accepted(stream, remote) => {
                match self
                    .core
                    .driver()
                    .handle_accepted(now, Some(remote.to_string()))
                {
                    Ok(conn) => self.spawn_conn(conn, stream),
                    Err(error) => {
                        tracing::debug!(target: targets::ADAPTER, %remote, %error, "refused")
                    }
                }
            }
            Input::Dialed(dial, result) => {
                self.dials.remove(&dial);
                match result {
                    Ok((stream, remote)) => {
                        let remote = Some(remote.to_string());
                        if let Ok(conn) = self.core.driver().handle_dialed(now, dial, remote) {
                            self.spawn_conn(conn, stream);
                        }
                    }
                    Err(error) => {
                        tracing::debug!(target: targets::ADAPTER, ?dial, %error, "dial failed");
                        self.core.driver().handle_dial_failed(now, dial);
                    }
                }
            }
        }
    }

    fn command(&mut self, cmd: Command) {
        if let Some(Command::AddStream {
            stream,
            role,
            identity,
            reply,
        }) = self.core.command(cmd)
        {
            let now = self.core.now();
            let result = self.core.driver().handle_stream(now, role, identity, None);
            if let Ok(conn) = result {
                self.spawn_conn(conn, stream);
            }
            let _ = reply.try_send(result.map_err(HandleError::from));
        }
    }

    fn spawn_conn(&mut self, conn: ConnId, stream: BoxStream) {
        let (reader, writer) = futures_lite::io::split(stream);
        // At most one write is in flight, plus the final close.
        let (wtx, wrx) = async_channel::bounded(2);
        let (reading, stop) = async_channel::bounded(1);
        let (kill, killed) = async_channel::bounded(1);
        let io_tx = self.io_tx.clone();
        self.rt.spawn(Box::pin(
            read_loop(conn, reader, io_tx, self.read_buffer).or(wait_closed(stop)),
        ));
        let io_tx = self.io_tx.clone();
        self.rt.spawn(Box::pin(
            write_loop(conn, writer, wrx, io_tx).or(wait_closed(killed)),
        ));
        self.conns.insert(
            conn,
            ConnIo {
                writer: wtx,
                _reading: reading,
                kill,
            },
        );
    }
}

/// Completes once every sender of `rx` is gone.
async fn wait_closed(rx: Receiver<()>) {
    while rx.recv().await.is_ok() {}
}

async fn accept_loop<R: Runtime>(
    rt: Arc<R>,
    listener: R::Listener,
    io_tx: Sender<Input>,
    stop: Receiver<()>,
) {
    let work = async {
        loop {
            match rt.accept(&listener).await.and_then(boxed::<R>) {
                Ok((stream, remote)) => {
                    if io_tx.send(Input::Accepted(stream, remote)).await.is_err() {
                        return;
                    }
                }
                Err(error) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!(target: targets::ADAPTER, %error, "accept failed");
                    let at = std::time::Instant::now() + Duration::from_millis(100);
                    rt.sleep_until(at).await;
                }
            }
        }
    };
    work.or(wait_closed(stop)).await;
}

async fn read_loop(
    conn: ConnId,
    mut reader: ReadHalf<BoxStream>,
    io_tx: Sender<Input>,
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
    mut writer: WriteHalf<BoxStream>,
    rx: Receiver<WriteMsg>,
    io_tx: Sender<Input>,
) {
    while let Ok(msg) = rx.recv().await {
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
                let _ = writer.close().await;
                return;
            }
        }
    }
}
