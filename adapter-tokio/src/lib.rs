//! whisper driven by tokio.
//!
//! A thin adapter: [`Tokio`] implements the core's [`Runtime`] (spawn, a timer, TCP
//! connect and listen) over tokio, and the shared driver task
//! ([`whisper_proto::runtime::drive`]) does the rest. No protocol logic lives here.
//!
//! ```no_run
//! # async fn demo() -> Result<(), whisper_tokio::HandleError> {
//! use whisper_tokio::{Builder, NodeId, TopicConfig};
//!
//! let node = Builder::new(NodeId::from_static("alice"))
//!     .listen("127.0.0.1:7000".parse().unwrap())
//!     .peer("127.0.0.1:7001")
//!     .spawn()
//!     .await?;
//! node.register_topic("chat", TopicConfig::broadcast()).await?;
//! let mut chat = node.subscribe("chat").await?;
//! node.publish("chat", "hello").await?;
//! while let Some(event) = chat.next().await {
//!     println!("{event:?}");
//! }
//! node.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! # Bounds
//!
//! The command channel holds [`DriverConfig::command_capacity`] commands: callers wait
//! when it is full. Each connection's queued bytes are bounded by
//! [`DriverConfig::write_queue_limit`]: a connection whose peer does not read fast enough
//! is closed (see [`whisper_proto::driver`]). Each event subscriber holds at most
//! [`DriverConfig::event_capacity`] events; a subscriber that falls behind loses events.

#![forbid(unsafe_code)]

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};
use whisper_proto::runtime::{BoxFuture, NodeParts, Runtime, Start, drive};

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

/// Configures and starts a node on the current tokio runtime: `.spawn().await?`.
pub type Builder = whisper_proto::runtime::Builder<Tokio>;

/// The tokio [`Runtime`]: tasks on the current runtime, tokio timers and TCP.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tokio;

/// A tokio stream as a node speaks it: pass one (TLS, an in-memory pipe) to
/// [`Handle::add_stream`].
pub fn stream<S>(stream: S) -> Compat<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    stream.compat()
}

impl Start for Tokio {
    type Started = BoxFuture<'static, Result<Handle, HandleError>>;

    /// Binds the listener and spawns the driver task.
    ///
    /// # Panics
    /// When awaited outside a tokio runtime.
    fn start(self, node: NodeParts) -> Self::Started {
        Box::pin(drive(self, node))
    }
}

impl Runtime for Tokio {
    type Tcp = Compat<TcpStream>;
    type Listener = TcpListener;

    fn spawn(&self, task: BoxFuture<'static, ()>) {
        tokio::spawn(task);
    }

    fn sleep_until(&self, deadline: std::time::Instant) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep_until(deadline.into()))
    }

    fn connect(&self, addr: String) -> BoxFuture<'static, io::Result<Self::Tcp>> {
        Box::pin(async move { Ok(TcpStream::connect(addr).await?.compat()) })
    }

    fn bind(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<TcpListener>> {
        Box::pin(TcpListener::bind(addr))
    }

    fn accept<'a>(&self, listener: &'a TcpListener) -> BoxFuture<'a, io::Result<Self::Tcp>> {
        Box::pin(async move { Ok(listener.accept().await?.0.compat()) })
    }

    fn local_addr(listener: &TcpListener) -> io::Result<SocketAddr> {
        listener.local_addr()
    }

    fn no_delay(tcp: &Self::Tcp) -> io::Result<SocketAddr> {
        tcp.get_ref().set_nodelay(true)?;
        tcp.get_ref().peer_addr()
    }
}
