//! Driver-level fault scenarios on [`DriverSim`]: reconnect storms, simultaneous dials,
//! a peer that stalls its reads, and a restart with persisted state. Each node runs the
//! StatefulMerge topic [`KV`]; the results carry what `tests/tests/sim.rs` asserts:
//! every configured pair connected once, every store converged.

use super::super::driver::{DriverSim, DriverSimConfig};
use super::super::metrics::FrameKind;
use super::KV;
use std::collections::{BTreeMap, BTreeSet};
use whisper_proto::driver::{Driver, DriverConfig, DriverStats};
use whisper_proto::rng::{RandomSource, Rng};
use whisper_proto::util::RetryPolicy;
use whisper_proto::{Duration, Instant, MemStore, StateStore, TopicConfig};

/// Registers [`KV`] with a fresh store: the [`DriverSimConfig::setup`] of
/// these scenarios.
pub fn setup_kv(driver: &mut Driver, now: Instant) {
    let store = MemStore::new(driver.engine().node_id().clone(), [7; 32]);
    driver
        .register_topic(now, KV, TopicConfig::stateful(store))
        .expect("INVARIANT: KV is registered once per driver");
}

/// `(fingerprint, records)` of a node's store (`None`: down).
pub fn kv_state(sim: &DriverSim, node: usize) -> Option<(u64, usize)> {
    let store = sim.driver(node)?.engine().mem_store(KV)?;
    Some((store.fingerprint(), store.len()))
}

/// Whether every node in `among` is up and holds the same store.
pub fn kv_converged(sim: &DriverSim, among: impl IntoIterator<Item = usize>) -> bool {
    let mut states = among.into_iter().map(|i| kv_state(sim, i));
    let Some(Some(first)) = states.next() else {
        return true;
    };
    states.all(|s| s == Some(first))
}

/// `(key, value)` pairs of `expected` missing on some live node, over all nodes.
pub fn kv_missing(sim: &DriverSim, expected: &BTreeMap<String, Vec<u8>>) -> u64 {
    let mut missing = 0;
    for i in 0..sim.len() {
        let Some(store) = sim.driver(i).and_then(|d| d.engine().mem_store(KV)) else {
            continue;
        };
        for (k, v) in expected {
            if store.get(k.as_bytes()).map(|b| &b[..]) != Some(&v[..]) {
                missing += 1;
            }
        }
    }
    missing
}

/// Like [`kv_missing`], over the nodes in `among` only.
pub fn kv_missing_among(
    sim: &DriverSim,
    among: &[usize],
    expected: &BTreeMap<String, Vec<u8>>,
) -> u64 {
    let mut missing = 0;
    for &i in among {
        let Some(store) = sim.driver(i).and_then(|d| d.engine().mem_store(KV)) else {
            missing += expected.len() as u64;
            continue;
        };
        for (k, v) in expected {
            if store.get(k.as_bytes()).map(|b| &b[..]) != Some(&v[..]) {
                missing += 1;
            }
        }
    }
    missing
}

fn put(sim: &mut DriverSim, node: usize, key: &str, value: &[u8]) {
    sim.with_driver(node, |d, now| d.put(now, KV, key.as_bytes(), value))
        .expect("INVARIANT: writers are live")
        .expect("INVARIANT: KV is registered and the write is within bounds");
}

/// A sparse dial plan for `n` nodes: node `i` dials `i + 1` (a ring, so the graph is
/// connected) and `extra` random others; each pair is configured on one side only.
pub fn sparse_plan(n: usize, extra: usize, rng: &mut Rng) -> Vec<(usize, usize)> {
    let mut pairs = BTreeSet::new();
    let mut plan = Vec::new();
    let mut add = |a: usize, b: usize, plan: &mut Vec<(usize, usize)>| {
        if a != b && pairs.insert((a.min(b), a.max(b))) {
            plan.push((a, b));
        }
    };
    for i in 0..n {
        add(i, (i + 1) % n, &mut plan);
    }
    for i in 0..n {
        for _ in 0..extra {
            let b = rng.below(n as u64) as usize;
            add(i, b, &mut plan);
        }
    }
    plan
}

/// Most dials of one configured peer whose node is down for `outage`, under `policy`
/// with no circuit breaker: the `k`-th redial comes at least `(1 − jitter)` times the
/// sum of the first `k` backoff delays after the loss. One more is allowed for a dial
/// already in flight when the peer went down.
pub fn max_dials(policy: &RetryPolicy, outage: Duration) -> u64 {
    let budget = outage.as_micros() as f64;
    let mut spent = 0.0;
    let mut dials = 0;
    for attempt in 0.. {
        spent += policy.delay_for(attempt).as_micros() as f64 * (1.0 - policy.jitter());
        if spent > budget {
            break;
        }
        dials += 1;
    }
    dials + 1
}

/// The result of [`reconnect_storm`].
#[derive(Debug)]
pub struct ReconnectStorm {
    /// The finished run.
    pub sim: DriverSim,
    /// The crashed (and restarted) nodes.
    pub crashed: Vec<usize>,
    /// Configured `(survivor, crashed)` peer slots: they must reconnect.
    pub slots_to_crashed: usize,
    /// The most dials one such slot made during the outage.
    pub max_dials_per_slot: u64,
    /// What the reconnect policy allows during the outage ([`max_dials`]).
    pub allowed_dials_per_slot: u64,
    /// Configured pairs connected before the crash, and in all.
    pub connected_before: (usize, usize),
    /// Configured pairs connected at the end.
    pub connected_after: (usize, usize),
    /// Driver counters over every node and incarnation.
    pub stats: DriverStats,
    /// Writes made (10 before the crash, 20 by survivors during the outage).
    pub writes: usize,
    /// How long after the restart every pair was connected and every store the same.
    pub recovered_after: Option<Duration>,
    /// Pairs of `(key, value)` missing somewhere at the end.
    pub missing: u64,
}

/// (a) `opts.nodes` drivers (16–20 suit it), each configured with the address of its
/// ring successor and one random other. At 5 s a third of them crash at once; during the
/// 20 s outage survivors write 20 keys; at 25 s the crashed nodes restart (new driver,
/// same address, empty store). Runs until every configured pair is connected and every
/// store is the same (at most 90 s), then 2 s more.
pub fn reconnect_storm(opts: &super::Opts) -> ReconnectStorm {
    let n = opts.nodes;
    let mut pick = Rng::new(opts.seed ^ 0x5707_3a11);
    let plan = sparse_plan(n, 1, &mut pick);
    let config = DriverSimConfig {
        setup: Some(setup_kv),
        ..DriverSimConfig::default()
    };
    let policy = config.driver.reconnect;
    let mut sim = DriverSim::new(n, &plan, config, opts.seed);
    let mut expected = BTreeMap::new();
    sim.run_until(Instant::from_secs(1));
    for k in 0..10 {
        let node = pick.below(n as u64) as usize;
        let (key, value) = (format!("before-{k}"), format!("from {node}").into_bytes());
        put(&mut sim, node, &key, &value);
        expected.insert(key, value);
        sim.run_for(Duration::from_millis(100));
    }
    sim.run_until(Instant::from_secs(5));
    let connected_before = sim.configured_pairs_connected();
    let mut crashed = BTreeSet::new();
    while crashed.len() < (n / 3).max(1) {
        crashed.insert(pick.below(n as u64) as usize);
    }
    let crashed: Vec<usize> = crashed.into_iter().collect();
    let crash_at = sim.now();
    for &c in &crashed {
        sim.crash(c);
    }
    let survivors: Vec<usize> = (0..n).filter(|i| !crashed.contains(i)).collect();
    for k in 0..20 {
        let node = survivors[pick.below(survivors.len() as u64) as usize];
        let (key, value) = (format!("outage-{k}"), format!("from {node}").into_bytes());
        put(&mut sim, node, &key, &value);
        expected.insert(key, value);
        sim.run_for(Duration::from_millis(500));
    }
    sim.run_until(Instant::from_secs(25));
    let restart_at = sim.now();
    let outage = restart_at.saturating_duration_since(crash_at);
    let mut per_slot: BTreeMap<(usize, usize), u64> = BTreeMap::new();
    for d in sim.dial_log() {
        if d.at >= crash_at && d.at < restart_at {
            if let Some(t) = d.target.filter(|t| crashed.contains(t)) {
                *per_slot.entry((d.node, t)).or_default() += 1;
            }
        }
    }
    let slots_to_crashed = plan
        .iter()
        .filter(|(a, b)| !crashed.contains(a) && crashed.contains(b))
        .count();
    for &c in &crashed {
        sim.restart(c);
    }
    let recovered = sim.run_until_true(
        Duration::from_millis(100),
        restart_at + Duration::from_secs(90),
        |s| s.configured_pairs_connected().0 == s.configured_pairs().len() && kv_converged(s, 0..n),
    );
    sim.run_for(Duration::from_secs(2));
    let missing = kv_missing(&sim, &expected);
    ReconnectStorm {
        crashed,
        slots_to_crashed,
        max_dials_per_slot: per_slot.values().copied().max().unwrap_or(0),
        allowed_dials_per_slot: max_dials(&policy, outage),
        connected_before,
        connected_after: sim.configured_pairs_connected(),
        stats: sim.total_stats(),
        writes: expected.len(),
        recovered_after: recovered.map(|t| t.saturating_duration_since(restart_at)),
        missing,
        sim,
    }
}

/// The result of [`simultaneous_dials`].
#[derive(Debug)]
pub struct SimultaneousDials {
    /// The finished run.
    pub sim: DriverSim,
    /// The mutually configured pairs.
    pub pairs: Vec<(usize, usize)>,
    /// Pairs with exactly one live connection that both sides consider theirs.
    pub agreed: usize,
    /// Pairs whose surviving connection was dialed by the node with the higher id.
    pub kept_higher: usize,
    /// Driver counters over every node.
    pub stats: DriverStats,
    /// When every store held every node's write (`None`: not within 30 s).
    pub converged_at: Option<Instant>,
    /// Pairs of `(key, value)` missing somewhere at the end.
    pub missing: u64,
}

/// (b) `opts.nodes` drivers on a sparse graph (a ring plus one random chord each) where
/// both ends of every edge are configured with each other's address, and every node
/// starts at the same instant, so each pair dials both ways at once. At 2 s every node
/// writes one key; runs until every store is the same (at most 30 s), then 2 s more.
pub fn simultaneous_dials(opts: &super::Opts) -> SimultaneousDials {
    let n = opts.nodes;
    let mut pick = Rng::new(opts.seed ^ 0x0051_d1a1);
    let pairs = sparse_plan(n, 1, &mut pick);
    let plan: Vec<(usize, usize)> = pairs.iter().flat_map(|&(a, b)| [(a, b), (b, a)]).collect();
    let config = DriverSimConfig {
        setup: Some(setup_kv),
        start_spread: Duration::ZERO,
        ..DriverSimConfig::default()
    };
    let mut sim = DriverSim::new(n, &plan, config, opts.seed);
    sim.run_until(Instant::from_secs(2));
    let mut expected = BTreeMap::new();
    for node in 0..n {
        let (key, value) = (format!("k{node}"), format!("from {node}").into_bytes());
        put(&mut sim, node, &key, &value);
        expected.insert(key, value);
    }
    let converged_at =
        sim.run_until_true(Duration::from_millis(100), Instant::from_secs(32), |s| {
            kv_converged(s, 0..n) && kv_state(s, 0).is_some_and(|(_, len)| len == n)
        });
    sim.run_for(Duration::from_secs(2));
    let agreed = pairs
        .iter()
        .filter(|&&(a, b)| sim.connected(a, b) && sim.connections_between(a, b) == 1)
        .count();
    let kept_higher = pairs
        .iter()
        .filter(|&&(a, b)| {
            let higher = if sim.node_id(a) > sim.node_id(b) {
                a
            } else {
                b
            };
            sim.dialer_between(a, b) == Some(higher)
        })
        .count();
    let missing = kv_missing(&sim, &expected);
    SimultaneousDials {
        pairs: pairs.iter().map(|&(a, b)| (a.min(b), a.max(b))).collect(),
        agreed,
        kept_higher,
        stats: sim.total_stats(),
        converged_at,
        missing,
        sim,
    }
}

/// Writes in the burst of [`stalled_reader`].
pub const BURST: usize = 400;
/// Keys the burst of [`stalled_reader`] writes to, in turn.
pub const BURST_KEYS: usize = 20;
/// When the node of [`stalled_reader`] reads again: three G1 rounds (10 s each) after the
/// burst, for the others to converge without it (a full sync can take that long).
pub const RESUME: Instant = Instant::from_secs(40);

/// The result of [`stalled_reader`].
#[derive(Debug)]
pub struct StalledReader {
    /// The finished run.
    pub sim: DriverSim,
    /// The node that stalled its reads.
    pub stalled: usize,
    /// Slow connections its peers' drivers closed.
    pub slow_closes: u64,
    /// The most bytes written toward the stalled node and not consumed, sampled every
    /// 10 ms while it stalled.
    pub max_unconsumed: usize,
    /// The largest single write any driver handed out.
    pub max_write: usize,
    /// The most bytes one peer's driver held queued for the stalled node (sampled every
    /// 10 ms while it stalled).
    pub max_queued: usize,
    /// The write-queue bound in force.
    pub write_queue_limit: usize,
    /// Writes made during the burst (to [`BURST_KEYS`] keys).
    pub writes: usize,
    /// When every other node held every write, while the node still stalled.
    pub others_converged_at: Option<Instant>,
    /// Configured pairs connected at the end, and in all.
    pub connected_after: (usize, usize),
    /// How long after it read again the stalled node held every write.
    pub caught_up_after: Option<Duration>,
    /// Pairs of `(key, value)` missing somewhere at the end.
    pub missing: u64,
    /// G1 frames sent in the whole run.
    pub g1_frames: u64,
}

/// The most bytes any driver holds queued for `node` on one connection.
fn queued_toward(sim: &DriverSim, node: usize) -> usize {
    let id = sim.node_id(node).clone();
    (0..sim.len())
        .filter_map(|i| sim.driver(i))
        .flat_map(|d| d.peers())
        .filter(|p| p.node == id)
        .map(|p| p.queued)
        .max()
        .unwrap_or(0)
}

/// (c) `opts.nodes` drivers (a ring plus one random chord each, one side configured)
/// with 256 KiB write queues, 16 KiB write batches and a 32 KiB read window. At 3 s node
/// 0 stops reading; from 3.5 s the others make 400 writes of 4 KiB over 4 s, to 20 keys
/// (so the store, and any sync frame, stays well under the queue bound while the pushes
/// toward node 0 pile up); at 40 s ([`RESUME`]) node 0 reads again. Runs until every
/// store is the same (at most 60 s more), then 2 s more.
pub fn stalled_reader(opts: &super::Opts) -> StalledReader {
    let n = opts.nodes;
    let mut pick = Rng::new(opts.seed ^ 0x0057_a11e);
    let plan = sparse_plan(n, 1, &mut pick);
    let driver = DriverConfig {
        write_queue_limit: 256 << 10,
        max_write_batch: 16 << 10,
        ..DriverConfig::default()
    };
    let write_queue_limit = driver.write_queue_limit;
    // G1 rounds every 10 s exactly, so "two rounds after the burst" is a fixed time.
    let engine = whisper_proto::Config {
        adaptive_cadence: false,
        ..whisper_proto::Config::default()
    };
    let config = DriverSimConfig {
        engine,
        setup: Some(setup_kv),
        driver,
        read_window: 32 << 10,
        ..DriverSimConfig::default()
    };
    let mut sim = DriverSim::new(n, &plan, config, opts.seed);
    let stalled = 0;
    sim.run_until(Instant::from_secs(3));
    sim.stall_reads(stalled);
    sim.run_until(Instant::from_millis(3500));
    let others: Vec<usize> = (1..n).collect();
    let mut expected = BTreeMap::new();
    let mut max_unconsumed = 0;
    let mut max_queued = 0;
    for k in 0..BURST {
        let node = others[pick.below(others.len() as u64) as usize];
        let key = format!("burst-{}", k % BURST_KEYS);
        let mut value = vec![b'x'; 4096];
        value[..8].copy_from_slice(&(k as u64).to_le_bytes());
        put(&mut sim, node, &key, &value);
        expected.insert(key, value);
        sim.run_for(Duration::from_millis(10));
        max_unconsumed = max_unconsumed.max(sim.unconsumed_toward(stalled));
        max_queued = max_queued.max(queued_toward(&sim, stalled));
    }
    let everyone_has = |s: &DriverSim, among: &[usize]| {
        kv_converged(s, among.iter().copied()) && kv_missing_among(s, among, &expected) == 0
    };
    let others_converged_at = sim.run_until_true(Duration::from_millis(10), RESUME, |s| {
        everyone_has(s, &others)
    });
    while sim.now() < RESUME {
        sim.run_for(Duration::from_millis(10));
        max_unconsumed = max_unconsumed.max(sim.unconsumed_toward(stalled));
        max_queued = max_queued.max(queued_toward(&sim, stalled));
    }
    sim.resume_reads(stalled);
    let resumed = sim.now();
    let all: Vec<usize> = (0..n).collect();
    let caught_up = sim.run_until_true(
        Duration::from_millis(100),
        resumed + Duration::from_secs(60),
        |s| everyone_has(s, &all),
    );
    sim.run_for(Duration::from_secs(2));
    let missing = kv_missing(&sim, &expected);
    let stats = sim.total_stats();
    StalledReader {
        stalled,
        slow_closes: stats.slow_closes,
        max_unconsumed,
        max_queued,
        max_write: sim.max_write(),
        write_queue_limit,
        writes: BURST,
        others_converged_at,
        connected_after: sim.configured_pairs_connected(),
        caught_up_after: caught_up.map(|t| t.saturating_duration_since(resumed)),
        missing,
        g1_frames: sim.metrics().kind(FrameKind::Exchange).frames,
        sim,
    }
}

fn secs(t: Option<Instant>) -> String {
    t.map_or_else(
        || "never".into(),
        |t| format!("{:.2} s", t.as_micros() as f64 / 1e6),
    )
}

fn dur(d: Option<Duration>) -> String {
    d.map_or_else(
        || "never".into(),
        |d| format!("{:.2} s", d.as_micros() as f64 / 1e6),
    )
}

/// One line of [`reconnect_storm`] figures.
pub fn storm_line(r: &ReconnectStorm) -> String {
    format!(
        "reconnect-storm seed={} N={} crashed={} pairs connected before {:?} after {:?}; \
         dials {} (failures {}), reconnects {} for {} slots to crashed nodes, \
         max dials per slot in the 20 s outage {} (policy allows {}), breaker rejections {}; \
         {} writes, recovered {} after the restart (virtual {}), missing {}",
        r.sim.seed(),
        r.sim.len(),
        r.crashed.len(),
        r.connected_before,
        r.connected_after,
        r.stats.dials,
        r.stats.dial_failures,
        r.stats.reconnects,
        r.slots_to_crashed,
        r.max_dials_per_slot,
        r.allowed_dials_per_slot,
        r.stats.breaker_rejections,
        r.writes,
        dur(r.recovered_after),
        secs(r.recovered_after.map(|d| Instant::from_secs(25) + d)),
        r.missing
    )
}

/// One line of [`simultaneous_dials`] figures.
pub fn dials_line(r: &SimultaneousDials) -> String {
    format!(
        "simultaneous-dials seed={} N={} mutual pairs {}: one agreed connection {}, kept \
         the higher id's dial {}; dials {}, accepted {}, tie_breaks {}, dial failures {}, \
         reconnects {}; converged at virtual {}, missing {}",
        r.sim.seed(),
        r.sim.len(),
        r.pairs.len(),
        r.agreed,
        r.kept_higher,
        r.stats.dials,
        r.stats.accepted,
        r.stats.tie_breaks,
        r.stats.dial_failures,
        r.stats.reconnects,
        secs(r.converged_at),
        r.missing
    )
}

/// One line of [`stalled_reader`] figures.
pub fn stall_line(r: &StalledReader) -> String {
    let s = r.sim.total_stats();
    format!(
        "stalled-reader seed={} N={} {} writes of 4 KiB: slow_closes {}, max bytes \
         unconsumed toward the stalled node {}, most queued for it by one peer {}, max write \
         {} (queue limit {}); others \
         converged at virtual {}; after reading again: pairs connected {:?}, caught up \
         {} later; dials {}, reconnects {}, G1 frames {}, missing {}",
        r.sim.seed(),
        r.sim.len(),
        r.writes,
        r.slow_closes,
        r.max_unconsumed,
        r.max_queued,
        r.max_write,
        r.write_queue_limit,
        secs(r.others_converged_at),
        r.connected_after,
        dur(r.caught_up_after),
        s.dials,
        s.reconnects,
        r.g1_frames,
        r.missing
    )
}

/// One run of [`persisted_restart`].
#[derive(Debug)]
pub struct RestartRun {
    /// The finished run.
    pub sim: DriverSim,
    /// Delta entries [`Driver::restore`] read (0 in the run without restore).
    pub restored_entries: usize,
    /// G1 bytes sent by every node in the 40 s after the restart.
    pub g1_bytes: u64,
    /// Delta and full syncs of the restarted node in those 40 s.
    pub syncs: (u64, u64),
    /// How long after the restart every store was the same.
    pub caught_up_after: Option<Duration>,
    /// Pairs of `(key, value)` missing somewhere at the end.
    pub missing: u64,
}

/// The result of [`persisted_restart`]: the same seeded run twice, the victim restarted
/// with and without its persisted delta state.
#[derive(Debug)]
pub struct PersistedRestart {
    /// The crashed and restarted node.
    pub victim: usize,
    /// Restarted with the bytes of its last
    /// [`Output::Persist`](whisper_proto::driver::Output::Persist).
    pub restored: RestartRun,
    /// Restarted without them (same store): it full-syncs with every peer.
    pub fresh: RestartRun,
}

/// When [`persisted_restart`] kills its node: a few G1 rounds after the writes, so its
/// delta watermarks have moved past zero (a zero watermark means a full sync anyway).
pub const CRASH: Instant = Instant::from_secs(30);

/// (d) `opts.nodes` drivers (a ring plus one random chord each, one side configured)
/// persisting their delta state every 2 s. 100 writes of 256 bytes by 5 s; at 30 s
/// ([`CRASH`]) one node is killed (no shutdown: what it has is its last periodic persist
/// and its store, which the application keeps durable); survivors write 20 keys; 10 s
/// later it restarts (new driver, same address) with its store and — in the `restored` run —
/// its persisted bytes handed to [`Driver::restore`]. Each run lasts until 40 s after
/// the restart, with G1 rounds every 10 s (no adaptive cadence).
pub fn persisted_restart(opts: &super::Opts) -> PersistedRestart {
    let victim = Rng::new(opts.seed ^ 0x0d15_c0de).below(opts.nodes as u64) as usize;
    PersistedRestart {
        victim,
        restored: restart_run(opts, victim, true),
        fresh: restart_run(opts, victim, false),
    }
}

fn restart_run(opts: &super::Opts, victim: usize, restore: bool) -> RestartRun {
    use whisper_proto::driver::PersistKey;
    let n = opts.nodes;
    let mut pick = Rng::new(opts.seed ^ 0x9e25_1573);
    let plan = sparse_plan(n, 1, &mut pick);
    // G1 rounds every 10 s exactly: the 40 s window is four rounds whatever the cadence
    // would have adapted to.
    let engine = whisper_proto::Config {
        adaptive_cadence: false,
        ..whisper_proto::Config::default()
    };
    let config = DriverSimConfig {
        engine,
        setup: Some(setup_kv),
        driver: DriverConfig {
            persist_interval: Some(Duration::from_secs(2)),
            ..DriverConfig::default()
        },
        ..DriverSimConfig::default()
    };
    let mut sim = DriverSim::new(n, &plan, config, opts.seed);
    let mut expected = BTreeMap::new();
    sim.run_until(Instant::from_secs(1));
    for k in 0..100 {
        let node = pick.below(n as u64) as usize;
        let key = format!("before-{k}");
        let mut value = vec![b'v'; 256];
        value[..8].copy_from_slice(&(k as u64).to_le_bytes());
        put(&mut sim, node, &key, &value);
        expected.insert(key, value);
        sim.run_for(Duration::from_millis(40));
    }
    sim.run_until(CRASH);
    let store = sim
        .driver(victim)
        .and_then(|d| d.engine().mem_store(KV))
        .expect("INVARIANT: live with KV")
        .clone();
    sim.crash(victim);
    let survivors: Vec<usize> = (0..n).filter(|&i| i != victim).collect();
    for k in 0..20 {
        let node = survivors[pick.below(survivors.len() as u64) as usize];
        let (key, value) = (
            format!("while-down-{k}"),
            format!("from {node}").into_bytes(),
        );
        put(&mut sim, node, &key, &value);
        expected.insert(key, value);
        sim.run_for(Duration::from_millis(250));
    }
    sim.run_until(CRASH + Duration::from_secs(10));
    let saved = sim.persisted(victim, PersistKey::DeltaState).cloned();
    let (engine, driver) = (sim.config().engine.clone(), sim.config().driver.clone());
    let unix_start = sim.config().unix_start;
    let mut restored_entries = 0;
    sim.restart_with(victim, |_, id, seed, now| {
        let unix = unix_start + Duration::from_micros(now.as_micros());
        let mut d = Driver::new(id.clone(), engine.clone(), seed, driver.clone(), now, unix)
            .expect("INVARIANT: the simulator's configs are valid");
        if let (true, Some(bytes)) = (restore, &saved) {
            restored_entries = d
                .restore(now, PersistKey::DeltaState, bytes)
                .expect("INVARIANT: the driver's own persisted bytes parse");
        }
        d.register_topic(now, KV, TopicConfig::stateful(store.clone()))
            .expect("INVARIANT: KV is registered once per driver");
        d
    });
    let restarted = sim.now();
    let g1_before = sim.metrics().kind(FrameKind::Exchange).bytes;
    let caught_up = sim.run_until_true(
        Duration::from_millis(100),
        restarted + Duration::from_secs(40),
        |s| kv_converged(s, 0..n) && kv_missing(s, &expected) == 0,
    );
    sim.run_until(restarted + Duration::from_secs(40));
    let e = sim
        .driver(victim)
        .expect("INVARIANT: restarted")
        .engine()
        .stats();
    RestartRun {
        restored_entries,
        g1_bytes: sim.metrics().kind(FrameKind::Exchange).bytes - g1_before,
        syncs: (e.delta_syncs, e.full_syncs),
        caught_up_after: caught_up.map(|t| t.saturating_duration_since(restarted)),
        missing: kv_missing(&sim, &expected),
        sim,
    }
}

/// One line of [`persisted_restart`] figures.
pub fn restart_line(r: &PersistedRestart) -> String {
    let run = |label: &str, x: &RestartRun| {
        format!(
            "{label}: restored {} entries, G1 bytes in 40 s {}, victim delta/full syncs {:?}, \
             caught up {} after the restart, missing {}, persists {}",
            x.restored_entries,
            x.g1_bytes,
            x.syncs,
            dur(x.caught_up_after),
            x.missing,
            x.sim.total_stats().persists
        )
    };
    format!(
        "persisted-restart seed={} N={} victim {}; {}; {}",
        r.restored.sim.seed(),
        r.restored.sim.len(),
        r.victim,
        run("with restore", &r.restored),
        run("without", &r.fresh)
    )
}
