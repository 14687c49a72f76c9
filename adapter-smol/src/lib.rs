//! whisper driven by smol (and async-io).
//!
//! A thin adapter: [`Smol`] implements the core's [`Runtime`] (spawn on smol's global
//! executor, async-io timers, smol's TCP) and the shared driver task
//! ([`whisper_proto::runtime::drive`]) does the rest. No protocol logic lives here.
//!
//! ```no_run
//! # fn demo() -> Result<(), whisper_smol::HandleError> {
//! use whisper_smol::{Builder, NodeId};
//!
//! smol::block_on(async {
//!     let node = Builder::new(NodeId::from_static("alice"))
//!         .listen("127.0.0.1:7000".parse().unwrap())
//!         .peer("127.0.0.1:7001")
//!         .spawn()
//!         .await?;
//!     let mut events = node.events();
//!     while let Some(event) = events.next().await {
//!         println!("{event:?}");
//!     }
//!     node.shutdown().await
//! })
//! # }
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

use smol::net::{TcpListener, TcpStream};
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

/// Configures and starts a node on smol's global executor: `.spawn().await?`.
pub type Builder = whisper_proto::runtime::Builder<Smol>;

/// The smol [`Runtime`]: smol's global executor, async-io timers and TCP.
#[derive(Clone, Copy, Debug, Default)]
pub struct Smol;

impl Start for Smol {
    type Started = BoxFuture<'static, Result<Handle, HandleError>>;

    /// Binds the listener and spawns the driver task.
    fn start(self, node: NodeParts) -> Self::Started {
        Box::pin(drive(self, node))
    }
}

impl Runtime for Smol {
    type Tcp = TcpStream;
    type Listener = TcpListener;

    fn spawn(&self, task: BoxFuture<'static, ()>) {
        smol::spawn(task).detach();
    }

    fn sleep_until(&self, deadline: std::time::Instant) -> BoxFuture<'static, ()> {
        let timer = async_io::Timer::at(deadline);
        Box::pin(async move {
            timer.await;
        })
    }

    fn connect(&self, addr: String) -> BoxFuture<'static, io::Result<TcpStream>> {
        Box::pin(async move { TcpStream::connect(addr.as_str()).await })
    }

    fn bind(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<TcpListener>> {
        Box::pin(TcpListener::bind(addr))
    }

    fn accept<'a>(&self, listener: &'a TcpListener) -> BoxFuture<'a, io::Result<TcpStream>> {
        Box::pin(async move { listener.accept().await.map(|(tcp, _)| tcp) })
    }

    fn local_addr(listener: &TcpListener) -> io::Result<SocketAddr> {
        listener.local_addr()
    }

    fn no_delay(tcp: &TcpStream) -> io::Result<SocketAddr> {
        tcp.set_nodelay(true)?;
        tcp.peer_addr()
    }
}
