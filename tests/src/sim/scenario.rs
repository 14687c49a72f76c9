//! Ready-made scenarios, shared by `tests/tests/sim.rs` (which asserts their counts)
//! and the `simulate` binary (which prints their tables and plots).
//!
//! Each scenario takes [`Opts`] and returns the finished [`Sim`] (inside a struct when
//! it has figures of its own): HELLO meshes, idle cost, partitions and crashes with a
//! StatefulMerge store, a toy flood over custom frames, and rumor broadcasts and record
//! pushes over the engine's hypercube pusher. The driver-level scenarios (reconnect
//! storm, simultaneous dials, stalled reader, restart with persisted state) are in [`driver`], on
//! [`DriverSim`](super::driver::DriverSim).

pub mod driver;

use super::metrics::{DeliverySummary, FrameKind, Metrics};
use super::net::LinkConfig;
use super::{App, NodeCx, Sim, SimConfig, Topology};
use std::collections::{BTreeMap, BTreeSet};
use whisper_proto::rng::{RandomSource, Rng};
use whisper_proto::{
    Bytes, ConnId, Duration, Engine, Event, Instant, MemStore, StateStore, TopicConfig,
};

/// Options every scenario takes.
#[derive(Clone, Debug)]
pub struct Opts {
    /// Number of nodes.
    pub nodes: usize,
    /// The run's seed.
    pub seed: u64,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// Sample the time series this often (for plots).
    pub sample_every: Option<Duration>,
}

impl Opts {
    /// `nodes` nodes, seed `seed`, quiet, no sampling.
    pub fn new(nodes: usize, seed: u64) -> Self {
        Self {
            nodes,
            seed,
            progress: false,
            sample_every: None,
        }
    }

    /// The simulator config these options imply.
    pub fn sim_config(&self) -> SimConfig {
        SimConfig {
            sample_every: self.sample_every,
            ..SimConfig::default()
        }
    }

    fn start<A: App>(&self, sim: &mut Sim<A>, end: Instant) {
        if self.progress {
            sim.show_progress(end);
        }
    }
}

/// Virtual seconds as an [`Instant`].
fn secs(s: u64) -> Instant {
    Instant::from_secs(s)
}

/// (a) A full mesh comes up: every HELLO completes. Runs 5 virtual seconds.
pub fn hello_mesh(opts: &Opts) -> Sim {
    let mut sim = Sim::new(
        opts.nodes,
        &Topology::FullMesh,
        opts.sim_config(),
        opts.seed,
    );
    opts.start(&mut sim, secs(5));
    sim.run_until(secs(5));
    sim.finish_progress();
    sim
}

/// The result of [`idle`].
#[derive(Debug)]
pub struct Idle {
    /// The finished run.
    pub sim: Sim,
    /// The counters of the measured window only.
    pub window: Metrics,
}

impl Idle {
    /// Mean keepalive (and any other) bytes per node per virtual second in the window.
    pub fn bytes_per_node_per_sec(&self) -> f64 {
        self.window.bytes_per_node_per_sec(self.sim.alive())
    }
}

/// (b) Idle cost: a random topology of average degree `degree`, every node with the
/// StatefulMerge topic [`KV`]; node 0 writes 10 keys at 1 s. After a 120 s warm-up
/// (every store the same), counts 10 virtual minutes of idle traffic: G2 probes that
/// match, and keepalives.
pub fn idle(opts: &Opts, degree: usize) -> Idle {
    let topo = Topology::Random {
        k: (degree / 2).max(1),
    };
    let mut sim = Sim::new(opts.nodes, &topo, opts.sim_config(), opts.seed);
    for i in 0..opts.nodes {
        sim.with_engine(i, |e, _| register_kv(e));
    }
    let (warm, end) = (secs(120), secs(720));
    opts.start(&mut sim, end);
    sim.run_until(secs(1));
    for k in 0..10 {
        kv_put(&mut sim, 0, &format!("idle-{k}"), "v");
    }
    sim.run_until(warm);
    let before = sim.metrics().clone();
    sim.run_until(end);
    sim.finish_progress();
    let window = sim.metrics().since(&before);
    Idle { sim, window }
}

/// The StatefulMerge topic of the store scenarios.
pub const KV: &str = "kv";

/// Registers [`KV`] with a fresh [`MemStore`] on `engine`.
pub fn register_kv(engine: &mut Engine) {
    let store = MemStore::new(engine.node_id().clone(), [7; 32]);
    register_kv_with(engine, store);
}

/// Registers [`KV`] on `engine` over `store` (a restored one, say).
pub fn register_kv_with(engine: &mut Engine, store: MemStore) {
    engine
        .register_topic(KV, TopicConfig::stateful(store))
        .expect("INVARIANT: KV is registered once per engine");
}

/// `(fingerprint, records)` of node `node`'s [`KV`] store (`None`: down or no topic).
pub fn kv_state<A: App>(sim: &Sim<A>, node: usize) -> Option<(u64, usize)> {
    let store = sim.engine(node)?.mem_store(KV)?;
    Some((store.fingerprint(), store.len()))
}

/// Whether every live node holds the same [`KV`] store.
pub fn kv_converged<A: App>(sim: &Sim<A>) -> bool {
    let mut states = (0..sim.len()).filter_map(|i| kv_state(sim, i));
    let Some(first) = states.next() else {
        return true;
    };
    states.all(|s| s == first)
}

/// Runs in steps of `step` until every live store is the same or `deadline` passes;
/// returns when it converged.
fn run_until_converged<A: App>(
    sim: &mut Sim<A>,
    step: Duration,
    deadline: Instant,
) -> Option<Instant> {
    loop {
        if kv_converged(sim) {
            return Some(sim.now());
        }
        if sim.now() >= deadline {
            return None;
        }
        sim.run_for(step);
    }
}

/// Writes `key = value` on node `node`'s [`KV`] store.
fn kv_put<A: App>(sim: &mut Sim<A>, node: usize, key: &str, value: &str) {
    sim.with_engine(node, |e, now| {
        e.put(now, KV, key.as_bytes(), value.as_bytes())
    })
    .expect("INVARIANT: writers are live")
    .expect("INVARIANT: KV is registered and the write is within bounds");
}

/// Every `(key, value)` of `expected` missing (or different) on live node stores.
fn kv_missing<A: App>(sim: &Sim<A>, expected: &BTreeMap<String, String>) -> u64 {
    let mut missing = 0;
    for i in 0..sim.len() {
        let Some(store) = sim.engine(i).and_then(|e| e.mem_store(KV)) else {
            continue;
        };
        for (k, v) in expected {
            if store.get(k.as_bytes()).map(|b| &b[..]) != Some(v.as_bytes()) {
                missing += 1;
            }
        }
    }
    missing
}

/// The result of [`partition_heal`].
#[derive(Debug)]
pub struct PartitionHeal {
    /// The finished run.
    pub sim: Sim,
    /// The halves.
    pub halves: (Vec<usize>, Vec<usize>),
    /// Identified peers per node just before the heal.
    pub peers_partitioned: Vec<usize>,
    /// PeerDown events during the partition.
    pub downs_partitioned: u64,
    /// Writes made (each half its own keys, plus keys written on both sides).
    pub writes: usize,
    /// Whether each half agreed within itself just before the heal.
    pub halves_converged: bool,
    /// How long after the heal every store was the same (`None`: not within 5 rounds).
    pub converged_after: Option<Duration>,
    /// `(key, value)` pairs missing from some store at the end, over all nodes: a lost
    /// write. On keys written on both sides the later write must win everywhere.
    pub missing: u64,
    /// G1 frames sent from the heal to convergence.
    pub g1_frames: u64,
}

impl PartitionHeal {
    /// Convergence time in gossip rounds (the base interval), rounded up.
    pub fn rounds(&self) -> Option<u64> {
        let round = self.sim.config().engine.gossip_interval.as_micros().max(1);
        self.converged_after
            .map(|d| (d.as_micros()).div_ceil(round) as u64)
    }
}

/// (c) A full mesh with a StatefulMerge topic splits into two halves at 5 s (links across
/// break). Until 13 s each half writes 20 keys of its own from random members, and 10
/// keys are written on both sides (the second half later, so its value must win). It
/// heals at 15 s and runs until every store is the same (at most 5 gossip rounds), then
/// 5 s more.
pub fn partition_heal(opts: &Opts) -> PartitionHeal {
    let n = opts.nodes;
    let mut sim = Sim::new(n, &Topology::FullMesh, opts.sim_config(), opts.seed);
    for i in 0..n {
        sim.with_engine(i, |e, _| register_kv(e));
    }
    let round = sim.config().engine.gossip_interval;
    opts.start(&mut sim, secs(15) + round * 5 + Duration::from_secs(5));
    sim.run_until(secs(5));
    let downs0 = sim.metrics().peer_downs();
    let a: Vec<usize> = (0..n / 2).collect();
    let b: Vec<usize> = (n / 2..n).collect();
    sim.partition(&[&a, &b]);
    let mut pick = Rng::new(opts.seed ^ 0x9a27_1710);
    let mut expected = BTreeMap::new();
    let mut writes = 0;
    // 5..11 s: 20 own keys per half; 11..13 s: 10 keys written on both sides.
    for w in 0..40 {
        sim.run_for(Duration::from_millis(150));
        let (half, tag) = if w % 2 == 0 { (&a, "a") } else { (&b, "b") };
        let node = half[pick.below(half.len() as u64) as usize];
        let (key, value) = (format!("{tag}-{}", w / 2), format!("from {node}"));
        kv_put(&mut sim, node, &key, &value);
        expected.insert(key, value);
        writes += 1;
    }
    for k in 0..10 {
        sim.run_for(Duration::from_millis(100));
        let (x, y) = (a[k % a.len()], b[k % b.len()]);
        kv_put(&mut sim, x, &format!("both-{k}"), &format!("a {x}"));
        sim.run_for(Duration::from_millis(100));
        let value = format!("b {y}");
        kv_put(&mut sim, y, &format!("both-{k}"), &value);
        expected.insert(format!("both-{k}"), value);
        writes += 2;
    }
    sim.run_until(secs(15));
    let peers_partitioned = (0..n).map(|i| sim.peers(i)).collect();
    let downs_partitioned = sim.metrics().peer_downs() - downs0;
    let agree = |sim: &Sim, half: &[usize]| {
        let first = kv_state(sim, half[0]);
        half.iter().all(|&i| kv_state(sim, i) == first)
    };
    let halves_converged = agree(&sim, &a) && agree(&sim, &b);
    let healed = sim.now();
    let g1_before = sim.metrics().kind(FrameKind::Exchange).frames;
    sim.heal();
    let at = run_until_converged(&mut sim, Duration::from_millis(100), healed + round * 5);
    let g1_frames = sim.metrics().kind(FrameKind::Exchange).frames - g1_before;
    sim.run_for(Duration::from_secs(5));
    sim.finish_progress();
    let missing = kv_missing(&sim, &expected);
    PartitionHeal {
        sim,
        halves: (a, b),
        peers_partitioned,
        downs_partitioned,
        writes,
        halves_converged,
        converged_after: at.map(|t| t.saturating_duration_since(healed)),
        missing,
        g1_frames,
    }
}

/// The result of [`crash_restart`].
#[derive(Debug)]
pub struct CrashRestart {
    /// The finished run.
    pub sim: Sim,
    /// The crashed (and restarted) nodes.
    pub crashed: Vec<usize>,
    /// Identified peers per node while they were down.
    pub peers_while_down: Vec<usize>,
    /// HELLO frames sent before the crash.
    pub hellos_before: u64,
    /// Times the restore hook ran with persisted state (even-numbered crashed nodes).
    pub restored: usize,
    /// Delta watermarks the restored nodes imported.
    pub watermarks_imported: usize,
    /// Writes made: 20 before the crash, 20 by survivors while the nodes were down.
    pub writes: usize,
    /// How long after the restart every store was the same (`None`: not within 5
    /// gossip rounds).
    pub caught_up_after: Option<Duration>,
    /// `(key, value)` pairs missing from some store at the end, over all nodes.
    pub missing: u64,
}

/// (d) A full mesh with a StatefulMerge topic. 20 writes from random nodes by 5 s; at
/// 5 s, `percent` % of the nodes (at least one) crash; survivors write 20 more keys;
/// at 10 s the crashed nodes restart: even-numbered ones restored from what they had
/// persisted at the crash (their store and their delta watermarks), the others empty.
/// Runs until every store is the same (at most 5 gossip rounds), then 5 s more.
pub fn crash_restart(opts: &Opts, percent: usize) -> CrashRestart {
    let n = opts.nodes;
    let mut sim = Sim::new(n, &Topology::FullMesh, opts.sim_config(), opts.seed);
    for i in 0..n {
        sim.with_engine(i, |e, _| register_kv(e));
    }
    let round = sim.config().engine.gossip_interval;
    opts.start(&mut sim, secs(10) + round * 5 + Duration::from_secs(5));
    let mut pick = Rng::new(opts.seed ^ 0x00c0_ffee);
    let mut expected = BTreeMap::new();
    let mut write = |sim: &mut Sim, pick: &mut Rng, key: String, among: &[usize]| {
        let node = among[pick.below(among.len() as u64) as usize];
        let value = format!("from {node}");
        kv_put(sim, node, &key, &value);
        expected.insert(key, value);
    };
    let everyone: Vec<usize> = (0..n).collect();
    sim.run_until(secs(1));
    for k in 0..20 {
        write(&mut sim, &mut pick, format!("before-{k}"), &everyone);
        sim.run_for(Duration::from_millis(200));
    }
    sim.run_until(secs(5));
    let hellos_before = sim.metrics().kind(FrameKind::Hello).frames;
    let mut crashed = BTreeSet::new();
    let want = (n * percent / 100).max(1).min(n);
    while crashed.len() < want {
        crashed.insert(pick.below(n as u64) as usize);
    }
    let crashed: Vec<usize> = crashed.into_iter().collect();
    // What each crashed node had persisted: its store and its delta watermarks.
    let mut persisted = BTreeMap::new();
    for &c in &crashed {
        let engine = sim.engine(c).expect("INVARIANT: live before the crash");
        let store = engine
            .mem_store(KV)
            .expect("INVARIANT: KV registered")
            .clone();
        persisted.insert(c, (store, engine.export_delta()));
        sim.crash(c);
    }
    let survivors: Vec<usize> = (0..n).filter(|i| !crashed.contains(i)).collect();
    for k in 0..20 {
        write(&mut sim, &mut pick, format!("while-down-{k}"), &survivors);
        sim.run_for(Duration::from_millis(200));
    }
    sim.run_until(secs(10));
    let peers_while_down = (0..n).map(|i| sim.peers(i)).collect();
    let config = sim.config().engine.clone();
    let (mut restored, mut watermarks_imported) = (0, 0);
    let restarted = sim.now();
    for &c in &crashed {
        let now = sim.now();
        let saved = persisted.remove(&c);
        sim.restart_with(c, |id| {
            let mut e =
                Engine::new(id.clone(), config.clone(), c as u64, now).expect("valid config");
            match (c % 2 == 0, &saved) {
                (true, Some((store, delta))) => {
                    restored += 1;
                    register_kv_with(&mut e, store.clone());
                    watermarks_imported += e.import_delta(now, delta, Duration::from_secs(3600));
                }
                _ => register_kv(&mut e),
            }
            e
        });
    }
    let at = run_until_converged(&mut sim, Duration::from_millis(100), restarted + round * 5);
    sim.run_for(Duration::from_secs(5));
    sim.finish_progress();
    let missing = kv_missing(&sim, &expected);
    CrashRestart {
        sim,
        crashed,
        peers_while_down,
        hellos_before,
        restored,
        watermarks_imported,
        writes: expected.len(),
        caught_up_after: at.map(|t| t.saturating_duration_since(restarted)),
        missing,
    }
}

/// The custom magic of the toy flood.
pub const FLOOD_MAGIC: u16 = 0x7f01;

/// A toy flood over custom frames: the first time a node sees a message it sends it to
/// all its peers. The body is `msg_id u64` + `hop u32` + padding.
#[derive(Clone, Debug)]
pub struct Flood {
    /// Messages each node has seen.
    pub seen: Vec<BTreeSet<u64>>,
    /// Body length (at least 12).
    pub body_len: usize,
}

impl Flood {
    /// A flood for `n` nodes with bodies of `body_len` bytes.
    pub fn new(n: usize, body_len: usize) -> Self {
        Self {
            seen: vec![BTreeSet::new(); n],
            body_len: body_len.max(12),
        }
    }

    /// Sends message `id` at hop `hop` to every identified peer of `engine`, with a
    /// body of `body_len` bytes (at least 12).
    pub fn send(engine: &mut Engine, now: Instant, id: u64, hop: u32, body_len: usize) {
        let mut body = vec![0u8; body_len.max(12)];
        body[..8].copy_from_slice(&id.to_be_bytes());
        body[8..12].copy_from_slice(&hop.to_be_bytes());
        let body = Bytes::from(body);
        let peers: Vec<ConnId> = engine.peers().map(|(c, _)| c).collect();
        for conn in peers {
            // A full action queue would be a driver bug: the simulator drains after
            // every call.
            engine
                .send_custom(now, conn, FLOOD_MAGIC, body.clone())
                .expect("INVARIANT: identified peer, registered kind, drained queue");
        }
    }

    fn parse(body: &[u8]) -> Option<(u64, u32)> {
        let id = u64::from_be_bytes(body.get(..8)?.try_into().ok()?);
        let hop = u32::from_be_bytes(body.get(8..12)?.try_into().ok()?);
        Some((id, hop))
    }
}

impl App for Flood {
    fn on_event(&mut self, cx: &mut NodeCx<'_>, event: &Event) {
        let Event::CustomFrame { magic, body, .. } = event else {
            return;
        };
        if *magic != FLOOD_MAGIC {
            return;
        }
        let Some((id, hop)) = Self::parse(body) else {
            return;
        };
        cx.deliveries.record_delivery(cx.node, id, hop + 1, cx.now);
        if self.seen.len() <= cx.node {
            self.seen.resize_with(cx.node + 1, BTreeSet::new);
        }
        if self.seen[cx.node].insert(id) {
            Self::send(cx.engine, cx.now, id, hop + 1, self.body_len);
        }
    }
}

/// The result of [`flood`].
#[derive(Debug)]
pub struct FloodRun {
    /// The finished run.
    pub sim: Sim<Flood>,
    /// Delivery figures (receivers = N − 1; payload = flood frames).
    pub summary: DeliverySummary,
    /// Flood frames sent.
    pub flood_frames: u64,
    /// Frames dropped by the links while flooding.
    pub dropped: u64,
}

/// (e) A toy flood in frame-loss mode: the topology comes up over lossless links in
/// 5 s; then every link switches to [`LinkConfig::frames`]`(loss)` and `messages`
/// messages are published from random origins, one every 500 ms; runs 5 s past the last.
pub fn flood(opts: &Opts, topology: &Topology, loss: f64, messages: u64) -> FloodRun {
    let n = opts.nodes;
    let mut sim = Sim::with_app(n, topology, opts.sim_config(), opts.seed, Flood::new(n, 64));
    sim.register_frame_kind(FLOOD_MAGIC, 1024)
        .expect("fresh simulator registers the flood kind");
    let end = secs(5) + Duration::from_millis(500 * messages) + Duration::from_secs(5);
    opts.start(&mut sim, end);
    sim.run_until(secs(5));
    let before = sim.metrics().clone();
    sim.set_default_link(LinkConfig::frames(loss));
    let mut pick = Rng::new(opts.seed ^ 0xf100d);
    for id in 0..messages {
        let origin = pick.below(n as u64) as usize;
        let now = sim.now();
        sim.deliveries_mut().record_publish(origin, id, now);
        sim.app_mut().seen[origin].insert(id);
        let body_len = sim.app().body_len;
        sim.with_engine(origin, |e, now| Flood::send(e, now, id, 0, body_len));
        sim.run_for(Duration::from_millis(500));
    }
    sim.run_until(end);
    sim.finish_progress();
    let window = sim.metrics().since(&before);
    let flood_frames = window.kind(FrameKind::Custom(FLOOD_MAGIC)).frames;
    let summary = sim.deliveries().summary(n - 1, flood_frames);
    FloodRun {
        dropped: window.frames_dropped,
        sim,
        summary,
        flood_frames,
    }
}

/// The [`App`] of [`broadcast`]: records every [`Event::Message`] delivery.
#[derive(Debug, Default)]
pub struct BroadcastApp;

/// The tracker key of a rumor id: its first 8 bytes.
pub fn msg_key(id: &whisper_proto::rumor::RumorId) -> u64 {
    let b = id.as_bytes();
    u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

impl App for BroadcastApp {
    fn on_event(&mut self, cx: &mut NodeCx<'_>, event: &Event) {
        if let Event::Message { id, hop, .. } = event {
            cx.deliveries
                .record_delivery(cx.node, msg_key(id), u32::from(*hop), cx.now);
        }
    }
}

/// Who publishes in [`broadcast`].
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Senders {
    /// Node 0 publishes every message.
    Single,
    /// Nodes `0, N/k, 2N/k, …` (`k` of them) take turns.
    Multiple(usize),
    /// Each message from a uniformly drawn node.
    Random,
    /// Every node publishes one message, in a shuffled order (the message count is N).
    All,
}

impl Senders {
    /// The origin of every message, in order, for `n` nodes.
    pub fn origins(self, n: usize, messages: u64, seed: u64) -> Vec<usize> {
        let mut pick = Rng::new(seed ^ 0xb40a_dca5);
        match self {
            Self::Single => vec![0; messages as usize],
            Self::Multiple(k) => {
                let k = k.clamp(1, n);
                (0..messages as usize).map(|m| (m % k) * (n / k)).collect()
            }
            Self::Random => (0..messages)
                .map(|_| pick.below(n as u64) as usize)
                .collect(),
            Self::All => {
                let mut all: Vec<usize> = (0..n).collect();
                for i in (1..n).rev() {
                    all.swap(i, pick.below(i as u64 + 1) as usize);
                }
                all
            }
        }
    }
}

/// The links and membership of [`broadcast`].
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Overlay {
    /// Every node linked to every other; the engines' default membership (self and
    /// every connected peer).
    FullMesh,
    /// [`Topology::Cube`] with [`Sim::set_all_members`]: `O(log N)` links per node.
    Cube,
}

/// The result of [`broadcast`].
#[derive(Debug)]
pub struct BroadcastRun {
    /// The finished run.
    pub sim: Sim<BroadcastApp>,
    /// Delivery figures (receivers = N − 1; payload = G3 frames of the window).
    pub summary: DeliverySummary,
    /// G3 frames sent in the window (retries included).
    pub rumor_frames: u64,
    /// G3-ACK frames sent in the window.
    pub ack_frames: u64,
    /// Frames dropped by the links in the window.
    pub dropped: u64,
    /// Retries over all nodes.
    pub retries: u64,
    /// Messages published.
    pub messages: u64,
}

impl BroadcastRun {
    /// G3 frames per message.
    pub fn frames_per_broadcast(&self) -> f64 {
        self.rumor_frames as f64 / self.messages.max(1) as f64
    }

    /// One line of figures.
    pub fn line(&self) -> String {
        format!(
            "{} | G3/broadcast {:.2} | ACKs {} | retries {} | link drops {}",
            self.summary,
            self.frames_per_broadcast(),
            self.ack_frames,
            self.retries,
            self.dropped
        )
    }
}

/// (f) BroadcastOnly rumors over the engine's hypercube pusher: the overlay comes up over
/// lossless links in 5 s; then every link switches to [`LinkConfig::frames`]`(loss)`
/// with `duplicate` duplication, and `messages` broadcasts are published on topic `news`
/// (every node subscribed), one every `spacing`; runs 15 s past the last (default
/// rumor settings: adaptive ACK timeout from 1 s to 3 s, 5 retries).
pub fn broadcast(
    opts: &Opts,
    overlay: Overlay,
    senders: Senders,
    (loss, duplicate): (f64, f64),
    messages: u64,
    spacing: Duration,
) -> BroadcastRun {
    let n = opts.nodes;
    let mut config = opts.sim_config();
    config.record_events = false;
    let topology = match overlay {
        Overlay::FullMesh => Topology::FullMesh,
        Overlay::Cube => Topology::Cube,
    };
    let mut sim = Sim::with_app(n, &topology, config, opts.seed, BroadcastApp);
    if overlay == Overlay::Cube {
        sim.set_all_members();
    }
    for i in 0..n {
        sim.with_engine(i, |e, _| {
            e.register_topic("news", TopicConfig::broadcast())
                .expect("fresh engine");
            e.subscribe("news").expect("registered");
        });
    }
    let origins = senders.origins(n, messages, opts.seed);
    let messages = origins.len() as u64;
    let publishing = spacing * u32::try_from(messages).unwrap_or(u32::MAX);
    let end = secs(5) + publishing + Duration::from_secs(15);
    opts.start(&mut sim, end);
    sim.run_until(secs(5));
    let before = sim.metrics().clone();
    sim.set_default_link(LinkConfig {
        duplicate,
        ..LinkConfig::frames(loss)
    });
    for (m, origin) in origins.into_iter().enumerate() {
        let payload = Bytes::from(format!("message {m}"));
        let id = sim
            .with_engine(origin, |e, now| e.publish(now, "news", payload))
            .expect("origin alive")
            .expect("publish");
        let now = sim.now();
        sim.deliveries_mut()
            .record_publish(origin, msg_key(&id), now);
        sim.run_for(spacing);
    }
    sim.run_until(end);
    sim.finish_progress();
    let window = sim.metrics().since(&before);
    let rumor_frames = window.kind(FrameKind::Rumor).frames;
    let ack_frames = window.kind(FrameKind::RumorAck).frames;
    let summary = sim.deliveries().summary(n - 1, rumor_frames);
    let retries = (0..n)
        .filter_map(|i| sim.engine(i))
        .map(|e| e.rumor_stats().retries)
        .sum();
    BroadcastRun {
        dropped: window.frames_dropped,
        sim,
        summary,
        rumor_frames,
        ack_frames,
        retries,
        messages,
    }
}

/// The result of [`record_push`].
#[derive(Debug)]
pub struct RecordPushRun {
    /// The finished run.
    pub sim: Sim,
    /// Records written.
    pub records: usize,
    /// `(node, record)` pairs expected: records × (N − 1).
    pub expected: u64,
    /// Pairs present at 25 s, before the next G1 round (rumor push and retries only).
    pub by_rumor: u64,
    /// Pairs present at the end, after two more G1 rounds.
    pub at_end: u64,
    /// G3 frames sent in the write window (to 25 s).
    pub rumor_frames: u64,
}

/// (g) StatefulMerge records pushed as rumors on a full mesh with G1 rounds every 30 s:
/// the mesh comes up over lossless links (its first G1 round runs then); at 5 s links
/// switch to [`LinkConfig::frames`]`(loss)` with `duplicate` duplication and `records`
/// puts are made from random nodes, one every 200 ms. Coverage is counted at 25 s
/// (before the next G1 round: rumor push, ACKs and retries only) and at 70 s (after G1
/// anti-entropy).
pub fn record_push(opts: &Opts, loss: f64, duplicate: f64, records: usize) -> RecordPushRun {
    let n = opts.nodes;
    let mut config = opts.sim_config();
    config.record_events = false;
    config.engine.gossip_interval = Duration::from_secs(30);
    let mut sim = Sim::new(n, &Topology::FullMesh, config, opts.seed);
    for i in 0..n {
        sim.with_engine(i, |e, _| register_kv(e));
    }
    let end = secs(70);
    opts.start(&mut sim, end);
    sim.run_until(secs(5));
    let before = sim.metrics().clone();
    sim.set_default_link(LinkConfig {
        duplicate,
        ..LinkConfig::frames(loss)
    });
    let mut pick = Rng::new(opts.seed ^ 0x5eed_4ec0);
    let mut writers = Vec::new();
    for r in 0..records {
        let origin = pick.below(n as u64) as usize;
        writers.push(origin);
        let key = format!("key-{r}");
        sim.with_engine(origin, |e, now| e.put(now, KV, key.as_bytes(), b"v"))
            .expect("origin alive")
            .expect("put");
        sim.run_for(Duration::from_millis(200));
    }
    let coverage = |sim: &Sim| -> u64 {
        let mut got = 0;
        for i in 0..n {
            let Some(store) = sim.engine(i).and_then(|e| e.mem_store(KV)) else {
                continue;
            };
            for (r, w) in writers.iter().enumerate() {
                if *w != i && store.get(format!("key-{r}").as_bytes()).is_some() {
                    got += 1;
                }
            }
        }
        got
    };
    sim.run_until(secs(25));
    let by_rumor = coverage(&sim);
    let rumor_frames = sim.metrics().since(&before).kind(FrameKind::Rumor).frames;
    sim.run_until(end);
    sim.finish_progress();
    let at_end = coverage(&sim);
    RecordPushRun {
        sim,
        records,
        expected: (records * (n - 1)) as u64,
        by_rumor,
        at_end,
        rumor_frames,
    }
}

/// Runs a scenario by name for the `simulate` binary: returns the table text (with the
/// scenario's own figures) and the time series.
pub fn run_named(name: &str, opts: &Opts) -> Option<(String, Metrics)> {
    Some(match name {
        "broadcast" => {
            let mut t = String::new();
            let mut last = None;
            let overlay = if opts.nodes <= 200 {
                Overlay::FullMesh
            } else {
                Overlay::Cube
            };
            let senders = [
                (Senders::Single, "single"),
                (Senders::Multiple(10), "10"),
                (Senders::Random, "random"),
            ];
            for (senders, label) in senders {
                for (loss, dup) in [(0.0, 0.0), (0.05, 0.01)] {
                    let spacing = Duration::from_millis(200);
                    let r = broadcast(opts, overlay, senders, (loss, dup), 20, spacing);
                    let line = format!(
                        "N={} {overlay:?} {label} sender(s), loss {loss}, dup {dup}: {}\n",
                        opts.nodes,
                        r.line()
                    );
                    // Each run's figures as soon as it ends (N = 1,000 runs are long).
                    eprint!("{line}");
                    t.push_str(&line);
                    last = Some(r);
                }
            }
            let r = last.expect("six runs");
            let mut table = r.sim.table();
            table.push_str(&t);
            (table, r.sim.metrics().clone())
        }
        "records" => {
            let r = record_push(opts, 0.05, 0.01, 20);
            let mut t = r.sim.table();
            t.push_str(&format!(
                "N={} 20 puts, loss 0.05, dup 0.01: by rumor {} of {} ({:.2} %), after G1 {} of {}; G3 frames {}\n",
                opts.nodes,
                r.by_rumor,
                r.expected,
                100.0 * r.by_rumor as f64 / r.expected as f64,
                r.at_end,
                r.expected,
                r.rumor_frames
            ));
            (t, r.sim.metrics().clone())
        }
        "hello-mesh" => {
            let sim = hello_mesh(opts);
            (sim.table(), sim.metrics().clone())
        }
        "idle" => {
            let r = idle(opts, 8);
            let mut t = r.sim.table();
            t.push_str(&format!(
                "idle window 600 s, degree 8: {:.3} B/node/s mean, {:.3} B/s max node\n",
                r.bytes_per_node_per_sec(),
                r.window.max_node_bytes_per_sec()
            ));
            (t, r.sim.metrics().clone())
        }
        "partition" => {
            let r = partition_heal(opts);
            let mut t = r.sim.table();
            t.push_str(&format!(
                "PeerDown during partition {}; min peers while split {}; min peers after heal {}\n\
                 {} writes; halves agreed before the heal: {}; converged {:?} after the heal \
                 ({:?} rounds, {} G1 frames); lost writes {}\n",
                r.downs_partitioned,
                r.peers_partitioned.iter().min().unwrap_or(&0),
                (0..opts.nodes).map(|i| r.sim.peers(i)).min().unwrap_or(0),
                r.writes,
                r.halves_converged,
                r.converged_after,
                r.rounds(),
                r.g1_frames,
                r.missing
            ));
            (t, r.sim.metrics().clone())
        }
        "crash-restart" => {
            let r = crash_restart(opts, 10);
            let mut t = r.sim.table();
            t.push_str(&format!(
                "crashed and restarted: {:?} ({} restored with {} watermarks); {} writes; \
                 caught up {:?} after the restart; lost writes {}\n",
                r.crashed,
                r.restored,
                r.watermarks_imported,
                r.writes,
                r.caught_up_after,
                r.missing
            ));
            (t, r.sim.metrics().clone())
        }
        "flood" => {
            let topo = if opts.nodes <= 200 {
                Topology::FullMesh
            } else {
                Topology::Random { k: 4 }
            };
            let r = flood(opts, &topo, 0.05, 10);
            let mut t = r.sim.table();
            t.push_str(&format!(
                "flood frames {} dropped while flooding {}\n",
                r.flood_frames, r.dropped
            ));
            (t, r.sim.metrics().clone())
        }
        "reconnect-storm" => {
            let r = driver::reconnect_storm(opts);
            let mut t = r.sim.table();
            t.push_str(&driver::storm_line(&r));
            t.push('\n');
            (t, r.sim.metrics().clone())
        }
        "simultaneous-dials" => {
            let r = driver::simultaneous_dials(opts);
            let mut t = r.sim.table();
            t.push_str(&driver::dials_line(&r));
            t.push('\n');
            (t, r.sim.metrics().clone())
        }
        "stalled-reader" => {
            let r = driver::stalled_reader(opts);
            let mut t = r.sim.table();
            t.push_str(&driver::stall_line(&r));
            t.push('\n');
            (t, r.sim.metrics().clone())
        }
        "persisted-restart" => {
            let r = driver::persisted_restart(opts);
            let mut t = r.restored.sim.table();
            t.push_str(&driver::restart_line(&r));
            t.push('\n');
            (t, r.restored.sim.metrics().clone())
        }
        _ => return None,
    })
}

/// The scenario names [`run_named`] knows.
pub const NAMES: [&str; 11] = [
    "hello-mesh",
    "idle",
    "partition",
    "crash-restart",
    "flood",
    "broadcast",
    "records",
    "reconnect-storm",
    "simultaneous-dials",
    "stalled-reader",
    "persisted-restart",
];
