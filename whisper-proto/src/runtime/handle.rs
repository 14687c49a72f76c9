//! The typed handle to a running node, the same for every adapter.

use std::boxed::Box;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::string::String;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::vec::Vec;

use async_channel::{Receiver, Sender};
use bytes::Bytes;

use super::{BoxFuture, Command, Stream, Subscribers};
use crate::action::Event;
use crate::driver::{Driver, DriverStats, HandleError, NodeSnapshot, PeerAddr, PeerInfo, PeerSlot};
use crate::engine::{Engine, EngineStats, Identity, Role};
use crate::node::{ConnId, NodeId};
use crate::rumor::RumorId;
use crate::time::{Duration, Instant};
use crate::topic::{QueryId, QueryReply, TopicConfig};

/// The result of a query.
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

/// A call on a [`Handle`]: `.await` it in async code, or [`Call::wait`] for it on a
/// plain thread (never inside an async task, which it would block).
#[must_use = "a call does nothing until it is awaited or waited for"]
pub struct Call<T> {
    fut: BoxFuture<'static, Result<T, HandleError>>,
}

impl<T> Call<T> {
    fn new(fut: impl Future<Output = Result<T, HandleError>> + Send + 'static) -> Self {
        Self { fut: Box::pin(fut) }
    }

    /// Blocks the current thread until the node answers.
    ///
    /// # Errors
    /// As the call's own errors; [`HandleError::Stopped`] once the node has stopped.
    pub fn wait(self) -> Result<T, HandleError> {
        futures_lite::future::block_on(self.fut)
    }
}

impl<T> Future for Call<T> {
    type Output = Result<T, HandleError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.fut.as_mut().poll(cx)
    }
}

impl<T> fmt::Debug for Call<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Call")
    }
}

/// Wakes a loop that cannot wait on the command channel (mio's `poll`); called once
/// more when the last handle is dropped.
pub(super) struct Waker(Arc<dyn Fn() + Send + Sync>);

impl Waker {
    pub(super) fn new(f: Arc<dyn Fn() + Send + Sync>) -> Arc<Self> {
        Arc::new(Self(f))
    }
}

impl Drop for Waker {
    fn drop(&mut self) {
        (self.0)();
    }
}

/// A cloneable handle to a running node. Dropping the last one shuts the node down
/// gracefully.
#[derive(Clone)]
pub struct Handle {
    cmd: Sender<Command>,
    subscribers: Subscribers,
    event_capacity: usize,
    local_addr: Option<SocketAddr>,
    stopped: Receiver<()>,
    waker: Option<Arc<Waker>>,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("local_addr", &self.local_addr)
            .field("stopped", &self.is_stopped())
            .finish_non_exhaustive()
    }
}

impl Handle {
    pub(super) fn new(
        cmd: Sender<Command>,
        subscribers: Subscribers,
        event_capacity: usize,
        local_addr: Option<SocketAddr>,
        stopped: Receiver<()>,
        waker: Option<Arc<Waker>>,
    ) -> Self {
        Self {
            cmd,
            subscribers,
            event_capacity,
            local_addr,
            stopped,
            waker,
        }
    }

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
        self.subscribers.subscribe(self.event_capacity)
    }

    /// Events dropped because a subscriber fell behind.
    pub fn events_dropped(&self) -> u64 {
        self.subscribers.dropped()
    }

    /// Runs `f` on the driver inside the node's loop, then drains its outputs: the
    /// escape hatch for any driver command. Waits while the command channel is full.
    ///
    /// Do not call the handle from inside `f` (it runs on the node's loop).
    pub fn with_driver<R, F>(&self, f: F) -> Call<R>
    where
        F: FnOnce(&mut Driver, Instant) -> R + Send + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = async_channel::bounded(1);
        let run = Command::Run(Box::new(move |d, now| {
            let _ = tx.try_send(f(d, now));
        }));
        let send = self.send(run);
        Call::new(async move {
            send.await?;
            rx.recv().await.map_err(|_| HandleError::Stopped)
        })
    }

    /// Runs `f` on the engine inside the node's loop (see [`Handle::with_driver`]). Use it
    /// for commands only: transport inputs (`handle_*`) belong to the adapter.
    pub fn with_engine<R, F>(&self, f: F) -> Call<R>
    where
        F: FnOnce(&mut Engine, Instant) -> R + Send + 'static,
        R: Send + 'static,
    {
        self.with_driver(move |d, now| f(d.engine_mut(), now))
    }

    fn try_driver<R, F>(&self, f: F) -> Call<R>
    where
        F: FnOnce(&mut Driver, Instant) -> Result<R, HandleError> + Send + 'static,
        R: Send + 'static,
    {
        let call = self.with_driver(f);
        Call::new(async move { call.await? })
    }

    /// The engine's counters.
    pub fn stats(&self) -> Call<EngineStats> {
        self.with_engine(|e, _| e.stats())
    }

    /// The driver's counters (dials, reconnects, slow closes, …).
    pub fn driver_stats(&self) -> Call<DriverStats> {
        self.with_driver(|d, _| d.stats())
    }

    /// Counters, members and per-topic store state in one call.
    pub fn snapshot(&self) -> Call<NodeSnapshot> {
        self.with_driver(|d, _| d.snapshot())
    }

    /// The identified peers (node ids) on live connections.
    pub fn members(&self) -> Call<Vec<NodeId>> {
        self.with_driver(|d, _| super::node::members(d))
    }

    /// Identified peers on live connections.
    pub fn peers(&self) -> Call<Vec<PeerInfo>> {
        self.with_driver(|d, _| d.peers())
    }

    /// Configured peer addresses and their reconnect state.
    pub fn peer_addrs(&self) -> Call<Vec<PeerAddr>> {
        self.with_driver(|d, _| d.peer_addrs())
    }

    /// Adds a peer address to dial now and whenever its connection is lost.
    pub fn add_peer(&self, addr: impl Into<String>) -> Call<PeerSlot> {
        let addr = addr.into();
        self.with_driver(move |d, now| d.add_peer(now, addr))
    }

    /// Registers a topic (see [`Driver::register_topic`]).
    pub fn register_topic(&self, name: impl Into<String>, config: TopicConfig) -> Call<()> {
        let name = name.into();
        self.try_driver(move |d, now| d.register_topic(now, &name, config))
    }

    /// Publishes `payload` on a BroadcastOnly topic. A full engine queue is
    /// [`PublishError::QueueFull`](crate::topic::PublishError::QueueFull): back off and
    /// retry.
    pub fn publish(&self, topic: impl Into<String>, payload: impl Into<Bytes>) -> Call<RumorId> {
        let (topic, payload) = (topic.into(), payload.into());
        self.try_driver(move |d, now| d.publish(now, &topic, payload))
    }

    /// Writes `value` under `key` in a StatefulMerge topic.
    pub fn put(
        &self,
        topic: impl Into<String>,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
    ) -> Call<()> {
        let (topic, key, value) = (topic.into(), key.into(), value.into());
        self.try_driver(move |d, now| d.put(now, &topic, &key, &value))
    }

    /// Deletes `key` in a StatefulMerge topic.
    pub fn delete(&self, topic: impl Into<String>, key: impl Into<Bytes>) -> Call<()> {
        let (topic, key) = (topic.into(), key.into());
        self.try_driver(move |d, now| d.delete(now, &topic, &key))
    }

    /// Saves the node's state now (it is also saved periodically and at shutdown when a
    /// state directory is set); returns how many delta entries it holds.
    pub fn persist_now(&self) -> Call<usize> {
        self.with_driver(|d, now| d.persist_now(now))
    }

    /// Registers a custom frame kind (prefer
    /// [`Builder::frame_kind`](super::Builder::frame_kind), which registers before any
    /// peer can send one).
    pub fn register_frame_kind(&self, magic: u16, max_len: u32) -> Call<()> {
        self.try_driver(move |d, _| Ok(d.engine_mut().register_frame_kind(magic, max_len)?))
    }

    /// Sends a frame of a registered custom kind to `peer`.
    pub fn send_custom(&self, peer: NodeId, magic: u16, body: Bytes) -> Call<()> {
        self.try_driver(move |d, now| d.send_custom(now, &peer, magic, body))
    }

    /// Sends a frame of a registered custom kind to every peer; returns how many.
    pub fn broadcast_custom(&self, magic: u16, body: Bytes) -> Call<usize> {
        self.try_driver(move |d, now| d.broadcast_custom(now, magic, body))
    }

    /// Subscribes to a BroadcastOnly topic: a stream of its [`Event::Message`]s only.
    pub fn subscribe(&self, topic: impl Into<String>) -> Call<EventStream> {
        let topic = topic.into();
        let (subscribers, capacity) = (self.subscribers.clone(), self.event_capacity);
        self.try_driver(move |d, _| {
            d.subscribe(&topic)?;
            Ok(subscribers.subscribe_topic(capacity, topic))
        })
    }

    /// Queries a RequestResponse topic and waits for the replies (all asked peers, or
    /// those that answered within `timeout`).
    pub fn query(
        &self,
        topic: impl Into<String>,
        payload: impl Into<Bytes>,
        timeout: Duration,
    ) -> Call<QueryOutcome> {
        let (tx, rx) = async_channel::bounded(1);
        let send = self.send(Command::Query {
            topic: topic.into(),
            payload: payload.into(),
            timeout,
            reply: tx,
        });
        Call::new(async move {
            send.await?;
            rx.recv().await.map_err(|_| HandleError::Stopped)?
        })
    }

    /// Hands the node an established stream (TLS, QUIC, an in-memory pipe) with the
    /// given role and identity. Only the async adapters take streams.
    pub fn add_stream(&self, stream: impl Stream, role: Role, identity: Identity) -> Call<ConnId> {
        let (tx, rx) = async_channel::bounded(1);
        let send = self.send(Command::AddStream {
            stream: Box::new(stream),
            role,
            identity,
            reply: tx,
        });
        Call::new(async move {
            send.await?;
            rx.recv().await.map_err(|_| HandleError::Stopped)?
        })
    }

    /// Shuts the node down gracefully (flush queued writes, close every connection, save
    /// its state, run the shutdown hook) and waits until it has stopped. Idempotent.
    pub fn shutdown(&self) -> Call<()> {
        let send = self.send(Command::Shutdown);
        let stopped = self.stopped.clone();
        Call::new(async move {
            let _ = send.await;
            let _ = stopped.recv().await;
            Ok(())
        })
    }

    fn send(&self, cmd: Command) -> impl Future<Output = Result<(), HandleError>> + Send + 'static {
        let (tx, waker) = (self.cmd.clone(), self.waker.clone());
        async move {
            tx.send(cmd).await.map_err(|_| HandleError::Stopped)?;
            if let Some(w) = waker {
                (w.0)();
            }
            Ok(())
        }
    }
}

/// A subscription to a node's events: a [`futures_lite::Stream`] of [`Event`]s. Ends
/// when the node stops.
#[derive(Debug)]
pub struct EventStream {
    rx: Pin<Box<Receiver<Event>>>,
}

impl EventStream {
    pub(super) fn new(rx: Receiver<Event>) -> Self {
        Self { rx: Box::pin(rx) }
    }

    /// The next event, or `None` once the node has stopped.
    pub async fn next(&mut self) -> Option<Event> {
        self.rx.recv().await.ok()
    }

    /// The next event if one is waiting.
    pub fn try_next(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }

    /// Blocks the current thread for the next event (`None` once the node has stopped).
    pub fn next_blocking(&mut self) -> Option<Event> {
        self.rx.recv_blocking().ok()
    }
}

impl futures_lite::Stream for EventStream {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.rx.as_mut().poll_next(cx)
    }
}
