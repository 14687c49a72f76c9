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
//!   [`ConnId`]s, opened with [`Engine::handle_connected`] and [`Identity::Hello`]; the
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

pub mod metrics;
pub mod net;
pub mod scenario;

use metrics::{DeliveryTracker, Metrics, Sample};
use net::{Link, LinkConfig, LinkMode, PartitionMode, split_frames};
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::fmt;
use whisper_proto::hypercube::{self, HypercubeExt, MemberInfo};
use whisper_proto::rng::{RandomSource, Rng};
use whisper_proto::wire::{RegisterError, WireConfig};
use whisper_proto::{
    Action, Bytes, Config, ConnId, Duration, Engine, Event, Identity, Instant, NodeId, Role,
};

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

/// The shape of the network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Topology {
    /// Every pair of nodes is linked.
    FullMesh,
    /// Exactly these undirected edges (node indices; duplicates and self-loops ignored).
    Edges(Vec<(usize, usize)>),
    /// Each node links to `k` distinct random others (edges are undirected, so the
    /// average degree is `2k`, the minimum `k`); a full mesh when `2k ≥ N − 1`.
    Random {
        /// Edges started per node.
        k: usize,
    },
    /// No links at all.
    None,
    /// The hypercube overlay: each node linked to its
    /// [`HypercubeExt::overlay_peers`] for the member list of all `N` nodes (default
    /// cube [`hypercube::Config`]), `O(log N)` links per node on average. Pair it with
    /// [`Sim::set_all_members`]: the engines route on that same list.
    Cube,
}

/// The id the simulator gives node `node`: `n` and 7 digits.
pub fn node_id(node: usize) -> NodeId {
    NodeId::new(Bytes::from(format!("n{node:07}"))).expect("INVARIANT: 8-byte ids are valid")
}

/// Every node of an `n`-node simulation as a hypercube member.
pub fn all_members(n: usize) -> Vec<MemberInfo> {
    (0..n).map(|i| MemberInfo::new(node_id(i))).collect()
}

impl Topology {
    /// The edges for `n` nodes, as `(a, b)` with `a < b`, deduplicated, in a
    /// deterministic order.
    pub fn edges(&self, n: usize, rng: &mut Rng) -> Vec<(usize, usize)> {
        let mut set = BTreeSet::new();
        match self {
            Self::FullMesh => (0..n)
                .flat_map(|a| (a + 1..n).map(move |b| (a, b)))
                .collect(),
            Self::None => Vec::new(),
            Self::Cube => {
                let members = all_members(n);
                let index: BTreeMap<NodeId, usize> =
                    members.iter().map(|m| m.id.clone()).zip(0..).collect();
                for a in 0..n {
                    let mut cube = HypercubeExt::new(node_id(a), hypercube::Config::default());
                    cube.rebuild(&members, Instant::ZERO)
                        .expect("INVARIANT: distinct simulator ids within the member cap");
                    for peer in cube.overlay_peers() {
                        let b = index[&peer];
                        set.insert((a.min(b), a.max(b)));
                    }
                }
                set.into_iter().collect()
            }
            Self::Edges(list) => {
                let mut out = Vec::new();
                for &(a, b) in list {
                    let e = (a.min(b), a.max(b));
                    if a != b && a < n && b < n && set.insert(e) {
                        out.push(e);
                    }
                }
                out
            }
            Self::Random { k } => {
                if 2 * k >= n.saturating_sub(1) {
                    return Self::FullMesh.edges(n, rng);
                }
                let mut out = Vec::with_capacity(n * k);
                for a in 0..n {
                    let mut made = 0;
                    let mut tries = 0;
                    while made < *k && tries < 64 * k {
                        tries += 1;
                        let b = rng.below(n as u64) as usize;
                        let e = (a.min(b), a.max(b));
                        if b != a && set.insert(e) {
                            out.push(e);
                            made += 1;
                        }
                    }
                }
                out
            }
        }
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
    /// Take a [`Sample`] this often (virtual time), for plots.
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

/// One recorded engine event.
#[derive(Clone, Debug, PartialEq)]
pub struct Recorded {
    /// Virtual time.
    pub at: Instant,
    /// Which node emitted it.
    pub node: usize,
    /// The event.
    pub event: Event,
}

#[derive(Debug)]
struct Node {
    id: NodeId,
    engine: Option<Engine>,
    /// Live connections of this node's engine → link index.
    conns: BTreeMap<ConnId, usize>,
    /// Every link this node is an end of.
    links: Vec<usize>,
    next_conn: u64,
    /// The deadline of this node's pending timer event.
    timer: Option<Instant>,
    /// Bumped at every crash and restart; older timer events are stale.
    incarnation: u32,
    /// Left the cluster for good.
    left: bool,
}

#[derive(Debug)]
enum Ev {
    Timer {
        node: usize,
        incarnation: u32,
        at: Instant,
    },
    Deliver {
        link: usize,
        generation: u32,
        to: usize,
        bytes: Bytes,
    },
    Disconnect {
        node: usize,
        incarnation: u32,
        conn: ConnId,
    },
    Connect {
        link: usize,
    },
    Sample,
}

#[derive(Debug)]
struct Queued {
    at: Instant,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    /// Reversed, so that [`BinaryHeap`] pops the earliest `(at, seq)` first.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// The simulator. `A` is the run's application ([`App`]); `()` does nothing.
pub struct Sim<A: App = ()> {
    config: SimConfig,
    seed: u64,
    rng: Rng,
    now: Instant,
    start: Instant,
    seq: u64,
    queue: BinaryHeap<Queued>,
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
    trace: u64,
    processed: u64,
    last_sample: (u64, u64),
    progress: Option<Progress>,
    app: A,
}

#[derive(Debug)]
struct Progress {
    end: Instant,
    shown: u32,
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
            seq: 0,
            queue: BinaryHeap::new(),
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
            trace: 0xcbf2_9ce4_8422_2325,
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

    /// The counters so far (their span is the virtual time since the start).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The plain-text metrics table of the run so far.
    pub fn table(&self) -> String {
        let mut s = format!(
            "whisper-sim seed={} nodes={} links={} events={}\n",
            self.seed,
            self.nodes.len(),
            self.link_count(),
            self.processed
        );
        s.push_str(&self.metrics.table(self.alive()));
        if !self.deliveries.messages.is_empty() {
            let summary = self.deliveries.summary(
                self.alive().saturating_sub(1),
                self.metrics.payload().frames,
            );
            s.push_str(&format!("{summary}\n"));
        }
        s
    }

    /// Every recorded event, in order.
    pub fn events(&self) -> &[Recorded] {
        &self.events
    }

    /// One node's recorded events.
    pub fn events_of(&self, node: usize) -> impl Iterator<Item = &Recorded> + '_ {
        self.events.iter().filter(move |r| r.node == node)
    }

    /// The delivery tracker.
    pub fn deliveries(&self) -> &DeliveryTracker {
        &self.deliveries
    }

    /// The delivery tracker, for recording publishes.
    pub fn deliveries_mut(&mut self) -> &mut DeliveryTracker {
        &mut self.deliveries
    }

    /// The application.
    pub fn app(&self) -> &A {
        &self.app
    }

    /// The application, mutably.
    pub fn app_mut(&mut self) -> &mut A {
        &mut self.app
    }

    /// A hash of every processed event and emitted engine event with its virtual time:
    /// equal for equal seeds, almost surely different otherwise.
    pub fn trace_hash(&self) -> u64 {
        self.trace
    }

    /// Queue events processed so far.
    pub fn processed(&self) -> u64 {
        self.processed
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

    /// Splits the nodes into groups that cannot reach each other; nodes not listed form
    /// one more group. Links across break or go silent ([`SimConfig::partition_mode`]).
    pub fn partition(&mut self, groups: &[&[usize]]) {
        let mut g = vec![u32::MAX; self.nodes.len()];
        for (i, group) in groups.iter().enumerate() {
            for &n in *group {
                g[n] = i as u32;
            }
        }
        self.groups = Some(g);
        if self.config.partition_mode == PartitionMode::Break {
            for link in 0..self.links.len() {
                let l = &self.links[link];
                if !l.is_down() && !self.reachable(l.ends[0].node, l.ends[1].node) {
                    self.sever(link, Duration::ZERO);
                }
            }
        }
    }

    /// Ends every partition; links that are down are re-dialled.
    pub fn heal(&mut self) {
        self.groups = None;
        for link in 0..self.links.len() {
            self.maybe_reconnect(link);
        }
    }

    /// Crashes a node: its engine is dropped without a word; its peers see their
    /// connections break one latency later. Its links are re-dialled once it restarts.
    pub fn crash(&mut self, node: usize) {
        let n = &mut self.nodes[node];
        if n.engine.take().is_none() {
            return;
        }
        n.incarnation += 1;
        n.timer = None;
        n.conns.clear();
        let links = n.links.clone();
        for link in links {
            let side = self.links[link].side(node);
            if !self.links[link].ends[side].open {
                continue;
            }
            self.links[link].ends[side].open = false;
            self.metrics.link_breaks += 1;
            self.links[link].severed = true;
            let other = self.links[link].ends[1 - side];
            if other.open {
                let cfg = self.link_config(link, side);
                let at = self.now + cfg.latency.sample(&mut self.rng);
                self.push(
                    at,
                    Ev::Disconnect {
                        node: other.node,
                        incarnation: self.nodes[other.node].incarnation,
                        conn: other.conn,
                    },
                );
            } else {
                self.maybe_reconnect(link);
            }
        }
    }

    /// Restarts a crashed node with a fresh engine (same id, new seed from the run's
    /// RNG); its links are re-dialled.
    pub fn restart(&mut self, node: usize) {
        let seed = self.rng.next_u64();
        let (config, now) = (self.config.engine.clone(), self.now);
        self.restart_with(node, |id| {
            // INVARIANT: the simulator's engine config was validated at first use.
            Engine::new(id.clone(), config.clone(), seed, now).expect("valid engine config")
        });
    }

    /// Restarts a crashed node with the engine `restore` builds for its id (restoring
    /// whatever state the scenario persisted). Registered custom kinds are registered on
    /// it again; its links are re-dialled.
    pub fn restart_with(&mut self, node: usize, mut restore: impl FnMut(&NodeId) -> Engine) {
        if self.nodes[node].engine.is_some() || self.nodes[node].left {
            return;
        }
        let mut engine = restore(&self.nodes[node].id);
        for &(magic, max_len) in &self.kinds {
            // A restored engine may have registered it already.
            let _ = engine.register_frame_kind(magic, max_len);
        }
        let n = &mut self.nodes[node];
        n.engine = Some(engine);
        n.incarnation += 1;
        n.timer = None;
        self.rearm(node);
        for link in self.nodes[node].links.clone() {
            self.maybe_reconnect(link);
        }
    }

    /// A new node joins, linked to `neighbours`; returns its index.
    pub fn add_node(&mut self, neighbours: &[usize]) -> usize {
        let node = self.spawn_node();
        for &b in neighbours {
            if b != node && !self.nodes[b].left {
                let link = self.add_link(node, b);
                self.maybe_reconnect_after(link, Duration::ZERO);
            }
        }
        node
    }

    /// A node leaves for good: its engine closes every connection (peers get the close
    /// after the data in flight), then it is dropped; its links are never re-dialled.
    pub fn leave(&mut self, node: usize) {
        for &link in &self.nodes[node].links {
            self.links[link].active = false;
        }
        let conns: Vec<ConnId> = self.nodes[node].conns.keys().copied().collect();
        for conn in conns {
            self.with_engine(node, |e, now| e.close_connection(now, conn));
        }
        let n = &mut self.nodes[node];
        n.engine = None;
        n.left = true;
        n.incarnation += 1;
        n.timer = None;
        n.conns.clear();
    }

    // ---- running ---------------------------------------------------------------------

    /// Processes one queued event; `false` when the queue is empty.
    pub fn step(&mut self) -> bool {
        let Some(q) = self.queue.pop() else {
            return false;
        };
        self.now = self.now.max(q.at);
        self.processed += 1;
        self.process(q.ev);
        if self.progress.is_some() {
            self.draw_progress(false);
        }
        true
    }

    /// Processes every event up to and including `t`; virtual time ends at `t`.
    pub fn run_until(&mut self, t: Instant) {
        while self.queue.peek().is_some_and(|q| q.at <= t) {
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

    // ---- internals -------------------------------------------------------------------

    fn spawn_node(&mut self) -> usize {
        let node = self.nodes.len();
        let id = node_id(node);
        let seed = self.rng.next_u64();
        let mut engine = Engine::new(id.clone(), self.config.engine.clone(), seed, self.now)
            .expect("SimConfig::engine must be a valid engine Config");
        for &(magic, max_len) in &self.kinds {
            let _ = engine.register_frame_kind(magic, max_len);
        }
        self.nodes.push(Node {
            id,
            engine: Some(engine),
            conns: BTreeMap::new(),
            links: Vec::new(),
            next_conn: 1,
            timer: None,
            incarnation: 0,
            left: false,
        });
        self.metrics.ensure(node);
        if let Some(g) = self.groups.as_mut() {
            g.push(u32::MAX);
        }
        node
    }

    fn add_link(&mut self, a: usize, b: usize) -> usize {
        let key = (a.min(b), a.max(b));
        if let Some(&l) = self.edge_index.get(&key) {
            self.links[l].active = true;
            return l;
        }
        let (dialer, acceptor) = if self.nodes[a].id > self.nodes[b].id {
            (a, b)
        } else {
            (b, a)
        };
        let link = self.links.len();
        self.links.push(Link::new(dialer, acceptor));
        self.nodes[a].links.push(link);
        self.nodes[b].links.push(link);
        self.edge_index.insert(key, link);
        link
    }

    fn push(&mut self, at: Instant, ev: Ev) {
        self.seq += 1;
        self.queue.push(Queued {
            at: at.max(self.now),
            seq: self.seq,
            ev,
        });
    }

    fn mix(&mut self, words: &[u64]) {
        for w in words {
            for b in w.to_le_bytes() {
                self.trace ^= u64::from(b);
                self.trace = self.trace.wrapping_mul(0x0100_0000_01b3);
            }
        }
    }

    fn reachable(&self, a: usize, b: usize) -> bool {
        self.groups.as_ref().is_none_or(|g| g[a] == g[b])
    }

    fn link_config(&self, link: usize, from_side: usize) -> LinkConfig {
        let l = &self.links[link];
        let key = (l.ends[from_side].node, l.ends[1 - from_side].node);
        self.overrides
            .get(&key)
            .copied()
            .unwrap_or(self.config.link)
    }

    fn queue_connect(&mut self, link: usize, at: Instant) {
        if !self.links[link].connect_pending {
            self.links[link].connect_pending = true;
            self.push(at, Ev::Connect { link });
        }
    }

    /// Re-dials a down link after the reconnect delay, if it should be up.
    fn maybe_reconnect(&mut self, link: usize) {
        if let Some(d) = self.config.reconnect_delay {
            let jitter = self.rng.below(d.as_micros() as u64 + 1);
            self.maybe_reconnect_after(link, d + Duration::from_micros(jitter));
        }
    }

    fn maybe_reconnect_after(&mut self, link: usize, delay: Duration) {
        if self.can_connect(link) {
            self.queue_connect(link, self.now + delay);
        }
    }

    fn can_connect(&self, link: usize) -> bool {
        let l = &self.links[link];
        let (a, b) = (l.ends[0].node, l.ends[1].node);
        l.active
            && l.is_down()
            && self.nodes[a].engine.is_some()
            && self.nodes[b].engine.is_some()
            && self.reachable(a, b)
    }

    /// Tears a link down: nothing more is delivered; each open end is told after
    /// `after`.
    fn sever(&mut self, link: usize, after: Duration) {
        self.metrics.link_breaks += 1;
        self.links[link].severed = true;
        for side in 0..2 {
            let end = self.links[link].ends[side];
            if end.open {
                let incarnation = self.nodes[end.node].incarnation;
                self.push(
                    self.now + after,
                    Ev::Disconnect {
                        node: end.node,
                        incarnation,
                        conn: end.conn,
                    },
                );
            }
        }
    }

    fn process(&mut self, ev: Ev) {
        match ev {
            Ev::Timer {
                node,
                incarnation,
                at,
            } => {
                let n = &mut self.nodes[node];
                if n.incarnation != incarnation || n.timer != Some(at) {
                    return;
                }
                n.timer = None;
                if let Some(e) = n.engine.as_mut() {
                    e.handle_timeout(at);
                }
                self.mix(&[1, self.now.as_micros(), node as u64]);
                self.drain(node);
            }
            Ev::Deliver {
                link,
                generation,
                to,
                bytes,
            } => {
                let l = &self.links[link];
                let end = l.ends[to];
                if l.generation != generation || l.severed || !end.open {
                    self.metrics.frames_dropped += 1;
                    return;
                }
                self.mix(&[2, self.now.as_micros(), end.node as u64, bytes.len() as u64]);
                self.metrics.record_receive(end.node, bytes.len());
                if let Some(e) = self.nodes[end.node].engine.as_mut() {
                    // A protocol error closes the connection inside the engine, which
                    // queues Close: the drain below handles it.
                    let _ = e.handle_bytes(self.now, end.conn, &bytes);
                }
                self.drain(end.node);
            }
            Ev::Disconnect {
                node,
                incarnation,
                conn,
            } => {
                if self.nodes[node].incarnation != incarnation {
                    return;
                }
                let Some(link) = self.nodes[node].conns.remove(&conn) else {
                    return;
                };
                self.mix(&[3, self.now.as_micros(), node as u64]);
                let side = self.links[link].side(node);
                self.links[link].ends[side].open = false;
                if let Some(e) = self.nodes[node].engine.as_mut() {
                    e.handle_disconnected(self.now, conn);
                }
                self.drain(node);
                if self.links[link].is_down() {
                    self.maybe_reconnect(link);
                }
            }
            Ev::Connect { link } => {
                self.links[link].connect_pending = false;
                if !self.can_connect(link) {
                    return;
                }
                self.connect(link);
            }
            Ev::Sample => self.sample(),
        }
    }

    fn connect(&mut self, link: usize) {
        self.metrics.connects += 1;
        let now = self.now;
        let l = &mut self.links[link];
        l.generation += 1;
        l.severed = false;
        l.dirs = [net::Dir {
            busy_until: now,
            last_arrival: now,
        }; 2];
        let ends = l.ends;
        self.mix(&[4, now.as_micros(), link as u64]);
        for (side, role) in [(0, Role::Dialer), (1, Role::Acceptor)] {
            let node = ends[side].node;
            let n = &mut self.nodes[node];
            let conn = ConnId(n.next_conn);
            n.next_conn += 1;
            n.conns.insert(conn, link);
            self.links[link].ends[side].conn = conn;
            self.links[link].ends[side].open = true;
            let engine = n.engine.as_mut().expect("INVARIANT: can_connect checked");
            if engine
                .handle_connected(now, conn, role, Identity::Hello)
                .is_err()
            {
                // Refused (connection limit): the driver closes the socket.
                self.nodes[node].conns.remove(&conn);
                self.links[link].ends[side].open = false;
                self.sever(link, Duration::ZERO);
            }
        }
        self.drain(ends[0].node);
        self.drain(ends[1].node);
    }

    /// Drains every action of `node`'s engine, then re-arms its timer.
    fn drain(&mut self, node: usize) {
        loop {
            let Some(engine) = self.nodes[node].engine.as_mut() else {
                return;
            };
            let Some(action) = engine.poll_action() else {
                break;
            };
            match action {
                Action::Send { conn, bytes } => self.transmit(node, conn, bytes),
                Action::Close { conn, .. } => self.on_close(node, conn),
                Action::Emit(event) => self.on_event(node, event),
                _ => {}
            }
        }
        self.rearm(node);
    }

    fn rearm(&mut self, node: usize) {
        let n = &mut self.nodes[node];
        let want = n.engine.as_ref().and_then(Engine::poll_timeout);
        if want != n.timer {
            n.timer = want;
            if let Some(at) = want {
                let incarnation = n.incarnation;
                self.push(
                    at,
                    Ev::Timer {
                        node,
                        incarnation,
                        at,
                    },
                );
            }
        }
    }

    fn on_event(&mut self, node: usize, event: Event) {
        self.metrics.record_event(node, &event);
        let tag = match &event {
            Event::PeerUp { .. } => 10,
            Event::PeerDown { .. } => 11,
            Event::CustomFrame { .. } => 12,
            Event::FrameError { .. } => 13,
            _ => 19,
        };
        self.mix(&[tag, self.now.as_micros(), node as u64]);
        let Self {
            nodes,
            app,
            deliveries,
            now,
            ..
        } = self;
        let n = &mut nodes[node];
        if let Some(engine) = n.engine.as_mut() {
            let mut cx = NodeCx {
                node,
                id: &n.id,
                now: *now,
                engine,
                deliveries,
            };
            app.on_event(&mut cx, &event);
        }
        if self.config.record_events {
            self.events.push(Recorded {
                at: self.now,
                node,
                event,
            });
        }
    }

    /// The engine closed `conn`: the peer sees the close after the data in flight.
    fn on_close(&mut self, node: usize, conn: ConnId) {
        let Some(link) = self.nodes[node].conns.remove(&conn) else {
            return;
        };
        let side = self.links[link].side(node);
        self.links[link].ends[side].open = false;
        let other = self.links[link].ends[1 - side];
        // Across a blackhole partition the close never arrives: the peer times out.
        if other.open && !self.links[link].severed && self.reachable(node, other.node) {
            let cfg = self.link_config(link, side);
            let dir = &mut self.links[link].dirs[side];
            let at = (self.now + cfg.latency.sample(&mut self.rng)).max(dir.last_arrival);
            dir.last_arrival = at;
            let incarnation = self.nodes[other.node].incarnation;
            self.push(
                at,
                Ev::Disconnect {
                    node: other.node,
                    incarnation,
                    conn: other.conn,
                },
            );
        } else if self.links[link].is_down() {
            self.maybe_reconnect(link);
        }
    }

    fn transmit(&mut self, node: usize, conn: ConnId, bytes: Bytes) {
        let frames = split_frames(&self.observer, &bytes);
        for (kind, f) in &frames {
            self.metrics.record_send(node, *kind, f.len());
        }
        let Some(&link) = self.nodes[node].conns.get(&conn) else {
            self.metrics.frames_dropped += frames.len() as u64;
            return;
        };
        let side = self.links[link].side(node);
        let peer = self.links[link].ends[1 - side].node;
        if self.links[link].severed || !self.reachable(node, peer) {
            self.metrics.frames_dropped += frames.len() as u64;
            return;
        }
        let cfg = self.link_config(link, side);
        let generation = self.links[link].generation;
        let to = 1 - side;
        match cfg.mode {
            LinkMode::Stream => {
                if cfg.loss > 0.0 && self.rng.unit_f64() < cfg.loss {
                    // A stream cannot lose a write and go on: the connection breaks.
                    self.metrics.frames_dropped += frames.len() as u64;
                    self.sever(link, Duration::ZERO);
                    return;
                }
                let latency = cfg.latency.sample(&mut self.rng);
                let dir = &mut self.links[link].dirs[side];
                dir.busy_until = dir.busy_until.max(self.now) + cfg.serialisation(bytes.len());
                let at = (dir.busy_until + latency).max(dir.last_arrival);
                dir.last_arrival = at;
                self.push(
                    at,
                    Ev::Deliver {
                        link,
                        generation,
                        to,
                        bytes,
                    },
                );
            }
            LinkMode::Frames => {
                for (_, frame) in frames {
                    if cfg.loss > 0.0 && self.rng.unit_f64() < cfg.loss {
                        self.metrics.frames_dropped += 1;
                        continue;
                    }
                    let copies = if cfg.duplicate > 0.0 && self.rng.unit_f64() < cfg.duplicate {
                        self.metrics.frames_duplicated += 1;
                        2
                    } else {
                        1
                    };
                    for _ in 0..copies {
                        let latency = cfg.latency.sample(&mut self.rng);
                        let jitter = self.rng.below(cfg.reorder.as_micros() as u64 + 1);
                        let dir = &mut self.links[link].dirs[side];
                        dir.busy_until =
                            dir.busy_until.max(self.now) + cfg.serialisation(frame.len());
                        let at = dir.busy_until + latency + Duration::from_micros(jitter);
                        dir.last_arrival = dir.last_arrival.max(at);
                        self.push(
                            at,
                            Ev::Deliver {
                                link,
                                generation,
                                to,
                                bytes: frame.clone(),
                            },
                        );
                    }
                }
            }
        }
    }

    fn sample(&mut self) {
        let peers = self
            .nodes
            .iter()
            .filter_map(|n| n.engine.as_ref())
            .map(|e| e.stats().peers as u64)
            .sum();
        let total = self.metrics.total();
        let (f0, b0) = self.last_sample;
        self.metrics.samples.push(Sample {
            at: self.now,
            peers,
            frames: total.frames - f0,
            bytes: total.bytes - b0,
        });
        self.last_sample = (total.frames, total.bytes);
        if let Some(every) = self.config.sample_every {
            self.push(self.now + every, Ev::Sample);
        }
    }

    fn draw_progress(&mut self, done: bool) {
        let Some(p) = self.progress.as_mut() else {
            return;
        };
        let end = p.end.as_micros().max(1);
        let pct = ((self.now.as_micros().min(end) * 100) / end) as u32;
        if pct <= p.shown && !done && p.shown != 0 {
            return;
        }
        p.shown = pct.max(1);
        let filled = (pct / 2) as usize;
        eprint!(
            "\r[{}{}] {:>3}% virtual {:>8.1} s, {} events",
            "#".repeat(filled),
            ".".repeat(50 - filled),
            pct,
            self.now.as_micros() as f64 / 1e6,
            self.processed
        );
        if done {
            eprintln!();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_orders_by_time_then_sequence() {
        let mut h = BinaryHeap::new();
        for (at, seq) in [(5, 1), (3, 2), (5, 0), (3, 3)] {
            h.push(Queued {
                at: Instant::from_micros(at),
                seq,
                ev: Ev::Sample,
            });
        }
        let order: Vec<_> =
            std::iter::from_fn(|| h.pop().map(|q| (q.at.as_micros(), q.seq))).collect();
        assert_eq!(order, [(3, 2), (3, 3), (5, 0), (5, 1)]);
    }

    #[test]
    fn random_topology_has_exact_edge_count() {
        let mut rng = Rng::new(3);
        let e = Topology::Random { k: 4 }.edges(1000, &mut rng);
        assert_eq!(e.len(), 4000);
        assert!(e.iter().all(|&(a, b)| a < b));
        assert_eq!(Topology::FullMesh.edges(5, &mut rng).len(), 10);
    }
}
