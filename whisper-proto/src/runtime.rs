//! The adapters' shared core (`runtime` feature): everything an adapter does besides
//! talking to its executor and its sockets, written once.
//!
//! - [`Runtime`]: the little an async executor must provide — spawn a task, sleep until
//!   an instant, connect and listen on TCP — in the style of quinn's `Runtime`.
//!   `whisper-tokio` and `whisper-smol` are implementations of it and nothing more.
//! - [`Builder`]: a node's settings; [`Builder::spawn`] starts it on its adapter.
//! - [`Handle`]: the typed, cloneable handle every adapter gives out. Each method returns
//!   a [`Call`], which is awaited in async code and [`Call::wait`]ed in blocking code, so
//!   the mio adapter's blocking loop hands out the same handle.
//! - [`EventStream`]: a bounded subscription to a node's events.
//! - [`drive`]: the async driver task over any [`Runtime`]; [`NodeCore`]: the part of a
//!   node loop that does not touch sockets (commands, event fan-out, query replies,
//!   persistence files), shared with `whisper-mio`'s blocking loop.
//! - [`StateDir`]: where a node's [`Output::Persist`](crate::driver::Output::Persist)
//!   state goes (atomic file writes).
//!
//! # Why here
//!
//! The workspace's top level is fixed (core, three adapters, examples, tests), so the code
//! the adapters share lives in the core crate behind this feature, which the `no_std`
//! build never sees. It holds no protocol logic (that is the engine's and the
//! [`Driver`](crate::driver::Driver)'s) and it is the only place besides the adapters
//! that does I/O.
//!
//! # A node's tasks
//!
//! One driver task owns the [`Driver`](crate::driver::Driver): it waits on an input
//! channel fed by the connection tasks, the command channel fed by [`Handle`]s, and one
//! sleep that is re-armed only when the driver's deadline changes. Each connection has a
//! reader task (a full input channel pauses reading: TCP backpressure) and a writer task
//! (one coalesced buffer at a time). A listener task accepts; a task per dial connects.

mod builder;
mod fanout;
mod fs;
mod handle;
mod node;
mod task;

pub use builder::{Builder, NodeParts, ShutdownHook};
pub use fanout::Subscribers;
pub use fs::{JsonFile, StateDir};
pub use handle::{Call, EventStream, Handle, QueryOutcome};
pub use node::{Command, DriverFn, NodeCore};
pub use task::drive;

use std::boxed::Box;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::string::String;

pub use futures_lite::io::{AsyncRead, AsyncWrite};

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A byte stream a node can speak over: TCP, TLS, QUIC, an in-memory pipe.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// A boxed [`Stream`].
pub type BoxStream = Box<dyn Stream>;

/// `tcp` boxed, with Nagle's algorithm off, and its remote address.
fn boxed<R: Runtime>(tcp: R::Tcp) -> io::Result<(BoxStream, SocketAddr)> {
    let remote = R::no_delay(&tcp)?;
    Ok((Box::new(tcp), remote))
}

/// What an async executor must provide to run a node: a way to spawn tasks, a timer,
/// and TCP. Everything else is written once, in [`drive`].
///
/// Implementations MUST NOT block in any method; each is called from the node's tasks.
pub trait Runtime: Send + Sync + 'static {
    /// A connected TCP stream.
    type Tcp: Stream;
    /// A bound TCP listener.
    type Listener: Send + Sync + 'static;

    /// Runs `task` to completion in the background. Tasks end on their own (their
    /// channels close); nothing is cancelled from outside.
    fn spawn(&self, task: BoxFuture<'static, ()>);

    /// A future that completes at `deadline` (at once if it has passed).
    fn sleep_until(&self, deadline: std::time::Instant) -> BoxFuture<'static, ()>;

    /// Connects to `addr` (`host:port`, resolved by the runtime).
    fn connect(&self, addr: String) -> BoxFuture<'static, io::Result<Self::Tcp>>;

    /// Binds a listener on `addr`.
    fn bind(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<Self::Listener>>;

    /// The next connection `listener` accepts.
    fn accept<'a>(&self, listener: &'a Self::Listener) -> BoxFuture<'a, io::Result<Self::Tcp>>;

    /// The address `listener` is bound to.
    fn local_addr(listener: &Self::Listener) -> io::Result<SocketAddr>;

    /// Turns Nagle's algorithm off on `tcp` and returns its remote address.
    fn no_delay(tcp: &Self::Tcp) -> io::Result<SocketAddr>;
}

/// How an adapter starts a node from a [`Builder`]: what [`Builder::spawn`] returns.
/// `whisper-tokio` and `whisper-smol` return a future of the [`Handle`] (they call
/// [`drive`]); `whisper-mio` starts its blocking loop on a thread.
pub trait Start: Sized {
    /// What starting gives.
    type Started;

    /// Starts the node.
    fn start(self, node: NodeParts) -> Self::Started;
}
