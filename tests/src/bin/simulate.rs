//! Runs a simulator scenario and prints its metrics table; optionally plots a metric
//! over virtual time as SVG.
//!
//! ```text
//! cargo run --release -p whisper-tests --bin simulate -- \
//!     --nodes 100 --scenario flood --seed 1 [--svg out.svg] [--metric peers|fps]
//! cargo run --release -p whisper-tests --bin simulate -- \
//!     --scenario memory --nodes 100000 [--k 4] [--secs 120]
//! ```
//!
//! Scenarios: hello-mesh, idle, partition, crash-restart, flood, broadcast, records, the
//! driver-level reconnect-storm, simultaneous-dials, stalled-reader and
//! persisted-restart, and memory (bytes allocated per idle engine, counted by a global
//! allocator wrapper, and wall time).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant as WallClock;
use whisper_proto::rng::Rng;
use whisper_proto::{Action, Config, ConnId, Duration, Engine, Identity, Instant, NodeId, Role};
use whisper_tests::sim::metrics::{Metrics, svg_plot};
use whisper_tests::sim::scenario::{self, NAMES, Opts};
use whisper_tests::sim::{Sim, SimConfig, Topology, seed_from_env};

/// Counts live heap bytes: a thin wrapper over the system allocator.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to `System`; the wrapper only updates
// counters, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout, under the caller's contract.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc`/`realloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged under the caller's contract.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            let live = LIVE.fetch_add(new_size, Ordering::Relaxed) + new_size;
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

struct Args {
    nodes: Option<usize>,
    scenario: String,
    seed: u64,
    svg: Option<String>,
    metric: String,
    k: usize,
    secs: u64,
}

fn usage() -> ! {
    eprintln!(
        "usage: simulate [--nodes N] [--scenario NAME] [--seed S] [--svg PATH] [--metric peers|fps] [--k K] [--secs S]\nscenarios: {} memory",
        NAMES.join(" ")
    );
    std::process::exit(2)
}

fn parse() -> Args {
    let mut a = Args {
        nodes: None,
        scenario: "hello-mesh".into(),
        seed: seed_from_env(1),
        svg: None,
        metric: "peers".into(),
        k: 4,
        secs: 120,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--nodes" => a.nodes = Some(value().parse().unwrap_or_else(|_| usage())),
            "--scenario" => a.scenario = value(),
            "--seed" => a.seed = value().parse().unwrap_or_else(|_| usage()),
            "--svg" => a.svg = Some(value()),
            "--metric" => a.metric = value(),
            "--k" => a.k = value().parse().unwrap_or_else(|_| usage()),
            "--secs" => a.secs = value().parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    a
}

fn main() {
    let args = parse();
    if args.scenario == "memory" {
        return memory(&args);
    }
    let opts = Opts {
        nodes: args.nodes.unwrap_or(100),
        seed: args.seed,
        progress: true,
        sample_every: Some(Duration::from_secs(1)),
    };
    let wall = WallClock::now();
    let Some((table, metrics)) = scenario::run_named(&args.scenario, &opts) else {
        usage()
    };
    print!("{table}");
    println!(
        "wall {:.2} s (not a test figure)",
        wall.elapsed().as_secs_f64()
    );
    write_svg(&args, &metrics);
}

fn write_svg(args: &Args, metrics: &Metrics) {
    let Some(path) = &args.svg else { return };
    let secs = |s: &whisper_tests::sim::metrics::Sample| s.at.as_micros() as f64 / 1e6;
    let (title, label, points): (_, _, Vec<(f64, f64)>) = match args.metric.as_str() {
        "fps" => {
            let mut prev = 0.0;
            let pts = metrics
                .samples
                .iter()
                .map(|s| {
                    let t = secs(s);
                    let dt = (t - prev).max(1e-9);
                    prev = t;
                    (t, s.frames as f64 / dt)
                })
                .collect();
            ("frames sent per second", "frames/s", pts)
        }
        _ => (
            "connected peers (sum over nodes)",
            "peers",
            metrics
                .samples
                .iter()
                .map(|s| (secs(s), s.peers as f64))
                .collect(),
        ),
    };
    let title = format!("{}: {title}, seed {}", args.scenario, args.seed);
    match std::fs::write(path, svg_plot(&title, label, &points)) {
        Ok(()) => eprintln!("wrote {path}"),
        Err(e) => eprintln!("cannot write {path}: {e}"),
    }
}

/// `n` engines with the default config, ids as the simulator's.
fn bare_engines(n: usize) -> Vec<Engine> {
    (0..n)
        .map(|i| {
            let id = NodeId::new(format!("n{i:07}").into_bytes()).expect("valid id");
            Engine::new(id, Config::default(), i as u64, Instant::ZERO).expect("valid config")
        })
        .collect()
}

/// Opens an identified connection for every edge (HELLOs exchanged in memory, no
/// simulator): the higher index dials.
fn connect(engines: &mut [Engine], edges: &[(usize, usize)]) {
    let mut next = vec![1u64; engines.len()];
    let t = Instant::from_millis(1);
    for &(a, b) in edges {
        let (ca, cb) = (ConnId(next[a]), ConnId(next[b]));
        next[a] += 1;
        next[b] += 1;
        let _ = engines[b].handle_connected(t, cb, Role::Dialer, Identity::Hello);
        let _ = engines[a].handle_connected(t, ca, Role::Acceptor, Identity::Hello);
        for _ in 0..2 {
            for (from, to, conn) in [(b, a, ca), (a, b, cb)] {
                while let Some(action) = engines[from].poll_action() {
                    if let Action::Send { bytes, .. } = action {
                        let _ = engines[to].handle_bytes(t, conn, &bytes);
                    }
                }
            }
        }
    }
}

/// Bytes per idle engine (bare, then inside a sparse simulated cluster) and wall time.
fn memory(args: &Args) {
    let n = args.nodes.unwrap_or(100_000);
    println!(
        "memory: {n} engines, size_of::<Engine>() = {} bytes",
        size_of::<Engine>()
    );

    // 1. Bare engines, no connections.
    let base = live();
    let wall = WallClock::now();
    let engines = bare_engines(n);
    let bare = live() - base;
    println!(
        "bare engines: {:.1} bytes per engine ({} bytes total), built in {:.3} s wall",
        bare as f64 / n as f64,
        bare,
        wall.elapsed().as_secs_f64()
    );
    drop(engines);

    // 2. Engines alone, each with its share of a random k-regular-ish graph of
    //    identified connections (HELLOs exchanged in memory, no simulator).
    let mut rng = Rng::new(args.seed);
    let edges = Topology::Random { k: args.k }.edges(n, &mut rng);
    let base = live();
    let mut engines = bare_engines(n);
    connect(&mut engines, &edges);
    let connected = live() - base;
    let peers: usize = engines.iter().map(|e| e.stats().peers).sum();
    println!(
        "engines with identified connections (k={}, {} conns per engine on average, {} peers up): {:.1} bytes per engine",
        args.k,
        2.0 * edges.len() as f64 / n as f64,
        peers,
        connected as f64 / n as f64
    );
    drop(engines);

    // 3. The simulator with no links: engine + simulator bookkeeping per node.
    let base = live();
    let config = SimConfig {
        record_events: false,
        ..SimConfig::default()
    };
    let sim = Sim::new(n, &Topology::None, config.clone(), args.seed);
    let unlinked = live() - base;
    println!(
        "simulated nodes, no links: {:.1} bytes per node (engine + simulator)",
        unlinked as f64 / n as f64
    );
    drop(sim);

    // 4. A sparse cluster: each node dials k random others, idles for `secs`.
    let base = live();
    PEAK.store(base, Ordering::Relaxed);
    let wall = WallClock::now();
    let topo = Topology::Random { k: args.k };
    let mut sim = Sim::new(n, &topo, config, args.seed);
    let end = Instant::from_secs(args.secs);
    sim.show_progress(end);
    sim.run_until(end);
    sim.finish_progress();
    let elapsed = wall.elapsed().as_secs_f64();
    let linked = live() - base;
    let links = sim.link_count();
    println!(
        "sparse cluster k={} ({} links, {} up, mean degree {:.1}), {} virtual s: {:.1} s wall, {} events ({:.2} M events/s)",
        args.k,
        links,
        sim.links_up(),
        2.0 * links as f64 / n as f64,
        args.secs,
        elapsed,
        sim.processed(),
        sim.processed() as f64 / elapsed / 1e6
    );
    println!(
        "  live heap after: {:.1} bytes per node (engine with its connections + simulator + queue), peak {:.1} bytes per node",
        linked as f64 / n as f64,
        (PEAK.load(Ordering::Relaxed) - base) as f64 / n as f64
    );
    print!("{}", sim.table());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Memory per idle engine, counted by this binary's allocator (counts, not time):
    /// a bare engine meets the 4 KiB goal; one with 8 identified connections on average
    /// (a k = 4 random graph of 1,000 engines) does not yet (about 1.3 KiB per
    /// connection), so 16 KiB is its regression bound. A preallocated rumor LRU once made
    /// a bare engine 937 KB: this test catches that.
    #[test]
    fn idle_engine_memory_is_bounded() {
        let n = 1000;
        let base = live();
        let engines = bare_engines(n);
        let bare = (live() - base) / n;
        drop(engines);
        let edges = Topology::Random { k: 4 }.edges(n, &mut Rng::new(1));
        let base = live();
        let mut engines = bare_engines(n);
        connect(&mut engines, &edges);
        let connected = (live() - base) / n;
        let peers: usize = engines.iter().map(|e| e.stats().peers).sum();
        println!("bytes per engine: bare {bare}, with connections {connected}");
        assert_eq!(peers, 2 * edges.len(), "every connection identified");
        assert!(bare <= 4096, "bare engine {bare} B");
        assert!(
            connected <= 16384,
            "engine with 8 connections {connected} B"
        );
    }
}
