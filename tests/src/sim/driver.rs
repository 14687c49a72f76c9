//! The driver-level simulator: every node is a [`Driver`] (the engine plus the address
//! book, reconnect backoff, dial tie-break and bounded write queues every adapter
//! shares), reached at a virtual address such as `n7:7000`, on the same event queue,
//! RNG, link model and metrics as the engine-level [`Sim`](super::Sim).
//!
//! # Model
//! - **Dials.** [`Output::Dial`](whisper_proto::driver::Output::Dial) travels one link
//!   latency to the address's node. If it is alive (and reachable, see
//!   [`DriverSim::partition`]) it accepts ([`Driver::handle_accepted`]) and the dialer
//!   gets [`Driver::handle_dialed`] at the same instant. A crashed node refuses: the
//!   dialer gets [`Driver::handle_dial_failed`] one more latency later. An unknown or
//!   unreachable address never answers; the driver aborts the dial at its
//!   [`DriverConfig::dial_timeout`].
//! - **Writes.** [`Output::Write`](whisper_proto::driver::Output::Write) bytes are
//!   serialised at the link's bandwidth, then take its latency, in order
//!   ([`LinkConfig`] in stream mode; loss, duplication and reorder do not apply). The
//!   writer gets [`Driver::handle_written`] once the last byte left. Bytes sent and not
//!   yet consumed by the reader are limited to [`DriverSimConfig::read_window`]: past
//!   it the next write is parked, unacknowledged, until the reader consumes. A node
//!   whose reads are stalled ([`DriverSim::stall_reads`]) consumes nothing, so its
//!   peers' write queues grow until their drivers close the slow connection.
//! - **Closes.** [`Output::Close`](whisper_proto::driver::Output::Close) tears the
//!   connection down; the other side gets [`Driver::handle_disconnected`] after the
//!   bytes already in flight (a stalled reader sees it when it reads again). A crash
//!   ([`DriverSim::crash`]) drops the driver without a word; its peers see their
//!   connections break one latency later.
//! - **Persistence.** [`Output::Persist`](whisper_proto::driver::Output::Persist) bytes
//!   go to the node's "disk" at once and survive its crash ([`DriverSim::persisted`]);
//!   hand them to [`Driver::restore`] in [`DriverSim::restart_with`].
//! - **Time.** One pending timer per node at [`Driver::poll_timeout`], as in
//!   [`Sim`](super::Sim); every node's wall clock reads
//!   [`DriverSimConfig::unix_start`] plus virtual time.
//!
//! The transport (connections, queued events and their processing) is in `transport`.
//!
//! The same seed gives the same run ([`DriverSim::trace_hash`]); a panic while a
//! `DriverSim` is alive prints the seed.
//!
//! ```
//! use whisper_tests::sim::driver::{DriverSim, DriverSimConfig};
//! let mut sim = DriverSim::new(3, &[(0, 1), (1, 2), (2, 0)], DriverSimConfig::default(), 7);
//! sim.run_for(whisper_proto::Duration::from_secs(1));
//! assert_eq!(sim.configured_pairs_connected(), (3, 3));
//! ```

mod transport;

use super::metrics::Metrics;
use super::net::LinkConfig;
use super::queue::{EventQueue, Trace};
use super::topology::node_id;
use super::{Recorded, reachable_in};
use std::collections::BTreeMap;
use std::fmt;
use transport::{DEv, Pipe};
use whisper_proto::driver::{DialId, Driver, DriverConfig, DriverStats, PersistKey};
use whisper_proto::rng::{RandomSource, Rng};
use whisper_proto::wire::WireConfig;
use whisper_proto::{Bytes, Config, ConnId, Duration, Instant, NodeId};

/// Driver simulator settings.
#[derive(Clone, Debug)]
pub struct DriverSimConfig {
    /// The engine configuration of every node.
    pub engine: Config,
    /// The driver configuration of every node.
    pub driver: DriverConfig,
    /// The link, both directions (stream mode: latency and bandwidth apply).
    pub link: LinkConfig,
    /// Bytes sent toward a reader and not yet consumed, at most (the socket buffers of
    /// both ends): past it writes toward that reader are not acknowledged.
    pub read_window: usize,
    /// The port of every virtual address (`n7:<port>`).
    pub port: u16,
    /// Each node starts (adds its peer addresses) at a uniform time in
    /// `0..=start_spread`; zero starts everyone at the same instant.
    pub start_spread: Duration,
    /// Run on every new driver (at start and at every restart) before its peers are
    /// added: register topics, frame kinds.
    pub setup: Option<fn(&mut Driver, Instant)>,
    /// Keep every [`Event`](whisper_proto::Event) in [`DriverSim::events`].
    pub record_events: bool,
    /// The Unix time at virtual [`Instant::ZERO`] (every node's wall clock agrees).
    pub unix_start: Duration,
}

impl Default for DriverSimConfig {
    fn default() -> Self {
        Self {
            engine: Config::default(),
            driver: DriverConfig::default(),
            link: LinkConfig::default(),
            read_window: 64 << 10,
            port: 7000,
            start_spread: Duration::from_millis(100),
            setup: None,
            record_events: false,
            unix_start: Duration::from_secs(1_800_000_000),
        }
    }
}

/// One dial the simulator saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DialRecord {
    /// Virtual time.
    pub at: Instant,
    /// The dialing node.
    pub node: usize,
    /// The node at the address (`None`: no such address).
    pub target: Option<usize>,
}

#[derive(Debug)]
struct DNode {
    id: NodeId,
    addr: String,
    driver: Option<Driver>,
    /// Configured peer addresses (node indices), added at every start.
    peers: Vec<usize>,
    /// Live connections → pipe.
    conns: BTreeMap<ConnId, usize>,
    /// Dials in flight → target node.
    dials: BTreeMap<DialId, Option<usize>>,
    timer: Option<Instant>,
    incarnation: u32,
    stalled: bool,
}

/// The driver-level simulator.
pub struct DriverSim {
    config: DriverSimConfig,
    seed: u64,
    rng: Rng,
    now: Instant,
    queue: EventQueue<DEv>,
    trace: Trace,
    nodes: Vec<DNode>,
    pipes: Vec<Pipe>,
    by_addr: BTreeMap<String, usize>,
    groups: Option<Vec<u32>>,
    observer: WireConfig,
    metrics: Metrics,
    events: Vec<Recorded>,
    dial_log: Vec<DialRecord>,
    /// Stats of crashed drivers, so totals survive restarts.
    retired: Vec<(usize, DriverStats)>,
    max_write: usize,
    processed: u64,
    /// Each node's "disk": the latest
    /// [`Output::Persist`](whisper_proto::driver::Output::Persist) bytes per key.
    disk: BTreeMap<(usize, PersistKey), Bytes>,
}

impl fmt::Debug for DriverSim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DriverSim")
            .field("seed", &self.seed)
            .field("now", &self.now)
            .field("nodes", &self.nodes.len())
            .field("pipes", &self.pipes.len())
            .field("queued", &self.queue.len())
            .finish_non_exhaustive()
    }
}

impl DriverSim {
    /// `n` drivers named as in [`Sim`](super::Sim) (`n0000007` at `n7:7000`), where node
    /// `a` is configured with node `b`'s address for every `(a, b)` in `dials`
    /// (list both directions for a pair that dials each other).
    pub fn new(n: usize, dials: &[(usize, usize)], config: DriverSimConfig, seed: u64) -> Self {
        let mut sim = Self {
            config,
            seed,
            rng: Rng::new(seed),
            now: Instant::ZERO,
            queue: EventQueue::default(),
            trace: Trace::default(),
            nodes: Vec::with_capacity(n),
            pipes: Vec::new(),
            by_addr: BTreeMap::new(),
            groups: None,
            observer: WireConfig::default(),
            metrics: Metrics::default(),
            events: Vec::new(),
            dial_log: Vec::new(),
            retired: Vec::new(),
            max_write: 0,
            processed: 0,
            disk: BTreeMap::new(),
        };
        for node in 0..n {
            let id = node_id(node);
            let addr = format!("n{node}:{}", sim.config.port);
            sim.by_addr.insert(addr.clone(), node);
            sim.nodes.push(DNode {
                id,
                addr,
                driver: None,
                peers: Vec::new(),
                conns: BTreeMap::new(),
                dials: BTreeMap::new(),
                timer: None,
                incarnation: 0,
                stalled: false,
            });
            sim.metrics.ensure(node);
        }
        for &(a, b) in dials {
            if a != b && a < n && b < n && !sim.nodes[a].peers.contains(&b) {
                sim.nodes[a].peers.push(b);
            }
        }
        let spread = sim.config.start_spread.as_micros() as u64;
        for node in 0..n {
            let seed = sim.rng.next_u64();
            let driver = sim.build(node, seed);
            sim.nodes[node].driver = Some(driver);
            let at = Instant::from_micros(sim.rng.below(spread + 1));
            sim.queue.push(
                at,
                DEv::Start {
                    node,
                    incarnation: 0,
                },
            );
        }
        sim
    }

    // ---- getters ---------------------------------------------------------------------

    /// The run's seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The settings.
    pub fn config(&self) -> &DriverSimConfig {
        &self.config
    }

    /// Virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Whether `node` has a running driver.
    pub fn is_alive(&self, node: usize) -> bool {
        self.nodes[node].driver.is_some()
    }

    /// A node's id.
    pub fn node_id(&self, node: usize) -> &NodeId {
        &self.nodes[node].id
    }

    /// A node's virtual address.
    pub fn addr(&self, node: usize) -> &str {
        &self.nodes[node].addr
    }

    /// The nodes `node` is configured to dial.
    pub fn configured(&self, node: usize) -> &[usize] {
        &self.nodes[node].peers
    }

    /// A node's driver, when it is running.
    pub fn driver(&self, node: usize) -> Option<&Driver> {
        self.nodes[node].driver.as_ref()
    }

    /// Identified peers of a node's driver (0 when down).
    pub fn peers(&self, node: usize) -> usize {
        self.driver(node).map_or(0, |d| d.peers().len())
    }

    /// Whether `a` and `b` are connected by exactly one connection that both drivers
    /// consider live, and it is the same one on both sides.
    pub fn connected(&self, a: usize, b: usize) -> bool {
        let (Some(da), Some(db)) = (self.driver(a), self.driver(b)) else {
            return false;
        };
        let on_a: Vec<ConnId> = da
            .peers()
            .into_iter()
            .filter(|p| p.node == self.nodes[b].id)
            .map(|p| p.conn)
            .collect();
        let on_b: Vec<ConnId> = db
            .peers()
            .into_iter()
            .filter(|p| p.node == self.nodes[a].id)
            .map(|p| p.conn)
            .collect();
        match (on_a.as_slice(), on_b.as_slice()) {
            ([ca], [cb]) => {
                let (pa, pb) = (self.nodes[a].conns.get(ca), self.nodes[b].conns.get(cb));
                pa.is_some() && pa == pb
            }
            _ => false,
        }
    }

    /// Live connections (per the simulator: both ends open) between `a` and `b`.
    pub fn connections_between(&self, a: usize, b: usize) -> usize {
        self.pipes
            .iter()
            .filter(|p| p.ends.iter().all(|e| e.open))
            .filter(|p| {
                let (x, y) = (p.ends[0].node, p.ends[1].node);
                (x, y) == (a, b) || (x, y) == (b, a)
            })
            .count()
    }

    /// The node that dialed the one live connection between `a` and `b` (`None` unless
    /// there is exactly one).
    pub fn dialer_between(&self, a: usize, b: usize) -> Option<usize> {
        let mut live = self.pipes.iter().filter(|p| {
            let (x, y) = (p.ends[0].node, p.ends[1].node);
            p.ends.iter().all(|e| e.open) && ((x, y) == (a, b) || (x, y) == (b, a))
        });
        let first = live.next()?;
        live.next().is_none().then_some(first.ends[0].node)
    }

    /// `(connected, total)` over the distinct configured pairs.
    pub fn configured_pairs_connected(&self) -> (usize, usize) {
        let pairs = self.configured_pairs();
        let up = pairs.iter().filter(|&&(a, b)| self.connected(a, b)).count();
        (up, pairs.len())
    }

    /// Distinct unordered configured pairs `(a, b)`, `a < b`.
    pub fn configured_pairs(&self) -> Vec<(usize, usize)> {
        let mut pairs: Vec<(usize, usize)> = self
            .nodes
            .iter()
            .enumerate()
            .flat_map(|(a, n)| n.peers.iter().map(move |&b| (a.min(b), a.max(b))))
            .collect();
        pairs.sort_unstable();
        pairs.dedup();
        pairs
    }

    /// One node's driver counters (zero when down), not counting earlier incarnations.
    pub fn stats(&self, node: usize) -> DriverStats {
        self.driver(node).map(Driver::stats).unwrap_or_default()
    }

    /// Driver counters summed over every node and every incarnation.
    pub fn total_stats(&self) -> DriverStats {
        let mut t = DriverStats::default();
        let live = self.nodes.iter().filter_map(|n| n.driver.as_ref());
        let all = live
            .map(Driver::stats)
            .chain(self.retired.iter().map(|&(_, s)| s));
        for s in all {
            t.accepted += s.accepted;
            t.refused += s.refused;
            t.dials += s.dials;
            t.dial_failures += s.dial_failures;
            t.reconnects += s.reconnects;
            t.tie_breaks += s.tie_breaks;
            t.slow_closes += s.slow_closes;
            t.lingers_expired += s.lingers_expired;
            t.sends += s.sends;
            t.writes += s.writes;
            t.breaker_rejections += s.breaker_rejections;
            t.persists += s.persists;
            t.persist_errors += s.persist_errors;
        }
        t
    }

    /// Every dial so far, in order.
    pub fn dial_log(&self) -> &[DialRecord] {
        &self.dial_log
    }

    /// The latest state `node` asked to persist under `key`
    /// ([`Output::Persist`](whisper_proto::driver::Output::Persist)); it survives
    /// crashes, for [`Driver::restore`] at a restart.
    pub fn persisted(&self, node: usize, key: PersistKey) -> Option<&Bytes> {
        self.disk.get(&(node, key))
    }

    /// The largest single write any driver handed out.
    pub fn max_write(&self) -> usize {
        self.max_write
    }

    /// Bytes written toward `node` and not consumed yet (buffered while it stalls, in
    /// flight, or parked), over all its connections.
    pub fn unconsumed_toward(&self, node: usize) -> usize {
        self.pipes
            .iter()
            .flat_map(|p| (0..2).map(move |s| (p, s)))
            .filter(|(p, s)| p.ends[1 - s].node == node && p.ends[1 - s].open)
            .map(|(p, s)| p.dirs[s].unconsumed + p.dirs[s].parked.as_ref().map_or(0, Bytes::len))
            .sum()
    }

    /// The counters so far.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The plain-text metrics table of the run so far, with the summed driver counters.
    pub fn table(&self) -> String {
        let alive = self.nodes.iter().filter(|n| n.driver.is_some()).count();
        let s = self.total_stats();
        let mut t = format!(
            "whisper-sim drivers seed={} nodes={} connections={} events={}\n",
            self.seed,
            self.nodes.len(),
            self.pipes.len(),
            self.processed
        );
        t.push_str(&self.metrics.table(alive));
        t.push_str(&format!(
            "driver: dials {} dial_failures {} accepted {} reconnects {} tie_breaks {} \
             slow_closes {} lingers_expired {} writes {}\n",
            s.dials,
            s.dial_failures,
            s.accepted,
            s.reconnects,
            s.tie_breaks,
            s.slow_closes,
            s.lingers_expired,
            s.writes
        ));
        t
    }

    /// Recorded events ([`DriverSimConfig::record_events`]).
    pub fn events(&self) -> &[Recorded] {
        &self.events
    }

    /// A hash of every processed event and emitted event with its virtual time.
    pub fn trace_hash(&self) -> u64 {
        self.trace.value()
    }

    /// Queue events processed so far.
    pub fn processed(&self) -> u64 {
        self.processed
    }

    /// The simulated world's wall clock (Unix time) now.
    pub fn unix_now(&self) -> Duration {
        self.config.unix_start + Duration::from_micros(self.now.as_micros())
    }

    // ---- commands and faults -----------------------------------------------------------

    /// Runs `f` on a node's driver at the current virtual time, then drains its outputs.
    /// `None` when the node is down.
    pub fn with_driver<R>(
        &mut self,
        node: usize,
        f: impl FnOnce(&mut Driver, Instant) -> R,
    ) -> Option<R> {
        let now = self.now;
        let r = f(self.nodes[node].driver.as_mut()?, now);
        self.drain(node);
        Some(r)
    }

    /// Crashes a node: its driver is dropped without a word (no graceful shutdown); its
    /// peers see their connections break one latency later; dials to it are refused.
    pub fn crash(&mut self, node: usize) {
        let Some(driver) = self.nodes[node].driver.take() else {
            return;
        };
        self.retired.push((node, driver.stats()));
        let n = &mut self.nodes[node];
        n.incarnation += 1;
        n.timer = None;
        n.stalled = false;
        n.dials.clear();
        let conns: Vec<(ConnId, usize)> = std::mem::take(&mut n.conns).into_iter().collect();
        self.mix(&[20, self.now.as_micros(), node as u64]);
        for (conn, pipe) in conns {
            self.close_end(pipe, node, conn);
        }
    }

    /// Restarts a crashed node with a fresh driver (same id and address, new seed); it
    /// dials its configured peers again.
    pub fn restart(&mut self, node: usize) {
        if self.nodes[node].driver.is_some() {
            return;
        }
        let seed = self.rng.next_u64();
        let driver = self.build(node, seed);
        self.start_with(node, driver);
    }

    /// Restarts a crashed node with the driver `build` makes (restoring persisted state,
    /// say) from `(node, id, seed, now)`; [`DriverSimConfig::setup`] is not run on it.
    pub fn restart_with(
        &mut self,
        node: usize,
        build: impl FnOnce(usize, &NodeId, u64, Instant) -> Driver,
    ) {
        if self.nodes[node].driver.is_some() {
            return;
        }
        let seed = self.rng.next_u64();
        let driver = build(node, &self.nodes[node].id.clone(), seed, self.now);
        self.start_with(node, driver);
    }

    /// Stops consuming `node`'s reads: bytes toward it pile up in the socket buffers
    /// ([`DriverSimConfig::read_window`]), then its peers' writes stall.
    pub fn stall_reads(&mut self, node: usize) {
        self.nodes[node].stalled = true;
    }

    /// Reads again: everything buffered is consumed in order (then any close that came
    /// after it), and parked writes toward the node go on.
    pub fn resume_reads(&mut self, node: usize) {
        if !std::mem::replace(&mut self.nodes[node].stalled, false) {
            return;
        }
        let pipes: Vec<usize> = (0..self.pipes.len())
            .filter(|&p| self.pipes[p].ends.iter().any(|e| e.node == node && e.open))
            .collect();
        for pipe in pipes {
            let to = usize::from(self.pipes[pipe].ends[1].node == node);
            let from = 1 - to;
            while let Some(bytes) = self.pipes[pipe].dirs[from].buffered.pop_front() {
                self.consume(pipe, from, &bytes);
            }
            if std::mem::take(&mut self.pipes[pipe].dirs[from].fin) {
                self.disconnected(pipe, to);
            }
        }
    }

    /// Splits the nodes into groups that cannot reach each other (nodes not listed form
    /// one more group): connections across break at once, dials across go unanswered.
    pub fn partition(&mut self, groups: &[&[usize]]) {
        self.groups = Some(super::faults::group_of(self.nodes.len(), groups));
        for pipe in 0..self.pipes.len() {
            let [a, b] = self.pipes[pipe].ends;
            if (a.open || b.open) && !self.reachable(a.node, b.node) {
                for side in 0..2 {
                    if self.pipes[pipe].ends[side].open {
                        self.disconnected(pipe, side);
                    }
                }
            }
        }
    }

    /// Ends every partition.
    pub fn heal(&mut self) {
        self.groups = None;
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
        true
    }

    /// Processes every event up to and including `t`; virtual time ends at `t`.
    pub fn run_until(&mut self, t: Instant) {
        while self.queue.next_at().is_some_and(|at| at <= t) {
            self.step();
        }
        self.now = self.now.max(t);
        self.metrics.span = self.now.saturating_duration_since(Instant::ZERO);
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    /// Runs in steps of `step` until `done(self)` or `deadline`; returns when it held.
    pub fn run_until_true(
        &mut self,
        step: Duration,
        deadline: Instant,
        mut done: impl FnMut(&Self) -> bool,
    ) -> Option<Instant> {
        loop {
            if done(self) {
                return Some(self.now);
            }
            if self.now >= deadline {
                return None;
            }
            self.run_for(step);
        }
    }

    // ---- internals -------------------------------------------------------------------

    fn build(&self, node: usize, seed: u64) -> Driver {
        let id = self.nodes[node].id.clone();
        let mut d = Driver::new(
            id,
            self.config.engine.clone(),
            seed,
            self.config.driver.clone(),
            self.now,
            self.unix_now(),
        )
        .expect("DriverSimConfig::engine must be a valid engine Config");
        if let Some(setup) = self.config.setup {
            setup(&mut d, self.now);
        }
        d
    }

    fn start_with(&mut self, node: usize, driver: Driver) {
        let n = &mut self.nodes[node];
        n.driver = Some(driver);
        n.incarnation += 1;
        n.timer = None;
        let incarnation = n.incarnation;
        self.mix(&[21, self.now.as_micros(), node as u64]);
        self.process(DEv::Start { node, incarnation });
    }

    fn push(&mut self, at: Instant, ev: DEv) {
        self.queue.push(at.max(self.now), ev);
    }

    fn mix(&mut self, words: &[u64]) {
        self.trace.mix(words);
    }

    fn reachable(&self, a: usize, b: usize) -> bool {
        reachable_in(self.groups.as_deref(), a, b)
    }

    fn latency(&mut self) -> Duration {
        self.config.link.latency.sample(&mut self.rng)
    }

    fn alive_as(&self, node: usize, incarnation: u32) -> bool {
        let n = &self.nodes[node];
        n.incarnation == incarnation && n.driver.is_some()
    }
}

impl Drop for DriverSim {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "whisper-sim (drivers): failed at virtual {:?} with WHISPER_SEED={}",
                self.now, self.seed
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::net::Latency;

    fn fixed(ms: u64) -> DriverSimConfig {
        DriverSimConfig {
            link: LinkConfig {
                latency: Latency::Fixed(Duration::from_millis(ms)),
                ..LinkConfig::default()
            },
            start_spread: Duration::ZERO,
            ..DriverSimConfig::default()
        }
    }

    #[test]
    fn dial_connects_after_one_latency() {
        let mut sim = DriverSim::new(2, &[(0, 1)], fixed(10), 1);
        sim.run_until(Instant::from_millis(9));
        assert_eq!(sim.connections_between(0, 1), 0);
        sim.run_until(Instant::from_millis(10));
        assert_eq!(sim.connections_between(0, 1), 1);
        assert_eq!(sim.dialer_between(0, 1), Some(0));
        // HELLOs cross one latency later.
        sim.run_until(Instant::from_millis(20));
        assert!(sim.connected(0, 1));
        assert_eq!(sim.stats(0).dials, 1);
        assert_eq!(sim.stats(1).accepted, 1);
    }

    #[test]
    fn dial_to_a_crashed_node_is_refused_after_a_round_trip() {
        let mut sim = DriverSim::new(2, &[(0, 1)], fixed(10), 1);
        sim.crash(1);
        sim.run_until(Instant::from_millis(19));
        assert_eq!(sim.stats(0).dial_failures, 0);
        sim.run_until(Instant::from_millis(20));
        assert_eq!(sim.stats(0).dial_failures, 1);
        // Then the backoff: the next dial 80–100 ms later (100 ms base, 20 % jitter).
        sim.run_until(Instant::from_millis(130));
        let log = sim.dial_log();
        assert_eq!(log.len(), 2);
        let gap = log[1].at.saturating_duration_since(log[0].at);
        assert!(gap >= Duration::from_millis(80 + 20) && gap <= Duration::from_millis(100 + 20));
    }

    #[test]
    fn dial_to_an_unknown_address_times_out() {
        let mut sim = DriverSim::new(1, &[], fixed(10), 1);
        sim.with_driver(0, |d, now| d.add_peer(now, "n9:7000"));
        let timeout = sim.config().driver.dial_timeout;
        sim.run_until(Instant::ZERO + timeout - Duration::from_millis(1));
        assert_eq!(sim.stats(0).dial_failures, 0);
        sim.run_until(Instant::ZERO + timeout);
        assert_eq!(sim.stats(0).dial_failures, 1);
        assert_eq!(sim.dial_log()[0].target, None);
    }

    #[test]
    fn a_stalled_reader_holds_at_most_its_window() {
        let mut config = fixed(10);
        config.setup = Some(crate::sim::scenario::driver::setup_kv);
        config.read_window = 16 << 10;
        let mut sim = DriverSim::new(2, &[(0, 1)], config, 1);
        sim.run_until(Instant::from_secs(1));
        assert!(sim.connected(0, 1));
        sim.stall_reads(1);
        for k in 0..40u32 {
            let key = format!("k{k}");
            sim.with_driver(0, |d, now| d.put(now, "kv", key.as_bytes(), &[7; 2048]))
                .expect("live")
                .expect("put");
            sim.run_for(Duration::from_millis(5));
            let bound = sim.config().read_window + sim.max_write();
            assert!(sim.unconsumed_toward(1) <= bound);
        }
        assert!(sim.unconsumed_toward(1) >= 16 << 10);
        sim.resume_reads(1);
        sim.run_for(Duration::from_secs(1));
        assert_eq!(sim.unconsumed_toward(1), 0);
        let store = |n: usize| {
            sim.driver(n)
                .and_then(|d| d.engine().mem_store("kv"))
                .map(|s| s.len())
        };
        assert_eq!(store(1), Some(40));
    }
}
