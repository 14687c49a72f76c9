//! The main job: a whole whisper cluster in one process over loopback TCP.
//!
//! Starts `--nodes` nodes (default 16) with the chosen adapter (default tokio) and the
//! in-memory store, connects them in a random sparse graph (seeded), writes `--records`
//! records (default 1,000) and publishes `--messages` broadcasts (default 100) from
//! random nodes, shows a progress bar on stderr while the cluster converges, and
//! prints a summary. Exits non-zero if it has not converged within `--timeout` seconds
//! (default 60).
//!
//! ```text
//! cargo run --release -p whisper-examples --bin cluster
//! cargo run --release -p whisper-examples --bin cluster -- --nodes 8 --records 200 --messages 20
//! cargo run --release -p whisper-examples --bin cluster -- --adapter mio --persist /tmp/whisper
//! ```

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use whisper_proto::Bytes;
use whisper_proto::rng::{RandomSource, Rng};
use whisper_proto::rumor::RumorId;
use whisper_tests::adapters::scenarios::{CHAT, KV, kv_state, register_topics};
use whisper_tests::adapters::{Kind, Spec, TestNode, start};
use whisper_tokio::Event;

struct Args {
    nodes: usize,
    records: usize,
    messages: usize,
    adapter: Kind,
    persist: Option<PathBuf>,
    seed: u64,
    timeout: Duration,
}

const USAGE: &str = "usage: cluster [--nodes N] [--records K] [--messages M] \
[--adapter tokio|smol|mio] [--persist DIR] [--seed S] [--timeout SECS]";

fn parse() -> Result<Args, String> {
    let mut a = Args {
        nodes: 16,
        records: 1_000,
        messages: 100,
        adapter: Kind::Tokio,
        persist: None,
        seed: 1,
        timeout: Duration::from_secs(60),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        let num = |v: String| v.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--nodes" => a.nodes = num(value()?)? as usize,
            "--records" => a.records = num(value()?)? as usize,
            "--messages" => a.messages = num(value()?)? as usize,
            "--seed" => a.seed = num(value()?)?,
            "--timeout" => a.timeout = Duration::from_secs(num(value()?)?),
            "--persist" => a.persist = Some(PathBuf::from(value()?)),
            "--adapter" => {
                a.adapter = match value()?.as_str() {
                    "tokio" => Kind::Tokio,
                    "smol" => Kind::Smol,
                    "mio" => Kind::Mio,
                    other => return Err(format!("unknown adapter {other}\n{USAGE}")),
                }
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if a.nodes < 2 {
        return Err("--nodes must be at least 2".into());
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    // The whole run is under a deadline: a hang anywhere (start, a stuck node) fails.
    let hard = args.timeout + Duration::from_secs(20);
    std::thread::spawn(move || {
        std::thread::sleep(hard);
        eprintln!("\nerror: cluster still running after {hard:?}; giving up");
        std::process::exit(3);
    });
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

struct Tally {
    messages: BTreeSet<RumorId>,
    max_hop: u8,
}

fn run(args: &Args) -> Result<bool, String> {
    let started = Instant::now();
    let deadline = started + args.timeout;
    let mut rng = Rng::new(args.seed);
    let n = args.nodes;

    // A full mesh: node i dials every earlier node. The engine's default membership is
    // "self and every connected peer", which the hypercube needs to agree on across
    // nodes; a sparse deployment would feed `Engine::set_members` instead.
    let mut edges: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
    let mut nodes: Vec<TestNode> = Vec::with_capacity(n);
    for i in 0..n {
        let mut spec = Spec::new(&format!("node-{i:02}"));
        spec.seed = args.seed.wrapping_mul(1_000_003).wrapping_add(i as u64);
        // The seed's per-peer allowance (100 msg/s, burst 500) is sized for a fleet in
        // steady state; this demo writes every record at once, so it raises it, and
        // keeps the queue threshold above what one burst of writes queues.
        spec.config.rate_limit = whisper_proto::flow::token_bucket::RateLimitConfig {
            peer_per_sec: 100_000.0,
            peer_burst: 200_000.0,
            queue_threshold: 1 << 20,
            ..spec.config.rate_limit
        };
        if let Some(dir) = &args.persist {
            spec.persist = Some(dir.join(format!("node-{i:02}")));
        }
        for j in 0..i {
            spec = spec.peer(nodes[j].addr());
            edges[i].insert(j);
            edges[j].insert(i);
        }
        let mut node = start(args.adapter, &spec);
        register_topics(&mut node);
        nodes.push(node);
    }
    let links: usize = edges.iter().map(BTreeSet::len).sum::<usize>() / 2;
    eprintln!(
        "started {n} {:?} nodes, {links} links, in {:.2?}",
        args.adapter,
        started.elapsed()
    );

    // Broadcasts go to the peers connected when they are published: wait for the graph.
    loop {
        let up = nodes
            .iter()
            .zip(&edges)
            .all(|(node, want)| node.snapshot().members.len() >= want.len());
        if up {
            break;
        }
        if Instant::now() >= deadline {
            return Err("the cluster did not connect within the timeout".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }

    let work = Instant::now();
    for k in 0..args.records {
        let at = rng.below(n as u64) as usize;
        let (key, value) = (format!("record-{k:06}"), format!("value-{k}-from-{at}"));
        retry(deadline, || {
            nodes[at].put(KV, key.as_bytes(), value.as_bytes())
        })?;
    }
    for m in 0..args.messages {
        let at = rng.below(n as u64) as usize;
        let payload = Bytes::from(format!("message-{m}-from-{at}"));
        retry(deadline, || {
            nodes[at].publish(CHAT, payload.clone()).map(|_| ())
        })?;
    }

    let mut tallies: Vec<Tally> = (0..n)
        .map(|_| Tally {
            messages: BTreeSet::new(),
            max_hop: 0,
        })
        .collect();
    let total = (n * (args.records + args.messages)).max(1);
    let mut converged = false;
    let mut states: Vec<(usize, u64)>;
    let mut stderr = std::io::stderr();
    loop {
        for (node, tally) in nodes.iter_mut().zip(&mut tallies) {
            while let Some(event) = node.next_message(Duration::ZERO) {
                if let Event::Message { id, hop, .. } = event {
                    tally.messages.insert(id);
                    tally.max_hop = tally.max_hop.max(hop);
                }
            }
        }
        states = nodes.iter().map(kv_state).collect::<Vec<_>>();
        let fingerprints: BTreeSet<u64> = states.iter().map(|s| s.1).collect();
        let records_done: usize = states.iter().map(|s| s.0.min(args.records)).sum();
        let messages_done: usize = tallies.iter().map(|t| t.messages.len()).sum();
        let records_ok = states.iter().all(|s| s.0 == args.records) && fingerprints.len() == 1;
        let messages_ok = tallies.iter().all(|t| t.messages.len() == args.messages);
        let done = records_done + messages_done;
        let width = 40;
        let filled = done * width / total;
        let _ = write!(
            stderr,
            "\r[{}{}] {:5.1}%  records {records_done}/{}  messages {messages_done}/{}  {:.1}s ",
            "#".repeat(filled),
            ".".repeat(width - filled),
            done as f64 * 100.0 / total as f64,
            n * args.records,
            n * args.messages,
            work.elapsed().as_secs_f64(),
        );
        let _ = stderr.flush();
        if records_ok && messages_ok {
            converged = true;
            break;
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let converge_time = work.elapsed();
    let _ = writeln!(stderr);

    let snaps: Vec<_> = nodes.iter().map(|n| n.snapshot()).collect();
    let frames: u64 = snaps.iter().map(|s| s.engine.frames_sent).sum();
    let bytes: u64 = snaps.iter().map(|s| s.engine.bytes_sent).sum();
    let fingerprints: BTreeSet<u64> = states.iter().map(|s| s.1).collect();
    let records_nodes = states.iter().filter(|s| s.0 == args.records).count();
    let message_nodes = tallies
        .iter()
        .filter(|t| t.messages.len() == args.messages)
        .count();
    let max_hop = tallies.iter().map(|t| t.max_hop).max().unwrap_or(0);
    for node in nodes {
        node.shutdown();
    }
    let wall = started.elapsed();

    println!(
        "whisper cluster: {n} {:?} nodes, {links} links, seed {}",
        args.adapter, args.seed
    );
    println!(
        "  records:   {}/{n} nodes hold all {} records; {} distinct store fingerprint(s){}",
        records_nodes,
        args.records,
        fingerprints.len(),
        if fingerprints.len() == 1 {
            format!(
                " ({:016x})",
                fingerprints.iter().next().copied().unwrap_or(0)
            )
        } else {
            String::new()
        }
    );
    println!(
        "  messages:  {message_nodes}/{n} nodes got all {} messages; max hops {max_hop}",
        args.messages
    );
    println!(
        "  traffic:   {frames} frames, {:.2} MiB sent",
        bytes as f64 / (1024.0 * 1024.0)
    );
    println!(
        "  time:      converged {} in {:.2?} (wall {:.2?})",
        if converged { "yes" } else { "NO" },
        converge_time,
        wall
    );
    if !converged {
        eprintln!("error: not converged within {:?}", args.timeout);
    }
    Ok(converged)
}

/// Retries `f` while the engine pushes back, until `deadline`.
fn retry(
    deadline: Instant,
    mut f: impl FnMut() -> Result<(), whisper_tokio::HandleError>,
) -> Result<(), String> {
    loop {
        match f() {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() < deadline => {
                let full = matches!(e, whisper_tokio::HandleError::Publish(_));
                if !full {
                    return Err(e.to_string());
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}
