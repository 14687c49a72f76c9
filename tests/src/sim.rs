//! A deterministic discrete-event simulator of N whisper engines, driven only through
//! `whisper-proto`'s public API.
//!
//! # Model
//! - **One queue, one RNG.** Events are ordered by `(virtual Instant, sequence number)`;
//!   all randomness (latencies, loss, topology, engine seeds) comes from one
//!   [`Rng`] seeded by the run's seed. The same seed gives the same run, byte for byte.
//! - **Engines.** Each node owns one [`Engine`]. After every input the simulator drains
//!   [`Engine::poll_action`] completely, then keeps exactly one pending timer event per
//!   node at [`Engine::poll_timeout`], re-scheduled whenever the deadline changes, and
//!   calls [`Engine::handle_timeout`] exactly at that deadline.
//! - **Links.** Every edge of the [`Topology`] is one connection between two engine-side
//!   [`ConnId`](whisper_proto::ConnId)s, opened with [`Engine::handle_connected`] and
//!   [`Identity::Hello`](whisper_proto::Identity::Hello); the
//!   node with the higher [`NodeId`] dials. The link model (latency, loss, duplication,
//!   reordering, bandwidth) lives in [`net`]. A link that goes down is re-dialled after
//!   [`SimConfig::reconnect_delay`] while both nodes are alive and can reach each other.
//! - **Faults.** [`Sim::partition`] / [`Sim::heal`], [`Sim::crash`] / [`Sim::restart`]
//!   (or [`Sim::restart_with`] and a hook that restores persisted state), and churn with
//!   [`Sim::add_node`] / [`Sim::leave`].
//! - **Observation.** [`Sim::metrics`] counts every frame sent, by node and kind
//!   ([`metrics`]); every [`Event`] is recorded with its node and virtual time
//!   ([`Sim::events`]) and handed to the run's [`App`], which can react by calling engine
//!   commands. [`Sim::deliveries_mut`] is a protocol-agnostic
//!   [`DeliveryTracker`] for missed count, RMR, LDH and time to
//!   full delivery.
//! - **Drivers.** [`driver::DriverSim`] runs the same queue, RNG, link model and
//!   metrics with a [`Driver`](whisper_proto::driver::Driver) per node instead of a
//!   bare engine: dials to virtual addresses, reconnect backoff, the dial tie-break and
//!   bounded write queues under crashes and stalled readers.
//!
//! The code is split by concern: `queue` (the event queue and trace hash shared by
//! both simulators), `topology`, `nodes` (node and link bookkeeping, event
//! processing), `faults`, `observe` (counters, events, samples), [`net`] (the link
//! model) and [`metrics`].
//!
//! A run's seed comes from `WHISPER_SEED` when set ([`seed_from_env`]); if anything
//! panics while a [`Sim`] is alive, it prints the seed to stderr, and [`sim_assert!`](crate::sim_assert)
//! puts the seed into the assertion message itself.
//!
//! # Adding a scenario
//! 1. Write a function in [`scenario`] that takes [`scenario::Opts`], builds a [`Sim`]
//!    (with an [`App`] when the scenario reacts to events), drives it with
//!    [`Sim::run_until`] / [`Sim::run_for`], commands through [`Sim::with_engine`] and
//!    faults, and returns the finished `Sim` (or a struct holding it and the figures).
//! 2. For broadcast experiments: when a message is published, call
//!    `deliveries_mut().record_publish(origin, id, now)`; in [`App::on_event`], on the
//!    engine's delivery event, call `cx.deliveries.record_delivery(cx.node, id, hop,
//!    cx.now)`. Then [`DeliveryTracker::summary`](metrics::DeliveryTracker::summary)
//!    with `N − 1` receivers and the run's payload frames (for example
//!    `metrics().kind(FrameKind::Rumor).frames`) gives missed, RMR and LDH.
//! 3. Add its name to `scenario::run_named` so `simulate --scenario NAME` finds it, and
//!    assert its counts in `tests/tests/sim.rs` (counts and virtual times only, never
//!    wall time).
//!
//! ```
//! use whisper_tests::sim::{Sim, SimConfig, Topology};
//! let mut sim = Sim::new(4, &Topology::FullMesh, SimConfig::default(), 7);
//! sim.run_for(whisper_proto::Duration::from_secs(1));
//! assert!((0..4).all(|n| sim.peers(n) == 3));
//! assert_eq!(sim.metrics().kind(whisper_tests::sim::metrics::FrameKind::Hello).frames, 12);
//! ```

pub mod driver;
pub mod metrics;
pub mod net;
pub mod scenario;

mod faults;
mod nodes;
mod observe;
mod queue;
mod topology;

pub use observe::Recorded;
pub use topology::{Topology, all_members, node_id};

use faults::reachable_in;
use metrics::{DeliveryTracker, Metrics};
use net::{Link, LinkConfig, PartitionMode};
use nodes::Node;
use observe::Progress;
use queue::{Ev, EventQueue, Trace};
use std::collections::BTreeMap;
use std::fmt;
use whisper_proto::rng::{RandomSource, Rng};
use whisper_proto::wire::{RegisterError, WireConfig};
use whisper_proto::{Config, Duration, Engine, Event, Instant, NodeId};

/// Asserts a condition inside a simulation; the message carries the run's seed.
///
/// `sim_assert!(seed, cond)` or `sim_assert!(seed, cond, "format", args…)`.
#[macro_export]
macro_rules! sim_assert {
    ($seed:expr, $cond:expr $(,)?) => {
        assert!($cond, "{} (WHISPER_SEED={})", stringify!($cond), $seed)
    };
    ($seed:expr, $cond:expr, $($arg:tt)+) => {
        assert!($cond, "{} (WHISPER_SEED={})", format_args!($($arg)+), $seed)
    };
}

/// Asserts equality inside a simulation; the message carries the run's seed.
#[macro_export]
macro_rules! sim_assert_eq {
    ($seed:expr, $left:expr, $right:expr $(,)?) => {
        assert_eq!($left, $right, "WHISPER_SEED={}", $seed)
    };
    ($seed:expr, $left:expr, $right:expr, $($arg:tt)+) => {
        assert_eq!($left, $right, "{} (WHISPER_SEED={})", format_args!($($arg)+), $seed)
    };
}

/// The seed from env `WHISPER_SEED` (decimal or `0x` hex) when set, else `default`.
///
/// # Panics
/// If `WHISPER_SEED` is set but is not a number.
pub fn seed_from_env(default: u64) -> u64 {
    match std::env::var("WHISPER_SEED") {
        Ok(s) => {
            let s = s.trim();
            let parsed = match s.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => s.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("WHISPER_SEED={s:?} is not a u64"))
        }
        Err(_) => default,
    }
}

/// Simulator settings.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The configuration of every engine the simulator builds.
    pub engine: Config,
    /// The default link, both directions ([`Sim::set_link`] overrides per direction).
    pub link: LinkConfig,
    /// Delay before re-dialling a link that went down, plus a uniform jitter of up to
    /// the same again; `None` = never re-dial.
    pub reconnect_delay: Option<Duration>,
    /// Initial connects are spread uniformly over `0..=connect_spread`.
    pub connect_spread: Duration,
    /// What partitions do to links across.
    pub partition_mode: PartitionMode,
    /// Keep every [`Event`] in [`Sim::events`] (counters are kept regardless).
    pub record_events: bool,
    /// Take a [`Sample`](metrics::Sample) this often (virtual time), for plots.
    pub sample_every: Option<Duration>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            engine: Config::default(),
            link: LinkConfig::default(),
            reconnect_delay: Some(Duration::from_secs(1)),
            connect_spread: Duration::from_millis(100),
            partition_mode: PartitionMode::Break,
            record_events: true,
            sample_every: None,
        }
    }
}

/// The application side of a run: reacts to engine events by calling engine commands.
pub trait App {
    /// Called for every event any engine emits, right after it was counted and
    /// recorded. The simulator drains the engine's actions afterwards.
    fn on_event(&mut self, cx: &mut NodeCx<'_>, event: &Event) {
        let _ = (cx, event);
    }
}

impl App for () {}

/// What an [`App`] gets with each event.
#[derive(Debug)]
pub struct NodeCx<'a> {
    /// The node's index.
    pub node: usize,
    /// Its id.
    pub id: &'a NodeId,
    /// Virtual time.
    pub now: Instant,
    /// Its engine: commands go here.
    pub engine: &'a mut Engine,
    /// The run's delivery tracker.
    pub deliveries: &'a mut DeliveryTracker,
}

/// The simulator. `A` is the run's application ([`App`]); `()` does nothing.
pub struct Sim<A: App = ()> {
    config: SimConfig,
    seed: u64,
    rng: Rng,
    now: Instant,
    start: Instant,
    queue: EventQueue<Ev>,
    nodes: Vec<Node>,
    links: Vec<Link>,
    edge_index: BTreeMap<(usize, usize), usize>,
    overrides: BTreeMap<(usize, usize), LinkConfig>,
    kinds: Vec<(u16, u32)>,
    observer: WireConfig,
    groups: Option<Vec<u32>>,
    metrics: Metrics,
    deliveries: DeliveryTracker,
    events: Vec<Recorded>,
    trace: Trace,
    processed: u64,
    last_sample: (u64, u64),
    progress: Option<Progress>,
    app: A,
}

impl<A: App> fmt::Debug for Sim<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sim")
            .field("seed", &self.seed)
            .field("now", &self.now)
            .field("nodes", &self.nodes.len())
            .field("links", &self.links.len())
            .field("queued", &self.queue.len())
            .finish_non_exhaustive()
    }
}

impl Sim<()> {
    /// `n` nodes on `topology`, no application.
    pub fn new(n: usize, topology: &Topology, config: SimConfig, seed: u64) -> Self {
        Self::with_app(n, topology, config, seed, ())
    }
}

impl<A: App> Sim<A> {
    /// `n` nodes named `n0000000`, `n0000001`, … (so index order is id order) on
    /// `topology`; the initial connects are queued over
    /// [`SimConfig::connect_spread`] from time zero.
    pub fn with_app(n: usize, topology: &Topology, config: SimConfig, seed: u64, app: A) -> Self {
        let mut sim = Self {
            config,
            seed,
            rng: Rng::new(seed),
            now: Instant::ZERO,
            start: Instant::ZERO,
            queue: EventQueue::default(),
            nodes: Vec::with_capacity(n),
            links: Vec::new(),
            edge_index: BTreeMap::new(),
            overrides: BTreeMap::new(),
            kinds: Vec::new(),
            observer: WireConfig::default(),
            groups: None,
            metrics: Metrics::default(),
            deliveries: DeliveryTracker::default(),
            events: Vec::new(),
            trace: Trace::default(),
            processed: 0,
            last_sample: (0, 0),
            progress: None,
            app,
        };
        for _ in 0..n {
            sim.spawn_node();
        }
        let edges = topology.edges(n, &mut sim.rng);
        for (a, b) in edges {
            sim.add_link(a, b);
        }
        let spread = sim.config.connect_spread.as_micros() as u64;
        for link in 0..sim.links.len() {
            let at = Instant::from_micros(sim.rng.below(spread + 1));
            sim.queue_connect(link, at);
        }
        if let Some(every) = sim.config.sample_every {
            sim.push(Instant::ZERO + every, Ev::Sample);
        }
        sim
    }

    // ---- getters ---------------------------------------------------------------------

    /// The run's seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The simulator settings.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// Virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Nodes ever created (crashed and departed ones included).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Nodes with a running engine.
    pub fn alive(&self) -> usize {
        self.nodes.iter().filter(|n| n.engine.is_some()).count()
    }

    /// Whether `node` has a running engine.
    pub fn is_alive(&self, node: usize) -> bool {
        self.nodes[node].engine.is_some()
    }

    /// A node's id.
    pub fn node_id(&self, node: usize) -> &NodeId {
        &self.nodes[node].id
    }

    /// The index of the node with this id.
    pub fn node_index(&self, id: &NodeId) -> Option<usize> {
        self.nodes.iter().position(|n| &n.id == id)
    }

    /// A node's engine, when it is running.
    pub fn engine(&self, node: usize) -> Option<&Engine> {
        self.nodes[node].engine.as_ref()
    }

    /// Identified peers of a node's engine (0 when it is down).
    pub fn peers(&self, node: usize) -> usize {
        self.engine(node).map_or(0, |e| e.stats().peers)
    }

    /// The nodes linked to `node` in the topology (whether or not connected now).
    pub fn neighbours(&self, node: usize) -> Vec<usize> {
        self.nodes[node]
            .links
            .iter()
            .filter(|&&l| self.links[l].active)
            .map(|&l| {
                let link = &self.links[l];
                link.ends[1 - link.side(node)].node
            })
            .collect()
    }

    /// Links in the topology (departed nodes' links excluded).
    pub fn link_count(&self) -> usize {
        self.links.iter().filter(|l| l.active).count()
    }

    /// Links whose both ends are connected now.
    pub fn links_up(&self) -> usize {
        self.links
            .iter()
            .filter(|l| l.ends[0].open && l.ends[1].open && !l.severed)
            .count()
    }

    // ---- configuration and commands --------------------------------------------------

    /// Registers a custom frame kind on every engine, present and future (restarted and
    /// joining ones too), and on the simulator's frame observer.
    pub fn register_frame_kind(&mut self, magic: u16, max_len: u32) -> Result<(), RegisterError> {
        self.observer.register_custom(magic, max_len)?;
        self.kinds.push((magic, max_len));
        for node in &mut self.nodes {
            if let Some(e) = node.engine.as_mut() {
                e.register_frame_kind(magic, max_len)?;
            }
        }
        Ok(())
    }

    /// Gives every live engine the member list of all nodes
    /// ([`Engine::set_members`]), as a deployment that knows its members would: the
    /// rumor pusher then routes on the same cube everywhere, whatever the links. Use
    /// it with [`Topology::Cube`]. A restarted engine needs it again.
    pub fn set_all_members(&mut self) {
        let members = all_members(self.nodes.len());
        for node in 0..self.nodes.len() {
            if let Some(result) = self.with_engine(node, |e, now| e.set_members(now, &members)) {
                result.expect("INVARIANT: distinct simulator ids within the member cap");
            }
        }
    }

    /// Sets the default link for both directions of every link without an override.
    pub fn set_default_link(&mut self, config: LinkConfig) {
        self.config.link = config;
    }

    /// Overrides the link model for traffic from `from` to `to`.
    pub fn set_link(&mut self, from: usize, to: usize, config: LinkConfig) {
        self.overrides.insert((from, to), config);
    }

    /// Draws a progress bar on stderr as virtual time approaches `end`.
    pub fn show_progress(&mut self, end: Instant) {
        self.progress = Some(Progress { end, shown: 0 });
    }

    /// Runs `f` on a node's engine at the current virtual time, then drains its actions.
    /// `None` when the node is down.
    pub fn with_engine<R>(
        &mut self,
        node: usize,
        f: impl FnOnce(&mut Engine, Instant) -> R,
    ) -> Option<R> {
        let now = self.now;
        let r = f(self.nodes[node].engine.as_mut()?, now);
        self.drain(node);
        Some(r)
    }

    // ---- running ---------------------------------------------------------------------

    /// Processes one queued event; `false` when the queue is empty.
    pub fn step(&mut self) -> bool {
        let Some((at, ev)) = self.queue.pop() else {
            return false;
        };
        self.now = self.now.max(at);
        self.processed += 1;
        self.process(ev);
        if self.progress.is_some() {
            self.draw_progress(false);
        }
        true
    }

    /// Processes every event up to and including `t`; virtual time ends at `t`.
    pub fn run_until(&mut self, t: Instant) {
        while self.queue.next_at().is_some_and(|at| at <= t) {
            self.step();
        }
        self.now = self.now.max(t);
        self.metrics.span = self.now.saturating_duration_since(self.start);
        if self.progress.is_some() {
            self.draw_progress(false);
        }
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    /// Finishes the progress bar, if one is shown.
    pub fn finish_progress(&mut self) {
        if self.progress.is_some() {
            self.draw_progress(true);
            self.progress = None;
        }
    }
}

impl<A: App> Drop for Sim<A> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "whisper-sim: failed at virtual {:?} with WHISPER_SEED={}",
                self.now, self.seed
            );
        }
    }
}
