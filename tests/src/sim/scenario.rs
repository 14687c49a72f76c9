//! Ready-made scenarios, shared by `tests/tests/sim.rs` (which asserts their counts)
//! and the `simulate` binary (which prints their tables and plots).
//!
//! Each scenario takes [`Opts`] and returns the finished [`Sim`] (inside a struct when
//! it has figures of its own). They use only what the engine offers today: HELLO,
//! keepalives, timeouts, G2 probes and custom frames.

use super::metrics::{DeliverySummary, FrameKind, Metrics};
use super::net::LinkConfig;
use super::{App, NodeCx, Sim, SimConfig, Topology};
use std::collections::BTreeSet;
use whisper_proto::rng::{RandomSource, Rng};
use whisper_proto::{Bytes, ConnId, Duration, Engine, Event, Instant};

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

/// (b) Idle cost: a random topology of average degree `degree`; after a 60 s warm-up,
/// counts 10 virtual minutes of idle traffic.
pub fn idle(opts: &Opts, degree: usize) -> Idle {
    let topo = Topology::Random {
        k: (degree / 2).max(1),
    };
    let mut sim = Sim::new(opts.nodes, &topo, opts.sim_config(), opts.seed);
    let (warm, end) = (secs(60), secs(660));
    opts.start(&mut sim, end);
    sim.run_until(warm);
    let before = sim.metrics().clone();
    sim.run_until(end);
    sim.finish_progress();
    let window = sim.metrics().since(&before);
    Idle { sim, window }
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
}

/// (c) A full mesh splits into two halves at 5 s (links across break), heals at 15 s,
/// and runs to 25 s.
pub fn partition_heal(opts: &Opts) -> PartitionHeal {
    let n = opts.nodes;
    let mut sim = Sim::new(n, &Topology::FullMesh, opts.sim_config(), opts.seed);
    opts.start(&mut sim, secs(25));
    sim.run_until(secs(5));
    let downs0 = sim.metrics().peer_downs();
    let a: Vec<usize> = (0..n / 2).collect();
    let b: Vec<usize> = (n / 2..n).collect();
    sim.partition(&[&a, &b]);
    sim.run_until(secs(15));
    let peers_partitioned = (0..n).map(|i| sim.peers(i)).collect();
    let downs_partitioned = sim.metrics().peer_downs() - downs0;
    sim.heal();
    sim.run_until(secs(25));
    sim.finish_progress();
    PartitionHeal {
        sim,
        halves: (a, b),
        peers_partitioned,
        downs_partitioned,
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
    /// Times the restore hook ran.
    pub restored: usize,
}

/// (d) A full mesh; at 5 s, `percent` % of the nodes (at least one) crash; at 10 s they
/// restart (even-numbered ones through a restore hook, the others fresh); runs to 20 s.
pub fn crash_restart(opts: &Opts, percent: usize) -> CrashRestart {
    let n = opts.nodes;
    let mut sim = Sim::new(n, &Topology::FullMesh, opts.sim_config(), opts.seed);
    opts.start(&mut sim, secs(20));
    sim.run_until(secs(5));
    let hellos_before = sim.metrics().kind(FrameKind::Hello).frames;
    let mut pick = Rng::new(opts.seed ^ 0x00c0_ffee);
    let mut crashed = BTreeSet::new();
    let want = (n * percent / 100).max(1).min(n);
    while crashed.len() < want {
        crashed.insert(pick.below(n as u64) as usize);
    }
    let crashed: Vec<usize> = crashed.into_iter().collect();
    for &c in &crashed {
        sim.crash(c);
    }
    sim.run_until(secs(10));
    let peers_while_down = (0..n).map(|i| sim.peers(i)).collect();
    let config = sim.config().engine.clone();
    let mut restored = 0;
    for &c in &crashed {
        if c % 2 == 0 {
            let now = sim.now();
            // A scenario would restore persisted state here; the engine has none yet.
            sim.restart_with(c, |id| {
                restored += 1;
                Engine::new(id.clone(), config.clone(), c as u64, now).expect("valid config")
            });
        } else {
            sim.restart(c);
        }
    }
    sim.run_until(secs(20));
    sim.finish_progress();
    CrashRestart {
        sim,
        crashed,
        peers_while_down,
        hellos_before,
        restored,
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
    /// Each message from a uniformly drawn node.
    Random,
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

/// (f) BroadcastOnly rumors over the engine's hypercube pusher on a full mesh: the mesh
/// comes up over lossless links in 5 s; then every link switches to
/// [`LinkConfig::frames`]`(loss)` with `duplicate` duplication, and `messages`
/// broadcasts are published on topic `news` (every node subscribed), one every 200 ms;
/// runs 15 s past the last (ACK timeout 3 s, 3 retries).
pub fn broadcast(
    opts: &Opts,
    senders: Senders,
    loss: f64,
    duplicate: f64,
    messages: u64,
) -> BroadcastRun {
    let n = opts.nodes;
    let mut config = opts.sim_config();
    config.record_events = false;
    let mut sim = Sim::with_app(n, &Topology::FullMesh, config, opts.seed, BroadcastApp);
    for i in 0..n {
        sim.with_engine(i, |e, _| {
            e.register_topic("news", whisper_proto::TopicConfig::broadcast())
                .expect("fresh engine");
            e.subscribe("news").expect("registered");
        });
    }
    let end = secs(5) + Duration::from_millis(200 * messages) + Duration::from_secs(15);
    opts.start(&mut sim, end);
    sim.run_until(secs(5));
    let before = sim.metrics().clone();
    sim.set_default_link(LinkConfig {
        duplicate,
        ..LinkConfig::frames(loss)
    });
    let mut pick = Rng::new(opts.seed ^ 0xb40a_dca5);
    for m in 0..messages {
        let origin = match senders {
            Senders::Single => 0,
            Senders::Random => pick.below(n as u64) as usize,
        };
        let payload = Bytes::from(format!("message {m}"));
        let id = sim
            .with_engine(origin, |e, now| e.publish(now, "news", payload))
            .expect("origin alive")
            .expect("publish");
        let now = sim.now();
        sim.deliveries_mut()
            .record_publish(origin, msg_key(&id), now);
        sim.run_for(Duration::from_millis(200));
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
        let me = sim.node_id(i).clone();
        sim.with_engine(i, |e, _| {
            e.register_topic(
                "kv",
                whisper_proto::TopicConfig::stateful(whisper_proto::MemStore::new(me, [7; 32])),
            )
            .expect("fresh engine");
        });
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
        sim.with_engine(origin, |e, now| e.put(now, "kv", key.as_bytes(), b"v"))
            .expect("origin alive")
            .expect("put");
        sim.run_for(Duration::from_millis(200));
    }
    let coverage = |sim: &Sim| -> u64 {
        let mut got = 0;
        for i in 0..n {
            let Some(store) = sim.engine(i).and_then(|e| e.mem_store("kv")) else {
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
            for (senders, label) in [(Senders::Single, "single"), (Senders::Random, "random")] {
                for (loss, dup) in [(0.0, 0.0), (0.05, 0.01)] {
                    let r = broadcast(opts, senders, loss, dup, 20);
                    let line = format!(
                        "N={} {label} sender(s), loss {loss}, dup {dup}: {}\n",
                        opts.nodes,
                        r.line()
                    );
                    // Each run's figures as soon as it ends (N = 1,000 runs are long).
                    eprint!("{line}");
                    t.push_str(&line);
                    last = Some(r);
                }
            }
            let r = last.expect("four runs");
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
                "PeerDown during partition {}; min peers while split {}; min peers after heal {}\n",
                r.downs_partitioned,
                r.peers_partitioned.iter().min().unwrap_or(&0),
                (0..opts.nodes).map(|i| r.sim.peers(i)).min().unwrap_or(0)
            ));
            (t, r.sim.metrics().clone())
        }
        "crash-restart" => {
            let r = crash_restart(opts, 10);
            let mut t = r.sim.table();
            t.push_str(&format!("crashed and restarted: {:?}\n", r.crashed));
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
        _ => return None,
    })
}

/// The scenario names [`run_named`] knows.
pub const NAMES: [&str; 7] = [
    "hello-mesh",
    "idle",
    "partition",
    "crash-restart",
    "flood",
    "broadcast",
    "records",
];
