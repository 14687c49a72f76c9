//! `compare`: whisper vs iroh-gossip's `proto` vs foca, same virtual-time link model and
//! scenarios; prints a Markdown table and writes it to `BENCHMARKS.md` at the repo root.
//!
//! ```text
//! cargo run --release --manifest-path compare/Cargo.toml --bin compare [-- --nodes 100,1000] [--seed S] [--no-write]
//! ```

mod common;
mod foca;
mod iroh;
mod whisper;

use common::{
    LAT_MAX_US, LAT_MIN_US, MESSAGES, PAYLOAD_LEN, Row, SPACING_US, Scenario, TAIL_US, WARMUP_US,
};
use std::fmt::Write as _;
use whisper_tests::sim::Topology;

/// whisper's topology at `n` nodes: a full mesh up to this many nodes (`--full-mesh-max`),
/// above it the hypercube overlay with the member list set on every engine
/// (`Topology::Cube`, `O(log N)` links per node; a 1,000-node full mesh is ~500k
/// connections).
const FULL_MESH_MAX: usize = 100;

fn main() {
    let mut nodes = vec![100usize, 1000];
    let mut seed = 42u64;
    let mut write = true;
    let mut full_mesh_max = FULL_MESH_MAX;
    let mut libs = vec!["whisper".to_string(), "iroh".into(), "foca".into()];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--nodes" => {
                nodes = args
                    .next()
                    .expect("--nodes N[,N…]")
                    .split(',')
                    .map(|s| s.parse().expect("a node count"))
                    .collect();
            }
            "--seed" => seed = args.next().expect("--seed S").parse().expect("a u64"),
            "--libs" => {
                libs = args
                    .next()
                    .expect("--libs whisper,iroh,foca")
                    .split(',')
                    .map(String::from)
                    .collect();
            }
            "--full-mesh-max" => {
                full_mesh_max = args
                    .next()
                    .expect("--full-mesh-max N")
                    .parse()
                    .expect("a node count");
            }
            "--no-write" => write = false,
            other => panic!("unknown argument {other:?}"),
        }
    }
    let wall = std::time::Instant::now();
    let mut rows = Vec::new();
    for &n in &nodes {
        for scenario in [Scenario::Single, Scenario::Random] {
            for lib in &libs {
                let row = match lib.as_str() {
                    "whisper" => {
                        let topo = if n <= full_mesh_max {
                            Topology::FullMesh
                        } else {
                            Topology::Cube
                        };
                        whisper::run(n, scenario, &topo, seed)
                    }
                    "iroh" => iroh::run(n, scenario, seed),
                    "foca" => foca::run(n, scenario, seed),
                    other => panic!("unknown library {other:?}"),
                };
                eprintln!(
                    "{} N={} {}: {} ({:.1} s wall)",
                    row.library,
                    n,
                    scenario.label(),
                    row.summary,
                    row.wall_s
                );
                rows.push(row);
            }
        }
    }
    let table = table(&rows);
    println!("{table}");
    eprintln!("total wall time {:.1} s", wall.elapsed().as_secs_f64());
    if write {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../BENCHMARKS.md");
        std::fs::write(path, document(&table, &nodes, seed, full_mesh_max))
            .expect("write BENCHMARKS.md");
        eprintln!("wrote BENCHMARKS.md");
    }
}

fn ms(d: whisper_proto::Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn table(rows: &[Row]) -> String {
    let mut t = String::from(
        "| library | N | scenario | overlay | RMR | LDH max (mean) | missed | full delivery ms mean (max) | payload msgs | control msgs | bytes/node |\n\
         |---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let s = &r.summary;
        let full = if s.fully_delivered == 0 {
            "never".to_string()
        } else if s.fully_delivered < s.messages {
            format!(
                "{:.0} ({:.0}), {}/{} msgs",
                ms(s.full_delivery_mean),
                ms(s.full_delivery_max),
                s.fully_delivered,
                s.messages
            )
        } else {
            format!(
                "{:.0} ({:.0})",
                ms(s.full_delivery_mean),
                ms(s.full_delivery_max)
            )
        };
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {:.2} | {} ({:.1}) | {} | {} | {} | {} | {:.0} |",
            r.library,
            r.n,
            r.scenario.label(),
            r.overlay,
            s.rmr,
            s.ldh_max,
            s.ldh_mean,
            s.missed,
            full,
            r.payload_msgs,
            r.control_msgs,
            r.bytes_per_node
        );
    }
    t
}

fn document(table: &str, nodes: &[usize], seed: u64, full_mesh_max: usize) -> String {
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map_or_else(|| "unknown".into(), |s| s.trim().to_string());
    let nodes: Vec<String> = nodes.iter().map(ToString::to_string).collect();
    format!(
        "# Broadcast comparison: whisper vs iroh-gossip vs foca\n\n\
Produced on {date} (UTC) by\n\n\
```sh\ncargo run --release --manifest-path compare/Cargo.toml --bin compare{args}\n```\n\n\
(nodes {nodes}, seed {seed}). Everything runs in virtual time, so the figures are exact \
for the seed and do not depend on the machine.\n\n\
{table}\n\
## Reading the table\n\n\
- **whisper** sends one G3 frame per receiver down the exact hypercube tree: RMR 0, no \
miss, LDH at most ⌈log2 N⌉ (7 at N = 100, 10 at N = 1,000), and the shortest full \
delivery, because each hop forwards at once to every lower dimension. Its control \
messages are mostly ACKs (one per payload frame), keepalives and G2 probes.\n\
- **iroh-gossip** (PlumTree over HyParView) also reaches everyone; its eager tree carries \
duplicates until pruned (RMR above 0) and its active view of 5 makes the tree deeper \
(LDH well above log2 N), so full delivery takes longer.\n\
- **foca** spreads broadcasts by piggybacking on SWIM traffic: every item is sent up to \
`max_transmissions` times (RMR near that), and delivery is probabilistic.\n\
- **Caveat at N = 1,000:** whisper's engines are handed the member list by the harness and \
its overlay has more links (about 19 per node) than iroh-gossip's active view; the \
others discover their members by joining through node 0, and that traffic is in their \
control column.\n\n\
## Method\n\n\
- **Same link model for all three:** every message takes a uniform {lmin}–{lmax} ms one-way \
latency from a seeded RNG, FIFO per directed link (a later message never overtakes an earlier \
one, like a stream). No loss. whisper runs in `whisper-tests`' simulator with \
`LinkConfig::default()` (the same model); iroh-gossip and foca run in an event loop in \
`compare/` that drives their sans-IO state machines.\n\
- **Timeline:** {warm} s of warm-up (membership settles), then {msgs} broadcasts of \
{plen} bytes, one every {spacing} s, from node 0 (*single sender*) or from a random node each \
(*random senders*); then {tail} s more. Everything in the table is counted from the first \
broadcast to the end of the run.\n\
- **RMR** = payload messages / (messages × (N − 1)) − 1. **LDH** = hop count of the last \
first-delivery of a message (max over messages, mean in brackets). **missed** = expected \
first deliveries (messages × (N − 1)) that never happened. **full delivery** = publish to the \
last first-delivery, over the messages that reached every node (virtual ms, mean and max). \
**bytes/node** = all bytes sent in the window (payload and control) / N.\n\
- **whisper:** `Engine::publish` on a `BroadcastOnly` topic (`TopicConfig::broadcast()`), \
default `Config`; payload messages are G3 rumor frames; hops come from `Event::Message`. \
Full mesh for N ≤ {fmax}; above that the hypercube overlay (`Topology::Cube`): every \
engine is given the member list of all N nodes (`Engine::set_members`, as a deployment that \
knows its members would; iroh-gossip and foca learn theirs by joining through node 0, \
whisper's own membership dissemination is not built yet) and each node links to its \
`HypercubeExt::overlay_peers` (the link count is in the overlay column). A 1,000-node full \
mesh (~500k connections) is too slow for the simulator (`--full-mesh-max 1000` runs it). \
`publish` sends G3 rumors over the exact hypercube with ACKs (N − 1 payload frames, RMR 0). \
Control includes HELLO, keepalives, G2 probes and ACKs.\n\
- **iroh-gossip 0.101** (`default-features = false`): `proto::State` with `Config::default()` \
(HyParView + PlumTree), 32-byte peer ids. Bootstrap as its own simulator's \
`BootstrapMode::Single`: node 0 opens the topic, every other node joins through node 0 \
(joins spread over the first 2 s). Payload = `MessageKind::Data` (PlumTree `Gossip`, also \
when answering a `Graft`); control = everything else (HyParView, `IHave`, `Graft`, `Prune`). \
Bytes are `Message::size()` (postcard). `DisconnectPeer` reaches the peer after one latency, \
as in iroh's simulator. Hops are counted by the harness (sender's hop + 1).\n\
- **foca 2.0** (`std`, `postcard-codec`): `Config::new_lan(N)` (probe every 1 s, periodic \
gossip to 3 members every 200 ms, `max_transmissions` from N), `SocketAddrV4` identities, \
`AccumulatingRuntime`. Every node announces to node 0 (spread over the first 2 s). A broadcast \
is `add_broadcast` + one `broadcast()` at the publisher; after that it rides on foca's own \
messages. A payload message is a packet that carried at least one custom broadcast item \
(counted at the receiver; lossless links); the rest are control. Hops are counted by the \
harness (sender's hop + 1). Each node sends an item at most `max_transmissions` times \
(4·log10(N + 1): 8 at N = 100, 12 at N = 1,000), so its RMR sits near that and a node can be \
missed: dissemination is probabilistic.\n\
- **Bytes are not quite like for like:** whisper counts its encoded wire frames (length \
prefix included); iroh-gossip counts `Message::size()` (postcard body, without its \
transport's length prefix or QUIC overhead); foca counts its UDP payloads. None includes \
TCP/QUIC/UDP/IP headers.\n\
- **Not covered:** loss, churn, partitions; one seed (42, `--seed S` for others).\n",
        nodes = nodes.join(", "),
        args = std::env::args()
            .skip(1)
            .fold(String::new(), |acc, a| if acc.is_empty() {
                format!(" -- {a}")
            } else {
                acc + " " + &a
            }),
        lmin = LAT_MIN_US / 1000,
        lmax = LAT_MAX_US / 1000,
        warm = WARMUP_US / 1_000_000,
        msgs = MESSAGES,
        plen = PAYLOAD_LEN,
        spacing = SPACING_US / 1_000_000,
        tail = TAIL_US / 1_000_000,
        fmax = full_mesh_max,
    )
}
