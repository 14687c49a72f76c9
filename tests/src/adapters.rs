//! One blocking test interface over the three adapters, so that a scenario is written
//! once and runs against tokio, smol and mio nodes, alone or mixed in one cluster.
//!
//! All three adapters hand out the same [`Handle`]; every call here blocks the calling
//! (test) thread with [`Call::wait`](whisper_proto::runtime::Call::wait), while each
//! adapter runs on its own machinery (a shared tokio runtime, smol's global executor, one
//! thread per mio loop). Nodes listen on loopback only. Scenarios live in [`scenarios`].

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::Duration;

use futures_lite::future;
use whisper_proto::driver::{DriverConfig, DriverStats, HandleError, NodeSnapshot};
use whisper_proto::rumor::RumorId;
use whisper_proto::runtime::{Builder, EventStream, Handle, QueryOutcome};
use whisper_proto::topic::TopicConfig;
use whisper_proto::util::RetryPolicy;
use whisper_proto::{Bytes, Config, EngineStats, Event, NodeId, Role};

pub mod scenarios;

/// The custom frame kind the scenarios exchange.
pub const KIND: u16 = 0x5801;

/// Which adapter drives a node.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Kind {
    /// `whisper-tokio`.
    Tokio,
    /// `whisper-smol`.
    Smol,
    /// `whisper-mio`.
    Mio,
}

/// What to start.
#[derive(Clone, Debug)]
pub struct Spec {
    /// The node's id.
    pub id: NodeId,
    /// Where to listen (`127.0.0.1:0` for any port).
    pub listen: SocketAddr,
    /// Peers to dial and redial.
    pub peers: Vec<SocketAddr>,
    /// Adapter settings.
    pub driver: DriverConfig,
    /// Engine settings ([`fast_config`] by default).
    pub config: Config,
    /// The node's seed.
    pub seed: u64,
    /// Receives the node's id from its shutdown hook.
    pub on_shutdown: Option<mpsc::Sender<NodeId>>,
    /// Where the node keeps its state across restarts.
    pub persist: Option<std::path::PathBuf>,
    /// The node's clock (default: the OS clocks from its start).
    pub clock: Option<whisper_proto::driver::Clock>,
}

impl Spec {
    /// A node `id` on any loopback port, with fast reconnects.
    pub fn new(id: &str) -> Self {
        Self {
            id: NodeId::new(id.as_bytes().to_vec()).expect("test ids are 1..=64 bytes"),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            peers: Vec::new(),
            driver: fast_driver(),
            config: fast_config(),
            seed: 0,
            on_shutdown: None,
            persist: None,
            clock: None,
        }
    }

    /// Adds a peer to dial.
    pub fn peer(mut self, addr: SocketAddr) -> Self {
        self.peers.push(addr);
        self
    }

    /// Listens on `addr`.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }
}

/// Engine settings for tests: a G1 round with each dialed peer every 100 ms.
///
/// The per-peer allowance is raised far above the seed's 100 msg/s (burst 500): the
/// suites and the loopback bench push thousands of frames per second between two
/// nodes, which the default limiter would rightly throttle; likewise the 10 MiB/s
/// egress cap, which would otherwise be what the bench measures. Rate limiting has its own
/// tests (`tests/flow.rs`).
pub fn fast_config() -> Config {
    let config = Config::default();
    Config {
        gossip_interval: Duration::from_millis(100),
        rate_limit: whisper_proto::flow::token_bucket::RateLimitConfig {
            peer_per_sec: 1_000_000.0,
            peer_burst: 2_000_000.0,
            egress_bytes_per_sec: 1e12,
            egress_burst: 1e12,
            queue_threshold: 1 << 20,
            ..config.rate_limit
        },
        ..config
    }
}

/// Driver settings for tests: redial after 20 ms doubling to 200 ms, no breaker.
pub fn fast_driver() -> DriverConfig {
    DriverConfig {
        reconnect: RetryPolicy::new(50, Duration::from_millis(20), Duration::from_millis(200)),
        breaker_threshold: NonZeroU32::new(1_000).unwrap_or(NonZeroU32::MIN),
        dial_timeout: Duration::from_secs(2),
        close_linger: Duration::from_millis(500),
        ..DriverConfig::default()
    }
}

/// Starts a node of `kind`. Retries the bind a few times (a restarted node's port may
/// be busy for a moment).
pub fn start(kind: Kind, spec: &Spec) -> TestNode {
    let mut last = None;
    for _ in 0..20 {
        match TestNode::start(kind, spec) {
            Ok(node) => return node,
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{kind:?} node {} did not start: {last:?}", spec.id);
}

/// Runs `f` on a thread and fails if it has not finished within `limit`: a hung node
/// fails the test instead of hanging it.
pub fn with_deadline<F: FnOnce() + Send + 'static>(name: &str, limit: Duration, f: F) {
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            f();
            let _ = tx.send(());
        })
        .expect("spawn scenario thread");
    match rx.recv_timeout(limit) {
        Ok(()) => {
            let _ = thread.join();
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            // The scenario panicked: surface its message.
            if let Err(panic) = thread.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{name}: no result within {limit:?}"),
    }
}

/// Polls `cond` every 5 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if std::time::Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits for an event matching `pred` within `limit`, skipping others.
pub fn wait_event(
    node: &mut TestNode,
    limit: Duration,
    mut pred: impl FnMut(&Event) -> bool,
) -> Option<Event> {
    let end = std::time::Instant::now() + limit;
    loop {
        let left = end.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return None;
        }
        let event = node.next_event(left)?;
        if pred(&event) {
            return Some(event);
        }
    }
}

/// The settings of `spec` on a builder for any adapter.
fn builder<R: Default>(spec: &Spec) -> Builder<R> {
    let mut b = Builder::<R>::new(spec.id.clone())
        .config(spec.config.clone())
        .seed(spec.seed)
        .listen(spec.listen)
        .driver_config(spec.driver.clone())
        .frame_kind(KIND, 64 * 1024);
    for p in &spec.peers {
        b = b.peer(p.to_string());
    }
    if let Some(clock) = spec.clock {
        b = b.clock(clock);
    }
    if let Some(dir) = &spec.persist {
        b = b.persist(dir.clone());
    }
    if let Some(tx) = spec.on_shutdown.clone() {
        b = b.on_shutdown(move |engine: &mut whisper_proto::Engine, _| {
            let _ = tx.send(engine.node_id().clone());
        });
    }
    b
}

fn tokio_rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

/// A running node of any adapter, driven from a blocking test thread: the same
/// [`Handle`] whichever adapter runs it (commands are `node.handle.X(…).wait()`), plus
/// what a test needs around it (event waits with a timeout, the mio thread).
#[derive(Debug)]
pub struct TestNode {
    kind: Kind,
    id: NodeId,
    /// The node's handle.
    pub handle: Handle,
    events: EventStream,
    messages: Vec<EventStream>,
    /// The mio loop's thread.
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl TestNode {
    fn start(kind: Kind, spec: &Spec) -> Result<Self, HandleError> {
        let (events, handle, thread) = match kind {
            Kind::Tokio => {
                let b = builder::<whisper_tokio::Tokio>(spec);
                (b.events(), tokio_rt().block_on(b.spawn())?, None)
            }
            Kind::Smol => {
                let b = builder::<whisper_smol::Smol>(spec);
                (b.events(), smol::block_on(b.spawn())?, None)
            }
            Kind::Mio => {
                let b = builder::<whisper_mio::Mio>(spec);
                let events = b.events();
                let (handle, thread) = b.spawn()?;
                (events, handle, Some(thread))
            }
        };
        Ok(Self {
            kind,
            id: spec.id.clone(),
            handle,
            events,
            messages: Vec::new(),
            thread,
        })
    }
}

impl TestNode {
    /// Its adapter.
    pub fn kind(&self) -> Kind {
        self.kind
    }
    /// Its id.
    pub fn id(&self) -> NodeId {
        self.id.clone()
    }
    /// Its listening address.
    pub fn addr(&self) -> SocketAddr {
        self.handle.local_addr().expect("listening")
    }
    /// Identified peers on live connections.
    pub fn peers(&self) -> Vec<NodeId> {
        self.peer_roles()
            .into_iter()
            .map(|(node, _)| node)
            .collect()
    }

    /// Identified peers on live connections, with who dialed.
    pub fn peer_roles(&self) -> Vec<(NodeId, Role)> {
        let peers = self.handle.peers().wait().unwrap_or_default();
        peers.into_iter().map(|p| (p.node, p.role)).collect()
    }
    /// The engine's counters.
    pub fn stats(&self) -> EngineStats {
        self.handle.stats().wait().expect("running")
    }
    /// The driver's counters.
    pub fn driver_stats(&self) -> DriverStats {
        self.handle.driver_stats().wait().expect("running")
    }
    /// Identified peers counted by a closure run on the engine.
    pub fn engine_peer_count(&self) -> usize {
        self.handle
            .with_engine(|e, _| e.peers().count())
            .wait()
            .expect("running")
    }
    /// The next event within `timeout`.
    pub fn next_event(&mut self, timeout: Duration) -> Option<Event> {
        let events = &mut self.events;
        future::block_on(future::or(events.next(), async {
            async_io::Timer::after(timeout).await;
            None
        }))
    }
    /// Subscribes to a BroadcastOnly topic; its messages come from [`TestNode::next_message`].
    pub fn subscribe(&mut self, topic: &str) -> Result<(), HandleError> {
        let stream = self.handle.subscribe(topic).wait()?;
        self.messages.push(stream);
        Ok(())
    }
    /// The next message of a subscribed topic within `timeout` (zero: only one already waiting).
    pub fn next_message(&mut self, timeout: Duration) -> Option<Event> {
        let end = std::time::Instant::now() + timeout;
        loop {
            for m in &mut self.messages {
                if let Some(e) = m.try_next() {
                    return Some(e);
                }
            }
            if std::time::Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    /// Sends a custom frame of kind [`KIND`].
    pub fn send_custom(&self, peer: &NodeId, body: Bytes) -> Result<(), HandleError> {
        self.handle.send_custom(peer.clone(), KIND, body).wait()
    }
    /// Sends a custom frame of kind [`KIND`] to every peer.
    pub fn broadcast_custom(&self, body: Bytes) -> Result<usize, HandleError> {
        self.handle.broadcast_custom(KIND, body).wait()
    }
    /// Registers a topic.
    pub fn register_topic(&self, name: &str, config: TopicConfig) -> Result<(), HandleError> {
        self.handle.register_topic(name, config).wait()
    }
    /// Publishes on a BroadcastOnly topic.
    pub fn publish(&self, topic: &str, payload: Bytes) -> Result<RumorId, HandleError> {
        self.handle.publish(topic, payload).wait()
    }
    /// Writes a record.
    pub fn put(&self, topic: &str, key: &[u8], value: &[u8]) -> Result<(), HandleError> {
        let (k, v) = (Bytes::copy_from_slice(key), Bytes::copy_from_slice(value));
        self.handle.put(topic, k, v).wait()
    }
    /// Queries a RequestResponse topic.
    pub fn query(
        &self,
        topic: &str,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<QueryOutcome, HandleError> {
        self.handle.query(topic, payload, timeout).wait()
    }

    /// Counters, members and stores.
    pub fn snapshot(&self) -> NodeSnapshot {
        self.handle.snapshot().wait().expect("running")
    }
    /// Publishes `payload` `count` times in one command (stops at the first error); returns how many were published.
    pub fn publish_batch(&self, topic: &str, payload: Bytes, count: usize) -> usize {
        let topic = topic.to_owned();
        let f = move |d: &mut whisper_proto::driver::Driver, now| {
            (0..count)
                .take_while(|_| d.publish(now, &topic, payload.clone()).is_ok())
                .count()
        };
        self.handle.with_driver(f).wait().unwrap_or(0)
    }
    /// Graceful shutdown; returns once the node has stopped.
    pub fn shutdown(mut self) {
        let _ = self.handle.shutdown().wait();
        if let Some(thread) = self.thread.take() {
            let result = thread.join().expect("mio loop panicked");
            result.expect("mio loop failed");
        }
    }
}
